"""InterPodAffinity, as upstream's pkg/scheduler/framework/plugins/interpodaffinity
(filtering.go, scoring.go): required pod affinity and anti-affinity of the incoming pod, the
required anti-affinity of the pods already placed (symmetry), and preferred terms as scores.

Everything is counted once per scheduling cycle (PreFilter / PreScore) into maps from a
topology pair (label key, value) to a count; Filter and Score only look the node's labels up
in them. Only nodes holding pods with required anti-affinity are visited for the symmetric
check, and only nodes holding pods with any affinity when the incoming pod has no preferred
terms, as upstream's NodeInfo lists do.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kubelite.scheduler.plugins import (
    MAX_NODE_SCORE,
    UNRESOLVABLE,
    UNSCHEDULABLE,
    AffinityTerm,
    NodeInfo,
    PodInfo,
    Status,
)

REASON_AFFINITY = "node(s) didn't match pod affinity rules"
REASON_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
REASON_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
HARD_POD_AFFINITY_WEIGHT = 1  # InterPodAffinityArgs.hardPodAffinityWeight default

Pair = tuple[str, str]
NamespaceLabels = Mapping[str, dict[str, str]]


def _bump(m: Counter[Pair], node_labels: dict[str, str], key: str, value: int) -> None:
    """topologyToMatchedTermCount.update: entries that drop to zero are removed."""
    if key in node_labels:
        pair = (key, node_labels[key])
        m[pair] += value
        if m[pair] == 0:
            del m[pair]


def _matches_all(terms: list[AffinityTerm], p: PodInfo, ns_labels: dict[str, str] | None) -> bool:
    """podMatchesAllAffinityTerms (False without terms)."""
    return bool(terms) and all(t.matches(p.namespace, p.labels, ns_labels) for t in terms)


def _with_affinity_terms(m: Counter[Pair], terms: list[AffinityTerm], p: PodInfo, ns_labels: dict[str, str] | None,
                         node_labels: dict[str, str], value: int) -> None:  # value: pods (x multiplier)
    """A pod counts for the affinity terms only when it matches all of them."""
    if _matches_all(terms, p, ns_labels):
        for t in terms:
            _bump(m, node_labels, t.topology_key, value)


def _with_anti_terms(m: Counter[Pair], terms: list[AffinityTerm], p: PodInfo, ns_labels: dict[str, str] | None,
                     node_labels: dict[str, str], value: int) -> None:
    for t in terms:
        if t.matches(p.namespace, p.labels, ns_labels):
            _bump(m, node_labels, t.topology_key, value)


@dataclass
class PreFilterState:
    pod: PodInfo
    ns_labels: dict[str, str] | None  # the incoming pod's namespace's labels
    existing_anti: Counter[Pair]  # pairs where a placed pod's required anti-affinity matches the pod
    affinity: Counter[Pair]  # pairs holding pods matching all the pod's required affinity terms
    anti: Counter[Pair]  # pairs holding pods matching one of the pod's required anti-affinity terms

    def copy(self) -> PreFilterState:
        return PreFilterState(self.pod, self.ns_labels, Counter(self.existing_anti), Counter(self.affinity),
                              Counter(self.anti))

    def update_with_pod(self, p: PodInfo, ni: NodeInfo, ns_labels: NamespaceLabels, value: int) -> None:
        """AddPod / RemovePod (preemption dry runs)."""
        _with_anti_terms(self.existing_anti, p.required_anti_affinity, self.pod, self.ns_labels, ni.labels, value)
        p_ns = ns_labels.get(p.namespace)
        _with_affinity_terms(self.affinity, self.pod.required_affinity, p, p_ns, ni.labels, value)
        _with_anti_terms(self.anti, self.pod.required_anti_affinity, p, p_ns, ni.labels, value)

    def filter(self, ni: NodeInfo) -> Status | None:
        if not self._satisfies_affinity(ni):
            return Status(UNRESOLVABLE, (REASON_AFFINITY,))
        if self.anti:
            for t in self.pod.required_anti_affinity:
                v = ni.labels.get(t.topology_key)
                if v is not None and self.anti.get((t.topology_key, v), 0) > 0:
                    return Status(UNSCHEDULABLE, (REASON_ANTI_AFFINITY,))
        if self.existing_anti:
            for pair in ni.labels.items():
                if self.existing_anti.get(pair, 0) > 0:
                    return Status(UNSCHEDULABLE, (REASON_EXISTING_ANTI_AFFINITY,))
        return None

    def _satisfies_affinity(self, ni: NodeInfo) -> bool:
        pods_exist = True
        for t in self.pod.required_affinity:
            v = ni.labels.get(t.topology_key)
            if v is None:
                return False  # every topology label must be on the node
            if self.affinity.get((t.topology_key, v), 0) <= 0:
                pods_exist = False
        if pods_exist:
            return True
        # the first of a series of pods with affinity to each other: no pod anywhere matches,
        # and the pod matches its own terms
        return not self.affinity and _matches_all(self.pod.required_affinity, self.pod, self.ns_labels)


def pre_filter(pod: PodInfo, nodes: Iterable[NodeInfo], ns_labels: NamespaceLabels) -> PreFilterState | None:
    """None when there is nothing to check (upstream's PreFilter Skip)."""
    nodes = list(nodes)
    own_ns = ns_labels.get(pod.namespace)
    existing: Counter[Pair] = Counter()
    for ni in nodes:
        for n, ep in ni.with_required_anti.values():
            _with_anti_terms(existing, ep.required_anti_affinity, pod, own_ns, ni.labels, n)
    affinity: Counter[Pair] = Counter()
    anti: Counter[Pair] = Counter()
    if pod.required_affinity or pod.required_anti_affinity:
        for ni in nodes:
            for n, ep in ni.groups.values():  # pods alike are matched once
                ep_ns = ns_labels.get(ep.namespace)
                if pod.required_affinity:
                    _with_affinity_terms(affinity, pod.required_affinity, ep, ep_ns, ni.labels, n)
                if pod.required_anti_affinity:
                    _with_anti_terms(anti, pod.required_anti_affinity, ep, ep_ns, ni.labels, n)
    if not existing and not pod.required_affinity and not pod.required_anti_affinity:
        return None
    return PreFilterState(pod, own_ns, existing, affinity, anti)


# ------------------------------------------------------------------------------------------ scoring
TopologyScore = dict[str, dict[str, int]]


def _score_terms(m: TopologyScore, terms: list[AffinityTerm], p: PodInfo, ns_labels: dict[str, str] | None,
                 node_labels: dict[str, str], multiplier: int, weight: int | None = None) -> None:
    for t in terms:
        if t.matches(p.namespace, p.labels, ns_labels) and t.topology_key in node_labels:
            by_value = m.setdefault(t.topology_key, {})
            v = node_labels[t.topology_key]
            by_value[v] = by_value.get(v, 0) + (t.weight if weight is None else weight) * multiplier


def pre_score(pod: PodInfo, nodes: Iterable[NodeInfo], ns_labels: NamespaceLabels) -> TopologyScore | None:
    """PreScore: weights per topology pair; None when no pod contributes (Skip)."""
    has_terms = bool(pod.preferred_affinity or pod.preferred_anti_affinity)
    own_ns = ns_labels.get(pod.namespace)
    m: TopologyScore = {}
    for ni in nodes:
        if not ni.labels:
            continue
        if has_terms:  # the pod's terms against every pod: pods alike are matched once
            for n, ep in ni.groups.values():
                ep_ns = ns_labels.get(ep.namespace)
                _score_terms(m, pod.preferred_affinity, ep, ep_ns, ni.labels, n)
                _score_terms(m, pod.preferred_anti_affinity, ep, ep_ns, ni.labels, -n)
        for n, ep in ni.with_affinity.values():  # the placed pods' terms against the pod
            _score_terms(m, ep.required_affinity, pod, own_ns, ni.labels, n, HARD_POD_AFFINITY_WEIGHT)
            _score_terms(m, ep.preferred_affinity, pod, own_ns, ni.labels, n)
            _score_terms(m, ep.preferred_anti_affinity, pod, own_ns, ni.labels, -n)
    return m or None


def score(state: TopologyScore, ni: NodeInfo) -> int:
    return sum(by_value.get(ni.labels[key], 0) for key, by_value in state.items() if key in ni.labels)


def normalize(scores: dict[str, int]) -> dict[str, int]:
    """NormalizeScore: min..max mapped to 0..100 (all 0 when every node scores the same)."""
    if not scores:
        return scores
    lo, hi = min(scores.values()), max(scores.values())
    diff = hi - lo
    return {n: (math.floor(MAX_NODE_SCORE * ((s - lo) / diff)) if diff > 0 else 0) for n, s in scores.items()}
