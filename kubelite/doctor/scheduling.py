"""Why a pod is not placed on a node, in plain words: from the scheduler's FailedScheduling
message (``framework.FitError``: "0/N nodes are available: <count reason>, …. preemption: …")
and, when the nodes can be read, from running the scheduler's own filters
(:mod:`kubelite.scheduler.plugins`) again to name the taint, the label or the resource
that does not fit. Pure functions."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from kubelite.doctor.evidence import Evidence, event_time
from kubelite.doctor.report import Finding
from kubelite.kinds._printing import human_duration, parse_time
from kubelite.scheduler import framework, plugins

Obj = dict[str, Any]
SCHEDULER_GRACE = 15.0  # seconds a new pod may wait for its first scheduling attempt
RECREATE = "change the manifest and re-create the pod (kubectl delete pod {name}; kubectl apply -f …)"
_NODE_TAINTS = {
    "node.kubernetes.io/not-ready": "is not Ready",
    "node.kubernetes.io/unreachable": "is unreachable (its agent stopped reporting)",
    "node.kubernetes.io/memory-pressure": "is low on memory",
    "node.kubernetes.io/disk-pressure": "is low on disk space",
    "node.kubernetes.io/pid-pressure": "is low on process IDs",
    "node.kubernetes.io/network-unavailable": "has no pod network",
    "node.kubernetes.io/unschedulable": "is cordoned",
}


def _d(v: Any) -> Obj:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def fmt_quantity(resource: str, v: int) -> str:
    """cpu in millicores → "2", "1500m"; bytes → "256Mi", "23.5Gi"; anything else as is."""
    if resource == "cpu":
        return f"{v // 1000}" if v % 1000 == 0 else f"{v}m"
    if resource in ("memory", "ephemeral-storage") or resource.startswith("hugepages-"):
        for unit, size in (("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
            if v >= size:
                q = v / size
                return f"{q:.0f}{unit}" if v % size == 0 else f"{q:.1f}{unit}"
        return str(v)
    return str(v)


def fit_reasons(message: str) -> list[tuple[int, str]]:
    """(count, reason) of a FitError message; [] when it is not one."""
    m = re.match(r"0/(\d+) nodes are available: (.*)", message)
    if not m:
        return []
    body = m.group(2)
    cut = re.search(r"\.(\s|$)", body)
    body = body[:cut.start()] if cut else body
    out = []
    for part in body.split(", "):
        pm = re.match(r"(\d+) (.+)", part.strip())
        if pm:
            out.append((int(pm.group(1)), pm.group(2)))
    return out


def scheduler_message(pod: Obj, events: list[Obj]) -> tuple[str, float | None]:
    """The last scheduling failure: (message, when)."""
    best, when = "", None
    for c in _l(_d(pod.get("status")).get("conditions")):
        c = _d(c)
        if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("message"):
            best, when = str(c["message"]), parse_time(c.get("lastTransitionTime"))
    fails = [e for e in events if e.get("reason") == "FailedScheduling"]
    if fails:
        last = max(fails, key=event_time)
        t = event_time(last)
        if when is None or t >= when:
            best, when = str(last.get("message", "")), t
    return best, when


def _node_infos(ev: Evidence) -> dict[str, plugins.NodeInfo]:
    uid = _d(ev.pod.get("metadata")).get("uid")
    infos: dict[str, plugins.NodeInfo] = {}
    for n in ev.nodes or []:
        ni = plugins.NodeInfo(_d(n.get("metadata")).get("name", ""))
        ni.set_node(n)
        infos[ni.name] = ni
    for p in ev.node_pods or []:
        node = _d(p.get("spec")).get("nodeName")
        if node in infos and _d(p.get("metadata")).get("uid") != uid:
            infos[node].add_pod(plugins.PodInfo.of(p))
    return infos


def _toleration(t: Obj) -> str:
    parts = [f"key: {t.get('key')}"]
    if t.get("value"):
        parts += ["operator: Equal", f"value: {t.get('value')}"]
    else:
        parts.append("operator: Exists")
    parts.append(f"effect: {t.get('effect')}")
    return "{" + ", ".join(parts) + "}"


def _taint(t: Obj) -> str:
    return f"{t.get('key')}{'=' + str(t['value']) if t.get('value') else ''}:{t.get('effect')}"


def _node_condition(node: Obj | None, ctype: str = "Ready") -> str:
    for c in _l(_d(_d(node).get("status")).get("conditions")):
        c = _d(c)
        if c.get("type") == ctype:
            return f"{ctype}={c.get('status')}" + (f" ({c.get('reason')}: {c.get('message')})" if c.get("message")
                                                    else "")
    return f"no {ctype} condition"


def explain(ev: Evidence) -> list[Finding]:
    """Findings for a pod that has no node yet."""
    pod, name = ev.pod, _d(ev.pod.get("metadata")).get("name", "")
    spec = _d(pod.get("spec"))
    msg, when = scheduler_message(pod, ev.events)
    created = parse_time(_d(pod.get("metadata")).get("creationTimestamp")) or ev.now
    if not msg:
        age = ev.now - created
        sched = spec.get("schedulerName") or "default-scheduler"
        if age < SCHEDULER_GRACE:
            return [Finding("WaitingForScheduler", "info", "", f"the pod was created {human_duration(age)} ago "
                            "and waits for the scheduler to pick a node", "nothing yet: look again in a few seconds")]
        return [Finding("WaitingForScheduler", "error", "",
                        f"no scheduler has tried to place the pod in {human_duration(age)} (spec.schedulerName: "
                        f"{sched}): no scheduler is running, or none answers to that name",
                        "run a scheduler: `kubelite server` runs one (not with --disable-agent); or set "
                        "spec.schedulerName to a scheduler that runs, or spec.nodeName to bind it yourself")]
    seen = (f"scheduler: {msg}",)
    if msg == plugins.NO_NODES_AVAILABLE:
        return [Finding("NoNodes", "error", "", "there is no node to run it on: no node has registered",
                        "start a node agent (`kubelite server` runs one; `kubelite token create` prints the command "
                        "that joins another machine)", seen)]
    reasons = fit_reasons(msg)
    if not reasons:
        return [Finding("Unschedulable", "error", "", f"the scheduler cannot place it: {msg}",
                        "read the scheduler's message above; " + RECREATE.format(name=name), seen)]
    if ev.nodes is None:
        return [_from_message(count, r, name, seen) for count, r in reasons]
    pi = plugins.PodInfo.of(pod)
    infos = _node_infos(ev)
    # the whole filter chain, pod affinity and topology spreading too (namespace labels unknown here)
    cycle = framework.pre_filter(pi, {n: ni for n, ni in infos.items() if ni.node is not None}, {})
    statuses = {n: plugins.filter_node(pi, ni, cycle) for n, ni in sorted(infos.items())}
    failing = {n: st for n, st in statuses.items() if st is not None}
    if not failing and infos:
        ago = f" {human_duration(ev.now - when)} ago" if when else ""
        return [Finding("Unschedulable", "info", "", f"the scheduler's last attempt{ago} failed ({msg}), but the "
                        "nodes have changed since and one fits now", "nothing: the scheduler tries again by itself",
                        seen)]
    by_reason: dict[str, list[str]] = {}
    for n, st in failing.items():
        for r in st.reasons:
            by_reason.setdefault(r, []).append(n)
    out = []
    for r, nodes in by_reason.items():
        maker = _EXPLAIN.get(r) or (_insufficient if r.startswith("Insufficient ") else None)
        if maker is None:
            out.append(_from_message(len(nodes), r, name, seen))
        else:
            out.append(maker(r, [infos[n] for n in nodes], pi, pod, seen))
    return out


# ------------------------------------------------------------------------------------------ per reason
def _insufficient(reason: str, nodes: list[plugins.NodeInfo], pi: plugins.PodInfo, pod: Obj,
                  seen: tuple[str, ...]) -> Finding:
    res = reason.removeprefix("Insufficient ")
    want = pi.requests.get(res, 0)
    name = _d(pod.get("metadata")).get("name", "")
    details = []
    biggest = 0
    label = "CPU" if res == "cpu" else res
    for ni in nodes:
        alloc, used = ni.allocatable.get(res, 0), ni.requested.get(res, 0)
        biggest = max(biggest, alloc)
        details.append(f'node "{ni.name}" has {fmt_quantity(res, alloc)} {label} allocatable, {fmt_quantity(res, used)} '
                       f"requested by {len(ni.pods)} other pod{'' if len(ni.pods) == 1 else 's'}, "
                       f"{fmt_quantity(res, max(alloc - used, 0))} free")
    cause = (f"it requests {fmt_quantity(res, want)} {label} (resources.requests, summed over its containers) and "
             f"no node has that much free: " + "; ".join(details))
    if want > biggest:
        fix = (f"no node here can ever hold it: lower resources.requests.{res} to what the containers need (at "
               f"most {fmt_quantity(res, biggest)} fits the biggest node) — requests are what the scheduler "
               f"reserves, not a cap — then {RECREATE.format(name=name)}; or add a node with more {label}")
    else:
        fix = (f"make room: delete pods that are not needed on those nodes or lower their requests, lower this "
               f"pod's resources.requests.{res} ({RECREATE.format(name=name)}), or add a node")
    return Finding("InsufficientResources", "error", "", cause, fix, seen)


def _taints(reason: str, nodes: list[plugins.NodeInfo], pi: plugins.PodInfo, pod: Obj,
            seen: tuple[str, ...]) -> Finding:
    details, fixes, node_trouble = [], [], []
    for ni in nodes:
        bad = [t for t in ni.taints if t.get("effect") in ("NoSchedule", "NoExecute")
               and not plugins.tolerates(pi.tolerations, t)]
        for t in bad:
            key = str(t.get("key"))
            if key in _NODE_TAINTS:
                state = _node_condition(ni.node) if key in ("node.kubernetes.io/not-ready",
                                                            "node.kubernetes.io/unreachable") else ""
                node_trouble.append(f'node "{ni.name}" {_NODE_TAINTS[key]}'
                                    + (f" ({state})" if state else "") + f" — taint {_taint(t)}")
            else:
                details.append(f'node "{ni.name}" has the taint {_taint(t)}')
                fixes.append(f"kubectl taint nodes {ni.name} {_taint(t)}-")
    if node_trouble and not details:
        return Finding("NodeNotReady", "error", "", "no node can take pods now: " + "; ".join(node_trouble),
                       "bring the node back: check its agent (`kubelite server` or `kubelite agent` and its log); "
                       "the scheduler places the pod as soon as the node is Ready", seen)
    tolerations = sorted({_toleration(t) for ni in nodes for t in ni.taints
                          if str(t.get("key")) not in _NODE_TAINTS and t.get("effect") in ("NoSchedule", "NoExecute")
                          and not plugins.tolerates(pi.tolerations, t)})
    cause = ("no node will take it: " + "; ".join(details + node_trouble)
             + ", and the pod does not tolerate " + ("it" if len(details) == 1 else "them"))
    fix = ("if the pod belongs on such a node, add to its spec.tolerations: " + ", ".join(tolerations)
           + " (tolerations can be added to a running pod: kubectl edit pod " + _d(pod.get("metadata")).get("name", "")
           + "); if the node should take any pod, remove the taint: " + "; ".join(sorted(set(fixes))))
    return Finding("UntoleratedTaint", "error", "", cause, fix, seen)


def _affinity(reason: str, nodes: list[plugins.NodeInfo], pi: plugins.PodInfo, pod: Obj,
              seen: tuple[str, ...]) -> Finding:
    name = _d(pod.get("metadata")).get("name", "")
    details, labels = [], []
    for k, v in sorted(pi.node_selector.items()):
        have = [(ni.name, ni.labels.get(k)) for ni in nodes]
        shown = ", ".join(f'"{n}" has {k}={val}' if val is not None else f'"{n}" has no {k} label'
                          for n, val in have)
        details.append(f"its nodeSelector asks for {k}={v} and no node has it ({shown})")
        labels.append(f"{k}={v}")
    if pi.required_terms is not None:
        details.append("its required node affinity (spec.affinity.nodeAffinity."
                       "requiredDuringSchedulingIgnoredDuringExecution) matches no node's labels")
    fix = ""
    if labels:
        fix = (f"label a node that should run it: kubectl label nodes {nodes[0].name} {' '.join(labels)}; or fix "
               f"spec.nodeSelector: {RECREATE.format(name=name)}")
    else:
        fix = f"label a node to match, or loosen the node affinity: {RECREATE.format(name=name)}"
    return Finding("NodeSelectorMismatch", "error", "", "; ".join(details) or "no node matches the pod's node "
                   "affinity/selector", fix, seen)


def _cordoned(reason: str, nodes: list[plugins.NodeInfo], pi: plugins.PodInfo, pod: Obj,
              seen: tuple[str, ...]) -> Finding:
    names = ", ".join(f'"{ni.name}"' for ni in nodes)
    return Finding("NodeUnschedulable", "error", "", f"the nodes are cordoned (spec.unschedulable): {names}",
                   "uncordon a node when it may take pods again: " + "; ".join(
                       f"kubectl uncordon {ni.name}" for ni in nodes), seen)


def _ports(reason: str, nodes: list[plugins.NodeInfo], pi: plugins.PodInfo, pod: Obj,
           seen: tuple[str, ...]) -> Finding:
    want = ", ".join(f"{p}/{proto}" for _, proto, p in pi.host_ports)
    return Finding("HostPortConflict", "error", "", f"it asks for host port(s) {want}, which other pods already "
                   "use on every node that would take it",
                   "drop hostPort (use a Service to reach the pod), pick a free port, or add a node", seen)


def _too_many(reason: str, nodes: list[plugins.NodeInfo], pi: plugins.PodInfo, pod: Obj,
              seen: tuple[str, ...]) -> Finding:
    full = "; ".join(f'"{ni.name}" runs {len(ni.pods)} of {ni.allowed_pods} pods' for ni in nodes)
    return Finding("TooManyPods", "error", "", f"the nodes are full: {full}",
                   "delete pods that are not needed, or add a node", seen)


_EXPLAIN: dict[str, Callable[[str, list[plugins.NodeInfo], plugins.PodInfo, Obj, tuple[str, ...]], Finding]] = {
    plugins.REASON_TAINTS: _taints,
    plugins.REASON_AFFINITY: _affinity,
    plugins.REASON_UNSCHEDULABLE: _cordoned,
    plugins.REASON_PORTS: _ports,
    plugins.REASON_TOO_MANY_PODS: _too_many,
}


def _from_message(count: int, reason: str, name: str, seen: tuple[str, ...]) -> Finding:
    """Without the nodes: what the message alone says."""
    nodes = f"{count} node{'' if count == 1 else 's'}"
    if reason.startswith("Insufficient "):
        res = reason.removeprefix("Insufficient ")
        return Finding("InsufficientResources", "error", "", f"{nodes}: not enough free {res} for the pod's "
                       f"requests", f"lower resources.requests.{res} ({RECREATE.format(name=name)}), free room on "
                       "the nodes, or add a node", seen)
    if reason.startswith("node(s) had untolerated taint"):
        return Finding("UntoleratedTaint", "error", "", f"{nodes}: a taint the pod does not tolerate",
                       "add a matching toleration to spec.tolerations, or remove the taint (kubectl describe node "
                       "shows it; kubectl taint nodes NODE KEY[=VALUE]:EFFECT- removes it)", seen)
    if reason == plugins.REASON_AFFINITY:
        return Finding("NodeSelectorMismatch", "error", "", f"{nodes}: their labels do not match the pod's "
                       "nodeSelector / node affinity", "label a node (kubectl label nodes NODE KEY=VALUE) or fix "
                       f"spec.nodeSelector: {RECREATE.format(name=name)}", seen)
    if reason == plugins.REASON_UNSCHEDULABLE:
        return Finding("NodeUnschedulable", "error", "", f"{nodes}: cordoned", "kubectl uncordon NODE", seen)
    return Finding("Unschedulable", "error", "", f"{nodes}: {reason}", "see the scheduler's message", seen)
