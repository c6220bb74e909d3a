"""etcd v3 implementation of the store interface (what kube-apiserver's storage/etcd3 does).

Revisions
---------
An object's resourceVersion is its etcd ``mod_revision``; every revision number is etcd's own
(global to the etcd cluster, so several kubelite clusters sharing one etcd under different key
prefixes see each other's revisions go by, exactly as kube-apiserver's do).

Keys
----
kubelite's keys start with ``/registry`` (``logical_root``). They are stored under ``key_prefix``
(kube-apiserver's ``--etcd-prefix``, default ``/registry``): ``/registry/core/pods/ns/a`` is the
etcd key ``<key_prefix>/core/pods/ns/a``, so with the default the layout is kube-apiserver's and
another cluster on the same etcd just picks another prefix.

Writes
------
create = ``Txn(If(mod_revision(k) == 0), Then(Put), Else(Get))``; update and delete compare the
expected ``mod_revision`` (or ``> 0`` when unconditional) and read the current value in the else
branch to raise ConflictError / KeyNotFoundError, as etcd3's GuaranteedUpdate does.

Endpoints and failures
----------------------
One gRPC channel per endpoint; requests go to the current one and move on to the next on
UNAVAILABLE (member down, no leader, leader changed, request timed out), retrying until
``request_timeout``. A retried write may already have been applied by the first attempt: a
create or update whose retry finds exactly the bytes it wrote is taken as its own success.

Watch
-----
As kube-apiserver's cacher, local watchers never open etcd watches of their own: each *resource
prefix* (``/registry/<group>/<plural>/``) has one hub, an etcd watch with ``prev_kv`` that fans
its events out to every local watcher under that prefix and keeps the last events in a ring for
watchers that start slightly in the past. Only a watcher starting before its hub's first
revision (it listed before the hub existed) gets a private etcd watch, like a one-watcher hub.
A hub whose stream breaks resumes from its last revision on another endpoint; when that
revision has been compacted meanwhile its watchers end with CompactedError and re-list.

Compaction
----------
Every ``compact_interval`` seconds (5 minutes, as kube-apiserver) the store compacts to the
revision it saw at the previous tick, so recent history stays; the ``compact_rev_key`` version
check makes several servers on one etcd take turns instead of all compacting (the same key and
transaction as kube-apiserver's compactor, so they coordinate with it too).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import grpc
import grpc.aio
from aetcd import rpc

from kubelite.store.base import (
    KV,
    CompactedError,
    ConflictError,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    ListResult,
    StoreClosedError,
    StoreError,
)
from kubelite.store.etcdwatch import _Hub, _prefix_end, _Watcher

__all__ = ["EtcdStore", "EtcdTLS", "parse_endpoints"]

log = logging.getLogger(__name__)

T = TypeVar("T")

COMPACT_REV_KEY = b"compact_rev_key"  # kube-apiserver's compactor key (storage/etcd3/compact.go)
# A new hub starts this many revisions before the watch that made it: watchers whose list was
# read a little earlier (revisions are global, every write anywhere moves them) still start
# inside its history instead of needing an etcd watch of their own.
_HUB_BACKFILL = 1000
_ATTEMPT_TIMEOUT = 5.0  # one RPC attempt; a stuck member is left for the next endpoint
_RETRY_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
_MAX_MSG = 64 << 20
_PROBE_INTERVAL = 5.0
_REVISION_BUMP_KEY = "/registry/kubelite.io/revision-bump"  # advance_revision's scratch key


@dataclass(frozen=True, slots=True)
class EtcdTLS:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


def parse_endpoints(spec: str | builtins.list[str]) -> builtins.list[tuple[str, str]]:
    """``https://h1:2379,http://h2:2379`` -> [(scheme, "host:port")]; a bare host:port is http."""
    items = spec.split(",") if isinstance(spec, str) else spec
    out: list[tuple[str, str]] = []
    for raw in items:
        raw = raw.strip()
        if not raw:
            continue
        if "://" not in raw:
            raw = "http://" + raw
        u = urlsplit(raw)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"invalid etcd endpoint {raw!r} (want https://host:port)")
        host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
        out.append((u.scheme, f"{host}:{u.port or 2379}"))
    if not out:
        raise ValueError("no etcd endpoint given")
    return out


def _is_compacted(e: grpc.aio.AioRpcError) -> bool:
    return e.code() == grpc.StatusCode.OUT_OF_RANGE and "compacted" in (e.details() or "")


def _is_future(e: grpc.aio.AioRpcError) -> bool:
    return e.code() == grpc.StatusCode.OUT_OF_RANGE and "future" in (e.details() or "")


class EtcdStore:
    """Revisioned key-value store on an etcd v3 cluster (see the module docstring)."""

    def __init__(
        self,
        endpoints: str | builtins.list[str],
        *,
        tls: EtcdTLS | None = None,
        key_prefix: str = "/registry",
        logical_root: str = "/registry",
        compact_interval: float = 300.0,
        request_timeout: float = 30.0,
    ) -> None:
        self.endpoints = parse_endpoints(endpoints)
        self.tls = tls or EtcdTLS()
        self.key_prefix = key_prefix.rstrip("/")
        self.logical_root = logical_root.rstrip("/")
        self.compact_interval = compact_interval
        self.request_timeout = request_timeout
        self._channels: list[grpc.aio.Channel | None] = [None] * len(self.endpoints)
        self._current = 0
        self._started = False
        self._closing = False
        self._compacted = 0
        self._seen_rev = 0  # the newest revision any response showed: committed before now
        self.reachable = True  # False while no endpoint answers (the server's /readyz etcd-readiness)
        self._compactor: asyncio.Task[None] | None = None
        self._prober: asyncio.Task[None] | None = None
        self._last_ok = 0.0
        self._hubs: dict[str, _Hub] = {}
        self._private: set[_Hub] = set()

    # ------------------------------------------------------------------ keys

    def _ekey(self, key: str) -> bytes:
        root = self.logical_root
        if not key.startswith(root + "/"):
            raise ValueError(f"key {key!r} is not under {root + '/'!r}")
        return (self.key_prefix + key[len(root):]).encode()

    def _eprefix(self, prefix: str) -> bytes:
        root = self.logical_root
        if prefix.startswith(root):
            rest = prefix[len(root):]
        elif root.startswith(prefix):
            rest = ""
        else:
            raise ValueError(f"prefix {prefix!r} is not under {root + '/'!r}")
        if not rest.startswith("/"):
            rest = "/" + rest  # every key is root + "/...": never reach into a sibling prefix
        return (self.key_prefix + rest).encode()

    def _lkey(self, ekey: bytes) -> str:
        return self.logical_root + ekey.decode()[len(self.key_prefix):]

    def _kv(self, kv: Any) -> KV:
        return KV(self._lkey(kv.key), bytes(kv.value), kv.create_revision, kv.mod_revision)

    # ------------------------------------------------------------------ connections

    def _credentials(self) -> grpc.ChannelCredentials:
        def read(path: str | None) -> bytes | None:
            return Path(path).read_bytes() if path else None

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.tls.ca_file),
            private_key=read(self.tls.key_file),
            certificate_chain=read(self.tls.cert_file),
        )

    def _channel(self, i: int) -> grpc.aio.Channel:
        ch = self._channels[i]
        if ch is None:
            scheme, target = self.endpoints[i]
            opts = [("grpc.max_receive_message_length", _MAX_MSG), ("grpc.max_send_message_length", _MAX_MSG),
                    ("grpc.keepalive_time_ms", 30_000), ("grpc.keepalive_timeout_ms", 10_000),
                    ("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 2000)]
            if scheme == "https":
                ch = grpc.aio.secure_channel(target, self._credentials(), options=opts)
            else:
                ch = grpc.aio.insecure_channel(target, options=opts)
            self._channels[i] = ch
        return ch

    def _rotate(self, failed: int) -> None:
        if self._current == failed:
            self._current = (failed + 1) % len(self.endpoints)

    async def _call(self, fn: Callable[[grpc.aio.Channel], Awaitable[T]]) -> tuple[T, int]:
        """Run ``fn`` against the current endpoint, moving on to the next while it is
        unavailable, until ``request_timeout``. Returns (result, failed attempts before it)."""
        self._check_open()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout
        failures = 0
        while True:
            i = self._current
            try:
                resp = await fn(self._channel(i))
                self.reachable = True
                self._last_ok = loop.time()
                header = getattr(resp, "header", None)
                if header is not None and header.revision > self._seen_rev:
                    self._seen_rev = int(header.revision)
                return resp, failures
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.OUT_OF_RANGE:
                    raise  # compacted / future revision: the read paths say which
                if e.code() not in _RETRY_CODES or self._closing:
                    raise StoreError(f"etcd: {e.details()}") from e
                failures += 1
                self._rotate(i)
                if failures >= len(self.endpoints):
                    self.reachable = False
                if loop.time() >= deadline:
                    raise StoreError(f"etcd unavailable: {e.details()}") from e
                log.debug("etcd endpoint %s: %s; trying %s", self.endpoints[i][1], e.details(),
                          self.endpoints[self._current][1])
                await asyncio.sleep(min(0.05 * failures, 0.5) if failures >= len(self.endpoints) else 0)

    async def _range(self, req: Any) -> Any:
        resp, _ = await self._call(lambda ch: rpc.KVStub(ch).Range(req, timeout=_ATTEMPT_TIMEOUT))
        return resp

    async def _txn(self, req: Any) -> tuple[Any, int]:
        return await self._call(lambda ch: rpc.KVStub(ch).Txn(req, timeout=_ATTEMPT_TIMEOUT))

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._started:
            return
        self._closing = False
        self._started = True
        try:
            resp = await self._range(rpc.RangeRequest(key=COMPACT_REV_KEY))
        except BaseException:
            self._started = False
            await self._close_channels()
            raise
        if resp.kvs:
            with contextlib.suppress(ValueError):
                self._compacted = int(resp.kvs[0].value)
        if self.compact_interval > 0:
            self._compactor = asyncio.create_task(self._compact_loop(), name="kubelite-etcd-compactor")
        self._prober = asyncio.create_task(self._probe_loop(), name="kubelite-etcd-prober")

    async def close(self) -> None:
        if not self._started or self._closing:
            return
        self._closing = True
        for task in (self._compactor, self._prober):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._compactor = self._prober = None
        for hub in [*self._hubs.values(), *self._private]:
            await hub.stop()
        self._hubs.clear()
        self._private.clear()
        await self._close_channels()
        self._started = False

    async def _close_channels(self) -> None:
        for i, ch in enumerate(self._channels):
            if ch is not None:
                with contextlib.suppress(Exception):
                    await ch.close()
                self._channels[i] = None

    def _check_open(self) -> None:
        if not self._started or self._closing:
            raise StoreClosedError("store is closed")

    # ------------------------------------------------------------------ revisions

    async def current_revision(self) -> int:
        resp = await self._range(rpc.RangeRequest(key=COMPACT_REV_KEY, keys_only=True))
        return int(resp.header.revision)

    async def compacted_revision(self) -> int:
        return self._compacted

    async def _read_error(self, e: grpc.aio.AioRpcError, revision: int) -> StoreError | None:
        if _is_compacted(e):
            # etcd does not say how far it compacted; the shared compactor key does (or at
            # least: beyond what was asked)
            resp = await self._range(rpc.RangeRequest(key=COMPACT_REV_KEY))
            with contextlib.suppress(ValueError, IndexError):
                self._compacted = max(self._compacted, int(resp.kvs[0].value))
            return CompactedError(revision, max(self._compacted, revision + 1))
        if _is_future(e):
            return FutureRevisionError(revision, await self.current_revision())
        return None

    # ------------------------------------------------------------------ reads

    async def get(self, key: str, revision: int = 0) -> KV | None:
        try:
            resp = await self._range(rpc.RangeRequest(key=self._ekey(key), revision=max(revision, 0)))
        except grpc.aio.AioRpcError as e:
            err = await self._read_error(e, revision)
            raise (err or StoreError(f"etcd: {e.details()}")) from e
        return self._kv(resp.kvs[0]) if resp.kvs else None

    async def list(self, prefix: str, revision: int = 0, limit: int = 0, start_key: str = "") -> ListResult:
        ep = self._eprefix(prefix)
        lo = ep
        if start_key:
            lo = max(ep, self._ekey(start_key) if start_key.startswith(self.logical_root + "/") else ep)
        req = rpc.RangeRequest(key=lo, range_end=_prefix_end(ep), revision=max(revision, 0),
                               limit=max(limit, 0))
        try:
            resp = await self._range(req)
        except grpc.aio.AioRpcError as e:
            err = await self._read_error(e, revision)
            raise (err or StoreError(f"etcd: {e.details()}")) from e
        at = revision if revision > 0 else int(resp.header.revision)
        return ListResult([self._kv(kv) for kv in resp.kvs], at, bool(resp.more))

    async def count(self, prefix: str) -> int:
        ep = self._eprefix(prefix)
        resp = await self._range(rpc.RangeRequest(key=ep, range_end=_prefix_end(ep), count_only=True))
        return int(resp.count)

    # ------------------------------------------------------------------ writes

    @staticmethod
    def _cmp_mod(key: bytes, result: Any, revision: int) -> Any:
        return rpc.Compare(key=key, target=rpc.Compare.MOD, result=result, mod_revision=revision)

    async def create(self, key: str, value: bytes) -> KV:
        ek, value = self._ekey(key), bytes(value)
        resp, failures = await self._txn(rpc.TxnRequest(
            compare=[self._cmp_mod(ek, rpc.Compare.EQUAL, 0)],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=ek, value=value))],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=ek))],
        ))
        if resp.succeeded:
            rev = int(resp.header.revision)
            return KV(key, value, rev, rev)
        kvs = resp.responses[0].response_range.kvs
        if failures and kvs and kvs[0].value == value and kvs[0].version == 1:
            return self._kv(kvs[0])  # an earlier attempt was applied after all
        raise KeyExistsError(key)

    async def update(self, key: str, value: bytes, expected_revision: int) -> KV:
        ek, value = self._ekey(key), bytes(value)
        if expected_revision:
            cond = self._cmp_mod(ek, rpc.Compare.EQUAL, expected_revision)
        else:
            cond = self._cmp_mod(ek, rpc.Compare.GREATER, 0)
        resp, failures = await self._txn(rpc.TxnRequest(
            compare=[cond],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=ek, value=value, prev_kv=True))],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=ek))],
        ))
        if resp.succeeded:
            prev = resp.responses[0].response_put.prev_kv
            return KV(key, value, int(prev.create_revision), int(resp.header.revision))
        kvs = resp.responses[0].response_range.kvs
        if not kvs:
            raise KeyNotFoundError(key)
        current = self._kv(kvs[0])
        if failures and current.value == value and current.mod_revision > expected_revision:
            return current  # an earlier attempt was applied after all
        raise ConflictError(current)

    async def delete(self, key: str, expected_revision: int = 0) -> KV:
        ek = self._ekey(key)
        if expected_revision:
            cond = self._cmp_mod(ek, rpc.Compare.EQUAL, expected_revision)
        else:
            cond = self._cmp_mod(ek, rpc.Compare.GREATER, 0)
        resp, failures = await self._txn(rpc.TxnRequest(
            compare=[cond],
            success=[rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=ek, prev_kv=True))],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=ek))],
        ))
        if resp.succeeded:
            prev = resp.responses[0].response_delete_range.prev_kvs[0]
            return KV(key, bytes(prev.value), int(prev.create_revision), int(resp.header.revision))
        kvs = resp.responses[0].response_range.kvs
        if not kvs:
            if failures:
                raise StoreError(f"delete of {key} may have been applied by an attempt that timed out")
            raise KeyNotFoundError(key)
        raise ConflictError(self._kv(kvs[0]))

    # ------------------------------------------------------------------ bulk writes (migrate, restore)

    async def write_batch(self, ops: Sequence[tuple[str, bytes | None]], *, create_only: bool = False) -> int:
        """Apply ``ops`` — (key, value) puts and (key, None) deletes, distinct keys — in ONE
        transaction (at most etcd's --max-txn-ops, 128 by default, and under its request size
        limit: see kubelite.store.transfer.batches). With ``create_only`` every put's key must be
        absent (KeyExistsError otherwise, nothing written). Returns the revision written at."""
        keys = [self._ekey(k) for k, _ in ops]
        success = [rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=ek)) if v is None
                   else rpc.RequestOp(request_put=rpc.PutRequest(key=ek, value=bytes(v)))
                   for ek, (_, v) in zip(keys, ops, strict=True)]
        compare, failure = [], []
        if create_only:
            compare = [self._cmp_mod(ek, rpc.Compare.EQUAL, 0) for ek, (_, v) in zip(keys, ops, strict=True)
                       if v is not None]
            failure = [rpc.RequestOp(request_range=rpc.RangeRequest(key=ek)) for ek, (_, v)
                       in zip(keys, ops, strict=True) if v is not None]
        resp, failures = await self._txn(rpc.TxnRequest(compare=compare, success=success, failure=failure))
        if resp.succeeded:
            return int(resp.header.revision)
        found = [r.response_range.kvs[0] if r.response_range.kvs else None for r in resp.responses]
        puts = [(k, v) for k, v in ops if v is not None]
        if failures and all(kv is not None and kv.version == 1 and kv.value == v
                            for kv, (_, v) in zip(found, puts, strict=True)):
            return max(int(kv.mod_revision) for kv in found if kv is not None)  # an earlier attempt was applied
        taken = next(k for kv, (k, _) in zip(found, puts, strict=True) if kv is not None)
        raise KeyExistsError(taken)

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix`` (one DeleteRange); returns how many there were."""
        ep = self._eprefix(prefix)
        resp, _ = await self._call(lambda ch: rpc.KVStub(ch).DeleteRange(
            rpc.DeleteRangeRequest(key=ep, range_end=_prefix_end(ep)), timeout=_ATTEMPT_TIMEOUT))
        return int(resp.deleted)

    async def advance_revision(self, target: int, concurrency: int = 128) -> int:
        """Write until etcd's revision is at least ``target`` (one revision per write: etcd has no
        other way to move it), to a key of kubelite's own that no resource prefix covers and
        that is deleted at the end. Returns the revision reached. About 5,000 revisions a second
        here."""
        ek = self._ekey(_REVISION_BUMP_KEY)

        async def put() -> int:
            resp, _ = await self._call(lambda ch: rpc.KVStub(ch).Put(rpc.PutRequest(key=ek), timeout=_ATTEMPT_TIMEOUT))
            return int(resp.header.revision)

        rev = await self.current_revision()
        while rev < target:
            revs = await asyncio.gather(*(put() for _ in range(min(concurrency, target - rev))))
            rev = max(rev, *revs)
        with contextlib.suppress(KeyNotFoundError):
            rev = (await self.delete(_REVISION_BUMP_KEY)).mod_revision
        return rev

    async def compact_all(self) -> int:
        """Compact etcd's history up to now and record it in ``compact_rev_key`` (as the compactor
        does), so a watch or list from any earlier resourceVersion is answered 410 Gone: after a
        restore or a migration, what a client saw before belongs to another history and it must
        re-list. Compaction is etcd-wide: other clusters on the same etcd lose their history up to
        now too (their watchers re-list). Returns the compacted revision."""
        rev = await self.current_revision()
        await self.compact(rev)
        await self._txn(rpc.TxnRequest(success=[rpc.RequestOp(request_put=rpc.PutRequest(
            key=COMPACT_REV_KEY, value=str(rev).encode()))]))
        return rev

    # ------------------------------------------------------------------ snapshot

    async def snapshot(self, out: Path) -> int:
        """Stream etcd's own snapshot (Maintenance.Snapshot: the whole etcd keyspace, every
        cluster sharing it) into ``out`` (mode 0600, in place only once complete). Returns the
        revision of the snapshot, read just before it (etcd's response carries no revision)."""
        rev = await self.current_revision()
        tmp = out.with_name(f".{out.name}.part")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                call = rpc.MaintenanceStub(self._channel(self._current)).Snapshot(
                    rpc.SnapshotRequest(), timeout=max(self.request_timeout, 600.0))
                remaining = None
                async for resp in call:
                    f.write(resp.blob)
                    remaining = resp.remaining_bytes
                if remaining != 0:
                    raise StoreError("etcd snapshot stream ended early")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, out)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return rev

    # ------------------------------------------------------------------ compaction

    async def compact(self, revision: int) -> None:
        current = await self.current_revision()
        if revision > current:
            raise FutureRevisionError(revision, current)
        if revision <= self._compacted:
            return
        try:
            await self._call(lambda ch: rpc.KVStub(ch).Compact(
                rpc.CompactionRequest(revision=revision), timeout=max(_ATTEMPT_TIMEOUT, 60.0)))
        except grpc.aio.AioRpcError as e:
            if not _is_compacted(e):
                raise
        self._compacted = max(self._compacted, revision)

    async def _compact_tick(self, version: int, rev: int) -> tuple[int, int]:
        """kube-apiserver's compact(): claim this interval through compact_rev_key's version, then
        compact to ``rev`` (the revision seen at the previous tick). Returns (version, revision
        now) for the next tick."""
        resp, _ = await self._txn(rpc.TxnRequest(
            compare=[rpc.Compare(key=COMPACT_REV_KEY, target=rpc.Compare.VERSION, result=rpc.Compare.EQUAL,
                                 version=version)],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=COMPACT_REV_KEY, value=str(rev).encode()))],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=COMPACT_REV_KEY))],
        ))
        now = int(resp.header.revision)
        if not resp.succeeded:  # another server compacted in this interval
            kv = resp.responses[0].response_range.kvs[0]
            with contextlib.suppress(ValueError):
                self._compacted = max(self._compacted, int(kv.value))
            return int(kv.version), now
        if rev > 0:  # never on the first tick
            await self.compact(rev)
        return version + 1, now

    async def _probe_loop(self) -> None:
        """Keep ``reachable`` current while the server is idle (a request every 5 s at most)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(_PROBE_INTERVAL)
            if loop.time() - self._last_ok < _PROBE_INTERVAL:
                continue
            with contextlib.suppress(StoreError, grpc.aio.AioRpcError, TimeoutError):
                await asyncio.wait_for(self.current_revision(), self.request_timeout)

    async def _compact_loop(self) -> None:
        version, rev = 0, 0
        while True:
            await asyncio.sleep(self.compact_interval)
            try:
                version, rev = await self._compact_tick(version, rev)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("etcd compaction failed")

    # ------------------------------------------------------------------ watch

    def _resource_prefix(self, prefix: str) -> str:
        """The hub a watch on ``prefix`` is served by: /registry/<group>/<plural>/ for anything
        under one resource, else the prefix itself."""
        root = self.logical_root
        if prefix.startswith(root + "/"):
            parts = prefix[len(root):].split("/")  # ["", group, plural, ...]
            if len(parts) > 3:
                return root + "/".join(parts[:3]) + "/"
        return prefix

    def watch(self, prefix: str, from_revision: int) -> _Watcher:
        """See :meth:`kubelite.store.base.Store.watch`. The watcher is registered right away."""
        self._check_open()
        if from_revision <= 0:
            # every event committed after this call has a revision above any seen before it
            from_revision = self._seen_rev
        hub_prefix = self._resource_prefix(prefix)
        hub = self._hubs.get(hub_prefix)
        if (hub is None or hub.failed) and from_revision >= self._compacted:
            start = max(from_revision - _HUB_BACKFILL, self._compacted, 0)
            hub = self._hubs[hub_prefix] = _Hub(self, hub_prefix, start)
            hub.start()
        return _Watcher(self, hub, prefix, from_revision)

    def _private_hub(self, watcher: _Watcher, from_revision: int) -> _Hub:
        hub = _Hub(self, watcher._prefix, from_revision, private=True)
        self._private.add(hub)
        hub.start()
        return hub

    def watch_stats(self) -> dict[str, int]:
        """Open etcd watches (shared hubs and private ones) and local watchers, for tests/metrics."""
        return {"hubs": sum(1 for h in self._hubs.values() if not h.failed), "private": len(self._private),
                "watchers": sum(len(h.watchers) for h in [*self._hubs.values(), *self._private])}
