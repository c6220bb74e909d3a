"""The official Python client against a real kubelite server."""

from __future__ import annotations

import threading
import uuid

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException


def pod(name: str, labels: dict | None = None, image: str = "kubelite.local/kuard-amd64:blue") -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"containers": [{"name": "kuard", "image": image}]}}


@pytest.fixture
def ns(core):
    name = "py-" + uuid.uuid4().hex[:8]
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    try:
        core.delete_namespace(name)
    except ApiException:
        pass


def test_crud_selectors_and_paging(core, ns):
    for i in range(7):
        core.create_namespaced_pod(ns, pod(f"p{i}", {"app": "web" if i % 2 else "db", "idx": str(i)}))
    got = core.read_namespaced_pod("p3", ns)
    assert got.metadata.name == "p3" and got.status.phase == "Pending"
    web = core.list_namespaced_pod(ns, label_selector="app=web")
    assert sorted(p.metadata.name for p in web.items) == ["p1", "p3", "p5"]
    notin = core.list_namespaced_pod(ns, label_selector="idx notin (0,1,2),app")
    assert sorted(p.metadata.name for p in notin.items) == ["p3", "p4", "p5", "p6"]
    byname = core.list_namespaced_pod(ns, field_selector="metadata.name=p2")
    assert [p.metadata.name for p in byname.items] == ["p2"]
    phase = core.list_namespaced_pod(ns, field_selector="status.phase=Pending,metadata.name!=p0")
    assert len(phase.items) == 6
    seen, cont = [], None
    while True:
        page = core.list_namespaced_pod(ns, limit=3, _continue=cont)
        seen += [p.metadata.name for p in page.items]
        cont = page.metadata._continue
        if not cont:
            break
        assert len(page.items) == 3
    assert seen == [f"p{i}" for i in range(7)]
    patched = core.patch_namespaced_pod("p1", ns, {"metadata": {"labels": {"extra": "yes"}}})
    assert patched.metadata.labels["extra"] == "yes"
    cur = core.read_namespaced_pod("p1", ns)
    cur.spec.containers[0].image = "kubelite.local/kuard-amd64:green"
    replaced = core.replace_namespaced_pod("p1", ns, cur)
    assert replaced.spec.containers[0].image.endswith(":green")
    assert int(replaced.metadata.resource_version) > int(cur.metadata.resource_version)
    core.delete_namespaced_pod("p1", ns)
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_pod("p1", ns)
    assert exc.value.status == 404
    with pytest.raises(ApiException) as exc:
        core.list_namespaced_pod(ns, field_selector="spec.colour=red")
    assert exc.value.status == 400


def test_namespaces_crud(core):
    name = "nsc-" + uuid.uuid4().hex[:6]
    created = core.create_namespace({"metadata": {"name": name, "labels": {"team": "a"}}})
    assert created.status.phase == "Active"
    assert created.metadata.labels["kubernetes.io/metadata.name"] == name
    listed = core.list_namespace(label_selector="team=a")
    assert name in [n.metadata.name for n in listed.items]
    core.patch_namespace(name, {"metadata": {"labels": {"team": "b"}}})
    assert core.read_namespace(name).metadata.labels["team"] == "b"
    core.delete_namespace(name)


def test_watch_from_resource_version_sees_events_in_order(core, ns):
    rv = core.list_namespaced_pod(ns).metadata.resource_version
    w = watch.Watch()
    events: list[tuple[str, str]] = []
    done = threading.Event()

    def consume() -> None:
        for ev in w.stream(core.list_namespaced_pod, ns, resource_version=rv, timeout_seconds=30):
            events.append((ev["type"], ev["object"].metadata.name))
            if ev["type"] == "DELETED":
                w.stop()
        done.set()

    t = threading.Thread(target=consume)
    t.start()
    core.create_namespaced_pod(ns, pod("w1"))
    core.patch_namespaced_pod("w1", ns, {"metadata": {"labels": {"x": "1"}}})
    core.delete_namespaced_pod("w1", ns)
    assert done.wait(30)
    t.join()
    assert events == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]


def test_conflict_and_already_exists(core, ns):
    core.create_namespaced_pod(ns, pod("c1"))
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_pod(ns, pod("c1"))
    assert exc.value.status == 409 and '"reason":"AlreadyExists"' in exc.value.body.replace(" ", "")
    cur = core.read_namespaced_pod("c1", ns)
    core.patch_namespaced_pod("c1", ns, {"metadata": {"labels": {"a": "b"}}})
    with pytest.raises(ApiException) as exc:
        core.replace_namespaced_pod("c1", ns, cur)
    assert exc.value.status == 409


def test_generate_name(core, ns):
    body = pod("")
    del body["metadata"]["name"]
    body["metadata"]["generateName"] = "gen-"
    made = core.create_namespaced_pod(ns, body)
    assert made.metadata.name.startswith("gen-") and len(made.metadata.name) == 9


def test_delete_collection(core, ns):
    for i in range(3):
        core.create_namespaced_pod(ns, pod(f"d{i}", {"grp": "x"}))
    core.delete_collection_namespaced_pod(ns, label_selector="grp=x")
    assert core.list_namespaced_pod(ns).items == []


def test_dry_run_creates_nothing(core, ns):
    made = core.create_namespaced_pod(ns, pod("dry"), dry_run="All")
    assert made.metadata.name == "dry"
    assert core.list_namespaced_pod(ns).items == []


def test_graceful_delete_of_bound_pod(core, ns):
    body = pod("bound")
    body["spec"]["nodeName"] = "node-a"
    core.create_namespaced_pod(ns, body)
    core.delete_namespaced_pod("bound", ns)
    p = core.read_namespaced_pod("bound", ns)
    assert p.metadata.deletion_timestamp is not None
    assert p.metadata.deletion_grace_period_seconds == 30
    core.delete_namespaced_pod("bound", ns, grace_period_seconds=0)
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_pod("bound", ns)
    assert exc.value.status == 404


def test_configmap_secret_serviceaccount_lease(api_client, core, ns):
    core.create_namespaced_config_map(ns, {"metadata": {"name": "cm"}, "data": {"k": "v"}})
    core.create_namespaced_secret(ns, {"metadata": {"name": "s"}, "stringData": {"pw": "hunter2"}})
    s = core.read_namespaced_secret("s", ns)
    assert s.type == "Opaque" and s.data == {"pw": "aHVudGVyMg=="}
    core.create_namespaced_service_account(ns, {"metadata": {"name": "robot"}})
    coord = client.CoordinationV1Api(api_client)
    coord.create_namespaced_lease(ns, {"metadata": {"name": "l"}, "spec": {"holderIdentity": "me",
                                                                           "leaseDurationSeconds": 10}})
    assert coord.read_namespaced_lease("l", ns).spec.holder_identity == "me"
