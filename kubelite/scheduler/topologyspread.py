"""PodTopologySpread, as upstream's pkg/scheduler/framework/plugins/podtopologyspread
(filtering.go, scoring.go, common.go): ``topologySpreadConstraints`` with
``whenUnsatisfiable: DoNotSchedule`` filter nodes, ``ScheduleAnyway`` ones score them.

Pods matching each constraint are counted once per cycle per topology value (PreFilter /
PreScore); Filter compares a node's domain with the global minimum (the critical path).
Defaults as upstream: minDomains 1, nodeAffinityPolicy Honor, nodeTaintsPolicy Ignore;
matchLabelKeys add ``key in (value)`` for the pod's own labels. The cluster-level default
constraints (for pods of Services and ReplicaSets without constraints of their own) are not
applied: they need the owners' selectors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from kubelite.api.selectors import LabelSelector
from kubelite.scheduler.plugins import (
    MAX_NODE_SCORE,
    UNRESOLVABLE,
    UNSCHEDULABLE,
    NodeInfo,
    PodInfo,
    Status,
    matches_node_affinity,
    parse_selector,
    selector_with_keys,
    tolerates,
)

REASON_CONSTRAINTS = "node(s) didn't match pod topology spread constraints"
REASON_MISSING_LABEL = REASON_CONSTRAINTS + " (missing required label)"
HOSTNAME = "kubernetes.io/hostname"
_MAX_INT32 = 2**31 - 1


@dataclass(frozen=True)
class Constraint:
    max_skew: int
    topology_key: str
    selector: LabelSelector
    min_domains: int = 1
    node_affinity_policy: str = "Honor"
    node_taints_policy: str = "Ignore"

    def includes(self, pod: PodInfo, ni: NodeInfo) -> bool:
        """matchNodeInclusionPolicies: whether the node's pods count for the constraint."""
        if self.node_affinity_policy == "Honor" and not matches_node_affinity(pod, ni):
            return False
        if self.node_taints_policy == "Honor":
            for t in ni.taints:
                if t.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(pod.tolerations, t):
                    return False
        return True


def constraints(pod: PodInfo, action: str) -> list[Constraint]:
    out = []
    for c in pod.spread_constraints:
        if c.get("whenUnsatisfiable") != action:
            continue
        sel = selector_with_keys(parse_selector(c.get("labelSelector")), pod.labels, c.get("matchLabelKeys"))
        skew, md = c.get("maxSkew"), c.get("minDomains")
        out.append(Constraint(skew if isinstance(skew, int) else 1, str(c.get("topologyKey") or ""), sel,
                              md if isinstance(md, int) else 1, c.get("nodeAffinityPolicy") or "Honor",
                              c.get("nodeTaintsPolicy") or "Ignore"))
    return out


def _has_keys(labels: dict[str, str], cs: list[Constraint]) -> bool:
    """nodeLabelsMatchSpreadConstraints."""
    return all(c.topology_key in labels for c in cs)


def count_matching(ni: NodeInfo, sel: LabelSelector, namespace: str) -> int:
    """countPodsMatchSelector: terminating pods and other namespaces do not count."""
    return sum(n for n, p in ni.groups.values()
               if not p.terminating and p.namespace == namespace and sel.matches(p.labels))


@dataclass
class PreFilterState:
    pod: PodInfo
    constraints: list[Constraint]
    counts: list[dict[str, int]]  # per constraint: topology value -> matching pods
    minimum: list[int]  # per constraint: the critical path's match count

    def copy(self) -> PreFilterState:
        return PreFilterState(self.pod, self.constraints, [dict(c) for c in self.counts], list(self.minimum))

    def _recompute(self, i: int) -> None:
        self.minimum[i] = min(self.counts[i].values(), default=_MAX_INT32)

    def update_with_pod(self, p: PodInfo, ni: NodeInfo, delta: int) -> None:
        """AddPod / RemovePod (preemption dry runs)."""
        if p.namespace != self.pod.namespace or not _has_keys(ni.labels, self.constraints):
            return
        for i, c in enumerate(self.constraints):
            if not c.selector.matches(p.labels) or not c.includes(self.pod, ni):
                continue
            v = ni.labels[c.topology_key]
            self.counts[i][v] = self.counts[i].get(v, 0) + delta
            self._recompute(i)

    def filter(self, ni: NodeInfo) -> Status | None:
        for i, c in enumerate(self.constraints):
            value = ni.labels.get(c.topology_key)
            if value is None:
                return Status(UNRESOLVABLE, (REASON_MISSING_LABEL,))
            minimum = self.minimum[i]
            if len(self.counts[i]) < c.min_domains:
                minimum = 0  # fewer domains than minDomains: the global minimum is 0
            self_match = 1 if c.selector.matches(self.pod.labels) else 0
            if self.counts[i].get(value, 0) + self_match - minimum > c.max_skew:
                return Status(UNSCHEDULABLE, (REASON_CONSTRAINTS,))
        return None


def pre_filter(pod: PodInfo, nodes: Iterable[NodeInfo]) -> PreFilterState | None:
    cs = constraints(pod, "DoNotSchedule")
    if not cs:
        return None
    counts: list[dict[str, int]] = [{} for _ in cs]
    for ni in nodes:
        if not _has_keys(ni.labels, cs):
            continue
        for i, c in enumerate(cs):
            if not c.includes(pod, ni):
                continue
            v = ni.labels[c.topology_key]
            counts[i][v] = counts[i].get(v, 0) + count_matching(ni, c.selector, pod.namespace)
    state = PreFilterState(pod, cs, counts, [_MAX_INT32] * len(cs))
    for i in range(len(cs)):
        state._recompute(i)
    return state


# ------------------------------------------------------------------------------------------ scoring
@dataclass
class PreScoreState:
    constraints: list[Constraint]
    ignored: set[str]  # feasible nodes without every topology key
    counts: list[dict[str, int]]  # per constraint: value -> matching pods (not for hostname)
    weights: list[float]  # topologyNormalizingWeight per constraint


def pre_score(pod: PodInfo, feasible: list[NodeInfo], all_nodes: Iterable[NodeInfo]) -> PreScoreState | None:
    cs = constraints(pod, "ScheduleAnyway")
    if not cs:
        return None
    ignored: set[str] = set()
    counts: list[dict[str, int]] = [{} for _ in cs]
    for ni in feasible:
        if not _has_keys(ni.labels, cs):
            ignored.add(ni.name)
            continue
        for i, c in enumerate(cs):
            if c.topology_key != HOSTNAME:
                counts[i].setdefault(ni.labels[c.topology_key], 0)
    weights = []
    for i, c in enumerate(cs):
        size = len(feasible) - len(ignored) if c.topology_key == HOSTNAME else len(counts[i])
        weights.append(math.log(size + 2))
    for ni in all_nodes:
        if not _has_keys(ni.labels, cs):
            continue
        for i, c in enumerate(cs):
            if c.topology_key == HOSTNAME or not c.includes(pod, ni):
                continue
            v = ni.labels[c.topology_key]
            if v in counts[i]:  # only domains of feasible nodes
                counts[i][v] += count_matching(ni, c.selector, pod.namespace)
    return PreScoreState(cs, ignored, counts, weights)


def score(state: PreScoreState, pod: PodInfo, ni: NodeInfo) -> int:
    if ni.name in state.ignored:
        return 0
    total = 0.0
    for i, c in enumerate(state.constraints):
        if c.topology_key not in ni.labels:
            continue
        if c.topology_key == HOSTNAME:
            cnt = count_matching(ni, c.selector, pod.namespace)
        else:
            cnt = state.counts[i][ni.labels[c.topology_key]]
        total += cnt * state.weights[i] + (c.max_skew - 1)  # scoreForCount
    return _go_round(total)


def _go_round(x: float) -> int:
    """math.Round: half away from zero."""
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def normalize(state: PreScoreState, scores: dict[str, int]) -> dict[str, int]:
    """Fewer matching pods score higher; ignored nodes score 0."""
    valid = {n: s for n, s in scores.items() if n not in state.ignored}
    lo = min(valid.values(), default=0)
    hi = max(valid.values(), default=0)
    out = {}
    for n, s in scores.items():
        if n in state.ignored:
            out[n] = 0
        elif hi == 0:
            out[n] = MAX_NODE_SCORE
        else:
            out[n] = MAX_NODE_SCORE * (hi + lo - s) // hi
    return out
