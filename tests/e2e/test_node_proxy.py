"""kube-proxy on every node: on a 3-node dev cluster (each node a joined `kubelite agent` in a test
host of its own, no CA key), every agent gets a system:kube-proxy certificate through a CSR the
server approves for nodes only, and programs the Service rules in its own network namespace
(none in the host's). A client pod on node 2 reaches a Service by its ClusterIP whose pods run
on nodes 1 and 3 (300 requests, both answer), and the `kubernetes` Service; a CSR for another
subject by the same node stays pending; stopping node 2's agent removes its rules there; and
`down` leaves the host as it was."""

from __future__ import annotations

import base64
import json
import signal
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubelite.devcluster.testhost import Proc
from tests.e2e.harness import KUBECTL, free_port, wait_until
from tests.e2e.test_devcluster import before, host_state, iptables, kubectl_for, kubelite

__all__ = ["before"]  # the fixture
pytestmark = pytest.mark.e2e
NAME = "klnp"
SUBNET = "198.19.243.0/24"  # not the default one, nor another e2e test's
NODES = [f"{NAME}-{i}" for i in (1, 2, 3)]
BUSYBOX = "kubelite.local/busybox:latest"
WEB = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"  # answers its pod's name
PROXY_APPROVED = "Auto approving kube-proxy client certificate after SubjectAccessReview."
REQUESTS = 300
HTTP = {"tcpSocket": {"port": 8080}}


def node_iptables(data: Path, node: str) -> list[str]:
    """iptables-save (every table) inside a node's network namespace."""
    out = kubelite("dev", "cluster", "exec", "--data-dir", str(data), node, "--", "iptables-save")
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def endpoint_rules(rules: list[str], service: str) -> int:
    return sum(1 for ln in rules if ln.startswith("-A KUBE-SVC-") and f'"{service} -> ' in ln)


def pod(name: str, node: str, command: str, labels: dict | None = None, probe: dict | None = None,
        kubectl: bool = False) -> str:
    """A busybox pod; with ``kubectl`` the real (static) kubectl binary at /kubectl, an in-cluster client."""
    container: dict = {"name": "c", "image": BUSYBOX, "imagePullPolicy": "Never", "command": ["sh", "-c", command],
                       "readinessProbe": {**(probe or {"exec": {"command": ["true"]}}), "periodSeconds": 1}}
    spec: dict = {"nodeName": node, "terminationGracePeriodSeconds": 0, "containers": [container]}
    if kubectl:
        container["volumeMounts"] = [{"name": "kubectl", "mountPath": "/kubectl", "readOnly": True}]
        spec["volumes"] = [{"name": "kubectl", "hostPath": {"path": str(Path(KUBECTL).resolve()), "type": "File"}}]
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
                       "spec": spec})


def client_csr(name: str, cn: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    req = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    pem = req.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    return json.dumps({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                       "metadata": {"name": name},
                       "spec": {"request": base64.b64encode(pem).decode(), "usages": ["digital signature", "client auth"],
                                "signerName": "kubernetes.io/kube-apiserver-client"}})


def test_every_node_runs_kube_proxy(tmp_path, before):
    data = tmp_path / "dev"
    kc = tmp_path / "kc.yaml"
    kubectl = kubectl_for(kc, tmp_path)
    up = kubelite("dev", "cluster", "up", "--nodes", "3", "--data-dir", str(data), "--kubeconfig", str(kc),
                  "--name", NAME, "--subnet", SUBNET, "--port", str(free_port()))
    try:
        assert up.returncode == 0, up.stdout + up.stderr

        # each agent's certificate: asked for by the node itself, approved by the rule for nodes
        def proxy_csrs() -> dict[str, dict]:
            items = json.loads(kubectl("get", "csr", "-o", "json").stdout)["items"]
            return {c["spec"]["username"]: c for c in items
                    if c["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client"
                    and (c.get("status") or {}).get("certificate")}

        csrs = wait_until(lambda: (got := proxy_csrs()) and len(got) == 3 and got, 60, 0.5,
                          "a kube-proxy certificate for every node")
        assert sorted(csrs) == [f"system:node:{n}" for n in NODES]
        for c in csrs.values():
            cond = c["status"]["conditions"][0]
            assert (cond["type"], cond["reason"], cond["message"]) == ("Approved", "AutoApproved", PROXY_APPROVED)
            assert c["spec"]["usages"] == ["digital signature", "client auth"]
        for n in NODES:
            pki = data / "nodes" / n / "pki"
            cert = x509.load_pem_x509_certificate((pki / "kube-proxy-client-current.pem").read_bytes())
            assert cert.subject.rfc4514_string() == "CN=system:kube-proxy"
            assert (pki / "kube-proxy-client-current.pem").resolve().stat().st_mode & 0o777 == 0o600
            assert (data / "nodes" / n / "kubeproxy.kubeconfig").stat().st_mode & 0o777 == 0o600

        # the rules are in each node's network namespace, none in the host's
        for n in NODES:
            wait_until(lambda n=n: endpoint_rules(node_iptables(data, n), "default/kubernetes:https") == 1, 30, 0.3,
                       f"the kubernetes Service's rules on {n}")
        assert [ln for ln in iptables() if "KUBE-" in ln] == [ln for ln in before["iptables"] if "KUBE-" in ln]

        # a Service whose pods run on nodes 1 and 3, a client on node 2
        labels = {"app": "np-web"}
        kubectl("apply", "-f", "-", input=pod("web-1", NODES[0], WEB, labels, HTTP))
        kubectl("apply", "-f", "-", input=pod("web-3", NODES[2], WEB, labels, HTTP))
        kubectl("apply", "-f", "-", input=pod("client", NODES[1], "exec sleep 3600", kubectl=True))
        kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "np-web"},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}}))
        ip = json.loads(kubectl("get", "svc", "np-web", "-o", "json").stdout)["spec"]["clusterIP"]

        def ready(name: str) -> bool:
            p = json.loads(kubectl("get", "pod", name, "-o", "json").stdout)
            return any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))

        wait_until(lambda: all(ready(p) for p in ("web-1", "web-3", "client")), 90, 0.3, "the pods Ready")
        wait_until(lambda: endpoint_rules(node_iptables(data, NODES[1]), "default/np-web") == 2, 30, 0.3,
                   "both endpoints in node 2's rules")
        t0 = time.monotonic()
        out = kubectl("exec", "client", "--", "sh", "-c",
                      f"i=0; while [ $i -lt {REQUESTS} ]; do wget -q -O - http://{ip}/ || echo FAILED; "
                      "i=$((i+1)); done").stdout.split()
        took = time.monotonic() - t0
        counts = {name: out.count(name) for name in set(out)}
        print(f"{REQUESTS} requests from node 2 to {ip} in {took:.1f}s: {counts}")
        assert len(out) == REQUESTS and set(counts) == {"web-1", "web-3"}, counts
        assert min(counts.values()) >= REQUESTS // 4, counts  # random 1/2 each: 150 ± 9

        # the kubernetes Service from a joined node's pod: kubectl's in-cluster config (KUBERNETES_SERVICE_HOST,
        # the service account's token and CA, the server's certificate naming the Service's IP) reaches the API
        kip = json.loads(kubectl("get", "svc", "kubernetes", "-o", "json").stdout)["spec"]["clusterIP"]
        env = kubectl("exec", "client", "--", "sh", "-c", "echo $KUBERNETES_SERVICE_HOST").stdout.strip()
        assert env == kip
        version = kubectl("exec", "client", "--", "/kubectl", "get", "--raw", "/version").stdout
        assert json.loads(version) == json.loads(kubectl("get", "--raw", "/version").stdout)
        who = json.loads(kubectl("exec", "client", "--", "/kubectl", "auth", "whoami", "-o", "json").stdout)
        assert who["status"]["userInfo"]["username"] == "system:serviceaccount:default:default"

        # as node 2 itself: a CSR for another subject stays pending; its kube-proxy request does not
        node_kc = data / "nodes" / NODES[1] / "kubeconfig.yaml"
        as_node = kubectl_for(node_kc, tmp_path)
        as_node("create", "-f", "-", input=client_csr("np-other-subject", "system:kube-controller-manager"))
        as_node("create", "-f", "-", input=client_csr("np-proxy-again", "system:kube-proxy"))
        wait_until(lambda: (json.loads(kubectl("get", "csr", "np-proxy-again", "-o", "json").stdout).get("status")
                            or {}).get("certificate"), 30, 0.2, "the node's kube-proxy request issued")
        other = json.loads(kubectl("get", "csr", "np-other-subject", "-o", "json").stdout)
        assert other["spec"]["username"] == f"system:node:{NODES[1]}"
        assert not (other.get("status") or {}).get("conditions")
        assert kubectl("get", "csr", "np-other-subject").stdout.split()[-1] == "Pending"

        # node 2's agent stops: its rules go from its namespace; the others keep theirs
        host = next(h for h in json.loads((data / "state.json").read_text())["hosts"] if h["name"] == NODES[1])
        agent = Proc.from_json(host["procs"]["agent"])
        assert agent.signal(signal.SIGTERM)
        assert agent.wait_gone(60), "node 2's agent did not stop"
        assert [ln for ln in node_iptables(data, NODES[1]) if "KUBE-" in ln] == []
        assert endpoint_rules(node_iptables(data, NODES[0]), "default/np-web") == 2
        # still pending, long after
        other = json.loads(kubectl("get", "csr", "np-other-subject", "-o", "json").stdout)
        assert not (other.get("status") or {}).get("conditions")
    finally:
        down = kubelite("dev", "cluster", "down", "--data-dir", str(data))
    assert down.returncode == 0, down.stdout + down.stderr
    after = host_state()
    for what in before:
        assert after[what] == before[what], what
