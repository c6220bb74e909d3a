"""A kind added the way every kind is added: this one module (and one line in the registry).
It serves networking.k8s.io/v1 IngressClass, a shape kubectl and the official client know,
so that schemas and protobuf come from the shipped definitions."""

from __future__ import annotations

from typing import Any

from kubelite.api import field as f
from kubelite.api.field import FieldError, Path
from kubelite.api.meta import name_is_dns_subdomain
from kubelite.kinds._printing import age, age_column, doc, get, meta, name_column
from kubelite.kinds.base import Column, Kind, Obj, Strategy

D = "io.k8s.api.networking.v1.IngressClassSpec"
_CONTROLLER = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/.+$"


class IngressClassStrategy(Strategy):
    def validate(self, obj: Obj) -> list[FieldError]:
        import re

        controller = get(obj, "spec", "controller", default="")
        if not controller:
            return [f.required(Path("spec", "controller"), "")]
        if not re.match(_CONTROLLER, controller):
            return [f.invalid(Path("spec", "controller"), controller, "must be a domain-prefixed path "
                                                                      "(such as \"acme.io/foo\")")]
        return []

    columns = (
        name_column(),
        Column("Controller", "string", "", doc(D, "controller")),
        Column("Parameters", "string", "", doc(D, "parameters")),
        age_column(),
    )

    def row(self, obj: Obj) -> list[Any]:
        params = get(obj, "spec", "parameters", default=None)
        shown = "<none>"
        if isinstance(params, dict) and params.get("kind"):
            shown = f"{params.get('kind')}/{params.get('name', '')}"
        return [meta(obj).get("name", ""), get(obj, "spec", "controller", default=""), shown,
                age(get(obj, "metadata", "creationTimestamp"))]


INGRESSCLASS = Kind(group="networking.k8s.io", version="v1", kind="IngressClass", plural="ingressclasses",
                    namespaced=False, strategy=IngressClassStrategy(), schema_ref="io.k8s.api.networking.v1.IngressClass",
                    name_validator=name_is_dns_subdomain)
