"""Pod resource arithmetic shared by LimitRanger and ResourceQuota (Decimal quantities)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from kubelite.api.quantity import BINARY_SI, DECIMAL_SI, Quantity


def qty(v: Any) -> Decimal:
    try:
        return Quantity.parse(str(v)).decimal()
    except (ValueError, TypeError):
        return Decimal(0)


def fmt(value: Decimal, resource: str) -> str:
    kind = BINARY_SI if resource.endswith("memory") or resource.endswith("storage") else DECIMAL_SI
    return str(Quantity.from_value(value, kind))


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod.get("spec") or {}
    return [c for c in (spec.get("containers") or []) if isinstance(c, dict)]


def pod_usage(pod: dict[str, Any]) -> dict[str, Decimal]:
    """quota usage of a pod: requests/limits summed over app containers (max with each init container)."""
    spec = pod.get("spec") or {}
    out: dict[str, Decimal] = {"pods": Decimal(1), "count/pods": Decimal(1)}
    for kind in ("requests", "limits"):
        for res in ("cpu", "memory", "ephemeral-storage"):
            total = sum((qty(((c.get("resources") or {}).get(kind) or {}).get(res, 0)) for c in containers(pod)),
                        Decimal(0))
            for ic in spec.get("initContainers") or []:
                total = max(total, qty((((ic or {}).get("resources") or {}).get(kind) or {}).get(res, 0)))
            out[f"{kind}.{res}"] = total
    out["cpu"] = out["requests.cpu"]
    out["memory"] = out["requests.memory"]
    return out


def terminal(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
