"""PersistentVolume and PersistentVolumeClaim (core/v1) and StorageClass (storage.k8s.io/v1):
pkg/registry/core/persistentvolume{,claim}, pkg/registry/storage/storageclass, their
validation (pkg/apis/core/validation ValidatePersistentVolume*/ValidatePersistentVolumeClaim*,
pkg/apis/storage/validation ValidateStorageClass*), defaulting (pkg/apis/core/v1 and
pkg/apis/storage/v1 defaults.go) and printing (pkg/printers/internalversion/printers.go).

The PV controller (kubelite/controllers/persistentvolume.py) binds claims to volumes through
these objects; DefaultStorageClass and StorageObjectInUseProtection admission
(kubelite/admission/storage.py) fill in a claim's class and the protection finalizers."""

from __future__ import annotations

import copy
from typing import Any

from kubelite.api import field as f
from kubelite.api import quantity
from kubelite.api.field import FieldError, Path
from kubelite.api.meta import is_qualified_name, name_is_dns_subdomain, now_rfc3339, validate_label_name
from kubelite.api.selectors import validate_label_selector
from kubelite.kinds._pod_validation import _HOST_PATH_TYPES, _no_backsteps, _spec_diff
from kubelite.kinds._printing import age, age_column, doc, get, meta, name_column
from kubelite.kinds.base import STATUS, Column, Kind, Obj, Strategy

PV_D = "io.k8s.api.core.v1.PersistentVolume"
PVC_D = "io.k8s.api.core.v1.PersistentVolumeClaim"
SC_D = "io.k8s.api.storage.v1.StorageClass"

ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")  # sets.List order
_MODE_ABBREV = (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"),
                ("ReadWriteOncePod", "RWOP"))
PV_RECLAIM_POLICIES = ("Delete", "Recycle", "Retain")
SC_RECLAIM_POLICIES = ("Delete", "Retain")
VOLUME_MODES = ("Block", "Filesystem")
BINDING_MODES = ("Immediate", "WaitForFirstConsumer")
NOT_POSITIVE = "must be greater than zero"
IS_NEGATIVE = "must be greater than or equal to 0"

BETA_STORAGE_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"
LOCAL_PATH_PROVISIONER = "rancher.io/local-path"
# where a node agent keeps its local-path volumes (published on its Node; see controllers/localpath.py)
LOCAL_PATH_DIR_ANNOTATION = "kubelite.io/local-path-dir"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
BETA_DEFAULT_CLASS_ANNOTATION = "storageclass.beta.kubernetes.io/is-default-class"

# the PersistentVolumeSource members, in ValidatePersistentVolumeSpec's order (json name, the path
# upstream reports for its own errors)
PV_SOURCES = ("hostPath", "gcePersistentDisk", "awsElasticBlockStore", "glusterfs", "flocker", "nfs", "rbd",
              "quobyte", "cephfs", "iscsi", "cinder", "fc", "flexVolume", "azureFile", "vsphereVolume",
              "photonPersistentDisk", "portworxVolume", "azureDisk", "scaleIO", "local", "storageos", "csi")
_SECOND_SOURCE_PATH = {"cephfs": "cephFS"}


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


# ------------------------------------------------------------------------------------ helpers
def access_modes_string(modes: Any) -> str:
    """helper.GetAccessModesAsString: RWO,ROX,RWX,RWOP in that order, each once."""
    have = set(m for m in _l(modes) if isinstance(m, str))
    return ",".join(short for mode, short in _MODE_ABBREV if mode in have)


def claim_class(pvc: Obj) -> str:
    """storagehelpers.GetPersistentVolumeClaimClass: the beta annotation first, then the field."""
    ann = _d(meta(pvc).get("annotations"))
    if BETA_STORAGE_CLASS_ANNOTATION in ann:
        return str(ann[BETA_STORAGE_CLASS_ANNOTATION])
    return str(_d(pvc.get("spec")).get("storageClassName") or "")


def volume_class(pv: Obj) -> str:
    """storagehelpers.GetPersistentVolumeClass."""
    ann = _d(meta(pv).get("annotations"))
    if BETA_STORAGE_CLASS_ANNOTATION in ann:
        return str(ann[BETA_STORAGE_CLASS_ANNOTATION])
    return str(_d(pv.get("spec")).get("storageClassName") or "")


def claim_request(claim: Obj) -> Any:
    """The claim's ``resources.requests.storage`` as a Decimal (0 when missing or malformed)."""
    from decimal import Decimal

    v = _d(_d(_d(claim.get("spec")).get("resources")).get("requests")).get("storage")
    try:
        return quantity.parse_quantity(v) if v is not None else Decimal(0)
    except (ValueError, TypeError, ArithmeticError):
        return Decimal(0)


def is_default_class(sc: Obj) -> bool:
    """storageutil.IsDefaultAnnotation."""
    ann = _d(meta(sc).get("annotations"))
    return ann.get(DEFAULT_CLASS_ANNOTATION) == "true" or ann.get(BETA_DEFAULT_CLASS_ANNOTATION) == "true"


def _quantity_string(v: Any) -> str:
    try:
        return quantity.canonicalize(v)
    except (ValueError, TypeError, ArithmeticError):
        return str(v)


def _quantity_errs(v: Any, path: Path, positive: bool) -> list[FieldError]:
    try:
        q = quantity.parse_quantity(v)
    except (ValueError, TypeError, ArithmeticError):
        return [f.invalid(path, str(v), quantity.ERR_FORMAT_WRONG)]
    if positive and q <= 0:
        return [f.invalid(path, _quantity_string(v), NOT_POSITIVE)]
    if q < 0:
        return [f.invalid(path, _quantity_string(v), IS_NEGATIVE)]
    return []


def _access_modes(modes: Any, path: Path, required_detail: str | None) -> list[FieldError]:
    errs: list[FieldError] = []
    modes = _l(modes)
    if not modes and required_detail is not None:
        errs.append(f.required(path, required_detail))
    rwop = other = False
    for m in modes:
        if m not in ACCESS_MODES:
            errs.append(f.not_supported(path, m, ACCESS_MODES))
        if m == "ReadWriteOncePod":
            rwop = True
        elif m in ACCESS_MODES:
            other = True
    if rwop and other:
        errs.append(f.forbidden(path, "may not use ReadWriteOncePod with other access modes"))
    return errs


def _class_name(name: Any, path: Path) -> list[FieldError]:
    return [f.invalid(path, name, m) for m in name_is_dns_subdomain(str(name), False)]


_NODE_OPS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")


def validate_node_selector(sel: Any, path: Path) -> list[FieldError]:
    """ValidateNodeSelector (with ValidateNodeSelectorTerm and its requirements)."""
    errs: list[FieldError] = []
    terms = _l(_d(sel).get("nodeSelectorTerms"))
    if not terms:
        return [f.required(path.child("nodeSelectorTerms"), "must have at least one node selector term")]
    for i, term in enumerate(terms):
        tp = path.child("nodeSelectorTerms").index(i)
        for j, rq in enumerate(_l(_d(term).get("matchExpressions"))):
            rp = tp.child("matchExpressions").index(j)
            rq = _d(rq)
            op, values = rq.get("operator"), _l(rq.get("values"))
            if op in ("In", "NotIn"):
                if not values:
                    errs.append(f.required(rp.child("values"), "must be specified when `operator` is 'In' or 'NotIn'"))
            elif op in ("Exists", "DoesNotExist"):
                if values:
                    errs.append(f.forbidden(rp.child("values"),
                                            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
            elif op in ("Gt", "Lt"):
                if len(values) != 1:
                    errs.append(f.required(rp.child("values"),
                                           "must be specified single value when `operator` is 'Lt' or 'Gt'"))
            else:
                errs.append(f.invalid(rp.child("operator"), op, "not a valid selector operator"))
            errs += validate_label_name(str(rq.get("key") or ""), rp.child("key"))
        for j, rq in enumerate(_l(_d(term).get("matchFields"))):
            rp = tp.child("matchFields").index(j)
            rq = _d(rq)
            if rq.get("key") != "metadata.name":
                errs.append(f.invalid(rp.child("key"), rq.get("key"), "not a valid field selector key"))
            if rq.get("operator") in ("In", "NotIn"):
                if len(_l(rq.get("values"))) != 1:
                    errs.append(f.required(rp.child("values"),
                                           "must be only one value when `operator` is 'In' or 'NotIn' for node "
                                           "field selector"))
            else:
                errs.append(f.invalid(rp.child("operator"), rq.get("operator"), "not a valid selector operator"))
    return errs


def _source_errs(key: str, src: dict[str, Any], path: Path) -> list[FieldError]:
    """The per-source checks for the sources a node can serve (hostPath, local, nfs, csi)."""
    errs: list[FieldError] = []
    if key in ("hostPath", "local"):
        if not src.get("path"):
            return [f.required(path.child("path"), "")]
        errs += _no_backsteps(str(src["path"]), path.child("path"))
        if key == "hostPath":
            t = src.get("type")
            if t is not None and t not in _HOST_PATH_TYPES:
                errs.append(f.not_supported(path.child("type"), t, list(_HOST_PATH_TYPES)))
    elif key == "nfs":
        if not src.get("server"):
            errs.append(f.required(path.child("server"), ""))
        if not src.get("path"):
            errs.append(f.required(path.child("path"), ""))
        if not str(src.get("path") or "").startswith("/"):
            errs.append(f.invalid(path.child("path"), src.get("path") or "", "must be an absolute path"))
    elif key == "csi":
        if not src.get("driver"):
            errs.append(f.required(path.child("driver"), ""))
        if not src.get("volumeHandle"):
            errs.append(f.required(path.child("volumeHandle"), ""))
    return errs


# ------------------------------------------------------------------------------ PersistentVolume
def validate_pv_spec(spec: dict[str, Any], path: Path) -> list[FieldError]:
    """ValidatePersistentVolumeSpec (not inline)."""
    errs = _access_modes(spec.get("accessModes"), path.child("accessModes"), "")
    cap = spec.get("capacity")
    cap = cap if isinstance(cap, dict) else {}
    if not cap:
        errs.append(f.required(path.child("capacity"), ""))
    if "storage" not in cap or len(cap) > 1:
        errs.append(f.not_supported(path.child("capacity"), _GoMap(cap), ["storage"]))
    for r, qty in cap.items():
        errs += _quantity_errs(qty, path.child("capacity").key(r), positive=True)
    policy = spec.get("persistentVolumeReclaimPolicy")
    if policy and policy not in PV_RECLAIM_POLICIES:
        errs.append(f.not_supported(path.child("persistentVolumeReclaimPolicy"), policy, PV_RECLAIM_POLICIES))
    affinity_set = False
    if spec.get("nodeAffinity") is not None:
        affinity_set = True
        na = _d(spec.get("nodeAffinity"))
        if na.get("required") is not None:
            errs += validate_node_selector(na["required"], path.child("nodeAffinity", "required"))
        else:
            errs.append(f.required(path.child("nodeAffinity", "required"), "must specify required node constraints"))
    n = 0
    for key in PV_SOURCES:
        if spec.get(key) is None:
            continue
        if n > 0 and key != "flexVolume":
            errs.append(f.forbidden(path.child(_SECOND_SOURCE_PATH.get(key, key)),
                                    "may not specify more than 1 volume type"))
            continue
        n += 1
        errs += _source_errs(key, _d(spec[key]), path.child(key))
        if key == "local" and not affinity_set:
            errs.append(f.required(path.child("nodeAffinity"), "Local volume requires node affinity"))
    if n == 0:
        errs.append(f.required(path, "must specify a volume type"))
    hp = _d(spec.get("hostPath"))
    if hp and str(hp.get("path") or "").rstrip("/") == "" and str(hp.get("path")).startswith("/") \
            and policy == "Recycle":
        errs.append(f.forbidden(path.child("persistentVolumeReclaimPolicy"),
                                "may not be 'recycle' for a hostPath mount of '/'"))
    if spec.get("storageClassName"):
        errs += _class_name(spec["storageClassName"], path.child("storageClassName"))
    mode = spec.get("volumeMode")
    if mode is not None and mode not in VOLUME_MODES:
        errs.append(f.not_supported(path.child("volumeMode"), mode, VOLUME_MODES))
    vac = spec.get("volumeAttributesClassName")
    if vac is not None:
        if vac == "":
            errs.append(f.required(path.child("volumeAttributesClassName"), "an empty string is disallowed"))
        else:
            errs += _class_name(vac, path.child("volumeAttributesClassName"))
        if spec.get("csi") is None:
            errs.append(f.required(path.child("csi"), "has to be specified when using volumeAttributesClassName"))
    return errs


class _GoMap:
    """A ResourceList as Go's %v prints it in NotSupported: map[storage:{...}] is unreadable, so
    upstream's message shows the map; kubelite prints its JSON form."""

    def __init__(self, value: dict[str, Any]) -> None:
        self.value = value

    def __str__(self) -> str:
        return "map[" + " ".join(f"{k}:{v}" for k, v in sorted(self.value.items())) + "]"


def _source_of(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: spec[k] for k in PV_SOURCES if spec.get(k) is not None}


class PersistentVolumeStrategy(Strategy):
    def default(self, obj: Obj) -> None:
        """SetDefaults_PersistentVolume (+ the hostPath type's default)."""
        spec = obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
        if not spec.get("persistentVolumeReclaimPolicy"):
            spec["persistentVolumeReclaimPolicy"] = "Retain"
        if spec.get("volumeMode") is None:
            spec["volumeMode"] = "Filesystem"
        if isinstance(spec.get("hostPath"), dict) and spec["hostPath"].get("type") is None:
            spec["hostPath"]["type"] = ""
        status = obj.get("status")
        if isinstance(status, dict) and not status.get("phase"):
            status["phase"] = "Pending"

    def prepare_for_create(self, obj: Obj) -> None:
        obj["status"] = {"phase": "Pending", "lastPhaseTransitionTime": now_rfc3339()}

    def validate(self, obj: Obj) -> list[FieldError]:
        spec = obj.get("spec")
        return validate_pv_spec(spec if isinstance(spec, dict) else {}, Path("spec"))

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        new["status"] = copy.deepcopy(old.get("status") or {})

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        """ValidatePersistentVolumeUpdate."""
        errs = self.validate(new)
        ns, os_ = _d(new.get("spec")), _d(old.get("spec"))
        if _source_of(ns) != _source_of(os_):
            errs.append(f.forbidden(Path("spec", "persistentvolumesource"),
                                    "spec.persistentvolumesource is immutable after creation\n"
                                    + _spec_diff(_source_of(os_), _source_of(ns), "core.PersistentVolumeSource")))
        if ns.get("volumeMode") != os_.get("volumeMode"):
            errs.append(f.invalid(Path("volumeMode"), ns.get("volumeMode"), "field is immutable"))
        if os_.get("nodeAffinity") is not None and ns.get("nodeAffinity") != os_.get("nodeAffinity"):
            errs.append(f.invalid(Path("nodeAffinity"), _GoJSONish(ns.get("nodeAffinity")), "field is immutable"))
        if os_.get("volumeAttributesClassName") is not None and ns.get("volumeAttributesClassName") is None:
            errs.append(f.forbidden(Path("spec", "volumeAttributesClassName"),
                                    "update from non-nil value to nil is forbidden"))
        return errs

    def status_prepare_for_update(self, new: Obj, old: Obj) -> None:
        super().status_prepare_for_update(new, old)
        ophase = _d(old.get("status")).get("phase")
        status = new.get("status")
        if isinstance(status, dict) and status.get("phase") != ophase:  # PersistentVolumeLastPhaseTransitionTime
            status["lastPhaseTransitionTime"] = now_rfc3339()

    columns = (
        name_column(),
        Column("Capacity", "string", "", doc("io.k8s.api.core.v1.PersistentVolumeSpec", "capacity")),
        Column("Access Modes", "string", "", doc("io.k8s.api.core.v1.PersistentVolumeSpec", "accessModes")),
        Column("Reclaim Policy", "string", "",
               doc("io.k8s.api.core.v1.PersistentVolumeSpec", "persistentVolumeReclaimPolicy")),
        Column("Status", "string", "", doc("io.k8s.api.core.v1.PersistentVolumeStatus", "phase")),
        Column("Claim", "string", "", doc("io.k8s.api.core.v1.PersistentVolumeSpec", "claimRef")),
        Column("StorageClass", "string", "", "StorageClass of the pv"),
        Column("VolumeAttributesClass", "string", "", "VolumeAttributesClass of the pv"),
        Column("Reason", "string", "", doc("io.k8s.api.core.v1.PersistentVolumeStatus", "reason")),
        age_column(),
        Column("VolumeMode", "string", "", doc("io.k8s.api.core.v1.PersistentVolumeSpec", "volumeMode"), 1),
    )

    def row(self, obj: Obj) -> list[Any]:
        """printPersistentVolume."""
        spec, status, m = _d(obj.get("spec")), _d(obj.get("status")), meta(obj)
        ref = _d(spec.get("claimRef"))
        claim = f"{ref.get('namespace', '')}/{ref.get('name', '')}" if spec.get("claimRef") is not None else ""
        cap = _d(spec.get("capacity")).get("storage")
        phase = "Terminating" if m.get("deletionTimestamp") else status.get("phase", "")
        return [m.get("name", ""), _quantity_string(cap) if cap is not None else "0",
                access_modes_string(spec.get("accessModes")), spec.get("persistentVolumeReclaimPolicy") or "",
                phase, claim, volume_class(obj), spec.get("volumeAttributesClassName") or "<unset>",
                status.get("reason") or "", age(m.get("creationTimestamp")), spec.get("volumeMode") or "<unset>"]


class _GoJSONish:
    def __init__(self, value: Any) -> None:
        self.value = value

    def __str__(self) -> str:
        import json

        return json.dumps(self.value, separators=(",", ":"))


# ------------------------------------------------------------------------- PersistentVolumeClaim
def validate_pvc_spec(spec: dict[str, Any], path: Path) -> list[FieldError]:
    """ValidatePersistentVolumeClaimSpec."""
    errs: list[FieldError] = []
    if not _l(spec.get("accessModes")):
        errs.append(f.required(path.child("accessModes"), "at least 1 access mode is required"))
    if spec.get("selector") is not None:
        errs += validate_label_selector(_d(spec.get("selector")), path.child("selector"))
    errs += _access_modes(spec.get("accessModes"), path.child("accessModes"), None)
    requests = _d(_d(spec.get("resources")).get("requests"))
    rpath = path.child("resources").key("storage")
    if "storage" not in requests:
        errs.append(f.required(rpath, ""))
    else:
        errs += _quantity_errs(requests["storage"], rpath, positive=True)
    if spec.get("storageClassName"):
        errs += _class_name(spec["storageClassName"], path.child("storageClassName"))
    mode = spec.get("volumeMode")
    if mode is not None and mode not in VOLUME_MODES:
        errs.append(f.not_supported(path.child("volumeMode"), mode, VOLUME_MODES))
    for key in ("dataSource", "dataSourceRef"):
        ds = spec.get(key)
        if ds is None:
            continue
        ds, dp = _d(ds), path.child(key)
        if not ds.get("name"):
            errs.append(f.required(dp.child("name"), ""))
        if not ds.get("kind"):
            errs.append(f.required(dp.child("kind"), ""))
        group = ds.get("apiGroup") or ""
        if not group and ds.get("kind") != "PersistentVolumeClaim":
            errs.append(f.invalid(dp, ds.get("kind") or "",
                                  "must be 'PersistentVolumeClaim' when referencing the default apiGroup"))
    if spec.get("volumeAttributesClassName"):
        errs += _class_name(spec["volumeAttributesClassName"], path.child("volumeAttributesClassName"))
    return errs


class PersistentVolumeClaimStrategy(Strategy):
    def default(self, obj: Obj) -> None:
        """SetDefaults_PersistentVolumeClaim(Spec)."""
        spec = obj.setdefault("spec", {})
        if isinstance(spec, dict) and spec.get("volumeMode") is None:
            spec["volumeMode"] = "Filesystem"
        status = obj.get("status")
        if isinstance(status, dict) and not status.get("phase"):
            status["phase"] = "Pending"

    def prepare_for_create(self, obj: Obj) -> None:
        obj["status"] = {"phase": "Pending"}

    def validate(self, obj: Obj) -> list[FieldError]:
        spec = obj.get("spec")
        return validate_pvc_spec(spec if isinstance(spec, dict) else {}, Path("spec"))

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        new["status"] = copy.deepcopy(old.get("status") or {})

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        """ValidatePersistentVolumeClaimUpdate: the spec is immutable but for a first volumeName,
        a class given where there was none, and a bound claim's storage request (expansion)."""
        errs = self.validate(new)
        ns, os_ = copy.deepcopy(_d(new.get("spec"))), copy.deepcopy(_d(old.get("spec")))
        if not os_.get("volumeName"):
            os_["volumeName"] = ns.get("volumeName")
            if os_["volumeName"] is None:
                os_.pop("volumeName")
        old_ann, new_ann = _d(meta(old).get("annotations")), _d(meta(new).get("annotations"))
        beta = BETA_STORAGE_CLASS_ANNOTATION
        if new_ann.get(beta) != old_ann.get(beta):
            errs.append(f.invalid(Path("metadata", "annotations").key(beta), new_ann.get(beta, ""),
                                  "field is immutable"))
        if os_.get("storageClassName") is None and ns.get("storageClassName") is not None and (
                beta not in old_ann or ns["storageClassName"] == old_ann[beta]):
            os_["storageClassName"] = ns["storageClassName"]
        new_phase = _d(new.get("status")).get("phase")
        if new_phase == "Bound" and isinstance(_d(ns.get("resources")).get("requests"), dict):
            old_req = _d(_d(os_.get("resources")).get("requests"))
            ns["resources"]["requests"]["storage"] = old_req.get("storage")
            if ns["resources"]["requests"]["storage"] is None:
                del ns["resources"]["requests"]["storage"]
        ns["volumeAttributesClassName"] = os_.get("volumeAttributesClassName")
        for s in (ns, os_):
            if s.get("volumeAttributesClassName") is None:
                s.pop("volumeAttributesClassName", None)
        if _norm(ns) != _norm(os_):
            errs.append(f.forbidden(Path("spec"), "spec is immutable after creation except resources.requests and "
                                                  "volumeAttributesClassName for bound claims\n"
                                    + _spec_diff(os_, ns, "core.PersistentVolumeClaimSpec")))
        sizes = [_size(_d(_d(_d(o.get("spec")).get("resources")).get("requests")).get("storage")) for o in (old, new)]
        status_size = _size(_d(_d(old.get("status")).get("capacity")).get("storage"))
        if sizes[0] is not None and sizes[1] is not None and sizes[1] < sizes[0] and sizes[1] <= (status_size or 0):
            errs.append(f.forbidden(Path("spec", "resources", "requests", "storage"),
                                    "field can not be less than status.capacity"))
        if _d(new.get("spec")).get("volumeMode") != _d(old.get("spec")).get("volumeMode"):
            errs.append(f.invalid(Path("volumeMode"), _d(new.get("spec")).get("volumeMode"), "field is immutable"))
        return errs

    def validate_status_update(self, new: Obj, old: Obj) -> list[FieldError]:
        """ValidatePersistentVolumeClaimStatusUpdate."""
        errs: list[FieldError] = []
        if not _l(_d(new.get("spec")).get("accessModes")):
            errs.append(f.required(Path("Spec", "accessModes"), ""))
        for r, qty in _d(_d(new.get("status")).get("capacity")).items():
            errs += _quantity_errs(qty, Path("status", "capacity").key(r), positive=False)
        return errs

    columns = (
        name_column(),
        Column("Status", "string", "", doc("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "phase")),
        Column("Volume", "string", "", doc("io.k8s.api.core.v1.PersistentVolumeClaimSpec", "volumeName")),
        Column("Capacity", "string", "", doc("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "capacity")),
        Column("Access Modes", "string", "", doc("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "accessModes")),
        Column("StorageClass", "string", "", "StorageClass of the pvc"),
        Column("VolumeAttributesClass", "string", "", "VolumeAttributesClass of the pvc"),
        age_column(),
        Column("VolumeMode", "string", "", doc("io.k8s.api.core.v1.PersistentVolumeClaimSpec", "volumeMode"), 1),
    )

    def row(self, obj: Obj) -> list[Any]:
        """printPersistentVolumeClaim."""
        spec, status, m = _d(obj.get("spec")), _d(obj.get("status")), meta(obj)
        phase = "Terminating" if m.get("deletionTimestamp") else status.get("phase", "")
        capacity = modes = ""
        if spec.get("volumeName"):
            modes = access_modes_string(status.get("accessModes"))
            cap = _d(status.get("capacity")).get("storage")
            capacity = _quantity_string(cap) if cap is not None else "0"
        vac = spec.get("volumeAttributesClassName") or "<unset>"
        return [m.get("name", ""), phase, spec.get("volumeName") or "", capacity, modes, claim_class(obj), vac,
                age(m.get("creationTimestamp")), spec.get("volumeMode") or "<unset>"]

    def usage(self, obj: Obj) -> dict[str, Any]:
        """The PVC quota evaluator: persistentvolumeclaims and requests.storage (also per class)."""
        from decimal import Decimal

        out: dict[str, Decimal] = {"persistentvolumeclaims": Decimal(1)}
        req = _d(_d(_d(obj.get("spec")).get("resources")).get("requests")).get("storage")
        try:
            size = quantity.parse_quantity(req) if req is not None else Decimal(0)
        except (ValueError, TypeError, ArithmeticError):
            size = Decimal(0)
        out["requests.storage"] = size
        cls = claim_class(obj)
        if cls:
            out[f"{cls}.storageclass.storage.k8s.io/persistentvolumeclaims"] = Decimal(1)
            out[f"{cls}.storageclass.storage.k8s.io/requests.storage"] = size
        return out


def _size(v: Any) -> Any:
    if v is None:
        return None
    try:
        return quantity.parse_quantity(v)
    except (ValueError, TypeError, ArithmeticError):
        return None


def _norm(v: Any) -> Any:
    """Semantic equality: empty maps/lists and missing keys are alike, quantities by value."""
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items() if x not in (None, {}, [], "")}
    if isinstance(v, list):
        return [_norm(x) for x in v]
    return v


# ---------------------------------------------------------------------------------- StorageClass
MAX_PARAMETERS = 512
MAX_PARAMETERS_SIZE = 256 * (1 << 10)


class StorageClassStrategy(Strategy):
    def default(self, obj: Obj) -> None:
        """SetDefaults_StorageClass."""
        if not obj.get("reclaimPolicy"):
            obj["reclaimPolicy"] = "Delete"
        if not obj.get("volumeBindingMode"):
            obj["volumeBindingMode"] = "Immediate"

    def validate(self, obj: Obj) -> list[FieldError]:
        """ValidateStorageClass."""
        errs: list[FieldError] = []
        prov = obj.get("provisioner") or ""
        if not prov:
            errs.append(f.required(Path("provisioner"), ""))
        else:
            errs += [f.invalid(Path("provisioner"), str(prov).lower(), m) for m in is_qualified_name(str(prov).lower())]
        params = _d(obj.get("parameters"))
        if len(params) > MAX_PARAMETERS:
            errs.append(f.too_long(Path("parameters"), MAX_PARAMETERS))
        else:
            total = 0
            for k, v in params.items():
                if not k:
                    errs.append(f.invalid(Path("parameters"), k, "field can not be empty."))
                total += len(k) + len(str(v))
            if total > MAX_PARAMETERS_SIZE:
                errs.append(f.too_long(Path("parameters"), MAX_PARAMETERS_SIZE))
        policy = obj.get("reclaimPolicy")
        if policy and policy not in SC_RECLAIM_POLICIES:
            errs.append(f.not_supported(Path("reclaimPolicy"), policy, SC_RECLAIM_POLICIES))
        mode = obj.get("volumeBindingMode")
        if mode is None:
            errs.append(f.required(Path("volumeBindingMode"), ""))
        elif mode not in BINDING_MODES:
            errs.append(f.not_supported(Path("volumeBindingMode"), mode, BINDING_MODES))
        for i, term in enumerate(_l(obj.get("allowedTopologies"))):
            tp = Path("allowedTopologies").index(i)
            exprs = _l(_d(term).get("matchLabelExpressions"))
            if not exprs:
                errs.append(f.required(tp.child("matchLabelExpressions"), "must contain at least one key/value pair"))
            seen: set[str] = set()
            for j, e in enumerate(exprs):
                ep = tp.child("matchLabelExpressions").index(j)
                key = str(_d(e).get("key") or "")
                errs += validate_label_name(key, ep.child("key"))
                if key in seen:
                    errs.append(f.duplicate(ep.child("key"), key))
                seen.add(key)
                if not _l(_d(e).get("values")):
                    errs.append(f.required(ep.child("values"), "must specify as least one value for label key"))
        return errs

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        """ValidateStorageClassUpdate."""
        errs = self.validate(new)
        if (new.get("parameters") or {}) != (old.get("parameters") or {}):
            errs.append(f.forbidden(Path("parameters"), "updates to parameters are forbidden."))
        if new.get("provisioner") != old.get("provisioner"):
            errs.append(f.forbidden(Path("provisioner"), "updates to provisioner are forbidden."))
        if new.get("reclaimPolicy") != old.get("reclaimPolicy"):
            errs.append(f.forbidden(Path("reclaimPolicy"), "updates to reclaimPolicy are forbidden."))
        if new.get("volumeBindingMode") != old.get("volumeBindingMode"):
            errs.append(f.invalid(Path("volumeBindingMode"), new.get("volumeBindingMode"), "field is immutable"))
        return errs

    columns = (
        name_column(),
        Column("Provisioner", "string", "", doc(SC_D, "provisioner")),
        Column("ReclaimPolicy", "string", "", doc(SC_D, "reclaimPolicy")),
        Column("VolumeBindingMode", "string", "", doc(SC_D, "volumeBindingMode")),
        Column("AllowVolumeExpansion", "string", "", doc(SC_D, "allowVolumeExpansion")),
        age_column(),
    )

    def row(self, obj: Obj) -> list[Any]:
        """printStorageClass: the default class is named "NAME (default)"."""
        name = meta(obj).get("name", "")
        if is_default_class(obj):
            name += " (default)"
        return [name, obj.get("provisioner", ""), obj.get("reclaimPolicy") or "Delete",
                obj.get("volumeBindingMode") or "Immediate", "true" if obj.get("allowVolumeExpansion") else "false",
                age(get(obj, "metadata", "creationTimestamp"))]


PERSISTENTVOLUME = Kind(group="", version="v1", kind="PersistentVolume", plural="persistentvolumes",
                        namespaced=False, strategy=PersistentVolumeStrategy(), short_names=("pv",),
                        subresources=(STATUS,), schema_ref=PV_D, name_validator=name_is_dns_subdomain)
PERSISTENTVOLUMECLAIM = Kind(group="", version="v1", kind="PersistentVolumeClaim", plural="persistentvolumeclaims",
                             namespaced=True, strategy=PersistentVolumeClaimStrategy(), short_names=("pvc",),
                             subresources=(STATUS,), schema_ref=PVC_D, name_validator=name_is_dns_subdomain)
STORAGECLASS = Kind(group="storage.k8s.io", version="v1", kind="StorageClass", plural="storageclasses",
                    namespaced=False, strategy=StorageClassStrategy(), short_names=("sc",), schema_ref=SC_D,
                    name_validator=name_is_dns_subdomain)
