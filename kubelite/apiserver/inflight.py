"""A bound on requests in flight: ``--max-requests-inflight`` (400) and
``--max-mutating-requests-inflight`` (200), as k8s.io/apiserver/pkg/server/filters/
maxinflight.go's WithMaxInFlightLimit.

Long-running requests (the ``watch`` and ``proxy`` verbs; the attach, exec, proxy, log and
portforward subresources: BasicLongRunningRequestCheck as kube-apiserver configures it) are
not counted. Beyond a bound the answer is a 429 with ``Retry-After: 1`` and upstream's
plain-text body, except for members of ``system:masters``, who always get through. Place
after authentication and impersonation, before authorization.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from kubelite.apiserver.auth import USER
from kubelite.apiserver.requestinfo import REQUEST_INFO, RequestInfo, request_info

LONG_RUNNING_VERBS = frozenset(("watch", "proxy"))
LONG_RUNNING_SUBRESOURCES = frozenset(("attach", "exec", "proxy", "log", "portforward"))
NON_MUTATING_VERBS = frozenset(("get", "list", "watch"))
PRIVILEGED_GROUP = "system:masters"
TOO_MANY = "Too many requests, please try again later.\n"


def long_running(info: RequestInfo) -> bool:
    if info.verb in LONG_RUNNING_VERBS:
        return True
    if info.is_resource_request and info.subresource in LONG_RUNNING_SUBRESOURCES:
        return True
    return not info.is_resource_request and info.path.startswith("/debug/pprof/")


def too_many_requests() -> web.Response:
    """tooManyRequests: http.Error(w, "Too many requests, please try again later.", 429)."""
    return web.Response(status=429, text=TOO_MANY, content_type="text/plain", charset="utf-8",
                        headers={"Retry-After": "1", "X-Content-Type-Options": "nosniff"})


def inflight_middleware(max_readonly: int = 400, max_mutating: int = 200, metrics: Any = None) -> Any:
    """``metrics`` (an :class:`~kubelite.apiserver.metrics.APIMetrics`) hears of every request
    in flight (apiserver_current_inflight_requests) and of every 429."""
    counts = {False: 0, True: 0}
    limits = {False: max_readonly, True: max_mutating}
    kinds = {False: "readOnly", True: "mutating"}
    watermark = metrics.inflight if metrics is not None else None

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        info = request.get(REQUEST_INFO) or request_info(request.method, request.path, request.query)
        request[REQUEST_INFO] = info
        if long_running(info):
            return await handler(request)
        mutating = info.verb not in NON_MUTATING_VERBS
        limit = limits[mutating]
        if limit <= 0:
            return await handler(request)
        if counts[mutating] >= limit:
            user = request.get(USER)
            if user is not None and PRIVILEGED_GROUP in user.groups:
                return await handler(request)
            if metrics is not None:
                metrics.dropped(request, info)
            return too_many_requests()
        counts[mutating] += 1
        if watermark is not None:
            watermark.enter(kinds[mutating])
        try:
            return await handler(request)
        finally:
            counts[mutating] -= 1
            if watermark is not None:
                watermark.leave(kinds[mutating])

    return middleware


__all__ = ["inflight_middleware", "long_running", "too_many_requests"]
