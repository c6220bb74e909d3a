"""REST handlers for every kind: routing by path, verbs, options, content negotiation.

Nothing here knows any particular kind; kind-specific behaviour lives in the kind's
Strategy (kinds/) and in subresource handlers registered in :attr:`APIHandler.subresources`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from kubelite.api import decode, errors, fieldvalidation
from kubelite.api import field as fld
from kubelite.api.selectors import SelectorError, parse_field_selector, parse_label_selector
from kubelite.apiserver import bodies, http, tables
from kubelite.apiserver.auth import USER
from kubelite.apiserver.registry import DeleteOptions, ListOptions, SharedObj, WriteOptions
from kubelite.apiserver.rest import Handler, RESTContext, method_not_allowed
from kubelite.apiserver.stores import Stores
from kubelite.kinds.base import Kind, Obj
from kubelite.kinds.registry import Registry

MIN_REQUEST_TIMEOUT = 1800  # seconds; a watch without timeoutSeconds lasts 1-2x this, as upstream
BOOKMARK_INTERVAL = 60.0


@dataclass
class Target:
    kind: Kind
    namespace: str
    name: str
    subresource: str
    path: str = ""  # what follows a subresource that takes a path (nodes/NAME/proxy/PATH)


class APIHandler:
    def __init__(self, registry: Registry, stores: Stores) -> None:
        self.registry = registry
        self.stores = stores
        # built by install_rest from the kinds' Subresource.rest factories
        self.subresource_handlers: dict[tuple[Kind, str], Handler] = {}
        # hooks set by the server: patch appliers and field tracking (server-side apply)
        self.patchers: dict[str, Callable[[Kind, Obj, bytes], Obj]] = {}
        self.apply_hook: Callable[..., Awaitable[tuple[Obj, bool]]] | None = None
        self.track_fields_factory: Callable[[Kind], Callable[[Obj | None, Obj, str, str], None]] | None = None
        self.field_validation: Callable[[Kind, Obj, bytes, str, str], list[str]] | None = None
        self.watch_bookmark_interval = BOOKMARK_INTERVAL

    def install_rest(self, context: RESTContext) -> None:
        """Build every declared subresource's handler and the virtual kinds' objects. A factory
        whose service is missing fails here, at start-up."""
        self.stores.attach_virtual(context)
        for kind in self.registry.all():
            for sub in kind.subresources:
                if sub.rest is not None:
                    self.subresource_handlers[(kind, sub.name)] = sub.rest(context)

    def store_for(self, kind: Kind) -> Any:
        """The ResourceStore of ``kind`` (or the object that answers a virtual kind's POST)."""
        return self.stores.for_request(kind)

    # ------------------------------------------------------------------ routing
    def resolve(self, parts: list[str], group: str, version: str) -> Target | None:
        """parts: path segments after /api/v1 or /apis/g/v."""
        if not parts:
            return None
        ns = ""
        if parts[0] == "namespaces" and len(parts) >= 3:
            nskind = self.registry.by_resource("", "v1", "namespaces")
            if not (group == "" and len(parts) == 3 and nskind is not None and nskind.subresource(parts[2])):
                ns = parts[1]
                parts = parts[2:]
        kind = self.registry.by_resource(group, version, parts[0])
        if kind is None:
            return None
        if ns and not kind.namespaced:
            return None
        name = parts[1] if len(parts) > 1 else ""
        sub = parts[2] if len(parts) > 2 else ""
        rest = ""
        if sub:
            decl = kind.subresource(sub)
            if decl is None:
                return None
            if len(parts) > 3:
                if not decl.takes_path:
                    return None
                rest = "/".join(parts[3:])
        return Target(kind, ns, name, sub, rest)

    async def handle(self, request: web.Request, parts: list[str], group: str, version: str) -> web.StreamResponse:
        target = self.resolve(parts, group, version)
        if target is None:
            raise not_found_path()
        m = request.method
        if target.subresource:
            return await self._subresource(request, target)
        verb = _verb(m, bool(target.name), _bool_param(request, "watch"))
        if verb not in target.kind.verbs:
            raise errors.method_not_supported(target.kind.plural, verb, target.kind.group)
        if m == "GET":
            if target.name:
                return await self.get(request, target)
            if _bool_param(request, "watch"):
                return await self.watch(request, target)
            return await self.list(request, target)
        if m == "POST":
            if target.name:
                raise errors.method_not_supported(target.kind.plural, "create", target.kind.group)
            return await self.create(request, target)
        if m == "PUT" and target.name:
            return await self.update(request, target)
        if m == "PATCH" and target.name:
            return await self.patch(request, target)
        if m == "DELETE":
            if target.name:
                return await self.delete(request, target)
            return await self.delete_collection(request, target)
        raise errors.method_not_supported(target.kind.plural, _action(m), target.kind.group)

    async def _subresource(self, request: web.Request, target: Target) -> web.StreamResponse:
        h = self.subresource_handlers.get((target.kind, target.subresource))
        if h is not None:
            return await h(self, request, target)
        # the parent object, read and written through the strategy's subresource hooks
        decl = target.kind.subresource(target.subresource)
        assert decl is not None
        action = {"GET": "get", "PUT": "update", "PATCH": "patch"}.get(request.method)
        if not target.name or action is None or action not in decl.verbs:
            raise method_not_allowed(target, request.method)
        if action == "get":
            return await self.get(request, target)
        if action == "update":
            return await self.update(request, target)
        return await self.patch(request, target)

    # ------------------------------------------------------------------ reads
    async def get(self, request: web.Request, t: Target) -> web.StreamResponse:
        obj = await self.store_for(t.kind).get(t.namespace, t.name, request.query.get("resourceVersion", ""))
        _set_type(obj, t.kind)
        if http.table_requested(request):
            return http.respond(request, tables.table(t.kind, [obj], {"resourceVersion": obj["metadata"].get(
                "resourceVersion", "")}, request.query.get("includeObject", "Metadata")))
        return http.respond(request, obj)

    def list_options(self, request: web.Request) -> ListOptions:
        q = request.query
        opts = ListOptions()
        try:
            if q.get("labelSelector"):
                opts.label_selector = parse_label_selector(q["labelSelector"])
            if q.get("fieldSelector"):
                opts.field_selector = parse_field_selector(q["fieldSelector"])
        except SelectorError as exc:
            raise errors.bad_request(str(exc)) from exc
        if q.get("limit"):
            opts.limit = max(0, parse_int64(q["limit"]))
        opts.continue_token = q.get("continue", "")
        opts.resource_version = q.get("resourceVersion", "")
        opts.resource_version_match = q.get("resourceVersionMatch", "")
        if opts.continue_token and opts.resource_version not in ("", "0"):
            raise errors.bad_request("specifying resource version is not allowed when using continue")
        return opts

    async def list(self, request: web.Request, t: Target) -> web.StreamResponse:
        opts = self.list_options(request)
        store = self.store_for(t.kind)
        if (getattr(store, "watch_cache", None) is not None and not http.table_requested(request)
                and not http.wants_yaml(request)):
            # from the watch cache: the body is spliced from each object's JSON, encoded once
            raw, rev, cont, remaining = await store.list_json(t.namespace, opts)
            meta = _list_meta(rev, cont, remaining)
            spliced = b"".join((b'{"kind":', http.dumps(t.kind.list_kind), b',"apiVersion":',
                             http.dumps(t.kind.api_version), b',"metadata":', http.dumps(meta), b',"items":[',
                             b",".join(raw), b"]}"))
            return web.Response(body=spliced, content_type=http.JSON)
        items, rev, cont, remaining = await store.list(t.namespace, opts)
        meta = _list_meta(rev, cont, remaining)
        if http.table_requested(request):
            return http.respond(request, tables.table(t.kind, items, meta,
                                                      request.query.get("includeObject", "Metadata")))
        for it in items:
            _set_type(it, t.kind)
        body = {"kind": t.kind.list_kind, "apiVersion": t.kind.api_version, "metadata": meta, "items": items}
        return http.respond(request, body)

    async def watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        opts = self.list_options(request)
        q = request.query
        send_initial: bool | None = None
        if "sendInitialEvents" in q:
            send_initial = _bool_param(request, "sendInitialEvents")
            if send_initial:
                if opts.resource_version_match != "NotOlderThan":
                    raise errors.invalid("ListOptions", "", [fld.forbidden(
                        "resourceVersionMatch",
                        "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan")])
                if not _bool_param(request, "allowWatchBookmarks"):
                    raise errors.invalid("ListOptions", "", [fld.forbidden(
                        "allowWatchBookmarks", "sendInitialEvents requires setting allowWatchBookmarks to true")])
        elif opts.resource_version_match:
            raise errors.invalid("ListOptions", "", [fld.forbidden(
                "resourceVersionMatch", "resourceVersionMatch is forbidden for watch unless sendInitialEvents is "
                                        "provided")])
        bookmarks = _bool_param(request, "allowWatchBookmarks")
        timeout = float(MIN_REQUEST_TIMEOUT) * (1 + random.random())
        if q.get("timeoutSeconds"):
            timeout = float(parse_int64(q["timeoutSeconds"]))
        as_table = http.table_requested(request)
        include = q.get("includeObject", "Metadata")
        store = self.store_for(t.kind)
        # JSON frames of a change are encoded once for all the watches of the kind (SharedObj);
        # Table frames depend on the request, so those watches decode their own objects
        events = store.watch(t.namespace, opts, send_initial, t.name if t.name else "", shared=not as_table)
        # start the iterator before answering 200 so that immediate errors (410) are proper responses
        first: tuple[str, Obj] | None = None
        first_task = asyncio.ensure_future(events.__anext__())
        try:
            done, _ = await asyncio.wait({first_task}, timeout=0.05)
            if first_task in done:
                try:
                    first = first_task.result()
                except StopAsyncIteration:
                    first = None
        except errors.StatusError:
            raise
        resp = web.StreamResponse(status=200)
        resp.content_type = "application/json"
        resp.headers["Transfer-Encoding"] = "chunked"
        resp.headers["Cache-Control"] = "no-cache, private"
        await resp.prepare(request)
        headers_sent = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last_rev = opts.resource_version if opts.resource_version not in ("", "0") else ""

        def encode(etype: str, obj: Obj) -> bytes:
            nonlocal headers_sent
            if isinstance(obj, SharedObj):
                frame = obj.encoded.get((etype, id(t.kind)))
                if frame is None:
                    _set_type(obj, t.kind)
                    frame = obj.encoded[(etype, id(t.kind))] = http.dumps({"type": etype, "object": obj}) + b"\n"
                return frame
            if etype != "BOOKMARK":
                _set_type(obj, t.kind)
            if as_table and etype not in ("BOOKMARK", "ERROR"):
                obj = tables.table(t.kind, [obj], {"resourceVersion": obj["metadata"].get("resourceVersion", "")},
                                   include, headers=not headers_sent)
                headers_sent = True
            return http.dumps({"type": etype, "object": obj}) + b"\n"

        pending: asyncio.Future[Any] | None = None
        try:
            if first is not None:
                if first[0] != "BOOKMARK" or bookmarks:
                    last_rev = first[1]["metadata"].get("resourceVersion", last_rev)
                    await resp.write(encode(*first))
            elif not first_task.done():
                pending = first_task
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                if pending is None:
                    pending = asyncio.ensure_future(events.__anext__())
                wait = min(remaining, self.watch_bookmark_interval) if bookmarks else remaining
                done, _ = await asyncio.wait({pending}, timeout=wait)
                if not done:
                    if bookmarks and last_rev and loop.time() < deadline:
                        await resp.write(encode("BOOKMARK", store.bookmark(int(last_rev))))
                    continue
                task, pending = pending, None
                try:
                    etype, obj = task.result()
                except StopAsyncIteration:
                    break
                if etype == "BOOKMARK" and not bookmarks:
                    continue
                last_rev = obj["metadata"].get("resourceVersion", last_rev)
                await resp.write(encode(etype, obj))
        except errors.StatusError as exc:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await resp.write(http.dumps({"type": "ERROR", "object": exc.status()}) + b"\n")
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception as exc:  # the store ended the watch (e.g. a watcher too slow)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await resp.write(http.dumps({"type": "ERROR", "object": errors.StatusError(
                    410, "Expired", f"watch closed: {type(exc).__name__}").status()}) + b"\n")
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending
            with contextlib.suppress(BaseException):
                await events.aclose()  # type: ignore[attr-defined]
        with contextlib.suppress(ConnectionError, RuntimeError):
            await resp.write_eof()
        return resp

    # ------------------------------------------------------------------ writes
    def write_options(self, request: web.Request, kind: Kind) -> WriteOptions:
        q = request.query
        opts = WriteOptions()
        dry = q.getall("dryRun", [])
        for d in dry:
            if d != "All":
                raise errors.bad_request(f'Invalid dryRun: Unsupported value: "{d}": supported values: "All"')
        opts.dry_run = bool(dry)
        fm = q.get("fieldManager", "")
        if len(fm) > 128:
            raise errors.bad_request("fieldManager: Too long: must have at most 128 bytes")
        opts.field_manager = fm or _manager_from_agent(request.headers.get("User-Agent", ""))
        opts.user = request.get(USER)
        if self.track_fields_factory is not None:
            opts.track_fields = self.track_fields_factory(kind)
        return opts

    async def _decode(self, request: web.Request, t: Target,
                      options_kind: str = "CreateOptions") -> tuple[Obj, builtins.list[str]]:
        raw = await http.read_body(request)
        ctype = http.media_type(request)
        obj = http.decode_object(raw, ctype)
        if obj is None:  # a JSON null decodes into an empty object
            obj = {}
        check_type(obj, t.kind, request)
        return bodies.decode_write(t.kind, obj, raw, ctype, request.query.get("fieldValidation", ""), options_kind)

    async def create(self, request: web.Request, t: Target) -> web.StreamResponse:
        obj, warnings = await self._decode(request, t)
        opts = self.write_options(request, t.kind)
        created = await self.store_for(t.kind).create(t.namespace, obj, opts)
        _set_type(created, t.kind)
        warnings += t.kind.strategy.warnings_on_create(created)
        return http.respond(request, created, 201, warnings)

    async def update(self, request: web.Request, t: Target) -> web.StreamResponse:
        obj, warnings = await self._decode(request, t, "UpdateOptions")
        opts = self.write_options(request, t.kind)
        out, created = await self.store_for(t.kind).update(t.namespace, t.name, obj, opts, t.subresource)
        _set_type(out, t.kind)
        return http.respond(request, out, 201 if created else 200, warnings)

    async def patch(self, request: web.Request, t: Target) -> web.StreamResponse:
        ctype = http.media_type(request)
        raw = await http.read_body(request)
        opts = self.write_options(request, t.kind)
        store = self.store_for(t.kind)
        if ctype == "application/apply-patch+yaml":
            if self.apply_hook is None:
                raise errors.unsupported_media_type()
            if not request.query.get("fieldManager"):
                raise errors.bad_request("PatchType is ApplyPatch, but fieldManager is not specified")
            force = _bool_param(request, "force")
            out, created = await self.apply_hook(self, store, t, raw, opts, force,
                                                 request.query.get("fieldValidation", ""))
            _set_type(out, t.kind)
            return http.respond(request, out, 201 if created else 200)
        if request.query.get("force"):
            raise errors.bad_request("force: Forbidden: may not be specified for non-apply patch")
        patcher = self.patchers.get(ctype)
        if patcher is None:
            raise errors.unsupported_media_type(
                "application/json-patch+json, application/merge-patch+json, "
                "application/strategic-merge-patch+json, application/apply-patch+yaml")
        if not raw.strip():
            raise errors.bad_request("the body of the request was empty")

        warnings: list[str] = []
        mode = request.query.get("fieldValidation", "")
        fieldvalidation.validate_mode(mode, "PatchOptions")

        def apply(cur: Obj) -> Obj:
            _set_type(cur, t.kind)
            new = patcher(t.kind, cur, raw)
            if isinstance(new, dict):
                check_type(new, t.kind, request)
                new, warnings[:] = bodies.decode_patched(t.kind, new, raw, ctype, mode)
            return new

        out, _ = await store.patch(t.namespace, t.name, apply, opts, t.subresource)
        _set_type(out, t.kind)
        return http.respond(request, out, warnings=warnings)

    async def delete_options(self, request: web.Request) -> DeleteOptions:
        opts = DeleteOptions()
        raw = await http.read_body(request)
        body: dict[str, Any] = {}
        if raw.strip():
            decoded = http.decode_object(raw, http.media_type(request))
            if not isinstance(decoded, dict):
                raise errors.bad_request("DeleteOptions must be an object")
            body = decoded
        q = request.query
        gp = q.get("gracePeriodSeconds", body.get("gracePeriodSeconds"))
        if gp is not None and gp != "":
            try:
                opts.grace_period_seconds = int(gp)
            except (TypeError, ValueError) as exc:
                raise errors.bad_request(f'invalid gracePeriodSeconds: "{gp}"') from exc
        opts.propagation_policy = q.get("propagationPolicy", body.get("propagationPolicy") or "")
        pre = body.get("preconditions") or {}
        if not isinstance(pre, dict):
            raise errors.bad_request("preconditions must be an object")
        opts.preconditions = pre
        dry = q.getall("dryRun", []) or body.get("dryRun") or []
        for d in dry:
            if d != "All":
                raise errors.bad_request(f'Invalid dryRun: Unsupported value: "{d}": supported values: "All"')
        opts.dry_run = bool(dry)
        orphan = q.get("orphanDependents", body.get("orphanDependents"))
        if orphan is not None and orphan != "":
            opts.orphan_dependents = orphan is True or orphan == "true"
        opts.user = request.get(USER)
        return opts

    async def delete(self, request: web.Request, t: Target) -> web.StreamResponse:
        opts = await self.delete_options(request)
        obj, deleted = await self.store_for(t.kind).delete(t.namespace, t.name, opts)
        _set_type(obj, t.kind)
        if not deleted or t.kind.strategy.return_deleted_object:
            return http.respond(request, obj)
        details = {"name": t.name, "kind": t.kind.plural, "uid": obj["metadata"].get("uid", "")}
        if t.kind.group:
            details["group"] = t.kind.group
        return http.respond(request, http.success_status(details))

    async def delete_collection(self, request: web.Request, t: Target) -> web.StreamResponse:
        if "deletecollection" not in t.kind.verbs:
            raise errors.method_not_supported(t.kind.plural, "deletecollection", t.kind.group)
        lopts = self.list_options(request)
        dopts = await self.delete_options(request)
        items = await self.store_for(t.kind).delete_collection(t.namespace, lopts, dopts)
        for it in items:
            _set_type(it, t.kind)
        return http.respond(request, {"kind": t.kind.list_kind, "apiVersion": t.kind.api_version,
                                      "metadata": {}, "items": items})


def _list_meta(rev: int, cont: str, remaining: int | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": str(rev)}
    if cont:
        meta["continue"] = cont
    if remaining is not None and cont:
        meta["remainingItemCount"] = remaining
    return meta


def _set_type(obj: Obj, kind: Kind) -> None:
    obj["kind"] = kind.kind
    obj["apiVersion"] = kind.api_version


_TYPE_META = 'struct { APIVersion string "json:\\"apiVersion,omitempty\\""; Kind string "json:\\"kind,omitempty\\"" }'


def check_type(obj: Any, kind: Kind, request: web.Request | None = None) -> None:
    """The body's apiVersion/kind must name the kind of the URL (empty means "the URL's").

    Upstream first reads them into a small struct (runtime/serializer/json.go's
    ``Interpret``), so a body that is no object, or a type field that is no string, fails
    with that struct's decode error."""
    if not isinstance(obj, dict):
        raise errors.bad_request(f"couldn't get version/kind; json parse error: json: cannot unmarshal "
                                 f"{decode.json_kind(obj) if obj is not None else 'null'} into Go value of type "
                                 f"{_TYPE_META}")
    av = obj.get("apiVersion")
    k = obj.get("kind")
    for name, v in (("apiVersion", av), ("kind", k)):
        if v is not None and not isinstance(v, str):
            raise errors.bad_request(f"couldn't get version/kind; json parse error: json: cannot unmarshal "
                                     f"{decode.json_kind(v)} into Go struct field .{name} of type string")
    if av and av != kind.api_version:
        raise errors.bad_request(
            f"the API version in the data ({av}) does not match the expected API version ({kind.api_version})")
    if k and k != kind.kind:
        raise errors.bad_request(f"{k} in version \"{kind.version}\" cannot be handled as a {kind.kind}: "
                                 f"no kind \"{k}\" is registered for version \"{kind.api_version}\" in scheme "
                                 f"\"kubelite\"")
    obj["apiVersion"] = kind.api_version
    obj["kind"] = kind.kind


def not_found_path() -> errors.StatusError:
    return errors.StatusError(404, "NotFound", "the server could not find the requested resource",
                              {"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]})


def parse_int64(value: str) -> int:
    """A query parameter of type int64, as the parameter codec converts it
    (runtime.Convert_Slice_string_To_int64: strconv.ParseInt's errors, as a 400)."""
    v = value
    digits = v[1:] if v[:1] in "+-" else v
    if not digits or not digits.isascii() or not digits.isdigit():
        raise errors.bad_request(f'strconv.ParseInt: parsing {fld.go_quote(v)}: invalid syntax')
    n = int(v)
    if not -(1 << 63) <= n < (1 << 63):
        raise errors.bad_request(f'strconv.ParseInt: parsing {fld.go_quote(v)}: value out of range')
    return n


def _bool_param(request: web.Request, name: str) -> bool:
    v = request.query.get(name, "")
    return v.lower() in ("true", "1")


def _verb(method: str, named: bool, watch: bool) -> str:
    if method == "GET":
        return "get" if named else ("watch" if watch else "list")
    if method == "DELETE":
        return "delete" if named else "deletecollection"
    return _action(method)


def _action(method: str) -> str:
    return {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
        method, method.lower())


def _manager_from_agent(ua: str) -> str:
    """Upstream: the user agent up to the first "/" names the manager when none is given."""
    return (ua.split("/", 1)[0] or "unknown")[:128]
