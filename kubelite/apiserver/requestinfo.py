"""What a request asks for, derived from its path, method and query alone — as
k8s.io/apiserver/pkg/endpoints/request/requestinfo.go does.

Resource paths::

    /api/{version}/{resource}[/{name}[/{subresource}]]
    /api/{version}/namespaces/{namespace}/{resource}[/{name}[/{subresource}]]
    /apis/{group}/{version}/…                      (same shapes)
    /api/{version}/watch/…  /apis/{g}/{v}/watch/…  (deprecated special verb "watch")

Everything else (``/healthz``, ``/version``, ``/api``, ``/apis/{group}``, …) is a
non-resource request whose verb is the lower-cased HTTP method.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from kubelite.api.meta import is_valid_path_segment_name

API_PREFIXES = ("api", "apis")
GROUPLESS_PREFIXES = ("api",)
_SPECIAL_VERBS = ("proxy", "watch")
_SPECIAL_VERBS_NO_SUBRESOURCES = ("proxy",)
_NAMESPACE_SUBRESOURCES = ("status", "finalize")
_METHOD_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch",
                 "DELETE": "delete"}


@dataclass
class RequestInfo:
    is_resource_request: bool
    path: str
    verb: str
    api_prefix: str = ""
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    parts: tuple[str, ...] = ()


def _truthy(v: str | None) -> bool:
    return (v or "").lower() in ("true", "1")


def _exact_name(field_selector: str) -> str:
    """fields.Selector.RequiresExactMatch("metadata.name") for the simple ``a=b,c==d`` forms."""
    found = ""
    for term in field_selector.split(","):
        term = term.strip()
        if "!=" in term:
            continue
        key, sep, value = term.partition("==") if "==" in term else term.partition("=")
        if sep and key.strip() == "metadata.name":
            found = value.strip()
    return found


def request_info(method: str, path: str, query: Mapping[str, str] | None = None) -> RequestInfo:
    query = query or {}
    info = RequestInfo(False, path, method.lower())
    parts = [p for p in path.strip("/").split("/")] if path.strip("/") else []
    if len(parts) < 3 or parts[0] not in API_PREFIXES:
        return info
    info.api_prefix = parts[0]
    cur = parts[1:]
    if info.api_prefix not in GROUPLESS_PREFIXES:
        if len(cur) < 3:
            return info
        info.api_group = cur[0]
        cur = cur[1:]
    info.is_resource_request = True
    info.api_version = cur[0]
    cur = cur[1:]

    if cur[0] in _SPECIAL_VERBS:
        if len(cur) < 2:
            # upstream: "unable to determine kind and namespace from url"; treat as non-resource
            return RequestInfo(False, path, method.lower())
        info.verb = cur[0]
        cur = cur[1:]
    else:
        info.verb = _METHOD_VERBS.get(method.upper(), "")

    if cur[0] == "namespaces":
        if len(cur) > 1:
            info.namespace = cur[1]
            if len(cur) > 2 and cur[2] not in _NAMESPACE_SUBRESOURCES:
                cur = cur[2:]
    info.parts = tuple(cur)

    if len(cur) >= 3 and info.verb not in _SPECIAL_VERBS_NO_SUBRESOURCES:
        info.subresource = cur[2]
    if len(cur) >= 2:
        info.name = cur[1]
    if len(cur) >= 1:
        info.resource = cur[0]

    if not info.name and info.verb == "get":
        info.verb = "watch" if _truthy(query.get("watch")) else "list"
        fs = query.get("fieldSelector", "")
        if fs:
            name = _exact_name(fs)
            if name and not is_valid_path_segment_name(name):
                info.name = name
    if not info.name and info.verb == "delete":
        info.verb = "deletecollection"
    return info


# where the first filter that needs it leaves a request's RequestInfo for the others
REQUEST_INFO: web.RequestKey[RequestInfo] = web.RequestKey("request_info", RequestInfo)

__all__ = ["REQUEST_INFO", "RequestInfo", "request_info"]
