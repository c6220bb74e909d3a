"""Pod-to-pod network benchmark (not a test): HTTP latency same-node vs cross-node (host-gw, vxlan).

For each ``--flannel-backend`` (default host-gw; repeat it, e.g. ``--flannel-backend host-gw
--flannel-backend vxlan``, to compare) it brings up its own `kubelite dev cluster` (2 nodes,
each in a test host, on one subnet), runs a kuard pod
(Go HTTP server) on node 1 and two client sandboxes (busybox `sleep`) on node 1 and node 2,
then from inside each client pod's network namespace (``nsenter --net`` by its pause
process, so the client is Python, the path is the pod's) measures against the kuard pod's IP:

1. ``--requests`` (default 2000) GETs over one keep-alive connection: p50/p99 latency, req/s;
2. ``--connections`` (default 300) GETs each on a new TCP connection: p50/p99;

and prints one table. Everything is torn down at the end (`dev cluster down`), also on errors.

    .venv/bin/python bench/pod_network.py [--requests 2000] [--connections 300] [--flannel-backend B]…
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KUBECTL = str(Path(sys.executable).parent / "kubectl")
KUARD = "kubelite.local/kuard-amd64:blue"
BUSYBOX = "kubelite.local/busybox:latest"
NAME = "klbench"
SUBNET = "198.19.248.0/24"

CLIENT = r"""
import http.client, json, sys, time
ip, n_keep, n_new = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def pct(xs, q):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(q * len(xs)))]
c = http.client.HTTPConnection(ip, 8080, timeout=5)
keep = []
for _ in range(n_keep):
    t = time.perf_counter(); c.request("GET", "/healthy"); c.getresponse().read(); keep.append(time.perf_counter() - t)
c.close()
new = []
for _ in range(n_new):
    t = time.perf_counter(); c = http.client.HTTPConnection(ip, 8080, timeout=5)
    c.request("GET", "/healthy"); c.getresponse().read(); c.close(); new.append(time.perf_counter() - t)
print(json.dumps({"keep_p50": pct(keep, .5), "keep_p99": pct(keep, .99), "rps": len(keep) / sum(keep),
                  "new_p50": pct(new, .5), "new_p99": pct(new, .99)}))
"""


def kubelite(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubelite", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pause_pid(uid: str) -> int:
    """The pod's sandbox (pause) process, found by its pod cgroup."""
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if (p / "comm").read_text().strip() == "pause" and f"pod{uid}" in (p / "cgroup").read_text():
                return int(p.name)
        except OSError:
            continue
    raise RuntimeError(f"no pause process for pod {uid}")


def measure(backend: str, requests: int, connections: int) -> tuple[str, dict[str, dict]]:
    """(the server pod's IP, {"same"|"cross": figures}) on a fresh 2-node cluster on ``backend``."""
    tmp = Path(tempfile.mkdtemp(prefix="kubelite-bench-net-"))
    data, kc = tmp / "dev", tmp / "kubeconfig.yaml"

    def kubectl(*a: str, input: str | None = None) -> str:
        p = subprocess.run([KUBECTL, "--kubeconfig", str(kc), *a], capture_output=True, text=True, input=input,
                           timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(a)}: {p.stderr}")
        return p.stdout

    up = kubelite("dev", "cluster", "up", "--nodes", "2", "--name", NAME, "--subnet", SUBNET, "--data-dir",
                  str(data), "--kubeconfig", str(kc), "--port", str(free_port()), "--flannel-backend", backend)
    if up.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"dev cluster up ({backend}): {up.stderr}")
    try:
        pods = {"server": (f"{NAME}-1", KUARD, None), "same": (f"{NAME}-1", BUSYBOX, ["sleep", "3600"]),
                "cross": (f"{NAME}-2", BUSYBOX, ["sleep", "3600"])}
        for name, (node, image, cmd) in pods.items():
            c: dict = {"name": "c", "image": image, "imagePullPolicy": "Never"}
            if cmd:
                c["command"] = cmd
            kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                                                          "spec": {"nodeName": node, "containers": [c],
                                                                   "terminationGracePeriodSeconds": 0}}))
        kubectl("wait", "--for=condition=Ready", "pod/server", "pod/same", "pod/cross", "--timeout=120s")
        got = {p["metadata"]["name"]: p for p in json.loads(kubectl("get", "pods", "-o", "json"))["items"]}
        server_ip = got["server"]["status"]["podIP"]
        rows = {}
        for client in ("same", "cross"):
            pid = pause_pid(got[client]["metadata"]["uid"])
            out = subprocess.run(["nsenter", f"--target={pid}", "--net", "--", sys.executable, "-c", CLIENT,
                                  server_ip, str(requests), str(connections)],
                                 capture_output=True, text=True, timeout=600, check=True).stdout
            rows[client] = json.loads(out)
        return server_ip, rows
    finally:
        down = kubelite("dev", "cluster", "down", "--data-dir", str(data))
        if down.returncode != 0:
            sys.stderr.write(down.stderr)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000, help="GETs over one keep-alive connection")
    ap.add_argument("--connections", type=int, default=300, help="GETs on a new connection each")
    ap.add_argument("--flannel-backend", action="append", choices=["host-gw", "vxlan"],
                    help="the pod network to measure (repeatable; default host-gw)")
    args = ap.parse_args()
    table = []
    for backend in args.flannel_backend or ["host-gw"]:
        try:
            _, rows = measure(backend, args.requests, args.connections)
        except RuntimeError as exc:
            sys.stderr.write(f"{exc}\n")
            return 1
        if not table:
            table.append(("same node (bridge)", rows["same"]))
        table.append((f"cross node ({backend})", rows["cross"]))
    print("pod-to-pod HTTP to kuard (client: Python http.client in the pod's netns)")
    print(f"{'path':<22}{'keep-alive p50':>16}{'p99':>10}{'req/s':>10}{'new conn p50':>15}{'p99':>10}")
    for label, r in table:
        print(f"{label:<22}{r['keep_p50'] * 1e6:>13.0f} µs{r['keep_p99'] * 1e6:>7.0f} µs{r['rps']:>10.0f}"
              f"{r['new_p50'] * 1e6:>12.0f} µs{r['new_p99'] * 1e6:>7.0f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
