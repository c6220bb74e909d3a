"""The pure logic of the ReplicaSet and Deployment controllers, and both controllers over real
stores (SQLite in a temp dir) driven one sync at a time."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from kubelite.apiserver.registry import ListOptions, WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.controllers import controller_utils as cu
from kubelite.controllers import deploymentutil as du
from kubelite.controllers.deployment import DeploymentController
from kubelite.controllers.replicaset import ReplicaSetController, calculate_status, pod_from_template
from kubelite.kinds import apps
from kubelite.kinds.registry import default_registry
from kubelite.kinds.scale_rest import scale_of, validate_scale
from kubelite.store.sqlite import SQLiteStore

W = WriteOptions(field_manager="test")
NOW = 1_800_000_000.0


def _ts(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def pod(name: str, node: str = "n1", phase: str = "Running", ready: bool = True, ready_since: float = NOW - 100,
        created: float = NOW - 200, restarts: int = 0, cost: str | None = None) -> dict:
    p: dict = {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "labels": {"app": "x"},
                            "creationTimestamp": _ts(created)},
               "spec": {"nodeName": node} if node else {},
               "status": {"phase": phase, "containerStatuses": [{"restartCount": restarts}],
                          "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                          "lastTransitionTime": _ts(ready_since)}]}}
    if cost is not None:
        p["metadata"]["annotations"] = {"controller.kubernetes.io/pod-deletion-cost": cost}
    return p


# ----------------------------------------------------------------------------- ActivePods ranking
@pytest.mark.parametrize(("first", "second"), [
    (pod("a", node=""), pod("b")),  # unassigned before assigned
    (pod("a", phase="Pending"), pod("b")),  # Pending before Running
    (pod("a", ready=False), pod("b")),  # not ready before ready
    (pod("a", cost="-5"), pod("b")),  # lower deletion cost first
    (pod("a", ready_since=NOW - 10), pod("b", ready_since=NOW - 10_000)),  # ready for less time first
    (pod("a", restarts=3), pod("b")),  # more restarts first
    (pod("a", created=NOW - 10), pod("b", created=NOW - 10_000)),  # newer first
])
def test_deletion_order_follows_active_pods_ranking(first, second):
    assert cu.rank_less(first, second, 0, 0, NOW)
    assert not cu.rank_less(second, first, 0, 0, NOW)
    assert cu.pods_to_delete([second, first], [], 1, NOW) == [first]


def test_doubled_up_pods_go_first_and_close_times_share_a_bucket():
    a, b = pod("a", node="busy"), pod("b", node="quiet")
    related = [a, b, pod("c", node="busy")]
    assert cu.pods_to_delete([b, a], related, 1, NOW) == [a]
    # ready 100 s and 101 s ago fall in one logarithmic bucket: the uid decides
    x, y = pod("x", ready_since=NOW - 100), pod("y", ready_since=NOW - 101)
    assert cu.rank_less(x, y, 0, 0, NOW) and not cu.rank_less(y, x, 0, 0, NOW)


async def test_slow_start_batches_double_and_stop_at_the_first_failure():
    sizes: list[int] = []
    running = 0

    async def create() -> None:
        nonlocal running
        running += 1
        await asyncio.sleep(0)
        sizes.append(running)
        running -= 1

    ok, err = await cu.slow_start_batch(10, 1, create)
    assert (ok, err) == (10, None)
    calls = 0

    async def failing_third() -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("quota")

    ok, err = await cu.slow_start_batch(10, 1, failing_third)
    assert ok == 2 and isinstance(err, RuntimeError) and calls == 3  # batches 1 and 2; the second failed


def test_expectations_wait_for_observed_creations_and_deletions():
    clock = [0.0]
    e = cu.Expectations(timeout=300, clock=lambda: clock[0])
    assert e.satisfied("ns/rs")
    e.expect_creations("ns/rs", 2)
    assert not e.satisfied("ns/rs")
    e.creation_observed("ns/rs")
    e.creation_observed("ns/rs")
    assert e.satisfied("ns/rs")
    e.expect_deletions("ns/rs", ["ns/a", "ns/b"])
    e.deletion_observed("ns/rs", "ns/other")  # not one we deleted
    e.deletion_observed("ns/rs", "ns/a")
    assert not e.satisfied("ns/rs")
    clock[0] = 301
    assert e.satisfied("ns/rs")  # stale expectations do not block forever


# ----------------------------------------------------------------------------- ReplicaSets
def rs_obj(replicas: int = 3, min_ready: int = 0) -> dict:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "fe", "namespace": "default", "uid": "rs-uid", "generation": 2},
            "spec": {"replicas": replicas, "minReadySeconds": min_ready, "selector": {"matchLabels": {"app": "x"}},
                     "template": {"metadata": {"labels": {"app": "x", "tier": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}},
            "status": {"replicas": 0}}


def test_pod_from_template_is_owned_by_its_replica_set():
    p = pod_from_template(rs_obj())
    assert p["metadata"]["generateName"] == "fe-"
    assert p["metadata"]["labels"] == {"app": "x", "tier": "web"}
    assert p["metadata"]["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "fe",
                                                 "uid": "rs-uid", "controller": True, "blockOwnerDeletion": True}]


def test_replica_set_status_counts_and_failure_condition():
    pods = [pod("a"), pod("b", ready=False), pod("c", ready_since=NOW - 2)]
    pods[0]["metadata"]["labels"]["tier"] = "web"
    st = calculate_status(rs_obj(min_ready=5), pods, [], None, now=NOW)
    assert st == {"replicas": 3, "fullyLabeledReplicas": 1, "readyReplicas": 2, "availableReplicas": 1,
                  "terminatingReplicas": 0}
    st = calculate_status(rs_obj(replicas=5), pods, [], RuntimeError("pods is forbidden"), now=NOW)
    cond = st["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"], cond["message"]) == (
        "ReplicaFailure", "True", "FailedCreate", "pods is forbidden")


# ----------------------------------------------------------------------------- validation, scale
def _deployment(**spec) -> dict:
    d = {"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
        "metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}, **spec}}
    apps.DEPLOYMENT.strategy.default(d)
    return d


def _errors(d: dict) -> list[str]:
    return [str(e) for e in apps.DEPLOYMENT.strategy.validate(d)]


def test_deployment_defaults_and_validation_messages():
    d = _deployment()
    assert d["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%",
                                                                                "maxSurge": "25%"}}
    assert (d["spec"]["replicas"], d["spec"]["revisionHistoryLimit"], d["spec"]["progressDeadlineSeconds"]) == (
        1, 10, 600)
    assert _errors(d) == []
    d = _deployment(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}})
    assert _errors(d) == ["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:0, "
                          'IntVal:0, StrVal:""}: may not be 0 when `maxSurge` is 0']
    d = _deployment(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "120%"}})
    assert _errors(d) == ["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, "
                          'IntVal:0, StrVal:"120%"}: must not be greater than 100%']
    d = _deployment(strategy={"type": "Recreate", "rollingUpdate": {}})
    assert _errors(d) == ["spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is "
                          "'Recreate'"]
    d = _deployment(minReadySeconds=10, progressDeadlineSeconds=5)
    assert _errors(d) == ["spec.progressDeadlineSeconds: Invalid value: 5: must be greater than minReadySeconds"]
    d = _deployment(selector={})
    assert _errors(d) == ["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
                          "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for "
                          "deployment"]
    d = _deployment()
    d["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert _errors(d) == ['spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"']
    new = _deployment()
    new["spec"]["selector"] = {"matchLabels": {"app": "web", "x": "y"}}
    new["spec"]["template"]["metadata"]["labels"]["x"] = "y"
    assert [str(e) for e in apps.DEPLOYMENT.strategy.validate_update(new, _deployment())] == [
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web", "x":"y"}, '
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"]


def test_scale_shows_replicas_and_selector():
    rs = rs_obj(replicas=4)
    rs["metadata"]["resourceVersion"] = "7"
    rs["status"]["replicas"] = 2
    s = scale_of(apps.REPLICASET.scale, rs)  # type: ignore[arg-type]
    assert s["spec"] == {"replicas": 4} and s["status"] == {"replicas": 2, "selector": "app=x"}
    assert s["metadata"]["resourceVersion"] == "7"
    assert [str(e) for e in validate_scale({"spec": {"replicas": -1}})] == [
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0"]


# ----------------------------------------------------------------------------- deployment arithmetic
def test_surge_and_unavailable_round_as_upstream():
    assert du.resolve_fenceposts(_deployment(replicas=3)) == (1, 0)  # 25 %: surge up, unavailable down
    assert du.resolve_fenceposts(_deployment(replicas=10)) == (3, 2)
    d = _deployment(replicas=3, strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "0%",
                                                                                     "maxUnavailable": "10%"}})
    assert du.resolve_fenceposts(d) == (0, 1)  # never both 0
    assert du.max_surge(_deployment(strategy={"type": "Recreate"})) == 0


def _rs(name: str, replicas: int, revision: int, created: float, available: int = 0) -> dict:
    return {"metadata": {"name": name, "uid": name, "creationTimestamp": _ts(created),
                         "annotations": {apps.REVISION: str(revision), apps.MAX_REPLICAS: "13"}},
            "spec": {"replicas": replicas, "template": {}}, "status": {"availableReplicas": available}}


def test_new_replica_set_grows_within_surge_and_revisions_are_kept():
    d = _deployment(replicas=10)
    old, new = _rs("old", 10, 1, NOW - 100), _rs("new", 0, 2, NOW)
    assert du.new_rs_new_replicas(d, [old, new], new) == 3  # 10 + 3 surge - 10
    back = _rs("back", 0, 1, NOW - 500)
    assert du.set_new_rs_annotations(d, back, 3, True)
    assert back["metadata"]["annotations"][apps.REVISION] == "3"
    assert back["metadata"]["annotations"][apps.REVISION_HISTORY] == "1"
    du.set_new_rs_annotations(d, back, 5, True)
    assert back["metadata"]["annotations"][apps.REVISION_HISTORY] == "1,3"


def test_proportional_scaling_of_two_replica_sets():
    d = _deployment(replicas=20)  # was 10 (max 13 with surge); now 20 (max 25)
    a = _rs("a", 8, 1, NOW - 100)
    b = _rs("b", 5, 2, NOW)
    to_add = 25 - 13
    pa = du.rs_proportion(a, d, to_add, 0)
    pb = du.rs_proportion(b, d, to_add, pa)
    assert (pa, pb) == (7, 5)  # 8*25/13 = 15.4 -> 15; 5*25/13 = 9.6 -> 10


def test_hash_is_stable_and_safe():
    t = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    h = du.compute_hash(t, None)
    assert h == du.compute_hash(dict(t), None) and h != du.compute_hash(t, 1)
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789")


def test_conditions_keep_transition_time_unless_status_changes():
    st: dict = {}
    du.set_condition(st, du.new_condition("Available", "False", "MinimumReplicasUnavailable", "m", "t1"))
    du.set_condition(st, du.new_condition("Available", "False", "Other", "m", "t2"))
    assert st["conditions"][0]["lastTransitionTime"] == "t1" and st["conditions"][0]["reason"] == "Other"
    du.set_condition(st, du.new_condition("Available", "True", "MinimumReplicasAvailable", "m", "t3"))
    assert st["conditions"][0]["lastTransitionTime"] == "t3"


# ----------------------------------------------------------------------------- controllers over stores
async def _sync_informers(*infs) -> None:
    for inf in infs:
        await inf._list()


async def test_controllers_create_a_replica_set_and_its_pods_without_overshooting(tmp_path: Path):
    kv = SQLiteStore(str(tmp_path / "db"), compact_interval=0)
    await kv.start()
    try:
        stores = Stores.build(default_registry(), kv)
        dc = DeploymentController(stores)
        rsc = ReplicaSetController(stores)
        d = _deployment(replicas=3)
        d["metadata"]["namespace"] = "default"
        await stores.get("apps", "deployments").create("default", d, W)
        await _sync_informers(dc.d_informer, dc.rs_informer, dc.pod_informer)
        await dc.sync("default/web")
        await _sync_informers(dc.d_informer, dc.rs_informer)
        (rs,) = dc.rs_informer.list("default")
        h = rs["metadata"]["labels"]["pod-template-hash"]
        assert rs["metadata"]["name"] == f"web-{h}" and rs["spec"]["replicas"] == 3
        assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": h}
        assert rs["metadata"]["annotations"][apps.REVISION] == "1"
        stored = await stores.get("apps", "deployments").get("default", "web")
        assert stored["metadata"]["annotations"][apps.REVISION] == "1"
        assert du.get_condition(stored["status"], "Progressing")["reason"] == "NewReplicaSetCreated"

        await rsc.sync(f"default/web-{h}")
        await rsc.sync(f"default/web-{h}")  # the informer has not seen the pods yet: no second batch
        pods, _, _, _ = await stores.get("", "pods").list("default", ListOptions())
        assert len(pods) == 3
        assert all(p["metadata"]["labels"] == {"app": "web", "pod-template-hash": h} for p in pods)
        await _sync_informers(rsc.pod_informer)
        for p in pods:
            rsc._on_pod("ADDED", None, p)
        assert rsc.expectations.satisfied(f"default/web-{h}")
        await rsc.sync(f"default/web-{h}")
        st = (await stores.get("apps", "replicasets").get("default", f"web-{h}"))["status"]
        assert st["replicas"] == 3 and st["observedGeneration"] == 1
        await dc.recorder.flush()
        await rsc.recorder.flush()
        events, _, _, _ = await stores.get("", "events").list("default", ListOptions())
        msgs = sorted(e["message"] for e in events)
        assert f"Scaled up replica set web-{h} from 0 to 3" in msgs
        assert sum(m.startswith(f"Created pod: web-{h}-") for m in msgs) == 3
    finally:
        await kv.close()


# ----------------------------------------------------------------------------- disruption budgets
def test_disruption_budget_arithmetic():
    from kubelite.controllers import disruption as dis
    from kubelite.kinds import policy

    pods = [pod("a"), pod("b"), pod("c", ready=False), pod("d")]
    pods[3]["metadata"]["deletionTimestamp"] = _ts(NOW)
    pdb = {"metadata": {"name": "p"}, "spec": {}, "status": {"disruptedPods": {
        "a": _ts(NOW - 10), "b": _ts(NOW - 1000), "gone": _ts(NOW)}}}
    disrupted, recheck = dis.disrupted_map(pods, pdb, NOW)
    assert disrupted == {"a": _ts(NOW - 10)}  # b's eviction is older than the deletion timeout
    assert recheck == parse(_ts(NOW - 10)) + dis.DELETION_TIMEOUT
    assert dis.count_healthy(pods, disrupted) == 1  # b: a is disrupted, c not ready, d terminating
    assert dis.scaled("50%", 3) == 2 and dis.scaled(1, 3) == 1
    st = {"disruptionsAllowed": 0, "observedGeneration": 2}
    dis.set_disruption_allowed(st, "t1")
    assert st["conditions"] == [{"type": "DisruptionAllowed", "status": "False", "observedGeneration": 2,
                                 "lastTransitionTime": "t1", "reason": "InsufficientPods", "message": ""}]
    errs = [str(e) for e in policy.validate_pdb_spec({"minAvailable": "150%", "unhealthyPodEvictionPolicy": "Never"},
                                                     policy.Path("spec"))]
    assert errs == ['spec.minAvailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:"150%"}: must '
                    'not be greater than 100%',
                    'spec.unhealthyPodEvictionPolicy: Unsupported value: "Never": supported values: "AlwaysAllow", '
                    '"IfHealthyBudget"']


def parse(ts: str) -> float:
    from kubelite.kinds._printing import parse_time

    t = parse_time(ts)
    assert t is not None
    return t


async def test_eviction_obeys_the_budget_and_its_unhealthy_pod_policy(tmp_path: Path):
    from types import SimpleNamespace

    from kubelite.api import errors
    from kubelite.apiserver.registry import DeleteOptions
    from kubelite.kinds.pod_rest import evict

    kv = SQLiteStore(str(tmp_path / "db"), compact_interval=0)
    await kv.start()
    try:
        stores = Stores.build(default_registry(), kv)
        pods, pdbs = stores.get("", "pods"), stores.get("policy", "poddisruptionbudgets")
        for name, ready in (("up", True), ("down", False), ("down2", False)):
            p = await pods.create("default", {"metadata": {"name": name, "labels": {"app": "db"}}, "spec": {
                "nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}}, W)
            p["status"] = {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": _ts(NOW)}]}
            await pods.update("default", name, p, W, "status")
        pdb = await pdbs.create("default", {"metadata": {"name": "db"}, "spec": {
            "minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}}}, W)
        pdb["status"] = {"observedGeneration": 1, "disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1,
                         "expectedPods": 3}
        await pdbs.update("default", "db", pdb, W, "status")
        handler = SimpleNamespace(stores=stores)

        with pytest.raises(errors.StatusError) as exc:
            await evict(handler, "default", "up", DeleteOptions())  # type: ignore[arg-type]
        assert exc.value.code == 429
        assert exc.value.message == "Cannot evict pod as it would violate the pod's disruption budget."
        assert exc.value.details == {"causes": [{"reason": "DisruptionBudget", "message": "The disruption budget db "
                                                 "needs 1 healthy pods and has 1 currently"}]}

        await evict(handler, "default", "down", DeleteOptions())  # type: ignore[arg-type]  # the budget is met
        gone = await pods.get("default", "down")
        assert gone["metadata"].get("deletionTimestamp")
        cond = next(c for c in gone["status"]["conditions"] if c["type"] == "DisruptionTarget")
        assert (cond["status"], cond["reason"], cond["message"]) == ("True", "EvictionByEvictionAPI",
                                                                     "Eviction API: evicting")
        assert (await pdbs.get("default", "db"))["status"]["disruptionsAllowed"] == 0  # nothing taken

        pdb = await pdbs.get("default", "db")
        pdb["status"]["currentHealthy"] = 0  # the budget is not met: only AlwaysAllow lets the unready pod go
        await pdbs.update("default", "db", pdb, W, "status")
        with pytest.raises(errors.StatusError):
            await evict(handler, "default", "down2", DeleteOptions())  # type: ignore[arg-type]
        pdb = await pdbs.get("default", "db")
        pdb["spec"]["unhealthyPodEvictionPolicy"] = "AlwaysAllow"
        await pdbs.update("default", "db", pdb, W)
        await evict(handler, "default", "down2", DeleteOptions())  # type: ignore[arg-type]
        assert (await pods.get("default", "down2"))["metadata"].get("deletionTimestamp")
    finally:
        await kv.close()


def test_replication_controller_defaults_from_its_template_and_validates():
    from kubelite.kinds.replicationcontrollers import REPLICATIONCONTROLLER

    rc = {"metadata": {"name": "legacy"}, "spec": {"template": {"metadata": {"labels": {"app": "legacy"}}, "spec": {
        "containers": [{"name": "c", "image": "i"}]}}}}
    REPLICATIONCONTROLLER.strategy.default(rc)
    assert rc["spec"]["selector"] == {"app": "legacy"} and rc["metadata"]["labels"] == {"app": "legacy"}
    assert rc["spec"]["replicas"] == 1 and REPLICATIONCONTROLLER.strategy.validate(rc) == []
    rc["spec"]["selector"] = {"app": "other"}
    rc["spec"]["replicas"] = -1
    assert [str(e) for e in REPLICATIONCONTROLLER.strategy.validate(rc)] == [
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"legacy"}: `selector` does not match '
        "template `labels`"]
    s = scale_of(REPLICATIONCONTROLLER.scale, {**rc, "status": {"replicas": 1}})  # type: ignore[arg-type]
    assert s["status"] == {"replicas": 1, "selector": "app=other"}


async def test_rolling_update_with_max_unavailable_0_surges_one_at_a_time(tmp_path: Path):
    kv = SQLiteStore(str(tmp_path / "db"), compact_interval=0)
    await kv.start()
    try:
        stores = Stores.build(default_registry(), kv)
        deployments, replicasets = stores.get("apps", "deployments"), stores.get("apps", "replicasets")
        dc = DeploymentController(stores)

        async def sync() -> dict[str, dict]:
            await _sync_informers(dc.d_informer, dc.rs_informer, dc.pod_informer)
            await dc.sync("default/web")
            await _sync_informers(dc.rs_informer)
            return {rs["metadata"]["annotations"][apps.REVISION]: rs for rs in dc.rs_informer.list("default")}

        async def available(rs: dict, n: int) -> None:
            cur = await replicasets.get("default", rs["metadata"]["name"])
            cur["status"] = {"replicas": n, "readyReplicas": n, "availableReplicas": n,
                             "observedGeneration": cur["metadata"]["generation"]}
            await replicasets.update("default", rs["metadata"]["name"], cur, W, "status")

        d = _deployment(replicas=3, strategy={"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
        await deployments.create("default", d, W)
        rss = await sync()
        await available(rss["1"], 3)
        await sync()
        cur = await deployments.get("default", "web")
        cur["spec"]["template"]["spec"]["containers"][0]["image"] = "i:2"
        await deployments.update("default", "web", cur, W)

        rss = await sync()  # the new ReplicaSet gets the one surge pod; nothing goes yet
        assert (rss["1"]["spec"]["replicas"], rss["2"]["spec"]["replicas"]) == (3, 1)
        rss = await sync()
        assert (rss["1"]["spec"]["replicas"], rss["2"]["spec"]["replicas"]) == (3, 1)
        await available(rss["2"], 1)
        rss = await sync()  # one available new pod: one old one may go
        assert (rss["1"]["spec"]["replicas"], rss["2"]["spec"]["replicas"]) == (2, 1)
        rss = await sync()
        assert (rss["1"]["spec"]["replicas"], rss["2"]["spec"]["replicas"]) == (2, 2)
        await dc.recorder.flush()
        events, _, _, _ = await stores.get("", "events").list("default", ListOptions())
        old = rss["1"]["metadata"]["name"]
        assert f"Scaled down replica set {old} from 3 to 2" in {e["message"] for e in events}
        st = (await deployments.get("default", "web"))["status"]
        assert du.get_condition(st, "Available")["reason"] == "MinimumReplicasAvailable"
        assert (await deployments.get("default", "web"))["metadata"]["annotations"][apps.REVISION] == "2"
    finally:
        await kv.close()


async def test_replica_set_adopts_matching_orphans_and_releases_what_stops_matching(tmp_path: Path):
    kv = SQLiteStore(str(tmp_path / "db"), compact_interval=0)
    await kv.start()
    try:
        stores = Stores.build(default_registry(), kv)
        pods, rss = stores.get("", "pods"), stores.get("apps", "replicasets")
        rsc = ReplicaSetController(stores)
        rs = rs_obj(replicas=2)
        for k in ("uid", "generation"):
            del rs["metadata"][k]
        rs = await rss.create("default", rs, W)
        for name in ("orphan", "stranger"):
            await pods.create("default", {"metadata": {"name": name, "labels": {"app": "x" if name == "orphan"
                                                                                   else "y"}},
                                          "spec": {"containers": [{"name": "c", "image": "i"}]}}, W)
        await _sync_informers(rsc.rs_informer, rsc.pod_informer)
        await rsc.sync("default/fe")
        orphan = await pods.get("default", "orphan")
        assert orphan["metadata"]["ownerReferences"] == [{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "fe", "uid": rs["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}]
        assert "ownerReferences" not in (await pods.get("default", "stranger"))["metadata"]
        listed, _, _, _ = await pods.list("default", ListOptions())
        assert len(listed) == 3  # the adopted orphan counts: one pod created, not two
        orphan["metadata"]["labels"] = {"app": "gone"}
        await pods.update("default", "orphan", orphan, W)
        await _sync_informers(rsc.pod_informer)
        rsc.expectations.delete("default/fe")
        await rsc.sync("default/fe")
        assert "ownerReferences" not in (await pods.get("default", "orphan"))["metadata"]  # released
    finally:
        await kv.close()
