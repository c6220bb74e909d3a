"""LimitRanger (plugin/pkg/admission/limitranger): containers get the ``default`` limits and
``defaultRequest`` requests of the namespace's Container LimitRanges, and must stay
within their ``min`` / ``max``."""

from __future__ import annotations

import time
from typing import Any

from kubelite.admission.quota import qty
from kubelite.api import errors
from kubelite.apiserver.admission import CREATE, UPDATE, Attributes
from kubelite.apiserver.registry import ListOptions
from kubelite.apiserver.stores import Stores

ANNOTATION = "kubernetes.io/limit-ranger"


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in ((pod.get("spec") or {}).get("containers") or []) if isinstance(c, dict)]


LIVE_LOOKUP_TTL = 30.0  # upstream's liveTTL: how long a live lookup answers for a namespace


class LimitRanger:
    """With an informer on LimitRanges, a pod create reads them from memory; when it holds none
    for the namespace (not synced yet, or a LimitRange created a moment ago), a live list
    answers, remembered for LIVE_LOOKUP_TTL seconds, as upstream's liveLookupCache."""

    def __init__(self, stores: Stores, informer: Any = None) -> None:
        self.stores = stores
        self.informer = informer
        self._live: dict[str, tuple[float, list[dict[str, Any]]]] = {}

    def _store(self) -> Any:
        return self.stores.find("", "limitranges")

    async def _ranges(self, namespace: str) -> list[dict[str, Any]]:
        if self.informer is not None and self.informer.synced.is_set():
            ranges: list[dict[str, Any]] = self.informer.list(namespace)
            if ranges:
                return ranges
            hit = self._live.get(namespace)
            if hit is not None and hit[0] > time.monotonic():
                return hit[1]
        store = self._store()
        if store is None:
            return []
        ranges, _, _, _ = await store.list(namespace, ListOptions())
        if self.informer is not None:
            if len(self._live) > 4096:  # a bound, not an eviction policy: namespaces come and go
                self._live.clear()
            self._live[namespace] = (time.monotonic() + LIVE_LOOKUP_TTL, ranges)
        return ranges

    async def _items(self, namespace: str) -> list[dict[str, Any]]:
        ranges = await self._ranges(namespace)
        out = []
        for lr in sorted(ranges, key=lambda r: r["metadata"]["name"]):
            out += [i for i in ((lr.get("spec") or {}).get("limits") or []) if (i or {}).get("type") == "Container"]
        return out

    def _applies(self, a: Attributes) -> bool:
        return a.operation == CREATE and a.kind.group == "" and a.kind.plural == "pods" and not a.subresource \
            and a.obj is not None

    async def admit(self, a: Attributes) -> None:
        if not self._applies(a):
            return
        items = await self._items(a.namespace)
        if not items:
            return
        notes = []
        for c in containers(a.obj):  # type: ignore[arg-type]
            res = c.setdefault("resources", {})
            limits = res.setdefault("limits", {})
            requests = res.setdefault("requests", {})
            set_req, set_lim = [], []
            for item in items:
                for r, v in (item.get("default") or {}).items():
                    if r not in limits:
                        limits[r] = v
                        set_lim.append(r)
                for r, v in (item.get("defaultRequest") or {}).items():
                    if r not in requests:
                        requests[r] = v
                        set_req.append(r)
            for r, v in limits.items():  # API defaulting: a limit without a request requests the limit
                if r not in requests:
                    requests[r] = v
            if not limits:
                res.pop("limits")
            if not requests:
                res.pop("requests")
            name = c.get("name", "")
            if set_req:
                notes.append(f"{', '.join(sorted(set_req))} request for container {name}")
            if set_lim:
                notes.append(f"{', '.join(sorted(set_lim))} limit for container {name}")
        if notes:
            meta = a.obj.setdefault("metadata", {})  # type: ignore[union-attr]
            meta.setdefault("annotations", {})[ANNOTATION] = "LimitRanger plugin set: " + "; ".join(notes)

    @staticmethod
    def _resize(a: Attributes) -> bool:
        """SupportsAttributes' special case: an in-place resize (pods/resize) is validated
        against the ranges too (not defaulted: a resize changes only what it names)."""
        return a.operation == UPDATE and a.subresource == "resize" and a.kind.group == "" \
            and a.kind.plural == "pods" and a.obj is not None

    async def validate(self, a: Attributes) -> None:
        if not self._applies(a) and not self._resize(a):
            return
        items = await self._items(a.namespace)
        name = a.name or (a.obj.get("metadata") or {}).get("name", "")  # type: ignore[union-attr]
        for item in items:
            for c in containers(a.obj):  # type: ignore[arg-type]
                res = c.get("resources") or {}
                for r, mx in (item.get("max") or {}).items():
                    lim = (res.get("limits") or {}).get(r)
                    if lim is None:
                        raise errors.forbidden("pods", name, f"maximum {r} usage per Container is {mx}.  No limit is "
                                                             f"specified")
                    if qty(lim) > qty(mx):
                        raise errors.forbidden("pods", name, f"maximum {r} usage per Container is {mx}, but limit is "
                                                             f"{lim}")
                for r, mn in (item.get("min") or {}).items():
                    req = (res.get("requests") or {}).get(r)
                    if req is None:
                        raise errors.forbidden("pods", name, f"minimum {r} usage per Container is {mn}.  No request "
                                                             f"is specified")
                    if qty(req) < qty(mn):
                        raise errors.forbidden("pods", name, f"minimum {r} usage per Container is {mn}, but request "
                                                             f"is {req}")
