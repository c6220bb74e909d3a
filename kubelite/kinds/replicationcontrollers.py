"""core/v1 ReplicationController (pkg/registry/core/replicationcontroller,
ValidateReplicationController, SetDefaults_ReplicationController): the ReplicaSet's
predecessor, with a label-map selector. kubelite/controllers/replicaset.py keeps its pods."""

from __future__ import annotations

import dataclasses
from typing import Any

from kubelite.api import field as f
from kubelite.api.field import FieldError, Path
from kubelite.api.meta import name_is_dns_subdomain
from kubelite.api.selectors import selector_from_set
from kubelite.kinds import scale_rest
from kubelite.kinds._printing import age, age_column, doc, get, meta, name_column
from kubelite.kinds.apps import (
    WorkloadStrategy,
    default_template,
    template_for_replicas,
    validate_replica_set_status,
)
from kubelite.kinds.base import SCALE, STATUS, Column, Kind, Obj, ScaleSpec

RC_DEF = "io.k8s.api.core.v1.ReplicationController"


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def default_replication_controller(obj: Obj) -> None:
    """SetDefaults_ReplicationController: selector and labels from the template's labels."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        obj["spec"] = spec = {}
    template = spec.get("template")
    labels = _d(template.get("metadata")).get("labels") if isinstance(template, dict) else None
    if isinstance(labels, dict) and labels:
        if not spec.get("selector"):
            spec["selector"] = dict(labels)
        m = obj.setdefault("metadata", {})
        if not m.get("labels"):
            m["labels"] = dict(labels)
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    if isinstance(template, dict):
        default_template(template)


def validate_rc_spec(spec: dict[str, Any], path: Path) -> list[FieldError]:
    """ValidateReplicationControllerSpec."""
    errs: list[FieldError] = []
    mrs = _int(spec.get("minReadySeconds"))
    if mrs is not None and mrs < 0:
        errs.append(f.invalid(path.child("minReadySeconds"), mrs, "must be greater than or equal to 0"))
    selector = _d(spec.get("selector"))
    if not selector:
        errs.append(f.required(path.child("selector"), ""))
    replicas = _int(spec.get("replicas"))
    if replicas is not None and replicas < 0:
        errs.append(f.invalid(path.child("replicas"), replicas, "must be greater than or equal to 0"))
    matches = selector_from_set({str(k): str(v) for k, v in selector.items()}) if selector else None
    return errs + template_for_replicas(spec.get("template"), matches, path.child("template"),
                                        "ReplicationController")


class ReplicationControllerStrategy(WorkloadStrategy):
    status_metadata = ("labels", "annotations")

    def _empty_status(self) -> Obj:
        return {"replicas": 0}

    def default(self, obj: Obj) -> None:
        default_replication_controller(obj)

    def validate(self, obj: Obj) -> list[FieldError]:
        return validate_rc_spec(_d(obj.get("spec")), Path("spec"))

    def validate_status_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return validate_replica_set_status(_d(new.get("status")), Path("status"))

    def field_labels(self, obj: Obj) -> dict[str, str]:
        """ControllerToSelectableFields."""
        return {"status.replicas": str(_int(_d(obj.get("status")).get("replicas")) or 0)}

    columns = (
        name_column(),
        Column("Desired", "integer", "", doc("io.k8s.api.core.v1.ReplicationControllerSpec", "replicas")),
        Column("Current", "integer", "", doc("io.k8s.api.core.v1.ReplicationControllerStatus", "replicas")),
        Column("Ready", "integer", "", doc("io.k8s.api.core.v1.ReplicationControllerStatus", "readyReplicas")),
        age_column(),
        Column("Containers", "string", "", "Names of each container in the template.", 1),
        Column("Images", "string", "", "Images referenced by each container in the template.", 1),
        Column("Selector", "string", "", doc("io.k8s.api.core.v1.ReplicationControllerSpec", "selector"), 1),
    )

    def row(self, obj: Obj) -> list[Any]:
        spec, status = _d(obj.get("spec")), _d(obj.get("status"))
        cs = [c for c in get(spec, "template", "spec", "containers", default=[]) or [] if isinstance(c, dict)]
        sel = str(selector_from_set({str(k): str(v) for k, v in _d(spec.get("selector")).items()})) or "<none>"
        return [meta(obj).get("name", ""), _int(spec.get("replicas")) or 0, _int(status.get("replicas")) or 0,
                _int(status.get("readyReplicas")) or 0, age(get(obj, "metadata", "creationTimestamp")),
                ",".join(str(c.get("name") or "") for c in cs), ",".join(str(c.get("image") or "") for c in cs), sel]


REPLICATIONCONTROLLER = Kind(
    group="",
    version="v1",
    kind="ReplicationController",
    plural="replicationcontrollers",
    namespaced=True,
    strategy=ReplicationControllerStrategy(),
    short_names=("rc",),
    categories=("all",),
    subresources=(STATUS, dataclasses.replace(SCALE, rest=scale_rest.scale_rest)),
    schema_ref=RC_DEF,
    name_validator=name_is_dns_subdomain,
    scale=ScaleSpec(selector_is_map=True),
)
