"""The aiohttp application: middlewares, health, discovery, OpenAPI and the REST tree."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from kubelite.api import errors
from kubelite.apiserver import discovery, http, openapi, openapi_proto
from kubelite.apiserver.handlers import APIHandler, not_found_path

log = logging.getLogger("kubelite.apiserver")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def status_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure a client sees is a Status; never a traceback."""
    try:
        return await handler(request)
    except errors.StatusError as exc:
        return http.status_response(exc)
    except web.HTTPException:
        raise
    except (ConnectionResetError, ConnectionAbortedError):
        raise
    except Exception as exc:  # a bug: log it, answer 500 as the apiserver does
        log.exception("internal error serving %s %s", request.method, request.path)
        return http.status_response(errors.internal(type(exc).__name__))


# (name, healthy) of each check /readyz reports besides ping: components of the process
HealthChecks = Callable[[], list[tuple[str, bool]]]


class App:
    def __init__(self, handler: APIHandler, health: HealthChecks | None = None) -> None:
        self.handler = handler
        self.ready = False
        self.health = health or (lambda: [])
        self._discovery_cache: dict[str, bytes] = {}

    def kinds(self) -> list:
        return self.handler.registry.all()

    # ------------------------------------------------------------------ health
    async def healthz(self, request: web.Request) -> web.StreamResponse:
        """/healthz, /livez, /readyz (healthz.InstallHandler): ``?verbose`` lists every check;
        a failing check fails the endpoint with 500. /readyz also checks that the server has
        finished starting and that every supervised component is running (a component that
        crashed and waits for its restart fails it, named)."""
        name = request.path.strip("/").split("/", 1)[0]
        checks: list[tuple[str, bool]] = [("ping", True), ("etcd", True)]
        if name == "readyz":
            checks.append(("kubelite-bootstrap", self.ready))
            checks += self.health()
        ok = all(passed for _, passed in checks)
        if "verbose" not in request.query and ok:
            return web.Response(text="ok")
        lines = [f"[+]{n} ok" if passed else f"[-]{n} failed: reason withheld" for n, passed in checks]
        lines.append(f"{name} check passed" if ok else f"{name} check failed")
        return web.Response(status=200 if ok else 500, text="\n".join(lines) + "\n")

    async def version(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=http.dumps(discovery.version_info()), content_type=http.JSON)

    # ------------------------------------------------------------------ discovery
    def _cached(self, key: str, build: Callable[[], object]) -> bytes:
        body = self._discovery_cache.get(key)
        if body is None:
            body = http.dumps(build())
            self._discovery_cache[key] = body
        return body

    async def api_root(self, request: web.Request) -> web.StreamResponse:
        if discovery.negotiate_aggregated(request.headers.get("Accept", "")):
            body = self._cached("agg-legacy", lambda: discovery.aggregated(self.kinds(), legacy=True))
            return web.Response(body=body, headers={"Content-Type": discovery.AGGREGATED_CONTENT_TYPE})
        return web.Response(body=self._cached("api", discovery.api_versions), content_type=http.JSON)

    async def apis_root(self, request: web.Request) -> web.StreamResponse:
        if discovery.negotiate_aggregated(request.headers.get("Accept", "")):
            body = self._cached("agg-apis", lambda: discovery.aggregated(self.kinds(), legacy=False))
            return web.Response(body=body, headers={"Content-Type": discovery.AGGREGATED_CONTENT_TYPE})
        return web.Response(body=self._cached("apis", lambda: discovery.api_group_list(self.kinds())),
                            content_type=http.JSON)

    async def openapi_v2(self, request: web.Request) -> web.StreamResponse:
        proto = openapi_proto.wants_protobuf(request.headers.get("Accept", ""))
        if proto is None:
            raise errors.not_acceptable("only the following media types are accepted: "
                                        + ", ".join(("application/json", *openapi_proto.PROTO_MEDIA_TYPES)))
        body, digest = openapi.v2_proto_bytes(self.kinds()) if proto else openapi.v2_bytes(self.kinds())
        headers = {"ETag": f'"{digest}"', "Vary": "Accept"}
        if request.headers.get("If-None-Match") == f'"{digest}"':
            return web.Response(status=304, headers=headers)
        ctype = openapi_proto.PROTO_CONTENT_TYPE if proto else http.JSON
        return web.Response(body=body, headers={**headers, "Content-Type": ctype})

    async def openapi_v3(self, request: web.Request) -> web.StreamResponse:
        rest = request.match_info.get("rest", "")
        if not rest:
            body = self._cached("openapi-v3", lambda: openapi.build_v3_index(self.kinds()))
            return web.Response(body=body, content_type=http.JSON)
        found = openapi.v3_bytes(self.kinds(), rest.strip("/"))
        if found is None:
            raise not_found_path()
        body, digest = found
        want = request.query.get("hash")
        if want and want != digest:
            raise web.HTTPMovedPermanently(f"/openapi/v3/{rest.strip('/')}?hash={digest}")
        headers = {"ETag": f'"{digest}"',
                   "Cache-Control": "public, immutable" if want else "no-cache, private"}
        return web.Response(body=body, content_type=http.JSON, headers=headers)

    # ------------------------------------------------------------------ REST tree
    async def core(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info.get("rest", "")
        parts = [p for p in path.split("/") if p]
        if not parts:
            if request.method != "GET":
                raise errors.method_not_supported("", request.method.lower())
            return web.Response(body=self._cached("api/v1", lambda: discovery.api_resource_list(
                self.kinds(), "", "v1")), content_type=http.JSON)
        return await self.handler.handle(request, parts, "", "v1")

    async def group(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info.get("rest", "")
        parts = [p for p in path.split("/") if p]
        groups = discovery.group_versions(self.kinds())
        if not parts or parts[0] not in groups:
            raise not_found_path()
        g = parts[0]
        if len(parts) == 1:
            return web.Response(body=self._cached("apis/" + g, lambda: discovery.api_group(self.kinds(), g)),
                                content_type=http.JSON)
        v = parts[1]
        if v not in groups[g]:
            raise not_found_path()
        if len(parts) == 2:
            return web.Response(body=self._cached(f"apis/{g}/{v}", lambda: discovery.api_resource_list(
                self.kinds(), g, v)), content_type=http.JSON)
        return await self.handler.handle(request, parts[2:], g, v)

    async def fallback(self, request: web.Request) -> web.StreamResponse:
        raise not_found_path()


def build_app(handler: APIHandler, middlewares: list | None = None,
              health: HealthChecks | None = None, metrics: Handler | None = None) -> tuple[web.Application, App]:
    """``metrics`` answers ``GET /metrics`` (authorization decides who may: a non-resource URL)."""
    a = App(handler, health)
    app = web.Application(middlewares=[status_errors, *(middlewares or [])],
                          client_max_size=http.MAX_BODY + 1)
    r = app.router
    for name in ("healthz", "livez", "readyz"):
        r.add_get(f"/{name}", a.healthz)
        r.add_get(f"/{name}/{{rest:.*}}", a.healthz)
    r.add_get("/version", a.version)
    if metrics is not None:
        r.add_get("/metrics", metrics)
    r.add_get("/version/", a.version)
    r.add_get("/api", a.api_root)
    r.add_get("/api/", a.api_root)
    r.add_get("/apis", a.apis_root)
    r.add_get("/apis/", a.apis_root)
    r.add_get("/openapi/v2", a.openapi_v2)
    r.add_get("/openapi/v3", a.openapi_v3)
    r.add_get("/openapi/v3/{rest:.+}", a.openapi_v3)
    r.add_route("*", "/api/v1", a.core)
    r.add_route("*", "/api/v1/{rest:.*}", a.core)
    r.add_route("*", "/apis/{rest:.+}", a.group)
    r.add_route("*", "/{rest:.*}", a.fallback)
    return app, a
