"""``/dashboard/``: the front end's files and the doctor's text (see :mod:`kubelite.dashboard`)."""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from kubelite.api import errors
from kubelite.apiserver import http
from kubelite.apiserver.auth import Authenticator, unauthorized_response

PREFIX = "/dashboard/"
DIAGNOSE_PATH = PREFIX + "api/diagnose"
ENV_DIR = "KUBELITE_DASHBOARD_DIR"
MAX_EVIDENCE = 8 * 1024 * 1024
# the page talks only to this origin (the API and its WebSockets); nothing inline but styles
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
NOT_BUILT = ("the dashboard's front end is not built: run `make setup` (it bundles web/dashboard into "
             "build/dashboard), or point " + ENV_DIR + " at a built copy")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def static_dir() -> Path:
    """Where the bundle is: ``$KUBELITE_DASHBOARD_DIR``, else the checkout's ``build/dashboard``."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "build" / "dashboard"


def _file_for(root: Path, rel: str) -> Path | None:
    """The file under ``root`` that ``rel`` names, never one outside it (no dot files either)."""
    parts = [p for p in rel.split("/") if p]
    if any(p.startswith(".") or "\\" in p or "\0" in p for p in parts):
        return None
    path = root.joinpath(*parts) if parts else root / "index.html"
    try:
        resolved = path.resolve()
        if not resolved.is_relative_to(root.resolve()) or not resolved.is_file():
            return None
    except (OSError, ValueError):
        return None
    return resolved


def _static(request: web.Request, root: Path) -> web.StreamResponse:
    if request.method not in ("GET", "HEAD"):
        raise errors.method_not_supported("", request.method.lower())
    if not (root / "index.html").is_file():
        return web.Response(status=503, text=NOT_BUILT + "\n", content_type="text/plain")
    found = _file_for(root, request.path[len(PREFIX):])
    if found is None:
        return web.Response(status=404, text="404 page not found\n", content_type="text/plain")
    ctype = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if ctype == "text/html":
        headers["Content-Security-Policy"] = CSP
    return web.FileResponse(found, headers={**headers, "Content-Type": ctype})


async def _diagnose(request: web.Request, authn: Authenticator) -> web.StreamResponse:
    """The doctor's text for the evidence the page read as its user (the pod, its events, the
    nodes and the pods bound to them, the last log lines): a pure function of what was sent."""
    from kubelite.doctor import Evidence, diagnose
    from kubelite.doctor.evidence import events_of

    if await authn.authenticate(request) is None:
        return unauthorized_response()
    if request.method != "POST":
        raise errors.method_not_supported("", request.method.lower())
    if request.content_type != http.JSON:  # (no form a cross-site page could post)
        raise errors.StatusError(415, "UnsupportedMediaType",
                                 f'the body of the request was in an unknown format - accepted media types '
                                 f'include: {http.JSON}', {})
    raw = await request.content.read(MAX_EVIDENCE + 1)
    if len(raw) > MAX_EVIDENCE:
        raise errors.StatusError(413, "RequestEntityTooLarge", "the evidence is too large", {})
    try:
        doc: Any = orjson.loads(raw)
        if not isinstance(doc, dict) or not isinstance(doc.get("pod"), dict):
            raise ValueError("no pod")
        ev = Evidence.from_dict(doc)
        ev.events = events_of(ev.pod, ev.events)  # this incarnation's, oldest first (as gather's)
        if not ev.now:
            ev.now = Evidence(pod={}).now
        found = diagnose(ev)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise errors.bad_request(f"the evidence cannot be read: {exc}") from exc
    return web.Response(body=http.dumps({"text": found.text(), "diagnosis": found.to_dict()}),
                        content_type=http.JSON)


def dashboard_middleware(authn: Authenticator, root: Path | None = None) -> Any:
    """Answers ``/dashboard`` and everything under ``/dashboard/``; every other request passes on.
    Place it before the authentication middleware: the static files are public."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path == PREFIX.rstrip("/"):
            raise web.HTTPMovedPermanently(PREFIX)
        if not path.startswith(PREFIX):
            return await handler(request)
        if path == DIAGNOSE_PATH:
            return await _diagnose(request, authn)
        return _static(request, root or static_dir())

    return middleware
