"""The StatefulSet controller (pkg/controller/statefulset: stateful_set.go,
stateful_set_control.go, stateful_set_utils.go, stateful_pod_control.go).

Each StatefulSet of N replicas owns pods ``<name>-<start>..<name>-<start+N-1>`` with a stable
identity (hostname, the governing Service as subdomain, the pod-name and pod-index labels) and,
for each volumeClaimTemplate, a PersistentVolumeClaim ``<template>-<name>-<ordinal>``. With
``OrderedReady`` it creates them one at a time in ordinal order, each only once its predecessor
is Running and Ready, and removes them highest ordinal first; ``Parallel`` does not wait.
Template changes are new ControllerRevisions; the RollingUpdate strategy replaces pods from the
highest ordinal down to ``partition``, at most ``maxUnavailable`` unavailable at a time.
Events: SuccessfulCreate, FailedCreate, SuccessfulDelete, FailedDelete (pods and claims).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import re
import time
from typing import Any

from kubelite.api import errors
from kubelite.api.selectors import LabelSelector
from kubelite.apiserver.registry import DeleteOptions, ResourceStore, WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.client.events import NORMAL, WARNING, EventRecorder
from kubelite.controllers import controller_utils as cu
from kubelite.controllers import history as hist
from kubelite.controllers.base import WorkQueue, informer
from kubelite.controllers.deploymentutil import scaled_value
from kubelite.controllers.events import recorder as store_recorder
from kubelite.controllers.replicaset import error_text, selector_of
from kubelite.kinds.podutil import is_terminal

log = logging.getLogger("kubelite.controllers.statefulset")
Obj = dict[str, Any]

COMPONENT = "statefulset-controller"
API_VERSION = "apps/v1"
KIND = "StatefulSet"
REVISION_LABEL = "controller-revision-hash"  # StatefulSetRevisionLabel
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


# ----------------------------------------------------------------------------- identity (pure)
def start_ordinal(sts: Obj) -> int:
    return _int(_d(_d(sts.get("spec")).get("ordinals")).get("start"))


def pod_name(sts: Obj, ordinal: int) -> str:
    return f"{cu.meta(sts).get('name', '')}-{ordinal}"


def ordinal_of(sts: Obj, pod: Obj) -> int | None:
    """getParentNameAndOrdinal: the ordinal a pod's name carries when it is ``<set>-<n>``."""
    m = re.fullmatch(r"(.*)-([0-9]+)", str(cu.meta(pod).get("name") or ""))
    if m is None or m.group(1) != cu.meta(sts).get("name"):
        return None
    return int(m.group(2))


def claim_name(template: Obj, sts: Obj, ordinal: int) -> str:
    """getPersistentVolumeClaimName."""
    return f"{cu.meta(template).get('name', '')}-{cu.meta(sts).get('name', '')}-{ordinal}"


def claim_templates(sts: Obj) -> list[Obj]:
    return [t for t in _l(_d(sts.get("spec")).get("volumeClaimTemplates")) if isinstance(t, dict)]


def new_claims(sts: Obj, pod: Obj, ordinal: int) -> list[Obj]:
    """getPersistentVolumeClaims: one claim per template, labelled with the selector's matchLabels."""
    match_labels = _d(_d(_d(sts.get("spec")).get("selector")).get("matchLabels"))
    out = []
    for t in claim_templates(sts):
        tm = cu.meta(t)
        cm: Obj = {"name": claim_name(t, sts, ordinal), "namespace": cu.meta(sts).get("namespace", "")}
        labels = {**_d(tm.get("labels")), **match_labels}
        if labels:
            cm["labels"] = labels
        if tm.get("annotations"):
            cm["annotations"] = copy.deepcopy(tm["annotations"])
        out.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": cm,
                    "spec": copy.deepcopy(_d(t.get("spec")))})
    return out


def _update_storage(sts: Obj, pod: Obj, ordinal: int) -> None:
    """updateStorage: each claim template's volume is that ordinal's claim."""
    templates = claim_templates(sts)
    if not templates:
        return
    spec = pod.setdefault("spec", {})
    claims = {cu.meta(t).get("name"): claim_name(t, sts, ordinal) for t in templates}
    volumes = [v for v in _l(spec.get("volumes")) if _d(v).get("name") not in claims]
    for name, claim in claims.items():
        volumes.append({"name": name, "persistentVolumeClaim": {"claimName": claim}})
    spec["volumes"] = volumes


def new_pod(sts: Obj, template: Obj, ordinal: int, revision: str) -> Obj:
    """newVersionedStatefulSetPod: the template of ``revision`` with the pod's identity."""
    pod = cu.pod_from_template(template, sts, API_VERSION, KIND)
    m = pod["metadata"]
    m.pop("generateName", None)
    m["name"] = pod_name(sts, ordinal)
    labels = m.setdefault("labels", {})
    labels[POD_NAME_LABEL] = m["name"]
    labels[POD_INDEX_LABEL] = str(ordinal)
    labels[REVISION_LABEL] = revision
    pod["spec"]["hostname"] = m["name"]
    service = _d(sts.get("spec")).get("serviceName")
    if service:
        pod["spec"]["subdomain"] = service
    _update_storage(sts, pod, ordinal)
    return pod


def identity_matches(sts: Obj, pod: Obj, ordinal: int) -> bool:
    """identityMatches: its name, namespace and identity labels are the set's for its ordinal."""
    m = cu.meta(pod)
    labels = _d(m.get("labels"))
    return m.get("name") == pod_name(sts, ordinal) and m.get("namespace") == cu.meta(sts).get("namespace") and \
        labels.get(POD_NAME_LABEL) == m.get("name") and labels.get(POD_INDEX_LABEL) == str(ordinal)


def storage_matches(sts: Obj, pod: Obj, ordinal: int) -> bool:
    """storageMatches: each claim template is mounted from this ordinal's claim."""
    volumes = {_d(v).get("name"): _d(v) for v in _l(_d(pod.get("spec")).get("volumes"))}
    for t in claim_templates(sts):
        v = volumes.get(cu.meta(t).get("name"))
        if v is None or _d(v.get("persistentVolumeClaim")).get("claimName") != claim_name(t, sts, ordinal):
            return False
    return True


def pod_revision(pod: Obj) -> str:
    return str(_d(cu.meta(pod).get("labels")).get(REVISION_LABEL) or "")


def is_created(pod: Obj) -> bool:
    return bool(_d(pod.get("status")).get("phase"))


def is_running_and_ready(pod: Obj) -> bool:
    return _d(pod.get("status")).get("phase") == "Running" and cu.is_pod_ready(pod)


def is_available(pod: Obj, min_ready: int, now: float) -> bool:
    return _d(pod.get("status")).get("phase") == "Running" and cu.is_pod_available(pod, min_ready, now)


def _max_unavailable(sts: Obj) -> int:
    """getStatefulSetMaxUnavailable: at least one."""
    spec = _d(sts.get("spec"))
    ru = _d(_d(spec.get("updateStrategy")).get("rollingUpdate"))
    mu = ru.get("maxUnavailable")
    n = scaled_value(mu if mu is not None else 1, _int(spec.get("replicas")), True)
    return max(n, 1)


# ----------------------------------------------------------------------------- the controller
class StatefulSetController:
    def __init__(self, stores: Stores, recorder: EventRecorder | None = None) -> None:
        self.sets = stores.get("apps", "statefulsets")
        self.pods = stores.get("", "pods")
        self.revision_store = stores.get("apps", "controllerrevisions")
        # the claim store when PersistentVolumeClaims are served; sets with claim templates
        # refuse to create pods (FailedCreate) without it
        self.claims: ResourceStore | None = stores.find("", "persistentvolumeclaims")
        self.recorder = recorder or store_recorder(stores, COMPONENT)
        self.opts = WriteOptions(field_manager=COMPONENT)
        self.history = hist.History(self.revision_store, COMPONENT)
        self.set_informer = informer(self.sets)
        self.pod_informer = informer(self.pods)
        self.rev_informer = informer(self.revision_store)
        self.pod_informer.add_index(cu.CONTROLLER_UID_INDEX, cu.controller_uid_index)
        self.rev_informer.add_index(cu.CONTROLLER_UID_INDEX, cu.controller_uid_index)
        self.queue = WorkQueue(COMPONENT, self.sync)
        self.set_informer.add_handler(self._on_set)
        self.pod_informer.add_handler(self._on_pod)
        self.rev_informer.add_handler(self._on_dependent)

    async def run(self) -> None:
        informers = (self.set_informer, self.pod_informer, self.rev_informer)
        async with asyncio.TaskGroup() as tg:
            for inf in informers:
                tg.create_task(inf.run())
            for inf in informers:
                await inf.wait_synced()
            for s in self.set_informer.list():
                self.queue.add(cu.key_of(s))
            await self.queue.run()

    # ------------------------------------------------------------------ event handlers
    def _enqueue_after(self, key: str, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.queue.add, key)

    def _on_set(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        if obj is not None:
            self.queue.add(cu.key_of(obj))

    def _owner_key(self, obj: Obj) -> str | None:
        ref = cu.controller_ref(obj)
        if ref is None or ref.get("kind") != KIND or str(ref.get("apiVersion") or "").rpartition("/")[0] != "apps":
            return None
        s = self.set_informer.get(cu.meta(obj).get("namespace", ""), ref.get("name", ""))
        if s is None or cu.meta(s).get("uid") != ref.get("uid"):
            return None
        return cu.key_of(s)

    def _on_dependent(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        for obj in (old, new):
            if obj is not None:
                key = self._owner_key(obj)
                if key is not None:
                    self.queue.add(key)

    def _on_pod(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        self._on_dependent(etype, old, new)
        obj = new if new is not None else old
        if obj is None or cu.controller_ref(obj) is not None:
            return
        labels = _d(cu.meta(obj).get("labels"))
        for s in self.set_informer.list(cu.meta(obj).get("namespace", "")):  # an orphan to adopt
            sel = selector_of(s)
            if not sel.empty() and sel.matches(labels):
                self.queue.add(cu.key_of(s))
        if new is not None and old is not None:
            key = self._owner_key(new)
            min_ready = _int(_d(_d(self.set_informer.get(*cu.split_key(key)) or {}).get("spec")).get(
                "minReadySeconds")) if key else 0
            if key and min_ready > 0 and not cu.is_pod_ready(old) and cu.is_pod_ready(new):
                self._enqueue_after(key, min_ready + 1.0)

    # ------------------------------------------------------------------ sync
    async def sync(self, key: str) -> bool:
        return await cu.retry_on_conflict(lambda: self._sync(key), "stateful set", key, self._enqueue_after)

    async def _sync(self, key: str) -> bool:
        ns, name = cu.split_key(key)
        sts = self.set_informer.get(ns, name)
        if sts is None:
            return False
        selector = selector_of(sts)
        pods = await self._claim(sts, selector)
        revisions = [r for r in self.rev_informer.by_index(cu.CONTROLLER_UID_INDEX, str(cu.meta(sts).get("uid")))]
        return await _SetSync(self, sts, pods, revisions).run()

    async def _claim(self, sts: Obj, selector: LabelSelector) -> list[Obj]:
        m = cu.meta(sts)

        async def can_adopt() -> None:
            fresh = await self.sets.get(m.get("namespace", ""), m.get("name", ""))
            fm = cu.meta(fresh)
            if fm.get("uid") != m.get("uid") or fm.get("deletionTimestamp"):
                raise errors.conflict("statefulsets", m.get("name", ""), f"original StatefulSet "
                                      f"{m.get('namespace')}/{m.get('name')} is gone", "apps")

        # isMemberOf: only pods named for this set are its members
        candidates = [p for p in self.pod_informer.list(m.get("namespace", "")) if ordinal_of(sts, p) is not None]
        mgr = cu.RefManager(self.pods, sts, API_VERSION, KIND, selector, can_adopt, COMPONENT)
        return await mgr.claim(candidates)


class _SetSync:
    """One pass of defaultStatefulSetControl.UpdateStatefulSet over one set."""

    def __init__(self, ctl: StatefulSetController, sts: Obj, pods: list[Obj], revisions: list[Obj]) -> None:
        self.ctl = ctl
        self.sts = sts
        self.pods = pods
        self.revisions = revisions
        self.spec = _d(sts.get("spec"))
        self.ns = str(cu.meta(sts).get("namespace", ""))
        self.name = str(cu.meta(sts).get("name", ""))
        self.now = time.time()
        self.requeue: float | None = None

    async def run(self) -> bool:
        current, update, collision = await self._revisions()
        status = await self._update(current, update, collision)
        await self._update_status(status)
        live = {pod_revision(p) for p in self.pods} | {cu.meta(current).get("name"), cu.meta(update).get("name")}
        fresh = self.ctl.rev_informer.by_index(cu.CONTROLLER_UID_INDEX, str(cu.meta(self.sts).get("uid")))
        await self.ctl.history.truncate(fresh, {str(n) for n in live}, _int(self.spec.get("revisionHistoryLimit")))
        if self.requeue is not None:
            self.ctl._enqueue_after(cu.key_of(self.sts), self.requeue)
        return False

    # ------------------------------------------------------------------ revisions
    async def _revisions(self) -> tuple[Obj, Obj, int]:
        """getStatefulSetRevisions: the current and update revisions, creating the latter."""
        revs = hist.by_revision(self.revisions)
        collision = _int(_d(self.sts.get("status")).get("collisionCount"))
        labels = _d(cu.meta(_d(self.spec.get("template"))).get("labels"))
        data = hist.template_patch(self.sts)
        while True:
            candidate = hist.new_revision(self.sts, API_VERSION, KIND, labels, data, hist.next_revision(revs),
                                          collision)
            equal = [r for r in revs if hist.equal_revision(r, candidate)]
            if equal and revs and cu.meta(equal[-1]).get("name") == cu.meta(revs[-1]).get("name"):
                update = revs[-1]  # the latest is unchanged
                break
            if equal:  # an older template is back: it becomes the newest revision
                update = await self.ctl.history.update_revision(equal[-1], candidate["revision"])
                break
            try:
                update = await self.ctl.history.create(candidate)
            except hist.Collision:
                collision += 1
                continue
            break
        current_name = _d(self.sts.get("status")).get("currentRevision")
        current = next((r for r in revs if cu.meta(r).get("name") == current_name), update)
        return current, update, collision

    # ------------------------------------------------------------------ pods
    async def _update(self, current: Obj, update: Obj, collision: int) -> Obj:
        """updateStatefulSet: replicas in ordinal order, then condemned pods highest first, then
        the rolling update (updateStatefulSetAfterInvariantEstablished)."""
        spec = self.spec
        replicas = _int(spec.get("replicas"))
        start = start_ordinal(self.sts)
        monotonic = spec.get("podManagementPolicy") != "Parallel"
        min_ready = _int(spec.get("minReadySeconds"))
        current_name, update_name = str(cu.meta(current)["name"]), str(cu.meta(update)["name"])
        cur_template, upd_template = hist.template_of(current), hist.template_of(update)
        status: Obj = {"currentRevision": current_name, "updateRevision": update_name, "collisionCount": collision,
                       "replicas": 0, "readyReplicas": 0, "availableReplicas": 0, "currentReplicas": 0,
                       "updatedReplicas": 0}
        for p in self.pods:  # computeReplicaStatus (pods made in this pass are not created yet)
            status["replicas"] += is_created(p)
            if is_running_and_ready(p):
                status["readyReplicas"] += 1
                status["availableReplicas"] += is_available(p, min_ready, self.now)
            if is_created(p) and not cu.meta(p).get("deletionTimestamp"):
                rev = pod_revision(p)
                status["currentReplicas"] += rev == current_name
                status["updatedReplicas"] += rev == update_name
        slots: dict[int, Obj] = {}
        condemned: list[Obj] = []
        for p in self.pods:
            o = ordinal_of(self.sts, p)
            if o is not None and start <= o < start + replicas:
                slots[o] = p
            elif o is not None:
                condemned.append(p)
        condemned.sort(key=lambda p: -(ordinal_of(self.sts, p) or 0))
        strategy = _d(spec.get("updateStrategy"))
        ru = strategy.get("rollingUpdate")
        partition = _int(_d(ru).get("partition"))
        cur_replicas = _int(_d(self.sts.get("status")).get("currentReplicas"))

        def versioned(o: int) -> Obj:
            """newVersionedStatefulSetPod: below the partition, pods stay at the current revision."""
            if strategy.get("type") == "RollingUpdate" and (
                    (ru is None and o < start + cur_replicas) or (ru is not None and o < start + partition)):
                return new_pod(self.sts, cur_template, o, current_name)
            return new_pod(self.sts, upd_template, o, update_name)

        def unavailable(p: Obj | None) -> bool:
            """isUnavailable: not made yet, being deleted, or not Running and available."""
            return p is None or bool(cu.meta(p).get("deletionTimestamp")) or not is_available(p, min_ready, self.now)

        first_unhealthy = next((slots.get(o) for o in range(start, start + replicas) if unavailable(slots.get(o))),
                               None) or next((p for p in reversed(condemned) if unavailable(p)), None)
        if cu.meta(self.sts).get("deletionTimestamp"):
            return status
        for o in range(start, start + replicas):  # processReplica
            pod = slots.get(o)
            if pod is not None and is_terminal(pod):
                # a failed or succeeded pod goes; the next sync makes it again once it is gone
                if not cu.meta(pod).get("deletionTimestamp"):
                    await self._delete_pod(pod)
                if monotonic:
                    return status
                continue
            if pod is None:
                await self._create_pod(versioned(o), o)
                if monotonic:
                    return status
                continue
            if _d(pod.get("status")).get("phase") == "Pending":
                await self._create_claims(pod, o)  # createMissingPersistentVolumeClaims
            if monotonic and (cu.meta(pod).get("deletionTimestamp") or not is_running_and_ready(pod)):
                return status  # waiting for it to terminate, or to be Running and Ready
            if monotonic and not is_available(pod, min_ready, self.now):
                self.requeue = float(min_ready)
                return status
            if not identity_matches(self.sts, pod, o) or not storage_matches(self.sts, pod, o):
                await self._update_pod(pod, o)
        for pod in condemned:  # processCondemned, highest ordinal first
            if cu.meta(pod).get("deletionTimestamp"):
                if monotonic:
                    return status
                continue
            if monotonic and pod is not first_unhealthy and (
                    not is_running_and_ready(pod) or not is_available(pod, min_ready, self.now)):
                return status
            await self._delete_pod(pod, scaled_down=True)
            if monotonic:
                return status
        if strategy.get("type") != "RollingUpdate":
            return status  # OnDelete: pods are updated when they are deleted
        max_unavailable = _max_unavailable(self.sts)
        down = sum(1 for o in range(start, start + replicas) if unavailable(slots.get(o)))
        if down > max_unavailable:
            return status
        room = max_unavailable - down
        for o in range(start + replicas - 1, start + partition - 1, -1):
            pod = slots.get(o)
            if room <= 0:
                break
            if pod is not None and pod_revision(pod) != update_name and not cu.meta(pod).get("deletionTimestamp"):
                await self._delete_pod(pod)
                if pod_revision(pod) == current_name:  # (what was counted: an adopted pod has no revision)
                    status["currentReplicas"] -= 1
                room -= 1
        return status

    async def _create_pod(self, pod: Obj, ordinal: int) -> None:
        """createPersistentVolumeClaims, then the pod; events as StatefulPodControl records them."""
        pname = pod["metadata"]["name"]
        try:
            await self._create_claims(pod, ordinal)
            await self.ctl.pods.create(self.ns, pod, self.ctl.opts)
        except errors.StatusError as exc:
            if exc.code == 409:
                return  # it exists already; the informer has not caught up
            self.ctl.recorder.emit(self.sts, WARNING, "FailedCreate",
                                   f"create Pod {pname} in StatefulSet {self.name} failed error: {error_text(exc)}")
            raise
        self.ctl.recorder.emit(self.sts, NORMAL, "SuccessfulCreate",
                               f"create Pod {pname} in StatefulSet {self.name} successful")

    async def _create_claims(self, pod: Obj, ordinal: int) -> None:
        claims = new_claims(self.sts, pod, ordinal)
        if not claims:
            return
        pname = pod["metadata"]["name"]
        store = self.ctl.claims
        policy = _d(self.spec.get("persistentVolumeClaimRetentionPolicy"))
        for claim in claims:
            cname = claim["metadata"]["name"]
            if store is None:
                exc = errors.not_found("persistentvolumeclaims", cname)
                self.ctl.recorder.emit(self.sts, WARNING, "FailedCreate",
                                       f"create Claim {cname} for Pod {pname} in StatefulSet {self.name} failed "
                                       f"error: the server could not find the requested resource")
                raise exc
            if policy.get("whenDeleted") == "Delete":  # the set owns its claims: they go with it
                claim["metadata"]["ownerReferences"] = [dict(cu.new_controller_ref(self.sts, API_VERSION, KIND),
                                                             controller=False)]
            try:
                await store.get(self.ns, cname)
                continue
            except errors.StatusError as exc:
                if exc.code != 404:
                    raise
            try:
                await store.create(self.ns, claim, self.ctl.opts)
            except errors.StatusError as exc:
                if exc.code == 409:
                    continue
                self.ctl.recorder.emit(self.sts, WARNING, "FailedCreate",
                                       f"create Claim {cname} for Pod {pname} in StatefulSet {self.name} failed "
                                       f"error: {error_text(exc)}")
                raise
            self.ctl.recorder.emit(self.sts, NORMAL, "SuccessfulCreate",
                                   f"create Claim {cname} Pod {pname} in StatefulSet {self.name} success")

    async def _update_pod(self, pod: Obj, ordinal: int) -> None:
        """UpdateStatefulPod: put the identity (and the claims' volumes) back."""
        pname = str(cu.meta(pod).get("name", ""))
        new = copy.deepcopy(pod)
        labels = new.setdefault("metadata", {}).setdefault("labels", {})
        labels[POD_NAME_LABEL] = pname
        labels[POD_INDEX_LABEL] = str(ordinal)
        if not storage_matches(self.sts, new, ordinal):
            _update_storage(self.sts, new, ordinal)
            await self._create_claims(new, ordinal)
        try:
            await self.ctl.pods.update(self.ns, pname, new, self.ctl.opts)
        except errors.StatusError as exc:
            if exc.code == 404:
                return
            if exc.code == 409:
                raise  # synced again shortly
            self.ctl.recorder.emit(self.sts, WARNING, "FailedUpdate",
                                   f"update Pod {pname} in StatefulSet {self.name} failed error: {error_text(exc)}")
            raise
        self.ctl.recorder.emit(self.sts, NORMAL, "SuccessfulUpdate",
                               f"update Pod {pname} in StatefulSet {self.name} successful")

    async def _delete_pod(self, pod: Obj, scaled_down: bool = False) -> None:
        pname = str(cu.meta(pod).get("name", ""))
        if scaled_down:
            await self._release_claims(pod)
        try:
            await self.ctl.pods.delete(self.ns, pname, DeleteOptions(preconditions={"uid": cu.meta(pod).get("uid")}))
        except errors.StatusError as exc:
            if exc.code in (404, 409):
                return
            self.ctl.recorder.emit(self.sts, WARNING, "FailedDelete",
                                   f"delete Pod {pname} in StatefulSet {self.name} failed error: {error_text(exc)}")
            raise
        self.ctl.recorder.emit(self.sts, NORMAL, "SuccessfulDelete",
                               f"delete Pod {pname} in StatefulSet {self.name} successful")

    async def _release_claims(self, pod: Obj) -> None:
        """whenScaled Delete: a condemned pod's claims are owned by the pod, so they go with it."""
        policy = _d(self.spec.get("persistentVolumeClaimRetentionPolicy"))
        store = self.ctl.claims
        o = ordinal_of(self.sts, pod)
        if policy.get("whenScaled") != "Delete" or store is None or o is None:
            return
        ref = {"apiVersion": "v1", "kind": "Pod", "name": cu.meta(pod).get("name", ""),
               "uid": cu.meta(pod).get("uid", ""), "controller": False, "blockOwnerDeletion": True}
        for t in claim_templates(self.sts):
            cname = claim_name(t, self.sts, o)

            def change(cur: Obj) -> Obj:
                cm = cur.setdefault("metadata", {})
                refs = [r for r in _l(cm.get("ownerReferences")) if _d(r).get("uid") != ref["uid"]]
                cm["ownerReferences"] = [*refs, ref]
                return cur

            try:
                await store.patch(self.ns, cname, change, self.ctl.opts)
            except errors.StatusError as exc:
                if exc.code != 404:
                    raise

    # ------------------------------------------------------------------ status
    async def _update_status(self, status: Obj) -> None:
        """updateStatefulSetStatus with completeRollingUpdate."""
        replicas = _int(self.spec.get("replicas"))
        strategy = _d(self.spec.get("updateStrategy"))
        if strategy.get("type") == "RollingUpdate" and status["updatedReplicas"] == replicas and \
                status["readyReplicas"] == replicas and status["replicas"] == replicas:
            status["currentReplicas"] = status["updatedReplicas"]
            status["currentRevision"] = status["updateRevision"]
        status["observedGeneration"] = _int(cu.meta(self.sts).get("generation"))
        for k in ("readyReplicas", "currentReplicas", "updatedReplicas"):
            if not status[k]:
                del status[k]  # omitempty
        old = _d(self.sts.get("status"))
        keep = {k: v for k, v in old.items() if k == "conditions"}
        status = {**keep, **status}
        if status == old:
            return
        new = copy.deepcopy(self.sts)
        new["status"] = status
        try:
            await self.ctl.sets.update(self.ns, self.name, new, self.ctl.opts, "status")
        except errors.StatusError as exc:
            if exc.code != 404:
                raise


__all__ = ["StatefulSetController", "claim_name", "new_claims", "new_pod", "ordinal_of"]
