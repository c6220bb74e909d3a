"""DaemonSets as a user drives them: one pod on the node, pinned by node affinity and tolerating
node problems; `kubectl get ds`, `kubectl rollout status|history|undo`; the 422s of bad specs —
against `kubelite server` with its scheduler, agent, containerd and runc. Then a dev cluster
whose second node (a test host of its own, joined with a bootstrap token) joins and leaves:
the DaemonSet follows it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.harness import ROOT, ServerProcess, free_port, wait_until
from tests.e2e.test_agent_support import full_cluster

NODE = "kl-e2e-ds"
BLUE = "kubelite.local/kuard-amd64:blue"
GREEN = "kubelite.local/kuard-amd64:green"
BUSYBOX = "kubelite.local/busybox:latest"

MANIFEST = f"""
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: agent}}
spec:
  selector: {{matchLabels: {{app: agent}}}}
  template:
    metadata: {{labels: {{app: agent}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{{name: kuard, image: "{BLUE}"}}]
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with full_cluster(tmp_path_factory.mktemp("ds") / "data", NODE) as (server, node):
        try:
            yield server
        finally:
            server.kubectl("delete", "daemonsets", "--all", "--cascade=foreground", "--timeout=90s", check=False)


def _json(server: ServerProcess, *args: str) -> dict:
    return json.loads(server.kubectl("get", *args, "-o", "json").stdout)


def _ready(p: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (p.get("status") or {}).get("conditions") or [])


def _live(pods: list[dict]) -> list[dict]:
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def test_one_pod_on_the_node_and_a_rollout(cluster):
    server = cluster
    assert server.kubectl("apply", "-f", "-", input=MANIFEST).stdout.strip() == "daemonset.apps/agent created"
    out = server.kubectl("rollout", "status", "daemonset/agent", "--timeout=120s", timeout=150).stdout
    assert out.splitlines()[-1] == 'daemon set "agent" successfully rolled out', out
    (pod,) = _live(_json(server, "pods", "-l", "app=agent")["items"])
    assert pod["spec"]["nodeName"] == NODE and _ready(pod)
    assert pod["metadata"]["name"].startswith("agent-")
    ref = pod["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["controller"]) == ("DaemonSet", "agent", True)
    assert pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [NODE]}]}]}
    tols = {(t["key"], t.get("effect")) for t in pod["spec"]["tolerations"]}
    assert {("node.kubernetes.io/not-ready", "NoExecute"), ("node.kubernetes.io/unreachable", "NoExecute"),
            ("node.kubernetes.io/disk-pressure", "NoSchedule"), ("node.kubernetes.io/memory-pressure", "NoSchedule"),
            ("node.kubernetes.io/pid-pressure", "NoSchedule"), ("node.kubernetes.io/unschedulable", "NoSchedule")} \
        <= tols
    assert pod["metadata"]["labels"]["pod-template-generation"] == "1"

    rows = server.kubectl("get", "daemonset", "agent").stdout.splitlines()
    assert rows[0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE", "SELECTOR",
                               "AGE"]
    assert rows[1].split()[:7] == ["agent", "1", "1", "1", "1", "1", "<none>"]
    d = _json(server, "daemonset", "agent")
    assert d["metadata"]["annotations"]["deprecated.daemonset.template.generation"] == "1"
    assert d["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                           "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    described = server.kubectl("describe", "daemonset", "agent").stdout
    assert "Desired Number of Nodes Scheduled: 1" in described, described
    assert "Pods Status:  1 Running / 0 Waiting / 0 Succeeded / 0 Failed" in described, described
    events = _json(server, "events", "--field-selector", "involvedObject.name=agent,reason=SuccessfulCreate")
    assert f"Created pod: {pod['metadata']['name']}" in {e["message"] for e in events["items"]}

    # a new template: the pod is replaced; history has two revisions; undo brings the first back
    server.kubectl("set", "image", "daemonset/agent", f"kuard={GREEN}")
    out = server.kubectl("rollout", "status", "daemonset/agent", "--timeout=120s", timeout=150).stdout
    assert out.splitlines()[-1] == 'daemon set "agent" successfully rolled out', out
    (pod,) = wait_until(lambda: [p for p in _live(_json(server, "pods", "-l", "app=agent")["items"])
                                 if p["spec"]["containers"][0]["image"] == GREEN and _ready(p)], 60, 0.2,
                        "the pod on the new template")
    assert pod["metadata"]["labels"]["pod-template-generation"] == "2"
    history = server.kubectl("rollout", "history", "daemonset/agent").stdout.splitlines()
    assert history[0].strip() == "daemonset.apps/agent" and history[1].split() == ["REVISION", "CHANGE-CAUSE"]
    assert [ln.split()[0] for ln in history[2:] if ln.strip()] == ["1", "2"]
    crs = server.kubectl("get", "controllerrevisions", "-l", "app=agent").stdout.splitlines()
    assert crs[0].split() == ["NAME", "CONTROLLER", "REVISION", "AGE"]
    assert {ln.split()[1] for ln in crs[1:]} == {"daemonset.apps/agent"}
    assert server.kubectl("rollout", "undo", "daemonset/agent").stdout.strip() == "daemonset.apps/agent rolled back"
    server.kubectl("rollout", "status", "daemonset/agent", "--timeout=120s", timeout=150)
    wait_until(lambda: [p for p in _live(_json(server, "pods", "-l", "app=agent")["items"])
                        if p["spec"]["containers"][0]["image"] == BLUE and _ready(p)], 60, 0.2,
               "the pod back on the first template")
    server.kubectl("delete", "daemonset", "agent", "--cascade=foreground", "--timeout=60s")
    wait_until(lambda: not _json(server, "pods", "-l", "app=agent")["items"], 60, 0.2, "the daemon pod gone")


BAD = """
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: bad}
spec:
  selector: {matchLabels: {app: SELECTED}}
  updateStrategy: {type: STRATEGY}
  template:
    metadata: {labels: {app: bad}}
    spec: {containers: [{name: c, image: "IMAGE"}]}
"""


def _bad(selected: str = "bad", strategy: str = "RollingUpdate") -> str:
    return BAD.replace("IMAGE", BLUE).replace("SELECTED", selected).replace("STRATEGY", strategy)


@pytest.mark.parametrize(("manifest", "message"), [
    (_bad(selected="other"), 'The DaemonSet "bad" is invalid: spec.template.metadata.labels: Invalid value: '
                             'map[string]string{"app":"bad"}: `selector` does not match template `labels`'),
    (_bad(strategy="Sometimes"), 'The DaemonSet "bad" is invalid: spec.updateStrategy: Unsupported value: '
                                 'apps.DaemonSetUpdateStrategy{Type:"Sometimes", '
                                 'RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}: supported values: '
                                 '"RollingUpdate", "OnDelete"'),
    (_bad().replace("updateStrategy: {type: RollingUpdate}",
                    "updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 0}}"),
     'The DaemonSet "bad" is invalid: spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 '
     'when maxSurge is 0'),
])
def test_bad_specs_are_refused_with_upstreams_422(cluster, manifest, message):
    p = cluster.kubectl("apply", "-f", "-", input=manifest, check=False)
    assert p.returncode != 0
    assert message in p.stderr, p.stderr
    assert all(d["metadata"]["name"] != "bad" for d in _json(cluster, "daemonsets")["items"])


# ----------------------------------------------------------------------------- nodes joining and leaving
NAME = "kle2eds"
SUBNET = "198.19.245.0/24"  # neither the default subnet nor another dev cluster test's


def _kubelite(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubelite", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


def test_the_daemon_set_follows_a_node_joining_and_leaving(tmp_path: Path):
    from kubelite.devcluster.cluster import DevCluster, _join_args
    from kubelite.devcluster.testhost import TestHost
    from tests.e2e.test_devcluster import kubectl_for

    data, kc = tmp_path / "dev", tmp_path / "kc.yaml"
    kubectl = kubectl_for(kc, tmp_path)
    up = _kubelite("dev", "cluster", "up", "--nodes", "1", "--data-dir", str(data), "--kubeconfig", str(kc),
                   "--name", NAME, "--subnet", SUBNET, "--port", str(free_port()))
    extra: TestHost | None = None
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        first, second = f"{NAME}-1", f"{NAME}-2"
        kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"terminationGracePeriodSeconds": 0, "containers": [
                    {"name": "c", "image": BUSYBOX, "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]}}}}))

        def running() -> dict[str, str]:
            pods = json.loads(kubectl("get", "pods", "-l", "app=agent", "-o", "json").stdout)["items"]
            return {p["spec"].get("nodeName", ""): p["metadata"]["name"] for p in _live(pods)
                    if p["status"].get("phase") == "Running"}

        def status() -> dict:
            return json.loads(kubectl("get", "ds", "agent", "-o", "json").stdout)["status"]

        assert list(wait_until(running, 90, 0.3, "the daemon pod Running on the first node")) == [first]

        # a second node joins (a test host of its own, as `dev cluster up` makes them)
        cluster = DevCluster(data)
        assert cluster.load()
        net = cluster.network
        extra = TestHost(second, net.address(2), net.network.prefixlen, f"{NAME}-v2", data / "nodes" / second)
        extra.create(net)
        server_dir = Path(cluster.state["server"]["data_dir"])
        join = _join_args(server_dir / "kubeconfig.yaml", cluster.state["server"]["url"])
        joined = time.monotonic()
        extra.popen("agent", [sys.executable, "-m", "kubelite", "agent", "--data-dir", str(extra.data_dir),
                              "--node-name", second, "--node-ip", extra.address, *join], cwd=ROOT)
        cluster._save_host(extra)  # recorded as `up` records its hosts: `down` removes what ran there too
        def on_both() -> dict[str, str] | None:
            r = running()
            return r if len(r) == 2 else None

        on = wait_until(on_both, 120, 0.5, "a daemon pod Running on each node")
        print(f"second node: its daemon pod Running {time.monotonic() - joined:.1f}s after its agent started")
        assert sorted(on) == [first, second]
        wait_until(lambda: (s := status()).get("numberReady") == 2 and s["desiredNumberScheduled"] == 2, 30, 0.3,
                   "the status counting two nodes")
        rows = kubectl("get", "ds", "agent").stdout.splitlines()
        assert rows[1].split()[:6] == ["agent", "2", "2", "2", "2", "2"]

        # it leaves: its agent stops and its Node goes; its pod goes with it
        extra.destroy()
        kubectl("delete", "node", second)
        wait_until(lambda: (s := status())["desiredNumberScheduled"] == 1 and s["currentNumberScheduled"] == 1, 60,
                   0.3, "the status back to one node")
        wait_until(lambda: [p for p in json.loads(kubectl("get", "pods", "-l", "app=agent", "-o", "json").stdout)[
            "items"] if p["spec"].get("nodeName") == second] == [], 90, 0.5, "the gone node's pod collected")
        assert list(running()) == [first]
        kubectl("delete", "ds", "agent", "--cascade=foreground", "--timeout=60s")
    finally:
        if extra is not None:
            extra.destroy()  # (again, if it left already: destroying is idempotent)
        down = _kubelite("dev", "cluster", "down", "--data-dir", str(data))
    assert down.returncode == 0, down.stdout + down.stderr
