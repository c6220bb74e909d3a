"""The node agent's Prometheus metrics, under the kubelet's names (pkg/kubelet/metrics,
pkg/kubelet/prober, pkg/kubelet/cri/remote's instrumented services), served on its endpoint's
``/metrics`` behind the kubelet's authorization (``nodes/metrics``):

- ``kubelet_pod_start_duration_seconds``: from the agent first seeing a pod to its first
  Running status;
- ``kubelet_running_pods`` (pods with a ready sandbox) and
  ``kubelet_running_containers{container_state}``, from the last relist of the runtime;
- ``kubelet_runtime_operations_total``, ``..._duration_seconds``, ``..._errors_total``
  ``{operation_type}``: every CRI call;
- ``kubelet_node_name{node}``;

and on ``/metrics/probes`` (its own registry, as the kubelet's):
``prober_probe_total{probe_type,result,container,pod,namespace,pod_uid}``, every probe run.

Each agent has its registry (several agents may share a process: ``kubelite server`` runs one
beside the API server, whose ``/metrics`` is another registry).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from kubelite.agent.probes import FAILURE, SUCCESS

# podStartupDurationBuckets
POD_START_BUCKETS = (0.5, 1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200,
                     1800, 2700, 3600)
# metrics.ExponentialBuckets(.005, 2.5, 14)
RUNTIME_BUCKETS = tuple(0.005 * 2.5 ** i for i in range(14))
CONTAINER_STATES = ("created", "running", "exited", "unknown")
PROBE_TYPES = {"liveness": "Liveness", "readiness": "Readiness", "startup": "Startup"}


def operation_type(method: str) -> str:
    """The kubelet's operation_type of a CRI method: RunPodSandbox -> run_podsandbox,
    ListContainers -> list_containers, ExecSync -> exec_sync."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", method.replace("PodSandbox", "Podsandbox")).lower()


class _RunningCollector(Collector):
    """kubelet_running_pods and kubelet_running_containers, read at scrape time."""

    def __init__(self, pods: Callable[[], dict[str, Any]]) -> None:
        self.pods = pods

    def collect(self) -> Any:
        runtime_pods = self.pods()
        running = sum(1 for pr in runtime_pods.values() if (sb := pr.latest_sandbox()) is not None and sb.ready)
        g = GaugeMetricFamily("kubelet_running_pods", "Number of pods that have a running pod sandbox")
        g.add_metric([], running)
        yield g
        counts = dict.fromkeys(CONTAINER_STATES, 0)
        for pr in runtime_pods.values():
            for c in pr.containers:
                counts[c.state if c.state in counts else "unknown"] += 1
        c = GaugeMetricFamily("kubelet_running_containers", "Number of containers currently running",
                              labels=["container_state"])
        for state, n in counts.items():
            c.add_metric([state], n)
        yield c


class AgentMetrics:
    def __init__(self, node_name: str = "") -> None:
        r = self.registry = CollectorRegistry(auto_describe=False)
        self.pod_start = Histogram(
            "kubelet_pod_start_duration_seconds",
            "Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
            buckets=POD_START_BUCKETS, registry=r)
        self.probe_registry = CollectorRegistry(auto_describe=False)  # /metrics/probes
        self.probes = Counter(
            "prober_probe_total", "Cumulative number of a liveness, readiness or startup probe for a container by "
            "result.", ["probe_type", "result", "container", "pod", "namespace", "pod_uid"],
            registry=self.probe_registry)
        self.runtime_ops = Counter(
            "kubelet_runtime_operations_total", "Cumulative number of runtime operations by operation type.",
            ["operation_type"], registry=r)
        self.runtime_duration = Histogram(
            "kubelet_runtime_operations_duration_seconds",
            "Duration in seconds of runtime operations. Broken down by operation type.", ["operation_type"],
            buckets=RUNTIME_BUCKETS, registry=r)
        self.runtime_errors = Counter(
            "kubelet_runtime_operations_errors_total", "Cumulative number of runtime operation errors by operation "
            "type.", ["operation_type"], registry=r)
        if node_name:
            Gauge("kubelet_node_name", "The node's name. The count is always 1.", ["node"],
                  registry=r).labels(node_name).set(1)
        self._seen: dict[str, float] = {}  # pod uid -> when the agent first saw it (monotonic)
        self._started: set[str] = set()

    def watch_runtime(self, pods: Callable[[], dict[str, Any]]) -> None:
        """Count running pods and containers from ``pods()`` (the runtime cache's last relist)."""
        self.registry.register(_RunningCollector(pods))

    # ------------------------------------------------------------------ pods
    def pod_seen(self, uid: str) -> None:
        self._seen.setdefault(uid, time.monotonic())

    def pod_status(self, uid: str, old_phase: str, new_phase: str) -> None:
        """The first move of a pod the agent saw from Pending (or nothing) to Running."""
        if new_phase != "Running" or old_phase not in ("", "Pending") or uid in self._started:
            return
        seen = self._seen.get(uid)
        if seen is not None:
            self._started.add(uid)
            self.pod_start.observe(time.monotonic() - seen)

    def pod_gone(self, uid: str) -> None:
        self._seen.pop(uid, None)
        self._started.discard(uid)

    # ------------------------------------------------------------------ probes
    def probe_result(self, kind: str, result: str, pod: dict[str, Any], container: str) -> None:
        meta = pod.get("metadata") or {}
        label = "successful" if result == SUCCESS else "failed" if result == FAILURE else "unknown"
        self.probes.labels(PROBE_TYPES.get(kind, kind), label, container, meta.get("name", ""),
                           meta.get("namespace", ""), meta.get("uid", "")).inc()

    # ------------------------------------------------------------------ CRI
    def instrument_cri(self, cri: Any) -> None:
        """Time every call of the CRI connection's runtime and image services."""
        cri.runtime = InstrumentedStub(cri.runtime, self)
        cri.image = InstrumentedStub(cri.image, self)


class InstrumentedStub:
    """A CRI gRPC stub whose unary calls are counted and timed (instrumented_services.go)."""

    def __init__(self, stub: Any, metrics: AgentMetrics) -> None:
        self._stub = stub
        self._metrics = metrics
        self._wrapped: dict[str, Callable[..., Any]] = {}

    def __getattr__(self, name: str) -> Any:
        wrapped = self._wrapped.get(name)
        if wrapped is not None:
            return wrapped
        method = getattr(self._stub, name)
        if not name[:1].isupper():
            return method
        op = operation_type(name)
        m = self._metrics
        total, duration, failed = m.runtime_ops.labels(op), m.runtime_duration.labels(op), m.runtime_errors.labels(op)

        async def call(*args: Any, **kwargs: Any) -> Any:
            total.inc()
            start = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            except Exception:
                failed.inc()
                raise
            finally:
                duration.observe(time.perf_counter() - start)

        self._wrapped[name] = call
        return call


__all__ = ["AgentMetrics", "InstrumentedStub", "operation_type"]
