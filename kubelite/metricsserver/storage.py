"""Metric points and their storage, as metrics-server's pkg/scraper/client/resource/decode.go
and pkg/storage keep them: the last two points of each node and container; usage is
(cpu₂ − cpu₁) / (t₂ − t₁) and the last working set, over the window t₂ − t₁."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from prometheus_client.parser import text_string_to_metric_families

from kubelite.api import quantity

METRIC_RESOLUTION = 15.0  # --metric-resolution
# a container younger than the resolution (but this old) gets a first point at its start, CPU 0
FRESH_CONTAINER_MIN_RESOLUTION = 10.0
NS = 10 ** 9


@dataclass(frozen=True)
class MetricsPoint:
    start_time: int = 0  # ns since the epoch; cumulative CPU was 0 then
    timestamp: int = 0  # ns since the epoch, when the point was measured
    cpu: int = 0  # cumulative CPU in nanocore-seconds
    memory: int = 0  # working set in bytes


@dataclass
class Batch:
    nodes: dict[str, MetricsPoint] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict[str, MetricsPoint]] = field(default_factory=dict)  # (ns, pod) -> containers


def decode_batch(text: str, default_time: float, node_name: str) -> Batch:
    """decodeBatch: one node's /metrics/resource. A node without both CPU and memory is left
    out, and so is a pod with a container missing either."""
    out = Batch()
    node: dict[str, int] = {}
    pods: dict[tuple[str, str], dict[str, dict[str, int]]] = {}
    default_ns = int(default_time * NS)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            ts = int(float(s.timestamp) * NS) if s.timestamp is not None else default_ns
            if s.name == "node_cpu_usage_seconds_total":
                node["cpu"], node["ts"] = int(s.value * NS), ts
            elif s.name == "node_memory_working_set_bytes":
                node["memory"], node["ts"] = int(s.value), ts
            elif s.name in ("container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
                            "container_start_time_seconds"):
                key = (s.labels.get("namespace", ""), s.labels.get("pod", ""))
                c = pods.setdefault(key, {}).setdefault(s.labels.get("container", ""), {})
                if s.name == "container_cpu_usage_seconds_total":
                    c["cpu"], c["ts"] = int(s.value * NS), ts
                elif s.name == "container_memory_working_set_bytes":
                    c["memory"], c["ts"] = int(s.value), ts
                else:
                    c["start"] = int(s.value * NS)
    if node.get("ts") and node.get("cpu") and node.get("memory"):
        out.nodes[node_name] = MetricsPoint(0, node["ts"], node["cpu"], node["memory"])
    for key, containers in pods.items():
        points: dict[str, MetricsPoint] = {}
        for name, c in containers.items():
            if not c.get("cpu") or not c.get("memory"):
                points = {}
                break
            points[name] = MetricsPoint(c.get("start", 0), c.get("ts", 0), c["cpu"], c["memory"])
        if points:
            out.pods[key] = points
    return out


@dataclass(frozen=True)
class Usage:
    cpu: str  # a quantity in nanocores' canonical form ("512m", "1234567n")
    memory: str  # a quantity in bytes ("2884Ki")
    timestamp: int  # ns
    window: int  # ns


def resource_usage(last: MetricsPoint, prev: MetricsPoint) -> Usage | None:
    """resourceUsage; None where metrics-server skips the point (a restart, a counter going back)."""
    if last.start_time < prev.start_time or last.cpu < prev.cpu:
        return None
    window = last.timestamp - prev.timestamp
    if window <= 0:
        return None
    nanocores = int((last.cpu - prev.cpu) / (window / NS))
    return Usage(quantity.format_quantity(Decimal(nanocores) / NS, "DecimalSI"),
                 quantity.format_quantity(last.memory, "BinarySI"), last.timestamp, window)


class NodeStorage:
    def __init__(self) -> None:
        self.last: dict[str, MetricsPoint] = {}
        self.prev: dict[str, MetricsPoint] = {}

    def store(self, batch: Batch) -> None:
        last: dict[str, MetricsPoint] = {}
        prev: dict[str, MetricsPoint] = {}
        for name, new in batch.nodes.items():
            last[name] = new
            old = self.last.get(name)
            if old is None:
                continue
            if new.timestamp > old.timestamp:
                prev[name] = old
            elif (p := self.prev.get(name)) is not None and p.timestamp < new.timestamp:
                prev[name] = p
        self.last, self.prev = last, prev

    def usage(self, name: str) -> Usage | None:
        last, prev = self.last.get(name), self.prev.get(name)
        if last is None or prev is None:
            return None
        return resource_usage(last, prev)


class PodStorage:
    def __init__(self, resolution: float = METRIC_RESOLUTION) -> None:
        self.resolution = int(resolution * NS)
        self.last: dict[tuple[str, str], dict[str, MetricsPoint]] = {}
        self.prev: dict[tuple[str, str], dict[str, MetricsPoint]] = {}

    def store(self, batch: Batch) -> None:
        last: dict[tuple[str, str], dict[str, MetricsPoint]] = {}
        prev: dict[tuple[str, str], dict[str, MetricsPoint]] = {}
        fresh_min = int(FRESH_CONTAINER_MIN_RESOLUTION * NS)
        for key, containers in batch.pods.items():
            new_last: dict[str, MetricsPoint] = {}
            new_prev: dict[str, MetricsPoint] = {}
            for name, new in containers.items():
                new_last[name] = new
                age = new.timestamp - new.start_time
                if new.start_time < new.timestamp and fresh_min <= age < self.resolution:
                    new_prev[name] = MetricsPoint(new.start_time, new.start_time, 0, new.memory)
                    continue
                old = self.last.get(key, {}).get(name)
                if old is None or not new.start_time < old.timestamp:
                    continue  # new, or restarted since: no earlier point counts
                if new.timestamp > old.timestamp:
                    new_prev[name] = old
                elif (p := self.prev.get(key, {}).get(name)) is not None and p.timestamp < new.timestamp:
                    new_prev[name] = p
            if new_prev:
                prev[key] = new_prev
            last[key] = new_last
        self.last, self.prev = last, prev

    def usage(self, namespace: str, name: str) -> tuple[list[tuple[str, Usage]], int, int] | None:
        """([(container, usage)], timestamp, window) of a pod, or None until every container
        has two points."""
        key = (namespace, name)
        last, prev = self.last.get(key), self.prev.get(key)
        if last is None or prev is None:
            return None
        out: list[tuple[str, Usage]] = []
        earliest: Usage | None = None
        for cname, point in last.items():
            p = prev.get(cname)
            if p is None:
                return None
            u = resource_usage(point, p)
            if u is None:
                continue
            out.append((cname, u))
            if earliest is None or u.timestamp < earliest.timestamp:
                earliest = u
        if earliest is None:
            return [], 0, 0
        return out, earliest.timestamp, earliest.window


__all__ = ["Batch", "MetricsPoint", "NodeStorage", "PodStorage", "Usage", "decode_batch", "resource_usage"]
