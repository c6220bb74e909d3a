"""One call wires authorization, admission, reviews, service-account tokens and audit
into the server (``kubelite server``)::

    security = install_security(server, handler, authn)          # after the stores exist
    app, state = build_app(handler, [auth_middleware(authn), *security.middlewares])
    ...
    await security.start()                                         # before ready

``start`` bootstraps the default RBAC policy and starts the informers and controllers;
their tasks are appended to ``server.tasks`` so ``Server.stop`` cancels them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kubelite.auth import serviceaccount_tokens
from kubelite.auth.aggregation import AggregationController
from kubelite.auth.authorizer import PrivilegedGroups, Union
from kubelite.auth.bootstrap import bootstrap_policy
from kubelite.auth.informer import Informer
from kubelite.auth.node import NodeAuthorizer, NodeGraph
from kubelite.auth.rbac import RBACAuthorizer, RuleResolver
from kubelite.auth.reviews import ReviewStore

log = logging.getLogger(__name__)


def _find(stores: dict[Any, Any], group: str, plural: str) -> tuple[Any, Any]:
    for k, s in stores.items():
        if k.group == group and k.plural == plural:
            return k, s
    raise LookupError(f"{plural}.{group} is not served")


class Security:
    def __init__(self, server: Any, handler: Any, authn: Any) -> None:
        self.server = server
        stores = server.stores
        rbac = "rbac.authorization.k8s.io"
        self.cluster_role_store = _find(stores, rbac, "clusterroles")[1]
        self.cluster_role_binding_store = _find(stores, rbac, "clusterrolebindings")[1]
        self.informers = {name: Informer(_find(stores, group, name)[1]) for group, name in (
            (rbac, "roles"), (rbac, "clusterroles"), (rbac, "rolebindings"), (rbac, "clusterrolebindings"),
            ("", "pods"))}
        self.resolver = RuleResolver(self.informers["roles"], self.informers["clusterroles"],
                                     self.informers["rolebindings"], self.informers["clusterrolebindings"])
        self.graph = NodeGraph()
        self.informers["pods"].add_handler(self.graph.on_pod)
        self.authorizer = Union(PrivilegedGroups(), NodeAuthorizer(self.graph, self.informers["pods"]),
                                RBACAuthorizer(self.resolver))
        # create-only review kinds answer from the authorizer instead of the store
        for kind in list(stores):
            if kind.extra.get("virtual"):
                review = ReviewStore(kind, self.authorizer)
                stores[kind] = review
                handler.stores[kind] = review
        from kubelite.admission import install_admission

        install_admission(server, self.authorizer, self.resolver)
        self.middlewares: list[Any] = []
        try:
            from kubelite.apiserver.audit import audit_middleware

            self.middlewares.append(audit_middleware(server.cfg.data_dir))
        except ImportError:
            pass
        from kubelite.apiserver.authz import authz_middleware

        self.middlewares.append(authz_middleware(self.authorizer))
        serviceaccount_tokens.install(server, handler, authn, authorizer=self.authorizer)
        self.aggregation = AggregationController(self.informers["clusterroles"], self.cluster_role_store)

    async def start(self) -> None:
        await bootstrap_policy(self.cluster_role_store, self.cluster_role_binding_store)
        for inf in self.informers.values():
            inf.start()
            self.server.tasks.append(inf._task)
        self.server.tasks.append(asyncio.create_task(self.aggregation.run(), name="clusterrole-aggregation"))
        for inf in self.informers.values():
            await inf.wait_synced(30)
        await self.aggregation.sync_all()
        for name in ("resourcequota_controller",):
            try:
                import importlib

                mod = importlib.import_module(f"kubelite.admission.{name}")
                self.server.tasks.append(asyncio.create_task(mod.run(self.server), name=name))
            except ImportError:
                pass


def install_security(server: Any, handler: Any, authn: Any) -> Security:
    return Security(server, handler, authn)


__all__ = ["Security", "install_security"]
