"""DefaultPreemption: victim selection, node choice, eligibility and the scheduler's API calls
(cases after upstream's default_preemption_test.go)."""

from __future__ import annotations

import asyncio
from typing import Any

from kubelite.scheduler import Scheduler, framework
from kubelite.scheduler.plugins import UNRESOLVABLE, NodeInfo, PodInfo, Status, filter_node
from kubelite.scheduler.preemption import (
    NOT_ELIGIBLE_TERMINATING,
    Candidate,
    DisruptionBudget,
    failure_message,
    filter_with_nominated,
    pick_one_node,
    post_filter,
    select_victims_on_node,
    split_by_pdb_violation,
)


def node(name: str, cpu: str = "2", pods: str = "110") -> NodeInfo:
    ni = NodeInfo(name)
    ni.set_node({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}, "spec": {},
                 "status": {"allocatable": {"cpu": cpu, "memory": "4Gi", "pods": pods},
                            "conditions": [{"type": "Ready", "status": "True"}]}})
    return ni


def pod_obj(name: str, cpu: str = "", priority: int = 0, start: str | None = None, labels: dict | None = None,
            **spec: Any) -> dict:
    c: dict[str, Any] = {"name": "c", "image": "x"}
    if cpu:
        c["resources"] = {"requests": {"cpu": cpu}}
    status: dict[str, Any] = {"phase": "Running" if start else "Pending"}
    if start:
        status["startTime"] = start
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "ns", "uid": name, "labels": labels or {}},
            "spec": {"containers": [c], "priority": priority, **spec}, "status": status}


def pod(name: str, cpu: str = "", priority: int = 0, start: str | None = None, **kw: Any) -> PodInfo:
    return PodInfo.of(pod_obj(name, cpu, priority, start, **kw))


def names(c: Candidate | None) -> list[str]:
    assert c is not None
    return [v.name for v in c.victims]


def test_fewest_and_least_important_victims():
    n = node("n")
    n.add_pod(pod("a", "500m", 0, "2026-01-01T00:00:00Z"))
    n.add_pod(pod("b", "500m", 5, "2026-01-01T00:00:00Z"))
    n.add_pod(pod("c", "1", 10, "2026-01-01T00:00:00Z"))
    # 1 CPU wanted: the most important (c) is reprieved first and fits; b and a must go
    c, st = select_victims_on_node(pod("p", "1", 100), n)
    assert st is None and names(c) == ["b", "a"]
    # 500m wanted: c and b are reprieved, only a goes
    c, st = select_victims_on_node(pod("p", "500m", 100), n)
    assert names(c) == ["a"]
    # pods of equal or higher priority are never victims
    c, st = select_victims_on_node(pod("p", "1500m", 5), n)
    assert c is None and st == Status(2, ("Insufficient cpu",))
    c, st = select_victims_on_node(pod("p", "1", 0), n)
    assert c is None and st == Status(UNRESOLVABLE, ("No preemption victims found for incoming pod",))


def test_equal_priority_victims_the_youngest_goes_first():
    n = node("n")
    n.add_pod(pod("old", "1", 0, "2026-01-01T00:00:00Z"))
    n.add_pod(pod("young", "1", 0, "2026-01-02T00:00:00Z"))
    c, _ = select_victims_on_node(pod("p", "1", 100), n)
    assert names(c) == ["young"]  # the longer-running pod is more important and reprieved


def test_pick_one_node_order():
    low, mid = pod("low", priority=1), pod("mid", priority=5)
    # the lowest highest-priority victim wins
    assert pick_one_node([Candidate("n1", [mid]), Candidate("n2", [low, low])]).node == "n2"
    # then the smallest sum of priorities
    assert pick_one_node([Candidate("n1", [mid, mid]), Candidate("n2", [mid, low])]).node == "n2"
    # then the fewest victims (negative priorities are shifted before summing, as upstream)
    neg = pod("neg", priority=-10)
    assert pick_one_node([Candidate("n1", [neg, neg]), Candidate("n2", [neg])]).node == "n2"
    # then the fewest PDB violations first of all
    assert pick_one_node([Candidate("n1", [low], 1), Candidate("n2", [mid])]).node == "n2"
    # then the latest start of the highest-priority victims
    early, late = pod("e", start="2026-01-01T00:00:00Z"), pod("l", start="2026-01-02T00:00:00Z")
    assert pick_one_node([Candidate("n1", [early]), Candidate("n2", [late])]).node == "n2"
    assert pick_one_node([Candidate("n1", [late]), Candidate("n2", [late])]).node == "n1"
    assert pick_one_node([]) is None


def test_post_filter_picks_a_node_and_messages_otherwise():
    n1, n2 = node("n1"), node("n2")
    n1.add_pod(pod("v1", "1500m", 10))
    n2.add_pod(pod("v2", "1500m", 1))
    nodes = {"n1": n1, "n2": n2}
    p = pod("p", "1", 100)
    statuses = {n: st for n, ni in nodes.items() if (st := filter_node(p, ni)) is not None}
    out = post_filter(p, statuses, nodes)
    assert out.candidate is not None and out.candidate.node == "n2" and names(out.candidate) == ["v2"]
    assert out.message == ""
    assert failure_message(p, statuses, nodes, outcome=out) == "0/2 nodes are available: 2 Insufficient cpu."
    never = pod("never", "1", 100, preemptionPolicy="Never")
    out = post_filter(never, statuses, nodes)
    assert out.candidate is None and out.message == "preemption: not eligible due to preemptionPolicy=Never."
    assert not out.clear_nomination
    low = pod("low", "1", 1)
    out = post_filter(low, statuses, nodes)
    assert out.candidate is None and out.clear_nomination
    assert failure_message(low, statuses, nodes, dra=False, outcome=out) == (
        "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: "
        "2 No preemption victims found for incoming pod.")


def test_not_eligible_while_a_victim_terminates_on_the_nominated_node():
    n = node("n")
    victim = pod_obj("v", "1500m", 0, "2026-01-01T00:00:00Z")
    victim["metadata"]["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    victim["status"]["conditions"] = [{"type": "DisruptionTarget", "status": "True",
                                       "reason": "PreemptionByScheduler"}]
    n.add_pod(PodInfo.of(victim))
    p = PodInfo.of({**pod_obj("p", "1", 100), "status": {"nominatedNodeName": "n"}})
    statuses = {"n": filter_node(p, n)}
    out = post_filter(p, statuses, {"n": n})
    assert out.candidate is None and out.message == "preemption: " + NOT_ELIGIBLE_TERMINATING
    assert failure_message(p, statuses, {"n": n}, outcome=out) == (
        "0/1 nodes are available: 1 Insufficient cpu. no new claims to deallocate, preemption: "
        "not eligible due to a terminating pod on the nominated node.")


def test_nominated_pods_hold_their_room():
    n = node("n")
    n.add_pod(pod("a", "1", 0))
    nominated = {"n": [pod("nom", "1", 50)]}
    # a lower-priority pod does not get the room a higher-priority nominated pod waits for
    assert filter_with_nominated(pod("low", "1", 10), n, None, nominated) == Status(2, ("Insufficient cpu",))
    assert filter_with_nominated(pod("high", "1", 50), n, None, nominated) == Status(2, ("Insufficient cpu",))
    assert filter_with_nominated(pod("nom", "1", 50), n, None, nominated) is None  # not itself
    assert filter_with_nominated(pod("low", "1", 10), n, None, {}) is None
    # preemption counts the nominated pod: evicting "a" is not enough for a 2-CPU pod
    c, st = select_victims_on_node(pod("p", "2", 10), n, None, nominated)
    assert c is None and st is not None


def test_pdb_violating_victims_are_reprieved_first():
    pdb = DisruptionBudget.of({"metadata": {"namespace": "ns"}, "spec": {"selector": {"matchLabels": {"app": "db"}}},
                               "status": {"disruptionsAllowed": 0}})
    db = pod("db", "1", 0, "2026-01-01T00:00:00Z", labels={"app": "db"})
    web = pod("web", "1", 0, "2026-01-02T00:00:00Z", labels={"app": "web"})
    assert split_by_pdb_violation([db, web], [pdb]) == ([db], [web])
    n = node("n")
    n.add_pod(db)
    n.add_pod(web)
    c, _ = select_victims_on_node(pod("p", "1", 100), n, pdbs=[pdb])
    assert names(c) == ["web"] and c is not None and c.pdb_violations == 0
    c, _ = select_victims_on_node(pod("p", "2", 100), n, pdbs=[pdb])
    assert names(c) == ["db", "web"] and c is not None and c.pdb_violations == 1


def test_victims_with_pod_anti_affinity_state():
    """Victims removed from the PreFilter state too: a pod with required anti-affinity to
    a lower-priority pod fits once that pod is gone."""
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    n = node("n")
    n.add_pod(pod("x", "", 0, labels={"app": "x"}))
    n.add_pod(pod("y", "", 0, labels={"app": "y"}))
    p = pod("p", "", 100, affinity=anti)
    cycle = framework.pre_filter(p, {"n": n}, {})
    assert filter_node(p, n, cycle) is not None
    c, st = select_victims_on_node(p, n, cycle)
    assert st is None and names(c) == ["x"]


class _Client:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    async def create(self, api_version: str, plural: str, obj: Any, namespace: str = "", **kw: Any) -> Any:
        self.calls.append(("create", plural, obj))
        return {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}

    async def patch(self, api_version: str, plural: str, name: str, patch: Any, namespace: str = "",
                    **kw: Any) -> Any:
        self.calls.append(("patch", name, patch))
        return {}

    async def request(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        self.calls.append((method, path, body))
        return {}

    async def delete(self, api_version: str, plural: str, name: str, namespace: str = "", **kw: Any) -> Any:
        self.calls.append(("delete", name, kw))
        return {}


async def test_scheduler_preempts_nominates_and_waits():
    client = _Client()
    s = Scheduler(client, seed=1)  # type: ignore[arg-type]
    s._on_node("ADDED", {"metadata": {"name": "n"}, "spec": {},
                         "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                                    "conditions": [{"type": "Ready", "status": "True"}]}})
    victim = {**pod_obj("victim", "1500m", 0, "2026-01-01T00:00:00Z"), "spec": {
        **pod_obj("victim", "1500m")["spec"], "nodeName": "n"}}
    victim["metadata"]["generation"] = 1
    s._on_pod("ADDED", victim)
    hi = pod_obj("hi", "1", 1000)
    s._on_pod("ADDED", hi)
    assert s.schedule_one("hi", hi) is None
    assert s._nominated == {"hi": "n"} and "hi" in s._preempting
    await asyncio.gather(*s._tasks)
    await s.recorder.flush()
    patches = [c for c in client.calls if c[0] == "patch"]
    cond = next(p[2]["status"]["conditions"][0] for p in patches if p[1] == "victim")
    assert {k: cond[k] for k in ("type", "status", "reason", "message", "observedGeneration")} == {
        "type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
        "message": "default-scheduler: preempting to accommodate a higher priority pod", "observedGeneration": 1}
    assert ("delete", "victim", {}) in client.calls
    hi_status = next(p[2]["status"] for p in patches if p[1] == "hi")
    assert hi_status["nominatedNodeName"] == "n"
    assert hi_status["conditions"][0]["message"] == "0/1 nodes are available: 1 Insufficient cpu."
    ev = next(c[2] for c in client.calls if c[0] == "create" and c[2]["reason"] == "Preempted")
    assert ev["type"] == "Normal" and ev["message"] == "Preempted by pod hi on node n"
    assert ev["involvedObject"]["name"] == "victim" and ev["related"]["name"] == "hi"
    assert ev["action"] == "Preempting"
    assert "hi" not in s._preempting
    # the victim terminates: the preemptor waits and says why
    victim["metadata"]["deletionTimestamp"] = "2026-01-01T00:05:00Z"
    victim["status"]["conditions"] = [cond]
    s._on_pod("MODIFIED", victim)
    hi["status"]["nominatedNodeName"] = "n"
    s._on_pod("MODIFIED", hi)
    assert s.schedule_one("hi", hi) is None
    await asyncio.gather(*s._tasks)
    assert s.preemptions == 1
    # a lower-priority pod cannot take the room once the victim is gone
    s._on_pod("DELETED", victim)
    low = pod_obj("low", "1500m", 10)
    s._on_pod("ADDED", low)
    assert s.schedule_one("low", low) is None
    await asyncio.gather(*s._tasks)
    assert s.schedule_one("hi", hi) == "n"
    assert "hi" not in s._nominated
