"""The store contract (kubelite.store.base.Store), one set of test bodies for every backend.

A backend's test module subclasses :class:`StoreContract` and provides two fixtures: ``store``
(a started, empty store under its own key space) and ``open_store`` (an async factory of a
further started store on the same data, closed at teardown). Revisions are asserted relative to
the revision the test started at: etcd's revisions are global to the etcd cluster (and start at
1), SQLite's start at 0.
"""

from __future__ import annotations

import asyncio

import pytest

from kubelite.store.base import (
    KV,
    CompactedError,
    ConflictError,
    Event,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    StoreClosedError,
)


async def collect(it, n: int, timeout: float = 10.0) -> list[Event]:
    out: list[Event] = []

    async def run() -> None:
        async for ev in it:
            out.append(ev)
            if len(out) >= n:
                return

    await asyncio.wait_for(run(), timeout)
    return out


class StoreContract:
    # ------------------------------------------------------------------ CRUD

    async def test_crud_and_revisions(self, store) -> None:
        b = await store.current_revision()
        assert await store.get("/a") is None
        kv = await store.create("/a", b"1")
        assert kv == KV("/a", b"1", b + 1, b + 1)
        assert await store.get("/a") == kv
        with pytest.raises(KeyExistsError):
            await store.create("/a", b"again")

        kv2 = await store.update("/a", b"2", kv.mod_revision)
        assert kv2 == KV("/a", b"2", b + 1, b + 2)
        kv3 = await store.update("/a", b"3", 0)  # unconditional
        assert kv3 == KV("/a", b"3", b + 1, b + 3)
        assert await store.get("/a") == kv3
        assert await store.current_revision() == b + 3

        deleted = await store.delete("/a", kv3.mod_revision)
        assert deleted == KV("/a", b"3", b + 1, b + 4)  # last value, mod_revision = delete's revision
        assert await store.get("/a") is None
        with pytest.raises(KeyNotFoundError):
            await store.delete("/a")
        with pytest.raises(KeyNotFoundError):
            await store.update("/a", b"x", 0)
        with pytest.raises(KeyNotFoundError):
            await store.update("/a", b"x", kv3.mod_revision)

        kv5 = await store.create("/a", b"new")  # re-create after delete starts a new lifetime
        assert kv5 == KV("/a", b"new", b + 5, b + 5)

    async def test_cas_conflicts(self, store) -> None:
        kv = await store.create("/k", b"v1")
        kv2 = await store.update("/k", b"v2", kv.mod_revision)
        with pytest.raises(ConflictError) as e:
            await store.update("/k", b"stale", kv.mod_revision)
        assert e.value.current == kv2
        with pytest.raises(ConflictError) as e:
            await store.delete("/k", kv.mod_revision)
        assert e.value.current == kv2
        assert await store.get("/k") == kv2
        assert await store.current_revision() == kv2.mod_revision  # failed writes take no revision

    async def test_concurrent_cas_exactly_one_wins(self, store) -> None:
        kv = await store.create("/c", b"0")
        results = await asyncio.gather(
            *(store.update("/c", str(i).encode(), kv.mod_revision) for i in range(20)), return_exceptions=True)
        ok = [r for r in results if isinstance(r, KV)]
        assert len(ok) == 1
        assert all(isinstance(r, ConflictError) for r in results if not isinstance(r, KV))

    async def test_get_at_revision(self, store) -> None:
        a1 = await store.create("/a", b"1")
        a2 = await store.update("/a", b"2", 0)
        d = await store.delete("/a")
        assert await store.get("/a", a1.mod_revision) == a1
        assert await store.get("/a", a2.mod_revision) == a2
        assert await store.get("/a", d.mod_revision) is None
        with pytest.raises(FutureRevisionError) as e:
            await store.get("/a", d.mod_revision + 100)
        assert e.value.requested == d.mod_revision + 100 and e.value.current == d.mod_revision

    # ------------------------------------------------------------------ LIST

    async def test_list_prefix_and_old_revision(self, store) -> None:
        a1 = await store.create("/r/pods/ns/a", b"a1")
        b1 = await store.create("/r/pods/ns/b", b"b1")
        await store.create("/r/podsx/ns/c", b"not under /r/pods/")
        snapshot = await store.current_revision()
        await store.update("/r/pods/ns/a", b"a2", 0)
        await store.delete("/r/pods/ns/b")
        await store.create("/r/pods/ns/d", b"d1")

        now = await store.list("/r/pods/")
        assert [(kv.key, kv.value) for kv in now.kvs] == [("/r/pods/ns/a", b"a2"), ("/r/pods/ns/d", b"d1")]
        assert now.revision == await store.current_revision()
        assert not now.more

        old = await store.list("/r/pods/", revision=snapshot)
        assert old.kvs == [a1, b1]
        assert old.revision == snapshot

        assert len((await store.list("")).kvs) == 3
        assert await store.count("/r/pods/") == 2
        assert await store.count("/r/") == 3
        assert await store.count("/nothing/") == 0
        with pytest.raises(FutureRevisionError):
            await store.list("/r/", revision=snapshot + 1000)

    @pytest.mark.parametrize("revision_mode", ["latest", "old"])
    async def test_list_pagination(self, store, revision_mode: str) -> None:
        keys = [f"/p/{i:03d}" for i in range(25)]
        for k in keys:
            await store.create(k, k.encode())
        rev = await store.current_revision()
        await store.create("/p/zzz-later", b"x")  # only visible at the latest revision
        await store.delete("/p/000")
        at = rev if revision_mode == "old" else 0
        expected = keys if revision_mode == "old" else keys[1:] + ["/p/zzz-later"]

        got: list[str] = []
        start = ""
        pages = 0
        while True:
            page = await store.list("/p/", revision=at, limit=10, start_key=start)
            got.extend(kv.key for kv in page.kvs)
            pages += 1
            if not page.more:
                break
            assert len(page.kvs) == 10
            start = page.kvs[-1].key + "\x00"
            if at == 0:
                at = page.revision  # continue at the first page's revision, like a continue token
        assert got == expected
        assert pages == 3
        page = await store.list("/p/", limit=2, start_key="/p/005")  # start_key is inclusive
        assert [kv.key for kv in page.kvs] == ["/p/005", "/p/006"] and page.more

    # ------------------------------------------------------------------ WATCH

    async def test_watch_from_now_and_event_shapes(self, store) -> None:
        await store.create("/w/old", b"x")
        it = store.watch("/w/", 0)
        a = await store.create("/w/a", b"1")
        a2 = await store.update("/w/a", b"2", 0)
        await store.create("/other", b"ignored")
        d = await store.delete("/w/a")
        evs = await collect(it, 3)
        await it.aclose()
        assert [e.type for e in evs] == ["PUT", "PUT", "DELETE"]
        assert evs[0].kv == a and evs[0].prev is None and evs[0].created
        assert evs[1].kv == a2 and evs[1].prev == a and not evs[1].created
        assert evs[2].kv == d and evs[2].prev == a2

    async def test_watch_history_shapes(self, store) -> None:
        """Replayed history has the same shape as live events (prev values, re-create)."""
        a1 = await store.create("/w/a", b"1")
        await store.update("/w/a", b"2", 0)
        await store.delete("/w/a")
        await store.create("/w/a", b"3")
        await store.create("/w/b", b"4")
        n = await store.current_revision()
        evs = await collect(store.watch("/w/", a1.mod_revision), n - a1.mod_revision)
        assert [e.kv.mod_revision for e in evs] == list(range(a1.mod_revision + 1, n + 1))
        assert evs[0].prev == a1
        assert evs[1].type == "DELETE" and evs[1].kv == KV("/w/a", b"2", a1.mod_revision, a1.mod_revision + 2)
        assert evs[2].created and evs[2].prev is None  # re-create after delete
        # a second watcher on the same prefix sees the very same events
        again = await collect(store.watch("/w/", a1.mod_revision), n - a1.mod_revision)
        assert again == evs

    async def test_watch_replay_then_live_without_gaps(self, store) -> None:
        b = await store.current_revision()
        for i in range(50):
            await store.create(f"/g/{i}", b"v")
        start_rev = b + 10
        per_writer = 40
        total = b + 50 + 5 * per_writer * 2

        async def writer(w: int) -> None:
            for i in range(per_writer):
                kv = await store.create(f"/g/w{w}-{i}", b"v")
                await store.update(kv.key, b"v2", kv.mod_revision)

        writers = [asyncio.create_task(writer(w)) for w in range(5)]
        await asyncio.sleep(0.005)  # the watch starts in the middle of the burst
        it = store.watch("/g/", start_rev)
        evs = await collect(it, total - start_rev, timeout=30)
        await asyncio.gather(*writers)
        await it.aclose()
        assert [e.kv.mod_revision for e in evs] == list(range(start_rev + 1, total + 1))
        assert await store.current_revision() == total

    async def test_watch_prefix_filter_and_future_revision(self, store) -> None:
        b = await store.current_revision()
        it = store.watch("/x/", b + 3)  # ahead of the current revision: waits for it
        await store.create("/x/1", b"")  # b+1, skipped
        await store.create("/y/1", b"")
        await store.create("/x/2", b"")  # b+3, skipped
        await store.create("/x/3", b"")  # b+4
        evs = await collect(it, 1)
        assert [e.kv.key for e in evs] == ["/x/3"]
        await it.aclose()

    async def test_watch_single_key(self, store) -> None:
        it = store.watch("/s/ns/a", 0)
        await store.create("/s/ns/ab", b"other key with the same prefix string")
        await store.create("/s/ns/b", b"")
        a = await store.create("/s/ns/a", b"")
        evs = await collect(it, 2)
        assert [e.kv.key for e in evs] == ["/s/ns/ab", "/s/ns/a"]  # prefix semantics, like etcd
        assert evs[1].kv == a
        await it.aclose()

    async def test_watch_compacted_raises(self, store) -> None:
        b = await store.current_revision()
        for i in range(10):
            await store.create(f"/c/{i}", b"v")
        await store.compact(b + 5)
        assert await store.compacted_revision() == b + 5
        it = store.watch("/c/", b + 3)
        with pytest.raises(CompactedError) as e:
            await it.__anext__()
        assert e.value.requested == b + 3 and e.value.compacted == b + 5
        evs = await collect(store.watch("/c/", b + 5), 5)  # at the compacted revision is fine
        assert [e.kv.mod_revision for e in evs] == [b + 6, b + 7, b + 8, b + 9, b + 10]

    async def test_watch_next_event_timeout_keeps_watch(self, store) -> None:
        it = store.watch("/t/", 0)
        assert await it.next_event(0.01) is None
        kv = await store.create("/t/a", b"1")
        ev = await it.next_event(5)
        assert ev is not None and ev.kv == kv
        await it.aclose()
        with pytest.raises(StopAsyncIteration):
            await it.__anext__()

    async def test_watch_cancel_ends_watcher(self, store) -> None:
        it = store.watch("/z/", 0)

        async def consume() -> None:
            async for _ in it:
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert it.closed

    async def test_close_ends_watches_and_refuses_writes(self, open_store) -> None:
        s = await open_store()
        it = s.watch("/", 0)
        pending = asyncio.ensure_future(it.__anext__())
        await asyncio.sleep(0)
        await s.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(pending, 5)
        with pytest.raises(StoreClosedError):
            await s.create("/a", b"")

    # ------------------------------------------------------------------ COMPACTION

    async def test_compaction_semantics(self, store) -> None:
        a1 = await store.create("/a", b"1")
        a2 = await store.update("/a", b"2", 0)
        b1 = await store.create("/b", b"1")
        a3 = await store.update("/a", b"3", 0)
        bd = await store.delete("/b")
        rev = b1.mod_revision
        before = await store.list("/", revision=rev)
        await store.compact(rev)
        assert await store.compacted_revision() == rev
        assert await store.get("/a", rev) == a2  # the compacted revision itself stays readable
        assert await store.get("/b", rev) == b1
        assert await store.list("/", revision=rev) == before
        assert await store.get("/a", a3.mod_revision) == a3
        assert await store.get("/b", bd.mod_revision) is None
        with pytest.raises(CompactedError):
            await store.get("/a", a1.mod_revision)
        with pytest.raises(CompactedError):
            await store.list("/", revision=a1.mod_revision)
        evs = await collect(store.watch("/", rev), 2)
        assert [(e.type, e.kv.key) for e in evs] == [("PUT", "/a"), ("DELETE", "/b")]
        assert evs[0].prev == a2 and evs[1].prev == b1 and evs[1].kv.value == b"1"
        await store.compact(a1.mod_revision)  # below the compacted revision: no-op
        assert await store.compacted_revision() == rev
        with pytest.raises(FutureRevisionError):
            await store.compact(bd.mod_revision + 10)

    async def test_data_survives_reopen(self, store, open_store) -> None:
        await store.create("/a", b"1")
        b = await store.create("/b", b"2")
        a3 = await store.update("/a", b"3", 0)
        s2 = await open_store()
        assert await s2.current_revision() >= a3.mod_revision
        assert await s2.get("/a") == a3
        assert await s2.get("/b") == b
        evs = await collect(s2.watch("/", b.mod_revision - 1), 2)  # history from before it opened
        assert [e.kv for e in evs] == [b, a3]
