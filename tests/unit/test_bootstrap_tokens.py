"""Bootstrap tokens, the CSR kind's strategy, the CSR approver/signer helpers and join discovery."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubelite.agent import bootstrap as join
from kubelite.api import errors
from kubelite.apiserver.auth import UserInfo
from kubelite.auth import bootstrap_tokens as bt
from kubelite.cli.token import ca_cert_hash, parse_duration, short_human_duration
from kubelite.controllers import bootstrapsigner
from kubelite.controllers import csr as csrctl
from kubelite.kinds import certificates as certs
from kubelite.kinds.base import REQUESTING_USER

TOKEN = "abcdef.0123456789abcdef"
NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


# --------------------------------------------------------------------------- tokens


@pytest.mark.parametrize("token,ok", [
    (TOKEN, True), ("ABCDEF.0123456789abcdef", False), ("abcdef.0123456789abcde", False),
    ("abcdef0123456789abcdef", False), ("abcde.0123456789abcdefg", False), ("", False),
    ("abcdef.0123456789abcdef ", False)])
def test_parse_token(token, ok):
    assert (bt.parse_token(token) is not None) is ok


def test_generate_token_format():
    for _ in range(20):
        assert bt.TOKEN_RE.match(bt.generate_token())


def test_token_secret_like_kubeadm():
    s = bt.token_secret(TOKEN, dt.timedelta(hours=24), "for n1", now=NOW)
    assert s["metadata"] == {"name": "bootstrap-token-abcdef", "namespace": "kube-system"}
    assert s["type"] == "bootstrap.kubernetes.io/token"
    data = {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
    assert data == {"token-id": "abcdef", "token-secret": "0123456789abcdef", "description": "for n1",
                    "expiration": "2030-01-02T00:00:00Z", "usage-bootstrap-signing": "true",
                    "usage-bootstrap-authentication": "true",
                    "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token"}
    assert "expiration" not in bt.token_secret(TOKEN, dt.timedelta(0))["data"]  # ttl 0: never expires
    with pytest.raises(ValueError):
        bt.token_secret(TOKEN, groups=("system:masters",))
    with pytest.raises(ValueError):
        bt.token_secret(TOKEN, usages=("root",))
    with pytest.raises(ValueError):
        bt.token_secret("nope")


def _secret(**changes):
    s = bt.token_secret(TOKEN, dt.timedelta(hours=1), now=NOW)
    for k, v in changes.items():
        if v is None:
            s["data"].pop(k, None)
        else:
            s["data"][k] = base64.b64encode(v.encode()).decode()
    return s


def test_user_for_valid_token():
    u = bt.user_for(_secret(), "abcdef", "0123456789abcdef", now=NOW)
    assert u is not None
    assert u.name == "system:bootstrap:abcdef"
    assert u.groups == ("system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token")


def test_user_for_refusals():
    ok = ("abcdef", "0123456789abcdef")
    assert bt.user_for(None, *ok) is None
    assert bt.user_for(_secret(), "abcdef", "0123456789abcdeX", now=NOW) is None  # wrong secret
    assert bt.user_for(_secret(**{"token-id": "zzzzzz"}), *ok, now=NOW) is None
    assert bt.user_for(_secret(), *ok, now=NOW + dt.timedelta(hours=2)) is None  # expired
    assert bt.user_for(_secret(expiration="not-a-time"), *ok, now=NOW) is None  # unparsable = expired
    assert bt.user_for(_secret(**{"usage-bootstrap-authentication": None}), *ok, now=NOW) is None
    assert bt.user_for(_secret(**{"usage-bootstrap-authentication": "false"}), *ok, now=NOW) is None
    assert bt.user_for(_secret(**{"auth-extra-groups": "system:masters"}), *ok, now=NOW) is None
    wrong_type = _secret()
    wrong_type["type"] = "Opaque"
    assert bt.user_for(wrong_type, *ok, now=NOW) is None
    deleting = _secret()
    deleting["metadata"]["deletionTimestamp"] = "2030-01-01T00:00:00Z"
    assert bt.user_for(deleting, *ok, now=NOW) is None
    # no extra groups: only system:bootstrappers
    u = bt.user_for(_secret(**{"auth-extra-groups": None}), *ok, now=NOW)
    assert u is not None and u.groups == ("system:bootstrappers",)


class _Secrets:
    def __init__(self, *items):
        self.items = {s["metadata"]["name"]: s for s in items}

    async def get(self, ns, name):
        assert ns == "kube-system"
        if name not in self.items:
            raise errors.StatusError(404, "NotFound", "not found")
        return self.items[name]


def test_authenticator_hook():
    s = bt.token_secret(TOKEN, dt.timedelta(hours=1))
    hook = bt.BootstrapTokenAuthenticator(_Secrets(s))
    u = asyncio.run(hook(TOKEN))
    assert u is not None and u.name == "system:bootstrap:abcdef"
    assert asyncio.run(hook("zzzzzz.0123456789abcdef")) is None  # no such secret
    assert asyncio.run(hook("not-a-bootstrap-token")) is None
    expired = bt.token_secret("bbbbbb.0123456789abcdef", dt.timedelta(hours=1), now=NOW - dt.timedelta(days=9000))
    assert asyncio.run(bt.BootstrapTokenAuthenticator(_Secrets(expired))("bbbbbb.0123456789abcdef")) is None


def test_cli_helpers():
    assert parse_duration("24h") == dt.timedelta(hours=24)
    assert parse_duration("1h30m") == dt.timedelta(minutes=90)
    assert parse_duration("0") == dt.timedelta(0)
    with pytest.raises(ValueError):
        parse_duration("1d")
    assert short_human_duration(23 * 3600 + 59 * 60) == "23h"
    assert short_human_duration(3 * 86400) == "3d"


# --------------------------------------------------------------------------- CSR kind


def _csr_pem(cn="system:node:n1", orgs=("system:nodes",), sans=None, key=None):
    key = key or ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs] + [
        x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _csr_obj(pem=None, signer=certs.KUBE_APISERVER_CLIENT_KUBELET_SIGNER, usages=("digital signature", "client auth"),
             **spec):
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": "c1"},
            "spec": {"request": base64.b64encode(pem or _csr_pem()).decode(), "signerName": signer,
                     "usages": list(usages), **spec}}


def _fields(errs):
    return [str(e) for e in errs]


def test_csr_validation():
    assert certs.validate_csr(_csr_obj()) == []
    bad = _csr_obj()
    bad["spec"]["request"] = base64.b64encode(b"hello").decode()
    assert any(e.startswith("spec.request: Invalid value: []byte{0x68, 0x65, 0x6c, 0x6c, 0x6f}: PEM block type must "
                            "be CERTIFICATE REQUEST") for e in _fields(certs.validate_csr(bad)))
    assert "spec.usages: Required value" in _fields(certs.validate_csr(_csr_obj(usages=())))
    errs = _fields(certs.validate_csr(_csr_obj(usages=("client auth", "client auth", "fly"))))
    assert 'spec.usages[1]: Duplicate value: "client auth"' in errs
    assert any(e.startswith('spec.usages[2]: Unsupported value: "fly"') for e in errs)
    assert "spec.signerName: Required value" in _fields(certs.validate_csr(_csr_obj(signer="")))
    assert any("legacy signerName" in e for e in _fields(certs.validate_csr(_csr_obj(signer=certs.LEGACY_UNKNOWN_SIGNER))))
    assert ("spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 600 seconds (10 minutes)"
            in _fields(certs.validate_csr(_csr_obj(expirationSeconds=599))))
    both = _csr_obj()
    both["status"] = {"conditions": [{"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]}
    assert any("Approved and Denied conditions are mutually exclusive" in e for e in _fields(certs.validate_csr(both)))


def test_csr_create_records_requestor_and_clears_status():
    obj = _csr_obj(username="root", groups=["system:masters"])
    obj["status"] = {"conditions": [{"type": "Approved", "status": "True"}]}
    token = REQUESTING_USER.set(UserInfo("system:bootstrap:abcdef", ("system:bootstrappers", "system:authenticated")))
    try:
        certs.CSR.strategy.prepare_for_create(obj)
    finally:
        REQUESTING_USER.reset(token)
    assert obj["spec"]["username"] == "system:bootstrap:abcdef"
    assert obj["spec"]["groups"] == ["system:bootstrappers", "system:authenticated"]
    assert obj["status"] == {}


def test_csr_update_rules():
    s = certs.CSR.strategy
    old = _csr_obj(username="u")
    old["status"] = {"conditions": [{"type": "Approved", "status": "True", "reason": "R"}]}
    # main resource: spec and status are kept
    new = _csr_obj(username="evil")
    new["status"] = {}
    s.prepare_for_update(new, old)
    assert new["spec"]["username"] == "u" and new["status"] == old["status"]
    # /status: certificate set, approval kept even when the writer dropped it
    new = _csr_obj(username="evil")
    new["metadata"] = dict(old["metadata"])
    new["status"] = {"certificate": "Zm9v"}
    s.status_prepare_for_update(new, old)
    assert new["spec"]["username"] == "u"
    assert [c["type"] for c in new["status"]["conditions"]] == ["Approved"]
    # /approval: only conditions change
    pending = _csr_obj(username="u")
    new = _csr_obj(username="evil")
    new["status"] = {"certificate": "Zm9v", "conditions": [{"type": "Denied", "status": "True"}]}
    s.prepare_for_subresource_update("approval", new, pending)
    assert new["spec"]["username"] == "u" and "certificate" not in new["status"]
    assert new["status"]["conditions"][0]["type"] == "Denied" and new["status"]["conditions"][0]["lastUpdateTime"]
    # an approval cannot be taken back
    new = _csr_obj(username="u")
    new["status"] = {}
    errs = _fields(s.validate_update(new, old))
    assert 'status.conditions: Forbidden: updates may not remove a condition of type "Approved"' in errs


def test_csr_table_row():
    obj = _csr_obj(username="system:bootstrap:abcdef", expirationSeconds=3600)
    obj["metadata"]["creationTimestamp"] = "2020-01-01T00:00:00Z"
    row = certs.CSR.strategy.row(obj)
    assert row[0] == "c1" and row[2:] == [certs.KUBE_APISERVER_CLIENT_KUBELET_SIGNER, "system:bootstrap:abcdef",
                                          "60m", "Pending"]
    assert [c.name for c in certs.CSR.strategy.columns] == ["Name", "Age", "SignerName", "Requestor",
                                                            "RequestedDuration", "Condition"]
    obj["status"] = {"conditions": [{"type": "Approved"}, {"type": "Failed"}], "certificate": "eA=="}
    assert certs.condition_summary(obj) == "Approved,Failed,Issued"
    obj["status"]["conditions"].append({"type": "Denied"})
    assert certs.condition_summary(obj).startswith("Denied")


# --------------------------------------------------------------------------- approver / signer


def test_kubelet_client_csr_recognition():
    ok = {"digital signature", "client auth"}
    parse = certs.parse_csr
    assert csrctl.validate_kubelet_client_csr(parse(_csr_pem()), ok) is None
    assert csrctl.validate_kubelet_client_csr(parse(_csr_pem()), ok | {"key encipherment"}) is None
    assert csrctl.validate_kubelet_client_csr(parse(_csr_pem(orgs=("system:masters",))), ok) == \
        "subject organization is not system:nodes"
    assert csrctl.validate_kubelet_client_csr(parse(_csr_pem(cn="alice")), ok) == \
        "subject common name does not begin with system:node:"
    assert csrctl.validate_kubelet_client_csr(parse(_csr_pem(sans=["x.example"])), ok) == \
        "DNS subjectAltNames are not allowed"
    assert csrctl.validate_kubelet_client_csr(parse(_csr_pem()), {"client auth", "server auth"}).startswith(
        "usages did not match")
    assert csrctl.validate_apiserver_client_usages(["digital signature"]) == \
        "missing required usage for client certificate: client auth"
    assert csrctl.validate_apiserver_client_usages(["client auth", "server auth"]) == \
        "invalid usage for client certificate: server auth"


def _ca():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def test_sign_and_durations():
    ca, ca_key = _ca()
    req = certs.parse_csr(_csr_pem())
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    pem = csrctl.sign(ca, ca_key, req, ["digital signature", "client auth"], dt.timedelta(hours=1), now=now)
    cert = x509.load_pem_x509_certificate(pem)
    cert.verify_directly_issued_by(ca)
    assert cert.subject == req.subject
    assert cert.not_valid_before_utc == now - dt.timedelta(minutes=5)
    # short-lived (< 8h): the end is not backdated; long-lived: it is
    assert cert.not_valid_after_utc == now + dt.timedelta(hours=1)
    long = x509.load_pem_x509_certificate(
        csrctl.sign(ca, ca_key, req, ["digital signature", "client auth"], dt.timedelta(hours=9), now=now))
    assert long.not_valid_after_utc == now + dt.timedelta(hours=9) - dt.timedelta(minutes=5)
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.CLIENT_AUTH])
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert csrctl.signing_duration(None) == dt.timedelta(days=365)
    assert csrctl.signing_duration(60) == dt.timedelta(minutes=10)
    assert csrctl.signing_duration(7200) == dt.timedelta(hours=2)
    assert csrctl.signing_duration(10**9) == dt.timedelta(days=365)


class _Authz:
    def __init__(self, allowed):
        self.allowed = allowed
        self.asked = []

    async def authorize(self, a):
        self.asked.append(a.subresource)
        return ("Allow" if a.subresource in self.allowed else "NoOpinion"), ""


class _CSRs:
    def __init__(self):
        self.updates = []

    async def update(self, ns, name, obj, opts, sub=""):
        self.updates.append((sub, obj))
        return obj, False


def _approver(allowed):
    a = csrctl.CSRApprover.__new__(csrctl.CSRApprover)
    a.authorizer, a.csrs = _Authz(allowed), _CSRs()
    return a


def test_approver_nodeclient_and_selfnodeclient():
    boot = _csr_obj(username="system:bootstrap:abcdef", groups=["system:bootstrappers"])
    a = _approver({"nodeclient"})
    asyncio.run(a.handle(boot))
    assert a.authorizer.asked == ["nodeclient"]
    sub, obj = a.csrs.updates[0]
    assert sub == "approval"
    assert obj["status"]["conditions"][0]["reason"] == "AutoApproved"
    assert obj["status"]["conditions"][0]["message"] == \
        "Auto approving kubelet client certificate after SubjectAccessReview."
    # renewal by the node itself: selfnodeclient first
    a = _approver({"selfnodeclient"})
    asyncio.run(a.handle(_csr_obj(username="system:node:n1", groups=["system:nodes"])))
    assert a.authorizer.asked == ["selfnodeclient"]
    assert "self kubelet client" in a.csrs.updates[0][1]["status"]["conditions"][0]["message"]
    # not allowed: left pending
    a = _approver(set())
    asyncio.run(a.handle(boot))
    assert a.csrs.updates == []
    # not a kubelet client request: never even asked
    a = _approver({"nodeclient"})
    asyncio.run(a.handle(_csr_obj(pem=_csr_pem(orgs=("system:masters",)), username="x")))
    asyncio.run(a.handle(_csr_obj(signer=certs.KUBE_APISERVER_CLIENT_SIGNER, username="x")))
    assert a.authorizer.asked == [] and a.csrs.updates == []


# --------------------------------------------------------------------------- join discovery


def test_cluster_info_verification():
    ca, _ = _ca()
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    content = bootstrapsigner.cluster_info_kubeconfig("https://10.0.0.1:6443", ca_pem)
    cm = {"data": {"kubeconfig": content,
                   "jws-kubeconfig-abcdef": bootstrapsigner.detached_signature(content, "abcdef", "0123456789abcdef")}}
    pin = ca_cert_hash(ca_pem)
    assert pin == join.ca_pin(ca_pem)
    got, server = join.verify_cluster_info(cm, TOKEN, [pin])
    assert got == ca_pem and server == "https://10.0.0.1:6443"
    with pytest.raises(join.BootstrapError, match="none of the public keys"):
        join.verify_cluster_info(cm, TOKEN, ["sha256:" + "0" * 64])
    with pytest.raises(join.BootstrapError, match="failed to verify JWS signature"):
        join.verify_cluster_info(cm, "abcdef.0123456789abcdex", [pin])
    with pytest.raises(join.BootstrapError, match="no JWS signed token"):
        join.verify_cluster_info(cm, "zzzzzz.0123456789abcdef", [pin])
    tampered = {"data": dict(cm["data"], kubeconfig=content.replace("10.0.0.1", "10.6.6.6"))}
    with pytest.raises(join.BootstrapError, match="failed to verify JWS signature"):
        join.verify_cluster_info(tampered, TOKEN, [pin])


def test_detached_jws_shape():
    sig = bootstrapsigner.detached_signature("payload", "abcdef", "0123456789abcdef")
    header, empty, mac = sig.split(".")
    assert empty == "" and mac
    assert base64.urlsafe_b64decode(header + "==") == b'{"alg":"HS256","kid":"abcdef"}'


def test_node_csr():
    key_pem, csr_pem, name = join.make_csr("n1")
    req = certs.parse_csr(csr_pem)
    assert req.is_signature_valid and name.startswith("node-csr-")
    assert csrctl.validate_kubelet_client_csr(req, set(join.USAGES)) is None
    assert serialization.load_pem_private_key(key_pem, None)
