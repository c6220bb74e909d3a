"""Benchmark of the SQLite store: create throughput and get/list latency.

.venv/bin/python bench/store.py [--creates 20000] [--concurrency 50] [--uvloop] [--sync FULL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubelite.store.sqlite import SQLiteStore  # noqa: E402

VALUE = (
    b'{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x","namespace":"default",'
    b'"labels":{"app":"bench"}},"spec":{"containers":[{"name":"c","image":"busybox"}]}}'
) * 4  # ~600 bytes, a small pod


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * p))] * 1000


def report(name: str, samples: list[float]) -> None:
    print(
        f"{name:<38} n={len(samples):<6} p50={pct(samples, 0.50):7.3f} ms  "
        f"p99={pct(samples, 0.99):7.3f} ms  max={max(samples) * 1000:7.3f} ms"
    )


async def bench(args: argparse.Namespace) -> None:
    tmp = tempfile.mkdtemp(prefix="kubelite-bench-")
    path = os.path.join(tmp, "state.db")
    store = SQLiteStore(path, compact_interval=0, synchronous=args.sync)
    await store.start()
    loop = asyncio.get_running_loop()

    # --- creates: N concurrent creators
    latencies: list[float] = []
    per_worker = args.creates // args.concurrency

    async def creator(w: int) -> None:
        for i in range(per_worker):
            t = time.perf_counter()
            await store.create(f"/registry/pods/ns{w % 10}/pod-{w}-{i}", VALUE)
            latencies.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*(creator(w) for w in range(args.concurrency)))
    elapsed = time.perf_counter() - t0
    n = per_worker * args.concurrency
    print(f"creates: {n} by {args.concurrency} concurrent creators, flat out: {n / elapsed:,.0f}/s")
    report("create latency (saturated)", latencies)

    # --- creates at a fixed offered rate (open loop): latency when not saturated
    latencies = []
    interval = args.concurrency / args.rate
    duration = 5.0

    async def paced_creator(w: int) -> None:
        start = loop.time() + interval * w / args.concurrency
        i = 0
        while True:
            due = start + i * interval
            if due - t0 > duration:
                return
            await asyncio.sleep(max(0.0, due - loop.time()))
            t = time.perf_counter()
            await store.create(f"/registry/secrets/ns{w % 10}/s-{w}-{i}", VALUE)
            latencies.append(time.perf_counter() - t)
            i += 1

    t0 = loop.time()
    await asyncio.gather(*(paced_creator(w) for w in range(args.concurrency)))
    elapsed = loop.time() - t0
    print(
        f"creates: {len(latencies)} by {args.concurrency} creators paced at {args.rate}/s: {len(latencies) / elapsed:,.0f}/s"
    )
    report(f"create latency (at {args.rate}/s)", latencies)

    # --- updates (CAS), same concurrency
    keys = [kv.key for kv in (await store.list("/registry/pods/")).kvs]
    latencies = []

    async def updater(w: int) -> None:
        for key in keys[w :: args.concurrency][: per_worker // 2]:
            kv = await store.get(key)
            assert kv is not None
            t = time.perf_counter()
            await store.update(key, VALUE + b" ", kv.mod_revision)
            latencies.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*(updater(w) for w in range(args.concurrency)))
    elapsed = time.perf_counter() - t0
    print(f"updates: {len(latencies)} CAS updates: {len(latencies) / elapsed:,.0f}/s")
    report("update latency", latencies)

    # --- gets
    samples = []
    for key in random.sample(keys, min(5000, len(keys))):
        t = time.perf_counter()
        await store.get(key)
        samples.append(time.perf_counter() - t)
    report("get (latest)", samples)
    rev = await store.current_revision()
    samples = []
    for key in random.sample(keys, min(2000, len(keys))):
        t = time.perf_counter()
        await store.get(key, rev - 100)
        samples.append(time.perf_counter() - t)
    report("get (old revision)", samples)

    # --- lists: a 1,000-key prefix inside a larger store
    for i in range(1000):
        await store.create(f"/registry/configmaps/bench/cm-{i:05d}", VALUE)
    list_rev = await store.current_revision()
    await store.create("/registry/configmaps/bench/zzz", VALUE)
    cases = [
        ("list 1000 keys (latest)", dict(prefix="/registry/configmaps/bench/")),
        ("list 500 keys (latest, limit=500)", dict(prefix="/registry/configmaps/bench/", limit=500)),
        ("list 1000 keys (old revision)", dict(prefix="/registry/configmaps/bench/", revision=list_rev)),
        ("list 100 keys (limit=100, paged)", dict(prefix="/registry/configmaps/", limit=100)),
    ]
    for name, kwargs in cases:
        samples = []
        for _ in range(200):
            t = time.perf_counter()
            await store.list(**kwargs)
            samples.append(time.perf_counter() - t)
        report(name, samples)
    samples = []
    for _ in range(200):
        t = time.perf_counter()
        await store.count("/registry/pods/")
        samples.append(time.perf_counter() - t)
    report(f"count {len(keys)} keys", samples)

    # --- get latency while writers are busy
    stop = asyncio.Event()

    async def background_writer(w: int) -> None:
        i = 0
        while not stop.is_set():
            await store.create(f"/registry/events/bench/e-{w}-{i}", VALUE)
            i += 1

    writers = [asyncio.create_task(background_writer(w)) for w in range(20)]
    samples = []
    for key in random.sample(keys, min(2000, len(keys))):
        t = time.perf_counter()
        await store.get(key)
        samples.append(time.perf_counter() - t)
        await asyncio.sleep(0)
    stop.set()
    await asyncio.gather(*writers)
    report("get (latest) during 20 writers", samples)

    # --- compaction
    t = time.perf_counter()
    await store.compact(await store.current_revision())
    print(f"compact {await store.current_revision()} revisions: {(time.perf_counter() - t) * 1000:.0f} ms")
    await store.close()
    size = sum(os.path.getsize(path + s) for s in ("", "-wal", "-shm") if os.path.exists(path + s))
    print(f"database size after compaction: {size / 1e6:.1f} MB")
    shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--creates", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--rate", type=int, default=2000, help="offered create rate for the paced run")
    ap.add_argument("--uvloop", action="store_true", help="run on uvloop (as the server does)")
    ap.add_argument("--sync", default="NORMAL", help="PRAGMA synchronous (NORMAL or FULL)")
    args = ap.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.run(bench(args))
    else:
        asyncio.run(bench(args))


if __name__ == "__main__":
    main()
