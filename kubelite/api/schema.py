"""Kubernetes v1.37 schemas, from the maintained ``kubernetes-validate`` package.

The package ships JSON Schema (draft 2020-12) definitions with the ``x-kubernetes-*``
extensions (patch strategies, merge keys, list types, group-version-kind). This module
loads them once and answers questions about them; OpenAPI documents, strict field
validation and strategic merge patch are built on top.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import orjson

K8S_VERSION = "1.37.0"
_DEFS_DIR = f"kubernetes-json-schema/v{K8S_VERSION}-local"
REF_PREFIX = "#/$defs/"

Schema = dict[str, Any]


@functools.cache
def definitions() -> dict[str, Schema]:
    """All definitions, keyed by their full name (``io.k8s.api.core.v1.Pod``)."""
    path = resources.files("kubernetes_validate").joinpath(_DEFS_DIR, "_definitions.json")
    return orjson.loads(path.read_bytes())["$defs"]


def ref_name(schema: Schema) -> str | None:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(REF_PREFIX):
        return ref[len(REF_PREFIX):]
    return None


def resolve(schema: Schema | None) -> Schema | None:
    """Follow ``$ref`` (also inside a one-element ``allOf``) to the definition."""
    seen = 0
    while schema is not None and seen < 16:
        name = ref_name(schema)
        if name is None:
            all_of = schema.get("allOf")
            if isinstance(all_of, list) and len(all_of) == 1:
                schema = all_of[0]
                seen += 1
                continue
            return schema
        schema = definitions().get(name)
        seen += 1
    return schema


def definition(name: str) -> Schema | None:
    return definitions().get(name)


def types_of(schema: Schema | None) -> set[str]:
    """The JSON types a schema admits, without "null" (``oneOf`` flattened)."""
    schema = resolve(schema)
    if not schema:
        return set()
    t = schema.get("type")
    out: set[str] = set()
    if isinstance(t, str):
        out.add(t)
    elif isinstance(t, list):
        out.update(t)
    for alt in schema.get("oneOf", []) or []:
        out |= types_of(alt)
    out.discard("null")
    return out


def property_schema(schema: Schema | None, name: str) -> Schema | None:
    """The (resolved) schema of property ``name`` of an object schema, or of its map values."""
    schema = resolve(schema)
    if not schema:
        return None
    props = schema.get("properties")
    if isinstance(props, dict) and name in props:
        return resolve(props[name])
    addl = schema.get("additionalProperties")
    if isinstance(addl, dict):
        return resolve(addl)
    return None


def items_schema(schema: Schema | None) -> Schema | None:
    schema = resolve(schema)
    if not schema:
        return None
    items = schema.get("items")
    return resolve(items) if isinstance(items, dict) else None


def gvk_index() -> dict[tuple[str, str, str], str]:
    """(group, version, kind) → definition name, from x-kubernetes-group-version-kind."""
    return _gvk_index()


@functools.cache
def _gvk_index() -> dict[tuple[str, str, str], str]:
    out: dict[tuple[str, str, str], str] = {}
    for name, d in definitions().items():
        for gvk in d.get("x-kubernetes-group-version-kind", []) or []:
            key = (gvk.get("group", ""), gvk.get("version", ""), gvk.get("kind", ""))
            # prefer the non-deprecated (shortest) name when several definitions claim a GVK
            if key not in out or len(name) < len(out[key]):
                out[key] = name
    return out
