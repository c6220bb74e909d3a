"""v1 Namespace (pkg/registry/core/namespace, ValidateNamespace*, SetDefaults_Namespace)."""

from __future__ import annotations

from typing import Any

from kubelite.api import field as f
from kubelite.api.field import FieldError, Path
from kubelite.api.meta import is_qualified_name, name_is_dns_label
from kubelite.kinds._printing import age, age_column, get, meta, name_column
from kubelite.kinds.base import STATUS, Column, Kind, Obj, Strategy, Subresource

FINALIZER_KUBERNETES = "kubernetes"
LABEL_METADATA_NAME = "kubernetes.io/metadata.name"
NAMESPACE_ACTIVE = "Active"
NAMESPACE_TERMINATING = "Terminating"
# helper.IsStandardFinalizerName
STANDARD_FINALIZERS = frozenset({FINALIZER_KUBERNETES, "orphan", "foregroundDeletion"})


def validate_finalizer_name(name: str, path: Path | str) -> list[FieldError]:
    errs = [f.invalid(path, name, msg) for msg in is_qualified_name(name)]
    if len(name.split("/")) == 1 and name not in STANDARD_FINALIZERS:
        errs.append(f.invalid(path, name, "name is neither a standard finalizer name nor is it fully qualified"))
    return errs


def _finalizers(obj: Obj) -> list[Any]:
    fins = get(obj, "spec", "finalizers")
    return fins if isinstance(fins, list) else []


def _set_name_label(obj: Obj) -> None:
    name = meta(obj).get("name")
    if name:
        m = obj.setdefault("metadata", {})
        labels = m.get("labels")
        if not isinstance(labels, dict):
            labels = {}
            m["labels"] = labels
        labels[LABEL_METADATA_NAME] = name


class NamespaceStrategy(Strategy):
    def default(self, obj: Obj) -> None:
        # SetDefaults_Namespace (only when the name is known) and SetDefaults_NamespaceStatus.
        _set_name_label(obj)
        status = obj.get("status")
        if not isinstance(status, dict):
            status = {}
            obj["status"] = status
        if not status.get("phase"):
            status["phase"] = NAMESPACE_ACTIVE

    def prepare_for_create(self, obj: Obj) -> None:
        obj["status"] = {"phase": NAMESPACE_ACTIVE}
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            spec = {}
            obj["spec"] = spec
        fins = spec.get("finalizers")
        if not isinstance(fins, list):
            fins = []
        if FINALIZER_KUBERNETES not in fins:
            fins = [*fins, FINALIZER_KUBERNETES]
        spec["finalizers"] = fins
        self.canonicalize(obj)

    def canonicalize(self, obj: Obj) -> None:
        """Strategy.Canonicalize: the name label, also for names made from generateName."""
        _set_name_label(obj)

    def validate(self, obj: Obj) -> list[FieldError]:
        errs: list[FieldError] = []
        # Upstream reports these at "spec.finalizers" without an index.
        for name in _finalizers(obj):
            errs.extend(validate_finalizer_name(str(name), Path("spec", "finalizers")))
        return errs

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        spec = new.get("spec")
        if not isinstance(spec, dict):
            spec = {}
            new["spec"] = spec
        old_fins = get(old, "spec", "finalizers")
        if old_fins is None:
            spec.pop("finalizers", None)
        else:
            spec["finalizers"] = list(old_fins)
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)
        self.canonicalize(new)

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        # Used for the main resource and for namespaces/finalize. On the main resource
        # spec.finalizers was just copied from old (already valid), so this only bites on finalize.
        return self.validate_finalize_update(new, old)

    def prepare_for_subresource_update(self, subresource: str, new: Obj, old: Obj) -> None:
        if subresource == "finalize":
            self.finalize_prepare_for_update(new, old)
        else:
            self.prepare_for_update(new, old)

    # --- delete -----------------------------------------------------------------
    return_deleted_object = True

    def has_pending_finalizers(self, obj: Obj) -> bool:
        return bool(meta(obj).get("finalizers")) or bool(_finalizers(obj))

    def mark_terminating(self, obj: Obj) -> None:
        status = obj.get("status")
        if not isinstance(status, dict):
            status = {}
            obj["status"] = status
        status["phase"] = NAMESPACE_TERMINATING

    # --- status -----------------------------------------------------------------
    def status_prepare_for_update(self, new: Obj, old: Obj) -> None:
        if "spec" in old:
            new["spec"] = old["spec"]
        else:
            new.pop("spec", None)

    def validate_status_update(self, new: Obj, old: Obj) -> list[FieldError]:
        phase = get(new, "status", "phase", default="")
        # Upstream's field path really is "status.Phase".
        if not meta(new).get("deletionTimestamp"):
            if phase != NAMESPACE_ACTIVE:
                return [f.invalid(Path("status", "Phase"), phase,
                                  "may only be 'Active' if `deletionTimestamp` is empty")]
        elif phase != NAMESPACE_TERMINATING:
            return [f.invalid(Path("status", "Phase"), phase,
                              "may only be 'Terminating' if `deletionTimestamp` is not empty")]
        return []

    # --- finalize subresource -------------------------------------------------
    def finalize_prepare_for_update(self, new: Obj, old: Obj) -> None:
        """namespaceFinalizeStrategy.PrepareForUpdate: only spec.finalizers may change."""
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)

    def validate_finalize_update(self, new: Obj, old: Obj) -> list[FieldError]:
        errs: list[FieldError] = []
        p = Path("spec", "finalizers")
        for i, name in enumerate(_finalizers(new)):
            errs.extend(validate_finalizer_name(str(name), p.index(i)))
        return errs

    # --- reading ----------------------------------------------------------------
    def field_labels(self, obj: Obj) -> dict[str, str]:
        return {"status.phase": str(get(obj, "status", "phase", default=""))}

    columns = (
        name_column(),
        Column("Status", "string", "", "The status of the namespace"),
        age_column(),
    )

    def row(self, obj: Obj) -> list[Any]:
        return [
            meta(obj).get("name", ""),
            str(get(obj, "status", "phase", default="")),
            age(get(obj, "metadata", "creationTimestamp")),
        ]


NAMESPACE = Kind(
    group="",
    version="v1",
    kind="Namespace",
    plural="namespaces",
    namespaced=False,
    strategy=NamespaceStrategy(),
    short_names=("ns",),
    subresources=(STATUS, Subresource("finalize", ("update",))),
    # the namespace REST storage has no DeleteCollection
    verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
    schema_ref="io.k8s.api.core.v1.Namespace",
    name_validator=name_is_dns_label,
)
