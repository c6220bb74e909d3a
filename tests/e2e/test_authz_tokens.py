"""Service account tokens (TokenRequest + JWT authenticator) and the negative transport suite."""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import urllib.request

import jwt
import pytest

from tests.e2e.harness import ServerProcess, raw_request


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = ServerProcess(tmp_path_factory.mktemp("tokens") / "data").start()
    yield s
    s.stop()


def _insecure() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def whoami(srv: ServerProcess, token: str) -> tuple[int, dict]:
    body = b'{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}'
    status, _, out = raw_request(srv, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", body,
                                 {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}, auth=False)
    return status, json.loads(out)


def test_bound_token_authenticates_until_pod_deleted(srv):
    srv.kubectl("create", "serviceaccount", "robot")
    srv.kubectl("run", "holder", "--image=busybox", "--overrides", '{"spec":{"serviceAccountName":"robot"}}')
    token = srv.kubectl("create", "token", "robot", "--bound-object-kind=Pod", "--bound-object-name=holder").stdout.strip()
    status, review = whoami(srv, token)
    assert status == 201, review
    info = review["status"]["userInfo"]
    assert info["username"] == "system:serviceaccount:default:robot"
    assert info["groups"] == ["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"]
    assert info["extra"]["authentication.kubernetes.io/pod-name"] == ["holder"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == "https://kubernetes.default.svc.cluster.local"
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["kubernetes.io"]["pod"]["name"] == "holder"
    # the service account has no role: its requests are forbidden with upstream's message
    status, _, out = raw_request(srv, "GET", "/api/v1/namespaces/default/pods", None,
                                 {"Authorization": f"Bearer {token}"}, auth=False)
    assert status == 403
    assert json.loads(out)["message"] == ('pods is forbidden: User "system:serviceaccount:default:robot" cannot list '
                                          'resource "pods" in API group "" in the namespace "default"')
    srv.kubectl("delete", "pod", "holder", "--grace-period=0", "--force")
    status, _ = whoami(srv, token)
    assert status == 401


def test_expired_forged_and_wrong_audience_tokens_refused(srv):
    srv.kubectl("create", "serviceaccount", "robot2")
    sa = json.loads(srv.kubectl("get", "sa", "robot2", "-o", "json").stdout)
    key = (srv.data_dir / "tls" / "sa.key").read_bytes()
    now = int(time.time())
    base = {"iss": "https://kubernetes.default.svc.cluster.local", "sub": "system:serviceaccount:default:robot2",
            "aud": ["https://kubernetes.default.svc.cluster.local"], "iat": now, "nbf": now, "exp": now + 600,
            "kubernetes.io": {"namespace": "default", "serviceaccount": {"name": "robot2", "uid": sa["metadata"]["uid"]}}}
    assert whoami(srv, jwt.encode(base, key, algorithm="RS256"))[0] == 201
    expired = dict(base, iat=now - 7200, nbf=now - 7200, exp=now - 3600)
    assert whoami(srv, jwt.encode(expired, key, algorithm="RS256"))[0] == 401
    wrong_aud = dict(base, aud=["https://elsewhere"])
    assert whoami(srv, jwt.encode(wrong_aud, key, algorithm="RS256"))[0] == 401
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    assert whoami(srv, jwt.encode(base, other, algorithm="RS256"))[0] == 401
    assert whoami(srv, jwt.encode(base, "secret", algorithm="HS256"))[0] == 401
    short = srv.kubectl("create", "token", "robot2", "--duration=5m", check=False)
    assert "may not specify a duration less than 10 minutes" in short.stderr


def test_plain_http_and_old_tls_refused(srv):
    with pytest.raises((OSError, ssl.SSLError)):
        urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/version", timeout=3).read()
    for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        ctx = _insecure()
        try:
            ctx.minimum_version = version
            ctx.maximum_version = version
        except (ValueError, ssl.SSLError):
            continue
        with pytest.raises((OSError, ssl.SSLError)):
            urllib.request.urlopen(f"https://127.0.0.1:{srv.port}/version", context=ctx, timeout=3).read()


def test_foreign_and_expired_client_certificates_refused(srv, tmp_path):
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def make(issuer_key, issuer_name, subject_cn, not_after):
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn),
                                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters")]))
                .issuer_name(issuer_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=2)).not_valid_after(not_after)
                .sign(issuer_key or key, hashes.SHA256()))
        return cert, key

    def status_with(cert, key) -> int:
        c, k = tmp_path / "c.pem", tmp_path / "k.pem"
        c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
        ctx = _insecure()
        ctx.load_cert_chain(c, k)
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{srv.port}/api/v1/namespaces", context=ctx,
                                        timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except Exception:
            return -1  # refused during the handshake

    now = dt.datetime.now(dt.UTC)
    selfsigned, k1 = make(None, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "root")]), "root",
                          now + dt.timedelta(days=1))
    assert status_with(selfsigned, k1) in (401, -1)
    # signed by a CA with the same name as the cluster CA but another key (forged)
    ca_cert = x509.load_pem_x509_certificate((srv.data_dir / "tls" / "ca.crt").read_bytes())
    forged, k2 = make(ec.generate_private_key(ec.SECP256R1()), ca_cert.subject, "root", now + dt.timedelta(days=1))
    assert status_with(forged, k2) in (401, -1)
    # signed by the real CA but expired
    ca_key = serialization.load_pem_private_key((srv.data_dir / "tls" / "ca.key").read_bytes(), None)
    expired, k3 = make(ca_key, ca_cert.subject, "root", now - dt.timedelta(days=1))
    assert status_with(expired, k3) in (401, -1)
    good, k4 = make(ca_key, ca_cert.subject, "root", now + dt.timedelta(days=1))
    assert status_with(good, k4) == 200
    assert subprocess is not None
