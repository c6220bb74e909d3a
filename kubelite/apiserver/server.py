"""`kubelite server`: the API server and the components that run beside it (like k3s)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from kubelite.apiserver import pki as pki_mod
from kubelite.apiserver.app import build_app
from kubelite.apiserver.auth import Authenticator, auth_middleware
from kubelite.apiserver.handlers import APIHandler
from kubelite.apiserver.registry import ResourceStore
from kubelite.apiserver.streams import StreamHandlers, install_stream_handlers
from kubelite.apiserver.wiring import install_machinery
from kubelite.auth import bootstrap_tokens
from kubelite.auth.setup import install_security
from kubelite.cli.certs import ServingCertReloader
from kubelite.cli.kubeconfig import mint_user_kubeconfig, write_admin_kubeconfig
from kubelite.config import ServerConfig
from kubelite.controllers.bootstrapsigner import ClusterInfoPublisher, TokenCleaner
from kubelite.controllers.csr import CSRApprover, CSRSigner
from kubelite.controllers.garbagecollector import GarbageCollector
from kubelite.controllers.namespace import NamespaceController
from kubelite.controllers.rootca import RootCAPublisher
from kubelite.kinds import certificates
from kubelite.kinds.registry import default_registry
from kubelite.store.sqlite import SQLiteStore

log = logging.getLogger("kubelite.server")


class Server:
    """Owns every long-lived part; ``start`` brings them up, ``stop`` takes them down in order."""

    def __init__(self, cfg: ServerConfig) -> None:
        self.cfg = cfg
        self.store = SQLiteStore(str(cfg.db_path), compact_interval=cfg.compact_interval,
                                 compact_keep=cfg.compact_keep)
        self.registry = default_registry()
        self.stores: dict = {}
        self.runner: web.AppRunner | None = None
        self.tasks: list[asyncio.Task] = []
        self.streams: StreamHandlers | None = None

    async def start(self) -> None:
        cfg = self.cfg
        cfg.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        cfg.db_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pki = pki_mod.ensure_pki(cfg.data_dir)
        await self.store.start()
        self.stores = {k: ResourceStore(k, self.store, None, self._storage_kind(k)) for k in self.registry.all()}
        handler = APIHandler(self.registry, self.stores)
        install_machinery(handler)
        self.streams = install_stream_handlers(handler, pki)
        authn = Authenticator.for_data_dir(cfg.data_dir)
        # authorization, admission, reviews, service-account tokens, audit
        security = install_security(self, handler, authn)
        bootstrap_tokens.install(self, authn)  # node join
        certificates.install(handler)  # CSR approval subresource
        app, self.app_state = build_app(handler, [auth_middleware(authn), *security.middlewares])
        self.runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0)
        await self.runner.setup()
        ssl_context = pki_mod.server_ssl_context(pki)
        site = web.TCPSite(self.runner, cfg.bind_address, cfg.port, ssl_context=ssl_context,
                           backlog=1024, reuse_address=True)
        await site.start()
        await security.start()  # default RBAC policy, informers, controllers
        nsc = NamespaceController(self.stores)
        await nsc.bootstrap()
        self._run(nsc.run(), "namespace-controller")
        self._run(RootCAPublisher(self.stores, pki.ca_cert).run(), "root-ca-publisher")  # kube-root-ca.crt
        # new serving certificates (kubelite certs rotate) go into the live TLS context
        self._run(ServingCertReloader(ssl_context, pki).run(), "serving-cert-reloader")
        self._run(CSRApprover(self.stores, security.authorizer).run(), "csr-approver")
        self._run(CSRSigner(self.stores, cfg.data_dir).run(), "csr-signer")
        self._run(ClusterInfoPublisher(self.stores, cfg.server_url, pki.ca_cert.read_bytes()).run(),
                  "cluster-info-publisher")
        self._run(TokenCleaner(self.stores).run(), "token-cleaner")
        self._run(GarbageCollector(self.stores).run(), "garbage-collector")
        write_admin_kubeconfig(cfg.data_dir, cfg.server_url, pki)
        self.app_state.ready = True
        log.info("kubelite API server listening on %s (data dir %s)", cfg.server_url, cfg.data_dir)
        if not cfg.disable_agent:
            self._start_components()

    def _run(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self.tasks.append(asyncio.create_task(coro, name=name))

    def _start_components(self) -> None:
        """The scheduler and the node agent run beside the API server (like k3s), each an API
        client with an identity of its own."""
        from kubelite.agent.agent import run_agent
        from kubelite.scheduler.scheduler import run_scheduler

        cfg = self.cfg
        node = cfg.node_name or socket.gethostname().lower()
        kcdir = cfg.data_dir / "kubeconfigs"
        kcdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        sched_kc = kcdir / "scheduler.yaml"
        mint_user_kubeconfig(cfg.data_dir, "system:kube-scheduler", [], cfg.server_url, out=sched_kc)
        agent_kc = kcdir / "agent.yaml"
        mint_user_kubeconfig(cfg.data_dir, f"system:node:{node}", ["system:nodes"], cfg.server_url, out=agent_kc)
        self._run(run_scheduler(sched_kc), "scheduler")
        self._run(run_agent(cfg.data_dir, agent_kc, node_name=node, pki_dir=cfg.data_dir), "agent")

    def _storage_kind(self, kind):
        if kind.extra.get("storage") == "core/v1":
            return self.registry.by_kind("", "v1", kind.kind)
        return None

    async def stop(self) -> None:
        # components first (the agent leaves containers running), then the API, then the store
        for t in reversed(self.tasks):
            t.cancel()
            with contextlib.suppress(BaseException):
                await t
        if self.runner is not None:
            await self.runner.cleanup()
        if self.streams is not None:
            await self.streams.close()
        await self.store.close()


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
