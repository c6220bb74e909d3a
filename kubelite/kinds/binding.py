"""The pods/binding subresource (upstream pkg/registry/core/pod/storage BindingREST).

``POST /api/v1/namespaces/{ns}/pods/{name}/binding`` with a v1 Binding assigns the pod to
the target node: it sets ``spec.nodeName``, merges the Binding's annotations into the pod and
sets the condition PodScheduled=True. It writes the stored object directly (a guaranteed
update), bypassing the pod strategy: spec.nodeName is otherwise immutable.

Registered by the API server as ``handler.subresources[("", "pods", "binding")] = bind_pod``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from kubelite.api import errors
from kubelite.api import field as fld
from kubelite.api.meta import now_rfc3339
from kubelite.apiserver import http
from kubelite.apiserver.registry import decode, encode
from kubelite.kinds.pods import validate_binding
from kubelite.store.base import ConflictError, KeyNotFoundError

if TYPE_CHECKING:
    from kubelite.apiserver.handlers import APIHandler, Target

_MAX_RETRIES = 16


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
        action = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
            request.method, request.method.lower())
        raise errors.method_not_supported("pods/binding", action)
    raw = await http.read_body(request)
    body = http.decode_object(raw, http.media_type(request))
    if not isinstance(body, dict):
        raise errors.bad_request("the body of the request must be a JSON or YAML object")
    av, kind = body.get("apiVersion"), body.get("kind")
    if (kind and kind != "Binding") or (av and av != "v1"):
        raise errors.bad_request(f'{kind or "Binding"} in version "{av or "v1"}" cannot be handled as a Binding: '
                                 f'no kind "{kind}" is registered for version "{av}" in scheme "kubelite"')
    meta = body.get("metadata") or {}
    if not isinstance(meta, dict):
        raise errors.bad_request("metadata must be an object")
    ns = meta.get("namespace") or target.namespace
    if ns != target.namespace:
        raise errors.bad_request(
            "the namespace of the provided object does not match the namespace sent on the request")
    if (meta.get("name") or "") != target.name:
        raise errors.bad_request("name in URL does not match name in Binding object")
    errs = validate_binding(body)
    if errs:
        # upstream returns errs.ToAggregate(): not a Status, so the apiserver answers 500
        raise errors.StatusError(500, "", fld.aggregate_message(errs))
    dry_run = False
    for d in request.query.getall("dryRun", []):
        if d != "All":
            raise errors.bad_request(f'Invalid dryRun: Unsupported value: "{d}": supported values: "All"')
        dry_run = True
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
    rs = handler.store_for(target.kind)
    key = rs.key(target.namespace, target.name)
    name = target.name
    for _ in range(_MAX_RETRIES):
        kv = await rs.store.get(key)
        if kv is None:
            raise errors.not_found("pods", name)
        pod = decode(kv)
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
        if annotations:
            pmeta.setdefault("annotations", {}).update({str(k): str(v) for k, v in annotations.items()})
        set_pod_scheduled(pod, now_rfc3339())
        if dry_run:
            return pod
        try:
            nkv = await rs.store.update(key, encode(pod), kv.mod_revision)
        except ConflictError:
            continue
        except KeyNotFoundError as exc:
            raise errors.not_found("pods", name) from exc
        pmeta["resourceVersion"] = str(nkv.mod_revision)
        return pod
    raise errors.conflict("pods", name, "the object is being modified too often; please try again")
