"""The API server's watch cache (kubelite/apiserver/cacher.py): the store contract over it, and
its lists compared with the store's own at random resourceVersions, with selectors and limits."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from kubelite.api import errors
from kubelite.api.selectors import parse_field_selector, parse_label_selector
from kubelite.apiserver.cacher import WatchCache, resource_root
from kubelite.apiserver.registry import ListOptions, ResourceStore, WriteOptions
from kubelite.kinds.pods import POD
from kubelite.store.base import CompactedError
from kubelite.store.sqlite import SQLiteStore
from tests.store_contract import StoreContract, collect


class WatchCacheContract(StoreContract):
    """The contract over a watch cache (tests/e2e/test_store_etcd.py runs it over etcd)."""

    async def test_data_survives_reopen(self, store, open_store) -> None:
        """As upstream's cacher, a new cache serves no watch from before it started (410);
        from its start on it replays."""
        await store.create("/a", b"1")
        b = await store.create("/b", b"2")
        a3 = await store.update("/a", b"3", 0)
        s2 = await open_store()
        assert await s2.get("/a") == a3
        assert [kv.key for kv in (await s2.list("/")).kvs] == ["/a", "/b"]
        with pytest.raises(CompactedError) as e:
            await s2.watch("/", b.mod_revision - 1).__anext__()
        assert e.value.compacted == a3.mod_revision
        it = s2.watch("/", a3.mod_revision)
        c = await s2.create("/c", b"4")
        assert [ev.kv for ev in await collect(it, 1)] == [c]
        await it.aclose()


class TestWatchCacheContract(WatchCacheContract):
    @pytest.fixture
    async def open_store(self, tmp_path: Path):
        opened: list[WatchCache] = []

        async def open_() -> WatchCache:
            backend = SQLiteStore(str(tmp_path / "state.db"), compact_interval=0)
            await backend.start()
            cache = WatchCache(backend)
            await cache.start()
            opened.append(cache)
            return cache

        yield open_
        for s in opened:
            await s.close()

    @pytest.fixture
    async def store(self, open_store):
        return await open_store()


def test_resource_root() -> None:
    assert resource_root("/registry/core/pods/ns/p") == "/registry/core/pods/"
    assert resource_root("/registry/core/pods/") == "/registry/core/pods/"
    assert resource_root("/registry/core/pods") == ""
    assert resource_root("/a") == ""


@pytest.fixture
async def backend(tmp_path: Path):
    s = SQLiteStore(str(tmp_path / "state.db"), compact_interval=0)
    await s.start()
    yield s
    await s.close()


@pytest.fixture
async def cache(backend):
    c = WatchCache(backend, window=150)
    await c.start()
    yield c
    await c.stop()


async def test_random_lists_match_the_store(backend, cache) -> None:
    """Random writes under several resources; then at random past revisions (inside and below
    the window), prefixes, limits and start keys, the cache lists what the store lists."""
    rng = random.Random(1414)
    keys = [f"/registry/core/{res}/ns{n}/o{i}" for res in ("pods", "secrets") for n in range(3) for i in range(12)]
    revisions = [await backend.current_revision()]
    for _ in range(700):
        key = rng.choice(keys)
        kv = await backend.get(key)
        op = rng.random()
        if kv is None:
            kv = await cache.create(key, rng.randbytes(8))
        elif op < 0.6:
            kv = await cache.update(key, rng.randbytes(8), kv.mod_revision)
        else:
            kv = await cache.delete(key, kv.mod_revision)
        revisions.append(kv.mod_revision)
    assert await cache.wait_for(revisions[-1], 5)
    prefixes = ["", "/registry/", "/registry/core/pods/", "/registry/core/pods/ns1/", "/registry/core/secrets/ns2/",
                "/registry/core/pods/ns1/o1"]
    past, below = 0, 0
    for _ in range(300):
        rev = rng.choice(revisions)
        prefix = rng.choice(prefixes)
        limit = rng.choice([0, 1, 5, 50])
        start = rng.choice(["", prefix + "ns1/", prefix + "o5", rng.choice(keys)])
        want = await backend.list(prefix, rev, limit, start)
        got = await cache.list(prefix, rev, limit, start)
        assert got == want, (prefix, rev, limit, start)
        if rev < cache.window_floor(prefix):
            below += 1
        else:
            past += 1
    assert past > 50 and below > 10  # both kinds of read were exercised
    # the latest state, every way the cache serves it
    for prefix in prefixes:
        want = await backend.list(prefix)
        assert await cache.list(prefix) == want
        assert await cache.list_at_least(prefix, want.revision) == want
        assert (await cache.list(prefix, limit=3)).kvs == want.kvs[:3]
    assert cache.stats["list_cache_past"] > 0 and cache.stats["list_backend"] > 0


async def test_watch_window_and_too_old(backend, cache) -> None:
    first = await cache.create("/registry/core/pods/ns/a", b"0")
    for i in range(200):  # more than the window of 150
        await cache.update(first.key, str(i).encode(), 0)
    last = await backend.current_revision()
    assert await cache.wait_for(last, 5)
    floor = cache.window_floor("/registry/core/pods/")
    assert floor > first.mod_revision
    with pytest.raises(CompactedError) as e:
        await cache.watch("/registry/core/pods/", first.mod_revision).__anext__()
    assert (e.value.requested, e.value.compacted) == (first.mod_revision, floor)
    evs = await collect(cache.watch("/registry/core/pods/ns/", last - 3), 3)
    assert [ev.kv.mod_revision for ev in evs] == [last - 2, last - 1, last]
    assert [ev.prev.mod_revision for ev in evs if ev.prev] == [last - 3, last - 2, last - 1]
    # another resource's window is its own
    s = await cache.create("/registry/core/secrets/ns/s", b"x")
    evs = await collect(cache.watch("/registry/core/secrets/", s.mod_revision - 1), 1)
    assert evs[0].kv == s


def _pod(name: str, i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "a" if i % 2 else "b", "tier": str(i % 3)}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **({"nodeName": f"n{i % 4}"} if i % 5 else {})}}


async def _drain(store: ResourceStore, ns: str, opts: ListOptions) -> tuple[list[dict], int]:
    """Every page of a LIST (a continue token per page); the items and the number of pages."""
    out: list[dict] = []
    pages = 0
    while True:
        items, _rev, cont, _remaining = await store.list(ns, opts)
        out += items
        pages += 1
        if not cont:
            return out, pages
        opts = ListOptions(label_selector=opts.label_selector, field_selector=opts.field_selector,
                           limit=opts.limit, continue_token=cont)


async def test_resource_lists_match_with_selectors_limits_and_resource_versions(backend, cache) -> None:
    """The pods' ResourceStore over the cache answers each LIST as the one over the store:
    selectors (labels; fields, spec.nodeName through the index), limit/continue, and the
    resourceVersion forms: unset, "0", NotOlderThan and Exact."""
    plain = ResourceStore(POD, backend)
    cached = ResourceStore(POD, cache)
    cached.add_cache_indexes()
    assert cache.has_index("/registry/core/pods/", "spec.nodeName")
    rng = random.Random(7)
    revisions = []
    for i in range(120):
        ns = f"ns{i % 3}"
        await cached.create(ns, _pod(f"p{i:03d}", i), WriteOptions())
        if i % 7 == 0:
            def bind(obj: dict, i: int = i) -> dict:
                obj["spec"]["nodeName"] = f"n{(i + 1) % 4}"
                return obj
            await cached.guaranteed_update(ns, f"p{i // 2:03d}" if (i // 2) % 3 == i % 3 else f"p{i:03d}", bind,
                                           WriteOptions())
        if i % 11 == 0:
            from kubelite.apiserver.registry import DeleteOptions
            await cached.delete(ns, f"p{i:03d}", DeleteOptions(grace_period_seconds=0))
        revisions.append(await backend.current_revision())
    selectors = [(None, None), ("app=a", None), ("tier in (0,2)", None), (None, "spec.nodeName=n1"),
                 ("app=b", "spec.nodeName=n2"), (None, "spec.nodeName="), (None, "metadata.name!=p003")]
    for _ in range(150):
        ls, fs = rng.choice(selectors)
        ns = rng.choice(["", "ns0", "ns2"])
        limit = rng.choice([0, 0, 2, 7])
        rv_form = rng.choice(["", "0", "NotOlderThan", "Exact"])
        opts = ListOptions(label_selector=parse_label_selector(ls) if ls else None,
                           field_selector=parse_field_selector(fs) if fs else None, limit=limit)
        if rv_form in ("NotOlderThan", "Exact"):
            opts.resource_version = str(rng.choice(revisions) if rv_form == "Exact" else revisions[-1])
            opts.resource_version_match = rv_form
        elif rv_form == "0":
            opts.resource_version = "0"
        want, want_pages = await _drain(plain, ns, opts)
        got, got_pages = await _drain(cached, ns, opts)
        assert [o["metadata"]["name"] for o in got] == [o["metadata"]["name"] for o in want], (ls, fs, ns, opts)
        assert got == want
        if limit == 0:
            assert got_pages == want_pages == 1
        # the JSON of the HTTP path is the same objects
        raw, rev, _, _ = await cached.list_json(ns, ListOptions(label_selector=opts.label_selector,
                                                                field_selector=opts.field_selector))
        import orjson
        objs = [orjson.loads(b) for b in raw]
        plain_items, prev, _, _ = await plain.list(ns, ListOptions(label_selector=opts.label_selector,
                                                                   field_selector=opts.field_selector))
        for o in plain_items:
            o["kind"], o["apiVersion"] = "Pod", "v1"
        assert objs == plain_items and rev == prev
    # a list's items are the caller's own: changing them changes nothing in the cache
    items, _, _, _ = await cached.list("ns0", ListOptions(label_selector=parse_label_selector("app=a")))
    items[0]["metadata"]["labels"]["app"] = "changed"
    again, _, _, _ = await cached.list("ns0", ListOptions(label_selector=parse_label_selector("app=a")))
    assert again[0]["metadata"]["labels"]["app"] == "a"


async def test_resource_watch_resumes_and_410s_below_the_window(backend, cache) -> None:
    cached = ResourceStore(POD, cache)
    await cached.create("ns", _pod("a", 1), WriteOptions())
    _, rev, _, _ = await cached.list("ns", ListOptions())
    await cached.create("ns", _pod("b", 2), WriteOptions())
    it = cached.watch("ns", ListOptions(resource_version=str(rev)))
    etype, obj = await asyncio.wait_for(it.__anext__(), 5)
    assert (etype, obj["metadata"]["name"]) == ("ADDED", "b")
    await it.aclose()
    for i in range(160):  # the window (150 events) moves past revision 1
        await cached.create("ns", _pod(f"x{i}", i), WriteOptions())
    with pytest.raises(errors.StatusError) as e:
        await cached.watch("ns", ListOptions(resource_version="1")).__anext__()
    assert e.value.code == 410 and "too old resource version: 1" in e.value.message


async def test_the_backends_compaction_is_followed(backend, cache) -> None:
    """Compacted behind the cache's back (the store's own compactor): older revisions are 410
    from the cache too, although its window still holds them; GET resourceVersion=0 is the
    cache's."""
    first = await cache.create("/registry/core/configmaps/ns/a", b"1")
    for i in range(5):
        last = await cache.update(first.key, str(i).encode(), 0)
    await backend.compact(last.mod_revision - 1)
    with pytest.raises(CompactedError):
        await cache.list("/registry/core/configmaps/", first.mod_revision)
    with pytest.raises(CompactedError):
        await cache.watch("/registry/core/configmaps/", first.mod_revision).__anext__()
    evs = await collect(cache.watch("/registry/core/configmaps/", last.mod_revision - 1), 1)
    assert evs[0].kv == last
    assert cache.current(first.key) == last
