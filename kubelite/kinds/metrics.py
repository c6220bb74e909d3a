"""metrics.k8s.io/v1beta1 NodeMetrics (``nodes``) and PodMetrics (``pods``): read-only kinds
that are never stored; :mod:`kubelite.metricsserver` answers their ``get`` and ``list`` from
the usage it scraped from the nodes (what metrics-server serves; ``kubectl top`` reads them)."""

from __future__ import annotations

from typing import Any

from kubelite.apiserver.rest import RESOURCE_METRICS
from kubelite.kinds.base import Column, Kind, Obj, Strategy

GROUP = "metrics.k8s.io"
_COLUMNS = (Column("Name", "string", "name", "Name of the resource"), Column("cpu", "string", "quantity"),
            Column("memory", "string", "quantity"), Column("Window", "string", "duration"))


class NodeMetricsStrategy(Strategy):
    """addNodeMetricsToTable."""

    columns = _COLUMNS

    def row(self, obj: Obj) -> list[Any]:
        usage = obj.get("usage") or {}
        return [obj["metadata"]["name"], usage.get("cpu", ""), usage.get("memory", ""), obj.get("window", "")]


class PodMetricsStrategy(Strategy):
    """addPodMetricsToTable: the containers' usage added up."""

    columns = _COLUMNS

    def row(self, obj: Obj) -> list[Any]:
        from kubelite.metricsserver.rest import summed

        usages = [c.get("usage") or {} for c in obj.get("containers") or []]
        return [obj["metadata"]["name"], summed(usages, "cpu", "DecimalSI"), summed(usages, "memory", "BinarySI"),
                obj.get("window", "")]


def _metrics_kind(kind: str, plural: str, namespaced: bool, strategy: Strategy) -> Kind:
    return Kind(group=GROUP, version="v1beta1", kind=kind, plural=plural, namespaced=namespaced, strategy=strategy,
                verbs=("get", "list"),
                virtual=lambda ctx, k: ctx.services.require(RESOURCE_METRICS).for_kind(k))


NODEMETRICS = _metrics_kind("NodeMetrics", "nodes", False, NodeMetricsStrategy())
PODMETRICS = _metrics_kind("PodMetrics", "pods", True, PodMetricsStrategy())
