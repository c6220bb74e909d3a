"""Watch semantics: sendInitialEvents, bookmarks, selector transitions; finalizers."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.e2e.harness import admin_ssl_context


def _ns(core) -> str:
    name = "w-" + uuid.uuid4().hex[:8]
    core.create_namespace({"metadata": {"name": name}})
    return name


def _stream(server, path: str, until: int, timeout: float = 10) -> list[dict]:
    """Read watch events from a raw HTTPS stream until `until` events arrived."""
    import http.client

    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=admin_ssl_context(server.kubeconfig),
                                       timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        assert r.status == 200, r.read()
        events = []
        while len(events) < until:
            line = r.readline()
            if not line:
                break
            events.append(json.loads(line))
        return events
    finally:
        conn.close()


def test_send_initial_events_then_bookmark(server, core):
    ns = _ns(core)
    for i in range(3):
        core.create_namespaced_config_map(ns, {"metadata": {"name": f"c{i}", "labels": {"t": "init"}}})
    events = _stream(server, f"/api/v1/namespaces/{ns}/configmaps?watch=1&sendInitialEvents=true&labelSelector=t%3Dinit"
                             f"&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=5", 4)
    assert [e["type"] for e in events] == ["ADDED", "ADDED", "ADDED", "BOOKMARK"]
    assert sorted(e["object"]["metadata"]["name"] for e in events[:3]) == ["c0", "c1", "c2"]
    mark = events[3]["object"]["metadata"]
    assert mark["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert int(mark["resourceVersion"]) >= max(int(e["object"]["metadata"]["resourceVersion"]) for e in events[:3])


def test_send_initial_events_requires_not_older_than(server):
    from tests.e2e.harness import raw_request

    status, _, body = raw_request(server, "GET", "/api/v1/configmaps?watch=1&sendInitialEvents=true")
    assert status == 422
    assert json.loads(body)["reason"] == "Invalid"


def test_label_selector_watch_sees_enter_and_leave(server, core):
    ns = _ns(core)
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, {"metadata": {"name": "a", "labels": {"x": "no"}}})
    core.patch_namespaced_config_map("a", ns, {"metadata": {"labels": {"x": "yes"}}})
    core.patch_namespaced_config_map("a", ns, {"metadata": {"labels": {"x": "no"}}})
    events = _stream(server, f"/api/v1/namespaces/{ns}/configmaps?watch=1&resourceVersion={rv}"
                             f"&labelSelector=x%3Dyes&timeoutSeconds=5", 2)
    assert [e["type"] for e in events] == ["ADDED", "DELETED"]


def test_watch_timeout_ends_stream(server, core):
    ns = _ns(core)
    events = _stream(server, f"/api/v1/namespaces/{ns}/configmaps?watch=1&timeoutSeconds=1&labelSelector=none",
                     5, timeout=10)
    assert events == []


def test_finalizers_hold_deletion(server, core):
    from kubernetes.client.rest import ApiException

    ns = _ns(core)
    core.create_namespaced_config_map(ns, {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})
    core.delete_namespaced_config_map("held", ns)
    cm = core.read_namespaced_config_map("held", ns)
    assert cm.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("held", ns, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("held", ns)
    assert exc.value.status == 404


def test_delete_preconditions(server, core):
    from kubernetes.client import V1DeleteOptions, V1Preconditions
    from kubernetes.client.rest import ApiException

    ns = _ns(core)
    core.create_namespaced_config_map(ns, {"metadata": {"name": "p"}})
    with pytest.raises(ApiException) as exc:
        core.delete_namespaced_config_map("p", ns, body=V1DeleteOptions(
            preconditions=V1Preconditions(uid="00000000-0000-0000-0000-000000000000")))
    assert exc.value.status == 409 and "Precondition failed: UID in precondition" in exc.value.body
    core.delete_namespaced_config_map("p", ns, dry_run="All")
    assert core.read_namespaced_config_map("p", ns).metadata.name == "p"
