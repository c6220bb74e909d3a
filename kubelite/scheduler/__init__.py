"""The scheduler: binds pending pods to nodes through the API, like kube-scheduler."""

from kubelite.scheduler.scheduler import Scheduler, run_scheduler

__all__ = ["Scheduler", "run_scheduler"]
