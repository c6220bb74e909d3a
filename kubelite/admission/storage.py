"""Two storage admission plugins, in upstream's order of the chain:

* DefaultStorageClass (plugin/pkg/admission/storage/storageclass/setdefault): a claim created
  without a class (no ``spec.storageClassName`` and no beta annotation) gets the default
  StorageClass, the newest of several (then by name) as GetDefaultClass picks it; without a
  default class the claim is left alone (the PV controller may assign one later).
* PersistentVolumeClaimResize (plugin/pkg/admission/storage/persistentvolume/resize): a bound
  claim may ask for more storage only when its StorageClass sets ``allowVolumeExpansion``.
* StorageObjectInUseProtection (plugin/pkg/admission/storage/storageobjectinuseprotection): a
  created PersistentVolumeClaim carries the ``kubernetes.io/pvc-protection`` finalizer and a
  PersistentVolume ``kubernetes.io/pv-protection``; the protection controllers
  (kubelite/controllers/volumeprotection.py) remove them once nothing uses the object.
"""

from __future__ import annotations

from typing import Any

from kubelite.api import errors
from kubelite.apiserver.admission import CREATE, UPDATE, Attributes
from kubelite.apiserver.registry import ListOptions
from kubelite.apiserver.stores import Stores
from kubelite.kinds.storage import BETA_STORAGE_CLASS_ANNOTATION, claim_class, claim_request, is_default_class

PVC_PROTECTION = "kubernetes.io/pvc-protection"
PV_PROTECTION = "kubernetes.io/pv-protection"
Obj = dict[str, Any]


def _core_create(a: Attributes, plural: str) -> bool:
    return (a.operation == CREATE and not a.subresource and a.obj is not None and not a.kind.group
            and a.kind.plural == plural)


def default_class(classes: list[Obj]) -> Obj | None:
    """GetDefaultClass: of the classes marked default, the newest (then the name)."""
    defaults = [c for c in classes if is_default_class(c)]
    if not defaults:
        return None
    return max(defaults, key=lambda c: (str((c.get("metadata") or {}).get("creationTimestamp") or ""),
                                        # a tie in time: the name that sorts first
                                        [-ord(ch) for ch in (c.get("metadata") or {}).get("name", "")]))


class DefaultStorageClass:
    def __init__(self, stores: Stores, informer: Any = None) -> None:
        self.stores = stores
        self.informer = informer

    async def _classes(self) -> list[Obj]:
        if self.informer is not None and self.informer.synced.is_set():
            return list(self.informer.list())
        store = self.stores.find("storage.k8s.io", "storageclasses")
        if store is None:
            return []
        items, _, _, _ = await store.list("", ListOptions())
        return items

    async def admit(self, a: Attributes) -> None:
        if not _core_create(a, "persistentvolumeclaims"):
            return
        assert a.obj is not None
        spec = a.obj.get("spec")
        if not isinstance(spec, dict) or spec.get("storageClassName") is not None:
            return
        if BETA_STORAGE_CLASS_ANNOTATION in ((a.obj.get("metadata") or {}).get("annotations") or {}):
            return
        sc = default_class(await self._classes())
        if sc is not None:
            spec["storageClassName"] = sc["metadata"]["name"]

    async def validate(self, a: Attributes) -> None:
        return None


class PersistentVolumeClaimResize:
    def __init__(self, stores: Stores) -> None:
        self.stores = stores

    async def admit(self, a: Attributes) -> None:
        return None

    async def validate(self, a: Attributes) -> None:
        if (a.operation != UPDATE or a.subresource or a.obj is None or a.old is None or a.kind.group
                or a.kind.plural != "persistentvolumeclaims"):
            return
        if (a.old.get("status") or {}).get("phase") != "Bound" or claim_request(a.obj) <= claim_request(a.old):
            return
        if not await self._allows_resize(a.old):
            raise errors.forbidden("persistentvolumeclaims", a.name,
                                   "only dynamically provisioned pvc can be resized and the storageclass that "
                                   "provisions the pvc must support resize")

    async def _allows_resize(self, claim: Obj) -> bool:
        name = claim_class(claim)
        store = self.stores.find("storage.k8s.io", "storageclasses")
        if not name or store is None:
            return False
        try:
            sc = await store.get("", name)
        except errors.StatusError:
            return False
        return bool(sc.get("allowVolumeExpansion"))


class StorageObjectInUseProtection:
    async def admit(self, a: Attributes) -> None:
        for plural, finalizer in (("persistentvolumeclaims", PVC_PROTECTION), ("persistentvolumes", PV_PROTECTION)):
            if _core_create(a, plural):
                assert a.obj is not None
                meta = a.obj.setdefault("metadata", {})
                if not isinstance(meta, dict):
                    return
                finalizers = meta.get("finalizers")
                finalizers = list(finalizers) if isinstance(finalizers, list) else []
                if finalizer not in finalizers:
                    meta["finalizers"] = [*finalizers, finalizer]

    async def validate(self, a: Attributes) -> None:
        return None


__all__ = ["PVC_PROTECTION", "PV_PROTECTION", "DefaultStorageClass", "PersistentVolumeClaimResize",
           "StorageObjectInUseProtection",
           "default_class"]
