"""The watch side of the etcd store (kubelite.store.etcd): hubs and local watchers.

A :class:`_Hub` is one etcd watch (with ``prev_kv``) whose events are fanned out to the local
:class:`_Watcher` s under its prefix and kept in a ring for watchers that start slightly in the
past; the store keeps one shared hub per resource prefix and, for a watcher that starts before
its hub's history, a private one.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import logging
import weakref
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from aetcd import rpc

from kubelite.store.base import KV, CompactedError, Event, StoreError, WatchOverflowError

if TYPE_CHECKING:
    from kubelite.store.etcd import EtcdStore

log = logging.getLogger("kubelite.store.etcd")

_RING_SIZE = 1000  # recent events each hub keeps for watchers that start slightly in the past
_WATCH_QUEUE = 10_000  # undelivered events per watcher before it is terminated


def _prefix_end(prefix: bytes) -> bytes:
    """etcd's GetPrefixRangeEnd: the first key after every key starting with ``prefix``."""
    b = bytearray(prefix)
    for i in range(len(b) - 1, -1, -1):
        if b[i] < 0xFF:
            b[i] += 1
            return bytes(b[: i + 1])
    return b"\x00"  # all keys


class _Hub:
    """One etcd watch (with prev_kv) feeding the local watchers of one resource prefix."""

    def __init__(self, store: EtcdStore, prefix: str, from_revision: int, *, private: bool = False) -> None:
        self.store = store
        self.prefix = prefix
        self.private = private
        self.start_rev = from_revision
        self.ready = False
        self.failed = False
        self.floor = 0  # the ring holds every event with revision in (floor, pub_rev]
        self.pub_rev = 0
        self.ring: collections.deque[Event] = collections.deque()
        self.watchers: weakref.WeakSet[_Watcher] = weakref.WeakSet()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"kubelite-etcd-watch {self.prefix}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        for w in list(self.watchers):
            w._finish()

    def _fail(self, err: BaseException) -> None:
        self.failed = True
        for w in list(self.watchers):
            w._fail(err)
        self.watchers.clear()
        if self.store._hubs.get(self.prefix) is self:
            del self.store._hubs[self.prefix]
        self.store._private.discard(self)

    def _became_ready(self, rev: int) -> None:
        self.ready = True
        self.floor = self.pub_rev = rev
        for w in list(self.watchers):
            w._hub_ready()

    def _restart_at(self, rev: int) -> None:
        self.ready = False
        self.start_rev = self.floor = self.pub_rev = rev
        for w in list(self.watchers):
            if w._from < rev:
                w._fail(CompactedError(w._from, rev))

    def _publish(self, events: builtins.list[Event], rev: int) -> None:
        ring = self.ring
        for ev in events:
            if len(ring) >= _RING_SIZE:
                self.floor = ring.popleft().kv.mod_revision
            ring.append(ev)
        self.pub_rev = max(self.pub_rev, rev)
        for w in list(self.watchers):
            w._offer(events)

    def _event(self, ev: Any) -> Event:
        s = self.store
        if (ev.type == rpc.Event.DELETE or ev.kv.version > 1) and not ev.HasField("prev_kv"):
            # etcd could not read the previous value (compacted while this watch caught up):
            # without it a DELETE has no object and an update looks like a create
            rev = int(ev.kv.mod_revision)
            raise CompactedError(rev - 1, max(s._compacted, rev))
        if ev.type == rpc.Event.DELETE:
            prev = s._kv(ev.prev_kv)
            kv = KV(prev.key, prev.value, prev.create_revision, int(ev.kv.mod_revision))
            return Event("DELETE", kv, prev)
        kv = s._kv(ev.kv)
        if ev.kv.version == 1:
            return Event("PUT", kv, None)
        return Event("PUT", kv, s._kv(ev.prev_kv))

    async def _run(self) -> None:
        s = self.store
        ep = s._eprefix(self.prefix)
        range_end = _prefix_end(ep)
        failures = 0
        try:
            while True:
                i = s._current
                start = (self.pub_rev if self.ready else self.start_rev) + 1
                call = rpc.WatchStub(s._channel(i)).Watch(metadata=(("hasleader", "true"),))
                try:
                    await call.write(rpc.WatchRequest(create_request=rpc.WatchCreateRequest(
                        key=ep, range_end=range_end, start_revision=start, prev_kv=True)))
                    while True:
                        resp = await call.read()
                        if resp is grpc.aio.EOF:
                            raise StoreError("etcd closed the watch stream")
                        failures = 0
                        if resp.compact_revision:
                            s._compacted = max(s._compacted, int(resp.compact_revision))
                            if not self.private and not self.ring and (
                                    not self.ready or self.pub_rev == self.start_rev):
                                # nothing delivered yet and the backfill reached below a compaction
                                # (another server's): start at the compacted revision instead
                                self._restart_at(int(resp.compact_revision))
                                break
                            raise CompactedError(start - 1, int(resp.compact_revision))
                        if resp.canceled:
                            raise StoreError(f"etcd cancelled the watch: {resp.cancel_reason}")
                        if resp.created:
                            if not self.ready:
                                self._became_ready(self.start_rev)
                            continue
                        if resp.events:
                            events = [self._event(ev) for ev in resp.events]
                            self._publish(events, events[-1].kv.mod_revision)
                except grpc.aio.AioRpcError as e:
                    if e.code() == grpc.StatusCode.CANCELLED and s._closing:
                        return
                    failures += 1
                    s._rotate(i)
                    log.info("etcd watch on %s broke (%s); resuming from revision %d", self.prefix,
                             e.details(), self.pub_rev + 1)
                    await asyncio.sleep(min(0.1 * failures, 1.0))
                except StoreError as e:
                    if isinstance(e, CompactedError):
                        raise
                    failures += 1
                    s._rotate(i)
                    log.info("etcd watch on %s: %s; resuming", self.prefix, e)
                    await asyncio.sleep(min(0.1 * failures, 1.0))
                finally:
                    call.cancel()
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # compacted, or a bug: the watchers re-list
            if not isinstance(e, StoreError):
                log.exception("etcd watch on %s failed", self.prefix)
            self._fail(e)


class _Watcher:
    """Async iterator of events for one watch (created by :meth:`EtcdStore.watch`)."""

    def __init__(self, store: EtcdStore, hub: _Hub | None, prefix: str, from_revision: int) -> None:
        self._store = store
        self._hub = hub
        self._prefix = prefix
        self._from = max(from_revision, 0)
        self._queue: collections.deque[Event] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._done = False
        self._min_rev = self._from
        self._limit = _WATCH_QUEUE
        if hub is None or from_revision < store._compacted:
            self._error = CompactedError(from_revision, store._compacted)
            return
        hub.watchers.add(self)
        if hub.ready:
            self._hub_ready()

    def _hub_ready(self) -> None:
        """Called once the hub knows its first revision: take the ring's events, or move to a
        private etcd watch when this watch starts before the hub's history."""
        hub = self._hub
        assert hub is not None
        if self._from < self._store._compacted:
            self._fail(CompactedError(self._from, self._store._compacted))
            return
        if self._from < hub.floor:
            hub.watchers.discard(self)
            self._hub = self._store._private_hub(self, self._from)
            self._hub.watchers.add(self)
            return
        for ev in hub.ring:
            if ev.kv.mod_revision > self._from and ev.kv.key.startswith(self._prefix):
                self._queue.append(ev)
        self._limit = len(self._queue) + _WATCH_QUEUE
        self._min_rev = max(self._from, hub.pub_rev)
        self._wake()

    def _offer(self, events: builtins.list[Event]) -> None:
        if self._done:
            return
        prefix, min_rev, q = self._prefix, self._min_rev, self._queue
        added = False
        for ev in events:
            if ev.kv.mod_revision > min_rev and ev.kv.key.startswith(prefix):
                q.append(ev)
                added = True
        if not added:
            return
        self._min_rev = events[-1].kv.mod_revision
        if len(q) > self._limit:
            q.clear()
            self._fail(WatchOverflowError(prefix, _WATCH_QUEUE))
            return
        self._wake()

    def _fail(self, err: BaseException) -> None:
        if self._done:
            return
        self._error = err
        self._detach()
        self._wake()

    def _detach(self) -> None:
        hub = self._hub
        if hub is None:
            return
        hub.watchers.discard(self)
        if hub.private and not hub.watchers:
            self._store._private.discard(hub)
            if hub._task is not None:
                hub._task.cancel()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _finish(self) -> None:
        self._done = True
        self._queue.clear()
        self._detach()
        self._wake()

    @property
    def closed(self) -> bool:
        return self._done

    @property
    def ready(self) -> bool:
        """The etcd watch behind this watcher is established (or the watch has ended): from now
        on a compaction cannot fail it any more."""
        return self._done or self._error is not None or (self._hub is not None and self._hub.ready)

    def __aiter__(self) -> _Watcher:
        return self

    async def aclose(self) -> None:
        self._finish()

    async def __aenter__(self) -> _Watcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._finish()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if not self._done:
                self._detach()

    def _take(self) -> Event | None:
        if self._queue:
            return self._queue.popleft()
        if self._error is not None:
            err, self._error = self._error, None
            self._finish()
            raise err
        if self._done:
            raise StopAsyncIteration
        return None

    async def __anext__(self) -> Event:
        ev = await self.next_event(None)
        assert ev is not None
        return ev

    async def next_event(self, timeout: float | None = None) -> Event | None:
        """Like ``__anext__`` but returns None after ``timeout`` seconds without an event,
        leaving the watch open. Raises StopAsyncIteration at the end of the watch."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            while True:
                ev = self._take()
                if ev is not None:
                    return ev
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return None
                self._waiter = waiter = loop.create_future()
                try:
                    await asyncio.wait((waiter,), timeout=remaining)
                finally:
                    self._waiter = None
                    if not waiter.done():
                        waiter.cancel()
        except BaseException:
            self._finish()
            raise
