"""certificates.k8s.io/v1 CertificateSigningRequest (pkg/registry/certificates/certificates,
pkg/apis/certificates/validation), with the ``status`` and ``approval`` subresources.

* create: ``spec.username``/``uid``/``groups``/``extra`` are those of the requesting user,
  the status starts empty (no pre-approved requests);
* update of the main resource changes only metadata; ``/status`` changes the status but keeps
  the Approved/Denied conditions; ``/approval`` changes only the conditions;
* Approved/Denied conditions can be neither removed nor changed, an issued certificate is
  immutable.

``install(handler)`` serves the ``approval`` subresource (GET, PUT, PATCH).
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from typing import Any

from cryptography import x509

from kubelite.api import field as f
from kubelite.api.field import FieldError, Path
from kubelite.api.meta import now_rfc3339, validate_path_segment_name
from kubelite.kinds._printing import GoJSON, age, age_column, doc, get, human_duration, meta, name_column
from kubelite.kinds.base import REQUESTING_USER, STATUS, Column, Kind, Obj, Strategy, Subresource

GROUP = "certificates.k8s.io"

KUBE_APISERVER_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
KUBE_APISERVER_CLIENT_KUBELET_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
KUBELET_SERVING_SIGNER = "kubernetes.io/kubelet-serving"
LEGACY_UNKNOWN_SIGNER = "kubernetes.io/legacy-unknown"

APPROVED = "Approved"
DENIED = "Denied"
FAILED = "Failed"
_TRUE_ONLY = (APPROVED, DENIED, FAILED)

ALL_USAGES = (
    "signing", "digital signature", "content commitment", "key encipherment", "key agreement",
    "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any", "server auth",
    "client auth", "code signing", "email protection", "s/mime", "ipsec end system", "ipsec tunnel",
    "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc",
)
MIN_EXPIRATION_SECONDS = 600

_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_PEM_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.S)


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def b64decode(value: Any) -> bytes:
    if not isinstance(value, str) or not value:
        return b""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return b""


def pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    """(label, DER) of every PEM block in ``data``; blocks with headers are reported with DER b''."""
    out: list[tuple[str, bytes]] = []
    for m in _PEM_RE.finditer(data):
        body = m.group(2)
        if b":" in body:  # RFC 1421 headers
            out.append((m.group(1).decode(), b""))
            continue
        try:
            out.append((m.group(1).decode(), base64.b64decode(b"".join(body.split()), validate=True)))
        except (binascii.Error, ValueError):
            continue
    return out


def parse_csr(request_pem: bytes) -> x509.CertificateSigningRequest:
    """certificates.ParseCSR: the first PEM block must be a CERTIFICATE REQUEST."""
    blocks = pem_blocks(request_pem)
    if not blocks or blocks[0][0] != "CERTIFICATE REQUEST" or not blocks[0][1]:
        raise ValueError("PEM block type must be CERTIFICATE REQUEST")
    try:
        return x509.load_der_x509_csr(blocks[0][1])
    except ValueError as exc:
        raise ValueError(f"asn1: structure error: {exc}") from exc


def csr_of(obj: Obj) -> x509.CertificateSigningRequest:
    return parse_csr(b64decode(get(obj, "spec", "request")))


def _validate_csr_request(obj: Obj) -> str | None:
    try:
        csr = csr_of(obj)
    except ValueError as exc:
        return str(exc)
    if not csr.is_signature_valid:
        return "x509: ECDSA verification failure"
    return None


def validate_signer_name(path: Path, name: Any) -> list[FieldError]:
    """apivalidation.ValidateSignerName."""
    if not isinstance(name, str) or not name:
        return [f.required(path, "")]
    parts = name.split("/")
    if len(parts) < 2:
        return [f.invalid(path, name, "must be a fully qualified domain and path of the form 'example.com/signer-name'")]
    errs: list[FieldError] = []
    domain, rest = parts[0], "/".join(parts[1:])
    if len(domain) > 253 or not _DNS1123_SUBDOMAIN.match(domain) or "." not in domain:
        errs.append(f.invalid(path, name, "should be a domain with at least two segments separated by dots"))
    if not rest:
        errs.append(f.invalid(path, name, "validating path: must not be empty"))
    elif len(rest) > 63 + 253 - len(domain) and len(name) > 571:
        errs.append(f.too_long(path, 571))
    return errs


def _conditions(obj: Obj) -> list[dict[str, Any]]:
    return [c for c in _list(get(obj, "status", "conditions")) if isinstance(c, dict)]


def condition_types(obj: Obj) -> set[str]:
    return {str(c.get("type")) for c in _conditions(obj)}


def is_approved(obj: Obj) -> bool:
    return APPROVED in condition_types(obj)


def is_denied(obj: Obj) -> bool:
    return DENIED in condition_types(obj)


def validate_certificate(pem: bytes) -> str | None:
    """validateCertificate: one or more CERTIFICATE blocks, each a parseable certificate."""
    if not pem:
        return None
    blocks = pem_blocks(pem)
    if not blocks:
        return "must contain at least one CERTIFICATE PEM block"
    for label, der in blocks:
        if label != "CERTIFICATE":
            return f'only CERTIFICATE PEM blocks are allowed, found "{label}"'
        if not der:
            return "no PEM block headers are permitted"
        try:
            x509.load_der_x509_certificate(der)
        except ValueError as exc:
            return str(exc)
    return None


class _GoBytes:
    """A []byte bad value as Go's field.Error prints it (%#v)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __str__(self) -> str:
        return "[]byte{" + ", ".join(f"0x{b:x}" for b in self.data) + "}"


def validate_csr(obj: Obj) -> list[FieldError]:
    """validateCertificateSigningRequest (v1 options: known usages, no duplicates, no legacy signer)."""
    errs: list[FieldError] = []
    spec = _dict(obj.get("spec"))
    sp = Path("spec")
    err = _validate_csr_request(obj)
    if err is not None:
        errs.append(f.invalid(sp.child("request"), _GoBytes(b64decode(spec.get("request"))), err))
    usages = _list(spec.get("usages"))
    if not usages:
        errs.append(f.required(sp.child("usages"), ""))
    seen: set[str] = set()
    for i, u in enumerate(usages):
        if u not in ALL_USAGES:
            errs.append(f.not_supported(sp.child("usages").index(i), u, sorted(ALL_USAGES)))
        if u in seen:
            errs.append(f.duplicate(sp.child("usages").index(i), u))
        seen.add(u)
    signer = spec.get("signerName")
    if signer == LEGACY_UNKNOWN_SIGNER:
        errs.append(f.invalid(sp.child("signerName"), signer, "the legacy signerName is not allowed via this API version"))
    else:
        errs.extend(validate_signer_name(sp.child("signerName"), signer))
    exp = spec.get("expirationSeconds")
    if isinstance(exp, int) and not isinstance(exp, bool) and exp < MIN_EXPIRATION_SECONDS:
        errs.append(f.invalid(sp.child("expirationSeconds"), exp,
                              "may not specify a duration less than 600 seconds (10 minutes)"))
    errs.extend(_validate_conditions(obj))
    cert_err = validate_certificate(b64decode(get(obj, "status", "certificate")))
    if cert_err is not None:
        errs.append(f.invalid(Path("status", "certificate"), "<certificate data>", cert_err))
    return errs


def _validate_conditions(obj: Obj) -> list[FieldError]:
    errs: list[FieldError] = []
    cp = Path("status", "conditions")
    seen: set[str] = set()
    for i, c in enumerate(_conditions(obj)):
        typ = c.get("type") or ""
        status = c.get("status") or ""
        if not typ:
            errs.append(f.required(cp.index(i).child("type"), ""))
        if typ in _TRUE_ONLY:
            if status != "True":
                errs.append(f.not_supported(cp.index(i).child("status"), status, ["True"]))
        elif status not in ("True", "False", "Unknown"):
            errs.append(f.not_supported(cp.index(i).child("status"), status, ["False", "True", "Unknown"]))
        if typ in seen:
            errs.append(f.duplicate(cp.index(i).child("type"), typ))
        seen.add(typ)
    if APPROVED in seen and DENIED in seen:
        errs.append(f.invalid(cp, GoJSON(_conditions(obj)), "Approved and Denied conditions are mutually exclusive"))
    return errs


def _validate_update_conditions(new: Obj, old: Obj) -> list[FieldError]:
    errs: list[FieldError] = []
    cp = Path("status", "conditions")
    for t in (APPROVED, DENIED):
        oc = [c for c in _conditions(old) if c.get("type") == t]
        nc = [c for c in _conditions(new) if c.get("type") == t]
        if len(nc) < len(oc):
            errs.append(f.forbidden(cp, f'updates may not remove a condition of type "{t}"'))
        for i in range(min(len(oc), len(nc))):
            a, b = dict(oc[i]), dict(nc[i])
            a.pop("lastUpdateTime", None)
            b.pop("lastUpdateTime", None)
            if a != b:
                errs.append(f.forbidden(cp, f'updates may not modify a condition of type "{t}"'))
    return errs


def _populate_condition_timestamps(new: Obj, old: Obj | None) -> None:
    """populateConditionTimestamps: lastUpdateTime now when unset; lastTransitionTime from the
    old condition of that type when its status did not change, else now."""
    now = now_rfc3339()
    olds = {c.get("type"): c for c in _conditions(old or {})}
    for c in _conditions(new):
        if not c.get("lastUpdateTime"):
            c["lastUpdateTime"] = now
        if not c.get("lastTransitionTime"):
            prev = olds.get(c.get("type"))
            if prev is not None and prev.get("status") == c.get("status") and prev.get("lastTransitionTime"):
                c["lastTransitionTime"] = prev["lastTransitionTime"]
            else:
                c["lastTransitionTime"] = now


def validate_certificate_request_name(name: str, prefix: bool) -> list[str]:
    """ValidateCertificateRequestName: "we don't care what you call your certificate requests"
    (the generic path-segment rules still apply)."""
    return validate_path_segment_name(name, prefix)


class CSRStrategy(Strategy):
    def prepare_for_create(self, obj: Obj) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            spec = {}
            obj["spec"] = spec
        for k in ("username", "uid", "groups", "extra"):
            spec.pop(k, None)
        user = REQUESTING_USER.get()
        if user is not None:
            if user.name:
                spec["username"] = user.name
            if getattr(user, "uid", ""):
                spec["uid"] = user.uid
            if user.groups:
                spec["groups"] = list(user.groups)
            extra = getattr(user, "extra", None) or {}
            if extra:
                spec["extra"] = {k: list(v) for k, v in extra.items()}
        # users cannot create pre-approved certificate requests
        obj["status"] = {}

    def validate(self, obj: Obj) -> list[FieldError]:
        return validate_csr(obj)

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        # the main resource changes only metadata
        new["spec"] = copy.deepcopy(old.get("spec"))
        if "status" in old:
            new["status"] = copy.deepcopy(old["status"])
        else:
            new.pop("status", None)

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return validate_csr(new) + _validate_update_conditions(new, old)

    def status_prepare_for_update(self, new: Obj, old: Obj) -> None:
        super().status_prepare_for_update(new, old)
        status = new.get("status")
        if not isinstance(status, dict):
            status = {}
            new["status"] = status
        # /status cannot add or remove approval decisions: those come from the old object
        keep = [c for c in _conditions(new) if c.get("type") not in (APPROVED, DENIED)]
        status["conditions"] = [copy.deepcopy(c) for c in _conditions(old) if c.get("type") in (APPROVED, DENIED)] + keep
        if not status["conditions"]:
            del status["conditions"]
        _populate_condition_timestamps(new, old)

    def validate_status_update(self, new: Obj, old: Obj) -> list[FieldError]:
        errs = validate_csr(new) + _validate_update_conditions(new, old)
        old_cert = get(old, "status", "certificate", default="")
        if old_cert and get(new, "status", "certificate", default="") != old_cert:
            errs.append(f.forbidden(Path("status", "certificate"), "updates may not modify existing certificate content"))
        return errs

    def prepare_for_subresource_update(self, subresource: str, new: Obj, old: Obj) -> None:
        if subresource != "approval":
            self.prepare_for_update(new, old)
            return
        # the approval changes only status.conditions
        conditions = copy.deepcopy(_conditions(new))
        for k in list(new):
            if k not in ("metadata", "apiVersion", "kind"):
                del new[k]
        for k, v in old.items():
            if k not in ("metadata", "apiVersion", "kind"):
                new[k] = copy.deepcopy(v)
        status: dict[str, Any] = new["status"] if isinstance(new.get("status"), dict) else {}
        new["status"] = status
        if conditions:
            status["conditions"] = conditions
        else:
            status.pop("conditions", None)
        _populate_condition_timestamps(new, old)

    def field_labels(self, obj: Obj) -> dict[str, str]:
        return {"spec.signerName": str(get(obj, "spec", "signerName", default=""))}

    columns = (
        name_column(),
        age_column(),
        Column("SignerName", "string", "", doc("io.k8s.api.certificates.v1.CertificateSigningRequestSpec", "signerName")),
        Column("Requestor", "string", "", doc("io.k8s.api.certificates.v1.CertificateSigningRequestSpec", "request")),
        Column("RequestedDuration", "string", "",
               doc("io.k8s.api.certificates.v1.CertificateSigningRequestSpec", "expirationSeconds")),
        Column("Condition", "string", "", doc("io.k8s.api.certificates.v1.CertificateSigningRequestStatus", "conditions")),
    )

    def row(self, obj: Obj) -> list[Any]:
        exp = get(obj, "spec", "expirationSeconds")
        duration = human_duration(exp) if isinstance(exp, int) and not isinstance(exp, bool) else "<none>"
        return [
            meta(obj).get("name", ""),
            age(get(obj, "metadata", "creationTimestamp")),
            get(obj, "spec", "signerName", default="") or "<none>",
            get(obj, "spec", "username", default=""),
            duration,
            condition_summary(obj),
        ]


def condition_summary(obj: Obj) -> str:
    """extractCSRStatus: Denied > Approved > Pending, then ,Failed and ,Issued."""
    types = condition_types(obj)
    out = DENIED if DENIED in types else APPROVED if APPROVED in types else "Pending"
    if FAILED in types:
        out += ",Failed"
    if get(obj, "status", "certificate"):
        out += ",Issued"
    return out


CSR = Kind(
    group=GROUP,
    version="v1",
    kind="CertificateSigningRequest",
    plural="certificatesigningrequests",
    namespaced=False,
    strategy=CSRStrategy(),
    short_names=("csr",),
    subresources=(Subresource("approval"), STATUS),
    schema_ref="io.k8s.api.certificates.v1.CertificateSigningRequest",
    name_validator=validate_certificate_request_name,
)


__all__ = ["APPROVED", "CSR", "DENIED", "FAILED", "KUBE_APISERVER_CLIENT_KUBELET_SIGNER",
           "KUBE_APISERVER_CLIENT_SIGNER", "KUBELET_SERVING_SIGNER", "condition_summary", "csr_of",
           "is_approved", "is_denied", "parse_csr", "validate_csr"]
