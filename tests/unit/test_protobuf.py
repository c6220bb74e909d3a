"""Kubernetes protobuf request bodies (application/vnd.kubernetes.protobuf) → JSON-shaped dicts."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from kubelite.api import protobuf
from kubelite.api.errors import StatusError

KUBECTL = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "kubectl"

# Bodies captured from the real kubectl 1.37.1.
SSAR_BODY = (
    b'k8s\x00\n2\n\x17authorization.k8s.io/v1\x12\x17SelfSubjectAccessReview\x12<\n\x10\n\x00\x12\x00\x1a'
    b'\x00"\x00*\x002\x008\x00B\x00\x12\x1e\n\x1c\n\x07default\x12\x03get\x1a\x00"\x00*\x04pods2\x00:\x00'
    b'\x1a\x08\x08\x00\x12\x00\x1a\x00 \x00\x1a\x00"\x00'
)
TOKEN_BODY = (
    b'k8s\x00\n(\n\x18authentication.k8s.io/v1\x12\x0cTokenRequest\x120\n\x10\n\x00\x12\x00\x1a\x00"\x00'
    b'*\x002\x008\x00B\x00\x12\x16\n\x01a\x1a\x0e\n\x03Pod\x12\x02v1\x1a\x01p"\x00 \x90\x1c\x1a\x04\n\x00'
    b'\x12\x00\x1a\x00"\x00'
)


def roundtrip(obj: dict[str, Any]) -> dict[str, Any]:
    raw = protobuf.encode(obj)
    assert raw.startswith(b"k8s\x00")
    return protobuf.decode(raw)


# --------------------------------------------------------------------------- content type


@pytest.mark.parametrize("ct,want", [
    ("application/vnd.kubernetes.protobuf", True),
    ("application/vnd.kubernetes.protobuf; charset=utf-8", True),
    ("Application/VND.Kubernetes.Protobuf", True),
    ("application/vnd.kubernetes.protobuf;stream=watch", True),
    ("application/json", False),
    ("", False),
    (None, False),
])
def test_is_protobuf(ct: str | None, want: bool) -> None:
    assert protobuf.is_protobuf(ct) is want


# --------------------------------------------------------------------------- round trips


def test_namespace() -> None:
    obj = {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "foo"}, "spec": {}, "status": {}}
    assert roundtrip(obj) == obj
    # non-pointer structs come back even when the body leaves them out entirely
    bare = b"k8s\x00\n\x0f\n\x02v1\x12\tNamespace"  # envelope with typeMeta only, no raw
    assert protobuf.decode(bare) == {"kind": "Namespace", "apiVersion": "v1", "metadata": {}, "spec": {},
                                     "status": {}}


def test_configmap() -> None:
    obj = {"kind": "ConfigMap", "apiVersion": "v1",
           "metadata": {"name": "c", "namespace": "default", "labels": {"a": "1", "b": "2"},
                        "annotations": {"x": "y"}},
           "data": {"a": "b", "empty": ""}, "binaryData": {"bin": base64.b64encode(b"\x00\xff").decode()},
           "immutable": False}
    assert roundtrip(obj) == obj


def test_secret_bytes_are_base64() -> None:
    obj = {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "s", "namespace": "default"},
           "data": {"p": base64.b64encode(b"q").decode(), "bin": base64.b64encode(b"\x00\x01\xfe").decode()},
           "type": "Opaque"}
    raw = protobuf.encode(obj)
    assert b"\n\x01p\x12\x01q" in raw  # map entry {key "p", value raw bytes "q"}
    assert protobuf.decode(raw) == obj


def test_serviceaccount() -> None:
    obj = {"kind": "ServiceAccount", "apiVersion": "v1",
           "metadata": {"name": "sa", "namespace": "ns", "uid": "u-1", "resourceVersion": "7", "generation": 2,
                        "creationTimestamp": "2026-01-02T03:04:05Z", "finalizers": ["f"],
                        "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u",
                                             "controller": True}]},
           "secrets": [{"name": "s1"}, {"kind": "Secret", "name": "s2"}],
           "imagePullSecrets": [{"name": "reg"}],
           "automountServiceAccountToken": False}
    assert roundtrip(obj) == obj


POD = {
    "kind": "Pod", "apiVersion": "v1",
    "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                 "deletionGracePeriodSeconds": 0,
                 "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "v1",
                                    "time": "2026-01-02T03:04:05Z", "fieldsType": "FieldsV1",
                                    "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}}]},
    "spec": {
        "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}},
                    {"name": "cfg", "configMap": {"name": "c", "items": [{"key": "a", "path": "a.txt"}],
                                                  "defaultMode": 420}}],
        "initContainers": [{"name": "init", "image": "busybox", "command": ["sh", "-c", "true"],
                            "resources": {}}],
        "containers": [{
            "name": "web", "image": "nginx:1.27", "args": ["-g", "daemon off;"],
            "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"},
                      {"containerPort": 9090}],
            "env": [{"name": "A", "value": "B"},
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "LIM", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu",
                                                                       "divisor": "1m"}}}],
            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m"}},
            "volumeMounts": [{"name": "scratch", "mountPath": "/tmp", "readOnly": True}],
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP",
                                          "httpHeaders": [{"name": "X", "value": "1"}]},
                              "initialDelaySeconds": 3, "periodSeconds": 10, "failureThreshold": 3},
            "readinessProbe": {"tcpSocket": {"port": 8080}, "timeoutSeconds": 1,
                               "terminationGracePeriodSeconds": 0},
            "startupProbe": {"exec": {"command": ["cat", "/ready"]}},
            "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
            "securityContext": {"privileged": False, "runAsUser": 1000, "runAsNonRoot": True,
                                "capabilities": {"drop": ["ALL"]}},
            "imagePullPolicy": "IfNotPresent", "stdin": True, "tty": True,
        }],
        "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "activeDeadlineSeconds": -5,
        "dnsPolicy": "ClusterFirst", "nodeSelector": {"disk": "ssd"}, "serviceAccountName": "sa",
        "hostNetwork": True, "priority": -10,
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "In", "values": ["v"]}]}]}}},
        "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 60}],
        "overhead": {"cpu": "10m"},
    },
    "status": {"phase": "Running", "podIP": "10.0.0.5", "startTime": "2026-01-02T03:04:05Z",
               "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": None,
                               "lastTransitionTime": "2026-01-02T03:04:06Z"}],
               "containerStatuses": [{"name": "web", "state": {"running": {"startedAt": "2026-01-02T03:04:05Z"}},
                                      "lastState": {}, "ready": True, "restartCount": 2, "image": "nginx",
                                      "imageID": "", "started": True}]},
}


def test_pod_with_probes_resources_intstr_volumes() -> None:
    got = roundtrip(POD)
    assert got == POD
    c = got["spec"]["containers"][0]
    assert c["livenessProbe"]["httpGet"]["port"] == "http"  # IntOrString string
    assert c["readinessProbe"]["tcpSocket"]["port"] == 8080  # IntOrString int
    assert got["spec"]["volumes"][0] == {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}  # inlined


def test_go_json_zero_value_rules() -> None:
    # A sparse pod: omitempty zero scalars are dropped, non-omitempty ones (containerPort,
    # restartCount, ready ...) and non-pointer structs (resources, status) are rendered.
    sparse = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p"},
              "spec": {"containers": [{"name": "c", "ports": [{}]}]},
              "status": {"containerStatuses": [{"name": "c"}]}}
    got = protobuf.decode(protobuf.encode(sparse))
    assert got == {
        "kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 0}], "resources": {}}]},
        "status": {"containerStatuses": [{"name": "c", "state": {}, "lastState": {}, "ready": False,
                                          "restartCount": 0, "image": "", "imageID": ""}]},
    }


def test_service_intstr_target_port_zero() -> None:
    obj = {"kind": "Service", "apiVersion": "v1", "metadata": {"name": "s"},
           "spec": {"ports": [{"port": 80}], "type": "ClusterIP"}, "status": {"loadBalancer": {}}}
    got = roundtrip(obj)
    # non-pointer IntOrString targetPort is always present in Go's JSON (0 when unset)
    assert got["spec"]["ports"] == [{"port": 80, "targetPort": 0}]


def test_delete_options_any_group() -> None:
    obj = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
           "preconditions": {"uid": "u-1", "resourceVersion": "5"}, "orphanDependents": False,
           "propagationPolicy": "Foreground", "dryRun": ["All"]}
    assert roundtrip(obj) == obj  # pointer zero values (0, false) are kept
    for av in ("apps/v1", "meta.k8s.io/v1", "coordination.k8s.io/v1"):
        got = roundtrip({"kind": "DeleteOptions", "apiVersion": av, "propagationPolicy": "Background"})
        assert got == {"kind": "DeleteOptions", "apiVersion": av, "propagationPolicy": "Background"}
    assert protobuf.message_name("apps/v1", "DeleteOptions") == "k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions"


def test_self_subject_access_review_from_kubectl() -> None:
    assert protobuf.decode(SSAR_BODY) == {
        "kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1", "metadata": {},
        "spec": {"resourceAttributes": {"namespace": "default", "verb": "get", "resource": "pods"}},
        "status": {"allowed": False},
    }
    assert protobuf.encode(protobuf.decode(SSAR_BODY)) == SSAR_BODY  # byte-identical re-encoding


def test_token_request_from_kubectl() -> None:
    assert protobuf.decode(TOKEN_BODY) == {
        "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1", "metadata": {},
        "spec": {"audiences": ["a"], "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p"},
                 "expirationSeconds": 3600},
        "status": {"token": "", "expirationTimestamp": None},
    }
    assert protobuf.encode(protobuf.decode(TOKEN_BODY)) == TOKEN_BODY


def test_token_request_defaults() -> None:
    got = roundtrip({"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1", "metadata": {},
                     "spec": {"expirationSeconds": 600}})
    # audiences/boundObjectRef have no omitempty: Go's JSON writes null
    assert got["spec"] == {"audiences": None, "boundObjectRef": None, "expirationSeconds": 600}
    assert got["status"] == {"token": "", "expirationTimestamp": None}


def test_token_review_extra_values_are_lists() -> None:
    obj = {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1", "metadata": {},
           "spec": {"token": "t"},
           "status": {"authenticated": True,
                      "user": {"username": "u", "groups": ["g"], "extra": {"scopes": ["a", "b"]}}}}
    assert roundtrip(obj) == obj


def test_rbac_role_binding() -> None:
    obj = {"kind": "RoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1",
           "metadata": {"name": "rb", "namespace": "default"},
           "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "default"}],
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}}
    assert roundtrip(obj) == obj


def test_lease_microtime_and_event() -> None:
    lease = {"kind": "Lease", "apiVersion": "coordination.k8s.io/v1", "metadata": {"name": "l"},
             "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15,
                      "acquireTime": "2026-01-02T03:04:05.123456Z", "renewTime": "2026-01-02T03:04:06.000001Z",
                      "leaseTransitions": 0}}
    assert roundtrip(lease) == lease
    event = {"kind": "Event", "apiVersion": "events.k8s.io/v1", "metadata": {"name": "e", "namespace": "d"},
             "eventTime": "2026-01-02T03:04:05.000000Z", "reportingController": "c", "reportingInstance": "i",
             "action": "A", "reason": "R", "regarding": {"kind": "Pod", "name": "p"}, "note": "n",
             "type": "Normal", "deprecatedFirstTimestamp": None, "deprecatedLastTimestamp": None,
             "deprecatedSource": {}}
    assert roundtrip(event) == event


def test_eviction_nested_delete_options() -> None:
    obj = {"kind": "Eviction", "apiVersion": "policy/v1", "metadata": {"name": "p", "namespace": "d"},
           "deleteOptions": {"gracePeriodSeconds": 10}}
    assert roundtrip(obj) == obj


def test_list_raw_extension_items() -> None:
    obj = {"kind": "List", "apiVersion": "v1", "metadata": {},
           "items": [{"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "x"}}]}
    assert roundtrip(obj) == obj


def test_apiresource_verbs_wrapper() -> None:
    obj = {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1",
           "resources": [{"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
                          "verbs": ["get", "list"], "shortNames": ["po"]}]}
    assert roundtrip(obj) == obj


def test_time_formats() -> None:
    assert protobuf._rfc3339(0) == "1970-01-01T00:00:00Z"
    assert protobuf._rfc3339(1767323045) == "2026-01-02T03:04:05Z"
    assert protobuf._rfc3339(1767323045, 7) == "2026-01-02T03:04:05.000007Z"
    assert protobuf._rfc3339(-62135596800) is None  # Go's zero time
    # metav1.Time drops nanoseconds, as its protobuf Unmarshal does
    raw = protobuf.encode({"kind": "Namespace", "apiVersion": "v1",
                           "metadata": {"name": "n", "creationTimestamp": "2026-01-02T03:04:05Z"}})
    assert protobuf.decode(raw)["metadata"]["creationTimestamp"] == "2026-01-02T03:04:05Z"


@pytest.mark.parametrize("ns,text", [
    (0, "0s"), (1, "1ns"), (1500, "1.5µs"), (2_000_000, "2ms"), (1_500_000_000, "1.5s"),
    (90 * 10**9, "1m30s"), (3600 * 10**9, "1h0m0s"), (-(3723 * 10**9 + 5 * 10**8), "-1h2m3.5s"),
])
def test_go_duration(ns: int, text: str) -> None:
    assert protobuf.go_duration(ns) == text
    assert protobuf.parse_go_duration(text) == ns


def test_duration_field() -> None:
    name = "k8s.io.apimachinery.pkg.apis.meta.v1.Duration"
    for ns, text in ((3600 * 10**9, "1h0m0s"), (-2 * 10**9, "-2s")):
        buf = bytearray()
        protobuf._put_scalar(buf, 1, "int64", ns)
        assert protobuf._special(name, bytes(buf)) == (True, text)
        assert protobuf._encode_special(name, text) == bytes(buf)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("raw,fragment", [
    (b"", "magic"),
    (b'{"kind":"Pod"}', "magic"),
    (b"k8s\x00\n", "truncated"),
    (b"k8s\x00\n\x05\n\x02v1", "truncated"),
    (b"k8s\x00\n\x0b\n\x02v1\x12\x05Bogus", "no protobuf decoder for kind 'Bogus'"),
    (b"k8s\x00\x12\x00", "kind is not set"),
    (b"k8s\x00\x0b", "wire type 3"),
])
def test_malformed_bodies_are_bad_requests(raw: bytes, fragment: str) -> None:
    with pytest.raises(StatusError) as ei:
        protobuf.decode(raw)
    assert ei.value.code == 400 and ei.value.reason == "BadRequest"
    assert fragment in ei.value.message


def test_wrong_wire_type_in_object() -> None:
    good = protobuf.encode({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "a"}})
    # metadata (field 1) sent as a varint instead of a message
    env = b"\n\x0f\n\x02v1\x12\tNamespace" + b"\x12\x02\x08\x01"
    assert good.startswith(b"k8s\x00\n\x0f")
    with pytest.raises(StatusError) as ei:
        protobuf.decode(b"k8s\x00" + env)
    assert "wire type" in ei.value.message


def test_invalid_utf8_and_bad_raw_json() -> None:
    bad_name = b"k8s\x00\n\x0f\n\x02v1\x12\tNamespace\x12\x05\n\x03\n\x01\xff"
    with pytest.raises(StatusError, match="UTF-8"):
        protobuf.decode(bad_name)
    bad_list = b"k8s\x00\n\n\n\x02v1\x12\x04List\x12\x06\x12\x04\n\x02{x"
    with pytest.raises(StatusError, match="JSON"):
        protobuf.decode(bad_list)


# --------------------------------------------------------------------------- the real kubectl


def _discovery_app(captured: list[tuple[str, str, str, bytes]]) -> web.Application:
    from kubelite.apiserver import discovery
    from kubelite.kinds.registry import default_registry

    kinds = default_registry().all()

    async def handler(req: web.Request) -> web.Response:
        path = req.path
        if req.method == "GET":
            parts = path.strip("/").split("/")
            doc: dict[str, Any] | None = None
            if path == "/api":
                doc = discovery.api_versions()
            elif path == "/apis":
                doc = discovery.api_group_list(kinds)
            elif path == "/api/v1":
                doc = discovery.api_resource_list(kinds, "", "v1")
            elif parts[0] == "apis" and len(parts) == 3:
                doc = discovery.api_resource_list(kinds, parts[1], parts[2])
            if doc is None:
                return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                          "reason": "NotFound", "code": 404}, status=404)
            return web.json_response(doc)
        body = await req.read()
        ct = req.headers.get("Content-Type", "")
        captured.append((req.method, path, ct, body))
        try:
            obj = protobuf.decode(body) if protobuf.is_protobuf(ct) else json.loads(body)
        except StatusError as e:
            return web.json_response(e.status(), status=e.code)
        return web.json_response(obj, status=201)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


KUBECTL_CASES = [
    (["create", "namespace", "foo"], "/api/v1/namespaces",
     {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "foo"}, "spec": {}, "status": {}}),
    (["create", "configmap", "c", "--from-literal=a=b", "-n", "default"], "/api/v1/namespaces/default/configmaps",
     {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "c", "namespace": "default"},
      "data": {"a": "b"}}),
    (["create", "secret", "generic", "s", "--from-literal=p=q", "-n", "default"],
     "/api/v1/namespaces/default/secrets",
     {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "s", "namespace": "default"},
      "data": {"p": "cQ=="}}),
    (["create", "serviceaccount", "sa", "-n", "default"], "/api/v1/namespaces/default/serviceaccounts",
     {"kind": "ServiceAccount", "apiVersion": "v1", "metadata": {"name": "sa", "namespace": "default"}}),
]


@pytest.mark.skipif(not (KUBECTL.exists() or shutil.which("kubectl")), reason="kubectl not installed")
async def test_real_kubectl_protobuf_bodies(tmp_path: Path) -> None:
    kubectl = str(KUBECTL if KUBECTL.exists() else shutil.which("kubectl"))
    captured: list[tuple[str, str, str, bytes]] = []
    runner = web.AppRunner(_discovery_app(captured))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "none"), "HOME": str(tmp_path)}
    try:
        for args, path, want in KUBECTL_CASES:
            captured.clear()
            base = [kubectl, "--server", f"http://127.0.0.1:{port}", "--cache-dir", str(tmp_path / "cache")]
            proc = await asyncio.create_subprocess_exec(*base, *args, env=env, stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode()
            assert b"created" in out
            posts = [c for c in captured if c[0] == "POST"]
            assert len(posts) == 1, captured
            _, got_path, ct, body = posts[0]
            assert got_path == path
            assert protobuf.is_protobuf(ct), ct
            assert protobuf.decode(body) == want
            # our encoder reproduces kubectl's bytes exactly
            assert protobuf.encode(want) == body
            # and the decoded dict is what kubectl itself renders as JSON for the same object
            dry = await asyncio.create_subprocess_exec(*base, *args, "--dry-run=client", "-o", "json", env=env,
                                                       stdout=asyncio.subprocess.PIPE,
                                                       stderr=asyncio.subprocess.PIPE)
            dout, derr = await asyncio.wait_for(dry.communicate(), 60)
            assert dry.returncode == 0, derr.decode()
            assert json.loads(dout) == want
    finally:
        await runner.cleanup()
