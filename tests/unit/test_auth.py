from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import socket
import ssl
import stat
import warnings
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubelite.apiserver.auth import (
    ANONYMOUS,
    USER,
    Authenticator,
    UserInfo,
    auth_middleware,
    ensure_admin_token,
    is_public_path,
    parse_token_file,
    read_admin_token,
)
from kubelite.tls.kubeconfig import mint_user_kubeconfig, write_admin_kubeconfig
from kubelite.tls.pki import client_ssl_context, ensure_pki, server_ssl_context

VERSION = {
    "major": "1", "minor": "37", "gitVersion": "v1.37.0-kubelite", "gitCommit": "0" * 40,
    "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "python",
    "compiler": "cpython", "platform": "linux/amd64",
}

KUBECTL = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "kubectl"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("authdata")
    ensure_pki(d)
    ensure_admin_token(d)
    return d


@pytest.fixture(scope="module")
def pki(data_dir):
    return ensure_pki(data_dir)


async def _version(request: web.Request) -> web.Response:
    return web.json_response(VERSION)


async def _whoami(request: web.Request) -> web.Response:
    u: UserInfo = request[USER]
    return web.json_response({"name": u.name, "groups": list(u.groups), "uid": u.uid})


class Server:
    def __init__(self, runner: web.AppRunner, port: int) -> None:
        self.runner, self.port = runner, port
        self.url = f"https://127.0.0.1:{port}"


@pytest.fixture
async def server(data_dir, pki):
    authn = Authenticator.for_data_dir(data_dir)
    app = web.Application(middlewares=[auth_middleware(authn)])
    app.router.add_get("/version", _version)
    app.router.add_get("/livez", _whoami)
    app.router.add_get("/livez/{check}", _whoami)
    app.router.add_get("/whoami", _whoami)
    app.router.add_get("/api/v1/{rest:.*}", _whoami)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl_context(pki))
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Server(runner, port)
    finally:
        await runner.cleanup()


async def _get(url: str, ctx: ssl.SSLContext, headers: dict | None = None) -> tuple[int, str, object]:
    async with aiohttp.ClientSession() as s, s.get(url, ssl=ctx, headers=headers or {}) as r:
        body = await r.read()
        return r.status, r.content_type, json.loads(body)


def _self_signed(cn: str, orgs=()) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([*(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def _assert_401(status, ctype, body):
    assert status == 401
    assert ctype == "application/json"
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "Unauthorized", "reason": "Unauthorized", "code": 401}


# --------------------------------------------------------------------------- pure units


def test_is_public_path():
    for p in ["/livez", "/readyz", "/healthz", "/livez/ping", "/readyz/etcd", "/healthz/log", "/version",
              "/version/"]:
        assert is_public_path(p), p
    for p in ["/", "/api", "/api/v1/pods", "/livezz", "/versions", "/version/x", "/healthzfoo",
              "/livez/../api/v1/secrets", "/readyz/./x", "livez", ""]:
        assert not is_public_path(p), p


def test_parse_token_file():
    text = ('tok1,alice,uid-a,"dev,ops"\n'
            "tok2,bob,uid-b\n"
            "\n"
            "# comment\n"
            "short,line\n"
            "tok3,carol,uid-c,single,extra-col\n"
            ",nouser,x\n"
            "tok1,dup,uid-d\n")
    tokens = parse_token_file(text)
    assert sorted((u.name, u.groups, u.uid) for u in tokens.values()) == [
        ("alice", ("dev", "ops"), "uid-a"), ("bob", (), "uid-b"), ("carol", ("single",), "uid-c")]
    assert not any(b"tok" in k for k in tokens)  # keyed by digest, not by the token


def test_admin_token_created_once(tmp_path):
    path = ensure_admin_token(tmp_path)
    assert path == tmp_path / "tokens.csv"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    tok = read_admin_token(tmp_path)
    assert tok and len(tok) == 64 and int(tok, 16) >= 0
    content = path.read_text()
    assert content.startswith(f"{tok},kubelite-admin,")
    assert "system:masters" in content
    ensure_admin_token(tmp_path)
    assert path.read_text() == content


async def test_token_file_reloaded(tmp_path):
    f = tmp_path / "tokens.csv"
    f.write_text("aaa,alice,1\n")
    authn = Authenticator(f)
    assert authn.tokens.lookup("aaa").name == "alice"
    assert authn.tokens.lookup("bbb") is None
    f.write_text('bbb,bob,2,"g1,g2"\n')
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 1_000_000))
    assert authn.tokens.lookup("aaa") is None
    u = authn.tokens.lookup("bbb")
    assert (u.name, u.groups, u.uid) == ("bob", ("g1", "g2"), "2")
    f.unlink()
    assert authn.tokens.lookup("bbb") is None


async def test_token_hook_and_no_token_logging(tmp_path, caplog):
    f = tmp_path / "tokens.csv"
    f.write_text("s3cr3t-static,alice,1\n")
    authn = Authenticator(f)

    async def jwt_hook(token: str):
        return UserInfo("system:serviceaccount:default:sa", ("system:serviceaccounts",)) \
            if token == "jwt-tok" else None

    authn.add_token_authenticator(jwt_hook)
    app = web.Application(middlewares=[auth_middleware(authn)])
    app.router.add_get("/whoami", _whoami)
    from aiohttp.test_utils import TestClient, TestServer
    caplog.set_level("DEBUG")
    async with TestClient(TestServer(app)) as c:
        r = await c.get("/whoami", headers={"Authorization": "Bearer jwt-tok"})
        assert r.status == 200
        assert await r.json() == {"name": "system:serviceaccount:default:sa",
                                  "groups": ["system:serviceaccounts", "system:authenticated"], "uid": ""}
        r = await c.get("/whoami", headers={"Authorization": "Bearer s3cr3t-static"})
        assert (await r.json())["name"] == "alice"
        r = await c.get("/whoami", headers={"Authorization": "Bearer wrong-s3cr3t"})
        assert r.status == 401
        r = await c.get("/whoami", headers={"Authorization": "Basic abc"})
        assert r.status == 401

        async def broken(token):
            raise RuntimeError(f"boom {token}")
        authn.token_hooks.insert(0, broken)
        r = await c.get("/whoami", headers={"Authorization": "Bearer leak-me"})
        assert r.status == 401
        _assert_401(r.status, r.content_type, await r.json())
    assert "s3cr3t" not in caplog.text and "leak-me" not in caplog.text and "jwt-tok" not in caplog.text


# --------------------------------------------------------------------------- over TLS


async def test_admin_client_cert(server, pki):
    ctx = client_ssl_context(pki, pki.admin_cert, pki.admin_key)
    status, _, body = await _get(server.url + "/whoami", ctx)
    assert status == 200
    assert body == {"name": "kubelite-admin", "groups": ["system:masters", "system:authenticated"],
                    "uid": ""}


async def test_issued_user_cert_multiple_groups(server, pki):
    from kubelite.tls.pki import issue_client_cert
    cert, key = issue_client_cert(pki, "alice", ["dev", "ops"])
    status, _, body = await _get(server.url + "/api/v1/pods", client_ssl_context(pki, cert, key))
    assert status == 200
    assert body["name"] == "alice" and body["groups"] == ["dev", "ops", "system:authenticated"]


async def test_bearer_token(server, pki, data_dir):
    tok = read_admin_token(data_dir)
    status, _, body = await _get(server.url + "/whoami", client_ssl_context(pki),
                                 {"Authorization": f"Bearer {tok}"})
    assert status == 200
    assert body == {"name": "kubelite-admin", "groups": ["system:masters", "system:authenticated"],
                    "uid": "kubelite-admin"}
    _assert_401(*await _get(server.url + "/whoami", client_ssl_context(pki),
                            {"Authorization": f"Bearer {tok[:-1]}x"}))


async def test_anonymous_401_and_public_paths(server, pki):
    ctx = client_ssl_context(pki)
    _assert_401(*await _get(server.url + "/whoami", ctx))
    _assert_401(*await _get(server.url + "/api/v1/namespaces/default/secrets", ctx))
    status, ctype, body = await _get(server.url + "/version", ctx)
    assert (status, ctype, body) == (200, "application/json", VERSION)
    status, _, body = await _get(server.url + "/livez/ping", ctx)
    assert status == 200 and body["name"] == ANONYMOUS.name and body["groups"] == ["system:unauthenticated"]
    # path tricks do not make a private path public
    _assert_401(*await _get(server.url + "/livez/%2E%2E/api/v1/x", ctx))


async def test_self_signed_client_cert_refused(server, pki, tmp_path):
    cert, key = _self_signed("kubelite-admin", ["system:masters"])
    ctx = client_ssl_context(pki, cert, key)
    try:
        status, ctype, body = await _get(server.url + "/whoami", ctx)
    except (aiohttp.ClientError, ssl.SSLError, ConnectionError) as e:
        print("self-signed client cert refused:", repr(e))
        return  # refused during the TLS handshake
    _assert_401(status, ctype, body)


async def test_plain_http_to_tls_port_fails(server):
    try:
        async with aiohttp.ClientSession() as s, \
                s.get(f"http://127.0.0.1:{server.port}/version", timeout=aiohttp.ClientTimeout(total=5)) as r:
            status = r.status
    except (TimeoutError, aiohttp.ClientError, ConnectionError):
        return
    pytest.fail(f"plain HTTP got a response: {status}")


async def test_tls11_client_refused(server, pki):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(pki.ca_cert))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.set_ciphers("ALL:@SECLEVEL=0")  # let this OpenSSL actually offer TLS 1.1
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)) as ei:
        await _get(server.url + "/version", ctx)
    print("TLS 1.1 refused:", repr(ei.value))
    # sanity: the same kind of context with TLS 1.2 works
    ok = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ok.load_verify_locations(cafile=str(pki.ca_cert))
    ok.maximum_version = ssl.TLSVersion.TLSv1_2
    assert (await _get(server.url + "/version", ok))[0] == 200


async def test_hostname_verified_via_dns_san(server, pki):
    # the server listens on 127.0.0.1; connect there but verify the cert as "localhost"
    conn = aiohttp.TCPConnector(resolver=_FixedResolver("127.0.0.1"))
    async with aiohttp.ClientSession(connector=conn) as s, \
            s.get(f"https://localhost:{server.port}/version", ssl=client_ssl_context(pki)) as r:
        assert r.status == 200
    # a name not in the SANs fails verification
    conn = aiohttp.TCPConnector(resolver=_FixedResolver("127.0.0.1"))
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        async with aiohttp.ClientSession(connector=conn) as s, \
                s.get(f"https://not-in-sans.example:{server.port}/version", ssl=client_ssl_context(pki)):
            pass


class _FixedResolver(aiohttp.abc.AbstractResolver):
    def __init__(self, ip: str) -> None:
        self.ip = ip

    async def resolve(self, host, port=0, family=socket.AF_INET):
        return [{"hostname": host, "host": self.ip, "port": port, "family": socket.AF_INET,
                 "proto": 0, "flags": 0}]

    async def close(self) -> None:
        pass


# --------------------------------------------------------------------------- real kubectl


async def _kubectl(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(KUBECTL), *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HOME": os.environ.get("HOME", "/tmp"), "KUBECONFIG": ""})
    out, err = await asyncio.wait_for(proc.communicate(b""), 60)
    return proc.returncode, out.decode(), err.decode()


needs_kubectl = pytest.mark.skipif(not (KUBECTL.exists() or shutil.which("kubectl")), reason="no kubectl")


@needs_kubectl
async def test_kubectl_version_with_admin_kubeconfig(server, pki, data_dir):
    kc = write_admin_kubeconfig(data_dir, server.url, pki)
    rc, out, err = await _kubectl("--kubeconfig", str(kc), "version", "-o", "json")
    assert rc == 0, err
    v = json.loads(out)
    assert v["serverVersion"]["gitVersion"] == VERSION["gitVersion"]
    assert v["serverVersion"]["minor"] == "37"


@needs_kubectl
async def test_kubectl_client_cert_and_token_auth(server, pki, data_dir, tmp_path):
    # kubectl's raw GET goes through auth: client cert from a minted kubeconfig ...
    kc = tmp_path / "alice.yaml"
    mint_user_kubeconfig(data_dir, "alice", ["dev"], server.url, out=kc)
    rc, out, err = await _kubectl("--kubeconfig", str(kc), "get", "--raw", "/whoami")
    assert rc == 0, err
    assert json.loads(out)["name"] == "alice"
    # ... and a bearer token (without client cert)
    tok = read_admin_token(data_dir)
    rc, out, err = await _kubectl("--server", server.url, "--certificate-authority", str(pki.ca_cert),
                                  "--token", tok, "get", "--raw", "/whoami")
    assert rc == 0, err
    assert json.loads(out)["name"] == "kubelite-admin"
    # a wrong token -> kubectl reports Unauthorized (with no credentials at all kubectl would
    # prompt for a username instead of sending the request)
    rc, out, err = await _kubectl("--server", server.url, "--certificate-authority", str(pki.ca_cert),
                                  "--token", "not-a-token", "get", "--raw", "/whoami")
    assert rc != 0 and "Unauthorized" in err
