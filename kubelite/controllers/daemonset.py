"""The DaemonSet controller (pkg/controller/daemon: daemon_controller.go, update.go,
util/daemonset_util.go): one pod of each DaemonSet on every node that should run it.

A node should run a daemon pod when the template's nodeName, nodeSelector and required node
affinity admit it and the pod tolerates its NoSchedule and NoExecute taints; the pod gets the
tolerations every daemon pod has (not-ready and unreachable NoExecute; disk, memory and PID
pressure and unschedulable NoSchedule; network-unavailable for hostNetwork pods) and a
required node affinity ``matchFields metadata.name In [node]``, so that the scheduler binds it
there. Nodes joining get a pod, nodes that stop fitting lose theirs. The template's history is
kept in ControllerRevisions (name ``<ds>-<hash>``); the RollingUpdate strategy replaces old pods
at most ``maxUnavailable`` at a time. Events: SuccessfulCreate, FailedCreate, SuccessfulDelete,
FailedDelete, FailedDaemonPod, SelectingAll.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from typing import Any

from kubelite.api import errors
from kubelite.apiserver.registry import DeleteOptions, WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.client.events import NORMAL, WARNING, EventRecorder
from kubelite.controllers import controller_utils as cu
from kubelite.controllers import history as hist
from kubelite.controllers.base import WorkQueue, informer
from kubelite.controllers.deploymentutil import compute_hash, scaled_value
from kubelite.controllers.events import recorder as store_recorder
from kubelite.controllers.replicaset import error_text, selector_of
from kubelite.kinds.daemonsets import template_generation
from kubelite.kinds.podutil import is_terminal
from kubelite.scheduler.plugins import node_selector_term_matches, toleration_tolerates

log = logging.getLogger("kubelite.controllers.daemonset")
Obj = dict[str, Any]

COMPONENT = "daemonset-controller"
API_VERSION = "apps/v1"
KIND = "DaemonSet"
BURST_REPLICAS = 250
HASH_LABEL = "controller-revision-hash"  # DefaultDaemonSetUniqueLabelKey
GENERATION_LABEL = "pod-template-generation"  # DaemonSetTemplateGenerationKey
FAILED_POD_BACKOFF = 1.0


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


# ----------------------------------------------------------------------------- pods (pure)
def _tol(key: str, effect: str) -> dict[str, str]:
    return {"key": key, "operator": "Exists", "effect": effect}


def add_daemon_tolerations(spec: dict[str, Any]) -> None:
    """AddOrUpdateDaemonPodTolerations."""
    wanted = [_tol("node.kubernetes.io/not-ready", "NoExecute"), _tol("node.kubernetes.io/unreachable", "NoExecute"),
              _tol("node.kubernetes.io/disk-pressure", "NoSchedule"),
              _tol("node.kubernetes.io/memory-pressure", "NoSchedule"),
              _tol("node.kubernetes.io/pid-pressure", "NoSchedule"),
              _tol("node.kubernetes.io/unschedulable", "NoSchedule")]
    if spec.get("hostNetwork"):
        wanted.append(_tol("node.kubernetes.io/network-unavailable", "NoSchedule"))
    tolerations = [t for t in _l(spec.get("tolerations")) if isinstance(t, dict)]
    for want in wanted:  # AddOrUpdateTolerationInPodSpec: one that MatchToleration is replaced
        same = [i for i, t in enumerate(tolerations) if all(
            (t.get(k) or ("Equal" if k == "operator" else "")) == (want.get(k) or "")
            for k in ("key", "operator", "value", "effect"))]
        if same:
            tolerations[same[0]] = dict(want)
        else:
            tolerations.append(dict(want))
    spec["tolerations"] = tolerations


def node_name_affinity(affinity: Any, node: str) -> dict[str, Any]:
    """ReplaceDaemonSetPodNodeNameNodeAffinity: the required terms become ``metadata.name In [node]``."""
    aff = copy.deepcopy(_d(affinity))
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
    na = aff.get("nodeAffinity")
    if not isinstance(na, dict):
        aff["nodeAffinity"] = na = {}
    req = na.get("requiredDuringSchedulingIgnoredDuringExecution")
    if not isinstance(req, dict):
        na["requiredDuringSchedulingIgnoredDuringExecution"] = req = {}
    req["nodeSelectorTerms"] = [term]
    return aff


def pod_template(ds: Obj, h: str) -> Obj:
    """CreatePodTemplate: the daemon tolerations and the generation and hash labels."""
    template = copy.deepcopy(_d(_d(ds.get("spec")).get("template")))
    spec = template.setdefault("spec", {})
    add_daemon_tolerations(spec)
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    labels[GENERATION_LABEL] = str(template_generation(ds))
    if h:
        labels[HASH_LABEL] = h
    return template


def new_pod(ds: Obj, template: Obj, node: str) -> Obj:
    pod = cu.pod_from_template(template, ds, API_VERSION, KIND)
    pod["spec"]["affinity"] = node_name_affinity(pod["spec"].get("affinity"), node)
    return pod


def target_node(pod: Obj) -> str:
    """GetTargetNodeName: spec.nodeName, or the node the affinity names for an unscheduled pod."""
    spec = _d(pod.get("spec"))
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    terms = _l(_d(_d(_d(spec.get("affinity")).get("nodeAffinity")).get(
        "requiredDuringSchedulingIgnoredDuringExecution")).get("nodeSelectorTerms"))
    for t in terms:
        for f in _l(_d(t).get("matchFields")):
            f = _d(f)
            if f.get("key") == "metadata.name" and f.get("operator") == "In" and len(_l(f.get("values"))) == 1:
                return str(f["values"][0])
    return ""


def should_run(ds: Obj, node: Obj) -> tuple[bool, bool]:
    """NodeShouldRunDaemonPod: (should run, should continue running)."""
    tspec = copy.deepcopy(_d(_d(_d(ds.get("spec")).get("template")).get("spec")))
    add_daemon_tolerations(tspec)
    name = str(cu.meta(node).get("name", ""))
    if tspec.get("nodeName") and tspec["nodeName"] != name:
        return False, False
    labels = {str(k): str(v) for k, v in _d(cu.meta(node).get("labels")).items()}
    if any(labels.get(k) != v for k, v in _d(tspec.get("nodeSelector")).items()):
        return False, False
    req = _d(_d(_d(tspec.get("affinity")).get("nodeAffinity")).get("requiredDuringSchedulingIgnoredDuringExecution"))
    if "nodeSelectorTerms" in req and not any(
            node_selector_term_matches(_d(t), labels, name) for t in _l(req.get("nodeSelectorTerms"))):
        return False, False
    tolerations = [t for t in _l(tspec.get("tolerations")) if isinstance(t, dict)]
    untolerated = [t for t in _l(_d(node.get("spec")).get("taints")) if isinstance(t, dict)
                   and t.get("effect") in ("NoSchedule", "NoExecute")
                   and not any(toleration_tolerates(tol, t) for tol in tolerations)]
    if untolerated:
        return False, not any(t.get("effect") == "NoExecute" for t in untolerated)
    return True, True


def is_updated(pod: Obj, h: str, generation: int) -> bool:
    """IsPodUpdated: the revision hash or the template generation matches."""
    labels = _d(cu.meta(pod).get("labels"))
    return (bool(h) and labels.get(HASH_LABEL) == h) or labels.get(GENERATION_LABEL) == str(generation)


def _created(pod: Obj) -> tuple[str, str]:
    return str(cu.meta(pod).get("creationTimestamp") or ""), str(cu.meta(pod).get("name") or "")


def allows_surge(ds: Obj) -> bool:
    ru = _d(_d(_d(ds.get("spec")).get("updateStrategy")).get("rollingUpdate"))
    return scaled_value(ru.get("maxSurge", 0), 1, True) != 0


def _surplus(ds: Obj, running: list[Obj], h: str) -> list[Obj]:
    """podsShouldBeOnNode's extra pods: without surge all but the oldest; with surge the oldest
    new and oldest old pod may stay together until the new one is ready (or the old one is not)."""
    ordered = sorted(running, key=_created)
    if not allows_surge(ds):
        return ordered[1:]
    gen = template_generation(ds)
    newest: Obj | None = None
    oldest: Obj | None = None
    out: list[Obj] = []
    for p in ordered:
        if is_updated(p, h, gen) and newest is None:
            newest = p
        elif not is_updated(p, h, gen) and oldest is None:
            oldest = p
        else:
            out.append(p)
    if newest is not None and oldest is not None and (not cu.is_pod_ready(oldest) or cu.is_pod_ready(newest)):
        out.append(oldest)
    return out


# ----------------------------------------------------------------------------- the controller
class DaemonSetController:
    def __init__(self, stores: Stores, recorder: EventRecorder | None = None, burst: int = BURST_REPLICAS) -> None:
        self.sets = stores.get("apps", "daemonsets")
        self.pods = stores.get("", "pods")
        self.nodes = stores.get("", "nodes")
        self.revision_store = stores.get("apps", "controllerrevisions")
        self.recorder = recorder or store_recorder(stores, COMPONENT)
        self.burst = burst
        self.opts = WriteOptions(field_manager=COMPONENT)
        self.history = hist.History(self.revision_store, COMPONENT)
        self.ds_informer = informer(self.sets)
        self.pod_informer = informer(self.pods)
        self.node_informer = informer(self.nodes)
        self.rev_informer = informer(self.revision_store)
        self.pod_informer.add_index(cu.CONTROLLER_UID_INDEX, cu.controller_uid_index)
        self.rev_informer.add_index(cu.CONTROLLER_UID_INDEX, cu.controller_uid_index)
        self.expectations = cu.Expectations()
        self.queue = WorkQueue(COMPONENT, self.sync)
        self.ds_informer.add_handler(self._on_ds)
        self.pod_informer.add_handler(self._on_pod)
        self.node_informer.add_handler(self._on_node)
        self.rev_informer.add_handler(self._on_revision)

    async def run(self) -> None:
        informers = (self.ds_informer, self.pod_informer, self.node_informer, self.rev_informer)
        async with asyncio.TaskGroup() as tg:
            for inf in informers:
                tg.create_task(inf.run())
            for inf in informers:
                await inf.wait_synced()
            self._enqueue_all()
            await self.queue.run()

    # ------------------------------------------------------------------ event handlers
    def _enqueue_all(self) -> None:
        for ds in self.ds_informer.list():
            self.queue.add(cu.key_of(ds))

    def _enqueue_after(self, key: str, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.queue.add, key)

    def _on_ds(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        if obj is None:
            return
        key = cu.key_of(obj)
        if etype == "DELETED":
            self.expectations.delete(key)
        self.queue.add(key)

    def _owner_key(self, obj: Obj) -> str | None:
        ref = cu.controller_ref(obj)
        if ref is None or ref.get("kind") != KIND or str(ref.get("apiVersion") or "").rpartition("/")[0] != "apps":
            return None
        ds = self.ds_informer.get(cu.meta(obj).get("namespace", ""), ref.get("name", ""))
        if ds is None or cu.meta(ds).get("uid") != ref.get("uid"):
            return None
        return cu.key_of(ds)

    def _on_revision(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        key = self._owner_key(obj) if obj is not None else None
        if key is not None:
            self.queue.add(key)

    def _on_pod(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        if obj is None:
            return
        key = self._owner_key(obj)
        if key is None:
            if cu.controller_ref(obj) is None and etype != "DELETED":  # an orphan some DaemonSet may adopt
                labels = _d(cu.meta(obj).get("labels"))
                for ds in self.ds_informer.list(cu.meta(obj).get("namespace", "")):
                    sel = selector_of(ds)
                    if not sel.empty() and sel.matches(labels):
                        self.queue.add(cu.key_of(ds))
            return
        if etype == "DELETED" or (new is not None and cu.meta(new).get("deletionTimestamp")
                                  and not (old is not None and cu.meta(old).get("deletionTimestamp"))):
            self.expectations.deletion_observed(key, cu.key_of(obj))
        elif etype == "ADDED":
            self.expectations.creation_observed(key)
        self.queue.add(key)
        if new is not None and old is not None and not cu.is_pod_ready(old) and cu.is_pod_ready(new):
            owner = self.ds_informer.get(*cu.split_key(key))
            min_ready = _int(_d(_d(owner).get("spec")).get("minReadySeconds")) if owner else 0
            if min_ready > 0:
                self._enqueue_after(key, min_ready + 1.0)

    def _on_node(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        """addNode / updateNode / deleteNode: a node that came, went or changed what fits on it."""
        if etype == "MODIFIED" and old is not None and new is not None:
            if cu.meta(old).get("labels") == cu.meta(new).get("labels") and \
                    _d(old.get("spec")).get("taints") == _d(new.get("spec")).get("taints"):
                return
        self._enqueue_all()

    # ------------------------------------------------------------------ sync
    async def sync(self, key: str) -> bool:
        return await cu.retry_on_conflict(lambda: self._sync(key), "daemon set", key, self._enqueue_after)

    async def _sync(self, key: str) -> bool:
        ns, name = cu.split_key(key)
        ds = self.ds_informer.get(ns, name)
        if ds is None:
            self.expectations.delete(key)
            return False
        selector = selector_of(ds)
        if selector.empty():
            self.recorder.emit(ds, WARNING, "SelectingAll",
                               "This daemon set is selecting all pods. A non-empty selector is required.")
            return False
        nodes = self.node_informer.list()
        pods = await self._claim(ds)
        by_node: dict[str, list[Obj]] = {}
        for p in pods:
            if cu.meta(p).get("deletionTimestamp") and is_terminal(p):
                continue  # deleted and terminal: gone in all but name
            by_node.setdefault(target_node(p), []).append(p)
        if cu.meta(ds).get("deletionTimestamp"):
            await self._update_status(ds, nodes, by_node, "")
            return False
        cur, olds = await self._construct_history(ds)
        h = str(_d(cu.meta(cur).get("labels")).get(HASH_LABEL) or "")
        if self.expectations.satisfied(key):
            await self._manage(ds, key, nodes, by_node, h)
            strategy = _d(_d(ds.get("spec")).get("updateStrategy"))
            if strategy.get("type") == "RollingUpdate" and self.expectations.satisfied(key):
                await self._rolling_update(ds, key, nodes, by_node, h)
            await self._cleanup_history(ds, by_node, olds, cur)
        await self._update_status(ds, nodes, by_node, h)
        return False

    async def _claim(self, ds: Obj) -> list[Obj]:
        m = cu.meta(ds)

        async def can_adopt() -> None:
            fresh = await self.sets.get(m.get("namespace", ""), m.get("name", ""))
            fm = cu.meta(fresh)
            if fm.get("uid") != m.get("uid") or fm.get("deletionTimestamp"):
                raise errors.conflict("daemonsets", m.get("name", ""), f"original DaemonSet "
                                      f"{m.get('namespace')}/{m.get('name')} is gone", "apps")

        mgr = cu.RefManager(self.pods, ds, API_VERSION, KIND, selector_of(ds), can_adopt, COMPONENT)
        return await mgr.claim(self.pod_informer.list(m.get("namespace", "")))

    # ------------------------------------------------------------------ history
    async def _construct_history(self, ds: Obj) -> tuple[Obj, list[Obj]]:
        """constructHistory: the revision of the current template (made or renumbered) and the rest."""
        revs = hist.by_revision(self.rev_informer.by_index(cu.CONTROLLER_UID_INDEX, str(cu.meta(ds).get("uid"))))
        data = hist.template_patch(ds)
        current = [r for r in revs if r.get("data") == data]
        olds = [r for r in revs if r.get("data") != data]
        number = hist.next_revision(olds)
        if current:
            cur = current[-1]
            for dup in current[:-1]:  # dedupCurHistories
                await self.history.delete(dup)
            if int(cur.get("revision") or 0) < number:
                cur = await self.history.update_revision(cur, number)
            return cur, olds
        collision = _d(ds.get("status")).get("collisionCount")
        h = compute_hash(_d(ds.get("spec")).get("template"), collision if isinstance(collision, int) else None)
        labels = _d(cu.meta(_d(_d(ds.get("spec")).get("template"))).get("labels"))
        rev = hist.new_revision(ds, API_VERSION, KIND, labels, data, number, None, h=h, hash_label=HASH_LABEL)
        try:
            return await self.history.create(rev), olds
        except hist.Collision:
            new = copy.deepcopy(ds)
            new.setdefault("status", {})["collisionCount"] = _int(collision) + 1
            await self.sets.update(cu.meta(ds).get("namespace", ""), cu.meta(ds).get("name", ""), new, self.opts,
                                   "status")
            raise errors.conflict("daemonsets", cu.meta(ds).get("name", ""), "found a hash collision for DaemonSet "
                                  f"{cu.meta(ds).get('name')}: bumped collisionCount", "apps") from None

    async def _cleanup_history(self, ds: Obj, by_node: dict[str, list[Obj]], olds: list[Obj], cur: Obj) -> None:
        name = str(cu.meta(ds).get("name", ""))
        live = {f"{name}-{_d(cu.meta(p).get('labels')).get(HASH_LABEL)}" for ps in by_node.values() for p in ps}
        live.add(str(cu.meta(cur).get("name")))
        await self.history.truncate(olds, live, _int(_d(ds.get("spec")).get("revisionHistoryLimit")))

    # ------------------------------------------------------------------ pods
    async def _manage(self, ds: Obj, key: str, nodes: list[Obj], by_node: dict[str, list[Obj]], h: str) -> None:
        """manage and podsShouldBeOnNode."""
        needing: list[str] = []
        to_delete: list[Obj] = []
        failed_seen = False
        for node in nodes:
            nname = str(cu.meta(node).get("name", ""))
            run, keep = should_run(ds, node)
            pods = by_node.get(nname, [])
            if run and not pods:
                needing.append(nname)
            elif keep:
                running = []
                for p in pods:
                    if cu.meta(p).get("deletionTimestamp"):
                        continue
                    phase = _d(p.get("status")).get("phase")
                    if phase == "Failed":
                        self.recorder.emit(ds, WARNING, "FailedDaemonPod", f"Found failed daemon pod "
                                           f"{cu.meta(p).get('namespace')}/{cu.meta(p).get('name')} on node {nname}, "
                                           f"will try to kill it")
                        to_delete.append(p)
                        failed_seen = True
                    elif phase == "Succeeded":
                        to_delete.append(p)
                    else:
                        running.append(p)
                to_delete += _surplus(ds, running, h)
            elif pods:
                to_delete += [p for p in pods if not cu.meta(p).get("deletionTimestamp")]
        await self._sync_nodes(ds, key, to_delete, needing, h)
        if failed_seen:  # a failed pod was killed: back off before its replacement
            self._enqueue_after(key, FAILED_POD_BACKOFF)

    async def _rolling_update(self, ds: Obj, key: str, nodes: list[Obj], by_node: dict[str, list[Obj]],
                              h: str) -> None:
        """rollingUpdate with maxSurge 0: replace old pods, unavailable ones first, keeping at most
        maxUnavailable nodes without an available pod."""
        spec = _d(ds.get("spec"))
        ru = _d(_d(spec.get("updateStrategy")).get("rollingUpdate"))
        desired = sum(1 for n in nodes if should_run(ds, n)[0])
        max_unavailable = scaled_value(ru.get("maxUnavailable", 1), desired, True)
        max_surge = scaled_value(ru.get("maxSurge", 0), desired, True)
        if desired > 0 and max_unavailable == 0 and max_surge == 0:
            max_unavailable = 1
        if max_surge > 0:
            await self._surge_update(ds, key, nodes, by_node, h, max_surge, desired)
            return
        gen = template_generation(ds)
        min_ready = _int(spec.get("minReadySeconds"))
        now = time.time()
        unavailable = 0
        replace: list[Obj] = []
        candidates: list[Obj] = []
        for _node, pods in sorted(by_node.items()):
            live = [p for p in pods if not cu.meta(p).get("deletionTimestamp")]
            new = [p for p in live if is_updated(p, h, gen)]
            old = [p for p in live if not is_updated(p, h, gen)]
            if len(new) > 1 or len(old) > 1:
                continue  # the manage loop removes the extra pods
            if (not new and not old) or (new and old):
                unavailable += 1
            elif new:
                if not cu.is_pod_available(new[0], min_ready, now):
                    unavailable += 1
            elif not cu.is_pod_available(old[0], min_ready, now):
                replace.append(old[0])
            elif unavailable < max_unavailable:
                candidates.append(old[0])
        room = max(min(max_unavailable - unavailable, len(candidates)), 0)
        await self._sync_nodes(ds, key, replace + candidates[:room], [], h)

    async def _surge_update(self, ds: Obj, key: str, nodes: list[Obj], by_node: dict[str, list[Obj]], h: str,
                            max_surge: int, desired: int) -> None:
        """rollingUpdate with maxSurge: a new pod beside each old one (at most maxSurge at a time,
        at once where the old one is unavailable); the old pod goes once the new one is available."""
        gen = template_generation(ds)
        min_ready = _int(_d(ds.get("spec")).get("minReadySeconds"))
        now = time.time()
        node_by_name = {str(cu.meta(n).get("name", "")): n for n in nodes}
        to_delete: list[Obj] = []
        not_run: list[Obj] = []
        candidates: list[str] = []
        allowed: list[str] = []
        surge = available = 0
        for name, pods in sorted(by_node.items()):
            live = [p for p in pods if not cu.meta(p).get("deletionTimestamp")]
            new = [p for p in live if is_updated(p, h, gen)]
            old = [p for p in live if not is_updated(p, h, gen)]
            if len(new) > 1 or len(old) > 1:
                surge += 1  # the manage loop cleans this node up
                continue
            counted = old[0] if old else new[0] if new else None
            if counted is not None and cu.is_pod_available(counted, min_ready, now):
                available += 1
            node = node_by_name.get(name)
            runs = node is not None and should_run(ds, node)[0]
            if not old:
                continue  # the manage loop makes a missing pod
            if not new:
                if not cu.is_pod_available(old[0], min_ready, now):
                    if not runs:
                        to_delete.append(old[0])
                    else:
                        allowed.append(name)
                elif not runs:
                    not_run.append(old[0])
                elif surge < max_surge:
                    candidates.append(name)
            elif not cu.is_pod_available(new[0], min_ready, now):
                surge += 1  # waiting for the new pod to become available
            else:
                to_delete.append(old[0])
        deletable = min(available - desired, len(not_run))
        if deletable > 0:  # pods on nodes that stopped fitting go once others are available
            to_delete += not_run[:deletable]
        room = max(min(max_surge - surge, len(candidates)), 0)
        await self._sync_nodes(ds, key, to_delete, allowed + candidates[:room], h)

    async def _sync_nodes(self, ds: Obj, key: str, to_delete: list[Obj], needing: list[str], h: str) -> None:
        """syncNodes: create and delete in slow-start batches, expecting what was asked for."""
        needing = needing[:self.burst]
        to_delete = to_delete[:self.burst]
        if not needing and not to_delete:
            return
        self.expectations.expect(key, len(needing), [cu.key_of(p) for p in to_delete])
        template = pod_template(ds, h)
        queue = list(needing)

        async def create() -> None:
            node = queue.pop(0)
            await self._create_pod(ds, new_pod(ds, template, node))

        ok, err = await cu.slow_start_batch(len(needing), cu.SLOW_START_INITIAL_BATCH, create)
        for _ in range(len(needing) - ok):
            self.expectations.creation_observed(key)
        results = await asyncio.gather(*(self._delete_pod(ds, key, p) for p in to_delete))
        err = err or next((e for e in results if e is not None), None)
        if err is not None:
            raise err

    async def _create_pod(self, ds: Obj, pod: Obj) -> None:
        try:
            created = await self.pods.create(pod["metadata"]["namespace"], pod, self.opts)
        except errors.StatusError as exc:
            causes = (exc.details or {}).get("causes") or []
            if any(_d(c).get("reason") == "NamespaceTerminating" for c in causes):
                return
            self.recorder.emit(ds, WARNING, "FailedCreate", f"Error creating: {exc.message}")
            raise
        self.recorder.emit(ds, NORMAL, "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")

    async def _delete_pod(self, ds: Obj, key: str, pod: Obj) -> BaseException | None:
        m = cu.meta(pod)
        try:
            await self.pods.delete(m.get("namespace", ""), m.get("name", ""), DeleteOptions())
        except errors.StatusError as exc:
            self.expectations.deletion_observed(key, cu.key_of(pod))
            if exc.code == 404:
                return None
            self.recorder.emit(ds, WARNING, "FailedDelete", f"Error deleting: {error_text(exc)}")
            return exc
        self.recorder.emit(ds, NORMAL, "SuccessfulDelete", f"Deleted pod: {m.get('name', '')}")
        return None

    # ------------------------------------------------------------------ status
    async def _update_status(self, ds: Obj, nodes: list[Obj], by_node: dict[str, list[Obj]], h: str) -> None:
        """updateDaemonSetStatus."""
        spec = _d(ds.get("spec"))
        min_ready = _int(spec.get("minReadySeconds"))
        gen = template_generation(ds)
        now = time.time()
        desired = current = misscheduled = ready = available = updated = 0
        for node in nodes:
            run, _ = should_run(ds, node)
            pods = by_node.get(str(cu.meta(node).get("name", "")), [])
            if run:
                desired += 1
                if not pods:
                    continue
                current += 1
                pod = sorted(pods, key=_created)[0]
                if cu.is_pod_ready(pod):
                    ready += 1
                    if cu.is_pod_available(pod, min_ready, now):
                        available += 1
                if is_updated(pod, h, gen):
                    updated += 1
            elif pods:
                misscheduled += 1
        old = _d(ds.get("status"))
        status: Obj = {"currentNumberScheduled": current, "numberMisscheduled": misscheduled,
                       "desiredNumberScheduled": desired, "numberReady": ready,
                       "observedGeneration": _int(cu.meta(ds).get("generation"))}
        for k, v in (("updatedNumberScheduled", updated), ("numberAvailable", available),
                     ("numberUnavailable", desired - available)):
            if v:
                status[k] = v
        for k in ("collisionCount", "conditions"):
            if old.get(k) is not None:
                status[k] = old[k]
        if min_ready > 0 and ready != available:
            self._enqueue_after(cu.key_of(ds), float(min_ready))
        if status == old:
            return
        new = copy.deepcopy(ds)
        new["status"] = status
        try:
            await self.sets.update(cu.meta(ds).get("namespace", ""), cu.meta(ds).get("name", ""), new, self.opts,
                                   "status")
        except errors.StatusError as exc:
            if exc.code != 404:
                raise


__all__ = ["DaemonSetController", "add_daemon_tolerations", "new_pod", "node_name_affinity", "pod_template",
           "should_run", "target_node"]
