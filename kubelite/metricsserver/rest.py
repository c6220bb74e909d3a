"""metrics.k8s.io/v1beta1 ``nodes`` (NodeMetrics) and ``pods`` (PodMetrics), read-only, as
metrics-server's pkg/api serves them: the objects listed are the Nodes / Pods the label (and
field) selectors pick, each with its usage once two points exist; ``get`` of an object that
does not exist is its core kind's NotFound, of one without metrics yet this kind's."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from kubelite.api import errors, quantity
from kubelite.api.meta import format_time, now_rfc3339
from kubelite.api.protobuf import go_duration
from kubelite.apiserver.registry import ListOptions
from kubelite.kinds.base import Kind, Obj
from kubelite.metricsserver.scraper import MetricsServer
from kubelite.metricsserver.storage import NS


def _time(ns: int) -> str:
    return format_time(dt.datetime.fromtimestamp(ns / NS, dt.UTC))


def _meta(obj: Obj, namespaced: bool) -> Obj:
    m = obj.get("metadata") or {}
    out: Obj = {"name": m.get("name", "")}
    if namespaced:
        out["namespace"] = m.get("namespace", "")
    out["creationTimestamp"] = now_rfc3339()
    if m.get("labels"):
        out["labels"] = dict(m["labels"])
    return out


class MetricsREST:
    """Duck-types what the handlers call on a store, for ``get`` and ``list`` only."""

    def __init__(self, kind: Kind, server: MetricsServer) -> None:
        self.kind = kind
        self.storage_kind = kind
        self.strategy = kind.strategy
        self.server = server
        self.admission = None
        self.pods = kind.plural == "pods"
        self.core = server.stores.get("", kind.plural)

    def _unsupported(self, verb: str) -> errors.StatusError:
        return errors.method_not_supported(self.kind.plural, verb, self.kind.group)

    def _metrics(self, obj: Obj) -> Obj | None:
        m = obj.get("metadata") or {}
        if not self.pods:
            u = self.server.nodes.usage(m.get("name", ""))
            if u is None:
                return None
            return {"metadata": _meta(obj, False), "timestamp": _time(u.timestamp), "window": go_duration(u.window),
                    "usage": {"cpu": u.cpu, "memory": u.memory}}
        found = self.server.pods.usage(m.get("namespace", ""), m.get("name", ""))
        if found is None:
            return None
        containers, ts, window = found
        order = {c.get("name"): i for i, c in enumerate((obj.get("spec") or {}).get("containers") or [])}
        containers.sort(key=lambda cu: (order.get(cu[0], len(order)), cu[0]))
        return {"metadata": _meta(obj, True), "timestamp": _time(ts), "window": go_duration(window),
                "containers": [{"name": name, "usage": {"cpu": u.cpu, "memory": u.memory}} for name, u in containers]}

    async def get(self, namespace: str, name: str, resource_version: str = "") -> Obj:
        try:
            obj = await self.core.get(namespace, name)
        except errors.StatusError as exc:
            if exc.code == 404:
                raise errors.not_found(self.kind.plural, f"{namespace}/{name}" if self.pods else name) from exc
            raise
        out = self._metrics(obj)
        if out is None:
            raise errors.not_found(self.kind.plural, f"{namespace}/{name}" if self.pods else name, self.kind.group)
        return out

    async def list(self, namespace: str, opts: ListOptions) -> tuple[list[Obj], str, str, None]:
        plain = ListOptions(label_selector=opts.label_selector, field_selector=opts.field_selector)
        objs, _, _, _ = await self.core.list(namespace, plain)
        items = [m for o in objs if (m := self._metrics(o)) is not None]
        return items, "", "", None

    def watch(self, *a: Any, **kw: Any) -> Any:
        raise self._unsupported("watch")

    async def create(self, *a: Any, **kw: Any) -> Any:
        raise self._unsupported("create")

    async def update(self, *a: Any, **kw: Any) -> Any:
        raise self._unsupported("update")

    async def patch(self, *a: Any, **kw: Any) -> Any:
        raise self._unsupported("patch")

    async def delete(self, *a: Any, **kw: Any) -> Any:
        raise self._unsupported("delete")

    async def delete_collection(self, *a: Any, **kw: Any) -> Any:
        raise self._unsupported("deletecollection")

    def check_field_selector(self, sel: Any) -> None:
        self.core.check_field_selector(sel)


class ResourceMetricsAPI:
    """The RESOURCE_METRICS service: the REST object of each metrics.k8s.io kind."""

    def __init__(self, server: MetricsServer) -> None:
        self.server = server

    def for_kind(self, kind: Kind) -> MetricsREST:
        return MetricsREST(kind, self.server)


def summed(usages: list[Obj], resource: str, fmt: str) -> str:
    """The containers' usage of one resource, added up (the Table's cells of a PodMetrics)."""
    total = sum((quantity.parse_quantity(u.get(resource, "0")) for u in usages), Decimal(0))
    return quantity.format_quantity(total, fmt)


__all__ = ["MetricsREST", "ResourceMetricsAPI", "summed"]
