"""User impersonation: ``Impersonate-User``, ``-Group``, ``-Uid``, ``-Extra-*``.

Mirrors kube-apiserver v1.37, where the ConstrainedImpersonation feature (beta, on by
default) serves these headers (k8s.io/apiserver/pkg/endpoints/filters/impersonation:
constrained_impersonation.go, mode.go). Modes are tried in order, the first that allows
the wanted user wins, and when none does the first refusal is the answer:

* ``associated-node`` — a node-bound service account acting as its own node;
* ``arbitrary-node`` — acting as any ``system:node:<name>``;
* ``serviceaccount`` — acting as ``system:serviceaccount:<ns>:<name>``;
* ``user-info`` — acting as any other user, with groups, uid and extra;
* ``legacy`` — the ``impersonate`` verb on users, groups, uids, userextras and
  serviceaccounts, as before constrained impersonation.

A constrained mode first needs ``impersonate-on:<mode>:<verb>`` on the request itself, then
``impersonate:<mode>`` on each part of the wanted user (API group authentication.k8s.io);
legacy needs ``impersonate`` (core group for users, groups and service accounts). The
impersonated user always gets ``system:authenticated`` (``system:unauthenticated`` for
``system:anonymous``). The audit log records both users.

Place after the audit middleware and before authorization.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from kubelite.api import errors, meta
from kubelite.api import field as fld
from kubelite.apiserver import http
from kubelite.apiserver.auth import USER, UserInfo
from kubelite.apiserver.authorizer import ALLOW, Attributes
from kubelite.apiserver.authz import attributes_for, forbidden_error
from kubelite.apiserver.requestinfo import request_info

log = logging.getLogger(__name__)

USER_HEADER = "Impersonate-User"
GROUP_HEADER = "Impersonate-Group"
UID_HEADER = "Impersonate-Uid"
EXTRA_PREFIX = "impersonate-extra-"
SA_PREFIX = "system:serviceaccount:"
NODE_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
ANONYMOUS = "system:anonymous"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
MASTERS = "system:masters"
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"
AUTHN_GROUP, AUTHN_VERSION = "authentication.k8s.io", "v1"
MANY_CHECKS = 4  # manyAuthorizationChecksInLoop: try one wildcard check first

# the user the request authenticated as, when it acts as another one (for the audit log)
IMPERSONATOR: web.RequestKey[UserInfo] = web.RequestKey("impersonator", UserInfo)
CONSTRAINT: web.RequestKey[str] = web.RequestKey("impersonation_constraint", str)
_HTTP_PATH = re.compile(r"^[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$")


@dataclass
class Wanted:
    name: str
    uid: str
    groups: list[str]
    extra: dict[str, list[str]]


class Refused(Exception):
    def __init__(self, err: errors.StatusError) -> None:
        super().__init__(err.message)
        self.err = err


# --------------------------------------------------------------------------- headers
def _go_string_slice(v: list[str] | None) -> str:
    if v is None:
        return "[]string(nil)"
    return "[]string{" + ", ".join(fld.go_quote(s) for s in v) + "}"


def _go_wanted(w: Wanted, groups_given: bool, extra_given: bool) -> str:
    """%#v of the *user.DefaultInfo upstream prints in its 400."""
    if not extra_given:
        extra = "map[string][]string(nil)"
    else:
        extra = "map[string][]string{" + ", ".join(
            f"{fld.go_quote(k)}:{_go_string_slice(w.extra[k])}" for k in sorted(w.extra)) + "}"
    return (f"&user.DefaultInfo{{Name:{fld.go_quote(w.name)}, UID:{fld.go_quote(w.uid)}, "
            f"Groups:{_go_string_slice(w.groups if groups_given else None)}, Extra:{extra}}}")


def wanted_user(request: web.Request) -> Wanted | None:
    """processImpersonationHeaders: the wanted user, or None when no impersonation is asked."""
    h = request.headers
    name = h.get(USER_HEADER, "")
    uid = h.get(UID_HEADER, "")
    groups = h.getall(GROUP_HEADER, [])
    extra: dict[str, list[str]] = {}
    extra_given = False
    for key, value in h.items():
        if key.lower().startswith(EXTRA_PREFIX):
            extra_given = True
            ekey = key[len(EXTRA_PREFIX):].lower()
            try:
                ekey = unquote(ekey, errors="strict")
            except UnicodeDecodeError:
                pass
            extra.setdefault(ekey, []).append(value)
    w = Wanted(name, uid, list(groups), extra)
    if not name:
        if uid or groups or extra_given:
            raise Refused(errors.bad_request(
                f"requested {_go_wanted(w, bool(groups), extra_given)} without impersonating a user name"))
        return None
    return w


def _service_account(username: str) -> tuple[str, str] | None:
    """serviceaccount.SplitUsername."""
    if not username.startswith(SA_PREFIX):
        return None
    parts = username[len(SA_PREFIX):].split(":")
    if len(parts) != 2:
        return None
    ns, name = parts
    if meta.name_is_dns_label(ns, False) or meta.name_is_dns_subdomain(name, False):
        return None
    return ns, name


def _node(username: str) -> str | None:
    if not username.startswith(NODE_PREFIX):
        return None
    name = username[len(NODE_PREFIX):]
    return None if meta.name_is_dns_subdomain(name, False) else name


def _only_name(w: Wanted) -> bool:
    return not w.uid and not w.groups and not w.extra


# --------------------------------------------------------------------------- checks
class _Checker:
    def __init__(self, authorizer: Any, requestor: UserInfo, request_attrs: Attributes) -> None:
        self.authorizer = authorizer
        self.requestor = requestor
        self.request_attrs = request_attrs

    async def check(self, a: Attributes) -> None:
        """checkAuthorization: anything but Allow is the Forbidden Status of ``a``."""
        try:
            decision, reason = await self.authorizer.authorize(a)
        except Exception as exc:  # an authorizer error is a refusal with its text
            decision, reason = "NoOpinion", str(exc)
        if decision != ALLOW:
            raise Refused(forbidden_error(a, reason))

    def attrs(self, group: str, version: str, verb: str, resource: str, name: str = "") -> Attributes:
        return Attributes(user=self.requestor, verb=verb, resource_request=True, api_group=group,
                          api_version=version, resource=resource, name=name)

    async def state_check(self, w: Wanted, verb: str, constrained: bool, any_node: bool = False) -> UserInfo:
        """impersonationModeState.check: username, uid, groups, extra (``any_node``: the
        associated-node mode authorizes node name ``*``)."""
        group, version = (AUTHN_GROUP, AUTHN_VERSION) if constrained else ("", "v1")
        groups = list(w.groups)
        ua = self.attrs(group, version, verb, "users", w.name)
        node = _node(w.name) if constrained else None
        if node is not None:
            ua = replace(ua, resource="nodes", name="*" if any_node else node)
            if w.groups:
                raise Refused(forbidden_error(ua, f"when impersonating a node, cannot impersonate groups "
                                                  f"{_go_quoted_list(w.groups)}"))
            groups = [NODES_GROUP]
        sa = _service_account(w.name)
        if sa is not None:
            ua = replace(ua, resource="serviceaccounts", namespace=sa[0], name=sa[1])
            if constrained and w.groups:
                raise Refused(forbidden_error(ua, f"when impersonating a service account, cannot impersonate "
                                                  f"groups {_go_quoted_list(w.groups)}"))
            if not w.groups:
                groups = ["system:serviceaccounts", f"system:serviceaccounts:{sa[0]}"]
        await self.check(ua)
        if w.uid:
            await self.check(self.attrs(AUTHN_GROUP, AUTHN_VERSION, verb, "uids", w.uid))
        if w.groups:
            ga = self.attrs(group, version, verb, "groups")
            if constrained:
                if "" in w.groups:
                    raise Refused(forbidden_error(ga, "impersonating the empty string group is not allowed"))
                if MASTERS in w.groups:
                    raise Refused(forbidden_error(replace(ga, name=MASTERS),
                                                  "impersonating the system:masters group is not allowed"))
            if not (constrained and len(w.groups) >= MANY_CHECKS and await self._allowed(replace(ga, name="*"))):
                for g in w.groups:
                    await self.check(replace(ga, name=g))
        if w.extra:
            ea = self.attrs(AUTHN_GROUP, AUTHN_VERSION, verb, "userextras")
            if constrained:
                problem = _extra_problem(w.extra)
                if problem:
                    raise Refused(forbidden_error(ea, problem))
            large = len(w.extra) >= MANY_CHECKS or sum(len(v) for v in w.extra.values()) >= MANY_CHECKS
            if not (constrained and large and await self._allowed(replace(ea, subresource="*", name="*"))):
                for key, values in w.extra.items():
                    for value in values:
                        await self.check(replace(ea, subresource=key, name=value))
        if w.name == ANONYMOUS:
            if UNAUTHENTICATED not in groups:
                groups.append(UNAUTHENTICATED)
        elif UNAUTHENTICATED not in groups and AUTHENTICATED not in groups:
            groups.append(AUTHENTICATED)
        return UserInfo(w.name, tuple(groups), w.uid, {k: list(v) for k, v in w.extra.items()})

    async def _allowed(self, a: Attributes) -> bool:
        try:
            await self.check(a)
            return True
        except Refused:
            return False


def _go_quoted_list(items: list[str]) -> str:
    """%q of a []string: ``["a" "b"]``."""
    return "[" + " ".join(fld.go_quote(s) for s in items) + "]"


def _extra_problem(extra: dict[str, list[str]]) -> str:
    """validateExtra (constrained modes only)."""
    for key, values in extra.items():
        if not key:
            return "impersonating the empty string key in extra is not allowed"
        err = _domain_prefixed_path_error(key)
        if err:
            return f"impersonating an invalid key in extra is not allowed: {err}"
        if key != key.lower():
            return f"impersonating a non-lowercase key in extra is not allowed: {fld.go_quote(key)}"
        if not values:
            return "impersonating empty values in extra is not allowed"
        if "" in values:
            return "impersonating the empty string value in extra is not allowed"
    return ""


def _domain_prefixed_path_error(key: str) -> str:
    """validation.IsDomainPrefixedPath(field.NewPath("extra", "key"), key).ToAggregate()."""
    path = "extra.key"
    host, sep, rest = key.partition("/")
    if not sep or not host or not rest:
        return f'{path}: Invalid value: {fld.go_quote(key)}: must be a domain-prefixed path (such as "acme.io/foo")'
    errs = [f"{path}: Invalid value: {fld.go_quote(host)}: {e}" for e in meta.is_dns1123_subdomain(host)]
    if not _HTTP_PATH.match(rest):
        errs.append(f"{path}: Invalid value: {fld.go_quote(rest)}: Invalid path (regex used for validation is "
                    f"'[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+')")
    if len(errs) > 1:
        return "[" + ", ".join(errs) + "]"
    return errs[0] if errs else ""


async def impersonate(authorizer: Any, requestor: UserInfo, request_attrs: Attributes,
                      w: Wanted) -> tuple[UserInfo, str]:
    """impersonationModesTracker.getImpersonatedUser: (the user, the verb that allowed it, ""
    for legacy impersonation); raises :class:`Refused` with the first refusal."""
    c = _Checker(authorizer, requestor, request_attrs)
    node = _node(w.name)
    sa = _service_account(w.name)
    modes = [
        ("associated-node", _only_name(w) and node is not None and _service_account(requestor.name) is not None
         and (requestor.extra or {}).get(NODE_NAME_EXTRA, []) == [node]),
        ("arbitrary-node", _only_name(w) and node is not None),
        ("serviceaccount", _only_name(w) and sa is not None),
        ("user-info", node is None and sa is None),
    ]
    first: Refused | None = None
    for mode, applies in modes:
        if not applies:
            continue
        try:
            await c.check(replace(request_attrs, verb=f"impersonate-on:{mode}:{request_attrs.verb}"))
            user = await c.state_check(w, f"impersonate:{mode}", True, any_node=mode == "associated-node")
            return user, f"impersonate:{mode}"
        except Refused as exc:
            first = first or exc
    try:
        return await c.state_check(w, "impersonate", False), ""
    except Refused as exc:
        raise first or exc from None


def impersonation_middleware(authorizer: Any) -> Any:
    """Replaces ``request[USER]`` with the impersonated user (the requestor stays in
    ``request[IMPERSONATOR]``) once the authorizer allows it; a 403 otherwise."""

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        try:
            w = wanted_user(request)
        except Refused as exc:
            return http.status_response(exc.err)
        if w is None:
            return await handler(request)
        requestor = request.get(USER)
        if requestor is None:
            return http.status_response(errors.internal("no User found in the context"))
        attrs = attributes_for(requestor, request_info(request.method, request.path, request.query), request.query)
        try:
            user, constraint = await impersonate(authorizer, requestor, attrs, w)
        except Refused as exc:
            return http.status_response(exc.err)
        log.debug("%s is impersonating %s", requestor.name, user.name)
        request[IMPERSONATOR] = requestor
        request[CONSTRAINT] = constraint
        request[USER] = user
        return await handler(request)

    return middleware


__all__ = ["CONSTRAINT", "IMPERSONATOR", "Refused", "Wanted", "impersonate", "impersonation_middleware", "wanted_user"]
