"""The bootstrap-token format and the cluster-info signature both sides of a node join use
(k8s.io/cluster-bootstrap/token/api and token/jws): the server's authenticator and
bootstrap signer, and the joining agent."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re

TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
CLUSTER_INFO = "cluster-info"
PUBLIC_NAMESPACE = "kube-public"
KUBECONFIG_KEY = "kubeconfig"
JWS_PREFIX = "jws-kubeconfig-"


def parse_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed bootstrap token, else None."""
    m = TOKEN_RE.match(token or "")
    return (m.group(1), m.group(2)) if m else None


def _b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).decode("ascii").rstrip("=")


def detached_signature(content: str, token_id: str, token_secret: str) -> str:
    """jws.ComputeDetachedSignature: a compact HS256 JWS with the payload left out (``header..sig``)."""
    header = _b64url(json.dumps({"alg": "HS256", "kid": token_id}, separators=(",", ":")).encode())
    payload = _b64url(content.encode())
    sig = hmac.new(token_secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}..{_b64url(sig)}"


__all__ = ["CLUSTER_INFO", "JWS_PREFIX", "KUBECONFIG_KEY", "PUBLIC_NAMESPACE", "TOKEN_RE", "detached_signature",
           "parse_token"]
