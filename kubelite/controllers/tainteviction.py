"""The taint eviction controller (pkg/controller/tainteviction/taint_eviction.go): a pod on a
node with NoExecute taints is deleted at once when it does not tolerate one of them, or, when
it tolerates them all for a while, ``min(tolerationSeconds)`` after the controller first saw it
there; tolerating forever means staying. Before the delete the pod gets the condition
DisruptionTarget=True (reason DeletionByTaintManager). A scheduled eviction is cancelled when
the taints go (the node came back)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from kubelite.api import errors
from kubelite.api.meta import now_rfc3339
from kubelite.apiserver.registry import DeleteOptions, WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.client.events import NORMAL
from kubelite.controllers.base import WorkQueue, informer

log = logging.getLogger("kubelite.controllers.tainteviction")
Obj = dict[str, Any]
FIELD_MANAGER = "taint-eviction-controller"


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def tolerates(toleration: Obj, taint: Obj) -> bool:
    """v1helper.ToleratesTaint."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    op = toleration.get("operator") or "Equal"
    if key and key != taint.get("key"):
        return False
    if op == "Exists":
        return True
    if op == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def min_toleration_seconds(pod: Obj, taints: list[Obj]) -> float | None:
    """When the pod must go: 0 = now (a taint it does not tolerate), None = never, else seconds
    (getMinTolerationTime over the tolerations that matched)."""
    tolerations = [t for t in _d(pod.get("spec")).get("tolerations") or [] if isinstance(t, dict)]
    best: float | None = None
    for taint in taints:
        used = [t for t in tolerations if tolerates(t, taint)]
        if not used:
            return 0.0
        for t in used:
            secs = t.get("tolerationSeconds")
            if secs is None or isinstance(secs, bool) or not isinstance(secs, int):
                continue  # tolerates this taint forever
            secs = max(0, secs)
            best = secs if best is None else min(best, secs)
    return best


class TaintEvictionController:
    def __init__(self, stores: Stores, recorder: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.pods = stores.get("", "pods")
        self.recorder = recorder
        self.clock = clock
        self.node_informer = informer(stores.get("", "nodes"))
        self.node_informer.add_handler(self._node_event)
        self.pod_informer = informer(self.pods)
        self.pod_informer.add_index("node", lambda p: [_d(p.get("spec")).get("nodeName") or ""])
        self.pod_informer.add_handler(self._pod_event)
        self.queue = WorkQueue("taint-eviction", self._evict)
        # pod key -> (first seen on the tainted node, the timer of its eviction)
        self._scheduled: dict[str, tuple[float, asyncio.TimerHandle | None]] = {}

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.node_informer.run())
            tg.create_task(self.pod_informer.run())
            await self.node_informer.wait_synced()
            await self.pod_informer.wait_synced()
            for node in self.node_informer.list():
                self._node_event("ADDED", None, node)
            tg.create_task(self.queue.run())

    # ------------------------------------------------------------------ events
    @staticmethod
    def _no_execute(node: Obj | None) -> list[Obj]:
        return [t for t in _d(_d(node).get("spec")).get("taints") or []
                if isinstance(t, dict) and t.get("effect") == "NoExecute"]

    def _node_event(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        if not self.pod_informer.synced.is_set():
            return
        name = _d((new or old or {}).get("metadata")).get("name", "")
        for pod in self.pod_informer.by_index("node", name):
            self._process(pod, self._no_execute(new))

    def _pod_event(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        if new is None:
            self._cancel(_key(old or {}), event=False)
            return
        node_name = _d(new.get("spec")).get("nodeName")
        if node_name:
            self._process(new, self._no_execute(self.node_informer.get("", node_name)))

    def _process(self, pod: Obj, taints: list[Obj]) -> None:
        key = _key(pod)
        if _d(pod.get("metadata")).get("deletionTimestamp"):
            return
        if not taints:
            self._cancel(key)
            return
        secs = min_toleration_seconds(pod, taints)
        if secs is None:
            self._cancel(key)
            return
        loop = asyncio.get_running_loop()
        now = self.clock()
        started = self._scheduled[key][0] if key in self._scheduled else now
        prev = self._scheduled.get(key)
        if prev is not None and prev[1] is not None:
            prev[1].cancel()
        delay = max(0.0, started + secs - now)
        handle = loop.call_later(delay, self.queue.add, key) if delay > 0 else None
        self._scheduled[key] = (started, handle)
        if handle is None:
            self.queue.add(key)

    def _cancel(self, key: str, event: bool = True) -> None:
        prev = self._scheduled.pop(key, None)
        if prev is None:
            return
        if prev[1] is not None:
            prev[1].cancel()
        if event and self.recorder is not None:
            ns, _, name = key.partition("/")
            pod = self.pod_informer.get(ns, name)
            if pod is not None:
                self.recorder.emit(pod, NORMAL, "TaintManagerEviction", f"Cancelling deletion of Pod {key}")

    # ------------------------------------------------------------------ eviction
    async def _evict(self, key: str) -> None:
        if key not in self._scheduled:
            return  # cancelled meanwhile
        ns, _, name = key.partition("/")
        pod = self.pod_informer.get(ns, name)
        if pod is None or _d(pod.get("metadata")).get("deletionTimestamp"):
            self._scheduled.pop(key, None)
            return
        # re-check against the taints of now: the node may have come back
        node = self.node_informer.get("", _d(pod.get("spec")).get("nodeName") or "")
        taints = self._no_execute(node)
        secs = min_toleration_seconds(pod, taints) if taints else None
        if secs is None or self._scheduled[key][0] + secs > self.clock() + 0.001:
            return
        self._scheduled.pop(key, None)
        log.info("evicting pod %s: NoExecute taints of node %s", key, node["metadata"]["name"] if node else "")
        if self.recorder is not None:
            self.recorder.emit(pod, NORMAL, "TaintManagerEviction", f"Marking for deletion Pod {key}")
        now = now_rfc3339()

        def condition(cur: Obj) -> Obj:
            status = cur.setdefault("status", {})
            conds = [c for c in status.get("conditions") or [] if isinstance(c, dict)
                     and c.get("type") != "DisruptionTarget"]
            conds.append({"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
                          "message": "Taint manager: deleting due to NoExecute taint", "lastProbeTime": None,
                          "lastTransitionTime": now})
            status["conditions"] = conds
            return cur

        try:
            await self.pods.patch(ns, name, condition, WriteOptions(field_manager=FIELD_MANAGER), "status")
            await self.pods.delete(ns, name, DeleteOptions(preconditions={"uid": pod["metadata"].get("uid")}))
        except errors.StatusError as exc:
            if exc.code not in (404, 409):
                raise


def _key(pod: Obj) -> str:
    meta = _d(pod.get("metadata"))
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


__all__ = ["TaintEvictionController", "min_toleration_seconds", "tolerates"]
