"""A kind added the way every kind is added: this one module (and one line in the registry).
It serves scheduling.k8s.io/v1 PriorityClass, a shape kubectl and the official client know,
so that schemas and protobuf come from the shipped definitions."""

from __future__ import annotations

from typing import Any

from kubelite.api import field as f
from kubelite.api.field import FieldError, Path
from kubelite.api.meta import name_is_dns_subdomain
from kubelite.kinds._printing import age, age_column, doc, get, meta, name_column
from kubelite.kinds.base import Column, Kind, Obj, Strategy

D = "io.k8s.api.scheduling.v1.PriorityClass"


class PriorityClassStrategy(Strategy):
    def default(self, obj: Obj) -> None:
        obj.setdefault("preemptionPolicy", "PreemptLowerPriority")

    def validate(self, obj: Obj) -> list[FieldError]:
        v = obj.get("value")
        if not isinstance(v, int) or isinstance(v, bool):
            return [f.required(Path("value"), "")]
        if v > 1_000_000_000:
            return [f.forbidden(Path("value"), "maximum allowed value of a user defined priority is 1000000000")]
        return []

    columns = (
        name_column(),
        Column("Value", "integer", "", doc(D, "value")),
        Column("Global-Default", "boolean", "", doc(D, "globalDefault")),
        age_column(),
        Column("PreemptionPolicy", "string", "", doc(D, "preemptionPolicy")),
    )

    def row(self, obj: Obj) -> list[Any]:
        return [meta(obj).get("name", ""), obj.get("value", 0), bool(obj.get("globalDefault")),
                age(get(obj, "metadata", "creationTimestamp")), obj.get("preemptionPolicy") or ""]


PRIORITYCLASS = Kind(group="scheduling.k8s.io", version="v1", kind="PriorityClass", plural="priorityclasses",
                     namespaced=False, strategy=PriorityClassStrategy(), short_names=("pc",), schema_ref=D,
                     name_validator=name_is_dns_subdomain)
