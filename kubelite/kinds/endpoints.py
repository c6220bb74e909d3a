"""v1 Endpoints and discovery.k8s.io/v1 EndpointSlice (pkg/registry/core/endpoint,
pkg/registry/discovery/endpointslice, pkg/apis/discovery/validation, printers.go).
Controllers keep them: kubelite/controllers/endpointslice.py and endpoints.py."""

from __future__ import annotations

from typing import Any

from kubelite.api import field as f
from kubelite.api.field import FieldError, Path
from kubelite.api.meta import (
    is_dns1123_label,
    is_dns1123_subdomain,
    is_valid_port_num,
    name_is_dns_subdomain,
    parse_ip_sloppy,
    validate_labels,
)
from kubelite.kinds._printing import age, age_column, doc, get, meta, name_column
from kubelite.kinds.base import Column, Kind, Obj, Strategy

PROTOCOLS = ("SCTP", "TCP", "UDP")
ADDRESS_TYPES = ("FQDN", "IPv4", "IPv6")
MAX_ENDPOINTS = 1000
MAX_ADDRESSES = 100
MAX_PORTS = 20000
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _more(items: list[str], total: int, shown: int = 3, empty: str = "<unset>") -> str:
    """listWithMoreString."""
    text = ",".join(items[:shown])
    if total > shown:
        return f"{text} + {total - shown} more..."
    return text or empty


def _ip_errors(path: Path, ip: str, version: int = 0) -> list[FieldError]:
    parsed = parse_ip_sloppy(ip)
    if parsed is None or version and parsed.version != version:
        kind = {4: "IPv4 ", 6: "IPv6 "}.get(version, "IP ")
        return [f.invalid(path, ip, f"must be a valid {kind}address")]
    return []


# ------------------------------------------------------------------------------- Endpoints


def validate_endpoints(obj: Obj) -> list[FieldError]:
    """ValidateEndpoints (without the non-special-IP checks)."""
    errs: list[FieldError] = []
    for i, subset in enumerate(_l(obj.get("subsets"))):
        sp = Path("subsets").index(i)
        subset = _d(subset)
        addrs = _l(subset.get("addresses")) + _l(subset.get("notReadyAddresses"))
        if not addrs:
            errs.append(f.required(sp, "must specify `addresses` or `notReadyAddresses`"))
        for key in ("addresses", "notReadyAddresses"):
            for j, a in enumerate(_l(subset.get(key))):
                a = _d(a)
                ap = sp.child(key).index(j)
                errs += _ip_errors(ap.child("ip"), str(a.get("ip") or ""))
                if a.get("hostname"):
                    errs += [f.invalid(ap.child("hostname"), a["hostname"], m) for m in is_dns1123_label(
                        str(a["hostname"]))]
                if a.get("nodeName"):
                    errs += [f.invalid(ap.child("nodeName"), a["nodeName"], m) for m in is_dns1123_subdomain(
                        str(a["nodeName"]))]
        ports = _l(subset.get("ports"))
        for j, p in enumerate(ports):
            errs += _validate_port(_d(p), len(ports) > 1, sp.child("ports").index(j), required_number=True)
    return errs


def _validate_port(p: dict[str, Any], require_name: bool, path: Path, required_number: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    name = p.get("name") or ""
    if require_name and not name:
        errs.append(f.required(path.child("name"), ""))
    elif name:
        errs += [f.invalid(path.child("name"), name, m) for m in is_dns1123_label(str(name))]
    if "port" in p or required_number:
        errs += [f.invalid(path.child("port"), _int(p.get("port")), m) for m in is_valid_port_num(
            _int(p.get("port")))]
    proto = p.get("protocol") or ""
    if not proto:
        errs.append(f.required(path.child("protocol"), ""))
    elif proto not in PROTOCOLS:
        errs.append(f.not_supported(path.child("protocol"), proto, list(PROTOCOLS)))
    return errs


def format_endpoints(obj: Obj) -> str:
    """formatEndpoints: ip:port pairs, three at most."""
    out: list[str] = []
    total = 0
    for subset in _l(obj.get("subsets")):
        subset = _d(subset)
        ports = [_d(p) for p in _l(subset.get("ports"))]
        for a in _l(subset.get("addresses")):
            ip = str(_d(a).get("ip") or "")
            if not ports:
                total += 1
                out.append(ip)
            for p in ports:
                total += 1
                out.append(f"{ip}:{_int(p.get('port'))}")
    return _more(out, total, empty="<none>")


class EndpointsStrategy(Strategy):
    def default(self, obj: Obj) -> None:
        for subset in _l(obj.get("subsets")):
            for p in _l(_d(subset).get("ports")):
                if isinstance(p, dict) and not p.get("protocol"):
                    p["protocol"] = "TCP"

    def validate(self, obj: Obj) -> list[FieldError]:
        return validate_endpoints(obj)

    columns = (
        name_column(),
        Column("Endpoints", "string", "", "Endpoints of the service"),
        age_column(),
    )

    def row(self, obj: Obj) -> list[Any]:
        return [meta(obj).get("name", ""), format_endpoints(obj), age(get(obj, "metadata", "creationTimestamp"))]


ENDPOINTS = Kind(
    group="",
    version="v1",
    kind="Endpoints",
    plural="endpoints",
    singular="endpoints",
    namespaced=True,
    strategy=EndpointsStrategy(),
    short_names=("ep",),
    schema_ref="io.k8s.api.core.v1.Endpoints",
    name_validator=name_is_dns_subdomain,
)


# ------------------------------------------------------------------------------- EndpointSlice


def validate_endpoint_slice(obj: Obj) -> list[FieldError]:
    """ValidateEndpointSlice."""
    errs: list[FieldError] = []
    at = obj.get("addressType") or ""
    if not at:
        errs.append(f.required(Path("addressType"), ""))
    elif at not in ADDRESS_TYPES:
        errs.append(f.not_supported(Path("addressType"), at, list(ADDRESS_TYPES)))
    eps = _l(obj.get("endpoints"))
    if len(eps) > MAX_ENDPOINTS:
        errs.append(f.too_many(Path("endpoints"), len(eps), MAX_ENDPOINTS))
    for i, ep in enumerate(eps):
        ep = _d(ep)
        ep_path = Path("endpoints").index(i)
        addrs = _l(ep.get("addresses"))
        ap = ep_path.child("addresses")
        if not addrs:
            errs.append(f.required(ap, "must contain at least 1 address"))
        elif len(addrs) > MAX_ADDRESSES:
            errs.append(f.too_many(ap, len(addrs), MAX_ADDRESSES))
        for j, a in enumerate(addrs):
            a = str(a)
            if at == "IPv4":
                errs += _ip_errors(ap.index(j), a, 4)
            elif at == "IPv6":
                errs += _ip_errors(ap.index(j), a, 6)
            elif at == "FQDN":
                errs += [f.invalid(ap.index(j), a, m) for m in is_dns1123_subdomain(a)]
        if ep.get("nodeName"):
            errs += [f.invalid(ep_path.child("nodeName"), ep["nodeName"], m) for m in is_dns1123_subdomain(
                str(ep["nodeName"]))]
        if ep.get("hostname"):
            errs += [f.invalid(ep_path.child("hostname"), ep["hostname"], m) for m in is_dns1123_label(
                str(ep["hostname"]))]
        if ep.get("deprecatedTopology") is not None:
            errs += validate_labels(ep["deprecatedTopology"], ep_path.child("deprecatedTopology"))
    ports = _l(obj.get("ports"))
    if len(ports) > MAX_PORTS:
        errs.append(f.too_many(Path("ports"), len(ports), MAX_PORTS))
    names: set[str] = set()
    for i, p in enumerate(ports):
        p = _d(p)
        pp = Path("ports").index(i)
        name = p.get("name") or ""
        if name:
            errs += [f.invalid(pp.child("name"), name, m) for m in is_dns1123_label(str(name))]
        if name in names:
            errs.append(f.duplicate(pp.child("name"), name))
        names.add(name)
        if p.get("port") is not None:
            errs += [f.invalid(pp.child("port"), _int(p.get("port")), m) for m in is_valid_port_num(
                _int(p.get("port")))]
        proto = p.get("protocol")
        if not proto:
            errs.append(f.required(pp.child("protocol"), ""))
        elif proto not in PROTOCOLS:
            errs.append(f.not_supported(pp.child("protocol"), proto, list(PROTOCOLS)))
    return errs


def format_slice_ports(obj: Obj) -> str:
    out = []
    for p in _l(obj.get("ports")):
        p = _d(p)
        out.append(str(p["port"]) if p.get("port") is not None else str(p.get("name") or "*"))
    return _more(out, len(out))


def format_slice_endpoints(obj: Obj) -> str:
    out = [str(a) for ep in _l(obj.get("endpoints")) for a in _l(_d(ep).get("addresses"))]
    return _more(out, len(out))


class EndpointSliceStrategy(Strategy):
    tracks_generation = True

    def default(self, obj: Obj) -> None:
        for p in _l(obj.get("ports")):
            if isinstance(p, dict):
                p.setdefault("name", "")
                if not p.get("protocol"):
                    p["protocol"] = "TCP"

    def validate(self, obj: Obj) -> list[FieldError]:
        return validate_endpoint_slice(obj)

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        errs = []
        if new.get("addressType") != old.get("addressType"):
            errs.append(f.invalid(Path("addressType"), new.get("addressType"), "field is immutable"))
        return errs + validate_endpoint_slice(new)

    columns = (
        name_column(),
        Column("AddressType", "string", "", doc("io.k8s.api.discovery.v1.EndpointSlice", "addressType")),
        Column("Ports", "string", "", doc("io.k8s.api.discovery.v1.EndpointSlice", "ports")),
        Column("Endpoints", "string", "", doc("io.k8s.api.discovery.v1.EndpointSlice", "endpoints")),
        age_column(),
    )

    def row(self, obj: Obj) -> list[Any]:
        return [meta(obj).get("name", ""), obj.get("addressType", ""), format_slice_ports(obj),
                format_slice_endpoints(obj), age(get(obj, "metadata", "creationTimestamp"))]


ENDPOINTSLICE = Kind(
    group="discovery.k8s.io",
    version="v1",
    kind="EndpointSlice",
    plural="endpointslices",
    namespaced=True,
    strategy=EndpointSliceStrategy(),
    schema_ref="io.k8s.api.discovery.v1.EndpointSlice",
    name_validator=name_is_dns_subdomain,
)
