"""Moving a cluster's keys between datastores, in etcd transactions.

``kubelite datastore migrate`` copies every live key of a stopped SQLite cluster into etcd;
``kubelite datastore snapshot restore`` on an etcd data dir puts the keys a snapshot holds under
kubelite's prefix back into the cluster's etcd. Both write through :class:`BatchTarget` (the etcd
store): many keys per transaction, within etcd's limits (``--max-txn-ops``, default 128, and
``--max-request-bytes``, default 1.5 MiB), so a thousand objects move in a few transactions.

Stored values carry no resourceVersion (kubelite.apiserver.registry.encode strips it; it is the
key's revision), so a copy is byte for byte: names, uids, creationTimestamps, managedFields all
stay; only the resourceVersions are new, etcd's revisions. Both operations end by compacting
etcd's history up to now (:meth:`BatchTarget.compact_all`), a migration after moving etcd's
revision past the SQLite store's: a client that re-watches from a resourceVersion it saw before
is answered 410 Gone and re-lists, instead of being served a history that no longer matches what
it cached (the reason etcd 3.6's ``etcdutl snapshot restore`` grew ``--bump-revision
--mark-compacted``, and kube-apiserver must be restarted after an etcd restore).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from kubelite.store.base import ListResult, Store

ROOT = "/registry/"  # every key kubelite writes (the logical root; the etcd store maps it to its prefix)
MAX_TXN_OPS = 128  # etcd's --max-txn-ops default
# etcd refuses requests over --max-request-bytes (1.5 MiB by default); stay well below it, with
# room for the keys and the protobuf framing
MAX_TXN_BYTES = 1 << 20

Op = tuple[str, bytes | None]  # (key, value) puts, (key, None) deletes


class BatchTarget(Protocol):
    async def count(self, prefix: str) -> int: ...

    async def current_revision(self) -> int: ...

    async def advance_revision(self, target: int) -> int: ...

    async def list(self, prefix: str, revision: int = 0, limit: int = 0, start_key: str = "") -> ListResult: ...

    async def write_batch(self, ops: Sequence[Op], *, create_only: bool = False) -> int: ...

    async def delete_prefix(self, prefix: str) -> int: ...

    async def compact_all(self) -> int: ...


class TargetNotEmpty(Exception):
    def __init__(self, count: int) -> None:
        super().__init__(f"{count} keys")
        self.count = count


def resource_of(key: str) -> str:
    """What a key holds, as kubectl names resources: ``/registry/core/configmaps/ns/a`` ->
    ``configmaps``, ``/registry/rbac.authorization.k8s.io/roles/ns/r`` ->
    ``roles.rbac.authorization.k8s.io``."""
    parts = key[len(ROOT):].split("/") if key.startswith(ROOT) else []
    if len(parts) < 3:
        return key
    group, plural = parts[0], parts[1]
    return plural if group == "core" else f"{plural}.{group}"


def batches(ops: Iterable[Op], max_ops: int = MAX_TXN_OPS, max_bytes: int = MAX_TXN_BYTES) -> Iterator[list[Op]]:
    """Cut ``ops`` into transactions of at most ``max_ops`` operations and ``max_bytes`` of keys
    and values (a single larger value goes alone: etcd says whether it takes it)."""
    batch: list[Op] = []
    size = 0
    for key, value in ops:
        n = len(key) + (len(value) if value is not None else 0)
        if batch and (len(batch) >= max_ops or size + n > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append((key, value))
        size += n
    if batch:
        yield batch


def diff(want: Mapping[str, bytes], have: Mapping[str, bytes]) -> list[Op]:
    """The writes that turn ``have`` into ``want``: puts of what is new or different, deletes of
    what ``want`` lacks; keys whose value is already right are left alone (their
    resourceVersion stays valid)."""
    ops: list[Op] = [(k, v) for k, v in sorted(want.items()) if have.get(k) != v]
    ops += [(k, None) for k in sorted(have) if k not in want]
    return ops


@dataclass
class Report:
    counts: collections.Counter[str] = field(default_factory=collections.Counter)  # resource -> keys
    written: int = 0
    deleted: int = 0
    unchanged: int = 0
    replaced: int = 0  # keys that were under the prefix before (--force)
    source_revision: int = 0
    revision: int = 0  # the target's (compacted) revision once done
    transactions: int = 0


async def _write(dst: BatchTarget, ops: list[Op], report: Report, *, create_only: bool) -> None:
    for batch in batches(ops):
        await dst.write_batch(batch, create_only=create_only)
        report.transactions += 1
        for _key, value in batch:
            if value is None:
                report.deleted += 1
            else:
                report.written += 1


async def copy_all(src: Store, dst: BatchTarget, *, force: bool = False,
                   on_advance: Callable[[int, int], None] | None = None) -> Report:
    """Copy every live key of ``src`` into ``dst``, which must hold nothing under ROOT unless
    ``force`` (then what it holds there is deleted first). ``src`` must not change meanwhile (the
    caller holds the data dir's lock): its keys are read in one list, at one revision.

    Then ``dst``'s revision is moved past ``src``'s (``on_advance(from, to)`` is told first), and
    compacted: every resourceVersion a client of ``src`` ever saw is then below the compaction,
    so a watch from it is 410 Gone. Without the advance, a watch from a ``src`` resourceVersion
    above ``dst``'s revision would wait silently for etcd to reach it, missing every event in
    between."""
    report = Report()
    existing = await dst.count(ROOT)
    if existing and not force:
        raise TargetNotEmpty(existing)
    if existing:
        report.replaced = await dst.delete_prefix(ROOT)
    listed = await src.list(ROOT)
    report.source_revision = listed.revision
    ops: list[Op] = []
    for kv in listed.kvs:
        ops.append((kv.key, kv.value))
        report.counts[resource_of(kv.key)] += 1
    await _write(dst, ops, report, create_only=True)
    await _advance_past(dst, report.source_revision, on_advance)
    report.revision = await dst.compact_all()
    return report


async def live_keys(store: BatchTarget, page: int = 1000) -> dict[str, bytes]:
    """Every key under ROOT with its value (paged, each page at the first page's revision)."""
    out: dict[str, bytes] = {}
    start, rev = "", 0
    while True:
        res = await store.list(ROOT, rev, page, start)
        rev = res.revision
        for kv in res.kvs:
            out[kv.key] = kv.value
        if not res.more or not res.kvs:
            return out
        start = res.kvs[-1].key + "\x00"


async def _advance_past(dst: BatchTarget, revision: int, on_advance: Callable[[int, int], None] | None) -> None:
    current = await dst.current_revision()
    if current <= revision:
        if on_advance is not None:
            on_advance(current, revision + 1)
        await dst.advance_revision(revision + 1)


async def restore_keys(dst: BatchTarget, want: Mapping[str, bytes], snapshot_revision: int = 0,
                       on_advance: Callable[[int, int], None] | None = None) -> Report:
    """Make ``dst``'s keys under ROOT exactly ``want`` (the snapshot's), writing only the
    difference; then compact so that every earlier resourceVersion is 410 Gone. An etcd that is
    not past ``snapshot_revision`` (a new cluster in place of a lost one) is moved past it first,
    so no resourceVersion of the snapshot's time is left to wait on."""
    report = Report()
    have = await live_keys(dst)
    ops = diff(want, have)
    report.unchanged = len(want) - sum(1 for _, v in ops if v is not None)
    for key in want:
        report.counts[resource_of(key)] += 1
    await _write(dst, ops, report, create_only=False)
    await _advance_past(dst, snapshot_revision, on_advance)
    report.revision = await dst.compact_all()
    return report
