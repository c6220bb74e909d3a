"""Request bodies into typed objects: the decode step of every write, with field validation.

The machinery (Go's decoding over the shipped schemas) is :mod:`kubelite.api.decode`; this
module applies it per write path with upstream's modes and messages
(k8s.io/apiserver/pkg/endpoints/handlers: create.go, update.go, patch.go, rest.go):

* create / update (and subresources written with PUT): a decode error is 400
  ``Pod in version "v1" cannot be handled as a Pod: <error>``; with
  ``fieldValidation=Strict`` unknown and duplicate fields are a 400 with the same prefix and
  ``strict decoding error: …``;
* JSON and merge patches: the patched object is decoded as JSON; an error is the 422
  ``"" is invalid: patch: Invalid value: "<patched JSON>": <error>``;
* strategic merge patches: the patched map goes through the unstructured converter; an error
  is the same 422 with the patch printed as Go's ``%+v``;
* ``Warn`` (the default) turns each strict problem into a warning, ``Ignore`` drops them.

Unknown fields never reach storage, in any mode.
"""

from __future__ import annotations

import re
from typing import Any

from kubelite.api import decode as dec
from kubelite.api import errors
from kubelite.api import field as fld
from kubelite.api import fieldvalidation as fv
from kubelite.api import patch as patches
from kubelite.kinds.base import Kind, Obj

MAX_STRICT_ERRORS = 100  # sigs.k8s.io/json stops collecting strict errors there
_KEY_OR_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"(\s*:)?', re.S)


def _unknown(paths: list[str]) -> list[str]:
    return [f"unknown field {fld.go_quote(p)}" for p in paths]


def has_duplicate_keys(raw: bytes, tree: Any, tree_keys: int = -1) -> bool:
    """Whether a JSON body repeats a key: it has more keys than the object decoded from it
    (``tree_keys``: that count, when known)."""
    keys = sum(1 for colon in _KEY_OR_STRING.findall(raw) if colon)
    return keys > (tree_keys if tree_keys >= 0 else dec.count_keys(tree))


def _is_yaml(ctype: str) -> bool:
    return ctype in ("application/yaml", "application/x-yaml", "text/yaml")


def _is_json(ctype: str) -> bool:
    return ctype in ("", "application/json", "*/*")


def _cap(msgs: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for m in msgs:
        if m not in seen:
            seen.add(m)
            out.append(m)
    return out[:MAX_STRICT_ERRORS]


# --------------------------------------------------------------------------- create, update
def decode_write(kind: Kind, obj: Obj, raw: bytes, ctype: str, mode_param: str,
                 options_kind: str = "CreateOptions", schema_ref: str | None = None,
                 kind_name: str | None = None, version: str | None = None) -> tuple[Obj, list[str]]:
    """A create or update body (``obj`` as parsed from ``raw``) as the typed object would be
    stored, and the field-validation warnings. Raises the 400 upstream answers."""
    mode = fv.validate_mode(mode_param, options_kind)
    ref = kind.schema_ref if schema_ref is None else schema_ref
    name = kind_name or kind.kind
    ver = version or kind.version
    if not ref:
        return obj, []
    prefix = f'{name} in version "{ver}" cannot be handled as a {name}: '
    yaml_body = _is_yaml(ctype)
    try:
        res = dec.decode(obj, ref, sort_keys=yaml_body, unknown=mode != fv.IGNORE)
    except dec.DecodeError as exc:
        msg = str(exc)
        if _is_json(ctype):  # again with the literal numbers, for the exact text
            try:
                dec.decode(dec.loads_exact(raw), ref, unknown=False, exact=True)
            except dec.DecodeError as exact:
                msg = str(exact)
            except ValueError:
                pass
        raise errors.bad_request(prefix + msg) from None
    if mode == fv.IGNORE:
        return res.obj, []
    yaml_lines: list[str] = []
    if yaml_body:
        yaml_lines = fv.find_duplicate_fields(raw, ctype)
        msgs = _unknown(res.unknown)
    elif _is_json(ctype) and has_duplicate_keys(raw, obj, res.keys):
        _, msgs = fv.problems(obj, raw, ctype, ref)  # document order, unknown and duplicate interleaved
    else:
        msgs = _unknown(res.unknown)
    msgs = _cap(msgs)
    if not yaml_lines and not msgs:
        return res.obj, []
    if mode == fv.STRICT:
        raise errors.bad_request(prefix + fv.strict_message(yaml_lines, msgs))
    return res.obj, yaml_lines + msgs


# --------------------------------------------------------------------------- patches
def _patch_invalid(value: str, message: str) -> errors.StatusError:
    """errors.NewInvalid(schema.GroupKind{}, "", field.Invalid(field.NewPath("patch"), value, msg))."""
    return errors.invalid("", "", [fld.invalid("patch", value, message)])


def patch_strict_errors(raw: bytes, patch_type: str) -> list[str]:
    """The strict errors of the patch body itself (decoded into its op list or map)."""
    if patch_type == fv.JSON_PATCH:
        return fv.json_patch_op_errors(raw)
    return fv.find_duplicate_fields(raw, "application/json")


def decode_patched(kind: Kind, patched: Obj, raw: bytes, patch_type: str, mode_param: str) -> tuple[Obj, list[str]]:
    """The object a JSON, merge or strategic merge patch produced, decoded into the kind's
    type; returns it with the warnings. Raises the 422 (or, for an unsupported
    ``fieldValidation``, 422 on PatchOptions) upstream answers."""
    mode = fv.validate_mode(mode_param, "PatchOptions")
    ref = kind.schema_ref
    if not ref:
        return patched, []
    smp = patch_type == fv.STRATEGIC_MERGE_PATCH
    try:
        res = dec.decode_unstructured(patched, ref) if smp else dec.decode(patched, ref, sort_keys=True)
    except dec.DecodeError as exc:
        raise _patch_invalid(_patch_value(patched, raw, smp), str(exc)) from None
    if mode == fv.IGNORE:
        return res.obj, []
    msgs = _cap(patch_strict_errors(raw, patch_type) + _unknown(res.unknown))
    if not msgs:
        return res.obj, []
    if mode == fv.STRICT:
        raise _patch_invalid(_patch_value(patched, raw, smp), fv.strict_message([], msgs))
    return res.obj, msgs


def _patch_value(patched: Obj, raw: bytes, smp: bool) -> str:
    if smp:
        try:
            return dec.go_map_text(patches.parse_patch_json(raw))
        except errors.StatusError:
            return ""
    return dec.go_json(patched)


# --------------------------------------------------------------------------- apply, stored objects
def decode_applied(kind: Kind, obj: Obj) -> Obj:
    """The result of a server-side apply, as the typed object (the apply configuration was
    checked against the schema already; this writes Go's zero values and canonical forms)."""
    if not kind.schema_ref:
        return obj
    try:
        return dec.decode(obj, kind.schema_ref, unknown=False).obj
    except dec.DecodeError as exc:
        raise errors.bad_request(f"failed to create typed patch object: {exc}") from None


__all__ = ["decode_applied", "decode_patched", "decode_write", "has_duplicate_keys", "patch_strict_errors"]
