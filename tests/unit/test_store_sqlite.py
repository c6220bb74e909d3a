"""Tests for the SQLite (kine-style) store beyond the shared contract (tests/store_contract.py):
its ring and database replay, overflow, compaction on disk, persistence and crash durability."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kubelite.store.base import (
    KV,
    CompactedError,
    Event,
    FutureRevisionError,
)
from kubelite.store.sqlite import SQLiteStore, WatchOverflowError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def store(tmp_path: Path):
    s = SQLiteStore(str(tmp_path / "state.db"), compact_interval=0)
    await s.start()
    try:
        yield s
    finally:
        await s.close()


async def collect(it, n: int, timeout: float = 5.0) -> list[Event]:
    out: list[Event] = []

    async def run() -> None:
        async for ev in it:
            out.append(ev)
            if len(out) >= n:
                return

    await asyncio.wait_for(run(), timeout)
    return out


def rows(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT COUNT(*) FROM kine").fetchone()[0]
    finally:
        conn.close()


def pragma(path: Path, name: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        conn.close()


# ---------------------------------------------------------------------- CRUD


# ---------------------------------------------------------------------- LIST


async def test_large_list_fast_enough(store: SQLiteStore) -> None:
    await asyncio.gather(*(store.create(f"/big/{i:05d}", b"{}" * 200) for i in range(1000)))
    loop = asyncio.get_running_loop()
    best = 1.0
    for _ in range(5):
        t = loop.time()
        res = await store.list("/big/")
        best = min(best, loop.time() - t)
    assert len(res.kvs) == 1000
    assert best < 0.05  # typically ~2 ms; generous bound for slow CI machines


# ---------------------------------------------------------------------- WATCH


async def test_watch_replay_from_db_and_ring_is_identical(store: SQLiteStore) -> None:
    """Events replayed from the database equal the ones delivered from the in-memory ring."""
    await store.create("/w/a", b"1")
    await store.update("/w/a", b"2", 0)
    await store.delete("/w/a")
    await store.create("/w/a", b"3")
    await store.create("/w/b", b"4")
    n = await store.current_revision()
    ring_events = await collect(_fresh_watch(store, 1, from_db=False), n - 1)
    db_events = await collect(_fresh_watch(store, 1, from_db=True), n - 1)
    assert ring_events == db_events
    assert [e.kv.mod_revision for e in db_events] == list(range(2, n + 1))
    assert db_events[0].prev == KV("/w/a", b"1", 1, 1)
    assert db_events[1].type == "DELETE" and db_events[1].kv == KV("/w/a", b"2", 1, 3)
    assert db_events[2].created and db_events[2].prev is None  # re-create after delete


def _fresh_watch(store: SQLiteStore, from_revision: int, *, from_db: bool):
    if from_db:
        saved = store._ring_floor
        store._ring_floor = store._pub_rev  # pretend the ring is empty: force a database replay
        try:
            return store.watch("/w/", from_revision)
        finally:
            store._ring_floor = saved
    return store.watch("/w/", from_revision)


@pytest.mark.parametrize("force_db", [False, True])
async def test_watch_replay_then_live_without_gaps(
    store: SQLiteStore, force_db: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kubelite.store.sqlite as mod

    if force_db:
        monkeypatch.setattr(mod, "_REPLAY_PAGE", 7)  # several replay pages
    for i in range(50):
        await store.create(f"/g/{i}", b"v")
    start_rev = 10
    per_writer = 60
    total = 50 + 5 * per_writer * 2

    async def writer(w: int) -> None:
        for i in range(per_writer):
            kv = await store.create(f"/g/w{w}-{i}", b"v")
            await store.update(kv.key, b"v2", kv.mod_revision)
            await asyncio.sleep(0)

    writers = [asyncio.create_task(writer(w)) for w in range(5)]
    await asyncio.sleep(0.005)  # the watch starts in the middle of the burst
    if force_db:
        monkeypatch.setattr(store, "_ring_floor", store._pub_rev)
    it = store.watch("/g/", start_rev)
    evs = await collect(it, total - start_rev, timeout=20)
    await asyncio.gather(*writers)
    await it.aclose()
    # every revision after start_rev, in order, exactly once (all writes are under /g/)
    assert [e.kv.mod_revision for e in evs] == list(range(start_rev + 1, total + 1))
    assert await store.current_revision() == total


async def test_watch_compacted_raises(store: SQLiteStore) -> None:
    for i in range(10):
        await store.create(f"/c/{i}", b"v")
    await store.compact(5)
    assert await store.compacted_revision() == 5
    it = store.watch("/c/", 3)
    with pytest.raises(CompactedError) as e:
        await it.__anext__()
    assert e.value.requested == 3 and e.value.compacted == 5
    # at or above the compacted revision is fine
    evs = await collect(store.watch("/c/", 5), 5)
    assert [e.kv.mod_revision for e in evs] == [6, 7, 8, 9, 10]


async def test_watch_compacted_during_db_replay(store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(10):
        await store.create(f"/c/{i}", b"v")
    monkeypatch.setattr(store, "_ring_floor", store._pub_rev)
    it = store.watch("/c/", 2)  # registered fine, replay not read yet
    await store.compact(6)
    with pytest.raises(CompactedError):
        await it.__anext__()
    assert it not in store._watchers


async def test_watch_overflow_terminates_slow_watcher(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kubelite.store.sqlite as mod

    monkeypatch.setattr(mod, "_WATCH_QUEUE", 20)
    slow = store.watch("/o/", 0)
    fast = store.watch("/o/", 0)
    fast_seen = []

    async def consume() -> None:
        async for ev in fast:
            fast_seen.append(ev)
            if len(fast_seen) == 100:
                return

    consumer = asyncio.create_task(consume())
    for i in range(100):
        await store.create(f"/o/{i}", b"v")  # writers never wait for the slow watcher
    await asyncio.wait_for(consumer, 5)
    with pytest.raises(WatchOverflowError):
        await slow.__anext__()
    assert slow not in store._watchers
    with pytest.raises(StopAsyncIteration):
        await slow.__anext__()


async def test_watch_cleanup_on_aclose_and_cancel(store: SQLiteStore) -> None:
    it = store.watch("/z/", 0)
    assert it in store._watchers
    await it.aclose()
    assert it not in store._watchers
    with pytest.raises(StopAsyncIteration):
        await it.__anext__()

    it2 = store.watch("/z/", 0)

    async def consume() -> None:
        async for _ in it2:
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert it2 not in store._watchers
    assert it2.closed

    # dropping an unused watcher unregisters it too
    store.watch("/z/", 0)
    gc.collect()
    assert len(store._watchers) == 0


# ---------------------------------------------------------------------- COMPACTION


async def test_compaction(tmp_path: Path) -> None:
    path = tmp_path / "db"
    s = SQLiteStore(str(path), compact_interval=0)
    await s.start()
    for i in range(20):
        await s.create(f"/k/{i}", b"0")
    for round_ in range(1, 6):
        for i in range(20):
            await s.update(f"/k/{i}", str(round_).encode() * 1000, 0)
    for i in range(10):
        await s.delete(f"/k/{i}")
    rev = await s.current_revision()
    assert rev == 130
    before_list = await s.list("/k/")
    assert rows(path) == 130

    pages_before = pragma(path, "page_count")
    await s.compact(rev)
    assert await s.compacted_revision() == rev
    assert rows(path) == 10  # only the live rows are left
    assert pragma(path, "freelist_count") == 0  # freed pages were given back (incremental vacuum)
    assert pragma(path, "page_count") < pages_before
    assert await s.current_revision() == rev
    after_list = await s.list("/k/")
    assert after_list == before_list
    assert [kv.value for kv in after_list.kvs] == [b"5" * 1000] * 10
    with pytest.raises(CompactedError):
        await s.get("/k/15", rev - 1)
    with pytest.raises(CompactedError):
        await s.list("/k/", revision=rev - 1)
    assert await s.get("/k/15", rev) == await s.get("/k/15")
    await s.compact(5)  # below the compacted revision: no-op
    with pytest.raises(FutureRevisionError):
        await s.compact(rev + 10)

    # deleting the newest row never lowers the revision, even across restarts
    await s.delete("/k/19")
    await s.compact(await s.current_revision())
    await s.close()
    s2 = SQLiteStore(str(path), compact_interval=0)
    await s2.start()
    assert await s2.current_revision() == rev + 1
    assert await s2.compacted_revision() == rev + 1
    kv = await s2.create("/k/new", b"")
    assert kv.mod_revision == rev + 2
    await s2.close()


async def test_partial_compaction_keeps_history_above(store: SQLiteStore) -> None:
    a1 = await store.create("/a", b"1")
    await store.update("/a", b"2", 0)  # rev 2
    b1 = await store.create("/b", b"1")  # rev 3
    a3 = await store.update("/a", b"3", 0)  # rev 4
    await store.delete("/b")  # rev 5
    await store.compact(3)
    assert await store.get("/a", 3) == KV("/a", b"2", 1, 2)
    assert await store.get("/b", 3) == b1
    assert await store.get("/a", 4) == a3
    assert await store.get("/b", 5) is None
    evs = await collect(_fresh_watch_prefix(store, "/", 3), 2)
    assert [(e.type, e.kv.key) for e in evs] == [("PUT", "/a"), ("DELETE", "/b")]
    assert evs[0].prev == KV("/a", b"2", 1, 2)
    assert evs[1].prev == b1 and evs[1].kv.value == b"1"
    assert a1.create_revision == 1


def _fresh_watch_prefix(store: SQLiteStore, prefix: str, rev: int):
    saved = store._ring_floor
    store._ring_floor = store._pub_rev
    try:
        return store.watch(prefix, rev)
    finally:
        store._ring_floor = saved


async def test_background_compaction_bounds_history(tmp_path: Path) -> None:
    path = tmp_path / "db"
    s = SQLiteStore(str(path), compact_interval=0.05, compact_keep=10)
    await s.start()
    kv = await s.create("/a", b"0")
    for i in range(200):
        kv = await s.update("/a", str(i).encode(), kv.mod_revision)
    for _ in range(100):
        if await s.compacted_revision() >= 191:
            break
        await asyncio.sleep(0.02)
    assert await s.compacted_revision() >= 191
    assert rows(path) <= 11
    assert (await s.get("/a")) == kv
    await s.close()


# ---------------------------------------------------------------------- PERSISTENCE / CRASH


async def test_persistence_across_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    s = SQLiteStore(path, compact_interval=0)
    await s.start()
    await s.create("/a", b"1")
    b = await s.create("/b", b"2")
    await s.update("/a", b"3", 0)
    await s.close()

    s = SQLiteStore(path, compact_interval=0)
    await s.start()
    assert await s.current_revision() == 3
    assert (await s.get("/a")).value == b"3"
    assert await s.get("/b") == b
    assert (await s.get("/a", 1)).value == b"1"
    kv = await s.create("/c", b"")
    assert kv.mod_revision == 4
    # history written before the restart is replayed by watches
    evs = await collect(s.watch("/", 1), 3)
    assert [e.kv.mod_revision for e in evs] == [2, 3, 4]
    await s.close()


CRASH_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from kubelite.store.sqlite import SQLiteStore

    async def main():
        store = SQLiteStore(sys.argv[1], compact_interval=0)
        await store.start()
        print("ready", flush=True)

        async def worker(w):
            i = 0
            while True:
                kv = await store.create(f"/crash/{w}/{i}", b'{"kind":"Pod"}' * 20)
                sys.stdout.write(f"{kv.key} {kv.mod_revision}\\n")
                sys.stdout.flush()
                i += 1

        await asyncio.gather(*(worker(w) for w in range(20)))

    asyncio.run(main())
    """
)


async def test_crash_durability(tmp_path: Path) -> None:
    path = str(tmp_path / "crash.db")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASH_CHILD, path, stdout=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"ready"
    acked: dict[str, int] = {}
    while len(acked) < 2000:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        key, rev = line.decode().split()
        acked[key] = int(rev)
    proc.send_signal(signal.SIGKILL)  # mid-burst
    rest = await proc.stdout.read()
    await proc.wait()
    for line in rest.decode().splitlines():  # acknowledged before the kill, still in the pipe
        if len(line.split()) == 2:
            key, rev = line.split()
            acked[key] = int(rev)

    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()

    s = SQLiteStore(path, compact_interval=0)
    await s.start()
    got = {kv.key: kv.mod_revision for kv in (await s.list("/crash/")).kvs}
    missing = [k for k in acked if k not in got]
    assert not missing, f"{len(missing)} acknowledged writes lost"
    assert all(got[k] == r for k, r in acked.items())
    assert await s.current_revision() >= max(acked.values())
    kv = await s.create("/after", b"")
    assert kv.mod_revision == await s.current_revision() > max(acked.values())
    await s.close()
