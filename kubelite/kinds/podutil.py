"""Pod rules every component shares: whether a pod is terminal, its effective requests and
limits (sidecars and overhead included), its QoS class, and the defaults more than one
component needs. Pure functions over pod dicts — the API server (admission, quota), the
scheduler and the node agent all use these, so they count a pod the same way.

Upstream: k8s.io/component-helpers/resource (PodRequests, PodLimits), pkg/apis/core/helper/qos,
pkg/api/v1/pod (IsPodTerminal), pkg/apis/core/v1/defaults.go (probe defaults).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from kubelite.api import quantity

Obj = dict[str, Any]

TERMINAL_PHASES = ("Succeeded", "Failed")
DEFAULT_SERVICE_ACCOUNT = "default"
# SetDefaults_Probe
PROBE_DEFAULTS: dict[str, int] = {"timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1,
                                  "failureThreshold": 3}


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def is_terminal(pod: Obj) -> bool:
    """Succeeded or Failed: its containers will not run again (podutil.IsPodTerminal)."""
    return _d(pod.get("status")).get("phase") in TERMINAL_PHASES


def is_terminating(pod: Obj) -> bool:
    return bool(_d(pod.get("metadata")).get("deletionTimestamp"))


def counts_for_quota(pod: Obj, now: datetime | None = None) -> bool:
    """QuotaV1Pod: not terminal, and not stuck terminating past its grace period (a lost node
    must not keep charging the namespace)."""
    if is_terminal(pod):
        return False
    meta = _d(pod.get("metadata"))
    ts, grace = meta.get("deletionTimestamp"), meta.get("deletionGracePeriodSeconds")
    if isinstance(ts, str) and isinstance(grace, int) and not isinstance(grace, bool):
        try:
            deleted = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            return True
        if (now or datetime.now(UTC)) > deleted + timedelta(seconds=grace):
            return False
    return True


def quota_usage(pod: Obj) -> dict[str, Decimal]:
    """What a pod counts against a ResourceQuota besides count/pods (podComputeUsageHelper):
    ``pods`` and its effective requests and limits, the same figures the scheduler counts."""
    if not counts_for_quota(pod):
        return {}
    out: dict[str, Decimal] = {"pods": Decimal(1)}
    requests, limits = pod_requests(pod), pod_limits(pod)
    for name in ("cpu", "memory", "ephemeral-storage"):
        if name in requests:
            out[name] = out[f"requests.{name}"] = requests[name]
        if name in limits:
            out[f"limits.{name}"] = limits[name]
    for name, q in requests.items():
        if name.startswith("hugepages-"):
            out[name] = out[f"requests.{name}"] = q
        elif "/" in name and not name.startswith("kubernetes.io/") and not name.startswith("requests."):
            out[f"requests.{name}"] = q  # extended resources: only requests.<name> is allowed in quotas
    return out


# ----------------------------------------------------------------------------- QoS and requests
def _q(v: Any) -> Decimal | None:
    try:
        return quantity.parse_quantity(v if isinstance(v, str) else str(v))
    except (ValueError, TypeError, ArithmeticError):
        return None


def _qos_resource(name: str) -> bool:
    return name in ("cpu", "memory") or name.startswith("hugepages-")


def compute_qos_class(pod: Obj) -> str:
    """qos.ComputePodQOS: BestEffort, Burstable or Guaranteed."""
    spec = _d(pod.get("spec"))
    requests: dict[str, Decimal] = {}
    limits: dict[str, Decimal] = {}
    guaranteed = True

    def take(rl: Any, into: dict[str, Decimal]) -> set[str]:
        found: set[str] = set()
        for name, qv in _d(rl).items():
            if not _qos_resource(name):
                continue
            q = _q(qv)
            if q is not None and q > 0:
                found.add(name)
                into[name] = into.get(name, Decimal(0)) + q
        return found

    pres = _d(spec.get("resources"))
    if pres and (pres.get("requests") or pres.get("limits")):
        take(pres.get("requests"), requests)
        if pres.get("limits"):
            if not {"cpu", "memory"} <= take(pres.get("limits"), limits):
                guaranteed = False
    else:
        for c in _l(spec.get("containers")) + _l(spec.get("initContainers")):
            res = _d(_d(c).get("resources"))
            take(res.get("requests"), requests)
            if not {"cpu", "memory"} <= take(res.get("limits"), limits):
                guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed:
        for name, req in requests.items():
            if name not in limits or limits[name] != req:
                guaranteed = False
                break
    if guaranteed and len(requests) == len(limits):
        return "Guaranteed"
    return "Burstable"


def qos_class(pod: Obj) -> str:
    """qos.GetPodQOS: status.qosClass when set, otherwise computed."""
    q = _d(pod.get("status")).get("qosClass")
    return q if q else compute_qos_class(pod)


def _resize_infeasible(pod: Obj) -> bool:
    return any(_d(c).get("type") == "PodResizePending" and _d(c).get("reason") == "Infeasible"
               for c in _l(_d(pod.get("status")).get("conditions")))


def _effective(pod: Obj, which: str, use_status: bool = False) -> dict[str, Decimal]:
    """resourcehelper.PodRequests / PodLimits over ``which`` ("requests" or "limits"): app
    containers summed, init containers in order (restartable sidecars accumulate and stay),
    the largest of the two taken, pod-level values winning for cpu/memory/hugepages, plus
    spec.overhead (for limits only where a limit exists). With ``use_status``
    (UseStatusResources, the scheduler's) a resized container's requests are the largest of
    its spec's (unless the resize is Infeasible), its status resources' and its allocation."""
    spec = _d(pod.get("spec"))
    status = _d(pod.get("status"))
    statuses = {_d(cs).get("name"): _d(cs) for key in ("containerStatuses", "initContainerStatuses")
                for cs in _l(status.get(key))} if use_status and which == "requests" else {}
    infeasible = _resize_infeasible(pod) if statuses else False

    def plain(rl: Any) -> dict[str, Decimal]:
        return {n: q for n, v in _d(rl).items() if (q := _q(v)) is not None}

    def of(c: Any) -> dict[str, Decimal]:
        own = plain(_d(_d(c).get("resources")).get(which))
        cs = statuses.get(_d(c).get("name"))
        if cs is None or not isinstance(cs.get("resources"), dict):
            return own
        out = {} if infeasible else own
        for rl in (_d(cs["resources"]).get("requests"), cs.get("allocatedResources")):
            for n, q in plain(rl).items():
                if q > out.get(n, Decimal(-1)):
                    out[n] = q
        return out

    out: dict[str, Decimal] = {}
    for c in _l(spec.get("containers")):
        for name, q in of(c).items():
            out[name] = out.get(name, Decimal(0)) + q
    restartable: dict[str, Decimal] = {}
    init_max: dict[str, Decimal] = {}
    for c in _l(spec.get("initContainers")):
        cres = of(c)
        if _d(c).get("restartPolicy") == "Always":
            for name, q in cres.items():
                out[name] = out.get(name, Decimal(0)) + q
                restartable[name] = restartable.get(name, Decimal(0)) + q
            tmp = dict(restartable)
        else:
            tmp = dict(restartable)
            for name, q in cres.items():
                tmp[name] = tmp.get(name, Decimal(0)) + q
        for name, q in tmp.items():
            if q > init_max.get(name, Decimal(-1)):
                init_max[name] = q
    for name, q in init_max.items():
        if q > out.get(name, Decimal(0)):
            out[name] = q
    for name, v in _d(_d(spec.get("resources")).get(which)).items():
        if (name in ("cpu", "memory") or name.startswith("hugepages-")) and (pq := _q(v)) is not None:
            out[name] = pq
    for name, v in _d(spec.get("overhead")).items():
        if (oq := _q(v)) is not None and (which == "requests" or name in out):
            out[name] = out.get(name, Decimal(0)) + oq
    return out


def pod_requests(pod: Obj, use_status: bool = False) -> dict[str, Decimal]:
    """Effective requests (resourcehelper.PodRequests), what the scheduler and quota count;
    ``use_status``: a pending or unfinished resize counts at its largest (the scheduler's)."""
    return _effective(pod, "requests", use_status)


def pod_limits(pod: Obj) -> dict[str, Decimal]:
    """Effective limits (resourcehelper.PodLimits)."""
    return _effective(pod, "limits")


# dropDisabledFields (pkg/api/pod/util.go): fields whose feature gate is off by default in
# 1.37 — EvictionRequestAPI (lifecycle.k8s.io/v1alpha1) and GenericWorkload
# (scheduling.k8s.io/v1alpha3 PodGroups) are alpha — are dropped on write unless the old
# object already used them, so they are never stored for a component to ignore.
DISABLED_POD_SPEC_FIELDS = ("evictionResponders", "schedulingGroup")


def drop_disabled_fields(spec: Any, old_spec: Any = None) -> None:
    """Drop the gated-off fields from a pod (or pod template) spec, in place."""
    if not isinstance(spec, dict):
        return
    old = _d(old_spec)
    for name in DISABLED_POD_SPEC_FIELDS:
        if old.get(name) in (None, [], {}):
            spec.pop(name, None)


def drop_disabled_template_fields(obj: Any, old: Any = None, path: tuple[str, ...] = ("spec", "template")) -> None:
    """DropDisabledTemplateFields for a workload's pod template at ``path`` (under the object)."""
    def template_spec(o: Any) -> Any:
        for key in path:
            o = _d(o).get(key)
        return _d(o).get("spec")
    drop_disabled_fields(template_spec(obj), template_spec(old))


# ContainerRestartRules (beta, on by default since 1.35): a container's own restartPolicy and
# restartPolicyRules override the pod's restartPolicy (pkg/api/v1/pod/util.go).
def is_restartable_init_container(c: Any) -> bool:
    """A sidecar: an init container with restartPolicy Always."""
    return _d(c).get("restartPolicy") == "Always"


def container_should_restart(c: Any, spec: Any, exit_code: int) -> bool:
    """ContainerShouldRestart: the first restartPolicyRule matching the exit code, else the
    container's restartPolicy, else the pod's."""
    c, spec = _d(c), _d(spec)
    own = c.get("restartPolicy")
    if own is not None:
        for rule in _l(c.get("restartPolicyRules")):
            codes = _d(_d(rule).get("exitCodes"))
            values = _l(codes.get("values"))
            op = codes.get("operator")
            if (op == "In" and exit_code in values) or (op == "NotIn" and exit_code not in values):
                if _d(rule).get("action") == "Restart":
                    return True
                break
        if own in ("Always", "OnFailure", "Never"):
            return own == "Always" or (own == "OnFailure" and exit_code != 0)
    policy = spec.get("restartPolicy") or "Always"
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def restart_on_failure(c: Any, spec: Any) -> bool:
    """Whether a container that did not exit by itself (a failed liveness/startup probe, a
    failed init container on a new sandbox) starts again: the container-level restartPolicy
    only, since there is no exit code for the rules (computePodActions)."""
    own = _d(c).get("restartPolicy")
    if own is not None:
        return own != "Never"
    return (_d(spec).get("restartPolicy") or "Always") != "Never"


def is_container_restartable(spec: Any, c: Any) -> bool:
    """IsContainerRestartable: whether any exit of the container could restart it."""
    c = _d(c)
    if c.get("restartPolicy") is not None:
        if any(_d(r).get("action") == "Restart" for r in _l(c.get("restartPolicyRules"))):
            return True
        return c["restartPolicy"] != "Never"
    return (_d(spec).get("restartPolicy") or "Always") != "Never"


# Dynamic resource allocation (on by default since 1.34): kubelite serves no resource.k8s.io
# kinds, so no ResourceClaim can exist and a pod with spec.resourceClaims can never get its
# devices. The scheduler's DynamicResources PreEnqueue and the kubelet's PrepareResources say
# so with upstream's errors (k8s.io/dynamic-resource-allocation/resourceclaim.Name, the
# claim lister's / API's NotFound).
def resource_claim_error(pod: Obj, kubelet: bool = False) -> str | None:
    """Why the pod's first resource claim cannot be had, as the scheduler (``kubelet``
    False) or the kubelet puts it; None for a pod without claims."""
    meta, spec = _d(pod.get("metadata")), _d(pod.get("spec"))
    ns, name = meta.get("namespace", ""), meta.get("name", "")
    generated = {s.get("name"): s.get("resourceClaimName")
                 for s in _l(_d(pod.get("status")).get("resourceClaimStatuses")) if isinstance(s, dict)}
    for pc in map(_d, _l(spec.get("resourceClaims"))):
        if pc.get("resourceClaimName"):
            claim = str(pc["resourceClaimName"])
        elif pc.get("resourceClaimTemplateName"):
            if pc.get("name") not in generated:
                err = f'pod "{ns}/{name}": ResourceClaim not created yet'
                return f"prepare resource claim: {err}" if kubelet else err
            if not generated[pc.get("name")]:
                continue  # no claim needed for it
            claim = str(generated[pc.get("name")])
        else:
            err = f'pod "{ns}/{name}", spec.resourceClaim "{pc.get("name", "")}": none of the supported fields are set'
            return f"prepare resource claim: {err}" if kubelet else err
        if kubelet:
            return (f"failed to fetch ResourceClaim {claim} referenced by pod {name}: "
                    f'resourceclaims.resource.k8s.io "{claim}" not found')
        return f'resourceclaim.resource.k8s.io "{claim}" not found'
    return None
