"""Privilege-escalation prevention for RBAC writes (pkg/registry/rbac/*/policybased):
a user may create or change a Role/ClusterRole only with rules it already holds (or
with the ``escalate`` verb), and bind a role only when it holds the role's rules (or
has the ``bind`` verb on it). Members of ``system:masters`` are exempt."""

from __future__ import annotations

from typing import Any

from kubelite.api import errors
from kubelite.apiserver.admission import CREATE, UPDATE, Attributes
from kubelite.apiserver.authorizer import ALLOW, PRIVILEGED_GROUP
from kubelite.apiserver.authorizer import Attributes as AuthzAttributes
from kubelite.auth.rbac import confirm_no_escalation

GROUP = "rbac.authorization.k8s.io"
FULL_AUTHORITY = [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}, {"verbs": ["*"], "nonResourceURLs": ["*"]}]


class RBACEscalation:
    def __init__(self, authorizer: Any, resolver: Any) -> None:
        self.authorizer = authorizer
        self.resolver = resolver

    async def admit(self, a: Attributes) -> None:
        return None

    async def _allowed(self, user: Any, verb: str, resource: str, name: str, namespace: str) -> bool:
        decision, _ = await self.authorizer.authorize(AuthzAttributes(
            user=user, verb=verb, api_group=GROUP, api_version="*", resource=resource, name=name,
            namespace=namespace, resource_request=True))
        return decision == ALLOW

    async def validate(self, a: Attributes) -> None:
        if a.kind.group != GROUP or a.operation not in (CREATE, UPDATE) or a.user is None or a.obj is None:
            return
        if PRIVILEGED_GROUP in (a.user.groups or ()):
            return
        await self.resolver.wait_synced()
        obj, old = a.obj, a.old
        name = obj.get("metadata", {}).get("name", "")
        plural = a.kind.plural
        if plural in ("roles", "clusterroles"):
            if old is not None and (old.get("rules") or []) == (obj.get("rules") or []) and \
                    old.get("aggregationRule") == obj.get("aggregationRule"):
                return
            req_name = name if a.operation == UPDATE else ""
            if await self._allowed(a.user, "escalate", plural, req_name, a.namespace):
                return
            if plural == "clusterroles" and obj.get("aggregationRule") and \
                    (old is None or old.get("aggregationRule") != obj.get("aggregationRule")):
                if confirm_no_escalation(self.resolver, a.user, "", FULL_AUTHORITY):
                    raise errors.forbidden(plural, name, "must have cluster-admin privileges to use the aggregationRule",
                                           GROUP)
            msg = confirm_no_escalation(self.resolver, a.user, a.namespace, obj.get("rules") or [])
            if msg:
                raise errors.forbidden(plural, name, msg, GROUP)
            return
        if plural in ("rolebindings", "clusterrolebindings"):
            if old is not None and old.get("roleRef") == obj.get("roleRef") and \
                    (old.get("subjects") or []) == (obj.get("subjects") or []):
                return
            ref = obj.get("roleRef") or {}
            ref_resource = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
            if await self._allowed(a.user, "bind", ref_resource, ref.get("name", ""), a.namespace):
                return
            rules, err = self.resolver.role_reference_rules(ref, a.namespace)
            if err:
                raise errors.forbidden(plural, name, err, GROUP)
            msg = confirm_no_escalation(self.resolver, a.user, a.namespace, rules)
            if msg:
                raise errors.forbidden(plural, name, msg, GROUP)
