"""Hollow nodes against a real server: `kubelite sim --nodes 3` registers three Ready nodes with
Leases, the server's scheduler places pods on them, and they run, complete and go away as on
a real agent — with no container, cgroup, mount or network namespace on the host."""

from __future__ import annotations

import ipaddress
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import ROOT, ServerProcess, wait_until

pytestmark = pytest.mark.e2e

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 6
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: nginx, resources: {requests: {cpu: 100m}}}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = tmp_path_factory.mktemp("hollow")
    srv = ServerProcess(base / "data", extra=["--disable-agent", "--disable", "coredns"]).start()
    log = open(base / "sim.log", "ab")
    sim = subprocess.Popen([sys.executable, "-m", "kubelite", "sim", "--nodes", "3", "--kubeconfig",
                            str(srv.kubeconfig), "--name-prefix", "hollow-"], stdout=log, stderr=subprocess.STDOUT,
                           cwd=ROOT)
    try:
        yield srv, sim, base / "sim.log"
    finally:
        if sim.poll() is None:
            sim.send_signal(signal.SIGTERM)
            try:
                sim.wait(20)
            except subprocess.TimeoutExpired:
                sim.kill()
                sim.wait()
        log.close()
        srv.stop()


def _get(srv: ServerProcess, *args: str) -> dict:
    return json.loads(srv.kubectl("get", *args, "-o", "json").stdout)


def _ready_nodes(srv: ServerProcess) -> list[dict]:
    return [n for n in _get(srv, "nodes")["items"]
            if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions") or [])]


def test_hollow_nodes_register_ready_with_leases(cluster):
    srv, sim, log = cluster
    nodes = wait_until(lambda: len(_ready_nodes(srv)) == 3 and _ready_nodes(srv), 90, 0.5, "3 Ready hollow nodes")
    assert sim.poll() is None, Path(log).read_text()[-2000:]
    assert sorted(n["metadata"]["name"] for n in nodes) == ["hollow-0", "hollow-1", "hollow-2"]
    for n in nodes:
        assert n["status"]["nodeInfo"]["containerRuntimeVersion"] == "fake://0.1.0"
        assert n["spec"]["podCIDR"]
    leases = wait_until(lambda: len(_get(srv, "leases", "-n", "kube-node-lease")["items"]) == 3
                        and _get(srv, "leases", "-n", "kube-node-lease")["items"], 30, 0.5, "3 node Leases")
    assert {lease["spec"]["holderIdentity"] for lease in leases} == {"hollow-0", "hollow-1", "hollow-2"}


def test_pods_are_scheduled_run_and_finish_on_hollow_nodes(cluster):
    srv, sim, log = cluster
    wait_until(lambda: len(_ready_nodes(srv)) == 3, 90, 0.5, "3 Ready hollow nodes")
    cidrs = {n["metadata"]["name"]: ipaddress.ip_network(n["spec"]["podCIDR"]) for n in _get(srv, "nodes")["items"]}
    srv.kubectl("apply", "-f", "-", input=DEPLOYMENT)
    srv.kubectl("run", "once", "--image=busybox", "--restart=Never", "--", "true")
    srv.kubectl("run", "fails", "--image=busybox", "--restart=Never", "--", "sh", "-c", "exit 3")
    srv.kubectl("rollout", "status", "deployment/web", "--timeout=90s", timeout=120)
    pods = _get(srv, "pods", "-l", "app=web")["items"]
    assert len(pods) == 6
    for p in pods:
        assert p["status"]["phase"] == "Running"
        node = p["spec"]["nodeName"]
        assert ipaddress.ip_address(p["status"]["podIP"]) in cidrs[node]
        cs = p["status"]["containerStatuses"][0]
        assert cs["ready"] and "running" in cs["state"] and cs["containerID"].startswith("fake://")
    assert len({p["spec"]["nodeName"] for p in pods}) == 3  # spread over the hollow nodes

    def phase(name: str) -> str:
        return _get(srv, "pod", name)["status"].get("phase", "")

    wait_until(lambda: phase("once") == "Succeeded", 60, 0.5, "pod once Succeeded")
    wait_until(lambda: phase("fails") == "Failed", 60, 0.5, "pod fails Failed")
    term = _get(srv, "pod", "fails")["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (3, "Error")
    # streaming needs a kubelet endpoint a hollow node has not got: refused, not faked
    out = srv.kubectl("logs", "deployment/web", check=False)
    assert out.returncode != 0
    srv.kubectl("delete", "deployment", "web", "--wait=true", timeout=90)
    srv.kubectl("delete", "pod", "once", "fails", "--wait=true", timeout=90)
    wait_until(lambda: not _get(srv, "pods")["items"], 60, 0.5, "pods gone")
    assert sim.poll() is None, Path(log).read_text()[-2000:]
