"""The PersistentVolume controller (pkg/controller/volume/persistentvolume/pv_controller.go):
binds claims to volumes and keeps both phases true.

* A claim without ``pv.kubernetes.io/bind-completed`` is unbound: it gets the volume pre-bound
  to it (``spec.claimRef``) or the smallest Available volume that matches its class, size,
  access modes, volume mode and selector; without one, a claim of a WaitForFirstConsumer class
  waits for the scheduler (event WaitForFirstConsumer), a claim of another class is handed to
  its provisioner (the ``volume.kubernetes.io/storage-provisioner`` annotation and the event
  ExternalProvisioning; an unknown class is the event ProvisioningFailed), and a claim without
  a class gets FailedBinding.
* Binding writes the volume's claimRef (annotated bound-by-controller when the controller chose
  it), the volume's phase Bound, the claim's volumeName with bind-completed, and the claim's
  phase Bound with the volume's capacity and access modes: each step idempotent, so a
  controller killed half-way finishes the binding when it starts again.
* A volume whose claim is gone is Released and reclaimed by its policy: Retain keeps it, Delete
  leaves it to the provisioner that made it (``pv.kubernetes.io/provisioned-by``; the local-path
  provisioner in kubelite/controllers/localpath.py), a volume no provisioner made cannot be
  deleted and goes Failed (event VolumeFailedDelete), as Recycle does (no recycler here).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kubelite.api import errors
from kubelite.apiserver.registry import WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.client.events import EventRecorder
from kubelite.controllers.base import WorkQueue, informer
from kubelite.controllers.volumeprotection import claims_of
from kubelite.kinds.storage import claim_class
from kubelite.scheduler.volumebinding import (
    ANN_BETA_STORAGE_PROVISIONER,
    ANN_BIND_COMPLETED,
    ANN_BOUND_BY_CONTROLLER,
    ANN_PROVISIONED_BY,
    ANN_SELECTED_NODE,
    ANN_STORAGE_PROVISIONER,
    find_matching_volume,
    is_bound_to_claim,
)

log = logging.getLogger("kubelite.controllers.persistentvolume")
Obj = dict[str, Any]
FIELD_MANAGER = "persistent-volume-binder"  # the controller's name in kube-controller-manager
RESYNC = 15.0  # --pvclaimbinder-sync-period
POD_CLAIM_INDEX = "persistentvolume/claims"


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _ann(obj: Obj) -> dict[str, Any]:
    return _d(_d(obj.get("metadata")).get("annotations"))


def claim_ref(claim: Obj) -> Obj:
    m = claim["metadata"]
    return {"kind": "PersistentVolumeClaim", "namespace": m.get("namespace", ""), "name": m["name"],
            "uid": m.get("uid", ""), "apiVersion": "v1", "resourceVersion": m.get("resourceVersion", "")}


def is_delay_binding(claim: Obj, classes: Any) -> bool:
    """IsDelayBindingMode: the claim's class exists and binds WaitForFirstConsumer."""
    name = claim_class(claim)
    if not name:
        return False
    sc = classes.get("", name)
    return sc is not None and sc.get("volumeBindingMode") == "WaitForFirstConsumer"


def external_provisioning_message(provisioner: str) -> str:
    return (f"Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by "
            f"the system administrator. If volume creation is delayed, please verify that the provisioner is running "
            f"and correctly registered.")


class PersistentVolumeController:
    def __init__(self, stores: Stores, recorder: EventRecorder, resync: float = RESYNC) -> None:
        self.pvcs = stores.get("", "persistentvolumeclaims")
        self.pvs = stores.get("", "persistentvolumes")
        self.recorder = recorder
        self.claims = informer(self.pvcs, resync=resync)
        self.volumes = informer(self.pvs, resync=resync)
        self.classes = informer(stores.get("storage.k8s.io", "storageclasses"))
        self.pods = informer(stores.get("", "pods"))
        self.pods.add_index(POD_CLAIM_INDEX, lambda p: [f"{_d(p.get('metadata')).get('namespace', '')}/{c}"
                                                        for c in claims_of(p)])
        self.claim_queue = WorkQueue("persistentvolume-claims", self.sync_claim)
        self.volume_queue = WorkQueue("persistentvolume-volumes", self.sync_volume)
        self.opts = WriteOptions(field_manager=FIELD_MANAGER)
        self.claims.add_handler(self._on_claim)
        self.volumes.add_handler(self._on_volume)
        self.classes.add_handler(self._on_class)

    # ------------------------------------------------------------------ events
    def _on_claim(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        obj = new or old
        if obj is None:
            return
        m = obj["metadata"]
        self.claim_queue.add(f"{m.get('namespace', '')}/{m['name']}")
        if etype == "DELETED":  # its volume is released
            name = _d(obj.get("spec")).get("volumeName")
            if name:
                self.volume_queue.add(name)
            for pv in self.volumes.list():
                if is_bound_to_claim(pv, obj):
                    self.volume_queue.add(pv["metadata"]["name"])

    def _on_volume(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        obj = new or old
        if obj is None:
            return
        self.volume_queue.add(obj["metadata"]["name"])
        ref = _d(_d(obj.get("spec")).get("claimRef"))
        if ref.get("name"):
            self.claim_queue.add(f"{ref.get('namespace', '')}/{ref['name']}")
        if etype != "DELETED" and not ref:  # a new Available volume may fit a waiting claim
            for c in self.claims.list():
                if not _ann(c).get(ANN_BIND_COMPLETED):
                    self.claim_queue.add(f"{c['metadata'].get('namespace', '')}/{c['metadata']['name']}")

    def _on_class(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        for c in self.claims.list():
            if not _d(c.get("spec")).get("volumeName"):
                self.claim_queue.add(f"{c['metadata'].get('namespace', '')}/{c['metadata']['name']}")

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for inf in (self.claims, self.volumes, self.classes, self.pods):
                tg.create_task(inf.run())
            for inf in (self.claims, self.volumes, self.classes, self.pods):
                await inf.wait_synced()
            tg.create_task(self.claim_queue.run())
            tg.create_task(self.volume_queue.run())

    # ------------------------------------------------------------------ claims
    async def sync_claim(self, key: str) -> None:
        ns, _, name = key.partition("/")
        claim = self.claims.get(ns, name)
        if claim is None:
            return
        if not _ann(claim).get(ANN_BIND_COMPLETED):
            await self._sync_unbound_claim(claim)
        else:
            await self._sync_bound_claim(claim)

    async def _sync_unbound_claim(self, claim: Obj) -> None:
        spec = _d(claim.get("spec"))
        volume_name = spec.get("volumeName") or ""
        if not volume_name:
            delay = is_delay_binding(claim, self.classes)
            pv = find_matching_volume(claim, self.volumes.list(), delay_binding=delay)
            if pv is not None:
                await self._bind(pv, claim)
                return
            await self._claim_phase(claim, "Pending")
            if delay and not _ann(claim).get(ANN_SELECTED_NODE):
                await self._wait_for_consumer(claim)
            elif claim_class(claim):
                await self._provision(claim)
            else:
                await self.recorder.record(claim, "Normal", "FailedBinding",
                                           "no persistent volumes available for this claim and no storage class is "
                                           "set")
            return
        pv = self.volumes.get("", volume_name)
        if pv is None:  # the claim names a volume that does not exist (yet)
            await self._claim_phase(claim, "Pending")
            return
        ref = _d(_d(pv.get("spec")).get("claimRef"))
        if not ref or is_bound_to_claim(pv, claim):
            await self._bind(pv, claim)
        else:
            await self._claim_phase(claim, "Pending")
            await self.recorder.record(claim, "Warning", "FailedBinding",
                                       "volume \"" + volume_name + "\" already bound to a different claim.")

    async def _wait_for_consumer(self, claim: Obj) -> None:
        """emitEventForUnboundDelayBindingClaim: name the pods that wait to be scheduled."""
        m = claim["metadata"]
        waiting = sorted(_d(p.get("metadata")).get("name", "")
                         for p in self.pods.by_index(POD_CLAIM_INDEX, f"{m.get('namespace', '')}/{m['name']}")
                         if not _d(p.get("spec")).get("nodeName"))
        if not waiting:
            await self.recorder.record(claim, "Normal", "WaitForFirstConsumer",
                                       "waiting for first consumer to be created before binding")
        elif len(waiting) == 1:
            await self.recorder.record(claim, "Normal", "WaitForPodScheduled",
                                       f"waiting for pod {waiting[0]} to be scheduled")
        else:
            await self.recorder.record(claim, "Normal", "WaitForPodScheduled",
                                       f"waiting for pods {','.join(waiting)} to be scheduled")

    async def _sync_bound_claim(self, claim: Obj) -> None:
        volume_name = _d(claim.get("spec")).get("volumeName") or ""
        if not volume_name:
            await self._claim_lost(claim, "ClaimLost",
                                   "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!")
            return
        pv = self.volumes.get("", volume_name)
        if pv is None:
            await self._claim_lost(claim, "ClaimLost",
                                   "Bound claim has lost its PersistentVolume. Data on the volume is lost!")
            return
        ref = _d(_d(pv.get("spec")).get("claimRef"))
        if not ref or ref.get("uid") == claim["metadata"].get("uid"):
            await self._bind(pv, claim)
        else:
            await self._claim_lost(claim, "ClaimMisbound",
                                   "Two claims are bound to the same volume, this one is bound incorrectly")

    async def _claim_lost(self, claim: Obj, reason: str, message: str) -> None:
        if _d(claim.get("status")).get("phase") != "Lost":
            await self.recorder.record(claim, "Warning", reason, message)
        await self._claim_phase(claim, "Lost")

    async def _provision(self, claim: Obj) -> None:
        """provisionClaim for a class whose provisioner is not in-tree: hand the claim to it."""
        name = claim_class(claim)
        sc = self.classes.get("", name)
        if sc is None:
            await self.recorder.record(claim, "Warning", "ProvisioningFailed",
                                       f'storageclass.storage.k8s.io "{name}" not found')
            return
        provisioner = str(sc.get("provisioner") or "")
        ann = _ann(claim)
        if ann.get(ANN_STORAGE_PROVISIONER) != provisioner or ann.get(ANN_BETA_STORAGE_PROVISIONER) != provisioner:
            def annotate(cur: Obj) -> Obj:
                a = cur["metadata"].setdefault("annotations", {})
                a[ANN_STORAGE_PROVISIONER] = provisioner
                a[ANN_BETA_STORAGE_PROVISIONER] = provisioner
                return cur

            await self._patch_claim(claim, annotate)
        await self.recorder.record(claim, "Normal", "ExternalProvisioning", external_provisioning_message(provisioner))

    # ------------------------------------------------------------------ binding
    async def _bind(self, pv: Obj, claim: Obj) -> None:
        """bind: volume → claimRef, volume phase, claim → volumeName, claim phase (each step only
        when it is not done yet)."""
        name = pv["metadata"]["name"]
        cm = claim["metadata"]
        ref = _d(_d(pv.get("spec")).get("claimRef"))
        if ref.get("uid") != cm.get("uid") or ref.get("name") != cm["name"]:
            by_controller = not ref

            def set_ref(cur: Obj) -> Obj:
                cur_ref = _d(_d(cur.get("spec")).get("claimRef"))
                if cur_ref and not is_bound_to_claim(cur, claim):
                    raise errors.conflict("persistentvolumes", name, "volume already bound to a different claim")
                cur.setdefault("spec", {})["claimRef"] = claim_ref(claim)
                if by_controller:
                    cur["metadata"].setdefault("annotations", {})[ANN_BOUND_BY_CONTROLLER] = "yes"
                return cur

            try:
                pv, _ = await self.pvs.patch("", name, set_ref, self.opts)
            except errors.StatusError as exc:
                if exc.code in (404, 409):
                    log.info("binding claim %s/%s to volume %s: %s", cm.get("namespace"), cm["name"], name, exc)
                    return
                raise
        if _d(pv.get("status")).get("phase") != "Bound":
            await self._volume_phase(pv, "Bound")
        spec = _d(claim.get("spec"))
        ann = _ann(claim)
        if spec.get("volumeName") != name or ann.get(ANN_BIND_COMPLETED) != "yes":
            chosen = spec.get("volumeName") != name

            def set_volume(cur: Obj) -> Obj:
                cur.setdefault("spec", {})["volumeName"] = name
                a = cur["metadata"].setdefault("annotations", {})
                a[ANN_BIND_COMPLETED] = "yes"
                if chosen:
                    a[ANN_BOUND_BY_CONTROLLER] = "yes"
                return cur

            claim = await self._patch_claim(claim, set_volume) or claim
        status = _d(claim.get("status"))
        want_modes = _d(pv.get("spec")).get("accessModes") or []
        want_cap = _d(_d(pv.get("spec")).get("capacity"))
        if status.get("phase") != "Bound" or status.get("accessModes") != want_modes or \
                status.get("capacity") != want_cap:
            def bound(cur: Obj) -> Obj:
                st = cur.setdefault("status", {})
                st["phase"] = "Bound"
                st["accessModes"] = want_modes
                st["capacity"] = want_cap
                return cur

            await self._patch_claim(claim, bound, "status")

    async def _patch_claim(self, claim: Obj, fn: Any, subresource: str = "") -> Obj | None:
        m = claim["metadata"]

        def guarded(cur: Obj) -> Obj:
            if cur["metadata"].get("uid") != m.get("uid"):
                raise errors.conflict("persistentvolumeclaims", m["name"], "the claim was replaced")
            return fn(cur)  # type: ignore[no-any-return]

        try:
            out, _ = await self.pvcs.patch(m.get("namespace", ""), m["name"], guarded, self.opts, subresource)
            return out
        except errors.StatusError as exc:
            if exc.code in (404, 409):
                return None
            raise

    async def _claim_phase(self, claim: Obj, phase: str) -> None:
        if _d(claim.get("status")).get("phase") == phase:
            return

        def set_phase(cur: Obj) -> Obj:
            cur.setdefault("status", {})["phase"] = phase
            return cur

        await self._patch_claim(claim, set_phase, "status")

    async def _volume_phase(self, pv: Obj, phase: str, reason: str = "", message: str = "") -> None:
        st = _d(pv.get("status"))
        if st.get("phase") == phase and (st.get("reason") or "") == reason and (st.get("message") or "") == message:
            return

        def set_phase(cur: Obj) -> Obj:
            s = cur.setdefault("status", {})
            s["phase"] = phase
            for k, v in (("reason", reason), ("message", message)):
                if v:
                    s[k] = v
                else:
                    s.pop(k, None)
            return cur

        try:
            await self.pvs.patch("", pv["metadata"]["name"], set_phase, self.opts, "status")
        except errors.StatusError as exc:
            if exc.code != 404:
                raise

    # ------------------------------------------------------------------ volumes
    async def sync_volume(self, name: str) -> None:
        pv = self.volumes.get("", name)
        if pv is None:
            return
        spec = _d(pv.get("spec"))
        ref = _d(spec.get("claimRef"))
        phase = _d(pv.get("status")).get("phase")
        if not ref:
            await self._volume_phase(pv, "Available")
            return
        if not ref.get("uid"):  # pre-bound by the user to a claim that is not bound yet
            await self._volume_phase(pv, "Available")
            self.claim_queue.add(f"{ref.get('namespace', '')}/{ref.get('name', '')}")
            return
        claim = self.claims.get(ref.get("namespace", ""), ref.get("name", ""))
        if claim is not None and claim["metadata"].get("uid") != ref.get("uid"):
            claim = None  # deleted and made again: not ours
        if claim is None:
            # the informer may lag behind a claim created a moment ago: ask the store
            try:
                live = await self.pvcs.get(ref.get("namespace", ""), ref.get("name", ""))
                if live["metadata"].get("uid") == ref.get("uid"):
                    self.claim_queue.add(f"{ref.get('namespace', '')}/{ref.get('name', '')}")
                    return
            except errors.StatusError as exc:
                if exc.code != 404:
                    raise
            if phase not in ("Released", "Failed"):
                await self._volume_phase(pv, "Released")
                pv = self.volumes.get("", name) or pv
            await self._reclaim(pv)
            return
        cspec = _d(claim.get("spec"))
        if not cspec.get("volumeName"):
            if _ann(pv).get(ANN_BOUND_BY_CONTROLLER):  # binding in progress: the claim's sync finishes it
                self.claim_queue.add(f"{ref.get('namespace', '')}/{ref.get('name', '')}")
            else:
                await self._volume_phase(pv, "Available")
                self.claim_queue.add(f"{ref.get('namespace', '')}/{ref.get('name', '')}")
            return
        if cspec.get("volumeName") == name:
            await self._volume_phase(pv, "Bound")
            return
        # the claim is bound to another volume
        if _ann(pv).get(ANN_PROVISIONED_BY) and spec.get("persistentVolumeReclaimPolicy") == "Delete":
            if phase not in ("Released", "Failed"):
                await self._volume_phase(pv, "Released")
            await self._reclaim(pv)
        elif _ann(pv).get(ANN_BOUND_BY_CONTROLLER):
            await self._unbind(pv)

    async def _unbind(self, pv: Obj) -> None:
        def unbind(cur: Obj) -> Obj:
            cur.get("spec", {}).pop("claimRef", None)
            cur["metadata"].get("annotations", {}).pop(ANN_BOUND_BY_CONTROLLER, None)
            return cur

        await self.pvs.patch("", pv["metadata"]["name"], unbind, self.opts)
        await self._volume_phase(pv, "Available")

    async def _reclaim(self, pv: Obj) -> None:
        """reclaimVolume."""
        policy = _d(pv.get("spec")).get("persistentVolumeReclaimPolicy") or "Retain"
        if policy == "Retain":
            return
        if _d(pv.get("status")).get("phase") == "Failed":
            return
        if policy == "Delete":
            if _ann(pv).get(ANN_PROVISIONED_BY):
                return  # its provisioner deletes the volume and the object
            msg = "error getting deleter volume plugin for volume \"" + pv["metadata"]["name"] + \
                  "\": no deletable volume plugin matched"
            await self.recorder.record(pv, "Warning", "VolumeFailedDelete", msg)
            await self._volume_phase(pv, "Failed", "", msg)
            return
        msg = "No recycler plugin found for the volume!"
        await self.recorder.record(pv, "Warning", "VolumeFailedRecycle", msg)
        await self._volume_phase(pv, "Failed", "", msg)


__all__ = ["PersistentVolumeController", "claim_ref", "external_provisioning_message", "is_delay_binding"]
