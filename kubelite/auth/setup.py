"""Authorization, admission, reviews, service-account tokens and audit, built for the
launcher from the API server's stores::

    security = Security(stores, data_dir, pki)
    handler.install_rest(...)    # security.provide(services) gives TokenRequests and AccessReviews
    app = build_app(handler, [auth_middleware(authn), *security.middlewares])
    await security.bootstrap()   # default RBAC policy, informers synced, roles aggregated
    for name, run in security.components(): supervisor.add(name, run)

Nothing here starts a task of its own: the informers and controllers are coroutines the
launcher supervises.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from kubelite.admission import build_chain
from kubelite.admission.resourcequota import ResourceQuotaAdmission
from kubelite.apiserver.audit import audit_middleware
from kubelite.apiserver.authorizer import PrivilegedGroups, Union
from kubelite.apiserver.authz import authz_middleware
from kubelite.apiserver.impersonation import impersonation_middleware
from kubelite.apiserver.inflight import inflight_middleware
from kubelite.apiserver.listwatch import store_informer
from kubelite.apiserver.rest import ACCESS_REVIEWS, TOKEN_REQUESTS, Services
from kubelite.apiserver.stores import Stores
from kubelite.auth.aggregation import AggregationController
from kubelite.auth.bootstrap import bootstrap_policy
from kubelite.auth.node import NodeAuthorizer, NodeGraph
from kubelite.auth.rbac import RBACAuthorizer, RuleResolver
from kubelite.auth.reviews import ReviewStore
from kubelite.auth.serviceaccount_tokens import TokenIssuer
from kubelite.client.informer import Informer
from kubelite.kinds.base import Kind
from kubelite.tls.pki import PKI

RBAC = "rbac.authorization.k8s.io"
INFORMER_SYNC_TIMEOUT = 30.0


class _Reviews:
    def __init__(self, authorizer: Any, authenticate_token: Any = None) -> None:
        self.authorizer = authorizer
        self.authenticate_token = authenticate_token

    def for_kind(self, kind: Kind) -> ReviewStore:
        return ReviewStore(kind, self.authorizer, self.authenticate_token)


class Security:
    def __init__(self, stores: Stores, data_dir: Path, pki: PKI, max_inflight: tuple[int, int] = (400, 200),
                 metrics: Any = None) -> None:
        self.stores = stores
        self.cluster_role_store = stores.get(RBAC, "clusterroles")
        self.cluster_role_binding_store = stores.get(RBAC, "clusterrolebindings")
        self.informers: dict[str, Informer] = {
            name: store_informer(stores.get(group, name))
            for group, name in ((RBAC, "roles"), (RBAC, "clusterroles"), (RBAC, "rolebindings"),
                                (RBAC, "clusterrolebindings"), ("", "pods"), ("", "limitranges"),
                                ("scheduling.k8s.io", "priorityclasses"), ("node.k8s.io", "runtimeclasses"))}
        self.resolver = RuleResolver(self.informers["roles"], self.informers["clusterroles"],
                                     self.informers["rolebindings"], self.informers["clusterrolebindings"])
        self.graph = NodeGraph()
        self.informers["pods"].add_handler(self.graph.on_pod)
        self.authorizer = Union(PrivilegedGroups(), NodeAuthorizer(self.graph, self.informers["pods"]),
                                RBACAuthorizer(self.resolver))
        self.quota = ResourceQuotaAdmission(stores)
        self.admission = build_chain(stores, self.quota, self.authorizer, self.resolver, self.informers)
        stores.set_admission(self.admission)
        # upstream's order: audit, impersonation, max-inflight, authorization
        self.middlewares = [audit_middleware(data_dir), impersonation_middleware(self.authorizer),
                            inflight_middleware(*max_inflight, metrics=metrics), authz_middleware(self.authorizer)]
        self.token_issuer = TokenIssuer(stores, pki, self.authorizer)
        self.aggregation = AggregationController(self.informers["clusterroles"], self.cluster_role_store)

    def provide(self, services: Services, authenticator: Any = None) -> None:
        """``authenticator`` (the API server's) answers TokenReviews."""
        services.provide(TOKEN_REQUESTS, self.token_issuer)
        services.provide(ACCESS_REVIEWS, _Reviews(self.authorizer, getattr(authenticator, "authenticate_token", None)))

    def components(self) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        out: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            (f"informer/{name}", inf.run) for name, inf in self.informers.items()]
        out.append(("clusterrole-aggregation", self.aggregation.run))
        return out

    async def bootstrap(self) -> None:
        """The default policy, then (once the supervised informers have synced) aggregation."""
        await bootstrap_policy(self.cluster_role_store, self.cluster_role_binding_store)
        await asyncio.gather(*(inf.wait_synced(INFORMER_SYNC_TIMEOUT) for inf in self.informers.values()))
        await self.aggregation.sync_all()


__all__ = ["Security"]
