"""The node lifecycle controller (pkg/controller/nodelifecycle/node_lifecycle_controller.go).

Every ``monitor_period`` it looks at each Node's heartbeats — its Ready condition's
``lastHeartbeatTime`` and its Lease's ``renewTime`` in kube-node-lease. A node not heard
from for ``grace_period`` (``startup_grace_period`` before it was ever heard from) gets its
conditions set to Unknown ("Kubelet stopped posting node status."), and a node that is not
Ready gets the taints of its condition (TaintNodesByCondition and the NoExecute tainting):
``node.kubernetes.io/not-ready`` for Ready=False, ``node.kubernetes.io/unreachable`` for
Unknown, each with NoSchedule and NoExecute (the NoExecute one carrying ``timeAdded``); they
go when it is Ready again. A cordoned node (``spec.unschedulable``) gets ``node.kubernetes.io/unschedulable:NoSchedule``.
The pods of a node that stopped being Ready are marked
Ready=False (MarkPodsNotReady) with a ``NodeNotReady`` event. When every node is not Ready
(the control plane, not the nodes, is probably cut off) the controller enters upstream's
full-disruption mode: it adds no NoExecute taint and removes those there are, so that no pod
is evicted (``tainteviction.py`` evicts pods on NoExecute taints).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubelite.api import errors
from kubelite.apiserver.registry import WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.client.events import WARNING
from kubelite.controllers.base import WorkQueue, informer

log = logging.getLogger("kubelite.controllers.nodelifecycle")
Obj = dict[str, Any]

FIELD_MANAGER = "node-controller"
NODE_LEASE_NAMESPACE = "kube-node-lease"
MONITOR_PERIOD = 5.0  # --node-monitor-period
GRACE_PERIOD = 50.0  # --node-monitor-grace-period (1.32+)
STARTUP_GRACE_PERIOD = 60.0  # --node-startup-grace-period
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def ready_condition(node: Obj) -> Obj | None:
    for c in _d(node.get("status")).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == "Ready":
            return c
    return None


def ready_status(node: Obj) -> str:
    c = ready_condition(node)
    return str(c.get("status") or "Unknown") if c is not None else "Unknown"


def unknown_conditions(node: Obj, now: str) -> list[Obj]:
    """tryUpdateNodeHealth: the node's conditions once it stopped posting status."""
    conds = [c for c in _d(node.get("status")).get("conditions") or [] if isinstance(c, dict)]
    by_type = {c.get("type"): c for c in conds}
    out = [c for c in conds if c.get("type") not in CONDITIONS]
    created = _d(node.get("metadata")).get("creationTimestamp") or now
    for t in CONDITIONS:
        c = by_type.get(t)
        if c is None:
            out.append({"type": t, "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                        "message": "Kubelet never posted node status.", "lastHeartbeatTime": created,
                        "lastTransitionTime": now})
        elif c.get("status") != "Unknown":
            out.append({**c, "status": "Unknown", "reason": "NodeStatusUnknown",
                        "message": "Kubelet stopped posting node status.", "lastTransitionTime": now})
        else:
            out.append(c)
    return out


def desired_taints(node: Obj, disrupted: bool, now: str) -> list[Obj]:
    """The node's taints with the not-ready / unreachable ones its Ready condition calls for
    (and, when ``disrupted`` — every node down — without the NoExecute ones)."""
    status = ready_status(node)
    spec = _d(node.get("spec"))
    taints = [t for t in spec.get("taints") or [] if isinstance(t, dict)]
    want_key = {"True": None, "False": TAINT_NOT_READY}.get(status, TAINT_UNREACHABLE)
    keep = [t for t in taints if t.get("key") not in (TAINT_NOT_READY, TAINT_UNREACHABLE, TAINT_UNSCHEDULABLE)
            or (t.get("key") == want_key and not (disrupted and t.get("effect") == "NoExecute"))]
    if spec.get("unschedulable"):  # a cordoned node
        keep.append(next((t for t in taints if t.get("key") == TAINT_UNSCHEDULABLE and t.get("effect") == "NoSchedule"),
                         {"key": TAINT_UNSCHEDULABLE, "effect": "NoSchedule"}))
    if want_key is not None:
        have = {(t.get("key"), t.get("effect")) for t in keep}
        if (want_key, "NoSchedule") not in have:
            keep.append({"key": want_key, "effect": "NoSchedule"})
        if not disrupted and (want_key, "NoExecute") not in have:
            keep.append({"key": want_key, "effect": "NoExecute", "timeAdded": now})
    return keep


def _same_taints(a: list[Obj], b: list[Obj]) -> bool:
    key = lambda t: (t.get("key"), t.get("effect"), t.get("value"))  # noqa: E731
    return sorted(map(key, a), key=str) == sorted(map(key, b), key=str)


@dataclass
class _Health:
    probe: float  # monotonic time the node was last heard from
    heartbeat: str  # the Ready condition's lastHeartbeatTime seen then
    renew: str  # the Lease's renewTime seen then
    heard: bool  # heard from since this controller started


class NodeLifecycleController:
    def __init__(self, stores: Stores, *, monitor_period: float = MONITOR_PERIOD, grace_period: float = GRACE_PERIOD,
                 startup_grace_period: float = STARTUP_GRACE_PERIOD, recorder: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.nodes = stores.get("", "nodes")
        self.pods = stores.get("", "pods")
        self.monitor_period = monitor_period
        self.grace_period = grace_period
        self.startup_grace_period = startup_grace_period
        self.recorder = recorder
        self.clock = clock
        self.health: dict[str, _Health] = {}
        self.node_informer = informer(self.nodes)
        self.node_informer.add_handler(self._node_event)
        self.lease_informer = informer(stores.get("coordination.k8s.io", "leases"), NODE_LEASE_NAMESPACE)
        self.pod_informer = informer(self.pods)
        self.pod_informer.add_index("node", lambda p: [_d(p.get("spec")).get("nodeName") or ""])
        self.pod_informer.add_handler(self._pod_event)
        self.mark_pods = WorkQueue("node-lifecycle-mark-pods", self._mark_pods_not_ready)
        self.disrupted = False

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for inf in (self.node_informer, self.lease_informer, self.pod_informer):
                tg.create_task(inf.run())
            for inf in (self.node_informer, self.lease_informer, self.pod_informer):
                await inf.wait_synced()
            tg.create_task(self.mark_pods.run())
            while True:
                await self.monitor()
                await asyncio.sleep(self.monitor_period)

    # ------------------------------------------------------------------ events
    def _node_event(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        if new is None:
            self.health.pop(_d((old or {}).get("metadata")).get("name", ""), None)
        elif ready_status(new) != "True":
            self.mark_pods.add(new["metadata"]["name"])

    def _pod_event(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        """processPod: a pod bound to a node that is not Ready is marked not ready too."""
        node_name = _d((new or {}).get("spec")).get("nodeName")
        if not node_name:
            return
        node = self.node_informer.get("", node_name)
        if node is not None and ready_status(node) != "True":
            self.mark_pods.add(node_name)

    # ------------------------------------------------------------------ health
    def _observe(self, node: Obj) -> _Health:
        name = node["metadata"]["name"]
        now = self.clock()
        cond = ready_condition(node) or {}
        heartbeat = str(cond.get("lastHeartbeatTime") or "")
        lease = self.lease_informer.get(NODE_LEASE_NAMESPACE, name)
        renew = str(_d((lease or {}).get("spec")).get("renewTime") or "")
        h = self.health.get(name)
        if h is None:
            # a node first seen by this controller gets a full grace period (as after a restart)
            h = self.health[name] = _Health(now, heartbeat, renew, False)
        elif heartbeat != h.heartbeat or renew != h.renew:
            h.probe, h.heartbeat, h.renew, h.heard = now, heartbeat, renew, True
        return h

    async def monitor(self) -> None:
        """monitorNodeHealth: one pass over every node."""
        nodes = self.node_informer.list()
        now = _now()
        for node in nodes:
            h = self._observe(node)
            grace = self.grace_period if (h.heard or ready_condition(node) is not None) else self.startup_grace_period
            if self.clock() - h.probe > grace and ready_status(node) != "Unknown":
                await self._mark_unknown(node, now)
        # full disruption: every node not Ready (upstream's master disruption mode)
        current = self.node_informer.list()
        disrupted = bool(current) and all(ready_status(n) != "True" for n in current)
        if disrupted != self.disrupted:
            self.disrupted = disrupted
            if disrupted:
                log.warning("all nodes are not Ready: entering full disruption mode (no NoExecute evictions)")
            else:
                log.info("a node is Ready again: leaving full disruption mode")
        for node in current:
            want = desired_taints(node, self.disrupted, now)
            if not _same_taints(want, _d(node.get("spec")).get("taints") or []):
                await self._set_taints(node["metadata"]["name"], disrupted)

    async def _mark_unknown(self, node: Obj, now: str) -> None:
        name = node["metadata"]["name"]
        log.info("node %s: no status for longer than the grace period; its conditions are Unknown", name)

        def mutate(cur: Obj) -> Obj:
            cur.setdefault("status", {})["conditions"] = unknown_conditions(cur, now)
            return cur

        try:
            await self.nodes.patch("", name, mutate, WriteOptions(field_manager=FIELD_MANAGER), "status")
        except errors.StatusError as exc:
            if exc.code != 404:
                raise
            return
        if self.recorder is not None:
            self.recorder.emit({"kind": "Node", "apiVersion": "v1", "name": name, "uid": name}, "Normal",
                               "NodeNotReady", f"Node {name} status is now: NodeNotReady")

    async def _set_taints(self, name: str, disrupted: bool) -> None:
        now = _now()

        def mutate(cur: Obj) -> Obj:
            taints = desired_taints(cur, disrupted, now)
            spec = cur.setdefault("spec", {})
            if taints:
                spec["taints"] = taints
            else:
                spec.pop("taints", None)
            return cur

        try:
            await self.nodes.patch("", name, mutate, WriteOptions(field_manager=FIELD_MANAGER))
        except errors.StatusError as exc:
            if exc.code != 404:
                raise

    # ------------------------------------------------------------------ pods
    async def _mark_pods_not_ready(self, node_name: str) -> None:
        """MarkPodsNotReady: every pod of the node whose Ready condition is True gets False."""
        node = self.node_informer.get("", node_name)
        if node is None or ready_status(node) == "True":
            return
        now = _now()
        for pod in self.pod_informer.by_index("node", node_name):
            conds = _d(pod.get("status")).get("conditions") or []
            if not any(isinstance(c, dict) and c.get("type") == "Ready" and c.get("status") == "True" for c in conds):
                continue
            meta = pod["metadata"]

            def mutate(cur: Obj) -> Obj:
                for c in _d(cur.get("status")).get("conditions") or []:
                    if isinstance(c, dict) and c.get("type") == "Ready" and c.get("status") != "False":
                        c["status"] = "False"
                        c["lastTransitionTime"] = now
                return cur

            try:
                await self.pods.patch(meta.get("namespace", ""), meta["name"], mutate,
                                      WriteOptions(field_manager=FIELD_MANAGER), "status")
            except errors.StatusError as exc:
                if exc.code != 404:
                    raise
                continue
            if self.recorder is not None:
                self.recorder.emit({"kind": "Pod", "apiVersion": "v1", "namespace": meta.get("namespace", ""),
                                    "name": meta["name"], "uid": meta.get("uid", "")}, WARNING, "NodeNotReady",
                                   "Node is not ready")


__all__ = ["NodeLifecycleController", "desired_taints", "ready_status", "unknown_conditions"]
