"""Pods: v1 defaulting, the create-time admission defaults, the pod strategy, QoS and the Table.

Upstream sources mirrored here: pkg/apis/core/v1/defaults.go (SetDefaults_Pod, _PodSpec,
_Container, _Probe, volume sources), the ServiceAccount, Priority and DefaultTolerationSeconds
admission plugins, pkg/registry/core/pod/strategy.go, pkg/apis/core/helper/qos and
pkg/printers/internalversion printPod. Validation lives in ``_pod_validation``.
"""

from __future__ import annotations

import copy
import re
from decimal import Decimal
from typing import Any

from kubelite.api import errors, meta
from kubelite.api.field import FieldError
from kubelite.apiserver.rest import NODE_STREAMS
from kubelite.kinds import _pod_validation as pv
from kubelite.kinds import pod_rest, podutil
from kubelite.kinds._pod_printing import pod_columns, pod_row
from kubelite.kinds._printing import age, human_duration
from kubelite.kinds.base import STATUS, Column, Kind, Obj, Strategy, Subresource
from kubelite.kinds.podutil import (
    DEFAULT_SERVICE_ACCOUNT,
    PROBE_DEFAULTS,
    compute_qos_class,
    is_terminal,
    qos_class,
    quota_usage,
)

__all__ = [
    "POD", "PodStrategy", "age", "human_duration", "validate_binding", "image_pull_policy", "default_pod",
    "admit_pod",
]

DEFAULT_TOLERATION_SECONDS = 300
TAINT_NODE_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_NODE_UNREACHABLE = "node.kubernetes.io/unreachable"

_QUANTITY_DECODE_ERROR = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)


# ----------------------------------------------------------------------------- image references
# A close rendering of distribution/reference's grammar, enough for ParseNormalizedNamed.
_ALNUM = r"[a-z0-9]+"
_SEP = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEP}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"^(?P<name>(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)


def _image_tag(image: str) -> str:
    """parsers.ParseImageName's tag: 'latest' when neither tag nor digest, '' on a parse error."""
    m = _REFERENCE.match(image or "")
    if not m or len(m.group("name")) > 255:
        return ""
    tag, digest = m.group("tag"), m.group("digest")
    if not tag and not digest:
        return "latest"
    return tag or ""


def image_pull_policy(image: str) -> str:
    """SetDefaults_Container: Always for ':latest' (or no tag nor digest), else IfNotPresent."""
    return "Always" if _image_tag(image) == "latest" else "IfNotPresent"


# ----------------------------------------------------------------------------- defaulting
def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _canonical_resource_list(rl: Any) -> None:
    """SetDefaults_ResourceList (round up to milli) plus the canonical serialization."""
    if not isinstance(rl, dict):
        return
    from kubelite.api import quantity

    for k, v in list(rl.items()):
        try:
            rl[k] = quantity.canonicalize(v if isinstance(v, str) else str(v))
        except (ValueError, TypeError, ArithmeticError):
            raise errors.bad_request(f'Pod in version "v1" cannot be handled as a Pod: {_QUANTITY_DECODE_ERROR}') \
                from None


def _default_http_get(h: Any) -> None:
    if isinstance(h, dict):
        if not h.get("path"):
            h["path"] = "/"
        if not h.get("scheme"):
            h["scheme"] = "HTTP"


def _default_handler(h: Any) -> None:
    if isinstance(h, dict):
        _default_http_get(h.get("httpGet"))
        g = h.get("grpc")
        if isinstance(g, dict) and g.get("service") is None:
            g["service"] = ""


def _default_probe(p: Any) -> None:
    if not isinstance(p, dict):
        return
    for k, v in PROBE_DEFAULTS.items():
        if not p.get(k):
            p[k] = v
    _default_handler(p)


def _default_field_ref(fr: Any) -> None:
    if isinstance(fr, dict) and not fr.get("apiVersion"):
        fr["apiVersion"] = "v1"


def _default_resource_field_ref(rf: Any) -> None:
    if isinstance(rf, dict):
        from kubelite.api import quantity

        try:
            rf["divisor"] = quantity.canonicalize(str(rf.get("divisor", "0") or "0"))
        except (ValueError, TypeError, ArithmeticError):
            raise errors.bad_request(f'Pod in version "v1" cannot be handled as a Pod: {_QUANTITY_DECODE_ERROR}') \
                from None


def _default_container(c: Any, host_network: bool) -> None:
    if not isinstance(c, dict):
        return
    if not c.get("imagePullPolicy"):
        c["imagePullPolicy"] = image_pull_policy(c.get("image") or "")
    if not c.get("terminationMessagePath"):
        c["terminationMessagePath"] = "/dev/termination-log"
    if not c.get("terminationMessagePolicy"):
        c["terminationMessagePolicy"] = "File"
    for p in _l(c.get("ports")):
        if isinstance(p, dict):
            if not p.get("protocol"):
                p["protocol"] = "TCP"
            if host_network and not p.get("hostPort") and p.get("containerPort"):
                p["hostPort"] = p["containerPort"]
    for e in _l(c.get("env")):
        vf = _d(_d(e).get("valueFrom"))
        _default_field_ref(vf.get("fieldRef"))
        _default_resource_field_ref(vf.get("resourceFieldRef"))
    for k in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(c.get(k))
    lc = c.get("lifecycle")
    if isinstance(lc, dict):
        _default_handler(lc.get("postStart"))
        _default_handler(lc.get("preStop"))
    res = c.get("resources")
    if res is None:
        c["resources"] = res = {}
    if isinstance(res, dict):
        _canonical_resource_list(res.get("limits"))
        _canonical_resource_list(res.get("requests"))


_VOLUME_SOURCES = (
    "hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "secret", "nfs", "iscsi",
    "glusterfs", "persistentVolumeClaim", "rbd", "flexVolume", "cinder", "cephfs", "flocker", "downwardAPI", "fc",
    "azureFile", "configMap", "vsphereVolume", "quobyte", "azureDisk", "photonPersistentDisk", "projected",
    "portworxVolume", "scaleIO", "storageos", "csi", "ephemeral", "image",
)


def _default_volume(v: Any) -> None:
    if not isinstance(v, dict):
        return
    if not any(v.get(k) is not None for k in _VOLUME_SOURCES):
        v["emptyDir"] = {}
    hp = v.get("hostPath")
    if isinstance(hp, dict) and hp.get("type") is None:
        hp["type"] = ""
    ed = v.get("emptyDir")
    if isinstance(ed, dict) and ed.get("sizeLimit") is not None:
        _canonical_resource_list(ed_holder := {"sizeLimit": ed["sizeLimit"]})
        ed["sizeLimit"] = ed_holder["sizeLimit"]
    for k in ("secret", "configMap", "downwardAPI", "projected"):
        s = v.get(k)
        if isinstance(s, dict) and s.get("defaultMode") is None:
            s["defaultMode"] = 420
    for item in _l(_d(v.get("downwardAPI")).get("items")):
        _default_field_ref(_d(item).get("fieldRef"))
        _default_resource_field_ref(_d(item).get("resourceFieldRef"))
    for src in _l(_d(v.get("projected")).get("sources")):
        src = _d(src)
        sat = src.get("serviceAccountToken")
        if isinstance(sat, dict) and sat.get("expirationSeconds") is None:
            sat["expirationSeconds"] = 3600
        for item in _l(_d(src.get("downwardAPI")).get("items")):
            _default_field_ref(_d(item).get("fieldRef"))
            _default_resource_field_ref(_d(item).get("resourceFieldRef"))
    img = v.get("image")
    if isinstance(img, dict) and not img.get("pullPolicy"):
        img["pullPolicy"] = image_pull_policy(img.get("reference") or "")
    eph = _d(_d(v.get("ephemeral")).get("volumeClaimTemplate")).get("spec")
    if isinstance(eph, dict) and eph.get("volumeMode") is None:
        eph["volumeMode"] = "Filesystem"


def _limits_to_requests(c: Any) -> None:
    """SetDefaults_Pod: requests default to limits for each resource that has no request."""
    res = _d(_d(c).get("resources"))
    limits = res.get("limits")
    if isinstance(limits, dict) and limits is not None:
        req = res.get("requests")
        if not isinstance(req, dict):
            res["requests"] = req = {}
        for k, v in limits.items():
            req.setdefault(k, v)


def _tolerates(tols: list[Any], key: str) -> bool:
    for t in tols:
        t = _d(t)
        if (t.get("key") == key or not t.get("key")) and t.get("effect") in ("NoExecute", "", None):
            return True
    return False


def default_pod(pod: Obj) -> None:
    """SetDefaults_* for a v1 Pod (and the v1 conversion of the deprecated serviceAccount)."""
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        pod["spec"] = spec = {}
    # SetDefaults_PodSpec
    if not spec.get("dnsPolicy"):
        spec["dnsPolicy"] = "ClusterFirst"
    if not spec.get("restartPolicy"):
        spec["restartPolicy"] = "Always"
    if spec.get("securityContext") is None:
        spec["securityContext"] = {}
    tgps = spec.get("terminationGracePeriodSeconds")
    if tgps is None:
        spec["terminationGracePeriodSeconds"] = 30
    elif isinstance(tgps, int) and tgps < 0:
        # Convert_v1_Pod_To_core_Pod (kubernetes#115606): a negative grace period is treated as 1
        spec["terminationGracePeriodSeconds"] = 1
    if not spec.get("schedulerName"):
        spec["schedulerName"] = "default-scheduler"
    host_network = bool(spec.get("hostNetwork"))
    # SetDefaults_Pod (limits -> requests happens before the containers' own defaulting)
    for c in _l(spec.get("containers")) + _l(spec.get("initContainers")):
        _limits_to_requests(c)
    if spec.get("enableServiceLinks") is None:
        spec["enableServiceLinks"] = True
    for c in _l(spec.get("containers")) + _l(spec.get("initContainers")) + _l(spec.get("ephemeralContainers")):
        _default_container(c, host_network and not _is_ephemeral(spec, c))
    for v in _l(spec.get("volumes")):
        _default_volume(v)
    overhead = spec.get("overhead")
    if isinstance(overhead, dict):
        _canonical_resource_list(overhead)
    pres = spec.get("resources")
    if isinstance(pres, dict):
        _canonical_resource_list(pres.get("limits"))
        _canonical_resource_list(pres.get("requests"))
    # v1 conversion: the deprecated serviceAccount mirrors serviceAccountName
    if not spec.get("serviceAccountName") and spec.get("serviceAccount"):
        spec["serviceAccountName"] = spec["serviceAccount"]
    if spec.get("serviceAccountName"):
        spec["serviceAccount"] = spec["serviceAccountName"]
    else:
        spec.pop("serviceAccount", None)


def admit_pod(pod: Obj) -> None:
    """The create-time mutations of the default admission chain (ServiceAccount,
    DefaultTolerationSeconds). Upstream they run on create only, so updates do not re-add them."""
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        pod["spec"] = spec = {}
    # ServiceAccount admission
    if not spec.get("serviceAccountName"):
        spec["serviceAccountName"] = DEFAULT_SERVICE_ACCOUNT
    spec["serviceAccount"] = spec["serviceAccountName"]
    # Priority: kubelite/admission/priority.py resolves priorityClassName before this runs;
    # what it leaves unset (no class named, no admission chain) is upstream's "no default" 0
    if spec.get("priority") is None and not spec.get("priorityClassName"):
        spec["priority"] = 0
    if not spec.get("preemptionPolicy"):
        spec["preemptionPolicy"] = "PreemptLowerPriority"
    # DefaultTolerationSeconds admission
    tols = spec.get("tolerations")
    if not isinstance(tols, list):
        tols = []
    added = list(tols)
    for key in (TAINT_NODE_NOT_READY, TAINT_NODE_UNREACHABLE):
        if not _tolerates(tols, key):
            added.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                          "tolerationSeconds": DEFAULT_TOLERATION_SECONDS})
    if added:
        spec["tolerations"] = added


def _is_ephemeral(spec: dict[str, Any], c: Any) -> bool:
    return any(c is e for e in _l(spec.get("ephemeralContainers")))


def validate_binding(binding: Obj) -> list[FieldError]:
    """ValidatePodBinding."""
    return pv.validate_binding(binding)


def _drop_non_resize_updates(new: Obj, old: Obj) -> None:
    """podResizeStrategy.PrepareForUpdate (dropNonResizeUpdates): of the request only the
    containers' and sidecars' resources and resizePolicy are taken, by container name; the
    generation moves on when the spec changed (updatePodGeneration)."""
    nspec = _d(new.get("spec"))
    meta = new.get("metadata") or {}
    keep = {k: meta[k] for k in ("name", "namespace", "resourceVersion", "uid", "managedFields") if k in meta}
    incoming = {key: {_d(c).get("name"): _d(c) for c in _l(nspec.get(key))} for key in ("containers", "initContainers")}
    new.clear()
    new.update(copy.deepcopy(old))
    new["metadata"].update(keep)
    spec = new.setdefault("spec", {})
    for key in ("containers", "initContainers"):
        for c in _l(spec.get(key)):
            nc = incoming[key].get(c.get("name"))
            if nc is None or (key == "initContainers" and c.get("restartPolicy") != "Always"):
                continue
            for f in ("resources", "resizePolicy"):
                if f in nc:
                    c[f] = copy.deepcopy(nc[f])
                else:
                    c.pop(f, None)
    if spec != old.get("spec"):
        new["metadata"]["generation"] = int(_d(old.get("metadata")).get("generation") or 1) + 1


# ----------------------------------------------------------------------------- strategy
class PodStrategy(Strategy):
    tracks_generation = True
    return_deleted_object = True
    allow_create_on_update = False
    allow_unconditional_update = True

    def default(self, obj: Obj) -> None:
        default_pod(obj)

    def prepare_for_create(self, obj: Obj) -> None:
        podutil.drop_disabled_fields(obj.get("spec"))
        admit_pod(obj)
        obj["status"] = {"phase": "Pending", "qosClass": compute_qos_class(obj)}
        if _l(_d(obj.get("spec")).get("schedulingGates")):
            # applySchedulingGatedCondition: kubectl shows SchedulingGated
            obj["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "lastProbeTime": None,
                                            "lastTransitionTime": meta.now_rfc3339(), "reason": "SchedulingGated",
                                            "message": "Scheduling is blocked due to non-empty scheduling gates"}]

    def validate(self, obj: Obj) -> list[FieldError]:
        return pv.validate_pod_create(obj)

    def warnings_on_create(self, obj: Obj) -> list[str]:
        name = _d(obj.get("metadata")).get("name") or ""
        msgs = meta.is_dns1123_label(name) if name else []
        if msgs:
            return ["metadata.name: this is used in the Pod's hostname, which can result in surprising "
                    f"behavior; a DNS label is recommended: [{' '.join(msgs)}]"]
        return []

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        podutil.drop_disabled_fields(new.get("spec"), old.get("spec"))
        if "status" in old:
            new["status"] = copy.deepcopy(old["status"])
        else:
            new.pop("status", None)

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return pv.validate_pod_update(new, old)

    def prepare_for_subresource_update(self, subresource: str, new: Obj, old: Obj) -> None:
        if subresource == "resize":
            return _drop_non_resize_updates(new, old)
        if subresource != "ephemeralcontainers":
            return super().prepare_for_subresource_update(subresource, new, old)
        # dropNonEphemeralContainerUpdates: every change but spec.ephemeralContainers is dropped
        ephemeral = _d(new.get("spec")).get("ephemeralContainers")
        meta = new.get("metadata") or {}
        keep = {k: meta[k] for k in ("name", "namespace", "resourceVersion", "uid", "managedFields") if k in meta}
        new.clear()
        new.update(copy.deepcopy(old))
        new["metadata"].update(keep)
        if ephemeral is None:
            new["spec"].pop("ephemeralContainers", None)
        else:
            new["spec"]["ephemeralContainers"] = ephemeral  # defaulted with the rest of ``new``

    def validate_subresource_update(self, subresource: str, new: Obj, old: Obj) -> list[FieldError]:
        if subresource == "ephemeralcontainers":
            return pv.validate_pod_ephemeral_containers_update(new, old)
        if subresource == "resize":
            return pv.validate_pod_resize(new, old, qos_class(old), compute_qos_class(new))
        return super().validate_subresource_update(subresource, new, old)

    def status_prepare_for_update(self, new: Obj, old: Obj) -> None:
        super().status_prepare_for_update(new, old)
        nst = new.get("status")
        if not isinstance(nst, dict):
            new["status"] = nst = {}
        ost = _d(old.get("status"))
        if not nst.get("qosClass") and ost.get("qosClass"):
            nst["qosClass"] = ost["qosClass"]
        if not nst.get("observedGeneration") and ost.get("observedGeneration"):
            nst["observedGeneration"] = ost["observedGeneration"]
        old_gens: dict[str, list[Any]] = {}
        for c in _l(ost.get("conditions")):
            old_gens.setdefault(_d(c).get("type", ""), []).append(_d(c).get("observedGeneration"))
        for c in _l(nst.get("conditions")):
            if not isinstance(c, dict):
                continue
            gens = old_gens.get(c.get("type", ""))
            og = gens.pop(0) if gens else None
            if not c.get("observedGeneration") and og:
                c["observedGeneration"] = og

    def validate_status_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return pv.validate_pod_status_update(new, old)

    def usage(self, obj: Obj) -> dict[str, Decimal]:
        return quota_usage(obj)

    def grace_period(self, obj: Obj, requested: int | None) -> int:
        spec = _d(obj.get("spec"))
        if requested is not None:
            period = int(requested)
        else:
            tgps = spec.get("terminationGracePeriodSeconds")
            period = int(tgps) if tgps is not None else 0
        if not spec.get("nodeName"):
            period = 0
        if is_terminal(obj):
            period = 0
        if period < 0:
            period = 1
        return period

    def field_labels(self, obj: Obj) -> dict[str, str]:
        spec = _d(obj.get("spec"))
        status = _d(obj.get("status"))
        ips = _l(status.get("podIPs"))
        return {
            "spec.nodeName": spec.get("nodeName") or "",
            "spec.restartPolicy": spec.get("restartPolicy") or "",
            "spec.schedulerName": spec.get("schedulerName") or "",
            "spec.serviceAccountName": spec.get("serviceAccountName") or "",
            "spec.hostNetwork": "true" if spec.get("hostNetwork") else "false",
            "status.phase": status.get("phase") or "",
            "status.podIP": (_d(ips[0]).get("ip") or "") if ips else "",
            "status.nominatedNodeName": status.get("nominatedNodeName") or "",
        }

    columns: tuple[Column, ...] = pod_columns()

    def row(self, obj: Obj) -> list[Any]:
        return pod_row(obj)


POD = Kind(
    group="",
    version="v1",
    kind="Pod",
    plural="pods",
    namespaced=True,
    strategy=PodStrategy(),
    short_names=("po",),
    categories=("all",),
    indexed_fields=("spec.nodeName",),
    subresources=(
        STATUS,
        Subresource("binding", ("create",), kind="Binding", rest=pod_rest.binding_rest),
        Subresource("log", ("get",), kind="Pod", text=True, rest=lambda ctx: ctx.services.require(NODE_STREAMS).log),
        Subresource("exec", ("create", "get"), kind="PodExecOptions", connect=("GET", "POST"),
                    rest=lambda ctx: ctx.services.require(NODE_STREAMS).exec),
        Subresource("attach", ("create", "get"), kind="PodAttachOptions", connect=("GET", "POST"),
                    rest=lambda ctx: ctx.services.require(NODE_STREAMS).attach),
        Subresource("portforward", ("create", "get"), kind="PodPortForwardOptions", connect=("GET", "POST"),
                    rest=lambda ctx: ctx.services.require(NODE_STREAMS).portforward),
        Subresource("eviction", ("create",), group="policy", version="v1", kind="Eviction",
                    rest=pod_rest.eviction_rest),
        Subresource("ephemeralcontainers"),
        Subresource("resize"),
    ),
    schema_ref="io.k8s.api.core.v1.Pod",
    name_validator=meta.name_is_dns_subdomain,
)
