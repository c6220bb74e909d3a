"""Events from in-process controllers: :class:`kubelite.client.events.EventRecorder` writing
straight into the API server's events store instead of through HTTP."""

from __future__ import annotations

from typing import Any

from kubelite.apiserver.registry import WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.client.events import EventRecorder

Obj = dict[str, Any]


class StoreEventSink:
    """The two calls EventRecorder makes (create, and a patch of top-level fields for a repeat)."""

    def __init__(self, stores: Stores, component: str) -> None:
        self.events = stores.get("", "events", "v1")
        self.opts = WriteOptions(field_manager=component)

    async def create(self, api_version: str, plural: str, obj: dict[str, Any], namespace: str = "") -> Obj:
        return await self.events.create(namespace, dict(obj), self.opts)

    async def patch(self, api_version: str, plural: str, name: str, patch: Any, namespace: str = "",
                    patch_type: str = "merge") -> Obj:
        def apply(cur: Obj) -> Obj:
            cur.update(patch)  # count, lastTimestamp, message: scalars, merged as a strategic patch would
            return cur

        out, _ = await self.events.patch(namespace, name, apply, self.opts)
        return out


def recorder(stores: Stores, component: str) -> EventRecorder:
    return EventRecorder(StoreEventSink(stores, component), component=component)


__all__ = ["StoreEventSink", "recorder"]
