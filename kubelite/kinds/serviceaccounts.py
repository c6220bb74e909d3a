"""v1 ServiceAccount (pkg/registry/core/serviceaccount, ValidateServiceAccount)."""

from __future__ import annotations

from typing import Any

from kubelite.api.meta import name_is_dns_subdomain
from kubelite.apiserver.rest import TOKEN_REQUESTS
from kubelite.kinds._printing import age, age_column, doc, get, meta, name_column
from kubelite.kinds.base import Column, Kind, Obj, Strategy, Subresource


class ServiceAccountStrategy(Strategy):
    """Object metadata is validated generically; ServiceAccount adds no rules of its own."""

    columns = (
        name_column(),
        Column("Secrets", "string", "", doc("io.k8s.api.core.v1.ServiceAccount", "secrets")),
        age_column(),
    )

    def row(self, obj: Obj) -> list[Any]:
        secrets = obj.get("secrets")
        return [
            meta(obj).get("name", ""),
            len(secrets) if isinstance(secrets, list) else 0,
            age(get(obj, "metadata", "creationTimestamp")),
        ]


SERVICEACCOUNT = Kind(
    group="",
    version="v1",
    kind="ServiceAccount",
    plural="serviceaccounts",
    namespaced=True,
    strategy=ServiceAccountStrategy(),
    short_names=("sa",),
    subresources=(Subresource("token", ("create",), group="authentication.k8s.io", version="v1", kind="TokenRequest",
                              rest=lambda ctx: ctx.services.require(TOKEN_REQUESTS).handle),),
    schema_ref="io.k8s.api.core.v1.ServiceAccount",
    # apimachinery ValidateServiceAccountName = NameIsDNSSubdomain
    name_validator=name_is_dns_subdomain,
)
