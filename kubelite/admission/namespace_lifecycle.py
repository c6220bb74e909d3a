"""NamespaceLifecycle (plugin/pkg/admission/namespace/lifecycle): nothing is created in a
namespace that does not exist or is being terminated, and the system namespaces cannot be
deleted."""

from __future__ import annotations

from typing import Any

from kubelite.api import errors
from kubelite.apiserver.admission import CREATE, DELETE, Attributes

IMMORTAL_NAMESPACES = ("default", "kube-system", "kube-public")


class NamespaceLifecycle:
    def __init__(self, namespaces: Any) -> None:
        self.namespaces = namespaces  # the ResourceStore of v1 Namespace

    async def admit(self, a: Attributes) -> None:
        if a.operation == DELETE and a.kind.group == "" and a.kind.plural == "namespaces" \
                and a.name in IMMORTAL_NAMESPACES:
            raise errors.forbidden("namespaces", a.name, "this namespace may not be deleted")
        if a.operation != CREATE or not a.kind.namespaced or not a.namespace:
            return
        ns: Any = await self.namespaces.get("", a.namespace)  # raises namespaces "x" not found
        if ns["metadata"].get("deletionTimestamp") or (ns.get("status") or {}).get("phase") == "Terminating":
            raise errors.forbidden(a.kind.plural, a.name, f"unable to create new content in namespace {a.namespace} "
                                                          f"because it is being terminated", a.kind.group)

    async def validate(self, a: Attributes) -> None:
        if a.operation == DELETE:
            await self.admit(a)
