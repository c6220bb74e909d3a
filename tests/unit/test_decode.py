"""Typed decoding of request bodies: Go's messages, unknown fields, zero values, canonical forms."""

from __future__ import annotations

import json

import orjson
import pytest

from kubelite.api import decode as dec
from kubelite.api import gotime
from kubelite.api.errors import StatusError
from kubelite.apiserver import bodies, http
from kubelite.apiserver.handlers import check_type
from kubelite.kinds.registry import default_registry

CM = "io.k8s.api.core.v1.ConfigMap"
POD = "io.k8s.api.core.v1.Pod"
REG = default_registry()
CONFIGMAP = REG.by_kind("", "v1", "ConfigMap")
PODKIND = REG.by_kind("", "v1", "Pod")


def err_of(ref: str, body: dict | str) -> str:
    obj = json.loads(body) if isinstance(body, str) else body
    with pytest.raises(dec.DecodeError) as ei:
        dec.decode(obj, ref)
    return str(ei.value)


GO_MESSAGES = [
    (CM, {"metadata": {"name": "m1", "finalizers": 5}},
     "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.finalizers of type []string"),
    (CM, {"metadata": {"name": "m1", "finalizers": [5]}},
     "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.finalizers of type string"),
    (CM, {"metadata": {"labels": {"a": 1}}},
     "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string"),
    (CM, {"data": {"a": 1}}, "json: cannot unmarshal number into Go struct field ConfigMap.data of type string"),
    (CM, {"data": ["a"]},
     "json: cannot unmarshal array into Go struct field ConfigMap.data of type map[string]string"),
    (CM, {"metadata": {"ownerReferences": "abc"}},
     "json: cannot unmarshal string into Go struct field ObjectMeta.metadata.ownerReferences of type "
     "[]v1.OwnerReference"),
    (CM, {"metadata": {"generateName": 7}},
     "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.generateName of type string"),
    (CM, {"metadata": {"resourceVersion": 12}},
     "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.resourceVersion of type string"),
    (CM, {"metadata": "x"}, "json: cannot unmarshal string into Go struct field ConfigMap.metadata of type "
                            "v1.ObjectMeta"),
    (CM, {"immutable": "yes"}, "json: cannot unmarshal string into Go struct field ConfigMap.immutable of type bool"),
    (POD, {"spec": {"terminationGracePeriodSeconds": "abc"}},
     "json: cannot unmarshal string into Go struct field PodSpec.spec.terminationGracePeriodSeconds of type int64"),
    (POD, {"spec": {"terminationGracePeriodSeconds": 1.5}},
     "json: cannot unmarshal number 1.5 into Go struct field PodSpec.spec.terminationGracePeriodSeconds of type "
     "int64"),
    (POD, {"spec": {"terminationGracePeriodSeconds": 9223372036854775808}},
     "json: cannot unmarshal number 9223372036854775808 into Go struct field "
     "PodSpec.spec.terminationGracePeriodSeconds of type int64"),
    (POD, {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 2147483648}]}]}},
     "json: cannot unmarshal number 2147483648 into Go struct field ContainerPort.spec.containers.ports."
     "containerPort of type int32"),
    (POD, {"spec": {"restartPolicy": 5}},
     "json: cannot unmarshal number into Go struct field PodSpec.spec.restartPolicy of type v1.RestartPolicy"),
    (POD, {"spec": {"containers": [5]}},
     "json: cannot unmarshal number into Go struct field PodSpec.spec.containers of type v1.Container"),
    (POD, {"spec": {"containers": [{"name": "c", "livenessProbe": {"httpGet": {"port": True}}}]}},
     "json: cannot unmarshal bool into Go struct field HTTPGetAction.spec.containers.livenessProbe.httpGet.port "
     "of type int32"),
    (POD, {"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "lots"}}}]}},
     "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"),
    (POD, {"status": {"startTime": 5}},
     "json: cannot unmarshal number into Go struct field PodStatus.status.startTime of type string"),
    (POD, {"status": {"startTime": "yesterday"}},
     'parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"'),
    (POD, {"status": {"startTime": "2024-13-01T00:00:00Z"}}, 'parsing time "2024-13-01T00:00:00Z": month out of '
                                                             'range'),
    ("io.k8s.api.core.v1.Event", {"eventTime": "2024-01-01T00:00:00Z"},
     'parsing time "2024-01-01T00:00:00Z" as "2006-01-02T15:04:05.000000Z07:00": cannot parse "Z" as ".000000"'),
]


@pytest.mark.parametrize("ref,body,message", GO_MESSAGES, ids=[m[2][:60] for m in GO_MESSAGES])
def test_go_decode_messages(ref, body, message):
    assert err_of(ref, body) == message


def test_first_saved_error_wins_but_a_custom_unmarshaler_ends_decoding():
    assert err_of(CM, {"data": {"a": 1}, "metadata": {"labels": {"b": 2}}}).endswith("ConfigMap.data of type string")
    # the int-or-string error aborts even though restartPolicy's error came first
    assert "httpGet.port" in err_of(POD, {"spec": {"restartPolicy": 5, "containers": [
        {"name": "c", "livenessProbe": {"httpGet": {"port": {}}}}]}})


@pytest.mark.parametrize("data,offset", [("!!!", 0), ("YWJj!", 4), ("YQ", 0), ("YQ=", 3), ("YQ==a", 4),
                                         ("YWJjZA=x", 6), ("=", 0)])
def test_secret_data_must_be_base64(data, offset):
    assert err_of("io.k8s.api.core.v1.Secret", {"data": {"a": data}}) == \
        f"illegal base64 data at input byte {offset}"


def test_base64_is_kept_canonical():
    out = dec.decode({"data": {"a": "YW\nJj", "b": ""}}, "io.k8s.api.core.v1.Secret").obj
    assert out["data"] == {"a": "YWJj", "b": ""}


def test_unknown_fields_are_dropped_and_reported_in_document_order():
    res = dec.decode({"metadata": {"name": "x", "zz": 1, "x\ny": 2}, "spec": {"containers": [
        {"name": "c", "image": "i", "foo": {"bar": 1}}]}, "extra": True}, POD)
    assert res.unknown == ["metadata.zz", "metadata.x\ny", "spec.containers[0].foo", "extra"]
    assert "zz" not in res.obj["metadata"] and "foo" not in res.obj["spec"]["containers"][0]
    assert "extra" not in res.obj


def test_zero_values_of_non_omitempty_fields_are_written():
    out = dec.decode({"metadata": {"name": "n"}, "status": {"nodeInfo": {"kubeletVersion": "v1.37.0"}}},
                     "io.k8s.api.core.v1.Node").obj
    info = out["status"]["nodeInfo"]
    assert info["kubeProxyVersion"] == "" and info["machineID"] == "" and info["kubeletVersion"] == "v1.37.0"
    assert out["status"]["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 0}}
    assert "swap" not in info  # a nil pointer with omitempty
    assert out["spec"] == {}


def test_omitempty_drops_empty_values():
    out = dec.decode({"spec": {"containers": [{"image": "i", "name": "c", "args": [], "env": None}]},
                      "metadata": {"labels": {}, "name": "p", "namespace": ""}, "kind": "Pod"}, POD).obj
    assert set(out) == {"kind", "metadata", "spec", "status"}
    assert out["metadata"] == {"name": "p"}
    assert out["spec"]["containers"] == [{"name": "c", "image": "i", "resources": {}}]
    assert out["status"] == {}


def test_null_into_values():
    out = dec.decode({"data": {"a": None}, "metadata": {"name": None, "labels": None}}, CM).obj
    assert out == {"metadata": {}, "data": {"a": ""}}
    pod = dec.decode({"spec": {"containers": None}}, POD).obj
    assert pod["spec"]["containers"] is None  # no omitempty: null, as Go writes a nil slice


def test_quantities_and_times_are_canonical():
    out = dec.decode({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1000m",
                                                                                       "memory": "1048576Ki"}}}]},
                      "status": {"startTime": "2024-01-01T02:00:00.123+02:00"}}, POD).obj
    assert out["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "1", "memory": "1Gi"}
    assert out["status"]["startTime"] == "2024-01-01T00:00:00Z"
    ev = dec.decode({"eventTime": "2024-01-01T00:00:00.500000+01:00"}, "io.k8s.api.core.v1.Event").obj
    assert ev["eventTime"] == "2023-12-31T23:00:00.500000Z" and ev["firstTimestamp"] is None


def test_int_or_string_keeps_its_type():
    out = dec.decode({"spec": {"containers": [{"name": "c", "readinessProbe": {"httpGet": {"port": "http"}},
                                               "livenessProbe": {"tcpSocket": {"port": 8080}}}]}}, POD).obj
    c = out["spec"]["containers"][0]
    assert c["readinessProbe"]["httpGet"]["port"] == "http" and c["livenessProbe"]["tcpSocket"]["port"] == 8080


def test_raw_fields_are_opaque():
    out = dec.decode({"metadata": {"managedFields": [{"manager": "m", "fieldsType": "FieldsV1",
                                                      "fieldsV1": {"f:data": {"f:a": {}}}}]}}, CM).obj
    assert out["metadata"]["managedFields"][0]["fieldsV1"] == {"f:data": {"f:a": {}}}


def test_exact_numbers_for_messages():
    raw = b'{"spec": {"terminationGracePeriodSeconds": 1180591620717411303424}}'
    with pytest.raises(StatusError) as ei:
        bodies.decode_write(PODKIND, orjson.loads(raw), raw, "application/json", "")
    assert ei.value.code == 400
    assert ei.value.message == ('Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal number '
                                '1180591620717411303424 into Go struct field PodSpec.spec.terminationGracePeriodSeconds '
                                'of type int64')
    raw = b'{"spec": {"terminationGracePeriodSeconds": 1e3}}'
    with pytest.raises(StatusError) as ei:
        bodies.decode_write(PODKIND, orjson.loads(raw), raw, "application/json", "")
    assert "number 1e3 into" in ei.value.message


def test_write_modes():
    raw = b'{"metadata": {"name": "m", "bogus": 1}, "data": {"a": "b"}, "x\\ny": 1}'
    obj, warnings = bodies.decode_write(CONFIGMAP, orjson.loads(raw), raw, "application/json", "")
    assert warnings == ['unknown field "metadata.bogus"', 'unknown field "x\\ny"']
    assert obj == {"metadata": {"name": "m"}, "data": {"a": "b"}}
    obj, warnings = bodies.decode_write(CONFIGMAP, orjson.loads(raw), raw, "application/json", "Ignore")
    assert warnings == [] and "bogus" not in obj["metadata"]
    with pytest.raises(StatusError) as ei:
        bodies.decode_write(CONFIGMAP, orjson.loads(raw), raw, "application/json", "Strict")
    assert ei.value.code == 400 and ei.value.message == (
        'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: unknown field '
        '"metadata.bogus", unknown field "x\\ny"')
    with pytest.raises(StatusError) as ei:
        bodies.decode_write(CONFIGMAP, {}, b"{}", "application/json", "Loud")
    assert ei.value.code == 422 and ei.value.message.startswith('CreateOptions.meta.k8s.io "" is invalid')


def test_duplicates_interleave_with_unknown_fields():
    raw = b'{"metadata": {"name": "a", "name": "b", "q": 1}, "data": {"k": "1", "k": "2"}}'
    obj, warnings = bodies.decode_write(CONFIGMAP, orjson.loads(raw), raw, "application/json", "Warn")
    assert warnings == ['duplicate field "metadata.name"', 'unknown field "metadata.q"', 'duplicate field "data.k"']
    assert obj["metadata"]["name"] == "b"


def test_patches_answer_422_with_the_patched_object():
    patched = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m", "finalizers": 5}}
    raw = b'{"metadata":{"finalizers":5}}'
    with pytest.raises(StatusError) as ei:
        bodies.decode_patched(CONFIGMAP, patched, raw, "application/merge-patch+json", "")
    st = ei.value.status()
    assert st["code"] == 422 and st["reason"] == "Invalid"
    assert st["message"] == (
        ' "" is invalid: patch: Invalid value: "{\\"apiVersion\\":\\"v1\\",\\"kind\\":\\"ConfigMap\\",\\"metadata\\":'
        '{\\"finalizers\\":5,\\"name\\":\\"m\\"}}": json: cannot unmarshal number into Go struct field '
        'ObjectMeta.metadata.finalizers of type []string')
    assert st["details"]["causes"][0]["field"] == "patch"
    with pytest.raises(StatusError) as ei:
        bodies.decode_patched(CONFIGMAP, patched, raw, "application/strategic-merge-patch+json", "")
    assert ei.value.code == 422
    assert ei.value.message == (' "" is invalid: patch: Invalid value: "map[metadata:map[finalizers:5]]": '
                                'cannot restore slice from int64')


CONVERTER = [
    ({"data": {"a": 1}}, "cannot convert int64 to string"),
    ({"data": {"a": True}}, "unrecognized type: string"),
    ({"data": "x"}, "cannot restore map from string"),
    ({"metadata": []}, "cannot restore struct from: slice"),
    ({"immutable": 1}, "unrecognized type: bool"),
]


@pytest.mark.parametrize("obj,message", CONVERTER, ids=[c[1] for c in CONVERTER])
def test_unstructured_converter_messages(obj, message):
    with pytest.raises(dec.DecodeError) as ei:
        dec.decode_unstructured(obj, CM)
    assert str(ei.value) == message


def test_converter_unknown_fields_are_sorted():
    res = dec.decode_unstructured({"zeta": 1, "metadata": {"b": 1, "a": 2}}, CM)
    assert res.unknown == ["metadata.a", "metadata.b", "zeta"]


def test_converter_accepts_integral_floats_and_refuses_overflow():
    pod = {"spec": {"terminationGracePeriodSeconds": 5.0}}
    assert dec.decode_unstructured(pod, POD).obj["spec"]["terminationGracePeriodSeconds"] == 5
    with pytest.raises(dec.DecodeError):
        dec.decode_unstructured({"spec": {"terminationGracePeriodSeconds": 2 ** 63}}, POD)
    with pytest.raises(dec.DecodeError) as ei:
        dec.decode_unstructured({"spec": {"terminationGracePeriodSeconds": 1.5}}, POD)
    assert str(ei.value) == "cannot convert float64 to int64"


def test_warning_headers_are_escaped_deduplicated_and_truncated():
    assert http.warning_headers(['unknown field "x\\ny"', 'unknown field "x\\ny"']) == \
        ['299 - "unknown field \\"x\\\\ny\\""']
    assert http.warning_headers(["raw\ncontrol"]) == []
    many = [f"{i:04d}" + "w" * 300 for i in range(20)]
    out = http.warning_headers(many)
    assert len(out) == 16 and all(len(h) == len('299 - ""') + 256 for h in out)


def test_check_type_reads_type_meta_like_upstream():
    with pytest.raises(StatusError) as ei:
        check_type([1, 2], PODKIND)
    assert ei.value.message == ("couldn't get version/kind; json parse error: json: cannot unmarshal array into Go "
                                'value of type struct { APIVersion string "json:\\"apiVersion,omitempty\\""; Kind '
                                'string "json:\\"kind,omitempty\\"" }')
    with pytest.raises(StatusError) as ei:
        check_type({"apiVersion": 1}, PODKIND)
    assert ei.value.message.endswith("json: cannot unmarshal number into Go struct field .apiVersion of type string")


@pytest.mark.parametrize("value,message", [
    ("2024-01-01", 'parsing time "2024-01-01" as "2006-01-02T15:04:05Z07:00": cannot parse "" as "T"'),
    ("2024-02-30T00:00:00Z", 'parsing time "2024-02-30T00:00:00Z": day out of range'),
    ("2024-01-01T25:00:00Z", 'parsing time "2024-01-01T25:00:00Z": hour out of range'),
    ("2024-01-01T00:00:00Zjunk", 'parsing time "2024-01-01T00:00:00Zjunk": extra text: "junk"'),
    ("2024-01-01T00:00:00+0100", 'parsing time "2024-01-01T00:00:00+0100" as "2006-01-02T15:04:05Z07:00": cannot '
                                 'parse "+0100" as "Z07:00"'),
])
def test_go_time_parse_errors(value, message):
    with pytest.raises(gotime.TimeError) as ei:
        gotime.parse(value)
    assert str(ei.value) == message


def test_every_served_kind_decodes_its_own_empty_object():
    for kind in REG.all():
        if kind.schema_ref:
            assert isinstance(dec.decode({}, kind.schema_ref).obj, dict)


def test_null_sets_pointers_to_nil():
    spec = dec.decode({"spec": {"expirationSeconds": None, "audiences": None}},
                      "io.k8s.api.authentication.v1.TokenRequest").obj["spec"]
    assert spec["expirationSeconds"] is None and spec["audiences"] is None
    pod = dec.decode({"spec": {"terminationGracePeriodSeconds": None, "containers": []}}, POD).obj
    assert "terminationGracePeriodSeconds" not in pod["spec"]
