"""Service account tokens: the ``serviceaccounts/token`` subresource (TokenRequest) issues
RS256 JWTs signed with the cluster's service-account key; the token authenticator accepts
them while the signature, audience and lifetime are good and the service account (and the
pod the token is bound to) still exist with the same uid
(pkg/serviceaccount/claims.go, pkg/registry/core/serviceaccount/storage/token.go).

The subresource is served here rather than through the admission chain, so NodeRestriction's
TokenRequest checks (admitServiceAccount, with ServiceAccountNodeAudienceRestriction) run in
:meth:`TokenIssuer.node_restriction`, before the service account is looked up, as a mutating
admission plugin runs before the REST create upstream."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import jwt
from aiohttp import web

from kubelite.api import errors
from kubelite.api import field as f
from kubelite.api.field import Path
from kubelite.apiserver import bodies, http
from kubelite.apiserver.auth import USER, UserInfo
from kubelite.apiserver.authorizer import ALLOW, Attributes
from kubelite.apiserver.stores import Stores
from kubelite.auth.node import node_identity
from kubelite.tls.pki import PKI

ISSUER = "https://kubernetes.default.svc.cluster.local"
API_AUDIENCES = (ISSUER,)
DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600
MAX_EXPIRATION = 1 << 32
SA_GROUP = "system:serviceaccounts"
AUDIENCE_VERB = "request-serviceaccounts-token-audience"


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TokenIssuer:
    def __init__(self, stores: Stores, pki: PKI, authorizer: Any = None) -> None:
        self.stores = stores
        # NodeRestriction asks it whether a node may request an audience no pod volume names
        self.authorizer = authorizer
        self.private_key = pki.sa_key.read_bytes()
        self.public_key = pki.sa_pub.read_bytes()

    # ------------------------------------------------------------------ issuing
    async def handle(self, handler: Any, request: web.Request, t: Any) -> web.StreamResponse:
        if request.method != "POST":
            raise errors.method_not_supported("serviceaccounts/token", request.method.lower())
        raw = await http.read_body(request)
        ctype = http.media_type(request)
        body = http.decode_object(raw, ctype) if raw.strip() else {}
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a TokenRequest object")
        body, _ = bodies.decode_write(t.kind, body, raw, ctype, request.query.get("fieldValidation", ""),
                                      schema_ref="io.k8s.api.authentication.v1.TokenRequest",
                                      kind_name="TokenRequest", version="v1")
        spec: dict[str, Any] = body["spec"] if isinstance(body.get("spec"), dict) else {}
        user = request.get(USER)
        node, is_node = node_identity(user)
        if is_node:
            await self.node_restriction(node, user, t.namespace, t.name, spec)
        sa = await self.stores.get("", "serviceaccounts").get(t.namespace, t.name)
        exp_s = spec.get("expirationSeconds")
        exp_s = DEFAULT_EXPIRATION if exp_s is None else exp_s
        audiences = list(spec.get("audiences") or API_AUDIENCES)
        errs = []
        if not isinstance(exp_s, int) or exp_s < MIN_EXPIRATION:
            errs.append(f.invalid(Path("spec", "expirationSeconds"), exp_s,
                                  "may not specify a duration less than 10 minutes"))
        elif exp_s > MAX_EXPIRATION:
            errs.append(f.too_long(Path("spec", "expirationSeconds"), MAX_EXPIRATION))
        if errs:
            raise errors.invalid("TokenRequest", t.name, errs, "authentication.k8s.io")
        private: dict[str, Any] = {"namespace": t.namespace,
                                   "serviceaccount": {"name": t.name, "uid": sa["metadata"]["uid"]}}
        ref = spec.get("boundObjectRef")
        if isinstance(ref, dict) and ref:
            kind = ref.get("kind", "")
            plural = {"Pod": "pods", "Secret": "secrets", "Node": "nodes"}.get(kind)
            if plural is None:
                raise errors.bad_request(f'cannot bind token for serviceaccount "{t.name}" to object of type '
                                         f'{ref.get("apiVersion", "")}, Kind={kind}')
            obj = await self.stores.get("", plural).get("" if kind == "Node" else t.namespace, ref.get("name", ""))
            uid = obj["metadata"]["uid"]
            if ref.get("uid") and ref["uid"] != uid:
                raise errors.StatusError(409, "Conflict", f"the UID in the bound object reference ({ref['uid']}) does "
                                                          f"not match the UID in record. The object might have been "
                                                          f"deleted and then recreated")
            private[kind.lower()] = {"name": obj["metadata"]["name"], "uid": uid}
            if kind == "Pod" and (obj.get("spec") or {}).get("nodeName"):
                private["node"] = {"name": obj["spec"]["nodeName"]}
        now = int(time.time())
        expires = now + exp_s
        claims = {"aud": audiences, "exp": expires, "iat": now, "nbf": now, "iss": ISSUER,
                  "jti": str(uuid.uuid4()), "sub": f"system:serviceaccount:{t.namespace}:{t.name}",
                  "kubernetes.io": private}
        token = jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": self._kid()})
        out = {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
               "metadata": {"name": t.name, "namespace": t.namespace, "creationTimestamp": None},
               "spec": {"audiences": audiences, "expirationSeconds": exp_s,
                        "boundObjectRef": ref if isinstance(ref, dict) and ref else None},
               "status": {"token": token, "expirationTimestamp": _rfc3339(expires)}}
        return http.respond(request, out, 201)

    # ------------------------------------------------------------------ NodeRestriction
    async def node_restriction(self, node: str, user: Any, namespace: str, sa_name: str, spec: dict[str, Any]) -> None:
        """admitServiceAccount (plugin/pkg/admission/noderestriction): a node may request only
        tokens bound to a pod scheduled on itself, with the pod's current uid, and (with
        ServiceAccountNodeAudienceRestriction) only an audience one of the pod's volumes uses
        unless it is authorized for that audience."""

        def forbidden(msg: str) -> errors.StatusError:
            return errors.forbidden("serviceaccounts", sa_name, msg)

        if not node:
            raise forbidden(f'could not determine node from user "{getattr(user, "name", "")}"')
        ref = spec.get("boundObjectRef")
        if (not isinstance(ref, dict) or ref.get("apiVersion") != "v1" or ref.get("kind") != "Pod"
                or not ref.get("name")):
            raise forbidden("node requested token not bound to a pod")
        if not ref.get("uid"):
            raise forbidden("node requested token with a pod binding without a uid")
        try:
            pod = await self.stores.get("", "pods").get(namespace, ref["name"])
        except errors.StatusError as exc:
            if exc.code == 404:
                raise errors.not_found("pod", ref["name"]) from None  # the pod lister's NotFound
            raise forbidden(exc.message) from None
        if ref["uid"] != pod["metadata"].get("uid"):
            raise forbidden(f"the UID in the bound object reference ({ref['uid']}) does not match the UID in record. "
                            f"The object might have been deleted and then recreated")
        if ((pod.get("spec") or {}).get("nodeName") or "") != node:
            raise forbidden("node requested token bound to a pod scheduled on a different node")
        # validateNodeServiceAccountAudience
        audiences = spec.get("audiences") or []
        if not isinstance(audiences, list) or len(audiences) > 1:
            raise forbidden("node may only request 0 or 1 audiences")
        audience = audiences[0] if audiences else ""
        if pod_references_audience(pod, audience):
            return
        if self.authorizer is not None:
            decision, _ = await self.authorizer.authorize(Attributes(
                user=user, verb=AUDIENCE_VERB, namespace=namespace, api_version="v1", resource=str(audience),
                name=sa_name))
            if decision == ALLOW:
                return
        raise forbidden(f'audience "{audience}" not found in pod spec volume, {getattr(user, "name", "")} is not '
                        f"authorized to request tokens for this audience")

    def _kid(self) -> str:
        import base64
        import hashlib

        from cryptography.hazmat.primitives import serialization

        key = serialization.load_pem_public_key(self.public_key)
        der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")

    # ------------------------------------------------------------------ authenticating
    async def authenticate(self, token: str) -> UserInfo | None:
        if token.count(".") != 2:
            return None
        try:
            claims = jwt.decode(token, self.public_key, algorithms=["RS256"], audience=list(API_AUDIENCES),
                                issuer=ISSUER, options={"require": ["exp", "iat", "sub", "aud", "iss"]}, leeway=0)
        except jwt.PyJWTError:
            return None
        private = claims.get("kubernetes.io")
        if not isinstance(private, dict):
            return None
        ns = private.get("namespace", "")
        sa_ref = private.get("serviceaccount") or {}
        try:
            sa = await self.stores.get("", "serviceaccounts").get(ns, sa_ref.get("name", ""))
        except errors.StatusError:
            return None
        if sa["metadata"].get("uid") != sa_ref.get("uid") or sa["metadata"].get("deletionTimestamp"):
            return None
        extra: dict[str, list[str]] = {"authentication.kubernetes.io/credential-id": [f"JTI={claims.get('jti', '')}"]}
        for kind, plural in (("pod", "pods"), ("secret", "secrets")):
            ref = private.get(kind)
            if not isinstance(ref, dict):
                continue
            try:
                obj = await self.stores.get("", plural).get(ns, ref.get("name", ""))
            except errors.StatusError:
                return None
            if obj["metadata"].get("uid") != ref.get("uid") or obj["metadata"].get("deletionTimestamp"):
                return None
            if kind == "pod":
                extra["authentication.kubernetes.io/pod-name"] = [ref.get("name", "")]
                extra["authentication.kubernetes.io/pod-uid"] = [ref.get("uid", "")]
        if isinstance(private.get("node"), dict):
            extra["authentication.kubernetes.io/node-name"] = [private["node"].get("name", "")]
        name = f"system:serviceaccount:{ns}:{sa_ref.get('name', '')}"
        if claims.get("sub") != name:
            return None
        return UserInfo(name, (SA_GROUP, f"{SA_GROUP}:{ns}"), sa_ref.get("uid", ""), extra)


def pod_references_audience(pod: dict[str, Any], audience: str) -> bool:
    """podReferencesAudience: a projected serviceAccountToken source of the pod asks for the
    audience ("" = the API server's). (Audiences of CSI drivers' tokenRequests: kubelite serves
    no CSIDriver objects.)"""
    for v in (pod.get("spec") or {}).get("volumes") or []:
        for src in ((v.get("projected") or {}).get("sources") or []) if isinstance(v, dict) else []:
            tok = src.get("serviceAccountToken") if isinstance(src, dict) else None
            if isinstance(tok, dict) and (tok.get("audience") or "") == audience:
                return True
    return False


__all__ = ["API_AUDIENCES", "ISSUER", "TokenIssuer", "pod_references_audience"]
