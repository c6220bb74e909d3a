"""One reflector/informer for every component (client-go's tools/cache Reflector + shared
informer, cut to what kubelite needs).

An :class:`Informer` keeps the current objects of one resource, fed by a :class:`ListWatch`:
it lists, then watches from the list's resourceVersion; when the watch ends it watches again
from the last resourceVersion it saw (bookmarks included); when the watch expires (410), the
watcher overflowed, the connection broke or anything else failed, it lists again (after a
back-off on errors) and reports what changed while it was away. Handlers get
``(type, old, new)`` with type ADDED, MODIFIED or DELETED; a handler that raises is logged and
the informer goes on. Objects that are not objects with a name are logged and skipped.
``resync`` re-delivers every object as MODIFIED (old is new) on a period, as client-go's
resync does, for controllers that reconcile periodically. Indexers map an object to keys
(``namespace`` is built in); :meth:`by_index` answers from them.

Two sources: :class:`ClientListWatch` (over the HTTP API, for remote components such as the
scheduler and the node agent) and ``kubelite.apiserver.listwatch.StoreListWatch`` (in-process
controllers, straight over the API server's stores).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import aiohttp

from kubelite.api import errors
from kubelite.store.base import StoreError

log = logging.getLogger("kubelite.informer")

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)
Handler = Callable[[str, "Obj | None", "Obj | None"], None]  # (type, old, new)
IndexFunc = Callable[[Obj], list[str]]

INITIAL_BACKOFF = 0.2
MAX_BACKOFF = 10.0
NAMESPACE_INDEX = "namespace"


class ListWatch(Protocol):
    """Where an informer's objects come from."""

    what: str  # for logs: "pods", "clusterroles.rbac.authorization.k8s.io"

    async def list(self) -> tuple[list[Obj], str]:
        """The current objects and the resourceVersion of the list."""
        ...

    def watch(self, resource_version: str) -> AsyncIterator[tuple[str, Obj]]:
        """Changes after ``resource_version`` (BOOKMARK events included) until the source ends
        the watch; raises StatusError (410 and others) or any error on failure."""
        ...


def _key(obj: Obj) -> Key | None:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict):
        return None
    name, ns = meta.get("name"), meta.get("namespace") or ""
    if not isinstance(name, str) or not name or not isinstance(ns, str):
        return None
    return ns, name


def _rv(obj: Obj) -> str:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
    return rv if isinstance(rv, str) else ""


def _expired(exc: BaseException) -> bool:
    return isinstance(exc, errors.StatusError) and (exc.code == 410 or exc.reason in ("Expired", "Gone"))


class Informer:
    def __init__(self, source: ListWatch, *, resync: float = 0.0, name: str = "") -> None:
        self.source = source
        self.name = name or source.what
        self.resync = resync
        self.objects: dict[Key, Obj] = {}
        self.synced = asyncio.Event()
        self.handlers: list[Handler] = []
        self.generation = 0  # bumped on every change: caches built from this informer compare it
        self.resource_version = ""
        self.relists = 0  # lists after the first (410, overflow, errors): for tests and health
        self.last_error = ""
        self._indexers: dict[str, IndexFunc] = {}
        self._runners = 0
        self._loop: asyncio.Task[None] | None = None
        self._indexes: dict[str, dict[str, set[Key]]] = {}
        self.add_index(NAMESPACE_INDEX, lambda o: [(o.get("metadata") or {}).get("namespace") or ""])

    # ------------------------------------------------------------------ reading
    def add_handler(self, h: Handler) -> None:
        """As client-go's AddEventHandler: a handler added to an informer that already holds
        objects gets an ADDED for each object it holds then. The replay runs on the next turn
        of the event loop (at once without a running loop), so a component may add its
        handlers in ``__init__`` before the state they use exists."""
        self.handlers.append(h)
        if not self.objects:
            return
        try:
            asyncio.get_running_loop().call_soon(self._replay, h)
        except RuntimeError:
            self._replay(h)

    def _replay(self, h: Handler) -> None:
        if h not in self.handlers:
            return
        for obj in list(self.objects.values()):
            try:
                h("ADDED", None, obj)
            except Exception:
                log.exception("informer %s: handler failed on ADDED", self.name)

    def remove_handler(self, h: Handler) -> None:
        with contextlib.suppress(ValueError):
            self.handlers.remove(h)

    def add_index(self, name: str, fn: IndexFunc) -> None:
        """Components sharing an informer may each ask for an index: the first one of a name
        stays (one name means one indexing function)."""
        if name in self._indexers:
            return
        self._indexers[name] = fn
        idx: dict[str, set[Key]] = {}
        for key, obj in self.objects.items():
            for v in self._index_values(fn, obj):
                idx.setdefault(v, set()).add(key)
        self._indexes[name] = idx

    def get(self, namespace: str, name: str) -> Obj | None:
        return self.objects.get((namespace, name))

    def list(self, namespace: str | None = None) -> list[Obj]:
        if namespace is None:
            return list(self.objects.values())
        return self.by_index(NAMESPACE_INDEX, namespace)

    def by_index(self, index: str, value: str) -> builtins.list[Obj]:
        keys = self._indexes[index].get(value, ())
        return [self.objects[k] for k in keys if k in self.objects]

    async def wait_synced(self, timeout: float | None = None) -> None:
        if not self.synced.is_set():
            await asyncio.wait_for(self.synced.wait(), timeout)

    # ------------------------------------------------------------------ running
    async def run(self) -> None:
        """List and watch until cancelled; never returns, never raises but CancelledError.
        Several components may run one shared informer: the first run starts its one loop,
        the others wait on it, and the loop stops when the last of them is cancelled."""
        self._runners += 1
        if self._loop is None or self._loop.done():
            self._loop = asyncio.create_task(self._run(), name=f"informer/{self.name}")
        loop = self._loop
        try:
            await asyncio.shield(loop)
        finally:
            self._runners -= 1
            if self._runners == 0:
                if self._loop is loop:
                    self._loop = None  # a run() starting while this one ends starts a new loop
                loop.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop

    async def _run(self) -> None:
        backoff = INITIAL_BACKOFF
        resync_task = asyncio.create_task(self._resync_loop()) if self.resync > 0 else None
        try:
            while True:
                try:
                    if not self.resource_version:
                        await self._list()
                    await self._watch()
                    backoff = INITIAL_BACKOFF  # a watch that ended normally: watch again at once
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    self.resource_version = ""  # list again
                    if _expired(exc):
                        log.info("informer %s: watch expired (%s); listing again", self.name, exc)
                        continue
                    # the failures a watch meets (API errors, the network, the store ending a
                    # watch) are expected; anything else is a bug and gets its traceback
                    known = isinstance(exc, errors.StatusError | OSError | TimeoutError | StoreError
                                       | aiohttp.ClientError)  # (a server that died mid-watch)
                    log.warning("informer %s: %s; listing again in %.1fs", self.name, self.last_error, backoff,
                                exc_info=not known)
                    await asyncio.sleep(backoff * (1 + random.random() / 2))
                    backoff = min(backoff * 2, MAX_BACKOFF)
        finally:
            if resync_task is not None:
                resync_task.cancel()

    async def _list(self) -> None:
        items, rv = await self.source.list()
        if self.synced.is_set():
            self.relists += 1
        seen: set[Key] = set()
        for obj in items:
            key = _key(obj)
            if key is None:
                log.warning("informer %s: skipping an object without a name: %.200r", self.name, obj)
                continue
            seen.add(key)
            self._upsert(key, obj)
        for key in [k for k in self.objects if k not in seen]:
            self._remove(key)
        self.resource_version = rv
        self.synced.set()

    async def _watch(self) -> None:
        async for etype, obj in self.source.watch(self.resource_version):
            rv = _rv(obj)
            if etype == "BOOKMARK":
                if rv:
                    self.resource_version = rv
                continue
            if etype == "ERROR":
                st = obj if isinstance(obj, dict) else {}
                raise errors.StatusError(int(st.get("code") or 500), str(st.get("reason") or ""),
                                         str(st.get("message") or ""))
            key = _key(obj)
            if key is None:
                log.warning("informer %s: skipping a %s event for an object without a name: %.200r",
                            self.name, etype, obj)
            elif etype == "DELETED":
                self._remove(key)
            elif etype in ("ADDED", "MODIFIED"):
                self._upsert(key, obj)
            if rv:
                self.resource_version = rv

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.resync)
            if self.synced.is_set():
                for obj in list(self.objects.values()):
                    self._notify("MODIFIED", obj, obj)

    # ------------------------------------------------------------------ cache
    def _upsert(self, key: Key, obj: Obj) -> None:
        old = self.objects.get(key)
        if old is not None and _rv(old) == _rv(obj) and _rv(obj):
            return
        self.objects[key] = obj
        self._reindex(key, old, obj)
        self._notify("MODIFIED" if old is not None else "ADDED", old, obj)

    def _remove(self, key: Key) -> None:
        old = self.objects.pop(key, None)
        if old is None:
            return
        self._reindex(key, old, None)
        self._notify("DELETED", old, None)

    def _index_values(self, fn: IndexFunc, obj: Obj) -> builtins.list[str]:
        try:
            return [v for v in fn(obj) if isinstance(v, str)]
        except Exception:  # an indexer must not stop the informer; the object is just not indexed
            log.exception("informer %s: indexer failed on %.200r", self.name, obj)
            return []

    def _reindex(self, key: Key, old: Obj | None, new: Obj | None) -> None:
        for name, fn in self._indexers.items():
            idx = self._indexes[name]
            if old is not None:
                for v in self._index_values(fn, old):
                    keys = idx.get(v)
                    if keys is not None:
                        keys.discard(key)
                        if not keys:
                            del idx[v]
            if new is not None:
                for v in self._index_values(fn, new):
                    idx.setdefault(v, set()).add(key)

    def _notify(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        self.generation += 1
        for h in self.handlers:
            try:
                h(etype, old, new)
            except Exception:  # a handler's bug must not stop the informer
                log.exception("informer %s: handler failed on %s", self.name, etype)


class ClientListWatch:
    """Lists and watches one resource through the HTTP API (:class:`kubelite.client.api.Client`)."""

    def __init__(self, client: Any, api_version: str, plural: str, namespace: str = "",
                 watch_timeout: int = 300, **params: Any) -> None:
        self.client = client
        self.api_version = api_version
        self.plural = plural
        self.namespace = namespace
        self.params = params  # labelSelector, fieldSelector
        self.watch_timeout = watch_timeout
        group = api_version.rpartition("/")[0]
        self.what = f"{plural}.{group}" if group else plural

    async def list(self) -> tuple[list[Obj], str]:
        items: list[Obj] = []
        cont = ""
        while True:
            params = dict(self.params, limit=500)
            if cont:
                params["continue"] = cont
            page = await self.client.list(self.api_version, self.plural, namespace=self.namespace, **params)
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            cont = meta.get("continue") or ""
            if not cont:
                return items, str(meta.get("resourceVersion") or "")

    def watch(self, resource_version: str) -> AsyncIterator[tuple[str, Obj]]:
        # a little jitter so that many watchers do not all re-watch at once
        timeout = int(self.watch_timeout * (1 + random.random() / 4))
        return self.client.watch(self.api_version, self.plural, namespace=self.namespace,
                                 resource_version=resource_version, timeout_seconds=timeout, **self.params)


__all__ = ["ClientListWatch", "Handler", "Informer", "ListWatch", "NAMESPACE_INDEX"]
