from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import socket
import ssl
import stat

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubelite.tls import pki as pkimod
from kubelite.tls.kubeconfig import mint_user_kubeconfig, write_admin_kubeconfig
from kubelite.tls.pki import (
    PKI,
    cert_sans,
    client_ssl_context,
    ensure_pki,
    host_addresses,
    issue_client_cert,
    load_pki,
    server_ssl_context,
    write_kubeconfig,
)


def _cert(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    ensure_pki(d)
    return d


def _key_paths(p: PKI):
    return [p.ca_key, p.server_key, p.admin_key, p.sa_key]


def _all_paths(p: PKI):
    return [p.ca_cert, p.ca_key, p.server_cert, p.server_key, p.admin_cert, p.admin_key, p.sa_key, p.sa_pub]


def test_files_created_with_modes(pki_dir):
    p = ensure_pki(pki_dir)
    assert p.dir == pki_dir / "tls"
    for f in _all_paths(p):
        assert f.exists(), f
        assert f.parent == pki_dir / "tls"
    for k in _key_paths(p):
        assert _mode(k) == 0o600, k
    assert _mode(p.dir) == 0o700
    assert p.ca_pem == p.ca_cert.read_bytes()
    assert p.ca_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    # no stray temp files
    assert not [f for f in p.dir.iterdir() if f.name.endswith(".tmp")]


def test_idempotent_reuses_files(pki_dir):
    p1 = ensure_pki(pki_dir)
    before = {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in _all_paths(p1)}
    p2 = ensure_pki(pki_dir)
    assert p2 == p1
    for f in _all_paths(p2):
        assert (f.read_bytes(), f.stat().st_mtime_ns) == before[f], f"{f} was rewritten"


def test_ca(pki_dir):
    p = load_pki(pki_dir)
    ca = _cert(p.ca_cert)
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "kubelite-ca"
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    life = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert life >= dt.timedelta(days=3650)


def test_server_cert_sans(pki_dir):
    p = load_pki(pki_dir)
    cert = _cert(p.server_cert)
    sans = cert_sans(cert)
    for want in ["localhost", "127.0.0.1", "::1", "kubernetes", "kubernetes.default",
                 "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
                 socket.gethostname().lower()]:
        assert want in sans, want
    for ip in host_addresses():
        assert ip in sans
        assert not ipaddress.ip_address(ip).is_loopback
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    cert.verify_directly_issued_by(_cert(p.ca_cert))
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=364) < life < dt.timedelta(days=367)


def test_admin_cert_and_sa_key(pki_dir):
    p = load_pki(pki_dir)
    cert = _cert(p.admin_cert)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "kubelite-admin"
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == \
        ["system:masters"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    cert.verify_directly_issued_by(_cert(p.ca_cert))
    from cryptography.hazmat.primitives import serialization
    sa = serialization.load_pem_private_key(p.sa_key.read_bytes(), None)
    pub = serialization.load_pem_public_key(p.sa_pub.read_bytes())
    assert isinstance(sa, rsa.RSAPrivateKey)
    assert sa.public_key().public_numbers() == pub.public_numbers()


def test_extra_sans_change_reissues_server_cert_only(tmp_path):
    p = ensure_pki(tmp_path)
    ca, admin, srv = p.ca_cert.read_bytes(), p.admin_cert.read_bytes(), p.server_cert.read_bytes()
    p = ensure_pki(tmp_path, extra_sans=["api.example.com", "10.11.12.13", "[fd00::7]"])
    assert p.ca_cert.read_bytes() == ca
    assert p.admin_cert.read_bytes() == admin
    assert p.server_cert.read_bytes() != srv
    sans = cert_sans(_cert(p.server_cert))
    assert {"api.example.com", "10.11.12.13", "fd00::7"} <= sans
    srv2 = p.server_cert.read_bytes()
    ensure_pki(tmp_path, extra_sans=["API.example.com.", "10.11.12.13", "fd00::7"])  # same set, other spelling
    assert p.server_cert.read_bytes() == srv2
    ensure_pki(tmp_path)  # extra SANs removed -> re-issued without them
    assert "api.example.com" not in cert_sans(_cert(p.server_cert))


def test_expiring_server_cert_reissued(tmp_path):
    p = ensure_pki(tmp_path)
    ca = _cert(p.ca_cert)
    from cryptography.hazmat.primitives import serialization
    ca_key = serialization.load_pem_private_key(p.ca_key.read_bytes(), None)
    cert, key = pkimod._issue(ca, ca_key, cn="kube-apiserver", server=True,
                              sans=pkimod.server_sans(), days=10)
    pkimod._write_pair(p.server_cert, p.server_key, cert, key)
    old = p.server_cert.read_bytes()
    ensure_pki(tmp_path)
    new = _cert(p.server_cert)
    assert p.server_cert.read_bytes() != old
    assert new.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=300)


def test_new_ca_reissues_leaves(tmp_path):
    p = ensure_pki(tmp_path)
    p.ca_cert.unlink()
    p = ensure_pki(tmp_path)
    ca = _cert(p.ca_cert)
    _cert(p.server_cert).verify_directly_issued_by(ca)
    _cert(p.admin_cert).verify_directly_issued_by(ca)


def test_issue_client_cert(pki_dir):
    p = load_pki(pki_dir)
    cert_pem, key_pem = issue_client_cert(p, "alice", ["dev", "ops"], days=30)
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == ["dev", "ops"]
    cert.verify_directly_issued_by(_cert(p.ca_cert))
    assert cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < dt.timedelta(days=31)
    assert b"PRIVATE KEY" in key_pem
    with pytest.raises(ValueError):
        issue_client_cert(p, "", [])


def test_write_kubeconfig(tmp_path, pki_dir):
    p = load_pki(pki_dir)
    path = tmp_path / "sub" / "kc.yaml"
    write_kubeconfig(path, "https://127.0.0.1:6443", p.ca_pem, b"CERT", b"KEY", "bob",
                     cluster="c1", context="ctx1")
    assert _mode(path) == 0o600
    cfg = yaml.safe_load(path.read_text())
    assert cfg["apiVersion"] == "v1" and cfg["kind"] == "Config"
    assert cfg["current-context"] == "ctx1"
    assert cfg["contexts"] == [{"name": "ctx1", "context": {"cluster": "c1", "user": "bob"}}]
    cl = cfg["clusters"][0]
    assert cl["name"] == "c1" and cl["cluster"]["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cl["cluster"]["certificate-authority-data"]) == p.ca_pem
    u = cfg["users"][0]
    assert u["name"] == "bob"
    assert base64.b64decode(u["user"]["client-certificate-data"]) == b"CERT"
    assert base64.b64decode(u["user"]["client-key-data"]) == b"KEY"
    # overwrite keeps mode, no temp files left
    write_kubeconfig(path, "https://h:1", p.ca_pem, b"C2", b"K2", "bob")
    assert _mode(path) == 0o600
    assert [f.name for f in path.parent.iterdir()] == ["kc.yaml"]


def test_admin_and_user_kubeconfig(pki_dir, tmp_path):
    p = load_pki(pki_dir)
    path = write_admin_kubeconfig(pki_dir, "https://127.0.0.1:6443", p)
    assert path == pki_dir / "kubeconfig.yaml"
    assert _mode(path) == 0o600
    cfg = yaml.safe_load(path.read_text())
    u = cfg["users"][0]
    assert u["name"] == "kubelite-admin"
    assert base64.b64decode(u["user"]["client-certificate-data"]) == p.admin_cert.read_bytes()

    out = tmp_path / "alice.yaml"
    text = mint_user_kubeconfig(pki_dir, "alice", ["dev"], "https://127.0.0.1:6443", out=out)
    assert _mode(out) == 0o600 and out.read_text() == text
    cfg = yaml.safe_load(text)
    cert = x509.load_pem_x509_certificate(base64.b64decode(cfg["users"][0]["user"]["client-certificate-data"]))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"

    with pytest.raises(FileNotFoundError):
        mint_user_kubeconfig(tmp_path / "nothing", "x", [], "https://h:1")


def test_ssl_contexts(pki_dir):
    p = load_pki(pki_dir)
    s = server_ssl_context(p)
    assert s.minimum_version == ssl.TLSVersion.TLSv1_2
    assert s.verify_mode == ssl.CERT_OPTIONAL
    names = {c["name"] for c in s.get_ciphers()}
    assert not any("CBC" in n or "RC4" in n or "DES" in n or n.startswith("AES") for n in names
                   if not n.startswith("TLS_"))
    c = client_ssl_context(p)
    assert c.check_hostname and c.verify_mode == ssl.CERT_REQUIRED
    client_ssl_context(p, p.admin_cert, p.admin_key)
    cert_pem, key_pem = issue_client_cert(p, "x", [])
    client_ssl_context(p, cert_pem, key_pem)


def test_host_addresses_fallback_without_ip_command(monkeypatch):
    via_ip = host_addresses()
    monkeypatch.setattr(pkimod, "_addrs_from_ip_cmd", lambda: None)
    via_ioctl = host_addresses()
    for a in via_ioctl:
        ip = ipaddress.ip_address(a)
        assert not (ip.is_loopback or ip.is_link_local)
    # the ioctl path sees only the primary IPv4 address per interface: a subset
    assert set(via_ioctl) <= set(via_ip) or not via_ip


def test_mismatched_ca_key_replaced(tmp_path):
    p = ensure_pki(tmp_path)
    other = ec.generate_private_key(ec.SECP256R1())
    pkimod.atomic_write(p.ca_key, pkimod.key_pem(other))
    p = ensure_pki(tmp_path)
    ca = _cert(p.ca_cert)
    _cert(p.server_cert).verify_directly_issued_by(ca)
    _cert(p.admin_cert).verify_directly_issued_by(ca)
