"""A small in-process informer: the current objects of one kind, kept by a watch on its
ResourceStore, with change callbacks. Authorizers read these caches synchronously."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from kubelite.api import errors
from kubelite.apiserver.registry import ListOptions

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
Handler = Callable[[str, "dict[str, Any] | None", "dict[str, Any] | None"], None]  # (type, old, new)


class Informer:
    def __init__(self, store: Any) -> None:
        self.store = store
        self.objects: dict[Key, dict[str, Any]] = {}
        self.synced = asyncio.Event()
        self.handlers: list[Handler] = []
        self.generation = 0  # bumped on every change: caches built from this informer compare it
        self._task: asyncio.Task[None] | None = None

    def add_handler(self, h: Handler) -> None:
        self.handlers.append(h)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"informer-{self.store.kind.plural}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None

    async def wait_synced(self, timeout: float = 10.0) -> None:
        if not self.synced.is_set():
            await asyncio.wait_for(self.synced.wait(), timeout)

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((namespace, name))

    def list(self, namespace: str | None = None) -> list[dict[str, Any]]:
        if namespace is None:
            return list(self.objects.values())
        return [o for (ns, _), o in self.objects.items() if ns == namespace]

    def _notify(self, etype: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        self.generation += 1
        for h in self.handlers:
            try:
                h(etype, old, new)
            except Exception:  # a handler's bug must not stop the informer
                log.exception("informer handler failed")

    async def _run(self) -> None:
        while True:
            try:
                await self._watch_once()
            except asyncio.CancelledError:
                raise
            except errors.StatusError as exc:
                log.debug("informer %s: watch ended: %s", self.store.kind.plural, exc)
            except Exception:
                log.exception("informer %s failed; restarting", self.store.kind.plural)
            await asyncio.sleep(0.2)

    async def _watch_once(self) -> None:
        seen: dict[Key, dict[str, Any]] = {}
        initial = True
        async for etype, obj in self.store.watch("", ListOptions(), True):
            if etype == "BOOKMARK":
                ann = (obj.get("metadata") or {}).get("annotations") or {}
                if initial and ann.get("k8s.io/initial-events-end") == "true":
                    initial = False
                    # replace the cache with the fresh list; report what vanished while we were away
                    for key, old in list(self.objects.items()):
                        if key not in seen:
                            del self.objects[key]
                            self._notify("DELETED", old, None)
                    self.synced.set()
                continue
            meta = obj.get("metadata") or {}
            key = (meta.get("namespace", ""), meta.get("name", ""))
            old = self.objects.get(key)
            if etype == "DELETED":
                self.objects.pop(key, None)
                self._notify("DELETED", old, None)
                continue
            if initial:
                seen[key] = obj
            self.objects[key] = obj
            if old is None or old.get("metadata", {}).get("resourceVersion") != meta.get("resourceVersion"):
                self._notify("MODIFIED" if old is not None else "ADDED", old, obj)


__all__ = ["Informer"]
