"""Recording events for components, deduplicated like client-go's EventCorrelator: an event
seen again (same source, object, type, reason, message) bumps ``count`` and
``lastTimestamp`` of the stored Event instead of creating a new one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from typing import Any, Protocol

from kubelite.api import errors
from kubelite.kinds.events import event_key, make_event, observe_patch

log = logging.getLogger("kubelite.events")
CACHE_SIZE = 4096

NORMAL = "Normal"
WARNING = "Warning"


class EventSink(Protocol):
    """Where events go: the API client (``kubelite.client.api.Client``) or, in process, the
    events store (``kubelite.controllers.events.StoreEventSink``)."""

    async def create(self, api_version: str, plural: str, obj: dict[str, Any], namespace: str = "") -> Any: ...

    async def patch(self, api_version: str, plural: str, name: str, patch: Any, namespace: str = "",
                    patch_type: str = "merge") -> Any: ...


class EventRecorder:
    def __init__(self, client: EventSink, component: str, host: str = "") -> None:
        self.client = client
        self.component = component
        self.host = host
        self._seen: OrderedDict[tuple[str, ...], dict[str, Any]] = OrderedDict()
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    async def record(self, involved: dict[str, Any], type_: str, reason: str, message: str,
                     related: dict[str, Any] | None = None, action: str = "") -> dict[str, Any] | None:
        """Write the event now; returns the stored Event, or None when the API refused it
        (events are best effort: a component never fails because of one)."""
        ev = make_event(involved, type_, reason, message, self.component, self.host, related=related, action=action)
        key = event_key(ev)
        async with self._lock:
            prev = self._seen.get(key)
            try:
                if prev is not None:
                    try:
                        stored = await self.client.patch(
                            "v1", "events", prev["metadata"]["name"], observe_patch(prev, ev),
                            namespace=prev["metadata"]["namespace"], patch_type="strategic")
                    except errors.StatusError as exc:
                        if exc.code != 404:
                            raise
                        stored = await self.client.create("v1", "events", ev, namespace=ev["metadata"]["namespace"])
                else:
                    stored = await self.client.create("v1", "events", ev, namespace=ev["metadata"]["namespace"])
            except (TimeoutError, errors.StatusError, OSError) as exc:
                log.warning("could not record event %s/%s: %s", reason, ev["involvedObject"].get("name"), exc)
                return None
            self._seen[key] = stored
            self._seen.move_to_end(key)
            while len(self._seen) > CACHE_SIZE:
                self._seen.popitem(last=False)
            return stored

    def emit(self, involved: dict[str, Any], type_: str, reason: str, message: str,
             related: dict[str, Any] | None = None, action: str = "") -> None:
        """Fire and remember: record in the background; :meth:`flush` awaits what is pending."""
        task = asyncio.create_task(self._record_quietly(involved, type_, reason, message, related, action))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _record_quietly(self, *args: Any) -> None:
        await self.record(*args)

    async def flush(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t
