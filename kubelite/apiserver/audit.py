"""Audit log: one audit.k8s.io/v1 ``Event`` (level Metadata, stage ResponseComplete) per
mutating request and per exec/attach/portforward, as JSON lines in
``<data_dir>/audit/audit.log`` with size rotation. Request and response bodies are never
recorded (so no secret values), nor credentials."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from kubelite.api import errors
from kubelite.apiserver.auth import USER
from kubelite.apiserver.impersonation import CONSTRAINT, IMPERSONATOR
from kubelite.apiserver.requestinfo import REQUEST_INFO, request_info

log = logging.getLogger(__name__)

MUTATING_VERBS = ("create", "update", "patch", "delete", "deletecollection")
STREAM_SUBRESOURCES = ("exec", "attach", "portforward")
MAX_BYTES = 100 * 1024 * 1024
BACKUPS = 5


def _micro(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AuditLog:
    def __init__(self, path: Path, max_bytes: int = MAX_BYTES, backups: int = BACKUPS) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)

    def write(self, event: dict[str, Any]) -> None:
        line = orjson.dumps(event) + b"\n"
        with self._lock:
            try:
                if self.path.exists() and self.path.stat().st_size + len(line) > self.max_bytes:
                    self._rotate()
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                try:
                    os.write(fd, line)
                finally:
                    os.close(fd)
            except OSError as exc:
                log.warning("cannot write audit log %s: %s", self.path, exc.strerror)

    def _rotate(self) -> None:
        for i in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))


def should_audit(verb: str, subresource: str) -> bool:
    return verb in MUTATING_VERBS or subresource in STREAM_SUBRESOURCES


def _user_info(user: Any) -> dict[str, Any]:
    """authentication.k8s.io/v1 UserInfo of a user."""
    out: dict[str, Any] = {"username": getattr(user, "name", "")}
    if user is not None:
        if getattr(user, "uid", ""):
            out["uid"] = user.uid
        out["groups"] = list(user.groups)
        if getattr(user, "extra", None):
            out["extra"] = {k: list(v) for k, v in user.extra.items()}
    return out


def build_event(request: web.Request, info: Any, code: int, received: float, audit_id: str) -> dict[str, Any]:
    user = request.get(USER)
    impersonator = request.get(IMPERSONATOR)
    ev: dict[str, Any] = {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": audit_id,
        "stage": "ResponseComplete", "requestURI": request.raw_path, "verb": info.verb,
        "user": _user_info(impersonator if impersonator is not None else user),
    }
    if impersonator is not None:  # audit.LogImpersonatedUser
        ev["impersonatedUser"] = _user_info(user)
        if request.get(CONSTRAINT):
            ev["authenticationMetadata"] = {"impersonationConstraint": request[CONSTRAINT]}
    ev["sourceIPs"] = [request.remote or ""]
    ev["userAgent"] = request.headers.get("User-Agent", "")
    if info.is_resource_request:
        ref: dict[str, Any] = {"resource": info.resource}
        if info.namespace:
            ref["namespace"] = info.namespace
        if info.name:
            ref["name"] = info.name
        ref["apiGroup"] = info.api_group
        ref["apiVersion"] = info.api_version
        if info.subresource:
            ref["subresource"] = info.subresource
        ev["objectRef"] = ref
    ev["responseStatus"] = {"metadata": {}, "code": code}
    ev["requestReceivedTimestamp"] = _micro(received)
    ev["stageTimestamp"] = _micro(time.time())
    ev["annotations"] = {}
    return ev


def audit_middleware(data_dir: Path, max_bytes: int = MAX_BYTES) -> Any:
    """Place right after ``auth_middleware`` (it reads ``request[USER]``) so that refused
    requests are audited too."""
    sink = AuditLog(Path(data_dir) / "audit" / "audit.log", max_bytes)

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        info = request_info(request.method, request.path, request.query)
        request[REQUEST_INFO] = info  # the filters after this one reuse it
        if not should_audit(info.verb, info.subresource):
            return await handler(request)
        received = time.time()
        audit_id = request.headers.get("Audit-ID") or str(uuid.uuid4())
        code = 500
        try:
            resp = await handler(request)
            code = resp.status
            if not resp.prepared:
                resp.headers.setdefault("Audit-Id", audit_id)
            return resp
        except errors.StatusError as exc:
            code = exc.code
            raise
        except web.HTTPException as exc:
            code = exc.status
            raise
        finally:
            sink.write(build_event(request, info, code, received, audit_id))

    return middleware


__all__ = ["AuditLog", "audit_middleware", "build_event", "should_audit"]
