"""Cluster TLS material: a CA, the API server's serving cert, an admin client cert and
the service-account signing key pair.

Created on first start under ``<data_dir>/tls/`` and reused afterwards.  The serving cert
is re-issued when its SAN set changes (new host address, new ``extra_sans``) or when it
expires within 30 days; leaf certs are re-issued if the CA was replaced.

Key files are written with mode 0600, atomically (temp file + rename).  Nothing here logs
key material.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import ipaddress
import json
import logging
import os
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger(__name__)

CA_DAYS = 3650
SERVER_DAYS = 365
CLIENT_DAYS = 365
RENEW_BEFORE = dt.timedelta(days=30)
BACKDATE = dt.timedelta(minutes=5)

CA_CN = "kubelite-ca"
SERVER_CN = "kube-apiserver"
ADMIN_USER = "kubelite-admin"
ADMIN_GROUPS = ("system:masters",)

SERVICE_DNS_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)

# TLS 1.2 suites (TLS 1.3 suites are all AEAD and configured separately by OpenSSL).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS:!RC4:!3DES"


@dataclass(frozen=True)
class PKI:
    dir: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path
    ca_pem: bytes

    @classmethod
    def at(cls, data_dir: Path) -> PKI:
        d = Path(data_dir) / "tls"
        ca_pem = (d / "ca.crt").read_bytes() if (d / "ca.crt").exists() else b""
        return cls(
            dir=d,
            ca_cert=d / "ca.crt",
            ca_key=d / "ca.key",
            server_cert=d / "apiserver.crt",
            server_key=d / "apiserver.key",
            admin_cert=d / "admin.crt",
            admin_key=d / "admin.key",
            sa_key=d / "sa.key",
            sa_pub=d / "sa.pub",
            ca_pem=ca_pem,
        )


# --------------------------------------------------------------------------- files


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` via a temp file in the same dir + rename; ``mode`` applied
    before any byte is written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _locked(d: Path) -> Iterator[None]:
    """Serialise concurrent ensure_pki calls (several processes on one data dir)."""
    fd = os.open(d / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# --------------------------------------------------------------------------- keys/certs


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _load_key(path: Path) -> Any:
    return serialization.load_pem_private_key(Path(path).read_bytes(), password=None)


def _load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def _name(cn: str, orgs: Iterable[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _make_ca(days: int = CA_DAYS) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_ec_key()
    now = _now()
    name = _name(CA_CN)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _issue(ca_cert: x509.Certificate, ca_key, *, cn: str, orgs: Iterable[str] = (),
           server: bool = False, sans: Iterable[str] = (), days: int = CLIENT_DAYS,
           key: ec.EllipticCurvePrivateKey | None = None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Issue a leaf certificate signed by the CA (client auth, or server auth with SANs)."""
    key = key or _new_ec_key()
    now = _now()
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, orgs))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                              else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_aki(ca_cert), critical=False)
    )
    sans = list(sans)
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName([_general_name(s) for s in sans]), critical=False)
    return b.sign(ca_key, hashes.SHA256()), key


def _aki(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(cast(Any, ca_cert.public_key()))


def _pub_der(pub: Any) -> bytes:
    return pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _general_name(s: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(s))
    except ValueError:
        return x509.DNSName(s)


def _canon_san(s: str) -> str | None:
    s = s.strip()
    if not s:
        return None
    try:
        return str(ipaddress.ip_address(s.strip("[]")))
    except ValueError:
        pass
    try:
        s.encode("ascii")
    except UnicodeEncodeError:
        try:
            s = s.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    return s.lower().rstrip(".")


def cert_sans(cert: x509.Certificate) -> set[str]:
    """The SANs of a certificate as canonical strings (DNS names lowercased, IPs normalised)."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    out = {n.lower() for n in ext.get_values_for_type(x509.DNSName)}
    out |= {str(ip) for ip in ext.get_values_for_type(x509.IPAddress)}
    return out


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except Exception:  # InvalidSignature, ValueError (wrong issuer), TypeError (key type)
        return False


def _valid_for(cert: x509.Certificate, margin: dt.timedelta = RENEW_BEFORE) -> bool:
    now = _now()
    return cert.not_valid_before_utc <= now + BACKDATE and cert.not_valid_after_utc - margin > now


# --------------------------------------------------------------------------- host addresses


def _ok_host_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast)


def _addrs_from_ip_cmd() -> list[str] | None:
    exe = shutil.which("ip") or next((p for p in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip")
                                      if os.path.exists(p)), None)
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "-j", "addr", "show"], capture_output=True, timeout=5, check=True).stdout
        data = json.loads(out or b"[]")
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    addrs: list[str] = []
    for iface in data:
        for a in iface.get("addr_info", []) or []:
            if a.get("family") not in ("inet", "inet6") or a.get("scope") in ("host", "link"):
                continue
            if a.get("temporary") or a.get("tentative") or a.get("dadfailed"):
                continue  # IPv6 privacy addresses rotate: would force re-issuing the cert
            if a.get("local"):
                addrs.append(a["local"])
    return addrs


def _addrs_fallback() -> list[str]:
    addrs: list[str] = []
    # IPv4: SIOCGIFADDR per interface (primary address only).
    SIOCGIFADDR = 0x8915
    try:
        ifaces = socket.if_nameindex()
    except OSError:
        ifaces = []
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in ifaces:
            try:
                res = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
                addrs.append(socket.inet_ntoa(res[20:24]))
            except OSError:
                continue
    # IPv6: /proc/net/if_inet6 — "addr ifindex prefixlen scope flags name".
    with contextlib.suppress(OSError), open("/proc/net/if_inet6") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 6:
                continue
            flags = int(parts[4], 16)
            if flags & 0x01:  # IFA_F_TEMPORARY
                continue
            h = parts[0]
            addrs.append(str(ipaddress.IPv6Address(bytes.fromhex(h))))
    return addrs


def host_addresses() -> list[str]:
    """The host's non-loopback, non-link-local IPv4/IPv6 addresses (sorted, canonical)."""
    raw = _addrs_from_ip_cmd()
    if raw is None:
        raw = _addrs_fallback()
    out: set[str] = set()
    for a in raw:
        try:
            ip = ipaddress.ip_address(a.split("%", 1)[0])
        except ValueError:
            continue
        if _ok_host_ip(ip):
            out.add(str(ip))
    return sorted(out, key=lambda s: (":" in s, s))


def server_sans(extra_sans: Iterable[str] = ()) -> list[str]:
    """The SAN set the API server serving cert should carry."""
    names = ["localhost", "127.0.0.1", "::1"]
    host = socket.gethostname()
    if host:
        names.append(host)
    names += host_addresses()
    names += SERVICE_DNS_NAMES
    names += list(extra_sans)
    out: list[str] = []
    for n in names:
        c = _canon_san(n)
        if c and c not in out:
            out.append(c)
    return out


# --------------------------------------------------------------------------- ensure_pki


def _write_pair(cert_path: Path, key_path: Path, cert: x509.Certificate, key) -> None:
    atomic_write(key_path, key_pem(key), 0o600)
    atomic_write(cert_path, cert_pem(cert), 0o644)


def ensure_pki(data_dir: Path, extra_sans: list[str] | tuple[str, ...] = ()) -> PKI:
    """Create (or reuse) all TLS material under ``<data_dir>/tls``. Idempotent."""
    pki = PKI.at(data_dir)
    pki.dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(pki.dir, 0o700)
    with _locked(pki.dir):
        # --- CA
        ca_new = False
        ca = ca_key = None
        if pki.ca_cert.exists() and pki.ca_key.exists():
            try:
                ca, ca_key = _load_cert(pki.ca_cert), _load_key(pki.ca_key)
                if _pub_der(ca.public_key()) != _pub_der(ca_key.public_key()):
                    raise ValueError("CA key does not match CA certificate")
            except ValueError as e:
                log.warning("CA material in %s unusable (%s); creating a new CA", pki.dir, e)
                ca = ca_key = None
            else:
                if not _valid_for(ca, dt.timedelta(0)):
                    log.warning("CA certificate in %s expired; creating a new CA", pki.dir)
                    ca = ca_key = None
        if ca is None:
            ca, ca_key = _make_ca()
            _write_pair(pki.ca_cert, pki.ca_key, ca, ca_key)
            ca_new = True
            log.info("created cluster CA in %s", pki.dir)

        # --- API server serving cert
        want = set(server_sans(extra_sans))
        reissue = ca_new or not (pki.server_cert.exists() and pki.server_key.exists())
        if not reissue:
            try:
                cur = _load_cert(pki.server_cert)
                _load_key(pki.server_key)
                if cert_sans(cur) != want:
                    log.info("API server SANs changed; re-issuing serving certificate")
                    reissue = True
                elif not _valid_for(cur) or not _issued_by(cur, ca):
                    log.info("API server certificate expiring or not from the CA; re-issuing")
                    reissue = True
            except ValueError:
                reissue = True
        if reissue:
            cert, key = _issue(ca, ca_key, cn=SERVER_CN, server=True, sans=sorted(want, key=_san_sort),
                               days=SERVER_DAYS)
            _write_pair(pki.server_cert, pki.server_key, cert, key)

        # --- admin client cert
        reissue = ca_new or not (pki.admin_cert.exists() and pki.admin_key.exists())
        if not reissue:
            try:
                cur = _load_cert(pki.admin_cert)
                _load_key(pki.admin_key)
                reissue = not _valid_for(cur) or not _issued_by(cur, ca)
            except ValueError:
                reissue = True
        if reissue:
            cert, key = _issue(ca, ca_key, cn=ADMIN_USER, orgs=ADMIN_GROUPS, days=CLIENT_DAYS)
            _write_pair(pki.admin_cert, pki.admin_key, cert, key)

        # --- service-account signing key pair (RSA 2048 -> RS256, the Kubernetes default)
        if not (pki.sa_key.exists() and pki.sa_pub.exists()):
            sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            atomic_write(pki.sa_key, key_pem(sa), 0o600)
            atomic_write(pki.sa_pub, sa.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)

    return PKI.at(data_dir)


def _san_sort(s: str) -> tuple[int, str]:
    try:
        ipaddress.ip_address(s)
        return (1, s)
    except ValueError:
        return (0, s)


def load_pki(data_dir: Path) -> PKI:
    """The existing PKI of a data dir, without creating or re-issuing anything."""
    pki = PKI.at(data_dir)
    if not (pki.ca_cert.exists() and pki.ca_key.exists()):
        raise FileNotFoundError(f"no cluster CA under {pki.dir}; start the server once first")
    return pki


# --------------------------------------------------------------------------- client certs / kubeconfig


def issue_client_cert(pki: PKI, user: str, groups: list[str] | tuple[str, ...],
                      days: int = CLIENT_DAYS) -> tuple[bytes, bytes]:
    """A client certificate (CN=user, O=groups) signed by the cluster CA: (cert_pem, key_pem)."""
    if not user:
        raise ValueError("user name must not be empty")
    ca, ca_key = _load_cert(pki.ca_cert), _load_key(pki.ca_key)
    cert, key = _issue(ca, ca_key, cn=user, orgs=list(groups), days=days)
    return cert_pem(cert), key_pem(key)


def kubeconfig_dict(server_url: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, user: str,
                    cluster: str = "kubelite", context: str = "kubelite") -> dict:
    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode("ascii")

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {
            "server": server_url, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": user, "user": {
            "client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)}}],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
        "current-context": context,
        "preferences": {},
    }


def write_kubeconfig(path: Path, server_url: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes,
                     user: str, cluster: str = "kubelite", context: str = "kubelite") -> None:
    """Write a standard kubeconfig with embedded credentials; mode 0600, atomic."""
    cfg = kubeconfig_dict(server_url, ca_pem, cert_pem, key_pem, user, cluster, context)
    atomic_write(Path(path), yaml.safe_dump(cfg, sort_keys=False).encode(), 0o600)


# --------------------------------------------------------------------------- SSL contexts


def server_ssl_context(pki: PKI) -> ssl.SSLContext:
    """TLS >= 1.2, AEAD/ECDHE suites only; client certs verified against the CA when presented."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    ctx.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    ctx.load_verify_locations(cafile=str(pki.ca_cert))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def client_ssl_context(pki: PKI, cert: Path | bytes | None = None,
                       key: Path | bytes | None = None) -> ssl.SSLContext:
    """A client context trusting only the cluster CA, with hostname checking.

    ``cert``/``key`` (paths or PEM bytes) add a client certificate, e.g.
    ``client_ssl_context(pki, pki.admin_cert, pki.admin_key)``; ``None`` means no client cert.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.load_verify_locations(cadata=pki.ca_pem.decode() if pki.ca_pem else None,
                              cafile=None if pki.ca_pem else str(pki.ca_cert))
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    if cert is not None:
        if key is None and not isinstance(cert, bytes):
            raise ValueError("client key required with a client certificate")
        if isinstance(cert, bytes) or isinstance(key, bytes):
            _load_chain_from_pem(ctx, cert, key)
        else:
            ctx.load_cert_chain(str(cert), str(key))
    return ctx


def _load_chain_from_pem(ctx: ssl.SSLContext, cert: Path | bytes, key: Path | bytes | None) -> None:
    """ssl can only load cert chains from files: use a private temp dir, removed right after."""
    cert_b = cert if isinstance(cert, bytes) else Path(cert).read_bytes()
    key_b = b"" if key is None else (key if isinstance(key, bytes) else Path(key).read_bytes())
    with tempfile.TemporaryDirectory(prefix="kubelite-tls-") as d:
        os.chmod(d, 0o700)
        p = Path(d) / "client.pem"
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(cert_b.rstrip(b"\n") + b"\n" + key_b)
        ctx.load_cert_chain(str(p))


# --------------------------------------------------------------------------- kubelet (node agent) certs

KUBELET_CLIENT_CN = "kube-apiserver-kubelet-client"
KUBELET_CLIENT_GROUPS = ("system:masters",)


@dataclass(frozen=True)
class KubeletCerts:
    """The apiserver→agent client pair and the agent's serving pair (under ``<data_dir>/tls``)."""

    client_cert: Path
    client_key: Path
    serving_cert: Path
    serving_key: Path


def _needs_reissue(cert_path: Path, key_path: Path, ca: x509.Certificate, sans: set[str] | None) -> bool:
    if not (cert_path.exists() and key_path.exists()):
        return True
    try:
        cur = _load_cert(cert_path)
        _load_key(key_path)
    except ValueError:
        return True
    if not _valid_for(cur) or not _issued_by(cur, ca):
        return True
    return sans is not None and cert_sans(cur) != sans


def ensure_kubelet_certs(pki: PKI, node_addresses: Iterable[str] = (), node_name: str = "") -> KubeletCerts:
    """Issue (or reuse) the certificates of the apiserver ↔ node agent channel. Idempotent.

    (a) ``apiserver-kubelet-client``: CN kube-apiserver-kubelet-client, O system:masters,
        presented by the API server to the agent;
    (b) ``kubelet``: the agent's serving cert with the node's addresses (plus localhost and
        the host's own addresses) as SANs.
    """
    d = pki.dir
    kc = KubeletCerts(client_cert=d / "apiserver-kubelet-client.crt", client_key=d / "apiserver-kubelet-client.key",
                      serving_cert=d / "kubelet.crt", serving_key=d / "kubelet.key")
    names = ["localhost", "127.0.0.1", "::1", *host_addresses(), *node_addresses]
    host = node_name or socket.gethostname()
    if host:
        names.append(host)
    want: list[str] = []
    for n in names:
        c = _canon_san(n)
        if c and c not in want:
            want.append(c)
    with _locked(d):
        ca, ca_key = _load_cert(pki.ca_cert), _load_key(pki.ca_key)
        if _needs_reissue(kc.client_cert, kc.client_key, ca, None):
            cert, key = _issue(ca, ca_key, cn=KUBELET_CLIENT_CN, orgs=KUBELET_CLIENT_GROUPS, days=CLIENT_DAYS)
            _write_pair(kc.client_cert, kc.client_key, cert, key)
        if _needs_reissue(kc.serving_cert, kc.serving_key, ca, set(want)):
            cert, key = _issue(ca, ca_key, cn=host or "kubelite-node", server=True,
                               sans=sorted(want, key=_san_sort), days=SERVER_DAYS)
            _write_pair(kc.serving_cert, kc.serving_key, cert, key)
    return kc


def kubelet_server_ssl_context(pki: PKI, kc: KubeletCerts) -> ssl.SSLContext:
    """The agent's TLS: its serving cert; a client certificate, when presented, must come from
    the cluster CA (callers of /metrics and /stats may use a bearer token instead)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    ctx.load_cert_chain(str(kc.serving_cert), str(kc.serving_key))
    ctx.load_verify_locations(cafile=str(pki.ca_cert))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def kubelet_client_ssl_context(pki: PKI, kc: KubeletCerts | None = None) -> ssl.SSLContext:
    """The API server's TLS towards node agents (kubelet-client cert, agent cert checked)."""
    kc = kc or ensure_kubelet_certs(pki)
    return client_ssl_context(pki, kc.client_cert, kc.client_key)
