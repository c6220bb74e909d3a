"""The StatefulSet kind (defaults, validation, printing) and its controller over real stores
(SQLite in a temp dir) driven one sync at a time: ordered creation, identity, scale down in
reverse order, rolling update by revision, claims from volumeClaimTemplates."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from kubelite.apiserver.registry import ListOptions, WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.controllers import history as hist
from kubelite.controllers.statefulset import StatefulSetController, claim_name, new_claims, new_pod
from kubelite.kinds import statefulsets as sk
from kubelite.kinds.base import Column, Kind
from kubelite.kinds.registry import default_registry
from kubelite.store.sqlite import SQLiteStore

W = WriteOptions(field_manager="test")


def sts(replicas: int = 3, **spec: Any) -> dict:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": replicas, "serviceName": "nginx", "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "img:1"}]}}, **spec}}


def _msgs(obj: dict) -> list[str]:
    sk.default_statefulset(obj)
    return [str(e) for e in sk.StatefulSetStrategy().validate(obj)]


def test_defaults_are_upstreams():
    s = sts()
    del s["spec"]["replicas"]
    sk.default_statefulset(s)
    spec = s["spec"]
    assert spec["podManagementPolicy"] == "OrderedReady"
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0, "maxUnavailable": 1}}
    assert spec["revisionHistoryLimit"] == 10 and spec["replicas"] == 1
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert spec["template"]["spec"]["restartPolicy"] == "Always"


@pytest.mark.parametrize(("change", "message"), [
    ({"replicas": -1}, "spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
    ({"selector": {"matchLabels": {"app": "other"}}},
     'spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: `selector` does not match '
     'template `labels`'),
    ({"updateStrategy": {"type": "Sometimes"}},
     'spec.updateStrategy: Invalid value: apps.StatefulSetUpdateStrategy{Type:"Sometimes", '
     'RollingUpdate:(*apps.RollingUpdateStatefulSetStrategy)(nil)}: must be \'RollingUpdate\' or \'OnDelete\''),
    ({"podManagementPolicy": "Random"}, "spec.podManagementPolicy: Invalid value: \"Random\": must be "
                                        "'OrderedReady' or 'Parallel'"),
    ({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": -2}}},
     "spec.updateStrategy.rollingUpdate.partition: Invalid value: -2: must be greater than or equal to 0"),
    ({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}}},
     'spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:0, IntVal:0, '
     'StrVal:""}: cannot be 0'),
    ({"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Keep"}},
     'spec.persistentVolumeClaimRetentionPolicy.whenDeleted: Unsupported value: "Keep": supported values: '
     '"Retain", "Delete"'),
    ({"selector": {}}, "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
                       "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for "
                       "statefulset"),
])
def test_bad_specs_get_upstreams_messages(change, message):
    s = sts()
    s["spec"].update(change)
    assert message in _msgs(s)


def test_only_some_fields_may_change():
    old, new = sts(), sts(replicas=5)
    for o in (old, new):
        sk.default_statefulset(o)
    strategy = sk.StatefulSetStrategy()
    assert strategy.validate_update(new, old) == []
    new["spec"]["serviceName"] = "other"
    assert [str(e) for e in strategy.validate_update(new, old)] == [
        "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
        "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"]


def test_printer_columns():
    strategy = sk.StatefulSetStrategy()
    assert [c.name for c in strategy.columns if c.priority == 0] == ["Name", "Ready", "Age"]
    s = sts()
    s["status"] = {"readyReplicas": 2}
    assert strategy.row(s)[:2] == ["web", "2/3"]
    assert isinstance(sk.STATEFULSET, Kind) and all(isinstance(c, Column) for c in strategy.columns)


def test_pod_identity_and_claims():
    s = sts(volumeClaimTemplates=[{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"]}}])
    s["metadata"]["uid"] = "u1"
    p = new_pod(s, s["spec"]["template"], 2, "web-abc")
    assert p["metadata"]["name"] == "web-2" and "generateName" not in p["metadata"]
    assert p["metadata"]["labels"] == {"app": "web", "statefulset.kubernetes.io/pod-name": "web-2",
                                       "apps.kubernetes.io/pod-index": "2", "controller-revision-hash": "web-abc"}
    assert (p["spec"]["hostname"], p["spec"]["subdomain"]) == ("web-2", "nginx")
    assert p["spec"]["volumes"] == [{"name": "www", "persistentVolumeClaim": {"claimName": "www-web-2"}}]
    (claim,) = new_claims(s, p, 2)
    assert claim["metadata"] == {"name": "www-web-2", "namespace": "default", "labels": {"app": "web"}}
    assert claim_name(s["spec"]["volumeClaimTemplates"][0], s, 0) == "www-web-0"


# ----------------------------------------------------------------------------- the controller
class _Env:
    def __init__(self, stores: Stores, ctl: StatefulSetController) -> None:
        self.stores = stores
        self.ctl = ctl
        self.pods = stores.get("", "pods")

    async def sync(self) -> None:
        for inf in (self.ctl.set_informer, self.ctl.pod_informer, self.ctl.rev_informer):
            await inf._list()
        await self.ctl.sync("default/web")
        for inf in (self.ctl.set_informer, self.ctl.pod_informer, self.ctl.rev_informer):
            await inf._list()

    def names(self) -> list[str]:
        return sorted(p["metadata"]["name"] for p in self.ctl.pod_informer.list("default")
                      if not p["metadata"].get("deletionTimestamp"))

    async def make_ready(self, name: str) -> None:
        p = await self.pods.get("default", name)
        p["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime":
                                                           time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}]}
        await self.pods.update("default", name, p, W, "status")

    async def finish_deletions(self) -> None:
        """What the kubelet would do: pods being deleted go."""
        from kubelite.apiserver.registry import DeleteOptions
        for p in self.ctl.pod_informer.list("default"):
            if p["metadata"].get("deletionTimestamp"):
                await self.pods.delete("default", p["metadata"]["name"], DeleteOptions(grace_period_seconds=0))


@pytest.fixture
async def env(tmp_path: Path):
    kv = SQLiteStore(str(tmp_path / "db"), compact_interval=0)
    await kv.start()
    try:
        stores = Stores.build(default_registry(), kv)
        yield _Env(stores, StatefulSetController(stores))
    finally:
        await kv.close()


async def test_ordered_creation_scale_down_and_rolling_update(env: _Env):
    sets = env.stores.get("apps", "statefulsets")
    await sets.create("default", sts(), W)
    await env.sync()
    assert env.names() == ["web-0"]
    await env.sync()
    assert env.names() == ["web-0"]  # OrderedReady: web-1 waits for web-0
    await env.make_ready("web-0")
    await env.sync()
    assert env.names() == ["web-0", "web-1"]
    await env.make_ready("web-1")
    await env.sync()
    await env.make_ready("web-2")
    await env.sync()
    s = await sets.get("default", "web")
    st = s["status"]
    (rev,) = env.ctl.rev_informer.list("default")
    assert rev["revision"] == 1 and rev["metadata"]["labels"]["app"] == "web"
    assert rev["data"]["spec"]["template"]["$patch"] == "replace"
    assert (st["replicas"], st["readyReplicas"], st["currentReplicas"], st["updatedReplicas"]) == (3, 3, 3, 3)
    assert st["currentRevision"] == st["updateRevision"] == rev["metadata"]["name"]
    assert st["observedGeneration"] == 1

    # a template change: a second revision, pods replaced from the highest ordinal down
    s["spec"]["template"]["spec"]["containers"][0]["image"] = "img:2"
    await sets.update("default", "web", s, W)
    await env.sync()
    revs = hist.by_revision(env.ctl.rev_informer.list("default"))
    assert [r["revision"] for r in revs] == [1, 2]
    deleting = [p["metadata"]["name"] for p in env.ctl.pod_informer.list("default")
                if p["metadata"].get("deletionTimestamp")]
    assert deleting == ["web-2"] or "web-2" not in env.names()
    await env.finish_deletions()
    await env.sync()
    p2 = await env.pods.get("default", "web-2")
    assert p2["spec"]["containers"][0]["image"] == "img:2"
    assert p2["metadata"]["labels"]["controller-revision-hash"] == revs[1]["metadata"]["name"]

    # scale down 3 -> 1: web-2 goes first, then web-1
    await env.make_ready("web-2")
    s = await sets.get("default", "web")
    s["spec"]["replicas"] = 1
    await sets.update("default", "web", s, W)
    await env.sync()
    assert "web-2" not in env.names() and "web-1" in env.names()
    await env.finish_deletions()
    await env.sync()
    assert env.names() == ["web-0"]


async def test_parallel_creates_all_and_claim_templates_make_claims(env: _Env):
    sets = env.stores.get("apps", "statefulsets")
    await sets.create("default", sts(podManagementPolicy="Parallel"), W)
    await env.sync()
    assert env.names() == ["web-0", "web-1", "web-2"]
    s = sts(volumeClaimTemplates=[{"metadata": {"name": "www"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}])
    s["metadata"]["name"] = "db"
    s["spec"]["selector"] = {"matchLabels": {"app": "db"}}
    s["spec"]["template"]["metadata"]["labels"] = {"app": "db"}
    await sets.create("default", s, W)
    for inf in (env.ctl.set_informer, env.ctl.pod_informer, env.ctl.rev_informer):
        await inf._list()
    await env.ctl.sync("default/db")
    claim = await env.ctl.claims.get("default", "www-db-0")
    assert claim["metadata"]["labels"] == {"app": "db"}
    pod = await env.pods.get("default", "db-0")
    assert {"name": "www", "persistentVolumeClaim": {"claimName": "www-db-0"}} in pod["spec"]["volumes"]


def test_claim_templates_may_be_mounted_without_a_volume():
    s = sts(volumeClaimTemplates=[{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"]}}])
    s["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [{"name": "www", "mountPath": "/www"}]
    assert _msgs(s) == []


async def test_claims_are_made_once_and_follow_the_retention_policy(tmp_path: Path):
    kv = SQLiteStore(str(tmp_path / "db"), compact_interval=0)
    await kv.start()
    try:
        stores = Stores.build(default_registry(), kv)
        env = _Env(stores, StatefulSetController(stores))
        claims = stores.get("", "persistentvolumeclaims")
        s = sts(replicas=2, podManagementPolicy="Parallel",
                persistentVolumeClaimRetentionPolicy={"whenDeleted": "Delete", "whenScaled": "Delete"},
                volumeClaimTemplates=[{"metadata": {"name": "www", "labels": {"tier": "data"}},
                                       "spec": {"accessModes": ["ReadWriteOnce"],
                                                "resources": {"requests": {"storage": "1Gi"}}}}])
        created = await stores.get("apps", "statefulsets").create("default", s, W)
        await env.sync()
        await env.sync()
        for i in (0, 1):
            c = await claims.get("default", f"www-web-{i}")
            assert c["metadata"]["labels"] == {"tier": "data", "app": "web"}
            assert c["spec"]["accessModes"] == ["ReadWriteOnce"]
            (ref,) = c["metadata"]["ownerReferences"]  # whenDeleted Delete: the set owns it
            assert (ref["kind"], ref["uid"], ref["controller"]) == ("StatefulSet", created["metadata"]["uid"], False)
            pod = await env.pods.get("default", f"web-{i}")
            assert {"name": "www", "persistentVolumeClaim": {"claimName": f"www-web-{i}"}} in pod["spec"]["volumes"]
        for name in ("web-0", "web-1"):
            await env.make_ready(name)
        cur = await stores.get("apps", "statefulsets").get("default", "web")
        cur["spec"]["replicas"] = 1
        await stores.get("apps", "statefulsets").update("default", "web", cur, W)
        await env.sync()
        c1 = await claims.get("default", "www-web-1")  # whenScaled Delete: the condemned pod owns it too
        assert {r["kind"] for r in c1["metadata"]["ownerReferences"]} == {"StatefulSet", "Pod"}
        assert env.names() == ["web-0"] or "web-1" not in env.names()
        await env.ctl.recorder.flush()
        events, *_ = await stores.get("", "events").list("default", ListOptions())
        assert "create Claim www-web-0 Pod web-0 in StatefulSet web success" in {e["message"] for e in events}
    finally:
        await kv.close()


async def test_partition_keeps_low_ordinals_and_on_delete_waits_for_deletion(env: _Env):
    sets = env.stores.get("apps", "statefulsets")
    await sets.create("default", sts(podManagementPolicy="Parallel", updateStrategy={
        "type": "RollingUpdate", "rollingUpdate": {"partition": 2}}), W)
    await env.sync()
    for i in range(3):
        await env.make_ready(f"web-{i}")
    await env.sync()
    s = await sets.get("default", "web")
    s["spec"]["template"]["spec"]["containers"][0]["image"] = "img:2"
    await sets.update("default", "web", s, W)
    for _ in range(4):
        await env.sync()
        await env.finish_deletions()
        for name in env.names():
            await env.make_ready(name)
    images = {p["metadata"]["name"]: p["spec"]["containers"][0]["image"]
              for p in env.ctl.pod_informer.list("default")}
    assert images == {"web-0": "img:1", "web-1": "img:1", "web-2": "img:2"}
    st = (await sets.get("default", "web"))["status"]
    assert (st["updatedReplicas"], st["currentReplicas"]) == (1, 2) and st["currentRevision"] != st["updateRevision"]

    # OnDelete: nothing is replaced until a pod is deleted; a deleted one comes back on the new template
    s = await sets.get("default", "web")
    s["spec"]["updateStrategy"] = {"type": "OnDelete"}
    s["spec"]["template"]["spec"]["containers"][0]["image"] = "img:3"
    await sets.update("default", "web", s, W)
    await env.sync()
    assert {p["spec"]["containers"][0]["image"] for p in env.ctl.pod_informer.list("default")} == {"img:1", "img:2"}
    from kubelite.apiserver.registry import DeleteOptions
    await env.pods.delete("default", "web-0", DeleteOptions(grace_period_seconds=0))
    await env.sync()
    assert (await env.pods.get("default", "web-0"))["spec"]["containers"][0]["image"] == "img:3"


async def test_an_orphan_with_a_members_name_is_adopted_and_given_its_identity(env: _Env):
    await env.pods.create("default", {"metadata": {"name": "web-0", "labels": {"app": "web"}},
                                      "spec": {"containers": [{"name": "c", "image": "img:1"}]}}, W)
    await env.pods.create("default", {"metadata": {"name": "other-0", "labels": {"app": "web"}},
                                      "spec": {"containers": [{"name": "c", "image": "img:1"}]}}, W)
    await env.make_ready("web-0")
    await env.stores.get("apps", "statefulsets").create("default", sts(replicas=1, updateStrategy={
        "type": "OnDelete"}), W)
    await env.sync()
    await env.sync()
    pod = await env.pods.get("default", "web-0")
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "StatefulSet"
    assert pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "web-0"
    assert pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == "0"
    assert "ownerReferences" not in (await env.pods.get("default", "other-0"))["metadata"]  # not a member
