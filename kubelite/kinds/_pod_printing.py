"""The Pod Table: upstream's pod column definitions and ``printPod`` (pkg/printers/internalversion).

The server always renders the wide cells (kubectl hides priority-1 columns unless ``-o wide``).
"""

from __future__ import annotations

import time
from typing import Any

from kubelite.kinds._printing import age, age_column, doc, name_column, parse_time
from kubelite.kinds.base import Column
from kubelite.kinds.podutil import TERMINAL_PHASES

_POD_STATUS = "io.k8s.api.core.v1.PodStatus"
_POD_SPEC = "io.k8s.api.core.v1.PodSpec"

# pkg/util/node: the reason set on pods of an unreachable node.
NODE_UNREACHABLE_POD_REASON = "NodeLost"
POD_REASON_SCHEDULING_GATED = "SchedulingGated"


def pod_columns() -> tuple[Column, ...]:
    return (
        name_column(),
        Column("Ready", "string", "", "The aggregate readiness state of this pod for accepting traffic."),
        Column("Status", "string", "", "The aggregate status of the containers in this pod."),
        Column("Restarts", "string", "",
               "The number of times the containers in this pod have been restarted and when the last "
               "container in this pod has restarted."),
        age_column(),
        Column("IP", "string", "", doc(_POD_STATUS, "podIP"), 1),
        Column("Node", "string", "", doc(_POD_SPEC, "nodeName"), 1),
        Column("Nominated Node", "string", "", doc(_POD_STATUS, "nominatedNodeName"), 1),
        Column("Readiness Gates", "string", "", doc(_POD_SPEC, "readinessGates"), 1),
    )


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _is_restartable_init(c: dict[str, Any] | None) -> bool:
    return bool(c) and c.get("restartPolicy") == "Always"  # type: ignore[union-attr]


def _cond_true(status: dict[str, Any], ctype: str) -> bool:
    return any(_d(c).get("type") == ctype and _d(c).get("status") == "True" for c in _l(status.get("conditions")))


def _later(cur: float | None, ts: Any) -> float | None:
    t = parse_time(ts)
    if t is None:
        return cur
    if cur is None or t > cur:
        return t
    return cur


def pod_row(pod: dict[str, Any], now: float | None = None) -> list[Any]:
    """Cells of printPod: NAME, READY, STATUS, RESTARTS, AGE, IP, NODE, NOMINATED NODE, READINESS GATES."""
    meta = _d(pod.get("metadata"))
    spec = _d(pod.get("spec"))
    status = _d(pod.get("status"))
    now = time.time() if now is None else now

    restarts = 0
    sidecar_restarts = 0
    containers = _l(spec.get("containers"))
    init_specs = _l(spec.get("initContainers"))
    total = len(containers)
    ready = 0
    last_restart: float | None = None
    last_sidecar_restart: float | None = None

    phase = status.get("phase") or ""
    reason = phase
    if status.get("reason"):
        reason = status["reason"]
    for c in _l(status.get("conditions")):
        c = _d(c)
        if c.get("type") == "PodScheduled" and c.get("reason") == POD_REASON_SCHEDULING_GATED:
            reason = POD_REASON_SCHEDULING_GATED

    inits: dict[str, dict[str, Any]] = {}
    for c in init_specs:
        c = _d(c)
        inits[c.get("name", "")] = c
        if _is_restartable_init(c):
            total += 1

    initializing = False
    for i, cs in enumerate(_l(status.get("initContainerStatuses"))):
        cs = _d(cs)
        restarts += int(cs.get("restartCount") or 0)
        last_term = _d(_d(cs.get("lastState")).get("terminated"))
        if last_term:
            last_restart = _later(last_restart, last_term.get("finishedAt"))
        spec_c = inits.get(cs.get("name", ""))
        if _is_restartable_init(spec_c):
            sidecar_restarts += int(cs.get("restartCount") or 0)
            if last_term:
                last_sidecar_restart = _later(last_sidecar_restart, last_term.get("finishedAt"))
        state = _d(cs.get("state"))
        term = state.get("terminated")
        waiting = state.get("waiting")
        if isinstance(term, dict) and int(term.get("exitCode") or 0) == 0:
            continue
        if _is_restartable_init(spec_c) and cs.get("started") is True:
            if cs.get("ready"):
                ready += 1
            continue
        if isinstance(term, dict):
            if not term.get("reason"):
                if term.get("signal"):
                    reason = f"Init:Signal:{term['signal']}"
                else:
                    reason = f"Init:ExitCode:{term.get('exitCode') or 0}"
            else:
                reason = "Init:" + term["reason"]
        elif isinstance(waiting, dict) and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or _cond_true(status, "Initialized"):
        restarts = sidecar_restarts
        last_restart = last_sidecar_restart
        has_running = False
        for cs in reversed(_l(status.get("containerStatuses"))):
            cs = _d(cs)
            restarts += int(cs.get("restartCount") or 0)
            last_term = _d(_d(cs.get("lastState")).get("terminated"))
            if last_term:
                last_restart = _later(last_restart, last_term.get("finishedAt"))
            state = _d(cs.get("state"))
            waiting = state.get("waiting")
            term = state.get("terminated")
            if isinstance(waiting, dict) and waiting.get("reason"):
                reason = waiting["reason"]
            elif isinstance(term, dict) and term.get("reason"):
                reason = term["reason"]
            elif isinstance(term, dict):
                if term.get("signal"):
                    reason = f"Signal:{term['signal']}"
                else:
                    reason = f"ExitCode:{term.get('exitCode') or 0}"
            elif cs.get("ready") and isinstance(state.get("running"), dict):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _cond_true(status, "Ready") else "NotReady"

    if meta.get("deletionTimestamp") and status.get("reason") == NODE_UNREACHABLE_POD_REASON:
        reason = "Unknown"
    elif meta.get("deletionTimestamp") and phase not in TERMINAL_PHASES:
        reason = "Terminating"

    restarts_str = str(restarts)
    if restarts != 0 and last_restart is not None:
        restarts_str = f"{restarts} ({age_since(last_restart, now)} ago)"

    pod_ips = _l(status.get("podIPs"))
    pod_ip = _d(pod_ips[0]).get("ip", "") if pod_ips else ""
    gates = _l(spec.get("readinessGates"))
    gates_str = "<none>"
    if gates:
        true_conds = 0
        for g in gates:
            ctype = _d(g).get("conditionType")
            for c in _l(status.get("conditions")):
                c = _d(c)
                if c.get("type") == ctype:
                    if c.get("status") == "True":
                        true_conds += 1
                    break
        gates_str = f"{true_conds}/{len(gates)}"
    return [
        meta.get("name", ""),
        f"{ready}/{total}",
        reason,
        restarts_str,
        age(meta.get("creationTimestamp"), now),
        pod_ip or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        gates_str,
    ]


def age_since(t: float, now: float) -> str:
    from kubelite.kinds._printing import human_duration

    return human_duration(now - t)
