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


# --------------------------------------------------------------------------- the agent's certificate manager


def test_rotation_deadline_is_70_to_90_percent_of_the_lifetime():
    from kubelite.agent import certmanager as cm

    assert cm.jittery_duration(100.0, lambda: 0.0) == pytest.approx(70.0)
    assert cm.jittery_duration(100.0, lambda: 1.0) == pytest.approx(90.0)
    ca, key = _ca()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    cert = x509.load_pem_x509_certificate(
        csrctl.sign(ca, key, certs.parse_csr(csr_pem()), list(SERVING_EC), dt.timedelta(hours=10), now))
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert cm.rotation_deadline(cert, lambda: 0.5) == cert.not_valid_before_utc + life * 0.8


def test_serving_template_is_the_kubelets():
    from kubelite.agent.certmanager import Template, serving_template

    addrs = [{"type": "InternalIP", "address": "198.19.0.2"}, {"type": "Hostname", "address": "n1"},
             {"type": "ExternalDNS", "address": "n1.example.com"}, {"type": "InternalIP", "address": "198.19.0.2"}]
    assert serving_template("n1", addrs) == Template("system:node:n1", ("system:nodes",),
                                                     ("n1", "n1.example.com"), ("198.19.0.2",))
    # no IP address yet: no request (AllowDNSOnlyNodeCSR is off by default)
    assert serving_template("n1", [{"type": "Hostname", "address": "n1"}]) is None


class _FakeAPI:
    """Creates CSRs and answers them the way the controllers would: sign, deny or never."""

    def __init__(self, answer: str = "sign", ttl: dt.timedelta = dt.timedelta(hours=1)) -> None:
        self.ca, self.key = _ca()
        self.answer, self.ttl = answer, ttl
        self.created: list[dict] = []
        self.bodies: list[dict] = []

    async def create(self, api, plural, body):
        self.bodies.append(body)
        obj = {**body, "metadata": {"name": f"csr-{len(self.created)}"}}
        self.created.append(obj)
        return obj

    async def get(self, api, plural, name):
        obj = next(o for o in self.created if o["metadata"]["name"] == name)
        if self.answer == "deny":
            return {**obj, "status": {"conditions": [{"type": "Denied", "reason": "Nope", "message": "no"}]}}
        if self.answer == "pending":
            return obj
        req = certs.csr_of(obj)
        pem = csrctl.sign(self.ca, self.key, req, obj["spec"]["usages"], self.ttl)
        return {**obj, "status": {"certificate": base64.b64encode(pem).decode()}}


def _manager(tmp_path, api, initial=None, template=None):
    from kubelite.agent import certmanager as cm

    seen: list = []
    tmpl = template or cm.serving_template(NODE, [{"type": "InternalIP", "address": IP},
                                                  {"type": "Hostname", "address": NODE}])
    m = cm.CertificateManager(api, "serving", certs.KUBELET_SERVING_SIGNER, cm.FileStore("kubelet-server", tmp_path),
                              lambda: tmpl, seen.append, server=True, initial=initial, dynamic_template=True)
    return m, seen


def test_rotate_requests_the_template_and_stores_the_pair(tmp_path):
    api = _FakeAPI()
    m, seen = _manager(tmp_path, api)
    assert m.next_rotation_deadline() <= dt.datetime.now(dt.UTC)  # nothing yet: now
    assert asyncio.run(m.rotate()) is True
    body = api.bodies[0]
    assert body["metadata"] == {"generateName": "csr-"}
    assert body["spec"]["signerName"] == "kubernetes.io/kubelet-serving"
    assert body["spec"]["usages"] == ["digital signature", "server auth"]  # an ECDSA key: no key encipherment
    req = certs.csr_of(body)
    assert csrctl.validate_kubelet_serving_csr(req, set(body["spec"]["usages"])) is None
    assert isinstance(req.public_key(), ec.EllipticCurvePublicKey)
    pair = seen[0]
    assert m.current == pair and m.satisfies_template()
    cur = tmp_path / "kubelet-server-current.pem"
    assert cur.is_symlink() and cur.resolve() == pair.path and pair.path.stat().st_mode & 0o777 == 0o600
    # the stored file holds the certificate and its key; a restarted agent starts from it
    from kubelite.agent.certmanager import FileStore

    again = FileStore("kubelet-server", tmp_path).current()
    assert again is not None and again.serial == pair.serial
    # a fresh certificate is renewed at 70-90 % of its life, not now
    life = pair.leaf.not_valid_after_utc - pair.leaf.not_valid_before_utc
    deadline = m.next_rotation_deadline()
    assert pair.leaf.not_valid_before_utc + life * 0.69 < deadline < pair.leaf.not_valid_before_utc + life * 0.91
    # a second rotation: a new key, a new serial, the symlink moved on
    assert asyncio.run(m.rotate()) is True
    assert seen[1].serial != pair.serial and FileStore("kubelet-server", tmp_path).current().serial == seen[1].serial


def test_template_change_means_rotate_now(tmp_path):
    from kubelite.agent import certmanager as cm

    api = _FakeAPI()
    m, seen = _manager(tmp_path, api)
    asyncio.run(m.rotate())
    moved = cm.serving_template(NODE, [{"type": "InternalIP", "address": "198.19.0.7"}])
    m.template = lambda: moved
    assert not m.satisfies_template()
    assert m.next_rotation_deadline() <= dt.datetime.now(dt.UTC)
    assert cm.usable(seen[0], moved) is None


def test_denied_request_is_an_error_and_nothing_changes(tmp_path, caplog):
    m, seen = _manager(tmp_path, _FakeAPI("deny"))
    assert asyncio.run(m.rotate()) is False
    assert seen == [] and m.current is None
    assert "is denied, reason: Nope, message: no" in caplog.text


def test_serving_tls_refuses_handshakes_until_a_certificate_is_loaded(tmp_path):
    from kubelite.agent import certmanager as cm
    from kubelite.tls import pki

    p = pki.ensure_pki(tmp_path / "srv")
    ca, ca_key = pki._load_cert(p.ca_cert), pki._load_key(p.ca_key)
    tls = cm.ServingTLS(p.ca_cert.read_bytes())
    store = cm.FileStore("kubelet-server", tmp_path / "pki")

    async def handle(r, w):
        w.write(b"ok")
        await w.drain()
        w.close()

    async def dial(port: int) -> int:
        ctx = pki.kubelet_client_ssl_context(p)
        ctx.check_hostname = False
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        serial = int(w.get_extra_info("ssl_object").getpeercert()["serialNumber"], 16)
        assert await r.read() == b"ok"
        w.close()
        return serial

    async def main() -> None:
        srv = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls.context)
        port = srv.sockets[0].getsockname()[1]
        try:
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await dial(port)
            for _ in range(2):  # each rotation is presented by the next handshake, no restart
                cert, key = pki._issue(ca, ca_key, cn=USER, orgs=["system:nodes"], server=True, sans=["127.0.0.1"])
                pair = store.update(pki.cert_pem(cert), pki.key_pem(key))
                tls.load(pair)
                assert await dial(port) == pair.serial
        finally:
            srv.close()
            await srv.wait_closed()

    import ssl

    asyncio.run(main())


def test_client_presents_a_rotated_certificate_without_cutting_open_requests(tmp_path):
    """Client.use_client_certificate: the next request hands over the new pair; a watch open
    on the old connection keeps going and its connection pool closes when it ends."""
    from aiohttp import web

    from kubelite.client.api import Client
    from kubelite.tls import pki

    p = pki.ensure_pki(tmp_path)
    ca, ca_key = pki._load_cert(p.ca_cert), pki._load_key(p.ca_key)
    release = asyncio.Event()

    def serial(request: web.Request) -> str:
        # as an int in hex without padding: getpeercert() pads serials to an even number of digits
        return format(int(request.transport.get_extra_info("ssl_object").getpeercert()["serialNumber"], 16), "X")

    async def whoami(request: web.Request) -> web.Response:
        return web.json_response({"serial": serial(request)})

    async def watch(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        obj = {"metadata": {"name": serial(request)}}
        await resp.write(b'{"type":"ADDED","object":' + json.dumps(obj).encode() + b"}\n")
        await release.wait()
        await resp.write(b'{"type":"MODIFIED","object":' + json.dumps(obj).encode() + b"}\n")
        return resp

    def pair() -> tuple[bytes, bytes, str]:
        cert, key = pki._issue(ca, ca_key, cn=USER, orgs=["system:nodes"])
        return pki.cert_pem(cert), pki.key_pem(key), format(cert.serial_number, "X")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/api/v1/whoami", whoami)
        app.router.add_get("/api/v1/pods", watch)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=pki.server_ssl_context(p))
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        first, second = pair(), pair()
        ctx = pki.client_ssl_context(p, first[0], first[1])
        client = Client(f"https://127.0.0.1:{port}", ctx)
        try:
            assert (await client.request("GET", "/api/v1/whoami"))["serial"] == first[2]
            events = client.watch("v1", "pods")
            assert (await anext(events))[1]["metadata"]["name"] == first[2]
            client.use_client_certificate(second[0], second[1])
            assert (await client.request("GET", "/api/v1/whoami"))["serial"] == second[2]
            release.set()
            assert (await anext(events)) == ("MODIFIED", {"metadata": {"name": first[2]}})
            with pytest.raises(StopAsyncIteration):
                await anext(events)
            # the retired pool closes once its last request has ended: a few loop turns later
            async with asyncio.timeout(5):
                while client._retired or client._inflight:
                    await asyncio.sleep(0.01)
        finally:
            await client.close()
            await runner.cleanup()

    import json

    asyncio.run(main())


def test_an_expired_client_certificate_means_joining_again(tmp_path):
    from cryptography.hazmat.primitives import serialization as ser

    from kubelite.agent.certmanager import FileStore
    from kubelite.cli.agent import _client_certificate_expired
    from kubelite.tls import pki

    p = pki.ensure_pki(tmp_path / "srv")
    ca, ca_key = pki._load_cert(p.ca_cert), pki._load_key(p.ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    old = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, USER)]))
           .issuer_name(ca.subject).public_key(key.public_key()).serial_number(7)
           .not_valid_before(past).not_valid_after(past + dt.timedelta(hours=1)).sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    store = FileStore("kubelet-client", tmp_path / "pki")
    store.update(old.public_bytes(ser.Encoding.PEM), key_pem)
    kc = tmp_path / "kubeconfig.yaml"
    cfg = pki.kubeconfig_dict("https://127.0.0.1:6443", p.ca_pem, b"", b"", USER)
    cfg["users"][0]["user"] = {"client-certificate": str(store.current_path), "client-key": str(store.current_path)}
    import yaml

    kc.write_text(yaml.safe_dump(cfg))
    assert _client_certificate_expired(kc, tmp_path / "pki") is True
    cert, k = pki._issue(ca, ca_key, cn=USER, orgs=["system:nodes"])
    store.update(pki.cert_pem(cert), pki.key_pem(k))  # renewed in time: the same kubeconfig is fine
    assert _client_certificate_expired(kc, tmp_path / "pki") is False
    assert _client_certificate_expired(tmp_path / "missing.yaml", tmp_path / "pki") is False


# --------------------------------------------------------------------------- csrcleaner


def test_csr_cleaner_rules():
    ca, key = _ca()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def ts(ago: dt.timedelta) -> str:
        return (now - ago).strftime("%Y-%m-%dT%H:%M:%SZ")

    def obj(conditions=(), cert_ttl=None, created=dt.timedelta(0)):
        o = csr_obj()
        o["metadata"]["creationTimestamp"] = ts(created)
        o["status"] = {}
        if conditions:
            o["status"]["conditions"] = [{"type": t, "status": "True", "lastUpdateTime": ts(ago)} for t, ago in conditions]
        if cert_ttl is not None:
            pem = csrctl.sign(ca, key, certs.parse_csr(csr_pem()), list(SERVING_EC), cert_ttl, now - dt.timedelta(hours=2))
            o["status"]["certificate"] = base64.b64encode(pem).decode()
        return o

    hour, minute = dt.timedelta(hours=1), dt.timedelta(minutes=1)
    keep = [obj(), obj(created=23 * hour), obj([("Approved", 59 * minute)], cert_ttl=10 * hour),
            obj([("Denied", 59 * minute)]), obj([("Approved", 2 * hour)])]  # approved, never issued: kept
    for o in keep:
        assert csrctl.cleanup_reason(o, now) is None, o["status"]
    assert csrctl.cleanup_reason(obj(created=25 * hour), now) == \
        'Cleaning CSR "csr-abcde" as it is more than 24h0m0s old and unhandled.'
    assert csrctl.cleanup_reason(obj([("Approved", 61 * minute)], cert_ttl=10 * hour), now) == \
        'Cleaning CSR "csr-abcde" as it is more than 1h0m0s old and approved.'
    # issued two hours ago for one hour: expired, however recent the approval
    assert csrctl.cleanup_reason(obj([("Approved", minute)], cert_ttl=hour), now) == \
        'Cleaning CSR "csr-abcde" as the associated certificate is expired.'
    assert csrctl.cleanup_reason(obj([("Denied", 2 * hour)]), now) == \
        'Cleaning CSR "csr-abcde" as it is more than 1h0m0s old and denied.'
    assert csrctl.cleanup_reason(obj([("Approved", 2 * hour), ("Failed", 2 * hour)]), now) == \
        'Cleaning CSR "csr-abcde" as it is more than 1h0m0s old and failed.'
