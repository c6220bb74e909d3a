"""Every node a full node: on a 3-node dev cluster, whose nodes hold no CA key, each agent gets
its serving certificate through a kubelet-serving CSR, so `kubectl logs -f`, `exec -i`, `cp`
and `port-forward` work for a pod on each node; with `--cluster-signing-duration 2m` the
agents renew their serving, client and kube-proxy certificates (new serials, live, same process;
the proxy still programs a new Service's rules) and an exec session opened before survives them; a CSR naming an address that is not the node's
stays pending."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import select
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.harness import KUBECTL, ROOT, free_port, wait_until

NAME = "klcert"
SUBNET = "198.19.246.0/24"  # not the default one, nor test_devcluster's
NODES = [f"{NAME}-{i}" for i in (1, 2, 3)]
BUSYBOX = "kubelite.local/busybox:latest"
# a line a second for `logs -f`, and a web server naming its node for port-forward
POD_CMD = ("mkdir -p /www && echo \"on $NODE\" > /www/index.html && "
           "(i=0; while true; do echo \"tick $i\"; i=$((i+1)); sleep 0.3; done) & exec httpd -f -p 8080 -h /www")
SIGNING = "2m"


def kubelite(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubelite", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


def node_ip(i: int) -> str:
    return str(ipaddress.ip_network(SUBNET).network_address + 1 + i)


def readline(proc: subprocess.Popen, timeout: float) -> str:
    """One line of a child's stdout within ``timeout`` seconds (no bare sleeps)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"no output within {timeout}s")
    return proc.stdout.readline()


def serving_serial(ctx: ssl.SSLContext, ip: str) -> int | None:
    """The serial of the certificate a node's endpoint presents now (None: no handshake)."""
    try:
        with socket.create_connection((ip, 10250), timeout=3) as raw, ctx.wrap_socket(raw, server_hostname=ip) as s:
            return int(s.getpeercert()["serialNumber"], 16)
    except (OSError, ssl.SSLError):
        return None


def client_serial(data: Path, node: str) -> int:
    pem = (data / "nodes" / node / "pki" / "kubelet-client-current.pem").read_bytes()
    return x509.load_pem_x509_certificate(pem).serial_number


def proxy_serial(data: Path, node: str) -> int | None:
    """The serial of the node's kube-proxy certificate (None: none yet)."""
    try:
        pem = (data / "nodes" / node / "pki" / "kube-proxy-client-current.pem").read_bytes()
    except FileNotFoundError:
        return None
    return x509.load_pem_x509_certificate(pem).serial_number


def csr_manifest(name: str, node: str, ips: list[str]) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}")])
    sans = x509.SubjectAlternativeName([x509.DNSName(node), *(x509.IPAddress(ipaddress.ip_address(i)) for i in ips)])
    req = x509.CertificateSigningRequestBuilder().subject_name(subject).add_extension(sans, critical=False)
    pem = req.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    return json.dumps({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                       "metadata": {"name": name},
                       "spec": {"request": base64.b64encode(pem).decode(), "signerName": "kubernetes.io/kubelet-serving",
                                "usages": ["digital signature", "server auth"]}})


def no_ca_key_under(top: Path, ca_key: bytes) -> list[str]:
    """Files under ``top`` (not containerd's content) named ca.key or holding the CA key."""
    found = []
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if d != "containerd"]
        for f in files:
            p = Path(root) / f
            if f == "ca.key":
                found.append(str(p))
            elif p.is_file() and not p.is_symlink() and p.stat().st_size < 1 << 20 and ca_key in p.read_bytes():
                found.append(str(p))
    return found


def test_every_node_serves_streams_and_renews_its_certificates(tmp_path):
    data = tmp_path / "dev"
    kc = tmp_path / "kc.yaml"
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}

    def kubectl(*args: str, check: bool = True, input: str | None = None, kubeconfig: Path = kc,
                timeout: float = 60) -> subprocess.CompletedProcess:
        p = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True,
                           timeout=timeout, input=input, env=env)
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {p.stderr}")
        return p

    def popen(*args: str) -> subprocess.Popen:
        return subprocess.Popen([KUBECTL, "--kubeconfig", str(kc), *args], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    started = time.monotonic()
    up = kubelite("dev", "cluster", "up", "--nodes", "3", "--data-dir", str(data), "--kubeconfig", str(kc),
                  "--name", NAME, "--subnet", SUBNET, "--port", str(free_port()), "--cluster-signing-duration", SIGNING)
    children: list[subprocess.Popen] = []
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        up_seconds = time.monotonic() - started
        from kubelite.tls import pki as pki_mod

        server_pki = pki_mod.load_pki(data / "server")
        tls = pki_mod.kubelet_client_ssl_context(server_pki)  # what the API server presents to agents
        state = json.loads((data / "state.json").read_text())
        agent_pids = {h["name"]: h["procs"]["agent"][0] for h in state["hosts"]}

        # no node holds the CA key: each has its own pairs, from CSRs
        assert no_ca_key_under(data / "nodes", server_pki.ca_key.read_bytes()) == []
        first = {}
        for i, n in enumerate(NODES, 1):
            # `up` waited for the serving certificates too: every endpoint answers at once
            serial = serving_serial(tls, node_ip(i))
            assert serial is not None, n
            pki = data / "nodes" / n / "pki"
            assert (pki / "kubelet-client-current.pem").is_symlink() and (pki / "kubelet-server-current.pem").is_symlink()
            assert (pki / "kubelet-server-current.pem").stat().st_mode & 0o777 == 0o600
            srv = x509.load_pem_x509_certificate((pki / "kubelet-server-current.pem").read_bytes())
            assert srv.subject.rfc4514_string() == f"CN=system:node:{n},O=system:nodes"
            san = srv.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert san.get_values_for_type(x509.DNSName) == [n]
            assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == [node_ip(i)]
            first[n] = (serial, client_serial(data, n))
        csrs = json.loads(kubectl("get", "csr", "-o", "json").stdout)["items"]
        serving = {c["spec"]["username"] for c in csrs if c["spec"]["signerName"] == "kubernetes.io/kubelet-serving"
                   and c["status"]["conditions"][0]["message"] ==
                   "Auto approving kubelet serving certificate after SubjectAccessReview."}
        assert serving == {f"system:node:{n}" for n in NODES}

        # a pod on each node; logs -f, exec -i, cp and port-forward through that node's agent
        for n in NODES:
            kubectl("apply", "-f", "-", input=json.dumps({
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p-{n}"},
                "spec": {"nodeName": n, "terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "c", "image": BUSYBOX, "imagePullPolicy": "Never",
                                         "command": ["sh", "-c", POD_CMD], "env": [{"name": "NODE", "value": n}],
                                         "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}}))
        kubectl("wait", "--for=condition=Ready", *(f"pod/p-{n}" for n in NODES), "--timeout=120s", timeout=130)
        payload = tmp_path / "payload.bin"
        payload.write_bytes(os.urandom(100_000))
        sessions = {}
        for n in NODES:
            pod = f"p-{n}"
            follow = popen("logs", "-f", pod)
            children.append(follow)
            ticks = [readline(follow, 15) for _ in range(3)]
            assert all(t.startswith("tick ") for t in ticks), ticks
            follow.terminate()
            follow.wait(10)
            out = kubectl("exec", "-i", pod, "--", "sh", "-c", "cat; echo \" from $(hostname)\"", input="hello")
            assert out.stdout == f"hello from {pod}\n"
            kubectl("cp", str(payload), f"{pod}:/tmp/payload")
            back = tmp_path / f"back-{n}"
            kubectl("cp", f"{pod}:/tmp/payload", str(back))
            assert back.read_bytes() == payload.read_bytes()
            pf = popen("port-forward", f"pod/{pod}", ":8080")
            children.append(pf)
            line = readline(pf, 15)
            assert line.startswith("Forwarding from 127.0.0.1:"), line
            port = int(line.split("127.0.0.1:")[1].split()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
                assert r.read().decode() == f"on {n}\n"
            pf.terminate()
            pf.wait(10)
            # an exec session that stays open across the rotations below
            s = popen("exec", "-i", pod, "--", "sh", "-c", "while read l; do echo \"got $l\"; done")
            children.append(s)
            assert s.stdin is not None
            s.stdin.write("before\n")
            s.stdin.flush()
            assert readline(s, 15) == "got before\n"
            sessions[n] = s

        # a serving CSR as node 1 for an address that is not its own stays pending; its own are approved
        node_kc = data / "nodes" / NODES[0] / "kubeconfig.yaml"
        kubectl("create", "-f", "-", input=csr_manifest("e2e-foreign-san", NODES[0],
                                                         [node_ip(1), str(ipaddress.ip_network(SUBNET)[99])]),
                kubeconfig=node_kc)
        kubectl("create", "-f", "-", input=csr_manifest("e2e-own-san", NODES[0], [node_ip(1)]), kubeconfig=node_kc)

        def condition(name: str) -> str:
            return kubectl("get", "csr", name, "--no-headers").stdout.split()[-1]

        wait_until(lambda: condition("e2e-own-san") == "Approved,Issued", 20, 0.2, "own-address CSR issued")
        assert condition("e2e-foreign-san") == "Pending"  # looked at before the later one (one queue)
        # a user may still approve it: then it is signed as asked
        kubectl("certificate", "approve", "e2e-foreign-san")
        wait_until(lambda: condition("e2e-foreign-san") == "Approved,Issued", 20, 0.2, "approved CSR issued")
        approved = json.loads(kubectl("get", "csr", "e2e-foreign-san", "-o", "json").stdout)["status"]["conditions"]
        assert [(c["type"], c["reason"]) for c in approved] == [("Approved", "KubectlApprove")]
        kubectl("delete", "csr", "e2e-foreign-san", "e2e-own-san")

        # --cluster-signing-duration 2m: each agent renews both certificates at 70-90 % of their
        # life (backdated 5 minutes: within 78 s of being issued), in the same process
        def rotated() -> bool:
            return all(serving_serial(tls, node_ip(i)) not in (None, first[n][0]) and client_serial(data, n) != first[n][1]
                       for i, n in enumerate(NODES, 1))

        proxy_first = {n: wait_until(lambda n=n: proxy_serial(data, n), 30, 0.3, f"kube-proxy certificate of {n}")
                       for n in NODES}
        wait_until(rotated, 120, 0.5, "serving and client certificates renewed on every node")
        # and the kube-proxy's, which keeps programming rules with it
        wait_until(lambda: all(proxy_serial(data, n) != proxy_first[n] for n in NODES), 120, 0.5,
                   "kube-proxy certificates renewed on every node")
        rotated_at = time.monotonic() - started
        kubectl("create", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "after-rotation"},
            "spec": {"ports": [{"port": 80}]}}))
        kubectl("create", "-f", "-", input=json.dumps({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": "after-rotation-1", "labels": {"kubernetes.io/service-name": "after-rotation"}},
            "ports": [{"port": 80, "protocol": "TCP", "name": ""}],
            "endpoints": [{"addresses": [node_ip(1)], "conditions": {"ready": True}}]}))
        for n in NODES:
            def programmed(n: str = n) -> bool:
                out = kubelite("dev", "cluster", "exec", "--data-dir", str(data), n, "--", "iptables-save", "-t", "nat")
                return f'"default/after-rotation -> {node_ip(1)}:80"' in out.stdout
            wait_until(programmed, 30, 0.3, f"the new Service's rules on {n}")
        for n in NODES:
            assert Path(f"/proc/{agent_pids[n]}").exists()
            # the open session still works, and so does a new one (with the renewed certificates)
            s = sessions[n]
            assert s.stdin is not None
            s.stdin.write("after\n")
            s.stdin.flush()
            assert readline(s, 15) == "got after\n"
            s.stdin.close()
            assert s.wait(15) == 0
            assert kubectl("exec", f"p-{n}", "--", "hostname").stdout == f"p-{n}\n"
        nodes = json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"]
        assert all(any(c["type"] == "Ready" and c["status"] == "True" for c in nd["status"]["conditions"])
                   for nd in nodes)
        print(f"dev cluster up in {up_seconds:.1f}s; every certificate renewed {rotated_at:.1f}s after the start")
    finally:
        for p in children:
            if p.poll() is None:
                p.kill()
                p.wait()
        down = kubelite("dev", "cluster", "down", "--data-dir", str(data))
    assert down.returncode == 0, down.stdout + down.stderr
    assert not data.exists()


@pytest.fixture(autouse=True)
def _root_only():
    if os.geteuid() != 0:
        pytest.skip("test hosts need root")
