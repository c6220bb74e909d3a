"""Helpers for Table printing shared by the kind modules.

``human_duration`` is apimachinery's ``duration.HumanDuration``; ``age`` is the printers'
``translateTimestampSince`` (``<unknown>`` for a missing timestamp). Column descriptions
are taken from the v1.37 OpenAPI definitions, which carry the same text as the Go
``SwaggerDoc()`` the upstream printers use.
"""

from __future__ import annotations

import time
from datetime import datetime
from functools import cache
from typing import Any

from kubelite.kinds.base import Column

_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def human_duration(seconds: float) -> str:
    """duration.HumanDuration: ~2-3 significant figures of a duration given in seconds."""
    # Go converts the float64 duration to int with truncation toward zero.
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 60 * 2:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if dy == 0 else f"{years}y{dy}d"
    return f"{hours // 24 // 365}y"


def parse_time(ts: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 (metav1.Time / MicroTime) string, or None."""
    if not ts or not isinstance(ts, str):
        return None
    s = ts.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None
    return dt.timestamp()


def age(ts: str | None, now: float | None = None) -> str:
    """translateTimestampSince: the elapsed time since ``ts``, ``<unknown>`` when it is missing."""
    t = parse_time(ts)
    if t is None:
        return "<unknown>"
    return human_duration((time.time() if now is None else now) - t)


@cache
def doc(definition: str, prop: str) -> str:
    """The description of ``definition.prop`` in the v1.37 schemas ('' when absent)."""
    try:
        from kubelite.api import schema

        d: Any = schema.definitions().get(definition, {})
        return str(d.get("properties", {}).get(prop, {}).get("description", ""))
    except Exception:  # pragma: no cover - schemas missing: descriptions are cosmetic
        return ""


def name_column(priority: int = 0) -> Column:
    return Column("Name", "string", "name", doc(_META, "name"), priority)


def age_column() -> Column:
    return Column("Age", "string", "", doc(_META, "creationTimestamp"))


def meta(obj: dict[str, Any]) -> dict[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def get(obj: Any, *path: str, default: Any = None) -> Any:
    """Nested dict lookup that tolerates missing/None levels."""
    cur = obj
    for p in path:
        if not isinstance(cur, dict):
            return default
        cur = cur.get(p)
        if cur is None:
            return default
    return cur


class GoJSON:
    """A bad value that Go's field.Error renders with json.Marshal (structs, slices, maps).

    ``field.FieldError`` prints a non-string value with ``str()``; wrapping it here makes
    that the compact JSON Go shows, e.g. ``Duplicate value: {"key":"a","effect":"NoSchedule"}``.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __str__(self) -> str:
        import json

        return json.dumps(self.value, separators=(",", ":"), ensure_ascii=False)

    def __repr__(self) -> str:
        return f"GoJSON({self.value!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GoJSON) and other.value == self.value

    __hash__ = None  # type: ignore[assignment]
