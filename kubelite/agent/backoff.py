"""Per-key exponential back-off, as client-go's flowcontrol.Backoff does it for the kubelet.

The kubelet keys container restarts by ``<pod name>_<namespace>_<uid>_<container>_<hash>``
and image pulls by ``<pod uid>_<image>``; an entry doubles on every :meth:`next` from
``initial`` up to ``maximum`` and is forgotten when nothing happened for ``2 * maximum``
(so a container that ran fine for 10 minutes starts again at 10 s).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

CONTAINER_BACKOFF_INITIAL = 10.0
CONTAINER_BACKOFF_MAX = 300.0
IMAGE_BACKOFF_INITIAL = 10.0
IMAGE_BACKOFF_MAX = 300.0


@dataclass
class _Entry:
    backoff: float
    last_update: float


class Backoff:
    def __init__(self, initial: float, maximum: float, clock: Callable[[], float] = time.time) -> None:
        self.initial = initial
        self.maximum = maximum
        self.clock = clock
        self._entries: dict[str, _Entry] = {}

    def get(self, key: str) -> float:
        e = self._entries.get(key)
        return e.backoff if e else 0.0

    def _expired(self, event_time: float, last_update: float) -> bool:
        return event_time - last_update > 2 * self.maximum

    def next(self, key: str, event_time: float | None = None) -> float:
        """Move ``key`` one step further (first step: ``initial``); returns the new delay."""
        now = self.clock() if event_time is None else event_time
        e = self._entries.get(key)
        if e is None or self._expired(now, e.last_update):
            e = self._entries[key] = _Entry(self.initial, now)
        else:
            e.backoff = min(e.backoff * 2, self.maximum)
            e.last_update = now
        return e.backoff

    def is_in_backoff_since(self, key: str, event_time: float) -> bool:
        """Whether less than the current delay has passed since ``event_time``
        (the kubelet passes the finish time of the container's last run)."""
        e = self._entries.get(key)
        if e is None or self._expired(self.clock(), e.last_update):
            return False
        return self.clock() - event_time < e.backoff

    def remaining(self, key: str, event_time: float) -> float:
        e = self._entries.get(key)
        if e is None:
            return 0.0
        return max(0.0, e.backoff - (self.clock() - event_time))

    def reset(self, key: str) -> None:
        self._entries.pop(key, None)

    def gc(self) -> None:
        now = self.clock()
        for k in [k for k, e in self._entries.items() if self._expired(now, e.last_update)]:
            del self._entries[k]
