"""OpenAPI documents (/openapi/v2 and /openapi/v3), generated from the served kinds.

The schemas come from :mod:`kubelite.api.schema` (JSON Schema 2020-12 form of the
v1.37 definitions) and are converted to the shapes kube-apiserver serves:

* v2 (Swagger 2.0): ``#/definitions/...`` refs with sibling descriptions, single ``type``,
  ``IntOrString`` as ``{type: string, format: int-or-string}``, ``Quantity`` as ``{type: string}``.
* v3 (OpenAPI 3.0.0, one document per group-version): ``#/components/schemas/...``; a ref
  with a description or default is wrapped as ``{"allOf": [{"$ref": ...}], ...}``;
  ``default`` values for non-pointer fields as upstream's generator emits them.

Paths mirror k8s.io/apiserver's installer: collection, item, subresource and (deprecated)
watch paths, operationIds like ``readCoreV1NamespacedPod``, ``x-kubernetes-action`` and
``x-kubernetes-group-version-kind`` on every operation, and ``fieldValidation`` on every
POST/PUT/PATCH (kubectl's QueryParamVerifierV3 looks for it on PATCH).

HTTP wiring lives elsewhere: use :func:`v2_bytes`, :func:`v3_index`, :func:`v3_bytes`
(document bytes + hash for ETag / ``?hash=``) or :func:`v3_documents`.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from kubelite.api import schema as sch
from kubelite.apiserver.discovery import subresource_gvk
from kubelite.kinds.base import Kind, Subresource

TITLE = "Kubernetes"
VERSION = f"v{sch.K8S_VERSION}"

META = "io.k8s.apimachinery.pkg.apis.meta.v1."
STATUS = META + "Status"
DELETE_OPTIONS = META + "DeleteOptions"
WATCH_EVENT = META + "WatchEvent"
PATCH = META + "Patch"
API_RESOURCE_LIST = META + "APIResourceList"
API_GROUP_LIST = META + "APIGroupList"
API_GROUP = META + "APIGroup"
API_VERSIONS = META + "APIVersions"
VERSION_INFO = "io.k8s.apimachinery.pkg.version.Info"

INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"

_SPECIAL_DEFS: dict[str, dict[str, Any]] = {
    INT_OR_STRING: {
        "description": "IntOrString is a type that can hold an int32 or a string.  When used in JSON or YAML "
                       "marshalling and unmarshalling, it produces or consumes the inner type.  This allows you "
                       "to have, for example, a JSON field that can accept a name or number.",
        "format": "int-or-string",
        "type": "string",
    },
    QUANTITY: {
        "description": "Quantity is a fixed-point representation of a number. It provides convenient "
                       "marshaling/unmarshaling in JSON and YAML, in addition to String() and AsInt64() "
                       "accessors.",
        "type": "string",
    },
}

PATCH_TYPES = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)
_PRODUCES = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")
_PRODUCES_WATCH = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf",
                   "application/json;stream=watch", "application/vnd.kubernetes.protobuf;stream=watch")

# --------------------------------------------------------------------------- parameters
_FV_DESC = (
    "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing "
    "unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are "
    "silently dropped from the object, and will ignore all but the last duplicate field that the decoder "
    "encounters. This is the default behavior prior to v1.23. - Warn: This will send a warning via the "
    "standard warning response header for each unknown field that is dropped from the object, and for each "
    "duplicate field that is encountered. The request will still succeed if there are no other errors, and "
    "will only persist the last of any duplicate fields. This is the default in v1.23+ - Strict: This will "
    "fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if "
    "any duplicate fields are present. The error returned from the server will contain all unknown and "
    "duplicate fields encountered."
)
_FM_DESC = (
    "fieldManager is a name associated with the actor or entity that is making these changes. The value must "
    "be less than or 128 characters long, and only contain printable characters, as defined by "
    "https://golang.org/pkg/unicode/#IsPrint."
)
_RV_DESC = (
    "resourceVersion sets a constraint on what resource versions a request may be served from. See "
    "https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\n"
    "Defaults to unset"
)

# name → (type, description)
_QUERY: dict[str, tuple[str, str]] = {
    "allowWatchBookmarks": ("boolean", (
        "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement "
        "bookmarks may ignore this flag and bookmarks are sent at the server's discretion. Clients should not "
        "assume bookmarks are returned at any specific interval, nor may they assume the server will send any "
        "BOOKMARK event during a session. If this is not a watch, this field is ignored.")),
    "continue": ("string", (
        "The continue option should be set when retrieving more results from the server. Since this value is "
        "server defined, clients may only use the continue value from a previous query result with identical "
        "query parameters (except for the value of continue) and the server may reject a continue value it "
        "does not recognize. If the specified continue value is no longer valid whether due to expiration "
        "(generally five to fifteen minutes) or a configuration change on the server, the server will respond "
        "with a 410 ResourceExpired error together with a continue token. If the client needs a consistent "
        "list, it must restart their list without the continue field. Otherwise, the client may send another "
        "list request with the token received with the 410 error, the server will respond with a list starting "
        "from the next key, but from the latest snapshot, which is inconsistent from the previous list results "
        "- objects that are created, modified, or deleted after the first list request will be included in the "
        "response, as long as their keys are after the \"next key\".\n\nThis field is not supported when watch "
        "is true. Clients may start a watch from the last resourceVersion value returned by the server and not "
        "miss any modifications.")),
    "dryRun": ("string", (
        "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun "
        "directive will result in an error response and no further processing of the request. Valid values "
        "are: - All: all dry run stages will be processed")),
    "fieldManager": ("string", _FM_DESC),
    "fieldSelector": ("string", "A selector to restrict the list of returned objects by their fields. Defaults to everything."),
    "fieldValidation": ("string", _FV_DESC),
    "force": ("boolean", (
        "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by "
        "other people. Force flag must be unset for non-apply patch requests.")),
    "gracePeriodSeconds": ("integer", (
        "The duration in seconds before the object should be deleted. Value must be non-negative integer. The "
        "value zero indicates delete immediately. If this value is nil, the default grace period for the "
        "specified type will be used. Defaults to a per object value if not specified. zero means delete "
        "immediately.")),
    "ignoreStoreReadErrorWithClusterBreakingPotential": ("boolean", ""),  # description from DeleteOptions
    "labelSelector": ("string", "A selector to restrict the list of returned objects by their labels. Defaults to everything."),
    "limit": ("integer", (
        "limit is a maximum number of responses to return for a list call. If more items exist, the server will "
        "set the `continue` field on the list metadata to a value that can be used with the same initial query "
        "to retrieve the next set of results. Setting a limit may return fewer than the requested amount of "
        "items (up to zero items) in the event all requested objects are filtered out and clients should only "
        "use the presence of the continue field to determine whether more results are available. Servers may "
        "choose not to support the limit argument and will return all of the available results. If limit is "
        "specified and the continue field is empty, clients may assume that no more results are available. "
        "This field is not supported if watch is true.\n\nThe server guarantees that the objects returned when "
        "using continue will be identical to issuing a single list call without a limit - that is, no objects "
        "created, modified, or deleted after the first request is issued will be included in any subsequent "
        "continued requests. This is sometimes referred to as a consistent snapshot, and ensures that a client "
        "that is using limit to receive smaller chunks of a very large result can ensure they see all possible "
        "objects. If objects are updated during a chunked list the version of the object that was present at "
        "the time the first list result was calculated is returned.")),
    "orphanDependents": ("boolean", (
        "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. Should the "
        "dependent objects be orphaned. If true/false, the \"orphan\" finalizer will be added to/removed from "
        "the object's finalizers list. Either this field or PropagationPolicy may be set, but not both.")),
    "pretty": ("string", (
        "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a "
        "browser or command-line HTTP tool (curl and wget).")),
    "propagationPolicy": ("string", (
        "Whether and how garbage collection will be performed. Either this field or OrphanDependents may be "
        "set, but not both. The default policy is decided by the existing finalizer set in the "
        "metadata.finalizers and the resource-specific default policy. Acceptable values are: 'Orphan' - "
        "orphan the dependents; 'Background' - allow the garbage collector to delete the dependents in the "
        "background; 'Foreground' - a cascading policy that deletes all dependents in the foreground.")),
    "resourceVersion": ("string", _RV_DESC),
    "resourceVersionMatch": ("string", (
        "resourceVersionMatch determines how resourceVersion is applied to list calls. It is highly recommended "
        "that resourceVersionMatch be set for list calls where resourceVersion is set See "
        "https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\n"
        "Defaults to unset")),
    "sendInitialEvents": ("boolean", (
        "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the watch stream will "
        "begin with synthetic events to produce the current state of objects in the collection. Once all such "
        "events have been sent, a synthetic \"Bookmark\" event  will be sent. The bookmark will report the "
        "ResourceVersion (RV) corresponding to the set of objects, and be marked with "
        "`\"k8s.io/initial-events-end\": \"true\"` annotation. Afterwards, the watch stream will proceed as "
        "usual, sending watch events corresponding to changes (subsequent to the RV) to objects watched.\n\n"
        "When `sendInitialEvents` option is set, we require `resourceVersionMatch` option to also be set. The "
        "semantic of the watch request is as following: - `resourceVersionMatch` = NotOlderThan\n  is "
        "interpreted as \"data at least as new as the provided `resourceVersion`\"\n  and the bookmark event is "
        "send when the state is synced\n  to a `resourceVersion` at least as fresh as the one provided by the "
        "ListOptions.\n  If `resourceVersion` is unset, this is interpreted as \"consistent read\" and the\n  "
        "bookmark event is send when the state is synced at least to the moment\n  when request started being "
        "processed.\n- `resourceVersionMatch` set to any other value or unset\n  Invalid error is returned.\n\n"
        "Defaults to true if `resourceVersion=\"\"` or `resourceVersion=\"0\"` (for backward compatibility "
        "reasons) and to false otherwise.")),
    "timeoutSeconds": ("integer", (
        "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or "
        "inactivity.")),
    "watch": ("boolean", (
        "Watch for changes to the described resources and return them as a stream of add, update, and remove "
        "notifications. Specify resourceVersion.")),
}
_PATCH_FM_DESC = _FM_DESC + (
    " This field is required for apply requests (application/apply-patch) but optional for non-apply patch "
    "types (JsonPatch, MergePatch, StrategicMergePatch).")

LIST_PARAMS = ("allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit", "resourceVersion",
               "resourceVersionMatch", "sendInitialEvents", "timeoutSeconds", "watch")
WRITE_PARAMS = ("dryRun", "fieldManager", "fieldValidation")
PATCH_PARAMS = ("dryRun", "fieldManager", "fieldValidation", "force")
DELETE_PARAMS = ("dryRun", "gracePeriodSeconds", "ignoreStoreReadErrorWithClusterBreakingPotential",
                 "orphanDependents", "propagationPolicy")
DELETECOLLECTION_PARAMS = ("continue", "dryRun", "fieldSelector", "gracePeriodSeconds",
                           "ignoreStoreReadErrorWithClusterBreakingPotential", "labelSelector", "limit",
                           "orphanDependents", "propagationPolicy", "resourceVersion", "resourceVersionMatch",
                           "sendInitialEvents", "timeoutSeconds")

# a subresource's operations: (http method, verb prefix, action) per discovery verb
_VERB_OPS: dict[str, tuple[str, str, str]] = {
    "get": ("get", "read", "get"),
    "update": ("put", "replace", "put"),
    "patch": ("patch", "patch", "patch"),
    "create": ("post", "create", "post"),
}


# --------------------------------------------------------------------------- helpers
def _op_id_part(s: str, capitalize_first: bool) -> str:
    """apiserver's ToValidOperationID: drop '.', '-', '/' and capitalize what follows."""
    out: list[str] = []
    cap = capitalize_first
    for i, ch in enumerate(s):
        if ch in ".-/":
            cap = True
            continue
        if cap or (i == 0 and capitalize_first):
            out.append(ch.upper())
            cap = False
        else:
            out.append(ch)
    return "".join(out)


def _group_friendly(group: str) -> str:
    return group[: -len(".k8s.io")] if group.endswith(".k8s.io") else group


def gv_op_name(group: str, version: str) -> str:
    """``CoreV1``, ``AppsV1``, ``RbacAuthorizationV1``, ``StableExampleComV1``."""
    g = "core" if not group else _group_friendly(group)
    return _op_id_part(g, True) + _op_id_part(version, True)


def gv_tag(group: str, version: str) -> str:
    """``core_v1``, ``apps_v1``, ``rbacAuthorization_v1``."""
    g = "core" if not group else _group_friendly(group)
    return _op_id_part(g, False) + "_" + version


def gv_path(group: str, version: str) -> str:
    """``api/v1`` or ``apis/<group>/<version>`` (the v3 index key)."""
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def _def_for(group: str, version: str, kind: str) -> str | None:
    return sch.gvk_index().get((group, version, kind))


def _kind_ref(k: Kind) -> str:
    return k.schema_ref or _def_for(k.group, k.version, k.kind) or ""


def _list_ref(k: Kind) -> str:
    ref = _def_for(k.group, k.version, k.list_kind)
    if ref:
        return ref
    base = _kind_ref(k)
    return base + "List" if base else ""


def _sub_info(k: Kind, sub: Subresource) -> tuple[str, str, str, list[tuple[str, str, str]]]:
    """(group, version, kind, operations) of a subresource."""
    g, v, kind = subresource_gvk(k, sub)
    if sub.connect:
        ops = [(m.lower(), "connect" + m.capitalize(), "connect") for m in sorted(sub.connect)]
    else:
        ops = [_VERB_OPS[verb] for verb in ("get", "update", "patch", "create") if verb in sub.verbs]
    return g, v, kind, ops


# --------------------------------------------------------------------------- schema conversion
def _ref_target(s: dict[str, Any]) -> str | None:
    return sch.ref_name(s)


def _single_type(t: Any) -> str | None:
    if isinstance(t, str):
        return None if t == "null" else t
    if isinstance(t, list):
        ts = [x for x in t if x != "null"]
        return ts[0] if len(ts) == 1 else None
    return None


def _zero_default(s: dict[str, Any]) -> Any:
    """The default upstream's generator gives a required (non-pointer) field, or a missing marker."""
    if _ref_target(s):
        target = sch.definition(_ref_target(s) or "")
        if target is not None and target.get("oneOf") is None and "object" in sch.types_of(target):
            return {}
        return _MISSING
    t = _single_type(s.get("type"))
    if t == "string":
        return ""
    if t in ("integer", "number"):
        return 0
    if t == "boolean":
        return False
    return _MISSING


_MISSING = object()
_STRUCT_FIELDS_WITH_DEFAULT = ("metadata", "spec", "status")


class _Converter:
    def __init__(self, v3: bool) -> None:
        self.v3 = v3
        self.prefix = "#/components/schemas/" if v3 else "#/definitions/"

    def ref(self, name: str) -> dict[str, Any]:
        return {"$ref": self.prefix + name}

    def definition(self, name: str, d: dict[str, Any]) -> dict[str, Any]:
        if name in _SPECIAL_DEFS:
            return dict(_SPECIAL_DEFS[name])
        return self.schema(d, top=True)

    def schema(self, s: dict[str, Any], *, top: bool = False, default: Any = _MISSING) -> dict[str, Any]:
        target = _ref_target(s)
        if target is not None:
            siblings = {k: v for k, v in s.items() if k != "$ref"}
            if self.v3:
                extra: dict[str, Any] = {}
                if "description" in siblings:
                    extra["description"] = siblings["description"]
                if default is not _MISSING:
                    extra["default"] = default
                for k, v in siblings.items():
                    if k.startswith("x-kubernetes-"):
                        extra[k] = copy.deepcopy(v)
                if not extra:
                    return self.ref(target)
                return {"allOf": [self.ref(target)], **extra}
            out = self.ref(target)
            if "description" in siblings:
                out["description"] = siblings["description"]
            for k, v in siblings.items():
                if k.startswith("x-kubernetes-"):
                    out[k] = copy.deepcopy(v)
            return out
        out = {}
        is_kind = top and bool(s.get("x-kubernetes-group-version-kind"))
        required = set(s.get("required") or ())
        for key, val in s.items():
            if key == "type":
                t = _single_type(val)
                if t:
                    out["type"] = t
            elif key == "properties" and isinstance(val, dict):
                props = {}
                for pname, pschema in val.items():
                    pschema = dict(pschema)
                    if pname in ("apiVersion", "kind") and "enum" in pschema:
                        pschema.pop("enum")  # added by kubernetes-validate, not upstream
                    d = _MISSING
                    if self.v3:
                        if pname in required:
                            d = _zero_default(pschema)
                        elif _ref_target(pschema) and (pname == "metadata" or (is_kind and pname in
                                                                                _STRUCT_FIELDS_WITH_DEFAULT)):
                            d = _zero_default(pschema)
                    props[pname] = self.schema(pschema, default=d)
                out["properties"] = props
            elif key in ("items", "additionalProperties") and isinstance(val, dict):
                d = _zero_default(val) if self.v3 else _MISSING
                out[key] = self.schema(val, default=d)
            elif key in ("oneOf", "anyOf", "allOf") and isinstance(val, list):
                out[key] = [self.schema(x) for x in val]
            elif key == "$ref":
                continue
            else:
                out[key] = copy.deepcopy(val)
        if default is not _MISSING and "default" not in out:
            out["default"] = default
        return out


def _collect_refs(s: Any, acc: set[str]) -> None:
    if isinstance(s, dict):
        name = _ref_target(s) if "$ref" in s else None
        if name is not None:
            acc.add(name)
        for v in s.values():
            _collect_refs(v, acc)
    elif isinstance(s, list):
        for v in s:
            _collect_refs(v, acc)


def _closure(roots: Iterable[str]) -> list[str]:
    defs = sch.definitions()
    seen: set[str] = set()
    todo = [r for r in roots if r in defs]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        refs: set[str] = set()
        _collect_refs(defs[n], refs)
        todo.extend(r for r in refs if r in defs and r not in seen)
    return sorted(seen)


def _roots(kinds: Iterable[Kind], extra: Iterable[str] = ()) -> list[str]:
    roots = [STATUS, DELETE_OPTIONS, WATCH_EVENT, PATCH, API_RESOURCE_LIST, *extra]
    for k in kinds:
        roots.extend(x for x in (_kind_ref(k), _list_ref(k)) if x)
        for sub in k.subresources:
            g, v, kind, _ = _sub_info(k, sub)
            r = _def_for(g, v, kind)
            if r:
                roots.append(r)
    return roots


def _definitions(kinds: Iterable[Kind], v3: bool, extra: Iterable[str] = ()) -> dict[str, Any]:
    conv = _Converter(v3)
    defs = sch.definitions()
    return {n: conv.definition(n, defs[n]) for n in _closure(_roots(kinds, extra))}


# --------------------------------------------------------------------------- operations
class _Ops:
    """Builds path items in v2 or v3 form."""

    def __init__(self, v3: bool) -> None:
        self.v3 = v3
        self.prefix = "#/components/schemas/" if v3 else "#/definitions/"

    def ref(self, name: str) -> dict[str, Any]:
        return {"$ref": self.prefix + name}

    def param(self, name: str, where: str = "query", description: str = "", typ: str = "string",
              required: bool = False) -> dict[str, Any]:
        p: dict[str, Any] = {"description": description, "in": where, "name": name}
        if required:
            p["required"] = True
        if self.v3:
            p["schema"] = {"type": typ, "uniqueItems": True}
        else:
            p["type"] = typ
            p["uniqueItems"] = True
        return p

    def query(self, names: Iterable[str], patch: bool = False) -> list[dict[str, Any]]:
        out = []
        for n in names:
            typ, desc = _QUERY[n]
            if n == "fieldManager" and patch:
                desc = _PATCH_FM_DESC
            if n == "ignoreStoreReadErrorWithClusterBreakingPotential":
                prop = (sch.definition(DELETE_OPTIONS) or {}).get("properties", {}).get(n, {})
                desc = prop.get("description", "")
            out.append(self.param(n, "query", desc, typ))
        return out

    def path_params(self, k: Kind | None, with_name: bool, namespaced: bool, name_desc: str = "") -> list[dict[str, Any]]:
        out = []
        if with_name:
            out.append(self.param("name", "path", name_desc or f"name of the {k.kind if k else ''}",
                                  required=True))
        if namespaced:
            out.append(self.param("namespace", "path", "object name and auth scope, such as for teams and projects",
                                  required=True))
        return out

    def operation(self, *, description: str, op_id: str, tag: str, action: str | None,
                  gvk: dict[str, str] | None, params: list[dict[str, Any]], body: str | None = None,
                  body_required: bool = True, consumes: tuple[str, ...] = ("*/*",),
                  responses: Mapping[str, str | None], produces: tuple[str, ...] = _PRODUCES,
                  plain_text: bool = False) -> dict[str, Any]:
        op: dict[str, Any] = {"description": description, "operationId": op_id}
        if self.v3:
            if params:
                op["parameters"] = params
            if body:
                rb: dict[str, Any] = {"content": {ct: {"schema": self.ref(body)} for ct in consumes}}
                if body_required:
                    rb["required"] = True
                op["requestBody"] = rb
            resps: dict[str, Any] = {}
            for code, schema_name in responses.items():
                desc = _CODE_DESC[code]
                if schema_name is None:
                    resps[code] = {"description": desc}
                elif plain_text:
                    resps[code] = {"content": {"*/*": {"schema": {"type": "string"}}}, "description": desc}
                else:
                    resps[code] = {"content": {ct: {"schema": self.ref(schema_name)} for ct in sorted(produces)},
                                   "description": desc}
            resps["401"] = {"description": "Unauthorized"}
            op["responses"] = resps
        else:
            op["consumes"] = list(consumes)
            ps = []
            if body:
                bp: dict[str, Any] = {"in": "body", "name": "body", "schema": self.ref(body)}
                if body_required:
                    bp["required"] = True
                ps.append(bp)
            ps.extend(params)
            if ps:
                op["parameters"] = ps
            op["produces"] = ["text/plain", "application/json", "application/yaml",
                              "application/vnd.kubernetes.protobuf"] if plain_text else list(produces)
            resps = {}
            for code, schema_name in responses.items():
                desc = _CODE_DESC[code]
                if schema_name is None:
                    resps[code] = {"description": desc}
                elif plain_text:
                    resps[code] = {"description": desc, "schema": {"type": "string"}}
                else:
                    resps[code] = {"description": desc, "schema": self.ref(schema_name)}
            resps["401"] = {"description": "Unauthorized"}
            op["responses"] = resps
            op["schemes"] = ["https"]
        op["tags"] = [tag]
        if action:
            op["x-kubernetes-action"] = action
        if gvk is not None:
            op["x-kubernetes-group-version-kind"] = gvk
        return op


_CODE_DESC = {"200": "OK", "201": "Created", "202": "Accepted"}


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "kind": kind, "version": version}


def _returns_deleted_object(k: Kind) -> bool:
    return k.strategy.return_deleted_object


def _kind_paths(k: Kind, b: _Ops) -> dict[str, dict[str, Any]]:
    paths: dict[str, dict[str, Any]] = {}
    gv = gv_op_name(k.group, k.version)
    tag = gv_tag(k.group, k.version)
    base = f"/api/{k.version}" if not k.group else f"/apis/{k.group}/{k.version}"
    ns = k.namespaced
    scope = "Namespaced" if ns else ""
    kref, lref = _kind_ref(k), _list_ref(k)
    gvk = _gvk(k.group, k.version, k.kind)
    verbs = set(k.verbs)
    coll = f"{base}/namespaces/{{namespace}}/{k.plural}" if ns else f"{base}/{k.plural}"
    item = coll + "/{name}"
    pretty = b.query(["pretty"])
    delete_result = kref if _returns_deleted_object(k) else STATUS

    # collection
    pi: dict[str, Any] = {}
    if "deletecollection" in verbs:
        pi["delete"] = b.operation(
            description=f"delete collection of {k.kind}", op_id=f"delete{gv}Collection{scope}{k.kind}", tag=tag,
            action="deletecollection", gvk=gvk, params=b.query(DELETECOLLECTION_PARAMS), body=DELETE_OPTIONS,
            body_required=False, responses={"200": STATUS})
    if "list" in verbs:
        pi["get"] = b.operation(
            description=f"list or watch objects of kind {k.kind}", op_id=f"list{gv}{scope}{k.kind}", tag=tag,
            action="list", gvk=gvk, params=b.query(LIST_PARAMS), responses={"200": lref}, produces=_PRODUCES_WATCH)
    if "create" in verbs:
        pi["post"] = b.operation(
            description=f"create {_article(k.kind)} {k.kind}", op_id=f"create{gv}{scope}{k.kind}", tag=tag,
            action="post", gvk=gvk, params=b.query(WRITE_PARAMS), body=kref,
            responses={"200": kref, "201": kref, "202": kref})
    if pi:
        pi["parameters"] = b.path_params(k, False, ns) + pretty
        paths[coll] = pi

    # item
    pi = {}
    if "delete" in verbs:
        pi["delete"] = b.operation(
            description=f"delete {_article(k.kind)} {k.kind}", op_id=f"delete{gv}{scope}{k.kind}", tag=tag,
            action="delete", gvk=gvk, params=b.query(DELETE_PARAMS), body=DELETE_OPTIONS, body_required=False,
            responses={"200": delete_result, "202": delete_result})
    if "get" in verbs:
        pi["get"] = b.operation(
            description=f"read the specified {k.kind}", op_id=f"read{gv}{scope}{k.kind}", tag=tag, action="get",
            gvk=gvk, params=[], responses={"200": kref})
    if "patch" in verbs:
        pi["patch"] = b.operation(
            description=f"partially update the specified {k.kind}", op_id=f"patch{gv}{scope}{k.kind}", tag=tag,
            action="patch", gvk=gvk, params=b.query(PATCH_PARAMS, patch=True), body=PATCH, consumes=PATCH_TYPES,
            responses={"200": kref, "201": kref})
    if "update" in verbs:
        pi["put"] = b.operation(
            description=f"replace the specified {k.kind}", op_id=f"replace{gv}{scope}{k.kind}", tag=tag,
            action="put", gvk=gvk, params=b.query(WRITE_PARAMS), body=kref, responses={"200": kref, "201": kref})
    if pi:
        pi["parameters"] = b.path_params(k, True, ns) + pretty
        paths[item] = pi

    # subresources
    for subres in k.subresources:
        sub = subres.name
        sg, sv, skind, ops = _sub_info(k, subres)
        sref = _def_for(sg, sv, skind)
        sgvk = _gvk(sg, sv, skind)
        subcap = sub[:1].upper() + sub[1:]
        pi = {}
        for method, prefix, action in ops:
            if subres.connect:
                word = method.upper()
                pi[method] = b.operation(
                    description=f"connect {word} requests to {sub} of {k.kind}",
                    op_id=f"connect{gv}{method.capitalize()}{scope}{k.kind}{subcap}", tag=tag, action=action,
                    gvk=sgvk, params=[],
                    responses={"200": "string"}, plain_text=True, produces=("*/*",))
                continue
            desc_sub = f"{sub} of "
            if prefix == "read":
                desc = f"read {desc_sub}the specified {k.kind}"
                resp = {"200": "string"} if subres.text else {"200": sref or kref}
                pi[method] = b.operation(description=desc, op_id=f"read{gv}{scope}{k.kind}{subcap}", tag=tag,
                                         action=action, gvk=sgvk, params=[], responses=resp,
                                         plain_text=subres.text)
            elif prefix == "replace":
                pi[method] = b.operation(
                    description=f"replace {desc_sub}the specified {k.kind}", op_id=f"replace{gv}{scope}{k.kind}{subcap}",
                    tag=tag, action=action, gvk=sgvk, params=b.query(WRITE_PARAMS), body=sref or kref,
                    responses={"200": sref or kref, "201": sref or kref})
            elif prefix == "patch":
                pi[method] = b.operation(
                    description=f"partially update {desc_sub}the specified {k.kind}",
                    op_id=f"patch{gv}{scope}{k.kind}{subcap}", tag=tag, action=action, gvk=sgvk,
                    params=b.query(PATCH_PARAMS, patch=True), body=PATCH, consumes=PATCH_TYPES,
                    responses={"200": sref or kref, "201": sref or kref})
            elif prefix == "create":
                pi[method] = b.operation(
                    description=f"create {sub} of {_article(k.kind)} {k.kind}",
                    op_id=f"create{gv}{scope}{k.kind}{subcap}", tag=tag, action=action, gvk=sgvk,
                    params=b.query(WRITE_PARAMS), body=sref or kref,
                    responses={"200": sref or kref, "201": sref or kref, "202": sref or kref})
        if pi:
            name_desc = f"name of the {skind}" if list(subres.verbs) == ["create"] else f"name of the {k.kind}"
            pi["parameters"] = b.path_params(k, True, ns, name_desc) + pretty
            paths[f"{item}/{sub}"] = pi
            if subres.takes_path:
                pi2: dict[str, Any] = {m: dict(op, operationId=op["operationId"] + "WithPath")
                                       for m, op in pi.items() if m != "parameters"}
                pi2["parameters"] = b.path_params(k, True, ns, name_desc) + [
                    b.param("path", "path", "path to the resource", required=True)]
                paths[f"{item}/{sub}/{{path}}"] = pi2

    # all-namespaces list and the deprecated watch paths
    list_path_params = b.query(sorted([*LIST_PARAMS, "pretty"]))
    if ns and "list" in verbs:
        paths[f"{base}/{k.plural}"] = {
            "get": b.operation(
                description=f"list or watch objects of kind {k.kind}", op_id=f"list{gv}{k.kind}ForAllNamespaces",
                tag=tag, action="list", gvk=gvk, params=[], responses={"200": lref}, produces=_PRODUCES_WATCH),
            "parameters": list_path_params,
        }
    if "watch" in verbs:
        wcoll = f"{base}/watch/namespaces/{{namespace}}/{k.plural}" if ns else f"{base}/watch/{k.plural}"
        paths[wcoll] = {
            "get": b.operation(
                description=f"watch individual changes to a list of {k.kind}. deprecated: use the 'watch' "
                            f"parameter with a list operation instead.",
                op_id=f"watch{gv}{scope}{k.kind}List", tag=tag, action="watchlist", gvk=gvk, params=[],
                responses={"200": WATCH_EVENT}, produces=_PRODUCES_WATCH),
            "parameters": _merge_params(b.path_params(k, False, ns), list_path_params),
        }
        paths[wcoll + "/{name}"] = {
            "get": b.operation(
                description=f"watch changes to an object of kind {k.kind}. deprecated: use the 'watch' parameter "
                            f"with a list operation instead, filtered to a single item with the 'fieldSelector' "
                            f"parameter.",
                op_id=f"watch{gv}{scope}{k.kind}", tag=tag, action="watch", gvk=gvk, params=[],
                responses={"200": WATCH_EVENT}, produces=_PRODUCES_WATCH),
            "parameters": _merge_params(b.path_params(k, True, ns), list_path_params),
        }
        if ns:
            paths[f"{base}/watch/{k.plural}"] = {
                "get": b.operation(
                    description=f"watch individual changes to a list of {k.kind}. deprecated: use the 'watch' "
                                f"parameter with a list operation instead.",
                    op_id=f"watch{gv}{k.kind}ListForAllNamespaces", tag=tag, action="watchlist", gvk=gvk,
                    params=[], responses={"200": WATCH_EVENT}, produces=_PRODUCES_WATCH),
                "parameters": list_path_params,
            }
    return paths


def _merge_params(path_params: list[dict[str, Any]], query: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Path-level parameters as upstream orders them: alphabetical by name, path and query mixed."""
    return sorted(path_params + query, key=lambda p: p["name"])


def _article(word: str) -> str:
    return "an" if word[:1].upper() in "AEIOU" else "a"


def _resources_path(group: str, version: str, b: _Ops) -> tuple[str, dict[str, Any]]:
    base = f"/api/{version}/" if not group else f"/apis/{group}/{version}/"
    return base, {"get": b.operation(
        description="get available resources", op_id=f"get{gv_op_name(group, version)}APIResources",
        tag=gv_tag(group, version), action=None, gvk=None, params=[], responses={"200": API_RESOURCE_LIST})}


# --------------------------------------------------------------------------- documents
def _security_v2() -> dict[str, Any]:
    return {"BearerToken": {"description": "Bearer Token authentication", "in": "header", "name": "authorization",
                            "type": "apiKey"}}


def build_v2(kinds: list[Kind]) -> dict[str, Any]:
    """The Swagger 2.0 document served at /openapi/v2."""
    return copy.deepcopy(_cached("v2", kinds, ""))


def _build_v2(kinds: list[Kind]) -> dict[str, Any]:
    b = _Ops(v3=False)
    paths: dict[str, Any] = {}
    for g, v in _group_versions(kinds):
        p, item = _resources_path(g, v, b)
        paths[p] = item
    for k in kinds:
        paths.update(_kind_paths(k, b))
    return {
        "definitions": _definitions(kinds, v3=False),
        "info": {"title": TITLE, "version": VERSION},
        "paths": dict(sorted(paths.items())),
        "security": [{"BearerToken": []}],
        "securityDefinitions": _security_v2(),
        "swagger": "2.0",
    }


def _group_versions(kinds: Iterable[Kind]) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    for k in kinds:
        if (k.group, k.version) not in seen:
            seen.append((k.group, k.version))
    return seen


def _v3_doc(paths: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    return {
        "components": {"schemas": schemas, "securitySchemes": _security_v2()},
        "info": {"title": TITLE, "version": VERSION},
        "openapi": "3.0.0",
        "paths": dict(sorted(paths.items())),
        "security": [{"BearerToken": []}],
    }


def build_v3(kinds: list[Kind], group_version: str) -> dict[str, Any]:
    """The OpenAPI 3.0 document for one index path: ``api/v1``, ``apis/<group>/<version>``,
    or the small ``api``, ``apis``, ``apis/<group>`` and ``version`` documents.

    Raises KeyError for a path the index does not list (serve 404)."""
    doc = _cached("v3", kinds, group_version.strip("/"))
    if doc is None:
        raise KeyError(group_version)
    return copy.deepcopy(doc)


def _parse_gv_path(path: str) -> tuple[str, str] | None:
    parts = path.split("/")
    if len(parts) == 2 and parts[0] == "api":
        return "", parts[1]
    if len(parts) == 3 and parts[0] == "apis":
        return parts[1], parts[2]
    return None


def _build_v3(kinds: list[Kind], path: str) -> dict[str, Any] | None:
    b = _Ops(v3=True)
    gv = _parse_gv_path(path)
    if gv is not None:
        g, v = gv
        ks = [k for k in kinds if k.group == g and k.version == v]
        if not ks:
            return None
        p, item = _resources_path(g, v, b)
        paths: dict[str, Any] = {p: item}
        for k in ks:
            paths.update(_kind_paths(k, b))
        return _v3_doc(paths, _definitions(ks, v3=True))
    if path == "api":
        op = b.operation(description="get available API versions", op_id="getCoreAPIVersions", tag="core",
                         action=None, gvk=None, params=[], responses={"200": API_VERSIONS})
        return _v3_doc({"/api/": {"get": op}}, _definitions([], True, [API_VERSIONS]))
    if path == "apis":
        op = b.operation(description="get available API versions", op_id="getAPIVersions", tag="apis",
                         action=None, gvk=None, params=[], responses={"200": API_GROUP_LIST})
        return _v3_doc({"/apis/": {"get": op}}, _definitions([], True, [API_GROUP_LIST]))
    if path == "version":
        op = b.operation(description="get the version information for this server", op_id="getCodeVersion",
                         tag="version", action=None, gvk=None, params=[], responses={"200": VERSION_INFO})
        return _v3_doc({"/version/": {"get": op}}, _definitions([], True, [VERSION_INFO]))
    parts = path.split("/")
    if len(parts) == 2 and parts[0] == "apis" and any(k.group == parts[1] for k in kinds):
        g = parts[1]
        op = b.operation(description="get information of a group", op_id=f"get{_op_id_part(_group_friendly(g), True)}APIGroup",
                         tag=_op_id_part(_group_friendly(g), False), action=None, gvk=None, params=[],
                         responses={"200": API_GROUP})
        return _v3_doc({f"/apis/{g}/": {"get": op}}, _definitions([], True, [API_GROUP]))
    return None


def v3_paths(kinds: list[Kind]) -> list[str]:
    """Every key of the /openapi/v3 index."""
    out = ["api", "apis", "version"]
    groups: list[str] = []
    for g, v in _group_versions(kinds):
        out.append(gv_path(g, v))
        if g and g not in groups:
            groups.append(g)
    out.extend(f"apis/{g}" for g in groups)
    return sorted(out)


def serialize(doc: dict[str, Any]) -> bytes:
    """Compact JSON with sorted keys (the bytes that are served and hashed)."""
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def doc_hash(data: bytes) -> str:
    """Upstream's OpenAPI v3 hash: upper-case hex SHA-512 of the served JSON."""
    return hashlib.sha512(data).hexdigest().upper()


def v3_bytes(kinds: list[Kind], path: str) -> tuple[bytes, str] | None:
    """(JSON bytes, hash) of the v3 document for index ``path`` — use the hash as the ETag
    (quoted) and to check ``?hash=``. None if there is no such document."""
    return _cached_bytes("v3", kinds, path.strip("/"))


def v2_bytes(kinds: list[Kind]) -> tuple[bytes, str]:
    """(JSON bytes, ETag hash) of the v2 document."""
    out = _cached_bytes("v2", kinds, "")
    assert out is not None
    return out


def v2_proto_bytes(kinds: list[Kind]) -> tuple[bytes, str]:
    """(protobuf bytes, ETag hash) of the v2 document (gnostic's openapi.v2.Document)."""
    from kubelite.apiserver import openapi_proto

    key = ("proto", "v2", "", _kinds_key(kinds))
    if key not in _CACHE:
        data = openapi_proto.document(_cached("v2", kinds, ""))
        _CACHE[key] = (data, doc_hash(data))
    return _CACHE[key]  # type: ignore[no-any-return]


def build_v3_index(kinds: list[Kind]) -> dict[str, Any]:
    """The /openapi/v3 discovery document: ``{"paths": {"api/v1": {"serverRelativeURL":
    "/openapi/v3/api/v1?hash=..."}}}``."""
    paths = {}
    for p in v3_paths(kinds):
        data = v3_bytes(kinds, p)
        if data is None:
            continue
        paths[p] = {"serverRelativeURL": f"/openapi/v3/{p}?hash={data[1]}"}
    return {"paths": paths}


def v3_documents(kinds: list[Kind]) -> dict[str, dict[str, Any]]:
    """Index path → v3 document (the map the HTTP layer serves under /openapi/v3/<path>)."""
    out = {}
    for p in v3_paths(kinds):
        doc = _cached("v3", kinds, p)
        if doc is not None:
            out[p] = copy.deepcopy(doc)
    return out


# --------------------------------------------------------------------------- caching
_CACHE: dict[tuple[Any, ...], Any] = {}
_CACHE_LIMIT = 64


def _kinds_key(kinds: Iterable[Kind]) -> tuple[Any, ...]:
    return tuple((k.group, k.version, k.kind, k.plural, k.namespaced, k.singular, k.short_names, k.categories,
                  k.subresources, k.verbs, k.schema_ref, _returns_deleted_object(k))
                 for k in kinds)


def _cached(which: str, kinds: list[Kind], path: str) -> Any:
    key = (which, path, _kinds_key(kinds))
    if key in _CACHE:
        return _CACHE[key]
    doc = _build_v2(list(kinds)) if which == "v2" else _build_v3(list(kinds), path)
    if len(_CACHE) >= _CACHE_LIMIT:
        _CACHE.clear()
    _CACHE[key] = doc
    return doc


def _cached_bytes(which: str, kinds: list[Kind], path: str) -> tuple[bytes, str] | None:
    key = ("bytes", which, path, _kinds_key(kinds))
    if key in _CACHE:
        return _CACHE[key]
    doc = _cached(which, kinds, path)
    out = None
    if doc is not None:
        data = serialize(doc)
        out = (data, doc_hash(data))
    _CACHE[key] = out
    return out


_HASH_RE = re.compile(r"^[0-9A-F]{128}$")


def is_hash(value: str) -> bool:
    return bool(_HASH_RE.match(value or ""))
