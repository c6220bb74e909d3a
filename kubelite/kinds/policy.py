"""policy/v1 PodDisruptionBudget (pkg/registry/policy/poddisruptionbudget,
pkg/apis/policy/validation). The disruption controller (kubelite/controllers/disruption.py)
fills its status; the pods/eviction subresource (kubelite/kinds/pod_rest.py) obeys it."""

from __future__ import annotations

import copy
from typing import Any

from kubelite.api import field as f
from kubelite.api.field import FieldError, Path
from kubelite.api.meta import name_is_dns_subdomain
from kubelite.api.selectors import validate_label_selector
from kubelite.kinds import _gorepr as go
from kubelite.kinds._printing import age, age_column, get, meta, name_column
from kubelite.kinds.apps import percent_value
from kubelite.kinds.base import STATUS, Column, Kind, Obj, Strategy

PDB_DEF = "io.k8s.api.policy.v1.PodDisruptionBudget"
UNHEALTHY_POD_EVICTION_POLICIES = ("AlwaysAllow", "IfHealthyBudget")
EMPTY_STATUS: Obj = {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _int_or_percent(v: Any, path: Path) -> list[FieldError]:
    """ValidatePositiveIntOrPercent and IsNotMoreThan100Percent."""
    if isinstance(v, str):
        p = percent_value(v)
        if p is None:
            return [f.invalid(path, go.int_or_string(v),
                              "a valid percent string must be a numeric string followed by an ending '%' (e.g. "
                              "'1%',  or '93%', regex used for validation is '[0-9]+%')")]
        if p > 100:
            return [f.invalid(path, go.int_or_string(v), "must not be greater than 100%")]
        return []
    n = _int(v)
    if n is not None and n < 0:
        return [f.invalid(path, n, "must be greater than or equal to 0")]
    return []


def _spec_repr(spec: dict[str, Any]) -> go.GoValue:
    def ptr(v: Any, t: str) -> str:
        return f"(*{t})(nil)" if v is None else f"(*{t})(0xc000000000)"

    policy = spec.get("unhealthyPodEvictionPolicy")
    return go.GoValue(
        f"policy.PodDisruptionBudgetSpec{{MinAvailable:{ptr(spec.get('minAvailable'), 'intstr.IntOrString')}, "
        f"Selector:{ptr(spec.get('selector'), 'v1.LabelSelector')}, "
        f"MaxUnavailable:{ptr(spec.get('maxUnavailable'), 'intstr.IntOrString')}, "
        f"UnhealthyPodEvictionPolicy:{ptr(policy, 'policy.UnhealthyPodEvictionPolicyType')}}}")


def validate_pdb_spec(spec: dict[str, Any], path: Path) -> list[FieldError]:
    """ValidatePodDisruptionBudgetSpec."""
    errs: list[FieldError] = []
    mn, mx = spec.get("minAvailable"), spec.get("maxUnavailable")
    if mn is not None and mx is not None:
        errs.append(f.invalid(path, _spec_repr(spec), "minAvailable and maxUnavailable cannot be both set"))
    if mn is not None:
        errs += _int_or_percent(mn, path.child("minAvailable"))
    if mx is not None:
        errs += _int_or_percent(mx, path.child("maxUnavailable"))
    sel = spec.get("selector")
    if isinstance(sel, dict):
        errs += validate_label_selector(sel, path.child("selector"))
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in UNHEALTHY_POD_EVICTION_POLICIES:
        errs.append(f.not_supported(path.child("unhealthyPodEvictionPolicy"), policy,
                                    list(UNHEALTHY_POD_EVICTION_POLICIES)))
    return errs


def validate_pdb_status(status: dict[str, Any], path: Path) -> list[FieldError]:
    """ValidatePodDisruptionBudgetStatusUpdate (policy/v1)."""
    errs: list[FieldError] = []
    for k in ("disruptionsAllowed", "currentHealthy", "desiredHealthy", "expectedPods"):
        n = _int(status.get(k))
        if n is not None and n < 0:
            errs.append(f.invalid(path.child(k), n, "must be greater than or equal to 0"))
    return errs


def _shown(v: Any) -> str:
    if v is None:
        return "N/A"
    return str(v)


class PodDisruptionBudgetStrategy(Strategy):
    tracks_generation = True

    def prepare_for_create(self, obj: Obj) -> None:
        obj["status"] = copy.deepcopy(EMPTY_STATUS)

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        new["status"] = copy.deepcopy(old.get("status") or EMPTY_STATUS)

    def validate(self, obj: Obj) -> list[FieldError]:
        return validate_pdb_spec(_d(obj.get("spec")), Path("spec"))

    def validate_status_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return validate_pdb_status(_d(new.get("status")), Path("status"))

    columns = (
        name_column(),
        Column("Min Available", "string", "", "The minimum number or percentage of available pods this budget "
                                              "requires."),
        Column("Max Unavailable", "string", "", "The maximum number or percentage of unavailable pods this budget "
                                                "requires."),
        Column("Allowed Disruptions", "integer", "", "Calculated number of pods that may be disrupted at this time."),
        age_column(),
    )

    def row(self, obj: Obj) -> list[Any]:
        spec, status = _d(obj.get("spec")), _d(obj.get("status"))
        return [meta(obj).get("name", ""), _shown(spec.get("minAvailable")), _shown(spec.get("maxUnavailable")),
                _int(status.get("disruptionsAllowed")) or 0, age(get(obj, "metadata", "creationTimestamp"))]


PODDISRUPTIONBUDGET = Kind(
    group="policy",
    version="v1",
    kind="PodDisruptionBudget",
    plural="poddisruptionbudgets",
    namespaced=True,
    strategy=PodDisruptionBudgetStrategy(),
    short_names=("pdb",),
    subresources=(STATUS,),
    schema_ref=PDB_DEF,
    name_validator=name_is_dns_subdomain,
)
