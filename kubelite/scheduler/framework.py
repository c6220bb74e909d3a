"""One scheduling cycle of the default profile, as upstream's framework runtime: PreFilter
state computed once per cycle, filters per node, score plugins with their weights and
normalization, and the host choice.

Score plugins and weights (pkg/scheduler/apis/config/v1/default_plugins.go): TaintToleration
3, NodeAffinity 2, NodeResourcesFit (LeastAllocated, cpu and memory weight 1) 1,
PodTopologySpread 2, InterPodAffinity 2, NodeResourcesBalancedAllocation 1. ImageLocality
and VolumeBinding are not run. Each plugin's scores are normalized to 0..100 over the
feasible nodes, multiplied by its weight and summed; the highest total wins, ties are broken
at random (upstream's reservoir sampling), which is what spreads pods over equal nodes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kubelite.scheduler import interpodaffinity, topologyspread
from kubelite.scheduler.plugins import (
    MAX_NODE_SCORE,
    NodeInfo,
    PodInfo,
    Status,
    node_selector_term_matches,
    tolerates,
)

NamespaceLabels = Mapping[str, dict[str, str]]

WEIGHT_TAINT_TOLERATION = 3
WEIGHT_NODE_AFFINITY = 2
WEIGHT_RESOURCES_FIT = 1
WEIGHT_TOPOLOGY_SPREAD = 2
WEIGHT_INTER_POD_AFFINITY = 2
WEIGHT_BALANCED_ALLOCATION = 1


@dataclass
class CycleState:
    """What PreFilter computed for one pod over the whole cluster."""

    pod: PodInfo
    ns_labels: NamespaceLabels
    spread: topologyspread.PreFilterState | None = None
    affinity: interpodaffinity.PreFilterState | None = None

    def filter(self, ni: NodeInfo) -> Status | None:
        """The filters after NodeResourcesFit: PodTopologySpread, then InterPodAffinity."""
        if self.spread is not None and (st := self.spread.filter(ni)) is not None:
            return st
        if self.affinity is not None and (st := self.affinity.filter(ni)) is not None:
            return st
        return None

    def without(self, ni: NodeInfo, victims: list[PodInfo]) -> CycleState:
        """The state with the victims removed from the node (RemovePod, preemption)."""
        return self.adjusted(ni, removed=victims)

    def adjusted(self, ni: NodeInfo, added: Iterable[PodInfo] = (), removed: Iterable[PodInfo] = ()) -> CycleState:
        """The state with pods added to the node (AddPod: nominated pods) and removed from it
        (RemovePod: preemption victims)."""
        spread = self.spread.copy() if self.spread is not None else None
        affinity = self.affinity.copy() if self.affinity is not None else None
        for delta, pods in ((-1, removed), (1, added)):
            for p in pods:
                if spread is not None:
                    spread.update_with_pod(p, ni, delta)
                if affinity is not None:
                    affinity.update_with_pod(p, ni, self.ns_labels, delta)
        return CycleState(self.pod, self.ns_labels, spread, affinity)


def pre_filter(pod: PodInfo, nodes: Mapping[str, NodeInfo], ns_labels: NamespaceLabels,
               with_required_anti: Iterable[NodeInfo] | None = None) -> CycleState:
    """``with_required_anti``: the nodes holding pods with required anti-affinity (the
    snapshot's list); a pod without required terms of its own needs to visit only those."""
    affinity_nodes: Iterable[NodeInfo] = nodes.values()
    if with_required_anti is not None and not (pod.required_affinity or pod.required_anti_affinity):
        affinity_nodes = with_required_anti
    return CycleState(pod, ns_labels, topologyspread.pre_filter(pod, nodes.values()),
                      interpodaffinity.pre_filter(pod, affinity_nodes, ns_labels))


# ------------------------------------------------------------------------------------------ scores
def default_normalize(scores: dict[str, int], reverse: bool = False) -> dict[str, int]:
    """helper.DefaultNormalizeScore."""
    top = max(scores.values(), default=0)
    if top == 0:
        return {n: MAX_NODE_SCORE for n in scores} if reverse else scores
    out = {}
    for n, s in scores.items():
        s = MAX_NODE_SCORE * s // top
        out[n] = MAX_NODE_SCORE - s if reverse else s
    return out


def taint_toleration_score(pod: PodInfo, ni: NodeInfo) -> int:
    """Untolerated PreferNoSchedule taints (tolerations without effect count too)."""
    tols = [t for t in pod.tolerations if t.get("effect") in (None, "", "PreferNoSchedule")]
    return sum(1 for t in ni.taints if t.get("effect") == "PreferNoSchedule" and not tolerates(tols, t))


def node_affinity_score(pod: PodInfo, ni: NodeInfo) -> int:
    return sum(w for w, term in pod.preferred_node_terms if node_selector_term_matches(term, ni.labels, ni.name))


def _least_requested(requested: int, capacity: int) -> int:
    if capacity == 0 or requested > capacity:
        return 0
    return (capacity - requested) * MAX_NODE_SCORE // capacity


def least_allocated_score(pod: PodInfo, ni: NodeInfo) -> int:
    """NodeResourcesFit LeastAllocated over cpu and memory (weight 1 each), with the
    non-zero defaults (100m, 200Mi) for containers without requests."""
    total = weights = 0
    for want, used, cap in ((pod.nonzero_cpu, ni.nonzero_cpu, ni.allocatable.get("cpu", 0)),
                            (pod.nonzero_memory, ni.nonzero_memory, ni.allocatable.get("memory", 0))):
        if cap == 0:
            continue
        total += _least_requested(used + want, cap)
        weights += 1
    return total // weights if weights else 0


def balanced_allocation_score(pod: PodInfo, ni: NodeInfo) -> int:
    """NodeResourcesBalancedAllocation: 1 - std of the cpu and memory fractions (the pod's
    real requests, no defaults), capped at 1 each."""
    fractions = []
    for name in ("cpu", "memory"):
        cap = ni.allocatable.get(name, 0)
        if cap == 0:
            continue
        fractions.append(min((ni.requested.get(name, 0) + pod.requests.get(name, 0)) / cap, 1.0))
    std = 0.0
    if len(fractions) == 2:
        std = abs((fractions[0] - fractions[1]) / 2)
    return int((1 - std) * MAX_NODE_SCORE)


def score_nodes(pod: PodInfo, feasible: list[NodeInfo], nodes: Mapping[str, NodeInfo],
                ns_labels: NamespaceLabels, with_affinity: Iterable[NodeInfo] | None = None) -> dict[str, int]:
    """The weighted sum of every score plugin's normalized scores, per feasible node."""
    total = {ni.name: 0 for ni in feasible}

    def add(scores: dict[str, int], weight: int) -> None:
        for n, s in scores.items():
            total[n] += s * weight

    add(default_normalize({ni.name: taint_toleration_score(pod, ni) for ni in feasible}, reverse=True),
        WEIGHT_TAINT_TOLERATION)
    if pod.preferred_node_terms:
        add(default_normalize({ni.name: node_affinity_score(pod, ni) for ni in feasible}), WEIGHT_NODE_AFFINITY)
    add({ni.name: least_allocated_score(pod, ni) for ni in feasible}, WEIGHT_RESOURCES_FIT)
    spread = topologyspread.pre_score(pod, feasible, nodes.values())
    if spread is not None:
        add(topologyspread.normalize(spread, {ni.name: topologyspread.score(spread, pod, ni) for ni in feasible}),
            WEIGHT_TOPOLOGY_SPREAD)
    affinity_nodes: Iterable[NodeInfo] = nodes.values()
    if with_affinity is not None and not (pod.preferred_affinity or pod.preferred_anti_affinity):
        affinity_nodes = with_affinity  # only placed pods' terms count: the nodes that have some
    affinity = interpodaffinity.pre_score(pod, affinity_nodes, ns_labels)
    if affinity is not None:
        add(interpodaffinity.normalize({ni.name: interpodaffinity.score(affinity, ni) for ni in feasible}),
            WEIGHT_INTER_POD_AFFINITY)
    if pod.requests.get("cpu", 0) or pod.requests.get("memory", 0):  # best-effort pods: Skip
        add({ni.name: balanced_allocation_score(pod, ni) for ni in feasible}, WEIGHT_BALANCED_ALLOCATION)
    return total


def select_host(pod: PodInfo, feasible: list[NodeInfo], nodes: Mapping[str, NodeInfo] | None = None,
                ns_labels: NamespaceLabels | None = None, rng: random.Random | None = None,
                with_affinity: Iterable[NodeInfo] | None = None) -> NodeInfo:
    """The feasible node with the highest score; among equal scores one at random."""
    if len(feasible) == 1:
        return feasible[0]
    if nodes is None:
        nodes = {ni.name: ni for ni in feasible}
    scores = score_nodes(pod, feasible, nodes, ns_labels or {}, with_affinity)
    best = max(scores.values(), default=-math.inf)
    top = [ni for ni in feasible if scores[ni.name] == best]
    return top[0] if len(top) == 1 else (rng or random).choice(top)
