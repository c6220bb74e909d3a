"""Who may read the agent's metrics and stats: the kubelet's webhook authentication and
authorization (pkg/kubelet/server/auth.go, k8s.io/apiserver's delegating authenticator and
authorizer), asked of the API server:

- a TLS client certificate verified against the cluster CA is the user of its CN (groups from
  its O values); a bearer token is put to a ``TokenReview``;
- the request is then a ``SubjectAccessReview`` of verb ``get`` (from the HTTP method) on
  ``nodes/<subresource>`` named after the node: ``/metrics…`` is ``nodes/metrics``, ``/stats…``
  ``nodes/stats`` (the kubelet's NodeRequestAttributesGetter).

Answers are cached as the kubelet's are (authentication 2 minutes; authorization 5 minutes
when allowed, 30 seconds when not). No request gets an answer the API server did not give:
without a credential it is 401, refused (or not answerable) 403. Tokens are cached by their
SHA-256 only and never logged.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from kubelite.agent.server import peer_subject

log = logging.getLogger("kubelite.agent.auth")

AUTHN_TTL = 120.0
AUTHZ_ALLOWED_TTL = 300.0
AUTHZ_DENIED_TTL = 30.0
MAX_CACHED = 4096
_VERBS = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@dataclass(frozen=True)
class Caller:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


def subresource_for(path: str) -> str:
    """NodeRequestAttributesGetter: the nodes subresource a path of the endpoint is."""
    for prefix, sub in (("/stats", "stats"), ("/metrics", "metrics"), ("/logs", "log"), ("/spec", "spec"),
                        ("/checkpoint", "checkpoint"), ("/pods", "proxy"), ("/healthz", "healthz")):
        if path == prefix or path.startswith(prefix + "/"):
            return sub
    return "proxy"


class NodeAuth:
    """``await check(request)`` -> None when allowed, else the response to send."""

    def __init__(self, client: Any, node_name: str, clock: Any = time.monotonic) -> None:
        self.client = client
        self.node_name = node_name
        self.clock = clock
        self._users: dict[bytes, tuple[float, Caller | None]] = {}
        self._decisions: dict[tuple[Caller, str, str], tuple[float, bool]] = {}

    # ------------------------------------------------------------------ authentication
    async def authenticate(self, request: web.Request) -> Caller | None:
        subject = peer_subject(request)
        if subject is not None and subject[0]:
            return Caller(subject[0], (*subject[1], "system:authenticated"))
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        key = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        now = self.clock()
        hit = self._users.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        review = await self.client.create("authentication.k8s.io/v1", "tokenreviews", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}})
        status = review.get("status") or {}
        caller = None
        if status.get("authenticated"):
            u = status.get("user") or {}
            extra = tuple(sorted((k, tuple(v)) for k, v in (u.get("extra") or {}).items()))
            caller = Caller(u.get("username", ""), tuple(u.get("groups") or ()), u.get("uid", ""), extra)
        self._remember(self._users, key, (now + AUTHN_TTL, caller))
        return caller

    # ------------------------------------------------------------------ authorization
    async def authorize(self, caller: Caller, verb: str, subresource: str) -> bool:
        key = (caller, verb, subresource)
        now = self.clock()
        hit = self._decisions.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        spec: dict[str, Any] = {
            "user": caller.name, "groups": list(caller.groups),
            "resourceAttributes": {"verb": verb, "resource": "nodes", "subresource": subresource,
                                   "name": self.node_name, "version": "v1"}}
        if caller.uid:
            spec["uid"] = caller.uid
        if caller.extra:
            spec["extra"] = {k: list(v) for k, v in caller.extra}
        review = await self.client.create("authorization.k8s.io/v1", "subjectaccessreviews", {
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec})
        allowed = bool((review.get("status") or {}).get("allowed"))
        self._remember(self._decisions, key, (now + (AUTHZ_ALLOWED_TTL if allowed else AUTHZ_DENIED_TTL), allowed))
        return allowed

    @staticmethod
    def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
        if len(cache) >= MAX_CACHED:
            cache.clear()
        cache[key] = value

    async def check(self, request: web.Request) -> web.Response | None:
        """The kubelet's InstallAuthFilter: 401 without a usable credential, 403 unless allowed."""
        try:
            caller = await self.authenticate(request)
        except Exception as exc:  # the API server cannot be asked: nobody is let in
            log.warning("authenticating a request for %s failed: %s", request.path, type(exc).__name__)
            return web.Response(status=401, text="Unauthorized")
        if caller is None:
            return web.Response(status=401, text="Unauthorized")
        verb = _VERBS.get(request.method, request.method.lower())
        sub = subresource_for(request.path)
        try:
            allowed = await self.authorize(caller, verb, sub)
        except Exception as exc:
            log.warning("authorizing %s on nodes/%s failed: %s", caller.name, sub, type(exc).__name__)
            allowed = False
        if not allowed:
            msg = f"Forbidden (user={caller.name}, verb={verb}, resource=nodes, subresource={sub})"
            return web.Response(status=403, text=msg)
        return None


__all__ = ["Caller", "NodeAuth", "subresource_for"]
