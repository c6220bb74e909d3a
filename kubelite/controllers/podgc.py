"""The pod garbage collector (pkg/controller/podgc/gc_controller.go), every 20 s:

* orphaned pods — bound to a node that no longer exists (for longer than a 40 s quarantine,
  so a node being re-registered is not mistaken) — are force-deleted, after being marked
  Failed with the DisruptionTarget condition (reason DeletionByPodGC);
* pods being deleted that were never scheduled are force-deleted (no kubelet will confirm);
* pods terminating on a not-ready node tainted ``node.kubernetes.io/out-of-service`` are
  force-deleted (the administrator declared the node gone);
* finished pods beyond ``terminated_threshold`` are deleted, oldest first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from kubelite.api import errors
from kubelite.api.meta import now_rfc3339
from kubelite.apiserver.registry import DeleteOptions, WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.controllers.base import informer
from kubelite.controllers.nodelifecycle import ready_status
from kubelite.kinds.podutil import is_terminal

log = logging.getLogger("kubelite.controllers.podgc")
Obj = dict[str, Any]

GC_PERIOD = 20.0
QUARANTINE = 40.0
TERMINATED_THRESHOLD = 12500  # --terminated-pod-gc-threshold
OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"
FIELD_MANAGER = "pod-garbage-collector"


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


class PodGC:
    def __init__(self, stores: Stores, period: float = GC_PERIOD, quarantine: float = QUARANTINE,
                 terminated_threshold: int = TERMINATED_THRESHOLD) -> None:
        self.pods = stores.get("", "pods")
        self.period = period
        self.quarantine = quarantine
        self.terminated_threshold = terminated_threshold
        self.pod_informer = informer(self.pods)
        self.node_informer = informer(stores.get("", "nodes"))
        self._missing_since: dict[str, float] = {}  # node name -> when it was first seen missing

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.pod_informer.run())
            tg.create_task(self.node_informer.run())
            await self.pod_informer.wait_synced()
            await self.node_informer.wait_synced()
            while True:
                await asyncio.sleep(self.period)
                await self.gc()

    async def gc(self) -> None:
        pods = self.pod_informer.list()
        await self._gc_terminated(pods)
        now = time.monotonic()
        for pod in pods:
            spec, meta = _d(pod.get("spec")), _d(pod.get("metadata"))
            node_name = spec.get("nodeName") or ""
            if not node_name:
                if meta.get("deletionTimestamp"):
                    await self._force_delete(pod, "unscheduled and terminating", mark=False)
                continue
            node = self.node_informer.get("", node_name)
            if node is None:
                first = self._missing_since.setdefault(node_name, now)
                if now - first >= self.quarantine:
                    await self._force_delete(pod, f"bound to node {node_name}, which does not exist", mark=True)
                continue
            self._missing_since.pop(node_name, None)
            if meta.get("deletionTimestamp") and ready_status(node) != "True" and any(
                    _d(t).get("key") == OUT_OF_SERVICE for t in _d(node.get("spec")).get("taints") or []):
                await self._force_delete(pod, f"terminating on out-of-service node {node_name}", mark=True)

    async def _gc_terminated(self, pods: list[Obj]) -> None:
        done = [p for p in pods if is_terminal(p) and not _d(p.get("metadata")).get("deletionTimestamp")]
        excess = len(done) - self.terminated_threshold
        if excess <= 0:
            return
        done.sort(key=lambda p: str(_d(p.get("metadata")).get("creationTimestamp") or ""))
        for pod in done[:excess]:
            await self._force_delete(pod, "too many terminated pods", mark=False)

    async def _force_delete(self, pod: Obj, why: str, mark: bool) -> None:
        meta = pod["metadata"]
        ns, name = meta.get("namespace", ""), meta["name"]
        log.info("pod GC: deleting %s/%s: %s", ns, name, why)
        try:
            if mark and not is_terminal(pod):
                now = now_rfc3339()

                def failed(cur: Obj) -> Obj:
                    status = cur.setdefault("status", {})
                    status["phase"] = "Failed"
                    conds = [c for c in status.get("conditions") or [] if _d(c).get("type") != "DisruptionTarget"]
                    conds.append({"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
                                  "message": "PodGC: node no longer exists", "lastProbeTime": None,
                                  "lastTransitionTime": now})
                    status["conditions"] = conds
                    return cur

                await self.pods.patch(ns, name, failed, WriteOptions(field_manager=FIELD_MANAGER), "status")
            await self.pods.delete(ns, name, DeleteOptions(grace_period_seconds=0,
                                                           preconditions={"uid": meta.get("uid")}))
        except errors.StatusError as exc:
            if exc.code not in (404, 409):
                raise


__all__ = ["PodGC"]
