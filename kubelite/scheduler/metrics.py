"""kube-scheduler's metrics (pkg/scheduler/metrics/metrics.go), registered in the registry of
the process that hosts the scheduler (``kubelite server`` serves them on its ``/metrics``):

- ``scheduler_schedule_attempts_total{result,profile}``: ``scheduled`` once the binding
  succeeded, ``unschedulable`` when no node fits, ``error`` when binding failed;
- ``scheduler_scheduling_attempt_duration_seconds{result,profile}``: from the start of the
  scheduling cycle to that outcome (scheduling algorithm + binding).
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram

SCHEDULED, UNSCHEDULABLE, ERROR = "scheduled", "unschedulable", "error"
# metrics.ExponentialBuckets(0.001, 2, 15)
ATTEMPT_BUCKETS = tuple(0.001 * 2 ** i for i in range(15))


class SchedulerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter(
            "scheduler_schedule_attempts_total",
            "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be "
            "scheduled, while 'error' means an internal scheduler problem.", ["result", "profile"], registry=registry)
        self.duration = Histogram(
            "scheduler_scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm + binding)", ["result", "profile"],
            buckets=ATTEMPT_BUCKETS, registry=registry)

    def attempt(self, result: str, profile: str, started: float) -> None:
        """One attempt's outcome; ``started`` is its :func:`time.perf_counter` at the cycle's start."""
        self.attempts.labels(result, profile).inc()
        self.duration.labels(result, profile).observe(time.perf_counter() - started)


__all__ = ["ERROR", "SCHEDULED", "UNSCHEDULABLE", "SchedulerMetrics"]
