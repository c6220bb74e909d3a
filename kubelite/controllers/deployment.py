"""The Deployment controller (pkg/controller/deployment: deployment_controller.go, sync.go,
rolling.go, recreate.go, progress.go): each Deployment owns one ReplicaSet per pod template
(named ``<deployment>-<pod-template-hash>``, revision in ``deployment.kubernetes.io/revision``)
and moves pods from the old ones to the new one — RollingUpdate within maxSurge and
maxUnavailable, Recreate by scaling the old ones to zero first. It scales proportionally,
stops while paused, keeps revisionHistoryLimit old ReplicaSets, and reports the Progressing
(with progressDeadlineSeconds) and Available conditions. Rollback is the client's job:
kubectl reads the ReplicaSets' revisions and templates and writes the old template back.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from typing import Any

from kubelite.api import errors
from kubelite.api.selectors import LabelSelector
from kubelite.apiserver.registry import DeleteOptions, WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.client.events import NORMAL, WARNING, EventRecorder
from kubelite.controllers import controller_utils as cu
from kubelite.controllers import deploymentutil as du
from kubelite.controllers.base import WorkQueue, informer
from kubelite.controllers.events import recorder as store_recorder
from kubelite.controllers.replicaset import selector_of
from kubelite.kinds.apps import POD_TEMPLATE_HASH, REVISION

log = logging.getLogger("kubelite.controllers.deployment")
Obj = dict[str, Any]

COMPONENT = "deployment-controller"
API_VERSION = "apps/v1"
KIND = "Deployment"
CONFLICT_RETRY = 0.1  # seconds


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


class DeploymentController:
    def __init__(self, stores: Stores, recorder: EventRecorder | None = None) -> None:
        self.deployments = stores.get("apps", "deployments")
        self.replicasets = stores.get("apps", "replicasets")
        self.pods = stores.get("", "pods")
        self.recorder = recorder or store_recorder(stores, COMPONENT)
        self.opts = WriteOptions(field_manager=COMPONENT)
        self.d_informer = informer(self.deployments)
        self.rs_informer = informer(self.replicasets)
        self.pod_informer = informer(self.pods)
        self.rs_informer.add_index(cu.CONTROLLER_UID_INDEX, cu.controller_uid_index)
        self.pod_informer.add_index(cu.CONTROLLER_UID_INDEX, cu.controller_uid_index)
        self.queue = WorkQueue(COMPONENT, self.sync)
        self.d_informer.add_handler(self._on_deployment)
        self.rs_informer.add_handler(self._on_rs)
        self.pod_informer.add_handler(self._on_pod)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for inf in (self.d_informer, self.rs_informer, self.pod_informer):
                tg.create_task(inf.run())
            for inf in (self.d_informer, self.rs_informer, self.pod_informer):
                await inf.wait_synced()
            for d in self.d_informer.list():
                self.queue.add(cu.key_of(d))
            await self.queue.run()

    # ------------------------------------------------------------------ event handlers
    def _enqueue_after(self, key: str, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.queue.add, key)

    def _on_deployment(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        if obj is not None:
            self.queue.add(cu.key_of(obj))

    def _owner(self, obj: Obj, ref: dict[str, Any] | None) -> Obj | None:
        if ref is None or ref.get("kind") != KIND or str(ref.get("apiVersion") or "").split("/")[0] != "apps":
            return None
        d = self.d_informer.get(cu.meta(obj).get("namespace", ""), ref.get("name", ""))
        if d is None or cu.meta(d).get("uid") != ref.get("uid"):
            return None
        return d

    def _matching(self, rs: Obj) -> list[Obj]:
        """getDeploymentsForReplicaSet: the Deployments whose selector matches an orphan."""
        labels = _d(cu.meta(rs).get("labels"))
        if not labels:
            return []
        return [d for d in self.d_informer.list(cu.meta(rs).get("namespace", ""))
                if not selector_of(d).empty() and selector_of(d).matches(labels)]

    def _on_rs(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        if etype == "DELETED" or new is None:
            if old is not None:
                d = self._owner(old, cu.controller_ref(old))
                if d is not None:
                    self.queue.add(cu.key_of(d))
            return
        if etype == "MODIFIED" and old is not None:
            if cu.meta(new).get("resourceVersion") == cu.meta(old).get("resourceVersion"):
                return
            old_ref, cur_ref = cu.controller_ref(old), cu.controller_ref(new)
            if old_ref != cur_ref and old_ref is not None:
                d = self._owner(old, old_ref)
                if d is not None:
                    self.queue.add(cu.key_of(d))
            if cur_ref is None and cu.meta(new).get("labels") == cu.meta(old).get("labels") and old_ref == cur_ref:
                return
        ref = cu.controller_ref(new)
        if ref is not None:
            d = self._owner(new, ref)
            if d is not None:
                self.queue.add(cu.key_of(d))
            return
        for d in self._matching(new):
            self.queue.add(cu.key_of(d))

    def _on_pod(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        """deletePod: a Recreate rollout waits for the old pods to be gone."""
        if etype != "DELETED" or old is None:
            return
        ref = cu.controller_ref(old)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.rs_informer.get(cu.meta(old).get("namespace", ""), ref.get("name", ""))
        if rs is None:
            return
        d = self._owner(rs, cu.controller_ref(rs))
        if d is not None and _d(du.spec(d).get("strategy")).get("type") == "Recreate":
            self.queue.add(cu.key_of(d))

    # ------------------------------------------------------------------ sync
    async def sync(self, key: str) -> bool:
        ns, name = cu.split_key(key)
        cached = self.d_informer.get(ns, name)
        if cached is None:
            return False
        run = _Sync(self, copy.deepcopy(cached))
        try:
            await run.sync()
        except errors.StatusError as exc:
            if exc.code != 409:
                raise
            # the cache was behind a write (the ReplicaSet controller's, or our own): sync
            # again once the informer has caught up, as a rate-limited requeue does
            log.debug("deployment %s: %s; syncing again", key, exc.message)
            self._enqueue_after(key, CONFLICT_RETRY)
            return False
        if run.requeue_after is not None:
            self._enqueue_after(key, run.requeue_after)
        return False


class _Sync:
    """One syncDeployment: holds the Deployment as last written, so that a sync's several
    writes do not conflict with each other."""

    def __init__(self, ctl: DeploymentController, d: Obj) -> None:
        self.ctl = ctl
        self.d = d
        self.requeue_after: float | None = None

    @property
    def ns(self) -> str:
        return str(cu.meta(self.d).get("namespace", ""))

    async def sync(self) -> None:
        d = self.d
        sel = du.spec(d).get("selector")
        if isinstance(sel, dict) and not sel.get("matchLabels") and not sel.get("matchExpressions"):
            self.ctl.recorder.emit(d, WARNING, "SelectingAll",
                                   "This deployment is selecting all pods. A non-empty selector is required.")
            return
        rss = await self._replica_sets()
        if cu.meta(d).get("deletionTimestamp"):
            new, olds = await self._all_rss(rss, create=False)
            await self._sync_status(olds, new)
            return
        await self._check_paused()
        if du.spec(d).get("paused"):
            await self._sync_scaling(rss)
            return
        if await self._is_scaling_event(rss):
            await self._sync_scaling(rss)
            return
        if _d(du.spec(d).get("strategy")).get("type") == "Recreate":
            await self._rollout_recreate(rss)
        else:
            await self._rollout_rolling(rss)

    # ------------------------------------------------------------------ ownership
    async def _replica_sets(self) -> list[Obj]:
        """getReplicaSetsForDeployment: claim the namespace's ReplicaSets by selector."""
        d = self.d
        m = cu.meta(d)

        async def can_adopt() -> None:
            fresh = await self.ctl.deployments.get(self.ns, m.get("name", ""))
            if cu.meta(fresh).get("uid") != m.get("uid") or cu.meta(fresh).get("deletionTimestamp"):
                raise errors.conflict("deployments", m.get("name", ""), "the deployment changed", "apps")

        mgr = cu.RefManager(self.ctl.replicasets, d, API_VERSION, KIND, selector_of(d), can_adopt, COMPONENT)
        return [copy.deepcopy(rs) for rs in await mgr.claim(self.ctl.rs_informer.list(self.ns))]

    def _pods_by_rs(self, rss: list[Obj]) -> dict[str, list[Obj]]:
        """getPodMapForDeployment."""
        sel: LabelSelector = selector_of(self.d)
        out: dict[str, list[Obj]] = {}
        for rs in rss:
            uid = str(cu.meta(rs).get("uid"))
            out[uid] = [p for p in self.ctl.pod_informer.by_index(cu.CONTROLLER_UID_INDEX, uid)
                        if sel.matches(_d(cu.meta(p).get("labels")))]
        return out

    # ------------------------------------------------------------------ writes
    async def _update_status(self, new_status: Obj) -> None:
        d = copy.deepcopy(self.d)
        d["status"] = new_status
        out, _ = await self.ctl.deployments.update(self.ns, cu.meta(d)["name"], d, self.ctl.opts, "status")
        self.d = out

    async def _update_rs(self, rs: Obj) -> Obj:
        out, _ = await self.ctl.replicasets.update(self.ns, cu.meta(rs)["name"], rs, self.ctl.opts)
        return out

    async def _scale_rs(self, rs: Obj, new_scale: int, operation: str = "") -> Obj:
        """scaleReplicaSet: the size and the replica annotations, with a ScalingReplicaSet event."""
        d = self.d
        size_changed = du.replicas(rs) != new_scale
        rs_copy = copy.deepcopy(rs)
        ann_changed = du.set_replicas_annotations(rs_copy, du.replicas(d), du.replicas(d) + du.max_surge(d))
        if not size_changed and not ann_changed:
            return rs
        old_scale = du.replicas(rs)
        rs_copy["spec"]["replicas"] = new_scale
        out = await self._update_rs(rs_copy)
        if size_changed:
            op = operation or ("up" if old_scale < new_scale else "down")
            self.ctl.recorder.emit(d, NORMAL, "ScalingReplicaSet",
                                   f"Scaled {op} replica set {cu.meta(rs)['name']} from {old_scale} to {new_scale}")
        return out

    async def _scale_and_record(self, rs: Obj, new_scale: int) -> tuple[bool, Obj]:
        """scaleReplicaSetAndRecordEvent."""
        if du.replicas(rs) == new_scale:
            return False, rs
        return True, await self._scale_rs(rs, new_scale)

    # ------------------------------------------------------------------ the new ReplicaSet
    async def _all_rss(self, rss: list[Obj], create: bool) -> tuple[Obj | None, list[Obj]]:
        """getAllReplicaSetsAndSyncRevision: (the new ReplicaSet, all old ones)."""
        olds = du.find_old(self.d, rss)
        new = await self._new_rs(rss, olds, create)
        return new, olds

    async def _new_rs(self, rss: list[Obj], olds: list[Obj], create: bool) -> Obj | None:
        """getNewReplicaSet."""
        d = self.d
        existing = du.find_new(d, rss)
        new_revision = du.max_revision(olds) + 1
        if existing is not None:
            rs_copy = copy.deepcopy(existing)
            ann_changed = du.set_new_rs_annotations(d, rs_copy, new_revision, True)
            min_ready = du.spec(d).get("minReadySeconds", 0)
            if ann_changed or du.spec(rs_copy).get("minReadySeconds", 0) != min_ready:
                rs_copy["spec"]["minReadySeconds"] = min_ready
                return await self._update_rs(rs_copy)
            d2 = copy.deepcopy(d)
            needs = du.set_deployment_revision(d2, _d(cu.meta(rs_copy).get("annotations")).get(REVISION, ""))
            st = copy.deepcopy(du.status(d2))
            if du.has_progress_deadline(d2) and du.get_condition(st, du.PROGRESSING) is None:
                du.set_condition(st, du.new_condition(du.PROGRESSING, "True", du.FOUND_NEW_RS,
                                                      f'Found new replica set "{cu.meta(rs_copy)["name"]}"'))
                needs = True
            if needs:
                self.d = d2
                await self._update_status(st)
            return rs_copy
        if not create:
            return None
        template = copy.deepcopy(_d(du.spec(d).get("template")))
        collision = du.status(d).get("collisionCount")
        h = du.compute_hash(template, collision if isinstance(collision, int) else None)
        tmeta = template.setdefault("metadata", {})
        tmeta["labels"] = {**_d(tmeta.get("labels")), POD_TEMPLATE_HASH: h}
        selector = copy.deepcopy(_d(du.spec(d).get("selector")))
        selector["matchLabels"] = {**_d(selector.get("matchLabels")), POD_TEMPLATE_HASH: h}
        rs: Obj = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{cu.meta(d)['name']}-{h}", "namespace": self.ns,
                         "ownerReferences": [cu.new_controller_ref(d, API_VERSION, KIND)],
                         "labels": dict(tmeta["labels"])},
            "spec": {"replicas": 0, "minReadySeconds": du.spec(d).get("minReadySeconds", 0), "selector": selector,
                     "template": template},
        }
        rs["spec"]["replicas"] = du.new_rs_new_replicas(d, [*olds, rs], rs)
        du.set_new_rs_annotations(d, rs, new_revision, False)
        try:
            created = await self.ctl.replicasets.create(self.ns, copy.deepcopy(rs), self.ctl.opts)
        except errors.StatusError as exc:
            if exc.code == 409 and exc.reason == "AlreadyExists":
                return await self._collision(rs)
            msg = f'Failed to create new replica set "{rs["metadata"]["name"]}": {exc.message}'
            if du.has_progress_deadline(d):
                st = copy.deepcopy(du.status(d))
                du.set_condition(st, du.new_condition(du.PROGRESSING, "False", du.FAILED_RS_CREATE, msg))
                await self._update_status(st)
            self.ctl.recorder.emit(d, WARNING, du.FAILED_RS_CREATE, msg)
            raise
        n = du.replicas(created)
        if n > 0:
            self.ctl.recorder.emit(d, NORMAL, "ScalingReplicaSet",
                                   f"Scaled up replica set {created['metadata']['name']} from 0 to {n}")
        d2 = copy.deepcopy(self.d)
        needs = du.set_deployment_revision(d2, str(new_revision))
        st = copy.deepcopy(du.status(d2))
        if du.has_progress_deadline(d2):
            du.set_condition(st, du.new_condition(du.PROGRESSING, "True", du.NEW_RS_CREATED,
                                                  f'Created new replica set "{created["metadata"]["name"]}"'))
            needs = True
        if needs:
            self.d = d2
            await self._update_status(st)
        return created

    async def _collision(self, rs: Obj) -> Obj | None:
        """A ReplicaSet of that name exists: ours with the same template is the new one;
        anything else is a hash collision, counted in status.collisionCount for a new name."""
        existing = await self.ctl.replicasets.get(self.ns, rs["metadata"]["name"])
        ref = cu.controller_ref(existing)
        if ref is not None and ref.get("uid") == cu.meta(self.d).get("uid") and du.equal_ignore_hash(
                du.spec(existing).get("template"), du.spec(self.d).get("template")):
            return existing
        st = copy.deepcopy(du.status(self.d))
        st["collisionCount"] = int(st.get("collisionCount") or 0) + 1
        await self._update_status(st)
        raise errors.StatusError(409, "AlreadyExists", f'replicasets.apps "{rs["metadata"]["name"]}" already exists '
                                 "(hash collision; retrying with collisionCount "
                                 f"{st['collisionCount']})")

    # ------------------------------------------------------------------ paused, scaling
    async def _check_paused(self) -> None:
        """checkPausedConditions."""
        d = self.d
        if not du.has_progress_deadline(d):
            return
        st = copy.deepcopy(du.status(d))
        cond = du.get_condition(st, du.PROGRESSING)
        if cond is not None and cond.get("reason") == du.TIMED_OUT:
            return
        paused = bool(du.spec(d).get("paused"))
        reason = (cond or {}).get("reason")
        if paused and reason != du.PAUSED:
            du.set_condition(st, du.new_condition(du.PROGRESSING, "Unknown", du.PAUSED, "Deployment is paused"))
        elif not paused and reason == du.PAUSED:
            du.set_condition(st, du.new_condition(du.PROGRESSING, "Unknown", du.RESUMED, "Deployment is resumed"))
        else:
            return
        await self._update_status(st)

    async def _is_scaling_event(self, rss: list[Obj]) -> bool:
        new, olds = await self._all_rss(rss, create=False)
        for rs in du.active([*olds, *([new] if new is not None else [])]):
            desired = du.desired_replicas_annotation(rs)
            if desired is not None and desired != du.replicas(self.d):
                return True
        return False

    async def _sync_scaling(self, rss: list[Obj]) -> None:
        """sync: scale, clean up while paused, and write the status."""
        new, olds = await self._all_rss(rss, create=False)
        new, olds = await self._scale(new, olds)
        if du.spec(self.d).get("paused"):
            await self._cleanup(olds)
        await self._sync_status(olds, new)

    async def _scale(self, new: Obj | None, olds: list[Obj]) -> tuple[Obj | None, list[Obj]]:
        """scale: one active ReplicaSet takes all; otherwise proportionally (rolling)."""
        d = self.d
        target = du.find_active_or_latest(new, olds)
        if target is not None:
            if du.replicas(target) != du.replicas(d):
                updated = await self._scale_rs(target, du.replicas(d))
                return _replace(new, olds, updated)
            return new, olds
        if du.is_saturated(d, new):
            for old in du.active(olds):
                updated = await self._scale_rs(old, 0)
                new, olds = _replace(new, olds, updated)
            return new, olds
        if not du.is_rolling(d):
            return new, olds
        act = du.active([*olds, *([new] if new is not None else [])])
        current = du.total_replicas(list(act))
        allowed = du.replicas(d) + du.max_surge(d) if du.replicas(d) > 0 else 0
        to_add = allowed - current
        op = ""
        if to_add > 0:
            act = du.by_size(act, newer_first=True)
            op = "up"
        elif to_add < 0:
            act = du.by_size(act, newer_first=False)
            op = "down"
        added = 0
        sizes: dict[str, int] = {}
        for rs in act:
            if to_add != 0:
                p = du.rs_proportion(rs, d, to_add, added)
                sizes[cu.meta(rs)["name"]] = du.replicas(rs) + p
                added += p
            else:
                sizes[cu.meta(rs)["name"]] = du.replicas(rs)
        for i, rs in enumerate(act):
            name = cu.meta(rs)["name"]
            if i == 0 and to_add != 0:
                sizes[name] = max(sizes[name] + to_add - added, 0)
            updated = await self._scale_rs(rs, sizes[name], op)
            new, olds = _replace(new, olds, updated)
        return new, olds

    async def _cleanup(self, olds: list[Obj]) -> None:
        """cleanupDeployment: delete the oldest ReplicaSets beyond revisionHistoryLimit (those
        that are fully scaled down and observed)."""
        limit = du.spec(self.d).get("revisionHistoryLimit")
        if not isinstance(limit, int) or isinstance(limit, bool):
            return
        alive = [rs for rs in olds if not cu.meta(rs).get("deletionTimestamp")]
        diff = len(alive) - limit
        if diff <= 0:
            return
        alive.sort(key=lambda rs: (du.revision(rs), du.created_key(rs)))
        for rs in alive[:diff]:
            st = du.status(rs)
            if int(st.get("replicas") or 0) != 0 or du.replicas(rs) != 0 or \
                    int(cu.meta(rs).get("generation") or 0) > int(st.get("observedGeneration") or 0):
                continue
            try:
                await self.ctl.replicasets.delete(self.ns, cu.meta(rs)["name"], DeleteOptions(
                    preconditions={"uid": cu.meta(rs).get("uid")}))
            except errors.StatusError as exc:
                if exc.code not in (404, 409):
                    raise

    # ------------------------------------------------------------------ status
    async def _sync_status(self, olds: list[Obj], new: Obj | None) -> None:
        """syncDeploymentStatus."""
        st = du.calculate_status([*olds, new], new, self.d)
        if st != du.status(self.d):
            await self._update_status(st)

    async def _sync_rollout_status(self, all_rss: list[Obj | None], new: Obj | None) -> None:
        """syncRolloutStatus: the Progressing condition follows the rollout."""
        d = self.d
        st = du.calculate_status(all_rss, new, d)
        if not du.has_progress_deadline(d):
            du.remove_condition(st, du.PROGRESSING)
        cur = du.get_condition(du.status(d), du.PROGRESSING)
        complete = _n(st, "replicas") == _n(st, "updatedReplicas") and cur is not None and \
            cur.get("reason") == du.NEW_RS_AVAILABLE
        new_name = cu.meta(new)["name"] if new is not None else ""
        dname = cu.meta(d)["name"]
        if du.has_progress_deadline(d) and not complete:
            if du.deployment_complete(d, st):
                msg = f'ReplicaSet "{new_name}" has successfully progressed.' if new is not None else \
                    f'Deployment "{dname}" has successfully progressed.'
                du.set_condition(st, du.new_condition(du.PROGRESSING, "True", du.NEW_RS_AVAILABLE, msg))
            elif du.deployment_progressing(d, st):
                msg = f'ReplicaSet "{new_name}" is progressing.' if new is not None else \
                    f'Deployment "{dname}" is progressing.'
                cond = du.new_condition(du.PROGRESSING, "True", du.RS_UPDATED, msg)
                if cur is not None:
                    if cur.get("status") == "True":
                        cond["lastTransitionTime"] = cur.get("lastTransitionTime")
                    du.remove_condition(st, du.PROGRESSING)
                du.set_condition(st, cond)
            elif du.deployment_timed_out(d, st):
                msg = f'ReplicaSet "{new_name}" has timed out progressing.' if new is not None else \
                    f'Deployment "{dname}" has timed out progressing.'
                du.set_condition(st, du.new_condition(du.PROGRESSING, "False", du.TIMED_OUT, msg))
        failure = self._replica_failure(all_rss, new)
        if failure is not None:
            du.set_condition(st, failure)
        else:
            du.remove_condition(st, du.REPLICA_FAILURE)
        if st == du.status(d):
            self._requeue_stuck(st)
            return
        await self._update_status(st)

    def _replica_failure(self, all_rss: list[Obj | None], new: Obj | None) -> dict[str, Any] | None:
        """getReplicaFailures: the new ReplicaSet's ReplicaFailure first, else an old one's."""
        ordered = ([new] if new is not None else []) + [rs for rs in all_rss if rs is not None and rs is not new]
        for rs in ordered:
            c = du.get_condition(du.status(rs), "ReplicaFailure")
            if c is not None:
                return {"type": du.REPLICA_FAILURE, "status": c.get("status"), "lastUpdateTime": c.get(
                    "lastTransitionTime"), "lastTransitionTime": c.get("lastTransitionTime"),
                    "reason": c.get("reason"), "message": c.get("message")}
        return None

    def _requeue_stuck(self, st: dict[str, Any]) -> None:
        """requeueStuckDeployment: check again when the progress deadline would pass."""
        d = self.d
        cond = du.get_condition(st, du.PROGRESSING)
        if not du.has_progress_deadline(d) or cond is None:
            return
        if du.deployment_complete(d, st) or cond.get("reason") == du.TIMED_OUT:
            return
        from kubelite.kinds._printing import parse_time

        since = parse_time(cond.get("lastUpdateTime"))
        if since is None:
            return
        after = since + int(du.spec(d).get("progressDeadlineSeconds") or 0) - time.time()
        self.requeue_after = max(after, 1.0)

    # ------------------------------------------------------------------ strategies
    async def _rollout_rolling(self, rss: list[Obj]) -> None:
        """rolloutRolling."""
        new, olds = await self._all_rss(rss, create=True)
        assert new is not None
        scaled, new = await self._reconcile_new(olds, new)
        if scaled:
            await self._sync_rollout_status([*olds, new], new)
            return
        scaled_down, olds = await self._reconcile_olds(du.active(olds), olds, new)
        if scaled_down:
            await self._sync_rollout_status([*olds, new], new)
            return
        if du.deployment_complete(self.d, du.status(self.d)):
            await self._cleanup(olds)
        await self._sync_rollout_status([*olds, new], new)

    async def _reconcile_new(self, olds: list[Obj], new: Obj) -> tuple[bool, Obj]:
        d = self.d
        if du.replicas(new) == du.replicas(d):
            return False, new
        if du.replicas(new) > du.replicas(d):
            return await self._scale_and_record(new, du.replicas(d))
        return await self._scale_and_record(new, du.new_rs_new_replicas(d, [*olds, new], new))

    async def _reconcile_olds(self, active_olds: list[Obj], olds: list[Obj], new: Obj) -> tuple[bool, list[Obj]]:
        """reconcileOldReplicaSets: scale old ReplicaSets down as far as availability allows,
        unhealthy replicas first."""
        d = self.d
        old_count = du.total_replicas(list(active_olds))
        if old_count == 0:
            return False, olds
        all_count = du.total_replicas([*active_olds, new])
        min_available = du.replicas(d) - du.max_unavailable(d)
        new_unavailable = du.replicas(new) - int(du.status(new).get("availableReplicas") or 0)
        max_down = all_count - min_available - new_unavailable
        if max_down <= 0:
            return False, olds
        total = 0
        cleaned: list[Obj] = []
        for rs in du.by_creation(active_olds):  # cleanupUnhealthyReplicas
            if total >= max_down or du.replicas(rs) == 0 or \
                    du.replicas(rs) == int(du.status(rs).get("availableReplicas") or 0):
                cleaned.append(rs)
                continue
            n = min(max_down - total, du.replicas(rs) - int(du.status(rs).get("availableReplicas") or 0))
            _, rs = await self._scale_and_record(rs, du.replicas(rs) - n)
            total += n
            cleaned.append(rs)
        # scaleDownOldReplicaSetsForRollingUpdate
        available = du.available_replicas([*cleaned, new])
        down = 0
        if available > min_available:
            budget = available - min_available
            for rs in du.by_creation(cleaned):
                if down >= budget:
                    break
                if du.replicas(rs) == 0:
                    continue
                n = min(du.replicas(rs), budget - down)
                _, updated = await self._scale_and_record(rs, du.replicas(rs) - n)
                cleaned = [updated if cu.meta(x).get("uid") == cu.meta(rs).get("uid") else x for x in cleaned]
                down += n
        by_uid = {cu.meta(rs).get("uid"): rs for rs in cleaned}
        olds = [by_uid.get(cu.meta(rs).get("uid"), rs) for rs in olds]
        return total + down > 0, olds

    async def _rollout_recreate(self, rss: list[Obj]) -> None:
        """rolloutRecreate: old ReplicaSets to zero, wait for their pods to go, then the new one up."""
        new, olds = await self._all_rss(rss, create=False)
        scaled = False
        for rs in du.active(olds):
            changed, updated = await self._scale_and_record(rs, 0)
            scaled = scaled or changed
            new, olds = _replace(new, olds, updated)
        if scaled:
            await self._sync_rollout_status([*olds, new], new)
            return
        if self._old_pods_running(new, olds, self._pods_by_rs(rss)):
            await self._sync_rollout_status([*olds, new], new)
            return
        if new is None:
            new, olds = await self._all_rss(rss, create=True)
        assert new is not None
        if du.replicas(new) != du.replicas(self.d):
            _, new = await self._scale_and_record(new, du.replicas(self.d))
        if du.deployment_complete(self.d, du.status(self.d)):
            await self._cleanup(olds)
        await self._sync_rollout_status([*olds, new], new)

    @staticmethod
    def _old_pods_running(new: Obj | None, olds: list[Obj], pods_by_rs: dict[str, list[Obj]]) -> bool:
        """oldPodsRunning."""
        if du.actual_replicas(list(olds)) > 0:
            return True
        new_uid = cu.meta(new).get("uid") if new is not None else None
        for uid, pods in pods_by_rs.items():
            if uid == new_uid:
                continue
            for p in pods:
                if _d(p.get("status")).get("phase") not in ("Failed", "Succeeded"):
                    return True
        return False


def _n(st: dict[str, Any], k: str) -> int:
    v = st.get(k)
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _replace(new: Obj | None, olds: list[Obj], updated: Obj) -> tuple[Obj | None, list[Obj]]:
    uid = cu.meta(updated).get("uid")
    if new is not None and cu.meta(new).get("uid") == uid:
        return updated, olds
    return new, [updated if cu.meta(rs).get("uid") == uid else rs for rs in olds]


__all__ = ["DeploymentController"]
