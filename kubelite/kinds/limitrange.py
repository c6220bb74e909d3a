"""v1 LimitRange (pkg/registry/core/limitrange, ValidateLimitRange)."""

from __future__ import annotations

from typing import Any

from kubelite.api import field as f
from kubelite.api.field import FieldError, Path
from kubelite.api.meta import name_is_dns_subdomain
from kubelite.api.quantity import Quantity
from kubelite.kinds._printing import get, meta, name_column
from kubelite.kinds.base import Column, Kind, Obj, Strategy

LIMIT_TYPES = ("Container", "Pod", "PersistentVolumeClaim")


def validate_limit_range(obj: Obj) -> list[FieldError]:
    errs: list[FieldError] = []
    limits = ((obj.get("spec") or {}).get("limits")) or []
    for i, item in enumerate(limits if isinstance(limits, list) else []):
        p = Path("spec", "limits").index(i)
        item = item if isinstance(item, dict) else {}
        if item.get("type") not in LIMIT_TYPES:
            errs.append(f.not_supported(p.child("type"), item.get("type", ""), list(LIMIT_TYPES)))
        for key in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
            for res, q in (item.get(key) or {}).items():
                try:
                    Quantity.parse(str(q))
                except (ValueError, TypeError) as exc:
                    errs.append(f.invalid(p.child(key).key(res), q, str(exc)))
    return errs


class LimitRangeStrategy(Strategy):
    def validate(self, obj: Obj) -> list[FieldError]:
        return validate_limit_range(obj)

    columns = (name_column(), Column("Created At", "date", "", "Creation time"))

    def row(self, obj: Obj) -> list[Any]:
        return [meta(obj).get("name", ""), str(get(obj, "metadata", "creationTimestamp", default=""))]


LIMITRANGE = Kind(group="", version="v1", kind="LimitRange", plural="limitranges", namespaced=True,
                  strategy=LimitRangeStrategy(), short_names=("limits",), schema_ref="io.k8s.api.core.v1.LimitRange",
                  name_validator=name_is_dns_subdomain)
