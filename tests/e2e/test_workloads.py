"""Deployments and ReplicaSets as a user drives them: `kubectl create deployment`, self-healing,
`kubectl set image` with traffic to the pods' IPs, `kubectl rollout status|history|undo`,
`kubectl scale`, garbage collection of what a Deployment owns, and the 422s of bad specs —
against `kubelite server` with its scheduler, agent, containerd and runc."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import urllib.error

import pytest

from kubelite.api import protobuf
from tests.e2e.harness import ServerProcess, raw_request, wait_until
from tests.e2e.test_agent_support import full_cluster, http_get

NODE = "kl-e2e-workloads"
BLUE = "kubelite.local/kuard-amd64:blue"
GREEN = "kubelite.local/kuard-amd64:green"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with full_cluster(tmp_path_factory.mktemp("workloads") / "data", NODE) as (server, node):
        try:
            yield server
        finally:  # the controllers would bring the pods back: their owners go first
            server.kubectl("delete", "deployments,replicasets", "--all", "--cascade=foreground", "--timeout=90s",
                           check=False)


def _json(server: ServerProcess, *args: str) -> dict:
    return json.loads(server.kubectl("get", *args, "-o", "json").stdout)


def _pods(server: ServerProcess, selector: str = "app=web") -> list[dict]:
    return _json(server, "pods", "-l", selector)["items"]


def _active(pods: list[dict]) -> list[dict]:
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def _running(server: ServerProcess, n: int, image: str = BLUE) -> bool:
    pods = _active(_pods(server))
    return len(pods) == n and all(
        p["status"].get("phase") == "Running" and p["spec"]["containers"][0]["image"] == image for p in pods)


def _rollout_status(server: ServerProcess, timeout: str = "120s") -> list[str]:
    return server.kubectl("rollout", "status", "deployment/web", f"--timeout={timeout}", timeout=150).stdout.splitlines()


def _ready(p: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])


def test_create_deployment_runs_three_and_heals(cluster):
    server = cluster
    out = server.kubectl("create", "deployment", "web", f"--image={BLUE}", "--replicas=3").stdout
    assert out.strip() == "deployment.apps/web created"
    lines = _rollout_status(server)
    assert lines[-1] == 'deployment "web" successfully rolled out'
    waiting = re.compile(r'^Waiting for deployment "web" rollout to finish: (\d+ out of 3 new replicas have been '
                         r'updated|\d+ old replicas are pending termination|\d+ of 3 updated replicas are available)'
                         r'\.\.\.$')
    assert all(waiting.match(ln) for ln in lines[:-1]), lines
    wait_until(lambda: _running(server, 3), 60, 0.2, "3 Running pods")

    rows = server.kubectl("get", "deployment", "web").stdout.splitlines()
    assert rows[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert rows[1].split()[:4] == ["web", "3/3", "3", "3"]
    d = _json(server, "deployment", "web")
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    conds = {c["type"]: c for c in d["status"]["conditions"]}
    assert (conds["Available"]["status"], conds["Available"]["reason"]) == ("True", "MinimumReplicasAvailable")
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
    rs = _json(server, "replicasets", "-l", "app=web")["items"]
    assert len(rs) == 1
    h = rs[0]["metadata"]["labels"]["pod-template-hash"]
    assert rs[0]["metadata"]["name"] == f"web-{h}"
    rs_rows = server.kubectl("get", "rs").stdout.splitlines()
    assert rs_rows[0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    assert rs_rows[1].split()[:4] == [f"web-{h}", "3", "3", "3"]
    pods = _pods(server)
    for p in pods:
        ref = p["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["name"], ref["controller"], ref["blockOwnerDeletion"]) == (
            "ReplicaSet", f"web-{h}", True, True)
        assert p["metadata"]["name"].startswith(f"web-{h}-")

    # a deleted pod is replaced at once
    before = {p["metadata"]["name"] for p in pods}
    victim = sorted(before)[0]
    start = time.monotonic()
    server.kubectl("delete", "pod", victim, "--wait=false")
    new = wait_until(lambda: {p["metadata"]["name"] for p in _active(_pods(server))} - before, 2.0, 0.05,
                     "a replacement pod")
    assert time.monotonic() - start < 2.0 and len(new) == 1
    wait_until(lambda: _running(server, 3), 60, 0.2, "3 Running pods again")
    events = _json(server, "events", "--field-selector", f"involvedObject.name=web-{h},reason=SuccessfulCreate")
    assert f"Created pod: {new.pop()}" in {e["message"] for e in events["items"]}


class _Traffic(threading.Thread):
    """A client loop through the IPs of the ready, not terminating pods (what a Service's
    endpoints hold), counting failed requests."""

    def __init__(self, api_client) -> None:
        super().__init__(daemon=True)
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.seen_images: set[str] = set()

    def run(self) -> None:
        while not self.stop.is_set():
            pods = self.core.list_namespaced_pod("default", label_selector="app=web").items
            ips = [(p.status.pod_ip, p.spec.containers[0].image) for p in pods if p.status.pod_ip
                   and not p.metadata.deletion_timestamp
                   and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]
            for ip, image in ips:
                try:
                    code, _ = http_get(f"http://{ip}:8080/healthy", timeout=2)
                    if code != 200:
                        self.failures.append(f"{ip}: {code}")
                    else:
                        self.ok += 1
                        self.seen_images.add(image)
                except (OSError, urllib.error.URLError) as exc:
                    self.failures.append(f"{ip}: {exc}")
            time.sleep(0.05)


@pytest.fixture
def api_client_for(cluster):
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=cfg)
    with client.ApiClient(cfg) as c:
        yield c


def test_set_image_with_max_unavailable_0_fails_no_request_then_undo(cluster, api_client_for):
    server = cluster
    # what a zero-downtime rollout needs: readiness from the app, a grace before it stops,
    # and no pod taken away before its replacement is ready
    patch = {"spec": {"strategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                      "template": {"spec": {"containers": [{
                          "name": "kuard-amd64",
                          "readinessProbe": {"httpGet": {"path": "/healthy", "port": 8080}, "periodSeconds": 1},
                          "lifecycle": {"preStop": {"sleep": {"seconds": 2}}}}]}}}}
    server.kubectl("patch", "deployment", "web", "--type=strategic", "-p", json.dumps(patch))
    assert _rollout_status(server)[-1] == 'deployment "web" successfully rolled out'
    wait_until(lambda: _running(server, 3) and all(_ready(p) for p in _active(_pods(server))), 60, 0.2, "3 ready")

    traffic = _Traffic(api_client_for)
    traffic.start()
    try:
        wait_until(lambda: traffic.ok >= 3, 20, 0.05, "traffic flowing")
        out = server.kubectl("set", "image", "deployment/web", f"kuard-amd64={GREEN}").stdout
        assert out.strip() == "deployment.apps/web image updated"
        assert _rollout_status(server)[-1] == 'deployment "web" successfully rolled out'
        wait_until(lambda: _running(server, 3, GREEN), 60, 0.2, "3 green pods")
        ok_before = traffic.ok
        wait_until(lambda: traffic.ok >= ok_before + 3, 20, 0.05, "traffic to the green pods")
    finally:
        traffic.stop.set()
        traffic.join(10)
    assert traffic.failures == []
    assert {BLUE, GREEN} <= traffic.seen_images

    # never fewer than 3 available: the deployment scaled the old ReplicaSet down one at a time
    events = _json(server, "events", "--field-selector", "involvedObject.kind=Deployment,reason=ScalingReplicaSet")
    msgs = [e["message"] for e in events["items"]]
    assert any(re.match(r"^Scaled down replica set web-\w+ from 3 to 2$", m) for m in msgs), msgs

    hist = server.kubectl("rollout", "history", "deployment/web").stdout.splitlines()
    assert hist[0].strip() == "deployment.apps/web"
    assert hist[1].split() == ["REVISION", "CHANGE-CAUSE"]
    assert [r.split()[0] for r in hist[2:] if r.strip()] == ["1", "2", "3"]

    assert server.kubectl("rollout", "undo", "deployment/web").stdout.strip() == "deployment.apps/web rolled back"
    assert _rollout_status(server)[-1] == 'deployment "web" successfully rolled out'
    wait_until(lambda: _running(server, 3, BLUE), 60, 0.2, "3 blue pods after undo")
    hist = server.kubectl("rollout", "history", "deployment/web").stdout.splitlines()
    assert [r.split()[0] for r in hist[2:] if r.strip()] == ["1", "3", "4"]
    d = _json(server, "deployment", "web")
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4"
    back = [rs for rs in _json(server, "rs", "-l", "app=web")["items"]
            if rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4"]
    assert back[0]["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "2"


def test_scale_up_to_ten_and_down_to_zero(cluster):
    server = cluster
    assert server.kubectl("scale", "deployment/web", "--replicas=10").stdout.strip() == "deployment.apps/web scaled"
    wait_until(lambda: _json(server, "deployment", "web")["status"].get("availableReplicas") == 10, 180, 0.5,
               "10 available replicas")
    assert len(_active(_pods(server))) == 10
    scale = json.loads(server.kubectl("get", "--raw", "/apis/apps/v1/namespaces/default/deployments/web/scale").stdout)
    assert scale["spec"] == {"replicas": 10} and scale["status"]["replicas"] == 10
    assert scale["status"]["selector"] == "app=web"
    server.kubectl("scale", "deployment/web", "--replicas=0")
    wait_until(lambda: not _pods(server), 120, 0.5, "no pods")
    rows = server.kubectl("get", "deployment", "web").stdout.splitlines()
    assert rows[1].split()[:4] == ["web", "0/0", "0", "0"]


def test_deleting_a_deployment_collects_its_replicasets_and_pods(cluster):
    server = cluster
    server.kubectl("scale", "deployment/web", "--replicas=2")
    wait_until(lambda: len(_active(_pods(server))) == 2, 60, 0.2, "2 pods")
    server.kubectl("delete", "deployment", "web")
    wait_until(lambda: not _json(server, "rs", "-l", "app=web")["items"] and not _pods(server), 90, 0.3,
               "ReplicaSets and pods collected")


def test_pause_holds_a_rollout_until_resume(cluster):
    server = cluster
    server.kubectl("create", "deployment", "held", f"--image={BLUE}", "--replicas=2")
    server.kubectl("rollout", "status", "deployment/held", "--timeout=120s", timeout=150)
    assert server.kubectl("rollout", "pause", "deployment/held").stdout.strip() == "deployment.apps/held paused"
    server.kubectl("set", "image", "deployment/held", f"kuard-amd64={GREEN}")

    def progressing() -> dict:
        d = _json(server, "deployment", "held")
        return next(c for c in d["status"]["conditions"] if c["type"] == "Progressing")

    cond = wait_until(lambda: progressing() if progressing()["reason"] == "DeploymentPaused" else None, 30, 0.2,
                      "the Progressing condition to say paused")
    assert (cond["status"], cond["message"]) == ("Unknown", "Deployment is paused")
    assert len(_json(server, "rs", "-l", "app=held")["items"]) == 1  # no new ReplicaSet while paused
    assert server.kubectl("rollout", "resume", "deployment/held").stdout.strip() == "deployment.apps/held resumed"
    server.kubectl("rollout", "status", "deployment/held", "--timeout=120s", timeout=150)
    pods = _active(_pods(server, "app=held"))
    assert len(pods) == 2 and {p["spec"]["containers"][0]["image"] for p in pods} == {GREEN}
    server.kubectl("delete", "deployment", "held")
    wait_until(lambda: not _pods(server, "app=held"), 90, 0.3, "held pods gone")


def test_progress_deadline_exceeded(cluster):
    server = cluster
    manifest = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "stuck"},
                "spec": {"replicas": 1, "progressDeadlineSeconds": 3, "selector": {"matchLabels": {"app": "stuck"}},
                         "template": {"metadata": {"labels": {"app": "stuck"}}, "spec": {"containers": [{
                             "name": "c", "image": "kubelite.local/does-not-exist:1"}]}}}}
    server.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    p = server.kubectl("rollout", "status", "deployment/stuck", "--timeout=60s", check=False, timeout=90)
    assert p.returncode != 0
    assert 'error: deployment "stuck" exceeded its progress deadline' in p.stderr
    d = _json(server, "deployment", "stuck")
    cond = next(c for c in d["status"]["conditions"] if c["type"] == "Progressing")
    rs = _json(server, "rs", "-l", "app=stuck")["items"][0]["metadata"]["name"]
    assert (cond["status"], cond["reason"], cond["message"]) == (
        "False", "ProgressDeadlineExceeded", f'ReplicaSet "{rs}" has timed out progressing.')
    server.kubectl("delete", "deployment", "stuck")
    wait_until(lambda: not _pods(server, "app=stuck"), 90, 0.3, "stuck pods gone")


def test_protobuf_bodies_and_the_official_clients_scale(cluster, api_client_for):
    from kubernetes import client

    server = cluster
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "pb", "namespace": "default"},
          "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "pb"}},
                   "template": {"metadata": {"labels": {"app": "pb"}},
                                "spec": {"containers": [{"name": "c", "image": BLUE}]}}}}
    code, _, body = raw_request(server, "POST", "/apis/apps/v1/namespaces/default/replicasets", protobuf.encode(rs),
                                {"Content-Type": "application/vnd.kubernetes.protobuf", "Accept": "application/json"})
    assert code == 201, body
    created = json.loads(body)
    assert created["spec"]["template"]["spec"]["restartPolicy"] == "Always" and created["status"] == {"replicas": 0}
    apps_api = client.AppsV1Api(api_client_for)
    scale = apps_api.read_namespaced_replica_set_scale("pb", "default")
    assert scale.spec.replicas in (0, None) and scale.status.selector == "app=pb"
    apps_api.patch_namespaced_replica_set_scale("pb", "default", {"spec": {"replicas": 1}})
    wait_until(lambda: len(_active(_pods(server, "app=pb"))) == 1, 30, 0.2,
               "one pb pod")
    with pytest.raises(client.ApiException) as exc:
        apps_api.patch_namespaced_replica_set_scale("pb", "default", {"spec": {"replicas": -2}})
    assert exc.value.status == 422
    assert json.loads(exc.value.body)["message"] == ('Scale.autoscaling "pb" is invalid: spec.replicas: Invalid '
                                                     'value: -2: must be greater than or equal to 0')
    apps_api.delete_namespaced_replica_set("pb", "default")
    wait_until(lambda: not _pods(server, "app=pb"), 60, 0.3, "pb pods collected")


def test_replication_controller_keeps_its_pods(cluster):
    server = cluster
    rc = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "legacy"},
          "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "legacy"}},
                                                "spec": {"containers": [{"name": "c", "image": BLUE}]}}}}
    assert server.kubectl("apply", "-f", "-", input=json.dumps(rc)).stdout.strip() == \
        "replicationcontroller/legacy created"
    wait_until(lambda: _json(server, "rc", "legacy")["status"].get("readyReplicas") == 2, 60, 0.2, "2 ready")
    rows = server.kubectl("get", "rc", "legacy").stdout.splitlines()
    assert rows[0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    assert rows[1].split()[:4] == ["legacy", "2", "2", "2"]
    pods = _active(_pods(server, "app=legacy"))
    assert {p["metadata"]["ownerReferences"][0]["kind"] for p in pods} == {"ReplicationController"}
    assert server.kubectl("scale", "rc", "legacy", "--replicas=1").stdout.strip() == \
        "replicationcontroller/legacy scaled"
    wait_until(lambda: len(_active(_pods(server, "app=legacy"))) == 1, 30, 0.2, "one pod left")
    server.kubectl("delete", "rc", "legacy")
    wait_until(lambda: not _pods(server, "app=legacy"), 60, 0.3, "legacy pods collected")


def test_min_ready_seconds_delays_availability(cluster):
    server = cluster
    manifest = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "slow"},
                "spec": {"replicas": 1, "minReadySeconds": 3, "selector": {"matchLabels": {"app": "slow"}},
                         "template": {"metadata": {"labels": {"app": "slow"}}, "spec": {"containers": [{
                             "name": "c", "image": BLUE}]}}}}
    server.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    lines = server.kubectl("rollout", "status", "deployment/slow", "--timeout=120s", timeout=150).stdout.splitlines()
    assert 'Waiting for deployment "slow" rollout to finish: 0 of 1 updated replicas are available...' in lines
    assert lines[-1] == 'deployment "slow" successfully rolled out'
    (p,) = _active(_pods(server, "app=slow"))
    ready = next(c for c in p["status"]["conditions"] if c["type"] == "Ready")["lastTransitionTime"]
    d = _json(server, "deployment", "slow")
    avail = next(c for c in d["status"]["conditions"] if c["type"] == "Available")["lastTransitionTime"]
    from kubelite.kinds._printing import parse_time

    assert parse_time(avail) - parse_time(ready) >= 2  # (both have one-second resolution)
    server.kubectl("delete", "deployment", "slow")
    wait_until(lambda: not _pods(server, "app=slow"), 90, 0.3, "slow pods gone")


BAD = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: bad}
spec:
  replicas: REPLICAS
  selector: {matchLabels: {app: SELECTED}}
  strategy: {type: STRATEGY}
  template:
    metadata: {labels: {app: bad}}
    spec:
      containers: [{name: c, image: kubelite.local/kuard-amd64:blue}]
"""


def _bad(replicas: str = "1", selected: str = "bad", strategy: str = "RollingUpdate") -> str:
    return BAD.replace("REPLICAS", replicas).replace("SELECTED", selected).replace("STRATEGY", strategy)


@pytest.mark.parametrize(("manifest", "message"), [
    (_bad(selected="other"), 'The Deployment "bad" is invalid: spec.template.metadata.labels: Invalid value: '
                             'map[string]string{"app":"bad"}: `selector` does not match template `labels`'),
    (_bad(replicas="-1"), 'The Deployment "bad" is invalid: spec.replicas: Invalid value: -1: must be greater than '
                          'or equal to 0'),
    (_bad(strategy="Sometimes"), 'The Deployment "bad" is invalid: spec.strategy: Unsupported value: '
                                 'apps.DeploymentStrategy{Type:"Sometimes", RollingUpdate:(*apps.RollingUpdateDeployment)'
                                 '(nil)}: supported values: "Recreate", "RollingUpdate"'),
    (_bad().replace("kind: Deployment", "kind: ReplicaSet").replace("  strategy: {type: RollingUpdate}\n", "")
     .replace("app: bad}}\n    spec", "app: other}}\n    spec"),
     'The ReplicaSet "bad" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{"app":"other"}: '
     '`selector` does not match template `labels`'),
])
def test_bad_specs_are_refused_with_upstreams_422(cluster, manifest, message):
    p = cluster.kubectl("apply", "-f", "-", input=manifest, check=False)
    assert p.returncode != 0
    assert message in p.stderr, p.stderr
    with contextlib.suppress(Exception):
        assert not _json(cluster, "deployments,replicasets", "-l", "app=bad")["items"]


def test_drain_respects_a_disruption_budget(cluster):
    server = cluster
    server.kubectl("create", "deployment", "guarded", f"--image={BLUE}", "--replicas=3")
    server.kubectl("rollout", "status", "deployment/guarded", "--timeout=120s", timeout=150)
    out = server.kubectl("create", "pdb", "guarded", "--selector=app=guarded", "--min-available=2").stdout
    assert out.strip() == "poddisruptionbudget.policy/guarded created"

    def budget() -> dict:
        return _json(server, "pdb", "guarded")["status"]

    wait_until(lambda: budget().get("disruptionsAllowed") == 1, 30, 0.2, "one disruption allowed")
    st = budget()
    assert (st["expectedPods"], st["desiredHealthy"], st["currentHealthy"]) == (3, 2, 3)
    rows = server.kubectl("get", "pdb").stdout.splitlines()
    assert rows[0].split() == ["NAME", "MIN", "AVAILABLE", "MAX", "UNAVAILABLE", "ALLOWED", "DISRUPTIONS", "AGE"]
    assert rows[1].split()[:4] == ["guarded", "2", "N/A", "1"]
    before = {p["metadata"]["name"] for p in _pods(server, "app=guarded")}
    try:
        # one node: the evicted pod's replacement cannot be scheduled while the node is cordoned,
        # so the budget lets exactly one pod go and drain keeps retrying the others
        p = server.kubectl("drain", NODE, "--pod-selector=app=guarded", "--timeout=12s", check=False, timeout=60)
        assert p.returncode != 0
        assert "Cannot evict pod as it would violate the pod's disruption budget." in p.stderr + p.stdout
        assert "(will retry after 5s)" in p.stderr + p.stdout
        left = {q["metadata"]["name"] for q in _active(_pods(server, "app=guarded"))} & before
        assert len(left) == 2
        st = budget()
        assert st["disruptionsAllowed"] == 0 and st["currentHealthy"] == 2
        cond = next(c for c in st["conditions"] if c["type"] == "DisruptionAllowed")
        assert (cond["status"], cond["reason"]) == ("False", "InsufficientPods")
    finally:
        server.kubectl("uncordon", NODE)
    wait_until(lambda: budget().get("disruptionsAllowed") == 1, 60, 0.3, "the replacement ready again")
    server.kubectl("delete", "pdb", "guarded")
    server.kubectl("delete", "deployment", "guarded")
    wait_until(lambda: not _pods(server, "app=guarded"), 90, 0.3, "guarded pods gone")
