"""What every in-process controller needs: a de-duplicating work queue with retries, and a
watch that restarts by itself (a re-list after 410 or any interruption)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from kubelite.api import errors
from kubelite.apiserver.registry import ListOptions, ResourceStore
from kubelite.kinds.base import Kind, Obj

log = logging.getLogger("kubelite.controllers")
RETRY_SECONDS = 2.0
RESTART_SECONDS = 0.1


def store_of(stores: dict[Kind, ResourceStore], plural: str, group: str = "") -> ResourceStore:
    return next(s for k, s in stores.items() if k.plural == plural and k.group == group)


class WorkQueue:
    """Keys to sync, each queued at most once; ``sync(key)`` returning True, or raising, puts
    the key back after ``retry`` seconds (a controller's rate-limited requeue, simplified)."""

    def __init__(self, name: str, sync: Callable[[str], Awaitable[bool | None]], retry: float = RETRY_SECONDS) -> None:
        self.name = name
        self.sync = sync
        self.retry = retry
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()

    def add(self, key: str) -> None:
        if key and key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    async def run(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            try:
                again = await self.sync(key)
            except Exception:
                log.exception("%s: syncing %s", self.name, key)
                again = True
            if again:
                asyncio.get_running_loop().call_later(self.retry, self.add, key)


async def watch_forever(store: ResourceStore, on_event: Callable[[str, Obj], Any], what: str,
                        namespace: str = "") -> None:
    """Call ``on_event(type, object)`` for the store's objects (the current ones as ADDED, then
    every change) until cancelled; an ended or expired watch starts over."""
    while True:
        try:
            async for etype, obj in store.watch(namespace, ListOptions()):
                on_event(etype, obj)
        except errors.StatusError as exc:
            log.info("%s watch restarted: %s", what, exc.message)
        await asyncio.sleep(RESTART_SECONDS)
