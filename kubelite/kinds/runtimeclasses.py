"""node.k8s.io/v1 RuntimeClass (pkg/registry/node/runtimeclass, pkg/apis/node/validation): a
named runtime handler with the pod overhead and scheduling constraints it implies. The
RuntimeClass admission plugin (kubelite/admission/runtimeclass.py) copies ``overhead.podFixed``
into a pod's spec.overhead and merges ``scheduling`` into its nodeSelector and tolerations;
the agent hands ``handler`` to the runtime (RunPodSandbox's runtime_handler)."""

from __future__ import annotations

from typing import Any

from kubelite.api import field as f
from kubelite.api.field import FieldError, Path
from kubelite.api.meta import name_is_dns_label, name_is_dns_subdomain
from kubelite.kinds._pod_validation import (
    validate_labels,
    validate_resource_requirements,
    validate_tolerations,
)
from kubelite.kinds._printing import age, age_column, doc, get, meta, name_column
from kubelite.kinds.base import Column, Kind, Obj, Strategy

D = "io.k8s.api.node.v1.RuntimeClass"


class RuntimeClassStrategy(Strategy):
    def validate(self, obj: Obj) -> list[FieldError]:
        """ValidateRuntimeClass: handler a DNS label, overhead as resource limits, scheduling's
        nodeSelector as labels and its tolerations as a pod's."""
        handler = obj.get("handler") or ""
        errs = [f.invalid(Path("handler"), handler, m) for m in name_is_dns_label(handler, False)]
        overhead = obj.get("overhead")
        if isinstance(overhead, dict) and overhead.get("podFixed") is not None:
            errs += validate_resource_requirements({"limits": overhead["podFixed"]}, set(), Path("overhead"))
        scheduling = obj.get("scheduling")
        if isinstance(scheduling, dict):
            if scheduling.get("nodeSelector") is not None:
                errs += validate_labels(scheduling["nodeSelector"], Path("scheduling", "nodeSelector"))
            errs += validate_tolerations(scheduling.get("tolerations"), Path("scheduling", "tolerations"))
        return errs

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        """ValidateRuntimeClassUpdate: the handler is immutable."""
        errs = self.validate(new)
        if new.get("handler") != old.get("handler"):
            errs.append(f.invalid(Path("handler"), new.get("handler"), "field is immutable"))
        return errs

    columns = (
        name_column(),
        Column("Handler", "string", "", doc(D, "handler")),
        age_column(),
    )

    def row(self, obj: Obj) -> list[Any]:
        return [meta(obj).get("name", ""), obj.get("handler", ""), age(get(obj, "metadata", "creationTimestamp"))]


RUNTIMECLASS = Kind(group="node.k8s.io", version="v1", kind="RuntimeClass", plural="runtimeclasses",
                    namespaced=False, strategy=RuntimeClassStrategy(), schema_ref=D,
                    name_validator=name_is_dns_subdomain)
