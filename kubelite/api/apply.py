"""Server-side apply and metadata.managedFields, as apimachinery's managedfields + SMD merge.

Upstream wraps one manager in another; the same steps happen here, outermost first:

* apply: version check → last-applied annotation sync (manager ``kubectl``) →
  client-side-apply migration (manager ``kubectl``: conflicts on fields still equal to
  the last-applied annotation are forced) → ``before-first-apply`` for objects without
  managedFields → manager identity → timestamps → strip metadata → structured merge.
* update (create/update/patch): managedFields taken from the request (or reset with
  ``[]`` / ``[{}]``) or else from the live object → skip tracking for existing objects
  without managedFields → cap at 10 Update managers (``ancient-changes``) → identity →
  timestamps → strip metadata → ownership of changed fields.

Objects are plain dicts; schemas are the resolved JSON-schema definitions of
:mod:`kubelite.api.schema`. Field sets: :mod:`kubelite.api.fieldpath`.
"""

from __future__ import annotations

import copy
import json
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from kubelite.api import errors
from kubelite.api import field as fld
from kubelite.api import schema as sch
from kubelite.api.field import go_quote
from kubelite.api.fieldpath import (
    FieldsDecodeError,
    FieldSet,
    TypedError,
    compare,
    deep_equal,
    ensure_named_fields_are_members,
    go_json,
    merge,
    path_string,
    remove_items,
    to_field_set,
)
from kubelite.api.fieldpath import field as fpath

APPLY = "Apply"
UPDATE = "Update"
FIELDS_V1 = "FieldsV1"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
FIELD_MANAGER_MAX_LENGTH = 128
MAX_SUBRESOURCE_NAME_LENGTH = 256
MAX_UPDATE_MANAGERS = 10
BEFORE_FIRST_APPLY = "before-first-apply"
ANCIENT_CHANGES = "ancient-changes"
CSA_MANAGER = "kubectl-client-side-apply"

# Never part of any manager's set (stripMetaManager).
STRIPPED = FieldSet.of(
    fpath("apiVersion"), fpath("kind"), fpath("metadata"),
    *(fpath("metadata", n) for n in ("name", "namespace", "creationTimestamp", "selfLink", "uid",
                                     "clusterName", "generation", "managedFields", "resourceVersion")),
)

_CURRENT_OPERATION = "current-operation"


# --------------------------------------------------------------------------- entries

@dataclass
class ManagedEntry:
    """One metadata.managedFields entry, with its field set decoded."""

    manager: str
    operation: str
    api_version: str
    fields: FieldSet = field(default_factory=FieldSet)
    time: str | None = None
    subresource: str = ""

    def ident(self) -> str:
        """BuildManagerIdentifier: JSON of the entry without fields, time (and apiVersion for Apply)."""
        parts = []
        if self.manager:
            parts.append(f'"manager":{go_json(self.manager)}')
        if self.operation:
            parts.append(f'"operation":{go_json(self.operation)}')
        if self.operation != APPLY and self.api_version:
            parts.append(f'"apiVersion":{go_json(self.api_version)}')
        if self.subresource:
            parts.append(f'"subresource":{go_json(self.subresource)}')
        return "{" + ",".join(parts) + "}"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.manager:
            d["manager"] = self.manager
        d["operation"] = self.operation
        d["apiVersion"] = self.api_version
        if self.time:
            d["time"] = self.time
        d["fieldsType"] = FIELDS_V1
        d["fieldsV1"] = _encode_fields(self.fields)
        if self.subresource:
            d["subresource"] = self.subresource
        return d

    def describe(self) -> str:
        """printManager(): ``"name"``, ``"name" with subresource "s"``, ``"name" using v1``."""
        s = go_quote(self.manager)
        if self.subresource:
            s += f" with subresource {go_quote(self.subresource)}"
        if self.operation == UPDATE:
            s += f" using {self.api_version}"
        return s


Managed = dict[str, ManagedEntry]  # keyed by ManagedEntry.ident()

# FieldsV1 <-> field set, memoized by content: objects of a kind mostly share a few shapes
# (every pod a client creates from one template has the same entry), so the same documents
# are decoded and encoded over and over. Values are immutable (frozenset / JSON bytes);
# every caller gets its own FieldSet / dict.
_MEMO_SIZE = 512
_DECODED: dict[bytes, frozenset] = {}
_ENCODED: dict[frozenset, bytes] = {}


def _decode_fields(raw: Any) -> FieldSet:
    """FieldSet.from_fields_v1(raw), memoized on the document's exact JSON."""
    try:
        k = orjson.dumps(raw)
    except (TypeError, orjson.JSONEncodeError):
        return FieldSet.from_fields_v1(raw)
    hit = _DECODED.get(k)
    if hit is None:
        fs = FieldSet.from_fields_v1(raw)
        if len(_DECODED) >= _MEMO_SIZE:
            _DECODED.clear()
        _DECODED[k] = frozenset(fs.paths)
        return fs
    return FieldSet._wrap(set(hit))


def _encode_fields(fs: FieldSet) -> dict[str, Any]:
    """fs.to_fields_v1(), memoized on the set (a fresh dict every call)."""
    k = frozenset(fs.paths)
    hit = _ENCODED.get(k)
    if hit is None:
        out = fs.to_fields_v1()
        try:
            b = orjson.dumps(out)
        except (TypeError, orjson.JSONEncodeError):
            return out
        if len(_ENCODED) >= _MEMO_SIZE:
            _ENCODED.clear()
        _ENCODED[k] = b
        return out
    return orjson.loads(hit)


def decode_managed_fields(entries: Any) -> Managed:
    """DecodeManagedFields; raises ValueError with upstream's text on a bad entry."""
    out: Managed = {}
    if entries is None:
        return out
    if not isinstance(entries, list):
        raise ValueError("managedFields must be a list")
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise ValueError(f"managed fields entry {i} must be an object")
        op = e.get("operation")
        if op not in (APPLY, UPDATE):
            raise ValueError("operation must be `Apply` or `Update`")
        av = e.get("apiVersion")
        if not isinstance(av, str) or not av:
            raise ValueError("apiVersion must not be empty")
        ft = e.get("fieldsType") or ""
        if ft == "":
            raise ValueError(f"missing fieldsType in managed fields entry {i}")
        if ft != FIELDS_V1:
            raise ValueError(f"invalid fieldsType {go_quote(str(ft))} in managed fields entry {i}")
        try:
            fs = _decode_fields(e.get("fieldsV1") or {})
        except FieldsDecodeError as err:
            raise ValueError(f"error decoding versioned set: error decoding set: {err}") from None
        entry = ManagedEntry(manager=str(e.get("manager") or ""), operation=op, api_version=av, fields=fs,
                             time=e.get("time") or None, subresource=str(e.get("subresource") or ""))
        out[entry.ident()] = entry
    return out


def _seconds(t: str | None) -> int:
    if not t:
        return 0
    try:
        return int(datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def encode_managed_fields(managed: Managed) -> list[dict[str, Any]] | None:
    """Entries sorted as upstream: operation, time (seconds), manager, apiVersion, subresource."""
    if not managed:
        return None
    entries = sorted(managed.values(), key=lambda e: (e.operation, _seconds(e.time), e.manager,
                                                      e.api_version, e.subresource))
    return [e.to_dict() for e in entries]


def _set_managed(obj: dict[str, Any], managed: Managed) -> None:
    meta = obj.setdefault("metadata", {})
    enc = encode_managed_fields(managed)
    if enc is None:
        meta.pop("managedFields", None)
    else:
        meta["managedFields"] = enc


def _clone(managed: Managed) -> Managed:
    return {k: ManagedEntry(e.manager, e.operation, e.api_version, e.fields.copy(), e.time, e.subresource)
            for k, e in managed.items()}


def managed_fields_of(obj: dict[str, Any] | None) -> Managed:
    """The decoded managedFields of a stored object (empty when missing or invalid)."""
    try:
        return decode_managed_fields(((obj or {}).get("metadata") or {}).get("managedFields"))
    except ValueError:
        return {}


# --------------------------------------------------------------------------- helpers

def default_manager(user_agent: str) -> str:
    """prefixFromUserAgent: the user agent up to the first "/", printable, at most 128 bytes."""
    prefix = (user_agent or "").split("/", 1)[0]
    out: list[str] = []
    size = 0
    for ch in prefix:
        if not _printable(ch):
            continue
        n = len(ch.encode())
        if size + n > FIELD_MANAGER_MAX_LENGTH:
            break
        out.append(ch)
        size += n
    return "".join(out)


def manager_or_user_agent(manager: str, user_agent: str) -> str:
    return manager if manager else default_manager(user_agent)


def _printable(ch: str) -> bool:
    """Go's unicode.IsPrint: letters, marks, numbers, punctuation, symbols and ASCII space."""
    return ch == " " or unicodedata.category(ch)[0] in "LMNPS"


def validate_field_manager(manager: str, path: str = "fieldManager") -> list[fld.FieldError]:
    errs: list[fld.FieldError] = []
    if len(manager.encode()) > FIELD_MANAGER_MAX_LENGTH:
        errs.append(fld.too_long(path, FIELD_MANAGER_MAX_LENGTH))
    for i, ch in enumerate(manager):
        if not _printable(ch):
            errs.append(fld.invalid(path, manager,
                                    f"invalid character U+{ord(ch):04X} (at position {i})"))
    return errs


def validate_managed_fields(entries: Any, path: str = "metadata.managedFields") -> list[fld.FieldError]:
    """ValidateManagedFields (object metadata validation)."""
    errs: list[fld.FieldError] = []
    if not isinstance(entries, list):
        return errs
    for i, e in enumerate(entries):
        p = f"{path}[{i}]"
        if not isinstance(e, dict):
            errs.append(fld.invalid(p, e, "must be an object"))
            continue
        op = e.get("operation") or ""
        if op not in (APPLY, UPDATE):
            errs.append(fld.invalid(f"{p}.operation", op, "must be `Apply` or `Update`"))
        ft = e.get("fieldsType") or ""
        if ft and ft != FIELDS_V1:
            errs.append(fld.invalid(f"{p}.fieldsType", ft, "must be `FieldsV1`"))
        errs.extend(validate_field_manager(str(e.get("manager") or ""), f"{p}.manager"))
        if len(str(e.get("subresource") or "")) > MAX_SUBRESOURCE_NAME_LENGTH:
            errs.append(fld.too_long(f"{p}.subresource", MAX_SUBRESOURCE_NAME_LENGTH))
    return errs


_DIFF_IGNORED_META = ("managedFields", "resourceVersion", "generation", "creationTimestamp", "uid", "selfLink")


def strip_for_diff(obj: dict[str, Any] | None) -> dict[str, Any]:
    """A copy without the metadata the server maintains (for "did anything change?" checks)."""
    out = copy.deepcopy(obj or {})
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for k in _DIFF_IGNORED_META:
            meta.pop(k, None)
    return out


def ignore_managed_fields_timestamps(old: dict[str, Any], new: dict[str, Any]) -> None:
    """IgnoreManagedFieldsTimestampsTransformer: a write whose only change is managedFields
    timestamps keeps the old timestamps, so that it stays a no-op."""
    om = (old.get("metadata") or {}).get("managedFields")
    nm = (new.get("metadata") or {}).get("managedFields")
    if not isinstance(om, list) or not isinstance(nm, list) or len(om) != len(nm):
        return
    for a, b in zip(om, nm, strict=True):
        if not isinstance(a, dict) or not isinstance(b, dict):
            return
        if not deep_equal({k: v for k, v in a.items() if k != "time"}, {k: v for k, v in b.items() if k != "time"}):
            return
    o = copy.copy(old)
    o["metadata"] = {k: v for k, v in (old.get("metadata") or {}).items() if k != "managedFields"}
    n = copy.copy(new)
    n["metadata"] = {k: v for k, v in (new.get("metadata") or {}).items() if k != "managedFields"}
    if deep_equal(o, n):
        new["metadata"]["managedFields"] = copy.deepcopy(om)


def reset_fields(schema: dict[str, Any] | None, subresource: str = "") -> FieldSet:
    """Fields a write may not own (strategy ResetFieldsFor): ``status`` on the main resource of
    kinds with a status, ``spec`` for the status subresource."""
    props = (sch.resolve(schema) or {}).get("properties") or {}
    if subresource == "status":
        return FieldSet.of(fpath("spec")) if "spec" in props else FieldSet()
    if not subresource and "status" in props:
        return FieldSet.of(fpath("status"))
    return FieldSet()


_VALUE_STRUCTS = ("metadata", "spec", "status", "template", "strategy", "updateStrategy")


def _zero(s: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    """A zero Go struct as serialized: value structs present, other required fields null."""
    out: dict[str, Any] = {}
    props = s.get("properties") or {}
    if depth > 4:
        return out
    for name in props:
        sub = sch.resolve(props[name]) or {}
        struct = "properties" in sub and sub.get("x-kubernetes-map-type") != "atomic"
        if struct and (name in _VALUE_STRUCTS or name in (s.get("required") or ())):
            out[name] = _zero(sub, depth + 1)
        elif name in (s.get("required") or ()):
            out[name] = None
    return out


_ZEROS: dict[int, tuple[Any, list[tuple[str, dict[str, Any]]]]] = {}


def _zeros(schema: dict[str, Any] | None) -> list[tuple[str, dict[str, Any]]]:
    """(field, zero struct) of the top-level value structs of ``schema``, memoized by schema."""
    hit = _ZEROS.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    props = (schema or {}).get("properties") or {}
    parts = []
    for k in ("metadata", "spec", "status"):
        sub = sch.resolve(props[k]) if k in props else None
        if sub and "properties" in sub:
            parts.append((k, _zero(sub)))
    if len(_ZEROS) > 1024:
        _ZEROS.clear()
    _ZEROS[id(schema)] = (schema, parts)  # holds the schema: its id is not reused
    return parts


def _skeleton(obj: dict[str, Any] | None, schema: dict[str, Any] | None) -> dict[str, Any]:
    """The object as Go would serialize it: the value structs (metadata, spec, status,
    template, ...) are always present, and required fields of a zero struct are null.

    A shallow copy; the zero structs are shared, so the result is for reading (compare)."""
    out = dict(obj or {})
    for k, zero in _zeros(schema):
        if out.get(k) is None:
            out[k] = zero
    return out


def _without_managed(obj: dict[str, Any] | None) -> dict[str, Any]:
    out = copy.deepcopy(obj or {})
    meta = out.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return out


def _shallow_without_managed(obj: dict[str, Any] | None) -> dict[str, Any]:
    """Like :func:`_without_managed` for read-only use: shares everything but metadata."""
    out = dict(obj or {})
    meta = out.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        out["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return out


def _parse_gv(api_version: str) -> tuple[str, str]:
    if "/" in api_version:
        g, v = api_version.split("/", 1)
        return g, v
    return "", api_version


def _gvk_string(api_version: str, kind: str) -> str:
    g, v = _parse_gv(api_version)
    return f"{g}/{v}, Kind={kind}"


def kind_of(schema: dict[str, Any] | None, api_version: str) -> str:
    g, v = _parse_gv(api_version)
    for gvk in (sch.resolve(schema) or {}).get("x-kubernetes-group-version-kind") or []:
        if gvk.get("group", "") == g and gvk.get("version", "") == v:
            return gvk.get("kind", "")
    return ""


# --------------------------------------------------------------------------- conflicts

def _conflict_error(conflicts: list[tuple[ManagedEntry, tuple]]) -> errors.StatusError:
    causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {e.describe()}",
               "field": path_string(p)} for e, p in conflicts]
    if len(conflicts) == 1:
        e, p = conflicts[0]
        msg = f"Apply failed with 1 conflict: conflict with {e.describe()}: {path_string(p)}"
    else:
        by: dict[str, tuple[ManagedEntry, list[tuple]]] = {}
        for e, p in conflicts:
            by.setdefault(e.ident(), (e, []))[1].append(p)
        lines = []
        for ident in sorted(by):
            e, paths = by[ident]
            lines.append(f"conflicts with {e.describe()}:")
            lines.extend(f"- {path_string(p)}" for p in paths)
        msg = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return errors.StatusError(409, "Conflict", msg, {"causes": causes})


class _Conflicts(Exception):
    def __init__(self, items: list[tuple[ManagedEntry, tuple]]) -> None:
        super().__init__("conflicts")
        self.items = items


# --------------------------------------------------------------------------- structured merge

@dataclass
class _Ctx:
    schema: dict[str, Any] | None
    api_version: str
    now: str
    subresource: str
    ignored: FieldSet


def _update_sets(ctx: _Ctx, old: dict, new: dict, managed: Managed, workflow: str, force: bool):
    """merge.Updater.update: take changed fields from every other manager (or report conflicts)."""
    cmp = compare(_skeleton(old, ctx.schema), _skeleton(new, ctx.schema), ctx.schema, ctx.ignored)
    changed = cmp.modified.union(cmp.added)
    conflicts: dict[str, FieldSet] = {}
    for ident, e in managed.items():
        if ident == workflow:
            continue
        cs = e.fields.intersection(changed)
        if cs:
            conflicts[ident] = cs
    if not force and conflicts:
        items = [(managed[i], p) for i in sorted(conflicts) for p in conflicts[i]]
        raise _Conflicts(items)
    for ident, cs in conflicts.items():
        managed[ident].fields = managed[ident].fields.difference(cs)
    if cmp.removed:
        for ident, e in managed.items():
            if ident != workflow:
                e.fields = e.fields.difference(cmp.removed)
    for ident in [i for i, e in managed.items() if not e.fields]:
        del managed[ident]
    return cmp


def _do_update(ctx: _Ctx, old: dict, new: dict, managed: Managed, manager: str) -> Managed:
    """Update path below the skip/cap layers: identity, timestamp, strip, ownership."""
    managed = _clone(managed)
    cmp = _update_sets(ctx, old, new, managed, _CURRENT_OPERATION, True)
    # (cmp already excludes ctx.ignored and everything below it)
    changed = cmp.modified.union(cmp.added).difference(STRIPPED)
    if changed:
        entry = ManagedEntry(manager or "unknown", UPDATE, ctx.api_version, changed, ctx.now, ctx.subresource)
        prev = managed.get(entry.ident())
        if prev is not None:
            entry.fields = entry.fields.union(prev.fields)
        managed[entry.ident()] = entry
    return managed


def _cap_update_managers(managed: Managed, limit: int = MAX_UPDATE_MANAGERS) -> Managed:
    updaters = [i for i, e in managed.items() if e.operation == UPDATE]
    if len(updaters) <= limit:
        return managed
    updaters.sort(key=lambda i: (_seconds(managed[i].time), i))
    first_by_version: dict[str, str] = {}
    length = len(updaters)
    for ident in updaters:
        if length <= limit:
            break
        e = managed[ident]
        bucket = ManagedEntry(ANCIENT_CHANGES, UPDATE, e.api_version)
        bid = bucket.ident()
        if e.api_version in first_by_version:
            if bid not in managed:
                first = first_by_version[e.api_version]
                moved = managed.pop(first)
                managed[bid] = ManagedEntry(ANCIENT_CHANGES, UPDATE, moved.api_version, moved.fields, moved.time)
            b = managed[bid]
            b.fields = e.fields.union(b.fields)
            b.time = e.time
            del managed[ident]
            length -= 1
        else:
            first_by_version[e.api_version] = ident
    return managed


def _prune(ctx: _Ctx, merged: dict, managed: Managed, last: ManagedEntry | None) -> dict:
    """Remove what the applier owned last time, no longer applies, and nobody else owns."""
    if last is None or not last.fields:
        return merged
    s = ctx.schema
    last_e = ensure_named_fields_are_members(last.fields, s)
    pruned = remove_items(merged, last_e, s)
    owned = FieldSet()
    for e in managed.values():
        owned = owned.union(e.fields)
    merged_set = ensure_named_fields_are_members(to_field_set(merged, s), s)
    pruned_set = ensure_named_fields_are_members(to_field_set(pruned, s), s)
    owned_e = ensure_named_fields_are_members(owned, s)
    pruned = remove_items(merged, merged_set.difference(pruned_set.union(owned_e)), s)
    pruned_set = ensure_named_fields_are_members(to_field_set(pruned, s), s)
    return remove_items(merged, merged_set.difference(pruned_set).intersection(last_e), s)


def _structured_apply(ctx: _Ctx, live: dict, config: dict, managed: Managed, manager: str,
                      force: bool) -> tuple[dict | None, Managed]:
    managed = _clone(managed)
    if not managed:  # skipNonApplied: existing fields belong to "before-first-apply"
        managed = _do_update(ctx, {}, live, managed, BEFORE_FIRST_APPLY)
    entry = ManagedEntry(manager, APPLY, ctx.api_version, subresource=ctx.subresource)
    ident = entry.ident()
    last = managed.get(ident)
    new_obj = merge(live, config, ctx.schema)
    entry.fields = to_field_set(config, ctx.schema, strict=True).recursive_difference(ctx.ignored)
    entry.time = last.time if last else None
    managed[ident] = entry
    new_obj = _prune(ctx, new_obj, managed, last)
    _update_sets(ctx, live, new_obj, managed, ident, force)
    if ident in managed:
        e = managed[ident]
        e.fields = e.fields.difference(STRIPPED)
        if not e.fields:
            del managed[ident]
    if deep_equal(live, new_obj):
        return None, managed
    if ident in managed:
        managed[ident].time = ctx.now
    return new_obj, managed


def _allowed_from_last_applied(ctx: _Ctx, live: dict) -> FieldSet | None:
    ann = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not ann:
        return None
    try:
        last = json.loads(ann)
    except ValueError:
        return None
    if not isinstance(last, dict) or last.get("apiVersion") != ctx.api_version:
        return None
    try:
        fs = to_field_set(last, ctx.schema, strict=True)
    except TypedError:
        return None
    cmp = compare(last, live, ctx.schema)
    return fs.difference(cmp.modified).difference(cmp.added).difference(cmp.removed)


def _build_last_applied(config: dict) -> str:
    obj = copy.deepcopy(config)
    ann = (obj.get("metadata") or {}).get("annotations")
    if isinstance(ann, dict):
        ann.pop(LAST_APPLIED, None)
    return go_json(obj) + "\n"


# --------------------------------------------------------------------------- public API

def apply(live: dict[str, Any] | None, config: dict[str, Any], manager: str, force: bool,
          schema: dict[str, Any] | None, api_version: str, now: str, *, kind: str = "",
          subresource: str = "", ignored: FieldSet | None = None) -> dict[str, Any]:
    """Server-side apply of ``config`` onto ``live`` (None: create); returns the new object
    with metadata.managedFields updated. Raises StatusError 409 Conflict / 400 BadRequest."""
    schema = sch.resolve(schema)
    kind = kind or kind_of(schema, api_version) or str(config.get("kind") or "")
    if config.get("apiVersion") != api_version or config.get("kind") != kind:
        raise errors.bad_request(
            f"invalid object type: {_gvk_string(str(config.get('apiVersion') or ''), str(config.get('kind') or ''))}")
    if (config.get("metadata") or {}).get("managedFields") is not None:
        raise errors.bad_request("metadata.managedFields must be nil")
    ctx = _Ctx(schema, api_version, now, subresource,
               reset_fields(schema, subresource) if ignored is None else ignored)
    if live is None:
        managed: Managed = {}
        base: dict[str, Any] = {}
    else:
        try:
            managed = decode_managed_fields((live.get("metadata") or {}).get("managedFields"))
        except ValueError as e:
            raise errors.internal(f"failed to decode managed fields: {e}") from None
        base = _without_managed(live)

    def run(force_: bool) -> tuple[dict | None, Managed]:
        try:
            return _structured_apply(ctx, base, config, managed, manager, force_)
        except TypedError as e:
            meta = config.get("metadata") or {}
            # upstream answers a plain error (500); a bad apply configuration is the client's: 400
            raise errors.bad_request(
                f"failed to create typed patch object ({meta.get('namespace', '')}/"
                f"{meta.get('name', '')}; {_gvk_string(api_version, kind)}): {e}") from None

    try:
        new_obj, managed = run(force)
    except _Conflicts as c:
        if manager != "kubectl":
            raise _conflict_error(c.items) from None
        allowed = _allowed_from_last_applied(ctx, base)
        if allowed is None:
            raise _conflict_error(c.items) from None
        remaining = [(e, p) for e, p in c.items if p not in allowed]
        if remaining:
            raise _conflict_error(remaining) from None
        new_obj, managed = run(True)

    out = new_obj if new_obj is not None else copy.deepcopy(base)
    if manager == "kubectl" and ((out.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED):
        out["metadata"]["annotations"][LAST_APPLIED] = _build_last_applied(config)
    _set_managed(out, managed)
    return out


def _is_reset(mf: Any) -> bool:
    return isinstance(mf, list) and (len(mf) == 0 or (len(mf) == 1 and mf[0] == {}))


def update_managed_fields(old: dict[str, Any] | None, new: dict[str, Any], manager: str,
                          schema: dict[str, Any] | None, api_version: str, now: str,
                          subresource: str = "", *, ignored: FieldSet | None = None) -> None:
    """Track a non-apply write (create: ``old`` None): the fields that changed go to ``manager``
    (operation Update). Sets new["metadata"]["managedFields"] in place."""
    schema = sch.resolve(schema)
    ctx = _Ctx(schema, api_version, now, subresource,
               reset_fields(schema, subresource) if ignored is None else ignored)
    meta = new.setdefault("metadata", {})
    live_mf = ((old or {}).get("metadata") or {}).get("managedFields")
    requested = meta.get("managedFields")
    if subresource:
        managed = managed_fields_of(old)
    elif _is_reset(requested):
        managed = {}
    else:
        try:
            managed = decode_managed_fields(requested)
        except ValueError:
            managed = {}
        if not managed:
            managed = managed_fields_of(old)
    meta.pop("managedFields", None)
    creating = old is None or not ((old.get("metadata") or {}).get("uid"))
    if not managed and not creating:
        return  # skipNonApplied: objects without managedFields stay untracked
    try:
        managed = _do_update(ctx, _shallow_without_managed(old), new, managed, manager)
        managed = _cap_update_managers(managed)
    except Exception:  # UpdateNoErrors: keep what the live object had
        if live_mf is not None:
            meta["managedFields"] = copy.deepcopy(live_mf)
        return
    _set_managed(new, managed)


def owners(obj: dict[str, Any], path: str) -> list[str]:
    """Managers whose set contains the human-readable ``path`` (e.g. ``.spec.replicas``)."""
    return [e.manager for e in managed_fields_of(obj).values() if path in e.fields.strings()]
