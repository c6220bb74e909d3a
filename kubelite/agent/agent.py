"""The node agent: containerd, CRI, the Node and its Lease, the pod watch, one worker per
pod, the relist that wakes workers when containers change (PLEG), re-adoption at start.

    agent = Agent(AgentConfig(data_dir, kubeconfig, node_name="n1"))
    await agent.start()   # returns once the Node is registered and pods are dispatched
    ...
    await agent.stop()    # containers keep running: a restarted agent adopts them
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from kubelite.agent import crispec, podnet, registries
from kubelite.agent.allocation import STATE_FILE, AllocationManager
from kubelite.agent.certmanager import (
    KUBELET_CLIENT_SIGNER,
    KUBELET_SERVING_SIGNER,
    CertificateManager,
    FileStore,
    Pair,
    ServingTLS,
    Template,
    client_template,
    serving_template,
    usable,
)
from kubelite.agent.cgroups import CgroupError, CgroupManager, open_cgroups
from kubelite.agent.containergc import CONTAINER_GC_PERIOD
from kubelite.agent.crispec import PodRuntime
from kubelite.agent.dns import DNSConfigurer
from kubelite.agent.metrics import AgentMetrics
from kubelite.agent.node import NodeManager, memory_capacity
from kubelite.agent.podnet import PodNetworkError
from kubelite.agent.prober import ProbeManager
from kubelite.agent.runtime import RuntimeManager
from kubelite.agent.stats import StatsProvider
from kubelite.agent.status import StatusManager
from kubelite.agent.sysctls import Allowlist, SysctlConfigError
from kubelite.agent.volumes import VolumeManager
from kubelite.agent.worker import PodWorkers
from kubelite.api import errors
from kubelite.client.api import Client, kubeconfig_credentials
from kubelite.client.events import EventRecorder
from kubelite.client.informer import ClientListWatch, Informer

log = logging.getLogger("kubelite.agent")
Obj = dict[str, Any]
RELIST_PERIOD = 1.0
# cm.CgroupV1MaintenanceModeWarning
CGROUP_V1_WARNING = "cgroup v1 support is in maintenance mode, please migrate to cgroup v2"
HOUSEKEEPING_PERIOD = 10.0


@dataclass
class AgentConfig:
    data_dir: Path
    kubeconfig: Path
    node_name: str = ""
    kubelet_port: int = 10250
    containerd_socket: Path | None = None  # use a running containerd instead of starting one
    images_dir: Path | None = None  # offline image archives (default: build/images)
    # where the cluster CA and its key live (<dir>/tls): the server's own agent issues its endpoint's
    # serving certificate from it. Without a CA key (every other node) the serving certificate
    # comes from a kubelet-serving CSR (agent/certmanager.py)
    pki_dir: Path | None = None
    # sandbox creations / container starts at once (0: 2 per CPU); a burst of pods queues
    # here, earliest pod first, instead of slowing containerd down for all of them
    runtime_parallelism: int = 0
    # the container GC's period (the kubelet's ContainerGCPeriod, 1 min); <= 0 turns the
    # periodic pass off (a pod's sync still collects after it restarted something)
    container_gc_interval: float = CONTAINER_GC_PERIOD
    # the kubelet's --pod-max-pids: pids.max of every pod cgroup (-1: no limit)
    pod_pids_limit: int = -1
    # the kubelet's --node-ip: the Node's InternalIP (default: the default route's source address)
    node_ip: str = ""
    # how pods reach the other nodes' pods: "host-gw" (agent/hostgw.py), "vxlan" (agent/vxlan.py) or "none"
    flannel_backend: str = "host-gw"
    # the kubelet's nodeLeaseDurationSeconds: the node's Lease, renewed every quarter of it
    node_lease_duration: int = 40
    # the kubelet's --allowed-unsafe-sysctls: names or prefix* patterns allowed beside the safe ones
    allowed_unsafe_sysctls: tuple[str, ...] = ()
    # the kubelet's --cluster-dns (the nameservers of ClusterFirst pods; none: they get the
    # node's resolv.conf and a MissingClusterDNS event) and --cluster-domain
    cluster_dns: tuple[str, ...] = ()
    cluster_domain: str = "cluster.local"
    # the kubelet's --rotate-certificates: renew the client certificate through CSRs before it
    # expires (the server's own agent does not: the server mints its credential at every start)
    rotate_certificates: bool = True
    # run kube-proxy beside the agent, with a certificate from a CSR (agent/kubeproxy.py), as k3s's
    # agent does unless --disable-kube-proxy; the server's own agent leaves it to the server
    kube_proxy: bool = False

    @property
    def cert_dir(self) -> Path:
        """The kubelet's --cert-dir: kubelet-{client,server}-current.pem and their history."""
        return self.data_dir / "pki"

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()
        self.kubeconfig = Path(self.kubeconfig)
        if not self.node_name:
            self.node_name = socket.gethostname().lower()


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.node_name = config.node_name
        self.client: Client | None = None
        self.containerd: Any = None
        self.cri: Any = None
        self.images: Any = None
        self.node: NodeManager | None = None
        self.recorder: EventRecorder | None = None
        self.runtime: RuntimeManager | None = None
        self.status: StatusManager | None = None
        self.workers: PodWorkers | None = None
        self.prober: ProbeManager | None = None
        self.server: Any = None
        self.pods: Informer | None = None
        self.services: Informer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._api_pods: dict[str, Obj] = {}
        self.runtime_cache: crispec.RuntimeCache | None = None
        self.cgroups: CgroupManager | None = None
        self.podnet: podnet.NodeNetwork | None = None
        self.started_at = 0.0
        self.sysctls: Allowlist | None = None
        self.client_certs: CertificateManager | None = None
        self.serving_certs: CertificateManager | None = None
        self._cert_tasks: list[asyncio.Task[None]] = []
        self.metrics = AgentMetrics(self.node_name)  # the endpoint's /metrics
        self.stats: StatsProvider | None = None  # /stats/summary, /metrics/resource, /metrics/cadvisor
        self.kube_proxy: Any = None
        self._proxy_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        from kubelite.agent.cri import connect
        from kubelite.agent.images import ImageManager

        cfg = self.config
        # a bad --allowed-unsafe-sysctls stops the agent before anything starts (SysctlConfigError)
        self.sysctls = Allowlist.for_node(cfg.allowed_unsafe_sysctls)
        # first: a host that cannot enforce pod limits gets no containerd and no Node (CgroupError)
        self.cgroups = cgroups = await asyncio.to_thread(open_cgroups, pids_limit=cfg.pod_pids_limit)
        log.info("pod cgroups: %s", cgroups.describe())
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self.client = Client.from_kubeconfig(cfg.kubeconfig, user_agent=f"kubelite-agent/{self.node_name}")
        if cfg.rotate_certificates:
            self._start_client_certificates()
        if cfg.kube_proxy:
            from kubelite.agent.kubeproxy import KUBECONFIG_NAME, NodeProxy

            self.kube_proxy = NodeProxy(self.client, cfg.kubeconfig, cfg.cert_dir, cfg.data_dir / KUBECONFIG_NAME,
                                        self.node_name)
            self._proxy_task = asyncio.create_task(self.kube_proxy.run(), name="agent-kube-proxy")
        socket_path = cfg.containerd_socket
        self.registries = registries.load(cfg.data_dir)  # <data_dir>/registries.yaml
        if socket_path is None:
            from kubelite.agent.containerd import Containerd

            self.containerd = Containerd(cfg.data_dir, cgroup_driver=cgroups.driver)
            registries.write_hosts_toml(cfg.data_dir, self.registries)  # -> containerd/certs.d/*/hosts.toml
            await self.containerd.start()
            socket_path = self.containerd.socket_path
        self.cri = await connect(socket_path)
        self.metrics.instrument_cri(self.cri)  # kubelet_runtime_operations_*
        version = await self.cri.version(timeout=30)
        self.images = ImageManager(self.cri)
        try:
            await self.images.ensure_offline_images(cfg.images_dir)
        except Exception as exc:  # pods with those images will report ErrImagePull
            log.warning("offline images not imported: %s", exc)
        self.node = NodeManager(self.client, self.node_name, cfg.data_dir, cfg.kubelet_port,
                                f"{version.runtime_name}://{version.runtime_version}", self.cri, node_ip=cfg.node_ip)
        self.node.lease_duration = cfg.node_lease_duration
        if cfg.flannel_backend == "vxlan":  # the pods' packets must fit the tunnel
            from kubelite.agent.vxlan import pod_mtu

            self.node.pod_mtu = await asyncio.to_thread(pod_mtu, self.node.host_ip)
        await self.node.register()  # writes the CNI config for the node's pod CIDR
        self.podnet = podnet.new_backend(cfg.flannel_backend, self.client, self.node_name, self.node.pod_cidr,
                                         self.node.host_ip)
        if self.podnet is not None:
            await self.podnet.start()
        await self._start_server()
        self.recorder = EventRecorder(self.client, component="kubelet", host=self.node_name)
        if cgroups.version == 1:  # kubelet.go, at every start; the Node's ObjectReference has uid = name
            self.recorder.emit({"kind": "Node", "name": self.node_name, "uid": self.node_name}, "Warning",
                               "CgroupV1", CGROUP_V1_WARNING)
        volumes = VolumeManager(cfg.data_dir, client=self.client)  # the client requests projected SA tokens
        self.runtime = RuntimeManager(self.cri, self.images, cgroups, volumes, self.recorder,
                                      self._fetch, host_ip=self.node.host_ip, memory_capacity=memory_capacity(),
                                      parallelism=cfg.runtime_parallelism, registries=self.registries,
                                      dns=DNSConfigurer(list(cfg.cluster_dns), cfg.cluster_domain))
        self.runtime.fetch_runtime_class = self._fetch_runtime_class
        self.runtime.node_allocatable = self.node.capacity  # resourceFieldRef limits a container lacks
        self.runtime.allocation = AllocationManager(cfg.data_dir / STATE_FILE)
        self.status = StatusManager(self.client)
        self.status.on_phase = self.metrics.pod_status  # kubelet_pod_start_duration_seconds
        self.status.start()
        # probes (agent/prober.py): results wake the pod's worker, which restarts and reports
        self.prober = ProbeManager(self.cri.runtime, self.runtime.event, on_change=self._probe_result_changed,
                                   host_ip=self.node.host_ip)
        self.runtime.prober = self.prober
        self.prober.on_result = self.metrics.probe_result  # prober_probe_total
        # the PLEG: one relist of the runtime shared by every worker; changes wake the pod's worker
        self.runtime_cache = crispec.RuntimeCache(self.cri.runtime, on_change=self._runtime_changed)
        await self.runtime_cache.refresh()
        self.metrics.watch_runtime(self.runtime_cache.pods)
        self.stats = StatsProvider(self.node_name, cgroups, self.runtime_cache.pods, memory_capacity())
        assert self.server is not None
        self.server.stats = self.stats
        node = self.node
        self.workers = PodWorkers(self.runtime, self.status, self.client, self.node.host_ip, prober=self.prober,
                                  cache=self.runtime_cache, allocatable=node.capacity)
        self.workers.sysctls = self.sysctls
        # what the runtime supports (the kubelet reads its CRI Status features)
        try:
            st = await self.cri.status()
            strict = bool(st.features.supplemental_groups_policy)
        except grpc.aio.AioRpcError:
            strict = False
        self.workers.strict_groups_supported = node.strict_groups_supported = strict
        # every Service, for the containers' service environment variables (kubelet's service lister)
        self.services = Informer(ClientListWatch(self.client, "v1", "services"), name="agent-services")
        self.runtime.services = self._services
        # the pods bound to this node: dispatched to their workers as they come and go
        self.pods = Informer(ClientListWatch(self.client, "v1", "pods", fieldSelector=f"spec.nodeName={self.node_name}"))
        self.pods.add_handler(self._pod_event)
        self._tasks = [asyncio.create_task(self.pods.run(), name="agent-pod-informer"),
                       asyncio.create_task(self.services.run(), name="agent-service-informer")]
        await self.pods.wait_synced()
        await self._remove_orphans()
        self.node.start()
        self._tasks += [asyncio.create_task(self._relist_runtime(), name="agent-pleg"),
                       asyncio.create_task(self._housekeeping(), name="agent-housekeeping")]
        self._tasks.append(asyncio.create_task(self.stats.run_sampler(), name="agent-stats-sampler"))
        if cfg.container_gc_interval > 0:
            self._tasks.append(asyncio.create_task(self._container_gc_forever(), name="agent-container-gc"))
        self.started_at = time.monotonic()
        log.info("agent for node %s started (pod CIDR %s, %s)", self.node_name, self.node.pod_cidr,
                 self.node.runtime_version)

    def _start_client_certificates(self) -> None:
        """NewKubeletClientCertificateManager: the kubeconfig's pair is the initial one, unless the
        store holds a newer usable pair (a rotation before a restart)."""
        cfg = self.config
        assert self.client is not None
        _, _, cert, key, _ = kubeconfig_credentials(cfg.kubeconfig)
        if not cert or not key:
            return  # a token, not a certificate: nothing to rotate
        tmpl = client_template(self.node_name)
        initial = Pair.parse(cert, key)
        store = FileStore("kubelet-client", cfg.cert_dir)
        stored = usable(store.current(), tmpl)
        if stored is not None and stored.serial != initial.serial and \
                stored.leaf.not_valid_after_utc > initial.leaf.not_valid_after_utc:
            initial = stored
            self.client.use_client_certificate(stored.cert_pem, stored.key_pem)
        client = self.client
        self.client_certs = CertificateManager(
            client, "client", KUBELET_CLIENT_SIGNER, store, lambda: tmpl,
            lambda p: client.use_client_certificate(p.cert_pem, p.key_pem), server=False, initial=initial)
        self._cert_tasks.append(asyncio.create_task(self.client_certs.run(), name="agent-client-certificate"))

    async def _start_server(self) -> None:
        from kubelite.agent.auth import NodeAuth
        from kubelite.agent.server import AgentServer
        from kubelite.tls import pki as pki_mod

        cfg = self.config
        assert self.node is not None and self.client is not None
        if cfg.pki_dir is not None and (cfg.pki_dir / "tls" / "ca.key").exists():
            # the server's own agent: the CA key is in this process already
            self.server = AgentServer(self.cri, cfg.data_dir, pki_mod.load_pki(cfg.pki_dir), port=cfg.kubelet_port,
                                      node_addresses=[self.node.host_ip], node_name=self.node_name)
        else:
            self.server = AgentServer(self.cri, cfg.data_dir, None, port=cfg.kubelet_port,
                                      node_addresses=[self.node.host_ip], node_name=self.node_name,
                                      ssl_context=self._start_serving_certificates())
        self.server.container_status = self._container_status
        self.server.metrics = self.metrics
        self.server.auth = NodeAuth(self.client, self.node_name)  # /metrics and /stats: TokenReview + SAR
        await self.server.start()

    def _start_serving_certificates(self) -> ssl.SSLContext:
        """NewKubeletServerCertificateManager: the endpoint listens at once, but completes no
        handshake before a kubelet-serving CSR for the Node's addresses is approved and signed."""
        cfg = self.config
        node = self.node
        assert node is not None and self.client is not None
        _, ca_pem, _, _, _ = kubeconfig_credentials(cfg.kubeconfig)
        tls = ServingTLS(ca_pem)  # the API server's client certificate must come from this CA

        def template() -> Template | None:
            return serving_template(self.node_name, node.addresses())

        store = FileStore("kubelet-server", cfg.cert_dir)
        initial = usable(store.current(), template())
        if initial is not None:
            tls.load(initial)
        else:
            log.info("no serving certificate yet: requesting one (%s)", KUBELET_SERVING_SIGNER)
        self.serving_certs = CertificateManager(self.client, "serving", KUBELET_SERVING_SIGNER, store, template,
                                                tls.load, server=True, initial=initial, dynamic_template=True)
        self._cert_tasks.append(asyncio.create_task(self.serving_certs.run(), name="agent-serving-certificate"))
        return tls.context

    def _container_status(self, namespace: str, name: str, container: str, uid: str = "") -> Obj | None:
        """The newest status this agent computed for a container of one of its pods."""
        if self.status is None:
            return None
        for puid, pod in self._api_pods.items():
            m = pod["metadata"]
            if m.get("namespace") != namespace or m.get("name") != name or (uid and puid != uid):
                continue
            st = self.status.latest(puid) or pod.get("status") or {}
            for key in ("containerStatuses", "initContainerStatuses"):
                for cs in st.get(key) or []:
                    if cs.get("name") == container:
                        return cs
        return None

    async def stop(self) -> None:
        if self._proxy_task is not None:  # kube-proxy removes its rules as it stops
            self._proxy_task.cancel()
            with contextlib.suppress(BaseException):
                await self._proxy_task
            self._proxy_task = None
        for t in self._cert_tasks:
            t.cancel()
        for t in self._cert_tasks:
            with contextlib.suppress(BaseException):
                await t
        self._cert_tasks = []
        if self.server is not None:
            await self.server.stop()
        if self.podnet is not None:  # its routes and devices stay: the pods do
            await self.podnet.stop()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(BaseException):
                await t
        self._tasks = []
        if self.workers is not None:
            await self.workers.stop()
        if self.runtime_cache is not None:
            await self.runtime_cache.close()
        if self.runtime is not None:
            await self.runtime.volumes.close()  # stops token refreshers; mounts stay for running pods
        if self.status is not None:
            await self.status.flush(3)
            await self.status.stop()
        if self.node is not None:
            await self.node.stop()
        if self.recorder is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.recorder.flush(), 3)
            await self.recorder.close()
        if self.cri is not None:
            await self.cri.close()
        if self.containerd is not None:
            await self.containerd.stop()
        if self.client is not None:
            await self.client.close()

    # ------------------------------------------------------------------ API side
    async def _fetch(self, kind: str, namespace: str, name: str) -> Obj | None:
        assert self.client is not None
        try:
            return await self.client.get("v1", kind, name, namespace=namespace)
        except errors.StatusError as exc:
            if exc.code == 404:
                return None
            raise

    async def _fetch_runtime_class(self, name: str) -> Obj | None:
        assert self.client is not None
        try:
            return await self.client.get("node.k8s.io/v1", "runtimeclasses", name)
        except errors.StatusError as exc:
            if exc.code == 404:
                return None
            raise

    def _services(self) -> list[Obj] | None:
        if self.services is None or not self.services.synced.is_set():
            return None
        return list(self.services.objects.values())

    def _runtime_changed(self, uid: str) -> None:
        if self.workers is not None:
            self.workers.wake(uid)

    def _probe_result_changed(self, uid: str) -> None:
        if self.workers is not None:
            self.workers.wake(uid)

    def _dispatch(self, pod: Obj) -> None:
        assert self.workers is not None
        uid = pod["metadata"]["uid"]
        self._api_pods[uid] = pod
        self.metrics.pod_seen(uid)
        self.workers.update_pod(pod)

    def _forget(self, uid: str) -> None:
        assert self.workers is not None
        self._api_pods.pop(uid, None)
        self.metrics.pod_gone(uid)
        self.workers.remove_pod(uid)

    def _pod_event(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        if new is not None:
            self._dispatch(new)
        elif old is not None:
            self._forget(old["metadata"]["uid"])

    # ------------------------------------------------------------------ runtime side
    async def _relist_runtime(self) -> None:
        """GenericPLEG: every second, relist the runtime; the cache wakes the workers of pods
        whose sandboxes or containers changed. Workers that changed something relist in
        between (shared, see RuntimeCache), and a relist that recent counts for this period."""
        assert self.runtime_cache is not None
        while True:
            await asyncio.sleep(max(0.0, self.runtime_cache.listed_at + RELIST_PERIOD - time.monotonic()))
            try:
                await self.runtime_cache.refresh(time.monotonic() - RELIST_PERIOD / 2)
            except Exception as exc:
                log.debug("relist failed: %s", exc)
                await asyncio.sleep(RELIST_PERIOD)

    async def _remove_orphans(self) -> None:
        """Sandboxes, containers, pod dirs and pod cgroups of pods this node no longer has."""
        assert self.runtime is not None and self.workers is not None
        known = set(self._api_pods) | self.workers.known()
        assert self.runtime_cache is not None
        try:
            await self.runtime_cache.refresh()
        except Exception as exc:
            log.warning("orphan scan failed: %s", exc)
            return
        by_uid = self.runtime_cache.pods()
        # only what this node made: its containerd's sandboxes and its data dir's pod dirs. Pod
        # cgroups alone prove nothing (kubepods is shared by every agent on the host); a pod's
        # cgroup goes with the rest of it in remove_pod.
        if self.runtime.allocation is not None:  # RemoveOrphanedPods
            self.runtime.allocation.retain(known, {c.id for pr in by_uid.values() for c in pr.containers})
        uids = set(by_uid) | set(self.runtime.volumes.known_pod_dirs())
        for uid in uids - known:
            log.info("removing orphaned pod %s", uid)
            pr = by_uid.get(uid, PodRuntime(uid))
            try:
                await self.runtime.kill_pod(None, pr, grace=2, events=False)
                await self.runtime.remove_pod(uid, None, pr)
            except Exception as exc:
                log.warning("could not remove orphaned pod %s: %s", uid, exc)

    async def _housekeeping(self) -> None:
        assert self.runtime is not None
        while True:
            await asyncio.sleep(HOUSEKEEPING_PERIOD)
            try:
                await self._remove_orphans()
                self.runtime.crash_backoff.gc()
                self.runtime.image_backoff.gc()
            except Exception as exc:
                log.warning("housekeeping: %s", exc)

    async def container_gc(self) -> list[str]:
        """One pass of the container GC over the live pods of this node (kuberuntime_gc.go
        GarbageCollect with evictNonDeletedPods false): per pod, exited containers but the
        newest per container name and dead sandboxes but the newest go, with their logs.
        Pods being deleted are left to their worker, runtime state of pods this agent does not
        know (other nodes sharing a containerd, orphans) is not touched. Returns what was removed."""
        assert self.runtime is not None and self.runtime_cache is not None
        await self.runtime_cache.refresh()
        by_uid = self.runtime_cache.pods()
        removed: list[str] = []
        for uid, pod in list(self._api_pods.items()):
            if pod["metadata"].get("deletionTimestamp") or pod.get("spec", {}).get("nodeName") != self.node_name:
                continue
            pr = by_uid.get(uid)
            if pr is None:
                continue
            try:
                removed += await self.runtime.garbage_collect(pod, pr)
            except Exception as exc:
                log.warning("container GC of pod %s: %s", uid, exc)
        return removed

    async def _container_gc_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.container_gc_interval)
            try:
                await self.container_gc()
            except Exception as exc:
                log.warning("container GC: %s", exc)


async def run_agent(data_dir: Path | str, kubeconfig: Path | str, node_name: str = "", *, kubelet_port: int = 10250,
                    containerd_socket: Path | str | None = None, images_dir: Path | str | None = None,
                    pki_dir: Path | str | None = None, runtime_parallelism: int = 0,
                    container_gc_interval: float = CONTAINER_GC_PERIOD, pod_pids_limit: int = -1,
                    node_ip: str = "", flannel_backend: str = "host-gw", rotate_certificates: bool = True,
                    allowed_unsafe_sysctls: tuple[str, ...] = (), kube_proxy: bool = False,
                    cluster_dns: tuple[str, ...] = (), cluster_domain: str = "cluster.local",
                    node_lease_duration: int = 40) -> None:
    """Run the agent until cancelled (``kubelite agent`` and ``kubelite server`` call this)."""
    agent = Agent(AgentConfig(Path(data_dir), Path(kubeconfig), node_name, kubelet_port,
                              Path(containerd_socket) if containerd_socket else None,
                              Path(images_dir) if images_dir else None,
                              Path(pki_dir) if pki_dir else None, runtime_parallelism,
                              container_gc_interval, pod_pids_limit=pod_pids_limit, node_ip=node_ip,
                              flannel_backend=flannel_backend, rotate_certificates=rotate_certificates,
                              allowed_unsafe_sysctls=allowed_unsafe_sysctls, kube_proxy=kube_proxy,
                              cluster_dns=cluster_dns, cluster_domain=cluster_domain,
                              node_lease_duration=node_lease_duration))
    try:
        try:
            await agent.start()
        except (CgroupError, PodNetworkError, SysctlConfigError) as exc:
            log.error("node agent not started: %s", exc)
            raise
        await asyncio.Event().wait()
    finally:  # also when cancelled half-way through start: nothing (e.g. containerd) may be left behind
        await asyncio.shield(agent.stop())
