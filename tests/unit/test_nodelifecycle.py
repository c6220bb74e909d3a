"""Node lifecycle and taint eviction decisions (pure functions; the controllers run in e2e)."""

from __future__ import annotations

from kubelite.controllers.nodelifecycle import desired_taints, ready_status, unknown_conditions
from kubelite.controllers.tainteviction import min_toleration_seconds, tolerates

NOW = "2026-12-02T10:00:00Z"


def node(ready: str | None, taints=None, unschedulable=False) -> dict:
    conds = [{"type": "Ready", "status": ready, "reason": "KubeletReady", "lastHeartbeatTime": "t0",
              "lastTransitionTime": "t0"}] if ready else []
    return {"metadata": {"name": "n", "creationTimestamp": "t-created"},
            "spec": {"taints": taints or [], "unschedulable": unschedulable}, "status": {"conditions": conds}}


def keys(taints):
    return sorted((t["key"], t["effect"]) for t in taints)


def test_unknown_conditions_as_upstream():
    conds = {c["type"]: c for c in unknown_conditions(node("True"), NOW)}
    assert conds["Ready"]["status"] == "Unknown" and conds["Ready"]["reason"] == "NodeStatusUnknown"
    assert conds["Ready"]["message"] == "Kubelet stopped posting node status."
    assert conds["Ready"]["lastHeartbeatTime"] == "t0" and conds["Ready"]["lastTransitionTime"] == NOW
    assert conds["MemoryPressure"]["reason"] == "NodeStatusNeverUpdated"
    assert conds["MemoryPressure"]["message"] == "Kubelet never posted node status."
    assert conds["MemoryPressure"]["lastHeartbeatTime"] == "t-created"
    assert ready_status(node(None)) == "Unknown"


def test_taints_follow_the_ready_condition():
    assert desired_taints(node("True"), False, NOW) == []
    nr = desired_taints(node("False"), False, NOW)
    assert keys(nr) == [("node.kubernetes.io/not-ready", "NoExecute"), ("node.kubernetes.io/not-ready", "NoSchedule")]
    assert next(t for t in nr if t["effect"] == "NoExecute")["timeAdded"] == NOW
    un = desired_taints(node("Unknown", taints=nr), False, "later")
    assert keys(un) == [("node.kubernetes.io/unreachable", "NoExecute"),
                        ("node.kubernetes.io/unreachable", "NoSchedule")]
    # the node is back: its condition taints go, a user's taint stays
    mine = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    assert desired_taints(node("True", taints=[*un, mine]), False, NOW) == [mine]
    # every node down: no NoExecute taint, so nothing is evicted
    assert keys(desired_taints(node("Unknown", taints=un), True, NOW)) == [("node.kubernetes.io/unreachable",
                                                                           "NoSchedule")]
    assert keys(desired_taints(node("True", unschedulable=True), False, NOW)) == [
        ("node.kubernetes.io/unschedulable", "NoSchedule")]


def test_toleration_matching_and_timing():
    unreachable = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}
    assert tolerates({"operator": "Exists"}, unreachable)
    assert tolerates({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
                     unreachable)
    assert not tolerates({"key": "other", "operator": "Exists"}, unreachable)
    assert not tolerates({"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule", "operator": "Exists"},
                         unreachable)
    assert tolerates({"key": "k", "value": "v"}, {"key": "k", "value": "v", "effect": "NoExecute"})
    assert not tolerates({"key": "k", "value": "w"}, {"key": "k", "value": "v", "effect": "NoExecute"})

    def pod(*tols):
        return {"spec": {"tolerations": list(tols)}}

    t300 = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
            "tolerationSeconds": 300}
    assert min_toleration_seconds(pod(t300), [unreachable]) == 300
    assert min_toleration_seconds(pod(t300, {**t300, "tolerationSeconds": 2}), [unreachable]) == 2
    assert min_toleration_seconds(pod({"operator": "Exists"}), [unreachable]) is None  # forever
    assert min_toleration_seconds(pod(), [unreachable]) == 0  # not tolerated: now
    assert min_toleration_seconds(pod({**t300, "tolerationSeconds": -5}), [unreachable]) == 0
