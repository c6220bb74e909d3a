"""Patch semantics (JSON patch, merge patch, strategic merge patch) as a v1.37 apiserver.

Expected results of the strategic merge patch cases were checked against
``kubectl patch --local --type strategic`` (same strategicpatch package).
"""

from __future__ import annotations

import copy
import json

import pytest

from kubelite.api import schema
from kubelite.api.errors import StatusError
from kubelite.api.patch import (
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
    go_json_syntax_error,
    strategic_merge_patch_bytes,
    strategic_merge_patch_for_kind,
)

POD_SCHEMA = schema.definition("io.k8s.api.core.v1.Pod")
GENERIC_422 = "the server rejected our request due to an error in our request"


def make_pod() -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "p",
            "namespace": "default",
            "labels": {"app": "a", "tier": "t"},
            "annotations": {"x": "1"},
            "finalizers": ["f1", "f2", "f3"],
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "X", "name": "o1", "uid": "u1"},
                {"apiVersion": "v1", "kind": "X", "name": "o2", "uid": "u2"},
            ],
        },
        "spec": {
            "containers": [
                {
                    "name": "a",
                    "image": "ia",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443, "protocol": "TCP"}],
                    "env": [{"name": "E1", "value": "1"}, {"name": "E2", "value": "2"}],
                    "args": ["x", "y"],
                    "resources": {"limits": {"cpu": "1"}},
                },
                {"name": "b", "image": "ib"},
                {"name": "c", "image": "ic"},
            ],
            "volumes": [{"name": "v1", "emptyDir": {}}, {"name": "v2", "configMap": {"name": "cm"}}],
            "tolerations": [{"key": "k1", "operator": "Exists"}, {"key": "k2", "operator": "Exists"}],
            "nodeSelector": {"a": "b"},
        },
        "status": {
            "conditions": [{"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"}],
        },
    }


def smp(patch: dict | str, obj: dict | None = None) -> dict:
    body = patch if isinstance(patch, str) else json.dumps(patch)
    return strategic_merge_patch_bytes(obj if obj is not None else make_pod(), body.encode(), POD_SCHEMA)


def names(lst: list[dict], key: str = "name") -> list:
    return [x[key] for x in lst]


# ----------------------------------------------------------------------------- strategic: maps


def test_smp_adds_label_and_leaves_input_untouched():
    pod = make_pod()
    before = copy.deepcopy(pod)
    out = apply_strategic_merge_patch(pod, {"metadata": {"labels": {"new": "v"}}}, POD_SCHEMA)
    assert out["metadata"]["labels"] == {"app": "a", "tier": "t", "new": "v"}
    assert pod == before


def test_smp_null_deletes_key_and_whole_map():
    assert smp({"metadata": {"labels": {"app": None}}})["metadata"]["labels"] == {"tier": "t"}
    assert "nodeSelector" not in smp({"spec": {"nodeSelector": None}})["spec"]


def test_smp_map_directives_replace_and_delete():
    out = smp({"metadata": {"labels": {"$patch": "replace", "only": "me"}}})
    assert out["metadata"]["labels"] == {"only": "me"}
    out = smp({"metadata": {"labels": {"$patch": "delete"}}})
    assert out["metadata"]["labels"] == {}


def test_smp_nested_replace_directive_in_container_field():
    out = smp({"spec": {"containers": [{"name": "a", "resources": {"$patch": "replace", "requests": {"cpu": "2"}}}]}})
    assert out["spec"]["containers"][0]["resources"] == {"requests": {"cpu": "2"}}


def test_smp_unknown_field_is_taken_from_patch_without_nulls():
    out = smp({"spec": {"unknownField": {"a": {"b": None, "c": 1}}}})
    assert out["spec"]["unknownField"] == {"a": {"c": 1}}


def test_smp_type_change_takes_patch_value():
    out = smp({"spec": {"nodeSelector": {"a": {"nested": 1}}}})
    assert out["spec"]["nodeSelector"] == {"a": {"nested": 1}}


# ----------------------------------------------------------------------------- strategic: lists


def test_smp_containers_merge_by_name_new_first():
    out = smp({"spec": {"containers": [{"name": "c2", "image": "x"}, {"name": "a", "image": "new"}]}})
    cs = out["spec"]["containers"]
    assert names(cs) == ["c2", "a", "b", "c"]
    assert cs[1]["image"] == "new" and cs[1]["ports"][0]["containerPort"] == 80


def test_smp_new_container_goes_first_without_set_element_order():
    # patch items not in the live list sort before server-only items (mergeSortedSlice)
    out = smp({"spec": {"containers": [{"name": "z", "image": "iz"}]}})
    assert names(out["spec"]["containers"]) == ["z", "a", "b", "c"]


def test_smp_delete_container_with_patch_delete():
    out = smp({"spec": {"containers": [{"name": "b", "$patch": "delete"}, {"name": "z", "image": "iz"}]}})
    assert names(out["spec"]["containers"]) == ["z", "a", "c"]


def test_smp_list_replace_directive():
    out = smp({"spec": {"containers": [{"name": "q", "image": "iq"}, {"$patch": "replace"}]}})
    assert out["spec"]["containers"] == [{"name": "q", "image": "iq"}]


def test_smp_ports_merge_by_container_port_and_env_by_name():
    out = smp({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 8080}],
                                        "env": [{"name": "E1", "value": None}, {"name": "E3", "value": "3"}]}]}})
    c = out["spec"]["containers"][0]
    assert [p["containerPort"] for p in c["ports"]] == [8080, 80, 443]
    assert c["env"] == [{"name": "E1"}, {"name": "E3", "value": "3"}, {"name": "E2", "value": "2"}]


def test_smp_lists_without_strategy_are_replaced():
    out = smp({"spec": {"tolerations": [{"key": "k3", "operator": "Exists"}],
                        "containers": [{"name": "a", "args": ["z"]}]}})
    assert out["spec"]["tolerations"] == [{"key": "k3", "operator": "Exists"}]
    assert out["spec"]["containers"][0]["args"] == ["z"]


def test_smp_status_conditions_merge_by_type():
    out = smp({"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]}})
    assert out["status"]["conditions"] == [
        {"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"},
        {"type": "Initialized", "status": "True"}]


def test_smp_owner_references_merge_by_uid():
    out = smp({"metadata": {"ownerReferences": [{"uid": "u1", "$patch": "delete"},
                                                {"uid": "u3", "apiVersion": "v1", "kind": "X", "name": "o3"}]}})
    assert names(out["metadata"]["ownerReferences"], "uid") == ["u3", "u2"]


def test_smp_primitive_merge_list_union_and_delete_from_primitive_list():
    assert smp({"metadata": {"finalizers": ["f4", "f1"]}})["metadata"]["finalizers"] == ["f4", "f1", "f2", "f3"]
    out = smp({"metadata": {"$deleteFromPrimitiveList/finalizers": ["f2"]}})
    assert out["metadata"]["finalizers"] == ["f1", "f3"]
    out = smp({"metadata": {"$deleteFromPrimitiveList/finalizers": None}})
    assert "finalizers" not in out["metadata"]


def test_smp_set_element_order_primitive_list():
    out = smp({"metadata": {"$setElementOrder/finalizers": ["f3", "f9", "f1"], "finalizers": ["f9"],
                            "$deleteFromPrimitiveList/finalizers": ["f2"]}})
    assert out["metadata"]["finalizers"] == ["f3", "f9", "f1"]


def test_smp_set_element_order_reorders_containers():
    out = smp({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "b"}, {"name": "a"}]}})
    assert names(out["spec"]["containers"]) == ["c", "b", "a"]


def test_smp_set_element_order_keeps_server_only_items_in_place():
    out = smp({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
                        "containers": [{"name": "a", "image": "n"}]}})
    assert names(out["spec"]["containers"]) == ["b", "c", "a"]
    out = smp({"spec": {"$setElementOrder/containers": [{"name": "z"}, {"name": "a"}],
                        "containers": [{"name": "z", "image": "iz"}]}})
    assert names(out["spec"]["containers"]) == ["z", "a", "b", "c"]


def test_smp_nested_set_element_order():
    out = smp({"spec": {"containers": [{"name": "a", "$setElementOrder/ports": [
        {"containerPort": 443}, {"containerPort": 8080}, {"containerPort": 80}], "ports": [{"containerPort": 8080}]}]}})
    assert [p["containerPort"] for p in out["spec"]["containers"][0]["ports"]] == [443, 8080, 80]


def test_smp_retain_keys_clears_other_volume_source():
    out = smp({"spec": {"$setElementOrder/volumes": [{"name": "v2"}, {"name": "v1"}],
                        "volumes": [{"$retainKeys": ["name", "secret"], "name": "v2", "secret": {"secretName": "s"}}]}})
    assert out["spec"]["volumes"] == [{"name": "v2", "secret": {"secretName": "s"}}, {"name": "v1", "emptyDir": {}}]


def test_kubectl_client_side_apply_patch():
    last = json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                       "spec": {"containers": [{"name": "a", "image": "new"}]}})
    patch = {"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": last}},
             "spec": {"$setElementOrder/containers": [{"name": "a"}],
                      "containers": [{"image": "new", "name": "a"}, {"$patch": "delete", "name": "b"},
                                     {"$patch": "delete", "name": "c"}]}}
    out = smp(patch)
    assert names(out["spec"]["containers"]) == ["a"]
    assert out["spec"]["containers"][0]["image"] == "new"
    assert out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] == last
    assert out["metadata"]["annotations"]["x"] == "1"


def test_kubectl_apply_image_change_single_container():
    pod = {"metadata": {"name": "kuard"}, "spec": {"containers": [{"name": "kuard", "image": "old"}]}}
    out = smp('{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{}"}},'
              '"spec":{"$setElementOrder/containers":[{"name":"kuard"}],"containers":[{"image":"new","name":"kuard"}]}}',
              pod)
    assert out["spec"]["containers"] == [{"name": "kuard", "image": "new"}]


def test_smp_go_stable_sort_on_large_lists():
    live = [f"c{i}" for i in range(30)]
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": n, "image": "i"} for n in live]}}
    order = list(reversed(live))
    out = smp({"spec": {"$setElementOrder/containers": [{"name": n} for n in order]}}, pod)
    assert names(out["spec"]["containers"]) == order


def test_smp_strategic_for_kind():
    out = strategic_merge_patch_for_kind(make_pod(), b'{"metadata":{"labels":{"z":"1"}}}', "", "v1", "Pod")
    assert out["metadata"]["labels"]["z"] == "1"
    with pytest.raises(StatusError) as ei:
        strategic_merge_patch_for_kind({}, b"{}", "example.com", "v1", "Widget")
    assert ei.value.code == 415


# ----------------------------------------------------------------------------- strategic: errors


@pytest.mark.parametrize("patch,code,reason,message", [
    ({"spec": {"volumes": [{"name": "v2", "$retainKeys": ["name"], "secret": {}}]}},
     400, "BadRequest", "invalid patch format of retainKeys"),
    ({"metadata": {"$deleteFromPrimitiveList": ["f1"]}}, 400, "BadRequest", "invalid patch format of primitive list"),
    ({"metadata": {"finalizers": [["x"]]}}, 400, "BadRequest", "list element types are not identical: [[f1 f2 f3] [[x]]]"),
    ({"spec": {"containers": [{"image": "nokey"}]}}, 400, "BadRequest",
     "map: map[image:nokey] does not contain declared merge key: name"),
    ({"spec": {"containers": [{"$patch": "merge"}]}}, 400, "BadRequest", "merging lists cannot yet be specified in the patch"),
    ({"spec": {"containers": [{"name": "x", "$patch": "bogus"}]}}, 400, "BadRequest",
     "unknown patch type: bogus in map: map[$patch:bogus name:x]"),
    ({"spec": {"$setElementOrder/containers": "bad"}}, 400, "BadRequest", "expected a []interface {}, but received a string"),
])
def test_smp_errors(patch, code, reason, message):
    with pytest.raises(StatusError) as ei:
        smp(patch)
    assert (ei.value.code, ei.value.reason, ei.value.message) == (code, reason, message)


def test_smp_list_of_lists_is_generic_422():
    pod = {"metadata": {"finalizers": [["a"]]}}
    with pytest.raises(StatusError) as ei:
        smp({"metadata": {"finalizers": [["b"]]}}, pod)
    assert (ei.value.code, ei.value.reason, ei.value.message) == (422, "Invalid", GENERIC_422)


@pytest.mark.parametrize("body,message", [
    ("{bad", "invalid character 'b' looking for beginning of object key string"),
    ("", "unexpected end of JSON input"),
    ("[]", "json: cannot unmarshal array into Go value of type map[string]interface {}"),
    ('{"a":1}x', "invalid character 'x' after top-level value"),
])
def test_smp_bad_body_is_bad_request(body, message):
    with pytest.raises(StatusError) as ei:
        smp(body)
    assert (ei.value.code, ei.value.message) == (400, message)


def test_smp_null_body_is_noop():
    assert smp("null") == make_pod()


# ----------------------------------------------------------------------------- JSON patch


def jp(ops: list | str, obj: dict | None = None) -> dict:
    body = ops if isinstance(ops, str) else json.dumps(ops)
    return apply_json_patch(obj if obj is not None else make_pod(), body.encode())


def test_json_patch_basic_ops():
    out = jp([{"op": "add", "path": "/metadata/labels/new", "value": "v"},
              {"op": "remove", "path": "/metadata/labels/app"},
              {"op": "replace", "path": "/spec/nodeSelector/a", "value": "c"},
              {"op": "test", "path": "/metadata/name", "value": "p"},
              {"op": "copy", "from": "/metadata/labels", "path": "/metadata/annotations"},
              {"op": "move", "from": "/metadata/finalizers/0", "path": "/metadata/finalizers/-"}])
    assert out["metadata"]["labels"] == {"tier": "t", "new": "v"}
    assert out["metadata"]["annotations"] == {"tier": "t", "new": "v"}
    assert out["spec"]["nodeSelector"] == {"a": "c"}
    assert out["metadata"]["finalizers"] == ["f2", "f3", "f1"]


def test_json_patch_escaped_keys_and_negative_indices():
    out = jp([{"op": "add", "path": "/metadata/labels/a~1b", "value": "1"},
              {"op": "add", "path": "/metadata/finalizers/-1", "value": "last"},
              {"op": "remove", "path": "/metadata/finalizers/-4"}])
    assert out["metadata"]["labels"]["a/b"] == "1"
    assert out["metadata"]["finalizers"] == ["f2", "f3", "last"]


def test_json_patch_v4_quirks():
    out = jp([{"op": "replace", "path": "/metadata/labels/missing", "value": "added"},
              {"op": "add", "path": "/metadata/labels/nullval"},
              {"op": "test", "path": "/metadata/labels/absent", "value": None}])
    assert out["metadata"]["labels"]["missing"] == "added"
    assert out["metadata"]["labels"]["nullval"] is None


@pytest.mark.parametrize("ops", [
    [{"op": "test", "path": "/metadata/name", "value": "other"}],
    [{"op": "test", "path": "/spec/nodeSelector", "value": {"a": "b", "c": "d"}}],
    [{"op": "remove", "path": "/metadata/labels/nope"}],
    [{"op": "add", "path": "/metadata/missing/x", "value": 1}],
    [{"op": "add", "path": "/metadata/finalizers/9", "value": "x"}],
    [{"op": "bogus", "path": "/x"}],
    [{"path": "/x"}],
    [None],
    [{"op": "add", "path": "", "value": {}}],
])
def test_json_patch_failures_are_generic_422(ops):
    with pytest.raises(StatusError) as ei:
        jp(ops)
    assert (ei.value.code, ei.value.reason, ei.value.message) == (422, "Invalid", GENERIC_422)


@pytest.mark.parametrize("body,message", [
    ("{}", "json: cannot unmarshal object into Go value of type jsonpatch.Patch"),
    ("[1]", "json: cannot unmarshal number into Go value of type jsonpatch.Operation"),
    ("[{", "unexpected end of JSON input"),
])
def test_json_patch_decode_errors_are_bad_request(body, message):
    with pytest.raises(StatusError) as ei:
        jp(body)
    assert (ei.value.code, ei.value.reason, ei.value.message) == (400, "BadRequest", message)


def test_json_patch_null_and_empty_are_noops():
    assert jp("null") == make_pod()
    assert jp("[]") == make_pod()


def test_json_patch_too_many_operations():
    with pytest.raises(StatusError) as ei:
        jp([{"op": "test", "path": "/metadata/name", "value": "p"}] * 10001)
    assert ei.value.code == 413
    assert ei.value.message.endswith("is 10000, got 10001")


def test_json_patch_replace_root_with_array_is_invalid():
    with pytest.raises(StatusError) as ei:
        jp([{"op": "replace", "path": "", "value": []}])
    assert ei.value.code == 422


# ----------------------------------------------------------------------------- merge patch


def test_merge_patch_label_and_annotate():
    # what `kubectl label` / `kubectl annotate` send
    out = apply_merge_patch(make_pod(), b'{"metadata":{"labels":{"app":null,"env":"prod"},"annotations":{"y":"2"}}}')
    assert out["metadata"]["labels"] == {"tier": "t", "env": "prod"}
    assert out["metadata"]["annotations"] == {"x": "1", "y": "2"}


def test_merge_patch_replaces_lists_and_prunes_nulls_of_new_values():
    out = apply_merge_patch(make_pod(), json.dumps({
        "spec": {"containers": [{"name": "b", "image": None}], "newMap": {"a": None, "b": {"c": None, "d": 1}}},
    }).encode())
    assert out["spec"]["containers"] == [{"name": "b"}]  # v4 prunes nulls inside a replaced list
    assert out["spec"]["newMap"] == {"b": {"d": 1}}


@pytest.mark.parametrize("body", [b"null", b'"x"', b"5", b"{bad", b""])
def test_merge_patch_bad_bodies(body):
    with pytest.raises(StatusError) as ei:
        apply_merge_patch(make_pod(), body)
    assert (ei.value.code, ei.value.reason, ei.value.message) == (400, "BadRequest", "Invalid JSON Patch")


def test_merge_patch_array_body_is_invalid():
    with pytest.raises(StatusError) as ei:
        apply_merge_patch(make_pod(), b"[]")
    assert ei.value.code == 422


# ----------------------------------------------------------------------------- JSON scanner


@pytest.mark.parametrize("body,message", [
    (b'{"a":tru}', "invalid character '}' in literal true (expecting 'e')"),
    (b'{"a" 1}', "invalid character '1' after object key"),
    (b'{"a":1 "b":2}', "invalid character '\"' after object key:value pair"),
    (b"[1 2]", "invalid character '2' after array element"),
    (b'{"a":01}', "invalid character '1' after object key:value pair"),
    (b'{"a":-}', "invalid character '}' in numeric literal"),
    (b'{"a":"\\q"}', "invalid character 'q' in string escape code"),
    (b'{"a":1}', None),
])
def test_go_json_syntax_errors(body, message):
    assert go_json_syntax_error(body) == message
