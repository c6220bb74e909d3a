"""Plugs the object machinery (patches, server-side apply, field validation) into the generic
handlers."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kubelite.api import apply, errors, fieldvalidation, patch, schema
from kubelite.api.meta import now_rfc3339
from kubelite.apiserver import bodies, http
from kubelite.apiserver.registry import ResourceStore, WriteOptions
from kubelite.kinds.base import Kind, Obj

if TYPE_CHECKING:
    from kubelite.apiserver.handlers import APIHandler, Target


def _json_patch(kind: Kind, obj: Obj, raw: bytes) -> Obj:
    return patch.apply_json_patch(obj, raw)


def _merge_patch(kind: Kind, obj: Obj, raw: bytes) -> Obj:
    return patch.apply_merge_patch(obj, raw)


def _strategic_patch(kind: Kind, obj: Obj, raw: bytes) -> Obj:
    return patch.strategic_merge_patch_for_kind(obj, raw, kind.group, kind.version, kind.kind)


def install_machinery(handler: APIHandler) -> None:
    handler.patchers = {
        "application/json-patch+json": _json_patch,
        "application/merge-patch+json": _merge_patch,
        "application/strategic-merge-patch+json": _strategic_patch,
    }

    def validate_fields(kind: Kind, obj: Obj, raw: bytes, ctype: str, mode: str) -> list[str]:
        if not kind.schema_ref:
            return []
        err, warnings = fieldvalidation.check(obj, raw, ctype or http.JSON, kind.schema_ref, mode)
        if err is not None:
            raise err
        return list(warnings)

    handler.field_validation = validate_fields
    handler.track_fields_factory = track_fields_factory
    handler.apply_hook = server_side_apply


# ---------------------------------------------------------------------------- managed fields


def _schema_of(kind: Kind) -> Any:
    return schema.definition(kind.schema_ref) if kind.schema_ref else None


def track_fields_factory(kind: Kind) -> Callable[[Obj | None, Obj, str, str], None]:
    """metadata.managedFields for every non-apply write (create, update, patch)."""
    sch = _schema_of(kind)

    def track(old: Obj | None, new: Obj, manager: str, subresource: str) -> None:
        apply.update_managed_fields(old, new, manager, sch, kind.api_version, now_rfc3339(), subresource)

    return track


async def server_side_apply(handler: APIHandler, store: ResourceStore, t: Target, raw: bytes,
                            opts: WriteOptions, force: bool, validation_mode: str) -> tuple[Obj, bool]:
    """PATCH with application/apply-patch+yaml."""
    kind = t.kind
    config = http.load_yaml(raw)
    if not isinstance(config, dict):
        raise errors.bad_request("the body of an apply request must be an object")
    meta = config.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise errors.bad_request("metadata must be an object")
    body_name = (meta or {}).get("name")
    if body_name and body_name != t.name:
        raise errors.bad_request(
            f"the name of the object ({body_name}) does not match the name on the URL ({t.name})")
    if handler.field_validation is not None:
        handler.field_validation(kind, config, raw, "application/apply-patch+yaml", validation_mode)
    sch = _schema_of(kind)
    now = now_rfc3339()
    manager = opts.field_manager
    opts.track_fields = None  # apply maintains managedFields itself

    def mutate(cur: Obj) -> Obj:
        return bodies.decode_applied(kind, apply.apply(cur, config, manager, force, sch, kind.api_version, now,
                                                       kind=kind.kind, subresource=t.subresource))

    def create() -> Obj:
        obj = bodies.decode_applied(kind, apply.apply(None, config, manager, force, sch, kind.api_version, now,
                                                      kind=kind.kind))
        obj.setdefault("metadata", {})["name"] = t.name
        if kind.namespaced:
            obj["metadata"]["namespace"] = t.namespace
        return obj

    return await store.patch(t.namespace, t.name, mutate, opts, t.subresource, create_if_missing=create)
