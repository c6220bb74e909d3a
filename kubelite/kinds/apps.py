"""apps/v1 ReplicaSet and Deployment (pkg/registry/apps/replicaset, pkg/registry/apps/deployment,
pkg/apis/apps/validation, pkg/apis/apps/v1/defaults.go, pkg/printers/internalversion).

Their controllers are kubelite/controllers/replicaset.py and kubelite/controllers/deployment.py.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from kubelite.api import field as f
from kubelite.api.field import FieldError, Path
from kubelite.api.meta import name_is_dns_subdomain, validate_annotations, validate_labels
from kubelite.api.selectors import SelectorError, label_selector_from_object, validate_label_selector
from kubelite.kinds import _gorepr as go
from kubelite.kinds import _pod_validation as pv
from kubelite.kinds import podutil, scale_rest
from kubelite.kinds._printing import age, age_column, doc, get, meta, name_column
from kubelite.kinds.base import SCALE, STATUS, Column, Kind, Obj, ScaleSpec, Strategy
from kubelite.kinds.pods import default_pod

RS_DEF = "io.k8s.api.apps.v1.ReplicaSet"
DEPLOY_DEF = "io.k8s.api.apps.v1.Deployment"
MAX_INT32 = 2**31 - 1

# DefaultDeploymentUniqueLabelKey and the annotations the deployment controller and kubectl share
POD_TEMPLATE_HASH = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
CHANGE_CAUSE = "kubernetes.io/change-cause"


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _nonneg(value: Any, path: Path) -> list[FieldError]:
    """ValidateNonnegativeField."""
    n = _int(value)
    if n is not None and n < 0:
        return [f.invalid(path, n, "must be greater than or equal to 0")]
    return []


# ----------------------------------------------------------------------------- defaults
def default_template(template: Any) -> None:
    """The pod defaults (SetDefaults_PodSpec and friends) reach a template's spec too."""
    if not isinstance(template, dict):
        return
    default_pod(template)
    tmeta = template.get("metadata")
    if isinstance(tmeta, dict) and not tmeta:
        del template["metadata"]


def _default_replicas(spec: dict[str, Any]) -> None:
    if spec.get("replicas") is None:
        spec["replicas"] = 1


def default_replica_set(obj: Obj) -> None:
    """SetDefaults_ReplicaSet (apps/v1)."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        obj["spec"] = spec = {}
    _default_replicas(spec)
    if "template" in spec:
        default_template(spec["template"])


def default_deployment(obj: Obj) -> None:
    """SetDefaults_Deployment (apps/v1): 25 % surge and unavailability, ten old ReplicaSets kept,
    a 600 s progress deadline."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        obj["spec"] = spec = {}
    _default_replicas(spec)
    strategy = spec.get("strategy")
    if not isinstance(strategy, dict):
        spec["strategy"] = strategy = {}
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        ru = strategy.get("rollingUpdate")
        if not isinstance(ru, dict):
            strategy["rollingUpdate"] = ru = {}
        if ru.get("maxUnavailable") is None:
            ru["maxUnavailable"] = "25%"
        if ru.get("maxSurge") is None:
            ru["maxSurge"] = "25%"
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    if spec.get("progressDeadlineSeconds") is None:
        spec["progressDeadlineSeconds"] = 600
    if "template" in spec:
        default_template(spec["template"])


# ----------------------------------------------------------------------------- validation
def validate_pod_template_spec(template: dict[str, Any], path: Path) -> list[FieldError]:
    """ValidatePodTemplateSpec."""
    tmeta = _d(template.get("metadata"))
    spec = _d(template.get("spec"))
    errs = validate_labels(tmeta.get("labels"), path.child("labels"))
    errs += validate_annotations(tmeta.get("annotations"), path.child("annotations"))
    errs += pv.validate_pod_spec(spec, "", path.child("spec"))
    if _l(spec.get("ephemeralContainers")):
        errs.append(f.forbidden(path.child("spec", "ephemeralContainers"), "ephemeral containers not allowed in pod "
                                                                           "template"))
    return errs


def template_for_replicas(template: Any, selector_matches: Any, path: Path,
                          owner: str = "ReplicaSet") -> list[FieldError]:
    """ValidatePodTemplateSpecForReplicaSet (and, with ``owner`` "ReplicationController",
    ValidatePodTemplateSpecForRC): the template's labels match the selector, restartPolicy
    Always, no activeDeadlineSeconds."""
    if not isinstance(template, dict):
        return [f.required(path, "")]
    errs: list[FieldError] = []
    labels = _d(template.get("metadata")).get("labels")
    if selector_matches is not None and not selector_matches.empty() and not selector_matches.matches(_d(labels)):
        errs.append(f.invalid(path.child("metadata", "labels"), go.GoValue(go.string_map(labels)),
                              "`selector` does not match template `labels`"))
    errs += validate_pod_template_spec(template, path)
    spec = _d(template.get("spec"))
    restart = spec.get("restartPolicy") or ""
    if restart != "Always":
        errs.append(f.not_supported(path.child("spec", "restartPolicy"), restart, ["Always"]))
    if spec.get("activeDeadlineSeconds") is not None:
        errs.append(f.forbidden(path.child("spec", "activeDeadlineSeconds"),
                                f"activeDeadlineSeconds in {owner} is not Supported"))
    return errs


def _selector_and_template(spec: dict[str, Any], path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    sel = spec.get("selector")
    sel_path = path.child("selector")
    if sel is None:
        errs.append(f.required(sel_path, ""))
    elif isinstance(sel, dict):
        errs += validate_label_selector(sel, sel_path)
        if len(_d(sel.get("matchLabels"))) + len(_l(sel.get("matchExpressions"))) == 0:
            errs.append(f.invalid(sel_path, go.label_selector(sel), "empty selector is invalid for deployment"))
    try:
        # metav1.LabelSelectorAsSelector: a nil selector is Nothing, which "matches" no template
        parsed = label_selector_from_object(sel) if isinstance(sel, dict) else None
    except (SelectorError, ValueError):
        errs.append(f.invalid(sel_path, go.label_selector(sel), "invalid label selector"))
        return errs
    errs += template_for_replicas(spec.get("template"), parsed, path.child("template"))
    return errs


def validate_replica_set_spec(spec: dict[str, Any], path: Path) -> list[FieldError]:
    """ValidateReplicaSetSpec."""
    errs = _nonneg(spec.get("replicas"), path.child("replicas"))
    errs += _nonneg(spec.get("minReadySeconds"), path.child("minReadySeconds"))
    errs += _selector_and_template(spec, path)
    return errs


def _status_counts(status: dict[str, Any], path: Path, names: tuple[str, ...]) -> list[FieldError]:
    errs: list[FieldError] = []
    for n in names:
        errs += _nonneg(status.get(n), path.child(n))
    return errs


def _counts_within_replicas(status: dict[str, Any], path: Path, names: tuple[str, ...]) -> list[FieldError]:
    """Each of ``names`` at most status.replicas, and availableReplicas at most readyReplicas."""
    errs: list[FieldError] = []
    replicas = _int(status.get("replicas")) or 0
    for n in names:
        v = _int(status.get(n)) or 0
        if v > replicas:
            errs.append(f.invalid(path.child(n), v, "cannot be greater than status.replicas"))
    avail, ready = _int(status.get("availableReplicas")) or 0, _int(status.get("readyReplicas")) or 0
    if avail > ready:
        errs.append(f.invalid(path.child("availableReplicas"), avail, "cannot be greater than readyReplicas"))
    return errs


def validate_replica_set_status(status: dict[str, Any], path: Path) -> list[FieldError]:
    """ValidateReplicaSetStatus."""
    errs = _status_counts(status, path, ("replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas",
                                         "observedGeneration"))
    return errs + _counts_within_replicas(status, path, ("fullyLabeledReplicas", "readyReplicas",
                                                        "availableReplicas"))


def percent_value(v: Any) -> int | None:
    """getPercentValue: the number of a valid percent string."""
    if isinstance(v, str) and v.endswith("%") and v[:-1].isdigit() and v[:-1].isascii():
        return int(v[:-1])
    return None


def _int_or_percent(v: Any) -> int:
    """getIntOrPercentValue."""
    p = percent_value(v)
    if p is not None:
        return p
    if isinstance(v, str):  # IntValue() of a string parses it (Atoi), 0 on failure
        try:
            return int(v)
        except ValueError:
            return 0
    return _int(v) or 0


def _positive_int_or_percent(v: Any, path: Path) -> list[FieldError]:
    """ValidatePositiveIntOrPercent."""
    if isinstance(v, str):
        if percent_value(v) is None:
            return [f.invalid(path, go.int_or_string(v),
                              "a valid percent string must be a numeric string followed by an ending '%' (e.g. "
                              "'1%',  or '93%', regex used for validation is '[0-9]+%')")]
        return []
    return _nonneg(v, path)


def validate_deployment_strategy(strategy: dict[str, Any], path: Path) -> list[FieldError]:
    """ValidateDeploymentStrategy."""
    t = strategy.get("type") or ""
    ru = strategy.get("rollingUpdate")
    if t == "Recreate":
        if ru is not None:
            return [f.forbidden(path.child("rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'")]
        return []
    if t == "RollingUpdate":
        if not isinstance(ru, dict):
            return [f.required(path.child("rollingUpdate"), "this should be defaulted and never be nil")]
        rpath = path.child("rollingUpdate")
        mu, ms = ru.get("maxUnavailable"), ru.get("maxSurge")
        errs = _positive_int_or_percent(mu, rpath.child("maxUnavailable"))
        errs += _positive_int_or_percent(ms, rpath.child("maxSurge"))
        if _int_or_percent(mu) == 0 and _int_or_percent(ms) == 0:
            errs.append(f.invalid(rpath.child("maxUnavailable"), go.int_or_string(mu),
                                  "may not be 0 when `maxSurge` is 0"))
        p = percent_value(mu)
        if p is not None and p > 100:
            errs.append(f.invalid(rpath.child("maxUnavailable"), go.int_or_string(mu), "must not be greater than 100%"))
        return errs
    return [f.not_supported(path, go.deployment_strategy(strategy), ["Recreate", "RollingUpdate"])]


def validate_deployment_spec(spec: dict[str, Any], path: Path) -> list[FieldError]:
    """ValidateDeploymentSpec."""
    errs = _nonneg(spec.get("replicas"), path.child("replicas"))
    errs += _selector_and_template(spec, path)
    errs += validate_deployment_strategy(_d(spec.get("strategy")), path.child("strategy"))
    errs += _nonneg(spec.get("minReadySeconds"), path.child("minReadySeconds"))
    if spec.get("revisionHistoryLimit") is not None:
        errs += _nonneg(spec.get("revisionHistoryLimit"), path.child("revisionHistoryLimit"))
    rollback = spec.get("rollbackTo")
    if isinstance(rollback, dict):
        errs += _nonneg(rollback.get("revision"), path.child("rollback", "version"))
    pds = _int(spec.get("progressDeadlineSeconds"))
    if pds is not None:
        errs += _nonneg(pds, path.child("progressDeadlineSeconds"))
        if pds <= (_int(spec.get("minReadySeconds")) or 0):
            errs.append(f.invalid(path.child("progressDeadlineSeconds"), pds, "must be greater than minReadySeconds"))
    return errs


def validate_deployment_status(status: dict[str, Any], path: Path) -> list[FieldError]:
    """ValidateDeploymentStatus."""
    errs = _status_counts(status, path, ("observedGeneration", "replicas", "updatedReplicas", "readyReplicas",
                                         "availableReplicas", "unavailableReplicas"))
    if status.get("collisionCount") is not None:
        errs += _nonneg(status.get("collisionCount"), path.child("collisionCount"))
    return errs + _counts_within_replicas(status, path, ("updatedReplicas", "readyReplicas", "availableReplicas"))


def _selector_immutable(new: Obj, old: Obj) -> list[FieldError]:
    """apps/v1 strategies: ValidateImmutableField(spec.selector)."""
    ns, os_ = _d(new.get("spec")).get("selector"), _d(old.get("spec")).get("selector")
    if _norm_selector(ns) != _norm_selector(os_):
        return [f.invalid(Path("spec", "selector"), go.label_selector(ns), "field is immutable")]
    return []


def _norm_selector(sel: Any) -> Any:
    if not isinstance(sel, dict):
        return sel
    return {"matchLabels": _d(sel.get("matchLabels")) or None, "matchExpressions": _l(sel.get("matchExpressions")) or None}


# ----------------------------------------------------------------------------- printing
def _containers_images(template: Any) -> tuple[str, str]:
    cs = [c for c in _l(get(template, "spec", "containers")) if isinstance(c, dict)]
    return ",".join(str(c.get("name") or "") for c in cs), ",".join(str(c.get("image") or "") for c in cs)


def format_selector(sel: Any) -> str:
    """metav1.FormatLabelSelector."""
    if not isinstance(sel, dict):
        return "<none>"
    try:
        s = str(label_selector_from_object(sel))
    except (SelectorError, ValueError):
        return "<error>"
    return s or "<none>"


def _wide_columns(definition: str) -> tuple[Column, ...]:
    return (
        Column("Containers", "string", "", "Names of each container in the template.", 1),
        Column("Images", "string", "", "Images referenced by each container in the template.", 1),
        Column("Selector", "string", "", doc(definition + "Spec", "selector"), 1),
    )


def _wide_cells(obj: Obj) -> list[Any]:
    spec = _d(obj.get("spec"))
    names, images = _containers_images(spec.get("template"))
    return [names, images, format_selector(spec.get("selector"))]


# ----------------------------------------------------------------------------- strategies
class WorkloadStrategy(Strategy):
    tracks_generation = True
    allow_unconditional_update = True

    # where the pod template sits under the object (a CronJob's is under its jobTemplate)
    template_path: tuple[str, ...] = ("spec", "template")

    def prepare_for_create(self, obj: Obj) -> None:
        podutil.drop_disabled_template_fields(obj, None, self.template_path)
        obj["status"] = self._empty_status()

    def _empty_status(self) -> Obj:
        return {}

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        podutil.drop_disabled_template_fields(new, old, self.template_path)
        new["status"] = copy.deepcopy(old.get("status") or self._empty_status())


class ReplicaSetStrategy(WorkloadStrategy):
    # the status subresource may change labels and annotations (rsStatusStrategy keeps only spec)
    status_metadata = ("labels", "annotations")

    def _empty_status(self) -> Obj:
        return {"replicas": 0}  # ReplicaSetStatus.replicas is not omitempty

    def default(self, obj: Obj) -> None:
        default_replica_set(obj)

    def validate(self, obj: Obj) -> list[FieldError]:
        return validate_replica_set_spec(_d(obj.get("spec")), Path("spec"))

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return self.validate(new) + _selector_immutable(new, old)

    def validate_status_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return validate_replica_set_status(_d(new.get("status")), Path("status"))

    def field_labels(self, obj: Obj) -> dict[str, str]:
        """ReplicaSetToSelectableFields."""
        return {"status.replicas": str(_int(_d(obj.get("status")).get("replicas")) or 0)}

    columns = (
        name_column(),
        Column("Desired", "integer", "", doc(RS_DEF + "Spec", "replicas")),
        Column("Current", "integer", "", doc(RS_DEF + "Status", "replicas")),
        Column("Ready", "integer", "", doc(RS_DEF + "Status", "readyReplicas")),
        age_column(),
        *_wide_columns(RS_DEF),
    )

    def row(self, obj: Obj) -> list[Any]:
        spec, status = _d(obj.get("spec")), _d(obj.get("status"))
        return [meta(obj).get("name", ""), _int(spec.get("replicas")) or 0, _int(status.get("replicas")) or 0,
                _int(status.get("readyReplicas")) or 0, age(get(obj, "metadata", "creationTimestamp")),
                *_wide_cells(obj)]


class DeploymentStrategy(WorkloadStrategy):
    # deploymentStatusStrategy keeps spec and labels: the controller records the revision
    # annotation through /status
    status_metadata = ("annotations",)

    def default(self, obj: Obj) -> None:
        default_deployment(obj)

    def validate(self, obj: Obj) -> list[FieldError]:
        return validate_deployment_spec(_d(obj.get("spec")), Path("spec"))

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return self.validate(new) + _selector_immutable(new, old)

    def validate_status_update(self, new: Obj, old: Obj) -> list[FieldError]:
        errs = validate_deployment_status(_d(new.get("status")), Path("status"))
        nc, oc = _int(_d(new.get("status")).get("collisionCount")), _int(_d(old.get("status")).get("collisionCount"))
        if oc is not None and (nc is None or nc < oc):
            errs.append(f.invalid(Path("status", "collisionCount"), nc or 0, "cannot be decremented"))
        return errs

    columns = (
        name_column(),
        Column("Ready", "string", "", "Number of the pod with ready state"),
        Column("Up-to-date", "string", "", doc("io.k8s.api.apps.v1.DeploymentStatus", "updatedReplicas")),
        Column("Available", "string", "", doc("io.k8s.api.apps.v1.DeploymentStatus", "availableReplicas")),
        age_column(),
        *_wide_columns(DEPLOY_DEF),
    )

    def row(self, obj: Obj) -> list[Any]:
        spec, status = _d(obj.get("spec")), _d(obj.get("status"))
        ready = f"{_int(status.get('readyReplicas')) or 0}/{_int(spec.get('replicas')) or 0}"
        return [meta(obj).get("name", ""), ready, _int(status.get("updatedReplicas")) or 0,
                _int(status.get("availableReplicas")) or 0, age(get(obj, "metadata", "creationTimestamp")),
                *_wide_cells(obj)]


SCALE_REST = dataclasses.replace(SCALE, rest=scale_rest.scale_rest)

REPLICASET = Kind(
    group="apps",
    version="v1",
    kind="ReplicaSet",
    plural="replicasets",
    namespaced=True,
    strategy=ReplicaSetStrategy(),
    short_names=("rs",),
    categories=("all",),
    subresources=(STATUS, SCALE_REST),
    schema_ref=RS_DEF,
    name_validator=name_is_dns_subdomain,
    scale=ScaleSpec(),
)

DEPLOYMENT = Kind(
    group="apps",
    version="v1",
    kind="Deployment",
    plural="deployments",
    namespaced=True,
    strategy=DeploymentStrategy(),
    short_names=("deploy",),
    categories=("all",),
    subresources=(STATUS, SCALE_REST),
    schema_ref=DEPLOY_DEF,
    name_validator=name_is_dns_subdomain,
    scale=ScaleSpec(),
)
