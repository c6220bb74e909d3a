"""Node serving certificates: the kubelet-serving shape rules (ValidateKubeletServingCSR), the
automatic approval (:func:`serving_approval_error`: the node itself, for its own addresses),
the signer, and the agent's certificate manager (rotation deadline, store, CSR template)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubelite.controllers import csr as csrctl
from kubelite.kinds import certificates as certs

NODE = "n1"
USER = f"system:node:{NODE}"
IP = "198.19.0.2"
SERVING_EC = ("digital signature", "server auth")
SERVING_RSA = ("digital signature", "key encipherment", "server auth")


def csr_pem(cn=USER, orgs=("system:nodes",), dns=(NODE,), ips=(IP,), emails=(), uris=(), key=None) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    if cn:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    names += [x509.RFC822Name(e) for e in emails]
    names += [x509.UniformResourceIdentifier(u) for u in uris]
    if names:
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def csr_obj(pem=None, usages=SERVING_EC, username=USER, groups=("system:nodes", "system:authenticated"),
            signer=certs.KUBELET_SERVING_SIGNER) -> dict:
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": "csr-abcde"},
            "spec": {"request": base64.b64encode(pem or csr_pem()).decode(), "signerName": signer,
                     "usages": list(usages), "username": username, "groups": list(groups)}}


def node(name=NODE, addresses=(("InternalIP", IP), ("Hostname", NODE))) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"addresses": [{"type": t, "address": a} for t, a in addresses]}}


def shape(pem: bytes, usages=SERVING_EC) -> str | None:
    return csrctl.validate_kubelet_serving_csr(certs.parse_csr(pem), set(usages))


# --------------------------------------------------------------------------- ValidateKubeletServingCSR


def test_serving_shape_accepts_the_kubelets_request():
    assert shape(csr_pem()) is None
    assert shape(csr_pem(dns=())) is None  # an IP alone is enough
    assert shape(csr_pem(ips=())) is None  # so is a DNS name (AllowDNSOnlyNodeCSR is the kubelet's concern)
    # key encipherment is for RSA keys; the validation accepts either set
    assert shape(csr_pem(key=rsa.generate_private_key(public_exponent=65537, key_size=2048)), SERVING_RSA) is None


@pytest.mark.parametrize("kwargs,usages,message", [
    ({"orgs": ()}, SERVING_EC, "subject organization is not system:nodes"),
    ({"orgs": ("system:nodes", "x")}, SERVING_EC, "subject organization is not system:nodes"),
    ({"orgs": ("system:masters",)}, SERVING_EC, "subject organization is not system:nodes"),
    ({"dns": (), "ips": ()}, SERVING_EC, "DNS or IP subjectAltName is required"),
    ({"emails": ("a@example.com",)}, SERVING_EC, "Email subjectAltNames are not allowed"),
    ({"uris": ("spiffe://cluster/ns/x",)}, SERVING_EC, "URI subjectAltNames are not allowed"),
    ({}, ("digital signature", "server auth", "client auth"),
     "usages did not match [digital signature key encipherment server auth]"),
    ({}, ("server auth",), "usages did not match [digital signature key encipherment server auth]"),
    ({}, ("digital signature", "client auth"), "usages did not match [digital signature key encipherment server auth]"),
    ({"cn": "n1"}, SERVING_EC, "subject common name does not begin with system:node:"),
    # the checks run in upstream's order: organization first, common name last
    ({"cn": "n1", "orgs": ()}, SERVING_EC, "subject organization is not system:nodes"),
])
def test_serving_shape_refusals(kwargs, usages, message):
    assert shape(csr_pem(**kwargs), usages) == message


# --------------------------------------------------------------------------- approval


def test_approval_for_the_node_itself_and_its_addresses():
    assert csrctl.serving_approval_error(csr_obj(), node()) is None
    # a subset of the addresses is fine; IP spellings are compared as addresses
    assert csrctl.serving_approval_error(csr_obj(csr_pem(dns=())), node()) is None
    assert csrctl.serving_approval_error(csr_obj(csr_pem(ips=("2001:db8::1",))),
                                         node(addresses=(("InternalIP", "2001:0db8:0:0:0:0:0:1"),
                                                         ("Hostname", NODE)))) is None


def test_approval_refuses_a_san_that_is_not_the_nodes():
    err = csrctl.serving_approval_error(csr_obj(csr_pem(ips=(IP, "198.19.0.99"))), node())
    assert err == f'IPAddresses[1]: forbidden: "198.19.0.99": is not a node address of {NODE}'
    err = csrctl.serving_approval_error(csr_obj(csr_pem(dns=(NODE, "kubernetes.default"))), node())
    assert err == f'DNSNames[1]: forbidden: "kubernetes.default": is not a node address of {NODE}'
    # the Node's addresses, not another node's
    other = node(addresses=(("InternalIP", "198.19.0.3"), ("Hostname", "n2")))
    assert "is not a node address of n1" in (csrctl.serving_approval_error(csr_obj(), other) or "")


def test_approval_needs_the_node_identity():
    groups = '["system:authenticated"]'
    assert csrctl.serving_approval_error(csr_obj(groups=("system:authenticated",)), node()) == \
        f'not requested by a node identity: user "{USER}" in group(s) {groups}'
    assert csrctl.serving_approval_error(csr_obj(username="alice"), node()) == \
        'not requested by a node identity: user "alice" in group(s) ["system:nodes" "system:authenticated"]'
    # another node asking for n1's certificate
    assert csrctl.serving_approval_error(csr_obj(username="system:node:n2"), node("n2")) == \
        f'requested subject\'s common name "{USER}" doesn\'t match requesting user name "system:node:n2"'
    # no Node (yet): nothing to compare the SANs with
    assert csrctl.serving_approval_error(csr_obj(), None) == f'nodes "{NODE}" not found'


def test_approval_needs_the_serving_shape():
    assert csrctl.serving_approval_error(csr_obj(usages=("digital signature", "client auth")), node()) == \
        "usages did not match [digital signature key encipherment server auth]"
    assert csrctl.serving_approval_error(csr_obj(csr_pem(emails=("a@b.c",))), node()) == \
        "Email subjectAltNames are not allowed"


class _Authz:
    def __init__(self, allow: bool) -> None:
        self.allow = allow
        self.asked: list[tuple[str, str, str]] = []

    async def authorize(self, a):
        self.asked.append((a.user.name, a.verb, a.subresource))
        return ("Allow" if self.allow else "NoOpinion"), ""


class _Store:
    def __init__(self, objs=()) -> None:
        self.objs = {o["metadata"]["name"]: o for o in objs}
        self.updates: list[tuple[str, dict]] = []

    async def get(self, ns, name):
        from kubelite.api import errors

        if name not in self.objs:
            raise errors.not_found("nodes", name)
        return self.objs[name]

    async def update(self, ns, name, obj, opts, sub=""):
        self.updates.append((sub, obj))
        return obj, False


def approver(allow: bool, nodes=(node(),)) -> csrctl.CSRApprover:
    a = csrctl.CSRApprover.__new__(csrctl.CSRApprover)
    a.authorizer, a.csrs, a.nodes = _Authz(allow), _Store(), _Store(nodes)
    return a


def test_approver_approves_a_good_serving_request_after_a_subject_access_review():
    a = approver(True)
    asyncio.run(a.handle(csr_obj()))
    assert a.authorizer.asked == [(USER, "create", "")]
    sub, obj = a.csrs.updates[0]
    cond = obj["status"]["conditions"][0]
    assert sub == "approval" and cond["type"] == "Approved" and cond["reason"] == "AutoApproved"
    assert cond["message"] == "Auto approving kubelet serving certificate after SubjectAccessReview."


@pytest.mark.parametrize("obj,allow,nodes", [
    (csr_obj(csr_pem(ips=("10.0.0.1",))), True, (node(),)),  # not the node's address
    (csr_obj(), True, ()),  # no such Node
    (csr_obj(), False, (node(),)),  # the requestor may not create CSRs
    (csr_obj(username="system:node:n2"), True, (node(), node("n2"))),  # someone else's name
])
def test_approver_leaves_the_others_pending(obj, allow, nodes):
    a = approver(allow, nodes)
    asyncio.run(a.handle(obj))
    assert a.csrs.updates == []


# --------------------------------------------------------------------------- signing


def _ca():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def test_signer_recognizes_kubelet_serving():
    req = certs.parse_csr(csr_pem())
    assert csrctl.signer_check(certs.KUBELET_SERVING_SIGNER, req, list(SERVING_EC)) == (True, None)
    assert csrctl.signer_check(certs.KUBELET_SERVING_SIGNER, req, ["client auth", "digital signature"]) == \
        (True, "usages did not match [digital signature key encipherment server auth]")
    ca, key = _ca()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    cert = x509.load_pem_x509_certificate(csrctl.sign(ca, key, req, list(SERVING_EC), dt.timedelta(minutes=2), now))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [NODE]
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == [IP]
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH])
    # --cluster-signing-duration 2m: valid from 5 minutes back until 2 minutes on
    assert cert.not_valid_before_utc == now - dt.timedelta(minutes=5)
    assert cert.not_valid_after_utc == now + dt.timedelta(minutes=2)


def test_cluster_signing_duration_flag():
    from kubelite.cli.main import build_parser

    p = build_parser()
    assert p.parse_args(["server"]).cluster_signing_duration == 8760 * 3600
    assert p.parse_args(["server", "--cluster-signing-duration", "2m30s"]).cluster_signing_duration == 150
    with pytest.raises(SystemExit):
        p.parse_args(["server", "--cluster-signing-duration", "soon"])
