"""The RuntimeClass admission plugin (plugin/pkg/admission/runtimeclass/admission.go): on pod
create, the named class must exist; its ``overhead.podFixed`` becomes spec.overhead (a pod
that sets a different one is refused) and its ``scheduling`` is merged into the pod's
nodeSelector (a conflicting key is refused) and tolerations. Validate refuses an overhead the
class does not define."""

from __future__ import annotations

import copy
from typing import Any

from kubelite.api import errors, quantity
from kubelite.apiserver.admission import CREATE, Attributes
from kubelite.apiserver.stores import Stores

GROUP = "node.k8s.io"
Obj = dict[str, Any]


def _ignored(a: Attributes) -> bool:
    return (a.operation != CREATE or bool(a.subresource) or a.obj is None or bool(a.kind.group)
            or a.kind.plural != "pods" or not isinstance(a.obj.get("spec"), dict))


def _same_resources(a: Obj, b: Obj) -> bool:
    """apiequality.Semantic on ResourceLists: quantities compare by value."""
    if set(a) != set(b):
        return False
    try:
        return all(quantity.parse_quantity(a[k]) == quantity.parse_quantity(b[k]) for k in a)
    except Exception:
        return a == b


def _is_superset(ss: Obj, t: Obj) -> bool:
    """isSuperset: toleration ``ss`` tolerates everything ``t`` does."""
    if ss == t:
        return True
    if (t.get("key") or "") != (ss.get("key") or "") and (ss.get("key") or ss.get("operator") != "Exists"):
        return False
    if (t.get("effect") or "") != (ss.get("effect") or "") and ss.get("effect"):
        return False
    if ss.get("effect") == "NoExecute" and ss.get("tolerationSeconds") is not None:
        if t.get("tolerationSeconds") is None or t["tolerationSeconds"] > ss["tolerationSeconds"]:
            return False
    op = ss.get("operator") or ""
    if op in ("Equal", ""):
        return bool(t.get("operator") == "Equal" and (t.get("value") or "") == (ss.get("value") or ""))
    return op == "Exists"


def merge_tolerations(first: list[Obj], second: list[Obj]) -> list[Obj]:
    """tolerations.MergeTolerations: both lists, leaving out a toleration that one already
    kept (or a different later one) covers."""
    every = [*first, *second]
    merged: list[Obj] = []
    for i, t in enumerate(every):
        if any(_is_superset(m, t) for m in merged):
            continue
        if any(t != t2 and _is_superset(t2, t) for t2 in every[i + 1:]):
            continue
        merged.append(t)
    return merged


class RuntimeClassAdmission:
    """With an informer on RuntimeClasses a pod create reads the class from memory (upstream's
    lister); a class the informer does not hold yet is looked up live before the pod is refused."""

    def __init__(self, stores: Stores, informer: Any = None) -> None:
        self.stores = stores
        self.informer = informer

    async def _runtime_class(self, a: Attributes) -> Obj | None:
        assert a.obj is not None
        name = a.obj["spec"].get("runtimeClassName")
        if not name:
            return None
        store = self.stores.find(GROUP, "runtimeclasses")
        pod_name = a.name or (a.obj.get("metadata") or {}).get("name", "")
        if self.informer is not None and self.informer.synced.is_set():
            cached = self.informer.get("", name)
            if cached is not None:
                return copy.deepcopy(dict(cached))  # the pod takes parts of it; the cache stays intact
        try:
            if store is None:
                raise errors.not_found("runtimeclasses", name, GROUP)
            return dict(await store.get("", name))
        except errors.StatusError as exc:
            if exc.code == 404:
                raise errors.forbidden("pods", pod_name, f"pod rejected: RuntimeClass \"{name}\" not found") from exc
            raise

    async def admit(self, a: Attributes) -> None:
        if _ignored(a):
            return
        rc = await self._runtime_class(a)
        if rc is None:
            return
        assert a.obj is not None
        spec = a.obj["spec"]
        pod_name = a.name or (a.obj.get("metadata") or {}).get("name", "")
        fixed = (rc.get("overhead") or {}).get("podFixed")
        if rc.get("overhead") is not None and fixed is not None:
            if spec.get("overhead") and not _same_resources(dict(fixed), dict(spec["overhead"])):
                raise errors.forbidden("pods", pod_name,
                                       "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead")
            spec["overhead"] = dict(fixed)
        scheduling = rc.get("scheduling")
        if scheduling:
            selector = dict(spec.get("nodeSelector") or {})
            for k, v in (scheduling.get("nodeSelector") or {}).items():
                if k in selector and selector[k] != v:
                    raise errors.forbidden("pods", pod_name, f"conflict: runtimeClass.scheduling.nodeSelector[{k}] = "
                                                             f"{v}; pod.spec.nodeSelector[{k}] = {selector[k]}")
                selector[k] = v
            if selector:
                spec["nodeSelector"] = selector
            merged = merge_tolerations(list(spec.get("tolerations") or []), list(scheduling.get("tolerations") or []))
            if merged:
                spec["tolerations"] = merged

    async def validate(self, a: Attributes) -> None:
        if _ignored(a):
            return
        assert a.obj is not None
        spec = a.obj["spec"]
        pod_name = a.name or (a.obj.get("metadata") or {}).get("name", "")
        rc = await self._runtime_class(a)
        fixed = ((rc or {}).get("overhead") or {}).get("podFixed")
        if rc is not None and fixed is not None:
            if not _same_resources(dict(fixed), dict(spec.get("overhead") or {})):
                raise errors.forbidden("pods", pod_name,
                                       "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead")
        elif spec.get("overhead"):
            raise errors.forbidden("pods", pod_name,
                                   "pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead")


__all__ = ["RuntimeClassAdmission", "merge_tolerations"]
