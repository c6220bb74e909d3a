"""The disruption controller (pkg/controller/disruption/disruption.go): keeps each
PodDisruptionBudget's status — expectedPods, desiredHealthy, currentHealthy,
disruptionsAllowed, the pods an eviction has just disrupted, and the DisruptionAllowed
condition — which the pods/eviction subresource consults before it deletes a pod.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
import time
from typing import Any

from kubelite.api import errors
from kubelite.api.meta import now_rfc3339
from kubelite.api.selectors import LabelSelector, SelectorError, label_selector_from_object
from kubelite.apiserver.registry import WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.client.events import NORMAL, WARNING, EventRecorder
from kubelite.controllers import controller_utils as cu
from kubelite.controllers.base import WorkQueue, informer
from kubelite.controllers.events import recorder as store_recorder
from kubelite.kinds._printing import parse_time
from kubelite.kinds.apps import percent_value

log = logging.getLogger("kubelite.controllers.disruption")
Obj = dict[str, Any]

COMPONENT = "controllermanager"  # upstream's disruption controller records events as this
FIELD_MANAGER = "disruption-controller"
DELETION_TIMEOUT = 120.0  # a disrupted pod not deleted by then counts again


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def pdb_selector(pdb: Obj) -> LabelSelector:
    """policy/v1: a nil selector selects nothing, an empty one every pod of the namespace."""
    sel = _d(pdb.get("spec")).get("selector")
    if not isinstance(sel, dict):
        return LabelSelector.match_nothing()
    try:
        return label_selector_from_object(sel)
    except (SelectorError, ValueError):
        return LabelSelector.match_nothing()


def scaled(v: Any, total: int) -> int:
    """intstr.GetScaledValueFromIntOrPercent rounding up."""
    p = percent_value(v)
    if p is not None:
        return math.ceil(p * total / 100)
    return _int(v)


def count_healthy(pods: list[Obj], disrupted: dict[str, str]) -> int:
    """countHealthyPods: ready, not being deleted, not just evicted."""
    return sum(1 for p in pods if not cu.meta(p).get("deletionTimestamp") and cu.meta(p).get("name") not in disrupted
               and cu.is_pod_ready(p))


def disrupted_map(pods: list[Obj], pdb: Obj, now: float) -> tuple[dict[str, str], float | None]:
    """buildDisruptedPodMap: the evicted pods not yet deleted, for at most DELETION_TIMEOUT;
    and when to look again."""
    recorded = _d(_d(pdb.get("status")).get("disruptedPods"))
    out: dict[str, str] = {}
    recheck: float | None = None
    by_name = {cu.meta(p).get("name"): p for p in pods}
    for name, when in recorded.items():
        p = by_name.get(name)
        if p is None or cu.meta(p).get("deletionTimestamp"):
            continue
        t = parse_time(when)
        if t is None:
            continue
        expected = t + DELETION_TIMEOUT
        if expected < now:
            log.info("pod %s was expected to be deleted at %s but it has not been", name, when)
            continue
        out[name] = when
        recheck = expected if recheck is None else min(recheck, expected)
    return out, recheck


def set_disruption_allowed(status: Obj, now: str) -> None:
    """pdbhelper.UpdateDisruptionAllowedCondition with meta.SetStatusCondition."""
    allowed = _int(status.get("disruptionsAllowed")) > 0
    cond = {"type": "DisruptionAllowed", "status": "True" if allowed else "False",
            "observedGeneration": _int(status.get("observedGeneration")),
            "lastTransitionTime": now, "reason": "SufficientPods" if allowed else "InsufficientPods", "message": ""}
    conds = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
    for i, c in enumerate(conds):
        if c.get("type") == "DisruptionAllowed":
            if c.get("status") == cond["status"] and c.get("lastTransitionTime"):
                cond["lastTransitionTime"] = c["lastTransitionTime"]
            conds[i] = cond
            break
    else:
        conds.append(cond)
    status["conditions"] = conds


class DisruptionController:
    def __init__(self, stores: Stores, recorder: EventRecorder | None = None) -> None:
        self.pdbs = stores.get("policy", "poddisruptionbudgets")
        self.pods = stores.get("", "pods")
        self.replicasets = stores.get("apps", "replicasets")
        self.deployments = stores.get("apps", "deployments")
        self.stores = stores
        self.recorder = recorder or store_recorder(stores, COMPONENT)
        self.opts = WriteOptions(field_manager=FIELD_MANAGER)
        self.pdb_informer = informer(self.pdbs)
        self.pod_informer = informer(self.pods)
        self.rs_informer = informer(self.replicasets)
        self.d_informer = informer(self.deployments)
        self.queue = WorkQueue("disruption-controller", self.sync)
        self.pdb_informer.add_handler(self._on_pdb)
        self.pod_informer.add_handler(self._on_pod)

    async def run(self) -> None:
        infs = (self.pdb_informer, self.pod_informer, self.rs_informer, self.d_informer)
        async with asyncio.TaskGroup() as tg:
            for inf in infs:
                tg.create_task(inf.run())
            for inf in infs:
                await inf.wait_synced()
            for pdb in self.pdb_informer.list():
                self.queue.add(cu.key_of(pdb))
            await self.queue.run()

    def _on_pdb(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        if obj is not None:
            self.queue.add(cu.key_of(obj))

    def _on_pod(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        for p in (old, new):
            if p is None:
                continue
            labels = _d(cu.meta(p).get("labels"))
            for pdb in self.pdb_informer.list(cu.meta(p).get("namespace", "")):
                if pdb_selector(pdb).matches(labels):
                    self.queue.add(cu.key_of(pdb))

    # ------------------------------------------------------------------ sync
    async def sync(self, key: str) -> bool:
        ns, name = cu.split_key(key)
        pdb = self.pdb_informer.get(ns, name)
        if pdb is None:
            return False
        sel = pdb_selector(pdb)
        pods = [p for p in self.pod_informer.list(ns) if sel.matches(_d(cu.meta(p).get("labels")))]
        if not pods:
            self.recorder.emit(pdb, NORMAL, "NoPods", "No matching pods found")
        try:
            expected, desired, unmanaged = self._expected(pdb, pods)
        except ValueError as exc:
            self.recorder.emit(pdb, WARNING, "CalculateExpectedPodCountFailed",
                               f"Failed to calculate the number of expected pods: {exc}")
            raise
        if unmanaged:
            self.recorder.emit(pdb, WARNING, "UnmanagedPods",
                               "Pods selected by this PodDisruptionBudget (selector: "
                               f"{sel}) were found to be unmanaged. As a result, the status of the PDB cannot be "
                               "calculated correctly, which may result in undefined behavior. To account for these "
                               "pods please set \".spec.minAvailable\" field of the PDB to an integer value.")
        now = time.time()
        disrupted, recheck = disrupted_map(pods, pdb, now)
        healthy = count_healthy(pods, disrupted)
        await self._update_status(pdb, healthy, desired, expected, disrupted)
        if recheck is not None:
            asyncio.get_running_loop().call_later(max(recheck - now, 0.1), self.queue.add, key)
        return False

    def _expected(self, pdb: Obj, pods: list[Obj]) -> tuple[int, int, list[str]]:
        """getExpectedPodCount: (expected pods, desired healthy, unmanaged pods)."""
        spec = _d(pdb.get("spec"))
        mx, mn = spec.get("maxUnavailable"), spec.get("minAvailable")
        if mx is not None:
            expected, unmanaged = self._expected_scale(pods)
            return expected, max(expected - scaled(mx, expected), 0), unmanaged
        if mn is not None:
            if isinstance(mn, int):
                return len(pods), mn, []
            expected, unmanaged = self._expected_scale(pods)
            return expected, scaled(mn, expected), unmanaged
        return len(pods), 0, []

    def _expected_scale(self, pods: list[Obj]) -> tuple[int, list[str]]:
        """getExpectedScale: the replicas of the controllers of the pods (a Deployment's for its
        ReplicaSets' pods)."""
        scale: dict[str, int] = {}
        unmanaged: list[str] = []
        for p in pods:
            ref = cu.controller_ref(p)
            if ref is None:
                unmanaged.append(str(cu.meta(p).get("name")))
                continue
            uid = str(ref.get("uid"))
            if uid in scale:
                continue
            found = self._controller_scale(cu.meta(p).get("namespace", ""), ref)
            if found is None:
                raise ValueError(f"found no controllers for pod {cu.meta(p).get('name')!r}")
            owner_uid, replicas = found
            scale[owner_uid] = replicas
        return sum(scale.values()), unmanaged

    def _controller_scale(self, ns: str, ref: dict[str, Any]) -> tuple[str, int] | None:
        if ref.get("kind") == "ReplicaSet":
            rs = self.rs_informer.get(ns, ref.get("name", ""))
            if rs is None or cu.meta(rs).get("uid") != ref.get("uid"):
                return None
            owner = cu.controller_ref(rs)
            if owner is not None and owner.get("kind") == "Deployment":
                d = self.d_informer.get(ns, owner.get("name", ""))
                if d is not None and cu.meta(d).get("uid") == owner.get("uid"):
                    return str(owner.get("uid")), _int(_d(d.get("spec")).get("replicas"))
            return str(ref.get("uid")), _int(_d(rs.get("spec")).get("replicas"))
        if ref.get("kind") == "Deployment":
            d = self.d_informer.get(ns, ref.get("name", ""))
            if d is not None and cu.meta(d).get("uid") == ref.get("uid"):
                return str(ref.get("uid")), _int(_d(d.get("spec")).get("replicas"))
        return None

    async def _update_status(self, pdb: Obj, healthy: int, desired: int, expected: int,
                             disrupted: dict[str, str]) -> None:
        """updatePdbStatus."""
        allowed = healthy - desired
        if expected <= 0 or allowed <= 0:
            allowed = 0
        st = _d(pdb.get("status"))
        gen = _int(cu.meta(pdb).get("generation"))
        cond = next((c for c in st.get("conditions") or [] if _d(c).get("type") == "DisruptionAllowed"), None)
        up_to_date = cond is not None and _int(cond.get("observedGeneration")) == gen and \
            cond.get("status") == ("True" if allowed > 0 else "False")
        if (_int(st.get("currentHealthy")), _int(st.get("desiredHealthy")), _int(st.get("expectedPods")),
                _int(st.get("disruptionsAllowed")), _d(st.get("disruptedPods")), _int(st.get("observedGeneration"))) \
                == (healthy, desired, expected, allowed, disrupted, gen) and up_to_date:
            return
        new_status: Obj = {"observedGeneration": gen, "disruptionsAllowed": allowed, "currentHealthy": healthy,
                           "desiredHealthy": desired, "expectedPods": expected}
        if disrupted:
            new_status["disruptedPods"] = disrupted
        if st.get("conditions"):
            new_status["conditions"] = copy.deepcopy(st["conditions"])
        set_disruption_allowed(new_status, now_rfc3339())
        new = copy.deepcopy(pdb)
        new["status"] = new_status
        m = cu.meta(pdb)
        try:
            await self.pdbs.update(m.get("namespace", ""), m.get("name", ""), new, self.opts, "status")
        except errors.StatusError as exc:
            if exc.code == 409:  # an eviction wrote first: sync again from the new state
                asyncio.get_running_loop().call_later(0.1, self.queue.add, cu.key_of(pdb))
                return
            if exc.code != 404:
                raise


__all__ = ["DisruptionController", "count_healthy", "disrupted_map", "pdb_selector", "scaled"]
