"""PodTopologySpread, InterPodAffinity and the score plugins, with fake nodes and pods; the
cases and expected scores follow upstream's own test tables (filtering_test.go,
scoring_test.go of each plugin) where they exist."""

from __future__ import annotations

import asyncio
from typing import Any

from kubelite.scheduler import Scheduler, framework
from kubelite.scheduler.plugins import UNRESOLVABLE, UNSCHEDULABLE, NodeInfo, PodInfo, Status, filter_node

HOST = "kubernetes.io/hostname"
FOO = {"matchExpressions": [{"key": "foo", "operator": "Exists"}]}


def node(name: str, labels: dict[str, str] | None = None, taints: list | None = None, cpu: str = "4",
         memory: str = "8Gi") -> NodeInfo:
    ni = NodeInfo(name)
    ni.set_node({"metadata": {"name": name, "labels": {HOST: name, **(labels or {})}},
                 "spec": {"taints": taints or []},
                 "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                            "conditions": [{"type": "Ready", "status": "True"}]}})
    return ni


def pod(name: str, labels: dict[str, str] | None = None, ns: str = "default", requests: dict | None = None,
        deleting: bool = False, **spec: Any) -> PodInfo:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "uid": name, "labels": labels or {}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return PodInfo.of({"metadata": meta, "spec": {"containers": [
        {"name": "c", "resources": {"requests": requests or {}}}], **spec}})


def place(nodes: dict[str, NodeInfo], where: str, *pods: PodInfo) -> None:
    for p in pods:
        nodes[where].add_pod(p)


def cluster(*nis: NodeInfo) -> dict[str, NodeInfo]:
    return {ni.name: ni for ni in nis}


def fits(p: PodInfo, nodes: dict[str, NodeInfo], ns_labels: dict | None = None) -> dict[str, Status | None]:
    cycle = framework.pre_filter(p, nodes, ns_labels or {})
    return {n: filter_node(p, ni, cycle) for n, ni in nodes.items()}


def spread(skew: int, key: str, when: str = "DoNotSchedule", selector: Any = FOO, **extra: Any) -> dict:
    return {"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": when, "labelSelector": selector, **extra}


def zones4() -> dict[str, NodeInfo]:
    return cluster(node("node-a", {"zone": "zone1"}), node("node-b", {"zone": "zone1"}),
                   node("node-x", {"zone": "zone2"}), node("node-y", {"zone": "zone2"}))


def foo(name: str, **kw: Any) -> PodInfo:
    return pod(name, {"foo": ""}, **kw)


# ------------------------------------------------------------------------------ PodTopologySpread
SPREAD_FAIL = Status(UNSCHEDULABLE, ("node(s) didn't match pod topology spread constraints",))


def test_spread_hostname_2_1_0_3_only_node_x_fits():
    nodes = zones4()
    place(nodes, "node-a", foo("a1"), foo("a2"))
    place(nodes, "node-b", foo("b1"))
    place(nodes, "node-y", foo("y1"), foo("y2"), foo("y3"))
    p = foo("p", topologySpreadConstraints=[spread(1, HOST)])
    assert fits(p, nodes) == {"node-a": SPREAD_FAIL, "node-b": SPREAD_FAIL, "node-x": None, "node-y": SPREAD_FAIL}
    p2 = foo("p", topologySpreadConstraints=[spread(2, HOST)])  # maxSkew 2: node-b and node-x fit
    assert [n for n, st in fits(p2, nodes).items() if st is None] == ["node-b", "node-x"]


def test_spread_zones_3_3_all_fit_and_self_match():
    nodes = zones4()
    place(nodes, "node-a", foo("a1"), foo("a2"))
    place(nodes, "node-b", foo("b1"))
    place(nodes, "node-x", foo("x1"))
    place(nodes, "node-y", foo("y1"), foo("y2"))
    p = foo("p", topologySpreadConstraints=[spread(1, "zone")])
    assert all(st is None for st in fits(p, nodes).values())
    nodes["node-y"].add_pod(foo("y3"))  # 3/4: only zone1 fits
    assert [n for n, st in fits(p, nodes).items() if st is None] == ["node-a", "node-b"]
    # an incoming pod its own selector does not match adds nothing to the skew
    other = pod("p", {"bar": ""}, topologySpreadConstraints=[spread(1, "zone")])
    assert all(st is None for st in fits(other, nodes).values())


def test_spread_missing_label_unresolvable():
    nodes = cluster(node("node-a", {"zone": "zone1"}), node("node-b"))
    p = foo("p", topologySpreadConstraints=[spread(1, "zone")])
    st = fits(p, nodes)
    assert st["node-a"] is None
    assert st["node-b"] == Status(UNRESOLVABLE, ("node(s) didn't match pod topology spread constraints "
                                                 "(missing required label)",))


def test_spread_min_domains_makes_the_global_minimum_zero():
    nodes = cluster(node("node-a", {"zone": "zone1"}), node("node-x", {"zone": "zone2"}))
    place(nodes, "node-a", foo("a1"))
    place(nodes, "node-x", foo("x1"))
    p = foo("p", topologySpreadConstraints=[spread(1, "zone", minDomains=3)])
    assert fits(p, nodes) == {"node-a": SPREAD_FAIL, "node-x": SPREAD_FAIL}  # 1 + 1 - 0 > 1
    p = foo("p", topologySpreadConstraints=[spread(1, "zone", minDomains=2)])
    assert fits(p, nodes) == {"node-a": None, "node-x": None}


def test_spread_counts_only_live_pods_of_the_namespace_and_matching_nodes():
    nodes = cluster(node("node-a", {"zone": "zone1", "pool": "x"}), node("node-x", {"zone": "zone2"}))
    place(nodes, "node-a", foo("a1"), foo("a2", deleting=True), foo("a3", ns="other"))
    place(nodes, "node-x", foo("x1"))
    p = foo("p", topologySpreadConstraints=[spread(1, "zone")])
    assert fits(p, nodes) == {"node-a": None, "node-x": None}  # 1/1 counted, not 3/1
    nodes["node-a"].add_pod(foo("a4"))
    assert fits(p, nodes)["node-a"] == SPREAD_FAIL
    # nodeAffinityPolicy Honor (default): nodes the pod cannot go to are no domain
    sel = foo("p", nodeSelector={"pool": "x"}, topologySpreadConstraints=[spread(1, "zone")])
    assert fits(sel, nodes)["node-a"] is None  # zone2 is no domain: the minimum is zone1's 2
    ign = foo("p", nodeSelector={"pool": "x"},
              topologySpreadConstraints=[spread(1, "zone", nodeAffinityPolicy="Ignore")])
    assert fits(ign, nodes)["node-a"] == SPREAD_FAIL
    # nodeTaintsPolicy Honor: tainted nodes are no domain
    tainted = cluster(node("node-a", {"zone": "zone1"}),
                      node("node-x", {"zone": "zone2"}, taints=[{"key": "k", "effect": "NoSchedule"}]))
    place(tainted, "node-a", foo("a1"))
    honor = foo("p", topologySpreadConstraints=[spread(1, "zone", nodeTaintsPolicy="Honor")])
    assert fits(honor, tainted)["node-a"] is None
    assert fits(foo("p", topologySpreadConstraints=[spread(1, "zone")]), tainted)["node-a"] == SPREAD_FAIL


def test_spread_match_label_keys():
    nodes = cluster(node("node-a", {"zone": "zone1"}), node("node-x", {"zone": "zone2"}))
    place(nodes, "node-a", pod("a1", {"foo": "", "rev": "1"}), pod("a2", {"foo": "", "rev": "1"}))
    p = pod("p", {"foo": "", "rev": "2"},
            topologySpreadConstraints=[spread(1, "zone", matchLabelKeys=["rev"])])
    assert fits(p, nodes) == {"node-a": None, "node-x": None}  # other revisions do not count
    same = pod("p", {"foo": "", "rev": "1"}, topologySpreadConstraints=[spread(1, "zone", matchLabelKeys=["rev"])])
    assert fits(same, nodes)["node-a"] == SPREAD_FAIL


def _spread_scores(p: PodInfo, nodes: dict[str, NodeInfo]) -> dict[str, int]:
    from kubelite.scheduler import topologyspread
    feasible = list(nodes.values())
    st = topologyspread.pre_score(p, feasible, feasible)
    assert st is not None
    return topologyspread.normalize(st, {ni.name: topologyspread.score(st, p, ni) for ni in feasible})


def test_spread_scores_as_upstream():
    nodes = cluster(*(node(f"node-{c}") for c in "abcd"))
    place(nodes, "node-a", foo("a1"), foo("a2"))
    place(nodes, "node-b", foo("b1"))
    place(nodes, "node-d", foo("d1"), foo("d2"), foo("d3"))
    soft = [spread(1, HOST, "ScheduleAnyway")]
    assert _spread_scores(foo("p", topologySpreadConstraints=soft), nodes) == {
        "node-a": 20, "node-b": 60, "node-c": 100, "node-d": 0}
    soft2 = [spread(2, HOST, "ScheduleAnyway")]
    assert _spread_scores(foo("p", topologySpreadConstraints=soft2), nodes) == {
        "node-a": 33, "node-b": 66, "node-c": 100, "node-d": 16}
    null = [spread(1, HOST, "ScheduleAnyway", selector=None)]
    assert set(_spread_scores(foo("p", topologySpreadConstraints=null), nodes).values()) == {100}


# ------------------------------------------------------------------------------ InterPodAffinity
AFF_FAIL = Status(UNRESOLVABLE, ("node(s) didn't match pod affinity rules",))
ANTI_FAIL = Status(UNSCHEDULABLE, ("node(s) didn't match pod anti-affinity rules",))
EXISTING_FAIL = Status(UNSCHEDULABLE, ("node(s) didn't satisfy existing pods anti-affinity rules",))


def term(labels: dict[str, str], key: str, **extra: Any) -> dict:
    return {"labelSelector": {"matchLabels": labels}, "topologyKey": key, **extra}


def affinity(*terms: dict, anti: bool = False) -> dict:
    return {"podAntiAffinity" if anti else "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": list(terms)}}


def regions() -> dict[str, NodeInfo]:
    return cluster(node("node-1", {"region": "r1"}), node("node-2", {"region": "r1"}),
                   node("node-3", {"region": "r2"}), node("node-4"))


def test_pod_affinity_matches_topology_of_existing_pod():
    nodes = regions()
    place(nodes, "node-1", pod("s", {"service": "securityscan"}))
    p = pod("p", affinity=affinity(term({"service": "securityscan"}, "region")))
    assert fits(p, nodes) == {"node-1": None, "node-2": None, "node-3": AFF_FAIL, "node-4": AFF_FAIL}
    # a pod must match every term; the other namespace does not count
    two = pod("p", affinity=affinity(term({"service": "securityscan"}, "region"), term({"tier": "x"}, "region")))
    assert set(fits(two, nodes).values()) == {AFF_FAIL}
    other = pod("p", ns="other", affinity=affinity(term({"service": "securityscan"}, "region")))
    assert set(fits(other, nodes).values()) == {AFF_FAIL}
    listed = pod("p", ns="other", affinity=affinity(term({"service": "securityscan"}, "region",
                                                         namespaces=["default"])))
    assert fits(listed, nodes)["node-1"] is None


def test_first_pod_of_a_self_affine_series():
    nodes = regions()
    p = pod("p", {"app": "db"}, affinity=affinity(term({"app": "db"}, "region")))
    # no pod matches anywhere and the pod matches its own term: any node with the key
    assert fits(p, nodes) == {"node-1": None, "node-2": None, "node-3": None, "node-4": AFF_FAIL}
    q = pod("q", {"app": "web"}, affinity=affinity(term({"app": "db"}, "region")))
    assert set(fits(q, nodes).values()) == {AFF_FAIL}
    place(nodes, "node-3", pod("db1", {"app": "db"}))  # once one exists, only its region
    assert fits(p, nodes) == {"node-1": AFF_FAIL, "node-2": AFF_FAIL, "node-3": None, "node-4": AFF_FAIL}


def test_pod_anti_affinity_and_symmetry():
    nodes = regions()
    place(nodes, "node-1", pod("s", {"app": "web"}))
    p = pod("p", {"app": "web"}, affinity=affinity(term({"app": "web"}, HOST), anti=True))
    assert fits(p, nodes) == {"node-1": ANTI_FAIL, "node-2": None, "node-3": None, "node-4": None}
    zone = pod("p", affinity=affinity(term({"app": "web"}, "region"), anti=True))
    assert fits(zone, nodes) == {"node-1": ANTI_FAIL, "node-2": ANTI_FAIL, "node-3": None, "node-4": None}
    # an existing pod's anti-affinity keeps matching pods out of its topology
    place(nodes, "node-3", pod("guard", {"x": "y"}, affinity=affinity(term({"app": "intruder"}, "region"),
                                                                       anti=True)))
    intruder = pod("i", {"app": "intruder"})
    assert fits(intruder, nodes) == {"node-1": None, "node-2": None, "node-3": EXISTING_FAIL, "node-4": None}


def test_namespace_selector():
    nodes = regions()
    place(nodes, "node-1", pod("s", {"app": "web"}, ns="team-a"))
    place(nodes, "node-3", pod("t", {"app": "web"}, ns="team-b"))
    labels = {"team-a": {"team": "a"}, "team-b": {"team": "b"}, "default": {}}
    sel = pod("p", affinity=affinity(term({"app": "web"}, HOST, namespaceSelector={"matchLabels": {"team": "a"}}),
                                     anti=True))
    assert fits(sel, nodes, labels) == {"node-1": ANTI_FAIL, "node-2": None, "node-3": None, "node-4": None}
    every = pod("p", affinity=affinity(term({"app": "web"}, HOST, namespaceSelector={}), anti=True))
    assert [n for n, st in fits(every, nodes, labels).items() if st is None] == ["node-2", "node-4"]


def test_mismatch_label_keys():
    nodes = regions()
    place(nodes, "node-1", pod("a", {"app": "web", "tenant": "t1"}))
    place(nodes, "node-3", pod("b", {"app": "web", "tenant": "t2"}))
    # keep away from other tenants' web pods
    p = pod("p", {"app": "web", "tenant": "t1"},
            affinity=affinity(term({"app": "web"}, "region", mismatchLabelKeys=["tenant"]), anti=True))
    assert fits(p, nodes) == {"node-1": None, "node-2": None, "node-3": ANTI_FAIL, "node-4": None}


def _affinity_scores(p: PodInfo, nodes: dict[str, NodeInfo]) -> dict[str, int]:
    from kubelite.scheduler import interpodaffinity
    st = interpodaffinity.pre_score(p, nodes.values(), {})
    if st is None:
        return {}
    return interpodaffinity.normalize({n: interpodaffinity.score(st, ni) for n, ni in nodes.items()})


def preferred(labels: dict[str, str], key: str, weight: int, anti: bool = False) -> dict:
    return {"podAntiAffinity" if anti else "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": weight, "podAffinityTerm": term(labels, key)}]}}


def test_preferred_pod_affinity_scores():
    nodes = cluster(node("node-1", {"region": "China"}), node("node-2", {"region": "India"}),
                    node("node-3", {"az": "az1"}))
    place(nodes, "node-1", pod("s1", {"security": "S1"}))
    place(nodes, "node-2", pod("s2", {"security": "S2"}))
    p = pod("p", affinity=preferred({"security": "S1"}, "region", 5))
    assert _affinity_scores(p, nodes) == {"node-1": 100, "node-2": 0, "node-3": 0}
    a = pod("p", affinity=preferred({"security": "S1"}, "region", 5, anti=True))
    assert _affinity_scores(a, nodes) == {"node-1": 0, "node-2": 100, "node-3": 100}
    # an existing pod's required affinity to the incoming pod draws it (hardPodAffinityWeight 1)
    nodes["node-2"].add_pod(pod("friend", affinity=affinity(term({"role": "db"}, "region"))))
    assert _affinity_scores(pod("db", {"role": "db"}), nodes) == {"node-1": 0, "node-2": 100, "node-3": 0}
    assert _affinity_scores(pod("x"), nodes) == {}  # nothing contributes: Skip


# ------------------------------------------------------------------------------ score plugins
def test_least_allocated_and_balanced_allocation_as_upstream():
    n1 = node("node-1", cpu="4", memory="10000")
    n2 = node("node-2", cpu="6", memory="10000")
    p = PodInfo.of({"metadata": {"name": "p", "uid": "p"}, "spec": {"containers": [
        {"name": "a", "resources": {"requests": {"cpu": "1", "memory": "2000"}}},
        {"name": "b", "resources": {"requests": {"cpu": "2", "memory": "3000"}}}]}})
    assert [framework.least_allocated_score(p, n) for n in (n1, n2)] == [37, 50]
    assert [framework.balanced_allocation_score(p, n) for n in (n1, n2)] == [87, 100]


def test_taint_toleration_and_node_affinity_scores():
    prefer = [{"key": f"k{i}", "value": "v", "effect": "PreferNoSchedule"} for i in range(2)]
    nodes = [node("node-1"), node("node-2", taints=prefer[:1]), node("node-3", taints=prefer)]
    raw = {n.name: framework.taint_toleration_score(pod("p"), n) for n in nodes}
    assert framework.default_normalize(raw, reverse=True) == {"node-1": 100, "node-2": 50, "node-3": 0}
    tol = pod("p", tolerations=[{"key": "k0", "operator": "Exists"}])
    assert framework.taint_toleration_score(tol, nodes[2]) == 1
    pref = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 2, "preference": {"matchExpressions": [{"key": "foo", "operator": "In", "values": ["bar"]}]}},
        {"weight": 4, "preference": {"matchExpressions": [{"key": "key", "operator": "In", "values": ["value"]}]}},
        {"weight": 5, "preference": {"matchExpressions": [{"key": "az", "operator": "In", "values": ["az1"]}]}},
        {"weight": 9, "preference": {}}]}}  # an empty preference matches nothing
    ns = [node("n1", {"foo": "bar"}), node("n2", {"foo": "bar", "key": "value"}),
          node("n3", {"foo": "bar", "key": "value", "az": "az1"}), node("n4")]
    pa = pod("p", affinity=pref)
    raw = {n.name: framework.node_affinity_score(pa, n) for n in ns}
    assert raw == {"n1": 2, "n2": 6, "n3": 11, "n4": 0}
    assert framework.default_normalize(raw) == {"n1": 18, "n2": 54, "n3": 100, "n4": 0}


def test_score_plugins_combine_with_weights():
    a, b = node("a", {"zone": "z1"}), node("b", {"zone": "z2"}, taints=[{"key": "k", "effect": "PreferNoSchedule"}])
    nodes = cluster(a, b)
    # equal but for the taint: TaintToleration (weight 3) decides
    assert framework.select_host(pod("p"), [a, b], nodes).name == "a"
    # preferred node affinity (2 x 100) beats the taint (3 x 100)? no: 300 > 200
    pa = pod("p", affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z2"]}]}}]}})
    assert framework.select_host(pa, [a, b], nodes).name == "a"
    # add a preferred pod affinity towards b's zone: 2 x 100 + 2 x 100 > 3 x 100
    place(nodes, "b", pod("db", {"app": "db"}))
    pa.preferred_affinity = pod("x", affinity=preferred({"app": "db"}, "zone", 10)).preferred_affinity
    assert framework.select_host(pa, [a, b], nodes).name == "b"


# ------------------------------------------------------------------------------ the scheduler
class _Client:
    async def request(self, method: str, path: str, body: Any = None, **kw: Any) -> dict:
        return {}

    async def create(self, api_version: str, plural: str, obj: dict, namespace: str = "") -> Any:
        return obj

    async def patch(self, api_version: str, plural: str, name: str, patch: Any, namespace: str = "",
                    **kw: Any) -> Any:
        return {}


def _node_obj(name: str, taints: list | None = None) -> dict:
    return {"metadata": {"name": name, "labels": {HOST: name}}, "spec": {"taints": taints or []},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def _pod_obj(i: int, **spec: Any) -> dict:
    return {"metadata": {"name": f"web-{i}", "namespace": "default", "uid": f"u{i}", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "x"}], **spec}, "status": {"phase": "Pending"}}


async def _schedule(nodes: list[dict], pods: list[dict]) -> tuple[Scheduler, list[str | None]]:
    s = Scheduler(_Client(), seed=7)  # type: ignore[arg-type]
    for n in nodes:
        s._on_node("ADDED", n)
    out = []
    for p in pods:
        s.pods[p["metadata"]["uid"]] = p
        out.append(s.schedule_one(p["metadata"]["uid"], p))
    await asyncio.gather(*s._tasks, return_exceptions=True)
    return s, out


async def test_scheduler_anti_affinity_spreads_and_reports_like_upstream():
    anti = affinity(term({"app": "web"}, HOST), anti=True)
    s, hosts = await _schedule([_node_obj("n1"), _node_obj("n2"), _node_obj("n3", [{"key": "dedicated",
                                                                                     "value": "gpu",
                                                                                     "effect": "NoSchedule"}])],
                               [_pod_obj(i, affinity=anti) for i in range(3)])
    assert sorted(h or "-" for h in hosts) == ["-", "n1", "n2"]
    info = PodInfo.of(_pod_obj(9, affinity=anti))
    nodes = {n: ni for n, ni in s.nodes.items() if ni.node is not None}
    cycle = framework.pre_filter(info, nodes, {})
    statuses = {n: st for n, ni in nodes.items() if (st := filter_node(info, ni, cycle)) is not None}
    from kubelite.scheduler.preemption import failure_message
    assert failure_message(info, statuses, nodes, dra=False, cycle=cycle) == (
        "0/3 nodes are available: 1 node(s) had untolerated taint(s), 2 node(s) didn't match pod anti-affinity "
        "rules. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, "
        "2 No preemption victims found for incoming pod.")
    # a higher-priority pod could evict one: upstream preempts, no postfilter text
    high = PodInfo.of(_pod_obj(10, affinity=anti, priority=100))
    cycle = framework.pre_filter(high, nodes, {})
    statuses = {n: st for n, ni in nodes.items() if (st := filter_node(high, ni, cycle)) is not None}
    assert failure_message(high, statuses, nodes, dra=False, cycle=cycle).endswith("anti-affinity rules.")


async def test_scheduler_spreads_equal_pods_over_equal_nodes():
    _, hosts = await _schedule([_node_obj(f"n{i}") for i in range(3)], [_pod_obj(i) for i in range(30)])
    counts = {h: hosts.count(h) for h in set(hosts)}
    assert set(counts) == {"n0", "n1", "n2"} and min(counts.values()) >= 5, counts
    hard = [spread(1, HOST, selector={"matchLabels": {"app": "web"}})]
    _, hosts = await _schedule([_node_obj(f"n{i}") for i in range(3)],
                               [_pod_obj(i, topologySpreadConstraints=hard) for i in range(9)])
    assert sorted(hosts.count(f"n{i}") for i in range(3)) == [3, 3, 3]


async def test_placing_a_pod_requeues_pods_waiting_on_pod_affinity_only():
    want_db = affinity(term({"app": "db"}, HOST))
    s, hosts = await _schedule([_node_obj("n1")], [_pod_obj(1, affinity=want_db),
                                                   {**_pod_obj(2), "spec": {"containers": [
                                                       {"name": "c", "resources": {"requests": {"cpu": "64"}}}]}}])
    assert hosts == [None, None]
    assert not s._waiting["u1"].moved and not s._waiting["u2"].moved
    db = _pod_obj(3)
    db["metadata"]["labels"] = {"app": "db"}
    s.pods["u3"] = db
    assert s.schedule_one("u3", db) == "n1"
    assert s._waiting["u1"].moved and not s._waiting["u2"].moved
    await asyncio.gather(*s._tasks, return_exceptions=True)
    assert s.schedule_one("u1", s.pods["u1"]) == "n1"


async def test_pod_with_resource_claims_is_not_scheduled():
    """DynamicResources' PreEnqueue: no ResourceClaim can exist here, the pod is refused with
    upstream's message and no node is tried."""
    s = Scheduler(_Client(), seed=7)  # type: ignore[arg-type]
    s._on_node("ADDED", _node_obj("n1"))
    failed: list[tuple[str, str]] = []

    async def unschedulable(pod: dict, reason: str, msg: str, nomination: str | None = None) -> None:
        failed.append((reason, msg))
    s._set_unschedulable = unschedulable  # type: ignore[method-assign]
    p = _pod_obj(1, resourceClaims=[{"name": "gpu", "resourceClaimTemplateName": "gpus"}])
    s.pods["u1"] = p
    assert s.schedule_one("u1", p) is None and "u1" in s._waiting and not s._assumed
    await asyncio.gather(*s._tasks, return_exceptions=True)
    assert failed == [("Unschedulable", 'pod "default/web-1": ResourceClaim not created yet')]
