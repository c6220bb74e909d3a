"""The Node object and its Lease (kubelet_node_status.go, nodelease): registration,
capacity/allocatable, conditions, addresses, nodeInfo, the pod CIDR, and heartbeats."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import socket
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubelite.agent import cni, pvcvolume
from kubelite.api import errors

log = logging.getLogger("kubelite.agent.node")
Obj = dict[str, Any]
KUBELET_VERSION = "v1.37.0"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION = 40  # the kubelet's nodeLeaseDurationSeconds
LEASE_RENEW_FRACTION = 0.25  # nodeLeaseRenewIntervalFraction: renewed every 10 s of a 40 s lease
HEARTBEAT_INTERVAL = 10.0
MAX_PODS = 110


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now_micro() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def memory_capacity() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def host_ip() -> str:
    """The address the default route leaves from (what the kubelet picks), else the hostname's."""
    try:
        out = subprocess.run(["ip", "-4", "route", "get", "1.1.1.1"], capture_output=True, text=True,
                             timeout=5).stdout.split()
        if "src" in out:
            return out[out.index("src") + 1]
    except (OSError, subprocess.SubprocessError):
        pass
    with contextlib.suppress(OSError):
        return socket.gethostbyname(socket.gethostname())
    return "127.0.0.1"


def os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"


def _quantity_ki(b: int) -> str:
    return f"{b // 1024}Ki"


def _conditions(old: list[Obj], ready: bool, ready_message: str) -> list[Obj]:
    now = _now()
    prev = {c.get("type"): c for c in old}
    spec = [
        ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ("Ready", "True" if ready else "False", "KubeletReady" if ready else "KubeletNotReady",
         "kubelet is posting ready status" if ready else ready_message),
    ]
    out = []
    for t, status, reason, message in spec:
        o = prev.get(t)
        trans = o["lastTransitionTime"] if o and o.get("status") == status and o.get("lastTransitionTime") else now
        out.append({"type": t, "status": status, "lastHeartbeatTime": now, "lastTransitionTime": trans,
                    "reason": reason, "message": message})
    return out


POD_CIDR_TIMEOUT = 120.0


class NodeManager:
    def __init__(self, client: Any, node_name: str, data_dir: Path, kubelet_port: int = 10250,
                 runtime_version: str = "", cri: Any = None, node_ip: str = "") -> None:
        self.client = client
        self.node_name = node_name
        self.data_dir = Path(data_dir)
        self.kubelet_port = kubelet_port
        self.runtime_version = runtime_version
        self.cri = cri
        self.host_ip = node_ip or host_ip()  # the kubelet's --node-ip, else the default route's source
        self.strict_groups_supported = False  # the runtime CRI Status features.supplemental_groups_policy
        self.pod_cidr = ""
        self.lease_duration = LEASE_DURATION
        self.pod_mtu = 0  # the pods' MTU when the pod network needs a smaller one (vxlan); 0: the default
        self.node: Obj | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()
        self.ready = False

    # ------------------------------------------------------------------ shape
    def capacity(self) -> dict[str, str]:
        st = os.statvfs(self.data_dir)
        return {"cpu": str(os.cpu_count() or 1), "memory": _quantity_ki(memory_capacity()),
                "ephemeral-storage": _quantity_ki(st.f_blocks * st.f_frsize), "pods": str(MAX_PODS),
                "hugepages-1Gi": "0", "hugepages-2Mi": "0"}

    def labels(self) -> dict[str, str]:
        return {"kubernetes.io/hostname": self.node_name, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64"}

    def node_info(self) -> Obj:
        return {
            "machineID": _read("/etc/machine-id"),
            "systemUUID": _read("/sys/class/dmi/id/product_uuid") or _read("/etc/machine-id"),
            "bootID": _read("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": platform.release(),
            "osImage": os_image(),
            "containerRuntimeVersion": self.runtime_version,
            "kubeletVersion": KUBELET_VERSION,
            "operatingSystem": "linux",
            "architecture": "amd64",
        }

    async def _runtime_ready(self) -> tuple[bool, str]:
        if self.cri is None:
            return True, ""
        try:
            ok, why = await self.cri.runtime_ready()
            if not ok:
                return False, f"container runtime is down: {why}"
            ok, why = await self.cri.network_ready()
            if not ok:
                return False, f"container runtime network not ready: NetworkReady=false reason:{why}"
            return True, ""
        except Exception as exc:
            return False, f"container runtime is down: {exc}"

    def addresses(self) -> list[Obj]:
        """The Node's status.addresses (the serving certificate names exactly these)."""
        return [{"type": "InternalIP", "address": self.host_ip}, {"type": "Hostname", "address": self.node_name}]

    async def status(self, old: Obj | None) -> Obj:
        ready, why = await self._runtime_ready()
        cap = self.capacity()
        return {
            "capacity": cap,
            "allocatable": dict(cap),
            "conditions": _conditions(((old or {}).get("status") or {}).get("conditions") or [], ready, why),
            "addresses": self.addresses(),
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
            "nodeInfo": self.node_info(),
            "features": {"supplementalGroupsPolicy": self.strict_groups_supported},
        }

    # ------------------------------------------------------------------ registration
    def storage_annotation(self) -> dict[str, str]:
        """Where this node keeps local-path volumes (agent/pvcvolume.py), for the provisioner."""
        d = pvcvolume.storage_dir(self.data_dir)
        d.mkdir(parents=True, exist_ok=True, mode=0o755)
        return {pvcvolume.LOCAL_PATH_DIR_ANNOTATION: str(d)}

    async def register(self) -> Obj:
        """Create the Node (or adopt the existing one), make sure it has a pod CIDR, post status."""
        try:
            node = await self.client.get("v1", "nodes", self.node_name)
        except errors.StatusError as exc:
            if exc.code != 404:
                raise
            body = {"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": self.node_name, "labels": self.labels(),
                                 "annotations": {"volumes.kubernetes.io/controller-managed-attach-detach": "true",
                                                 "node.alpha.kubernetes.io/ttl": "0",
                                                 **self.storage_annotation()}},
                    "spec": {}}
            try:
                node = await self.client.create("v1", "nodes", body)
                log.info("registered node %s", self.node_name)
            except errors.StatusError as exc2:
                if exc2.code != 409:
                    raise
                node = await self.client.get("v1", "nodes", self.node_name)
        node = await self._wait_pod_cidr(node)
        missing_ann = {k: v for k, v in self.storage_annotation().items()
                       if (node["metadata"].get("annotations") or {}).get(k) != v}
        if missing_ann:  # a node registered before, or by an agent with another data dir
            node = await self.client.patch("v1", "nodes", self.node_name, {"metadata": {"annotations": missing_ann}},
                                           patch_type="merge")
        missing = {k: v for k, v in self.labels().items() if k not in (node["metadata"].get("labels") or {})}
        if missing:
            node = await self.client.patch("v1", "nodes", self.node_name, {"metadata": {"labels": missing}},
                                           patch_type="merge")
        self.pod_cidr = node["spec"]["podCIDR"]
        self.node = node
        cni.write_conflist(self.data_dir, self.pod_cidr, self.pod_mtu)
        await asyncio.to_thread(cni.reconcile_bridge, self.pod_cidr)
        if self.pod_mtu > 0:
            await asyncio.to_thread(cni.pin_bridge_mtu, self.pod_mtu, at_start=True)
        await self.post_status()
        return node

    async def _wait_pod_cidr(self, node: Obj, timeout: float = POD_CIDR_TIMEOUT) -> Obj:
        """The node's pod CIDR comes from the server's node IPAM controller (spec.podCIDR), as
        the kubelet's does from kube-controller-manager; wait for it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.05
        while not (node.get("spec") or {}).get("podCIDR"):
            if loop.time() > deadline:
                raise RuntimeError(f"node {self.node_name} got no spec.podCIDR within {timeout:.0f}s: "
                                   "is the server's node-ipam-controller running (kubectl get --raw '/readyz?verbose')?")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            node = await self.client.get("v1", "nodes", self.node_name)
        return node

    async def post_status(self) -> None:
        st = await self.status(self.node)
        self.ready = any(c["type"] == "Ready" and c["status"] == "True" for c in st["conditions"])
        self.node = await self.client.patch("v1", "nodes", self.node_name, {"status": st}, patch_type="merge",
                                            sub="status")

    async def renew_lease(self) -> None:
        now = _now_micro()
        spec = {"holderIdentity": self.node_name, "leaseDurationSeconds": self.lease_duration,
                "renewTime": now}
        try:
            lease = await self.client.get("coordination.k8s.io/v1", "leases", self.node_name,
                                          namespace=LEASE_NAMESPACE)
        except errors.StatusError as exc:
            if exc.code != 404:
                raise
            owner = [{"apiVersion": "v1", "kind": "Node", "name": self.node_name,
                      "uid": (self.node or {}).get("metadata", {}).get("uid", "")}] if self.node else []
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.node_name, "namespace": LEASE_NAMESPACE,
                                 **({"ownerReferences": owner} if owner and owner[0]["uid"] else {})},
                    "spec": {**spec, "acquireTime": now}}
            await self.client.create("coordination.k8s.io/v1", "leases", body, namespace=LEASE_NAMESPACE)
            return
        lease["spec"] = {**(lease.get("spec") or {}), **spec}
        await self.client.update("coordination.k8s.io/v1", "leases", lease, namespace=LEASE_NAMESPACE)

    def changed(self) -> None:
        self._changed.set()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._lease_loop(), name="node-lease"),
                       asyncio.create_task(self._status_loop(), name="node-status")]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    async def _lease_loop(self) -> None:
        while True:
            try:
                await self.renew_lease()
            except Exception as exc:
                log.warning("lease renewal failed: %s", exc)
            await asyncio.sleep(self.lease_duration * LEASE_RENEW_FRACTION)

    async def _status_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), HEARTBEAT_INTERVAL if self.ready else 1.0)
            self._changed.clear()
            try:
                await self.post_status()
            except Exception as exc:
                log.warning("node status update failed: %s", exc)
