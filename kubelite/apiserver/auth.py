"""Authentication (who is calling) — no authorization here.

Order, first match wins (like kube-apiserver's union authenticator):

1. a TLS client certificate verified against the cluster CA: user = subject CN,
   groups = subject O values;
2. ``Authorization: Bearer <token>`` found in the static token file
   (``<data_dir>/tokens.csv``, kube-apiserver ``--token-auth-file`` format:
   ``token,user,uid,"group1,group2"``), reloaded when the file changes;
3. token hooks (``add_token_authenticator``), e.g. service-account JWTs later;
4. on a WebSocket request, a token in the ``base64url.bearer.authorization.k8s.io.<token>``
   subprotocol (what browsers, which cannot set headers on WebSockets, send), through the
   same token authenticators; the protocol is removed before the handler sees the request;
5. request hooks (``add_request_authenticator``).

Every authenticated user gets the group ``system:authenticated``.  No credential is
ever logged.

Anonymous requests are answered with 401 except on the public paths (health, version and
``kube-public/cluster-info``, see :func:`is_public_path`).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import inspect
import io
import logging
import os
import secrets
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web

from kubelite.api import errors

log = logging.getLogger(__name__)

AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS_USER = "system:anonymous"
ADMIN_USER = "kubelite-admin"
ADMIN_GROUP = "system:masters"
TOKEN_FILE = "tokens.csv"

PUBLIC_ROOTS = ("/livez", "/readyz", "/healthz")
# kube-public/cluster-info: the CA and address a joining node reads before it may send its
# bootstrap token (RBAC still decides: only `get` is granted to system:anonymous)
CLUSTER_INFO_PATH = "/api/v1/namespaces/kube-public/configmaps/cluster-info"


@dataclass
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict)


ANONYMOUS = UserInfo(ANONYMOUS_USER, (UNAUTHENTICATED,))

TokenHook = Callable[[str], "UserInfo | None | Awaitable[UserInfo | None]"]
RequestHook = Callable[[web.Request], "UserInfo | None | Awaitable[UserInfo | None]"]


# where the middleware leaves the authenticated user on each request
USER: web.RequestKey[UserInfo] = web.RequestKey("user", UserInfo)


def _with_authenticated(groups: Any) -> tuple[str, ...]:
    out: list[str] = []
    for g in list(groups) + [AUTHENTICATED]:
        if g and g not in out:
            out.append(g)
    return tuple(out)


def is_public_path(path: str) -> bool:
    """Health and version endpoints, readable without authentication."""
    if not path.startswith("/"):
        return False
    segs = path.split("/")[1:]
    if any(s in (".", "..") for s in segs):
        return False
    if path in ("/version", "/version/", CLUSTER_INFO_PATH):
        return True
    return any(path == r or path.startswith(r + "/") for r in PUBLIC_ROOTS)


def _token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


# --------------------------------------------------------------------------- static token file


def parse_token_file(text: str) -> dict[bytes, UserInfo]:
    """Parse the token CSV; returns {sha256(token): UserInfo}.  Bad lines are skipped."""
    out: dict[bytes, UserInfo] = {}
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 3:
            log.warning("token file line %d: expected at least 3 columns (token,user,uid), skipped", lineno)
            continue
        token, user, uid = row[0].strip(), row[1].strip(), row[2].strip()
        if not token or not user:
            log.warning("token file line %d: empty token or user, skipped", lineno)
            continue
        groups: list[str] = []
        if len(row) > 3 and row[3].strip():
            groups = [g.strip() for g in row[3].split(",") if g.strip()]
        d = _token_digest(token)
        if d in out:
            log.warning("token file line %d: duplicate token, skipped", lineno)
            continue
        out[d] = UserInfo(user, tuple(groups), uid)
    return out


def _csv_line(fields: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(fields)
    return buf.getvalue()


def ensure_admin_token(data_dir: Path) -> Path:
    """Create ``<data_dir>/tokens.csv`` with a random admin token on first start (mode 0600).

    An existing file is left alone (the admin may have edited it)."""
    path = Path(data_dir) / TOKEN_FILE
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(32)
    line = _csv_line([token, ADMIN_USER, ADMIN_USER, ADMIN_GROUP])
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(fd, "w") as f:
        f.write(line)
    return path


def read_admin_token(data_dir: Path) -> str | None:
    """The first token of user ``kubelite-admin`` in the token file (for in-process clients)."""
    path = Path(data_dir) / TOKEN_FILE
    try:
        text = path.read_text()
    except OSError:
        return None
    for row in csv.reader(io.StringIO(text)):
        if len(row) >= 2 and row[1].strip() == ADMIN_USER and row[0].strip():
            return row[0].strip()
    return None


class TokenFile:
    """A static token file, re-read when its (mtime, size, inode) changes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._sig: tuple[int, int, int] | None = None
        self._tokens: dict[bytes, UserInfo] = {}
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._sig is not None:
                log.info("token file %s removed; static tokens disabled", self.path)
            self._sig, self._tokens = None, {}
            return
        sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        if sig == self._sig:
            return
        with self._lock:
            if sig == self._sig:
                return
            try:
                text = self.path.read_text(encoding="utf-8")
            except OSError as e:
                log.warning("cannot read token file %s: %s", self.path, e.strerror)
                return
            self._tokens = parse_token_file(text)
            self._sig = sig
            log.info("loaded %d static token(s) from %s", len(self._tokens), self.path)

    def lookup(self, token: str) -> UserInfo | None:
        self._refresh()
        d = _token_digest(token)
        found: UserInfo | None = None
        # Compare against every entry, without early exit: timing does not depend on the
        # secret nor on which entry matched.
        for key, info in self._tokens.items():
            if hmac.compare_digest(key, d):
                found = info
        return found


# --------------------------------------------------------------------------- authenticator


def _peer_user(request: web.Request) -> UserInfo | None:
    transport = request.transport
    if transport is None:
        return None
    sslobj = transport.get_extra_info("ssl_object")
    if sslobj is None:
        return None
    try:
        # Non-empty only when the peer presented a cert that verified against our CA.
        cert = sslobj.getpeercert()
    except (ValueError, OSError):
        return None
    if not cert:
        return None
    cn = ""
    orgs: list[str] = []
    for rdn in cert.get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                cn = v  # like Go's pkix.Name, the last CN wins
            elif k == "organizationName":
                orgs.append(v)
    if not cn:
        return None
    return UserInfo(cn, _with_authenticated(orgs))


# k8s.io/apiserver/pkg/authentication/request/websocket/protocol.go
BEARER_PROTOCOL_PREFIX = "base64url.bearer.authorization.k8s.io."


class BadCredential(Exception):
    """A credential that is malformed (not merely unknown): the request is a 401."""


def websocket_bearer(request: web.Request) -> tuple[str, list[str]] | None:
    """(token, the other subprotocols) of a WebSocket request that carries its bearer token as
    a subprotocol; None when it carries none. Raises BadCredential as upstream's
    ProtocolAuthenticator refuses: two tokens, bad base64url, no other subprotocol."""
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return None
    token: str | None = None
    others: list[str] = []
    for header in request.headers.getall("Sec-WebSocket-Protocol", []):
        for proto in header.split(","):
            proto = proto.strip()
            if not proto.startswith(BEARER_PROTOCOL_PREFIX):
                if proto:
                    others.append(proto)
                continue
            if token is not None:
                raise BadCredential("multiple base64.bearer.authorization tokens specified")
            encoded = proto[len(BEARER_PROTOCOL_PREFIX):]
            try:
                if "=" in encoded:
                    raise ValueError("padded")
                token = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_", validate=True).decode()
            except (ValueError, UnicodeDecodeError) as exc:
                raise BadCredential("invalid base64.bearer.authorization token encoding") from exc
    if not token:
        return None
    if not others:
        raise BadCredential("missing additional subprotocol")
    return token, others


def bearer_token(request: web.Request) -> str | None:
    h = request.headers.get("Authorization", "")
    scheme, _, token = h.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


class Authenticator:
    def __init__(self, token_file: Path | None = None) -> None:
        self.tokens = TokenFile(token_file) if token_file is not None else None
        self.token_hooks: list[TokenHook] = []
        self.request_hooks: list[RequestHook] = []

    @classmethod
    def for_data_dir(cls, data_dir: Path, create_admin_token: bool = True) -> Authenticator:
        if create_admin_token:
            ensure_admin_token(data_dir)
        return cls(Path(data_dir) / TOKEN_FILE)

    def add_token_authenticator(self, hook: TokenHook) -> None:
        """``hook(token) -> UserInfo | None`` (sync or async), tried after the static tokens."""
        self.token_hooks.append(hook)

    def add_request_authenticator(self, hook: RequestHook) -> None:
        """``hook(request) -> UserInfo | None`` (sync or async), tried last."""
        self.request_hooks.append(hook)

    async def authenticate_token(self, token: str) -> UserInfo | None:
        """The user a bearer token stands for (the static tokens, then the token hooks)."""
        if self.tokens is not None:
            u = self.tokens.lookup(token)
            if u is not None:
                return UserInfo(u.name, _with_authenticated(u.groups), u.uid, dict(u.extra))
        for thook in self.token_hooks:
            u = await _maybe_await(thook(token))
            if u is not None:
                return UserInfo(u.name, _with_authenticated(u.groups), u.uid, dict(u.extra))
        return None

    async def authenticate(self, request: web.Request) -> UserInfo | None:
        user = _peer_user(request)
        if user is not None:
            return user
        token = bearer_token(request)
        if token is not None:
            found = await self.authenticate_token(token)
            if found is not None:
                return found
        ws = websocket_bearer(request)
        if ws is not None:
            found = await self.authenticate_token(ws[0])
            if found is not None:
                return found
        for rhook in self.request_hooks:
            u = await _maybe_await(rhook(request))
            if u is not None:
                return UserInfo(u.name, _with_authenticated(u.groups), u.uid, dict(u.extra))
        return None


async def _maybe_await(v: Any) -> Any:
    if inspect.isawaitable(v):
        return await v
    return v


# --------------------------------------------------------------------------- middleware


def unauthorized_response(message: str = "Unauthorized") -> web.Response:
    return web.Response(status=401, body=orjson.dumps(errors.unauthorized(message).status()),
                        content_type="application/json")


def _public(request: web.Request) -> bool:
    raw = request.raw_path.split("?", 1)[0]
    return is_public_path(request.path) and is_public_path(unquote(raw))


def _bearer_protocol_or_none(request: web.Request) -> tuple[str, list[str]] | None:
    try:
        return websocket_bearer(request)
    except BadCredential:
        return None


def auth_middleware(authenticator: Authenticator) -> Any:
    """Sets ``request[USER]`` (``ANONYMOUS`` on public paths without credentials);
    anonymous requests to any other path get a 401 ``Status``."""

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        user: UserInfo | None = None
        try:
            user = await authenticator.authenticate(request)
        except BadCredential:
            user = None
        except Exception as e:  # never leak a traceback (or a credential) to the client
            log.warning("authentication error: %s", type(e).__name__)
            user = None
        if user is None:
            # a credential that does not authenticate is a 401 everywhere: the apiserver's
            # anonymous fallback is union.NewFailOnError ("don't consider a bad bearer token
            # ... anonymous"), pkg/kubeapiserver/authenticator/config.go
            if not _public(request) or bearer_token(request) is not None \
                    or _bearer_protocol_or_none(request) is not None:
                return unauthorized_response()
            user = ANONYMOUS
        ws = _bearer_protocol_or_none(request)
        if ws is not None:  # the token never reaches the handler (nor is it echoed back)
            headers = request.headers.copy()
            headers.popall("Sec-WebSocket-Protocol", None)
            headers["Sec-WebSocket-Protocol"] = ", ".join(ws[1])
            request = request.clone(headers=headers)
        request[USER] = user
        return await handler(request)

    return middleware


__all__ = [
    "ANONYMOUS", "AUTHENTICATED", "BEARER_PROTOCOL_PREFIX", "Authenticator", "TokenFile", "UserInfo", "auth_middleware",
    "bearer_token", "ensure_admin_token", "is_public_path", "parse_token_file", "read_admin_token",
    "unauthorized_response", "websocket_bearer",
]
