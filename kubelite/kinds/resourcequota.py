"""v1 ResourceQuota (pkg/registry/core/resourcequota): spec.hard is the limit, status.used
is kept by the quota controller (kubelite/admission/resourcequota_controller.py)."""

from __future__ import annotations

from typing import Any

from kubelite.api import field as f
from kubelite.api.field import FieldError, Path
from kubelite.api.meta import name_is_dns_subdomain
from kubelite.api.quantity import Quantity
from kubelite.kinds._printing import age, age_column, get, meta, name_column
from kubelite.kinds.base import STATUS, Column, Kind, Obj, Strategy


class ResourceQuotaStrategy(Strategy):
    def prepare_for_create(self, obj: Obj) -> None:
        obj.pop("status", None)

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)

    def validate(self, obj: Obj) -> list[FieldError]:
        errs: list[FieldError] = []
        for res, q in ((obj.get("spec") or {}).get("hard") or {}).items():
            p = Path("spec", "hard").key(res)
            try:
                if Quantity.parse(str(q)).decimal() < 0:
                    errs.append(f.invalid(p, q, "must be greater than or equal to 0"))
            except (ValueError, TypeError) as exc:
                errs.append(f.invalid(p, q, str(exc)))
        return errs

    columns = (name_column(), age_column(), Column("Request", "string", "", "Request represents a minimum amount of "
                                                   "cpu/memory that a container may consume."),
               Column("Limit", "string", "", "Limits control the maximum amount of cpu/memory that a container may "
                                            "use independent of contention on the node."))

    def row(self, obj: Obj) -> list[Any]:
        hard = get(obj, "status", "hard", default=None) or get(obj, "spec", "hard", default={}) or {}
        used = get(obj, "status", "used", default={}) or {}
        req: list[str] = []
        lim: list[str] = []
        for name in sorted(hard):
            cell = f"{name}: {used.get(name, '0')}/{hard[name]}"
            (lim if name.startswith("limits.") else req).append(cell)
        return [meta(obj).get("name", ""), age(get(obj, "metadata", "creationTimestamp")), ", ".join(req),
                ", ".join(lim)]


RESOURCEQUOTA = Kind(group="", version="v1", kind="ResourceQuota", plural="resourcequotas", namespaced=True,
                     strategy=ResourceQuotaStrategy(), short_names=("quota",), subresources=(STATUS,),
                     schema_ref="io.k8s.api.core.v1.ResourceQuota", name_validator=name_is_dns_subdomain)
