"""Every write is decoded into the kind's type, as kube-apiserver does: wrong JSON types are a
400 (a 422 for patches) with Go's message, unknown fields are dropped (and warned about),
zero values of non-omitempty fields are written, and the official client can always read
back what the server accepted."""

from __future__ import annotations

import http.client
import json

import pytest

from tests.e2e.harness import admin_ssl_context, raw_request

NS = "types"
CMS = f"/api/v1/namespaces/{NS}/configmaps"
PODS = f"/api/v1/namespaces/{NS}/pods"
JSON = {"Content-Type": "application/json"}
MERGE = {"Content-Type": "application/merge-patch+json"}
JSONPATCH = {"Content-Type": "application/json-patch+json"}
SMP = {"Content-Type": "application/strategic-merge-patch+json"}
APPLY = {"Content-Type": "application/apply-patch+yaml"}


def request(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """(status, [(header, value)…], body) — headers as a list: a response may repeat Warning."""
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=admin_ssl_context(server.kubeconfig),
                                       timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.getheaders(), r.read()
    finally:
        conn.close()


@pytest.fixture(scope="module", autouse=True)
def namespace(server):
    server.kubectl("create", "namespace", NS)
    yield
    server.kubectl("delete", "namespace", NS, "--wait=false", check=False)


def status_of(body: bytes) -> dict:
    st = json.loads(body)
    assert st["kind"] == "Status", st
    return st


def post(server, obj: dict, path: str = CMS, query: str = ""):
    return raw_request(server, "POST", path + query, json.dumps(obj).encode(), JSON)


def test_the_poison_configmap_is_refused_with_gos_message(server):
    status, _, body = raw_request(server, "POST", CMS, b'{"metadata":{"name":"m1","finalizers":5}}', JSON)
    st = status_of(body)
    assert (status, st["reason"]) == (400, "BadRequest")
    assert st["message"] == ('ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot unmarshal '
                             'number into Go struct field ObjectMeta.metadata.finalizers of type []string')
    assert raw_request(server, "GET", CMS + "/m1")[0] == 404


WRONG_TYPES = [
    ({"metadata": {"name": "w1"}, "data": {"a": 1}}, "ConfigMap.data of type string"),
    ({"metadata": {"name": "w2"}, "data": ["a"]}, "ConfigMap.data of type map[string]string"),
    ({"metadata": {"name": "w3", "labels": {"a": 1}}}, "ObjectMeta.metadata.labels of type string"),
    ({"metadata": {"name": "w4", "ownerReferences": "abc"}}, "ObjectMeta.metadata.ownerReferences of type "
                                                             "[]v1.OwnerReference"),
    ({"metadata": {"generateName": 5}}, "ObjectMeta.metadata.generateName of type string"),
]


@pytest.mark.parametrize("obj,tail", WRONG_TYPES, ids=[t for _, t in WRONG_TYPES])
def test_wrong_types_are_refused_on_create(server, obj, tail):
    status, _, body = post(server, obj)
    assert status == 400, body
    assert status_of(body)["message"].endswith(tail)


def test_wrong_pod_fields(server):
    def pod(**spec):
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "tg"},
                "spec": {"containers": [{"name": "c", "image": "i"}], **spec}}

    for value, what in (("abc", "string"), (1.5, "number 1.5"), (2 ** 70, "number 1180591620717411303424")):
        status, _, body = post(server, pod(terminationGracePeriodSeconds=value), PODS)
        assert status == 400
        assert status_of(body)["message"] == (
            f'Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal {what} into Go struct field '
            f'PodSpec.spec.terminationGracePeriodSeconds of type int64')
    secret = {"metadata": {"name": "s1"}, "data": {"k": "not base64!"}}
    status, _, body = post(server, secret, f"/api/v1/namespaces/{NS}/secrets")
    assert status == 400 and status_of(body)["message"].endswith("illegal base64 data at input byte 3")


def test_wrong_types_through_every_patch(server):
    assert post(server, {"metadata": {"name": "pm"}, "data": {"a": "b"}})[0] == 201
    cases = [
        (MERGE, b'{"data": {"a": 1}}', "json: cannot unmarshal number into Go struct field ConfigMap.data of type "
                                       "string"),
        (JSONPATCH, b'[{"op": "add", "path": "/metadata/finalizers", "value": 5}]',
         "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.finalizers of type []string"),
        (SMP, b'{"data": {"a": 1}}', "cannot convert int64 to string"),
        (MERGE, b'{"metadata": {"labels": {"a": 9223372036854775808}}}', "ObjectMeta.metadata.labels of type string"),
    ]
    for headers, patch, tail in cases:
        status, _, body = raw_request(server, "PATCH", CMS + "/pm", patch, headers)
        st = status_of(body)
        assert (status, st["reason"]) == (422, "Invalid"), body
        assert st["message"].startswith(' "" is invalid: patch: Invalid value: ')
        assert st["message"].endswith(tail), st["message"]
    status, _, body = raw_request(server, "PATCH", CMS + "/pm?fieldManager=t",
                                  b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: pm\ndata:\n  a: 1\n", APPLY)
    assert status == 400 and ".data.a: expected string" in status_of(body)["message"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "smp"},
           "spec": {"containers": [{"name": "c", "image": "i"}]}}
    assert post(server, pod, PODS)[0] == 201
    status, _, body = raw_request(server, "PATCH", PODS + "/smp", b'{"spec":{"$setElementOrder/containers":5}}', SMP)
    assert (status, status_of(body)["message"]) == (400, "expected a []interface {}, but received a int64"), body
    raw_request(server, "DELETE", PODS + "/smp?gracePeriodSeconds=0")
    status, _, body = raw_request(server, "GET", CMS + "/pm")
    assert json.loads(body)["data"] == {"a": "b"}


def test_unknown_fields_are_dropped_with_one_warning_each(server):
    obj = {"metadata": {"name": "u1", "bogus": 1}, "data": {"a": "b"}, "x\ny": 1, "also": {"deep": 1}}
    status, headers, body = request(server, "POST", CMS, json.dumps(obj).encode(), JSON)
    assert status == 201, body
    warnings = [v for k, v in headers if k.lower() == "warning"]
    assert warnings == ['299 - "unknown field \\"metadata.bogus\\""', '299 - "unknown field \\"x\\\\ny\\""',
                        '299 - "unknown field \\"also\\""']
    stored = json.loads(raw_request(server, "GET", CMS + "/u1")[2])
    assert "bogus" not in stored["metadata"] and "x\ny" not in stored and "also" not in stored
    status, headers, _ = request(server, "POST", CMS + "?fieldValidation=Ignore",
                                 json.dumps({**obj, "metadata": {"name": "u2", "bogus": 1}}).encode(), JSON)
    assert status == 201 and not [v for k, v in headers if k.lower() == "warning"]
    assert "bogus" not in json.loads(raw_request(server, "GET", CMS + "/u2")[2])["metadata"]
    status, _, body = post(server, {**obj, "metadata": {"name": "u3"}}, query="?fieldValidation=Strict")
    assert status == 400
    assert status_of(body)["message"] == ('ConfigMap in version "v1" cannot be handled as a ConfigMap: strict '
                                          'decoding error: unknown field "x\\ny", unknown field "also"')
    status, headers, body = request(server, "PATCH", CMS + "/u1", b'{"data": {"c": "d"}, "zzz": 1}', MERGE)
    assert status == 200 and ('Warning', '299 - "unknown field \\"zzz\\""') in headers
    status, _, body = raw_request(server, "PATCH", CMS + "/u1?fieldValidation=Strict", b'{"zzz": 1}', MERGE)
    assert status == 422 and status_of(body)["message"].endswith('strict decoding error: unknown field "zzz"')


def test_kubectl_strict_validation_message(server):
    p = server.kubectl("-n", NS, "create", "--validate=strict", "-f", "-", check=False, input=json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "k1"}, "datta": {}}))
    assert p.returncode != 0
    assert ('Error from server (BadRequest): error when creating "STDIN": ConfigMap in version "v1" cannot be '
            'handled as a ConfigMap: strict decoding error: unknown field "datta"') in p.stderr


def test_node_gets_every_non_omitempty_field_and_the_client_reads_it(server, core):
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "typed-node"},
            "status": {"nodeInfo": {"kubeletVersion": "v1.37.1", "osImage": "x"}}}
    assert post(server, node, "/api/v1/nodes")[0] == 201
    try:
        got = json.loads(raw_request(server, "GET", "/api/v1/nodes/typed-node")[2])
        assert got["status"]["nodeInfo"]["kubeProxyVersion"] == ""
        assert core.read_node("typed-node").status.node_info.kube_proxy_version == ""
        assert "typed-node" in [n.metadata.name for n in core.list_node().items]
    finally:
        raw_request(server, "DELETE", "/api/v1/nodes/typed-node")


def test_quiet_differences(server):
    assert post(server, {"metadata": {"name": "q1"}})[0] == 201
    cur = json.loads(raw_request(server, "GET", CMS + "/q1")[2])
    # PUT with an integer resourceVersion
    put = {**cur, "metadata": {**cur["metadata"], "resourceVersion": int(cur["metadata"]["resourceVersion"])}}
    status, _, body = raw_request(server, "PUT", CMS + "/q1", json.dumps(put).encode(), JSON)
    assert status == 400 and "ObjectMeta.metadata.resourceVersion of type string" in status_of(body)["message"]
    # patches changing the namespace or the uid
    status, _, body = raw_request(server, "PATCH", CMS + "/q1", b'{"metadata":{"namespace":"default"}}', MERGE)
    assert status == 400 and status_of(body)["message"] == (
        "the namespace of the provided object does not match the namespace sent on the request")
    status, _, body = raw_request(server, "PATCH", CMS + "/q1",
                                  b'[{"op":"replace","path":"/metadata/uid","value":"abc"}]', JSONPATCH)
    st = status_of(body)
    assert (status, st["reason"]) == (422, "Invalid")
    assert st["message"] == 'ConfigMap "q1" is invalid: metadata.uid: Invalid value: "abc": field is immutable'
    # limits that do not fit int64
    status, _, body = raw_request(server, "GET", CMS + "?limit=9223372036854775808")
    assert status == 400 and status_of(body)["message"] == (
        'strconv.ParseInt: parsing "9223372036854775808": value out of range')
    # a negative grace period is 1
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "neg"},
           "spec": {"terminationGracePeriodSeconds": -5, "containers": [{"name": "c", "image": "i"}]}}
    status, _, body = post(server, pod, PODS)
    assert status == 201 and json.loads(body)["spec"]["terminationGracePeriodSeconds"] == 1
    raw_request(server, "DELETE", PODS + "/neg")


def test_invalid_bearer_token_is_401_even_on_public_paths(server):
    for path in ("/healthz", "/version", CMS):
        status, _, _ = raw_request(server, "GET", path, auth=False, headers={"Authorization": "Bearer nope"})
        assert status == 401, path
    assert raw_request(server, "GET", "/healthz", auth=False)[0] == 200


def test_the_official_client_lists_after_accepted_writes(server, core):
    from kubernetes import client

    for body in ({"metadata": {"name": "c1", "labels": {"a": "1"}}, "data": {"k": "v"}},
                 {"metadata": {"name": "c2", "annotations": {}}, "binaryData": {"b": "AAEC"}},
                 {"metadata": {"name": "c3", "finalizers": []}, "immutable": False}):
        assert post(server, body)[0] == 201
        names = {c.metadata.name for c in core.list_namespaced_config_map(NS).items}
        assert body["metadata"]["name"] in names
    assert isinstance(core.read_namespaced_config_map("c2", NS), client.V1ConfigMap)
