"""kube-proxy on every node: the approval rule for a node's ``system:kube-proxy`` client
certificate request (:func:`kube_proxy_approval_error`, only that exact subject and usages, only
from a node the SubjectAccessReview lets renew its own client certificate), the agent's request
(the template the rule accepts, its store and kubeconfig), and the flags."""

from __future__ import annotations

import asyncio
import base64
import ipaddress

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from kubelite.controllers import csr as csrctl
from kubelite.kinds import certificates as certs
from tests.unit.test_node_certs import _Authz, _FakeAPI, _Store

NODE_USER = "system:node:n1"
NODE_GROUPS = ("system:nodes", "system:authenticated")
EC_USAGES = ("digital signature", "client auth")


def proxy_pem(attrs=((NameOID.COMMON_NAME, "system:kube-proxy"),), sans=(), key=None) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([x509.NameAttribute(o, v) for o, v in attrs]))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def proxy_csr(pem=None, usages=EC_USAGES, username=NODE_USER, groups=NODE_GROUPS,
              signer=certs.KUBE_APISERVER_CLIENT_SIGNER) -> dict:
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": "csr-proxy"},
            "spec": {"request": base64.b64encode(pem or proxy_pem()).decode(), "signerName": signer,
                     "usages": list(usages), "username": username, "groups": list(groups)}}


class _SubresourceAuthz(_Authz):
    """Allows ``create`` only on the named CSR subresources."""

    def __init__(self, allowed: set[str]) -> None:
        super().__init__(True)
        self.allowed = allowed

    async def authorize(self, a):
        self.asked.append((a.user.name, a.verb, a.subresource))
        return ("Allow" if a.subresource in self.allowed else "NoOpinion"), ""


def approver(allowed=frozenset({"selfnodeclient"})) -> csrctl.CSRApprover:
    a = csrctl.CSRApprover.__new__(csrctl.CSRApprover)
    a.authorizer, a.csrs, a.nodes = _SubresourceAuthz(set(allowed)), _Store(), _Store()
    return a


def test_a_nodes_kube_proxy_request_is_approved_after_a_subject_access_review():
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for obj in (proxy_csr(), proxy_csr(proxy_pem(key=rsa_key), ("digital signature", "key encipherment",
                                                                  "client auth"))):
        assert csrctl.kube_proxy_approval_error(obj) is None
        a = approver()
        asyncio.run(a.handle(obj))
        assert a.authorizer.asked == [(NODE_USER, "create", "selfnodeclient")]
        sub, new = a.csrs.updates[0]
        cond = new["status"]["conditions"][0]
        assert sub == "approval" and cond["type"] == "Approved" and cond["reason"] == "AutoApproved"
        assert cond["message"] == "Auto approving kube-proxy client certificate after SubjectAccessReview."


@pytest.mark.parametrize("obj,message", [
    # another subject by the same requester
    (proxy_csr(proxy_pem(((NameOID.COMMON_NAME, "system:kube-controller-manager"),))),
     'subject "CN=system:kube-controller-manager" is not exactly CN=system:kube-proxy'),
    (proxy_csr(proxy_pem(((NameOID.COMMON_NAME, "system:node:n2"),))), "is not exactly CN=system:kube-proxy"),
    # the right name with a group (any organization), or any other attribute
    (proxy_csr(proxy_pem(((NameOID.ORGANIZATION_NAME, "system:nodes"), (NameOID.COMMON_NAME, "system:kube-proxy")))),
     'subject "CN=system:kube-proxy,O=system:nodes" is not exactly CN=system:kube-proxy'),
    (proxy_csr(proxy_pem(((NameOID.COMMON_NAME, "system:kube-proxy"), (NameOID.COMMON_NAME, "system:kube-proxy")))),
     "is not exactly CN=system:kube-proxy"),
    (proxy_csr(proxy_pem(((NameOID.ORGANIZATIONAL_UNIT_NAME, "x"), (NameOID.COMMON_NAME, "system:kube-proxy")))),
     "is not exactly CN=system:kube-proxy"),
    (proxy_csr(proxy_pem(())), 'subject "" is not exactly CN=system:kube-proxy'),
    # names to serve under
    (proxy_csr(proxy_pem(sans=(x509.DNSName("kubernetes"),))), "subjectAltNames are not allowed"),
    (proxy_csr(proxy_pem(sans=(x509.IPAddress(ipaddress.ip_address("10.43.0.1")),))),
     "subjectAltNames are not allowed"),
    # usages beyond a client's
    (proxy_csr(usages=("digital signature", "client auth", "server auth")), "usages did not match"),
    (proxy_csr(usages=("client auth",)), "usages did not match"),
    # not a node: a bootstrap token, a user, a node name outside system:nodes
    (proxy_csr(username="system:bootstrap:abcdef", groups=("system:bootstrappers", "system:authenticated")),
     'not requested by a node identity: user "system:bootstrap:abcdef"'),
    (proxy_csr(username="alice", groups=("system:masters",)), 'not requested by a node identity: user "alice"'),
    (proxy_csr(username=NODE_USER, groups=("system:authenticated",)), "not requested by a node identity"),
])
def test_anything_else_stays_pending(obj, message):
    err = csrctl.kube_proxy_approval_error(obj)
    assert err is not None and message in err, err
    a = approver({"selfnodeclient", "nodeclient", ""})
    asyncio.run(a.handle(obj))
    assert a.csrs.updates == [] and a.authorizer.asked == []


def test_a_node_the_review_does_not_allow_stays_pending():
    a = approver(set())
    asyncio.run(a.handle(proxy_csr()))
    assert a.authorizer.asked == [(NODE_USER, "create", "selfnodeclient")] and a.csrs.updates == []


def test_other_signers_are_not_taken_for_kube_proxy_requests():
    # the same request for the kubelet's signer is not a kubelet client certificate either
    a = approver({"selfnodeclient", "nodeclient"})
    asyncio.run(a.handle(proxy_csr(signer=certs.KUBE_APISERVER_CLIENT_KUBELET_SIGNER)))
    assert a.csrs.updates == []


def test_the_agents_request_is_what_the_rule_approves(tmp_path):
    from kubelite.agent import certmanager as cm
    from kubelite.agent.kubeproxy import PAIR_NAME, kube_proxy_template

    api = _FakeAPI()
    store = cm.FileStore(PAIR_NAME, tmp_path / "pki")
    seen: list = []
    m = cm.CertificateManager(api, "kube-proxy client", cm.KUBE_APISERVER_CLIENT_SIGNER, store,
                              kube_proxy_template, seen.append, server=False)
    assert asyncio.run(m.rotate()) is True
    body = api.bodies[0]
    assert body["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client"
    obj = {**body, "spec": {**body["spec"], "username": NODE_USER, "groups": list(NODE_GROUPS)}}
    assert csrctl.kube_proxy_approval_error(obj) is None
    leaf = seen[0].leaf
    assert leaf.subject.rfc4514_string() == "CN=system:kube-proxy"
    assert (tmp_path / "pki" / "kube-proxy-client-current.pem").is_symlink()
    assert cm.usable(store.current(), kube_proxy_template()) is not None
    # a node's client certificate is not a kube-proxy one, nor the other way round
    assert kube_proxy_template().satisfied_by(leaf) and not cm.client_template("n1").satisfied_by(leaf)

    # the kubeconfig names the current pair's file (rotations need no new kubeconfig), mode 0600
    kc = tmp_path / "kubeproxy.kubeconfig"
    store.write_kubeconfig(kc, "https://198.19.0.1:6443", api.ca.public_bytes(serialization.Encoding.PEM),
                           "system:kube-proxy")
    cfg = yaml.safe_load(kc.read_text())
    user = cfg["users"][0]["user"]
    assert user == {"client-certificate": str(tmp_path / "pki" / "kube-proxy-client-current.pem"),
                    "client-key": str(tmp_path / "pki" / "kube-proxy-client-current.pem")}
    assert cfg["clusters"][0]["cluster"]["server"] == "https://198.19.0.1:6443"
    assert kc.stat().st_mode & 0o777 == 0o600


def test_disable_kube_proxy_flags():
    from kubelite.cli.main import build_parser

    p = build_parser()
    assert p.parse_args(["agent"]).disable_kube_proxy is False
    assert p.parse_args(["agent", "--disable-kube-proxy"]).disable_kube_proxy is True
    assert p.parse_args(["server"]).disable_kube_proxy is False
    assert p.parse_args(["server", "--disable-kube-proxy"]).disable_kube_proxy is True


def test_node_proxy_waits_for_its_certificate_then_runs_the_proxier_with_it(tmp_path, monkeypatch):
    """NodeProxy: no proxier before the certificate; then one whose client presents it, from the
    kubeconfig it wrote; a rotation is handed to that client; cancelling stops the proxier."""
    from kubelite.agent import kubeproxy
    from kubelite.proxy import iptables
    from kubelite.tls.pki import write_kubeconfig

    api = _FakeAPI()
    ca_pem = api.ca.public_bytes(serialization.Encoding.PEM)
    node_kc = tmp_path / "kubeconfig.yaml"
    node_key = ec.generate_private_key(ec.SECP256R1())
    node_pem = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, NODE_USER)])).sign(node_key, hashes.SHA256())
    import datetime as dt

    node_cert = csrctl.sign(api.ca, api.key, node_pem, list(EC_USAGES), dt.timedelta(hours=1))
    write_kubeconfig(node_kc, "https://127.0.0.1:1", ca_pem, node_cert, node_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), NODE_USER)
    started: list = []
    stopped: list = []

    class FakeProxier:
        def __init__(self, client):
            self.client = client
            started.append(self)

        async def run(self):
            try:
                await asyncio.Event().wait()
            finally:
                stopped.append(self)

    monkeypatch.setattr(iptables, "Proxier", FakeProxier)
    swapped: list = []

    async def main():
        np = kubeproxy.NodeProxy(api, node_kc, tmp_path / "pki", tmp_path / "kubeproxy.kubeconfig", "n1")
        task = asyncio.create_task(np.run())
        for _ in range(200):
            if started:
                break
            await asyncio.sleep(0.02)
        assert len(started) == 1 and len(api.bodies) == 1
        client = started[0].client
        orig = client.use_client_certificate
        client.use_client_certificate = lambda c, k: (swapped.append(c), orig(c, k))
        assert await np.certs.rotate() is True  # a renewal reaches the running proxy's client
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert stopped == started and len(swapped) == 1
    cur = x509.load_pem_x509_certificate(swapped[0])
    assert cur.subject.rfc4514_string() == "CN=system:kube-proxy"
    cfg = yaml.safe_load((tmp_path / "kubeproxy.kubeconfig").read_text())
    assert cfg["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:1"
    assert cfg["users"][0]["name"] == "system:kube-proxy"
