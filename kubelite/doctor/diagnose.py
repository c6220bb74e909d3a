"""Why a pod is not Running and Ready, in plain words, and what to change: a pure function of
:class:`~kubelite.doctor.evidence.Evidence` (the pod's status, its events, the nodes, the last
log lines). It reads what the kubelet and the scheduler write — container states and their
reasons (:mod:`kubelite.doctor.containers`), FailedMount (``pkg/kubelet/volumemanager``),
FailedCreatePodSandBox, node conditions, FailedScheduling (``schedule_one.go``,
:mod:`kubelite.doctor.scheduling`) — the way a person reads ``kubectl describe pod`` and
``kubectl logs --previous``."""

from __future__ import annotations

import re
from typing import Any

from kubelite.doctor import scheduling
from kubelite.doctor.containers import RECENT, STARTING, container_findings, event_line, mount_finding
from kubelite.doctor.evidence import Evidence, event_time
from kubelite.doctor.report import Diagnosis, Finding
from kubelite.kinds._pod_printing import pod_row
from kubelite.kinds._printing import human_duration, parse_time

Obj = dict[str, Any]


def _d(v: Any) -> Obj:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


# ------------------------------------------------------------------------------------------ the pod
def _node(ev: Evidence, node_name: str) -> Finding | None:
    if ev.nodes is None:
        return None
    node = next((n for n in ev.nodes if _d(n.get("metadata")).get("name") == node_name), None)
    if node is None:
        return Finding("NodeNotFound", "error", "", f'the pod is bound to node "{node_name}", which does not exist '
                       "(deleted, or never joined)", "delete the pod so its controller can place a new one, or "
                       "bring the node back", ())
    conds = {_d(c).get("type"): _d(c) for c in _l(_d(node.get("status")).get("conditions"))}
    ready = conds.get("Ready", {})
    if ready.get("status") != "True":
        beat = parse_time(ready.get("lastHeartbeatTime"))
        since = f", last heartbeat {human_duration(ev.now - beat)} ago" if beat else ""
        return Finding("NodeNotReady", "error", "",
                       f'its node "{node_name}" is not Ready (Ready={ready.get("status", "Unknown")}'
                       f'{": " + str(ready.get("message")) if ready.get("message") else ""}{since}): containers '
                       "there are not started or reported", "check the node's agent (`kubelite server` / `kubelite "
                       "agent` and its log, containerd under the data dir); a pod on a lost node is not moved by "
                       "itself: delete it so a controller re-creates it elsewhere", ())
    pressure = [t for t in ("MemoryPressure", "DiskPressure", "PIDPressure") if conds.get(t, {}).get("status") == "True"]
    if pressure:
        return Finding("NodePressure", "warning", "", f'its node "{node_name}" reports {", ".join(pressure)}: the '
                       "kubelet may evict pods to recover", "free memory/disk/processes on the node or move work "
                       "elsewhere", ())
    return None


def _mount_events(ev: Evidence) -> Finding | None:
    mounts = [e for e in ev.events if e.get("reason") == "FailedMount" and ev.now - event_time(e) < RECENT]
    if not mounts:
        return None
    setup = [e for e in mounts if str(e.get("message", "")).startswith("MountVolume.")]
    e = (setup or mounts)[-1]
    msg = str(e.get("message", ""))
    seen = (event_line(e, ev.now),)
    if setup:
        return mount_finding(ev, msg, seen)
    m = re.search(r"unmounted volumes=\[([^\]]*)\]", msg)
    vols = m.group(1) if m else "?"
    return Finding("VolumeMountFailed", "error", "", f"the kubelet timed out mounting the volume(s) {vols}",
                   "kubectl describe pod shows the earlier FailedMount events with the reason; fix the volume's "
                   "source (claim bound? server reachable?) or re-create the pod without it", seen)


def _sandbox(ev: Evidence) -> Finding | None:
    fails = [e for e in ev.events if e.get("reason") == "FailedCreatePodSandBox" and ev.now - event_time(e) < RECENT]
    if not fails:
        return None
    msg = str(fails[-1].get("message", ""))
    cause = "the node cannot create the pod's sandbox (its network namespace and pause container)"
    if "cni" in msg.lower() or "network" in msg.lower():
        cause += ": the pod network (CNI) failed"
    return Finding("SandboxFailed", "error", "", cause, "check the node's CNI configuration and its agent's log; "
                   "the kubelet retries by itself", (event_line(fails[-1], ev.now),))


def _add(out: list[Finding], f: Finding | None) -> None:
    if f is not None and not any((g.reason, g.container, g.cause) == (f.reason, f.container, f.cause) for g in out):
        out.append(f)


def diagnose(ev: Evidence) -> Diagnosis:
    pod = ev.pod
    meta, spec, st = _d(pod.get("metadata")), _d(pod.get("spec")), _d(pod.get("status"))
    row = pod_row(pod, ev.now)
    ready, status = str(row[1]), str(row[2])
    statuses = [_d(c) for c in _l(st.get("containerStatuses"))]
    inits = [_d(c) for c in _l(st.get("initContainerStatuses"))]
    restarts = sum(int(c.get("restartCount", 0) or 0) for c in statuses + inits)
    node = str(spec.get("nodeName") or "")
    phase = str(st.get("phase") or "Pending")
    restart_policy = str(spec.get("restartPolicy") or "Always")
    findings: list[Finding] = []

    if meta.get("deletionTimestamp"):
        since = parse_time(meta["deletionTimestamp"])
        fin = _l(meta.get("finalizers"))
        late = since is not None and ev.now > since + 30
        cause = "the pod is being deleted" + (f" (for {human_duration(ev.now - since)})" if since and ev.now > since
                                               else "")
        if fin:
            cause += f"; finalizers wait: {', '.join(map(str, fin))}"
        findings.append(Finding("Terminating", "warning" if late else "info", "", cause,
                                "wait for the grace period; if its node is gone, kubectl delete pod "
                                f"{meta.get('name')} --force --grace-period=0 removes the object"
                                + ("; a finalizer's controller must remove its finalizer" if fin else ""), ()))
    if phase == "Succeeded":
        return Diagnosis(meta.get("namespace", ""), meta.get("name", ""), status, ready, restarts, node,
                         "Completed: every container exited successfully.", tuple(findings))
    if not node:
        findings += scheduling.explain(ev)
    else:
        _add(findings, _node(ev, node))
        if phase == "Failed" and st.get("reason"):
            findings.append(Finding(str(st["reason"]), "error", "", f"the pod failed: {st.get('message', '')}",
                                    "re-create the pod (its controller does this by itself)" +
                                    ("; the node ran out of a resource: set requests/limits that fit"
                                     if st.get("reason") == "Evicted" else ""), ()))
        _add(findings, _sandbox(ev))
        blocked = False
        for cs in inits:
            term = _d(_d(cs.get("state")).get("terminated"))
            if term and int(term.get("exitCode", 1) or 0) == 0:
                continue
            got = container_findings(ev, cs, restart_policy, init=True)
            for f in got:
                _add(findings, Finding(f.reason, f.severity, f.container, "init container: " + f.cause, f.fix,
                                       f.evidence))
            blocked = blocked or bool(got) or "running" not in _d(cs.get("state"))
            if got:
                break
        if not blocked:
            for cs in statuses:
                for f in container_findings(ev, cs, restart_policy, init=False):
                    _add(findings, f)
        creating = not statuses or any(_d(_d(c.get("state")).get("waiting")).get("reason") in
                                       ("ContainerCreating", "PodInitializing") for c in statuses + inits)
        if creating and not any(f.reason in ("VolumeMountFailed", "ConfigMapNotFound", "SecretNotFound")
                                for f in findings):
            _add(findings, _mount_events(ev))
        if creating and not findings:
            created = parse_time(meta.get("creationTimestamp")) or ev.now
            age = ev.now - created
            warn = [e for e in ev.events if e.get("type") == "Warning" and e.get("reason") != "MissingClusterDNS"]
            if age < STARTING:
                findings.append(Finding("ContainerCreating", "info", "", f"the containers are being created "
                                        f"({human_duration(age)} since the pod was made): images pull, volumes mount",
                                        "nothing yet: look again in a few seconds", ()))
            else:
                findings.append(Finding("ContainerCreating", "error", "", f"the containers have been in creation "
                                        f"for {human_duration(age)}", "kubectl describe pod shows the events; the "
                                        "node's agent log tells more", tuple(event_line(e, ev.now) for e in warn[-3:])))
        if phase == "Running" and not findings:
            conds = {_d(c).get("type"): _d(c) for c in _l(st.get("conditions"))}
            for g in _l(spec.get("readinessGates")):
                t = _d(g).get("conditionType")
                if conds.get(t, {}).get("status") != "True":
                    findings.append(Finding("ReadinessGate", "error", "", f"the readiness gate {t} is not True; "
                                            "the pod is not Ready until whatever owns that condition sets it",
                                            f"check the controller that sets {t}", ()))
    return Diagnosis(meta.get("namespace", ""), meta.get("name", ""), status, ready, restarts, node,
                     _summary(phase, node, ready, findings), tuple(findings))


def _summary(phase: str, node: str, ready: str, findings: list[Finding]) -> str:
    n = len(findings)
    tail = f" {n} finding{'' if n == 1 else 's'}:" if n else ""
    all_ready = ready.split("/")[0] == ready.split("/")[-1] and ready != "0/0"
    if not findings:
        return "Running and Ready: nothing to fix." if phase == "Running" and all_ready else \
            f"{phase}: nothing wrong found."
    if all(f.severity == "info" for f in findings):
        return "Nothing wrong yet, the pod is on its way:" + tail[len(f" {n} finding{'' if n == 1 else 's'}"):]
    if not node:
        return f"The pod is not placed on a node.{tail}"
    if phase == "Pending":
        return f"The pod is on node {node}, but its containers do not run.{tail}"
    if phase == "Failed":
        return f"The pod has failed and will not run again.{tail}"
    if all_ready:
        restarts = any(f.reason in ("LivenessProbeFailing", "StartupProbeFailing", "OOMKilled") for f in findings)
        return f"The pod is Running and Ready, but {'its containers restart' if restarts else 'needs attention'}.{tail}"
    return f"The pod runs on node {node}, but is not Ready.{tail}"
