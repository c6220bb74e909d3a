"""Server-side printing: meta.k8s.io/v1 Table from a kind's columns (kubectl get)."""

from __future__ import annotations

from typing import Any

from kubelite.kinds.base import Column, Kind, Obj

NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although some resources "
    "may allow a client to request the generation of an appropriate name automatically. Name is primarily "
    "intended for creation idempotence and configuration definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names")
CREATED_DESCRIPTION = (
    "CreationTimestamp is a timestamp representing the server time when this object was created. It is not "
    "guaranteed to be set in happens-before order across separate operations. Clients may not set this value. "
    "It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. "
    "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata")

DEFAULT_COLUMNS = (
    Column("Name", "string", "name", NAME_DESCRIPTION),
    Column("Created At", "date", "", CREATED_DESCRIPTION),
)


def _column_defs(kind: Kind) -> list[dict[str, Any]]:
    cols = kind.strategy.columns or DEFAULT_COLUMNS
    return [{"name": c.name, "type": c.type, "format": c.format, "description": c.description,
             "priority": c.priority} for c in cols]


def _cells(kind: Kind, obj: Obj) -> list[Any]:
    if kind.strategy.columns:
        return kind.strategy.row(obj)
    meta = obj.get("metadata") or {}
    return [meta.get("name", ""), meta.get("creationTimestamp")]


def _row_object(kind: Kind, obj: Obj, include: str) -> Obj | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata") or {}}


def table(kind: Kind, objs: list[Obj], list_meta: dict[str, Any], include_object: str = "Metadata",
          headers: bool = True) -> dict[str, Any]:
    rows = []
    for obj in objs:
        row: dict[str, Any] = {"cells": _cells(kind, obj)}
        ro = _row_object(kind, obj, include_object or "Metadata")
        if ro is not None:
            row["object"] = ro
        rows.append(row)
    out: dict[str, Any] = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta}
    out["columnDefinitions"] = _column_defs(kind) if headers else None
    out["rows"] = rows
    return out
