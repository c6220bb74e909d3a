"""scheduling.k8s.io/v1 PriorityClass (pkg/registry/scheduling/priorityclass,
pkg/apis/scheduling/validation): a name for a pod priority. The two system classes exist from
the start (pkg/apis/scheduling SystemPriorityClasses); the Priority admission plugin
(kubelite/admission/priority.py) resolves a pod's priorityClassName into spec.priority."""

from __future__ import annotations

from typing import Any

from kubelite.api import field as f
from kubelite.api.field import FieldError, Path
from kubelite.api.meta import name_is_dns_subdomain
from kubelite.kinds._printing import age, age_column, doc, get, meta, name_column
from kubelite.kinds.base import Column, Kind, Obj, Strategy

D = "io.k8s.api.scheduling.v1.PriorityClass"
SYSTEM_PREFIX = "system-"
HIGHEST_USER_DEFINABLE = 1_000_000_000
SYSTEM_CLUSTER_CRITICAL = "system-cluster-critical"
SYSTEM_NODE_CRITICAL = "system-node-critical"
SYSTEM_CLASSES: dict[str, tuple[int, str]] = {
    SYSTEM_CLUSTER_CRITICAL: (2_000_000_000, "Used for system critical pods that must run in the cluster, but can be "
                                             "moved to another node if necessary."),
    SYSTEM_NODE_CRITICAL: (2_000_001_000, "Used for system critical pods that must not be moved from their current "
                                          "node."),
}
PREEMPTION_POLICIES = ("Never", "PreemptLowerPriority")


def system_class(name: str) -> Obj:
    value, description = SYSTEM_CLASSES[name]
    return {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
            "value": value, "description": description, "preemptionPolicy": "PreemptLowerPriority"}


class PriorityClassStrategy(Strategy):
    def default(self, obj: Obj) -> None:
        if not obj.get("preemptionPolicy"):
            obj["preemptionPolicy"] = "PreemptLowerPriority"

    def validate(self, obj: Obj) -> list[FieldError]:
        """ValidatePriorityClass."""
        errs: list[FieldError] = []
        name = meta(obj).get("name", "")
        value = obj.get("value")
        if name.startswith(SYSTEM_PREFIX):
            known = SYSTEM_CLASSES.get(name)
            if known is None:
                reason = f"{name} is not a known system priority class"
            elif value != known[0]:
                reason = f"value of {name} PriorityClass must be {known[0]}"
            elif obj.get("globalDefault"):
                reason = f"globalDefault must be false for {name}"
            else:
                reason = ""
            if reason:
                errs.append(f.forbidden(Path("metadata", "name"), "priority class names with 'system-' prefix are "
                                        f"reserved for system use only. error: {reason}"))
        elif isinstance(value, int) and not isinstance(value, bool) and value > HIGHEST_USER_DEFINABLE:
            errs.append(f.forbidden(Path("value"), f"maximum allowed value of a user defined priority is "
                                                   f"{HIGHEST_USER_DEFINABLE}"))
        policy = obj.get("preemptionPolicy")
        if policy not in PREEMPTION_POLICIES:
            errs.append(f.not_supported(Path("preemptionPolicy"), policy, list(PREEMPTION_POLICIES)))
        return errs

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        """ValidatePriorityClassUpdate: only the value's metadata, description and globalDefault change."""
        errs = self.validate(new)
        if new.get("value") != old.get("value"):
            errs.append(f.forbidden(Path("value"), "may not be changed in an update."))
        if new.get("preemptionPolicy") != old.get("preemptionPolicy"):
            errs.append(f.invalid(Path("preemptionPolicy"), new.get("preemptionPolicy"), "field is immutable"))
        return errs

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
