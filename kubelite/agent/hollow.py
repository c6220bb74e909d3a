"""Hollow nodes (kubemark's hollow kubelet): node agents over the fake CRI runtime
(agent/fakeruntime.py), many to a process, against a real API server.

Each :class:`HollowNode` registers its Node, waits for its pod CIDR (the server's node IPAM)
and hands it to its runtime, renews its Lease in kube-node-lease and posts node status as the
kubelet does, and runs one serial worker per pod bound to it. A worker drives the runtime with
the agent's own CRI configs (crispec.sandbox_config / container_config), reads the runtime back
(crispec.list_pod_runtime) and computes the pod's status with the agent's generateAPIPodStatus
(status.generate_status), written by the agent's StatusManager: the same Pending →
Running → Succeeded/Failed transitions, restart counts and CrashLoopBackOff waits as a real
agent. What a hollow node has not got (volumes, probes, exec/logs streaming, cgroups, pod
networking) it does not pretend to do: no mount, cgroup, netns or iptables rule is touched,
so it needs no root.

All nodes of a process share one :class:`HollowCluster`: one HTTP connection pool, one
watch of every bound pod (``fieldSelector=spec.nodeName!=``, dispatched by node name: one
watch instead of thousands), sharded status writers, staggered heartbeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cri_api.v1 import api_pb2 as pb

from kubelite.agent import crispec
from kubelite.agent.dns import DNSConfigurer
from kubelite.agent.fakeruntime import FOREVER, RUNTIME_NAME, RUNTIME_VERSION, FakeCRI, FakeLatencies
from kubelite.agent.node import KUBELET_VERSION, LEASE_NAMESPACE
from kubelite.agent.node import _conditions as node_conditions
from kubelite.agent.status import StatusManager, generate_status
from kubelite.api import errors
from kubelite.client.api import Client, resource_path
from kubelite.client.informer import ClientListWatch, Informer
from kubelite.kinds.podutil import TERMINAL_PHASES

log = logging.getLogger("kubelite.agent.hollow")
Obj = dict[str, Any]
HOLLOW_LABEL = "kubelite.io/hollow-node"
BACKOFF_INITIAL = 10.0  # the kubelet's container restart back-off
BACKOFF_MAX = 300.0


@dataclass
class HollowConfig:
    lease_duration: int = 40
    lease_interval: float = 10.0  # the kubelet renews every leaseDuration/4
    status_interval: float = 300.0  # the kubelet's nodeStatusReportFrequency: status is re-posted unchanged every 5 min
    cpu: str = "4"
    memory: str = "16Gi"
    max_pods: int = 110
    latencies: FakeLatencies = field(default_factory=FakeLatencies)
    status_writers: int = 16  # status manager shards per process (each writes serially)
    register_parallelism: int = 20


def _now_micro() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def node_ip(index: int) -> str:
    """A loopback address per hollow node (nothing listens there)."""
    index += 1  # never a .0.0
    return f"127.{1 + (index >> 16) % 254}.{(index >> 8) & 0xFF}.{index & 0xFF}"


class _PodWorker:
    """One pod's serial worker (pod_workers.go, reduced to what a fake runtime needs)."""

    def __init__(self, node: HollowNode, pod: Obj) -> None:
        self.node = node
        self.pod = pod
        self.uid = pod["metadata"]["uid"]
        self.removed = False
        self._wake = asyncio.Event()
        self._backoff: dict[str, tuple[float, float]] = {}  # container -> (delay, not before)
        self._fingerprint: frozenset[tuple[str, str]] = frozenset()  # the runtime state the last sync left
        self.task = asyncio.create_task(self._run(), name=f"hollow-pod/{pod['metadata']['name']}")

    def update(self, pod: Obj) -> None:
        self.pod = pod
        self._wake.set()

    def remove(self) -> None:
        self.removed = True
        self._wake.set()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            before = self._fingerprint
            try:
                wake_at = await self._sync()
                if wake_at is not None and self._fingerprint != before:
                    wake_at = time.monotonic()  # what this sync changed is looked at again (the PLEG's relist)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("hollow pod %s: %s", crispec.format_pod(self.pod), exc)
                wake_at = time.monotonic() + 1.0
            if wake_at is None:
                self.node.pod_done(self.uid)
                return
            timeout = None if wake_at == FOREVER else max(0.0, wake_at - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _sync(self) -> float | None:
        node, pod, rt = self.node, self.pod, self.node.cri.runtime
        spec = pod.get("spec") or {}
        pr = (await crispec.list_pod_runtime(rt, self.uid)).get(self.uid) or crispec.PodRuntime(self.uid)
        if self.removed:  # gone from the API: whatever is left goes
            await self._kill(pr)
            for sb in pr.sandboxes:
                await rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sb.id))
            node.status.forget(self.uid)
            return None
        previous = node.status.latest(self.uid)
        if pod["metadata"].get("deletionTimestamp"):
            grace = int(spec.get("terminationGracePeriodSeconds", 30) or 0)
            await self._kill(pr, grace)
            pr = await self._relist()
            node.set_status(pod, generate_status(pod, pr, {}, node.ip, True, previous=previous))
            await node.delete_pod(pod)
            return FOREVER  # the DELETED event removes what is left
        if (pod.get("status") or {}).get("phase") in TERMINAL_PHASES:
            await self._kill(pr)
            return FOREVER
        waiting: dict[str, tuple[str, str]] = {}
        if pr.latest_sandbox() is None or not pr.sandboxes[0].ready:
            node.set_status(pod, generate_status(pod, pr, waiting, node.ip, previous=previous))
            attempt = pr.sandboxes[0].attempt + 1 if pr.sandboxes else 0
            cfg = crispec.sandbox_config(pod, attempt, "", "", dns=node.cluster.dns)
            await rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg))
            pr = await self._relist()
        policy = spec.get("restartPolicy") or "Always"
        wake_at = FOREVER
        terminal = False
        init_done = True
        for c in spec.get("initContainers") or []:
            cur = next((x for x in pr.containers if x.name == c["name"] and x.is_init), None)
            if cur is not None and cur.state == "exited" and cur.exit_code == 0:
                continue
            init_done = False
            if cur is None:
                await self._start(pod, c, 0, init=True)
            elif cur.state == "exited":
                if policy == "Never":
                    terminal = True
                else:
                    wake_at = min(wake_at, await self._restart(pod, c, cur, waiting, init=True))
            break
        if init_done and not terminal:
            for c in spec.get("containers") or []:
                cur = next((x for x in pr.containers if x.name == c["name"] and not x.is_init), None)
                if cur is None:
                    await self._start(pod, c, 0)
                elif cur.state == "exited" and (policy == "Always" or (policy == "OnFailure" and cur.exit_code)):
                    wake_at = min(wake_at, await self._restart(pod, c, cur, waiting))
            pr = await self._relist()
            mine = [x for x in pr.containers if not x.is_init]
            latest = {x.name: x for x in reversed(mine)}
            if policy != "Always" and latest and len(latest) == len(spec.get("containers") or []) and \
                    all(x.state == "exited" for x in latest.values()) and not waiting:
                terminal = policy == "Never" or all(x.exit_code == 0 for x in latest.values())
        else:
            pr = await self._relist()
        if terminal:
            await self._kill(pr)
            pr = await self._relist()
        status = generate_status(pod, pr, waiting, node.ip, terminal, previous=previous)
        node.set_status(pod, status)
        self._fingerprint = frozenset([(c.id, c.state) for c in pr.containers] +
                                      [(sb.id, str(sb.ready)) for sb in pr.sandboxes])
        latest_sb = pr.latest_sandbox()
        if latest_sb is not None and not terminal:
            wake_at = min(wake_at, rt.next_exit(latest_sb.id))
        return wake_at

    async def _relist(self) -> crispec.PodRuntime:
        got = await crispec.list_pod_runtime(self.node.cri.runtime, self.uid)
        return got.get(self.uid) or crispec.PodRuntime(self.uid)

    async def _start(self, pod: Obj, c: Obj, restart_count: int, init: bool = False) -> None:
        rt, img = self.node.cri.runtime, self.node.cri.image
        image = c.get("image", "")
        await img.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=image)))
        cfg = crispec.container_config(pod, c, image_ref=image, restart_count=restart_count,
                                       command=list(c.get("command") or []), args=list(c.get("args") or []),
                                       env=[], mounts=[], memory_capacity=self.node.memory_bytes, is_init=init)
        sb = (await self._relist()).latest_sandbox()
        assert sb is not None
        sb_cfg = crispec.sandbox_config(pod, sb.attempt, "", "", dns=self.node.cluster.dns)
        created = await rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=sb.id, config=cfg,
                                                                      sandbox_config=sb_cfg))
        await rt.StartContainer(pb.StartContainerRequest(container_id=created.container_id))

    async def _restart(self, pod: Obj, c: Obj, cur: crispec.ContainerState, waiting: dict[str, tuple[str, str]],
                       init: bool = False) -> float:
        """Restart an exited container unless its back-off has not passed (CrashLoopBackOff)."""
        name = c["name"]
        delay, not_before = self._backoff.get(name, (0.0, 0.0))
        now = time.monotonic()
        if now < not_before:
            m = pod["metadata"]
            waiting[name] = ("CrashLoopBackOff", f"back-off {int(delay)}s restarting failed container={name} "
                                                 f"pod={m['name']}_{m.get('namespace', '')}({self.uid})")
            return not_before
        delay = BACKOFF_INITIAL if not delay else min(delay * 2, BACKOFF_MAX)
        self._backoff[name] = (delay, now + delay)
        await self._start(pod, c, cur.restart_count + 1, init=init)
        return FOREVER

    async def _kill(self, pr: crispec.PodRuntime, grace: int = 0) -> None:
        rt = self.node.cri.runtime
        for c in pr.running():
            await rt.StopContainer(pb.StopContainerRequest(container_id=c.id, timeout=grace))
        for sb in pr.sandboxes:
            if sb.ready:
                await rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sb.id))


class HollowNode:
    def __init__(self, cluster: HollowCluster, name: str, index: int) -> None:
        self.cluster = cluster
        self.name = name
        self.index = index
        self.ip = node_ip(index)
        cfg = cluster.config
        self.cri = FakeCRI(cfg.latencies, node_ip=self.ip)
        self.memory_bytes = _bytes(cfg.memory)
        self.status = cluster.status_writer(name)
        self.pod_cidr = ""
        self.node: Obj | None = None
        self.lease: Obj | None = None
        self.workers: dict[str, _PodWorker] = {}
        self.ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ the Node and its Lease
    def labels(self) -> dict[str, str]:
        return {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64", HOLLOW_LABEL: "true"}

    def node_status(self) -> Obj:
        cfg = self.cluster.config
        cap = {"cpu": cfg.cpu, "memory": cfg.memory, "pods": str(cfg.max_pods), "ephemeral-storage": "100Gi",
               "hugepages-1Gi": "0", "hugepages-2Mi": "0"}
        old = ((self.node or {}).get("status") or {}).get("conditions") or []
        return {"capacity": cap, "allocatable": dict(cap),
                "conditions": node_conditions(old, bool(self.pod_cidr), "container runtime network not ready"),
                "addresses": [{"type": "InternalIP", "address": self.ip}, {"type": "Hostname", "address": self.name}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {"machineID": f"{zlib.crc32(self.name.encode()):032x}",
                             "systemUUID": f"{zlib.crc32(self.name.encode()):032x}", "bootID": self.cluster.boot_id,
                             "kernelVersion": "hollow", "osImage": "hollow node",
                             "containerRuntimeVersion": f"{RUNTIME_NAME}://{RUNTIME_VERSION}",
                             "kubeletVersion": KUBELET_VERSION, "operatingSystem": "linux", "architecture": "amd64"}}

    async def register(self) -> None:
        client = self.cluster.client
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.name, "labels": self.labels(),
                             "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
                "spec": {}}
        try:
            node = await client.create("v1", "nodes", body)
        except errors.StatusError as exc:
            if exc.code != 409:
                raise
            node = await client.get("v1", "nodes", self.name)
        delay = 0.2
        while not (node.get("spec") or {}).get("podCIDR"):  # the node IPAM controller's
            await asyncio.sleep(delay + random.random() * delay)
            delay = min(delay * 2, 5.0)
            node = await client.get("v1", "nodes", self.name)
        self.node = node
        self.pod_cidr = node["spec"]["podCIDR"]
        await self.cri.runtime.UpdateRuntimeConfig(pb.UpdateRuntimeConfigRequest(
            runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr=self.pod_cidr))))
        await self.post_status()
        await self.renew_lease()
        self.ready.set()

    async def post_status(self) -> None:
        self.node = await self.cluster.client.patch("v1", "nodes", self.name, {"status": self.node_status()},
                                                    patch_type="strategic", sub="status")

    async def renew_lease(self) -> None:
        """nodelease's controller: update the cached Lease, create it once, re-read on conflict."""
        client = self.cluster.client
        cfg = self.cluster.config
        now = _now_micro()
        spec = {"holderIdentity": self.name, "leaseDurationSeconds": cfg.lease_duration, "renewTime": now}
        if self.lease is not None:
            self.lease["spec"] = {**(self.lease.get("spec") or {}), **spec}
            try:
                self.lease = await client.update("coordination.k8s.io/v1", "leases", self.lease,
                                                 namespace=LEASE_NAMESPACE)
                return
            except errors.StatusError as exc:
                if exc.code not in (404, 409):
                    raise
                self.lease = None
        try:
            lease = await client.get("coordination.k8s.io/v1", "leases", self.name, namespace=LEASE_NAMESPACE)
        except errors.StatusError as exc:
            if exc.code != 404:
                raise
            uid = (self.node or {}).get("metadata", {}).get("uid", "")
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": LEASE_NAMESPACE,
                                 "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": self.name,
                                                      "uid": uid}]},
                    "spec": {**spec, "acquireTime": now}}
            self.lease = await client.create("coordination.k8s.io/v1", "leases", body, namespace=LEASE_NAMESPACE)
            return
        lease["spec"] = {**(lease.get("spec") or {}), **spec}
        self.lease = await client.update("coordination.k8s.io/v1", "leases", lease, namespace=LEASE_NAMESPACE)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._every(self.cluster.config.lease_interval, self.renew_lease),
                                           name=f"hollow-lease/{self.name}"),
                       asyncio.create_task(self._every(self.cluster.config.status_interval, self.post_status),
                                           name=f"hollow-status/{self.name}")]

    async def _every(self, period: float, fn: Any) -> None:
        # staggered: each node's heartbeats keep their own phase within the period
        rnd = random.Random(self.name)
        await asyncio.sleep(rnd.random() * period)
        while True:
            started = time.monotonic()
            try:
                await fn()
            except Exception as exc:
                log.warning("hollow node %s: %s failed: %s", self.name, getattr(fn, "__name__", fn), exc)
            await asyncio.sleep(max(0.1, period - (time.monotonic() - started)))

    async def stop(self) -> None:
        tasks = self._tasks + [w.task for w in self.workers.values()]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        self._tasks, self.workers = [], {}

    # ------------------------------------------------------------------ pods
    def update_pod(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        w = self.workers.get(uid)
        if w is None:
            self.workers[uid] = _PodWorker(self, pod)
        else:
            w.update(pod)

    def remove_pod(self, uid: str) -> None:
        w = self.workers.get(uid)
        if w is not None:
            w.remove()

    def pod_done(self, uid: str) -> None:
        self.workers.pop(uid, None)

    def set_status(self, pod: Obj, status: Obj) -> None:
        for key in ("containerStatuses", "initContainerStatuses"):
            for cs in status.get(key) or []:
                for st in (cs.get("state") or {}, cs.get("lastState") or {}):
                    t = st.get("terminated")
                    if t and str(t.get("containerID", "")).startswith("containerd://"):
                        t["containerID"] = f"{RUNTIME_NAME}://" + t["containerID"].split("://", 1)[1]
                if str(cs.get("containerID", "")).startswith("containerd://"):
                    cs["containerID"] = f"{RUNTIME_NAME}://" + cs["containerID"].split("://", 1)[1]
        self.status.set_status(pod, status)

    async def delete_pod(self, pod: Obj) -> None:
        """The status manager's final delete (grace 0, this pod's uid only) once it is stopped."""
        m = pod["metadata"]
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                "preconditions": {"uid": m["uid"]}}
        try:
            await self.cluster.client.request("DELETE", resource_path("v1", "pods", m.get("namespace", ""),
                                                                      m["name"]), body)
        except errors.StatusError as exc:
            if exc.code not in (404, 409):
                raise


class HollowCluster:
    """The hollow nodes of one process and what they share."""

    def __init__(self, client: Client, names: list[str], config: HollowConfig | None = None,
                 first_index: int = 0) -> None:
        self.client = client
        self.config = config or HollowConfig()
        self.dns = DNSConfigurer(["10.43.0.10"], "cluster.local")
        self.boot_id = f"{random.getrandbits(128):032x}"
        self._writers = [StatusManager(client) for _ in range(max(1, self.config.status_writers))]
        self.nodes = {n: HollowNode(self, n, first_index + i) for i, n in enumerate(names)}
        self.pods = Informer(ClientListWatch(client, "v1", "pods", fieldSelector="spec.nodeName!="),
                             name="hollow-pods")
        self.pods.add_handler(self._pod_event)
        self._tasks: list[asyncio.Task[None]] = []

    def status_writer(self, node_name: str) -> StatusManager:
        return self._writers[zlib.crc32(node_name.encode()) % len(self._writers)]

    def _pod_event(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        if new is not None:
            node = self.nodes.get((new.get("spec") or {}).get("nodeName") or "")
            if node is not None and node.ready.is_set():
                node.update_pod(new)
        elif old is not None:
            node = self.nodes.get((old.get("spec") or {}).get("nodeName") or "")
            if node is not None:
                node.remove_pod(old["metadata"]["uid"])

    async def start(self) -> None:
        """Register every node (bounded parallelism), then watch their pods."""
        for w in self._writers:
            w.start()
        sem = asyncio.Semaphore(self.config.register_parallelism)

        async def register(node: HollowNode) -> None:
            async with sem:
                for attempt in range(10):
                    try:
                        await node.register()
                        return
                    except (errors.StatusError, OSError, TimeoutError) as exc:
                        log.warning("hollow node %s: registration failed (%s), retrying", node.name, exc)
                        await asyncio.sleep(min(2 ** attempt, 10))
                await node.register()

        await asyncio.gather(*(register(n) for n in self.nodes.values()))
        for n in self.nodes.values():
            n.start()
        self._tasks.append(asyncio.create_task(self.pods.run(), name="hollow-pod-informer"))
        await self.pods.wait_synced()
        for pod in self.pods.list():  # pods bound before their node was ready
            self._pod_event("ADDED", None, pod)
        log.info("%d hollow nodes ready", len(self.nodes))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(BaseException):
                await t
        await asyncio.gather(*(n.stop() for n in self.nodes.values()))
        for w in self._writers:
            await w.flush(3)
            await w.stop()


def _bytes(q: str) -> int:
    from kubelite.api.quantity import parse_quantity

    return int(parse_quantity(q))


async def run_hollow(kubeconfig: str, names: list[str], config: HollowConfig | None = None, first_index: int = 0,
                     server: str = "", ready: asyncio.Event | None = None) -> None:
    """Run hollow nodes until cancelled (``kubelite sim`` and ``kubelite agent --runtime fake``)."""
    from pathlib import Path

    client = Client.from_kubeconfig(Path(kubeconfig), user_agent="kubelite-hollow-node",
                                    limit=max(20, min(200, len(names))))
    if server:
        client.server = server.rstrip("/")
    cluster = HollowCluster(client, names, config, first_index)
    try:
        await cluster.start()
        if ready is not None:
            ready.set()
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(cluster.stop())
        await client.close()


__all__ = ["HOLLOW_LABEL", "HollowCluster", "HollowConfig", "HollowNode", "node_ip", "run_hollow"]
