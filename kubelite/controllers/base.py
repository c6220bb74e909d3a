"""What every in-process controller needs: a de-duplicating work queue whose failed keys come
back with a per-key exponential back-off (client-go's rate-limited workqueue, simplified), and
informers over the API server's stores (:func:`informer`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from kubelite.api import errors
from kubelite.apiserver.listwatch import store_informer
from kubelite.apiserver.registry import ResourceStore
from kubelite.client.informer import Informer

log = logging.getLogger("kubelite.controllers")
RETRY_SECONDS = 2.0
MAX_RETRY_SECONDS = 60.0


def informer(store: ResourceStore, namespace: str = "", *, resync: float = 0.0) -> Informer:
    return store_informer(store, namespace, resync=resync)


class WorkQueue:
    """Keys to sync, each queued at most once. ``sync(key)`` returning True puts the key back
    after ``retry`` seconds; raising logs the traceback and puts it back after a back-off that
    doubles per consecutive failure of that key (up to ``max_retry``)."""

    def __init__(self, name: str, sync: Callable[[str], Awaitable[bool | None]], retry: float = RETRY_SECONDS,
                 max_retry: float = MAX_RETRY_SECONDS) -> None:
        self.name = name
        self.sync = sync
        self.retry = retry
        self.max_retry = max_retry
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._failures: dict[str, int] = {}

    def add(self, key: str) -> None:
        if key and key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def __len__(self) -> int:
        return len(self._queued)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            try:
                again = await self.sync(key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                n = self._failures[key] = self._failures.get(key, 0) + 1
                delay = min(self.retry * 2 ** (n - 1), self.max_retry)
                # the API refusing a write (quota, a conflict, validation) is the controller's
                # ordinary weather: its message says it; anything else is a bug and gets its traceback
                refused = isinstance(exc, errors.StatusError)
                log.error("%s: syncing %r failed (%d in a row); retrying in %.0fs%s", self.name, key, n, delay,
                          f": {exc}" if refused else "", exc_info=not refused)
                loop.call_later(delay, self.add, key)
                continue
            self._failures.pop(key, None)
            if again:
                loop.call_later(self.retry, self.add, key)
