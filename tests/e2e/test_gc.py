"""Garbage collection with the real kubectl: a ConfigMap owned by a Pod goes with it (background),
stays without its owner reference (--cascade=orphan), or goes first (--cascade=foreground).
The server runs without an agent, so the Pods stay unbound and are deleted at once."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.e2e.harness import wait_until


@pytest.fixture
def ns(server):
    name = "gc-" + uuid.uuid4().hex[:8]
    server.kubectl("create", "namespace", name)
    yield name
    server.kubectl("delete", "namespace", name, "--wait=true", "--timeout=60s", check=False)


def get(server, ns: str, what: str) -> dict | None:
    p = server.kubectl("get", what, "-n", ns, "-o", "json", "--ignore-not-found")
    return json.loads(p.stdout) if p.stdout.strip() else None


def create_pod(server, ns: str, name: str = "owner") -> dict:
    server.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "kubelite.local/busybox:latest"}]}}))
    pod = get(server, ns, f"pod/{name}")
    assert pod is not None
    return pod


def create_dependent(server, ns: str, owner: dict, name: str = "dep", **meta) -> None:
    ref = {"apiVersion": "v1", "kind": "Pod", "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"]}
    ref.update(meta.pop("ref", {}))
    server.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"},
        "metadata": {"name": name, "ownerReferences": [ref], **meta}}))


def test_background_deletes_the_dependent(server, ns):
    pod = create_pod(server, ns)
    create_dependent(server, ns, pod)
    out = server.kubectl("delete", "pod", "owner", "-n", ns).stdout
    assert 'pod "owner" deleted' in out
    wait_until(lambda: get(server, ns, "configmap/dep") is None, what="dependent collected")


def test_orphan_keeps_the_dependent_without_its_owner_reference(server, ns):
    pod = create_pod(server, ns)
    create_dependent(server, ns, pod)
    server.kubectl("delete", "pod", "owner", "-n", ns, "--cascade=orphan")
    wait_until(lambda: get(server, ns, "pod/owner") is None, what="owner gone")
    dep = get(server, ns, "configmap/dep")
    assert dep is not None and "ownerReferences" not in dep["metadata"]


def test_foreground_deletes_the_dependent_first(server, ns):
    pod = create_pod(server, ns)
    # the dependent blocks its owner and is held by a finalizer of its own until we release it
    create_dependent(server, ns, pod, ref={"blockOwnerDeletion": True}, finalizers=["example.com/hold"])
    server.kubectl("delete", "pod", "owner", "-n", ns, "--cascade=foreground", "--wait=false")
    owner = get(server, ns, "pod/owner")
    assert owner is not None and owner["metadata"]["deletionTimestamp"]
    assert owner["metadata"]["finalizers"] == ["foregroundDeletion"]
    wait_until(lambda: (get(server, ns, "configmap/dep") or {}).get("metadata", {}).get("deletionTimestamp"),
               what="the dependent deleted")
    owner = get(server, ns, "pod/owner")
    assert owner is not None and owner["metadata"]["finalizers"] == ["foregroundDeletion"]
    server.kubectl("patch", "configmap", "dep", "-n", ns, "--type=json",
                   "-p", '[{"op": "remove", "path": "/metadata/finalizers"}]')
    wait_until(lambda: get(server, ns, "configmap/dep") is None, what="dependent gone")
    wait_until(lambda: get(server, ns, "pod/owner") is None, what="owner gone after its dependent")


def test_dependent_of_an_owner_that_never_existed(server, ns):
    ghost = {"metadata": {"name": "ghost", "uid": str(uuid.uuid4())}}
    create_dependent(server, ns, ghost)
    wait_until(lambda: get(server, ns, "configmap/dep") is None, what="dependent of a missing owner collected")
