"""The agent's certificates through CertificateSigningRequests (k8s.io/client-go/util/certificate
and pkg/kubelet/certificate): its client certificate towards the API server and the serving
certificate of its HTTPS endpoint (logs, exec, attach, port-forward), each renewed before it
expires, without a restart.

* A :class:`FileStore` keeps each pair as ``<dir>/<name>-<YYYY-MM-DD-HH-MM-SS>.pem`` (certificate
  then key, mode 0600) with ``<name>-current.pem`` a symlink to the newest, as the kubelet's
  ``/var/lib/kubelet/pki/kubelet-{client,server}-current.pem``.
* A :class:`CertificateManager` sleeps until the rotation deadline — a random point between 70 %
  and 90 % of the certificate's lifetime (notBefore to notAfter), so nodes that joined together
  do not renew together — or until the certificate no longer matches its template (the node's
  addresses changed), then makes a new ECDSA P-256 key and a CSR (``generateName: csr-``) and
  waits up to 15 minutes for the certificate. Failures back off 2 s, 4 s, … (5 tries), then
  retry every 32 s, as the kubelet does.
* The serving template is the kubelet's: CN ``system:node:<name>``, O ``system:nodes``, the
  Node's Hostname/InternalDNS/ExternalDNS addresses as DNS names and its InternalIP/ExternalIP
  addresses as IPs; no template (no request) while the node has no IP address.
* :class:`ServingTLS` is the endpoint's SSLContext: until a serving certificate is issued every
  handshake is refused, as the kubelet's ("no serving certificate available for the kubelet";
  the client hello is answered with ``internal_error``, though asyncio closes the connection
  before that alert is sent); a rotated pair is loaded into the live context.

Keys never leave the node: the CSR carries only the public key. Nothing here logs key material.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import logging
import os
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from kubelite.api import errors
from kubelite.tls.pki import TLS12_CIPHERS, atomic_write

log = logging.getLogger("kubelite.agent.certmanager")

CSR_API = "certificates.k8s.io/v1"
CSR_PLURAL = "certificatesigningrequests"
KUBELET_SERVING_SIGNER = "kubernetes.io/kubelet-serving"
KUBELET_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
KUBE_APISERVER_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"  # other clients (the node's kube-proxy)
CERTIFICATE_WAIT_TIMEOUT = 15 * 60.0  # certificateWaitTimeout
POLL_INTERVAL = 0.5
BACKOFF_FIRST, BACKOFF_FACTOR, BACKOFF_JITTER, BACKOFF_STEPS = 2.0, 2.0, 0.1, 5
RETRY_FOREVER = 32.0  # wait.PollInfinite(32*time.Second, m.rotateCerts)
TEMPLATE_CHECK = 1.0  # how often a dynamic template is compared with the certificate
_TS = "%Y-%m-%d-%H-%M-%S"


# --------------------------------------------------------------------------- templates


@dataclass(frozen=True)
class Template:
    """What a certificate must say (the x509.CertificateRequest template of the kubelet)."""

    common_name: str
    organizations: tuple[str, ...] = ("system:nodes",)
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()

    def satisfied_by(self, cert: x509.Certificate) -> bool:
        """certSatisfiesTemplate: same CN, organizations and SANs (as sets)."""
        cn = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        orgs = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
        if cn != [self.common_name] or set(orgs) != set(self.organizations):
            return False
        dns, ips = _sans(cert)
        return dns == set(self.dns_names) and ips == {str(ipaddress.ip_address(i)) for i in self.ip_addresses}

    def csr(self, key: Any) -> bytes:
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in self.organizations]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, self.common_name))
        b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in self.dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in self.ip_addresses]
        if names:
            b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    return set(ext.get_values_for_type(x509.DNSName)), {str(i) for i in ext.get_values_for_type(x509.IPAddress)}


def client_template(node_name: str) -> Template:
    return Template(f"system:node:{node_name}")


def serving_template(node_name: str, addresses: list[dict[str, Any]]) -> Template | None:
    """newGetTemplateFn + addressesToHostnamesAndIPs: None while the node has no IP address."""
    dns: set[str] = set()
    ips: set[str] = set()
    for a in addresses:
        addr, kind = str(a.get("address") or ""), a.get("type")
        if not addr:
            continue
        try:
            ip = str(ipaddress.ip_address(addr))
        except ValueError:
            ip = ""
        if kind == "Hostname":
            (ips if ip else dns).add(ip or addr)
        elif kind in ("InternalIP", "ExternalIP") and ip:
            ips.add(ip)
        elif kind in ("InternalDNS", "ExternalDNS"):
            dns.add(addr)
    if not ips:
        return None
    return Template(f"system:node:{node_name}", dns_names=tuple(sorted(dns)), ip_addresses=tuple(sorted(ips)))


def usages(key: Any, server: bool) -> list[str]:
    """DefaultKubeletServingGetUsages / DefaultKubeletClientGetUsages: key encipherment only
    for an RSA key."""
    last = "server auth" if server else "client auth"
    if isinstance(key, rsa.RSAPrivateKey):
        return ["digital signature", "key encipherment", last]
    return ["digital signature", last]


# --------------------------------------------------------------------------- rotation deadline


def jittery_duration(total: float, rand: Callable[[], float] = random.random) -> float:
    """wait.Jitter(total, 0.2) - 0.3 total: 70-90 % of the lifetime."""
    return total + rand() * 0.2 * total - 0.3 * total


def rotation_deadline(cert: x509.Certificate, rand: Callable[[], float] = random.random) -> dt.datetime:
    total = (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds()
    return cert.not_valid_before_utc + dt.timedelta(seconds=jittery_duration(total, rand))


def _backoff_delays() -> list[float]:
    """wait.Backoff{Duration: 2s, Factor: 2, Jitter: 0.1, Steps: 5}: the waits between tries."""
    out, d = [], BACKOFF_FIRST
    for _ in range(BACKOFF_STEPS - 1):
        out.append(d + random.random() * BACKOFF_JITTER * d)
        d *= BACKOFF_FACTOR
    return out


# --------------------------------------------------------------------------- store


@dataclass(frozen=True)
class Pair:
    cert_pem: bytes
    key_pem: bytes
    leaf: x509.Certificate
    path: Path | None = None  # the file holding both (None: not from a store)

    @classmethod
    def parse(cls, cert_pem: bytes, key_pem: bytes, path: Path | None = None) -> Pair:
        leaf = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        pub = serialization.PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(serialization.Encoding.DER, pub) != \
                leaf.public_key().public_bytes(serialization.Encoding.DER, pub):
            raise ValueError("the private key does not match the certificate")
        return cls(cert_pem, key_pem, leaf, path)

    @property
    def serial(self) -> int:
        return self.leaf.serial_number

    def valid(self, now: dt.datetime | None = None) -> bool:
        now = now or dt.datetime.now(dt.UTC)
        return self.leaf.not_valid_before_utc <= now < self.leaf.not_valid_after_utc


def _split_pem(data: bytes) -> tuple[bytes, bytes]:
    cert: list[bytes] = []
    key: list[bytes] = []
    block: list[bytes] = []
    for line in data.splitlines(keepends=True):
        block.append(line)
        if line.startswith(b"-----END "):
            (cert if b"CERTIFICATE" in line else key).append(b"".join(block))
            block = []
    return b"".join(cert), b"".join(key)


class FileStore:
    """certificate.NewFileStore: ``<dir>/<name>-<timestamp>.pem`` and ``<name>-current.pem``."""

    def __init__(self, pair_name: str, directory: Path) -> None:
        self.pair_name = pair_name
        self.dir = Path(directory)

    @property
    def current_path(self) -> Path:
        return self.dir / f"{self.pair_name}-current.pem"

    def current(self) -> Pair | None:
        """The current pair, or None when there is none (or it cannot be read)."""
        try:
            data = self.current_path.read_bytes()
            cert, key = _split_pem(data)
            return Pair.parse(cert, key, self.current_path.resolve())
        except (OSError, ValueError) as exc:
            if self.current_path.exists() or self.current_path.is_symlink():
                log.warning("the %s pair in %s is unusable: %s", self.pair_name, self.current_path, exc)
            return None

    def update(self, cert_pem: bytes, key_pem: bytes) -> Pair:
        """Write a new pair and make it the current one (the symlink is replaced atomically)."""
        pair = Pair.parse(cert_pem, key_pem)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.dir / f"{self.pair_name}-{dt.datetime.now(dt.UTC).strftime(_TS)}.pem"
        atomic_write(path, cert_pem.rstrip(b"\n") + b"\n" + key_pem, 0o600)
        tmp = self.dir / f".{self.pair_name}-current.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(path.name)
        os.replace(tmp, self.current_path)
        return Pair(pair.cert_pem, pair.key_pem, pair.leaf, path)

    def write_kubeconfig(self, path: Path, server: str, ca_pem: bytes, user: str) -> None:
        """A kubeconfig (mode 0600) whose client certificate and key are the current pair's file,
        as the kubelet's: rotations then need no new kubeconfig."""
        import yaml

        from kubelite.tls.pki import kubeconfig_dict

        pair = self.current()
        if pair is None:
            raise ValueError(f"no current {self.pair_name} pair in {self.dir}")
        cfg = kubeconfig_dict(server, ca_pem, pair.cert_pem, pair.key_pem, user)
        current = str(self.current_path.resolve().parent / self.current_path.name)
        cfg["users"][0]["user"] = {"client-certificate": current, "client-key": current}
        atomic_write(Path(path), yaml.safe_dump(cfg, sort_keys=False).encode(), 0o600)


# --------------------------------------------------------------------------- the manager


class CertificateError(Exception):
    pass


class CertificateManager:
    """One certificate kept current through CSRs (certificate.manager).

    ``template()`` says what the certificate must name (None: nothing to request yet);
    ``on_update(pair)`` is called with each new pair (swap the live TLS context there)."""

    def __init__(self, client: Any, name: str, signer: str, store: FileStore,
                 template: Callable[[], Template | None], on_update: Callable[[Pair], None], *,
                 server: bool, initial: Pair | None = None, dynamic_template: bool = False) -> None:
        self.client = client
        self.name = name
        self.signer = signer
        self.store = store
        self.template = template
        self.on_update = on_update
        self.server = server
        self.dynamic_template = dynamic_template
        self.current = initial
        self.rotations = 0

    def satisfies_template(self) -> bool:
        tmpl = self.template()
        return self.current is not None and (tmpl is None or tmpl.satisfied_by(self.current.leaf))

    def next_rotation_deadline(self) -> dt.datetime:
        now = dt.datetime.now(dt.UTC)
        if self.current is None or not self.satisfies_template():
            return now
        deadline = rotation_deadline(self.current.leaf)
        log.info("%s certificate expiration is %s, rotation deadline is %s", self.name,
                 self.current.leaf.not_valid_after_utc.isoformat(), deadline.isoformat())
        return deadline

    async def run(self) -> None:
        log.info("%s certificate rotation is enabled", self.name)
        while True:
            deadline = self.next_rotation_deadline()
            await self._sleep_until(deadline)
            if self.template() is None:  # no addresses yet: nothing to ask for
                await asyncio.sleep(TEMPLATE_CHECK)
                continue
            if await self._rotate_with_backoff():
                continue
            log.error("%s certificate: reached backoff limit, still unable to rotate certs", self.name)
            while not await self.rotate():
                await asyncio.sleep(RETRY_FOREVER)

    async def _sleep_until(self, deadline: dt.datetime) -> None:
        wait = (deadline - dt.datetime.now(dt.UTC)).total_seconds()
        if wait <= 0:
            return
        log.info("%s certificate: waiting %.0fs for next certificate rotation", self.name, wait)
        end = time.monotonic() + wait
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(left, TEMPLATE_CHECK) if self.dynamic_template else left)
            if self.dynamic_template and not self.satisfies_template() and self.template() is not None:
                log.info("%s certificate template changed, rotating", self.name)
                return

    async def _rotate_with_backoff(self) -> bool:
        for delay in [*_backoff_delays(), None]:
            if await self.rotate():
                return True
            if delay is not None:
                await asyncio.sleep(delay)
        return False

    async def rotate(self) -> bool:
        """rotateCerts: a new key, a CSR, the certificate; True when a new pair is in use."""
        tmpl = self.template()
        if tmpl is None:
            return False
        log.info("%s certificate: rotating certificates", self.name)
        try:
            cert_pem, key_pem = await self.request(tmpl)
            pair = await asyncio.to_thread(self.store.update, cert_pem, key_pem)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the API, the approval, the store: try again later
            log.error("%s certificate: %s", self.name, exc)
            return False
        self.current = pair
        self.rotations += 1
        self.on_update(pair)
        log.info("%s certificate rotated: serial %x, valid until %s", self.name, pair.serial,
                 pair.leaf.not_valid_after_utc.isoformat())
        return True

    async def request(self, tmpl: Template) -> tuple[bytes, bytes]:
        """csr.RequestCertificate + WaitForCertificate: (certificate PEM, key PEM)."""
        key = ec.generate_private_key(ec.SECP256R1())
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        body = {"apiVersion": CSR_API, "kind": "CertificateSigningRequest", "metadata": {"generateName": "csr-"},
                "spec": {"request": base64.b64encode(tmpl.csr(key)).decode(), "signerName": self.signer,
                         "usages": usages(key, self.server)}}
        try:
            created = await self.client.create(CSR_API, CSR_PLURAL, body)
        except errors.StatusError as exc:
            raise CertificateError(f"failed while requesting a signed certificate from the control plane: "
                                   f"cannot create certificate signing request: {exc}") from exc
        name = created["metadata"]["name"]
        log.info("%s certificate: certificate signing request %s created", self.name, name)
        deadline = time.monotonic() + CERTIFICATE_WAIT_TIMEOUT
        while True:
            csr = await self.client.get(CSR_API, CSR_PLURAL, name)
            status = csr.get("status") or {}
            for c in status.get("conditions") or []:
                if c.get("type") == "Denied":
                    raise CertificateError(f"certificate signing request {name} is denied, reason: "
                                           f"{c.get('reason', '')}, message: {c.get('message', '')}")
                if c.get("type") == "Failed":
                    raise CertificateError(f"certificate signing request {name} failed, reason: "
                                           f"{c.get('reason', '')}, message: {c.get('message', '')}")
            if status.get("certificate"):
                return base64.b64decode(status["certificate"]), key_pem
            if time.monotonic() > deadline:
                raise CertificateError(f"certificate request was not signed: timed out waiting for {name}")
            await asyncio.sleep(POLL_INTERVAL)


def usable(pair: Pair | None, tmpl: Template | None) -> Pair | None:
    """A stored pair worth starting with: unexpired and naming what the template names."""
    if pair is None or not pair.valid():
        return None
    if tmpl is not None and not tmpl.satisfied_by(pair.leaf):
        return None
    return pair


# --------------------------------------------------------------------------- the endpoint's TLS


class ServingTLS:
    """The agent endpoint's TLS: TLS >= 1.2, a client certificate from the cluster CA when one is
    presented (callers of /metrics and /stats may use a bearer token instead);
    its serving pair is whatever :meth:`load` was last given. Before the first one, handshakes
    are refused (never with a self-made certificate)."""

    def __init__(self, ca_pem: bytes) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(TLS12_CIPHERS)
        ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
        ctx.load_verify_locations(cadata=ca_pem.decode())
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.set_alpn_protocols(["http/1.1"])
        ctx.sni_callback = self._client_hello
        self.context = ctx
        self.serial: int | None = None

    def _client_hello(self, sslobj: Any, server_name: str | None, ctx: ssl.SSLContext) -> int | None:
        if self.serial is None:
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        return None

    def load(self, pair: Pair) -> None:
        """Present ``pair`` from the next handshake on (connections already open keep theirs)."""
        if pair.path is None:
            raise ValueError("a serving pair must come from a store")
        self.context.load_cert_chain(str(pair.path))
        self.serial = pair.serial


__all__ = ["KUBE_APISERVER_CLIENT_SIGNER", "CertificateManager", "FileStore", "Pair", "ServingTLS", "Template", "client_template",
           "jittery_duration", "rotation_deadline", "serving_template", "usable", "usages"]
