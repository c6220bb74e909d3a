"""Server-side field validation: messages and ordering as k8s.io/apiserver's field_validation_test."""

from __future__ import annotations

import json

import pytest
import yaml

from kubelite.api import fieldvalidation as fv
from kubelite.api.errors import StatusError

DEPLOY = "io.k8s.api.apps.v1.Deployment"

INVALID_JSON = """{
  "apiVersion": "apps/v1", "kind": "Deployment",
  "metadata": {"name": "a", "name": "b", "unknownMeta": "x", "labels": {"app": "nginx"}},
  "spec": {
    "unknown1": "val1", "unknownDupe": "valDupe", "unknownDupe": "valDupe2",
    "paused": true, "paused": false,
    "selector": {"matchLabels": {"app": "nginx"}},
    "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": [{
      "name": "nginx", "image": "nginx:latest", "unknownNested": "val1",
      "imagePullPolicy": "Always", "imagePullPolicy": "Never"}]}}}}"""

INVALID_YAML = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: a
  name: b
  unknownMeta: x
  labels:
    app: nginx
spec:
  unknown1: val1
  unknownDupe: valDupe
  unknownDupe: valDupe2
  paused: true
  paused: false
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx:latest
        unknownNested: val1
        imagePullPolicy: Always
        imagePullPolicy: Never"""

JSON_WARNINGS = [
    'duplicate field "metadata.name"',
    'unknown field "metadata.unknownMeta"',
    'unknown field "spec.unknown1"',
    'unknown field "spec.unknownDupe"',
    'duplicate field "spec.paused"',
    'unknown field "spec.template.spec.containers[0].unknownNested"',
    'duplicate field "spec.template.spec.containers[0].imagePullPolicy"',
]


def test_json_strict():
    err, warnings = fv.check(json.loads(INVALID_JSON), INVALID_JSON.encode(), "application/json", DEPLOY, "Strict")
    assert warnings == []
    assert isinstance(err, StatusError) and err.code == 400 and err.reason == "BadRequest"
    assert err.message == "strict decoding error: " + ", ".join(JSON_WARNINGS)
    assert err.status()["status"] == "Failure"


@pytest.mark.parametrize("mode", ["Warn", "", None])
def test_json_warn_and_default(mode):
    err, warnings = fv.check(json.loads(INVALID_JSON), INVALID_JSON, "application/json", DEPLOY, mode)
    assert err is None
    assert warnings == JSON_WARNINGS


def test_ignore():
    assert fv.check(json.loads(INVALID_JSON), INVALID_JSON, "application/json", DEPLOY, "Ignore") == (None, [])


def test_clean_body():
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": {"limits": {"cpu": "1"}}}]},
            "status": {"phase": "Running"}}
    assert fv.check(body, json.dumps(body), "application/json", "io.k8s.api.core.v1.Pod", "Strict") == (None, [])


def test_yaml_strict_and_warn():
    obj = yaml.safe_load(INVALID_YAML)
    err, _ = fv.check(obj, INVALID_YAML.encode(), "application/yaml", DEPLOY, "Strict")
    assert err is not None
    assert err.message == (
        'strict decoding error: yaml: unmarshal errors:\n'
        '  line 5: key "name" already set in map\n'
        '  line 12: key "unknownDupe" already set in map\n'
        '  line 14: key "paused" already set in map\n'
        '  line 28: key "imagePullPolicy" already set in map, unknown field "metadata.unknownMeta", '
        'unknown field "spec.template.spec.containers[0].unknownNested", unknown field "spec.unknown1", '
        'unknown field "spec.unknownDupe"')
    err, warnings = fv.check(obj, INVALID_YAML, "application/yaml", DEPLOY, "Warn")
    assert err is None
    assert warnings == [
        'line 5: key "name" already set in map',
        'line 12: key "unknownDupe" already set in map',
        'line 14: key "paused" already set in map',
        'line 28: key "imagePullPolicy" already set in map',
        'unknown field "metadata.unknownMeta"',
        'unknown field "spec.template.spec.containers[0].unknownNested"',
        'unknown field "spec.unknown1"',
        'unknown field "spec.unknownDupe"',
    ]


MERGE_PATCH = """{"spec": {"unknown1": "val1", "unknownDupe": "valDupe", "unknownDupe": "valDupe2",
  "paused": true, "paused": false, "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:latest",
  "unknownNested": "val1", "imagePullPolicy": "Always", "imagePullPolicy": "Never"}]}}}}"""


@pytest.mark.parametrize("ptype", [fv.MERGE_PATCH, fv.STRATEGIC_MERGE_PATCH])
def test_merge_patches(ptype):
    patched = json.loads(INVALID_JSON)  # the object after the patch: unknown fields survive a merge
    del patched["metadata"]["unknownMeta"]
    err, _ = fv.check(patched, MERGE_PATCH, ptype, DEPLOY, "Strict", patch_type=ptype)
    assert err is not None
    assert err.message == (
        'strict decoding error: duplicate field "spec.unknownDupe", duplicate field "spec.paused", '
        'duplicate field "spec.template.spec.containers[0].imagePullPolicy", '
        'unknown field "spec.template.spec.containers[0].unknownNested", unknown field "spec.unknown1", '
        'unknown field "spec.unknownDupe"')


def test_json_patch():
    body = """[{"op": "add", "path": "/spec/unknown1", "value": "val1", "foo":"bar"},
               {"op": "add", "path": "/spec/unknown2", "path": "/spec/unknown3", "value": "val1"}]"""
    patched = {"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"unknown1": "val1", "unknown3": "val1"}}
    err, warnings = fv.check(patched, body, fv.JSON_PATCH, DEPLOY, "Warn", patch_type=fv.JSON_PATCH)
    assert err is None
    assert warnings == ['json patch unknown field "[0].foo"', 'json patch duplicate field "[1].path"',
                        'unknown field "spec.unknown1"', 'unknown field "spec.unknown3"']


def test_apply_patch_duplicates():
    body = "apiVersion: apps/v1\nkind: Deployment\nspec:\n  paused: false\n  paused: true\n"
    err, _ = fv.check(None, body, fv.APPLY_PATCH, DEPLOY, "Strict", patch_type=fv.APPLY_PATCH)
    assert err is not None and err.code == 400
    assert err.message.endswith('error strict decoding patch: error converting YAML to JSON: yaml: unmarshal '
                                'errors:\n  line 5: key "paused" already set in map')


def test_find_unknown_fields():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "annotations": {"x": "y"},
                                                           "managedFields": [{"fieldsV1": {"f:a": {}}}]},
           "spec": {"foo": 1, "containers": [{"name": "c", "bar": {"deep": 1}, "ports": [{"containerPort": 1,
                                                                                          "baz": 2}]}],
                    "overhead": {"cpu": "1"}}}
    assert fv.find_unknown_fields(pod, "io.k8s.api.core.v1.Pod") == [
        "spec.foo", "spec.containers[0].bar", "spec.containers[0].ports[0].baz"]
    assert fv.find_unknown_fields(pod, "io.k8s.api.core.v1.Pod", sort_keys=True) == [
        "spec.containers[0].bar", "spec.containers[0].ports[0].baz", "spec.foo"]
    assert fv.find_unknown_fields(pod, "no.such.Def") == []


def test_find_unknown_fields_preserves_opaque():
    ev = {"type": "ADDED", "object": {"anything": {"goes": 1}}}
    assert fv.find_unknown_fields(ev, "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent") == []


def test_find_duplicate_fields():
    assert fv.find_duplicate_fields(b'{"metadata": {"name": "a", "name": "b", "labels": {"x": "1", "x": "2"}}}') == [
        'duplicate field "metadata.name"', 'duplicate field "metadata.labels.x"']
    assert fv.find_duplicate_fields(b'[{"a": 1, "a": 2}]') == ['duplicate field "[0].a"']
    assert fv.find_duplicate_fields(b"a: 1\na: 2\n", "application/yaml") == ['line 2: key "a" already set in map']
    assert fv.find_duplicate_fields(b"not json") == []
    assert fv.find_duplicate_fields(b"") == []


def test_validate_mode():
    assert fv.validate_mode(None) == "Warn"
    assert fv.validate_mode("") == "Warn"
    for m in ("Strict", "Warn", "Ignore"):
        assert fv.validate_mode(m) == m
    with pytest.raises(StatusError) as e:
        fv.validate_mode("strict", "PatchOptions")
    assert e.value.code == 422
    assert e.value.message == ('PatchOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: '
                               '"strict": supported values: "", "Ignore", "Strict", "Warn"')


def test_patch_type_inferred_from_content_type_and_smp_directives():
    patched = {"spec": {"$setElementOrder/containers": [{"name": "a"}], "foo": 1,
                        "containers": [{"name": "a", "$patch": "replace"}]}}
    raw = b'{"spec": {"paused": true, "paused": false}}'
    err, warnings = fv.check(patched, raw, fv.STRATEGIC_MERGE_PATCH, DEPLOY, "Warn")
    assert err is None
    assert warnings == ['duplicate field "spec.paused"', 'unknown field "spec.containers"', 'unknown field "spec.foo"']
