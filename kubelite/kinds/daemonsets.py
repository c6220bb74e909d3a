"""apps/v1 DaemonSet and ControllerRevision (pkg/registry/apps/daemonset,
pkg/registry/apps/controllerrevision, pkg/apis/apps/validation, pkg/apis/apps/v1/defaults.go,
pkg/printers/internalversion). The DaemonSet controller is kubelite/controllers/daemonset.py;
ControllerRevisions are the history of DaemonSets and StatefulSets (kubelite/controllers/history.py).
"""

from __future__ import annotations

from typing import Any

from kubelite.api import field as f
from kubelite.api.field import FieldError, Path
from kubelite.api.meta import name_is_dns_subdomain
from kubelite.api.selectors import SelectorError, label_selector_from_object, validate_label_selector
from kubelite.kinds import _gorepr as go
from kubelite.kinds._printing import age, age_column, doc, get, meta, name_column
from kubelite.kinds.apps import (
    WorkloadStrategy,
    _d,
    _int,
    _int_or_percent,
    _l,
    _nonneg,
    _positive_int_or_percent,
    _selector_immutable,
    _wide_cells,
    _wide_columns,
    default_template,
    percent_value,
    validate_pod_template_spec,
)
from kubelite.kinds.base import STATUS, Column, Kind, Obj, Strategy

DS_DEF = "io.k8s.api.apps.v1.DaemonSet"
CR_DEF = "io.k8s.api.apps.v1.ControllerRevision"
# apps/v1 carries the internal spec.templateGeneration in this annotation (pkg/apis/apps/v1/conversion.go)
TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"


def default_daemonset(obj: Obj) -> None:
    """SetDefaults_DaemonSet: RollingUpdate with maxUnavailable 1 and maxSurge 0, ten revisions kept."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        obj["spec"] = spec = {}
    strategy = spec.get("updateStrategy")
    if not isinstance(strategy, dict):
        spec["updateStrategy"] = strategy = {}
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        ru = strategy.get("rollingUpdate")
        if not isinstance(ru, dict):
            strategy["rollingUpdate"] = ru = {}
        if ru.get("maxUnavailable") is None:
            ru["maxUnavailable"] = 1
        if ru.get("maxSurge") is None:
            ru["maxSurge"] = 0
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    if "template" in spec:
        default_template(spec["template"])


def _not_over_100(v: Any, path: Path) -> list[FieldError]:
    p = percent_value(v)
    if p is not None and p > 100:
        return [f.invalid(path, go.int_or_string(v), "must not be greater than 100%")]
    return []


def validate_daemonset_update_strategy(strategy: dict[str, Any], path: Path) -> list[FieldError]:
    """ValidateDaemonSetUpdateStrategy."""
    t = strategy.get("type") or ""
    if t == "OnDelete":
        return []
    if t == "RollingUpdate":
        ru = strategy.get("rollingUpdate")
        if not isinstance(ru, dict):
            return [f.required(path.child("rollingUpdate"), "")]
        rpath = path.child("rollingUpdate")
        mu, ms = ru.get("maxUnavailable"), ru.get("maxSurge")
        errs = _positive_int_or_percent(mu, rpath.child("maxUnavailable"))
        errs += _positive_int_or_percent(ms, rpath.child("maxSurge"))
        errs += _not_over_100(mu, rpath.child("maxUnavailable"))
        errs += _not_over_100(ms, rpath.child("maxSurge"))
        has_unavailable, has_surge = _int_or_percent(mu) != 0, _int_or_percent(ms) != 0
        if has_unavailable and has_surge:
            errs.append(f.invalid(rpath.child("maxSurge"), go.int_or_string(ms),
                                  "may not be set when maxUnavailable is non-zero"))
        elif not has_unavailable and not has_surge:
            errs.append(f.required(rpath.child("maxUnavailable"), "cannot be 0 when maxSurge is 0"))
        return errs
    return [f.not_supported(path, go.daemonset_strategy(strategy), ["RollingUpdate", "OnDelete"])]


def validate_daemonset_spec(spec: dict[str, Any], path: Path) -> list[FieldError]:
    """ValidateDaemonSetSpec."""
    sel = spec.get("selector")
    sel_path = path.child("selector")
    errs: list[FieldError] = []
    if isinstance(sel, dict):
        errs += validate_label_selector(sel, sel_path)
    template = _d(spec.get("template"))
    labels = _d(template.get("metadata")).get("labels")
    try:
        parsed = label_selector_from_object(sel) if isinstance(sel, dict) else None
    except (SelectorError, ValueError):
        parsed = None
    else:  # LabelSelectorAsSelector(nil) is Nothing: it matches no labels
        if parsed is None or not parsed.matches(_d(labels)):
            errs.append(f.invalid(path.child("template", "metadata", "labels"), go.GoValue(go.string_map(labels)),
                                  "`selector` does not match template `labels`"))
    if isinstance(sel, dict) and len(_d(sel.get("matchLabels"))) + len(_l(sel.get("matchExpressions"))) == 0:
        errs.append(f.invalid(sel_path, go.label_selector(sel), "empty selector is invalid for daemonset"))
    tpath = path.child("template")
    errs += validate_pod_template_spec(template, tpath)
    tspec = _d(template.get("spec"))
    restart = tspec.get("restartPolicy") or ""
    if restart != "Always":
        errs.append(f.not_supported(tpath.child("spec", "restartPolicy"), restart, ["Always"]))
    if tspec.get("activeDeadlineSeconds") is not None:
        errs.append(f.forbidden(tpath.child("spec", "activeDeadlineSeconds"),
                                "activeDeadlineSeconds in DaemonSet is not Supported"))
    errs += _nonneg(spec.get("minReadySeconds"), path.child("minReadySeconds"))
    errs += validate_daemonset_update_strategy(_d(spec.get("updateStrategy")), path.child("updateStrategy"))
    if spec.get("revisionHistoryLimit") is not None:
        errs += _nonneg(spec.get("revisionHistoryLimit"), path.child("revisionHistoryLimit"))
    return errs


def validate_daemonset_status(new: Obj, old: Obj) -> list[FieldError]:
    """ValidateDaemonSetStatusUpdate."""
    st, path = _d(new.get("status")), Path("status")
    errs: list[FieldError] = []
    for n in ("currentNumberScheduled", "numberMisscheduled", "desiredNumberScheduled", "numberReady",
              "observedGeneration", "updatedNumberScheduled", "numberAvailable", "numberUnavailable",
              "collisionCount"):
        errs += _nonneg(st.get(n), path.child(n))
    nc, oc = _int(st.get("collisionCount")), _int(_d(old.get("status")).get("collisionCount"))
    if oc is not None and (nc is None or nc < oc):
        errs.append(f.invalid(path.child("collisionCount"), nc or 0, "cannot be decremented"))
    return errs


def template_generation(ds: Obj) -> int:
    """util.GetTemplateGeneration."""
    raw = _d(meta(ds).get("annotations")).get(TEMPLATE_GENERATION)
    try:
        return int(raw) if raw is not None else 0
    except ValueError:
        return 0


def _set_template_generation(ds: Obj, gen: int) -> None:
    m = ds.setdefault("metadata", {})
    ann = m.get("annotations")
    if not isinstance(ann, dict):
        m["annotations"] = ann = {}
    ann[TEMPLATE_GENERATION] = str(gen)


class DaemonSetStrategy(WorkloadStrategy):
    status_metadata = ()

    def _empty_status(self) -> Obj:
        return {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0}

    def default(self, obj: Obj) -> None:
        default_daemonset(obj)

    def prepare_for_create(self, obj: Obj) -> None:
        """daemonSetStrategy.PrepareForCreate: templateGeneration starts at 1."""
        super().prepare_for_create(obj)
        _set_template_generation(obj, 1)

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        """PrepareForUpdate: templateGeneration moves by one when the template changes."""
        super().prepare_for_update(new, old)
        gen = template_generation(old)
        if _d(new.get("spec")).get("template") != _d(old.get("spec")).get("template"):
            gen += 1
        _set_template_generation(new, gen)

    def validate(self, obj: Obj) -> list[FieldError]:
        return validate_daemonset_spec(_d(obj.get("spec")), Path("spec"))

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return self.validate(new) + _selector_immutable(new, old)

    def validate_status_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return validate_daemonset_status(new, old)

    columns = (
        name_column(),
        Column("Desired", "integer", "", doc(DS_DEF + "Status", "desiredNumberScheduled")),
        Column("Current", "integer", "", doc(DS_DEF + "Status", "currentNumberScheduled")),
        Column("Ready", "integer", "", doc(DS_DEF + "Status", "numberReady")),
        Column("Up-to-date", "integer", "", doc(DS_DEF + "Status", "updatedNumberScheduled")),
        Column("Available", "integer", "", doc(DS_DEF + "Status", "numberAvailable")),
        Column("Node Selector", "string", "", doc("io.k8s.api.core.v1.PodSpec", "nodeSelector")),
        age_column(),
        *_wide_columns(DS_DEF),
    )

    def row(self, obj: Obj) -> list[Any]:
        st = _d(obj.get("status"))
        node_sel = _d(get(obj, "spec", "template", "spec", "nodeSelector"))
        sel_text = ",".join(f"{k}={v}" for k, v in sorted(node_sel.items())) or "<none>"  # labels.FormatLabels
        return [meta(obj).get("name", ""), *(_int(st.get(k)) or 0 for k in (
            "desiredNumberScheduled", "currentNumberScheduled", "numberReady", "updatedNumberScheduled",
            "numberAvailable")), sel_text, age(get(obj, "metadata", "creationTimestamp")), *_wide_cells(obj)]


DAEMONSET = Kind(
    group="apps",
    version="v1",
    kind="DaemonSet",
    plural="daemonsets",
    namespaced=True,
    strategy=DaemonSetStrategy(),
    short_names=("ds",),
    categories=("all",),
    subresources=(STATUS,),
    schema_ref=DS_DEF,
    name_validator=name_is_dns_subdomain,
)


# ----------------------------------------------------------------------------- ControllerRevision
def validate_controller_revision(obj: Obj) -> list[FieldError]:
    """ValidateControllerRevision."""
    errs: list[FieldError] = []
    if obj.get("data") is None:
        errs.append(f.required(Path("data"), "data is mandatory"))
    errs += _nonneg(obj.get("revision"), Path("revision"))
    return errs


class ControllerRevisionStrategy(Strategy):
    tracks_generation = False

    def validate(self, obj: Obj) -> list[FieldError]:
        return validate_controller_revision(obj)

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        errs = validate_controller_revision(new)
        if new.get("data") != old.get("data"):
            errs.append(f.invalid(Path("data"), go.GoValue("runtime.RawExtension{...}"), "field is immutable"))
        return errs

    columns = (
        name_column(),
        Column("Controller", "string", "", "Controller of the object"),
        Column("Revision", "string", "", doc(CR_DEF, "revision")),
        age_column(),
    )

    def row(self, obj: Obj) -> list[Any]:
        controller = "<none>"
        for ref in _l(meta(obj).get("ownerReferences")):
            if isinstance(ref, dict) and ref.get("controller") is True:
                group = str(ref.get("apiVersion") or "").rpartition("/")[0]
                kind = str(ref.get("kind") or "") + (f".{group}" if group else "")
                controller = f"{kind.lower()}/{ref.get('name', '')}"  # formatResourceName with its kind
                break
        return [meta(obj).get("name", ""), controller, _int(obj.get("revision")) or 0,
                age(get(obj, "metadata", "creationTimestamp"))]


CONTROLLERREVISION = Kind(
    group="apps",
    version="v1",
    kind="ControllerRevision",
    plural="controllerrevisions",
    namespaced=True,
    strategy=ControllerRevisionStrategy(),
    schema_ref=CR_DEF,
    name_validator=name_is_dns_subdomain,
)
