"""Pod status: what is true (generateAPIPodStatus, getPhase) and one writer that tells the
API (status/status_manager.go): patches ``pods/<name>/status`` only when something changed,
keeps the conditions the kubelet does not own (PodScheduled, DisruptionTarget, …) and
never moves a terminal pod back. What it owns and someone else changed (the node lifecycle
controller's Ready=False while the node was unreachable) it writes again (needsReconcile)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubelite.agent.crispec import ContainerState, PodRuntime, termination_message
from kubelite.api import errors
from kubelite.kinds.podutil import (
    TERMINAL_PHASES,
    compute_qos_class,
    container_should_restart,
    is_restartable_init_container,
    restart_on_failure,
)

log = logging.getLogger("kubelite.agent.status")
Obj = dict[str, Any]
KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")
TERMINAL = TERMINAL_PHASES


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _terminated(c: ContainerState) -> Obj:
    if c.exit_code == 0:
        reason = "Completed"
    elif c.reason == "OOMKilled" and c.exit_code == 137:
        reason = "OOMKilled"  # the CRI reason is sticky: trust it only with the kill's exit code
    else:
        reason = "Error"
    t: Obj = {"exitCode": c.exit_code, "reason": reason}
    msg = termination_message(c)
    if msg:
        t["message"] = msg
    t["startedAt"] = rfc3339(c.started_at) if c.started_at else None
    t["finishedAt"] = rfc3339(c.finished_at) if c.finished_at else None
    t["containerID"] = f"containerd://{c.id}"
    return t


def container_status(spec_c: Obj, pr: PodRuntime, waiting: dict[str, tuple[str, str]], old: Obj | None,
                     init: bool, ready_fn: Any = None, started_fn: Any = None) -> Obj:
    name = spec_c["name"]
    history = [c for c in pr.containers if c.name == name and c.is_init == init]
    cur = history[0] if history else None
    st: Obj = {"name": name, "image": spec_c.get("image", ""), "imageID": "", "ready": False,
               "restartCount": 0, "started": False}
    state: Obj
    last: Obj = {}
    if cur is None:
        reason, msg = waiting.get(name, ("ContainerCreating", ""))
        state = {"waiting": {"reason": reason, **({"message": msg} if msg else {})}}
        if old:  # containers removed by the runtime keep their history
            st["restartCount"] = old.get("restartCount", 0)
            last = old.get("lastState") or {}
    else:
        st["containerID"] = f"containerd://{cur.id}"
        st["imageID"] = cur.image_ref
        st["restartCount"] = cur.restart_count
        prev = history[1] if len(history) > 1 else None
        if cur.state == "running":
            state = {"running": {"startedAt": rfc3339(cur.started_at)}}
            # started/ready from the prober's results (startup and readiness probes) when wired in
            st["started"] = True if started_fn is None else bool(started_fn(cur))
            st["ready"] = True if ready_fn is None else bool(ready_fn(cur))
            if prev is not None and prev.state == "exited":
                last = {"terminated": _terminated(prev)}
        elif cur.state == "exited":
            if name in waiting:
                reason, msg = waiting[name]
                state = {"waiting": {"reason": reason, **({"message": msg} if msg else {})}}
                last = {"terminated": _terminated(cur)}
            else:
                state = {"terminated": _terminated(cur)}
                if prev is not None and prev.state == "exited":
                    last = {"terminated": _terminated(prev)}
                elif old and old.get("containerID") == st["containerID"]:
                    # the previous instance was garbage-collected since: its record stays
                    last = old.get("lastState") or {}
        else:
            reason, msg = waiting.get(name, ("ContainerCreating", ""))
            state = {"waiting": {"reason": reason, **({"message": msg} if msg else {})}}
            if prev is not None and prev.state == "exited":
                last = {"terminated": _terminated(prev)}
    st["state"] = state
    st["lastState"] = last
    return st


def _app_started(statuses: list[Obj]) -> bool:
    """podHasInitialized: an app container has run in the pod, so its init sequence is over."""
    return any("waiting" not in s["state"] or "terminated" in (s.get("lastState") or {}) for s in statuses)


def _last_exit(s: Obj) -> int | None:
    """The exit code of a terminated container, or of the last run of one waiting to restart."""
    t = s["state"].get("terminated") or (s.get("lastState") or {}).get("terminated")
    return int(t.get("exitCode") or 0) if t else None


def pending_init_containers(spec: Obj, init_statuses: list[Obj], statuses: list[Obj]) -> list[str]:
    """The init containers that hold the pod's initialization: a regular one until it exits 0,
    a sidecar (restartPolicy Always) until it has started; none once an app container ran."""
    if _app_started(statuses):
        return []
    specs = {c.get("name"): c for c in spec.get("initContainers") or []}
    out = []
    for s in init_statuses:
        if is_restartable_init_container(specs.get(s["name"])):
            if not s.get("started"):
                out.append(s["name"])
        elif not ("terminated" in s["state"] and s["state"]["terminated"]["exitCode"] == 0):
            out.append(s["name"])
    return out


def get_phase(pod: Obj, init_statuses: list[Obj], statuses: list[Obj], pod_is_terminal: bool) -> str:
    """getPhase (kubelet_pods.go), with ContainerRestartRules: whether a stopped container
    counts as restarting follows its own restartPolicy and restartPolicyRules
    (ContainerShouldRestart), a failed init container its own restartPolicy."""
    spec = pod["spec"]
    inits = {c.get("name"): c for c in spec.get("initContainers") or []}
    apps = {c.get("name"): c for c in spec.get("containers") or []}
    pending_init = False
    if not _app_started(statuses):
        for s in init_statuses:
            c = inits.get(s.get("name"))
            if is_restartable_init_container(c):
                if not s.get("started"):
                    pending_init = True
                continue
            state = s["state"]
            if "terminated" in state and state["terminated"]["exitCode"] == 0:
                continue
            if "terminated" in state or ("waiting" in state and "terminated" in (s.get("lastState") or {})):
                if not restart_on_failure(c, spec):
                    return "Failed"
            pending_init = True
            break
    running = restarting = waiting = stopped = succeeded = 0
    for s in statuses:
        state = s["state"]
        code = _last_exit(s)
        if "running" in state:
            running += 1
        elif "waiting" in state and code is None:
            waiting += 1
        elif code is not None:
            if not pod_is_terminal and container_should_restart(apps.get(s.get("name")), spec, code):
                restarting += 1
            else:
                stopped += 1
                if "terminated" in state and code == 0:
                    succeeded += 1
    if pending_init:
        return "Pending"
    if waiting > 0 and not pod_is_terminal:
        return "Pending"
    if (running > 0 or restarting > 0) and not pod_is_terminal:
        return "Running"
    if stopped > 0 or pod_is_terminal:
        if pod_is_terminal:
            return "Succeeded" if stopped == succeeded and running == 0 and waiting == 0 else "Failed"
        return "Succeeded" if stopped == succeeded else "Failed"
    return "Pending"


def _cond(ctype: str, ok: bool, reason: str = "", message: str = "") -> Obj:
    c: Obj = {"type": ctype, "status": "True" if ok else "False", "lastProbeTime": None}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def _ready_with_gates(spec: Obj, api_conditions: list[Obj]) -> Obj:
    """generatePodReadyCondition once the containers are ready: every readiness gate's
    condition (written by others into the pod's status) must be True as well."""
    have = {c.get("type"): c for c in api_conditions if isinstance(c, dict)}
    unready = []
    for gate in spec.get("readinessGates") or []:
        t = gate.get("conditionType") if isinstance(gate, dict) else None
        c = have.get(t)
        if c is None:
            unready.append(f'corresponding condition of pod readiness gate "{t}" does not exist.')
        elif c.get("status") != "True":
            unready.append(f'the status of pod readiness gate "{t}" is not "True", but {c.get("status")}')
    if unready:
        return _cond("Ready", False, "ReadinessGatesNotReady", ", ".join(unready))
    return _cond("Ready", True)


def generate_status(pod: Obj, pr: PodRuntime, waiting: dict[str, tuple[str, str]], host_ip: str,
                    pod_is_terminal: bool = False, ready_fn: Any = None, started_fn: Any = None,
                    previous: Obj | None = None) -> Obj:
    """generateAPIPodStatus: a complete pod status from the runtime state.

    What is carried over (startTime, transition times of unchanged conditions, the history
    of containers the runtime no longer has, the last pod IPs) comes from ``previous``, the
    status this agent last computed for the pod (StatusManager.latest), as upstream takes it
    from its status manager's cache. Only without one (a restarted agent) does it come from
    the API's status. Never from the API's copy otherwise: that copy is the echo of an
    earlier write and lags behind — two syncs between a write and its echo would each copy
    a different startTime/lastState back and re-write the status forever. The conditions
    other components own (PodScheduled, DisruptionTarget, …) always come from the API."""
    spec = pod["spec"]
    api = pod.get("status") or {}
    old = previous if previous is not None else api
    old_cs = {s["name"]: s for s in old.get("containerStatuses") or []}
    old_ics = {s["name"]: s for s in old.get("initContainerStatuses") or []}
    init_st = [container_status(c, pr, waiting, old_ics.get(c["name"]), True, ready_fn, started_fn)
               for c in spec.get("initContainers") or []]
    cts = [container_status(c, pr, waiting, old_cs.get(c["name"]), False, ready_fn, started_fn)
           for c in spec.get("containers") or []]
    pending_names = pending_init_containers(spec, init_st, cts)
    pending_init = bool(pending_names)
    if pending_init:
        for s in cts:
            if "waiting" in s["state"] and s["state"]["waiting"]["reason"] == "ContainerCreating":
                s["state"]["waiting"]["reason"] = "PodInitializing"
    phase = get_phase(pod, init_st, cts, pod_is_terminal)
    sb = pr.latest_sandbox()
    status: Obj = {"phase": phase}
    conds: list[Obj] = []
    conds.append(_cond("PodReadyToStartContainers", sb is not None and sb.ready and phase not in TERMINAL))
    if not pending_init:
        conds.append(_cond("Initialized", True, "PodCompleted" if phase == "Succeeded" and init_st else ""))
    else:
        conds.append(_cond("Initialized", False, "ContainersNotInitialized",
                           f"containers with incomplete status: [{' '.join(pending_names)}]"))
    sidecars = [s for c, s in zip(spec.get("initContainers") or [], init_st, strict=True) if is_restartable_init_container(c)]
    unready = [s["name"] for s in sidecars + cts if not s["ready"]]
    if phase == "Succeeded":
        cr = _cond("ContainersReady", False, "PodCompleted")
        rd = _cond("Ready", False, "PodCompleted")
    elif pending_init:
        msg = f"containers with incomplete status: [{' '.join(pending_names)}]"
        cr = _cond("ContainersReady", False, "ContainersNotInitialized", msg)
        rd = _cond("Ready", False, "ContainersNotInitialized", msg)
    elif unready:
        msg = f"containers with unready status: [{' '.join(unready)}]"
        cr = _cond("ContainersReady", False, "ContainersNotReady", msg)
        rd = _cond("Ready", False, "ContainersNotReady", msg)
    else:
        cr = _cond("ContainersReady", True)
        rd = _ready_with_gates(spec, api.get("conditions") or [])
    conds += [cr, rd]
    # keep the conditions others own, in their place; transition times only move on change
    old_conds = {c.get("type"): c for c in old.get("conditions") or []}
    now = now_rfc3339()
    ours = {c["type"]: c for c in conds}
    merged: list[Obj] = []
    for c in api.get("conditions") or []:
        if c.get("type") not in ours:
            merged.append(c)
    for c in conds:
        o = old_conds.get(c["type"])
        c["lastTransitionTime"] = o.get("lastTransitionTime") if o and o.get("status") == c["status"] else now
        if o and o.get("status") == c["status"] and "lastProbeTime" in o:
            c["lastProbeTime"] = o.get("lastProbeTime")
        merged.append(c)
    order = {"PodReadyToStartContainers": 0, "Initialized": 1, "Ready": 2, "ContainersReady": 3, "PodScheduled": 4}
    merged.sort(key=lambda c: order.get(c.get("type", ""), 5))
    status["conditions"] = merged
    status["hostIP"] = host_ip
    status["hostIPs"] = [{"ip": host_ip}] if host_ip else []
    ips = sb.ips if sb is not None and sb.ready and sb.ips else []
    if not ips and old.get("podIPs"):
        ips = [p["ip"] for p in old["podIPs"]]
    if not ips and spec.get("hostNetwork") and host_ip:
        ips = [host_ip]  # a hostNetwork pod inherits the node's IP
    if ips:
        status["podIP"] = ips[0]
        status["podIPs"] = [{"ip": ip} for ip in ips]
    status["startTime"] = old.get("startTime") or now
    if init_st:
        status["initContainerStatuses"] = init_st
    status["containerStatuses"] = cts
    ephemeral = spec.get("ephemeralContainers") or []
    if ephemeral:
        old_ecs = {s["name"]: s for s in old.get("ephemeralContainerStatuses") or []}
        status["ephemeralContainerStatuses"] = [
            container_status(c, pr, waiting, old_ecs.get(c["name"]), False) for c in ephemeral]
    status["qosClass"] = old.get("qosClass") or compute_qos_class(pod)
    for k in ("nominatedNodeName", "message"):
        if api.get(k):
            status[k] = api[k]
    return status


def _kubelet_view(status: Obj) -> tuple[Any, ...]:
    """What of a status the kubelet owns, as isPodStatusByKubeletEqual compares it."""
    conds = sorted((str(c.get("type")), str(c.get("status"))) for c in status.get("conditions") or []
                   if isinstance(c, dict) and c.get("type") in KUBELET_CONDITIONS)
    return status.get("phase"), tuple(conds)


def _rv(obj: Obj | None) -> int:
    try:
        return int(((obj or {}).get("metadata") or {}).get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


def _comparable(status: Obj) -> Obj:
    s = copy.deepcopy(status)
    for c in s.get("conditions") or []:
        c.pop("lastTransitionTime", None)
        c.pop("lastProbeTime", None)
    return s


class StatusManager:
    """The one writer of pod status. Workers call :meth:`set_status`; a single task patches."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._pending: dict[str, tuple[str, str, Obj]] = {}  # uid -> (namespace, name, status)
        self._last: dict[str, Obj] = {}
        self._written_rv: dict[str, int] = {}  # uid -> resourceVersion of the pod our last write made
        self._force: set[str] = set()  # uids whose status is written even if unchanged (reconciles)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        # (uid, previous phase, new phase) for every status set: the agent's pod start metric
        self.on_phase: Callable[[str, str, str], None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="status-manager")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def last_status(self, uid: str) -> Obj | None:
        return self._last.get(uid)

    def latest(self, uid: str) -> Obj | None:
        """The newest status computed for the pod: queued for writing, else last written."""
        pending = self._pending.get(uid)
        return pending[2] if pending is not None else self._last.get(uid)

    def set_status(self, pod: Obj, status: Obj) -> None:
        uid = pod["metadata"]["uid"]
        api = pod.get("status") or {}
        if api.get("phase") in TERMINAL and status.get("phase") not in TERMINAL:
            return  # never move a terminal pod back
        if self.on_phase is not None:
            self.on_phase(uid, str((self.latest(uid) or api).get("phase") or ""), str(status.get("phase") or ""))
        if _comparable(status) == _comparable(self._last.get(uid) or {}) and uid not in self._pending:
            if not self._needs_reconcile(pod, uid):
                return
            log.info("status of pod %s/%s in the API is not what this node wrote; writing it again",
                     pod["metadata"].get("namespace", ""), pod["metadata"]["name"])
            self._force.add(uid)
        self._pending[uid] = (pod["metadata"].get("namespace", ""), pod["metadata"]["name"], status)
        self._idle.clear()
        self._wake.set()

    def _needs_reconcile(self, pod: Obj, uid: str) -> bool:
        """needsReconcile: the API's copy, newer than our last write (not its lagging echo),
        says other than we wrote about what the kubelet owns."""
        last = self._last.get(uid)
        if last is None or _rv(pod) <= self._written_rv.get(uid, 0):
            return False
        return _kubelet_view(pod.get("status") or {}) != _kubelet_view(last)

    def forget(self, uid: str) -> None:
        self._last.pop(uid, None)
        self._pending.pop(uid, None)
        self._written_rv.pop(uid, None)
        self._force.discard(uid)

    async def flush(self, timeout: float = 10.0) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                uid, (ns, name, status) = next(iter(self._pending.items()))
                del self._pending[uid]
                if _comparable(status) == _comparable(self._last.get(uid) or {}) and uid not in self._force:
                    continue
                self._force.discard(uid)
                try:
                    written = await self._patch(uid, ns, name, status)
                    self._last[uid] = status
                    self._written_rv[uid] = _rv(written)
                except errors.StatusError as exc:
                    if exc.code in (404, 409):
                        log.debug("status of %s/%s not written: %s", ns, name, exc)
                        continue
                    log.warning("status of %s/%s: %s; retrying", ns, name, exc)
                    self._pending.setdefault(uid, (ns, name, status))
                    await asyncio.sleep(1)
                except (OSError, TimeoutError) as exc:
                    log.warning("status of %s/%s: %s; retrying", ns, name, exc)
                    self._pending.setdefault(uid, (ns, name, status))
                    await asyncio.sleep(1)
            self._idle.set()

    async def _patch(self, uid: str, ns: str, name: str, status: Obj) -> Obj | None:
        # metadata.uid in a merge patch is the precondition: a new pod with the same name is not ours
        body = {"metadata": {"uid": uid}, "status": status}
        return await self.client.patch("v1", "pods", name, body, namespace=ns, patch_type="merge", sub="status")
