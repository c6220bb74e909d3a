"""What an object counts against a ResourceQuota (upstream pkg/quota/v1/evaluator/core and the
generic object-count evaluator), shared by the quota admission plugin and the quota controller
so that both — and the scheduler, through the same pod helpers — count a pod the same way.

Every namespaced kind counts ``count/<resource>[.<group>]``; the kinds of the legacy object
counts (``pods``, ``configmaps``, ``secrets``, …) also count under their plain name; a kind's
strategy adds its own resources (:meth:`Strategy.usage`: a pod's requests and limits).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from kubelite.api.quantity import BINARY_SI, DECIMAL_SI, Quantity
from kubelite.kinds.base import Kind, Obj

# the object counts that predate count/<resource> (pods is its pod evaluator's own)
LEGACY_COUNTS = {"configmaps", "secrets", "services", "persistentvolumeclaims", "replicationcontrollers",
                 "resourcequotas"}


def qty(v: Any) -> Decimal:
    try:
        return Quantity.parse(str(v)).decimal()
    except (ValueError, TypeError, ArithmeticError):
        return Decimal(0)


def fmt(value: Decimal, resource: str) -> str:
    kind = BINARY_SI if resource.endswith("memory") or resource.endswith("storage") else DECIMAL_SI
    return str(Quantity.from_value(value, kind))


def count_resource(kind: Kind) -> str:
    return f"count/{kind.plural}.{kind.group}" if kind.group else f"count/{kind.plural}"


def usage(kind: Kind, obj: Obj) -> dict[str, Decimal]:
    """Everything ``obj`` counts against a quota."""
    out = {count_resource(kind): Decimal(1)}
    if not kind.group and kind.plural in LEGACY_COUNTS:
        out[kind.plural] = Decimal(1)
    out.update(kind.strategy.usage(obj))
    return out


def add(into: dict[str, Decimal], more: dict[str, Decimal]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, Decimal(0)) + v


__all__ = ["LEGACY_COUNTS", "add", "count_resource", "fmt", "qty", "usage"]
