"""DefaultPreemption, the PostFilter of the default profile, as pure functions over
:class:`PodInfo` / :class:`NodeInfo` (upstream pkg/scheduler/framework/plugins/defaultpreemption
and pkg/scheduler/framework/preemption): when no node fits a pod, find the nodes where evicting
pods of lower priority makes it fit, choose the fewest and least important victims on each
(SelectVictimsOnNode), pick one node (pickOneNodeForPreemption), and say why not otherwise.

The API calls that follow a choice (DisruptionTarget on each victim, its graceful deletion, the
``Preempted`` event, the preemptor's ``status.nominatedNodeName``) are the scheduler's, in
:mod:`kubelite.scheduler.scheduler`.

PodDisruptionBudgets are honoured as upstream when the caller passes them (victims whose
eviction would violate a budget are reprieved first and count against a node); kubelite has no
PodDisruptionBudget kind yet, so the scheduler passes none. Extenders do not exist here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubelite.api.selectors import LabelSelector
from kubelite.scheduler.plugins import (
    DRA_POST_FILTER_MSG,
    NO_NODES_AVAILABLE,
    NOT_ELIGIBLE_NEVER,
    REASON_NO_VICTIMS,
    REASON_PREEMPTION_NOT_HELPFUL,
    UNRESOLVABLE,
    UNSCHEDULABLE,
    Cycle,
    NodeInfo,
    PodInfo,
    Status,
    filter_node,
    fit_error_message,
    parse_selector,
)

NOT_ELIGIBLE_TERMINATING = "not eligible due to a terminating pod on the nominated node."
NO_CANDIDATE = "no candidate node for preemption"
# DefaultPreemptionArgs defaults
MIN_CANDIDATE_NODES_PERCENTAGE = 10
MIN_CANDIDATE_NODES_ABSOLUTE = 100
_MAX_INT32 = 2**31 - 1

Nominated = Mapping[str, Sequence[PodInfo]]  # node name -> pods nominated to run there


@dataclass
class Candidate:
    """A node and the pods to evict there, most important first."""

    node: str
    victims: list[PodInfo]
    pdb_violations: int = 0


@dataclass
class Outcome:
    """What PostFilter decided: a candidate to preempt on, or the message saying why not.
    ``clear_nomination`` is upstream's NominatedNodeName "" in ModeOverride: set when no
    candidate exists, so a nomination the pod had is withdrawn."""

    candidate: Candidate | None = None
    message: str = ""  # the PostFilter status message ("preemption: ..."), "" on success
    clear_nomination: bool = False
    node_statuses: dict[str, Status] = field(default_factory=dict)


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


# ------------------------------------------------------------------------------------------ order
def _start(p: PodInfo) -> float:
    """GetPodStartTime: a pod that has not started yet counts as starting now (after all others)."""
    return p.start_time if p.start_time is not None else math.inf


def importance_key(p: PodInfo) -> tuple[int, float]:
    """util.MoreImportantPod as a sort key: higher priority first, then the longer-running."""
    return (-p.priority, _start(p))


def more_important(a: PodInfo, b: PodInfo) -> bool:
    return importance_key(a) < importance_key(b)


# ------------------------------------------------------------------------------------------ filters
def nominated_on(pod: PodInfo, ni: NodeInfo, nominated: Nominated | None) -> list[PodInfo]:
    """addGENominatedPods: pods nominated to the node with a priority >= the pod's (not the pod
    itself, not pods already counted on the node)."""
    if not nominated:
        return []
    return [p for p in nominated.get(ni.name, ()) if p.uid != pod.uid and p.priority >= pod.priority
            and p.uid not in ni.pods]


def filter_with_nominated(pod: PodInfo, ni: NodeInfo, cycle: Cycle | None,
                          nominated: Nominated | None = None) -> Status | None:
    """RunFilterPluginsWithNominatedPods: the filters pass with the node's equal-or-higher
    priority nominated pods counted, and (when there were any) without them too."""
    extra = nominated_on(pod, ni, nominated)
    if extra:
        st = filter_node(pod, ni.adjusted(added=extra), cycle.adjusted(ni, added=extra) if cycle else None)
        if st is not None:
            return st
    return filter_node(pod, ni, cycle)


# ------------------------------------------------------------------------------------------ PDBs
@dataclass(frozen=True)
class DisruptionBudget:
    """What preemption reads of a policy/v1 PodDisruptionBudget."""

    namespace: str
    selector: LabelSelector
    disruptions_allowed: int
    disrupted_pods: frozenset[str]

    @classmethod
    def of(cls, pdb: dict[str, Any]) -> DisruptionBudget:
        meta, spec, status = (_d(pdb.get(k)) for k in ("metadata", "spec", "status"))
        allowed = status.get("disruptionsAllowed")
        return cls(str(meta.get("namespace") or ""), parse_selector(spec.get("selector")),
                   allowed if isinstance(allowed, int) else 0,
                   frozenset(str(k) for k in (status.get("disruptedPods") or {})))


def split_by_pdb_violation(pods: list[PodInfo], pdbs: Sequence[DisruptionBudget],
                           ) -> tuple[list[PodInfo], list[PodInfo]]:
    """filterPodsWithPDBViolation: (violating, non-violating), each in the given order."""
    allowed = [b.disruptions_allowed for b in pdbs]
    violating: list[PodInfo] = []
    fine: list[PodInfo] = []
    for p in pods:
        violated = False
        if p.labels:
            for i, b in enumerate(pdbs):
                if b.namespace != p.namespace or b.selector.empty() or b.selector.nothing \
                        or not b.selector.matches(p.labels):
                    continue
                if p.name in b.disrupted_pods:
                    continue
                allowed[i] -= 1
                if allowed[i] < 0:
                    violated = True
        (violating if violated else fine).append(p)
    return violating, fine


# ------------------------------------------------------------------------------------------ victims
def select_victims_on_node(pod: PodInfo, ni: NodeInfo, cycle: Cycle | None = None,
                           nominated: Nominated | None = None,
                           pdbs: Sequence[DisruptionBudget] = ()) -> tuple[Candidate | None, Status | None]:
    """SelectVictimsOnNode: remove every lower-priority pod; if the pod then fits, add them back
    one at a time from the most important, keeping each one that still lets the pod fit. The
    rest are the victims, most important first."""
    potential = [p for p in ni.pods.values() if p.priority < pod.priority]
    if not potential:
        return None, Status(UNRESOLVABLE, (REASON_NO_VICTIMS,))
    removed = {p.uid: p for p in potential}

    def fits() -> Status | None:
        reduced = ni.without(removed)
        sub = cycle.without(ni, list(removed.values())) if cycle is not None else None
        return filter_with_nominated(pod, reduced, sub, nominated)

    st = fits()
    if st is not None:
        return None, st
    potential.sort(key=importance_key)
    violating, fine = split_by_pdb_violation(potential, pdbs)
    victims: list[PodInfo] = []
    violations = 0
    for group, counts in ((violating, True), (fine, False)):
        for p in group:
            del removed[p.uid]  # reprieve
            if fits() is not None:
                removed[p.uid] = p
                victims.append(p)
                violations += counts
    if violating and fine:
        victims.sort(key=importance_key)
    return Candidate(ni.name, victims, violations), None


def num_candidates(num_nodes: int) -> int:
    """calculateNumCandidates with the default DefaultPreemptionArgs."""
    n = max(num_nodes * MIN_CANDIDATE_NODES_PERCENTAGE // 100, MIN_CANDIDATE_NODES_ABSOLUTE)
    return min(n, num_nodes)


def dry_run(pod: PodInfo, potential: list[NodeInfo], cycle: Cycle | None = None,
            nominated: Nominated | None = None, pdbs: Sequence[DisruptionBudget] = (),
            offset: int = 0) -> tuple[list[Candidate], dict[str, Status]]:
    """DryRunPreemption: candidates (those violating no budget first) and, for the nodes that
    are none, why. Stops once enough candidates are found, as upstream."""
    want = num_candidates(len(potential))
    good: list[Candidate] = []
    bad: list[Candidate] = []
    statuses: dict[str, Status] = {}
    for i in range(len(potential)):
        ni = potential[(offset + i) % len(potential)]
        c, st = select_victims_on_node(pod, ni, cycle, nominated, pdbs)
        if c is not None:
            (bad if c.pdb_violations else good).append(c)
            if good and len(good) + len(bad) >= want:
                break
        elif st is not None:
            statuses[ni.name] = st
    return good + bad, statuses


def pick_one_node(candidates: list[Candidate]) -> Candidate | None:
    """pickOneNodeForPreemption: fewest PDB violations, then the lowest highest-priority
    victim, the smallest sum of priorities, the fewest victims, the latest start among the
    highest-priority victims; then the first."""
    if not candidates:
        return None

    def earliest_top_start(c: Candidate) -> float:
        top = c.victims[0].priority
        starts = [_start(v) for v in c.victims if v.priority == top]
        return min(starts)  # a pod not started yet counts as starting now: the latest

    scores = (
        lambda c: -c.pdb_violations,
        lambda c: -c.victims[0].priority,
        lambda c: -sum(v.priority + _MAX_INT32 + 1 for v in c.victims),
        lambda c: -len(c.victims),
        earliest_top_start,
    )
    pool = list(candidates)
    for f in scores:
        best = max(f(c) for c in pool)
        pool = [c for c in pool if f(c) == best]
        if len(pool) == 1:
            break
    return pool[0]


# ------------------------------------------------------------------------------------------ PostFilter
def eligible(pod: PodInfo, statuses: Mapping[str, Status], nodes: Mapping[str, NodeInfo]) -> str:
    """PodEligibleToPreemptOthers: "" when the pod may preempt, else why not."""
    if pod.preemption_policy == "Never":
        return NOT_ELIGIBLE_NEVER
    nom = pod.nominated_node
    if nom:
        st = statuses.get(nom)
        if st is not None and st.code == UNRESOLVABLE:
            return ""
        ni = nodes.get(nom)
        if ni is not None and any(p.priority < pod.priority and p.terminating and p.preempted
                                  for p in ni.pods.values()):
            return NOT_ELIGIBLE_TERMINATING
    return ""


def post_filter(pod: PodInfo, statuses: Mapping[str, Status], nodes: Mapping[str, NodeInfo],
                cycle: Cycle | None = None, nominated: Nominated | None = None,
                pdbs: Sequence[DisruptionBudget] = (), offset: int = 0) -> Outcome:
    """Evaluator.Preempt with DefaultPreemption's "preemption: " prefix on every message."""
    why = eligible(pod, statuses, nodes)
    if why:
        return Outcome(message="preemption: " + why)
    potential = [nodes[n] for n in sorted(statuses) if statuses[n].code == UNSCHEDULABLE and n in nodes]
    candidates, node_statuses = dry_run(pod, potential, cycle, nominated, pdbs,
                                        offset % len(potential) if potential else 0)
    if not candidates:
        msg = fit_error_message(len(nodes), node_statuses, REASON_PREEMPTION_NOT_HELPFUL)
        return Outcome(message="preemption: " + msg, clear_nomination=True, node_statuses=node_statuses)
    best = pick_one_node(candidates)
    if best is None:
        return Outcome(message="preemption: " + NO_CANDIDATE)
    return Outcome(candidate=best)


def failure_message(pod: PodInfo, statuses: dict[str, Status], nodes: dict[str, NodeInfo],
                    dra: bool = True, cycle: Cycle | None = None, outcome: Outcome | None = None,
                    pre_filter_msg: str = "") -> str:
    """The FailedScheduling message (and PodScheduled condition message) for a pod no node
    fits: the FitError, then the PostFilter plugins' messages (DynamicResources, then
    DefaultPreemption) unless preemption found a candidate."""
    if not nodes:
        return NO_NODES_AVAILABLE
    if outcome is None:
        outcome = post_filter(pod, statuses, nodes, cycle)
    pre = outcome.message
    post = ", ".join(m for m in ((DRA_POST_FILTER_MSG if dra and pre else ""), pre) if m)
    return fit_error_message(len(nodes), statuses, post_filter_msg=post, pre_filter_msg=pre_filter_msg)
