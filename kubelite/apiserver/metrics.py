"""The API server's Prometheus metrics, under kube-apiserver's names, labels and buckets, so
existing dashboards and alerts read them unchanged:

- ``apiserver_request_total{verb,dry_run,group,version,resource,subresource,scope,component,code}``
  and ``apiserver_request_duration_seconds`` (k8s.io/apiserver/pkg/endpoints/metrics): every
  request that reached a served resource, timed from its arrival; 429s from max-in-flight too
  (RecordDroppedRequest), and the health checks and aggregated discovery with their path as the
  subresource. Requests refused by authentication or authorization are not counted (upstream
  instruments the routes, which such requests never reach);
- ``apiserver_longrunning_requests`` (watches, exec, logs, port-forward, proxy in progress);
- ``apiserver_current_inflight_requests{request_kind}``: the most requests in flight during
  the last second (the max-in-flight filter's watermark);
- ``etcd_request_duration_seconds{operation,group,resource}``, ``etcd_requests_total``,
  ``etcd_request_errors_total`` (k8s.io/apiserver/pkg/storage/etcd3/metrics): every call to
  the datastore, whichever it is (SQLite or etcd);
- ``apiserver_storage_objects{resource}`` and ``apiserver_resource_objects{group,resource}``:
  objects stored per resource at the last count (every minute, as
  ``--etcd-count-metric-poll-period``).

Everything lives in one :class:`prometheus_client.CollectorRegistry` per server (the
components the server process hosts, such as the scheduler, register theirs in it too), served
on ``GET /metrics`` behind RBAC (the ``system:monitoring`` ClusterRole grants it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import prometheus_client
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from kubelite.api import errors
from kubelite.apiserver.requestinfo import REQUEST_INFO, RequestInfo, request_info
from kubelite.kinds.registry import Registry
from kubelite.net.exposition import CONTENT_TYPE, render
from kubelite.store.base import KV, ListResult, Store

log = logging.getLogger(__name__)

# apiserver_request_duration_seconds and etcd_request_duration_seconds
REQUEST_BUCKETS = (0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20,
                   30, 45, 60)
COMPONENT = "apiserver"
VALID_VERBS = frozenset(("APPLY", "CONNECT", "CREATE", "DELETE", "DELETECOLLECTION", "GET", "LIST", "PATCH",
                         "POST", "PROXY", "PUT", "UPDATE", "WATCH", "WATCHLIST"))
READ_ONLY, MUTATING = "readOnly", "mutating"
COUNT_PERIOD = 60.0
APPLY_PATCH = "application/apply-patch+yaml"
RECEIVED: web.RequestKey[float] = web.RequestKey("received", float)


# --------------------------------------------------------------------------- label values
def clean_scope(info: RequestInfo) -> str:
    """CleanScope."""
    if info.name or info.verb == "create":
        return "resource"
    if info.namespace:
        return "namespace"
    if info.is_resource_request:
        return "cluster"
    return ""


def _watch_param(query: Any) -> bool:
    values = query.getall("watch", []) if hasattr(query, "getall") else [query.get("watch")]
    return bool(values) and values[0] is not None and str(values[0]).lower() not in ("0", "false")


def reported_verb(method: str, info: RequestInfo, scope: str, query: Any, content_type: str) -> str:
    """cleanVerb(CanonicalVerb(method, scope), suggested verb): GET of a collection is LIST,
    ``?watch`` (or the legacy /watch/ path) WATCH, a PATCH with an apply body APPLY."""
    verb = method.upper()
    if verb in ("GET", "HEAD"):
        verb = "LIST" if scope not in ("resource", "") else "GET"
    if info.verb == "watch" or (method.upper() == "GET" and _watch_param(query)):
        verb = "WATCH"
    elif verb == "PATCH" and content_type == APPLY_PATCH:
        verb = "APPLY"
    return verb if verb in VALID_VERBS else "other"


def dry_run_label(query: Any) -> str:
    """cleanDryRun: the sorted, de-duplicated ``dryRun`` values ("invalid" for unknown ones)."""
    values = query.getall("dryRun", []) if hasattr(query, "getall") else []
    if not values:
        return ""
    if any(v != "All" for v in values):
        return "invalid"
    return ",".join(sorted(set(values)))


HEALTH_PATHS = frozenset(("/healthz", "/livez", "/readyz"))
DISCOVERY_PATHS = frozenset(("/api", "/apis"))


def _instrumented_path(request: web.Request) -> str | None:
    """The component label of a non-resource path upstream counts, or None: health checks
    (component "") and aggregated discovery (component "apiserver")."""
    if request.method not in ("GET", "HEAD"):
        return None
    if request.path in HEALTH_PATHS:
        return ""
    if request.path in DISCOVERY_PATHS and "apidiscovery.k8s.io" in request.headers.get("Accept", ""):
        return COMPONENT
    return None


# --------------------------------------------------------------------------- in-flight watermark
class InflightWatermark(Collector):
    """apiserver_current_inflight_requests: the highest count of requests in flight during the
    last second, per kind (readOnly, mutating), as maxinflight.go's watermark reports it."""

    def __init__(self) -> None:
        self.current = {READ_ONLY: 0, MUTATING: 0}
        self._window = {READ_ONLY: 0, MUTATING: 0}  # the highest count since _since
        self._previous = {READ_ONLY: 0, MUTATING: 0}  # the highest count of the window before
        self._since = time.monotonic()

    def _roll(self, now: float) -> None:
        if now - self._since >= 1.0:
            self._previous = dict(self._window) if now - self._since < 2.0 else dict(self.current)
            self._window = dict(self.current)
            self._since = now

    def enter(self, kind: str) -> None:
        self.current[kind] += 1
        self._roll(time.monotonic())
        if self.current[kind] > self._window[kind]:
            self._window[kind] = self.current[kind]

    def leave(self, kind: str) -> None:
        self.current[kind] -= 1

    def collect(self) -> Any:
        self._roll(time.monotonic())
        g = GaugeMetricFamily("apiserver_current_inflight_requests",
                              "Maximal number of currently used inflight request limit of this apiserver per "
                              "request kind in last second.", labels=["request_kind"])
        for kind in (MUTATING, READ_ONLY):
            g.add_metric([kind], max(self._window[kind], self._previous[kind], self.current[kind]))
        yield g


# --------------------------------------------------------------------------- the metrics
class APIMetrics:
    """The API server's metrics; ``registry`` is what ``/metrics`` serves."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "apiserver_request_total",
            "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, "
            "scope, component, and HTTP response code.",
            ["verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component", "code"],
            registry=r)
        self.latency = Histogram(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, dry run value, group, version, resource, "
            "subresource, scope and component.",
            ["verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component"],
            buckets=REQUEST_BUCKETS, registry=r)
        self.longrunning = Gauge(
            "apiserver_longrunning_requests",
            "Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, "
            "scope and component. Not all requests are tracked this way.",
            ["verb", "group", "version", "resource", "subresource", "scope", "component"], registry=r)
        self.inflight = InflightWatermark()
        r.register(self.inflight)
        self.storage_latency = Histogram(
            "etcd_request_duration_seconds", "Etcd request latency in seconds for each operation and object type.",
            ["operation", "group", "resource"], buckets=REQUEST_BUCKETS, registry=r)
        self.storage_requests = Counter(
            "etcd_requests_total", "Etcd request counts for each operation and object type.",
            ["operation", "group", "resource"], registry=r)
        self.storage_errors = Counter(
            "etcd_request_errors_total", "Etcd failed request counts for each operation and object type.",
            ["operation", "group", "resource"], registry=r)
        self.storage_objects = Gauge(
            "apiserver_storage_objects",
            "[DEPRECATED, consider using apiserver_resource_objects instead] Number of stored objects at the time "
            "of last check split by kind. In case of a fetching error, the value will be -1.",
            ["resource"], registry=r)
        self.resource_objects = Gauge(
            "apiserver_resource_objects",
            "Number of stored objects at the time of last check split by kind. In case of a fetching error, the "
            "value will be -1.", ["group", "resource"], registry=r)
        prometheus_client.ProcessCollector(registry=r)  # process_cpu_seconds_total, ..._resident_memory_bytes
        # labelled children, looked up once: labels() costs more than the increment
        self._req_children: dict[tuple[str, ...], tuple[Any, Any]] = {}

    # ------------------------------------------------------------------ requests
    def observe_request(self, verb: str, dry_run: str, group: str, version: str, resource: str, subresource: str,
                        scope: str, code: int, elapsed: float) -> None:
        key = (verb, dry_run, group, version, resource, subresource, scope, str(code))
        children = self._req_children.get(key)
        if children is None:
            children = (self.requests.labels(*key[:7], COMPONENT, key[7]),
                        self.latency.labels(*key[:7], COMPONENT))
            self._req_children[key] = children
        children[0].inc()
        children[1].observe(elapsed)

    def dropped(self, request: web.Request, info: RequestInfo) -> None:
        """RecordDroppedRequest: a 429 from max-in-flight counts as a request."""
        scope = clean_scope(info)
        verb = reported_verb(request.method, info, scope, request.query, request.content_type)
        key = (verb, dry_run_label(request.query), info.api_group, info.api_version, info.resource,
               info.subresource, scope, COMPONENT, "429")
        if not info.is_resource_request:
            key = (verb, key[1], "", "", "", "", scope, COMPONENT, "429")
        self.requests.labels(*key).inc()

    def received(self) -> Any:
        """The first middleware: when the request arrived (WithRequestReceivedTimestamp)."""

        @web.middleware
        async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                             ) -> web.StreamResponse:
            request[RECEIVED] = time.perf_counter()
            return await handler(request)

        return middleware

    def instrument(self, registry: Registry, long_running: Callable[[RequestInfo], bool]) -> Any:
        """The last middleware (InstrumentRouteFunc): counts and times requests for served
        resources and tracks the long-running ones while they last. Only resources and
        subresources the registry serves become label values, so no URL can mint series."""

        @web.middleware
        async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                             ) -> web.StreamResponse:
            info = request.get(REQUEST_INFO) or request_info(request.method, request.path, request.query)
            start = request.get(RECEIVED) or time.perf_counter()
            if not info.is_resource_request:
                component = _instrumented_path(request)
                if component is None:
                    return await handler(request)
                return await self._timed_non_resource(request, handler, component, start)
            kind = registry.by_resource(info.api_group, info.api_version, info.resource)
            if kind is None or (info.subresource and kind.subresource(info.subresource) is None):
                return await handler(request)
            scope = clean_scope(info)
            verb = reported_verb(request.method, info, scope, request.query, request.content_type)
            gauge = None
            if long_running(info):
                gauge = self.longrunning.labels(verb, info.api_group, info.api_version, info.resource,
                                                info.subresource, scope, COMPONENT)
                gauge.inc()
            code = 500
            try:
                resp = await handler(request)
                code = resp.status
                return resp
            except errors.StatusError as exc:
                code = exc.code
                raise
            except web.HTTPException as exc:
                code = exc.status
                raise
            finally:
                if gauge is not None:
                    gauge.dec()
                self.observe_request(verb, dry_run_label(request.query) if "dryRun" in request.query_string else "",
                                     info.api_group, info.api_version, info.resource, info.subresource, scope,
                                     code, time.perf_counter() - start)

        return middleware

    async def _timed_non_resource(self, request: web.Request, handler: Callable[[web.Request],
                                  Awaitable[web.StreamResponse]], component: str, start: float) -> web.StreamResponse:
        """The health endpoints and aggregated discovery, which upstream instruments with the
        path as the subresource (InstrumentHandlerFunc("GET", "", "", "", path, "", component))."""
        code = 500
        try:
            resp = await handler(request)
            code = resp.status
            return resp
        except errors.StatusError as exc:
            code = exc.code
            raise
        except web.HTTPException as exc:
            code = exc.status
            raise
        finally:
            key = ("GET", "", "", "", "", request.path, "", str(code))
            self.requests.labels(*key[:7], component, key[7]).inc()
            self.latency.labels(*key[:7], component).observe(time.perf_counter() - start)

    # ------------------------------------------------------------------ storage
    def metered(self, backend: Store, group: str, resource: str) -> MeteredStore:
        return MeteredStore(backend, self, group, resource)

    async def count_objects(self, stores: Any) -> None:
        """One pass of the object counter over every stored resource."""
        for kind, store in stores.items():
            if kind.stored_as is not None:
                continue  # counted under the kind it is stored as
            gr = f"{kind.plural}.{kind.group}" if kind.group else kind.plural
            backend = store.store.backend if isinstance(store.store, MeteredStore) else store.store
            try:
                n = float(await backend.count(store.prefix("")))
            except Exception as exc:
                log.debug("counting %s: %s", gr, exc)
                n = -1.0
            self.storage_objects.labels(gr).set(n)
            self.resource_objects.labels(kind.group, kind.plural).set(n)

    async def run_object_counter(self, stores: Any, period: float = COUNT_PERIOD) -> None:
        while True:
            await self.count_objects(stores)
            await asyncio.sleep(period)


class MeteredStore:
    """A :class:`~kubelite.store.base.Store` that times every call of one resource's store
    (etcd3/store.go's RecordEtcdRequest); watches pass through untimed, as upstream's."""

    def __init__(self, backend: Store, metrics: APIMetrics, group: str, resource: str) -> None:
        self.backend = backend
        self._metrics = metrics
        self._group, self._resource = group, resource
        self._children: dict[str, tuple[Any, Any, Any]] = {}  # operation -> its series, made at first use

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    async def _timed(self, op: str, call: Awaitable[Any]) -> Any:
        children = self._children.get(op)
        if children is None:
            m, labels = self._metrics, (op, self._group, self._resource)
            children = self._children[op] = (m.storage_latency.labels(*labels), m.storage_requests.labels(*labels),
                                             m.storage_errors.labels(*labels))
        latency, total, failed = children
        start = time.perf_counter()
        try:
            return await call
        except Exception:
            failed.inc()
            raise
        finally:
            latency.observe(time.perf_counter() - start)
            total.inc()

    async def start(self) -> None:
        await self.backend.start()

    async def close(self) -> None:
        await self.backend.close()

    async def current_revision(self) -> int:
        return int(await self._timed("current_revision", self.backend.current_revision()))

    async def compacted_revision(self) -> int:
        return await self.backend.compacted_revision()

    async def get(self, key: str, revision: int = 0) -> KV | None:
        result: KV | None = await self._timed("get", self.backend.get(key, revision))
        return result

    async def list(self, prefix: str, revision: int = 0, limit: int = 0, start_key: str = "") -> ListResult:
        result: ListResult = await self._timed("list", self.backend.list(prefix, revision, limit, start_key))
        return result

    async def count(self, prefix: str) -> int:
        return int(await self._timed("count", self.backend.count(prefix)))

    async def create(self, key: str, value: bytes) -> KV:
        result: KV = await self._timed("create", self.backend.create(key, value))
        return result

    async def update(self, key: str, value: bytes, expected_revision: int) -> KV:
        result: KV = await self._timed("update", self.backend.update(key, value, expected_revision))
        return result

    async def delete(self, key: str, expected_revision: int = 0) -> KV:
        result: KV = await self._timed("delete", self.backend.delete(key, expected_revision))
        return result

    def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Any]:
        return self.backend.watch(prefix, from_revision)

    async def compact(self, revision: int) -> None:
        await self.backend.compact(revision)


def instrument_stores(stores: Any, metrics: APIMetrics) -> None:
    """Put every resource store's datastore calls under ``etcd_request_duration_seconds``."""
    for kind, store in stores.items():
        if not isinstance(store.store, MeteredStore):
            store.store = metrics.metered(store.store, kind.group, kind.plural)


__all__ = ["APIMetrics", "CONTENT_TYPE", "MeteredStore", "instrument_stores", "render"]
