"""Bad input gets a 4xx Status in Kubernetes' form and changes nothing."""

from __future__ import annotations

import json

import pytest

from tests.e2e.harness import raw_request

PODS = "/api/v1/namespaces/default/pods"
JSON = {"Content-Type": "application/json"}


def _status(body: bytes) -> dict:
    st = json.loads(body)
    assert st["kind"] == "Status" and st["apiVersion"] == "v1" and st["status"] == "Failure"
    return st


def _pod_names(server) -> set[str]:
    status, _, body = raw_request(server, "GET", PODS)
    assert status == 200
    return {p["metadata"]["name"] for p in json.loads(body)["items"]}


CASES = [
    ("malformed json", "POST", PODS, b'{"apiVersion": "v1", "kind": "Pod", ', JSON, 400, "BadRequest"),
    ("malformed yaml", "POST", PODS, b"apiVersion: v1\nkind: Pod\nmetadata: [name: x\n",
     {"Content-Type": "application/yaml"}, 400, "BadRequest"),
    ("wrong apiVersion", "POST", PODS, b'{"apiVersion":"v2","kind":"Pod","metadata":{"name":"bad1"}}', JSON, 400,
     "BadRequest"),
    ("wrong kind", "POST", PODS, b'{"apiVersion":"v1","kind":"Service","metadata":{"name":"bad2"}}', JSON, 400,
     "BadRequest"),
    ("not an object", "POST", PODS, b'[1,2,3]', JSON, 400, "BadRequest"),
    ("invalid name", "POST", PODS, json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Bad_Name"},
                                               "spec": {"containers": [{"name": "c", "image": "i"}]}}).encode(),
     JSON, 422, "Invalid"),
    ("unsupported media type", "POST", PODS, b"<pod/>", {"Content-Type": "application/xml"}, 415,
     "UnsupportedMediaType"),
    ("oversized body", "POST", PODS, b'{"metadata":{"name":"big"},"x":"' + b"a" * (3 * 1024 * 1024 + 10) + b'"}',
     JSON, 413, "RequestEntityTooLarge"),
    ("bad label selector", "GET", PODS + "?labelSelector=a%20in%20(", b"", {}, 400, "BadRequest"),
    ("unknown resource", "GET", "/api/v1/namespaces/default/widgets", b"", {}, 404, "NotFound"),
    ("missing pod", "GET", PODS + "/nope", b"", {}, 404, "NotFound"),
    ("missing namespace", "POST", "/api/v1/namespaces/nowhere/pods",
     json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orphan"},
                 "spec": {"containers": [{"name": "c", "image": "i"}]}}).encode(), JSON, 404, "NotFound"),
    ("bad patch type", "PATCH", PODS + "/nope", b"{}", {"Content-Type": "text/plain"}, 415, "UnsupportedMediaType"),
    ("post to a name", "POST", PODS + "/x", b"{}", JSON, 405, "MethodNotAllowed"),
]


@pytest.mark.parametrize("what,method,path,body,headers,code,reason", CASES, ids=[c[0] for c in CASES])
def test_bad_request_is_a_status(server, what, method, path, body, headers, code, reason):
    before = _pod_names(server)
    status, hdrs, resp = raw_request(server, method, path, body or None, headers)
    assert status == code, resp[:300]
    st = _status(resp)
    assert st["code"] == code and st["reason"] == reason
    assert st["message"]
    assert _pod_names(server) == before


def test_invalid_pod_lists_every_cause(server):
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "multi"},
            "spec": {"restartPolicy": "Sometimes", "containers": [{"name": "c"}, {"name": "c", "image": "i"}]}}
    status, _, resp = raw_request(server, "POST", PODS, json.dumps(body).encode(), JSON)
    assert status == 422
    st = _status(resp)
    assert st["details"]["kind"] == "Pod" and st["details"]["name"] == "multi"
    fields = {c["field"] for c in st["details"]["causes"]}
    assert {"spec.containers[0].image", "spec.containers[1].name", "spec.restartPolicy"} <= fields


def test_anonymous_is_refused_but_health_is_public(server):
    status, _, resp = raw_request(server, "GET", PODS, auth=False)
    assert status == 401
    st = _status(resp)
    assert st["reason"] == "Unauthorized"
    status, _, resp = raw_request(server, "GET", "/readyz", auth=False)
    assert status == 200 and resp == b"ok"
    status, _, resp = raw_request(server, "GET", "/version", auth=False)
    assert status == 200 and json.loads(resp)["major"] == "1"


def test_wrong_bearer_token_is_refused(server):
    status, _, resp = raw_request(server, "GET", PODS, auth=False, headers={"Authorization": "Bearer nope"})
    assert status == 401
