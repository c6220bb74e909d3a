"""The PVC and PV protection controllers (pkg/controller/volume/pvcprotection,
pkg/controller/volume/pvprotection): a claim being deleted keeps ``kubernetes.io/pvc-protection``
while a scheduled pod that has not finished uses it (checked against the live pod list before
the finalizer goes, as upstream asks the API server and not only its cache); a volume being
deleted keeps ``kubernetes.io/pv-protection`` while it is Bound."""

from __future__ import annotations

import asyncio
from typing import Any

from kubelite.admission.storage import PV_PROTECTION, PVC_PROTECTION
from kubelite.api import errors
from kubelite.apiserver.registry import ListOptions, WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.controllers.base import WorkQueue, informer
from kubelite.kinds.podutil import is_terminal

Obj = dict[str, Any]
CLAIM_INDEX = "pvc-protection/claims"


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def claims_of(pod: Obj) -> list[str]:
    """The claims a pod's volumes name (persistentVolumeClaim, and generic ephemeral ones)."""
    m = _d(pod.get("metadata"))
    out = []
    for v in _d(pod.get("spec")).get("volumes") or []:
        v = _d(v)
        if _d(v.get("persistentVolumeClaim")).get("claimName"):
            out.append(str(v["persistentVolumeClaim"]["claimName"]))
        elif v.get("ephemeral") is not None:
            out.append(f"{m.get('name', '')}-{v.get('name', '')}")
    return out


def pod_uses_claim(pod: Obj, claim_name: str) -> bool:
    """podUsesPVC: a scheduled pod that is not shut down."""
    if not _d(pod.get("spec")).get("nodeName") or is_terminal(pod):
        return False
    return claim_name in claims_of(pod)


def _without(obj: Obj, finalizer: str) -> Obj:
    obj["metadata"]["finalizers"] = [f for f in obj["metadata"].get("finalizers") or [] if f != finalizer]
    return obj


class PVCProtectionController:
    def __init__(self, stores: Stores) -> None:
        self.pvcs = stores.get("", "persistentvolumeclaims")
        self.pods = stores.get("", "pods")
        self.claims = informer(self.pvcs)
        self.pod_informer = informer(self.pods)
        self.pod_informer.add_index(CLAIM_INDEX, lambda p: [f"{_d(p.get('metadata')).get('namespace', '')}/{c}"
                                                            for c in claims_of(p)])
        self.queue = WorkQueue("pvc-protection", self.sync)
        self.opts = WriteOptions(field_manager="pvc-protection-controller")
        self.claims.add_handler(self._on_claim)
        self.pod_informer.add_handler(self._on_pod)

    def _on_claim(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        if new is not None and etype != "DELETED" and new["metadata"].get("deletionTimestamp"):
            self.queue.add(f"{new['metadata'].get('namespace', '')}/{new['metadata']['name']}")

    def _on_pod(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        obj = new or old
        if obj is None:
            return
        ns = obj["metadata"].get("namespace", "")
        for c in claims_of(obj):
            self.queue.add(f"{ns}/{c}")

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.claims.run())
            tg.create_task(self.pod_informer.run())
            await self.claims.wait_synced()
            await self.pod_informer.wait_synced()
            tg.create_task(self.queue.run())

    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        claim = self.claims.get(ns, name)
        if claim is None or not claim["metadata"].get("deletionTimestamp"):
            return
        if PVC_PROTECTION not in (claim["metadata"].get("finalizers") or []):
            return
        if any(pod_uses_claim(p, name) for p in self.pod_informer.by_index(CLAIM_INDEX, key)):
            return
        pods, _, _, _ = await self.pods.list(ns, ListOptions())
        if any(pod_uses_claim(p, name) for p in pods):
            return
        try:
            await self.pvcs.patch(ns, name, lambda cur: _without(cur, PVC_PROTECTION), self.opts)
        except errors.StatusError as exc:
            if exc.code != 404:
                raise


class PVProtectionController:
    def __init__(self, stores: Stores) -> None:
        self.pvs = stores.get("", "persistentvolumes")
        self.volumes = informer(self.pvs)
        self.queue = WorkQueue("pv-protection", self.sync)
        self.opts = WriteOptions(field_manager="pv-protection-controller")
        self.volumes.add_handler(self._on_volume)

    def _on_volume(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        if new is not None and etype != "DELETED" and new["metadata"].get("deletionTimestamp"):
            self.queue.add(new["metadata"]["name"])

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.volumes.run())
            await self.volumes.wait_synced()
            tg.create_task(self.queue.run())

    async def sync(self, name: str) -> None:
        pv = self.volumes.get("", name)
        if pv is None or not pv["metadata"].get("deletionTimestamp"):
            return
        if PV_PROTECTION not in (pv["metadata"].get("finalizers") or []):
            return
        if _d(pv.get("status")).get("phase") == "Bound":  # isVolumeUsed
            return
        try:
            await self.pvs.patch("", name, lambda cur: _without(cur, PV_PROTECTION), self.opts)
        except errors.StatusError as exc:
            if exc.code != 404:
                raise


__all__ = ["PVCProtectionController", "PVProtectionController", "claims_of", "pod_uses_claim"]
