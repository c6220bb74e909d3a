"""Benchmark (not a test): the SQLite and the etcd store side by side, one workload, one run.

Create p50/p99 and throughput with N concurrent creators, GET p50/p99, and watch fan-out (W
local watchers on one resource: time from a create's acknowledgement until every watcher has
the event). Without --datastore-endpoint it starts its own single-member etcd on loopback in a
temporary dir (Debian etcd-server) and removes it afterwards.

    .venv/bin/python bench/store_etcd.py [--creates 5000] [--concurrency 50] [--watchers 100]
        [--datastore-endpoint https://h:2379 --datastore-cafile F --datastore-certfile F --datastore-keyfile F]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubelite.store.etcd import EtcdStore, EtcdTLS  # noqa: E402
from kubelite.store.sqlite import SQLiteStore  # noqa: E402

VALUE = (
    b'{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x","namespace":"default",'
    b'"labels":{"app":"bench"}},"spec":{"containers":[{"name":"c","image":"busybox"}]}}'
) * 4  # ~600 bytes, a small pod


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * p))] * 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_etcd(tmp: Path) -> tuple[subprocess.Popen, str]:
    etcd = shutil.which("etcd")
    if etcd is None:
        raise SystemExit("etcd is not installed (apt-get install etcd-server), or pass --datastore-endpoint")
    client, peer = free_port(), free_port()
    url, purl = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    proc = subprocess.Popen(
        [etcd, "--name", "bench", "--data-dir", str(tmp / "etcd"), "--listen-client-urls", url,
         "--advertise-client-urls", url, "--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
         "--initial-cluster", f"bench={purl}", "--log-level", "error", "--logger", "zap"],
        stdout=subprocess.DEVNULL, stderr=open(tmp / "etcd.log", "wb"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", client)) == 0:
                return proc, url
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("etcd did not start")


async def run(store: Any, args: argparse.Namespace, prefix: str) -> dict[str, float]:
    await store.start()
    out: dict[str, float] = {}
    try:
        latencies: list[float] = []
        per_worker = args.creates // args.concurrency

        async def creator(w: int) -> None:
            for i in range(per_worker):
                t = time.perf_counter()
                await store.create(f"{prefix}/core/pods/ns{w % 10}/pod-{w}-{i}", VALUE)
                latencies.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        await asyncio.gather(*(creator(w) for w in range(args.concurrency)))
        elapsed = time.perf_counter() - t0
        out["create/s"] = len(latencies) / elapsed
        out["create p50 ms"] = pct(latencies, 0.50)
        out["create p99 ms"] = pct(latencies, 0.99)

        keys = [kv.key for kv in (await store.list(f"{prefix}/core/pods/")).kvs]
        samples = []
        for key in random.sample(keys, min(2000, len(keys))):
            t = time.perf_counter()
            await store.get(key)
            samples.append(time.perf_counter() - t)
        out["get p50 ms"] = pct(samples, 0.50)
        out["get p99 ms"] = pct(samples, 0.99)

        samples = []
        for _ in range(20):
            t = time.perf_counter()
            await store.list(f"{prefix}/core/pods/")
            samples.append(time.perf_counter() - t)
        out[f"list {len(keys)} p50 ms"] = pct(samples, 0.50)

        # watch fan-out: W watchers on one resource, one create at a time
        watchers = [store.watch(f"{prefix}/core/configmaps/", 0) for _ in range(args.watchers)]
        fanout: list[float] = []
        for i in range(50):
            t = time.perf_counter()
            await store.create(f"{prefix}/core/configmaps/ns/cm-{i}", VALUE)
            await asyncio.gather(*(w.__anext__() for w in watchers))
            fanout.append(time.perf_counter() - t)
        for w in watchers:
            await w.aclose()
        out[f"watch fan-out x{args.watchers} p50 ms"] = pct(fanout, 0.50)
        out[f"watch fan-out x{args.watchers} p99 ms"] = pct(fanout, 0.99)
    finally:
        await store.close()
    return out


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="kubelite-bench-"))
    proc = None
    try:
        endpoint = args.datastore_endpoint
        if not endpoint:
            proc, endpoint = start_etcd(tmp)
        sqlite = await run(SQLiteStore(str(tmp / "state.db"), compact_interval=0), args, "/registry")
        tls = EtcdTLS(args.datastore_cafile, args.datastore_certfile, args.datastore_keyfile)
        etcd = await run(EtcdStore(endpoint, tls=tls, key_prefix=f"/bench-{uuid.uuid4().hex[:8]}",
                                   compact_interval=0), args, "/registry")
        print(f"{args.creates} creates by {args.concurrency} concurrent creators, ~{len(VALUE)} B values; "
              f"etcd {'at ' + args.datastore_endpoint if args.datastore_endpoint else 'single member, loopback'}")
        print(f"{'':<30} {'SQLite':>10} {'etcd':>10}")
        for k in sqlite:
            print(f"{k:<30} {sqlite[k]:>10.2f} {etcd[k]:>10.2f}")
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--creates", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--watchers", type=int, default=100)
    ap.add_argument("--datastore-endpoint", default="")
    ap.add_argument("--datastore-cafile")
    ap.add_argument("--datastore-certfile")
    ap.add_argument("--datastore-keyfile")
    args = ap.parse_args()
    import uvloop

    uvloop.install()
    asyncio.run(main(args))
