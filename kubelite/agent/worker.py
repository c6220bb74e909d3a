"""One worker per pod (pod_workers.go): a serial loop with an explicit lifecycle
syncing → terminating → terminated. Pods never block each other; one pod's steps never
race each other. Workers wake on API updates, on runtime changes (the agent's relist,
like PLEG) and on their own timers (back-off expiry, periodic resync)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

from kubelite.agent import allocation, security
from kubelite.agent.cgroups import pod_cgroup_name
from kubelite.agent.crispec import PodRuntime, RuntimeCache
from kubelite.agent.runtime import RuntimeManager
from kubelite.agent.status import TERMINAL, StatusManager, generate_status, now_rfc3339
from kubelite.api import errors

log = logging.getLogger("kubelite.agent.worker")
Obj = dict[str, Any]
RESYNC_INTERVAL = 10.0
RESIZE_RETRY = 5.0
EVICTION_INTERVAL = 10.0  # the eviction manager's monitoring interval
EVICTED = "Evicted"


class PodWorker:
    def __init__(self, owner: PodWorkers, pod: Obj) -> None:
        self.owner = owner
        self.uid: str = pod["metadata"]["uid"]
        self.pod: Obj = pod
        self.removed = False  # gone from the API (DELETED event or missing on relist)
        self.waiting: dict[str, tuple[str, str]] = {}
        self._wake = asyncio.Event()
        self._wake.set()
        self.task: asyncio.Task[None] | None = None
        self.terminal_done = False
        # when this worker last changed the pod's containers: it must see the runtime from after that
        self.acted_at = float("-inf")
        self.eviction_checked_at = float("-inf")  # the last emptyDir sizeLimit check
        # PodResizePending / PodResizeInProgress, by type (the status manager's resize conditions)
        self.resize_conds: dict[str, Obj] = {
            c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []
            if isinstance(c, dict) and c.get("type") in (allocation.PENDING, allocation.IN_PROGRESS)}

    def update(self, pod: Obj | None) -> None:
        if pod is None:
            self.removed = True
        else:
            needs_sync = _needs_sync(self.pod, pod)
            self.pod = pod
            if not needs_sync:
                return
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        next_wake = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(next_wake, 0.01) if next_wake else RESYNC_INTERVAL)
            self._wake.clear()
            try:
                if self.removed or self.pod["metadata"].get("deletionTimestamp"):
                    await self._terminate()
                    return
                next_wake = await self._sync()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sync of pod %s failed", _name(self.pod))
                next_wake = 2.0

    async def _runtime(self) -> PodRuntime:
        """The pod's runtime state from the shared relist, fresh enough to show what this
        worker did last."""
        return await self.owner.cache.get(self.uid, newer_than=self.acted_at)

    def _acted(self) -> None:
        self.acted_at = time.monotonic()

    def _status(self, pr: PodRuntime, waiting: dict[str, tuple[str, str]], terminal: bool = False) -> Obj:
        o = self.owner
        status = generate_status(self.pod, pr, waiting, o.host_ip, pod_is_terminal=terminal, ready_fn=o.ready_fn,
                                 started_fn=o.started_fn, previous=o.status.latest(self.uid))
        self._resize_status(status, pr)
        return status

    # ------------------------------------------------------------------ resize
    def _resize_status(self, status: Obj, pr: PodRuntime) -> None:
        """allocatedResources and resources of each resizable container, the resize
        conditions, and status.observedGeneration (the generation this status is about)."""
        alloc = self.owner.allocation
        gen = self.pod["metadata"].get("generation")
        if isinstance(gen, int):
            status["observedGeneration"] = gen
        if alloc is None:
            return
        cgroup = pod_cgroup_name(self.pod)
        for key in ("initContainerStatuses", "containerStatuses"):
            for cs in status.get(key) or []:
                a = alloc.allocation(self.uid, cs["name"])
                if a is None:
                    continue
                if a.get("requests"):
                    cs["allocatedResources"] = dict(a["requests"])
                cfg = None
                if "running" in cs.get("state", {}) and cs.get("containerID"):
                    cid = cs["containerID"].split("://", 1)[-1]
                    cfg = self.owner.runtime.cgroups.read(f"{cgroup}/{cid}")
                cs["resources"] = allocation.actual_resources(a, cfg) if cfg is not None else dict(a)
        conds = [c for c in status.get("conditions") or []
                 if c.get("type") not in (allocation.PENDING, allocation.IN_PROGRESS)]
        status["conditions"] = conds + [self.resize_conds[t] for t in (allocation.PENDING, allocation.IN_PROGRESS)
                                        if t in self.resize_conds]

    def _resize_cond(self, ctype: str, reason: str, message: str, gen: Any) -> bool:
        """SetPodResize{Pending,InProgress}Condition; False when nothing changed."""
        old = self.resize_conds.get(ctype)
        c: Obj = {"type": ctype, "status": "True", "lastProbeTime": None,
                  "lastTransitionTime": old["lastTransitionTime"] if old else now_rfc3339()}
        if reason:
            c["reason"] = reason
        if message:
            c["message"] = message
        if isinstance(gen, int):
            c["observedGeneration"] = gen
        if old is not None and all(old.get(k) == c.get(k) for k in ("reason", "message", "observedGeneration")):
            return False
        self.resize_conds[ctype] = c
        return True

    def _handle_resize(self, pod: Obj) -> None:
        """handlePodResourcesResize: allocate the desired resources if the node can hold them,
        else say why (PodResizePending: Deferred, retried on every sync, or Infeasible)."""
        o = self.owner
        assert o.allocation is not None
        gen = pod["metadata"].get("generation")
        if not o.allocation.resize_pending(pod):
            self.resize_conds.pop(allocation.PENDING, None)
            return
        others = [o.allocation.allocated_pod(w.pod) for w in o.workers.values()
                  if w is not self and not w.removed and not w.terminal_done
                  and (w.pod.get("status") or {}).get("phase") not in TERMINAL]
        reason, message = allocation.check_resize(pod, others, o.allocatable())
        rm: RuntimeManager = o.runtime
        if not reason:
            o.allocation.set_allocated(pod)
            o.allocation.errors.pop(self.uid, None)
            self.resize_conds.pop(allocation.PENDING, None)
            self.resize_conds.pop(allocation.IN_PROGRESS, None)
            self._resize_cond(allocation.IN_PROGRESS, "", "", gen)
            rm.event(pod, "Normal", allocation.RESIZE_STARTED,
                     allocation.resize_message("Pod resize started", pod, gen or 0))
            return
        if self._resize_cond(allocation.PENDING, reason, message, gen):
            ev = allocation.RESIZE_INFEASIBLE if reason == allocation.INFEASIBLE else allocation.RESIZE_DEFERRED
            rm.event(pod, "Warning", ev, allocation.resize_message(f"Pod resize {reason}", pod, gen or 0, message))

    def _resize_progress(self, pod: Obj, pr: PodRuntime) -> None:
        """The in-progress condition ends once every running container runs with its
        allocation (ResizeCompleted), or carries the actuation's error (reason Error)."""
        o = self.owner
        cond = self.resize_conds.get(allocation.IN_PROGRESS)
        if cond is None or o.allocation is None:
            return
        err = o.allocation.errors.get(self.uid)
        gen = cond.get("observedGeneration")
        if err:
            if self._resize_cond(allocation.IN_PROGRESS, allocation.ERROR, err, gen):
                o.runtime.event(pod, "Warning", allocation.RESIZE_ERROR,
                                allocation.resize_message("Pod resize error", pod, gen or 0, err))
            return
        sb = pr.latest_sandbox()
        for _, ct in allocation.resizable_containers(pod):
            c = pr.latest(ct["name"])
            if c is None or c.state != "running" or (sb is not None and c.sandbox_id != sb.id):
                continue
            acked = o.allocation.acknowledged(c.id)
            if acked is not None and not allocation.same_resources(acked, allocation.resources_of(ct)):
                return
        del self.resize_conds[allocation.IN_PROGRESS]
        o.runtime.event(pod, "Normal", allocation.RESIZE_COMPLETED,
                        allocation.resize_message("Pod resize completed", pod, gen or 0))

    async def _sync(self) -> float:
        rm: RuntimeManager = self.owner.runtime
        pod = self.pod
        api_phase = (pod.get("status") or {}).get("phase")
        pr = await self._runtime()
        if api_phase in TERMINAL or self.terminal_done:
            # a finished pod keeps its status; make sure nothing runs and the IP is released
            self.owner.probes_remove(self.uid)
            if pr.running() or any(s.ready for s in pr.sandboxes):
                await rm.kill_pod(pod, pr, events=False)
                self._acted()
            return RESYNC_INTERVAL
        if self.owner.first_sync_at.get(self.uid) is None:
            self.owner.first_sync_at[self.uid] = time.monotonic()
            if not pr.sandboxes and not pr.containers:  # new here: the kubelet's admit handlers
                refused = None
                if self.owner.sysctls is not None and (pod.get("status") or {}).get("phase", "Pending") == "Pending":
                    refused = self.owner.sysctls.admit(pod)
                refused = refused or security.admit(pod, self.owner.apparmor_on_host,
                                                    self.owner.strict_groups_supported)
                if refused is not None:
                    await self._reject(pr, *refused)
                    return RESYNC_INTERVAL
        left = deadline_left(pod, self.owner.status.latest(self.uid))
        if left is not None and left <= 0:
            await self._deadline_exceeded(pr)
            return RESYNC_INTERVAL
        evicted = await self._local_storage_eviction(pr)
        if evicted is not None:
            await self._evict(pr, evicted)
            return RESYNC_INTERVAL
        alloc = self.owner.allocation
        if alloc is not None:
            if not alloc.is_allocated(self.uid):
                alloc.set_allocated(pod)  # admitted: what it starts with is its allocation
            else:
                self._handle_resize(pod)
            pod = alloc.allocated_pod(pod)  # containers (re)start with the allocated resources
        res = await rm.sync_pod(pod, pr)
        for name in list(self.waiting):
            if name not in res.waiting:
                del self.waiting[name]
        self.waiting.update(res.waiting)
        if res.changed:
            self._acted()
            pr = await self._runtime()
        if self.owner.prober is not None:  # probe workers follow the running containers
            self.owner.prober.sync_pod(pod, pr)
        self._resize_progress(pod, pr)
        status = self._status(pr, self.waiting)
        self.owner.status.set_status(pod, status)
        if res.changed and status["phase"] not in TERMINAL:
            # a (re)start happened: the container GC's pass for this pod, right away (the
            # periodic pass in the agent covers the rest)
            try:
                if await rm.garbage_collect(pod, pr):
                    self._acted()
            except Exception as exc:
                log.warning("container GC of pod %s: %s", _name(pod), exc)
        if allocation.PENDING in self.resize_conds:
            wake = min(res.next_wake or RESYNC_INTERVAL, RESIZE_RETRY)  # a Deferred resize is retried
            res.next_wake = wake
        if status["phase"] in TERMINAL:
            self.terminal_done = True
            self.owner.probes_remove(self.uid)
            sidecars = bool(pr.running())  # they outlive the app containers until now
            await rm.kill_pod(pod, pr, events=False)
            self._acted()
            if sidecars:  # their final state too
                self.owner.status.set_status(pod, self._status(await self._runtime(), self.waiting, terminal=True))
            return RESYNC_INTERVAL
        wake = res.next_wake if res.next_wake is not None else RESYNC_INTERVAL
        if left is not None:
            wake = min(wake, left + 0.05)  # wake up when the active deadline passes
        return min(wake, RESYNC_INTERVAL)

    async def _reject(self, pr: PodRuntime, reason: str, message: str) -> None:
        """rejectPod: a Warning event and phase Failed, nothing started."""
        rm: RuntimeManager = self.owner.runtime
        pod = self.pod
        rm.event(pod, "Warning", reason, message)
        self.terminal_done = True
        status = self._status(pr, {}, terminal=True)
        status.update(phase="Failed", reason=reason, message=f"Pod was rejected: {message}")
        self.owner.status.set_status(pod, status)

    async def _local_storage_eviction(self, pr: PodRuntime) -> str | None:
        """The eviction manager's emptyDir sizeLimit check for this pod, at most once per
        EVICTION_INTERVAL: the eviction message when a volume holds more than its limit."""
        if not pr.sandboxes or not any(isinstance(v.get("emptyDir"), dict) and v["emptyDir"].get("sizeLimit")
                                       for v in (self.pod.get("spec") or {}).get("volumes") or []):
            return None
        now = time.monotonic()
        if now - self.eviction_checked_at < EVICTION_INTERVAL:
            return None
        self.eviction_checked_at = now
        return await asyncio.to_thread(self.owner.runtime.volumes.empty_dir_over_limit, self.pod)

    async def _evict(self, pr: PodRuntime, message: str) -> None:
        """evictPod: the Evicted event, the containers killed at once (grace period 0, so the
        runtime's minimum), phase Failed with reason Evicted and a DisruptionTarget condition
        (reason TerminationByKubelet)."""
        rm: RuntimeManager = self.owner.runtime
        pod = self.pod
        log.info("evicting pod %s: %s", _name(pod), message)
        rm.event(pod, "Warning", EVICTED, message)
        self.terminal_done = True
        self.owner.probes_remove(self.uid)
        await rm.kill_pod(pod, pr, grace=0)
        self._acted()
        status = self._status(await self._runtime(), {}, terminal=True)
        status.update(phase="Failed", reason=EVICTED, message=message)
        conds = [c for c in status.get("conditions") or [] if c.get("type") != "DisruptionTarget"]
        conds.append({"type": "DisruptionTarget", "status": "True", "lastProbeTime": None,
                      "lastTransitionTime": now_rfc3339(), "reason": "TerminationByKubelet", "message": message})
        status["conditions"] = conds
        self.owner.status.set_status(pod, status)

    async def _deadline_exceeded(self, pr: PodRuntime) -> None:
        """The kubelet's active deadline handler: the pod fails with DeadlineExceeded and its
        containers are killed."""
        rm: RuntimeManager = self.owner.runtime
        pod = self.pod
        rm.event(pod, "Normal", DEADLINE_EXCEEDED, DEADLINE_MESSAGE)
        self.terminal_done = True
        self.owner.probes_remove(self.uid)
        await rm.kill_pod(pod, pr)
        self._acted()
        status = self._status(await self._runtime(), {}, terminal=True)
        status.update(phase="Failed", reason=DEADLINE_EXCEEDED, message=DEADLINE_MESSAGE)
        self.owner.status.set_status(pod, status)

    async def _terminate(self) -> None:
        """Kill with the grace period, tear everything down, then confirm the deletion."""
        rm: RuntimeManager = self.owner.runtime
        pod = self.pod
        if self.owner.prober is not None:
            self.owner.prober.stop_liveness_and_startup(pod)
        pr = await self._runtime()
        started = time.monotonic()
        await rm.kill_pod(pod, pr)
        self._acted()
        pr = await self._runtime()
        if not self.removed:
            # the final status: every container terminated, the phase terminal
            api_phase = (pod.get("status") or {}).get("phase")
            if api_phase not in TERMINAL:
                status = self._status(pr, {}, terminal=True)
                self.owner.status.set_status(pod, status)
                await self.owner.status.flush(5)
        self.owner.probes_remove(self.uid)
        await rm.remove_pod(self.uid, pod, pr)
        log.info("pod %s terminated in %.1fs", _name(pod), time.monotonic() - started)
        if not self.removed:
            await self.owner.confirm_deletion(pod)
        self.owner.status.forget(self.uid)


_IGNORED_METADATA = ("resourceVersion", "managedFields")
DEADLINE_EXCEEDED = "DeadlineExceeded"
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"


def deadline_left(pod: Obj, latest: Obj | None) -> float | None:
    """Seconds until spec.activeDeadlineSeconds has passed since the pod's startTime (None: no deadline)."""
    ads = (pod.get("spec") or {}).get("activeDeadlineSeconds")
    if not isinstance(ads, int) or isinstance(ads, bool):
        return None
    start = (latest or {}).get("startTime") or (pod.get("status") or {}).get("startTime")
    if not isinstance(start, str):
        return float(ads)
    try:
        t0 = datetime.strptime(start, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return float(ads)
    return t0 + ads - time.time()


def _needs_sync(old: Obj, new: Obj) -> bool:
    """Whether an API update of the pod calls for a sync. Not for a change of the status
    alone — mostly the echo of this agent's own status write, which would re-sync, ask the
    runtime again and, if anything in the status drifted, write again — unless the new
    status is terminal (someone else ended the pod)."""
    if old.get("spec") != new.get("spec"):
        return True
    gates = {g.get("conditionType") for g in (new.get("spec") or {}).get("readinessGates") or [] if isinstance(g, dict)}
    if gates and _gate_conditions(old, gates) != _gate_conditions(new, gates):
        return True  # a readiness gate's condition (set by a client) decides Ready
    om, nm = old.get("metadata") or {}, new.get("metadata") or {}
    if any(om.get(k) != nm.get(k) for k in set(om) | set(nm) if k not in _IGNORED_METADATA):
        return True
    new_phase = (new.get("status") or {}).get("phase")
    return new_phase in TERMINAL and (old.get("status") or {}).get("phase") != new_phase


def _gate_conditions(pod: Obj, gates: set[Any]) -> list[tuple[Any, Any]]:
    return sorted((c.get("type"), c.get("status")) for c in (pod.get("status") or {}).get("conditions") or []
                  if isinstance(c, dict) and c.get("type") in gates)


def _name(pod: Obj) -> str:
    m = pod["metadata"]
    return f"{m.get('namespace', '')}/{m['name']}"


class PodWorkers:
    def __init__(self, runtime: RuntimeManager, status: StatusManager, client: Any, host_ip: str,
                 ready_fn: Any = None, prober: Any = None, cache: RuntimeCache | None = None,
                 allocations: allocation.AllocationManager | None = None,
                 allocatable: Any = None) -> None:
        self.runtime = runtime
        # in-place resize: the allocations, and the node's allocatable (() -> {"cpu": "2", ...})
        self.allocation = allocations if allocations is not None else getattr(runtime, "allocation", None)
        self.allocatable: Any = allocatable or (lambda: {})
        # the sysctl allowlist admit handler (agent/sysctls.py Allowlist), set by the agent
        self.sysctls: Any = None
        # the runtime state every worker reads (the agent's PLEG relists it and wakes workers)
        self.cache = cache if cache is not None else RuntimeCache(runtime.rt)
        self.status = status
        self.client = client
        self.host_ip = host_ip
        # the prober (agent/prober.py ProbeManager): probe workers per running container;
        # its cached results decide containerStatuses[].ready and .started
        self.prober = prober
        self.ready_fn = ready_fn if ready_fn is not None or prober is None else prober.is_ready
        self.started_fn = prober.is_started if prober is not None else None
        self.workers: dict[str, PodWorker] = {}
        self.first_sync_at: dict[str, float] = {}
        self.apparmor_on_host = security.apparmor_enabled()  # the AppArmor admit handler's host check
        self.strict_groups_supported = False  # the runtime's CRI Status features (set by the agent)

    def update_pod(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        w = self.workers.get(uid)
        if w is None:
            w = PodWorker(self, pod)
            self.workers[uid] = w
            w.task = asyncio.create_task(self._run(w), name=f"pod-worker-{_name(pod)}")
        else:
            w.update(pod)

    def remove_pod(self, uid: str) -> None:
        w = self.workers.get(uid)
        if w is not None:
            w.update(None)

    def wake(self, uid: str) -> None:
        w = self.workers.get(uid)
        if w is not None:
            w.wake()

    def known(self) -> set[str]:
        return set(self.workers)

    def probes_remove(self, uid: str) -> None:
        if self.prober is not None:
            self.prober.remove_pod(uid)

    async def _run(self, w: PodWorker) -> None:
        try:
            await w.run()
        finally:
            if self.workers.get(w.uid) is w:
                del self.workers[w.uid]
            self.first_sync_at.pop(w.uid, None)

    async def confirm_deletion(self, pod: Obj) -> None:
        m = pod["metadata"]
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                "preconditions": {"uid": m["uid"]}}
        path = f"/api/v1/namespaces/{m.get('namespace', '')}/pods/{m['name']}"
        try:
            await self.client.request("DELETE", path, body, params={"gracePeriodSeconds": 0})
        except errors.StatusError as exc:
            if exc.code not in (404, 409):
                log.warning("could not confirm deletion of %s: %s", _name(pod), exc)

    async def stop(self, teardown_grace: float = 8.0) -> None:
        """Stop every worker. Pods already being torn down (deleted from the API, or with a
        deletion timestamp) finish their teardown first, up to ``teardown_grace`` seconds, so
        that an agent stopped right after a forced deletion leaves no cgroup, mount or
        sandbox of that pod behind; running pods are left running, as the kubelet does."""
        ending = [w.task for w in self.workers.values() if w.task is not None and not w.task.done()
                  and (w.removed or w.pod["metadata"].get("deletionTimestamp"))]
        if ending:
            await asyncio.wait(ending, timeout=teardown_grace)
        tasks = [w.task for w in self.workers.values() if w.task is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        if self.prober is not None:
            await self.prober.stop()
