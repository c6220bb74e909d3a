"""The CSR controllers of kube-controller-manager (pkg/controller/certificates):

* :class:`CSRApprover` (csrapproving): auto-approves kubelet client certificate requests —
  signer ``kubernetes.io/kube-apiserver-client-kubelet``, CN ``system:node:<name>``,
  O ``system:nodes``, no SANs, usages {digital signature, (key encipherment,) client auth} —
  when a SubjectAccessReview for the requestor allows ``create`` on
  ``certificatesigningrequests/selfnodeclient`` (CN is the requestor itself) or
  ``certificatesigningrequests/nodeclient``;
  It also approves kubelet *serving* requests (``kubernetes.io/kubelet-serving``), which
  kube-controller-manager leaves to an external approver (k0s and kubelet-csr-approver do it
  this way): the request must pass ``ValidateKubeletServingCSR``, come from the node it names
  (user ``system:node:<name>`` in ``system:nodes``, CN = that user), be allowed to create CSRs
  (SubjectAccessReview), and ask only for names and addresses of that Node's
  ``status.addresses`` (:func:`serving_approval_error`). And it approves each node's request
  for the credential of the kube-proxy it runs (k3s's agents get theirs from the supervisor
  with the node token; kube-controller-manager has no such recognizer), under the rule of
  :func:`kube_proxy_approval_error`. Anything else stays pending for ``kubectl certificate approve``.
* :class:`CSRSigner` (csrsigning): issues certificates from the cluster CA for approved
  requests of ``kubernetes.io/kube-apiserver-client-kubelet``,
  ``kubernetes.io/kube-apiserver-client`` and ``kubernetes.io/kubelet-serving``, honouring
  ``spec.expirationSeconds`` (at most ``--cluster-signing-duration``, default one year; at
  least 10 minutes), or marks them Failed (``SignerValidationFailure``) when the request does
  not suit the signer.

Both watch the CSR store and write through it (``/approval`` and ``/status``), like the other
in-process controllers.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime as dt
import ipaddress
import logging
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubelite.api import errors
from kubelite.api.meta import now_rfc3339
from kubelite.apiserver.registry import WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.controllers.base import WorkQueue, informer
from kubelite.kinds import certificates as certs
from kubelite.kinds.base import Obj

log = logging.getLogger("kubelite.controllers.csr")

FIELD_MANAGER = "kube-controller-manager"
SIGNING_DURATION = dt.timedelta(days=365)  # --cluster-signing-duration default (8760h)
BACKDATE = dt.timedelta(minutes=5)
SHORT = dt.timedelta(hours=8)
MIN_DURATION = dt.timedelta(minutes=10)
RETRY_SECONDS = 1.0

KUBELET_CLIENT_USAGES = frozenset({"digital signature", "key encipherment", "client auth"})
KUBELET_CLIENT_USAGES_NO_RSA = frozenset({"digital signature", "client auth"})
KUBELET_SERVING_USAGES = frozenset({"digital signature", "key encipherment", "server auth"})
KUBELET_SERVING_USAGES_NO_RSA = frozenset({"digital signature", "server auth"})
SIGNED_BY_US = (certs.KUBE_APISERVER_CLIENT_KUBELET_SIGNER, certs.KUBE_APISERVER_CLIENT_SIGNER,
                certs.KUBELET_SERVING_SIGNER)
SERVING_APPROVED = "Auto approving kubelet serving certificate after SubjectAccessReview."
KUBE_PROXY_USER = "system:kube-proxy"  # bound to system:node-proxier (auth/bootstrap.py)
KUBE_PROXY_APPROVED = "Auto approving kube-proxy client certificate after SubjectAccessReview."

_KEY_USAGE = {
    "signing": "digital_signature", "digital signature": "digital_signature",
    "content commitment": "content_commitment", "key encipherment": "key_encipherment",
    "key agreement": "key_agreement", "data encipherment": "data_encipherment", "cert sign": "key_cert_sign",
    "crl sign": "crl_sign", "encipher only": "encipher_only", "decipher only": "decipher_only",
}
_EXT_KEY_USAGE = {
    "any": x509.ObjectIdentifier("2.5.29.37.0"),
    "server auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "s/mime": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "ipsec end system": x509.ObjectIdentifier("1.3.6.1.5.5.7.3.5"),
    "ipsec tunnel": x509.ObjectIdentifier("1.3.6.1.5.5.7.3.6"),
    "ipsec user": x509.ObjectIdentifier("1.3.6.1.5.5.7.3.7"),
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp signing": ExtendedKeyUsageOID.OCSP_SIGNING,
    "microsoft sgc": x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"),
    "netscape sgc": x509.ObjectIdentifier("2.16.840.1.113730.4.1"),
}
# Go's x509.ExtKeyUsage order (the signer sorts the extended usages by it)
_EKU_ORDER = ["any", "server auth", "client auth", "code signing", "email protection", "ipsec end system",
              "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc"]


# --------------------------------------------------------------------------- request checks


def _subject(req: x509.CertificateSigningRequest) -> tuple[str, list[str]]:
    cn = req.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = req.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return (str(cn[0].value) if cn else ""), [str(o.value) for o in orgs]


def _sans(req: x509.CertificateSigningRequest) -> x509.SubjectAlternativeName | None:
    try:
        return req.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def validate_kubelet_client_csr(req: x509.CertificateSigningRequest, usages: set[str]) -> str | None:
    """capihelper.ValidateKubeletClientCSR: the error message, or None."""
    cn, orgs = _subject(req)
    if orgs != ["system:nodes"]:
        return "subject organization is not system:nodes"
    sans = _sans(req)
    if sans is not None:
        if sans.get_values_for_type(x509.DNSName):
            return "DNS subjectAltNames are not allowed"
        if sans.get_values_for_type(x509.RFC822Name):
            return "Email subjectAltNames are not allowed"
        if sans.get_values_for_type(x509.IPAddress):
            return "IP subjectAltNames are not allowed"
        if sans.get_values_for_type(x509.UniformResourceIdentifier):
            return "URI subjectAltNames are not allowed"
    if not cn.startswith("system:node:"):
        return "subject common name does not begin with system:node:"
    if set(usages) not in (KUBELET_CLIENT_USAGES, KUBELET_CLIENT_USAGES_NO_RSA):
        return "usages did not match [" + " ".join(sorted(KUBELET_CLIENT_USAGES)) + "]"
    return None


def validate_kubelet_serving_csr(req: x509.CertificateSigningRequest, usages: set[str]) -> str | None:
    """capihelper.ValidateKubeletServingCSR (pkg/apis/certificates/helpers.go): the error, or None."""
    _, orgs = _subject(req)
    if orgs != ["system:nodes"]:
        return "subject organization is not system:nodes"
    sans = _sans(req)
    dns = sans.get_values_for_type(x509.DNSName) if sans is not None else []
    ips = sans.get_values_for_type(x509.IPAddress) if sans is not None else []
    if not dns and not ips:
        return "DNS or IP subjectAltName is required"
    if sans is not None and sans.get_values_for_type(x509.RFC822Name):
        return "Email subjectAltNames are not allowed"
    if sans is not None and sans.get_values_for_type(x509.UniformResourceIdentifier):
        return "URI subjectAltNames are not allowed"
    if set(usages) not in (KUBELET_SERVING_USAGES, KUBELET_SERVING_USAGES_NO_RSA):
        return "usages did not match [" + " ".join(sorted(KUBELET_SERVING_USAGES)) + "]"
    cn, _ = _subject(req)
    if not cn.startswith("system:node:"):
        return "subject common name does not begin with system:node:"
    return None


def _node_addresses(node: Obj) -> set[str]:
    out: set[str] = set()
    for a in (node.get("status") or {}).get("addresses") or []:
        addr = str((a or {}).get("address") or "")
        try:  # different spellings of one IP are one address
            addr = str(ipaddress.ip_address(addr))
        except ValueError:
            pass
        if addr:
            out.add(addr)
    return out


def serving_approval_error(csr: Obj, node: Obj | None) -> str | None:
    """Why a kubelet-serving CSR may not be approved automatically, or None when it may: a
    well-formed serving request (ValidateKubeletServingCSR) made by the node it names, for
    names and addresses that are all among that Node's ``status.addresses``. ``node`` is the
    Node of the requesting user (None: there is none)."""
    from kubelite.apiserver.auth import UserInfo
    from kubelite.auth.node import node_identity

    spec = csr.get("spec") or {}
    try:
        req = certs.csr_of(csr)
    except ValueError as exc:
        return f"unable to parse certificate request: {exc}"
    err = validate_kubelet_serving_csr(req, set(spec.get("usages") or []))
    if err is not None:
        return err
    user = UserInfo(spec.get("username", ""), tuple(spec.get("groups") or ()))
    name, is_node = node_identity(user)
    if not is_node or not name:
        return (f'not requested by a node identity: user "{user.name}" in group(s) '
                '[' + " ".join(f'"{g}"' for g in user.groups) + ']')
    cn, _ = _subject(req)
    if cn != user.name:
        return f'requested subject\'s common name "{cn}" doesn\'t match requesting user name "{user.name}"'
    if node is None or (node.get("metadata") or {}).get("name") != name:
        return f'nodes "{name}" not found'
    have = _node_addresses(node)
    sans = _sans(req)
    errs = []
    for i, d in enumerate(sans.get_values_for_type(x509.DNSName) if sans is not None else []):
        if d not in have:
            errs.append(f'DNSNames[{i}]: forbidden: "{d}": is not a node address of {name}')
    for i, ip in enumerate(sans.get_values_for_type(x509.IPAddress) if sans is not None else []):
        if str(ip) not in have:
            errs.append(f'IPAddresses[{i}]: forbidden: "{ip}": is not a node address of {name}')
    return "\n".join(errs) or None


def kube_proxy_approval_error(csr: Obj) -> str | None:
    """Why a ``kubernetes.io/kube-apiserver-client`` CSR is not a node's request for its
    kube-proxy's credential, or None when it is one and may be approved automatically:

    * the subject is exactly ``CN=system:kube-proxy`` (no organization — no group — nor any
      other attribute) and the request names no subjectAltName;
    * the usages are a client's: {digital signature, client auth}, plus key encipherment for
      an RSA key (the kubelet client certificate's);
    * it was made by a node (user ``system:node:<name>`` in group ``system:nodes``), which the
      approver's SubjectAccessReview must also allow to renew its own client certificate
      (``create certificatesigningrequests/selfnodeclient``).

    Why that is safe: ``system:kube-proxy`` holds only ``system:node-proxier`` (list/watch
    Services, Endpoints and EndpointSlices, read Nodes, write Events), nearly all of which a node
    may already do; every kube-proxy upstream (kubeadm's DaemonSet, k3s's agents) runs with
    that one identity on every node. Nothing else can be asked for under this rule: another
    name, a group, a SAN or a usage beyond client auth leaves the request pending. Bootstrap
    tokens are not accepted: the agent asks with the node credential the token got it, so one
    path serves the first certificate and its renewals."""
    from kubelite.apiserver.auth import UserInfo
    from kubelite.auth.node import node_identity

    spec = csr.get("spec") or {}
    try:
        req = certs.csr_of(csr)
    except ValueError as exc:
        return f"unable to parse certificate request: {exc}"
    attrs = [(a.oid, a.value) for a in req.subject]
    if attrs != [(NameOID.COMMON_NAME, KUBE_PROXY_USER)]:
        return f'subject "{req.subject.rfc4514_string()}" is not exactly CN={KUBE_PROXY_USER}'
    sans = _sans(req)
    if sans is not None and len(sans):
        return "subjectAltNames are not allowed"
    if set(spec.get("usages") or []) not in (KUBELET_CLIENT_USAGES, KUBELET_CLIENT_USAGES_NO_RSA):
        return "usages did not match [" + " ".join(sorted(KUBELET_CLIENT_USAGES)) + "]"
    user = UserInfo(spec.get("username", ""), tuple(spec.get("groups") or ()))
    _, is_node = node_identity(user)
    if not is_node:
        return (f'not requested by a node identity: user "{user.name}" in group(s) '
                '[' + " ".join(f'"{g}"' for g in user.groups) + ']')
    return None


def validate_apiserver_client_usages(usages: list[str]) -> str | None:
    """validAPIServerClientUsages."""
    has_client_auth = False
    for u in usages:
        if u in ("digital signature", "key encipherment"):
            continue
        if u == "client auth":
            has_client_auth = True
            continue
        return f"invalid usage for client certificate: {u}"
    if not has_client_auth:
        return "missing required usage for client certificate: client auth"
    return None


def signer_check(signer: str, req: x509.CertificateSigningRequest, usages: list[str]) -> tuple[bool, str | None]:
    """(recognized, error) for the signers kubelite runs (isRequestForSignerFn)."""
    if signer == certs.KUBE_APISERVER_CLIENT_KUBELET_SIGNER:
        return True, validate_kubelet_client_csr(req, set(usages))
    if signer == certs.KUBE_APISERVER_CLIENT_SIGNER:
        return True, validate_apiserver_client_usages(usages)
    if signer == certs.KUBELET_SERVING_SIGNER:
        return True, validate_kubelet_serving_csr(req, set(usages))
    return False, None


# --------------------------------------------------------------------------- signing


def signing_duration(expiration_seconds: int | None, max_ttl: dt.timedelta = SIGNING_DURATION) -> dt.timedelta:
    """signer.duration: the requested duration, capped at the signer's, at least 10 minutes."""
    if expiration_seconds is None:
        return max_ttl
    want = dt.timedelta(seconds=expiration_seconds)
    if want > max_ttl:
        return max_ttl
    if want < MIN_DURATION:
        return MIN_DURATION
    return want


def sign(ca_cert: x509.Certificate, ca_key: Any, req: x509.CertificateSigningRequest, usages: list[str],
         ttl: dt.timedelta, now: dt.datetime | None = None) -> bytes:
    """authority.CertificateAuthority.Sign with the PermissiveSigningPolicy: subject and SANs from
    the request, usages from the CSR, notBefore backdated 5 minutes; notAfter now + ttl for a
    short-lived certificate (ttl < 8h), now + ttl - 5 minutes otherwise, never beyond the CA's."""
    unknown = [u for u in usages if u not in _KEY_USAGE and u not in _EXT_KEY_USAGE]
    if unknown:
        raise ValueError("unrecognized usage values: [" + " ".join(f'"{u}"' for u in unknown) + "]")
    now = now or dt.datetime.now(dt.UTC)
    not_before = now - BACKDATE
    # "do not backdate the end time if we consider this to be a short lived certificate"
    not_after = now + ttl if ttl < SHORT else now + ttl - BACKDATE
    ca_not_after = ca_cert.not_valid_after_utc
    if not_after > ca_not_after:
        not_after = ca_not_after
    if not not_before < ca_not_after:
        raise ValueError("the signer has expired")
    b = (x509.CertificateBuilder().subject_name(req.subject).issuer_name(ca_cert.subject)
         .public_key(req.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(not_before).not_valid_after(not_after)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    flags = {v: False for v in _KEY_USAGE.values()}
    for u in usages:
        if u in _KEY_USAGE:
            flags[_KEY_USAGE[u]] = True
    if any(flags.values()):
        b = b.add_extension(x509.KeyUsage(**flags), critical=True)
    ekus = [_EXT_KEY_USAGE[u] for u in sorted({u for u in usages if u in _EXT_KEY_USAGE}, key=_EKU_ORDER.index)]
    ekus = list(dict.fromkeys(ekus))
    if ekus:
        b = b.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
    sans = _sans(req)
    if sans is not None and len(sans):
        b = b.add_extension(sans, critical=False)
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    except x509.ExtensionNotFound:
        pass
    algo = None if isinstance(ca_key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey) else hashes.SHA256()
    cert = b.sign(ca_key, algo)
    return cert.public_bytes(serialization.Encoding.PEM)


def _load_ca(pki_dir: Path) -> tuple[x509.Certificate, Any]:
    d = Path(pki_dir) / "tls"
    cert = x509.load_pem_x509_certificate((d / "ca.crt").read_bytes())
    key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise ValueError("unsupported CA key type")
    return cert, key


# --------------------------------------------------------------------------- controllers


class _CSRController:
    name = "csr"

    def __init__(self, stores: Stores) -> None:
        self.csrs = stores.get(certs.GROUP, "certificatesigningrequests")
        self.queue = WorkQueue(self.name, self._sync, RETRY_SECONDS)
        self.informer = informer(self.csrs)
        self.informer.add_handler(self._event)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.informer.run())
            tg.create_task(self.queue.run())

    def _event(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        if new is not None:
            self.queue.add(new["metadata"]["name"])

    async def _sync(self, name: str) -> None:
        try:
            csr = await self.csrs.get("", name)
        except errors.StatusError as exc:
            if exc.code == 404:
                return
            raise
        await self.handle(csr)

    async def handle(self, csr: Obj) -> None:
        raise NotImplementedError


class CSRSigner(_CSRController):
    """csrsigning for kube-apiserver-client-kubelet and kube-apiserver-client."""

    name = "csrsigning"

    def __init__(self, stores: Stores, pki_dir: Path, max_ttl: dt.timedelta = SIGNING_DURATION) -> None:
        super().__init__(stores)
        self.pki_dir = Path(pki_dir)
        self.max_ttl = max_ttl

    async def handle(self, csr: Obj) -> None:
        status = csr.get("status") or {}
        if status.get("certificate"):
            return
        types = certs.condition_types(csr)
        if certs.APPROVED not in types or certs.DENIED in types or certs.FAILED in types:
            return
        spec = csr.get("spec") or {}
        signer = spec.get("signerName", "")
        if signer not in SIGNED_BY_US:
            return
        name = csr["metadata"]["name"]
        req = certs.csr_of(csr)
        usages = list(spec.get("usages") or [])
        recognized, err = signer_check(signer, req, usages)
        if not recognized:
            return
        new = copy.deepcopy(csr)
        new_status = new.setdefault("status", {})
        if err is not None:
            new_status.setdefault("conditions", []).append({
                "type": certs.FAILED, "status": "True", "reason": "SignerValidationFailure", "message": err,
                "lastUpdateTime": now_rfc3339()})
            log.info("CSR %s: %s", name, err)
        else:
            ca_cert, ca_key = _load_ca(self.pki_dir)
            exp = spec.get("expirationSeconds")
            ttl = signing_duration(exp if isinstance(exp, int) else None, self.max_ttl)
            pem = sign(ca_cert, ca_key, req, usages, ttl)
            new_status["certificate"] = base64.b64encode(pem).decode("ascii")
            log.info("CSR %s: certificate issued by %s", name, signer)
        await self.csrs.update("", name, new, WriteOptions(field_manager=FIELD_MANAGER), "status")


class CSRApprover(_CSRController):
    """csrapproving: the sarapprove recognizers selfnodeclient and nodeclient, and the
    kubelet-serving approval of :func:`serving_approval_error`."""

    name = "csrapproving"

    def __init__(self, stores: Stores, authorizer: Any) -> None:
        super().__init__(stores)
        self.authorizer = authorizer
        self.nodes = stores.get("", "nodes")

    async def _node(self, csr: Obj) -> Obj | None:
        from kubelite.auth.node import NODE_USER_PREFIX

        user = str((csr.get("spec") or {}).get("username") or "")
        if not user.startswith(NODE_USER_PREFIX):
            return None
        try:
            return await self.nodes.get("", user[len(NODE_USER_PREFIX):])
        except errors.StatusError as exc:
            if exc.code == 404:
                return None
            raise

    async def _approve(self, csr: Obj, message: str) -> None:
        name = csr["metadata"]["name"]
        new = copy.deepcopy(csr)
        new.setdefault("status", {}).setdefault("conditions", []).append({
            "type": certs.APPROVED, "status": "True", "reason": "AutoApproved", "message": message,
            "lastUpdateTime": now_rfc3339()})
        await self.csrs.update("", name, new, WriteOptions(field_manager=FIELD_MANAGER), "approval")
        log.info("CSR %s: %s", name, message)

    async def _handle_serving(self, csr: Obj) -> None:
        name = csr["metadata"]["name"]
        err = serving_approval_error(csr, await self._node(csr))
        if err is None and not await self._allowed(csr, ""):
            err = "requesting user is not allowed to create certificate signing requests"
        if err is not None:  # left pending: a user may still approve it
            log.info("not approving CSR %r as a kubelet serving certificate: %s", name, err)
            return
        await self._approve(csr, SERVING_APPROVED)

    async def _allowed(self, csr: Obj, subresource: str) -> bool:
        from kubelite.apiserver.auth import UserInfo
        from kubelite.apiserver.authorizer import ALLOW, Attributes

        spec = csr.get("spec") or {}
        user = UserInfo(spec.get("username", ""), tuple(spec.get("groups") or ()), spec.get("uid", ""),
                        {k: list(v) for k, v in (spec.get("extra") or {}).items()})
        decision, _ = await self.authorizer.authorize(Attributes(
            user=user, verb="create", api_group=certs.GROUP, api_version="*",
            resource="certificatesigningrequests", subresource=subresource))
        return decision == ALLOW

    async def _handle_kube_proxy(self, csr: Obj) -> None:
        name = csr["metadata"]["name"]
        err = kube_proxy_approval_error(csr)
        if err is None and not await self._allowed(csr, "selfnodeclient"):
            err = "subject access review for certificatesigningrequests/selfnodeclient was not approved"
        if err is not None:  # left pending: a user may still approve it
            try:  # other clients' requests are none of this recognizer's business: quietly
                asks_for_proxy = _subject(certs.csr_of(csr))[0] == KUBE_PROXY_USER
            except ValueError:
                asks_for_proxy = False
            log.log(logging.INFO if asks_for_proxy else logging.DEBUG,
                    "not approving CSR %r as a kube-proxy client certificate: %s", name, err)
            return
        await self._approve(csr, KUBE_PROXY_APPROVED)

    async def handle(self, csr: Obj) -> None:
        if (csr.get("status") or {}).get("certificate"):
            return
        types = certs.condition_types(csr)
        if certs.APPROVED in types or certs.DENIED in types:
            return
        spec = csr.get("spec") or {}
        if spec.get("signerName") == certs.KUBELET_SERVING_SIGNER:
            await self._handle_serving(csr)
            return
        if spec.get("signerName") == certs.KUBE_APISERVER_CLIENT_SIGNER:
            await self._handle_kube_proxy(csr)
            return
        if spec.get("signerName") != certs.KUBE_APISERVER_CLIENT_KUBELET_SIGNER:
            return
        req = certs.csr_of(csr)
        if validate_kubelet_client_csr(req, set(spec.get("usages") or [])) is not None:
            return
        cn, _ = _subject(req)
        recognizers = []
        if spec.get("username") == cn:
            recognizers.append(("selfnodeclient",
                                "Auto approving self kubelet client certificate after SubjectAccessReview."))
        recognizers.append(("nodeclient", "Auto approving kubelet client certificate after SubjectAccessReview."))
        name = csr["metadata"]["name"]
        for sub, message in recognizers:
            if not await self._allowed(csr, sub):
                continue
            await self._approve(csr, message)
            return
        log.info("recognized csr %r as %s but subject access review was not approved", name,
                 [s for s, _ in recognizers])


# --------------------------------------------------------------------------- csrcleaner

CLEANER_INTERVAL = 3600.0  # pollingInterval
APPROVED_EXPIRATION = dt.timedelta(hours=1)
DENIED_EXPIRATION = dt.timedelta(hours=1)
PENDING_EXPIRATION = dt.timedelta(hours=24)


def _older_than(ts: Any, d: dt.timedelta, now: dt.datetime) -> bool:
    from kubelite.api import gotime

    if not isinstance(ts, str) or not ts:
        return False
    try:
        return now - gotime.parse(ts) > d
    except ValueError:
        return False


def cleanup_reason(csr: Obj, now: dt.datetime | None = None) -> str | None:
    """Why the csrcleaner deletes this CSR (its log line), or None to keep it: issued more than
    an hour ago, denied or failed more than an hour ago, pending for a day, or its certificate
    expired. Rotating nodes make CSRs all the time; with a short --cluster-signing-duration many."""
    now = now or dt.datetime.now(dt.UTC)
    name = (csr.get("metadata") or {}).get("name", "")
    status = csr.get("status") or {}
    conditions = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
    issued = bool(status.get("certificate"))
    for c in conditions:
        if c.get("type") == certs.APPROVED and issued:
            try:
                leaf = x509.load_pem_x509_certificate(certs.b64decode(status["certificate"]))
            except ValueError:
                leaf = None
            if leaf is not None and now > leaf.not_valid_after_utc:
                return f'Cleaning CSR "{name}" as the associated certificate is expired.'
            if _older_than(c.get("lastUpdateTime"), APPROVED_EXPIRATION, now):
                return f'Cleaning CSR "{name}" as it is more than 1h0m0s old and approved.'
        if c.get("type") == certs.DENIED and _older_than(c.get("lastUpdateTime"), DENIED_EXPIRATION, now):
            return f'Cleaning CSR "{name}" as it is more than 1h0m0s old and denied.'
        if c.get("type") == certs.FAILED and _older_than(c.get("lastUpdateTime"), DENIED_EXPIRATION, now):
            return f'Cleaning CSR "{name}" as it is more than 1h0m0s old and failed.'
    if not conditions and _older_than((csr.get("metadata") or {}).get("creationTimestamp"), PENDING_EXPIRATION, now):
        return f'Cleaning CSR "{name}" as it is more than 24h0m0s old and unhandled.'
    return None


class CSRCleaner:
    """csrcleaner (pkg/controller/certificates/cleaner): every hour, from the start, delete the
    CSRs :func:`cleanup_reason` names."""

    def __init__(self, stores: Stores, interval: float = CLEANER_INTERVAL) -> None:
        self.csrs = stores.get(certs.GROUP, "certificatesigningrequests")
        self.interval = interval

    async def sweep(self, now: dt.datetime | None = None) -> list[str]:
        from kubelite.apiserver.registry import DeleteOptions, ListOptions

        gone = []
        items, *_ = await self.csrs.list("", ListOptions())
        for csr in items:
            reason = cleanup_reason(csr, now)
            if reason is None:
                continue
            log.info("%s", reason)
            name = csr["metadata"]["name"]
            try:
                await self.csrs.delete("", name, DeleteOptions(preconditions={"uid": csr["metadata"].get("uid")}))
                gone.append(name)
            except errors.StatusError as exc:
                log.info("unable to delete CSR %r: %s", name, exc)
        return gone

    async def run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("CSR cleanup: %s", exc)
            await asyncio.sleep(self.interval)


__all__ = ["CSRApprover", "CSRCleaner", "CSRSigner", "cleanup_reason", "kube_proxy_approval_error", "serving_approval_error", "sign", "signer_check", "signing_duration",
           "validate_kubelet_client_csr", "validate_kubelet_serving_csr"]
