"""Joining a cluster with a bootstrap token (kubeadm join discovery + kubelet TLS bootstrap).

    kubelite agent --server https://HOST:6443 --token <id>.<secret> \\
                   (--ca-cert-hash sha256:<hex> | --ca-file FILE) --data-dir DIR --node-name N

When the node's kubeconfig does not exist yet:

1. **Discovery** (kubeadm's token discovery): without credentials, read
   ``kube-public/cluster-info``; its kubeconfig must carry a detached JWS
   ``jws-kubeconfig-<token id>`` made with the token's secret (proves the server knows the
   token), and its CA must match the ``--ca-cert-hash`` pin (sha256 of the CA's DER
   SubjectPublicKeyInfo). With ``--ca-file`` the CA is taken from that file instead (and is
   still checked against a pin when one is given). Only then is the token sent, over TLS
   verified against that CA.
2. **TLS bootstrap** (kubelet): a new ECDSA P-256 key and a CertificateSigningRequest for
   CN ``system:node:<name>``, O ``system:nodes``, signer
   ``kubernetes.io/kube-apiserver-client-kubelet``, usages digital signature + client auth,
   created as ``system:bootstrap:<id>``; the controller manager approves and signs it.
3. The node kubeconfig (server, CA, client certificate and key) is written with mode 0600.
   With a ``cert_dir`` (the agent's DATA_DIR/pki) the pair goes to the certificate store
   there (``kubelet-client-current.pem``, see ``agent/certmanager.py``) and the kubeconfig names
   that file, as the kubelet's does: its rotations then need no new kubeconfig.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

log = logging.getLogger("kubelite.agent.bootstrap")

CLUSTER_INFO_PATH = "/api/v1/namespaces/kube-public/configmaps/cluster-info"
CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
USAGES = ["digital signature", "client auth"]  # an ECDSA key: no key encipherment
WAIT_TIMEOUT = 300.0
DISCOVERY_RETRY = 10.0


class BootstrapError(Exception):
    """Joining failed; the message says why (printed as is by ``kubelite agent``)."""


def ca_pin(ca_pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(ca_pem)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def check_pin(ca_pem: bytes, pins: list[str]) -> None:
    for p in pins:
        if not p.lower().startswith("sha256:") or len(p) != 71:
            raise BootstrapError(f'invalid --ca-cert-hash {p!r}: expected "sha256:" and 64 hex digits')
    actual = ca_pin(ca_pem)
    if not any(hmac.compare_digest(actual, p.lower()) for p in pins):
        raise BootstrapError(f'cluster CA found in cluster-info ConfigMap is invalid: none of the public keys '
                             f'"{actual}" are pinned')


def _split_token(token: str) -> tuple[str, str]:
    from kubelite.api.bootstraptoken import TOKEN_RE, parse_token

    parsed = parse_token(token)
    if parsed is None:
        raise BootstrapError(f"the bootstrap token {token!r} was not of the form {TOKEN_RE.pattern!r}")
    return parsed


def verify_cluster_info(cm: dict[str, Any], token: str, pins: list[str]) -> tuple[bytes, str]:
    """(CA PEM, server) of a cluster-info ConfigMap, after the JWS and pin checks."""
    from kubelite.api.bootstraptoken import JWS_PREFIX, KUBECONFIG_KEY, detached_signature

    tid, tsecret = _split_token(token)
    data = cm.get("data") or {}
    content = data.get(KUBECONFIG_KEY)
    if not content:
        raise BootstrapError("there is no kubeconfig in the cluster-info ConfigMap")
    sig = data.get(JWS_PREFIX + tid)
    if not sig:
        raise BootstrapError(f"there is no JWS signed token in the cluster-info ConfigMap. This token id \"{tid}\" "
                             f"is invalid for this cluster, can't connect")
    if not hmac.compare_digest(sig, detached_signature(content, tid, tsecret)):
        raise BootstrapError("failed to verify JWS signature of received cluster info object, can't trust this "
                             "API Server")
    try:
        kc = yaml.safe_load(content)
        cluster = kc["clusters"][0]["cluster"]
        ca_pem = base64.b64decode(cluster["certificate-authority-data"])
    except (yaml.YAMLError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise BootstrapError(f"malformed kubeconfig in the cluster-info ConfigMap: {exc}") from exc
    check_pin(ca_pem, pins)
    return ca_pem, cluster.get("server", "")


def _digested_name(pub_der: bytes, subject: x509.Name, usages: list[str]) -> str:
    """csr.digestedName: node-csr-<base64url(sha512(key, subject, usages))>."""
    h = hashlib.sha512()
    h.update(pub_der)
    h.update(subject.rfc4514_string().encode())
    for u in usages:
        h.update(u.encode())
    return "node-csr-" + base64.urlsafe_b64encode(h.digest()).decode().rstrip("=")[:43]


def make_csr(node_name: str) -> tuple[bytes, bytes, str]:
    """(key PEM, CSR PEM, CSR object name) for the node's client certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node_name}")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key_pem, csr.public_bytes(serialization.Encoding.PEM), _digested_name(pub, subject, USAGES)


async def _json(resp: aiohttp.ClientResponse) -> Any:
    raw = await resp.read()
    try:
        return orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return {"message": raw[:200].decode(errors="replace")}


async def fetch_cluster_info(server: str, timeout: float = 10.0) -> dict[str, Any]:
    """kube-public/cluster-info, read without credentials and without trusting the server yet."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as s:
        try:
            async with s.get(server.rstrip("/") + CLUSTER_INFO_PATH,
                             timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                body = await _json(resp)
                if resp.status != 200:
                    raise BootstrapError(f"cannot read the cluster-info ConfigMap from {server}: "
                                         f"{resp.status} {body.get('message', '')}".rstrip())
                return body
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BootstrapError(f"cannot reach the API server {server}: {exc}") from exc


async def request_certificate(server: str, ca_pem: bytes, token: str, node_name: str,
                              timeout: float = WAIT_TIMEOUT) -> tuple[bytes, bytes]:
    """Create the CSR as the bootstrap user and wait for its certificate: (cert PEM, key PEM)."""
    key_pem, csr_pem, name = make_csr(node_name)
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json",
               "Content-Type": "application/json", "User-Agent": "kubelite-agent/bootstrap"}
    body = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": name},
            "spec": {"request": base64.b64encode(csr_pem).decode(), "signerName": SIGNER, "usages": USAGES}}
    base = server.rstrip("/")
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        try:
            async with s.post(base + CSR_PATH, data=orjson.dumps(body)) as resp:
                out = await _json(resp)
                if resp.status == 401:
                    raise BootstrapError("the API server refused the bootstrap token (401 Unauthorized): it is "
                                         "unknown, expired or not usable for authentication")
                if resp.status >= 400:
                    raise BootstrapError(f"cannot create the certificate signing request: {resp.status} "
                                         f"{out.get('message', '')}")
        except (aiohttp.ClientError, ssl.SSLError) as exc:
            raise BootstrapError(f"cannot reach the API server {server}: {exc}") from exc
        log.info("certificate signing request %s created; waiting for approval", name)
        deadline = time.monotonic() + timeout
        while True:
            async with s.get(f"{base}{CSR_PATH}/{name}") as resp:
                csr = await _json(resp)
                if resp.status >= 400:
                    raise BootstrapError(f"cannot read the certificate signing request {name}: {resp.status} "
                                         f"{csr.get('message', '')}")
            status = csr.get("status") or {}
            for c in status.get("conditions") or []:
                if c.get("type") in ("Denied", "Failed"):
                    raise BootstrapError(f"certificate signing request {name} {c['type'].lower()}: "
                                         f"{c.get('reason', '')} {c.get('message', '')}".rstrip())
            if status.get("certificate"):
                return base64.b64decode(status["certificate"]), key_pem
            if time.monotonic() > deadline:
                raise BootstrapError(f"timed out after {timeout:g}s waiting for the certificate of {name} "
                                     f"(approve it with `kubectl certificate approve {name}`)")
            await asyncio.sleep(0.5)


async def bootstrap(server: str, token: str, kubeconfig: Path, node_name: str, *, ca_cert_hashes: list[str] | None = None,
                    ca_file: Path | None = None, timeout: float = WAIT_TIMEOUT, cert_dir: Path | None = None) -> Path:
    """Join: discovery, TLS bootstrap, then write ``kubeconfig`` (mode 0600). Returns its path."""
    from kubelite.tls.pki import write_kubeconfig

    pins = list(ca_cert_hashes or [])
    _split_token(token)
    if not server.startswith("https://"):
        raise BootstrapError(f"--server must be an https:// URL, not {server!r}")
    if ca_file is not None:
        try:
            ca_pem = Path(ca_file).read_bytes()
            x509.load_pem_x509_certificate(ca_pem)
        except (OSError, ValueError) as exc:
            raise BootstrapError(f"cannot load the CA from {ca_file}: {exc}") from exc
        if pins:
            check_pin(ca_pem, pins)
    else:
        if not pins:
            raise BootstrapError("a CA pin is required to join with a token: --ca-cert-hash sha256:<hex> "
                                 "(printed by `kubelite token create`) or --ca-file FILE")
        # the JWS for a token made a moment ago may not be published yet: retry that a little
        deadline = time.monotonic() + DISCOVERY_RETRY
        while True:
            try:
                ca_pem, _ = verify_cluster_info(await fetch_cluster_info(server), token, pins)
                break
            except BootstrapError as exc:
                if "no JWS signed token" not in str(exc) or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1.0)
        log.info("cluster CA verified against the pin %s", ca_pin(ca_pem))
    cert_pem, key_pem = await request_certificate(server, ca_pem, token, node_name, timeout)
    user = f"system:node:{node_name}"
    if cert_dir is None:
        write_kubeconfig(Path(kubeconfig), server, ca_pem, cert_pem, key_pem, user)
    else:
        from kubelite.agent.certmanager import FileStore

        store = FileStore("kubelet-client", Path(cert_dir))
        store.update(cert_pem, key_pem)
        store.write_kubeconfig(Path(kubeconfig), server, ca_pem, user)
    log.info("node client certificate issued; wrote %s", kubeconfig)
    return Path(kubeconfig)


__all__ = ["BootstrapError", "bootstrap", "ca_pin", "check_pin", "make_csr", "verify_cluster_info"]
