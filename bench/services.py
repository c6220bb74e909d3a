"""Service benchmark (not a test): a request through a ClusterIP beside the same request to the
pod's IP, and how fast kube-proxy's rules follow an endpoint change.

Starts its own full `kubelite server` (API, controllers, scheduler, agent with containerd, and
kube-proxy in iptables mode) on a temporary data dir, then:

1. three kuard pods behind a Service; from the node, ``--requests`` HTTP GETs (a new TCP
   connection each, as a client without keep-alive makes them), alternating between one
   pod's IP and the Service's ClusterIP (DNAT by the KUBE-SERVICES rules to one of the
   three): p50/p90/p99 of each, and the difference;
2. ``--services`` selector-less Services (default 100) with an EndpointSlice of
   ``--endpoints`` addresses each (default 10; addresses in the pod network, nothing behind
   them: only the rules are measured): the time from the last create until the nat table
   holds every Service's chain (a full sync of 100 x 10), then ``--updates`` times one
   slice's address is changed and the time until ``iptables-save`` shows it is measured
   (polled every 5 ms; an iptables-save of that table takes a few ms itself, printed too).

    make setup && .venv/bin/python bench/services.py [--requests 1000] [--services 100]
                                                     [--endpoints 10] [--updates 20]

Run it alone: kube-proxy's KUBE-* chains are the host's, so another kubelite server on this
machine (a test run) would fight over them; the bench takes the e2e tests' lock
(/tmp/kubelite-e2e.lock) while it runs. Everything it creates is deleted and the server
stopped at the end, also on errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pod_startup import KUARD, KubeliteServer, log, pct, wait_node_ready  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from kubelite.client.api import Client  # noqa: E402

LABEL = "svc-bench"
LOCK = Path("/tmp/kubelite-e2e.lock")
Obj = dict[str, Any]


def http_get(ip: str, port: int, timeout: float = 5.0) -> float:
    """One GET /healthy on a new connection; its duration (connect to last byte)."""
    t = time.perf_counter()
    with socket.create_connection((ip, port), timeout=timeout) as s:
        s.sendall(b"GET /healthy HTTP/1.0\r\nHost: bench\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    took = time.perf_counter() - t
    if not data.startswith(b"HTTP/1.") or b" 200 " not in data.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"unexpected answer from {ip}:{port}: {data[:80]!r}")
    return took


def stats(xs: list[float]) -> str:
    return " ".join(f"p{q} {pct(xs, q) * 1000:.2f} ms" for q in (50, 90, 99))


def iptables_nat() -> tuple[str, float]:
    t = time.perf_counter()
    out = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True).stdout
    return out, time.perf_counter() - t


async def wait_for(cond: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = await cond() if asyncio.iscoroutinefunction(cond) else cond()
        if v:
            return v
        await asyncio.sleep(interval)
    raise RuntimeError(f"timed out waiting for {what}")


def pod(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": LABEL}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "kuard", "image": KUARD, "ports": [{"containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/healthy", "port": 8080}, "periodSeconds": 1}}]}}


async def request_latency(client: Client, n: int) -> dict[str, Any]:
    names = [f"{LABEL}-{i}" for i in range(3)]
    for name in names:
        await client.create("v1", "pods", pod(name), namespace="default")
    await client.create("v1", "services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": LABEL},
        "spec": {"selector": {"app": LABEL}, "ports": [{"port": 80, "targetPort": 8080}]}}, namespace="default")

    async def ready() -> list[Obj] | None:
        pods = [await client.get("v1", "pods", n, namespace="default") for n in names]
        ok = all(any(c["type"] == "Ready" and c["status"] == "True" for c in (p.get("status") or {}).get("conditions")
                     or []) for p in pods)
        return pods if ok else None

    pods = await wait_for(ready, 180, "three ready kuard pods")
    svc = await client.get("v1", "services", LABEL, namespace="default")
    cluster_ip, pod_ip = svc["spec"]["clusterIP"], pods[0]["status"]["podIP"]

    def through_service() -> bool:
        try:
            http_get(cluster_ip, 80, 1)
            return True
        except (OSError, RuntimeError):
            return False

    await wait_for(through_service, 60, "the ClusterIP answering", 0.1)
    for _ in range(20):  # warm both paths (ARP, conntrack, kuard)
        http_get(pod_ip, 8080)
        http_get(cluster_ip, 80)
    direct, via = [], []
    for _ in range(n):
        direct.append(http_get(pod_ip, 8080))
        via.append(http_get(cluster_ip, 80))
    return {"pod_ip": direct, "cluster_ip": via}


def slice_for(name: str, addresses: list[str]) -> Obj:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-1", "labels": {"kubernetes.io/service-name": name, "bench": LABEL}},
            "addressType": "IPv4", "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses]}


async def rule_updates(client: Client, services: int, endpoints: int, updates: int) -> dict[str, Any]:
    names = [f"bench-svc-{i}" for i in range(services)]
    ips = {}
    for name in names:
        svc = await client.create("v1", "services", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": {"bench": LABEL}},
            "spec": {"ports": [{"port": 80, "targetPort": 8080}]}}, namespace="default")
        ips[name] = svc["spec"]["clusterIP"]
    t0 = time.perf_counter()
    for i, name in enumerate(names):
        addrs = [f"10.42.{200 + (i * endpoints + j) // 250}.{(i * endpoints + j) % 250 + 1}" for j in range(endpoints)]
        await client.create("discovery.k8s.io/v1", "endpointslices", slice_for(name, addrs), namespace="default")
    created = time.perf_counter()

    def all_programmed() -> bool:
        out, _ = iptables_nat()
        return all(f"-d {ips[n]}/32" in out for n in names) and out.count("-j KUBE-SEP-") >= services * endpoints

    await wait_for(all_programmed, 120, "every Service's rules", 0.02)
    full = time.perf_counter()
    save_times = [iptables_nat()[1] for _ in range(5)]
    lat = []
    for k in range(updates):
        name = names[k % services]
        sl = await client.get("discovery.k8s.io/v1", "endpointslices", f"{name}-1", namespace="default")
        new_ip = f"10.42.250.{k + 1}"
        sl["endpoints"][0]["addresses"] = [new_ip]
        t = time.perf_counter()
        await client.update("discovery.k8s.io/v1", "endpointslices", sl, namespace="default")
        deadline = t + 30
        while True:
            out, _ = iptables_nat()
            if f"--to-destination {new_ip}:8080" in out:
                lat.append(time.perf_counter() - t)
                break
            if time.perf_counter() > deadline:
                raise RuntimeError(f"the rule for {new_ip} never appeared")
            await asyncio.sleep(0.005)
    return {"create_seconds": created - t0, "full_sync_seconds": full - created, "update_latency": lat,
            "iptables_save_seconds": save_times, "rules": services * endpoints}


async def cleanup(client: Client) -> None:
    """The bench's Services (their slices go with them) and pods."""
    with contextlib.suppress(Exception):
        for s in (await client.list("v1", "services", namespace="default", labelSelector=f"bench={LABEL}"))["items"]:
            await client.delete("v1", "services", s["metadata"]["name"], namespace="default")
    with contextlib.suppress(Exception):
        await client.delete("v1", "services", LABEL, namespace="default")
    with contextlib.suppress(Exception):
        for p in (await client.list("v1", "pods", namespace="default", labelSelector=f"app={LABEL}"))["items"]:
            await client.delete("v1", "pods", p["metadata"]["name"], namespace="default")


async def run(args: argparse.Namespace, server: KubeliteServer) -> dict[str, Any]:
    client = Client.from_kubeconfig(server.kubeconfig)
    try:
        await wait_node_ready(client)
        out = {"requests": await request_latency(client, args.requests)}
        out["rules"] = await rule_updates(client, args.services, args.endpoints, args.updates)
        return out
    finally:
        await cleanup(client)
        await client.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--services", type=int, default=100)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--updates", type=int, default=20)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="kl-svc-bench-"))
    lock = open(LOCK, "w")  # noqa: SIM115
    log(f"waiting for {LOCK} (no test run may use the host's KUBE-* chains meanwhile)")
    fcntl.flock(lock, fcntl.LOCK_EX)
    server = KubeliteServer(base, node_name="svc-bench")
    try:
        log("starting kubelite server")
        server.start(timeout=120)
        res = asyncio.run(run(args, server))
    finally:
        server.stop()
        server.cleanup_leftovers()
        shutil.rmtree(base, ignore_errors=True)
        lock.close()
    r, u = res["requests"], res["rules"]
    d50, s50 = pct(r["pod_ip"], 50), pct(r["cluster_ip"], 50)
    print(f"\nrequests from the node, a new connection each ({args.requests} per path, interleaved)")
    print(f"  pod IP     {stats(r['pod_ip'])}")
    print(f"  ClusterIP  {stats(r['cluster_ip'])}")
    print(f"  the Service adds {(s50 - d50) * 1e6:.0f} us at p50 ({(s50 / d50 - 1) * 100:.0f}%)")
    print(f"\nrules for {args.services} Services x {args.endpoints} endpoints ({u['rules']} endpoints)")
    print(f"  creating the slices took {u['create_seconds']:.2f} s; all rules in place "
          f"{u['full_sync_seconds']:.2f} s after the last create")
    print(f"  one endpoint changed -> its rule in the nat table: {stats(u['update_latency'])} "
          f"(max {max(u['update_latency']) * 1000:.1f} ms, {len(u['update_latency'])} updates)")
    print(f"  (iptables-save -t nat itself: {pct(u['iptables_save_seconds'], 50) * 1000:.1f} ms)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
