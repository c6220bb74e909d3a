"""v1 Node (pkg/registry/core/node, ValidateNode / ValidateNodeUpdate, printNode)."""

from __future__ import annotations

import ipaddress
from typing import Any

from kubelite.api import field as f
from kubelite.api.field import FieldError, Path
from kubelite.api.meta import is_qualified_name, is_valid_label_value, name_is_dns_subdomain
from kubelite.apiserver.rest import NODE_STREAMS
from kubelite.kinds._printing import GoJSON, age, age_column, doc, get, meta, name_column
from kubelite.kinds.base import STATUS, Column, Kind, Obj, Strategy, Subresource

# the HTTP methods a proxy subresource relays (upstream's connect verbs)
PROXY_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")

LABEL_NODE_ROLE_PREFIX = "node-role.kubernetes.io/"
NODE_LABEL_ROLE = "kubernetes.io/role"
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_CIDR_INVALID = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
_PODCIDR_CHANGE = 'node updates may not change podCIDR except from "" to valid'


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def sync_pod_cidrs(obj: Obj) -> None:
    """Convert_v1_NodeSpec_To_core_NodeSpec + back: podCIDR is podCIDRs[0]; podCIDR wins when they differ."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    single = spec.get("podCIDR") or ""
    many = [c for c in _list(spec.get("podCIDRs")) if isinstance(c, str)]
    if single and (not many or many[0] != single):
        many = [single]
    if many:
        spec["podCIDRs"] = many
        spec["podCIDR"] = many[0]


def validate_cidr(path: Path, value: str) -> list[FieldError]:
    """validation.IsValidCIDR (strict: no leading zeros, no 4-in-6, no host bits, canonical form)."""
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        # Python rejects leading zeros that Go's sloppy parser accepts; tell them apart.
        if _sloppy_ok(value):
            return [f.invalid(path, value, "must not have leading 0s in IP or prefix length")]
        return [f.invalid(path, value, _CIDR_INVALID)]
    addr_s, _, plen = value.partition("/")
    if not plen.isdigit() or (len(plen) > 1 and plen.startswith("0")):
        return [f.invalid(path, value, "must not have leading 0s in IP or prefix length")]
    addr = ipaddress.ip_address(addr_s)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return [f.invalid(path, value, "must not have an IPv4-mapped IPv6 address")]
    net = ipaddress.ip_network(value, strict=False)
    if net.network_address != addr:
        return [f.invalid(path, value, "must not have bits set beyond the prefix length")]
    if str(net) != value:
        return [f.invalid(path, value, f'must be in canonical form ("{net}")')]
    return []


def _sloppy_ok(value: str) -> bool:
    addr, sep, plen = value.partition("/")
    if not sep or not plen.isdigit():
        return False
    parts = addr.split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
        return False
    return int(plen) <= 32


def _family(cidr: str) -> int | None:
    try:
        return ipaddress.ip_network(cidr, strict=False).version
    except ValueError:
        return None


def _taint_json(t: dict[str, Any]) -> dict[str, Any]:
    """core.Taint as json.Marshal renders it (struct field order, omitempty)."""
    out: dict[str, Any] = {"key": t.get("key") or ""}
    if t.get("value"):
        out["value"] = t["value"]
    out["effect"] = t.get("effect") or ""
    if t.get("timeAdded"):
        out["timeAdded"] = t["timeAdded"]
    return out


def validate_taints(taints: list[Any], path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: dict[str, set[str]] = {}
    for i, t in enumerate(taints):
        p = path.index(i)
        t = t if isinstance(t, dict) else {}
        key = str(t.get("key") or "")
        value = str(t.get("value") or "")
        effect = str(t.get("effect") or "")
        errs.extend(f.invalid(p.child("key"), key, msg) for msg in is_qualified_name(key))
        msgs = is_valid_label_value(value)
        if msgs:
            errs.append(f.invalid(p.child("value"), value, ";".join(msgs)))
        if not effect:
            errs.append(f.required(p.child("effect")))
        elif effect not in TAINT_EFFECTS:
            errs.append(f.not_supported(p.child("effect"), effect, TAINT_EFFECTS))
        if key in seen.get(effect, set()):
            errs.append(f.FieldError(f.DUPLICATE, str(p), GoJSON(_taint_json(t)),
                                     "taints must be unique by key and effect pair"))
            continue
        seen.setdefault(effect, set()).add(key)
    return errs


def validate_node(obj: Obj) -> list[FieldError]:
    errs: list[FieldError] = []
    taints = _list(get(obj, "spec", "taints"))
    if taints:
        # Upstream validates spec.taints under the "metadata" path.
        errs.extend(validate_taints(taints, Path("metadata", "taints")))
    cidrs = _list(get(obj, "spec", "podCIDRs"))
    if cidrs:
        p = Path("spec", "podCIDRs")
        for i, c in enumerate(cidrs):
            errs.extend(validate_cidr(p.index(i), str(c)))
        if len(cidrs) > 1:
            fams = [_family(str(c)) for c in cidrs]
            if len(cidrs) > 2 or None in fams or fams[0] == fams[1]:
                errs.append(f.invalid(p, GoJSON([str(c) for c in cidrs]),
                                      "may specify no more than one CIDR for each IP family"))
            seen: set[str] = set()
            for i, c in enumerate(cidrs):
                if c in seen:
                    errs.append(f.duplicate(p.index(i), c))
                seen.add(c)
    return errs


def validate_node_update(new: Obj, old: Obj) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: list[Any] = []
    for i, a in enumerate(_list(get(new, "status", "addresses"))):
        if a in seen:
            errs.append(f.duplicate(Path("status", "addresses").index(i), GoJSON(a)))
        seen.append(a)
    old_cidrs = _list(get(old, "spec", "podCIDRs"))
    new_cidrs = _list(get(new, "spec", "podCIDRs"))
    if old_cidrs:
        if len(old_cidrs) != len(new_cidrs):
            errs.append(f.forbidden(Path("spec", "podCIDRs"), _PODCIDR_CHANGE))
        else:
            errs.extend(f.forbidden(Path("spec", "podCIDRs"), _PODCIDR_CHANGE)
                        for o, n in zip(old_cidrs, new_cidrs, strict=True) if o != n)
    old_pid = get(old, "spec", "providerID", default="")
    if old_pid and old_pid != get(new, "spec", "providerID", default=""):
        errs.append(f.forbidden(Path("spec", "providerID"),
                                'node updates may not change providerID except from "" to valid'))
    taints = _list(get(new, "spec", "taints"))
    if taints:
        errs.extend(validate_taints(taints, Path("metadata", "taints")))
    if get(new, "spec", "externalID", default="") != get(old, "spec", "externalID", default=""):
        errs.append(f.forbidden(Path("spec", "externalID"), "may not be updated"))
    return errs


def node_status(obj: Obj) -> str:
    status: list[str] = []
    for c in _list(get(obj, "status", "conditions")):
        if isinstance(c, dict) and c.get("type") == "Ready":
            ready = c  # the last Ready condition wins, as in upstream's map
            status = ["Ready" if ready.get("status") == "True" else "NotReady"]
    if not status:
        status = ["Unknown"]
    if get(obj, "spec", "unschedulable") is True:
        status.append("SchedulingDisabled")
    return ",".join(status)


def node_roles(obj: Obj) -> list[str]:
    roles: set[str] = set()
    labels = meta(obj).get("labels")
    for k, v in (labels if isinstance(labels, dict) else {}).items():
        if k.startswith(LABEL_NODE_ROLE_PREFIX):
            role = k[len(LABEL_NODE_ROLE_PREFIX):]
            if role:
                roles.add(role)
        elif k == NODE_LABEL_ROLE and v:
            roles.add(v)
    return sorted(roles)


def _address(obj: Obj, typ: str) -> str:
    for a in _list(get(obj, "status", "addresses")):
        if isinstance(a, dict) and a.get("type") == typ:
            return str(a.get("address", ""))
    return "<none>"


class NodeStrategy(Strategy):
    def default(self, obj: Obj) -> None:
        sync_pod_cidrs(obj)

    def validate(self, obj: Obj) -> list[FieldError]:
        return validate_node(obj)

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        # nodeStrategy.ValidateUpdate: ValidateNode(new) + ValidateNodeUpdate(new, old)
        return validate_node(new) + validate_node_update(new, old)

    def validate_status_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return validate_node_update(new, old)

    def field_labels(self, obj: Obj) -> dict[str, str]:
        return {"spec.unschedulable": "true" if get(obj, "spec", "unschedulable") is True else "false"}

    _INFO = "io.k8s.api.core.v1.NodeSystemInfo"
    columns = (
        name_column(),
        Column("Status", "string", "", "The status of the node"),
        Column("Roles", "string", "", "The roles of the node"),
        age_column(),
        Column("Version", "string", "", doc(_INFO, "kubeletVersion")),
        Column("Internal-IP", "string", "", doc("io.k8s.api.core.v1.NodeStatus", "addresses"), 1),
        Column("External-IP", "string", "", doc("io.k8s.api.core.v1.NodeStatus", "addresses"), 1),
        Column("OS-Image", "string", "", doc(_INFO, "osImage"), 1),
        Column("Kernel-Version", "string", "", doc(_INFO, "kernelVersion"), 1),
        Column("Container-Runtime", "string", "", doc(_INFO, "containerRuntimeVersion"), 1),
    )

    def row(self, obj: Obj) -> list[Any]:
        info = get(obj, "status", "nodeInfo", default={})
        info = info if isinstance(info, dict) else {}
        return [
            meta(obj).get("name", ""),
            node_status(obj),
            ",".join(node_roles(obj)) or "<none>",
            age(get(obj, "metadata", "creationTimestamp")),
            info.get("kubeletVersion") or "",
            _address(obj, "InternalIP"),
            _address(obj, "ExternalIP"),
            info.get("osImage") or "<unknown>",
            info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>",
        ]


NODE = Kind(
    group="",
    version="v1",
    kind="Node",
    plural="nodes",
    namespaced=False,
    strategy=NodeStrategy(),
    short_names=("no",),
    subresources=(
        STATUS,
        Subresource("proxy", ("create", "delete", "get", "patch", "update"), kind="NodeProxyOptions",
                    connect=PROXY_METHODS, takes_path=True, rest=lambda ctx: ctx.services.require(NODE_STREAMS).node_proxy),
    ),
    schema_ref="io.k8s.api.core.v1.Node",
    name_validator=name_is_dns_subdomain,
)
