"""Scheduler benchmark (not a test): time to schedule N pods over M fake nodes, in process.

Drives :class:`kubelite.scheduler.Scheduler` through its informer handlers with an in-memory
client (bindings and events are accepted at once, no HTTP), so what is measured is the
scheduling cycle itself: filter, score, assume. Each scenario creates M nodes, feeds N
pending pods and times ``schedule_one`` for all of them.

Scenarios: ``plain`` (requests only), ``anti`` (10 workloads whose replicas have preferred
pod anti-affinity on their own label plus a ScheduleAnyway zone spread: every cycle looks at
every placed pod), ``required`` (required anti-affinity per group of 3 pods, so nearly every
pod has labels of its own, and a DoNotSchedule hostname spread with maxSkew 1).

    .venv/bin/python bench/scheduler.py [--pods 1000] [--nodes 5] [--scenario all]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from kubelite.scheduler import Scheduler


class _FakeClient:
    """Accepts every write at once."""

    async def request(self, method: str, path: str, body: Any = None, **kw: Any) -> dict[str, Any]:
        return {}

    async def create(self, api_version: str, plural: str, obj: dict[str, Any], namespace: str = "") -> Any:
        return obj

    async def patch(self, api_version: str, plural: str, name: str, patch: Any, namespace: str = "",
                    **kw: Any) -> Any:
        return {}


def _node(i: int) -> dict[str, Any]:
    name = f"node-{i}"
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                   "topology.kubernetes.io/zone": f"zone-{i % 3}"}},
            "spec": {},
            "status": {"allocatable": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def _pod(i: int, scenario: str) -> dict[str, Any]:
    app = f"app-{i % 10}"
    spec: dict[str, Any] = {"schedulerName": "default-scheduler", "containers": [
        {"name": "c", "image": "x", "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
    sel = {"matchLabels": {"app": app}}
    if scenario == "anti":
        spec["affinity"] = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": {"labelSelector": sel,
                                                "topologyKey": "kubernetes.io/hostname"}}]}}
        spec["topologySpreadConstraints"] = [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                              "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": sel}]
    elif scenario == "required":
        group = {"matchLabels": {"group": f"g-{i // 3}"}}
        spec["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": group, "topologyKey": "kubernetes.io/hostname"}]}}
        spec["topologySpreadConstraints"] = [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                              "whenUnsatisfiable": "DoNotSchedule", "labelSelector": sel}]
    labels = {"app": app, "pod-template-hash": f"h{i % 10}"}
    if scenario == "required":
        labels["group"] = f"g-{i // 3}"
    return {"metadata": {"name": f"p-{i}", "namespace": "bench", "uid": f"uid-{i}", "labels": labels},
            "spec": spec, "status": {"phase": "Pending"}}


async def _run(pods: int, nodes: int, scenario: str) -> tuple[float, int, dict[str, int]]:
    s = Scheduler(_FakeClient())  # type: ignore[arg-type]
    for i in range(nodes):
        s._on_node("ADDED", _node(i))
    objs = [_pod(i, scenario) for i in range(pods)]
    for p in objs:
        s.pods[p["metadata"]["uid"]] = p
    t0 = time.perf_counter()
    placed: dict[str, int] = {}
    for p in objs:
        host = s.schedule_one(p["metadata"]["uid"], p)
        if host:
            placed[host] = placed.get(host, 0) + 1
    elapsed = time.perf_counter() - t0
    for t in list(s._tasks):
        t.cancel()
    await asyncio.gather(*s._tasks, return_exceptions=True)
    return elapsed, sum(placed.values()), dict(sorted(placed.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=1000)
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--scenario", choices=("plain", "anti", "required", "all"), default="all")
    args = ap.parse_args()
    scenarios = ("plain", "anti", "required") if args.scenario == "all" else (args.scenario,)
    for sc in scenarios:
        elapsed, n, placed = asyncio.run(_run(args.pods, args.nodes, sc))
        print(f"{sc:9s} {args.pods} pods / {args.nodes} nodes: {elapsed:.3f}s "
              f"({elapsed / max(args.pods, 1) * 1e3:.3f} ms/pod), scheduled {n}, per node {placed}")


if __name__ == "__main__":
    main()
