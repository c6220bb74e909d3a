"""The authorizer interface (k8s.io/apiserver/pkg/authorization/authorizer) and the
small authorizers every apiserver chains: privileged groups and the union."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

ALLOW = "Allow"
DENY = "Deny"
NO_OPINION = "NoOpinion"

PRIVILEGED_GROUP = "system:masters"


@dataclass
class Attributes:
    """authorizer.AttributesRecord."""

    user: Any  # kubelite.apiserver.auth.UserInfo
    verb: str
    resource_request: bool = True
    namespace: str = ""
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    path: str = ""
    # parsed query of list/watch requests (node authorizer: spec.nodeName field selector)
    field_selector: str = ""


@dataclass
class Rules:
    """What a user may do in a namespace (SelfSubjectRulesReview)."""

    resource_rules: list[dict[str, Any]] = field(default_factory=list)
    non_resource_rules: list[dict[str, Any]] = field(default_factory=list)
    incomplete: bool = False
    errors: list[str] = field(default_factory=list)


class Authorizer(Protocol):
    async def authorize(self, a: Attributes) -> tuple[str, str]:
        """(decision, reason)."""

    async def rules_for(self, user: Any, namespace: str) -> Rules:
        """The rules known to apply to ``user`` in ``namespace`` (may be incomplete)."""


class PrivilegedGroups:
    """authorizerfactory.NewPrivilegedGroups: members of these groups may do anything."""

    def __init__(self, *groups: str) -> None:
        self.groups = set(groups or (PRIVILEGED_GROUP,))

    async def authorize(self, a: Attributes) -> tuple[str, str]:
        if a.user is not None and self.groups.intersection(getattr(a.user, "groups", ()) or ()):
            return ALLOW, ""
        return NO_OPINION, ""

    async def rules_for(self, user: Any, namespace: str) -> Rules:
        if self.groups.intersection(getattr(user, "groups", ()) or ()):
            return Rules([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                         [{"verbs": ["*"], "nonResourceURLs": ["*"]}])
        return Rules()


class Union:
    """union.New: the first Allow or Deny wins; reasons of the others are collected."""

    def __init__(self, *authorizers: Authorizer) -> None:
        self.authorizers = list(authorizers)

    async def authorize(self, a: Attributes) -> tuple[str, str]:
        reasons: list[str] = []
        for authz in self.authorizers:
            decision, reason = await authz.authorize(a)
            if decision in (ALLOW, DENY):
                return decision, reason
            if reason:
                reasons.append(reason)
        return NO_OPINION, "\n".join(reasons)

    async def rules_for(self, user: Any, namespace: str) -> Rules:
        out = Rules()
        for authz in self.authorizers:
            r = await authz.rules_for(user, namespace)
            out.resource_rules += r.resource_rules
            out.non_resource_rules += r.non_resource_rules
            out.incomplete = out.incomplete or r.incomplete
            out.errors += r.errors
        return out


def forbidden_message(a: Attributes) -> str:
    """responsewriters.forbiddenMessage."""
    username = getattr(a.user, "name", "") if a.user is not None else ""
    if not a.resource_request:
        return f'User "{username}" cannot {a.verb} path "{a.path}"'
    resource = a.resource + ("/" + a.subresource if a.subresource else "")
    if a.namespace:
        return (f'User "{username}" cannot {a.verb} resource "{resource}" in API group "{a.api_group}" '
                f'in the namespace "{a.namespace}"')
    return f'User "{username}" cannot {a.verb} resource "{resource}" in API group "{a.api_group}" at the cluster scope'


__all__ = ["ALLOW", "DENY", "NO_OPINION", "Attributes", "Authorizer", "PrivilegedGroups", "Rules", "Union",
           "forbidden_message"]
