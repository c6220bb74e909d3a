"""A node that dies and comes back, with a real agent killed -9: its conditions go Unknown, it
is tainted unreachable, its pods are marked not ready and evicted after their
tolerationSeconds; back, it loses the taints; `kubectl drain` evicts and cordons.

The server runs with a short node-monitor grace period. A second node, kept alive by the test
renewing its Lease, keeps the cluster out of upstream's full-disruption mode (where nothing is
evicted because every node seems down)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import subprocess
import threading

import pytest

from tests.e2e.harness import ServerProcess, wait_until
from tests.e2e.test_agent_support import BUSYBOX, AgentProcess, _unmount_under, bridge_ports, get_pod

NODE = "kl-e2e-lifecycle"
PEER = "kl-e2e-lifecycle-peer"
GRACE = 6


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Heartbeat:
    """The peer node's kubelet, reduced to what the node lifecycle controller looks at."""

    def __init__(self, server: ServerProcess) -> None:
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=str(server.kubeconfig), client_configuration=cfg)
        self.api = client.ApiClient(cfg)
        self.core = client.CoreV1Api(self.api)
        self.coord = client.CoordinationV1Api(self.api)
        self.stop = threading.Event()
        self.core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=PEER)))
        self.core.patch_node_status(PEER, {"status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok",
             "lastHeartbeatTime": _now()[:19] + "Z", "lastTransitionTime": _now()[:19] + "Z"}]}})
        self.coord.create_namespaced_lease("kube-node-lease", client.V1Lease(
            metadata=client.V1ObjectMeta(name=PEER), spec=client.V1LeaseSpec(holder_identity=PEER,
                                                                             lease_duration_seconds=40)))
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(1.0):
            with contextlib.suppress(Exception):
                self.coord.patch_namespaced_lease(PEER, "kube-node-lease", {"spec": {"renewTime": _now()}})

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.api.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = tmp_path_factory.mktemp("lifecycle")
    server = ServerProcess(base / "srv", extra=["--disable-agent", "--disable-scheduler", "--node-monitor-grace-period", str(GRACE),
                                                "--node-monitor-period", "1"]).start()
    beat = _Heartbeat(server)
    agent = AgentProcess(base / "node", server, NODE)
    try:
        agent.start()
        yield server, agent
    finally:
        beat.close()
        with contextlib.suppress(Exception):
            if agent.proc is None or agent.proc.poll() is not None:
                agent.start()
            server.kubectl("delete", "pods", "--all", "--grace-period=1", "--wait=true", "--timeout=60s", check=False)
        agent.stop()
        server.stop()
        _unmount_under(agent.data_dir)
        if not bridge_ports():
            subprocess.run(["ip", "link", "del", "kubelite0"], capture_output=True)


def _node(server: ServerProcess, name: str = NODE) -> dict:
    return json.loads(server.kubectl("get", "node", name, "-o", "json").stdout)


def _ready(node: dict) -> dict:
    return next(c for c in node["status"]["conditions"] if c["type"] == "Ready")


def _taints(node: dict) -> set[tuple[str, str]]:
    return {(t["key"], t["effect"]) for t in node["spec"].get("taints") or []}


UNREACHABLE = {("node.kubernetes.io/unreachable", "NoExecute"), ("node.kubernetes.io/unreachable", "NoSchedule")}


def test_dead_node_is_tainted_its_pods_evicted_and_it_recovers(cluster):
    server, agent = cluster
    server.kubectl("run", "survivor", f"--image={BUSYBOX}", "--overrides", json.dumps({"spec": {
        "nodeName": NODE, "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                            "effect": "NoExecute"}]}}), "--", "sleep", "3600")
    server.kubectl("run", "victim", f"--image={BUSYBOX}", "--overrides", json.dumps({"spec": {
        "nodeName": NODE, "terminationGracePeriodSeconds": 1, "tolerations": [{
            "key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
            "tolerationSeconds": 4}]}}), "--", "sleep", "3600")
    for name in ("survivor", "victim"):
        wait_until(lambda n=name: (p := get_pod(server, n)) is not None and any(
            c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or []),
            90, 0.2, f"{name} ready")

    agent.kill9()  # the kubelet dies: no more status, no more lease renewals
    node = wait_until(lambda: (n := _node(server)) and _ready(n)["status"] == "Unknown" and n, GRACE + 10, 0.3,
                      "node Unknown")
    assert _ready(node)["reason"] == "NodeStatusUnknown"
    assert _ready(node)["message"] == "Kubelet stopped posting node status."
    wait_until(lambda: UNREACHABLE <= _taints(_node(server)), 10, 0.3, "unreachable taints")
    # its pods are not ready any more
    for name in ("survivor", "victim"):
        wait_until(lambda n=name: any(c["type"] == "Ready" and c["status"] == "False"
                                      for c in get_pod(server, n)["status"]["conditions"]), 10, 0.3, f"{name} not ready")
    events = server.kubectl("get", "events", "--field-selector", "involvedObject.name=victim", "-o", "json").stdout
    assert any(e["reason"] == "NodeNotReady" for e in json.loads(events)["items"])
    # after its tolerationSeconds the victim is evicted (gracefully: its node must confirm)
    victim = wait_until(lambda: (p := get_pod(server, "victim")) and p["metadata"].get("deletionTimestamp") and p,
                        20, 0.3, "victim evicted")
    target = next(c for c in victim["status"]["conditions"] if c["type"] == "DisruptionTarget")
    assert target["reason"] == "DeletionByTaintManager" and target["status"] == "True"
    assert not get_pod(server, "survivor")["metadata"].get("deletionTimestamp")  # tolerates forever

    agent.start()  # back: Ready, taints gone, the evicted pod goes for good, the other keeps running
    wait_until(lambda: _ready(_node(server))["status"] == "True", 60, 0.3, "node Ready")
    wait_until(lambda: not (_taints(_node(server)) & UNREACHABLE), 15, 0.3, "taints removed")
    wait_until(lambda: get_pod(server, "victim") is None, 60, 0.3, "victim gone")
    wait_until(lambda: any(c["type"] == "Ready" and c["status"] == "True"
                           for c in get_pod(server, "survivor")["status"]["conditions"]), 60, 0.3, "survivor ready")


def test_drain_evicts_and_cordons(cluster):
    server, agent = cluster
    out = server.kubectl("drain", NODE, "--ignore-daemonsets", "--force", "--grace-period=1", "--timeout=90s",
                         timeout=120)
    assert f"node/{NODE} cordoned" in out.stdout and f"node/{NODE} drained" in out.stdout
    assert "evicting pod default/survivor" in out.stderr + out.stdout
    node = _node(server)
    assert node["spec"]["unschedulable"] is True
    wait_until(lambda: ("node.kubernetes.io/unschedulable", "NoSchedule") in _taints(_node(server)), 10, 0.3,
               "unschedulable taint")
    assert get_pod(server, "survivor") is None
    server.kubectl("uncordon", NODE)
    wait_until(lambda: ("node.kubernetes.io/unschedulable", "NoSchedule") not in _taints(_node(server)), 10, 0.3,
               "unschedulable taint removed")
