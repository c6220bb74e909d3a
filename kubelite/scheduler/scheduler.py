"""The scheduler: an API client that binds pending pods to nodes, like kube-scheduler.

It keeps a cache of nodes and pods (list + watch, relisting after 410 Gone or errors), a
queue of pods waiting to be scheduled (``spec.schedulerName`` is ours, no ``spec.nodeName``,
not terminating, not finished, no scheduling gates), and schedules them one at a time:
filter the nodes, score the feasible ones, *assume* the pod on the chosen node in the cache
at once (so a burst of pods is packed correctly) and bind it in the background through the
pods/binding subresource, recording a ``Scheduled`` event.

A pod no node fits gets the condition PodScheduled=False/Unschedulable and a
``FailedScheduling`` warning with upstream's message, and waits: it is tried again after a
cluster change that may help (node added or changed, a pod deleted or finished, the pod
itself changed) once its backoff (1s doubling to 10s) has passed, and otherwise after
``max_unschedulable_seconds`` (upstream flushes unschedulable pods after 5 minutes).

Before giving up on a pod, DefaultPreemption (:mod:`kubelite.scheduler.preemption`) looks for a
node where evicting lower-priority pods makes room. If it finds one, the pod is nominated to it
(``status.nominatedNodeName``, and in memory at once so that pods of lower priority do not take
the room), and in the background, as upstream's async preemption, each victim gets the
DisruptionTarget condition, a graceful delete and a ``Preempted`` event; the preemptor is not
retried before those calls are done, and then once a victim is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from kubelite.api import errors
from kubelite.api.meta import now_rfc3339
from kubelite.client.api import Client, resource_path
from kubelite.client.events import NORMAL, WARNING, EventRecorder
from kubelite.client.informer import ClientListWatch, Informer
from kubelite.client.leaderelection import ClientLeases, Election, LeaderElector, LeaseLock, new_identity
from kubelite.kinds import podutil
from kubelite.scheduler import framework, plugins, preemption, volumebinding
from kubelite.scheduler.cache import Snapshot, num_feasible_nodes_to_find
from kubelite.scheduler.metrics import ERROR, SCHEDULED, UNSCHEDULABLE, SchedulerMetrics
from kubelite.scheduler.plugins import NodeInfo, PodInfo, Status
from kubelite.scheduler.queue import MAX_UNSCHEDULABLE_SECONDS, SchedulingQueue

log = logging.getLogger("kubelite.scheduler")

Obj = dict[str, Any]

WATCH_TIMEOUT_SECONDS = 300
BIND_CONCURRENCY = 32
BIND_TIMEOUT_SECONDS = 600.0  # --bind-timeout-seconds: PreBind waits this long for the pod's claims to bind


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _terminal(pod: Obj) -> bool:
    return _d(pod.get("status")).get("phase") in ("Succeeded", "Failed")


def _pod_key(pod: Obj) -> str:
    meta = _d(pod.get("metadata"))
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _scheduling_relevant(old: Obj | None, new: Obj) -> bool:
    """Whether an update to a waiting pod may change the scheduling result (upstream ignores
    updates of status, resourceVersion, generation and managedFields)."""
    if old is None:
        return True
    om, nm = _d(old.get("metadata")), _d(new.get("metadata"))
    return (old.get("spec") != new.get("spec") or om.get("labels") != nm.get("labels")
            or om.get("annotations") != nm.get("annotations"))


def _labels(pod: Obj | None) -> Any:
    return _d(pod.get("metadata")).get("labels") if pod else None


def _waits_on_pods(pod: Obj | None) -> bool:
    """Whether other pods' placement can make the pod schedulable: pod affinity or spreading."""
    spec = _d(pod.get("spec")) if pod else {}
    return bool(_d(spec.get("affinity")).get("podAffinity") or spec.get("topologySpreadConstraints"))


def _node_relevant(old: Obj | None, new: Obj) -> bool:
    """Node updates that may make a pod schedulable: not heartbeats."""
    if old is None:
        return True
    if old.get("spec") != new.get("spec"):
        return True
    om, nm = _d(old.get("metadata")), _d(new.get("metadata"))
    if om.get("labels") != nm.get("labels"):
        return True
    os_, ns = _d(old.get("status")), _d(new.get("status"))
    if os_.get("allocatable") != ns.get("allocatable"):
        return True

    def conds(st: dict[str, Any]) -> dict[str, Any]:
        return {str(_d(c).get("type")): _d(c).get("status") for c in st.get("conditions") or []}

    return conds(os_) != conds(ns)


class Scheduler:
    def __init__(self, client: Client, name: str = "default-scheduler", *,
                 max_unschedulable_seconds: float = MAX_UNSCHEDULABLE_SECONDS,
                 bind_concurrency: int = BIND_CONCURRENCY, dra_message: bool = True,
                 seed: int | None = None, metrics: SchedulerMetrics | None = None) -> None:
        self.client = client
        self.metrics = metrics
        # the PodDisruptionBudgets preemption respects (DefaultPreemption's PDB lister)
        self.pdb_informer = Informer(ClientListWatch(client, "policy/v1", "poddisruptionbudgets"),
                                     name="scheduler-pdbs")
        self.name = name
        self.recorder = EventRecorder(client, component=name)
        self.max_unschedulable_seconds = max_unschedulable_seconds
        self.dra_message = dra_message
        # the node-info cache/snapshot (scheduler/cache.py), kept from watch events
        self.snapshot = Snapshot()
        self.nodes: dict[str, NodeInfo] = self.snapshot.infos  # by name; also pods bound to unknown nodes
        # percentageOfNodesToScore (0: adaptive, as upstream's default)
        self.percentage_of_nodes_to_score = 0
        self.node_objs: dict[str, Obj] = {}
        self.pods: dict[str, Obj] = {}  # by uid: every pod we know of
        self.namespace_labels: dict[str, dict[str, str]] = {}  # for affinity namespaceSelectors
        self._rng = random.Random(seed)
        self._placed: dict[str, str] = {}  # uid -> node the pod is counted on
        self._assumed: dict[str, str] = {}  # uid -> node, bound by us, not yet seen bound
        self._in_flight: set[str] = set()  # being bound
        self.queue = SchedulingQueue(max_unschedulable_seconds)  # scheduler/queue.py
        self._waiting = self.queue.waiting
        self._wakeup = asyncio.Event()
        self._synced = {"nodes": asyncio.Event(), "pods": asyncio.Event(), "namespaces": asyncio.Event(),
                        "persistentvolumeclaims": asyncio.Event(), "persistentvolumes": asyncio.Event(),
                        "storageclasses": asyncio.Event()}
        # VolumeBinding's view: claims by (namespace, name), volumes and classes by name
        self.claims: dict[tuple[str, str], Obj] = {}
        self.volumes: dict[str, Obj] = {}
        self.classes: dict[str, Obj] = {}
        self._volumes_changed = asyncio.Event()
        self.bind_timeout = BIND_TIMEOUT_SECONDS
        self._bind_sem = asyncio.Semaphore(bind_concurrency)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._nominated: dict[str, str] = {}  # uid -> node: pending pods nominated by preemption
        self._preempting: set[str] = set()  # preemptors whose victims' API calls are under way
        self.scheduled_count = 0
        self.preemptions = 0

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        """Runs until cancelled."""
        loops = [asyncio.create_task(self._informer("nodes", self._replace_nodes, self._on_node)),
                 asyncio.create_task(self._informer("pods", self._replace_pods, self._on_pod)),
                 asyncio.create_task(self._informer("namespaces", self._replace_namespaces, self._on_namespace)),
                 asyncio.create_task(self.pdb_informer.run()),
                 asyncio.create_task(self._informer("persistentvolumeclaims", self._storage_replacer("claims"),
                                                    self._storage_handler("claims"))),
                 asyncio.create_task(self._informer("persistentvolumes", self._storage_replacer("volumes"),
                                                    self._storage_handler("volumes"))),
                 asyncio.create_task(self._informer("storageclasses", self._storage_replacer("classes"),
                                                    self._storage_handler("classes"), "storage.k8s.io/v1")),
                 asyncio.create_task(self._schedule_loop())]
        try:
            await asyncio.gather(*loops)
        finally:
            for t in loops + list(self._tasks):
                t.cancel()
            for t in loops + list(self._tasks):
                with contextlib.suppress(BaseException):
                    await t
            await self.recorder.close()

    async def wait_synced(self) -> None:
        for ev in self._synced.values():
            await ev.wait()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ informers
    async def _informer(self, plural: str, replace: Callable[[list[Obj]], None],
                        handle: Callable[[str, Obj], None], api_version: str = "v1") -> None:
        rv = ""
        delay = 0.5
        while True:
            try:
                if not rv:
                    lst = await self.client.list(api_version, plural)
                    rv = lst["metadata"]["resourceVersion"]
                    replace(lst.get("items") or [])
                    self._synced[plural].set()
                async for etype, obj in self.client.watch(api_version, plural, resource_version=rv,
                                                          timeout_seconds=WATCH_TIMEOUT_SECONDS):
                    rv = _d(obj.get("metadata")).get("resourceVersion") or rv
                    if etype != "BOOKMARK":
                        handle(etype, obj)
                    delay = 0.5
            except asyncio.CancelledError:
                raise
            except errors.StatusError as exc:
                if exc.code in (410, 404) or exc.reason == "Expired":
                    rv = ""  # relist
                    continue
                log.warning("watching %s: %s", plural, exc)
                rv = ""
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            except (TimeoutError, OSError, aiohttp.ClientError, ValueError) as exc:
                log.warning("watching %s: %s", plural, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _storage_key(self, what: str, obj: Obj) -> Any:
        m = _d(obj.get("metadata"))
        return (m.get("namespace", ""), m.get("name", "")) if what == "claims" else m.get("name", "")

    def _storage_replacer(self, what: str) -> Callable[[list[Obj]], None]:
        def replace(items: list[Obj]) -> None:
            cache: dict[Any, Obj] = getattr(self, what)
            cache.clear()
            cache.update({self._storage_key(what, o): o for o in items})
            self._storage_changed()
        return replace

    def _storage_handler(self, what: str) -> Callable[[str, Obj], None]:
        def handle(etype: str, obj: Obj) -> None:
            cache: dict[Any, Obj] = getattr(self, what)
            if etype == "DELETED":
                cache.pop(self._storage_key(what, obj), None)
            else:
                cache[self._storage_key(what, obj)] = obj
            self._storage_changed()
        return handle

    def _storage_changed(self) -> None:
        """A claim, volume or class changed: pods waiting on volumes may fit, binders may be done."""
        self._volumes_changed.set()
        self._volumes_changed = asyncio.Event()
        self._cluster_changed()

    def _node_info(self, name: str) -> NodeInfo:
        return self.snapshot.node_info(name)

    def _replace_nodes(self, items: list[Obj]) -> None:
        names = {_d(n.get("metadata")).get("name") for n in items}
        for name in list(self.node_objs):
            if name not in names:
                self._on_node("DELETED", self.node_objs[name])
        for n in items:
            self._on_node("MODIFIED" if _d(n.get("metadata")).get("name") in self.node_objs else "ADDED", n)

    def _on_node(self, etype: str, node: Obj) -> None:
        name = _d(node.get("metadata")).get("name") or ""
        if etype == "DELETED":
            self.node_objs.pop(name, None)
            if name in self.nodes:
                self.snapshot.set_node(name, None)
            return
        old = self.node_objs.get(name)
        self.node_objs[name] = node
        self.snapshot.set_node(name, node)
        if _node_relevant(old, node):
            self._cluster_changed()

    def _replace_namespaces(self, items: list[Obj]) -> None:
        self.namespace_labels.clear()
        for ns in items:
            self._on_namespace("ADDED", ns)

    def _on_namespace(self, etype: str, ns: Obj) -> None:
        meta = _d(ns.get("metadata"))
        name = meta.get("name") or ""
        if etype == "DELETED":
            self.namespace_labels.pop(name, None)
            return
        labels = {str(k): str(v) for k, v in _d(meta.get("labels")).items()}
        if self.namespace_labels.get(name) != labels:
            self.namespace_labels[name] = labels
            self._cluster_changed()  # a namespaceSelector may match now

    def _replace_pods(self, items: list[Obj]) -> None:
        uids = {_d(p.get("metadata")).get("uid") for p in items}
        for uid in list(self.pods):
            if uid not in uids:
                self._on_pod("DELETED", self.pods[uid])
        for p in items:
            self._on_pod("MODIFIED", p)

    def _on_pod(self, etype: str, pod: Obj) -> None:
        meta = _d(pod.get("metadata"))
        uid = meta.get("uid") or _pod_key(pod)
        if etype == "DELETED":
            self.pods.pop(uid, None)
            self._assumed.pop(uid, None)
            self._nominated.pop(uid, None)
            self.queue.done(uid)
            if self._recount(uid):
                self._cluster_changed()
            return
        old = self.pods.get(uid)
        self.pods[uid] = pod
        if _d(pod.get("spec")).get("nodeName"):
            self._assumed.pop(uid, None)
        self._update_nomination(uid, old, pod)
        was_counted = uid in self._placed
        before = self.nodes[self._placed[uid]].pods.get(uid) if was_counted else None
        self._recount(uid)
        if was_counted and uid not in self._placed:
            self._cluster_changed()  # a bound pod finished
        elif before is not None and (after := self.nodes[self._placed[uid]].pods.get(uid)) is not None and any(
                after.requests.get(k, 0) < v for k, v in before.requests.items()):
            self._cluster_changed()  # a bound pod was resized down: room for others
        elif uid in self._placed and (not was_counted or _labels(old) != _labels(pod)):
            self._pod_placed()
        if self._wants(uid, pod):
            if uid in self.queue.waiting:
                if _scheduling_relevant(old, pod) and self.queue.move(uid):
                    self._wakeup.set()
            elif not self.queue.is_active(uid):
                self._push(uid, pod)
        else:
            self._forget_queued(uid)

    def _recount(self, uid: str) -> bool:
        """Puts the pod's usage on the node it is bound or assumed to; True when it was
        counted somewhere before and is no longer."""
        pod = self.pods.get(uid)
        node = ""
        if pod is not None and not _terminal(pod):
            node = _d(pod.get("spec")).get("nodeName") or self._assumed.get(uid, "")
        prev = self._placed.pop(uid, None)
        if prev is not None:
            self.snapshot.remove_pod(prev, uid)
        if node and pod is not None:
            info = PodInfo.of(pod)
            info.uid = uid
            self.snapshot.add_pod(node, info)
            self._placed[uid] = node
        return prev is not None and not node

    def _wants(self, uid: str, pod: Obj) -> bool:
        spec, meta = _d(pod.get("spec")), _d(pod.get("metadata"))
        return (spec.get("schedulerName", "default-scheduler") == self.name and not spec.get("nodeName")
                and not meta.get("deletionTimestamp") and not _terminal(pod) and not spec.get("schedulingGates")
                and uid not in self._assumed and uid not in self._in_flight)

    def _update_nomination(self, uid: str, old: Obj | None, pod: Obj) -> None:
        """The nominator (PodNominator): a pending pod's status.nominatedNodeName; one set in
        memory by our own preemption is kept until the API says otherwise (an update that
        does not carry it yet may arrive first)."""
        spec, meta = _d(pod.get("spec")), _d(pod.get("metadata"))
        if spec.get("nodeName") or meta.get("deletionTimestamp") or _terminal(pod):
            self._nominated.pop(uid, None)
            return
        nnn = _d(pod.get("status")).get("nominatedNodeName") or ""
        if nnn:
            self._nominated[uid] = nnn
        elif old is not None and _d(old.get("status")).get("nominatedNodeName"):
            self._nominated.pop(uid, None)

    def _nominated_pods(self) -> dict[str, list[PodInfo]]:
        """Pods nominated to each node (NominatedPodsForNode)."""
        out: dict[str, list[PodInfo]] = {}
        for uid, node in self._nominated.items():
            pod = self.pods.get(uid)
            if pod is not None:
                info = PodInfo.of(pod)
                info.uid = uid
                out.setdefault(node, []).append(info)
        return out

    # ------------------------------------------------------------------ queue
    def _push(self, uid: str, pod: Obj) -> None:
        self.queue.push(uid, _priority(pod))
        self._wakeup.set()

    def _forget_queued(self, uid: str) -> None:
        self.queue.forget(uid)

    def _cluster_changed(self) -> None:
        if self.queue.move_all():
            self._wakeup.set()

    def _pod_placed(self) -> None:
        """A pod added to a node (or relabelled there) can help only pods waiting on pod
        affinity or topology spreading (the events InterPodAffinity and PodTopologySpread
        register upstream); a pod too big for every node keeps waiting."""
        if self.queue.pod_placed():
            self._wakeup.set()

    def _flush_waiting(self, now: float) -> float | None:
        """Moves waiting pods that are due to the active queue; returns the next due time."""
        def requeue(uid: str) -> int | None:
            pod = self.pods.get(uid)
            return _priority(pod) if pod is not None and self._wants(uid, pod) else None

        # PreEnqueue: a preemptor not before its preemption's API calls are done
        return self.queue.flush(now, requeue, hold=self._preempting)

    # ------------------------------------------------------------------ scheduling
    async def _schedule_loop(self) -> None:
        await self.wait_synced()
        n = 0
        while True:
            nxt = self._flush_waiting(time.monotonic())
            uid = self.queue.pop()
            if uid is None:
                self._wakeup.clear()
                timeout = None if nxt is None else max(0.0, nxt - time.monotonic())
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout)
                continue
            pod = self.pods.get(uid)
            if pod is not None and self._wants(uid, pod):
                self.schedule_one(uid, pod)
            n += 1
            if n % 8 == 0:
                await asyncio.sleep(0)  # let the watches and bindings progress

    def schedule_one(self, uid: str, pod: Obj) -> str | None:
        """One scheduling cycle; returns the chosen node (binding continues in the background)."""
        started = time.perf_counter()
        claim_error = podutil.resource_claim_error(pod)
        if claim_error is not None:  # DynamicResources' PreEnqueue: no node is tried
            self._failed(uid, pod, "Unschedulable", claim_error)
            if self.metrics is not None:
                self.metrics.attempt(UNSCHEDULABLE, self.name, started)
            return None
        info = PodInfo.of(pod)
        info.uid = uid
        info.nominated_node = self._nominated.get(uid, info.nominated_node)
        snap = self.snapshot
        nodes = snap.live  # the nodes that exist (NodeInfos of pods on unknown nodes are not among them)
        statuses: dict[str, Status] = {}
        feasible: list[NodeInfo] = []
        cycle = framework.pre_filter(info, nodes, self.namespace_labels, snap.with_required_anti())
        nominated = self._nominated_pods() if self._nominated else None
        vols, pre_msg = volumebinding.pre_filter(pod, self.claims, self.volumes, self.classes)
        plans: dict[str, tuple[list[tuple[Obj, Obj]], list[Obj]]] = {}
        rwop = volumebinding.read_write_once_pod_conflict(pod, self.claims, self.pods.values(), self._assumed)

        def fits(ni: NodeInfo) -> Status | None:
            st = preemption.filter_with_nominated(info, ni, cycle, nominated)
            if st is None and rwop:  # VolumeRestrictions' Filter
                return Status(plugins.UNRESOLVABLE, (volumebinding.ERR_RWOP_CONFLICT,))
            if st is None and vols is not None and ni.node is not None:  # VolumeBinding's Filter
                reason, binds, provisions = vols.decide(ni.node)
                if reason:
                    return Status(plugins.UNRESOLVABLE, (reason,))
                plans[ni.name] = (binds, provisions)
            return st

        nom = nodes.get(info.nominated_node)
        if pre_msg:  # VolumeBinding's PreFilter refused the pod: no node is tried
            statuses = {name: Status(plugins.UNRESOLVABLE, (pre_msg,)) for name in nodes}
        elif nom is not None and fits(nom) is None:
            feasible = [nom]  # evaluateNominatedNode: the node preemption made room on, first
        else:
            # findNodesThatPassFilters: from where the last cycle stopped, until enough nodes fit
            order = snap.node_list()
            n_all = len(order)
            want = num_feasible_nodes_to_find(n_all, self.percentage_of_nodes_to_score)
            start = snap.next_start % n_all if n_all else 0
            processed = 0
            for i in range(n_all):
                ni = order[(start + i) % n_all]
                processed += 1
                st = fits(ni)
                if st is None:
                    feasible.append(ni)
                    if len(feasible) >= want:
                        break
                else:
                    statuses[ni.name] = st
            snap.next_start = (start + processed) % n_all if n_all else 0
        if not feasible:
            outcome = preemption.Outcome()
            if nodes:
                outcome = preemption.post_filter(info, statuses, nodes, cycle, nominated, self.pdbs(),
                                                 offset=self._rng.randrange(len(nodes)))
            msg = preemption.failure_message(info, statuses, nodes, self.dra_message, cycle, outcome, pre_msg)
            nomination: str | None = None
            if outcome.candidate is not None:
                nomination = outcome.candidate.node
                self._nominated[uid] = nomination
                self._start_preemption(uid, pod, info, outcome.candidate)
            elif outcome.clear_nomination:
                nomination = ""
                self._nominated.pop(uid, None)
            self._failed(uid, pod, "Unschedulable", msg, nomination)
            if self.metrics is not None:
                self.metrics.attempt(UNSCHEDULABLE, self.name, started)
            return None
        host = framework.select_host(info, feasible, nodes, self.namespace_labels, self._rng,
                                     snap.with_affinity()).name
        # assume: count the pod on the node now, so the next pods see it
        self._assumed[uid] = host
        self._nominated.pop(uid, None)
        self._in_flight.add(uid)
        self._recount(uid)
        self._pod_placed()
        self._spawn(self._bind(uid, pod, host, plans.get(host), started))
        return host

    def pdbs(self) -> list[preemption.DisruptionBudget]:
        """The PodDisruptionBudgets preemption respects (victims whose eviction would violate
        one are chosen last; nodes with fewer violations first)."""
        return [preemption.DisruptionBudget.of(b) for b in self.pdb_informer.objects.values()]

    def _failed(self, uid: str, pod: Obj, reason: str, msg: str, nomination: str | None = None) -> None:
        # an error (not a verdict about the cluster) goes straight to the backoff queue
        self.queue.failed(uid, time.monotonic(), moved=reason != "Unschedulable", on_pods=_waits_on_pods(pod))
        self.recorder.emit(pod, WARNING, "FailedScheduling", plugins.truncate_event_message(msg))
        self._spawn(self._set_unschedulable(pod, reason, msg, nomination))

    async def _set_unschedulable(self, pod: Obj, reason: str, msg: str, nomination: str | None = None) -> None:
        """updatePod: PodScheduled=False with the reason and message, and the nominated node
        when preemption set or withdrew one (skipped when nothing changes)."""
        meta = _d(pod.get("metadata"))
        status = _d(pod.get("status"))
        conds = status.get("conditions") or []
        old = next((c for c in conds if _d(c).get("type") == "PodScheduled"), None)
        nnn_changed = nomination is not None and nomination != (status.get("nominatedNodeName") or "")
        if old is not None and old.get("status") == "False" and old.get("reason") == reason \
                and old.get("message") == msg and not nnn_changed:
            return
        cond: dict[str, Any] = {"type": "PodScheduled", "status": "False", "lastProbeTime": None,
                                "lastTransitionTime": now_rfc3339(), "reason": reason, "message": msg}
        if old is not None and old.get("status") == "False" and old.get("lastTransitionTime"):
            cond["lastTransitionTime"] = old["lastTransitionTime"]
        if meta.get("generation"):
            cond["observedGeneration"] = meta["generation"]
        patch: dict[str, Any] = {"conditions": [cond]}
        if nnn_changed:
            patch["nominatedNodeName"] = nomination or None
        try:
            await self.client.patch("v1", "pods", meta.get("name", ""), {"status": patch},
                                    namespace=meta.get("namespace", ""), patch_type="strategic", sub="status")
        except (TimeoutError, errors.StatusError, OSError, aiohttp.ClientError) as exc:
            log.info("could not update the PodScheduled condition of %s: %s", _pod_key(pod), exc)

    # ------------------------------------------------------------------ preemption
    def _start_preemption(self, uid: str, pod: Obj, info: PodInfo, candidate: preemption.Candidate) -> None:
        """prepareCandidateAsync: the victims' API calls run in the background; the preemptor
        is not retried before they are done."""
        victims = [self.pods[v.uid] for v in candidate.victims if v.uid in self.pods]
        victims = [v for v in victims if not _d(v.get("metadata")).get("deletionTimestamp")]
        if not victims:
            return
        self.preemptions += 1
        self._preempting.add(uid)
        self._spawn(self._preempt(uid, pod, info, candidate.node, victims))

    async def _preempt(self, uid: str, pod: Obj, info: PodInfo, node: str, victims: list[Obj]) -> None:
        ok = True
        try:
            # lower-priority pods nominated to the node may not fit any more: withdraw their nomination
            lower = [self.pods[u] for u, n in list(self._nominated.items())
                     if n == node and u != uid and u in self.pods
                     and (_d(self.pods[u].get("spec")).get("priority") or 0) < info.priority]
            for p in lower:
                self._nominated.pop(_d(p.get("metadata")).get("uid") or "", None)
                ok = await self._clear_nomination(p) and ok
            results = await asyncio.gather(*(self._preempt_victim(pod, v, node) for v in victims))
            ok = all(results) and ok
        finally:
            self._preempting.discard(uid)
            if not ok:
                self.queue.activate(uid, time.monotonic())  # Activate: try again soon
            self._wakeup.set()

    async def _clear_nomination(self, pod: Obj) -> bool:
        meta = _d(pod.get("metadata"))
        try:
            await self.client.patch("v1", "pods", meta.get("name", ""), {"status": {"nominatedNodeName": None}},
                                    namespace=meta.get("namespace", ""), patch_type="strategic", sub="status")
        except errors.StatusError as exc:
            if exc.code != 404:
                log.info("could not clear the nominated node of %s: %s", _pod_key(pod), exc)
                return False
        except (TimeoutError, OSError, aiohttp.ClientError) as exc:
            log.info("could not clear the nominated node of %s: %s", _pod_key(pod), exc)
            return False
        return True

    async def _preempt_victim(self, preemptor: Obj, victim: Obj, node: str) -> bool:
        """PreemptPod: DisruptionTarget on the victim through pods/status, then its graceful
        deletion (its own grace period), then the Preempted event. False on an API error."""
        meta = _d(victim.get("metadata"))
        ns, name = meta.get("namespace", ""), meta.get("name", "")
        sched_name = _d(preemptor.get("spec")).get("schedulerName") or self.name
        cond: dict[str, Any] = {"type": "DisruptionTarget", "status": "True", "lastProbeTime": None,
                                "lastTransitionTime": now_rfc3339(), "reason": "PreemptionByScheduler",
                                "message": f"{sched_name}: preempting to accommodate a higher priority pod"}
        if meta.get("generation"):
            cond["observedGeneration"] = meta["generation"]
        old = next((c for c in _d(victim.get("status")).get("conditions") or []
                    if _d(c).get("type") == "DisruptionTarget"), None)
        try:
            if old is None or any(old.get(k) != cond.get(k) for k in ("status", "reason", "message")):
                await self.client.patch("v1", "pods", name, {"status": {"conditions": [cond]}}, namespace=ns,
                                        patch_type="strategic", sub="status")
            await self.client.delete("v1", "pods", name, namespace=ns)
        except errors.StatusError as exc:
            if exc.code == 404:
                return True  # already gone
            log.warning("could not preempt %s/%s: %s", ns, name, exc)
            return False
        except (TimeoutError, OSError, aiohttp.ClientError) as exc:
            log.warning("could not preempt %s/%s: %s", ns, name, exc)
            return False
        pmeta = _d(preemptor.get("metadata"))
        self.recorder.emit(_pod_ref(victim), NORMAL, "Preempted",
                           f"Preempted by pod {pmeta.get('uid', '')} on node {node}",
                           related=_pod_ref(preemptor), action="Preempting")
        return True

    async def _bind_volumes(self, pod: Obj, node: str, plan: tuple[list[tuple[Obj, Obj]], list[Obj]]) -> None:
        """VolumeBinding's PreBind (BindPodVolumes): pre-bind each chosen volume to its claim,
        mark each claim to provision with the chosen node, then wait until the PV controller
        (and the provisioner) bound every claim of the pod."""
        binds, provisions = plan
        for claim, pv in binds:
            cm = claim["metadata"]
            if _d(_d(pv.get("spec")).get("claimRef")).get("uid") == cm.get("uid"):
                continue  # pre-bound already (a provisioned volume, or our own earlier attempt)
            await self.client.patch("v1", "persistentvolumes", pv["metadata"]["name"], {
                "metadata": {"annotations": {volumebinding.ANN_BOUND_BY_CONTROLLER: "yes"},
                             "resourceVersion": pv["metadata"].get("resourceVersion")},
                "spec": {"claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                                      "namespace": cm.get("namespace", ""), "name": cm["name"],
                                      "uid": cm.get("uid", ""), "resourceVersion": cm.get("resourceVersion", "")}}},
                patch_type="merge")
        for claim in provisions:
            cm = claim["metadata"]
            if _d(cm.get("annotations")).get(volumebinding.ANN_SELECTED_NODE) != node:
                await self.client.patch("v1", "persistentvolumeclaims", cm["name"], {"metadata": {
                    "annotations": {volumebinding.ANN_SELECTED_NODE: node}}}, namespace=cm.get("namespace", ""),
                    patch_type="merge")
        ns = _d(pod.get("metadata")).get("namespace", "")
        names = volumebinding.pod_claim_names(pod)
        deadline = time.monotonic() + self.bind_timeout
        while True:
            changed = self._volumes_changed
            if all((c := self.claims.get((ns, n))) is not None and volumebinding.is_fully_bound(c) for n in names):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("binding volumes: context deadline exceeded")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), left)

    async def _bind(self, uid: str, pod: Obj, node: str,
                    volume_plan: tuple[list[tuple[Obj, Obj]], list[Obj]] | None = None,
                    started: float | None = None) -> None:
        meta = _d(pod.get("metadata"))
        ns, name = meta.get("namespace", ""), meta.get("name", "")
        if volume_plan is not None and (volume_plan[0] or volume_plan[1]):
            try:
                await self._bind_volumes(pod, node, volume_plan)
            except (errors.StatusError, TimeoutError, OSError, aiohttp.ClientError) as exc:
                log.info("binding the volumes of %s/%s on %s failed: %s", ns, name, node, exc)
                self._finish_bind(uid, ok=False)
                if uid in self.pods and self._wants(uid, self.pods[uid]):
                    self._failed(uid, self.pods[uid], "SchedulerError", f"running PreBind plugin \"VolumeBinding\": "
                                                                        f"{exc}")
                return
            except asyncio.CancelledError:
                self._finish_bind(uid, ok=False)
                raise
        binding = {"apiVersion": "v1", "kind": "Binding",
                   "metadata": {"name": name, "namespace": ns, "uid": meta.get("uid", "")},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        err: str | None = None
        try:
            async with self._bind_sem:
                await self.client.request("POST", resource_path("v1", "pods", ns, name, "binding"), binding)
        except errors.StatusError as exc:
            err = exc.message
            if exc.code in (404, 409):
                err = None if exc.code == 404 or "already assigned" in exc.message else err
                if err is None:
                    self._finish_bind(uid, ok=False)
                    return
        except (TimeoutError, OSError, aiohttp.ClientError) as exc:
            err = str(exc) or type(exc).__name__
        except asyncio.CancelledError:
            self._finish_bind(uid, ok=False)
            raise
        if err is not None:
            log.info("binding %s/%s to %s failed: %s", ns, name, node, err)
            self._finish_bind(uid, ok=False)
            if self.metrics is not None and started is not None:
                self.metrics.attempt(ERROR, self.name, started)
            if uid in self.pods and self._wants(uid, self.pods[uid]):
                self._failed(uid, self.pods[uid], "SchedulerError", f"Binding rejected: {err}")
            return
        self._finish_bind(uid, ok=True)
        if self.metrics is not None and started is not None:
            self.metrics.attempt(SCHEDULED, self.name, started)
        self.scheduled_count += 1
        self.queue.attempts.pop(uid, None)
        self.recorder.emit(pod, NORMAL, "Scheduled", f"Successfully assigned {ns}/{name} to {node}")

    def _finish_bind(self, uid: str, ok: bool) -> None:
        self._in_flight.discard(uid)
        if not ok:
            self._assumed.pop(uid, None)
            if self._recount(uid):
                self._cluster_changed()


def _priority(pod: Obj) -> int:
    prio = _d(pod.get("spec")).get("priority")
    return prio if isinstance(prio, int) else 0


def _pod_ref(pod: Obj) -> Obj:
    return {**pod, "kind": "Pod", "apiVersion": "v1"}


LEASE_NAMESPACE, LEASE_NAME = "kube-system", "kube-scheduler"


async def run_scheduler(kubeconfig_path: Any, name: str = "default-scheduler",
                        election: Election | None = None, metrics: SchedulerMetrics | None = None) -> None:
    """Runs a scheduler against the API server of a kubeconfig until cancelled; with ``election``
    only while it holds the Lease kube-system/kube-scheduler (kube-scheduler's --leader-elect:
    events from the scheduler's name, the lease released on a graceful stop). A scheduler that
    loses the lease stops (upstream exits: "Leaderelection lost") and campaigns again, with a
    fresh cache."""
    async with Client.from_kubeconfig(kubeconfig_path, user_agent="kube-scheduler/v1.37.0 kubelite") as client:
        if election is None:
            await Scheduler(client, name, metrics=metrics).run()
            return
        events = EventRecorder(client, component=name)
        lock = LeaseLock(ClientLeases(client, timeout=election.renew_deadline), LEASE_NAMESPACE, LEASE_NAME,
                         new_identity(), events)
        elector = LeaderElector(lock, election.lease_duration, election.renew_deadline, election.retry_period,
                                release_on_cancel=True)
        try:
            while True:
                await elector.run(lambda: Scheduler(client, name, metrics=metrics).run())
                log.error("Leaderelection lost")
        finally:
            await events.close()
