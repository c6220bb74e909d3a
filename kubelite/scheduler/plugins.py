"""Filters and failure messages of the default kube-scheduler profile, as pure functions
over :class:`PodInfo` and :class:`NodeInfo` (no I/O; scoring is in
:mod:`kubelite.scheduler.framework`, the scheduler loop in :mod:`kubelite.scheduler.scheduler`).

Filters run in the upstream order (NodeUnschedulable, NodeName, TaintToleration,
NodeAffinity, NodePorts, NodeResourcesFit, then PodTopologySpread and InterPodAffinity from
their per-cycle state) and stop at the first one that rejects a node; a rejection is a :class:`Status` whose code tells whether preemption could help
(``UNSCHEDULABLE``) or not (``UNRESOLVABLE``). Messages are upstream's, byte for byte.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from kubelite.api.quantity import parse_quantity
from kubelite.api.selectors import (
    IN,
    NOT_IN,
    LabelSelector,
    Requirement,
    SelectorError,
    label_selector_from_object,
)
from kubelite.kinds.podutil import pod_requests

Obj = dict[str, Any]

UNSCHEDULABLE = 2  # framework.Unschedulable: preemption may help
UNRESOLVABLE = 3  # framework.UnschedulableAndUnresolvable

# reasons (upstream plugin constants)
REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_NODE_NAME = "node(s) didn't match the requested node name"
REASON_TAINTS = "node(s) had untolerated taint(s)"
REASON_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
REASON_PORTS = "node(s) didn't have free ports for the requested pod ports"
REASON_TOO_MANY_PODS = "Too many pods"
REASON_NO_VICTIMS = "No preemption victims found for incoming pod"
REASON_PREEMPTION_NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_NODES_AVAILABLE = "no nodes available to schedule pods"
# The DynamicResources plugin (DRA, on by default since v1.34) runs its PostFilter before
# DefaultPreemption; for a pod without resource claims it answers this, which upstream joins
# with the preemption message: "... no new claims to deallocate, preemption: 0/1 nodes ...".
DRA_POST_FILTER_MSG = "no new claims to deallocate"
NOT_ELIGIBLE_NEVER = "not eligible due to preemptionPolicy=Never."
EVENT_MESSAGE_LIMIT = 1024

TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
# taints the node lifecycle controller derives from node conditions (TaintNodesByCondition)
_CONDITION_TAINTS = (
    ("MemoryPressure", "True", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
    ("NetworkUnavailable", "True", "node.kubernetes.io/network-unavailable"),
)

DEFAULT_MILLI_CPU_REQUEST = 100  # schedutil.DefaultMilliCPURequest (scoring only)
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024  # schedutil.DefaultMemoryRequest
MAX_NODE_SCORE = 100


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _int_value(q: Decimal, milli: bool = False) -> int:
    """Quantity.Value() / MilliValue(): rounded up to an integer."""
    return math.ceil(q * 1000) if milli else math.ceil(q)


def resource_list(rl: Any) -> dict[str, int]:
    """A ResourceList as integers: cpu in millicores, everything else in units."""
    out: dict[str, int] = {}
    for name, v in _d(rl).items():
        try:
            q = parse_quantity(v if isinstance(v, str) else str(v))
        except (ValueError, TypeError, ArithmeticError):
            continue
        out[name] = _int_value(q, milli=(name == "cpu"))
    return out


@dataclass(frozen=True)
class Status:
    code: int
    reasons: tuple[str, ...]

    @property
    def message(self) -> str:
        return ", ".join(self.reasons)


# ------------------------------------------------------------------------------------------ terms
def selector_with_keys(sel: LabelSelector, labels: dict[str, str], match_keys: Any,
                       mismatch_keys: Any = None) -> LabelSelector:
    """matchLabelKeys / mismatchLabelKeys: ``key in (pod's value)`` / ``key notin (value)``
    for each key the pod has, added to the selector (what kube-apiserver merges into the
    labelSelector at creation since v1.33; adding it again changes nothing)."""
    extra = [Requirement(str(k), IN, (labels[k],)) for k in _l(match_keys) if k in labels]
    extra += [Requirement(str(k), NOT_IN, (labels[k],)) for k in _l(mismatch_keys) if k in labels]
    if not extra or sel.nothing:
        return sel
    return LabelSelector(list(sel.requirements) + extra)


def parse_selector(obj: Any) -> LabelSelector:
    try:
        return label_selector_from_object(obj if isinstance(obj, dict) else None)
    except SelectorError:
        return LabelSelector.match_nothing()


@dataclass(frozen=True)
class AffinityTerm:
    """framework.AffinityTerm: a PodAffinityTerm with its selectors parsed; ``weight`` is the
    weight of a preferred term (0 for required ones)."""

    selector: LabelSelector
    namespaces: frozenset[str]
    ns_selector: LabelSelector
    topology_key: str
    weight: int = 0

    def matches(self, namespace: str, labels: dict[str, str], ns_labels: dict[str, str] | None) -> bool:
        """AffinityTerm.Matches: the pod's namespace is listed or selected, and its labels match."""
        if namespace in self.namespaces or self.ns_selector.empty() or (
                ns_labels is not None and self.ns_selector.matches(ns_labels)):
            return self.selector.matches(labels)
        return False

    @classmethod
    def of(cls, namespace: str, labels: dict[str, str], term: dict[str, Any], weight: int = 0) -> AffinityTerm:
        names = [str(n) for n in _l(term.get("namespaces"))]
        if not names and term.get("namespaceSelector") is None:
            names = [namespace]
        sel = selector_with_keys(parse_selector(term.get("labelSelector")), labels, term.get("matchLabelKeys"),
                                 term.get("mismatchLabelKeys"))
        return cls(sel, frozenset(names), parse_selector(term.get("namespaceSelector")),
                   str(term.get("topologyKey") or ""), weight)


def _affinity_terms(namespace: str, labels: dict[str, str], aff: dict[str, Any],
                    ) -> tuple[list[AffinityTerm], list[AffinityTerm]]:
    required = [AffinityTerm.of(namespace, labels, _d(t))
                for t in _l(aff.get("requiredDuringSchedulingIgnoredDuringExecution"))]
    preferred = [AffinityTerm.of(namespace, labels, _d(_d(t).get("podAffinityTerm")), int(_d(t).get("weight") or 0))
                 for t in _l(aff.get("preferredDuringSchedulingIgnoredDuringExecution"))
                 if isinstance(_d(t).get("weight"), int)]
    return required, preferred


# ------------------------------------------------------------------------------------------ pods
@dataclass
class PodInfo:
    uid: str
    namespace: str
    name: str
    priority: int = 0
    preemption_policy: str = "PreemptLowerPriority"
    requests: dict[str, int] = field(default_factory=dict)  # cpu in milli
    nonzero_cpu: int = 0
    nonzero_memory: int = 0
    host_ports: list[tuple[str, str, int]] = field(default_factory=list)  # (ip, protocol, port)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    node_selector: dict[str, str] = field(default_factory=dict)
    required_terms: list[dict[str, Any]] | None = None  # requiredDuringScheduling nodeSelectorTerms
    node_name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    terminating: bool = False  # deletionTimestamp set
    preferred_node_terms: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    required_affinity: list[AffinityTerm] = field(default_factory=list)
    required_anti_affinity: list[AffinityTerm] = field(default_factory=list)
    preferred_affinity: list[AffinityTerm] = field(default_factory=list)
    preferred_anti_affinity: list[AffinityTerm] = field(default_factory=list)
    spread_constraints: list[dict[str, Any]] = field(default_factory=list)
    affinity_key: str = ""  # equal for pods with the same pod (anti-)affinity terms
    start_time: float | None = None  # status.startTime (seconds since the epoch)
    preempted: bool = False  # DisruptionTarget=True with reason PreemptionByScheduler
    nominated_node: str = ""  # status.nominatedNodeName
    scheduler_name: str = "default-scheduler"

    @property
    def group_key(self) -> tuple[str, bool, frozenset[tuple[str, str]]]:
        """What label selectors and affinity terms see of a pod: pods alike in it are
        matched once per node (see NodeInfo.groups)."""
        return (self.namespace, self.terminating, frozenset(self.labels.items()))

    @property
    def has_affinity(self) -> bool:
        """Pods the InterPodAffinity scorer must look at even for a pod without terms."""
        return bool(self.required_affinity or self.required_anti_affinity or self.preferred_affinity
                    or self.preferred_anti_affinity)

    @classmethod
    def of(cls, pod: Obj) -> PodInfo:
        meta, spec = _d(pod.get("metadata")), _d(pod.get("spec"))
        reqs: dict[str, int] = {}
        for name, q in pod_requests(pod, use_status=True).items():
            reqs[name] = _int_value(q, milli=(name == "cpu"))
        nz_cpu = nz_mem = 0
        for c in _l(spec.get("containers")):
            r = resource_list(_d(_d(c).get("resources")).get("requests"))
            nz_cpu += r.get("cpu") or DEFAULT_MILLI_CPU_REQUEST
            nz_mem += r.get("memory") or DEFAULT_MEMORY_REQUEST
        nz_cpu = max(nz_cpu, reqs.get("cpu", 0))
        nz_mem = max(nz_mem, reqs.get("memory", 0))
        ports: list[tuple[str, str, int]] = []
        containers = list(_l(spec.get("containers")))
        containers += [c for c in _l(spec.get("initContainers")) if _d(c).get("restartPolicy") == "Always"]
        for c in containers:
            for p in _l(_d(c).get("ports")):
                p = _d(p)
                hp = p.get("hostPort")
                if isinstance(hp, int) and hp > 0:
                    ports.append((p.get("hostIP") or "0.0.0.0", p.get("protocol") or "TCP", hp))
        all_affinity = _d(spec.get("affinity"))
        node_affinity = _d(all_affinity.get("nodeAffinity"))
        affinity = _d(node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution"))
        terms = None
        if "nodeSelectorTerms" in affinity:
            terms = [_d(t) for t in _l(affinity.get("nodeSelectorTerms"))]
        preferred_node = []
        for t in _l(node_affinity.get("preferredDuringSchedulingIgnoredDuringExecution")):
            w, pref = _d(t).get("weight"), _d(_d(t).get("preference"))
            # nodeaffinity.newPreferredSchedulingTerms: weight 0 and empty terms are dropped
            if isinstance(w, int) and w != 0 and (pref.get("matchExpressions") or pref.get("matchFields")):
                preferred_node.append((w, pref))
        ns = meta.get("namespace") or ""
        labels = {str(k): str(v) for k, v in _d(meta.get("labels")).items()}
        req_aff, pref_aff = _affinity_terms(ns, labels, _d(all_affinity.get("podAffinity")))
        req_anti, pref_anti = _affinity_terms(ns, labels, _d(all_affinity.get("podAntiAffinity")))
        affinity_key = ""
        if req_aff or pref_aff or req_anti or pref_anti:
            affinity_key = json.dumps([ns, sorted(labels.items()), all_affinity.get("podAffinity"),
                                       all_affinity.get("podAntiAffinity")], sort_keys=True)
        prio = spec.get("priority")
        status = _d(pod.get("status"))
        return cls(
            uid=meta.get("uid") or f"{meta.get('namespace', '')}/{meta.get('name', '')}",
            namespace=meta.get("namespace") or "", name=meta.get("name") or "",
            priority=prio if isinstance(prio, int) else 0,
            preemption_policy=spec.get("preemptionPolicy") or "PreemptLowerPriority",
            requests=reqs, nonzero_cpu=nz_cpu, nonzero_memory=nz_mem, host_ports=ports,
            tolerations=[_d(t) for t in _l(spec.get("tolerations"))],
            node_selector={str(k): str(v) for k, v in _d(spec.get("nodeSelector")).items()},
            required_terms=terms, node_name=spec.get("nodeName") or "", labels=labels,
            terminating=bool(meta.get("deletionTimestamp")), preferred_node_terms=preferred_node,
            required_affinity=req_aff, required_anti_affinity=req_anti, preferred_affinity=pref_aff,
            preferred_anti_affinity=pref_anti, affinity_key=affinity_key,
            spread_constraints=[_d(c) for c in _l(spec.get("topologySpreadConstraints"))],
            start_time=_epoch(status.get("startTime")), preempted=_preempted(status),
            nominated_node=str(status.get("nominatedNodeName") or ""),
            scheduler_name=str(spec.get("schedulerName") or "default-scheduler"))


def _epoch(ts: Any) -> float | None:
    if not isinstance(ts, str) or not ts:
        return None
    try:
        return _dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _preempted(status: dict[str, Any]) -> bool:
    """podTerminatingByPreemption's condition test (the deletionTimestamp is checked apart)."""
    for c in _l(status.get("conditions")):
        c = _d(c)
        if c.get("type") == "DisruptionTarget":
            return c.get("status") == "True" and c.get("reason") == "PreemptionByScheduler"
    return False


# ------------------------------------------------------------------------------------------ nodes
@dataclass
class NodeInfo:
    """A node and what the pods bound (or assumed) to it use."""

    name: str
    node: Obj | None = None
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, Any]] = field(default_factory=list)  # effective: spec + condition taints
    unschedulable: bool = False
    allocatable: dict[str, int] = field(default_factory=dict)
    requested: Counter[str] = field(default_factory=Counter)
    nonzero_cpu: int = 0
    nonzero_memory: int = 0
    pods: dict[str, PodInfo] = field(default_factory=dict)
    ports: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    # Pods grouped as [how many, one of them]; replicas of a workload share a group, so
    # selectors and terms are evaluated once per group and node, not once per pod.
    groups: dict[Any, list[Any]] = field(default_factory=dict)  # by PodInfo.group_key
    with_affinity: dict[str, list[Any]] = field(default_factory=dict)  # PodsWithAffinity, by affinity_key
    with_required_anti: dict[str, list[Any]] = field(default_factory=dict)  # PodsWithRequiredAntiAffinity

    def set_node(self, node: Obj | None) -> None:
        self.node = node
        if node is None:
            self.labels, self.taints, self.unschedulable, self.allocatable = {}, [], False, {}
            return
        meta, spec, status = _d(node.get("metadata")), _d(node.get("spec")), _d(node.get("status"))
        self.labels = {str(k): str(v) for k, v in _d(meta.get("labels")).items()}
        self.unschedulable = bool(spec.get("unschedulable"))
        self.allocatable = resource_list(status.get("allocatable"))
        self.taints = effective_taints(node)

    @property
    def allowed_pods(self) -> int:
        return self.allocatable.get("pods", 0)

    def add_pod(self, p: PodInfo) -> None:
        if p.uid in self.pods:
            self.remove_pod(p.uid)
        self.pods[p.uid] = p
        _group_add(self.groups, p.group_key, p)
        if p.has_affinity:
            _group_add(self.with_affinity, p.affinity_key, p)
        if p.required_anti_affinity:
            _group_add(self.with_required_anti, p.affinity_key, p)
        self.requested.update(p.requests)
        self.nonzero_cpu += p.nonzero_cpu
        self.nonzero_memory += p.nonzero_memory
        self.ports.update(p.host_ports)

    def remove_pod(self, uid: str) -> PodInfo | None:
        p = self.pods.pop(uid, None)
        if p is None:
            return None
        _group_remove(self.groups, p.group_key)
        if p.has_affinity:
            _group_remove(self.with_affinity, p.affinity_key)
        if p.required_anti_affinity:
            _group_remove(self.with_required_anti, p.affinity_key)
        self.requested.subtract(p.requests)
        self.nonzero_cpu -= p.nonzero_cpu
        self.nonzero_memory -= p.nonzero_memory
        self.ports.subtract(p.host_ports)
        self.ports = +self.ports
        return p

    def copy(self) -> NodeInfo:
        """NodeInfo.Snapshot: what pods are counted is copied, the node itself is shared."""
        return NodeInfo(self.name, self.node, self.labels, self.taints, self.unschedulable, self.allocatable,
                        Counter(self.requested), self.nonzero_cpu, self.nonzero_memory, dict(self.pods),
                        Counter(self.ports), {k: list(g) for k, g in self.groups.items()},
                        {k: list(g) for k, g in self.with_affinity.items()},
                        {k: list(g) for k, g in self.with_required_anti.items()})

    def without(self, victims: Iterable[str]) -> NodeInfo:
        """A copy with the given pods removed (preemption dry run)."""
        return self.adjusted(removed=victims)

    def adjusted(self, added: Iterable[PodInfo] = (), removed: Iterable[str] = ()) -> NodeInfo:
        """A copy with pods added (nominated pods) and removed (victims)."""
        ni = self.copy()
        for uid in removed:
            ni.remove_pod(uid)
        for p in added:
            ni.add_pod(p)
        return ni


def _group_add(groups: dict[Any, list[Any]], key: Any, p: PodInfo) -> None:
    g = groups.get(key)
    if g is None:
        groups[key] = [1, p]
    else:
        g[0] += 1


def _group_remove(groups: dict[Any, list[Any]], key: Any) -> None:
    """The group's sample pod may be the one removed: what it stands for is the same."""
    g = groups[key]
    g[0] -= 1
    if g[0] == 0:
        del groups[key]


def effective_taints(node: Obj) -> list[dict[str, Any]]:
    """spec.taints plus the NoSchedule taints the node lifecycle controller would add for the
    node's conditions (not-ready, unreachable, pressure), when they are not already there."""
    taints = [_d(t) for t in _l(_d(node.get("spec")).get("taints"))]
    have = {(t.get("key"), t.get("effect")) for t in taints}
    conds = {(_d(c).get("type")): _d(c).get("status") for c in _l(_d(node.get("status")).get("conditions"))}
    extra: list[str] = []
    ready = conds.get("Ready")
    if ready == "False" or ready is None:
        extra.append("node.kubernetes.io/not-ready")
    elif ready != "True":
        extra.append("node.kubernetes.io/unreachable")
    for ctype, cstatus, key in _CONDITION_TAINTS:
        if conds.get(ctype) == cstatus:
            extra.append(key)
    for key in extra:
        if (key, "NoSchedule") not in have:
            taints.append({"key": key, "effect": "NoSchedule"})
    return taints


# ------------------------------------------------------------------------------------------ matching
def toleration_tolerates(tol: dict[str, Any], taint: dict[str, Any]) -> bool:
    """v1.Toleration.ToleratesTaint."""
    if tol.get("effect") and tol.get("effect") != taint.get("effect"):
        return False
    if tol.get("key") and tol.get("key") != taint.get("key"):
        return False
    op = tol.get("operator") or "Equal"
    if op == "Exists":
        return True
    if op == "Equal":
        return (tol.get("value") or "") == (taint.get("value") or "")
    return False


def tolerates(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    return any(toleration_tolerates(t, taint) for t in tolerations)


def _match_expression(expr: dict[str, Any], value: str | None) -> bool:
    op = expr.get("operator")
    values = [str(v) for v in _l(expr.get("values"))]
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt"):
        if value is None or len(values) != 1:
            return False
        try:
            have, want = int(value), int(values[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False


def node_selector_term_matches(term: dict[str, Any], labels: dict[str, str], name: str) -> bool:
    exprs = _l(term.get("matchExpressions"))
    fields = _l(term.get("matchFields"))
    if not exprs and not fields:
        return False  # an empty term matches no objects
    for e in exprs:
        e = _d(e)
        if not _match_expression(e, labels.get(e.get("key", ""))):
            return False
    for f in fields:
        f = _d(f)
        if f.get("key") != "metadata.name" or not _match_expression(f, name):
            return False
    return True


def matches_node_affinity(pod: PodInfo, ni: NodeInfo) -> bool:
    for k, v in pod.node_selector.items():
        if ni.labels.get(k) != v:
            return False
    if pod.required_terms is not None:
        return any(node_selector_term_matches(t, ni.labels, ni.name) for t in pod.required_terms)
    return True


def ports_conflict(want: list[tuple[str, str, int]], used: Counter[tuple[str, str, int]]) -> bool:
    """HostPortInfo.CheckConflict: 0.0.0.0 conflicts with every address on the same port."""
    if not want or not used:
        return False
    for ip, proto, port in want:
        if ip == "0.0.0.0":
            if any(u[1] == proto and u[2] == port for u in used):
                return True
        elif (ip, proto, port) in used or ("0.0.0.0", proto, port) in used:
            return True
    return False


# ------------------------------------------------------------------------------------------ filters
class Cycle(Protocol):
    """The per-cycle filters that need the whole cluster (framework.CycleState)."""

    def filter(self, ni: NodeInfo) -> Status | None: ...

    def without(self, ni: NodeInfo, victims: list[PodInfo]) -> Cycle: ...

    def adjusted(self, ni: NodeInfo, added: Iterable[PodInfo] = (), removed: Iterable[PodInfo] = ()) -> Cycle: ...


def filter_node(pod: PodInfo, ni: NodeInfo, cycle: Cycle | None = None) -> Status | None:
    """Runs the filter plugins in upstream order; None when the node fits. ``cycle`` holds
    the PreFilter state of PodTopologySpread and InterPodAffinity, which run last."""
    if ni.unschedulable and not tolerates(pod.tolerations, {"key": TAINT_UNSCHEDULABLE, "effect": "NoSchedule"}):
        return Status(UNRESOLVABLE, (REASON_UNSCHEDULABLE,))
    if pod.node_name and pod.node_name != ni.name:
        return Status(UNRESOLVABLE, (REASON_NODE_NAME,))
    for t in ni.taints:
        if t.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(pod.tolerations, t):
            return Status(UNRESOLVABLE, (REASON_TAINTS,))
    if not matches_node_affinity(pod, ni):
        return Status(UNRESOLVABLE, (REASON_AFFINITY,))
    if ports_conflict(pod.host_ports, ni.ports):
        return Status(UNSCHEDULABLE, (REASON_PORTS,))
    st = fit_resources(pod, ni)
    if st is None and cycle is not None:
        return cycle.filter(ni)
    return st


def fit_resources(pod: PodInfo, ni: NodeInfo) -> Status | None:
    """NodeResourcesFit: every reason is kept; a request larger than the node's whole
    allocatable makes the status unresolvable (preemption cannot help)."""
    reasons: list[str] = []
    unresolvable = False
    if len(ni.pods) + 1 > ni.allowed_pods:
        reasons.append(REASON_TOO_MANY_PODS)
    for name in ("cpu", "memory", "ephemeral-storage"):
        want = pod.requests.get(name, 0)
        if want > 0 and want > ni.allocatable.get(name, 0) - ni.requested.get(name, 0):
            reasons.append(f"Insufficient {name}")
            unresolvable = unresolvable or want > ni.allocatable.get(name, 0)
    for name in sorted(pod.requests):
        if name in ("cpu", "memory", "ephemeral-storage", "pods"):
            continue
        want = pod.requests[name]
        if want > 0 and want > ni.allocatable.get(name, 0) - ni.requested.get(name, 0):
            reasons.append(f"Insufficient {name}")
            unresolvable = unresolvable or want > ni.allocatable.get(name, 0)
    if not reasons:
        return None
    return Status(UNRESOLVABLE if unresolvable else UNSCHEDULABLE, tuple(reasons))


# ------------------------------------------------------------------------------------------ messages
def fit_error_message(num_all_nodes: int, statuses: dict[str, Status], absent_reason: str = "",
                      post_filter_msg: str = "", pre_filter_msg: str = "") -> str:
    """framework.FitError.Error(): "0/N nodes are available: <count reason, ...>. <post filter>".
    Reasons are counted per node and sorted as strings ("10 x" sorts before "2 y", as upstream)."""
    msg = f"0/{num_all_nodes} nodes are available:"
    counts: Counter[str] = Counter()
    if pre_filter_msg:  # a PreFilter refused the pod: its message, not the per-node copies of it
        msg += f" {pre_filter_msg}."
        statuses, absent_reason = {}, ""
    for st in statuses.values():
        counts.update(st.reasons)
    if absent_reason and len(statuses) < num_all_nodes:
        counts[absent_reason] += num_all_nodes - len(statuses)
    parts = sorted(f"{v} {k}" for k, v in counts.items())
    if parts:
        msg += f" {', '.join(parts)}."
    if post_filter_msg:
        msg += f" {post_filter_msg}"
    return msg


def truncate_event_message(msg: str) -> str:
    """schedule_one truncateMessage: events keep at most 1024 characters."""
    if len(msg) <= EVENT_MESSAGE_LIMIT:
        return msg
    return msg[:EVENT_MESSAGE_LIMIT - 3] + "..."
