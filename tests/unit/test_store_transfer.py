"""Moving keys between datastores (kubelite/store/transfer.py): what a key holds, cutting writes
into etcd-sized transactions, the difference a restore writes, and a copy out of a real SQLite
store into an in-memory stand-in for the etcd store's batch interface."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from kubelite.store.base import KV, KeyExistsError, ListResult
from kubelite.store.sqlite import SQLiteStore
from kubelite.store.transfer import (
    MAX_TXN_OPS,
    Op,
    TargetNotEmpty,
    batches,
    copy_all,
    diff,
    resource_of,
    restore_keys,
)


class FakeEtcd:
    """The batch side of EtcdStore over a dict, counting revisions and transactions."""

    def __init__(self, keys: dict[str, bytes] | None = None) -> None:
        self.keys = dict(keys or {})
        self.rev = 100
        self.txns: list[int] = []
        self.compacted = 0

    async def count(self, prefix: str) -> int:
        return sum(1 for k in self.keys if k.startswith(prefix))

    async def list(self, prefix: str, revision: int = 0, limit: int = 0, start_key: str = "") -> ListResult:
        ks = sorted(k for k in self.keys if k.startswith(prefix) and k >= start_key)
        more = bool(limit) and len(ks) > limit
        ks = ks[:limit] if limit else ks
        return ListResult([KV(k, self.keys[k], 1, 1) for k in ks], revision or self.rev, more)

    async def write_batch(self, ops: Sequence[Op], *, create_only: bool = False) -> int:
        assert len(ops) <= MAX_TXN_OPS and len({k for k, _ in ops}) == len(ops)
        if create_only:
            for k, v in ops:
                if v is not None and k in self.keys:
                    raise KeyExistsError(k)
        for k, v in ops:
            if v is None:
                del self.keys[k]
            else:
                self.keys[k] = v
        self.rev += 1
        self.txns.append(len(ops))
        return self.rev

    async def current_revision(self) -> int:
        return self.rev

    async def advance_revision(self, target: int) -> int:
        self.rev = max(self.rev, target)
        return self.rev

    async def delete_prefix(self, prefix: str) -> int:
        gone = [k for k in self.keys if k.startswith(prefix)]
        for k in gone:
            del self.keys[k]
        self.rev += 1
        return len(gone)

    async def compact_all(self) -> int:
        self.compacted = self.rev
        return self.rev


def test_resource_of_names_resources_as_kubectl_does() -> None:
    assert resource_of("/registry/core/configmaps/ns/a") == "configmaps"
    assert resource_of("/registry/core/namespaces/ns") == "namespaces"
    assert resource_of("/registry/rbac.authorization.k8s.io/clusterroles/admin") == "clusterroles.rbac.authorization.k8s.io"
    assert resource_of("/registry/kubelite.io/bootstrap/cluster") == "bootstrap.kubelite.io"
    assert resource_of("/registry/odd") == "/registry/odd"


def test_batches_respect_etcds_op_and_size_limits() -> None:
    ops: list[Op] = [(f"/registry/core/configmaps/ns/c{i}", b"x" * 10) for i in range(300)]
    cut = list(batches(ops))
    assert [len(b) for b in cut] == [128, 128, 44]
    assert [op for b in cut for op in b] == ops  # nothing lost, order kept
    big = [("/registry/a", b"x" * 600), ("/registry/b", b"x" * 600), ("/registry/c", None)]
    assert [len(b) for b in batches(big, max_bytes=1000)] == [1, 2]
    assert [len(b) for b in batches([("/registry/huge", b"x" * 5000)], max_bytes=1000)] == [1]  # alone
    assert list(batches([])) == []


def test_diff_writes_only_what_differs() -> None:
    have = {"/registry/a": b"1", "/registry/b": b"2", "/registry/gone": b"3"}
    want = {"/registry/a": b"1", "/registry/b": b"changed", "/registry/new": b"4"}
    assert diff(want, have) == [("/registry/b", b"changed"), ("/registry/new", b"4"), ("/registry/gone", None)]
    assert diff(have, have) == []


async def _sqlite_with(tmp_path: Path, n: int) -> SQLiteStore:
    src = SQLiteStore(str(tmp_path / "state.db"), compact_interval=0)
    await src.start()
    await src.create("/registry/core/namespaces/ns", b'{"metadata":{"name":"ns","uid":"u-ns"}}')
    for i in range(n):
        await src.create(f"/registry/core/configmaps/ns/c{i:04d}", b'{"i":%d}' % i)
    await src.create("/registry/core/secrets/ns/s", b'{"data":{"k":"dg=="}}')
    kv = await src.create("/registry/core/configmaps/ns/deleted", b"{}")
    await src.delete(kv.key)
    return src


async def test_copy_all_copies_every_live_key_in_few_transactions(tmp_path: Path) -> None:
    src = await _sqlite_with(tmp_path, 300)
    try:
        dst = FakeEtcd()
        advanced: list[tuple[int, int]] = []
        report = await copy_all(src, dst, on_advance=lambda a, b: advanced.append((a, b)))
        assert report.counts == {"configmaps": 300, "namespaces": 1, "secrets": 1}
        assert report.written == 302 and report.transactions == 3 == len(dst.txns)
        assert report.source_revision == await src.current_revision()
        assert dst.keys["/registry/core/configmaps/ns/c0007"] == b'{"i":7}'  # byte for byte
        assert "/registry/core/configmaps/ns/deleted" not in dst.keys
        # etcd's revision moved past every SQLite resourceVersion, then compacted: all 410 Gone
        assert advanced == [(103, report.source_revision + 1)]
        assert dst.compacted == dst.rev == report.revision > report.source_revision
        ahead = FakeEtcd()
        ahead.rev = 100_000  # an etcd already past the SQLite revision: nothing to advance
        advanced.clear()
        await copy_all(src, ahead, on_advance=lambda a, b: advanced.append((a, b)))
        assert advanced == [] and ahead.compacted == 100_003
    finally:
        await src.close()


async def test_copy_all_refuses_a_prefix_in_use_unless_forced(tmp_path: Path) -> None:
    src = await _sqlite_with(tmp_path, 3)
    try:
        dst = FakeEtcd({"/registry/core/configmaps/other/x": b"{}", "/registry/core/namespaces/other": b"{}"})
        with pytest.raises(TargetNotEmpty) as err:
            await copy_all(src, dst)
        assert err.value.count == 2 and len(dst.keys) == 2 and not dst.txns  # nothing written
        report = await copy_all(src, dst, force=True)
        assert report.replaced == 2 and "/registry/core/namespaces/other" not in dst.keys
        assert len(dst.keys) == 5
    finally:
        await src.close()


async def test_restore_keys_writes_the_difference_and_compacts() -> None:
    dst = FakeEtcd({"/registry/core/configmaps/ns/same": b"s", "/registry/core/configmaps/ns/altered": b"new",
                    "/registry/core/configmaps/ns/after": b"a"})
    want = {"/registry/core/configmaps/ns/same": b"s", "/registry/core/configmaps/ns/altered": b"old",
            "/registry/core/configmaps/ns/deleted": b"d"}
    report = await restore_keys(dst, want)
    assert dst.keys == want
    assert (report.written, report.deleted, report.unchanged, report.transactions) == (2, 1, 1, 1)
    assert dst.compacted == dst.rev


def test_restore_recognises_another_clusters_snapshot(tmp_path: Path) -> None:
    from kubelite.cli.datastore import _other_cluster
    from kubelite.launcher.bootstrap import BOOTSTRAP_KEY, seal
    from kubelite.tls import pki

    p = pki.ensure_pki(tmp_path)
    (tmp_path / "server-token").write_text("right\n")
    mine = {name: getattr(p, name).read_bytes() for name in ("ca_cert", "ca_key", "sa_key", "sa_pub")}
    assert _other_cluster({BOOTSTRAP_KEY: seal("right", mine)}, tmp_path) is None
    assert _other_cluster({"/registry/core/namespaces/a": b"{}"}, tmp_path) is None  # nothing says
    assert "does not open with this data dir's token" in str(_other_cluster({BOOTSTRAP_KEY: seal("wrong", mine)},
                                                                            tmp_path))
    theirs = {**mine, "ca_cert": b"-----BEGIN CERTIFICATE-----\nother\n"}
    assert "its cluster CA is not this data dir's" in str(_other_cluster({BOOTSTRAP_KEY: seal("right", theirs)},
                                                                         tmp_path))


async def test_restore_into_an_etcd_behind_the_snapshot_moves_it_past_first() -> None:
    dst = FakeEtcd()  # a new etcd in place of a lost one: revision 100, the snapshot's was 5,000
    advanced: list[tuple[int, int]] = []
    report = await restore_keys(dst, {"/registry/core/namespaces/a": b"{}"}, 5000,
                                lambda a, b: advanced.append((a, b)))
    assert advanced == [(101, 5001)] and report.revision == dst.compacted == 5001


def test_held_lease_tells_a_valid_lease() -> None:
    import datetime as dt
    import json

    from kubelite.cli.datastore import held_lease

    now = dt.datetime(2026, 12, 3, 12, 0, 0, tzinfo=dt.UTC)

    def lease(holder: str, renewed_ago: float, duration: int = 15) -> bytes:
        t = (now - dt.timedelta(seconds=renewed_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return json.dumps({"spec": {"holderIdentity": holder, "leaseDurationSeconds": duration,
                                    "renewTime": t}}).encode()

    assert held_lease(lease("s1_abc", 3), now) == ("s1_abc", "2026-12-03T11:59:57.000000Z", 12.0)
    assert held_lease(lease("s1_abc", 20), now) is None  # expired: its server is gone
    assert held_lease(lease("", 1), now) is None  # released
    assert held_lease(b"not json", now) is None
