"""The service proxy (kube-proxy's iptables mode) end to end: `kubelite server` with its node,
two kuard pods behind a NodePort Service; the ClusterIP and the NodePort answer from the
node, requests spread over both pods, a pod failing readiness gets no traffic, and every
KUBE-* rule is gone when the server stops."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from tests.e2e.harness import wait_until
from tests.e2e.test_agent_support import KUARD, full_cluster, http_get, pod_manifest

pytestmark = pytest.mark.e2e
NODE = "kl-e2e-proxy"


def _kube_chains() -> set[str]:
    out = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    return {ln[1:].split()[0] for ln in out.splitlines() if ln.startswith(":KUBE-")}


def _kuard_endpoint_rules() -> int:
    """The KUBE-SVC jumps to endpoints of default/kuard."""
    out = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    return sum(1 for ln in out.splitlines() if ln.startswith("-A KUBE-SVC-") and '"default/kuard -> ' in ln)


def _hostname(url: str) -> str:
    _, body = http_get(url, timeout=2)
    m = re.search(r'id="hostname">([^<]*)<', body)
    return m.group(1) if m else ""


def _try_hostname(url: str) -> str:
    try:
        return _hostname(url)
    except OSError:
        return ""


def test_clusterip_and_nodeport_reach_the_ready_pods(tmp_path):
    if _kube_chains():
        pytest.skip("another service proxy's KUBE-* chains are on this host")
    probe = {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1, "failureThreshold": 1}
    with full_cluster(tmp_path / "data", NODE) as (server, _view):
        for name in ("kuard-a", "kuard-b"):
            m = pod_manifest(name, NODE, [{"name": "kuard", "image": KUARD, "readinessProbe": probe,
                                           "ports": [{"containerPort": 8080, "name": "http"}]}])
            m["metadata"]["labels"] = {"app": "kuard"}
            server.kubectl("create", "-f", "-", input=json.dumps(m))
        svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kuard"},
               "spec": {"type": "NodePort", "selector": {"app": "kuard"},
                        "ports": [{"port": 80, "targetPort": "http"}]}}
        server.kubectl("create", "-f", "-", input=json.dumps(svc))
        spec = json.loads(server.kubectl("get", "svc", "kuard", "-o", "json").stdout)["spec"]
        ip, node_port = spec["clusterIP"], spec["ports"][0]["nodePort"]
        node = json.loads(server.kubectl("get", "node", NODE, "-o", "json").stdout)
        node_ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")

        def ready_ips():
            items = json.loads(server.kubectl("get", "endpointslices", "-l", "kubernetes.io/service-name=kuard",
                                              "-o", "json").stdout)["items"]
            return sorted(a for s in items for e in s.get("endpoints") or [] if e["conditions"].get("ready")
                          for a in e["addresses"])

        wait_until(lambda: len(ready_ips()) == 2, 90, 0.2, "two ready endpoints")
        wait_until(lambda: _kuard_endpoint_rules() == 2, 5, 0.05, "rules for both endpoints")
        cluster_url = f"http://{ip}/"
        wait_until(lambda: _try_hostname(cluster_url), 10, 0.1, "the ClusterIP answering")
        seen = [_hostname(cluster_url) for _ in range(60)]
        assert set(seen) == {"kuard-a", "kuard-b"} and min(seen.count("kuard-a"), seen.count("kuard-b")) >= 10, seen
        assert _hostname(f"http://{node_ip}:{node_port}/") in ("kuard-a", "kuard-b")
        chains = _kube_chains()
        assert {"KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"} <= chains

        # kuard-a fails readiness: within a couple of seconds it gets no traffic
        pod_a = json.loads(server.kubectl("get", "pod", "kuard-a", "-o", "json").stdout)
        http_get(f"http://{pod_a['status']['podIP']}:8080/ready/api/fail?n=15")
        wait_until(lambda: len(ready_ips()) == 1, 10, 0.05, "kuard-a out of the slice")
        t0 = time.monotonic()
        wait_until(lambda: _kuard_endpoint_rules() == 1, 5, 0.05, "its rules gone")
        assert time.monotonic() - t0 < 2.0
        assert {_hostname(cluster_url) for _ in range(20)} == {"kuard-b"}
        server.kubectl("delete", "svc", "kuard")
        wait_until(lambda: "default/kuard" not in subprocess.run(["iptables-save", "-t", "nat"], capture_output=True,
                                                                 text=True).stdout, 10, 0.1, "the Service's rules gone")
    # the server (and its proxy) stopped: no rule is left
    assert not _kube_chains()
    out = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True).stdout
    assert "KUBE-" not in out
