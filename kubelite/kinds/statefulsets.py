"""apps/v1 StatefulSet (pkg/registry/apps/statefulset, pkg/apis/apps/validation,
pkg/apis/apps/v1/defaults.go, pkg/printers/internalversion). Its controller is
kubelite/controllers/statefulset.py."""

from __future__ import annotations

from typing import Any

from kubelite.api import field as f
from kubelite.api.field import FieldError, Path
from kubelite.api.meta import name_is_dns_label, validate_annotations, validate_labels
from kubelite.api.selectors import SelectorError, label_selector_from_object, validate_label_selector
from kubelite.kinds import _gorepr as go
from kubelite.kinds._printing import age, age_column, get, meta, name_column
from kubelite.kinds.apps import (
    SCALE_REST,
    WorkloadStrategy,
    _containers_images,
    _d,
    _int,
    _int_or_percent,
    _l,
    _nonneg,
    _positive_int_or_percent,
    default_template,
    percent_value,
)
from kubelite.kinds.base import STATUS, Column, Kind, Obj, ScaleSpec

STS_DEF = "io.k8s.api.apps.v1.StatefulSet"
ORDERED_READY = "OrderedReady"
PARALLEL = "Parallel"
RETAIN = "Retain"
DELETE = "Delete"


def default_statefulset(obj: Obj) -> None:
    """SetDefaults_StatefulSet (apps/v1, MaxUnavailableStatefulSet on as in v1.37)."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        obj["spec"] = spec = {}
    if not spec.get("podManagementPolicy"):
        spec["podManagementPolicy"] = ORDERED_READY
    strategy = spec.get("updateStrategy")
    if not isinstance(strategy, dict):
        spec["updateStrategy"] = strategy = {}
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
        if strategy.get("rollingUpdate") is None:
            strategy["rollingUpdate"] = {}
    ru = strategy.get("rollingUpdate")
    if strategy["type"] == "RollingUpdate" and isinstance(ru, dict):
        if ru.get("partition") is None:
            ru["partition"] = 0
        if ru.get("maxUnavailable") is None:
            ru["maxUnavailable"] = 1
    policy = spec.get("persistentVolumeClaimRetentionPolicy")
    if not isinstance(policy, dict):
        spec["persistentVolumeClaimRetentionPolicy"] = policy = {}
    for k in ("whenDeleted", "whenScaled"):
        if not policy.get(k):
            policy[k] = RETAIN
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    if "template" in spec:
        default_template(spec["template"])
    for claim in _l(spec.get("volumeClaimTemplates")):
        if isinstance(claim, dict):  # SetDefaults_PersistentVolumeClaimSpec
            cspec = claim.setdefault("spec", {})
            if isinstance(cspec, dict) and not cspec.get("volumeMode"):
                cspec["volumeMode"] = "Filesystem"


def _retention_type(v: Any, path: Path) -> list[FieldError]:
    if v in (RETAIN, DELETE):
        return []
    return [f.not_supported(path, v if isinstance(v, str) else "", [RETAIN, DELETE])]


def _validate_rolling_update(ru: dict[str, Any], path: Path) -> list[FieldError]:
    """validateRollingUpdateStatefulSet."""
    errs = _nonneg(ru.get("partition"), path.child("partition"))
    mu = ru.get("maxUnavailable")
    if mu is not None:
        mpath = path.child("maxUnavailable")
        errs += _positive_int_or_percent(mu, mpath)
        if _int_or_percent(mu) == 0:
            errs.append(f.invalid(mpath, go.int_or_string(mu), "cannot be 0"))
        p = percent_value(mu)
        if p is not None and p > 100:
            errs.append(f.invalid(mpath, go.int_or_string(mu), "must not be greater than 100%"))
    return errs


def validate_statefulset_spec(spec: dict[str, Any], path: Path) -> list[FieldError]:
    """ValidateStatefulSetSpec."""
    errs: list[FieldError] = []
    pmp = spec.get("podManagementPolicy") or ""
    if pmp == "":
        errs.append(f.required(path.child("podManagementPolicy"), ""))
    elif pmp not in (ORDERED_READY, PARALLEL):
        errs.append(f.invalid(path.child("podManagementPolicy"), pmp, f"must be '{ORDERED_READY}' or '{PARALLEL}'"))
    strategy = _d(spec.get("updateStrategy"))
    stype = strategy.get("type") or ""
    ru = strategy.get("rollingUpdate")
    if stype == "":
        errs.append(f.required(path.child("updateStrategy"), ""))
    elif stype == "OnDelete":
        if ru is not None:
            errs.append(f.invalid(path.child("updateStrategy", "rollingUpdate"), go.rolling_update_statefulset(ru),
                                  "only allowed for updateStrategy 'RollingUpdate'"))
    elif stype == "RollingUpdate":
        if isinstance(ru, dict):
            errs += _validate_rolling_update(ru, path.child("updateStrategy", "rollingUpdate"))
    else:
        errs.append(f.invalid(path.child("updateStrategy"), go.statefulset_strategy(strategy),
                              "must be 'RollingUpdate' or 'OnDelete'"))
    policy = spec.get("persistentVolumeClaimRetentionPolicy")
    if isinstance(policy, dict):
        ppath = path.child("persistentVolumeClaimRetentionPolicy")
        errs += _retention_type(policy.get("whenDeleted"), ppath.child("whenDeleted"))
        errs += _retention_type(policy.get("whenScaled"), ppath.child("whenScaled"))
    errs += _nonneg(spec.get("replicas"), path.child("replicas"))
    errs += _nonneg(spec.get("minReadySeconds"), path.child("minReadySeconds"))
    ordinals = spec.get("ordinals")
    if isinstance(ordinals, dict):
        errs += _nonneg(ordinals.get("start"), path.child("ordinals.start"))
    sel = spec.get("selector")
    sel_path = path.child("selector")
    if sel is None:
        errs.append(f.required(sel_path, ""))
    elif isinstance(sel, dict):
        errs += validate_label_selector(sel, sel_path)
        if len(_d(sel.get("matchLabels"))) + len(_l(sel.get("matchExpressions"))) == 0:
            errs.append(f.invalid(sel_path, go.label_selector(sel), "empty selector is invalid for statefulset"))
    template = _d(spec.get("template"))
    tpath = path.child("template")
    try:
        parsed = label_selector_from_object(sel) if isinstance(sel, dict) else None
    except (SelectorError, ValueError):
        errs.append(f.invalid(sel_path, go.label_selector(sel), ""))
    else:  # ValidatePodTemplateSpecForStatefulSet
        tmeta = _d(template.get("metadata"))
        labels = tmeta.get("labels")
        if parsed is not None and not parsed.empty() and not parsed.matches(_d(labels)):
            errs.append(f.invalid(tpath.child("metadata", "labels"), go.GoValue(go.string_map(labels)),
                                  "`selector` does not match template `labels`"))
        # upstream leaves the pod spec unvalidated here (its volumes may name volumeClaimTemplates):
        # a bad one fails the pods' creation, with FailedCreate events
        errs += validate_labels(labels, tpath.child("labels"))
        errs += validate_annotations(tmeta.get("annotations"), tpath.child("annotations"))
    tspec = _d(template.get("spec"))
    restart = tspec.get("restartPolicy") or ""
    if restart != "Always":
        errs.append(f.not_supported(tpath.child("spec", "restartPolicy"), restart, ["Always"]))
    if tspec.get("activeDeadlineSeconds") is not None:
        errs.append(f.forbidden(tpath.child("spec", "activeDeadlineSeconds"),
                                "activeDeadlineSeconds in StatefulSet is not Supported"))
    return errs


_UPDATABLE = ("replicas", "template", "updateStrategy", "minReadySeconds", "ordinals",
              "persistentVolumeClaimRetentionPolicy")


def validate_statefulset_update(new: Obj, old: Obj) -> list[FieldError]:
    """ValidateStatefulSetUpdate."""
    errs = validate_statefulset_spec(_d(new.get("spec")), Path("spec"))
    ns = {k: v for k, v in _d(new.get("spec")).items() if k not in _UPDATABLE}
    os_ = {k: v for k, v in _d(old.get("spec")).items() if k not in _UPDATABLE}
    if _semantic(ns) != _semantic(os_):
        errs.append(f.forbidden(Path("spec"), "updates to statefulset spec for fields other than 'replicas', "
                                              "'ordinals', 'template', 'updateStrategy', "
                                              "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are "
                                              "forbidden"))
    return errs


def _semantic(v: Any) -> Any:
    """Semantic.DeepEqual treats empty and absent alike for omitempty fields."""
    if isinstance(v, dict):
        return {k: _semantic(x) for k, x in v.items() if x not in (None, {}, [], "")}
    if isinstance(v, list):
        return [_semantic(x) for x in v]
    return v


def validate_statefulset_status(new: Obj, old: Obj) -> list[FieldError]:
    """ValidateStatefulSetStatusUpdate."""
    st, path = _d(new.get("status")), Path("status")
    errs: list[FieldError] = []
    for n in ("replicas", "readyReplicas", "currentReplicas", "updatedReplicas", "availableReplicas",
              "observedGeneration", "collisionCount"):
        errs += _nonneg(st.get(n), path.child(n))
    replicas = _int(st.get("replicas")) or 0
    for n in ("readyReplicas", "currentReplicas", "updatedReplicas", "availableReplicas"):
        v = _int(st.get(n)) or 0
        if v > replicas:
            errs.append(f.invalid(path.child(n), v, "cannot be greater than status.replicas"))
    if (_int(st.get("availableReplicas")) or 0) > (_int(st.get("readyReplicas")) or 0):
        errs.append(f.invalid(path.child("availableReplicas"), _int(st.get("availableReplicas")) or 0,
                              "cannot be greater than status.readyReplicas"))
    nc, oc = _int(st.get("collisionCount")), _int(_d(old.get("status")).get("collisionCount"))
    if oc is not None and (nc is None or nc < oc):
        errs.append(f.invalid(path.child("collisionCount"), nc or 0, "cannot be decremented"))
    return errs


class StatefulSetStrategy(WorkloadStrategy):
    status_metadata = ("labels", "annotations")

    def _empty_status(self) -> Obj:
        return {"replicas": 0, "availableReplicas": 0}

    def default(self, obj: Obj) -> None:
        default_statefulset(obj)

    def validate(self, obj: Obj) -> list[FieldError]:
        return validate_statefulset_spec(_d(obj.get("spec")), Path("spec"))

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return validate_statefulset_update(new, old)

    def validate_status_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return validate_statefulset_status(new, old)

    columns = (
        name_column(),
        Column("Ready", "string", "", "Number of the pod with ready state"),
        age_column(),
        Column("Containers", "string", "", "Names of each container in the template.", 1),
        Column("Images", "string", "", "Images referenced by each container in the template.", 1),
    )

    def row(self, obj: Obj) -> list[Any]:
        spec, status = _d(obj.get("spec")), _d(obj.get("status"))
        names, images = _containers_images(spec.get("template"))
        return [meta(obj).get("name", ""), f"{_int(status.get('readyReplicas')) or 0}/{_int(spec.get('replicas')) or 0}",
                age(get(obj, "metadata", "creationTimestamp")), names, images]


STATEFULSET = Kind(
    group="apps",
    version="v1",
    kind="StatefulSet",
    plural="statefulsets",
    namespaced=True,
    strategy=StatefulSetStrategy(),
    short_names=("sts",),
    categories=("all",),
    subresources=(STATUS, SCALE_REST),
    schema_ref=STS_DEF,
    name_validator=name_is_dns_label,
    scale=ScaleSpec(),
)
