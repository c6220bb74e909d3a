"""API benchmark (not a test): single GET, LIST of 1,000 pods, create, watch fan-out.

Starts its own `kubelite server --disable-agent` on a temporary data dir and drives it over
HTTPS with the shared async client. Prints latency percentiles and throughput.

    .venv/bin/python bench/api.py [--pods 1000] [--concurrency 50] [--watchers 100]
        [--etcd | --datastore-endpoint https://h:2379 [--datastore-cafile F ...]]

With --etcd (or --datastore-endpoint) the same run follows on a server on etcd, for the two
datastores side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from kubelite.client.api import Client


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def fmt(name: str, xs: list[float], extra: str = "") -> str:
    ms = [x * 1000 for x in xs]
    return (f"{name:<28} n={len(xs):<6} p50={pct(ms, 50):7.2f} ms  p99={pct(ms, 99):7.2f} ms  "
            f"mean={statistics.fmean(ms):7.2f} ms {extra}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far: a figure that a busy machine
    inflates far less than latency (other processes delay the server but do not bill it)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(data_dir: Path, extra: list[str] | None = None) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "kubelite", "server", "--data-dir", str(data_dir),
                             "--bind-address", "127.0.0.1", "--port", str(port), "--disable-agent",
                             "--disable-scheduler", *(extra or [])],
                            stdout=subprocess.DEVNULL, stderr=open(data_dir.parent / "server.log", "wb"))
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", context=ctx, timeout=1) as r:
                if r.read() == b"ok" and (data_dir / "kubeconfig.yaml").exists():
                    return proc, port
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("server did not become ready")


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "bench"}},
            "spec": {"containers": [{"name": "kuard", "image": "kubelite.local/kuard-amd64:blue",
                                     "ports": [{"containerPort": 8080, "name": "http"}],
                                     "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}


async def timed(coro) -> float:
    t = time.perf_counter()
    await coro
    return time.perf_counter() - t


async def bench(kubeconfig: Path, n_pods: int, conc: int, n_watchers: int, server_pid: int) -> None:
    def cpu_per(n: int, since: float) -> str:
        return f"server cpu={(cpu_seconds(server_pid) - since) * 1e6 / n:.0f} us/op"

    async with Client.from_kubeconfig(kubeconfig, user_agent="bench", limit=conc + n_watchers + 10) as c:
        await c.create("v1", "namespaces", {"metadata": {"name": "bench"}})
        # create: a third of the pods one at a time, then 8 and `conc` concurrent clients
        names: list[str] = []
        for level in (1, 8, conc):
            sem = asyncio.Semaphore(level)
            batch = [f"p{level:03d}-{i:05d}" for i in range(n_pods // 3 if level != conc else n_pods - 2 * (n_pods // 3))]
            names += batch

            async def create(name: str, sem: asyncio.Semaphore = sem) -> float:
                async with sem:
                    return await timed(c.create("v1", "pods", pod(name), namespace="bench"))

            t0, c0 = time.perf_counter(), cpu_seconds(server_pid)
            lat = await asyncio.gather(*(create(n) for n in batch))
            dt = time.perf_counter() - t0
            print(fmt(f"create ({level} concurrent)", lat,
                      f"throughput={len(batch) / dt:.0f}/s {cpu_per(len(batch), c0)}"))
        # single-object GET
        for level in (1, 8, conc):
            sem = asyncio.Semaphore(level)

            async def get(i: int, sem: asyncio.Semaphore = sem) -> float:
                async with sem:
                    return await timed(c.get("v1", "pods", names[i % len(names)], namespace="bench"))

            t0, c0 = time.perf_counter(), cpu_seconds(server_pid)
            lat = await asyncio.gather(*(get(i) for i in range(2000)))
            dt = time.perf_counter() - t0
            print(fmt(f"get ({level} concurrent)", lat, f"throughput={2000 / dt:.0f}/s {cpu_per(2000, c0)}"))
        # LIST of all pods
        c0 = cpu_seconds(server_pid)
        lat = [await timed(c.list("v1", "pods", namespace="bench")) for _ in range(30)]
        print(fmt(f"list {len(names)} pods", lat, cpu_per(30, c0)))
        lat = [await timed(c.list("v1", "pods", namespace="bench", limit=500)) for _ in range(30)]
        print(fmt("list limit=500", lat))
        # watch fan-out: n_watchers watch the namespace; each new pod must reach all of them
        rv = (await c.list("v1", "pods", namespace="bench", limit=1))["metadata"]["resourceVersion"]
        n_events = 100
        created_at: dict[str, float] = {}
        delays: list[float] = []
        done = asyncio.Event()
        remaining = [n_watchers * n_events]

        async def watcher() -> None:
            async for etype, obj in c.watch("v1", "pods", namespace="bench", resource_version=rv,
                                            labelSelector="app=fanout"):
                if etype != "ADDED":
                    continue
                delays.append(time.perf_counter() - created_at[obj["metadata"]["name"]])
                remaining[0] -= 1
                if remaining[0] == 0:
                    done.set()

        tasks = [asyncio.create_task(watcher()) for _ in range(n_watchers)]
        c0 = cpu_seconds(server_pid)
        for i in range(n_events):
            name = f"f{i:04d}"
            body = pod(name)
            body["metadata"]["labels"] = {"app": "fanout"}
            created_at[name] = time.perf_counter()
            await c.create("v1", "pods", body, namespace="bench")
        t0 = time.perf_counter()
        try:
            await asyncio.wait_for(done.wait(), 60)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        print(fmt(f"watch fan-out ({n_watchers} w.)", delays,
                  f"events delivered={len(delays)} drain={time.perf_counter() - t0:.2f}s "
                  f"{cpu_per(n_events, c0)} (per created pod, {n_watchers} deliveries)"))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--watchers", type=int, default=100)
    ap.add_argument("--etcd", action="store_true",
                    help="also run it on etcd: a single member this script starts on loopback")
    ap.add_argument("--datastore-endpoint", default="", help="also run it on this etcd (https://h:2379,...)")
    ap.add_argument("--datastore-cafile", default="")
    ap.add_argument("--datastore-certfile", default="")
    ap.add_argument("--datastore-keyfile", default="")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kubelite-bench-"))
    etcd_proc = None
    try:
        runs: list[tuple[str, list[str]]] = [("SQLite", [])]
        endpoint = args.datastore_endpoint
        if args.etcd and not endpoint:
            from store_etcd import start_etcd  # bench/store_etcd.py

            etcd_proc, endpoint = start_etcd(tmp)
        if endpoint:
            flags = ["--datastore-endpoint", endpoint, "--datastore-prefix", f"/bench-{os.getpid()}"]
            for name in ("cafile", "certfile", "keyfile"):
                if getattr(args, f"datastore_{name}"):
                    flags += [f"--datastore-{name}", getattr(args, f"datastore_{name}")]
            runs.append((f"etcd {endpoint}", flags))
        for label, extra in runs:
            data = tmp / label.split()[0]
            proc, port = start_server(data, extra)
            try:
                print(f"--- {label}: server pid {proc.pid} on :{port}, RSS at start {rss_mb(proc.pid):.0f} MB, "
                      f"cpus {os.cpu_count()}")
                asyncio.run(bench(data / "kubeconfig.yaml", args.pods, args.concurrency, args.watchers, proc.pid))
                print(f"server RSS after: {rss_mb(proc.pid):.0f} MB")
            finally:
                proc.terminate()
                proc.wait(10)
    finally:
        if etcd_proc is not None:
            etcd_proc.terminate()
            etcd_proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
