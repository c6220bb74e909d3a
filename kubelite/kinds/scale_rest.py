"""The ``/scale`` subresource (autoscaling/v1 Scale) of every kind that declares a
:class:`~kubelite.kinds.base.ScaleSpec` (upstream's ScaleREST in pkg/registry/apps/*/storage).

GET shows the parent's replicas and selector as a Scale; PUT and PATCH take a Scale and write
its ``spec.replicas`` into the parent through the parent's own update (its strategy and
validation run, its generation moves), with the Scale's resourceVersion as precondition.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from kubelite.api import errors
from kubelite.api import field as fld
from kubelite.api.selectors import SelectorError, label_selector_from_object, selector_from_set
from kubelite.apiserver import bodies, http
from kubelite.apiserver.rest import RESTContext, method_not_allowed
from kubelite.kinds.base import Kind, Obj, ScaleSpec, Strategy

if TYPE_CHECKING:
    from kubelite.apiserver.handlers import APIHandler, Target

SCALE_SCHEMA = "io.k8s.api.autoscaling.v1.Scale"
# what the patchers need to know of a Scale (its schema; it is never stored)
SCALE_KIND = Kind(group="autoscaling", version="v1", kind="Scale", plural="scale", namespaced=True,
                  strategy=Strategy(), schema_ref=SCALE_SCHEMA)


def _at(obj: Any, path: tuple[str, ...]) -> Any:
    cur = obj
    for p in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


def _set(obj: Obj, path: tuple[str, ...], value: Any) -> None:
    cur = obj
    for p in path[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            cur[p] = nxt = {}
        cur = nxt
    cur[path[-1]] = value


def scale_of(spec: ScaleSpec, obj: Obj) -> Obj:
    """scaleFromReplicaSet / scaleFromDeployment."""
    m = obj.get("metadata") or {}
    meta = {k: m[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in m}
    status: Obj = {"replicas": _at(obj, spec.status_replicas) or 0}
    raw_sel = _at(obj, spec.selector)
    try:
        if spec.selector_is_map:
            sel = str(selector_from_set(raw_sel)) if isinstance(raw_sel, dict) else ""
        else:
            sel = str(label_selector_from_object(raw_sel))
    except (SelectorError, ValueError):
        sel = ""
    if sel:
        status["selector"] = sel
    replicas = _at(obj, spec.spec_replicas) or 0
    return {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": meta,
            "spec": {"replicas": replicas} if replicas else {}, "status": status}


def validate_scale(scale: Obj) -> list[fld.FieldError]:
    """ValidateScale."""
    replicas = (scale.get("spec") or {}).get("replicas")
    if isinstance(replicas, int) and not isinstance(replicas, bool) and replicas < 0:
        return [fld.invalid(fld.Path("spec", "replicas"), replicas, "must be greater than or equal to 0")]
    return []


async def handle_scale(api: APIHandler, request: web.Request, target: Target) -> web.StreamResponse:
    kind = target.kind
    spec = kind.scale
    assert spec is not None
    store = api.stores[kind]
    if not target.name:
        raise method_not_allowed(target, request.method)
    if request.method == "GET":
        return http.respond(request, scale_of(spec, await store.get(target.namespace, target.name)))
    opts = api.write_options(request, kind)
    opts.track_fields = None  # the parent's managedFields record the Scale write as an update
    if request.method == "PUT":
        raw = await http.read_body(request)
        ctype = http.media_type(request)
        body = http.decode_object(raw, ctype)
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON or YAML object")
        av, k = body.get("apiVersion"), body.get("kind")
        if (k and k != "Scale") or (av and av != "autoscaling/v1"):
            raise errors.bad_request(f'{k} in version "{av}" cannot be handled as a Scale: no kind "{k}" is '
                                     f'registered for version "{av}" in scheme "kubelite"')
        scale, warnings = bodies.decode_write(kind, body, raw, ctype, request.query.get("fieldValidation", ""),
                                              "UpdateOptions", schema_ref=SCALE_SCHEMA, kind_name="Scale",
                                              version="v1")

        def from_body(current: Obj) -> Obj:
            return scale
    elif request.method == "PATCH":
        raw = await http.read_body(request)
        ctype = http.media_type(request)
        patcher = api.patchers.get(ctype)
        if patcher is None:
            raise errors.unsupported_media_type(
                "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json")
        warnings = []

        def from_body(current: Obj) -> Obj:
            patched = patcher(SCALE_KIND, current, raw)
            if not isinstance(patched, dict):
                raise errors.bad_request("the patched object must be a JSON object")
            out, warnings[:] = bodies.decode_patched(SCALE_KIND, patched, raw, ctype,
                                                     request.query.get("fieldValidation", ""))
            return out
    else:
        raise method_not_allowed(target, request.method)

    def mutate(parent: Obj) -> Obj:
        """scaleUpdatedObjectInfo.UpdatedObject: the Scale applied onto the parent."""
        current = scale_of(spec, parent)
        new_scale = from_body(current)
        raw_meta = new_scale.get("metadata")
        smeta: Obj = raw_meta if isinstance(raw_meta, dict) else {}
        if smeta.get("name") and smeta["name"] != target.name:
            raise errors.bad_request(f"the name of the object ({smeta['name']}) does not match the name on the URL "
                                     f"({target.name})")
        errs = validate_scale(new_scale)
        if errs:
            raise errors.invalid("Scale", target.name, errs, "autoscaling")
        rv = smeta.get("resourceVersion") or ""
        if rv and rv != (parent.get("metadata") or {}).get("resourceVersion"):
            raise errors.conflict(kind.plural, target.name, errors.CONFLICT_MODIFIED, kind.group)
        replicas = (new_scale.get("spec") or {}).get("replicas") or 0
        _set(parent, spec.spec_replicas, replicas)
        return parent

    out, _ = await store.patch(target.namespace, target.name, mutate, opts)
    return http.respond(request, scale_of(spec, out), warnings=warnings)


def scale_rest(ctx: RESTContext) -> Any:
    return handle_scale


__all__ = ["SCALE_KIND", "handle_scale", "scale_of", "scale_rest", "validate_scale"]
