"""Deployment scaling benchmark (not a test): `kubectl scale --replicas=N` -> N pods Running.

One node (default): starts its own full `kubelite server` (API, controllers, scheduler and
node agent with its own containerd) on a temporary data dir. ``--nodes K``: a dev cluster
instead (`kubelite dev cluster up --nodes K`: a server with --disable-agent and K agents, each
in a test host of its own), so the scheduler spreads the pods over K nodes.

It creates a 1-replica kuard Deployment, then times `kubectl scale deployment/bench
--replicas=N` until the Deployment reports N available replicas (and the way back to 0 until
no pod is left), sampling CPU time and RSS: of the server process — the ReplicaSet and
Deployment controllers run there, beside the API server and the scheduler (and, with one
node, the agent, so that figure is all of them) — and, on a dev cluster, of the agents and of
what stays under them (containerd; the shims go to the test host's init).

    make setup && .venv/bin/python bench/deployment_scale.py [--replicas 100] [--nodes 3]

Everything it starts is torn down at the end: the Deployment and its pods, the server (or the
dev cluster), the temporary dir, the `kubelite0` bridge when nothing is attached to it.
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
sys.path.insert(0, str(REPO))  # this checkout's kubelite (the dev cluster runs it)
KUBECTL = str(Path(sys.executable).parent / "kubectl")
TICK = os.sysconf("SC_CLK_TCK")
DEV_SUBNET = "198.19.241.0/24"  # not the default dev cluster's, nor an e2e test's


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


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            out.setdefault(ppid, []).append(int(d.name))
    return out


def _descendants(pid: int) -> list[int]:
    kids, out, todo = _children(), [], [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _sum(fn, pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += fn(pid)
        except (OSError, IndexError, ValueError):  # gone meanwhile
            pass
    return total


class Bench:
    nodes = 1

    def __init__(self, base: Path) -> None:
        self.data = base / "data"
        self.port = _port()
        self.env = dict(os.environ, KUBECONFIG=str(self.data / "kubeconfig.yaml"), HOME=str(base))
        self.log = open(base / "server.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "kubelite", "server", "--data-dir", str(self.data),
                                      "--bind-address", "127.0.0.1", "--port", str(self.port), "--node-name",
                                      "bench-scale"], stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO)

    def ready(self) -> bool:
        return (self.data / "kubeconfig.yaml").exists() and self.kubectl(
            "get", "node", "bench-scale", "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            check=False) == "True"

    def server_pid(self) -> int:
        return self.proc.pid

    def agent_pids(self) -> list[int]:
        """The agents outside the server process (none here: it runs in the server)."""
        return []

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


class DevClusterBench(Bench):
    """The same on a dev cluster of ``nodes`` nodes (kubelite.devcluster), torn down by `down`."""

    def __init__(self, base: Path, nodes: int) -> None:
        from kubelite.devcluster.cluster import ClusterSpec, DevCluster

        self.nodes = nodes
        self.data = base / "dev"
        kubeconfig = base / "kubeconfig.yaml"
        self.env = dict(os.environ, KUBECONFIG=str(kubeconfig), HOME=str(base))
        self.cluster = DevCluster(self.data)
        # 100+ pods on one node of a slow machine take a while: a generous timeout for the nodes
        self.cluster.up(ClusterSpec(data_dir=self.data, nodes=nodes, name="klbench", subnet=DEV_SUBNET,
                                    port=_port(), kubeconfig=kubeconfig, ready_timeout=300.0))

    def ready(self) -> bool:
        return True  # `up` returned: every node Ready

    def server_pid(self) -> int:
        return int(self.cluster.state["server"]["proc"][0])

    def agent_pids(self) -> list[int]:
        return [h.procs["agent"].pid for h in self.cluster.hosts() if "agent" in h.procs]

    def stop(self) -> None:
        self.kubectl("delete", "deployment", "bench", "--ignore-not-found", check=False)
        self.cluster.down()


def _usage(b: Bench) -> tuple[float, float, float, float, float]:
    """(server CPU s, server RSS MiB, agents' CPU s, agents' RSS MiB, CPU s of what runs under the agents)."""
    agents = b.agent_pids()
    under = [d for a in agents for d in _descendants(a)]
    return (_cpu_seconds(b.server_pid()), _rss_mib(b.server_pid()), _sum(_cpu_seconds, agents),
            _sum(_rss_mib, agents), _sum(_cpu_seconds, under))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, default=100)
    ap.add_argument("--nodes", type=int, default=0,
                    help="on a dev cluster of this many nodes (default: one `kubelite server` with its own agent)")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="kubelite-bench-scale-"))
    b: Bench | None = None
    try:
        b = DevClusterBench(base, args.nodes) if args.nodes else Bench(base)
        b.wait("server ready", b.ready, 120)
        b.kubectl("create", "deployment", "bench", "--image=kubelite.local/kuard-amd64:blue", "--replicas=1")
        b.wait("1 available", lambda: b.available() == 1, 120)
        u0, t0 = _usage(b), time.monotonic()
        b.kubectl("scale", "deployment/bench", f"--replicas={args.replicas}")
        up = b.wait(f"{args.replicas} available", lambda: b.available() == args.replicas)
        u1 = _usage(b)
        spread = json.loads(b.kubectl("get", "pods", "-l", "app=bench", "-o", "json"))["items"]
        per_node: dict[str, int] = {}
        for p in spread:
            per_node[p["spec"].get("nodeName", "")] = per_node.get(p["spec"].get("nodeName", ""), 0) + 1
        b.kubectl("scale", "deployment/bench", "--replicas=0")
        down = b.wait("no pods", lambda: b.pods() == 0)
        u2 = _usage(b)
        where = (f"{b.nodes} nodes of a dev cluster" if args.nodes else "one node (kubelite server with its agent)")
        print(f"{where}; pods per node: {dict(sorted(per_node.items()))}")
        print(f"scale 1 -> {args.replicas}: {up:.1f} s to all available ({args.replicas / up:.1f} pods/s); "
              f"server CPU {u1[0] - u0[0]:.1f} s, RSS {u1[1]:.0f} MiB")
        if args.nodes:
            print(f"  agents: CPU {u1[2] - u0[2]:.1f} s, RSS {u1[3]:.0f} MiB (sum of {b.nodes}); "
                  f"containerd and the rest still under them: CPU {u1[4] - u0[4]:.1f} s")
        print(f"scale {args.replicas} -> 0: {down:.1f} s until no pod is left; server CPU {u2[0] - u1[0]:.1f} s"
              + (f"; agents' CPU {u2[2] - u1[2]:.1f} s" if args.nodes else ""))
        print(f"(wall time from the first scale: {time.monotonic() - t0:.1f} s)")
    finally:
        if b is not None:
            b.stop()
        shutil.rmtree(base, ignore_errors=True)
        if not subprocess.run(["ip", "-o", "link", "show", "master", "kubelite0"], capture_output=True,
                              text=True).stdout.strip():
            subprocess.run(["ip", "link", "del", "kubelite0"], capture_output=True)


if __name__ == "__main__":
    main()
