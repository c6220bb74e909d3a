"""What subresource handlers and virtual kinds are built from.

Upstream's REST storage constructors (pkg/registry/core/pod/storage.NewStorage and friends)
get their dependencies passed in; here a kind's :class:`~kubelite.kinds.base.Subresource`
names a factory that receives one :class:`RESTContext` at start-up and returns its handler.
Services that live outside the API server's own layer (the token issuer, the access
reviews, the node connections for streams) are provided by the launcher under a typed key
naming the Protocol they implement, and looked up by it::

    ctx.services.provide(TOKEN_REQUESTS, issuer)
    handler = ctx.services.require(TOKEN_REQUESTS).handle

A subresource whose service nobody provided fails at start-up, never with a 405 later.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast

from aiohttp import web

from kubelite.api import errors
from kubelite.kinds.base import Kind

if TYPE_CHECKING:
    from kubelite.apiserver.handlers import APIHandler, Target
    from kubelite.apiserver.stores import CreateOnly, Stores

T = TypeVar("T")
Handler = Callable[["APIHandler", web.Request, "Target"], Awaitable[web.StreamResponse]]


class TokenRequests(Protocol):
    """serviceaccounts/token (authentication.k8s.io/v1 TokenRequest)."""

    async def handle(self, api: APIHandler, request: web.Request, target: Target) -> web.StreamResponse: ...


class NodeStreams(Protocol):
    """The subresources served by a pod's node agent: log, exec, attach, portforward, and
    nodes/proxy."""

    async def log(self, api: APIHandler, request: web.Request, target: Target) -> web.StreamResponse: ...

    async def exec(self, api: APIHandler, request: web.Request, target: Target) -> web.StreamResponse: ...

    async def attach(self, api: APIHandler, request: web.Request, target: Target) -> web.StreamResponse: ...

    async def portforward(self, api: APIHandler, request: web.Request, target: Target) -> web.StreamResponse: ...

    async def node_proxy(self, api: APIHandler, request: web.Request, target: Target) -> web.StreamResponse: ...


class ResourceMetrics(Protocol):
    """The object that answers a metrics.k8s.io kind's get and list (NodeMetrics, PodMetrics)."""

    def for_kind(self, kind: Kind) -> Any: ...


class AccessReviews(Protocol):
    """The object that answers a review kind's POST (SubjectAccessReview and friends)."""

    def for_kind(self, kind: Kind) -> CreateOnly: ...


class ServiceKey(Generic[T]):
    """Names one service and the type its implementation has."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"ServiceKey({self.name})"


TOKEN_REQUESTS: ServiceKey[TokenRequests] = ServiceKey("TokenRequests")
NODE_STREAMS: ServiceKey[NodeStreams] = ServiceKey("NodeStreams")
ACCESS_REVIEWS: ServiceKey[AccessReviews] = ServiceKey("AccessReviews")
RESOURCE_METRICS: ServiceKey[ResourceMetrics] = ServiceKey("ResourceMetrics")


class Services:
    """Implementations provided by the launcher, by key."""

    def __init__(self) -> None:
        self._by_key: dict[ServiceKey[Any], object] = {}

    def provide(self, key: ServiceKey[T], impl: T) -> None:
        self._by_key[key] = impl

    def get(self, key: ServiceKey[T]) -> T | None:
        return cast("T | None", self._by_key.get(key))

    def require(self, key: ServiceKey[T]) -> T:
        impl = self._by_key.get(key)
        if impl is None:
            raise LookupError(f"no {key.name} was provided to the API server")
        return cast(T, impl)


@dataclass
class RESTContext:
    api: APIHandler
    stores: Stores
    services: Services = field(default_factory=Services)


def method_not_allowed(target: Target, method: str) -> errors.StatusError:
    action = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
        method, method.lower())
    return errors.method_not_supported(f"{target.kind.plural}/{target.subresource}", action, target.kind.group)


__all__ = ["ACCESS_REVIEWS", "NODE_STREAMS", "RESOURCE_METRICS", "TOKEN_REQUESTS", "AccessReviews", "Handler",
           "NodeStreams", "RESTContext", "ResourceMetrics", "ServiceKey", "Services", "TokenRequests",
           "method_not_allowed"]
