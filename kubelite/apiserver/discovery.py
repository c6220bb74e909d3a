"""Discovery documents, generated from the served :class:`Kind` declarations.

* ``/api``            → :func:`api_versions` (APIVersions)
* ``/apis``           → :func:`api_group_list` (APIGroupList)
* ``/api/v1``, ``/apis/<g>/<v>`` → :func:`api_resource_list` (APIResourceList)
* aggregated (``Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList``)
  on ``/api`` and ``/apis`` → :func:`aggregated` (apidiscovery.k8s.io/v2 APIGroupDiscoveryList);
  :func:`negotiate_aggregated` decides from the Accept header, :data:`AGGREGATED_CONTENT_TYPE`
  is the response media type.
* ``/version`` → :func:`version_info`

Shapes, ordering and field order follow k8s.io/apiserver/pkg/endpoints/discovery.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Iterable
from typing import Any

import orjson

from kubelite.api.schema import K8S_VERSION
from kubelite.kinds.base import Kind, Subresource

AGGREGATED_GROUP = "apidiscovery.k8s.io"
AGGREGATED_VERSION = "v2"
AGGREGATED_KIND = "APIGroupDiscoveryList"
AGGREGATED_CONTENT_TYPE = f"application/json;g={AGGREGATED_GROUP};v={AGGREGATED_VERSION};as={AGGREGATED_KIND}"

# Upstream's group priority order for /apis (kube-apiserver's DefaultGenericAPIServicePriorities,
# highest first). Unknown groups (CRDs) follow, sorted by name.
_GROUP_ORDER = (
    "apiregistration.k8s.io", "apps", "events.k8s.io", "authentication.k8s.io", "authorization.k8s.io",
    "autoscaling", "batch", "certificates.k8s.io", "networking.k8s.io", "policy",
    "rbac.authorization.k8s.io", "storage.k8s.io", "admissionregistration.k8s.io", "apiextensions.k8s.io",
    "scheduling.k8s.io", "coordination.k8s.io", "node.k8s.io", "discovery.k8s.io", "flowcontrol.apiserver.k8s.io",
    "internal.apiserver.k8s.io", "resource.k8s.io", "storagemigration.k8s.io",
)

def storage_version_hash(group: str, version: str, kind: str) -> str:
    """discovery.StorageVersionHash: base64 of the first 8 bytes of sha256("group/version/kind")."""
    return base64.b64encode(hashlib.sha256(f"{group}/{version}/{kind}".encode()).digest()[:8]).decode()


def _subresource(k: Kind, sub: Subresource) -> tuple[str, str, str, list[str]]:
    """(group, version, kind, sorted verbs) of subresource ``sub`` of kind ``k``."""
    g, v, kind = subresource_gvk(k, sub)
    return g, v, kind, sorted(sub.verbs)


def subresource_gvk(k: Kind, sub: Subresource) -> tuple[str, str, str]:
    """The group, version and kind a subresource takes and answers."""
    return (k.group if sub.group is None else sub.group, k.version if sub.version is None else sub.version,
            sub.kind or k.kind)


def _group_sort_key(group: str) -> tuple[int, str]:
    try:
        return _GROUP_ORDER.index(group), group
    except ValueError:
        return len(_GROUP_ORDER), group


def _version_priority(version: str) -> tuple[int, int, int]:
    """Kube-aware version ordering (GA > beta > alpha, higher numbers first), as sort key."""
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (3, 0, 0)  # non-kube-like versions sort last
    major = int(m.group(1))
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    minor = int(m.group(3) or 0)
    return (stage, -major, -minor)


def _groups(kinds: Iterable[Kind]) -> dict[str, list[str]]:
    """group → versions (preferred first); the core group "" included."""
    out: dict[str, list[str]] = {}
    for k in kinds:
        vs = out.setdefault(k.group, [])
        if k.version not in vs:
            vs.append(k.version)
    for vs in out.values():
        vs.sort(key=_version_priority)
    return out


# --------------------------------------------------------------------------- legacy discovery
def api_versions(server_address: str = "") -> dict[str, Any]:
    """``/api``: APIVersions."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def group_versions(kinds: Iterable[Kind]) -> dict[str, list[str]]:
    """Named group → its served versions, preferred first (the core group "" left out)."""
    return {g: vs for g, vs in _groups(kinds).items() if g}


def _group_entry(group: str, versions: list[str]) -> dict[str, Any]:
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list(kinds: Iterable[Kind]) -> dict[str, Any]:
    """``/apis``: APIGroupList (named groups only)."""
    groups = _groups(kinds)
    names = sorted((g for g in groups if g), key=_group_sort_key)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group_entry(g, groups[g]) for g in names]}


def api_group(kinds: Iterable[Kind], group: str) -> dict[str, Any] | None:
    """``/apis/<group>``: APIGroup, or None when no kind is in that group."""
    groups = _groups(kinds)
    if not group or group not in groups:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group, groups[group])}


api_group_doc = api_group


def _resource_entries(k: Kind) -> list[dict[str, Any]]:
    main: dict[str, Any] = {
        "name": k.plural,
        "singularName": k.singular_name,
        "namespaced": k.namespaced,
        "kind": k.kind,
        "verbs": sorted(k.verbs),
    }
    if k.short_names:
        main["shortNames"] = list(k.short_names)
    if k.categories:
        main["categories"] = list(k.categories)
    main["storageVersionHash"] = storage_version_hash(k.group, k.version, k.kind)
    out = [main]
    for sub in k.subresources:
        g, v, kind, verbs = _subresource(k, sub)
        e: dict[str, Any] = {"name": f"{k.plural}/{sub.name}", "singularName": "", "namespaced": k.namespaced}
        if (g, v) != (k.group, k.version):
            e["group"] = g
            e["version"] = v
        e["kind"] = kind
        e["verbs"] = verbs
        out.append(e)
    return out


def api_resource_list(kinds: Iterable[Kind], group: str, version: str) -> dict[str, Any] | None:
    """``/api/v1`` or ``/apis/<group>/<version>``: APIResourceList, or None if nothing is served there."""
    ks = [k for k in kinds if k.group == group and k.version == version]
    if not ks:
        return None
    resources: list[dict[str, Any]] = []
    for k in ks:
        resources.extend(_resource_entries(k))
    resources.sort(key=lambda r: r["name"])
    gv = f"{group}/{version}" if group else version
    doc: dict[str, Any] = {"kind": "APIResourceList"}
    if group:
        doc["apiVersion"] = "v1"
    doc["groupVersion"] = gv
    doc["resources"] = resources
    return doc


# --------------------------------------------------------------------------- aggregated discovery
def _aggregated_resource(k: Kind) -> dict[str, Any]:
    r: dict[str, Any] = {
        "resource": k.plural,
        "responseKind": {"group": k.group, "version": k.version, "kind": k.kind},
        "scope": "Namespaced" if k.namespaced else "Cluster",
        "singularResource": k.singular_name,
        "verbs": sorted(k.verbs),
    }
    if k.short_names:
        r["shortNames"] = list(k.short_names)
    if k.categories:
        r["categories"] = list(k.categories)
    subs = []
    for sub in sorted(k.subresources, key=lambda s: s.name):
        g, v, kind, verbs = _subresource(k, sub)
        subs.append({"subresource": sub.name, "responseKind": {"group": g, "version": v, "kind": kind}, "verbs": verbs})
    if subs:
        r["subresources"] = subs
    return r


def aggregated(kinds: Iterable[Kind], legacy: bool) -> dict[str, Any]:
    """apidiscovery.k8s.io/v2 APIGroupDiscoveryList for ``/api`` (legacy=True: the core
    group) or ``/apis`` (legacy=False: every named group)."""
    kinds = list(kinds)
    groups = _groups(kinds)
    if legacy:
        names = [""] if "" in groups else []
    else:
        names = sorted((g for g in groups if g), key=_group_sort_key)
    items = []
    for g in names:
        versions = []
        for v in groups[g]:
            res = [_aggregated_resource(k) for k in kinds if k.group == g and k.version == v]
            res.sort(key=lambda r: r["resource"])
            versions.append({"version": v, "resources": res, "freshness": "Current"})
        meta: dict[str, Any] = {"name": g} if g else {}
        items.append({"metadata": meta, "versions": versions})
    return {"kind": AGGREGATED_KIND, "apiVersion": f"{AGGREGATED_GROUP}/{AGGREGATED_VERSION}",
            "metadata": {}, "items": items}


def _parse_accept(accept: str) -> list[tuple[str, dict[str, str], float]]:
    out: list[tuple[str, dict[str, str], float]] = []
    for clause in (accept or "").split(","):
        parts = [p.strip() for p in clause.split(";")]
        mt = parts[0].lower()
        if not mt:
            continue
        params: dict[str, str] = {}
        q = 1.0
        for p in parts[1:]:
            if "=" not in p:
                continue
            name, _, val = p.partition("=")
            name = name.strip().lower()
            val = val.strip().strip('"')
            if name == "q":
                try:
                    q = float(val)
                except ValueError:
                    q = 0.0
            else:
                params[name] = val
        out.append((mt, params, q))
    return out


def negotiate_aggregated(accept_header: str | None) -> bool:
    """True when the client prefers the aggregated (apidiscovery.k8s.io/v2, JSON) form.

    Clauses are taken by q-value, then in the order sent; the first one this server can
    answer decides: the aggregated JSON media type → True; plain JSON / wildcards → False.
    (The v2beta1 and protobuf forms are not served, so they are skipped.)
    """
    clauses = _parse_accept(accept_header or "")
    order = sorted(range(len(clauses)), key=lambda i: -clauses[i][2])
    for i in order:
        mt, params, q = clauses[i]
        if q <= 0:
            continue
        if params.get("g") or params.get("v") or params.get("as"):
            if (mt in ("application/json", "application/*", "*/*") and params.get("g") == AGGREGATED_GROUP
                    and params.get("v") == AGGREGATED_VERSION and params.get("as") == AGGREGATED_KIND):
                return True
            continue
        if mt in ("application/json", "application/*", "*/*", "application/yaml"):
            return False
    return False


def etag(doc: dict[str, Any]) -> str:
    """A strong ETag for a discovery document (quoted hex sha256 of its JSON, as upstream's
    aggregated discovery handler computes over the serialized list)."""
    return '"' + hashlib.sha256(orjson.dumps(doc)).hexdigest().upper() + '"'


# --------------------------------------------------------------------------- /version
GIT_VERSION = f"v{K8S_VERSION}+kubelite"


@functools.cache
def version_info() -> dict[str, str]:
    """``/version``: version.Info."""
    import platform as _platform

    major, minor, _ = K8S_VERSION.split(".")
    machine = _platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine or "amd64")
    return {
        "major": major,
        "minor": minor,
        "emulationMajor": major,
        "emulationMinor": minor,
        "minCompatibilityMajor": major,
        "minCompatibilityMinor": str(int(minor) - 1),
        "gitVersion": GIT_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.25.0",
        "compiler": "gc",
        "platform": f"linux/{arch}",
    }
