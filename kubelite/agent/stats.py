"""The node's resource usage read from cgroups, as the kubelet serves it from cAdvisor:

- ``/stats/summary``: the Summary API (k8s.io/kubelet/pkg/apis/stats/v1alpha1) — the node and
  each pod with a ready sandbox, its containers: ``cpu.usageCoreNanoSeconds`` (cumulative),
  ``cpu.usageNanoCores`` (the rate since the sampler's earlier reading, at least a second
  before; absent until there is one), ``memory.usageBytes``, ``workingSetBytes``, ``rssBytes``,
  page faults, and for the node ``availableBytes``;
- ``/metrics/resource`` (pkg/kubelet/metrics/collectors/resource_metrics.go):
  ``node_cpu_usage_seconds_total``, ``node_memory_working_set_bytes``,
  ``container_cpu_usage_seconds_total``, ``container_memory_working_set_bytes``,
  ``container_start_time_seconds``, ``pod_cpu_usage_seconds_total``,
  ``pod_memory_working_set_bytes`` (with the time of the reading) and ``scrape_error``: what
  metrics-server scrapes;
- ``/metrics/cadvisor``: cAdvisor's ``container_cpu_usage_seconds_total``,
  ``container_memory_working_set_bytes``, ``container_memory_usage_bytes``,
  ``container_memory_rss`` with cAdvisor's labels (container, id, image, name, namespace, pod),
  for the containers, their pods (``container=""``) and the node's root cgroup (``id="/"``).

A figure a cgroup does not give is left out, never reported as 0.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from kubelite.agent.cgroups import CgroupManager, CgroupUsage
from kubelite.agent.crispec import POD_NAME, POD_NAMESPACE

SAMPLE_PERIOD = 10.0  # cAdvisor's housekeeping interval as the kubelet sets it
MIN_RATE_WINDOW = 1.0


@dataclass
class ContainerSample:
    name: str
    id: str
    image: str
    start_time: float
    cgroup: str
    usage: CgroupUsage | None


@dataclass
class PodSample:
    namespace: str
    name: str
    uid: str
    start_time: float
    cgroup: str
    usage: CgroupUsage | None
    containers: list[ContainerSample] = field(default_factory=list)


@dataclass
class NodeSample:
    time: float
    usage: CgroupUsage | None
    pods: list[PodSample] = field(default_factory=list)
    error: bool = False


def _rfc3339(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StatsProvider:
    """``pods()`` is the runtime cache's last relist ({uid: PodRuntime})."""

    def __init__(self, node_name: str, cgroups: CgroupManager, pods: Callable[[], dict[str, Any]],
                 memory_capacity: int = 0, start_time: float | None = None) -> None:
        self.node_name = node_name
        self.cgroups = cgroups
        self.pods = pods
        self.memory_capacity = memory_capacity
        self.start_time = start_time if start_time is not None else time.time()
        # the sampler's two latest readings per cgroup: (time, cumulative cpu ns)
        self._older: dict[str, tuple[float, int]] = {}
        self._newer: dict[str, tuple[float, int]] = {}

    # ------------------------------------------------------------------ reading
    def sample(self) -> NodeSample:
        """One reading of the root cgroup and of every pod with a ready sandbox (blocking I/O)."""
        now = time.time()
        out = NodeSample(now, None)
        try:
            out.usage = self.cgroups.usage("")
            cgroup_names = self.cgroups.pod_cgroup_names()
        except OSError:
            out.error = True
            return out
        for uid, pr in self.pods().items():
            sandbox = pr.latest_sandbox()
            cg = cgroup_names.get(uid)
            if sandbox is None or not sandbox.ready or cg is None:
                continue
            labels = sandbox.labels or {}
            pod = PodSample(labels.get(POD_NAMESPACE, ""), labels.get(POD_NAME, ""), uid, sandbox.created_at, cg,
                            self._usage(cg, out))
            for c in pr.containers:
                if c.state != "running":
                    continue
                ccg = f"{cg}/{c.id}"
                pod.containers.append(ContainerSample(c.name, c.id, c.image, c.started_at or c.created_at, ccg,
                                                      self._usage(ccg, out)))
            out.pods.append(pod)
        return out

    def _usage(self, name: str, out: NodeSample) -> CgroupUsage | None:
        try:
            return self.cgroups.usage(name)
        except OSError:
            out.error = True
            return None

    async def read(self) -> NodeSample:
        return await asyncio.to_thread(self.sample)

    def remember(self, sample: NodeSample) -> None:
        """Keep a reading for the rates (usageNanoCores) later summaries compute."""
        points: dict[str, tuple[float, int]] = {}
        for key, usage in self._cpu_points(sample):
            points[key] = (usage.time, usage.cpu_ns or 0)
        self._older, self._newer = self._newer, points

    @staticmethod
    def _cpu_points(sample: NodeSample) -> Iterator[tuple[str, CgroupUsage]]:
        if sample.usage is not None and sample.usage.cpu_ns is not None:
            yield "", sample.usage
        for p in sample.pods:
            if p.usage is not None and p.usage.cpu_ns is not None:
                yield p.cgroup, p.usage
            for c in p.containers:
                if c.usage is not None and c.usage.cpu_ns is not None:
                    yield c.cgroup, c.usage

    async def run_sampler(self, period: float = SAMPLE_PERIOD) -> None:
        while True:
            self.remember(await self.read())
            await asyncio.sleep(period)

    def nano_cores(self, key: str, usage: CgroupUsage) -> int | None:
        if usage.cpu_ns is None:
            return None
        for points in (self._newer, self._older):
            base = points.get(key)
            if base is not None and usage.time - base[0] >= MIN_RATE_WINDOW and usage.cpu_ns >= base[1]:
                return int((usage.cpu_ns - base[1]) / (usage.time - base[0]))
        return None

    # ------------------------------------------------------------------ the Summary API
    def _cpu(self, key: str, usage: CgroupUsage | None) -> dict[str, Any] | None:
        if usage is None or usage.cpu_ns is None:
            return None
        out: dict[str, Any] = {"time": _rfc3339(usage.time)}
        rate = self.nano_cores(key, usage)
        if rate is not None:
            out["usageNanoCores"] = rate
        out["usageCoreNanoSeconds"] = usage.cpu_ns
        return out

    @staticmethod
    def _memory(usage: CgroupUsage | None, capacity: int = 0) -> dict[str, Any] | None:
        if usage is None or usage.memory_bytes is None:
            return None
        out: dict[str, Any] = {"time": _rfc3339(usage.time)}
        if capacity and usage.working_set_bytes is not None:
            out["availableBytes"] = max(0, capacity - usage.working_set_bytes)
        for key, value in (("usageBytes", usage.memory_bytes), ("workingSetBytes", usage.working_set_bytes),
                           ("rssBytes", usage.rss_bytes), ("pageFaults", usage.page_faults),
                           ("majorPageFaults", usage.major_page_faults)):
            if value is not None:
                out[key] = value
        return out

    async def summary(self) -> dict[str, Any]:
        s = await self.read()
        node: dict[str, Any] = {"nodeName": self.node_name, "startTime": _rfc3339(self.start_time)}
        for key, value in (("cpu", self._cpu("", s.usage)), ("memory", self._memory(s.usage, self.memory_capacity))):
            if value is not None:
                node[key] = value
        pods = []
        for p in s.pods:
            pod: dict[str, Any] = {"podRef": {"name": p.name, "namespace": p.namespace, "uid": p.uid},
                                   "startTime": _rfc3339(p.start_time), "containers": []}
            for c in p.containers:
                cs: dict[str, Any] = {"name": c.name, "startTime": _rfc3339(c.start_time)}
                for key, value in (("cpu", self._cpu(c.cgroup, c.usage)), ("memory", self._memory(c.usage))):
                    if value is not None:
                        cs[key] = value
                pod["containers"].append(cs)
            for key, value in (("cpu", self._cpu(p.cgroup, p.usage)), ("memory", self._memory(p.usage))):
                if value is not None:
                    pod[key] = value
            pods.append(pod)
        return {"node": node, "pods": pods}

    # ------------------------------------------------------------------ Prometheus
    async def resource_registry(self) -> CollectorRegistry:
        r = CollectorRegistry(auto_describe=False)
        r.register(_ResourceCollector(await self.read()))
        return r

    async def cadvisor_registry(self) -> CollectorRegistry:
        r = CollectorRegistry(auto_describe=False)
        r.register(_CadvisorCollector(await self.read()))
        return r


class _ResourceCollector(Collector):
    """resource_metrics.go: every figure with the time it was read."""

    def __init__(self, sample: NodeSample) -> None:
        self.s = sample

    def collect(self) -> Any:
        s = self.s
        labels_c = ["container", "pod", "namespace"]
        labels_p = ["pod", "namespace"]
        node_cpu = CounterMetricFamily("node_cpu_usage_seconds", "Cumulative cpu time consumed by the node in "
                                                                 "core-seconds")
        node_mem = GaugeMetricFamily("node_memory_working_set_bytes", "Current working set of the node in bytes")
        c_cpu = CounterMetricFamily("container_cpu_usage_seconds", "Cumulative cpu time consumed by the container "
                                                                   "in core-seconds", labels=labels_c)
        c_mem = GaugeMetricFamily("container_memory_working_set_bytes", "Current working set of the container in "
                                                                        "bytes", labels=labels_c)
        c_start = GaugeMetricFamily("container_start_time_seconds", "Start time of the container since unix epoch "
                                                                    "in seconds", labels=labels_c)
        p_cpu = CounterMetricFamily("pod_cpu_usage_seconds", "Cumulative cpu time consumed by the pod in "
                                                             "core-seconds", labels=labels_p)
        p_mem = GaugeMetricFamily("pod_memory_working_set_bytes", "Current working set of the pod in bytes",
                                  labels=labels_p)
        u = s.usage
        if u is not None and u.cpu_ns is not None:
            node_cpu.add_metric([], u.cpu_ns / 1e9, timestamp=u.time)
        if u is not None and u.working_set_bytes is not None:
            node_mem.add_metric([], u.working_set_bytes, timestamp=u.time)
        for p in s.pods:
            for c in p.containers:
                lv = [c.name, p.name, p.namespace]
                c_start.add_metric(lv, c.start_time, timestamp=s.time)
                if c.usage is not None and c.usage.cpu_ns is not None:
                    c_cpu.add_metric(lv, c.usage.cpu_ns / 1e9, timestamp=c.usage.time)
                if c.usage is not None and c.usage.working_set_bytes is not None:
                    c_mem.add_metric(lv, c.usage.working_set_bytes, timestamp=c.usage.time)
            if p.usage is not None and p.usage.cpu_ns is not None:
                p_cpu.add_metric([p.name, p.namespace], p.usage.cpu_ns / 1e9, timestamp=p.usage.time)
            if p.usage is not None and p.usage.working_set_bytes is not None:
                p_mem.add_metric([p.name, p.namespace], p.usage.working_set_bytes, timestamp=p.usage.time)
        yield from (node_cpu, node_mem, c_cpu, c_mem, c_start, p_cpu, p_mem)
        err = GaugeMetricFamily("scrape_error", "1 if there was an error while getting container metrics, 0 otherwise")
        err.add_metric([], 1 if s.error else 0)
        yield err


class _CadvisorCollector(Collector):
    LABELS = ["container", "id", "image", "name", "namespace", "pod"]

    def __init__(self, sample: NodeSample) -> None:
        self.s = sample

    def _rows(self) -> Iterator[tuple[list[str], CgroupUsage]]:
        if self.s.usage is not None:
            yield ["", "/", "", "", "", ""], self.s.usage
        for p in self.s.pods:
            if p.usage is not None:
                yield ["", "/" + p.cgroup, "", "", p.namespace, p.name], p.usage
            for c in p.containers:
                if c.usage is not None:
                    yield [c.name, "/" + c.cgroup, c.image, c.id, p.namespace, p.name], c.usage

    def collect(self) -> Any:
        cpu = CounterMetricFamily("container_cpu_usage_seconds", "Cumulative cpu time consumed in seconds.",
                                  labels=self.LABELS)
        ws = GaugeMetricFamily("container_memory_working_set_bytes", "Current working set in bytes.",
                               labels=self.LABELS)
        usage = GaugeMetricFamily("container_memory_usage_bytes", "Current memory usage in bytes, including all "
                                  "memory regardless of when it was accessed", labels=self.LABELS)
        rss = GaugeMetricFamily("container_memory_rss", "Size of RSS in bytes.", labels=self.LABELS)
        for labels, u in self._rows():
            if u.cpu_ns is not None:
                cpu.add_metric(labels, u.cpu_ns / 1e9, timestamp=u.time)
            if u.working_set_bytes is not None:
                ws.add_metric(labels, u.working_set_bytes, timestamp=u.time)
            if u.memory_bytes is not None:
                usage.add_metric(labels, u.memory_bytes, timestamp=u.time)
            if u.rss_bytes is not None:
                rss.add_metric(labels, u.rss_bytes, timestamp=u.time)
        yield from (cpu, ws, usage, rss)


__all__ = ["NodeSample", "StatsProvider"]
