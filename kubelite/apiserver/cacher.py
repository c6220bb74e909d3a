"""The API server's watch cache: LIST and watch served from memory (kube-apiserver's cacher,
staging/src/k8s.io/apiserver/pkg/storage/cacher/).

:class:`WatchCache` wraps a backend :class:`~kubelite.store.base.Store` and is itself one: writes
and single-object reads go to the backend; ``list`` and ``watch`` are answered from an
in-memory copy of every key that one backend watch keeps up to date. It keeps, per resource
(``/registry/<group>/<plural>/``), a window of the latest events with their previous values, so

- a list at the current revision is a slice of the sorted keys; a list at an older revision
  inside the window (an Exact resourceVersion, a continue token) undoes the window's newer
  events; older than the window it is the backend's read (which may be 410 Gone);
- a list with revision 0 is a consistent read (upstream's ConsistentListFromCache): it asks
  the backend for its current revision and waits until the cache has caught up with it, and
  reads from the backend when that takes too long; a cache fed by a watch (etcd) leaves
  consistent reads to the backend (see CONSISTENT_TIMEOUT);
- :meth:`list_at_least` (resourceVersion "0" or NotOlderThan) serves what the cache holds once
  it is at least that fresh, without asking the backend;
- a watch from a revision inside the window replays from it and then follows; below the
  window it raises CompactedError (the API's 410 "too old resource version"); a watcher that
  falls too far behind is ended with WatchOverflowError, as the backends do;
- :meth:`add_index` keeps an index (``spec.nodeName`` of pods) over the current state.

A watch from revision 0 ("from now on") is the backend's: only the cache's own feed and
in-process callers use it, and the backend knows exactly what "now" is.
"""

from __future__ import annotations

import asyncio
import bisect
import builtins
import collections
import contextlib
import heapq
import logging
from collections.abc import Callable
from typing import Any

from kubelite.store.base import (
    KV,
    CompactedError,
    Event,
    FutureRevisionError,
    ListResult,
    Store,
    StoreClosedError,
    StoreError,
    WatchOverflowError,
)

log = logging.getLogger("kubelite.apiserver.cacher")

DEFAULT_WINDOW = 10_000  # events kept per resource for watches and lists in the past
FRESH_TIMEOUT = 3.0  # upstream's blockTimeout: how long a read waits for the cache to catch up
# how long a consistent read waits for the cache before it reads the backend instead. Only a
# subscribed cache (SQLite, at most one published batch behind) serves consistent reads: a
# watch-fed one (etcd) may wait for a revision it never sees (another cluster's key, the
# compactor's), and etcd 3.4 has no reliable progress notification to learn that it has seen
# everything; kube-apiserver too serves consistent reads from its cache only on etcds with the
# RequestProgress fix (3.4.31 / 3.5.13), from etcd otherwise
CONSISTENT_TIMEOUT = 0.5
WATCH_QUEUE = 10_000  # undelivered events per watcher before it is ended

Indexer = Callable[[KV], "str | None"]


def resource_root(key: str) -> str:
    """The resource a key belongs to: ``/registry/core/pods/`` of ``/registry/core/pods/ns/p``
    ("" for keys of fewer than four segments)."""
    i = -1
    for _ in range(4):
        i = key.find("/", i + 1)
        if i < 0:
            return ""
    return key[: i + 1]


class _Resource:
    """The window of one resource's latest events: every event with revision > ``floor``."""

    __slots__ = ("events", "floor")

    def __init__(self, floor: int) -> None:
        self.floor = floor
        self.events: collections.deque[Event] = collections.deque()


class _Index:
    __slots__ = ("func", "root", "values")

    def __init__(self, root: str, func: Indexer) -> None:
        self.root = root
        self.func = func
        self.values: dict[str, set[str]] = {}

    def add(self, kv: KV) -> None:
        v = self.func(kv)
        if v is not None:
            self.values.setdefault(v, set()).add(kv.key)

    def remove(self, kv: KV) -> None:
        v = self.func(kv)
        if v is not None:
            keys = self.values.get(v)
            if keys is not None:
                keys.discard(kv.key)
                if not keys:
                    del self.values[v]


class WatchCache:
    """A :class:`~kubelite.store.base.Store` whose lists and watches come from memory."""

    def __init__(self, backend: Store, *, window: int = DEFAULT_WINDOW,
                 consistent_timeout: float = CONSISTENT_TIMEOUT) -> None:
        self.backend = backend
        self.window = window
        self.consistent_timeout = consistent_timeout
        # consistent reads from memory: only when fed synchronously (see CONSISTENT_TIMEOUT)
        self.consistent_reads = getattr(backend, "subscribe", None) is not None
        self._kvs: dict[str, KV] = {}
        self._keys: list[str] = []  # sorted
        self._memo: dict[str, dict[Any, Any]] = {}  # per live key: what readers derived from its value
        self._rev = 0
        self._resources: dict[str, _Resource] = {}
        self._start_floor = 0  # the floor of a resource first seen after the cache started
        self._compacted = 0  # the backend's compacted revision, as last asked: nothing older is served
        self._indexes: dict[tuple[str, str], _Index] = {}
        self._watchers: set[_Watcher] = set()
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []  # heap of (revision, seq, future)
        self._seq = 0
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._started = False
        self._closing = False
        # metrics (tests and /metrics): reads served from memory / passed to the backend
        self.stats: collections.Counter[str] = collections.Counter()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Load the state (the backend must be started) and follow the backend's changes: with
        the backend's ``subscribe`` when it has one (SQLite: each batch as it is published, so
        the cache is never behind the writes' callers), else through a watch."""
        subscribe = getattr(self.backend, "subscribe", None)
        if subscribe is not None:
            early: list[Event] | None = []

            def listener(events: builtins.list[Event]) -> None:
                if early is not None:
                    early.extend(events)  # while the state loads
                    return
                for ev in events:
                    self._apply(ev)

            self._unsubscribe = subscribe(listener)
            try:
                await self._load()
            except BaseException:
                self._unsubscribe()
                raise
            pending: builtins.list[Event] = early or []
            early = None
            for ev in pending:
                self._apply(ev)
            self._started = True
            log.info("watch cache: %d keys at revision %d (subscribed)", len(self._kvs), self._rev)
            return
        await self._load()
        first = await self._open_feed()
        log.info("watch cache: %d keys at revision %d (watching)", len(self._kvs), self._rev)
        self._started = True
        self._task = asyncio.create_task(self._feed(first), name="watch-cache")

    async def _open_feed(self) -> Any:
        """The backend's watch from the loaded revision, once established (an etcd watch that
        is still being set up when the store compacts past its start fails)."""
        w: Any = self.backend.watch("", self._rev)
        if hasattr(type(w), "ready"):
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while not w.ready and loop.time() < deadline:
                await asyncio.sleep(0.005)
        return w

    async def _load(self, revision: int = 0) -> None:
        page = await self.backend.list("", revision)
        self._kvs = {kv.key: kv for kv in page.kvs}
        self._keys = sorted(self._kvs)
        self._memo = {k: {} for k in self._keys}
        self._rev = self._start_floor = page.revision
        self._resources = {}
        for ix in self._indexes.values():
            ix.values = {}
            for kv in self._kvs.values():
                if kv.key.startswith(ix.root):
                    ix.add(kv)
        self._wake_waiters()

    async def stop(self) -> None:
        """Stop the cache (not the backend): its watches end."""
        self._closing = True
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
        for w in list(self._watchers):
            w._finish()
        for _, _, fut in self._waiters:
            if not fut.done():
                fut.set_exception(StoreClosedError("store is closed"))
        self._waiters = []

    async def close(self) -> None:
        await self.stop()
        await self.backend.close()

    def _check_open(self) -> None:
        if not self._started or self._closing:
            raise StoreClosedError("store is not open")

    async def _feed(self, first: Any) -> None:
        """Follow the backend from the loaded revision; on any failure of the backend's watch
        (compacted, overflowed, broken) end every watch and load the state again, as the
        cacher's reflector re-lists."""
        failures = 0
        while not self._closing:
            try:
                feed, first = first or await self._open_feed(), None
                async for ev in feed:
                    self._apply(ev)
                    failures = 0
                for w in list(self._watchers):  # the backend closed
                    w._finish()
                return
            except asyncio.CancelledError:
                raise
            except StoreClosedError:
                return
            except CompactedError as exc:
                if await self._resume_at_compacted(exc.compacted):
                    continue
                failures += 1
                log.warning("watch cache: the store compacted past the cache (%s); reloading", exc)
                for w in list(self._watchers):
                    w._fail(exc)
                with contextlib.suppress(StoreError):
                    await self._load()
                for w in list(self._watchers):
                    w._fail(exc)
            except Exception as exc:  # the backend's watch ended: re-list
                failures += 1
                log.warning("watch cache: the store's watch ended (%s); reloading", exc)
                err = exc if isinstance(exc, StoreError) else WatchOverflowError("", 0)
                for w in list(self._watchers):
                    w._fail(err)
                await asyncio.sleep(min(0.1 * failures, 2.0))
                with contextlib.suppress(StoreError):
                    await self._load()
                for w in list(self._watchers):  # begun before the reload: they would miss events
                    w._fail(err)

    async def _resume_at_compacted(self, compacted: int) -> bool:
        """The backend compacted past what the cache has seen (an etcd watch is cancelled so
        while it still catches up): take the state at the compacted revision, which stays
        readable, and follow from there. Watches positioned before it end with 410; the others
        go on without a gap. False when that state cannot be read either."""
        if compacted <= self._rev:
            return False
        try:
            await self._load(compacted)
        except StoreError:
            return False
        log.info("watch cache: the store compacted to %d; resumed there", compacted)
        for w in list(self._watchers):
            if w._min_rev < compacted:
                w._fail(CompactedError(w._min_rev, compacted))
        return True

    def _resource(self, root: str) -> _Resource:
        r = self._resources.get(root)
        if r is None:
            r = self._resources[root] = _Resource(self._start_floor)
        return r

    def _apply(self, ev: Event) -> None:
        kv = ev.kv
        key = kv.key
        rev = kv.mod_revision
        if rev <= self._rev:
            return
        old = self._kvs.get(key)
        root = resource_root(key)
        for ix in self._indexes.values():
            if key.startswith(ix.root):
                if old is not None:
                    ix.remove(old)
                if ev.type == "PUT":
                    ix.add(kv)
        if ev.type == "DELETE":
            if old is not None:
                del self._kvs[key]
                self._memo.pop(key, None)
                i = bisect.bisect_left(self._keys, key)
                if i < len(self._keys) and self._keys[i] == key:
                    del self._keys[i]
        else:
            if old is None:
                bisect.insort(self._keys, key)
            self._kvs[key] = kv
            self._memo[key] = {}
        res = self._resource(root)
        res.events.append(ev)
        if len(res.events) > self.window:
            res.floor = res.events.popleft().kv.mod_revision
        self._rev = rev
        for w in list(self._watchers):
            w._offer(ev)
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        while self._waiters and self._waiters[0][0] <= self._rev:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)

    async def wait_for(self, revision: int, timeout: float) -> bool:
        """Wait until the cache has reached ``revision``; False after ``timeout`` seconds."""
        if self._rev >= revision:
            return True
        if timeout <= 0:
            return False
        fut = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._waiters, (revision, self._seq, fut))
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            if not fut.done():
                fut.cancel()

    # ------------------------------------------------------------------ what the cache knows
    @property
    def watch_cache(self) -> WatchCache:
        """This cache (what a ResourceStore asks its store, through a MeteredStore too)."""
        return self

    @property
    def revision(self) -> int:
        """The revision the cache has reached."""
        return self._rev

    def memo(self, kv: KV) -> dict[Any, Any]:
        """A dict to keep what a reader derives from ``kv``'s value (its decoded object, its
        JSON) for as long as ``kv`` is the key's current value (also as read from the backend:
        a mod revision names one value); a throwaway dict otherwise."""
        cur = self._kvs.get(kv.key)
        if cur is not None and (cur is kv or cur.mod_revision == kv.mod_revision):
            return self._memo[kv.key]
        return {}

    def current(self, key: str) -> KV | None:
        """``key``'s value as the cache holds it (a GET with resourceVersion "0")."""
        return self._kvs.get(key)

    def add_index(self, root: str, name: str, func: Indexer) -> None:
        """Index the keys under ``root`` by ``func(kv)`` (None: not indexed)."""
        ix = self._indexes.get((root, name))
        if ix is not None:
            return
        ix = self._indexes[(root, name)] = _Index(root, func)
        for kv in self._kvs.values():
            if kv.key.startswith(root):
                ix.add(kv)

    def has_index(self, root: str, name: str) -> bool:
        return (root, name) in self._indexes

    def window_floor(self, prefix: str) -> int:
        """The oldest revision a watch or list under ``prefix`` can start from."""
        root = resource_root(prefix)
        if root:
            r = self._resources.get(root)
            floor = r.floor if r is not None else self._start_floor
        else:
            floor = max([self._start_floor, *(r.floor for r in self._resources.values())])
        return max(floor, self._compacted)

    async def _refresh_compacted(self) -> None:
        """What the backend compacted (its own compactor, or another server's) the cache does
        not serve either: a LIST or watch at an older revision is 410 Gone, as from the store."""
        self._compacted = max(self._compacted, await self.backend.compacted_revision())

    # ------------------------------------------------------------------ Store: delegated
    async def current_revision(self) -> int:
        return await self.backend.current_revision()

    async def compacted_revision(self) -> int:
        return await self.backend.compacted_revision()

    async def get(self, key: str, revision: int = 0) -> KV | None:
        return await self.backend.get(key, revision)

    async def count(self, prefix: str) -> int:
        return await self.backend.count(prefix)

    async def create(self, key: str, value: bytes) -> KV:
        return await self.backend.create(key, value)

    async def update(self, key: str, value: bytes, expected_revision: int) -> KV:
        return await self.backend.update(key, value, expected_revision)

    async def delete(self, key: str, expected_revision: int = 0) -> KV:
        return await self.backend.delete(key, expected_revision)

    async def compact(self, revision: int) -> None:
        await self.backend.compact(revision)
        # what the backend no longer has, the cache does not serve either
        self._start_floor = max(self._start_floor, min(revision, self._rev))
        for r in self._resources.values():
            while r.events and r.events[0].kv.mod_revision <= revision:
                r.floor = r.events.popleft().kv.mod_revision
            r.floor = max(r.floor, min(revision, self._rev))

    # ------------------------------------------------------------------ lists
    async def list(self, prefix: str, revision: int = 0, limit: int = 0, start_key: str = "") -> ListResult:
        """See :meth:`Store.list`; ``revision`` 0 is a consistent read."""
        self._check_open()
        if revision <= 0:
            if not self.consistent_reads:
                self.stats["list_backend"] += 1
                return await self.backend.list(prefix, 0, limit, start_key)
            cur = await self.backend.current_revision()
            if not await self.wait_for(cur, self.consistent_timeout):
                self.stats["list_backend"] += 1
                return await self.backend.list(prefix, 0, limit, start_key)
            return self._list_now(prefix, limit, start_key)
        await self._refresh_compacted()
        if revision > self._rev:
            cur = await self.backend.current_revision()
            if revision > cur:
                raise FutureRevisionError(revision, cur)
            if not await self.wait_for(revision, FRESH_TIMEOUT):
                self.stats["list_backend"] += 1
                return await self.backend.list(prefix, revision, limit, start_key)
        if revision < self.window_floor(prefix):
            self.stats["list_backend"] += 1
            return await self.backend.list(prefix, revision, limit, start_key)
        if revision == self._rev:
            return self._list_now(prefix, limit, start_key)
        return self._list_past(prefix, revision, limit, start_key)

    async def list_at_least(self, prefix: str, revision: int = 0, limit: int = 0, start_key: str = "") -> ListResult:
        """What the cache holds, once it is at ``revision`` or later (resourceVersion "0" and
        NotOlderThan): no question to the backend. FutureRevisionError when the cache has not
        got there within FRESH_TIMEOUT (the API's 504 "Too large resource version")."""
        self._check_open()
        if revision > self._rev and not await self.wait_for(revision, FRESH_TIMEOUT):
            raise FutureRevisionError(revision, self._rev)
        return self._list_now(prefix, limit, start_key)

    async def fresh(self, at_least: int | None) -> bool:
        """Whether a read may be answered from memory now: at ``at_least`` or later, or (None)
        as a consistent read. Waits for the cache as :meth:`list` and :meth:`list_at_least` do."""
        if at_least is not None:
            return await self.wait_for(at_least, FRESH_TIMEOUT)
        if not self.consistent_reads:
            return False
        return await self.wait_for(await self.backend.current_revision(), self.consistent_timeout)

    def keys_by_index(self, root: str, name: str, value: str, prefix: str) -> builtins.list[KV]:
        """The current values under ``prefix`` whose index ``name`` is ``value``, by key."""
        ix = self._indexes[(root, name)]
        keys = sorted(k for k in ix.values.get(value, ()) if k.startswith(prefix))
        return [self._kvs[k] for k in keys]

    def _list_now(self, prefix: str, limit: int, start_key: str) -> ListResult:
        self.stats["list_cache"] += 1
        keys = self._keys
        lo = bisect.bisect_left(keys, max(prefix, start_key))
        hi = bisect.bisect_left(keys, _prefix_end(prefix), lo) if prefix else len(keys)
        more = False
        if limit > 0 and hi - lo > limit:
            hi, more = lo + limit, True
        kvs = self._kvs
        return ListResult([kvs[k] for k in keys[lo:hi]], self._rev, more)

    def _events_after(self, prefix: str, revision: int) -> builtins.list[Event]:
        """The window's events under ``prefix`` with revision > ``revision``, oldest first."""
        root = resource_root(prefix)
        resources = [self._resources[root]] if root in self._resources else [] if root else \
            list(self._resources.values())
        runs = []
        for r in resources:
            run: builtins.list[Event] = []
            for ev in reversed(r.events):
                if ev.kv.mod_revision <= revision:
                    break
                if ev.kv.key.startswith(prefix):
                    run.append(ev)
            run.reverse()
            runs.append(run)
        if len(runs) == 1:
            return runs[0]
        return list(heapq.merge(*runs, key=lambda ev: ev.kv.mod_revision))

    def _list_past(self, prefix: str, revision: int, limit: int, start_key: str) -> ListResult:
        """The state at ``revision`` (inside the window): the current one with the newer events
        undone (the oldest newer event of a key holds its value at ``revision`` as ``prev``)."""
        self.stats["list_cache_past"] += 1
        then: dict[str, KV | None] = {}
        for ev in reversed(self._events_after(prefix, revision)):
            then[ev.kv.key] = ev.prev
        lo_key = max(prefix, start_key)
        keys = self._keys
        lo = bisect.bisect_left(keys, lo_key)
        hi = bisect.bisect_left(keys, _prefix_end(prefix), lo) if prefix else len(keys)
        names = set(keys[lo:hi]) | {k for k, v in then.items() if v is not None and k >= lo_key}
        out: builtins.list[KV] = []
        more = False
        for k in sorted(names):
            kv = then[k] if k in then else self._kvs[k]
            if kv is None:
                continue
            if limit > 0 and len(out) == limit:
                more = True
                break
            out.append(kv)
        return ListResult(out, revision, more)

    # ------------------------------------------------------------------ watches
    def watch(self, prefix: str, from_revision: int) -> Any:
        """See :meth:`Store.watch`. From revision 0 it is the backend's watch (see above)."""
        self._check_open()
        if from_revision <= 0:
            return self.backend.watch(prefix, 0)
        return _Watcher(self, prefix, from_revision)


def _prefix_end(prefix: str) -> str:
    """The first string after every string that starts with ``prefix`` (non-empty)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class _Watcher:
    """Async iterator of one watch served from the cache (the backends' watcher interface)."""

    def __init__(self, cache: WatchCache, prefix: str, from_revision: int) -> None:
        self._cache = cache
        self._prefix = prefix
        self._queue: collections.deque[Event] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._done = False
        self._from = from_revision
        self._checked = False
        floor = cache.window_floor(prefix)
        if from_revision < floor:
            self._error = CompactedError(from_revision, floor)
            return
        if from_revision < cache._rev:
            self._queue.extend(cache._events_after(prefix, from_revision))
        self._min_rev = max(from_revision, cache._rev)
        self._limit = len(self._queue) + WATCH_QUEUE
        cache._watchers.add(self)

    def _offer(self, ev: Event) -> None:
        if self._done or ev.kv.mod_revision <= self._min_rev or not ev.kv.key.startswith(self._prefix):
            return
        self._queue.append(ev)
        if len(self._queue) > self._limit:
            self._fail(WatchOverflowError(self._prefix, WATCH_QUEUE))
            return
        self._wake()

    def _fail(self, err: BaseException) -> None:
        self._queue.clear()
        self._error = err
        self._cache._watchers.discard(self)
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _finish(self) -> None:
        self._done = True
        self._queue.clear()
        self._cache._watchers.discard(self)
        self._wake()

    @property
    def closed(self) -> bool:
        return self._done

    def __aiter__(self) -> _Watcher:
        return self

    async def aclose(self) -> None:
        self._finish()

    async def __aenter__(self) -> _Watcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._finish()

    def _take(self) -> Event | None:
        if self._error is not None:
            err, self._error = self._error, None
            self._finish()
            raise err
        if self._done:
            raise StopAsyncIteration
        if self._queue:
            return self._queue.popleft()
        return None

    async def _check_compacted(self) -> None:
        """On the first read: 410 when the backend has compacted past the start since."""
        self._checked = True
        if self._error is None and not self._done:
            await self._cache._refresh_compacted()
            if self._from < self._cache._compacted:
                self._fail(CompactedError(self._from, self._cache._compacted))

    async def __anext__(self) -> Event:
        try:
            if not self._checked:
                await self._check_compacted()
            while True:
                ev = self._take()
                if ev is not None:
                    return ev
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
        except BaseException:
            self._finish()
            raise

    async def next_event(self, timeout: float | None = None) -> Event | None:
        """Like ``__anext__`` but None after ``timeout`` seconds without an event, the watch
        left open. StopAsyncIteration at the end of the watch."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            if not self._checked:
                await self._check_compacted()
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


__all__ = ["DEFAULT_WINDOW", "WatchCache", "resource_root"]
