"""The pods REST subresources that are not the pod itself: binding and eviction
(upstream pkg/registry/core/pod/storage: BindingREST, EvictionREST).

``POST .../pods/{name}/binding`` with a v1 Binding assigns the pod to the target node: it sets
``spec.nodeName``, merges the Binding's annotations into the pod and sets the condition
PodScheduled=True, through a guaranteed update of the stored object that bypasses the pod
strategy (spec.nodeName is otherwise immutable). A ``status.nominatedNodeName`` left by
preemption is cleared (ClearingNominatedNodeNameAfterBinding, on by default since 1.35).

``POST .../pods/{name}/eviction`` with a policy/v1 Eviction deletes the pod gracefully (its
``deleteOptions``) unless a PodDisruptionBudget covering the pod allows no disruption (429).
"""

from __future__ import annotations

import datetime as _dt
from typing import TYPE_CHECKING, Any

from aiohttp import web

from kubelite.api import errors
from kubelite.api import field as fld
from kubelite.api.meta import now_rfc3339
from kubelite.api.selectors import SelectorError, label_selector_from_object
from kubelite.apiserver import bodies, http
from kubelite.apiserver.auth import USER
from kubelite.apiserver.registry import DeleteOptions, ListOptions, WriteOptions
from kubelite.apiserver.rest import RESTContext, method_not_allowed
from kubelite.kinds import _pod_validation as pv

if TYPE_CHECKING:
    from kubelite.apiserver.handlers import APIHandler, Target


def _conflict(name: str, msg: str) -> errors.StatusError:
    # errors.NewConflict(api.Resource("pods/binding"), name, err)
    return errors.conflict("pods/binding", name, msg)


def set_pod_scheduled(pod: dict[str, Any], now: str) -> None:
    """podutil.UpdatePodCondition with PodScheduled=True: the condition replaces an existing
    PodScheduled condition; lastTransitionTime is kept when the status does not change."""
    status = pod.get("status")
    if not isinstance(status, dict):
        pod["status"] = status = {}
    conds = status.get("conditions")
    if not isinstance(conds, list):
        status["conditions"] = conds = []
    gen = (pod.get("metadata") or {}).get("generation")
    cond: dict[str, Any] = {"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                            "lastTransitionTime": now}
    if gen:
        cond["observedGeneration"] = gen
    for i, c in enumerate(conds):
        if isinstance(c, dict) and c.get("type") == "PodScheduled":
            if c.get("status") == "True" and c.get("lastTransitionTime"):
                cond["lastTransitionTime"] = c["lastTransitionTime"]
            conds[i] = cond
            return
    conds.append(cond)


async def bind_pod(handler: APIHandler, request: web.Request, target: Target) -> web.StreamResponse:
    if request.method != "POST":
        raise method_not_allowed(target, request.method)
    raw = await http.read_body(request)
    ctype = http.media_type(request)
    body = http.decode_object(raw, ctype)
    if not isinstance(body, dict):
        raise errors.bad_request("the body of the request must be a JSON or YAML object")
    av, kind = body.get("apiVersion"), body.get("kind")
    if (kind and kind != "Binding") or (av and av != "v1"):
        raise errors.bad_request(f'{kind or "Binding"} in version "{av or "v1"}" cannot be handled as a Binding: '
                                 f'no kind "{kind}" is registered for version "{av}" in scheme "kubelite"')
    body, _ = bodies.decode_write(target.kind, body, raw, ctype, request.query.get("fieldValidation", ""),
                                  schema_ref="io.k8s.api.core.v1.Binding", kind_name="Binding", version="v1")
    meta = body.get("metadata") or {}
    if not isinstance(meta, dict):
        raise errors.bad_request("metadata must be an object")
    ns = meta.get("namespace") or target.namespace
    if ns != target.namespace:
        raise errors.bad_request(
            "the namespace of the provided object does not match the namespace sent on the request")
    if (meta.get("name") or "") != target.name:
        raise errors.bad_request("name in URL does not match name in Binding object")
    errs = pv.validate_binding(body)
    if errs:
        # upstream returns errs.ToAggregate(): not a Status, so the apiserver answers 500
        raise errors.StatusError(500, "", fld.aggregate_message(errs))
    dry_run = _dry_run(request.query.getall("dryRun", []))
    node = (body.get("target") or {}).get("name") or ""
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise errors.bad_request("metadata.annotations must be an object")
    await assign_pod(handler, target, node, annotations, meta.get("uid") or "", meta.get("resourceVersion") or "",
                     dry_run)
    return http.respond(request, http.success_status(), 201)


async def assign_pod(handler: APIHandler, target: Target, node: str, annotations: dict[str, Any],
                     uid: str = "", resource_version: str = "", dry_run: bool = False) -> dict[str, Any]:
    """setPodNodeAndMetadata: a guaranteed update of the stored pod. Returns the bound pod."""
    name = target.name

    def bind(pod: dict[str, Any]) -> dict[str, Any]:
        pmeta = pod.setdefault("metadata", {})
        if uid and uid != pmeta.get("uid"):
            raise errors.conflict("pods", name, f"Precondition failed: UID in precondition: {uid}, "
                                                f"UID in object meta: {pmeta.get('uid', '')}")
        if resource_version and resource_version != pmeta.get("resourceVersion"):
            raise errors.conflict("pods", name, f"Precondition failed: ResourceVersion in precondition: "
                                                f"{resource_version}, ResourceVersion in object meta: "
                                                f"{pmeta.get('resourceVersion')}")
        spec = pod.setdefault("spec", {})
        if pmeta.get("deletionTimestamp"):
            raise _conflict(name, f"pod {name} is being deleted, cannot be assigned to a host")
        if spec.get("nodeName"):
            raise _conflict(name, f'pod {name} is already assigned to node "{spec["nodeName"]}"')
        if spec.get("schedulingGates"):
            raise _conflict(name, f"pod {name} has non-empty .spec.schedulingGates")
        spec["nodeName"] = node
        status = pod.get("status")
        if isinstance(status, dict):
            status.pop("nominatedNodeName", None)  # ClearingNominatedNodeNameAfterBinding (beta, on)
        if annotations:
            pmeta.setdefault("annotations", {}).update({str(k): str(v) for k, v in annotations.items()})
        set_pod_scheduled(pod, now_rfc3339())
        return pod

    return await handler.stores[target.kind].guaranteed_update(target.namespace, name, bind, dry_run)


def _dry_run(values: Any) -> bool:
    if values is None:
        return False
    if not isinstance(values, list):
        raise errors.bad_request("dryRun must be a list of strings")
    for d in values:
        if d != "All":
            raise errors.bad_request(f'Invalid dryRun: Unsupported value: "{d}": supported values: "All"')
    return bool(values)


# --------------------------------------------------------------------------- eviction

EVICTION_VERSIONS = ("policy/v1", "policy/v1beta1")
DISRUPTION_BUDGET_CAUSE = "DisruptionBudget"
MAX_DISRUPTED_POD_SIZE = 2000  # pkg/registry/core/pod/storage/eviction.go
_EVICTION_RETRIES = 5


def _can_ignore_pdb(pod: dict[str, Any]) -> bool:
    """canIgnorePDB: evicting a pod that is finished, pending or already terminating disrupts
    nothing a budget protects."""
    phase = (pod.get("status") or {}).get("phase")
    return phase in ("Succeeded", "Failed", "Pending") or bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def _delete_options(raw: Any, query_dry_run: bool) -> DeleteOptions:
    opts = DeleteOptions()
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise errors.bad_request("deleteOptions must be an object")
    gp = raw.get("gracePeriodSeconds")
    if gp is not None:
        if not isinstance(gp, int) or isinstance(gp, bool):
            raise errors.bad_request("deleteOptions.gracePeriodSeconds must be an integer")
        opts.grace_period_seconds = gp
    pre = raw.get("preconditions") or {}
    if not isinstance(pre, dict):
        raise errors.bad_request("deleteOptions.preconditions must be an object")
    opts.preconditions = dict(pre)
    pp = raw.get("propagationPolicy")
    if pp is not None and not isinstance(pp, str):
        raise errors.bad_request("deleteOptions.propagationPolicy must be a string")
    opts.propagation_policy = pp or ""
    opts.dry_run = query_dry_run or _dry_run(raw.get("dryRun"))
    return opts


async def evict_pod(handler: APIHandler, request: web.Request, target: Target) -> web.StreamResponse:
    if request.method != "POST":
        raise method_not_allowed(target, request.method)
    body = http.decode_object(await http.read_body(request), http.media_type(request))
    if not isinstance(body, dict):
        raise errors.bad_request("the body of the request must be a JSON or YAML object")
    av, kind = body.get("apiVersion"), body.get("kind")
    if (kind and kind != "Eviction") or (av and av not in EVICTION_VERSIONS):
        raise errors.bad_request(f'{kind or "Eviction"} in version "{av or "policy/v1"}" cannot be handled as an '
                                 f'Eviction: no kind "{kind}" is registered for version "{av}" in scheme "kubelite"')
    meta = body.get("metadata") or {}
    if not isinstance(meta, dict):
        raise errors.bad_request("metadata must be an object")
    if (meta.get("name") or "") != target.name:
        raise errors.bad_request("name in URL does not match name in Eviction object")
    if meta.get("namespace") and meta["namespace"] != target.namespace:
        raise errors.bad_request(
            "the namespace of the provided object does not match the namespace sent on the request")
    opts = _delete_options(body.get("deleteOptions"), _dry_run(request.query.getall("dryRun", [])))
    opts.user = request.get(USER)  # the deletion is admitted as the requester's
    await evict(handler, target.namespace, target.name, opts)
    return http.respond(request, http.success_status(), 201)


async def evict(handler: APIHandler, namespace: str, name: str, opts: DeleteOptions) -> None:
    """EvictionREST.Create after decoding: delete unless a budget forbids it."""
    pods = handler.stores.get("", "pods")
    retry_conflicts = not opts.preconditions.get("resourceVersion")
    preconditions = dict(opts.preconditions)
    for attempt in range(_EVICTION_RETRIES):
        opts.preconditions = dict(preconditions)
        pod = await pods.get(namespace, name)
        try:
            if _can_ignore_pdb(pod):
                await _delete_evicted(pods, pod, opts)
                return
            budgets = await _budgets_for(handler, pod)
            if len(budgets) > 1:
                raise errors.internal("This pod has more than one PodDisruptionBudget, which the eviction "
                                      "subresource does not support.")
            if budgets and not _unhealthy_pod_may_go(pod, budgets[0]):
                await _check_and_decrement(handler, budgets[0], name, opts.dry_run)
            elif budgets and retry_conflicts:  # updateDeletionOptions: only if it is still this unhealthy pod
                opts.preconditions = {**opts.preconditions,
                                      "resourceVersion": (pod.get("metadata") or {}).get("resourceVersion")}
            await _delete_evicted(pods, pod, opts)
            return
        except errors.StatusError as exc:
            if exc.code != 409 or not retry_conflicts or attempt == _EVICTION_RETRIES - 1:
                raise


async def _delete_evicted(pods: Any, pod: dict[str, Any], opts: DeleteOptions) -> None:
    """addConditionAndDeletePod: the pod says why it goes (DisruptionTarget, reason
    EvictionByEvictionAPI) before it is deleted; a resourceVersion precondition moves to the
    version that carries the condition."""
    meta = pod.get("metadata") or {}
    ns, name = meta.get("namespace", ""), meta.get("name", "")
    if not opts.dry_run:
        want = opts.preconditions.get("resourceVersion")
        if want and want != meta.get("resourceVersion"):
            raise errors.conflict("pods", name, f"Precondition failed: ResourceVersion in precondition: {want}, "
                                                f"ResourceVersion in object meta: {meta.get('resourceVersion')}")
        now = now_rfc3339()

        def condition(cur: dict[str, Any]) -> dict[str, Any]:
            status = cur.setdefault("status", {})
            conds = [c for c in status.get("conditions") or [] if not (
                isinstance(c, dict) and c.get("type") == "DisruptionTarget")]
            old = next((c for c in status.get("conditions") or [] if isinstance(c, dict)
                        and c.get("type") == "DisruptionTarget"), None)
            conds.append({"type": "DisruptionTarget", "status": "True", "lastProbeTime": None,
                          "lastTransitionTime": old["lastTransitionTime"] if old and old.get("status") == "True"
                          and old.get("lastTransitionTime") else now,
                          "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting"})
            status["conditions"] = conds
            return cur

        updated, _ = await pods.patch(ns, name, condition, WriteOptions(field_manager="kube-apiserver"), "status")
        if want:
            opts.preconditions = {**opts.preconditions,
                                  "resourceVersion": (updated.get("metadata") or {}).get("resourceVersion")}
    await pods.delete(ns, name, opts)


def _pod_ready(pod: dict[str, Any]) -> bool:
    return any(isinstance(c, dict) and c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _unhealthy_pod_may_go(pod: dict[str, Any], pdb: dict[str, Any]) -> bool:
    """A pod that is not ready counts for no budget: it is evicted without taking a disruption
    when the budget's unhealthyPodEvictionPolicy is AlwaysAllow, or (IfHealthyBudget, the
    default) when the budget is met without it."""
    if _pod_ready(pod):
        return False
    if (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy") == "AlwaysAllow":
        return True
    st = pdb.get("status") or {}
    desired = int(st.get("desiredHealthy") or 0)
    return int(st.get("currentHealthy") or 0) >= desired and desired > 0


async def _budgets_for(handler: APIHandler, pod: dict[str, Any]) -> list[dict[str, Any]]:
    """The PodDisruptionBudgets whose selector matches the pod (none while the kind is not served)."""
    store = handler.stores.find("policy", "poddisruptionbudgets")
    if store is None:
        return []
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    out = []
    items, _, _, _ = await store.list(meta.get("namespace", ""), ListOptions())
    for pdb in items:
        sel = (pdb.get("spec") or {}).get("selector")
        if not isinstance(sel, dict):
            continue  # a nil selector selects nothing in policy/v1
        try:
            if not labels and not sel:
                continue
            if label_selector_from_object(sel).matches(labels):
                out.append(pdb)
        except SelectorError:
            continue
    return out


async def _check_and_decrement(handler: APIHandler, pdb: dict[str, Any], pod_name: str, dry_run: bool) -> None:
    """checkAndDecrement: one disruption fewer, and the pod noted as disrupted for the
    disruption controller; 429 when the budget allows none."""
    status = pdb.get("status") or {}
    meta = pdb["metadata"]
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        raise _too_many_requests(pdb, "Cannot evict pod as it would violate the pod's disruption budget.")
    allowed = int(status.get("disruptionsAllowed") or 0)
    if allowed < 0:
        raise errors.forbidden("poddisruptionbudget", meta["name"], "pdb disruptions allowed is negative", "policy")
    if len(status.get("disruptedPods") or {}) > MAX_DISRUPTED_POD_SIZE:
        raise errors.forbidden("poddisruptionbudget", meta["name"],
                               "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
                               "policy")
    if allowed == 0:
        raise _too_many_requests(pdb, "Cannot evict pod as it would violate the pod's disruption budget.")
    status["disruptionsAllowed"] = allowed - 1
    if dry_run:
        return
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    disrupted = dict(status.get("disruptedPods") or {})
    disrupted[pod_name] = now
    status["disruptedPods"] = disrupted
    if status["disruptionsAllowed"] == 0:
        _set_disruption_allowed_condition(status, meta, now)
    pdb["status"] = status
    store = handler.stores.get("policy", "poddisruptionbudgets")
    await store.update(meta["namespace"], meta["name"], pdb, WriteOptions(field_manager="kube-apiserver"),
                       "status")


def _set_disruption_allowed_condition(status: dict[str, Any], meta: dict[str, Any], now: str) -> None:
    """pdbhelper.UpdateDisruptionAllowedCondition with no disruption left."""
    conds = [c for c in status.get("conditions") or [] if isinstance(c, dict) and c.get("type") != "DisruptionAllowed"]
    old = next((c for c in status.get("conditions") or [] if isinstance(c, dict) and c.get("type") == "DisruptionAllowed"),
               None)
    cond = {"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods", "message": "",
            "observedGeneration": status.get("observedGeneration", 0),
            "lastTransitionTime": old["lastTransitionTime"] if old and old.get("status") == "False" else now}
    status["conditions"] = [*conds, cond]


def _too_many_requests(pdb: dict[str, Any], message: str) -> errors.StatusError:
    status = pdb.get("status") or {}
    return errors.StatusError(429, "TooManyRequests", message, {"causes": [{
        "reason": DISRUPTION_BUDGET_CAUSE,
        "message": f"The disruption budget {pdb['metadata']['name']} needs {status.get('desiredHealthy', 0)} "
                   f"healthy pods and has {status.get('currentHealthy', 0)} currently"}]})


# --------------------------------------------------------------------------- declarations


def binding_rest(ctx: RESTContext) -> Any:
    return bind_pod


def eviction_rest(ctx: RESTContext) -> Any:
    return evict_pod


__all__ = ["assign_pod", "bind_pod", "binding_rest", "evict", "evict_pod", "eviction_rest", "set_pod_scheduled"]
