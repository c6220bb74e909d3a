"""Authorization filter (k8s.io/apiserver/pkg/endpoints/filters/authorization.go): every
request, once authenticated, is described by its RequestInfo and put to the authorizer;
anything but Allow is a 403 ``Status`` with upstream's message."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from kubelite.api import errors
from kubelite.apiserver import http
from kubelite.apiserver.auth import USER
from kubelite.apiserver.authorizer import ALLOW, Attributes, forbidden_message
from kubelite.apiserver.requestinfo import REQUEST_INFO, RequestInfo, request_info

log = logging.getLogger(__name__)


def attributes_for(user: Any, info: RequestInfo, query: Any = None) -> Attributes:
    return Attributes(
        user=user, verb=info.verb, resource_request=info.is_resource_request, namespace=info.namespace,
        api_group=info.api_group, api_version=info.api_version, resource=info.resource,
        subresource=info.subresource, name=info.name, path=info.path,
        field_selector=(query or {}).get("fieldSelector", "") if info.is_resource_request else "")


def forbidden_error(a: Attributes, reason: str = "") -> errors.StatusError:
    """responsewriters.Forbidden → apierrors.NewForbidden(GroupResource, name, msg)."""
    msg = forbidden_message(a)
    if reason:
        msg = f"{msg}: {reason}"
    if not a.resource_request or not a.resource:
        return errors.StatusError(403, "Forbidden", f"forbidden: {msg}", {})
    return errors.forbidden(a.resource, a.name, msg, a.api_group)


def authz_middleware(authorizer: Any) -> Any:
    """Place after ``auth_middleware``: it reads ``request[USER]``. Sets
    ``request["request_info"]`` and ``request["authz"]`` for the filters after it."""

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        info = request.get(REQUEST_INFO) or request_info(request.method, request.path, request.query)
        request[REQUEST_INFO] = info
        user = request.get(USER)
        attrs = attributes_for(user, info, request.query)
        request["authz"] = attrs
        try:
            decision, reason = await authorizer.authorize(attrs)
        except Exception:
            log.exception("authorizer error")
            decision, reason = "NoOpinion", ""
        if decision != ALLOW:
            return http.status_response(forbidden_error(attrs, reason))
        return await handler(request)

    return middleware


__all__ = ["attributes_for", "authz_middleware", "forbidden_error"]
