"""Hollow nodes' pod workers over the fake runtime, against an in-memory API client."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

from kubelite.agent.hollow import HollowCluster, HollowConfig, node_ip
from kubelite.api import errors


class MemClient:
    """Nodes, Leases and pod status writes in memory; the node IPAM's CIDR on create."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.status: dict[str, dict] = {}  # pod name -> last status written
        self.deleted: list[tuple[str, dict]] = []
        self.server = "https://127.0.0.1:1"

    async def get(self, api_version: str, plural: str, name: str, namespace: str = "") -> dict:
        obj = self.objects.get((plural, namespace, name))
        if obj is None:
            raise errors.StatusError(404, "NotFound", f'{plural} "{name}" not found')
        return obj

    async def create(self, api_version: str, plural: str, obj: dict, namespace: str = "", **kw: Any) -> dict:
        obj = {**obj, "metadata": {**obj["metadata"], "uid": f"uid-{obj['metadata']['name']}",
                                   "resourceVersion": "1"}}
        if plural == "nodes":
            obj["spec"] = {"podCIDR": "10.244.7.0/24"}
        self.objects[(plural, namespace, obj["metadata"]["name"])] = obj
        return obj

    async def update(self, api_version: str, plural: str, obj: dict, namespace: str = "", **kw: Any) -> dict:
        self.objects[(plural, namespace, obj["metadata"]["name"])] = obj
        return obj

    async def patch(self, api_version: str, plural: str, name: str, patch: Any, namespace: str = "",
                    patch_type: str = "merge", sub: str = "", **kw: Any) -> dict:
        if plural == "pods":
            self.status[name] = patch["status"]
            return {}
        obj = self.objects[(plural, namespace, name)]
        obj.setdefault("status", {}).update(patch.get("status") or {})
        return obj

    async def request(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        self.deleted.append((path, body))
        return {}


def pod(name: str, command: list[str] | None = None, policy: str = "Always", node: str = "h-0") -> dict:
    c: dict = {"name": "c", "image": "busybox"}
    if command:
        c["command"] = command
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
            "spec": {"nodeName": node, "restartPolicy": policy, "containers": [c]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}}


async def until(fn: Any, timeout: float = 5.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        got = fn()
        if got:
            return got
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def started(n: int = 1) -> tuple[MemClient, HollowCluster]:
    client = MemClient()
    cluster = HollowCluster(client, [f"h-{i}" for i in range(n)], HollowConfig(status_writers=2))  # type: ignore[arg-type]
    for w in cluster._writers:
        w.start()
    for node in cluster.nodes.values():
        await node.register()
    return client, cluster


async def test_registration_posts_a_ready_node_and_its_lease():
    client, cluster = await started(2)
    try:
        node = client.objects[("nodes", "", "h-1")]
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True"
        assert node["status"]["addresses"][0] == {"type": "InternalIP", "address": node_ip(1)}
        assert node["metadata"]["labels"]["kubelite.io/hollow-node"] == "true"
        lease = client.objects[("leases", "kube-node-lease", "h-1")]
        assert lease["spec"]["holderIdentity"] == "h-1" and lease["spec"]["leaseDurationSeconds"] == 40
        await cluster.nodes["h-1"].renew_lease()  # renewals update the cached Lease
        assert client.objects[("leases", "kube-node-lease", "h-1")]["spec"]["renewTime"]
    finally:
        await cluster.stop()


async def test_pods_run_complete_fail_and_crash_loop():
    client, cluster = await started()
    try:
        for p in (pod("web", ["nginx"]), pod("once", ["true"], "Never"), pod("bad", ["false"], "Never"),
                  pod("crash", ["false"], "Always")):
            cluster._pod_event("ADDED", None, p)
        web = await until(lambda: client.status.get("web", {}).get("phase") == "Running" and client.status["web"])
        assert ipaddress.ip_address(web["podIP"]) in ipaddress.ip_network("10.244.7.0/24")
        assert web["containerStatuses"][0]["containerID"].startswith("fake://")
        assert {c["type"]: c["status"] for c in web["conditions"]}["PodScheduled"] == "True"  # kept
        await until(lambda: client.status.get("once", {}).get("phase") == "Succeeded")
        bad = await until(lambda: client.status.get("bad", {}).get("phase") == "Failed" and client.status["bad"])
        assert bad["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1
        def crash_looping() -> dict | None:  # after the restart's own exit (Error), the back-off
            cs = (client.status.get("crash", {}).get("containerStatuses") or [{}])[0]
            return client.status["crash"] if cs.get("restartCount") == 1 and "waiting" in cs.get("state", {}) else None

        crash = await until(crash_looping)
        state = crash["containerStatuses"][0]["state"]
        assert state["waiting"]["reason"] == "CrashLoopBackOff"
        assert state["waiting"]["message"] == "back-off 10s restarting failed container=c pod=crash_default(uid-crash)"
    finally:
        await cluster.stop()


async def test_a_deleted_pod_is_stopped_then_removed_with_grace_zero():
    client, cluster = await started()
    try:
        p = pod("web", ["nginx"])
        cluster._pod_event("ADDED", None, p)
        await until(lambda: client.status.get("web", {}).get("phase") == "Running")
        rt = cluster.nodes["h-0"].cri.runtime
        gone = {**p, "metadata": {**p["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}}
        cluster._pod_event("MODIFIED", p, gone)
        path, body = await until(lambda: client.deleted and client.deleted[-1])
        assert path == "/api/v1/namespaces/default/pods/web"
        assert body["gracePeriodSeconds"] == 0 and body["preconditions"] == {"uid": "uid-web"}
        assert not [c for c in rt.containers.values() if rt._state(c)[0] == 1]  # none running
        cluster._pod_event("DELETED", gone, None)
        await until(lambda: not rt.sandboxes)
        assert rt._ips == set()  # the address went back
    finally:
        await cluster.stop()


async def test_pods_of_other_nodes_are_not_ours():
    client, cluster = await started()
    try:
        cluster._pod_event("ADDED", None, pod("elsewhere", ["nginx"], node="real-node"))
        await asyncio.sleep(0.1)
        assert "elsewhere" not in client.status
        assert not cluster.nodes["h-0"].workers
    finally:
        await cluster.stop()
