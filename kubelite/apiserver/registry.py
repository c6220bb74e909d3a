"""The generic registry: CRUD, watch, concurrency and deletion for every kind.

One :class:`ResourceStore` per served :class:`~kubelite.kinds.base.Kind`; everything
special about a kind comes from its Strategy (see STYLE.md). Objects are stored without
``metadata.resourceVersion``; on read it is the store's mod revision.
"""

from __future__ import annotations

import base64
import builtins
import copy
import datetime as _dt
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from kubelite.api import errors
from kubelite.api import field as fld
from kubelite.api.meta import (
    FINALIZER_DELETE_DEPENDENTS,
    FINALIZER_ORPHAN_DEPENDENTS,
    generate_name_suffix,
    name_is_dns_subdomain,
    new_uid,
    now_rfc3339,
    validate_object_meta,
    validate_object_meta_update,
)
from kubelite.api.selectors import FieldSelector, LabelSelector
from kubelite.apiserver.admission import CREATE, DELETE, UPDATE, Attributes, Chain
from kubelite.kinds.base import REQUESTING_USER, Kind, Obj
from kubelite.store.base import (
    KV,
    CompactedError,
    ConflictError,
    Event,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    Store,
)

# metadata fields only the server sets
_SYSTEM_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")
_MAX_UPDATE_RETRIES = 16


def encode(obj: Obj) -> bytes:
    meta = obj.get("metadata") or {}
    rv = meta.pop("resourceVersion", None)
    try:
        return orjson.dumps(obj)
    finally:
        if rv is not None:
            meta["resourceVersion"] = rv


def decode(kv: KV) -> Obj:
    obj: Obj = orjson.loads(kv.value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
    return obj


def _spec_part(obj: Obj) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


@dataclass
class ListOptions:
    label_selector: LabelSelector | None = None
    field_selector: FieldSelector | None = None
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""
    resource_version_match: str = ""


@dataclass
class DeleteOptions:
    grace_period_seconds: int | None = None
    preconditions: dict[str, Any] = field(default_factory=dict)
    propagation_policy: str = ""
    orphan_dependents: bool | None = None
    dry_run: bool = False
    user: Any = None


@dataclass
class WriteOptions:
    dry_run: bool = False
    field_manager: str = ""
    user: Any = None  # who asks (auth.UserInfo); None for in-process components
    # set by the HTTP layer: called as hook(old, new, manager, subresource) before validation,
    # used to maintain metadata.managedFields
    track_fields: Callable[[Obj | None, Obj, str, str], None] | None = None


def encode_continue(rv: int, start_key: str) -> str:
    raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start_key})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = orjson.loads(raw)
        rv, start = int(data["rv"]), str(data["start"])
        if data.get("v") != "meta.k8s.io/v1" or rv <= 0 or not start:
            raise ValueError
        return rv, start
    except Exception as exc:  # any malformed token is the client's mistake
        raise errors.bad_request("invalid continue token") from exc


def now_plus(seconds: int) -> str:
    t = _dt.datetime.now(_dt.UTC).replace(microsecond=0) + _dt.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class SharedObj(dict[str, Any]):
    """An object decoded once from a store event for every HTTP watch of its kind (upstream's
    watch cache serializes an event once for all its watchers: cachingObject). It is shared,
    so it is read-only; ``encoded`` holds its serialized watch frames by event type."""

    __slots__ = ("encoded",)

    def __init__(self, obj: Obj) -> None:
        super().__init__(obj)
        self.encoded: dict[Any, bytes] = {}


SHARED_EVENTS = 512  # events whose decoded objects are kept for the watches that lag behind


class ResourceStore:
    """CRUD and watch for one kind, on top of the revisioned store."""

    def __init__(self, kind: Kind, store: Store, storage_kind: Kind | None = None) -> None:
        self.kind = kind
        # a kind served in another version shares the storage of its stored version
        # (events.k8s.io/v1 Event is stored as core/v1 Event) and converts on the way
        self.storage_kind = storage_kind or kind
        conv = kind.stored_as if storage_kind is not None else None
        self._to_storage: Callable[[Obj], Obj] | None = conv.to_storage if conv else None
        self._from_storage: Callable[[Obj], Obj] | None = conv.from_storage if conv else None
        self.strategy = kind.strategy
        self.store = store
        self.admission: Chain | None = None
        # shared in-process informers by (namespace, resync): kubelite.controllers.base.informer
        self.informers: dict[tuple[str, float], Any] = {}
        # id(event) -> (event, its SharedObj, its previous value's SharedObj or None)
        self._shared: OrderedDict[int, tuple[Event, SharedObj, SharedObj | None]] = OrderedDict()

    # ------------------------------------------------------------------ helpers
    def _enc(self, obj: Obj) -> bytes:
        if self._to_storage is not None:
            obj = self._to_storage(obj)
        return encode(obj)

    def _dec(self, kv: KV) -> Obj:
        obj = decode(kv)
        if self._from_storage is not None:
            obj = self._from_storage(obj)
            obj.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
        return obj

    def _dec_shared(self, ev: Event) -> tuple[SharedObj, SharedObj | None]:
        """The event's object and previous object, decoded once for all the watches that get
        this event (the store hands every watcher the same Event)."""
        hit = self._shared.get(id(ev))
        if hit is not None and hit[0] is ev:
            return hit[1], hit[2]
        obj = SharedObj(self._dec(ev.kv))
        prev = SharedObj(self._dec(ev.prev)) if ev.prev is not None else None
        self._shared[id(ev)] = (ev, obj, prev)  # holding ev keeps its id unique while cached
        if len(self._shared) > SHARED_EVENTS:
            self._shared.popitem(last=False)
        return obj, prev

    def _resource(self) -> str:
        return self.kind.plural

    def not_found(self, name: str) -> errors.StatusError:
        return errors.not_found(self.kind.plural, name, self.kind.group)

    def conflict(self, name: str, msg: str = errors.CONFLICT_MODIFIED) -> errors.StatusError:
        return errors.conflict(self.kind.plural, name, msg, self.kind.group)

    def invalid(self, name: str, errs: list[fld.FieldError]) -> errors.StatusError:
        return errors.invalid(self.kind.kind, name, errs, self.kind.group)

    def key(self, namespace: str, name: str) -> str:
        return self.storage_kind.key(namespace if self.kind.namespaced else None, name)

    def prefix(self, namespace: str) -> str:
        if self.kind.namespaced:
            base = self.storage_kind.key(None)
            return f"{base}{namespace}/" if namespace else base
        return self.storage_kind.key(None, "")

    def field_labels(self, obj: Obj) -> dict[str, str]:
        meta = obj.get("metadata") or {}
        labels = {"metadata.name": meta.get("name", "")}
        if self.kind.namespaced:
            labels["metadata.namespace"] = meta.get("namespace", "")
        labels.update(self.strategy.field_labels(obj))
        return labels

    def check_field_selector(self, sel: FieldSelector | None) -> None:
        if sel is None:
            return
        probe = self.field_labels({"metadata": {}})
        for f in sel.fields():
            if f not in probe:
                raise errors.bad_request(f'field label not supported: {f}')

    def matches(self, obj: Obj, opts: ListOptions) -> bool:
        if opts.label_selector is not None and not opts.label_selector.matches(
                (obj.get("metadata") or {}).get("labels") or {}):
            return False
        if opts.field_selector is not None and not opts.field_selector.matches(self.field_labels(obj)):
            return False
        return True

    def _check_meta_kind(self, obj: Obj) -> None:
        if not isinstance(obj, dict):
            raise errors.bad_request("the body of the request must be an object")
        meta = obj.get("metadata")
        if meta is None:
            obj["metadata"] = {}
        elif not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")

    # ------------------------------------------------------------------ reads
    async def get(self, namespace: str, name: str, resource_version: str = "") -> Obj:
        rev = 0
        if resource_version not in ("", "0"):
            rev = _parse_rv(resource_version)
        cache = self.watch_cache
        if resource_version == "0" and cache is not None:  # "any": what the watch cache holds
            kv = cache.current(self.key(namespace, name))
            if kv is None:
                raise self.not_found(name)
            return self._dec(kv)
        try:
            kv = await self.store.get(self.key(namespace, name), rev)
        except CompactedError as exc:
            raise errors.resource_expired(exc.requested, exc.compacted) from exc
        except FutureRevisionError as exc:
            raise errors.timeout(f"Too large resource version: {exc.requested}, current: {exc.current}") from exc
        if kv is None:
            raise self.not_found(name)
        return self._dec(kv)

    async def list(self, namespace: str, opts: ListOptions) -> tuple[list[Obj], int, str, int | None]:
        """Returns (items, list revision, continue token, remainingItemCount or None)."""
        picked, rev, cont, remaining = await self._list(namespace, opts)
        return [obj if obj is not None else self._dec(kv) for kv, obj in picked], rev, cont, remaining

    async def list_json(self, namespace: str, opts: ListOptions) -> tuple[builtins.list[bytes], int, str,
                                                                           int | None]:
        """:meth:`list` with each item as its JSON (kind and apiVersion set): from the watch
        cache, each object is encoded once per change for every LIST (upstream's cachingObject)."""
        picked, rev, cont, remaining = await self._list(namespace, opts)
        cache = self.watch_cache
        out = []
        for kv, obj in picked:
            memo = cache.memo(kv) if cache is not None else {}
            raw = memo.get((id(self), "json"))
            if raw is None:
                if obj is None:
                    obj = self._dec(kv)
                obj["kind"], obj["apiVersion"] = self.kind.kind, self.kind.api_version
                raw = memo[(id(self), "json")] = orjson.dumps(obj)
            out.append(raw)
        return out, rev, cont, remaining

    @property
    def watch_cache(self) -> Any:
        """The :class:`~kubelite.apiserver.cacher.WatchCache` that serves this kind's lists and
        watches, or None (the store's own)."""
        return getattr(self.store, "watch_cache", None)

    def add_cache_indexes(self) -> None:
        """Have the watch cache index this kind's ``indexed_fields`` (a no-op without one)."""
        cache = self.watch_cache
        if cache is None or self.storage_kind is not self.kind:
            return
        for f in self.kind.indexed_fields:
            cache.add_index(self.prefix(""), f, lambda kv, f=f: self.field_labels(self._dec(kv)).get(f))

    def _selectable(self, cache: Any, kv: KV) -> Obj:
        """What selectors look at in ``kv``'s object (its labels and the values of its field
        labels), kept while it is current: a stand-in for the object, read-only, far smaller
        than the decoded object."""
        memo = cache.memo(kv)
        obj: Obj | None = memo.get(id(self))
        if obj is None:
            full = self._dec(kv)
            meta = full.get("metadata") or {}
            obj = memo[id(self)] = {"metadata": {"labels": meta.get("labels") or {}},
                                    "fields": self.field_labels(full)}
        return obj

    def _selected(self, sel: Obj, opts: ListOptions) -> bool:
        """:meth:`matches` over a :meth:`_selectable` stand-in."""
        if opts.label_selector is not None and not opts.label_selector.matches(sel["metadata"]["labels"]):
            return False
        return opts.field_selector is None or opts.field_selector.matches(sel["fields"])

    def _indexed(self, cache: Any, opts: ListOptions) -> tuple[str, str] | None:
        """(field, value) of an equality field selector the watch cache has an index for."""
        if cache is None or opts.field_selector is None:
            return None
        for f in self.kind.indexed_fields:
            value = opts.field_selector.exact(f)
            if value is not None and cache.has_index(self.prefix(""), f):
                return f, value
        return None

    async def _list(self, namespace: str, opts: ListOptions) -> tuple[builtins.list[tuple[KV, Obj | None]], int,
                                                                      str, int | None]:
        """The selected values with their decoded object when one was decoded for the caller."""
        self.check_field_selector(opts.field_selector)
        prefix = self.prefix(namespace)
        start = prefix
        rev = 0
        cache = self.watch_cache
        # resourceVersion "0" / NotOlderThan from the watch cache: what it holds once that fresh
        at_least: int | None = None
        if opts.continue_token:
            rev, start_suffix = decode_continue(opts.continue_token)
            start = prefix + start_suffix
        elif opts.resource_version not in ("", "0"):
            want = _parse_rv(opts.resource_version)
            match = opts.resource_version_match
            if match == "Exact":
                rev = want
            elif match not in ("", "NotOlderThan"):
                raise errors.bad_request(f"resourceVersionMatch: Unsupported value: \"{match}\"")
            else:
                cur = await self.store.current_revision()
                if want > cur:
                    raise errors.timeout(f"Too large resource version: {want}, current: {cur}")
                at_least = want
        elif opts.resource_version_match and opts.resource_version_match != "NotOlderThan":
            raise errors.bad_request(
                "resourceVersionMatch is forbidden unless resourceVersion is provided")
        elif opts.resource_version == "0":
            at_least = 0
        items: builtins.list[tuple[KV, Obj | None]] = []
        filtering = opts.label_selector is not None or opts.field_selector is not None
        limit = opts.limit if opts.limit > 0 else 0
        cont = ""
        remaining: int | None = None
        indexed = self._indexed(cache, opts) if not opts.continue_token and not rev else None
        if indexed is not None:
            if await cache.fresh(at_least):
                rev = cache.revision
                for kv in cache.keys_by_index(self.prefix(""), indexed[0], indexed[1], prefix):
                    if limit and len(items) == limit:
                        cont = encode_continue(rev, kv.key[len(prefix):])
                        break
                    if self._selected(self._selectable(cache, kv), opts):
                        items.append((kv, None))
                return items, rev, cont, None
        first = True
        while True:
            n = (limit - len(items) + 1) if limit else 0
            try:
                if first and at_least is not None and cache is not None:
                    page = await cache.list_at_least(prefix, at_least, n, start)
                else:
                    page = await self.store.list(prefix, rev, n, start)
            except CompactedError as exc:
                if opts.continue_token:
                    raise errors.expired(
                        "The provided continue parameter is too old to display a consistent list result. "
                        "You can start a new list without the continue parameter, or use the continue token "
                        "in this response to retrieve the remainder of the results. Continuing with the "
                        "provided token results in an inconsistent list - objects that were created, "
                        "modified, or deleted between the time the first chunk was returned and now may "
                        "show up in the list.") from exc
                raise errors.resource_expired(exc.requested, exc.compacted) from exc
            except FutureRevisionError as exc:
                raise errors.timeout(f"Too large resource version: {exc.requested}, current: {exc.current}") from exc
            first = False
            rev = page.revision
            kvs = page.kvs
            for i, kv in enumerate(kvs):
                if limit and len(items) == limit:
                    # there is at least this one more key: continue from it
                    cont = encode_continue(rev, kv.key[len(prefix):])
                    if not filtering:
                        remaining = (len(kvs) - i) if not page.more else None
                    break
                if not filtering:
                    items.append((kv, None))
                    continue
                if cache is not None:
                    if self._selected(self._selectable(cache, kv), opts):
                        items.append((kv, None))
                    continue
                obj = self._dec(kv)
                if self.matches(obj, opts):
                    items.append((kv, obj))
            else:
                if page.more and kvs:
                    start = kvs[-1].key + "\x00"
                    continue
            break
        if remaining is None and cont and not filtering:
            remaining = max(0, await self.store.count(prefix) - len(items)) if not opts.continue_token else None
        return items, rev, cont, remaining

    # ------------------------------------------------------------------ writes
    async def create(self, namespace: str, obj: Obj, opts: WriteOptions) -> Obj:
        self._check_meta_kind(obj)
        meta = obj["metadata"]
        if self.kind.namespaced:
            ns = meta.get("namespace") or namespace
            if namespace and ns != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        generated = not meta.get("name") and bool(meta.get("generateName"))
        if generated:
            meta["name"] = generate_name_suffix(meta["generateName"])
        for k in _SYSTEM_META:
            meta.pop(k, None)
        meta.pop("resourceVersion", None)
        meta.pop("selfLink", None)
        meta["uid"] = new_uid()
        meta["creationTimestamp"] = now_rfc3339()
        if self.strategy.tracks_generation:
            meta["generation"] = 1
        self.strategy.default(obj)
        if opts.track_fields:
            # as upstream's create handler: the field manager sees the decoded (defaulted) object,
            # before mutating admission and PrepareForCreate set what no manager owns (a Job's
            # generated selector)
            opts.track_fields(None, obj, opts.field_manager, "")
        attrs = Attributes(CREATE, self.kind, meta.get("namespace", ""), meta.get("name", ""), obj, None,
                           "", opts.user, opts.dry_run)
        if self.admission is not None:
            await self.admission.admit(attrs)
            obj = attrs.obj or obj
            meta = obj["metadata"]
        user_token = REQUESTING_USER.set(opts.user)
        try:
            self.strategy.prepare_for_create(obj)
        finally:
            REQUESTING_USER.reset(user_token)
        errs = validate_object_meta(meta, self.kind.namespaced, self.kind.name_validator or name_is_dns_subdomain,
                                    fld.Path("metadata"))
        errs += self.strategy.validate(obj)
        name = meta.get("name", "")
        if errs:
            raise self.invalid(name, errs)
        if self.admission is not None:
            await self.admission.validate(attrs)
        if opts.dry_run:
            if await self.store.get(self.key(meta.get("namespace", ""), name)) is not None:
                raise errors.already_exists(self.kind.plural, name, self.kind.group)
            return obj
        try:
            kv = await self.store.create(self.key(meta.get("namespace", ""), name), self._enc(obj))
        except KeyExistsError as exc:
            if generated:
                raise errors.StatusError(
                    409, "AlreadyExists",
                    f'{errors.qualified(self.kind.plural, self.kind.group)} "{name}" already exists, the server '
                    f"was not able to generate a unique name for the object",
                    {"name": name, "kind": self.kind.plural, **({"group": self.kind.group} if self.kind.group else {}),
                     "retryAfterSeconds": 1}) from exc
            raise errors.already_exists(self.kind.plural, name, self.kind.group) from exc
        meta["resourceVersion"] = str(kv.mod_revision)
        return obj

    async def update(self, namespace: str, name: str, new: Obj, opts: WriteOptions,
                     subresource: str = "") -> tuple[Obj, bool]:
        """PUT. Returns (object, created)."""
        self._check_meta_kind(new)
        meta = new["metadata"]
        if meta.get("name") and meta["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
        meta["name"] = name
        if self.kind.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request")
            meta["namespace"] = namespace
        rv = meta.get("resourceVersion") or ""
        expected = _parse_rv(rv, name) if rv else 0
        key = self.key(namespace, name)
        kv = await self.store.get(key)
        if kv is None:
            if self.strategy.allow_create_on_update and not subresource:
                if expected:
                    raise self.not_found(name)
                return await self.create(namespace, new, opts), True
            raise self.not_found(name)
        if not expected and not self.strategy.allow_unconditional_update:
            raise self.invalid(name, [fld.required(
                "metadata.resourceVersion", "must be specified for an update")])
        given_uid = meta.get("uid")
        if given_uid:  # the object's uid is a precondition of the update (rest.DefaultUpdatedObjectInfo)
            old_uid = (orjson.loads(kv.value).get("metadata") or {}).get("uid", "")
            if given_uid != old_uid:
                raise self.conflict(name, f"Precondition failed: UID in precondition: {given_uid}, "
                                          f"UID in object meta: {old_uid}")
        return await self._guaranteed_update(
            key, name, kv, lambda old: copy.deepcopy(new), opts, subresource, expected)

    async def patch(self, namespace: str, name: str, apply_patch: Callable[[Obj], Obj], opts: WriteOptions,
                    subresource: str = "", create_if_missing: Callable[[], Obj] | None = None) -> tuple[Obj, bool]:
        """Read-modify-write with retries. ``apply_patch(current)`` returns the patched object."""
        key = self.key(namespace, name)
        kv = await self.store.get(key)
        if kv is None:
            if create_if_missing is not None and not subresource:
                obj = create_if_missing()
                return await self.create(namespace, obj, opts), True
            raise self.not_found(name)

        def mutate(old: Obj) -> Obj:
            new = apply_patch(copy.deepcopy(old))
            if not isinstance(new, dict):
                raise errors.bad_request("the patched object must be a JSON object")
            new.setdefault("metadata", {})
            if not isinstance(new["metadata"], dict):
                raise errors.bad_request("metadata must be an object")
            nm = new["metadata"]
            if nm.get("name", name) != name:
                raise errors.invalid(self.kind.kind, name, [fld.invalid("metadata.name", nm.get("name"),
                                                                          "field is immutable")], self.kind.group)
            nm["name"] = name
            # rest.EnsureObjectNamespaceMatchesRequestNamespace
            if self.kind.namespaced:
                if nm.get("namespace") and nm["namespace"] != namespace:
                    raise errors.bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request")
                nm["namespace"] = namespace
            else:
                nm.pop("namespace", None)
            return new

        return await self._guaranteed_update(key, name, kv, mutate, opts, subresource, 0, patch=True)

    async def _guaranteed_update(self, key: str, name: str, kv: KV, mutate: Callable[[Obj], Obj],
                                 opts: WriteOptions, subresource: str, expected: int,
                                 patch: bool = False) -> tuple[Obj, bool]:
        for _ in range(_MAX_UPDATE_RETRIES):
            old = self._dec(kv)
            new = mutate(old)
            meta = new["metadata"]
            given_rv = meta.get("resourceVersion") or ""
            # a patch is applied onto the current object, whose resourceVersion it keeps: only a
            # patch that sets another one is a precondition (one that names the current one is
            # caught on the retry after a conflict, when the current one has moved on)
            current_rv = old["metadata"].get("resourceVersion") or ""
            want = expected or (_parse_rv(given_rv, name) if (patch and given_rv and given_rv != current_rv) else 0)
            if want and want != kv.mod_revision:
                raise self.conflict(name)
            attrs = Attributes(UPDATE, self.kind, old["metadata"].get("namespace", ""), name, new, old,
                               subresource, opts.user, opts.dry_run)
            if self.admission is not None:
                await self.admission.admit(attrs)
                new = attrs.obj or new
            new_uid = new["metadata"].get("uid")
            if new_uid and new_uid != old["metadata"].get("uid"):  # rest.BeforeUpdate keeps a given uid
                raise self.invalid(name, [fld.invalid("metadata.uid", new_uid, "field is immutable")])
            self._prepare_update(new, old, subresource)
            errs = validate_object_meta_update(new["metadata"], old["metadata"], fld.Path("metadata"))
            if subresource == "status":
                errs += self.strategy.validate_status_update(new, old)
            elif subresource:
                errs += self.strategy.validate_subresource_update(subresource, new, old)
            else:
                errs += self.strategy.validate_update(new, old)
            if errs:
                raise self.invalid(name, errs)
            if self.admission is not None:
                await self.admission.validate(attrs)
            if opts.track_fields:
                opts.track_fields(old, new, opts.field_manager, subresource)
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            if new == old:
                return old, False  # no-op update: nothing written, same resourceVersion
            if opts.dry_run:
                return new, False
            if self._should_delete_during_update(new):
                try:
                    dkv = await self.store.delete(key, kv.mod_revision)
                except ConflictError as exc:
                    if want or exc.current is None:
                        raise self.conflict(name) from exc
                    kv = exc.current
                    continue
                new["metadata"]["resourceVersion"] = str(dkv.mod_revision)
                return new, False
            try:
                nkv = await self.store.update(key, self._enc(new), kv.mod_revision)
            except ConflictError as exc:
                if want:
                    raise self.conflict(name) from exc
                if exc.current is None:
                    raise self.not_found(name) from exc
                kv = exc.current
                continue
            except KeyNotFoundError as exc:
                raise self.not_found(name) from exc
            new["metadata"]["resourceVersion"] = str(nkv.mod_revision)
            return new, False
        raise self.conflict(name, "the object is being modified too often; please try again")

    async def guaranteed_update(self, namespace: str, name: str, mutate: Callable[[Obj], Obj],
                                dry_run: bool = False) -> Obj:
        """Read-modify-write of the stored object, retried on conflicts, that bypasses the
        strategy and admission: upstream's ``Storage.GuaranteedUpdate``, for REST handlers that
        change what the strategy keeps immutable (pods/binding sets spec.nodeName).
        ``mutate(current)`` returns the new object or raises a StatusError to refuse."""
        key = self.key(namespace, name)
        for _ in range(_MAX_UPDATE_RETRIES):
            kv = await self.store.get(key)
            if kv is None:
                raise self.not_found(name)
            new = mutate(self._dec(kv))
            if dry_run:
                return new
            try:
                nkv = await self.store.update(key, self._enc(new), kv.mod_revision)
            except ConflictError:
                continue
            except KeyNotFoundError as exc:
                raise self.not_found(name) from exc
            new.setdefault("metadata", {})["resourceVersion"] = str(nkv.mod_revision)
            return new
        raise self.conflict(name, "the object is being modified too often; please try again")

    def _prepare_update(self, new: Obj, old: Obj, subresource: str) -> None:
        meta, ometa = new["metadata"], old["metadata"]
        # the server owns these; clients cannot change them through update
        for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
            if k in ometa:
                meta[k] = ometa[k]
            else:
                meta.pop(k, None)
        meta.pop("selfLink", None)
        if "generation" in ometa:
            meta["generation"] = ometa["generation"]
        self.strategy.default(new)
        if subresource == "status":
            self.strategy.status_prepare_for_update(new, old)
            # metadata other than labels/annotations/finalizers? upstream keeps all of old's metadata
            keep = {k: ometa[k] for k in ometa}
            keep["resourceVersion"] = meta.get("resourceVersion", ometa.get("resourceVersion"))
            if "managedFields" in meta:
                keep["managedFields"] = meta["managedFields"]
            for k in self.strategy.status_metadata:
                if k in meta:
                    keep[k] = meta[k]
                else:
                    keep.pop(k, None)
            new["metadata"] = keep
        elif subresource:
            self.strategy.prepare_for_subresource_update(subresource, new, old)
        else:
            self.strategy.prepare_for_update(new, old)
            if self.strategy.tracks_generation and _spec_part(new) != _spec_part(old):
                new["metadata"]["generation"] = int(ometa.get("generation") or 1) + 1

    def _should_delete_during_update(self, obj: Obj) -> bool:
        meta = obj["metadata"]
        return bool(meta.get("deletionTimestamp")) and not self.strategy.has_pending_finalizers(obj) and \
            int(meta.get("deletionGracePeriodSeconds") or 0) == 0

    # ------------------------------------------------------------------ delete
    async def delete(self, namespace: str, name: str, opts: DeleteOptions) -> tuple[Obj, bool]:
        """Returns (object, deleted_now). When not deleted now the object is being finalized or
        is terminating gracefully and is returned with its deletionTimestamp."""
        key = self.key(namespace, name)
        opt_errs = []
        if opts.orphan_dependents is not None and opts.propagation_policy:
            opt_errs.append(fld.invalid("propagationPolicy", opts.propagation_policy,
                                        "orphanDependents and deletionPropagation cannot be both set"))
        if opts.propagation_policy and opts.propagation_policy not in ("Orphan", "Background", "Foreground"):
            opt_errs.append(fld.not_supported(
                "propagationPolicy", opts.propagation_policy, ["Foreground", "Background", "Orphan"]))
        if opt_errs:
            raise errors.invalid("DeleteOptions", "", opt_errs)
        if opts.grace_period_seconds is not None and opts.grace_period_seconds < 0:
            opts.grace_period_seconds = 1
        for _ in range(_MAX_UPDATE_RETRIES):
            kv = await self.store.get(key)
            if kv is None:
                raise self.not_found(name)
            obj = self._dec(kv)
            meta = obj["metadata"]
            pre = opts.preconditions or {}
            if pre.get("uid") and pre["uid"] != meta.get("uid"):
                raise self.conflict(name, f"Precondition failed: UID in precondition: {pre['uid']}, "
                                          f"UID in object meta: {meta.get('uid', '')}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
                raise self.conflict(name, f"Precondition failed: ResourceVersion in precondition: "
                                          f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                                          f"{meta.get('resourceVersion')}")
            if self.admission is not None:
                await self.admission.validate(Attributes(DELETE, self.kind, meta.get("namespace", ""), name, None,
                                                         obj, "", opts.user, opts.dry_run))
            try:
                grace = self.strategy.grace_period(obj, opts.grace_period_seconds)
            except (TypeError, ValueError, AttributeError):  # a malformed stored object: delete it now
                grace = 0
            stored_finalizers = meta.get("finalizers")
            finalizers = _finalizer_list(stored_finalizers)
            gc_finalizers = _gc_finalizers(finalizers, opts, self.strategy.default_gc_policy)
            if meta.get("deletionTimestamp"):
                # already terminating: only a shorter grace period changes anything, and the
                # garbage collector's finalizers only while no graceful deletion is pending
                cur = _int_or_zero(meta.get("deletionGracePeriodSeconds"))
                if grace >= cur and not (grace == 0 and not finalizers) and (cur > 0 or gc_finalizers == finalizers) \
                        and stored_finalizers in (None, finalizers):
                    return obj, False
            new = copy.deepcopy(obj)
            if stored_finalizers not in (None, finalizers):  # stored before bodies were type-checked
                new["metadata"]["finalizers"] = finalizers
                if not finalizers:
                    del new["metadata"]["finalizers"]
            if gc_finalizers != finalizers:
                new["metadata"]["finalizers"] = gc_finalizers
                if not gc_finalizers:
                    del new["metadata"]["finalizers"]
            has_finalizers = self.strategy.has_pending_finalizers(new)
            if grace > 0 or has_finalizers:
                nm = new["metadata"]
                if not meta.get("deletionTimestamp") or grace < _int_or_zero(meta.get("deletionGracePeriodSeconds")):
                    nm["deletionTimestamp"] = now_plus(grace)
                nm["deletionGracePeriodSeconds"] = grace
                self.strategy.mark_terminating(new)
                if grace == 0 and not has_finalizers:
                    pass  # fall through to the real delete below
                else:
                    if opts.dry_run:
                        return new, False
                    try:
                        nkv = await self.store.update(key, self._enc(new), kv.mod_revision)
                    except ConflictError:
                        continue
                    except KeyNotFoundError as exc:
                        raise self.not_found(name) from exc
                    nm["resourceVersion"] = str(nkv.mod_revision)
                    return new, False
            if opts.dry_run:
                return obj, True
            try:
                dkv = await self.store.delete(key, kv.mod_revision)
            except ConflictError:
                continue
            except KeyNotFoundError as exc:
                raise self.not_found(name) from exc
            obj["metadata"]["resourceVersion"] = str(dkv.mod_revision)
            return obj, True
        raise self.conflict(name, "the object is being modified too often; please try again")

    async def delete_collection(self, namespace: str, lopts: ListOptions, dopts: DeleteOptions) -> builtins.list[Obj]:
        items, _, _, _ = await self.list(namespace, ListOptions(label_selector=lopts.label_selector,
                                                                field_selector=lopts.field_selector))
        out = []
        for obj in items:
            meta = obj["metadata"]
            try:
                deleted, _ = await self.delete(meta.get("namespace", ""), meta["name"],
                                               DeleteOptions(dopts.grace_period_seconds, {},
                                                             dopts.propagation_policy, dopts.orphan_dependents,
                                                             dopts.dry_run))
                out.append(deleted)
            except errors.StatusError as exc:
                if exc.code != 404:
                    raise
        return out

    # ------------------------------------------------------------------ watch
    async def watch(self, namespace: str, opts: ListOptions, send_initial: bool | None = None,
                    name: str = "", shared: bool = False) -> AsyncIterator[tuple[str, Obj]]:
        """Yields (type, object). Semantics of resourceVersion as the apiserver:
        "" or "0" → synthetic ADDED events for the current state, then changes; N → changes after N.
        ``send_initial`` (sendInitialEvents): True → ADDED for the state then a BOOKMARK marked
        ``k8s.io/initial-events-end``. ``shared``: changes come as read-only :class:`SharedObj`
        decoded once for every shared watch (the HTTP watches); without it each caller gets its
        own objects to keep or change."""
        self.check_field_selector(opts.field_selector)
        prefix = self.key(namespace, name) if name else self.prefix(namespace)
        rv = opts.resource_version
        initial = send_initial if send_initial is not None else rv in ("", "0")
        if initial:
            cache = self.watch_cache
            # resourceVersion "0": what the watch cache holds; "": a consistent read
            page = await (cache.list_at_least(prefix, 0) if cache is not None and rv == "0"
                          else self.store.list(prefix, 0))
            from_rev = page.revision
            for kv in page.kvs:
                if name and kv.key != prefix:
                    continue
                obj = self._dec(kv)
                if self.matches(obj, opts):
                    yield "ADDED", obj
            if send_initial:
                yield "BOOKMARK", self.bookmark(from_rev, initial_end=True)
        else:
            from_rev = _parse_rv(rv)
        try:
            async for ev in self.store.watch(prefix, from_rev):
                if name and ev.kv.key != prefix:
                    continue
                out = self._filter_event(ev, opts, shared)
                if out is not None:
                    yield out
        except CompactedError as exc:
            raise errors.resource_expired(exc.requested, exc.compacted) from exc

    def _filter_event(self, ev: Event, opts: ListOptions, shared: bool = False) -> tuple[str, Obj] | None:
        obj: Obj
        prev_obj: Obj | None = None
        if shared:
            obj, prev_obj = self._dec_shared(ev)
        else:
            obj = self._dec(ev.kv)
        filtering = opts.label_selector is not None or opts.field_selector is not None
        if ev.type == "DELETE":
            if filtering and not self.matches(obj, opts):
                return None
            return "DELETED", obj
        if ev.prev is None:
            if filtering and not self.matches(obj, opts):
                return None
            return "ADDED", obj
        if not filtering:
            return "MODIFIED", obj
        cur = self.matches(obj, opts)
        was = self.matches(prev_obj if prev_obj is not None else self._dec(ev.prev), opts)
        if cur and was:
            return "MODIFIED", obj
        if cur:
            return "ADDED", obj
        if was:
            return "DELETED", obj
        return None

    def bookmark(self, rev: int, initial_end: bool = False) -> Obj:
        meta: dict[str, Any] = {"resourceVersion": str(rev)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"kind": self.kind.kind, "apiVersion": self.kind.api_version, "metadata": meta}


def _finalizer_list(value: Any) -> list[str]:
    """metadata.finalizers as a list of strings, whatever a malformed stored object holds."""
    return [f for f in value if isinstance(f, str)] if isinstance(value, list) else []


def _int_or_zero(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _gc_finalizers(finalizers: list[str], opts: DeleteOptions, default_policy: str = "Background") -> list[str]:
    """The finalizers a delete request leaves for the garbage collector (the apiserver's
    deletionFinalizersForGarbageCollection): ``orphan`` or ``foregroundDeletion`` as
    orphanDependents, else propagationPolicy, else the object's own finalizers ask, else the
    kind's default policy (Background, which needs neither; batch/v1 Jobs and CronJobs orphan).
    Unchanged when equal."""
    gc = (FINALIZER_ORPHAN_DEPENDENTS, FINALIZER_DELETE_DEPENDENTS)
    if opts.orphan_dependents is not None:
        want = FINALIZER_ORPHAN_DEPENDENTS if opts.orphan_dependents else None
    elif opts.propagation_policy:
        want = {"Orphan": FINALIZER_ORPHAN_DEPENDENTS, "Foreground": FINALIZER_DELETE_DEPENDENTS}.get(
            opts.propagation_policy)
    else:
        want = next((f for f in finalizers if f in gc), None)
        if want is None and default_policy == "Orphan":
            want = FINALIZER_ORPHAN_DEPENDENTS
    out = [f for f in finalizers if f not in gc] + ([want] if want else [])
    return finalizers if set(out) == set(finalizers) else out


def _parse_rv(rv: str, name: str = "") -> int:
    try:
        n = int(rv)
        if n < 0 or n >= 1 << 63:
            raise ValueError
        return n
    except (TypeError, ValueError) as exc:
        raise errors.bad_request(f'Invalid value: "{rv}": resourceVersion must be an integer'
                                 if not name else f'invalid resource version: "{rv}"') from exc
