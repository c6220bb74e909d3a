"""The DaemonSet kind (defaults, validation, printing), the decisions of its controller (which
node runs a daemon pod, the tolerations and node affinity it gets) and the controller over real
stores (SQLite in a temp dir) driven one sync at a time: nodes joining and leaving, taints,
rolling update with maxUnavailable, history in ControllerRevisions."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from kubelite.apiserver.registry import DeleteOptions, WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.controllers import daemonset as dc
from kubelite.controllers.daemonset import DaemonSetController
from kubelite.kinds import daemonsets as dk
from kubelite.kinds.registry import default_registry
from kubelite.store.sqlite import SQLiteStore

W = WriteOptions(field_manager="test")


def ds(**spec: Any) -> dict:
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"containers": [{"name": "c", "image": "img:1"}]}}, **spec}}


def node(name: str, labels: dict | None = None, taints: list | None = None) -> dict:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {"taints": taints} if taints else {}}


def _msgs(obj: dict) -> list[str]:
    dk.default_daemonset(obj)
    return [str(e) for e in dk.DaemonSetStrategy().validate(obj)]


def test_defaults_are_upstreams():
    d = ds()
    dk.default_daemonset(d)
    assert d["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                           "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert d["spec"]["revisionHistoryLimit"] == 10
    strategy = dk.DaemonSetStrategy()
    strategy.prepare_for_create(d)
    assert d["metadata"]["annotations"] == {"deprecated.daemonset.template.generation": "1"}
    new = {**d, "spec": {**d["spec"], "template": {**d["spec"]["template"], "spec": {"containers": [
        {"name": "c", "image": "img:2"}]}}}}
    strategy.prepare_for_update(new, d)
    assert new["metadata"]["annotations"]["deprecated.daemonset.template.generation"] == "2"


@pytest.mark.parametrize(("change", "message"), [
    ({"selector": {"matchLabels": {"app": "other"}}},
     'spec.template.metadata.labels: Invalid value: map[string]string{"app":"agent"}: `selector` does not match '
     'template `labels`'),
    ({"updateStrategy": {"type": "Sometimes"}},
     'spec.updateStrategy: Unsupported value: apps.DaemonSetUpdateStrategy{Type:"Sometimes", '
     'RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}: supported values: "RollingUpdate", "OnDelete"'),
    ({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}},
     "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"),
    ({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}}},
     'spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: intstr.IntOrString{Type:0, IntVal:1, StrVal:""}: '
     'may not be set when maxUnavailable is non-zero'),
    ({"minReadySeconds": -1}, "spec.minReadySeconds: Invalid value: -1: must be greater than or equal to 0"),
])
def test_bad_specs_get_upstreams_messages(change, message):
    d = ds()
    d["spec"].update(change)
    assert message in _msgs(d)


def test_printer_columns():
    strategy = dk.DaemonSetStrategy()
    assert [c.name for c in strategy.columns if c.priority == 0] == [
        "Name", "Desired", "Current", "Ready", "Up-to-date", "Available", "Node Selector", "Age"]
    d = ds()
    d["spec"]["template"]["spec"]["nodeSelector"] = {"b": "2", "a": "1"}
    d["status"] = {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1,
                   "updatedNumberScheduled": 2, "numberAvailable": 1}
    assert strategy.row(d)[:7] == ["agent", 2, 2, 1, 2, 1, "a=1,b=2"]
    cr = {"metadata": {"name": "agent-abc", "ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": "u", "controller": True}]},
        "revision": 3}
    assert dk.ControllerRevisionStrategy().row(cr)[:3] == ["agent-abc", "daemonset.apps/agent", 3]


def test_daemon_pods_tolerate_node_problems_and_are_pinned_by_affinity():
    d = ds()
    d["spec"]["template"]["spec"]["hostNetwork"] = True
    d["spec"]["template"]["spec"]["tolerations"] = [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                                                     "effect": "NoExecute", "tolerationSeconds": 5}]
    d["spec"]["template"]["spec"]["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "x", "operator": "Exists"}]}]}}}
    template = dc.pod_template(d, "h1")
    assert template["metadata"]["labels"] == {"app": "agent", "controller-revision-hash": "h1",
                                              "pod-template-generation": "0"}
    tols = {(t["key"], t["effect"]) for t in template["spec"]["tolerations"]}
    assert tols == {("node.kubernetes.io/not-ready", "NoExecute"), ("node.kubernetes.io/unreachable", "NoExecute"),
                    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
                    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
                    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
                    ("node.kubernetes.io/unschedulable", "NoSchedule"),
                    ("node.kubernetes.io/network-unavailable", "NoSchedule")}
    # a matching toleration is replaced (its tolerationSeconds goes: the daemon pod stays)
    assert len(template["spec"]["tolerations"]) == 7
    assert all("tolerationSeconds" not in t for t in template["spec"]["tolerations"])
    pod = dc.new_pod(d, template, "n2")
    assert pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]}
    assert dc.target_node(pod) == "n2"


def test_which_nodes_should_run_a_daemon_pod():
    d = ds()
    d["spec"]["template"]["spec"]["nodeSelector"] = {"role": "edge"}
    assert dc.should_run(d, node("n1", {"role": "edge"})) == (True, True)
    assert dc.should_run(d, node("n2")) == (False, False)
    taint = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
    assert dc.should_run(d, node("n3", {"role": "edge"}, [taint])) == (False, True)
    assert dc.should_run(d, node("n4", {"role": "edge"}, [{**taint, "effect": "NoExecute"}])) == (False, False)
    unschedulable = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
    not_ready = {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}
    assert dc.should_run(d, node("n5", {"role": "edge"}, [unschedulable, not_ready])) == (True, True)
    d["spec"]["template"]["spec"]["tolerations"] = [{"key": "dedicated", "operator": "Exists"}]
    assert dc.should_run(d, node("n3", {"role": "edge"}, [taint])) == (True, True)


# ----------------------------------------------------------------------------- the controller
class _Env:
    def __init__(self, stores: Stores) -> None:
        self.stores = stores
        self.ctl = DaemonSetController(stores)
        self.pods = stores.get("", "pods")
        self.nodes = stores.get("", "nodes")
        self.sets = stores.get("apps", "daemonsets")

    async def sync(self) -> dict:
        infs = (self.ctl.ds_informer, self.ctl.pod_informer, self.ctl.node_informer, self.ctl.rev_informer)
        for inf in infs:
            await inf._list()
        await self.ctl.sync("default/agent")
        for inf in infs:
            await inf._list()
        return await self.sets.get("default", "agent")

    def by_node(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for p in self.ctl.pod_informer.list("default"):
            if not p["metadata"].get("deletionTimestamp"):
                out.setdefault(dc.target_node(p), []).append(p["metadata"]["name"])
        return out

    async def bind_and_ready(self) -> None:
        """What the scheduler and the kubelet would do."""
        for p in await self._pods():
            if p["metadata"].get("deletionTimestamp"):
                await self.pods.delete("default", p["metadata"]["name"], DeleteOptions(grace_period_seconds=0))
                continue
            p["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True",
                                                               "lastTransitionTime": time.strftime(
                                                                   "%Y-%m-%dT%H:%M:%SZ", time.gmtime())}]}
            await self.pods.update("default", p["metadata"]["name"], p, W, "status")

    async def _pods(self) -> list[dict]:
        from kubelite.apiserver.registry import ListOptions
        items, *_ = await self.pods.list("default", ListOptions())
        return items


@pytest.fixture
async def env(tmp_path: Path):
    kv = SQLiteStore(str(tmp_path / "db"), compact_interval=0)
    await kv.start()
    try:
        yield _Env(Stores.build(default_registry(), kv))
    finally:
        await kv.close()


async def test_one_pod_per_node_following_nodes_and_a_rolling_update(env: _Env):
    await env.nodes.create("", node("n1"), W)
    await env.sets.create("default", ds(), W)
    await env.sync()
    assert list(env.by_node()) == ["n1"]
    d = await env.sync()  # the status counts what the sync started from
    assert d["status"]["desiredNumberScheduled"] == 1 and d["status"]["currentNumberScheduled"] == 1
    (rev,) = env.ctl.rev_informer.list("default")
    h = rev["metadata"]["labels"]["controller-revision-hash"]
    assert rev["metadata"]["name"] == f"agent-{h}" and rev["revision"] == 1
    assert [len(v) for v in env.by_node().values()] == [1]  # no second pod

    # a node joins: it gets a pod; a tainted one does not
    await env.nodes.create("", node("n2"), W)
    await env.nodes.create("", node("n3", taints=[{"key": "k", "effect": "NoSchedule"}]), W)
    await env.sync()
    assert sorted(env.by_node()) == ["n1", "n2"]
    await env.bind_and_ready()
    d = await env.sync()
    st = d["status"]
    assert (st["desiredNumberScheduled"], st["currentNumberScheduled"], st["numberReady"], st["numberAvailable"],
            st["updatedNumberScheduled"]) == (2, 2, 2, 2, 2)

    # a template change: one node at a time (maxUnavailable 1)
    d["spec"]["template"]["spec"]["containers"][0]["image"] = "img:2"
    await env.sets.update("default", "agent", d, W)
    await env.sync()
    live = [p for p in env.ctl.pod_informer.list("default") if not p["metadata"].get("deletionTimestamp")]
    assert [p["spec"]["containers"][0]["image"] for p in live] == ["img:1"]  # one node at a time
    for _ in range(6):
        await env.bind_and_ready()
        d = await env.sync()
    pods = [p for p in env.ctl.pod_informer.list("default") if not p["metadata"].get("deletionTimestamp")]
    assert sorted(dc.target_node(p) for p in pods) == ["n1", "n2"]
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {"img:2"}
    assert {p["metadata"]["labels"]["pod-template-generation"] for p in pods} == {"2"}
    assert sorted(r["revision"] for r in env.ctl.rev_informer.list("default")) == [1, 2]
    assert d["status"]["updatedNumberScheduled"] == 2

    # a node that gets a NoExecute taint loses its pod
    n2 = await env.nodes.get("", "n2")
    n2["spec"]["taints"] = [{"key": "gone", "effect": "NoExecute"}]
    await env.nodes.update("", "n2", n2, W)
    await env.sync()
    assert list(env.by_node()) == ["n1"]


async def test_surge_starts_the_new_pod_before_the_old_one_goes(env: _Env):
    for n in ("n1", "n2"):
        await env.nodes.create("", node(n), W)
    await env.sets.create("default", ds(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {
        "maxSurge": 1, "maxUnavailable": 0}}), W)
    await env.sync()
    await env.bind_and_ready()
    d = await env.sync()
    d["spec"]["template"]["spec"]["containers"][0]["image"] = "img:2"
    await env.sets.update("default", "agent", d, W)
    await env.sync()
    counts = sorted(len(v) for v in env.by_node().values())
    assert counts == [1, 2]  # one node surged: its old pod stays until the new one is available
    for _ in range(6):
        await env.bind_and_ready()
        await env.sync()
        assert all(any(p["status"].get("phase") == "Running" for p in env.ctl.pod_informer.list("default")
                       if dc.target_node(p) == n) for n in ("n1", "n2"))
    pods = [p for p in env.ctl.pod_informer.list("default") if not p["metadata"].get("deletionTimestamp")]
    assert sorted(dc.target_node(p) for p in pods) == ["n1", "n2"]
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {"img:2"}
