"""StatefulSets as a user drives them: a headless Service and a StatefulSet of 3 whose pods
web-0..2 come up in order (seen through a watch of the official client), keep their names when
deleted, go highest ordinal first on scale down; `kubectl rollout status|history|undo`; and the
422s of bad specs — against `kubelite server` with its scheduler, agent, containerd and runc."""

from __future__ import annotations

import contextlib
import json
import threading
import time

import pytest

from tests.e2e.harness import ServerProcess, wait_until
from tests.e2e.test_agent_support import full_cluster

NODE = "kl-e2e-sts"
BLUE = "kubelite.local/kuard-amd64:blue"
GREEN = "kubelite.local/kuard-amd64:green"

MANIFEST = f"""
apiVersion: v1
kind: Service
metadata: {{name: nginx, labels: {{app: web}}}}
spec:
  clusterIP: None
  selector: {{app: web}}
  ports: [{{port: 8080, name: web}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: web}}
spec:
  serviceName: nginx
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{{name: kuard, image: "{BLUE}"}}]
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with full_cluster(tmp_path_factory.mktemp("sts") / "data", NODE) as (server, node):
        try:
            yield server
        finally:
            server.kubectl("delete", "statefulsets,services", "-l", "app=web", "--cascade=foreground",
                           "--timeout=90s", check=False)
            server.kubectl("delete", "statefulsets", "--all", "--timeout=90s", check=False)


def _json(server: ServerProcess, *args: str) -> dict:
    return json.loads(server.kubectl("get", *args, "-o", "json").stdout)


def _ready(p: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (p.get("status") or {}).get("conditions") or [])


class _PodWatch(threading.Thread):
    """The official client's watch of the app=web pods: (event, name, ready, deleting) in order."""

    def __init__(self, server: ServerProcess) -> None:
        super().__init__(daemon=True)
        from kubernetes import client, config, watch

        cfg = client.Configuration()
        config.load_kube_config(config_file=str(server.kubeconfig), client_configuration=cfg)
        self.api = client.ApiClient(cfg)
        self.core = client.CoreV1Api(self.api)
        self.watch = watch.Watch()
        self.seen: list[tuple[str, str, bool, bool]] = []
        self.ready = threading.Event()
        self.start()
        self.ready.wait(10)

    def run(self) -> None:
        self.ready.set()
        with contextlib.suppress(Exception):
            for ev in self.watch.stream(self.core.list_namespaced_pod, "default", label_selector="app=web",
                                        timeout_seconds=300, _preload_content=False):
                obj = ev["raw_object"]
                self.seen.append((ev["type"], obj["metadata"]["name"], _ready(obj),
                                  bool(obj["metadata"].get("deletionTimestamp"))))

    def first(self, pred) -> int:
        return next((i for i, s in enumerate(self.seen) if pred(s)), -1)

    def stop(self) -> None:
        self.watch.stop()
        self.api.close()


def test_ordered_pods_identity_heal_scale_down_and_rollout(cluster):
    server = cluster
    w = _PodWatch(server)
    try:
        start = time.monotonic()
        out = server.kubectl("apply", "-f", "-", input=MANIFEST).stdout
        assert "statefulset.apps/web created" in out
        status = server.kubectl("rollout", "status", "statefulset/web", "--timeout=180s", timeout=200).stdout
        took = time.monotonic() - start
        lines = status.splitlines()
        assert lines[-1] == "partitioned roll out complete: 3 new pods have been updated...", lines
        assert all(ln.startswith("Waiting for ") for ln in lines[:-1]), lines
        # created in order, each only once the one before was Ready (the watch saw it)
        added = [s[1] for s in w.seen if s[0] == "ADDED"]
        assert added == ["web-0", "web-1", "web-2"], w.seen
        for prev, nxt in (("web-0", "web-1"), ("web-1", "web-2")):
            assert w.first(lambda s, p=prev: s[1] == p and s[2]) < w.first(lambda s, n=nxt: s[1] == n), w.seen
        print(f"StatefulSet of 3 Ready in {took:.1f}s")

        rows = server.kubectl("get", "statefulset", "web").stdout.splitlines()
        assert rows[0].split() == ["NAME", "READY", "AGE"] and rows[1].split()[:2] == ["web", "3/3"]
        pods = {p["metadata"]["name"]: p for p in _json(server, "pods", "-l", "app=web")["items"]}
        assert sorted(pods) == ["web-0", "web-1", "web-2"]
        sts = _json(server, "statefulset", "web")
        rev = sts["status"]["updateRevision"]
        assert sts["status"]["currentRevision"] == rev and sts["status"]["readyReplicas"] == 3
        for i in range(3):
            p = pods[f"web-{i}"]
            labels = p["metadata"]["labels"]
            assert labels["statefulset.kubernetes.io/pod-name"] == f"web-{i}"
            assert labels["apps.kubernetes.io/pod-index"] == str(i)
            assert labels["controller-revision-hash"] == rev
            assert (p["spec"]["hostname"], p["spec"]["subdomain"]) == (f"web-{i}", "nginx")
            ref = p["metadata"]["ownerReferences"][0]
            assert (ref["kind"], ref["name"], ref["controller"]) == ("StatefulSet", "web", True)
        described = server.kubectl("describe", "statefulset", "web").stdout
        assert "3 Running / 0 Waiting / 0 Succeeded / 0 Failed" in described, described
        assert "create Pod web-2 in StatefulSet web successful" in described, described
        crs = server.kubectl("get", "controllerrevisions").stdout.splitlines()
        assert crs[0].split() == ["NAME", "CONTROLLER", "REVISION", "AGE"]
        assert crs[1].split()[:3] == [rev, "statefulset.apps/web", "1"]

        # a deleted pod comes back with the same name
        old_uid = pods["web-1"]["metadata"]["uid"]
        server.kubectl("delete", "pod", "web-1", "--wait=false")

        def back() -> bool:  # between the old pod's removal and the new one's creation there is no web-1
            got = server.kubectl("get", "pod", "web-1", "-o", "json", check=False)
            if got.returncode != 0:
                assert 'pods "web-1" not found' in got.stderr, got.stderr
                return False
            p = json.loads(got.stdout)
            return p["metadata"]["uid"] != old_uid and _ready(p)
        wait_until(back, 90, 0.2, "web-1 recreated and Ready")

        # scale 3 -> 1: web-2 goes, then web-1
        mark = len(w.seen)
        server.kubectl("scale", "statefulset/web", "--replicas=1")
        wait_until(lambda: [p["metadata"]["name"] for p in _json(server, "pods", "-l", "app=web")["items"]]
                   == ["web-0"], 90, 0.2, "only web-0 left")
        tail = w.seen[mark:]
        gone2 = next(i for i, s in enumerate(tail) if s[1] == "web-2" and s[0] == "DELETED")
        going1 = next(i for i, s in enumerate(tail) if s[1] == "web-1" and (s[3] or s[0] == "DELETED"))
        assert gone2 < going1, tail
        events = _json(server, "events", "--field-selector", "involvedObject.name=web,reason=SuccessfulDelete")
        assert {"delete Pod web-2 in StatefulSet web successful", "delete Pod web-1 in StatefulSet web successful"} \
            <= {e["message"] for e in events["items"]}
    finally:
        w.stop()

    # a new template rolls out; history has two revisions; undo brings the first back
    server.kubectl("set", "image", "statefulset/web", f"kuard={GREEN}")
    out = server.kubectl("rollout", "status", "statefulset/web", "--timeout=120s", timeout=150).stdout
    assert out.splitlines()[-1] == "partitioned roll out complete: 1 new pods have been updated..."
    assert _json(server, "pod", "web-0")["spec"]["containers"][0]["image"] == GREEN
    history = server.kubectl("rollout", "history", "statefulset/web").stdout.splitlines()
    assert history[0].strip() == "statefulset.apps/web" and history[1].split() == ["REVISION", "CHANGE-CAUSE"]
    assert [ln.split()[0] for ln in history[2:] if ln.strip()] == ["1", "2"]
    shown = server.kubectl("rollout", "history", "statefulset/web", "--revision=1").stdout
    assert BLUE in shown
    assert server.kubectl("rollout", "undo", "statefulset/web").stdout.strip() == "statefulset.apps/web rolled back"
    server.kubectl("rollout", "status", "statefulset/web", "--timeout=120s", timeout=150)
    wait_until(lambda: _json(server, "pod", "web-0")["spec"]["containers"][0]["image"] == BLUE, 60, 0.2,
               "web-0 back on the first template")


BAD = """
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: bad}
spec:
  replicas: REPLICAS
  serviceName: bad
  selector: {matchLabels: {app: SELECTED}}
  updateStrategy: {type: STRATEGY}
  template:
    metadata: {labels: {app: bad}}
    spec: {containers: [{name: c, image: "IMAGE"}]}
"""


def _bad(replicas: str = "1", selected: str = "bad", strategy: str = "RollingUpdate") -> str:
    return BAD.replace("IMAGE", BLUE).replace("REPLICAS", replicas).replace("SELECTED", selected).replace("STRATEGY", strategy)


@pytest.mark.parametrize(("manifest", "message"), [
    (_bad(selected="other"), 'The StatefulSet "bad" is invalid: spec.template.metadata.labels: Invalid value: '
                             'map[string]string{"app":"bad"}: `selector` does not match template `labels`'),
    (_bad(replicas="-1"), 'The StatefulSet "bad" is invalid: spec.replicas: Invalid value: -1: must be greater '
                          'than or equal to 0'),
    (_bad(strategy="Sometimes"), 'The StatefulSet "bad" is invalid: spec.updateStrategy: Invalid value: '
                                 'apps.StatefulSetUpdateStrategy{Type:"Sometimes", '
                                 'RollingUpdate:(*apps.RollingUpdateStatefulSetStrategy)(nil)}: must be '
                                 "'RollingUpdate' or 'OnDelete'"),
])
def test_bad_specs_are_refused_with_upstreams_422(cluster, manifest, message):
    p = cluster.kubectl("apply", "-f", "-", input=manifest, check=False)
    assert p.returncode != 0
    assert message in p.stderr, p.stderr
    assert not _json(cluster, "statefulsets")["items"] or all(
        s["metadata"]["name"] != "bad" for s in _json(cluster, "statefulsets")["items"])

