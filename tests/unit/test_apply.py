"""Server-side apply and managedFields (kubelite.api.apply, kubelite.api.fieldpath)."""

from __future__ import annotations

import copy
import json

import pytest

from kubelite.api import apply as ssa
from kubelite.api import schema as sch
from kubelite.api.errors import StatusError
from kubelite.api.fieldpath import FieldSet, compare, field, key, merge, to_field_set

POD = sch.definition("io.k8s.api.core.v1.Pod")
DEPLOY = sch.definition("io.k8s.api.apps.v1.Deployment")
T0, T1, T2, T3 = (f"2024-05-01T00:00:0{i}Z" for i in range(4))


def pod_config(image: str = "gcr.io/kuar-demo/kuard-amd64:blue", labels: dict | None = None) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "kuard", "namespace": "default", "labels": labels or {"app": "kuard"}},
        "spec": {"containers": [{"name": "kuard", "image": image}]},
    }


def stored(obj: dict, uid: str = "uid-1") -> dict:
    """What the registry would persist: identity filled in."""
    out = copy.deepcopy(obj)
    out["metadata"].setdefault("uid", uid)
    out["metadata"].setdefault("resourceVersion", "1")
    return out


def entries(obj: dict) -> list[tuple[str, str]]:
    return [(e["manager"], e["operation"]) for e in obj["metadata"].get("managedFields", [])]


def fields_of(obj: dict, manager: str) -> dict:
    for e in obj["metadata"]["managedFields"]:
        if e["manager"] == manager:
            return e["fieldsV1"]
    raise AssertionError(f"no entry for {manager}")


# --------------------------------------------------------------------------- FieldSet

UPSTREAM = ('{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:containers":'
            '{"k:{\\"name\\":\\"kuard\\"}":{".":{},"f:image":{},"f:name":{}}}}}')


def test_fieldsv1_round_trip_is_byte_identical():
    doc = json.loads(UPSTREAM)
    fs = FieldSet.from_fields_v1(doc)
    assert json.dumps(fs.to_fields_v1(), separators=(",", ":")) == UPSTREAM
    c = ("f", "spec"), ("f", "containers"), key(name="kuard")
    assert fs.paths == {
        field("metadata", "labels"), field("metadata", "labels", "app"),
        c, c + (("f", "image"),), c + (("f", "name"),),
    }


def test_fieldsv1_sorting_values_keys_and_unknown_elements():
    doc = {"f:b": {}, "f:a": {"v:\"y\"": {}, "v:\"x\"": {}, "v:3": {}},
           "f:p": {"k:{\"protocol\":\"TCP\",\"containerPort\":80}": {".": {}, "f:containerPort": {}}},
           "z:unknown": {}}
    fs = FieldSet.from_fields_v1(doc)
    out = fs.to_fields_v1()
    assert list(out) == ["f:a", "f:b", "f:p"]
    assert list(out["f:a"]) == ["v:3", 'v:"x"', 'v:"y"']  # numbers sort before strings
    assert list(out["f:p"]) == ['k:{"containerPort":80,"protocol":"TCP"}']
    assert fs.strings()[:2] == [".b", '.a[=3]']


def test_fieldsv1_decode_errors():
    with pytest.raises(ValueError):
        FieldSet.from_fields_v1({"k:notjson": {}})
    with pytest.raises(ValueError):
        FieldSet.from_fields_v1({"fx": {}})


def test_to_field_set_of_a_pod():
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "labels": {"a": "1"}, "finalizers": ["x/y"]},
        "spec": {"nodeSelector": {"disk": "ssd"}, "securityContext": {},
                 "containers": [{"name": "c", "image": "i", "command": ["sh", "-c"],
                                 "ports": [{"containerPort": 80, "protocol": "UDP"}]}]},
    }
    got = to_field_set(pod, POD).to_fields_v1()
    assert got == {
        "f:apiVersion": {}, "f:kind": {},
        "f:metadata": {"f:finalizers": {'v:"x/y"': {}}, "f:labels": {"f:a": {}}, "f:name": {}},
        "f:spec": {
            "f:containers": {'k:{"name":"c"}': {
                ".": {}, "f:command": {}, "f:image": {}, "f:name": {},
                "f:ports": {'k:{"containerPort":80,"protocol":"UDP"}': {
                    ".": {}, "f:containerPort": {}, "f:protocol": {}}}}},
            "f:nodeSelector": {},  # atomic map: one leaf
            "f:securityContext": {},  # empty struct: a leaf
        },
    }


def test_compare_marks_new_maps_and_list_items():
    old = {"metadata": {}, "spec": {"containers": [{"name": "a", "image": "1"}]}}
    new = {"metadata": {"labels": {"x": "y"}},
           "spec": {"containers": [{"name": "a", "image": "2"}, {"name": "b", "image": "3"}]}}
    c = compare(old, new, POD)
    b = ("f", "spec"), ("f", "containers"), key(name="b")
    assert c.added.paths == {field("metadata", "labels"), field("metadata", "labels", "x"),
                             b, b + (("f", "name"),), b + (("f", "image"),)}
    assert c.modified.strings() == ['.spec.containers[name="a"].image']
    assert not c.removed


def test_merge_associative_lists_by_key_and_replaces_atomic():
    live = {"spec": {"containers": [{"name": "a", "image": "1", "command": ["x", "y"]},
                                    {"name": "b", "image": "2"}]}}
    cfg = {"spec": {"containers": [{"name": "b", "image": "3"}, {"name": "c", "image": "4"}],
                    }}
    out = merge(live, cfg, POD)
    assert out["spec"]["containers"] == [{"name": "a", "image": "1", "command": ["x", "y"]},
                                         {"name": "b", "image": "3"}, {"name": "c", "image": "4"}]
    out = merge(live, {"spec": {"containers": [{"name": "a", "command": ["z"]}]}}, POD)
    assert out["spec"]["containers"][0]["command"] == ["z"]


# --------------------------------------------------------------------------- apply

def test_apply_create():
    obj = ssa.apply(None, pod_config(), "kubectl", False, POD, "v1", T0)
    assert obj["spec"]["containers"] == [{"name": "kuard", "image": "gcr.io/kuar-demo/kuard-amd64:blue"}]
    assert obj["metadata"]["managedFields"] == [{
        "manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": T0,
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}},
                     "f:spec": {"f:containers": {'k:{"name":"kuard"}': {".": {}, "f:image": {}, "f:name": {}}}}},
    }]


def test_reapply_changed_image_and_noop():
    live = stored(ssa.apply(None, pod_config(), "kubectl", False, POD, "v1", T0))
    obj = ssa.apply(live, pod_config(image="kuard:green"), "kubectl", False, POD, "v1", T1)
    assert obj["spec"]["containers"][0]["image"] == "kuard:green"
    assert obj["metadata"]["uid"] == "uid-1"
    assert obj["metadata"]["managedFields"][0]["time"] == T1
    # same configuration again: nothing changes, not even the timestamp
    again = ssa.apply(stored(obj), pod_config(image="kuard:green"), "kubectl", False, POD, "v1", T2)
    assert again["metadata"]["managedFields"][0]["time"] == T1


def test_reapply_removes_fields_no_longer_applied():
    live = stored(ssa.apply(None, pod_config(labels={"app": "kuard", "tier": "web"}),
                            "kubectl", False, POD, "v1", T0))
    obj = ssa.apply(live, pod_config(), "kubectl", False, POD, "v1", T1)
    assert obj["metadata"]["labels"] == {"app": "kuard"}
    assert fields_of(obj, "kubectl")["f:metadata"] == {"f:labels": {"f:app": {}}}


def test_reapply_keeps_fields_owned_by_another_applier():
    live = stored(ssa.apply(None, pod_config(labels={"app": "kuard", "tier": "web"}),
                            "kubectl", False, POD, "v1", T0))
    other = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kuard", "labels": {"tier": "web"}}}
    live = stored(ssa.apply(live, other, "ops", False, POD, "v1", T1))
    # the object did not change, so (as upstream) the new entry has no time and sorts first
    assert entries(live) == [("ops", "Apply"), ("kubectl", "Apply")]
    assert "time" not in live["metadata"]["managedFields"][0]
    obj = ssa.apply(live, pod_config(), "kubectl", False, POD, "v1", T2)
    assert obj["metadata"]["labels"] == {"app": "kuard", "tier": "web"}


def test_apply_removes_list_items():
    cfg = pod_config()
    cfg["spec"]["containers"].append({"name": "sidecar", "image": "busybox"})
    live = stored(ssa.apply(None, cfg, "kubectl", False, POD, "v1", T0))
    obj = ssa.apply(live, pod_config(), "kubectl", False, POD, "v1", T1)
    assert [c["name"] for c in obj["spec"]["containers"]] == ["kuard"]


def created_by_client_side_apply() -> dict:
    """kubectl apply (client side) on a new object: a create with fieldManager kubectl-client-side-apply."""
    new = pod_config()
    new["metadata"]["annotations"] = {ssa.LAST_APPLIED: json.dumps(pod_config()) + "\n"}
    ssa.update_managed_fields(None, new, "kubectl-client-side-apply", POD, "v1", T0)
    return stored(new)


def test_create_tracks_update_entry_like_upstream():
    obj = created_by_client_side_apply()
    assert obj["metadata"]["managedFields"] == [{
        "manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1", "time": T0,
        "fieldsType": "FieldsV1",
        "fieldsV1": {
            "f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}},
                           "f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:containers": {'k:{"name":"kuard"}': {".": {}, "f:image": {}, "f:name": {}}}},
        },
    }]


def test_conflict_with_client_side_apply_and_force():
    live = created_by_client_side_apply()
    with pytest.raises(StatusError) as ei:
        ssa.apply(live, pod_config(image="kuard:green"), "ci", False, POD, "v1", T1)
    err = ei.value
    assert err.code == 409 and err.reason == "Conflict"
    assert err.message == ('Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using v1: '
                           '.spec.containers[name="kuard"].image')
    assert err.status()["details"] == {"causes": [{
        "reason": "FieldManagerConflict", "message": 'conflict with "kubectl-client-side-apply" using v1',
        "field": '.spec.containers[name="kuard"].image'}]}

    obj = ssa.apply(live, pod_config(image="kuard:green"), "ci", True, POD, "v1", T1)
    assert obj["spec"]["containers"][0]["image"] == "kuard:green"
    csa = fields_of(obj, "kubectl-client-side-apply")
    assert "f:image" not in csa["f:spec"]["f:containers"]['k:{"name":"kuard"}']
    assert "f:image" in fields_of(obj, "ci")["f:spec"]["f:containers"]['k:{"name":"kuard"}']


def test_applying_same_values_shares_ownership():
    live = created_by_client_side_apply()
    obj = ssa.apply(live, pod_config(), "ci", False, POD, "v1", T1)
    assert entries(obj) == [("ci", "Apply"), ("kubectl-client-side-apply", "Update")]
    assert "f:image" in fields_of(obj, "kubectl-client-side-apply")["f:spec"]["f:containers"]['k:{"name":"kuard"}']


def test_several_conflicts_message():
    live = created_by_client_side_apply()
    cfg = pod_config(image="kuard:green", labels={"app": "other"})
    with pytest.raises(StatusError) as ei:
        ssa.apply(live, cfg, "ci", False, POD, "v1", T1)
    assert ei.value.message == (
        'Apply failed with 2 conflicts: conflicts with "kubectl-client-side-apply" using v1:\n'
        "- .metadata.labels.app\n"
        '- .spec.containers[name="kuard"].image')
    assert len(ei.value.details["causes"]) == 2


def test_kubectl_server_side_migrates_from_client_side_apply():
    """Manager "kubectl": conflicts on fields still equal to last-applied are forced, and the
    last-applied annotation follows the applied configuration."""
    live = created_by_client_side_apply()
    obj = ssa.apply(live, pod_config(image="kuard:green"), "kubectl", False, POD, "v1", T1)
    assert obj["spec"]["containers"][0]["image"] == "kuard:green"
    assert json.loads(obj["metadata"]["annotations"][ssa.LAST_APPLIED]) == pod_config(image="kuard:green")
    assert obj["metadata"]["annotations"][ssa.LAST_APPLIED].endswith("\n")
    # a field changed by someone else since the client-side apply still conflicts
    live2 = copy.deepcopy(live)
    live2["spec"]["containers"][0]["image"] = "edited"
    ssa.update_managed_fields(live, live2, "kubectl-edit", POD, "v1", T1)
    with pytest.raises(StatusError) as ei:
        ssa.apply(live2, pod_config(image="kuard:green"), "kubectl", False, POD, "v1", T2)
    assert 'conflict with "kubectl-edit" using v1' in ei.value.message


def test_update_tracking_across_managers_then_apply():
    live = created_by_client_side_apply()
    labelled = copy.deepcopy(live)
    labelled["metadata"]["labels"]["env"] = "prod"
    ssa.update_managed_fields(live, labelled, "kubectl-label", POD, "v1", T1)
    assert entries(labelled) == [("kubectl-client-side-apply", "Update"), ("kubectl-label", "Update")]
    assert fields_of(labelled, "kubectl-label") == {"f:metadata": {"f:labels": {"f:env": {}}}}

    # the label manager now changes the app label too: ownership moves
    relabelled = copy.deepcopy(labelled)
    relabelled["metadata"]["labels"]["app"] = "kuard2"
    ssa.update_managed_fields(labelled, relabelled, "kubectl-label", POD, "v1", T2)
    assert fields_of(relabelled, "kubectl-label") == {"f:metadata": {"f:labels": {"f:app": {}, "f:env": {}}}}
    assert "f:app" not in fields_of(relabelled, "kubectl-client-side-apply")["f:metadata"]["f:labels"]
    assert relabelled["metadata"]["managedFields"][1]["time"] == T2

    # an applier touching the label conflicts with kubectl-label
    with pytest.raises(StatusError) as ei:
        ssa.apply(relabelled, pod_config(), "ci", False, POD, "v1", T3)
    assert ei.value.message == ('Apply failed with 1 conflict: conflict with "kubectl-label" using v1: '
                                ".metadata.labels.app")


def test_update_without_changes_keeps_entries_and_times():
    live = created_by_client_side_apply()
    same = copy.deepcopy(live)
    ssa.update_managed_fields(live, same, "kubectl-edit", POD, "v1", T3)
    assert same["metadata"]["managedFields"] == live["metadata"]["managedFields"]


def test_removed_fields_leave_every_set_and_empty_managers_are_dropped():
    live = created_by_client_side_apply()
    new = copy.deepcopy(live)
    del new["metadata"]["labels"]
    del new["metadata"]["annotations"]
    new["spec"]["containers"] = [{"name": "other", "image": "x"}]
    ssa.update_managed_fields(live, new, "kubectl-replace", POD, "v1", T1)
    assert entries(new) == [("kubectl-replace", "Update")]


def test_managed_fields_reset_and_client_supplied():
    live = created_by_client_side_apply()
    for reset in ([], [{}]):
        new = copy.deepcopy(live)
        new["metadata"]["managedFields"] = reset
        ssa.update_managed_fields(live, new, "kubectl-edit", POD, "v1", T1)
        assert "managedFields" not in new["metadata"]
    # a client may rewrite managedFields (kubectl's client-side → server-side migration does)
    new = copy.deepcopy(live)
    mf = copy.deepcopy(live["metadata"]["managedFields"])
    mf[0]["manager"], mf[0]["operation"] = "kubectl", "Apply"
    new["metadata"]["managedFields"] = mf
    ssa.update_managed_fields(live, new, "kubectl", POD, "v1", T1)
    assert entries(new) == [("kubectl", "Apply")]
    # invalid entries are ignored in favour of the live ones
    new = copy.deepcopy(live)
    new["metadata"]["managedFields"] = [{"manager": "x", "operation": "Bogus"}]
    ssa.update_managed_fields(live, new, "kubectl-edit", POD, "v1", T1)
    assert new["metadata"]["managedFields"] == live["metadata"]["managedFields"]


def test_objects_without_managed_fields_get_before_first_apply():
    live = stored(pod_config())
    obj = ssa.apply(live, pod_config(labels={"app": "kuard", "x": "y"}), "ci", False, POD, "v1", T1)
    assert entries(obj) == [("ci", "Apply"), ("before-first-apply", "Update")]
    with pytest.raises(StatusError) as ei:
        ssa.apply(live, pod_config(image="new"), "ci", False, POD, "v1", T1)
    assert '"before-first-apply" using v1' in ei.value.message


def test_status_is_not_owned_through_the_main_resource():
    cfg = pod_config()
    cfg["status"] = {"phase": "Running"}
    obj = ssa.apply(None, cfg, "kubectl", False, POD, "v1", T0)
    assert "f:status" not in fields_of(obj, "kubectl")


def test_apply_rejects_wrong_kind_and_managed_fields():
    cfg = pod_config()
    cfg["kind"] = "Deployment"
    with pytest.raises(StatusError) as ei:
        ssa.apply(None, cfg, "kubectl", False, POD, "v1", T0)
    assert ei.value.code == 400 and ei.value.message == "invalid object type: /v1, Kind=Deployment"
    cfg = pod_config()
    cfg["metadata"]["managedFields"] = []
    with pytest.raises(StatusError) as ei:
        ssa.apply(None, cfg, "kubectl", False, POD, "v1", T0)
    assert ei.value.message == "metadata.managedFields must be nil"


def test_apply_typed_errors():
    cfg = pod_config()
    cfg["spec"]["containers"].append({"image": "x"})
    with pytest.raises(StatusError) as ei:
        ssa.apply(None, cfg, "kubectl", False, POD, "v1", T0)
    assert ei.value.code == 400 and ei.value.reason == "BadRequest"  # upstream: 500; bad input is never a 500 here
    assert "associative list with keys has an element that omits all key fields" in ei.value.message


def test_deployment_apply_and_scale_conflict():
    cfg = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "d"}},
                    "template": {"metadata": {"labels": {"app": "d"}},
                                 "spec": {"containers": [{"name": "c", "image": "i"}]}}}}
    live = stored(ssa.apply(None, cfg, "kubectl", False, DEPLOY, "apps/v1", T0))
    f = fields_of(live, "kubectl")["f:spec"]
    assert f["f:selector"] == {}  # LabelSelector is an atomic struct
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 5
    ssa.update_managed_fields(live, scaled, "kubectl-scale", DEPLOY, "apps/v1", T1)
    with pytest.raises(StatusError) as ei:
        ssa.apply(stored(scaled), cfg, "kubectl", False, DEPLOY, "apps/v1", T2)
    assert ei.value.message.endswith('conflict with "kubectl-scale" using apps/v1: .spec.replicas')


def test_update_managers_are_capped():
    live = created_by_client_side_apply()
    for i in range(12):
        new = copy.deepcopy(live)
        new["metadata"]["labels"][f"l{i}"] = "x"
        ssa.update_managed_fields(live, new, f"m{i}", POD, "v1", f"2024-05-01T00:01:{i:02d}Z")
        live = new
    names = [m for m, _ in entries(live)]
    assert len(names) == 10 and "ancient-changes" in names


def test_default_manager_and_validation():
    assert ssa.default_manager("kubectl/v1.37.1 (linux/amd64) kubernetes/abcdef") == "kubectl"
    assert ssa.default_manager("OpenAPI-Generator/37.0.2/python") == "OpenAPI-Generator"
    assert ssa.default_manager("a\x00b/1") == "ab"
    assert len(ssa.default_manager("x" * 300)) == 128
    errs = ssa.validate_managed_fields([{"manager": "m", "operation": "Patch", "fieldsType": "FieldsV2"}])
    assert [str(e) for e in errs] == [
        'metadata.managedFields[0].operation: Invalid value: "Patch": must be `Apply` or `Update`',
        'metadata.managedFields[0].fieldsType: Invalid value: "FieldsV2": must be `FieldsV1`',
    ]


def test_strip_for_diff_and_timestamp_only_changes():
    live = created_by_client_side_apply()
    a = ssa.strip_for_diff(live)
    assert "managedFields" not in a["metadata"] and "resourceVersion" not in a["metadata"]
    new = copy.deepcopy(live)
    new["metadata"]["managedFields"][0]["time"] = T3
    ssa.ignore_managed_fields_timestamps(live, new)
    assert new["metadata"]["managedFields"][0]["time"] == T0


# --------------------------------------------------------------------------- update fast paths

def _kuard_created() -> dict:
    from kubelite.kinds.pods import PodStrategy

    probe = {"failureThreshold": 3, "initialDelaySeconds": 5, "periodSeconds": 10, "timeoutSeconds": 1}
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "kuard", "namespace": "default", "labels": {"app": "kuard"}},
        "spec": {"containers": [{
            "name": "kuard", "image": "kubelite.local/kuard-amd64:blue",
            "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
            "resources": {"requests": {"cpu": "500m", "memory": "128Mi"},
                          "limits": {"cpu": "1000m", "memory": "256Mi"}},
            "livenessProbe": {"httpGet": {"path": "/healthy", "port": 8080}, **probe},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, **probe},
        }]},
    }
    PodStrategy().default(pod)
    PodStrategy().prepare_for_create(pod)
    pod["metadata"].update(uid="uid-1", creationTimestamp=T0, generation=1)
    return pod


# FieldsV1 as the implementation before the fast paths wrote it (byte-for-byte).
KUARD_CREATE = (
    '{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:containers":{"k:{\\"name\\":\\"kuard\\"}":'
    '{".":{},"f:image":{},"f:imagePullPolicy":{},"f:livenessProbe":{".":{},"f:failureThreshold":{},'
    '"f:httpGet":{".":{},"f:path":{},"f:port":{},"f:scheme":{}},"f:initialDelaySeconds":{},'
    '"f:periodSeconds":{},"f:successThreshold":{},"f:timeoutSeconds":{}},"f:name":{},"f:ports":{".":{},'
    '"k:{\\"containerPort\\":8080,\\"protocol\\":\\"TCP\\"}":{".":{},"f:containerPort":{},"f:name":{},'
    '"f:protocol":{}}},"f:readinessProbe":{".":{},"f:failureThreshold":{},"f:httpGet":{".":{},"f:path":{},'
    '"f:port":{},"f:scheme":{}},"f:initialDelaySeconds":{},"f:periodSeconds":{},"f:successThreshold":{},'
    '"f:timeoutSeconds":{}},"f:resources":{".":{},"f:limits":{".":{},"f:cpu":{},"f:memory":{}},'
    '"f:requests":{".":{},"f:cpu":{},"f:memory":{}}},"f:terminationMessagePath":{},'
    '"f:terminationMessagePolicy":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},'
    '"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:serviceAccount":{},'
    '"f:serviceAccountName":{},"f:terminationGracePeriodSeconds":{},"f:tolerations":{}}}'
)


def _compact(v) -> str:
    return json.dumps(v, separators=(",", ":"))


def _clear_fields_memos() -> None:
    ssa._DECODED.clear()
    ssa._ENCODED.clear()


@pytest.mark.parametrize("warm", [False, True])
def test_update_managed_fields_of_a_kuard_pod_is_byte_identical(warm):
    _clear_fields_memos()
    if warm:  # second round: decode/encode served from the memos
        ssa.update_managed_fields(None, _kuard_created(), "kubectl-create", POD, "v1", T1)
    live = _kuard_created()
    ssa.update_managed_fields(None, live, "kubectl-create", POD, "v1", T1)
    assert _compact(fields_of(live, "kubectl-create")) == KUARD_CREATE
    live["metadata"]["resourceVersion"] = "1"
    snapshot = copy.deepcopy(live)

    new = copy.deepcopy(live)
    new["spec"]["containers"][0]["image"] = "kubelite.local/kuard-amd64:green"
    ssa.update_managed_fields(live, new, "kubectl-edit", POD, "v1", T2)
    assert live == snapshot  # the old object is only read
    assert entries(new) == [("kubectl-create", "Update"), ("kubectl-edit", "Update")]
    assert _compact(fields_of(new, "kubectl-edit")) == '{"f:spec":{"f:containers":{"k:{\\"name\\":\\"kuard\\"}":{"f:image":{}}}}}'
    assert _compact(fields_of(new, "kubectl-create")) == KUARD_CREATE.replace('"f:image":{},', "", 1)

    st = copy.deepcopy(live)
    st["status"] = {"phase": "Running", "podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}],
                    "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": None}]}
    ssa.update_managed_fields(live, st, "kubelet", POD, "v1", T2, "status")
    assert _compact(fields_of(st, "kubelet")) == (
        '{"f:status":{"f:conditions":{".":{},"k:{\\"type\\":\\"Ready\\"}":{".":{},"f:lastProbeTime":{},'
        '"f:status":{},"f:type":{}}},"f:phase":{},"f:podIP":{},"f:podIPs":{".":{},'
        '"k:{\\"ip\\":\\"10.0.0.5\\"}":{".":{},"f:ip":{}}}}}')
    assert _compact(fields_of(st, "kubectl-create")) == KUARD_CREATE
    assert [e["subresource"] for e in st["metadata"]["managedFields"] if e["manager"] == "kubelet"] == ["status"]


def test_memoized_fields_are_fresh_dicts_and_canonical():
    _clear_fields_memos()
    # not in canonical order, with an unknown element: re-encoded canonically every time
    raw = {"f:spec": {"f:b": {}, "f:a": {}}, "z:x": {}, "f:metadata": {"f:labels": {"f:x": {}}}}
    mf = [{"manager": "m", "operation": "Update", "apiVersion": "v1", "time": T0,
           "fieldsType": "FieldsV1", "fieldsV1": raw}]
    outs = []
    for _ in range(3):
        out = ssa.encode_managed_fields(ssa.decode_managed_fields(copy.deepcopy(mf)))
        outs.append(out)
        assert _compact(out[0]["fieldsV1"]) == '{"f:metadata":{"f:labels":{"f:x":{}}},"f:spec":{"f:a":{},"f:b":{}}}'
    outs[0][0]["fieldsV1"]["f:spec"]["f:zzz"] = {}  # callers own what they get
    assert outs[1][0]["fieldsV1"] is not outs[0][0]["fieldsV1"]
    again = ssa.encode_managed_fields(ssa.decode_managed_fields(mf))
    assert "f:zzz" not in again[0]["fieldsV1"]["f:spec"]
    # decoded sets are independent too
    a = ssa.decode_managed_fields(mf)
    next(iter(a.values())).fields.add(field("spec", "c"))
    b = ssa.decode_managed_fields(mf)
    assert field("spec", "c") not in next(iter(b.values())).fields


def test_compare_with_ignored_equals_exclude_and_skips_equal_subtrees():
    old = _kuard_created()
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "other"
    new["status"]["phase"] = "Running"
    new["spec"]["priority"] = True  # 0 -> True: Python == says equal, SMD says modified
    new["metadata"]["labels"]["x"] = "y"
    ign = FieldSet.of(field("status"))
    a, b = compare(old, new, POD, ign), compare(old, new, POD).exclude(ign)
    assert (a.added, a.modified, a.removed) == (b.added, b.modified, b.removed)
    assert sorted(a.modified.strings()) == ['.spec.containers[name="kuard"].image', ".spec.priority"]
    old["spec"]["enableServiceLinks"] = 1  # True -> 1: still a modification
    assert ".spec.enableServiceLinks" in compare(old, new, POD).modified.strings()
    # 1 and 1.0 are equal values
    x = {"spec": {"terminationGracePeriodSeconds": 30, "containers": [{"name": "a", "ports": [{"containerPort": 1}]}]}}
    y = {"spec": {"terminationGracePeriodSeconds": 30.0, "containers": [{"name": "a", "ports": [{"containerPort": 1.0}]}]}}
    assert compare(x, y, POD).is_same()
