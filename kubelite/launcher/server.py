"""`kubelite server`: the API server and the components that run beside it, as k3s wires
kube-apiserver, the controllers, the scheduler and the kubelet into one process.

Each component gets narrow, typed dependencies (its stores, an authorizer, a kubeconfig) and
runs as a coroutine under the :class:`~kubelite.launcher.supervisor.Supervisor`, which logs and
restarts it when it ends and reports it in /readyz.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import IO

from aiohttp import web

from kubelite.agent.agent import run_agent
from kubelite.agent.node import host_ip
from kubelite.api import errors
from kubelite.apiserver.auth import Authenticator, auth_middleware
from kubelite.apiserver.cacher import WatchCache
from kubelite.apiserver.handlers import APIHandler
from kubelite.apiserver.inflight import long_running
from kubelite.apiserver.metrics import APIMetrics, instrument_stores, render
from kubelite.apiserver.registry import WriteOptions
from kubelite.apiserver.rest import NODE_STREAMS, RESOURCE_METRICS, RESTContext
from kubelite.apiserver.server import APIServer
from kubelite.apiserver.stores import Stores
from kubelite.apiserver.streams import StreamHandlers, node_streams
from kubelite.apiserver.wiring import install_machinery
from kubelite.auth.bootstrap_tokens import BootstrapTokenAuthenticator
from kubelite.auth.setup import Security
from kubelite.config import ServerConfig
from kubelite.controllers.bootstrapsigner import ClusterInfoPublisher, TokenCleaner
from kubelite.controllers.cronjob import CronJobController
from kubelite.controllers.csr import CSRApprover, CSRCleaner, CSRSigner
from kubelite.controllers.daemonset import DaemonSetController
from kubelite.controllers.deployment import DeploymentController
from kubelite.controllers.disruption import DisruptionController
from kubelite.controllers.endpoints import EndpointsController
from kubelite.controllers.endpointslice import EndpointSliceController
from kubelite.controllers.events import recorder
from kubelite.controllers.garbagecollector import GarbageCollector
from kubelite.controllers.job import JobController
from kubelite.controllers.kubernetesservice import KubernetesService
from kubelite.controllers.localpath import PROVISIONER as PROVISIONER_COMPONENT
from kubelite.controllers.localpath import LocalPathProvisioner, default_storage_class
from kubelite.controllers.namespace import NamespaceController
from kubelite.controllers.nodeipam import NodeIPAMController
from kubelite.controllers.nodelifecycle import NodeLifecycleController
from kubelite.controllers.persistentvolume import PersistentVolumeController
from kubelite.controllers.podgc import PodGC
from kubelite.controllers.replicaset import REPLICATION_CONTROLLERS, ReplicaSetController
from kubelite.controllers.resourcequota import ResourceQuotaController
from kubelite.controllers.rootca import RootCAPublisher
from kubelite.controllers.statefulset import StatefulSetController
from kubelite.controllers.tainteviction import TaintEvictionController
from kubelite.controllers.ttlafterfinished import TTLAfterFinishedController
from kubelite.controllers.volumeprotection import PVCProtectionController, PVProtectionController
from kubelite.dashboard import dashboard_middleware
from kubelite.dns.server import run_dns
from kubelite.dns.service import KubeDNSService
from kubelite.kinds.priorityclasses import SYSTEM_CLASSES, system_class
from kubelite.kinds.registry import Registry, default_registry
from kubelite.kinds.service_alloc import IPRange
from kubelite.kinds.service_rest import configure as configure_services
from kubelite.launcher import bootstrap
from kubelite.launcher.leaders import controller_manager
from kubelite.launcher.supervisor import Supervisor
from kubelite.metricsserver.rest import ResourceMetricsAPI
from kubelite.metricsserver.scraper import MetricsServer
from kubelite.net import listener
from kubelite.proxy.iptables import run_proxy
from kubelite.scheduler.metrics import SchedulerMetrics
from kubelite.scheduler.scheduler import run_scheduler
from kubelite.store import datastore
from kubelite.store.base import Store
from kubelite.store.snapshot import hold_data_dir
from kubelite.store.sqlite import SQLiteStore
from kubelite.tls import pki as pki_mod
from kubelite.tls.kubeconfig import mint_user_kubeconfig, write_admin_kubeconfig
from kubelite.tls.reload import ServingCertReloader

log = logging.getLogger("kubelite.server")


async def bootstrap_priority_classes(stores: Stores) -> None:
    """The apiserver's scheduling/bootstrap-system-priority-classes post-start hook."""
    pcs = stores.get("scheduling.k8s.io", "priorityclasses")
    for name in SYSTEM_CLASSES:
        with contextlib.suppress(errors.StatusError):  # already there
            await pcs.create("", system_class(name), WriteOptions(field_manager="kube-apiserver"))


async def bootstrap_storage_class(stores: Stores) -> None:
    """k3s's local-storage manifest: the default StorageClass ``local-path``, made at every start
    when it is missing (k3s re-applies its manifests too); one that exists is left as it is."""
    classes = stores.get("storage.k8s.io", "storageclasses")
    with contextlib.suppress(errors.StatusError):  # already there
        await classes.create("", default_storage_class(), WriteOptions(field_manager="kubelite"))


async def _metrics_response(metrics: APIMetrics) -> web.StreamResponse:
    return render(metrics.registry)


def make_store(cfg: ServerConfig) -> Store:
    """The datastore the flags name: etcd for --datastore-endpoint, else the embedded SQLite."""
    if cfg.datastore_endpoint:
        from kubelite.store.etcd import EtcdStore, EtcdTLS

        tls = EtcdTLS(cfg.datastore_cafile or None, cfg.datastore_certfile or None, cfg.datastore_keyfile or None)
        return EtcdStore(cfg.datastore_endpoint, tls=tls, key_prefix=cfg.datastore_prefix,
                         compact_interval=cfg.compact_interval)
    return SQLiteStore(str(cfg.db_path), compact_interval=cfg.compact_interval, compact_keep=cfg.compact_keep)


class Server:
    """Owns every long-lived part; ``start`` brings them up, ``stop`` takes them down in order."""

    def __init__(self, cfg: ServerConfig, *, store: Store | None = None, registry: Registry | None = None,
                 supervisor: Supervisor | None = None) -> None:
        self.cfg = cfg
        self.store = store if store is not None else make_store(cfg)
        self.registry = registry if registry is not None else default_registry()
        self.supervisor = supervisor if supervisor is not None else Supervisor()
        self.api: APIServer | None = None
        self.streams: StreamHandlers | None = None
        self.stores: Stores | None = None
        self.cache: WatchCache | None = None  # --watch-cache
        # /metrics: the API server's and those of the components this process hosts (the scheduler)
        self.metrics = APIMetrics()
        self._lock: IO[bytes] | None = None

    def _health(self) -> list[tuple[str, bool]]:
        checks = self.supervisor.health()
        reachable = getattr(self.store, "reachable", None)  # etcd: kube-apiserver's etcd-readiness
        if reachable is not None:
            checks.append(("etcd-readiness", bool(reachable)))
        return checks

    async def start(self) -> None:
        cfg = self.cfg
        cfg.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        cfg.db_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # one server per data dir (and no snapshot restore under a running one)
        self._lock = hold_data_dir(cfg.db_path)
        datastore.check(cfg.db_path, cfg.datastore_endpoint, cfg.datastore_prefix)
        await self.store.start()
        if cfg.datastore_endpoint:  # (only once it answered: a mistyped endpoint is not remembered)
            datastore.record(cfg.db_path, cfg.datastore_endpoint, {
                "cafile": cfg.datastore_cafile, "certfile": cfg.datastore_certfile,
                "keyfile": cfg.datastore_keyfile, "prefix": cfg.datastore_prefix})
        token, joined = "", False
        if cfg.datastore_endpoint:  # servers sharing an etcd share the cluster's CA and SA keys
            token = bootstrap.server_token(cfg.data_dir, cfg.token)
            joined = await bootstrap.join(self.store, pki_mod.PKI.at(cfg.data_dir), token)
        # as kube-apiserver's, the serving certificate names the `kubernetes` Service's IP, which
        # in-cluster clients dial (KUBERNETES_SERVICE_HOST)
        api_service_ip = IPRange.parse(cfg.service_cidr).first()
        pki = pki_mod.ensure_pki(cfg.data_dir, extra_sans=(*cfg.tls_sans, api_service_ip))
        if cfg.datastore_endpoint and not joined:
            await bootstrap.publish(self.store, pki, token)
        if cfg.watch_cache:
            self.cache = WatchCache(self.store)
            await self.cache.start()
        stores = self.stores = Stores.build(self.registry, self.cache or self.store)
        for resource_store in stores.values():
            resource_store.add_cache_indexes()
        instrument_stores(stores, self.metrics)
        services = configure_services(stores, cfg.service_cidr, cfg.service_node_port_range)
        await services.repair(free_leaks=not cfg.datastore_endpoint)

        # the API: handlers, REST services, authentication, authorization, admission, audit
        handler = APIHandler(self.registry, stores)
        install_machinery(handler)
        security = Security(stores, cfg.data_dir, pki,
                            max_inflight=(cfg.max_requests_inflight, cfg.max_mutating_requests_inflight),
                            metrics=self.metrics)
        authn = Authenticator.for_data_dir(cfg.data_dir)
        authn.add_token_authenticator(security.token_issuer.authenticate)
        authn.add_token_authenticator(BootstrapTokenAuthenticator(stores.get("", "secrets")))  # node join
        context = RESTContext(handler, stores)
        security.provide(context.services, authn)
        self.streams = node_streams(stores, pki)
        context.services.provide(NODE_STREAMS, self.streams)
        # metrics.k8s.io, as metrics-server serves it: from the nodes' /metrics/resource
        metrics_server = MetricsServer(stores, self.streams.agent_get)
        context.services.provide(RESOURCE_METRICS, ResourceMetricsAPI(metrics_server))
        handler.install_rest(context)
        ssl_context = pki_mod.server_ssl_context(pki)
        metrics = self.metrics
        self.api = APIServer(handler, [metrics.received(), dashboard_middleware(authn), auth_middleware(authn), *security.middlewares,
                                       metrics.instrument(self.registry, long_running)], ssl_context,
                             cfg.bind_address, cfg.port, self._health, listener.ListenerLimits(
                                 handshake_timeout=cfg.request_header_timeout, header_timeout=cfg.request_header_timeout,
                                 idle_timeout=cfg.idle_timeout, body_timeout=cfg.body_timeout,
                                 max_pending=cfg.max_pending_connections),
                             metrics=lambda request: _metrics_response(metrics))
        await self.api.start()

        # what the API needs before it is ready: RBAC policy, informers, system namespaces
        run = self.supervisor.add
        kcm: list[tuple[str, Callable[[], Awaitable[None]]]] = []  # kube-controller-manager's share
        for name, component in security.components():
            if name == "clusterrole-aggregation":  # a controller of kube-controller-manager
                kcm.append((name, component))
            else:
                run(name, component)
        await security.bootstrap()
        namespaces = NamespaceController(stores)
        await namespaces.bootstrap()
        await bootstrap_priority_classes(stores)
        await bootstrap_storage_class(stores)
        run("storage-object-counter", lambda: metrics.run_object_counter(stores))  # apiserver_storage_objects
        run("metrics-server", metrics_server.run)
        run("serving-cert-reloader", ServingCertReloader(ssl_context, pki).run)  # kubelite certs rotate
        advertise = cfg.bind_address if cfg.bind_address not in ("0.0.0.0", "::", "", "127.0.0.1", "::1") \
            else host_ip()
        run("kubernetes-service", KubernetesService(stores, services.ips.range.first(), advertise, cfg.port).run)

        # the controllers (kube-controller-manager's share of k3s): on one server of the cluster
        kcm += [
            ("namespace-controller", namespaces.run),
            ("root-ca-publisher", RootCAPublisher(stores, pki.ca_cert).run),  # kube-root-ca.crt
            ("csr-approver", CSRApprover(stores, security.authorizer).run),
            ("csr-signer", CSRSigner(stores, cfg.data_dir, dt.timedelta(seconds=cfg.cluster_signing_duration)).run),
            ("csr-cleaner", CSRCleaner(stores).run),
            ("cluster-info-publisher", ClusterInfoPublisher(stores, cfg.server_url, pki.ca_cert.read_bytes()).run),
            ("token-cleaner", TokenCleaner(stores).run),
            ("garbage-collector", GarbageCollector(stores).run),
            ("resourcequota-controller", ResourceQuotaController(stores, security.quota.lock).run),
            ("node-lifecycle-controller", NodeLifecycleController(
                stores, monitor_period=cfg.node_monitor_period, grace_period=cfg.node_monitor_grace_period,
                startup_grace_period=cfg.node_startup_grace_period,
                recorder=recorder(stores, "node-controller")).run),
            ("taint-eviction-controller", TaintEvictionController(
                stores, recorder(stores, "taint-eviction-controller")).run),
            ("pod-garbage-collector", PodGC(stores).run),
            ("replicaset-controller", ReplicaSetController(stores).run),
            ("replication-controller", ReplicaSetController(stores, managed=REPLICATION_CONTROLLERS).run),
            ("deployment-controller", DeploymentController(stores).run),
            ("job-controller", JobController(stores).run),
            ("cronjob-controller", CronJobController(stores).run),
            ("ttl-after-finished-controller", TTLAfterFinishedController(stores).run),
            ("statefulset-controller", StatefulSetController(stores).run),
            ("daemonset-controller", DaemonSetController(stores).run),
            ("disruption-controller", DisruptionController(stores).run),
            ("endpointslice-controller", EndpointSliceController(stores).run),
            ("endpoints-controller", EndpointsController(stores).run),
            ("persistentvolume-binder-controller", PersistentVolumeController(
                stores, recorder(stores, "persistentvolume-controller")).run),
            ("persistentvolume-protection-controller", PVProtectionController(stores).run),
            ("persistentvolumeclaim-protection-controller", PVCProtectionController(stores).run),
            ("local-path-provisioner", LocalPathProvisioner(stores, recorder(stores, PROVISIONER_COMPONENT)).run),
            ("node-ipam-controller", NodeIPAMController(stores, cfg.cluster_cidr, cfg.node_cidr_mask_size,
                                                        recorder(stores, "cidrAllocator")).run),
        ]
        election = cfg.election
        if election is None:
            for name, component in kcm:
                run(name, component)
        else:  # they run where this server holds kube-system/kube-controller-manager
            run("kube-controller-manager", controller_manager(stores, self.supervisor, election, kcm).run)
        write_admin_kubeconfig(cfg.data_dir, cfg.server_url, pki)
        self.api.ready = True
        log.info("kubelite API server listening on %s (data dir %s)", cfg.server_url, cfg.data_dir)
        self._start_node_components()

    def _start_node_components(self) -> None:
        """The scheduler and the node agent run beside the API server (like k3s), each an API
        client with an identity of its own. As in k3s, ``--disable-agent`` leaves the scheduler
        running (it schedules onto joined nodes); ``--disable-scheduler`` turns it off."""
        cfg = self.cfg
        if cfg.disable_agent and cfg.disable_scheduler:
            return
        node = cfg.node_name or socket.gethostname().lower()
        kcdir = cfg.data_dir / "kubeconfigs"
        kcdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not cfg.disable_scheduler:
            sched_kc = kcdir / "scheduler.yaml"
            mint_user_kubeconfig(cfg.data_dir, "system:kube-scheduler", [], cfg.server_url, out=sched_kc)
            election = cfg.election
            sched_metrics = SchedulerMetrics(self.metrics.registry)
            self.supervisor.add("scheduler", lambda: run_scheduler(sched_kc, election=election, metrics=sched_metrics))
        if cfg.disable_agent:
            return
        # kube-proxy, as k3s runs it beside its agent: with the system:kube-proxy identity
        if not cfg.disable_kube_proxy:
            proxy_kc = kcdir / "kube-proxy.yaml"
            mint_user_kubeconfig(cfg.data_dir, "system:kube-proxy", [], cfg.server_url, out=proxy_kc)
            self.supervisor.add("kube-proxy", lambda: run_proxy(proxy_kc))
        if "coredns" not in cfg.disable:
            # the cluster DNS (CoreDNS's share of k3s) on this node, with k3s's system:coredns role, and
            # the kube-dns Service that leads to it
            dns_kc = kcdir / "coredns.yaml"
            mint_user_kubeconfig(cfg.data_dir, "system:coredns", [], cfg.server_url, out=dns_kc)
            self.supervisor.add("coredns", lambda: run_dns(dns_kc, node, cluster_cidr=cfg.cluster_cidr,
                                                           domain=cfg.cluster_domain, dns_ip=cfg.cluster_dns_ip))
            if self.stores is not None:
                self.supervisor.add("kube-dns-service", KubeDNSService(self.stores, cfg.cluster_dns_ip, node).run)
        agent_kc = kcdir / "agent.yaml"
        mint_user_kubeconfig(cfg.data_dir, f"system:node:{node}", ["system:nodes"], cfg.server_url, out=agent_kc)
        self.supervisor.add("agent", lambda: run_agent(cfg.data_dir, agent_kc, node_name=node, pki_dir=cfg.data_dir,
                                                           rotate_certificates=False,
                                                           flannel_backend=cfg.flannel_backend,
                                                           allowed_unsafe_sysctls=cfg.allowed_unsafe_sysctls,
                                                           cluster_dns=() if "coredns" in cfg.disable
                                                           else (cfg.cluster_dns_ip,),
                                                           cluster_domain=cfg.cluster_domain))

    async def stop(self) -> None:
        # components first (the agent leaves containers running), then the API, then the store
        await self.supervisor.stop()
        if self.api is not None:
            await self.api.stop()
        if self.streams is not None:
            await self.streams.close()
        if self.cache is not None:
            await self.cache.stop()
        await self.store.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None


async def serve(cfg: ServerConfig) -> None:
    server = Server(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
        await stop.wait()
        log.info("shutting down")
    finally:
        await server.stop()


__all__ = ["Server", "make_store", "serve"]
