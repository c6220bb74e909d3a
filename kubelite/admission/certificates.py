"""The certificates admission plugins (plugin/pkg/admission/certificates):

* CertificateApproval: an update of ``certificatesigningrequests/approval`` needs the verb
  ``approve`` on ``signers`` (group certificates.k8s.io) named the request's signerName or
  ``<domain>/*``;
* CertificateSigning: a ``/status`` update that changes ``status.certificate`` needs ``sign``
  on that signer;
* CertificateSubjectRestriction: no ``kubernetes.io/kube-apiserver-client`` request for the
  ``system:masters`` group.

In-process writers (the CSR controllers, user None) are not checked."""

from __future__ import annotations

from typing import Any

from kubelite.api import errors
from kubelite.apiserver.admission import CREATE, UPDATE, Attributes
from kubelite.apiserver.authorizer import ALLOW
from kubelite.apiserver.authorizer import Attributes as AuthzAttributes

GROUP = "certificates.k8s.io"
PLURAL = "certificatesigningrequests"
CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"


def _is_csr(a: Attributes) -> bool:
    return a.kind.group == GROUP and a.kind.plural == PLURAL


async def authorized_for_signer(authorizer: Any, user: Any, verb: str, signer: str) -> bool:
    """certificates.IsAuthorizedForSignerName: the exact signer name, then ``<domain>/*``."""
    names = [signer]
    if "/" in signer:
        names.append(signer.split("/", 1)[0] + "/*")
    for name in names:
        decision, _ = await authorizer.authorize(AuthzAttributes(
            user=user, verb=verb, api_group=GROUP, api_version="*", resource="signers", name=name))
        if decision == ALLOW:
            return True
    return False


class CertificatesAdmission:
    def __init__(self, authorizer: Any) -> None:
        self.authorizer = authorizer

    async def admit(self, a: Attributes) -> None:
        return None

    async def validate(self, a: Attributes) -> None:
        if not _is_csr(a) or a.user is None or a.obj is None:
            return
        spec = a.obj.get("spec") or {}
        signer = str(spec.get("signerName") or "")
        if a.operation == CREATE and not a.subresource and signer == CLIENT_SIGNER:
            from kubelite.kinds.certificates import csr_of

            try:
                req = csr_of(a.obj)
            except ValueError as exc:
                raise errors.forbidden(PLURAL, a.name, f"failed to parse CSR: {exc}", GROUP) from exc
            from cryptography.x509.oid import NameOID

            if any(o.value == "system:masters" for o in req.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)):
                raise errors.forbidden(PLURAL, a.name, f"use of {signer} signer with system:masters group is not "
                                                       f"allowed", GROUP)
        if a.operation != UPDATE:
            return
        if a.subresource == "approval":
            if not await authorized_for_signer(self.authorizer, a.user, "approve", signer):
                raise errors.forbidden(PLURAL, a.name, f'user not permitted to approve requests with signerName '
                                                       f'"{signer}"', GROUP)
        elif a.subresource == "status" and a.old is not None:
            new_cert = (a.obj.get("status") or {}).get("certificate") or ""
            old_cert = (a.old.get("status") or {}).get("certificate") or ""
            old_signer = str((a.old.get("spec") or {}).get("signerName") or "")
            if new_cert != old_cert and not await authorized_for_signer(self.authorizer, a.user, "sign", old_signer):
                raise errors.forbidden(PLURAL, a.name, f'user not permitted to sign requests with signerName '
                                                       f'"{old_signer}"', GROUP)


__all__ = ["CertificatesAdmission", "authorized_for_signer"]
