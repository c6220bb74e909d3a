"""The store contract (tests/store_contract.py) on a real etcd, plus what only etcd has: key
prefixes shared etcds are split by, one etcd watch per resource fanned out to local watchers,
kube-apiserver's compactor, and endpoint failover."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from kubelite.apiserver.cacher import WatchCache
from kubelite.store.base import CompactedError
from kubelite.store.etcd import EtcdStore
from tests.e2e.etcd import EtcdCluster
from tests.store_contract import StoreContract, collect
from tests.unit.test_watch_cache import WatchCacheContract

_prefixes = itertools.count()


@pytest.fixture(scope="module")
def etcd(tmp_path_factory):
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"), 1).start()
    yield cluster
    cluster.stop()


@pytest.fixture
async def open_store(etcd):
    """Stores on the module's etcd, each test under its own key prefix (test keys have no
    /registry root)."""
    prefix = f"/test-{next(_prefixes)}"
    opened: list[EtcdStore] = []

    async def open_(**kw) -> EtcdStore:
        s = EtcdStore(etcd.endpoints, key_prefix=kw.pop("key_prefix", prefix), logical_root="",
                      compact_interval=kw.pop("compact_interval", 0), **kw)
        await s.start()
        opened.append(s)
        return s

    yield open_
    for s in opened:
        await s.close()


@pytest.fixture
async def store(open_store):
    return await open_store()


class TestEtcdStoreContract(StoreContract):
    pass


class TestWatchCacheOnEtcdContract(WatchCacheContract):
    """The API server's watch cache over etcd keeps the same contract (fed by an etcd watch)."""

    @pytest.fixture
    async def open_store(self, open_store):
        caches: list[WatchCache] = []

        async def open_(**kw) -> WatchCache:
            cache = WatchCache(await open_store(**kw))
            await cache.start()
            caches.append(cache)
            return cache

        yield open_
        for c in caches:
            await c.stop()

    @pytest.fixture
    async def store(self, open_store):
        return await open_store()


async def test_key_prefixes_keep_clusters_apart(open_store) -> None:
    one = await open_store(key_prefix="/cluster-one")
    two = await open_store(key_prefix="/cluster-one2")  # a prefix of the other as a string
    w = two.watch("/", 0)
    await one.create("/core/pods/ns/a", b"1")
    b = await two.create("/core/pods/ns/b", b"2")
    assert [kv.key for kv in (await one.list("")).kvs] == ["/core/pods/ns/a"]
    assert [kv.key for kv in (await two.list("/")).kvs] == ["/core/pods/ns/b"]
    assert await one.count("") == 1
    assert [e.kv for e in await collect(w, 1)] == [b]
    assert await two.get("/core/pods/ns/a") is None


async def test_registry_keys_map_under_the_prefix(etcd) -> None:
    s = EtcdStore(etcd.endpoints, key_prefix="/kl-map", compact_interval=0)
    await s.start()
    try:
        kv = await s.create("/registry/core/pods/ns/a", b"x")
        assert kv.key == "/registry/core/pods/ns/a"
        raw = EtcdStore(etcd.endpoints, key_prefix="", logical_root="", compact_interval=0)
        await raw.start()
        try:
            assert (await raw.get("/kl-map/core/pods/ns/a")).value == b"x"
        finally:
            await raw.close()
        with pytest.raises(ValueError):
            await s.create("/elsewhere", b"")
    finally:
        await s.close()


async def test_one_etcd_watch_per_resource_fanned_out(open_store) -> None:
    s = await open_store()
    base = await s.current_revision()
    watchers = [s.watch(f"/core/pods/ns{i % 3}/", 0) for i in range(30)]
    watchers += [s.watch("/core/pods/", 0), s.watch("/core/pods/ns0/p1", base)]
    watchers += [s.watch("/apps/deployments/", 0) for _ in range(5)]
    created = [await s.create(f"/core/pods/ns{i}/p1", b"v") for i in range(3)]
    d = await s.create("/apps/deployments/ns0/d", b"v")
    for i, w in enumerate(watchers[:30]):
        assert [e.kv for e in await collect(w, 1)] == [created[i % 3]]
    assert [e.kv for e in await collect(watchers[30], 3)] == created
    assert [e.kv for e in await collect(watchers[31], 1)] == [created[0]]
    for w in watchers[32:]:
        assert [e.kv for e in await collect(w, 1)] == [d]
    stats = s.watch_stats()
    assert stats["hubs"] == 2 and stats["private"] == 0 and stats["watchers"] == len(watchers)
    for w in watchers:
        await w.aclose()
    assert s.watch_stats()["watchers"] == 0


async def test_watch_listed_before_the_hub_started_shares_it(open_store) -> None:
    s = await open_store()
    a = await s.create("/core/pods/ns/a", b"1")
    listed = await s.current_revision()
    for i in range(5):  # other writes move the global revision on before the first watch
        await s.create(f"/core/secrets/ns/{i}", b"")
    first = s.watch("/core/pods/", await s.current_revision())
    late = s.watch("/core/pods/", listed)  # its list was read before the hub's first watch
    early = s.watch("/core/pods/", a.mod_revision - 1)
    b = await s.create("/core/pods/ns/b", b"2")
    assert [e.kv for e in await collect(first, 1)] == [b]
    assert [e.kv for e in await collect(late, 1)] == [b]
    assert [e.kv for e in await collect(early, 2)] == [a, b]
    assert s.watch_stats() == {"hubs": 1, "private": 0, "watchers": 3}


async def test_hub_backfill_below_another_servers_compaction(open_store) -> None:
    s = await open_store()
    other = await open_store()
    for i in range(5):
        await s.create(f"/core/pods/ns/{i}", b"")
    rev = await s.current_revision()
    await other.compact(rev)  # s does not know
    assert await s.compacted_revision() < rev
    w = s.watch("/core/pods/", rev)  # its hub's backfill starts below the compaction
    old = s.watch("/core/pods/", rev - 2)  # really compacted
    kv = await s.create("/core/pods/ns/new", b"")
    assert [e.kv for e in await collect(w, 1)] == [kv]
    with pytest.raises(CompactedError):
        await collect(old, 1)
    assert await s.compacted_revision() == rev


async def test_watch_before_the_hub_gets_history_privately(open_store, monkeypatch) -> None:
    import kubelite.store.etcd as mod

    monkeypatch.setattr(mod, "_HUB_BACKFILL", 0)
    s = await open_store()
    a = await s.create("/core/pods/ns/a", b"1")
    live = s.watch("/core/pods/", 0)  # the hub starts here
    b = await s.create("/core/pods/ns/b", b"2")
    assert [e.kv for e in await collect(live, 1)] == [b]
    old = s.watch("/core/pods/", a.mod_revision - 1)  # from before the hub's first revision
    assert [e.kv for e in await collect(old, 2)] == [a, b]
    assert s.watch_stats()["private"] == 1
    await old.aclose()
    assert s.watch_stats()["private"] == 0


async def test_compactor_compacts_to_the_previous_tick(open_store) -> None:
    """kube-apiserver's schedule: each tick compacts to the revision seen at the tick before,
    and two servers on one etcd take turns through compact_rev_key."""
    s = await open_store()
    other = await open_store()
    version, rev = 0, 0
    # claim the interval once to learn the current compact_rev_key version (shared etcd)
    from aetcd import rpc

    from kubelite.store.etcd import COMPACT_REV_KEY

    resp = await s._range(rpc.RangeRequest(key=COMPACT_REV_KEY))
    version = int(resp.kvs[0].version) if resp.kvs else 0
    version, rev = await s._compact_tick(version, 0)  # first tick: no compaction
    seen = rev
    kv = await s.create("/k", b"1")
    await s.update("/k", b"2", 0)
    version, rev = await s._compact_tick(version, rev)
    assert await s.compacted_revision() == seen  # compacted to the previous tick's revision
    assert await s.get("/k", kv.mod_revision) == kv  # newer history is kept
    # the other server's tick in the same interval loses the race and compacts nothing
    assert await other._compact_tick(version - 1, 0) == (version, await s.current_revision())
    assert await other.compacted_revision() == seen  # learnt from compact_rev_key


async def test_failover_between_endpoints(tmp_path: Path) -> None:
    cluster = EtcdCluster(tmp_path / "etcd3", 3).start()
    try:
        s = EtcdStore(cluster.endpoints, key_prefix="/fo", logical_root="", compact_interval=0,
                      request_timeout=20)
        await s.start()
        try:
            w = s.watch("/core/pods/", 0)
            first = await s.create("/core/pods/ns/a", b"1")
            assert [e.kv for e in await collect(w, 1)] == [first]
            cluster.members[s._current].kill9()  # the member the store talks to
            acked = [await s.create(f"/core/pods/ns/{i}", b"v") for i in range(20)]
            assert [e.kv for e in await collect(w, 20, timeout=30)] == acked
            assert len((await s.list("/core/pods/")).kvs) == 21
        finally:
            await s.close()
    finally:
        cluster.stop()


async def test_unreachable_etcd_fails_start() -> None:
    from tests.e2e.harness import free_port

    s = EtcdStore(f"http://127.0.0.1:{free_port()}", request_timeout=1, compact_interval=0)
    with pytest.raises(Exception, match="etcd unavailable"):
        await asyncio.wait_for(s.start(), 10)


async def test_slow_watcher_is_terminated_not_the_hub(open_store, monkeypatch) -> None:
    import kubelite.store.etcdwatch as mod
    from kubelite.store.base import WatchOverflowError

    monkeypatch.setattr(mod, "_WATCH_QUEUE", 20)
    s = await open_store()
    slow = s.watch("/o/", 0)
    fast = s.watch("/o/", 0)
    warm = await s.create("/o/warm", b"")
    assert [e.kv for e in await collect(fast, 1)] == [warm]  # the hub is live
    consumer = asyncio.create_task(collect(fast, 100))
    made = [await s.create(f"/o/{i}", b"v") for i in range(100)]
    assert [e.kv for e in await consumer] == made  # writers and other watchers go on
    with pytest.raises(WatchOverflowError):
        await asyncio.wait_for(slow.__anext__(), 5)
    with pytest.raises(StopAsyncIteration):
        await slow.__anext__()
    assert s.watch_stats()["watchers"] == 1


async def test_reachable_follows_the_cluster(tmp_path: Path) -> None:
    cluster = EtcdCluster(tmp_path / "etcd1", 1).start()
    try:
        s = EtcdStore(cluster.endpoints, key_prefix="/rd", logical_root="", compact_interval=0, request_timeout=1)
        await s.start()
        try:
            assert s.reachable
            cluster.members[0].kill9()
            with pytest.raises(Exception, match="etcd unavailable"):
                await s.get("/a")
            assert not s.reachable  # what the server's /readyz reports as etcd-readiness
        finally:
            await s.close()
    finally:
        cluster.stop()


async def test_background_compaction_keeps_the_last_interval(open_store) -> None:
    s = await open_store(compact_interval=0.3)
    kv = first = await s.create("/bg/a", b"0")
    start = await s.compacted_revision()
    deadline = asyncio.get_running_loop().time() + 15
    while await s.compacted_revision() <= first.mod_revision:
        assert asyncio.get_running_loop().time() < deadline, "no background compaction"
        kv = await s.update("/bg/a", b"x", kv.mod_revision)
        await asyncio.sleep(0.05)
    compacted = await s.compacted_revision()
    assert compacted > start
    latest = await s.current_revision()
    assert compacted < latest  # the last interval's history stays
    assert await s.get("/bg/a", compacted) is not None
    with pytest.raises(CompactedError):
        await s.get("/bg/a", compacted - 1)
