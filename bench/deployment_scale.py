"""Deployment scaling benchmark (not a test): `kubectl scale --replicas=N` -> N pods Running.

Starts its own full `kubelite server` (API, controllers, scheduler and node agent with its own
containerd) on a temporary data dir, creates a 1-replica kuard Deployment, then times
`kubectl scale deployment/bench --replicas=N` until the Deployment reports N available
replicas (and the way back to 0 until no pod is left), sampling the server process's CPU
time and RSS — the ReplicaSet and Deployment controllers run in that process, beside the API
server, the scheduler and the agent, so the CPU figure is all of them.

    make setup && .venv/bin/python bench/deployment_scale.py [--replicas 100]

Everything it starts is torn down at the end: the Deployment and its pods, the server, the
temporary dir, the `kubelite0` bridge when nothing is attached to it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KUBECTL = str(Path(sys.executable).parent / "kubectl")
TICK = os.sysconf("SC_CLK_TCK")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Bench:
    def __init__(self, base: Path) -> None:
        self.data = base / "data"
        self.port = _port()
        self.env = dict(os.environ, KUBECONFIG=str(self.data / "kubeconfig.yaml"), HOME=str(base))
        self.log = open(base / "server.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "kubelite", "server", "--data-dir", str(self.data),
                                      "--bind-address", "127.0.0.1", "--port", str(self.port), "--node-name",
                                      "bench-scale"], stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO)

    def kubectl(self, *args: str, check: bool = True) -> str:
        p = subprocess.run([KUBECTL, *args], capture_output=True, text=True, env=self.env, timeout=120)
        if check and p.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {p.stderr}")
        return p.stdout

    def wait(self, what: str, pred, timeout: float = 600.0) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if pred():
                return time.monotonic() - start
            time.sleep(0.2)
        raise TimeoutError(what)

    def available(self) -> int:
        d = json.loads(self.kubectl("get", "deployment", "bench", "-o", "json"))
        return int(d.get("status", {}).get("availableReplicas") or 0)

    def pods(self) -> int:
        return len(json.loads(self.kubectl("get", "pods", "-l", "app=bench", "-o", "json"))["items"])

    def stop(self) -> None:
        self.kubectl("delete", "deployment", "bench", "--ignore-not-found", check=False)
        self.kubectl("delete", "pods", "--all", "--grace-period=1", "--timeout=120s", check=False)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, default=100)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="kubelite-bench-scale-"))
    b = Bench(base)
    try:
        b.wait("server ready", lambda: (b.data / "kubeconfig.yaml").exists() and b.kubectl(
            "get", "node", "bench-scale", "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            check=False) == "True", 120)
        b.kubectl("create", "deployment", "bench", "--image=kubelite.local/kuard-amd64:blue", "--replicas=1")
        b.wait("1 available", lambda: b.available() == 1, 120)
        cpu0, t0 = _cpu_seconds(b.proc.pid), time.monotonic()
        b.kubectl("scale", "deployment/bench", f"--replicas={args.replicas}")
        up = b.wait(f"{args.replicas} available", lambda: b.available() == args.replicas)
        cpu_up, rss = _cpu_seconds(b.proc.pid) - cpu0, _rss_mib(b.proc.pid)
        cpu1 = _cpu_seconds(b.proc.pid)
        b.kubectl("scale", "deployment/bench", "--replicas=0")
        down = b.wait("no pods", lambda: b.pods() == 0)
        cpu_down = _cpu_seconds(b.proc.pid) - cpu1
        print(f"scale 1 -> {args.replicas}: {up:.1f} s to all available "
              f"({args.replicas / up:.1f} pods/s); server CPU {cpu_up:.1f} s; server RSS {rss:.0f} MiB")
        print(f"scale {args.replicas} -> 0: {down:.1f} s until no pod is left; server CPU {cpu_down:.1f} s")
        print(f"(wall time from the first scale: {time.monotonic() - t0:.1f} s)")
    finally:
        b.stop()
        shutil.rmtree(base, ignore_errors=True)
        if not subprocess.run(["ip", "-o", "link", "show", "master", "kubelite0"], capture_output=True,
                              text=True).stdout.strip():
            subprocess.run(["ip", "link", "del", "kubelite0"], capture_output=True)


if __name__ == "__main__":
    main()
