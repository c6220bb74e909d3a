"""coordination.k8s.io/v1 Lease (pkg/registry/coordination/lease, ValidateLease)."""

from __future__ import annotations

from typing import Any

from kubelite.api import field as f
from kubelite.api.field import FieldError, Path
from kubelite.api.meta import is_qualified_name, name_is_dns_subdomain
from kubelite.kinds._printing import age, age_column, doc, get, meta, name_column
from kubelite.kinds.base import Column, Kind, Obj, Strategy

VALID_LEASE_STRATEGIES = ("OldestEmulationVersion",)


def validate_coordinated_lease_strategy(strategy: str, path: Path) -> list[FieldError]:
    # Upstream appends "strategy" to a path that already ends in "strategy".
    p = path.child("strategy")
    parts = strategy.split("/")
    if len(parts) == 1:
        if parts[0] not in VALID_LEASE_STRATEGIES:
            return [f.not_supported(p, strategy, VALID_LEASE_STRATEGIES)]
        return []
    return [f.invalid(p, strategy, msg) for msg in is_qualified_name(strategy)]


def validate_lease_spec(spec: Any, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(spec, dict):
        return errs
    dur = spec.get("leaseDurationSeconds")
    if isinstance(dur, int) and not isinstance(dur, bool) and dur <= 0:
        errs.append(f.invalid(path.child("leaseDurationSeconds"), dur, "must be greater than 0"))
    trans = spec.get("leaseTransitions")
    if isinstance(trans, int) and not isinstance(trans, bool) and trans < 0:
        errs.append(f.invalid(path.child("leaseTransitions"), trans, "must be greater than or equal to 0"))
    strategy = spec.get("strategy")
    if isinstance(strategy, str):
        errs.extend(validate_coordinated_lease_strategy(strategy, path.child("strategy")))
    preferred = spec.get("preferredHolder")
    if preferred and not strategy:
        errs.append(f.forbidden(path.child("preferredHolder"), "may only be specified if `strategy` is defined"))
    return errs


class LeaseStrategy(Strategy):
    allow_create_on_update = True  # a Lease may be created with PUT
    allow_unconditional_update = False

    def validate(self, obj: Obj) -> list[FieldError]:
        return validate_lease_spec(obj.get("spec"), Path("spec"))

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return validate_lease_spec(new.get("spec"), Path("spec"))

    columns = (
        name_column(),
        Column("Holder", "string", "", doc("io.k8s.api.coordination.v1.LeaseSpec", "holderIdentity")),
        age_column(),
    )

    def row(self, obj: Obj) -> list[Any]:
        return [
            meta(obj).get("name", ""),
            get(obj, "spec", "holderIdentity", default=""),
            age(get(obj, "metadata", "creationTimestamp")),
        ]


LEASE = Kind(
    group="coordination.k8s.io",
    version="v1",
    kind="Lease",
    plural="leases",
    namespaced=True,
    strategy=LeaseStrategy(),
    schema_ref="io.k8s.api.coordination.v1.Lease",
    name_validator=name_is_dns_subdomain,
)
