"""`kubelite certs rotate` against a running server (hot reload of the serving certificate) and
rotation before expiry in ensure_pki."""

from __future__ import annotations

import base64
import datetime as dt
import ssl
import subprocess
import sys

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kubelite.cli.certs import rotate
from kubelite.tls import pki as pkimod
from kubelite.tls.kubeconfig import mint_user_kubeconfig
from tests.e2e.harness import ROOT, ServerProcess, wait_until


def _served_serial(server: ServerProcess) -> int:
    pem = ssl.get_server_certificate(("127.0.0.1", server.port))
    return x509.load_pem_x509_certificate(pem.encode()).serial_number


def _kc_cert(path) -> x509.Certificate:
    cfg = yaml.safe_load(path.read_text())
    return x509.load_pem_x509_certificate(base64.b64decode(cfg["users"][0]["user"]["client-certificate-data"]))


def test_rotate_while_server_runs(tmp_path):
    server = ServerProcess(tmp_path / "data").start()
    try:
        d = server.data_dir
        kcdir = d / "kubeconfigs"
        kcdir.mkdir(mode=0o700)
        mint_user_kubeconfig(d, "system:node:n1", ["system:nodes"], server.url, out=kcdir / "agent.yaml")
        before_serial = _served_serial(server)
        before_admin = _kc_cert(server.kubeconfig)
        before_agent = _kc_cert(kcdir / "agent.yaml")
        server_sans = pkimod.cert_sans(x509.load_pem_x509_certificate((d / "tls" / "apiserver.crt").read_bytes()))
        p = subprocess.run([sys.executable, "-m", "kubelite", "certs", "rotate", "--data-dir", str(d)],
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert p.returncode == 0, p.stderr
        assert "serving certificate re-issued" in p.stdout
        new = x509.load_pem_x509_certificate((d / "tls" / "apiserver.crt").read_bytes())
        assert new.serial_number != before_serial
        assert pkimod.cert_sans(new) == server_sans
        # the running server presents the new certificate on new connections, no restart
        wait_until(lambda: _served_serial(server) == new.serial_number, 10, 0.1, "new serving certificate")
        assert server.proc is not None and server.proc.poll() is None
        admin = _kc_cert(server.kubeconfig)
        assert admin.serial_number != before_admin.serial_number
        assert admin.subject == before_admin.subject
        assert admin.serial_number == x509.load_pem_x509_certificate(
            (d / "tls" / "admin.crt").read_bytes()).serial_number
        agent = _kc_cert(kcdir / "agent.yaml")
        assert agent.serial_number != before_agent.serial_number and agent.subject == before_agent.subject
        assert yaml.safe_load((kcdir / "agent.yaml").read_text())["clusters"][0]["cluster"]["server"] == server.url
        # a new kubectl call with the rewritten kubeconfig works (verifies the new cert against the CA)
        assert "default" in server.kubectl("get", "namespaces").stdout
        who = server.kubectl("auth", "whoami", "-o", "json").stdout
        assert '"username": "kubelite-admin"' in who
        # the agent kubeconfig authenticates as its node
        who = server.kubectl("auth", "whoami", "-o", "json", env={"KUBECONFIG": str(kcdir / "agent.yaml")}).stdout
        assert '"username": "system:node:n1"' in who
        # a restart keeps the rotated certificate (ensure_pki sees nothing to re-issue)
        server.stop()
        server.start()
        assert _served_serial(server) == new.serial_number
    finally:
        server.stop()


def test_rotate_without_pki_fails(tmp_path):
    p = subprocess.run([sys.executable, "-m", "kubelite", "certs", "rotate", "--data-dir", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 1 and "no cluster CA" in p.stderr


def test_ensure_pki_renews_leaves_before_expiry(tmp_path):
    p = pkimod.ensure_pki(tmp_path)
    ca = x509.load_pem_x509_certificate(p.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(p.ca_key.read_bytes(), None)
    # 29 days left (inside the 30-day renewal window) for both leaves; 31 days is left alone
    srv, srv_key = pkimod._issue(ca, ca_key, cn=pkimod.SERVER_CN, server=True, sans=pkimod.server_sans(), days=29)
    pkimod._write_pair(p.server_cert, p.server_key, srv, srv_key)
    adm, adm_key = pkimod._issue(ca, ca_key, cn=pkimod.ADMIN_USER, orgs=pkimod.ADMIN_GROUPS, days=31)
    pkimod._write_pair(p.admin_cert, p.admin_key, adm, adm_key)
    pkimod.ensure_pki(tmp_path)
    now = dt.datetime.now(dt.UTC)
    new_srv = x509.load_pem_x509_certificate(p.server_cert.read_bytes())
    assert new_srv.serial_number != srv.serial_number
    assert new_srv.not_valid_after_utc - now > dt.timedelta(days=300)
    assert x509.load_pem_x509_certificate(p.admin_cert.read_bytes()).serial_number == adm.serial_number
    adm, adm_key = pkimod._issue(ca, ca_key, cn=pkimod.ADMIN_USER, orgs=pkimod.ADMIN_GROUPS, days=29)
    pkimod._write_pair(p.admin_cert, p.admin_key, adm, adm_key)
    pkimod.ensure_pki(tmp_path)
    new_adm = x509.load_pem_x509_certificate(p.admin_cert.read_bytes())
    assert new_adm.serial_number != adm.serial_number
    assert new_adm.not_valid_after_utc - now > dt.timedelta(days=300)
    new_adm.verify_directly_issued_by(ca)


def test_rotate_function_keeps_ca_and_sans(tmp_path):
    p = pkimod.ensure_pki(tmp_path, extra_sans=["api.example.com"])
    ca_before = p.ca_cert.read_bytes()
    (tmp_path / "kubeconfig.yaml").write_text(yaml.safe_dump(
        {"clusters": [{"cluster": {"server": "https://10.9.8.7:6443"}}]}))
    done = rotate(tmp_path)
    assert done["old_serial"] != done["new_serial"]
    assert p.ca_cert.read_bytes() == ca_before
    new = x509.load_pem_x509_certificate(p.server_cert.read_bytes())
    assert "api.example.com" in pkimod.cert_sans(new)
    kc = yaml.safe_load((tmp_path / "kubeconfig.yaml").read_text())
    assert kc["clusters"][0]["cluster"]["server"] == "https://10.9.8.7:6443"
    # the server key and cert match and verify against the CA
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(p.server_cert), str(p.server_key))
    new.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_before))
