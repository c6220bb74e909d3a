"""The Priority admission plugin (plugin/pkg/admission/priority): a pod's priorityClassName
becomes its spec.priority (and preemptionPolicy); without a name the global default class
applies, or priority 0. PriorityClass creates and updates may mark only one global default."""

from __future__ import annotations

from typing import Any

from kubelite.api import errors
from kubelite.apiserver.admission import CREATE, UPDATE, Attributes
from kubelite.apiserver.registry import ListOptions
from kubelite.apiserver.stores import Stores

GROUP = "scheduling.k8s.io"


class PriorityAdmission:
    """With an informer on PriorityClasses, a pod create reads them from memory (upstream reads
    its lister); a class the informer does not hold yet is looked up live before a pod is
    refused for naming it."""

    def __init__(self, stores: Stores, informer: Any = None) -> None:
        self.stores = stores
        self.informer = informer

    def _synced(self) -> bool:
        return self.informer is not None and self.informer.synced.is_set()

    def _classes(self) -> Any:
        return self.stores.find(GROUP, "priorityclasses")

    async def admit(self, a: Attributes) -> None:
        if a.operation != CREATE or a.subresource or a.obj is None or a.kind.group or a.kind.plural != "pods":
            return
        store = self._classes()
        spec = a.obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
        name = spec.get("priorityClassName") or ""
        value, policy = 0, "PreemptLowerPriority"
        pod_name = a.name or (a.obj.get("metadata") or {}).get("name", "")
        if store is not None:
            if name:
                pc = self.informer.get("", name) if self._synced() else None
                if pc is None:
                    try:
                        pc = await store.get("", name)
                    except errors.StatusError as exc:
                        if exc.code == 404:
                            raise errors.forbidden("pods", pod_name, f"no PriorityClass with name {name} was "
                                                                     f"found") from exc
                        raise
                value, policy = int(pc.get("value") or 0), pc.get("preemptionPolicy") or policy
            else:
                default = await self._global_default(store)
                if default is not None:
                    spec["priorityClassName"] = default["metadata"]["name"]
                    value = int(default.get("value") or 0)
                    policy = default.get("preemptionPolicy") or policy
        elif name:
            raise errors.forbidden("pods", pod_name, f"no PriorityClass with name {name} was found")
        given = spec.get("priority")
        if given is not None and given != value:
            raise errors.forbidden("pods", pod_name, f"the integer value of priority ({given}) must not be provided "
                                                     f"in pod spec; priority admission controller computed {value} "
                                                     f"from the given PriorityClass name")
        spec["priority"] = value
        if not spec.get("preemptionPolicy"):
            spec["preemptionPolicy"] = policy

    async def _global_default(self, store: Any) -> dict[str, Any] | None:
        if self._synced():
            items = self.informer.list()
        else:
            items, _, _, _ = await store.list("", ListOptions())
        defaults = [pc for pc in items if pc.get("globalDefault")]
        if not defaults:
            return None
        # several defaults can exist (created concurrently): the lowest value wins, as upstream
        return min(defaults, key=lambda pc: (int(pc.get("value") or 0), pc["metadata"]["name"]))

    async def validate(self, a: Attributes) -> None:
        if a.kind.group != GROUP or a.kind.plural != "priorityclasses" or a.obj is None:
            return
        if a.operation not in (CREATE, UPDATE) or not a.obj.get("globalDefault"):
            return
        store = self._classes()
        items, _, _, _ = await store.list("", ListOptions())
        for pc in items:
            if pc.get("globalDefault") and pc["metadata"]["name"] != (a.obj.get("metadata") or {}).get("name"):
                raise errors.forbidden("priorityclasses", (a.obj.get("metadata") or {}).get("name", ""),
                                       f"PriorityClass {pc['metadata']['name']} is already marked as default. Only "
                                       f"one default can exist", GROUP)


__all__ = ["PriorityAdmission"]
