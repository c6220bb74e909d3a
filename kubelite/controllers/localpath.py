"""The built-in dynamic provisioner of the default StorageClass ``local-path`` (provisioner
``rancher.io/local-path``, as k3s ships rancher/local-path-provisioner), behaving as an external
provisioner does (sig-storage-lib-external-provisioner):

* A claim handed to it by the PV controller (annotation ``volume.kubernetes.io/storage-provisioner``)
  gets a PersistentVolume named ``pvc-<claim uid>`` (deterministic: a provisioner killed half-way
  and started again finds the volume it made and makes no second one), pre-bound to the claim,
  with a ``hostPath`` (DirectoryOrCreate) source ``<node's local-path dir>/pvc-<uid>_<ns>_<name>``
  and node affinity to the node the scheduler chose (``volume.kubernetes.io/selected-node``; a
  WaitForFirstConsumer class provisions nothing before). Events Provisioning and
  ProvisioningSucceeded, or ProvisioningFailed.
* Where the directory lives: each node agent publishes its directory (``<data-dir>/storage``) in
  the Node annotation ``kubelite.io/local-path-dir``, and creates a volume's directory when a pod
  first mounts it (kubelite/agent/pvcvolume.py). Nothing is written on the node before a pod
  uses the volume, so a provisioner that crashes leaves no directory behind.
* Deleting: a Released volume of reclaim policy Delete (or one being deleted that still holds
  the provisioner's finalizer) has its directory removed by a helper pod on its node — k3s's
  design, so the server needs no access to the node's disk — named ``helper-<pv name>`` in
  kube-system; once it Succeeded the finalizer goes, the volume object is deleted and the pod
  too. A volume of policy Retain keeps its directory and stays Released.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
from typing import Any

from kubelite.api import errors
from kubelite.apiserver.registry import DeleteOptions, WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.client.events import EventRecorder
from kubelite.controllers.base import WorkQueue, informer
from kubelite.controllers.persistentvolume import claim_ref
from kubelite.images.build import BUSYBOX
from kubelite.kinds.storage import LOCAL_PATH_DIR_ANNOTATION, LOCAL_PATH_PROVISIONER, claim_class
from kubelite.scheduler.volumebinding import ANN_PROVISIONED_BY, ANN_SELECTED_NODE, ANN_STORAGE_PROVISIONER

log = logging.getLogger("kubelite.controllers.localpath")
Obj = dict[str, Any]

PROVISIONER = LOCAL_PATH_PROVISIONER
CLASS_NAME = "local-path"
NODE_DIR_ANNOTATION = LOCAL_PATH_DIR_ANNOTATION
PV_NODE_ANNOTATION = "local.path.provisioner/selected-node"  # as local-path-provisioner records it
FINALIZER = "external-provisioner.volume.kubernetes.io/finalizer"
HELPER_NAMESPACE = "kube-system"
FIELD_MANAGER = "rancher.io-local-path_kubelite"
SUPPORTED_MODES = ("ReadWriteOnce", "ReadWriteOncePod")


def default_storage_class() -> Obj:
    """k3s's default class (manifests/local-storage.yaml)."""
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": CLASS_NAME, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": PROVISIONER, "volumeBindingMode": "WaitForFirstConsumer", "reclaimPolicy": "Delete"}


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _ann(obj: Obj) -> dict[str, Any]:
    return _d(_d(obj.get("metadata")).get("annotations"))


def volume_dir_name(claim: Obj) -> str:
    m = claim["metadata"]
    return f"pvc-{m['uid']}_{m.get('namespace', '')}_{m['name']}"


def provisioned_volume(claim: Obj, sc: Obj, node: str, root: str) -> Obj:
    """The PersistentVolume for ``claim`` on ``node`` (its directory under ``root``)."""
    m = claim["metadata"]
    spec = _d(claim.get("spec"))
    pv: Obj = {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": f"pvc-{m['uid']}",
                     "annotations": {ANN_PROVISIONED_BY: PROVISIONER, PV_NODE_ANNOTATION: node}},
        "spec": {
            "capacity": {"storage": _d(_d(spec.get("resources")).get("requests")).get("storage")},
            "accessModes": list(spec.get("accessModes") or []),
            "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy") or "Delete",
            "storageClassName": sc["metadata"]["name"],
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "hostPath": {"path": posixpath.join(root, volume_dir_name(claim)), "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}},
            "claimRef": claim_ref(claim),
        },
    }
    if sc.get("mountOptions"):
        pv["spec"]["mountOptions"] = list(sc["mountOptions"])
    if pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete":
        pv["metadata"]["finalizers"] = [FINALIZER]
    return pv


def helper_pod(pv: Obj, node: str) -> Obj:
    """The pod that removes a volume's directory on its node (local-path-provisioner's helper)."""
    path = str(_d(_d(pv.get("spec")).get("hostPath")).get("path") or "")
    parent, base = posixpath.split(path.rstrip("/"))
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"helper-{pv['metadata']['name']}", "namespace": HELPER_NAMESPACE,
                     "labels": {"app": "local-path-provisioner-helper"},
                     "annotations": {ANN_PROVISIONED_BY: PROVISIONER}},
        "spec": {
            "nodeName": node, "restartPolicy": "Never", "automountServiceAccountToken": False,
            "priorityClassName": "system-node-critical", "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "helper-pod", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                            "command": ["rm", "-rf", "--", f"/data/{base}"],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "hostPath": {"path": parent, "type": "DirectoryOrCreate"}}],
        },
    }


def _pv_node(pv: Obj) -> str:
    node = _ann(pv).get(PV_NODE_ANNOTATION)
    if node:
        return str(node)
    for term in _d(_d(_d(pv.get("spec")).get("nodeAffinity")).get("required")).get("nodeSelectorTerms") or []:
        for e in _d(term).get("matchExpressions") or []:
            if _d(e).get("key") == "kubernetes.io/hostname" and _d(e).get("values"):
                return str(e["values"][0])
    return ""


class LocalPathProvisioner:
    def __init__(self, stores: Stores, recorder: EventRecorder) -> None:
        self.pvcs = stores.get("", "persistentvolumeclaims")
        self.pvs = stores.get("", "persistentvolumes")
        self.pods = stores.get("", "pods")
        self.recorder = recorder
        self.claims = informer(self.pvcs)
        self.volumes = informer(self.pvs)
        self.classes = informer(stores.get("storage.k8s.io", "storageclasses"))
        self.nodes = informer(stores.get("", "nodes"))
        self.helpers = informer(self.pods, HELPER_NAMESPACE)
        self.claim_queue = WorkQueue("local-path-claims", self.provision)
        self.volume_queue = WorkQueue("local-path-volumes", self.delete)
        self.opts = WriteOptions(field_manager=FIELD_MANAGER)
        self.claims.add_handler(self._on_claim)
        self.volumes.add_handler(self._on_volume)
        self.helpers.add_handler(self._on_helper)

    def _on_claim(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        if new is not None and etype != "DELETED":
            self.claim_queue.add(f"{new['metadata'].get('namespace', '')}/{new['metadata']['name']}")

    def _on_volume(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        if new is not None and etype != "DELETED" and _ann(new).get(ANN_PROVISIONED_BY) == PROVISIONER:
            self.volume_queue.add(new["metadata"]["name"])

    def _on_helper(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        obj = new or old
        name = _d(_d(obj).get("metadata")).get("name", "")
        if name.startswith("helper-pvc-"):
            self.volume_queue.add(name.removeprefix("helper-"))

    async def run(self) -> None:
        infs = (self.claims, self.volumes, self.classes, self.nodes, self.helpers)
        async with asyncio.TaskGroup() as tg:
            for inf in infs:
                tg.create_task(inf.run())
            for inf in infs:
                await inf.wait_synced()
            tg.create_task(self.claim_queue.run())
            tg.create_task(self.volume_queue.run())

    # ------------------------------------------------------------------ provisioning
    async def provision(self, key: str) -> bool:
        ns, _, name = key.partition("/")
        claim = self.claims.get(ns, name)
        if claim is None or _d(claim.get("spec")).get("volumeName") or claim["metadata"].get("deletionTimestamp"):
            return False
        if _ann(claim).get(ANN_STORAGE_PROVISIONER) != PROVISIONER:
            return False
        sc = self.classes.get("", claim_class(claim))
        if sc is None or sc.get("provisioner") != PROVISIONER:
            return False
        pv_name = f"pvc-{claim['metadata']['uid']}"
        if self.volumes.get("", pv_name) is not None:
            return False
        node_name = str(_ann(claim).get(ANN_SELECTED_NODE) or "")
        if not node_name and sc.get("volumeBindingMode") == "WaitForFirstConsumer":
            return False  # the scheduler has not chosen a node yet
        fail = ""
        node = self.nodes.get("", node_name) if node_name else None
        root = str(_ann(node).get(NODE_DIR_ANNOTATION) or "") if node is not None else ""
        if any(m not in SUPPORTED_MODES for m in _d(claim.get("spec")).get("accessModes") or []):
            fail = "NodePath only supports ReadWriteOnce and ReadWriteOncePod access modes"
        elif not node_name:
            fail = "configuration error, no node was specified"
        elif node is None:
            fail = f'nodes "{node_name}" not found'
        elif not root.startswith("/"):
            fail = f'node "{node_name}" publishes no local-path directory (annotation {NODE_DIR_ANNOTATION})'
        if fail:
            await self.recorder.record(claim, "Warning", "ProvisioningFailed",
                                       f'failed to provision volume with StorageClass "{sc["metadata"]["name"]}": '
                                       f"{fail}")
            return True  # retried: a node may come, publish its directory
        await self.recorder.record(claim, "Normal", "Provisioning",
                                   f'External provisioner is provisioning volume for claim "{ns}/{name}"')
        try:
            await self.pvs.create("", provisioned_volume(claim, sc, node_name, root), self.opts)
        except errors.StatusError as exc:
            if exc.code != 409:  # 409: made before a restart; nothing more to do
                await self.recorder.record(claim, "Warning", "ProvisioningFailed",
                                           f'failed to provision volume with StorageClass '
                                           f'"{sc["metadata"]["name"]}": {exc}')
                raise
            return False
        await self.recorder.record(claim, "Normal", "ProvisioningSucceeded", f"Successfully provisioned volume {pv_name}")
        return False

    # ------------------------------------------------------------------ deleting
    async def delete(self, name: str) -> bool:
        pv = self.volumes.get("", name)
        if pv is None:  # deleted: a helper that outlived it (a restart in between) goes too
            done = self.helpers.get(HELPER_NAMESPACE, f"helper-{name}")
            if done is not None and _d(done.get("status")).get("phase") in ("Succeeded", "Failed"):
                await self._delete_helper(done)
            return False
        if _ann(pv).get(ANN_PROVISIONED_BY) != PROVISIONER:
            return False
        m = pv["metadata"]
        released = (_d(pv.get("status")).get("phase") == "Released"
                    and _d(pv.get("spec")).get("persistentVolumeReclaimPolicy") == "Delete")
        if not released and not (m.get("deletionTimestamp") and FINALIZER in (m.get("finalizers") or [])):
            return False
        node = _pv_node(pv)
        helper_name = f"helper-{name}"
        pod = self.helpers.get(HELPER_NAMESPACE, helper_name)
        if pod is None:
            if not node or self.nodes.get("", node) is None:
                await self.recorder.record(pv, "Warning", "VolumeFailedDelete",
                                           f'failed to delete volume {name}: nodes "{node}" not found')
                return True
            try:
                await self.pods.create(HELPER_NAMESPACE, helper_pod(pv, node), self.opts)
            except errors.StatusError as exc:
                if exc.code != 409:
                    raise
            return False  # the helper's progress brings the volume back to the queue
        phase = _d(pod.get("status")).get("phase")
        if phase == "Failed":
            await self.recorder.record(pv, "Warning", "VolumeFailedDelete",
                                       f"failed to delete volume {name}: helper pod {helper_name} failed")
            await self._delete_helper(pod)
            return True
        if phase != "Succeeded":
            return False

        def release(cur: Obj) -> Obj:
            fins = [f for f in cur["metadata"].get("finalizers") or [] if f != FINALIZER]
            cur["metadata"]["finalizers"] = fins
            return cur

        try:
            if FINALIZER in (m.get("finalizers") or []):
                await self.pvs.patch("", name, release, self.opts)
            if not m.get("deletionTimestamp"):
                await self.pvs.delete("", name, DeleteOptions(preconditions={"uid": m.get("uid")}))
        except errors.StatusError as exc:
            if exc.code not in (404, 409):
                raise
        await self._delete_helper(pod)
        log.info("deleted volume %s and its directory on node %s", name, node)
        return False

    async def _delete_helper(self, pod: Obj) -> None:
        try:
            await self.pods.delete(HELPER_NAMESPACE, pod["metadata"]["name"],
                                   DeleteOptions(grace_period_seconds=0,
                                                 preconditions={"uid": pod["metadata"].get("uid")}))
        except errors.StatusError as exc:
            if exc.code not in (404, 409):
                raise


__all__ = ["CLASS_NAME", "FINALIZER", "LocalPathProvisioner", "NODE_DIR_ANNOTATION", "PROVISIONER",
           "default_storage_class", "helper_pod", "provisioned_volume", "volume_dir_name"]
