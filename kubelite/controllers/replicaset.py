"""The ReplicaSet controller (pkg/controller/replicaset/replica_set.go): keeps
``spec.replicas`` active pods that match each ReplicaSet's selector.

It claims pods (adopts matching orphans, releases owned pods that stopped matching), creates
the missing ones from the template in slow-start batches (1, 2, 4, …, at most 500 a sync)
and deletes the surplus in ActivePods order, and waits, through expectations, until its
informer has seen its own creations and deletions before it acts again. Status: replicas,
fullyLabeledReplicas, readyReplicas, availableReplicas, terminatingReplicas,
observedGeneration and the ReplicaFailure condition. Events: SuccessfulCreate,
SuccessfulDelete, FailedCreate, FailedDelete.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubelite.api import errors
from kubelite.api.meta import now_rfc3339
from kubelite.api.selectors import LabelSelector, SelectorError, label_selector_from_object, selector_from_set
from kubelite.apiserver.registry import DeleteOptions, WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.client.events import NORMAL, WARNING, EventRecorder
from kubelite.controllers import controller_utils as cu
from kubelite.controllers.base import WorkQueue, informer
from kubelite.controllers.events import recorder as store_recorder

log = logging.getLogger("kubelite.controllers.replicaset")
Obj = dict[str, Any]

COMPONENT = "replicaset-controller"
BURST_REPLICAS = 500
RS_API_VERSION = "apps/v1"
RS_KIND = "ReplicaSet"
NAMESPACE_TERMINATING_CAUSE = "NamespaceTerminating"


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def selector_of(rs: Obj) -> LabelSelector:
    """metav1.LabelSelectorAsSelector of spec.selector (Nothing when it cannot be parsed)."""
    try:
        return label_selector_from_object(_d(rs.get("spec")).get("selector"))
    except (SelectorError, ValueError):
        return LabelSelector.match_nothing()


def map_selector_of(rc: Obj) -> LabelSelector:
    """A ReplicationController's spec.selector, a label map (empty selects nothing here: its
    validation requires one)."""
    sel = _d(_d(rc.get("spec")).get("selector"))
    return selector_from_set(sel) if sel else LabelSelector.match_nothing()


@dataclass(frozen=True)
class Managed:
    """What one instance of the controller keeps replicated: upstream runs the same code for
    ReplicationControllers through an adapter (pkg/controller/replication)."""

    group: str
    plural: str
    api_version: str
    kind: str
    component: str
    selector: Callable[[Obj], LabelSelector]
    reports_terminating: bool  # status.terminatingReplicas exists in the kind


REPLICA_SETS = Managed("apps", "replicasets", RS_API_VERSION, RS_KIND, COMPONENT, selector_of, True)
REPLICATION_CONTROLLERS = Managed("", "replicationcontrollers", "v1", "ReplicationController",
                                  "replication-controller", map_selector_of, False)


def pod_from_template(rs: Obj, managed: Managed = REPLICA_SETS) -> Obj:
    """GetPodFromTemplate of the ReplicaSet's template."""
    return cu.pod_from_template(_d(rs.get("spec")).get("template"), rs, managed.api_version, managed.kind)


def calculate_status(rs: Obj, pods: list[Obj], terminating: list[Obj] | None, manage_err: BaseException | None,
                     now: float | None = None) -> Obj:
    """calculateStatus (replica_set_utils.go)."""
    spec = _d(rs.get("spec"))
    status = copy.deepcopy(_d(rs.get("status")))
    t = time.time() if now is None else now
    template_labels = _d(_d(_d(spec.get("template")).get("metadata")).get("labels"))
    template_sel = selector_from_set(template_labels)
    min_ready = _int(spec.get("minReadySeconds"))
    fully = ready = available = 0
    for p in pods:
        if template_sel.matches(_d(cu.meta(p).get("labels"))):
            fully += 1
        if cu.is_pod_ready(p):
            ready += 1
            if cu.is_pod_available(p, min_ready, t):
                available += 1
    conds = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
    failure = next((c for c in conds if c.get("type") == "ReplicaFailure"), None)
    if manage_err is not None and failure is None:
        diff = len(pods) - _int(spec.get("replicas"))
        reason = "FailedCreate" if diff < 0 else "FailedDelete" if diff > 0 else ""
        conds.append({"type": "ReplicaFailure", "status": "True", "lastTransitionTime": now_rfc3339(),
                      "reason": reason, "message": error_text(manage_err)})
    elif manage_err is None and failure is not None:
        conds = [c for c in conds if c.get("type") != "ReplicaFailure"]
    if conds:
        status["conditions"] = conds
    else:
        status.pop("conditions", None)
    status["replicas"] = len(pods)
    status["fullyLabeledReplicas"] = fully
    status["readyReplicas"] = ready
    status["availableReplicas"] = available
    if terminating is not None:
        status["terminatingReplicas"] = len(terminating)
    for k in ("fullyLabeledReplicas", "readyReplicas", "availableReplicas"):
        if not status[k]:
            del status[k]  # omitempty
    return status


def error_text(exc: BaseException) -> str:
    if isinstance(exc, errors.StatusError):
        return exc.message
    return str(exc)


class ReplicaSetController:
    def __init__(self, stores: Stores, recorder: EventRecorder | None = None, burst: int = BURST_REPLICAS,
                 managed: Managed = REPLICA_SETS) -> None:
        self.managed = managed
        self.rs_store = stores.get(managed.group, managed.plural)
        self.pods = stores.get("", "pods")
        self.recorder = recorder or store_recorder(stores, managed.component)
        self.burst = burst
        self.opts = WriteOptions(field_manager=managed.component)
        self.rs_informer = informer(self.rs_store)
        self.pod_informer = informer(self.pods)
        self.pod_informer.add_index(cu.CONTROLLER_UID_INDEX, cu.controller_uid_index)
        self.expectations = cu.Expectations()
        self.queue = WorkQueue(managed.component, self.sync)
        self.rs_informer.add_handler(self._on_rs)
        self.pod_informer.add_handler(self._on_pod)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.rs_informer.run())
            tg.create_task(self.pod_informer.run())
            await self.rs_informer.wait_synced()
            await self.pod_informer.wait_synced()
            for rs in self.rs_informer.list():
                self.queue.add(cu.key_of(rs))
            await self.queue.run()

    # ------------------------------------------------------------------ event handlers
    def _enqueue_after(self, key: str, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.queue.add, key)

    def _on_rs(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        if obj is None:
            return
        key = cu.key_of(obj)
        if etype == "DELETED":
            self.expectations.delete(key)
        self.queue.add(key)

    def _owner(self, pod: Obj, ref: dict[str, Any]) -> Obj | None:
        """resolveControllerRef: the ReplicaSet a controller reference names, if it is that one."""
        group = str(ref.get("apiVersion") or "").rpartition("/")[0]
        if ref.get("kind") != self.managed.kind or group != self.managed.group:
            return None
        rs = self.rs_informer.get(cu.meta(pod).get("namespace", ""), ref.get("name", ""))
        if rs is None or cu.meta(rs).get("uid") != ref.get("uid"):
            return None
        return rs

    def _matching(self, pod: Obj) -> list[Obj]:
        """getPodReplicaSets: the ReplicaSets whose selector matches an orphan."""
        labels = _d(cu.meta(pod).get("labels"))
        if not labels:
            return []
        return [rs for rs in self.rs_informer.list(cu.meta(pod).get("namespace", ""))
                if self.managed.selector(rs).matches(labels) and not self.managed.selector(rs).empty()]

    def _pod_deleted(self, pod: Obj) -> None:
        ref = cu.controller_ref(pod)
        if ref is None:
            return
        rs = self._owner(pod, ref)
        if rs is None:
            return
        key = cu.key_of(rs)
        self.expectations.deletion_observed(key, cu.key_of(pod))
        self.queue.add(key)

    def _on_pod(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        if etype == "DELETED":
            if old is not None:
                self._pod_deleted(old)
            return
        if new is None:
            return
        if etype == "ADDED" or old is None:
            if cu.meta(new).get("deletionTimestamp"):
                self._pod_deleted(new)
                return
            ref = cu.controller_ref(new)
            if ref is not None:
                rs = self._owner(new, ref)
                if rs is not None:
                    key = cu.key_of(rs)
                    self.expectations.creation_observed(key)
                    self.queue.add(key)
                return
            for rs in self._matching(new):
                self.queue.add(cu.key_of(rs))
            return
        # MODIFIED
        if cu.meta(new).get("resourceVersion") == cu.meta(old).get("resourceVersion"):
            return  # a resync: nothing changed
        labels_changed = cu.meta(new).get("labels") != cu.meta(old).get("labels")
        if cu.meta(new).get("deletionTimestamp"):
            self._pod_deleted(new)
            if labels_changed:
                self._pod_deleted(old)
            return
        cur_ref, old_ref = cu.controller_ref(new), cu.controller_ref(old)
        ref_changed = cur_ref != old_ref
        if ref_changed and old_ref is not None:
            rs = self._owner(old, old_ref)
            if rs is not None:
                self.queue.add(cu.key_of(rs))
        if cur_ref is not None:
            rs = self._owner(new, cur_ref)
            if rs is not None:
                key = cu.key_of(rs)
                self.queue.add(key)
                min_ready = _int(_d(rs.get("spec")).get("minReadySeconds"))
                if min_ready > 0 and not cu.is_pod_ready(old) and cu.is_pod_ready(new):
                    self._enqueue_after(key, min_ready + 1.0)
            return
        if labels_changed or ref_changed:
            for rs in self._matching(new):
                self.queue.add(cu.key_of(rs))

    # ------------------------------------------------------------------ sync
    async def sync(self, key: str) -> bool:
        return await cu.retry_on_conflict(lambda: self._sync(key), "replica set", key, self._enqueue_after)

    async def _sync(self, key: str) -> bool:
        ns, name = cu.split_key(key)
        rs = self.rs_informer.get(ns, name)
        if rs is None:
            self.expectations.delete(key)
            return False
        needs_sync = self.expectations.satisfied(key)
        selector = self.managed.selector(rs)
        all_pods = self.pod_informer.list(ns)
        active = [p for p in all_pods if cu.is_pod_active(p)]
        active = await self._claim(rs, selector, active)
        uid = cu.meta(rs).get("uid")
        terminating = [p for p in all_pods if cu.is_pod_terminating(p) and selector.matches(
            _d(cu.meta(p).get("labels"))) and (cu.controller_ref(p) or {}).get("uid") == uid]
        manage_err: BaseException | None = None
        if needs_sync and not cu.meta(rs).get("deletionTimestamp"):
            manage_err = await self._manage(active, rs, key)
        status = calculate_status(rs, active, terminating if self.managed.reports_terminating else None, manage_err)
        updated = await self._update_status(rs, status)
        if manage_err is not None:
            raise manage_err
        spec = _d(updated.get("spec"))
        st = _d(updated.get("status"))
        min_ready = _int(spec.get("minReadySeconds"))
        if min_ready > 0 and _int(st.get("readyReplicas")) == _int(spec.get("replicas")) and \
                _int(st.get("availableReplicas")) != _int(spec.get("replicas")):
            self._enqueue_after(key, float(min_ready))
        return False

    async def _claim(self, rs: Obj, selector: LabelSelector, pods: list[Obj]) -> list[Obj]:
        m = cu.meta(rs)

        async def can_adopt() -> None:
            """RecheckDeletionTimestamp: adopt only for a live ReplicaSet that is still this one."""
            fresh = await self.rs_store.get(m.get("namespace", ""), m.get("name", ""))
            fm = cu.meta(fresh)
            if fm.get("uid") != m.get("uid"):
                raise errors.conflict(self.managed.plural, m.get("name", ""), f"original {self.managed.kind} "
                                      f"{m.get('namespace')}/{m.get('name')} is gone: got uid {fm.get('uid')}, "
                                      f"wanted {m.get('uid')}", self.managed.group)
            if fm.get("deletionTimestamp"):
                raise errors.conflict(self.managed.plural, m.get("name", ""), f"{m.get('namespace')}/"
                                      f"{m.get('name')} has just been deleted", self.managed.group)

        m_ = self.managed
        mgr = cu.RefManager(self.pods, rs, m_.api_version, m_.kind, selector, can_adopt, m_.component)
        return await mgr.claim(pods)

    async def _manage(self, pods: list[Obj], rs: Obj, key: str) -> BaseException | None:
        """manageReplicas."""
        want = _int(_d(rs.get("spec")).get("replicas"))
        diff = len(pods) - want
        if diff < 0:
            n = min(-diff, self.burst)
            self.expectations.expect_creations(key, n)
            ok, err = await cu.slow_start_batch(n, cu.SLOW_START_INITIAL_BATCH, lambda: self._create_pod(rs))
            for _ in range(n - ok):  # what was never started is not expected
                self.expectations.creation_observed(key)
            return err
        if diff > 0:
            n = min(diff, self.burst)
            victims = cu.pods_to_delete(pods, self._related_pods(rs), n)
            self.expectations.expect_deletions(key, [cu.key_of(p) for p in victims])
            results = await asyncio.gather(*(self._delete_pod(rs, key, p) for p in victims))
            return next((e for e in results if e is not None), None)
        return None

    def _related_pods(self, rs: Obj) -> list[Obj]:
        """getIndirectlyRelatedPods: the pods of every ReplicaSet with the same controller."""
        owner = cu.controller_ref(rs)
        siblings = [rs]
        if owner is not None:
            siblings = [r for r in self.rs_informer.list(cu.meta(rs).get("namespace", ""))
                        if (cu.controller_ref(r) or {}).get("uid") == owner.get("uid")] or [rs]
        out: list[Obj] = []
        for r in siblings:
            out += self.pod_informer.by_index(cu.CONTROLLER_UID_INDEX, str(cu.meta(r).get("uid")))
        return out

    async def _create_pod(self, rs: Obj) -> None:
        """RealPodControl.CreatePods with its events."""
        pod = pod_from_template(rs, self.managed)
        if not pod["metadata"].get("labels"):
            raise ValueError("unable to create pods, no labels")
        try:
            created = await self.pods.create(pod["metadata"]["namespace"], pod, self.opts)
        except errors.StatusError as exc:
            causes = (exc.details or {}).get("causes") or []
            if any(_d(c).get("reason") == NAMESPACE_TERMINATING_CAUSE for c in causes):
                return  # the namespace is going away: no pod will be created there
            self.recorder.emit(rs, WARNING, "FailedCreate", f"Error creating: {exc.message}")
            raise
        self.recorder.emit(rs, NORMAL, "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")

    async def _delete_pod(self, rs: Obj, key: str, pod: Obj) -> BaseException | None:
        m = cu.meta(pod)
        try:
            await self.pods.delete(m.get("namespace", ""), m.get("name", ""), DeleteOptions())
        except errors.StatusError as exc:
            self.expectations.deletion_observed(key, cu.key_of(pod))
            if exc.code == 404:
                return None
            self.recorder.emit(rs, WARNING, "FailedDelete", f"Error deleting: {exc.message}")
            return exc
        self.recorder.emit(rs, NORMAL, "SuccessfulDelete", f"Deleted pod: {m.get('name', '')}")
        return None

    async def _update_status(self, rs: Obj, status: Obj) -> Obj:
        """updateReplicaSetStatus: write only what changed, retrying on conflicts."""
        gen = _int(cu.meta(rs).get("generation"))
        m = cu.meta(rs)
        cur = rs
        status = {k: v for k, v in status.items() if k != "observedGeneration"}
        for attempt in range(2):
            old = _d(cur.get("status"))
            if {k: v for k, v in old.items() if k != "observedGeneration"} == status and \
                    _int(old.get("observedGeneration")) == gen:
                return cur
            status["observedGeneration"] = gen
            new = copy.deepcopy(cur)
            new["status"] = status
            try:
                out, _ = await self.rs_store.update(m.get("namespace", ""), m.get("name", ""), new, self.opts, "status")
                return out
            except errors.StatusError as exc:
                if exc.code == 404:
                    return cur
                if exc.code != 409 or attempt:
                    raise
                cur = await self.rs_store.get(m.get("namespace", ""), m.get("name", ""))
                status = dict(status)
                status.pop("observedGeneration", None)
        return cur


__all__ = ["REPLICATION_CONTROLLERS", "REPLICA_SETS", "Managed", "ReplicaSetController", "calculate_status",
           "map_selector_of", "pod_from_template"]
