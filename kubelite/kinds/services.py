"""v1 Service (pkg/registry/core/service, pkg/apis/core/validation ValidateService,
pkg/apis/core/v1 SetDefaults_Service, pkg/printers/internalversion printService).

ClusterIPs and NodePorts are allocated by the Service store (kinds/service_rest.py), before
validation as upstream's BeginCreate does; everything here is pure.
"""

from __future__ import annotations

import copy
from typing import Any

from kubelite.api import field as f
from kubelite.api.field import FieldError, Path
from kubelite.api.meta import (
    is_dns1123_label,
    is_dns1123_subdomain,
    is_valid_ip_for_legacy_field,
    is_valid_port_name,
    is_valid_port_num,
    name_is_dns1035_label,
    parse_ip_sloppy,
    validate_labels,
)
from kubelite.kinds import _gorepr as go
from kubelite.kinds._printing import age, age_column, doc, get, meta, name_column
from kubelite.kinds.base import STATUS, Column, Kind, Obj, Strategy

SVC = "io.k8s.api.core.v1.Service"
SPEC = "io.k8s.api.core.v1.ServiceSpec"
TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
PROTOCOLS = ("SCTP", "TCP", "UDP")
AFFINITIES = ("ClientIP", "None")
FAMILIES = ("IPv4", "IPv6")
FAMILY_POLICIES = ("PreferDualStack", "RequireDualStack", "SingleStack")
TRAFFIC_POLICIES = ("Cluster", "Local")
DEFAULT_AFFINITY_TIMEOUT = 10800  # v1.DefaultClientIPServiceAffinitySeconds
MAX_AFFINITY_TIMEOUT = 86400


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def spec_of(svc: Obj) -> dict[str, Any]:
    return _d(svc.get("spec"))


def is_headless(svc: Obj) -> bool:
    ips = _l(spec_of(svc).get("clusterIPs"))
    return len(ips) == 1 and ips[0] == "None"


def needs_node_ports(svc: Obj) -> bool:
    spec = spec_of(svc)
    t = spec.get("type")
    if t == "NodePort":
        return True
    return t == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts", True) is not False


def needs_health_check(svc: Obj) -> bool:
    spec = spec_of(svc)
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


# ------------------------------------------------------------------------------- defaulting


def default_service(svc: Obj) -> None:
    """SetDefaults_Service (and the strategy's NormalizeClusterIPs for a create)."""
    if svc.get("spec") is None:
        svc["spec"] = {}  # a Go ServiceSpec is a struct: there is always one to default
    spec = svc.get("spec")
    if not isinstance(spec, dict):
        return
    if not spec.get("sessionAffinity"):
        spec["sessionAffinity"] = "None"
    if not spec.get("type"):
        spec["type"] = "ClusterIP"
    for port in _l(spec.get("ports")):
        if not isinstance(port, dict):
            continue
        if not port.get("protocol"):
            port["protocol"] = "TCP"
        tp = port.get("targetPort")
        if tp is None or tp == 0 or tp == "":
            port["targetPort"] = port.get("port")
    t = spec["type"]
    if t in ("NodePort", "LoadBalancer") and not spec.get("externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = "Cluster"
    if t != "ExternalName" and spec.get("internalTrafficPolicy") is None:
        spec["internalTrafficPolicy"] = "Cluster"
    if t == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        spec["allocateLoadBalancerNodePorts"] = True
    if spec["sessionAffinity"] == "ClientIP":
        cfg = spec.get("sessionAffinityConfig")
        if cfg is None:
            spec["sessionAffinityConfig"] = cfg = {}
        if isinstance(cfg, dict):
            cip = cfg.get("clientIP")
            if cip is None:
                cfg["clientIP"] = cip = {}
            if isinstance(cip, dict) and cip.get("timeoutSeconds") is None:
                cip["timeoutSeconds"] = DEFAULT_AFFINITY_TIMEOUT
    # NormalizeClusterIPs: a client that sets only clusterIP gets clusterIPs too
    if spec.get("clusterIP") and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [spec["clusterIP"]]


def normalize_update(new: Obj, old: Obj) -> None:
    """NormalizeClusterIPs for an update and dropTypeDependentFields (service strategy)."""
    spec, ospec = spec_of(new), spec_of(old)
    if not isinstance(new.get("spec"), dict):
        return
    if ospec.get("clusterIPs") and not spec.get("clusterIPs") and ospec.get("clusterIP") == spec.get("clusterIP"):
        spec["clusterIPs"] = copy.deepcopy(ospec["clusterIPs"])
    if ospec.get("clusterIP") != spec.get("clusterIP"):
        same = ospec.get("clusterIPs") == spec.get("clusterIPs")
        if ospec.get("clusterIP") and not spec.get("clusterIP") and same:
            spec.pop("clusterIPs", None)
        if spec.get("clusterIP") and same:
            spec["clusterIPs"] = [spec["clusterIP"]]
    # an old client that keeps ipFamilies/ipFamilyPolicy out of its PUT keeps them
    if spec.get("type") != "ExternalName" and ospec.get("type") != "ExternalName":
        for k in ("ipFamilies", "ipFamilyPolicy"):
            if spec.get(k) is None and ospec.get(k) is not None:
                spec[k] = copy.deepcopy(ospec[k])
    # dropTypeDependentFields: what the old type needed and the new one does not, unless changed
    if ospec.get("type") != spec.get("type"):
        if spec.get("type") == "ExternalName":
            for k in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
                if spec.get(k) == ospec.get(k):
                    spec.pop(k, None)
        if needs_node_ports(old) and not needs_node_ports(new):
            oports, nports = _l(ospec.get("ports")), _l(spec.get("ports"))
            for i, p in enumerate(nports):
                if isinstance(p, dict) and i < len(oports) and p.get("nodePort") == _d(oports[i]).get("nodePort"):
                    p.pop("nodePort", None)
        if needs_health_check(old) and not needs_health_check(new) and \
                spec.get("healthCheckNodePort") == ospec.get("healthCheckNodePort"):
            spec.pop("healthCheckNodePort", None)
        if spec.get("type") not in ("NodePort", "LoadBalancer") and \
                spec.get("externalTrafficPolicy") == ospec.get("externalTrafficPolicy"):
            spec.pop("externalTrafficPolicy", None)
        if spec.get("type") != "LoadBalancer":
            for k in ("allocateLoadBalancerNodePorts", "loadBalancerClass"):
                if spec.get(k) == ospec.get(k):
                    spec.pop(k, None)
        if spec.get("type") == "ExternalName" and spec.get("internalTrafficPolicy") == \
                ospec.get("internalTrafficPolicy"):
            spec.pop("internalTrafficPolicy", None)


def init_ip_families(svc: Obj, cluster_family: str) -> list[FieldError]:
    """initIPFamilyFields on a single-stack cluster whose family is ``cluster_family``."""
    spec = spec_of(svc)
    if spec.get("type") == "ExternalName" or not isinstance(svc.get("spec"), dict):
        return []
    if spec.get("ipFamilyPolicy") is None:
        spec["ipFamilyPolicy"] = "RequireDualStack" if spec.get("clusterIP") == "None" and not spec.get(
            "selector") else "SingleStack"
    errs = validate_cluster_ips(svc)
    if errs:
        return errs
    policy = spec["ipFamilyPolicy"]
    ips = _l(spec.get("clusterIPs"))
    fams = spec.get("ipFamilies")
    fams = list(fams) if isinstance(fams, list) else []
    p = Path("spec", "ipFamilyPolicy")
    if policy == "SingleStack":
        if len(ips) == 2:
            errs.append(f.invalid(p, policy, "must be 'RequireDualStack' or 'PreferDualStack' when multiple "
                                             "cluster IPs are specified"))
        if len(fams) == 2:
            errs.append(f.invalid(p, policy, "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP "
                                             "families are specified"))
    for i, ip in enumerate(ips):
        if ip == "None":
            break
        parsed = parse_ip_sloppy(str(ip))
        fam = "IPv6" if parsed is not None and parsed.version == 6 else "IPv4"
        if i >= len(fams):
            if fam != cluster_family:
                errs.append(f.invalid(Path("spec", "clusterIPs").index(i), ips, f"{fam} is not configured on this "
                                                                                 "cluster"))
            else:
                fams.append(fam)
    if errs:
        return errs
    if spec.get("clusterIP") == "None" and not spec.get("selector"):
        if not fams:
            fams = [cluster_family]
        if len(fams) < 2 and policy != "SingleStack":
            fams.append("IPv6" if fams[0] == "IPv4" else "IPv4")
        spec["ipFamilies"] = fams
        return []
    if policy == "RequireDualStack":
        errs.append(f.invalid(p, policy, "this cluster is not configured for dual-stack services"))
    for i, fam in enumerate(fams):
        if fam != cluster_family:
            errs.append(f.invalid(Path("spec", "ipFamilies").index(i), fam, "not configured on this cluster"))
    if errs:
        return errs
    spec["ipFamilies"] = fams or [cluster_family]
    return []


# ------------------------------------------------------------------------------- validation


def _go_service_port(port: dict[str, Any]) -> go.GoValue:
    """%#v of the core.ServicePort{Protocol, Port} key of the duplicate-port check."""
    return go.GoValue(f'core.ServicePort{{Name:"", Protocol:{f.go_quote(str(port.get("protocol") or ""))}, '
                      f"AppProtocol:(*string)(nil), Port:{_int(port.get('port'))}, "
                      'TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}')


def _validate_port(port: dict[str, Any], require_name: bool, names: set[str], path: Path) -> list[FieldError]:
    """validateServicePort."""
    errs: list[FieldError] = []
    name = port.get("name") or ""
    if require_name and not name:
        errs.append(f.required(path.child("name"), ""))
    elif name:
        errs += [f.invalid(path.child("name"), name, m) for m in is_dns1123_label(name)]
        if name in names:
            errs.append(f.duplicate(path.child("name"), name))
        else:
            names.add(name)
    errs += [f.invalid(path.child("port"), _int(port.get("port")), m) for m in is_valid_port_num(
        _int(port.get("port")))]
    proto = port.get("protocol") or ""
    if not proto:
        errs.append(f.required(path.child("protocol"), ""))
    elif proto not in PROTOCOLS:
        errs.append(f.not_supported(path.child("protocol"), proto, list(PROTOCOLS)))
    tp = port.get("targetPort")
    if isinstance(tp, str):
        errs += [f.invalid(path.child("targetPort"), tp, m) for m in is_valid_port_name(tp)]
    else:
        errs += [f.invalid(path.child("targetPort"), _int(tp), m) for m in is_valid_port_num(_int(tp))]
    app = port.get("appProtocol")
    if app is not None:
        from kubelite.api.meta import is_qualified_name

        errs += [f.invalid(path.child("appProtocol"), app, m) for m in is_qualified_name(str(app))]
    return errs


def validate_cluster_ips(svc: Obj) -> list[FieldError]:
    """ValidateServiceClusterIPsRelatedFields."""
    spec = spec_of(svc)
    if spec.get("type") == "ExternalName":
        return []
    errs: list[FieldError] = []
    ips_path = Path("spec", "clusterIPs")
    cip = spec.get("clusterIP") or ""
    ips = _l(spec.get("clusterIPs"))
    if cip:
        if not ips:
            errs.append(f.required(ips_path, ""))
        elif ips[0] != cip:
            errs.append(f.invalid(ips_path, ips, "first value must match `clusterIP`"))
    elif ips:
        errs.append(f.invalid(ips_path, ips, "must be empty when `clusterIP` is not specified"))
    seen: set[str] = set()
    for i, fam in enumerate(_l(spec.get("ipFamilies"))):
        if fam not in FAMILIES:
            errs.append(f.not_supported(Path("spec", "ipFamilies").index(i), fam, list(FAMILIES)))
        if fam in seen:
            errs.append(f.duplicate(Path("spec", "ipFamilies").index(i), fam))
        seen.add(fam)
    policy = spec.get("ipFamilyPolicy")
    if policy is not None and policy not in FAMILY_POLICIES:
        errs.append(f.not_supported(Path("spec", "ipFamilyPolicy"), policy, list(FAMILY_POLICIES)))
    bad = False
    for i, ip in enumerate(ips):
        if i == 0 and ip == "None":
            if len(ips) > 1:
                bad = True
                errs.append(f.invalid(ips_path, ips, "'None' must be the first and only value"))
            continue
        ip_errs = is_valid_ip_for_legacy_field(ips_path.index(i), str(ip), False)
        bad = bad or bool(ip_errs)
        errs += ip_errs
    if len(ips) > 2:
        errs.append(f.invalid(ips_path, ips, "may only hold up to 2 values"))
    if bad:
        return errs
    if len(ips) > 1:
        versions = {getattr(parse_ip_sloppy(str(ip)), "version", 0) for ip in ips}
        if len(versions) != len(ips):
            errs.append(f.invalid(ips_path, ips, "may specify no more than one IP for each IP family"))
    fams = _l(spec.get("ipFamilies"))
    if not is_headless(svc):
        for i, ip in enumerate(ips):
            if i >= len(fams):
                break
            v6 = getattr(parse_ip_sloppy(str(ip)), "version", 4) == 6
            if fams[i] == "IPv4" and v6:
                errs.append(f.invalid(ips_path.index(i), ip, f"expected an IPv4 value as indicated by "
                                                             f"`ipFamilies[{i}]`"))
            if fams[i] == "IPv6" and not v6:
                errs.append(f.invalid(ips_path.index(i), ip, f"expected an IPv6 value as indicated by "
                                                             f"`ipFamilies[{i}]`"))
    return errs


def validate_service(svc: Obj) -> list[FieldError]:
    """ValidateService (object metadata is validated generically)."""
    spec = spec_of(svc)
    sp = Path("spec")
    errs: list[FieldError] = []
    t = spec.get("type") or ""
    ports = [p if isinstance(p, dict) else {} for p in _l(spec.get("ports"))]
    if not ports and not is_headless(svc) and t != "ExternalName":
        errs.append(f.required(sp.child("ports"), ""))
    if t in ("LoadBalancer", "NodePort") and is_headless(svc):
        errs.append(f.invalid(sp.child("clusterIPs").index(0), "None", f"may not be set to 'None' for {t} services"))
    if t == "ExternalName":
        if _l(spec.get("clusterIPs")):
            errs.append(f.forbidden(sp.child("clusterIPs"), "may not be set for ExternalName services"))
        if _l(spec.get("ipFamilies")):
            errs.append(f.forbidden(sp.child("ipFamilies"), "may not be set for ExternalName services"))
        if spec.get("ipFamilyPolicy") is not None:
            errs.append(f.forbidden(sp.child("ipFamilyPolicy"), "may not be set for ExternalName services"))
        cname = str(spec.get("externalName") or "").removesuffix(".")
        if cname:
            errs += [f.invalid(sp.child("externalName"), cname, m) for m in is_dns1123_subdomain(cname)]
        else:
            errs.append(f.required(sp.child("externalName"), ""))
    names: set[str] = set()
    for i, port in enumerate(ports):
        errs += _validate_port(port, len(ports) > 1, names, sp.child("ports").index(i))
    if spec.get("selector") is not None:
        errs += validate_labels(spec.get("selector"), sp.child("selector"))
    affinity = spec.get("sessionAffinity") or ""
    if not affinity:
        errs.append(f.required(sp.child("sessionAffinity"), ""))
    elif affinity not in AFFINITIES:
        errs.append(f.not_supported(sp.child("sessionAffinity"), affinity, list(AFFINITIES)))
    cfg_path = sp.child("sessionAffinityConfig")
    if affinity == "ClientIP":
        cfg = spec.get("sessionAffinityConfig")
        if not isinstance(cfg, dict):
            errs.append(f.required(cfg_path, "when session affinity type is ClientIP"))
        elif not isinstance(cfg.get("clientIP"), dict):
            errs.append(f.required(cfg_path.child("clientIP"), "when session affinity type is ClientIP"))
        elif cfg["clientIP"].get("timeoutSeconds") is None:
            errs.append(f.required(cfg_path.child("clientIP").child("timeoutSeconds"),
                                   "when session affinity type is ClientIP"))
        else:
            timeout = _int(cfg["clientIP"].get("timeoutSeconds"))
            if not 0 < timeout <= MAX_AFFINITY_TIMEOUT:
                errs.append(f.invalid(cfg_path.child("clientIP").child("timeoutSeconds"), timeout,
                                      f"must be greater than 0 and less than {MAX_AFFINITY_TIMEOUT}"))
    elif affinity == "None" and spec.get("sessionAffinityConfig") is not None:
        errs.append(f.forbidden(cfg_path, "must not be set when session affinity is None"))
    errs += validate_cluster_ips(svc)
    for i, ip in enumerate(_l(spec.get("externalIPs"))):
        errs += is_valid_ip_for_legacy_field(sp.child("externalIPs").index(i), str(ip), False)
    if not t:
        errs.append(f.required(sp.child("type"), ""))
    elif t not in TYPES:
        errs.append(f.not_supported(sp.child("type"), t, list(TYPES)))
    if t == "ClusterIP":
        for i, port in enumerate(ports):
            if _int(port.get("nodePort")):
                errs.append(f.forbidden(sp.child("ports").index(i).child("nodePort"),
                                        "may not be used when `type` is 'ClusterIP'"))
    seen_np: set[tuple[str, int]] = set()
    for i, port in enumerate(ports):
        np = _int(port.get("nodePort"))
        if not np:
            continue
        key = (str(port.get("protocol")), np)
        if key in seen_np:
            errs.append(f.duplicate(sp.child("ports").index(i).child("nodePort"), np))
        seen_np.add(key)
    seen: set[tuple[str, int]] = set()
    for i, port in enumerate(ports):
        key = (str(port.get("protocol")), _int(port.get("port")))
        if key in seen:
            errs.append(f.duplicate(sp.child("ports").index(i), _go_service_port(port)))
        seen.add(key)
    etp = spec.get("externalTrafficPolicy") or ""
    if t in ("NodePort", "LoadBalancer") or t == "ClusterIP" and _l(spec.get("externalIPs")):
        if not etp:
            errs.append(f.required(sp.child("externalTrafficPolicy"), ""))
        elif etp not in TRAFFIC_POLICIES:
            errs.append(f.not_supported(sp.child("externalTrafficPolicy"), etp, list(TRAFFIC_POLICIES)))
    elif etp:
        errs.append(f.invalid(sp.child("externalTrafficPolicy"), etp,
                              "may only be set for externally-accessible services"))
    if not needs_health_check(svc) and _int(spec.get("healthCheckNodePort")):
        errs.append(f.invalid(sp.child("healthCheckNodePort"), _int(spec.get("healthCheckNodePort")),
                              "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"))
    itp = spec.get("internalTrafficPolicy")
    if t != "ExternalName":
        if itp is None:
            errs.append(f.required(sp.child("internalTrafficPolicy"), "if `type` is not 'ExternalName'"))
    if itp is not None and itp not in TRAFFIC_POLICIES:
        errs.append(f.not_supported(sp.child("internalTrafficPolicy"), itp, list(TRAFFIC_POLICIES)))
    return errs


def validate_service_update(new: Obj, old: Obj) -> list[FieldError]:
    """ValidateServiceUpdate: the primary ClusterIP and IP family may not change."""
    errs: list[FieldError] = []
    spec, ospec = spec_of(new), spec_of(old)
    if spec.get("type") != "ExternalName" and ospec.get("type") != "ExternalName" and \
            not (is_headless(new) and is_headless(old)):
        ips, oips = _l(spec.get("clusterIPs")), _l(ospec.get("clusterIPs"))
        p0 = Path("spec", "clusterIPs").index(0)
        if len(oips) == len(ips):
            for i, ip in enumerate(oips):
                if ip != ips[i]:
                    errs.append(f.invalid(Path("spec", "clusterIPs").index(i), ips, "may not change once set"))
        elif len(oips) > len(ips):
            if not ips:
                errs.append(f.invalid(p0, ips, "primary clusterIP can not be unset"))
            elif oips and ips[0] != oips[0]:
                errs.append(f.invalid(p0, ips, "may not change once set"))
        elif oips and ips[0] != oips[0]:
            errs.append(f.invalid(p0, ips, "may not change once set"))
        if is_headless(new) == is_headless(old) and not is_headless(new):
            fams, ofams = _l(spec.get("ipFamilies")), _l(ospec.get("ipFamilies"))
            if len(fams) == len(ofams) and fams != ofams or fams and ofams and fams[0] != ofams[0]:
                errs.append(f.invalid(Path("spec", "ipFamilies").index(0), fams, "may not change once set"))
    return errs + validate_service(new)


def validate_status(svc: Obj) -> list[FieldError]:
    """ValidateLoadBalancerStatus."""
    errs: list[FieldError] = []
    for i, ing in enumerate(_l(_d(_d(svc.get("status")).get("loadBalancer")).get("ingress"))):
        ing = _d(ing)
        p = Path("status", "loadBalancer", "ingress").index(i)
        if ing.get("ip"):
            errs += is_valid_ip_for_legacy_field(p.child("ip"), str(ing["ip"]), False)
        if ing.get("hostname"):
            h = str(ing["hostname"])
            errs += [f.invalid(p.child("hostname"), h, m) for m in is_dns1123_subdomain(h)]
            if parse_ip_sloppy(h) is not None:
                errs.append(f.invalid(p.child("hostname"), h, "must be a DNS name, not an IP address"))
    return errs


# ------------------------------------------------------------------------------- printing


def external_ip(svc: Obj) -> str:
    """getServiceExternalIP (printers.go)."""
    spec = spec_of(svc)
    t = spec.get("type")
    ext = [str(x) for x in _l(spec.get("externalIPs"))]
    if t in ("ClusterIP", "NodePort"):
        return ",".join(ext) if ext else "<none>"
    if t == "LoadBalancer":
        ing = [str(_d(i).get("ip") or _d(i).get("hostname") or "") for i in _l(_d(_d(svc.get("status")).get(
            "loadBalancer")).get("ingress"))]
        shown = [x for x in ing if x] + ext
        return ",".join(shown) if shown else "<pending>"
    if t == "ExternalName":
        return str(spec.get("externalName") or "")
    return "<unknown>"


def ports_text(svc: Obj) -> str:
    """makePortString."""
    out = []
    for p in _l(spec_of(svc).get("ports")):
        p = _d(p)
        s = f"{_int(p.get('port'))}"
        if _int(p.get("nodePort")):
            s += f":{_int(p.get('nodePort'))}"
        out.append(f"{s}/{p.get('protocol') or 'TCP'}")
    return ",".join(out) if out else "<none>"


def selector_text(sel: Any) -> str:
    """labels.FormatLabels."""
    if not isinstance(sel, dict) or not sel:
        return "<none>"
    return ",".join(f"{k}={v}" for k, v in sorted(sel.items()))


class ServiceStrategy(Strategy):
    def default(self, obj: Obj) -> None:
        default_service(obj)

    def prepare_for_create(self, obj: Obj) -> None:
        obj["status"] = {"loadBalancer": {}}

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        new["status"] = copy.deepcopy(old.get("status") or {"loadBalancer": {}})
        normalize_update(new, old)

    def validate(self, obj: Obj) -> list[FieldError]:
        return validate_service(obj)

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return validate_service_update(new, old)

    def validate_status_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return validate_status(new)

    def field_labels(self, obj: Obj) -> dict[str, str]:
        """ServiceToSelectableFields."""
        spec = spec_of(obj)
        return {"spec.clusterIP": str(spec.get("clusterIP") or ""), "spec.type": str(spec.get("type") or "")}

    columns = (
        name_column(),
        Column("Type", "string", "", "The type of the service."),
        Column("Cluster-IP", "string", "", "The IP address of the service."),
        Column("External-IP", "string", "", "The external IP address of the service."),
        Column("Port(s)", "string", "", "The ports of the service."),
        age_column(),
        Column("Selector", "string", "", doc(SPEC, "selector"), priority=1),
    )

    def row(self, obj: Obj) -> list[Any]:
        spec = spec_of(obj)
        return [meta(obj).get("name", ""), spec.get("type", ""), spec.get("clusterIP") or "<none>",
                external_ip(obj), ports_text(obj), age(get(obj, "metadata", "creationTimestamp")),
                selector_text(spec.get("selector"))]


def _service_store(kind: Kind, backend: Any, storage_kind: Kind | None) -> Any:
    from kubelite.kinds.service_rest import ServiceStore

    return ServiceStore(kind, backend, storage_kind)


SERVICE = Kind(
    group="",
    version="v1",
    kind="Service",
    plural="services",
    namespaced=True,
    strategy=ServiceStrategy(),
    short_names=("svc",),
    categories=("all",),
    subresources=(STATUS,),
    schema_ref=SVC,
    name_validator=name_is_dns1035_label,
    store=_service_store,
)
