"""Server-side field validation (the ``fieldValidation`` query parameter).

Mirrors what kube-apiserver does for typed objects since v1.27 (GA):

* ``Strict`` — 400 BadRequest ``strict decoding error: unknown field "spec.foo", duplicate field "metadata.name"``
* ``Warn`` (the default when the parameter is absent) — one ``Warning`` header per problem
* ``Ignore`` — silently drop unknown fields, last duplicate wins

Message shapes and ordering follow k8s.io/apimachinery's strict JSON decoding
(sigs.k8s.io/json: one pass over the document, an unknown field reported at its first
occurrence, a duplicate at each repeat, nothing reported inside an unknown field) and,
for YAML bodies, go-yaml's ``line N: key "k" already set in map`` followed by the unknown
fields of the converted object in sorted-key order. For patches the duplicates of the
patch body come first, then the unknown fields of the patched object in sorted-key order.
"""

from __future__ import annotations

import json
from typing import Any

import yaml  # type: ignore[import-untyped]

from kubelite.api import errors
from kubelite.api import field as fld
from kubelite.api import schema as sch

STRICT = "Strict"
WARN = "Warn"
IGNORE = "Ignore"
MODES = ("", IGNORE, STRICT, WARN)  # sorted, as upstream lists them
DEFAULT_MODE = WARN

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


# --------------------------------------------------------------------------- modes
def validate_mode(value: str | None, options_kind: str = "CreateOptions") -> str:
    """The effective mode for a request's ``fieldValidation`` value ("" / absent → Warn).

    An unsupported value raises the 422 upstream returns from ValidateCreateOptions (and
    Update/PatchOptions): ``CreateOptions.meta.k8s.io "" is invalid: fieldValidation:
    Unsupported value: "x": supported values: "", "Ignore", "Strict", "Warn"``.
    """
    value = value or ""
    if value not in MODES:
        raise errors.invalid(options_kind, "", [fld.not_supported("fieldValidation", value, list(MODES))],
                             group="meta.k8s.io")
    return value or DEFAULT_MODE


# --------------------------------------------------------------------------- schema helpers
_OPAQUE, _STRUCT, _MAP, _LIST, _SCALAR = range(5)


def _shape(schema: sch.Schema | None) -> tuple[int, Any]:
    """How a value under ``schema`` is decoded: (shape, detail)."""
    s = sch.resolve(schema)
    if not s:
        return _OPAQUE, None
    if s.get("x-kubernetes-preserve-unknown-fields") is True:
        return _OPAQUE, None
    if s.get("oneOf") or s.get("x-kubernetes-int-or-string"):
        return _SCALAR, None
    types = sch.types_of(s)
    props = s.get("properties")
    if isinstance(props, dict) and props:
        return _STRUCT, props
    addl = s.get("additionalProperties")
    if isinstance(addl, dict):
        return _MAP, addl
    if "array" in types:
        items = s.get("items")
        return _LIST, items if isinstance(items, dict) else None
    if "object" in types or not types:
        return _OPAQUE, None  # RawExtension, FieldsV1, JSON …: anything goes
    return _SCALAR, None


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# --------------------------------------------------------------------------- unknown fields
def find_unknown_fields(obj: Any, schema_ref: str, *, sort_keys: bool = False,
                        skip_directives: bool = False) -> list[str]:
    """Paths (``spec.containers[0].foo``) of fields the schema does not declare.

    Nothing below an unknown field is reported. ``sort_keys`` walks objects in sorted key
    order, as upstream does when it re-decodes a map-built object (patches, YAML bodies).
    ``skip_directives`` ignores strategic-merge-patch directives (``$patch``,
    ``$setElementOrder/…``, ``$retainKeys``, ``$deleteFromPrimitiveList/…``).
    """
    out: list[str] = []
    root = sch.definition(schema_ref) if schema_ref else None
    if root is None:
        return out
    _walk_unknown(obj, root, "", out, sort_keys, skip_directives)
    return out


def _walk_unknown(node: Any, schema: sch.Schema | None, path: str, out: list[str], sort_keys: bool,
                  skip_directives: bool) -> None:
    shape, detail = _shape(schema)
    if shape == _STRUCT and isinstance(node, dict):
        keys = sorted(node) if sort_keys else list(node)
        for k in keys:
            if k in detail:
                _walk_unknown(node[k], detail[k], _child(path, k), out, sort_keys, skip_directives)
            elif not (skip_directives and k.startswith("$")):
                out.append(_child(path, k))
    elif shape == _MAP and isinstance(node, dict):
        keys = sorted(node) if sort_keys else list(node)
        for k in keys:
            if skip_directives and k.startswith("$"):
                continue
            _walk_unknown(node[k], detail, _child(path, k), out, sort_keys, skip_directives)
    elif shape == _LIST and isinstance(node, list):
        for i, item in enumerate(node):
            _walk_unknown(item, detail, f"{path}[{i}]", out, sort_keys, skip_directives)


# --------------------------------------------------------------------------- JSON, duplicates kept
class _Pairs(list):
    """A JSON object as its (key, value) pairs, duplicates kept."""


_PAIRS_DECODER = json.JSONDecoder(object_pairs_hook=_Pairs)


def _load_pairs(raw: bytes | str) -> Any:
    if isinstance(raw, bytes | bytearray):
        raw = raw.decode("utf-8")
    return _PAIRS_DECODER.decode(raw)


def _walk_json(node: Any, schema: sch.Schema | None, path: str, out: list[str], with_unknown: bool) -> None:
    """One pass in document order: ``unknown field`` / ``duplicate field`` messages."""
    if isinstance(node, _Pairs):
        shape, detail = _shape(schema) if with_unknown else (_MAP, None)
        if shape == _OPAQUE:
            return
        if shape not in (_STRUCT, _MAP):
            return
        seen: set[str] = set()
        unknown: set[str] = set()
        for k, v in node:
            p = _child(path, k)
            if shape == _STRUCT and detail is not None and k not in detail:
                if k not in unknown:
                    unknown.add(k)
                    out.append(f"unknown field {fld.go_quote(p)}")
                continue
            if k in seen:
                out.append(f"duplicate field {fld.go_quote(p)}")
            seen.add(k)
            child = detail[k] if shape == _STRUCT and detail is not None else detail
            _walk_json(v, child, p, out, with_unknown)
    elif isinstance(node, list):
        shape, detail = _shape(schema) if with_unknown else (_LIST, None)
        if shape != _LIST:
            return
        for i, item in enumerate(node):
            _walk_json(item, detail, f"{path}[{i}]", out, with_unknown)


# --------------------------------------------------------------------------- YAML, duplicates kept
class _DupCheckingLoader(yaml.SafeLoader):
    """SafeLoader that records go-yaml's ``line N: key "k" already set in map`` errors."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self.dup_errors: list[str] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:  # type: ignore[override]
        self.flatten_mapping(node)
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                repeated = key in seen
            except TypeError:  # unhashable key: SafeLoader rejects it below
                continue
            if repeated:
                k = fld.go_quote(key) if isinstance(key, str) else str(key)
                self.dup_errors.append(f"line {key_node.start_mark.line + 1}: key {k} already set in map")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_duplicates(raw: bytes | str) -> list[str]:
    loader = _DupCheckingLoader(raw)
    try:
        loader.get_single_data()
    except yaml.YAMLError:
        return []
    finally:
        loader.dispose()
    return loader.dup_errors


def _is_yaml(content_type: str) -> bool:
    ct = (content_type or "").split(";", 1)[0].strip().lower()
    return ct in ("application/yaml", "application/x-yaml", "text/yaml", APPLY_PATCH)


def find_duplicate_fields(raw: bytes | str, content_type: str = "application/json") -> list[str]:
    """Duplicate-key messages for a body: ``duplicate field "metadata.name"`` (JSON, any
    JSON-based patch type) or ``line 5: key "name" already set in map`` (YAML)."""
    if not raw:
        return []
    if _is_yaml(content_type):
        return _yaml_duplicates(raw)
    try:
        tree = _load_pairs(raw)
    except ValueError:
        return []
    out: list[str] = []
    _walk_json(tree, None, "", out, with_unknown=False)
    return out


# --------------------------------------------------------------------------- JSON patch ops
_JSON_PATCH_OP_FIELDS = ("op", "path", "value", "from")


def _json_patch_op_errors(raw: bytes | str) -> list[str]:
    """``json patch unknown field "[0].foo"`` / ``json patch duplicate field "[1].path"``."""
    try:
        tree = _load_pairs(raw)
    except ValueError:
        return []
    out: list[str] = []
    if not isinstance(tree, list):
        return out
    for i, op in enumerate(tree):
        if not isinstance(op, _Pairs):
            continue
        seen: set[str] = set()
        for k, _ in op:
            if k not in _JSON_PATCH_OP_FIELDS:
                out.append(f"json patch unknown field {fld.go_quote(f'[{i}].{k}')}")
            elif k in seen:
                out.append(f"json patch duplicate field {fld.go_quote(f'[{i}].{k}')}")
            seen.add(k)
    return out


json_patch_op_errors = _json_patch_op_errors


# --------------------------------------------------------------------------- the check
def problems(obj: Any, raw: bytes | str | None, content_type: str, schema_ref: str,
             patch_type: str | None = None) -> tuple[list[str], list[str]]:
    """(yaml duplicate-key lines, other messages) in upstream order; see :func:`check`."""
    yaml_lines: list[str] = []
    msgs: list[str] = []
    root = sch.definition(schema_ref) if schema_ref else None
    if patch_type is None:
        ct = (content_type or "").split(";", 1)[0].strip().lower()
        if ct in (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH):
            patch_type = ct
    if patch_type:
        if patch_type == JSON_PATCH:
            if raw:
                msgs.extend(_json_patch_op_errors(raw))
        elif patch_type == APPLY_PATCH:
            if raw:
                yaml_lines.extend(_yaml_duplicates(raw))
            return yaml_lines, msgs  # unknown fields of an apply are the field manager's business
        elif raw:
            msgs.extend(find_duplicate_fields(raw, "application/json"))
        if root is not None and obj is not None:
            msgs.extend(f"unknown field {fld.go_quote(p)}" for p in find_unknown_fields(
                obj, schema_ref, sort_keys=True, skip_directives=patch_type == STRATEGIC_MERGE_PATCH))
        return yaml_lines, msgs
    if _is_yaml(content_type):
        if raw:
            yaml_lines.extend(_yaml_duplicates(raw))
        if root is not None and obj is not None:
            msgs.extend(f"unknown field {fld.go_quote(p)}" for p in find_unknown_fields(obj, schema_ref, sort_keys=True))
        return yaml_lines, msgs
    if raw:
        try:
            tree = _load_pairs(raw)
        except ValueError:
            tree = None
        if tree is not None:
            if root is None:
                _walk_json(tree, None, "", msgs, with_unknown=False)
            else:
                _walk_json(tree, root, "", msgs, with_unknown=True)
            return yaml_lines, msgs
    if root is not None and obj is not None:
        msgs.extend(f"unknown field {fld.go_quote(p)}" for p in find_unknown_fields(obj, schema_ref))
    return yaml_lines, msgs


def strict_message(yaml_lines: list[str], msgs: list[str], *, apply: bool = False) -> str:
    """The text of the strict decoding error upstream returns."""
    parts: list[str] = []
    if yaml_lines:
        parts.append("yaml: unmarshal errors:\n  " + "\n  ".join(yaml_lines))
    parts.extend(msgs)
    if apply:
        return "error strict decoding patch: error converting YAML to JSON: " + ", ".join(parts)
    return "strict decoding error: " + ", ".join(parts)


def check(obj: Any, raw: bytes | str | None, content_type: str, schema_ref: str, mode: str | None,
          *, patch_type: str | None = None) -> tuple[errors.StatusError | None, list[str]]:
    """Apply field validation ``mode`` to a request body.

    ``obj`` is the decoded object (for patches: the patched object), ``raw`` the request
    body as sent, ``content_type`` its media type, ``schema_ref`` the definition name of
    the kind (e.g. ``io.k8s.api.core.v1.Pod``; "" skips unknown-field checks),
    ``patch_type`` the patch media type for PATCH requests (inferred from ``content_type``
    when that is a patch media type).

    Returns ``(error, warnings)``: in Strict mode a 400 BadRequest when anything was found;
    in Warn mode (also for ""/None) one warning text per problem; in Ignore mode nothing.
    """
    mode = mode or DEFAULT_MODE
    if mode == IGNORE:
        return None, []
    if patch_type is None:
        ct = (content_type or "").split(";", 1)[0].strip().lower()
        if ct in (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH):
            patch_type = ct
    yaml_lines, msgs = problems(obj, raw, content_type, schema_ref, patch_type)
    if not yaml_lines and not msgs:
        return None, []
    if mode == STRICT:
        msg = strict_message(yaml_lines, msgs, apply=patch_type == APPLY_PATCH)
        return errors.bad_request(msg), []
    return None, yaml_lines + msgs
