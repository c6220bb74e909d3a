"""Scheduler plugins: filters, scoring, FitError messages (counting and sorting as upstream)."""

from __future__ import annotations

import random
from typing import Any

from kubelite.scheduler import plugins
from kubelite.scheduler.framework import select_host
from kubelite.scheduler.plugins import (
    UNRESOLVABLE,
    UNSCHEDULABLE,
    NodeInfo,
    PodInfo,
    Status,
    filter_node,
    fit_error_message,
)
from kubelite.scheduler.preemption import failure_message


def node(name: str, cpu: str = "2", memory: str = "4Gi", pods: str = "110", ready: str = "True",
         labels: dict | None = None, taints: list | None = None, unschedulable: bool = False) -> NodeInfo:
    ni = NodeInfo(name)
    ni.set_node({"metadata": {"name": name, "labels": labels or {}},
                 "spec": {"taints": taints or [], "unschedulable": unschedulable},
                 "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
                            "conditions": [{"type": "Ready", "status": ready}]}})
    return ni


def pod(name: str = "p", cpu: str | None = None, memory: str | None = None, priority: int = 0,
        **spec: Any) -> PodInfo:
    req = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    c: dict[str, Any] = {"name": "c", "image": "x", "resources": {"requests": req}}
    if "ports" in spec:
        c["ports"] = spec.pop("ports")
    return PodInfo.of({"metadata": {"name": name, "namespace": "ns", "uid": name},
                       "spec": {"containers": [c], "priority": priority, **spec}})


def test_resources_fit_and_reasons():
    n = node("n")
    assert filter_node(pod(cpu="2"), n) is None
    st = filter_node(pod(cpu="3", memory="5Gi"), n)
    assert st == Status(UNRESOLVABLE, ("Insufficient cpu", "Insufficient memory"))  # more than the node has
    n.add_pod(pod("a", cpu="1500m"))
    st = filter_node(pod(cpu="1"), n)
    assert st == Status(UNSCHEDULABLE, ("Insufficient cpu",))  # preemption could help
    assert filter_node(pod(cpu="500m"), n) is None
    n.remove_pod("a")
    assert filter_node(pod(cpu="2"), n) is None


def test_too_many_pods_and_extended_resources():
    n = node("n", pods="1")
    n.add_pod(pod("a"))
    assert filter_node(pod(), n) == Status(UNSCHEDULABLE, ("Too many pods",))
    p = PodInfo.of({"metadata": {"name": "g", "uid": "g"}, "spec": {"containers": [
        {"name": "c", "resources": {"requests": {"example.com/gpu": "1"}}}]}})
    assert filter_node(p, node("m")) == Status(UNRESOLVABLE, ("Insufficient example.com/gpu",))


def test_unschedulable_node_name_taints_affinity_order():
    assert filter_node(pod(), node("n", unschedulable=True)).reasons == ("node(s) were unschedulable",)
    tol = [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]
    assert filter_node(pod(tolerations=tol), node("n", unschedulable=True)) is None
    assert filter_node(pod(nodeName="x"), node("n")).reasons == ("node(s) didn't match the requested node name",)
    t = [{"key": "k", "value": "v", "effect": "NoSchedule"}]
    assert filter_node(pod(), node("n", taints=t)) == Status(UNRESOLVABLE, ("node(s) had untolerated taint(s)",))
    assert filter_node(pod(tolerations=[{"key": "k", "value": "v", "effect": "NoSchedule"}]),
                       node("n", taints=t)) is None
    assert filter_node(pod(tolerations=[{"key": "k", "value": "w"}]), node("n", taints=t)) is not None
    assert filter_node(pod(tolerations=[{"operator": "Exists"}]), node("n", taints=t)) is None
    # PreferNoSchedule does not filter
    assert filter_node(pod(), node("n", taints=[{"key": "k", "effect": "PreferNoSchedule"}])) is None
    # a not-ready node behaves as tainted node.kubernetes.io/not-ready:NoSchedule
    assert filter_node(pod(), node("n", ready="False")).reasons == ("node(s) had untolerated taint(s)",)
    assert filter_node(pod(), node("n", ready="Unknown")).reasons == ("node(s) had untolerated taint(s)",)
    # taints are checked before the selector, the selector before resources
    st = filter_node(pod(cpu="3", nodeSelector={"a": "b"}), node("n", taints=t))
    assert st.reasons == ("node(s) had untolerated taint(s)",)
    st = filter_node(pod(cpu="3", nodeSelector={"a": "b"}), node("n"))
    assert st.reasons == ("node(s) didn't match Pod's node affinity/selector",)


def test_node_affinity_terms():
    aff = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["special"]}]}]}}}
    assert filter_node(pod(affinity=aff), node("n", labels={"zone": "a"})) is None
    assert filter_node(pod(affinity=aff), node("special")) is None
    assert filter_node(pod(affinity=aff), node("n", labels={"zone": "c"})) is not None
    gt = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["3"]},
                              {"key": "old", "operator": "DoesNotExist"}]}]}}}
    assert filter_node(pod(affinity=gt), node("n", labels={"gen": "4"})) is None
    assert filter_node(pod(affinity=gt), node("n", labels={"gen": "4", "old": ""})) is not None


def test_host_ports():
    n = node("n")
    n.add_pod(pod("a", ports=[{"containerPort": 80, "hostPort": 8080}]))
    st = filter_node(pod(ports=[{"containerPort": 80, "hostPort": 8080}]), n)
    assert st == Status(UNSCHEDULABLE, ("node(s) didn't have free ports for the requested pod ports",))
    assert filter_node(pod(ports=[{"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}]), n) is None
    assert filter_node(pod(ports=[{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}]), n) is not None
    m = node("m")
    m.add_pod(pod("b", ports=[{"containerPort": 80, "hostPort": 9090, "hostIP": "10.0.0.1"}]))
    assert filter_node(pod(ports=[{"containerPort": 80, "hostPort": 9090, "hostIP": "10.0.0.2"}]), m) is None
    assert filter_node(pod(ports=[{"containerPort": 80, "hostPort": 9090}]), m) is not None
    n.remove_pod("a")
    assert filter_node(pod(ports=[{"containerPort": 80, "hostPort": 8080}]), n) is None


def test_fit_error_message_counts_and_sorts_like_upstream():
    st = {f"n{i}": Status(UNSCHEDULABLE, ("Insufficient cpu",)) for i in range(10)}
    st["a"] = Status(UNRESOLVABLE, ("node(s) had untolerated taint(s)",))
    st["b"] = Status(UNRESOLVABLE, ("node(s) had untolerated taint(s)",))
    st["c"] = Status(UNSCHEDULABLE, ("Insufficient cpu", "Insufficient memory"))
    # sorted as strings, like Go sort.Strings: "1 Insufficient memory" < "11 Insufficient cpu"
    assert fit_error_message(13, st) == (
        "0/13 nodes are available: 1 Insufficient memory, 11 Insufficient cpu, "
        "2 node(s) had untolerated taint(s).")
    assert fit_error_message(3, {"x": Status(UNRESOLVABLE, ("r",))}, "absent") == \
        "0/3 nodes are available: 1 r, 2 absent."
    assert fit_error_message(1, {}, post_filter_msg="tail.") == "0/1 nodes are available: tail."


def test_failure_message_with_preemption():
    n1, n2, n3 = node("n1"), node("n2", labels={"x": "y"}), node("n3", taints=[{"key": "k", "effect": "NoExecute"}])
    n1.add_pod(pod("a", cpu="1500m"))
    nodes = {"n1": n1, "n2": n2, "n3": n3}
    p = pod(cpu="1", nodeSelector={"x": "y"})
    n2.add_pod(pod("b", cpu="1500m"))
    statuses = {n: filter_node(p, ni) for n, ni in nodes.items()}
    assert failure_message(p, statuses, nodes) == (
        "0/3 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node affinity/selector, "
        "1 node(s) had untolerated taint(s). no new claims to deallocate, preemption: 0/3 nodes are "
        "available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling.")
    assert failure_message(p, statuses, nodes, dra=False).startswith(
        "0/3 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node affinity/selector, "
        "1 node(s) had untolerated taint(s). preemption: 0/3")
    # a higher-priority pod could evict the lower-priority "b": upstream preempts, no postfilter text
    hp = pod(cpu="1", priority=100, nodeSelector={"x": "y"})
    st = {n: filter_node(hp, ni) for n, ni in nodes.items()}
    assert failure_message(hp, st, nodes).endswith("1 node(s) had untolerated taint(s).")
    # even without victims it still does not fit: the filter's reason is reported
    big = pod(cpu="1900m", priority=100)
    one = node("one")
    one.add_pod(pod("low", cpu="200m"))
    one.add_pod(pod("high", cpu="200m", priority=1000))
    assert failure_message(big, {"one": filter_node(big, one)}, {"one": one}) == (
        "0/1 nodes are available: 1 Insufficient cpu. no new claims to deallocate, preemption: "
        "0/1 nodes are available: 1 Insufficient cpu.")
    never = pod(cpu="1", preemptionPolicy="Never")
    assert failure_message(never, {"n1": filter_node(never, n1)}, {"n1": n1}) == (
        "0/1 nodes are available: 1 Insufficient cpu. no new claims to deallocate, preemption: "
        "not eligible due to preemptionPolicy=Never.")
    assert failure_message(p, {}, {}) == "no nodes available to schedule pods"


def test_scoring_least_allocated_and_deterministic_ties():
    a, b = node("a"), node("b")
    rng = random.Random(1)
    assert {select_host(pod(cpu="100m"), [b, a], rng=rng).name for _ in range(20)} == {"a", "b"}  # ties: at random
    a.add_pod(pod("x", cpu="1", memory="1Gi"))
    assert select_host(pod(cpu="100m"), [a, b]).name == "b"
    big = node("c", cpu="8", memory="16Gi")
    assert select_host(pod(cpu="100m"), [a, b, big]).name == "c"
    prefer = node("d", taints=[{"key": "k", "effect": "PreferNoSchedule"}])
    assert select_host(pod(), [prefer, node("e")]).name == "e"


def test_pod_info_requests_include_init_containers_and_default_nonzero():
    p = PodInfo.of({"metadata": {"name": "p", "uid": "u"}, "spec": {
        "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}],
        "containers": [{"name": "c", "resources": {"requests": {"cpu": "250m"}}}, {"name": "d"}]}})
    assert p.requests["cpu"] == 2000
    assert p.nonzero_cpu == 2000 and p.nonzero_memory == 2 * plugins.DEFAULT_MEMORY_REQUEST


def test_event_message_truncation():
    assert plugins.truncate_event_message("x" * 2000) == "x" * 1021 + "..."
    assert plugins.truncate_event_message("short") == "short"
