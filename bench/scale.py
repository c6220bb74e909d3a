"""Scale benchmark on hollow nodes (not a test; issue 14; kubemark + scheduler_perf's
SchedulingBasic in spirit). bench/deployment_scale.py is the older Deployment benchmark.

Starts a control plane only (``kubelite server --disable-agent``) on a temporary data dir and
``kubelite sim --nodes N`` (hollow nodes over the fake runtime), waits for the nodes to be
Ready, creates ``--pods`` bare pods (cpu/memory requests, as SchedulingBasic's) with bounded
parallelism, and follows them with one watch. Meanwhile a prober times single-object and
list calls. Prints and writes JSON (``--out``):

- scheduling: pods/s (whole window, and per-second bins p50/max), create → bound p50/p99;
- pod startup: create → Running seen by the watch, p50/p99;
- API latency p50/p99 per verb and scope, as the prober saw it, and from the server's own
  apiserver_request_duration_seconds histograms (every client: scheduler, hollow nodes, …);
- server RSS (peak) and CPU seconds (user+sys, per wall second), database size.

    PYTHONPATH=. .venv/bin/python bench/scale.py --nodes 100 --pods 1000
    PYTHONPATH=. .venv/bin/python bench/scale.py --nodes 1000 --pods 10000 --sim-processes 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's kubelite, not an installed one

from kubelite.api import errors  # noqa: E402
from kubelite.client.api import Client, resource_path  # noqa: E402

HOLLOW_LABEL = "kubelite.io/hollow-node"
NAMESPACE = "scale"
CLK_TCK = os.sysconf("SC_CLK_TCK")


async def _list(c: Client, plural: str, namespace: str = "", timeout: float = 30.0, **params: Any) -> Any:
    return await c.request("GET", resource_path("v1", plural, namespace), params=params, timeout=timeout)


def _ts(v: str | None) -> float | None:
    from datetime import datetime

    if not v:
        return None
    return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()


def object_times(pods: list[dict[str, Any]]) -> dict[str, Any]:
    """What the objects say (1 s resolution, free of this process's own lag): creation →
    PodScheduled=True (set by the binding) and → Ready=True (set by the hollow node)."""
    sched, ready, bound_at = [], [], []
    for p in pods:
        created = _ts(p["metadata"].get("creationTimestamp"))
        conds = {c.get("type"): c for c in (p.get("status") or {}).get("conditions") or []}
        s = conds.get("PodScheduled") or {}
        r = conds.get("Ready") or {}
        if created is None:
            continue
        if s.get("status") == "True" and (t := _ts(s.get("lastTransitionTime"))) is not None:
            sched.append(t - created)
            bound_at.append(t)
        if r.get("status") == "True" and (t := _ts(r.get("lastTransitionTime"))) is not None:
            ready.append(t - created)
    span = max(bound_at) - min(bound_at) + 1 if bound_at else 0
    bins: dict[int, int] = {}
    for t in bound_at:
        bins[int(t)] = bins.get(int(t), 0) + 1
    return {"scheduled_p50_s": _quantile(sched, 0.5), "scheduled_p99_s": _quantile(sched, 0.99),
            "ready_p50_s": _quantile(ready, 0.5), "ready_p99_s": _quantile(ready, 0.99),
            "bound_pods_per_s": round(len(bound_at) / span, 1) if span else None,
            "bound_per_second_max": max(bins.values(), default=0)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 1)


class ProcStats:
    """RSS and CPU time of a process (and its children) from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_rss = 0

    def _pids(self) -> list[int]:
        out = [self.pid]
        with contextlib.suppress(OSError):
            for child in Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split():
                out.append(int(child))
        return out

    def sample(self) -> tuple[int, float]:
        rss, cpu = 0, 0.0
        for pid in self._pids():
            with contextlib.suppress(OSError, ValueError, IndexError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1]) * 1024
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                cpu += (int(fields[11]) + int(fields[12])) / CLK_TCK
        self.peak_rss = max(self.peak_rss, rss)
        return rss, cpu


def _histograms(text: str, name: str = "apiserver_request_duration_seconds") -> dict[tuple[str, str, str],
                                                                                    dict[float, float]]:
    """A histogram's buckets by (verb, resource[/sub], scope) (the scheduler's: by result)."""
    out: dict[tuple[str, str, str], dict[float, float]] = {}
    prefix = f"{name}_bucket{{"
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        labels_s, value = line[len(prefix):].rsplit("}", 1)
        labels = dict(kv.split("=", 1) for kv in _split_labels(labels_s))
        labels = {k: v.strip('"') for k, v in labels.items()}
        res = labels.get("resource", "") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
        key = (labels.get("verb", labels.get("result", "")), res, labels.get("scope", ""))
        le = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
        b = out.setdefault(key, {})
        b[le] = b.get(le, 0.0) + float(value)
    return out


def _split_labels(s: str) -> list[str]:
    parts, cur, quoted = [], "", False
    for ch in s:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        parts.append(cur)
    return parts


def _hist_quantile(buckets: dict[float, float], q: float) -> float | None:
    """histogram_quantile over cumulative buckets (linear within a bucket)."""
    items = sorted(buckets.items())
    total = items[-1][1] if items else 0
    if total <= 0:
        return None
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in items:
        if c >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * ((rank - prev_c) / max(c - prev_c, 1e-9))
        prev_le, prev_c = le, c
    return prev_le


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dir = Path(tempfile.mkdtemp(prefix="kubelite-scale-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.server: subprocess.Popen[bytes] | None = None
        self.sim: subprocess.Popen[bytes] | None = None
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.created: dict[str, float] = {}  # name -> monotonic time the create was sent
        self.bound: dict[str, float] = {}
        self.create_returned: dict[str, float] = {}
        self.seen: dict[str, float] = {}  # first watch event of each pod
        self.running: dict[str, float] = {}
        self.probe: dict[str, list[float]] = {}
        self.patched: dict[str, float] = {}  # probe ConfigMap value -> when its PATCH returned
        self.watch_lag: list[float] = []
        self.errors: dict[str, int] = {}

    # ------------------------------------------------------------------ processes
    def start_server(self) -> None:
        a = self.args
        cmd = [sys.executable, "-m", "kubelite", "server", "--data-dir", str(self.data), "--bind-address",
               "127.0.0.1", "--port", str(self.port), "--disable-agent", "--disable", "coredns",
               "--cluster-cidr", "10.128.0.0/9", "--node-cidr-mask-size", "24",
               "--node-monitor-grace-period", str(a.node_grace)]
        if a.datastore_endpoint:
            cmd += ["--datastore-endpoint", a.datastore_endpoint]
        if a.scheduler_process:  # kube-scheduler as its own process (its own core)
            cmd.append("--disable-scheduler")
        self.server = subprocess.Popen(cmd, stdout=open(self.dir / "server.log", "ab"), stderr=subprocess.STDOUT,
                                       cwd=ROOT, start_new_session=True)
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise RuntimeError(f"server exited: {(self.dir / 'server.log').read_text()[-2000:]}")
            with contextlib.suppress(Exception):
                with urllib.request.urlopen(f"{self.url}/readyz", context=ctx, timeout=2) as r:
                    if r.read() == b"ok" and (self.data / "kubeconfig.yaml").exists():
                        return
            time.sleep(0.2)
        raise TimeoutError("server not ready")

    def start_scheduler(self) -> None:
        self.scheduler = subprocess.Popen(
            [sys.executable, "-m", "kubelite.scheduler", "--kubeconfig", str(self.data / "kubeconfig.yaml")],
            stdout=open(self.dir / "scheduler.log", "ab"), stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)

    def start_sim(self) -> None:
        a = self.args
        cmd = [sys.executable, "-m", "kubelite", "sim", "--nodes", str(a.nodes), "--kubeconfig",
               str(self.data / "kubeconfig.yaml"), "--processes", str(a.sim_processes),
               "--lease-interval", str(a.lease_interval), "--node-status-interval", str(a.node_status_interval)]
        if a.fake_latencies:
            cmd += ["--fake-latencies", a.fake_latencies]
        self.sim = subprocess.Popen(cmd, stdout=open(self.dir / "sim.log", "ab"), stderr=subprocess.STDOUT,
                                    cwd=ROOT, start_new_session=True)

    def stop(self) -> None:
        for p in (self.sim, self.scheduler, self.server):
            if p is not None and p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        for p in (self.sim, self.scheduler, self.server):
            if p is None:
                continue
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def db_size(self) -> int:
        return sum(f.stat().st_size for f in (self.data / "db").glob("*") if f.is_file()) \
            if (self.data / "db").exists() else 0

    # ------------------------------------------------------------------ load
    async def wait_nodes(self, c: Client) -> float:
        t0 = time.monotonic()
        deadline = t0 + self.args.node_timeout
        ready = 0
        while time.monotonic() < deadline:
            if self.sim is not None and self.sim.poll() is not None:
                raise RuntimeError(f"sim exited: {(self.dir / 'sim.log').read_text()[-2000:]}")
            lst = await _list(c, "nodes", timeout=120, labelSelector=f"{HOLLOW_LABEL}=true")
            ready = sum(1 for n in lst.get("items") or [] if any(
                x.get("type") == "Ready" and x.get("status") == "True"
                for x in (n.get("status") or {}).get("conditions") or []))
            if ready >= self.args.nodes:
                return time.monotonic() - t0
            await asyncio.sleep(2)
        raise TimeoutError(f"only {ready}/{self.args.nodes} hollow nodes Ready")

    def _pod(self, i: int) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"p-{i}", "namespace": NAMESPACE, "labels": {"app": f"a{i % 10}"}},
                "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
                                         "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}

    async def create_pods(self, c: Client) -> None:
        sem = asyncio.Semaphore(self.args.create_parallelism)

        async def one(i: int) -> None:
            async with sem:
                name = f"p-{i}"
                self.created[name] = t = time.monotonic()
                try:
                    await c.create("v1", "pods", self._pod(i), namespace=NAMESPACE)
                    self.create_returned[name] = time.monotonic()
                    self.probe.setdefault("POST pods (namespace)", []).append(time.monotonic() - t)
                except (errors.StatusError, OSError, TimeoutError) as exc:
                    self.errors[f"create: {type(exc).__name__}"] = self.errors.get(f"create: {type(exc).__name__}", 0) + 1
                    self.created.pop(name, None)

        await asyncio.gather(*(one(i) for i in range(self.args.pods)))

    async def watch_pods(self, c: Client, rv: str, done: asyncio.Event) -> None:
        while not done.is_set():
            try:
                async for etype, pod in c.watch("v1", "pods", namespace=NAMESPACE, resource_version=rv,
                                                timeout_seconds=600):
                    m = pod.get("metadata") or {}
                    rv = m.get("resourceVersion") or rv
                    if etype == "BOOKMARK":
                        continue
                    name = m.get("name", "")
                    now = time.monotonic()
                    self.seen.setdefault(name, now)
                    if (pod.get("spec") or {}).get("nodeName") and name not in self.bound:
                        self.bound[name] = now
                    if (pod.get("status") or {}).get("phase") == "Running" and name not in self.running:
                        self.running[name] = now
                    if len(self.running) >= self.args.pods:
                        done.set()
                        return
            except errors.StatusError as exc:
                if exc.code == 410:  # expired: what we missed is still in a list
                    lst = await _list(c, "pods", NAMESPACE, timeout=300)
                    now = time.monotonic()
                    for pod in lst.get("items") or []:
                        name = pod["metadata"]["name"]
                        if (pod.get("spec") or {}).get("nodeName"):
                            self.bound.setdefault(name, now)
                        if (pod.get("status") or {}).get("phase") == "Running":
                            self.running.setdefault(name, now)
                    rv = lst["metadata"]["resourceVersion"]
                else:
                    raise
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                await asyncio.sleep(0.5)

    async def prober(self, c: Client, done: asyncio.Event) -> None:
        """Single-object and list calls at a steady pace while the load runs."""
        probe_ns = "scale-probe"
        with contextlib.suppress(errors.StatusError):
            await c.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                "metadata": {"name": probe_ns}})
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe"}, "data": {"n": "0"}}
        with contextlib.suppress(errors.StatusError):
            await c.create("v1", "configmaps", cm, namespace=probe_ns)
        i = 0

        async def timed(label: str, fn: Any) -> None:
            t = time.monotonic()
            try:
                await fn
                self.probe.setdefault(label, []).append(time.monotonic() - t)
            except (errors.StatusError, OSError, TimeoutError) as exc:
                self.errors[f"{label}: {type(exc).__name__}"] = self.errors.get(f"{label}: {type(exc).__name__}", 0) + 1

        while not done.is_set():
            i += 1
            await timed("GET configmaps (namespace)", c.get("v1", "configmaps", "probe", namespace=probe_ns))
            await timed("PATCH configmaps (namespace)", c.patch("v1", "configmaps", "probe", {"data": {"n": str(i)}},
                                                                namespace=probe_ns))
            self.patched[str(i)] = time.monotonic()
            await timed("GET nodes (cluster)", c.get("v1", "nodes", "hollow-node-0"))
            name = f"probe-{i}"
            await timed("POST configmaps (namespace)", c.create("v1", "configmaps", {
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}, namespace=probe_ns))
            await timed("DELETE configmaps (namespace)", c.delete("v1", "configmaps", name, namespace=probe_ns))
            if i % 5 == 0:
                await timed("LIST pods (namespace, limit 500)", _list(c, "pods", NAMESPACE, timeout=120, limit=500))
                await timed("LIST nodes (cluster, limit 500)", _list(c, "nodes", timeout=120, limit=500))
            if i % 25 == 0:
                await timed("LIST pods (cluster, all)", _list(c, "pods", timeout=300))
            await asyncio.sleep(self.args.probe_interval)

    async def lag_watch(self, c: Client, done: asyncio.Event) -> None:
        """Watch delivery lag: the probe ConfigMap's PATCH returned → its event arrived here."""
        while not done.is_set():
            with contextlib.suppress(errors.StatusError, OSError, TimeoutError, asyncio.IncompleteReadError):
                async for etype, cm in c.watch("v1", "configmaps", namespace="scale-probe", timeout_seconds=600,
                                               fieldSelector="metadata.name=probe"):
                    n = ((cm.get("data") or {}).get("n")) if etype == "MODIFIED" else None
                    if n is not None and n in self.patched:
                        self.watch_lag.append(max(0.0, time.monotonic() - self.patched.pop(n)))
            await asyncio.sleep(0.2)

    async def sampler(self, stats: ProcStats, done: asyncio.Event) -> None:
        while not done.is_set():
            stats.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 1.0)

    async def run(self) -> dict[str, Any]:
        a = self.args
        t_start = time.monotonic()
        self.start_server()
        assert self.server is not None
        server_stats = ProcStats(self.server.pid)
        if a.scheduler_process:
            self.start_scheduler()
        self.start_sim()
        async with Client.from_kubeconfig(self.data / "kubeconfig.yaml", user_agent="kubelite-bench-scale",
                                          limit=a.create_parallelism + 10) as c:
            nodes_ready_s = await self.wait_nodes(c)
            with contextlib.suppress(errors.StatusError):
                await c.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                    "metadata": {"name": NAMESPACE}})
            # the default ServiceAccount must exist before pods can be created (admission)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    await c.get("v1", "serviceaccounts", "default", namespace=NAMESPACE)
                    break
                except errors.StatusError:
                    await asyncio.sleep(0.2)
            metrics_before = _histograms(await c.text("/metrics", timeout=60))
            rss_idle, cpu_before = server_stats.sample()
            others = {"sim": self.sim, "scheduler": self.scheduler}
            other_stats = {k: ProcStats(p.pid) for k, p in others.items() if p is not None}
            other_before = {k: st.sample()[1] for k, st in other_stats.items()}
            rv = (await c.list("v1", "pods", namespace=NAMESPACE, limit=1))["metadata"]["resourceVersion"]
            done = asyncio.Event()
            watch = asyncio.create_task(self.watch_pods(c, rv, done))
            probe = asyncio.create_task(self.prober(c, done))
            lag = asyncio.create_task(self.lag_watch(c, done))
            sampler = asyncio.create_task(self.sampler(server_stats, done))
            t0 = time.monotonic()
            await self.create_pods(c)
            created_s = time.monotonic() - t0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), a.pod_timeout)
            done.set()
            wall = time.monotonic() - t0
            _, cpu_after = server_stats.sample()
            other_cpu = {k: round(st.sample()[1] - other_before[k], 1) for k, st in other_stats.items()}
            for t in (watch, probe, lag, sampler):
                t.cancel()
                with contextlib.suppress(BaseException):
                    await t
            objs = await _list(c, "pods", NAMESPACE, timeout=600)
            from_objects = object_times(objs.get("items") or [])
            metrics_text = await c.text("/metrics", timeout=120)
            metrics_after = _histograms(metrics_text)
            attempts = _histograms(metrics_text, "scheduler_scheduling_attempt_duration_seconds")
        sched_lat = [self.bound[n] - self.created[n] for n in self.bound if n in self.created]
        pod_lag = [max(0.0, self.seen[n] - self.create_returned[n]) for n in self.seen if n in self.create_returned]
        start_lat = [self.running[n] - self.created[n] for n in self.running if n in self.created]
        bins: dict[int, int] = {}
        for t in self.bound.values():
            bins[int(t - t0)] = bins.get(int(t - t0), 0) + 1
        per_sec = [bins.get(s, 0) for s in range(min(bins, default=0), max(bins, default=-1) + 1)]
        bound_span = (max(self.bound.values()) - t0) if self.bound else 0.0
        server_hist = {}
        for key, b in sorted(metrics_after.items()):
            before = metrics_before.get(key, {})
            delta = {le: c - before.get(le, 0.0) for le, c in b.items()}
            count = max(delta.values(), default=0)
            if count <= 0 or key[0] in ("WATCH", "WATCHLIST", "CONNECT"):
                continue
            server_hist[f"{key[0]} {key[1]} ({key[2]})"] = {
                "count": int(count), "p50_ms": _ms(_hist_quantile(delta, 0.5)),
                "p99_ms": _ms(_hist_quantile(delta, 0.99))}
        result = {
            "nodes": a.nodes, "pods": a.pods, "datastore": "etcd" if a.datastore_endpoint else "sqlite",
            "sim_processes": a.sim_processes, "scheduler": "own process" if a.scheduler_process else "in the server", "fake_latencies": a.fake_latencies or "0",
            "lease_interval_s": a.lease_interval,
            "nodes_ready_s": round(nodes_ready_s, 1),
            "pods_created": len(self.created), "pods_bound": len(self.bound), "pods_running": len(self.running),
            "create_wall_s": round(created_s, 1), "wall_s": round(wall, 1),
            "scheduling": {
                "throughput_pods_per_s": round(len(self.bound) / bound_span, 1) if bound_span else None,
                "per_second_p50": _quantile([float(x) for x in per_sec], 0.5), "per_second_max": max(per_sec, default=0),
                "latency_p50_ms": _ms(_quantile(sched_lat, 0.5)), "latency_p99_ms": _ms(_quantile(sched_lat, 0.99)),
                "attempt_duration": {k[0]: {"count": int(max(b.values(), default=0)),
                                            "p50_ms": _ms(_hist_quantile(b, 0.5)),
                                            "p99_ms": _ms(_hist_quantile(b, 0.99))} for k, b in attempts.items()},
                "bound_per_second": per_sec if len(per_sec) <= 600 else None},
            "pod_watch_lag": {"what": "create returned -> its first event on a watch of the namespace's pods",
                              "p50_ms": _ms(_quantile(pod_lag, 0.5)), "p99_ms": _ms(_quantile(pod_lag, 0.99)),
                              "max_ms": _ms(max(pod_lag, default=None) if pod_lag else None)},
            "watch_lag": {"count": len(self.watch_lag), "p50_ms": _ms(_quantile(self.watch_lag, 0.5)),
                          "p99_ms": _ms(_quantile(self.watch_lag, 0.99))},
            "from_objects": from_objects,
            "pod_startup": {"p50_ms": _ms(_quantile(start_lat, 0.5)), "p99_ms": _ms(_quantile(start_lat, 0.99))},
            "api_probe": {k: {"count": len(v), "p50_ms": _ms(_quantile(v, 0.5)), "p99_ms": _ms(_quantile(v, 0.99))}
                          for k, v in sorted(self.probe.items())},
            "api_server_histograms": server_hist,
            "errors": self.errors,
            "server": {"rss_idle_mb": round(rss_idle / 2**20, 1), "rss_peak_mb": round(server_stats.peak_rss / 2**20, 1),
                       "cpu_s": round(cpu_after - cpu_before, 1),
                       "cpu_per_wall_s": round((cpu_after - cpu_before) / wall, 2) if wall else None},
            "other_processes_cpu_s": other_cpu,
            "db_bytes": self.db_size(),
            "total_s": round(time.monotonic() - t_start, 1),
        }
        return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--pods", type=int, default=1000)
    ap.add_argument("--sim-processes", type=int, default=1, help="processes the hollow nodes run in")
    ap.add_argument("--create-parallelism", type=int, default=20, help="pod creations in flight")
    ap.add_argument("--lease-interval", type=float, default=10.0, help="hollow nodes' Lease renewal period")
    ap.add_argument("--node-status-interval", type=float, default=300.0, help="hollow nodes' status period")
    ap.add_argument("--node-grace", type=float, default=50.0, help="the server's --node-monitor-grace-period")
    ap.add_argument("--fake-latencies", default="", help="the fake runtime's latencies (kubelite sim's flag)")
    ap.add_argument("--scheduler-process", action="store_true",
                    help="run the scheduler as its own process (server --disable-scheduler + python -m kubelite.scheduler)")
    ap.add_argument("--datastore-endpoint", default="", help="etcd URL(s) instead of SQLite")
    ap.add_argument("--probe-interval", type=float, default=0.2, help="pause between prober rounds")
    ap.add_argument("--node-timeout", type=float, default=900.0, help="how long the nodes may take to be Ready")
    ap.add_argument("--pod-timeout", type=float, default=1800.0, help="how long the pods may take to be Running")
    ap.add_argument("--out", default="", help="write the JSON here (default bench/results/scale-N-P.json)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data dir and logs")
    args = ap.parse_args()
    bench = Bench(args)
    try:
        result = asyncio.run(bench.run())
    finally:
        bench.stop()
        if not args.keep:
            shutil.rmtree(bench.dir, ignore_errors=True)
        else:
            print(f"data and logs kept in {bench.dir}", file=sys.stderr)
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"scale-{args.nodes}-{args.pods}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
