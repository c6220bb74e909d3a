"""The cluster zone's records, as CoreDNS's kubernetes plugin (plugin/kubernetes) serves them
under the Kubernetes DNS specification (kubernetes/dns docs/specification.md, schema 1.1.0).

Built from Services, EndpointSlices and Namespaces (an index rebuilt when they change), and
answered by :meth:`ClusterZone.answer`, a pure function of the index and the question:

- ``<svc>.<ns>.svc.<zone>`` A/AAAA: the ClusterIPs; headless: every ready endpoint address
  (NXDOMAIN while it has none); ExternalName: a CNAME to ``spec.externalName``
- ``<host>.<svc>.<ns>.svc.<zone>``: one endpoint, by its ``hostname`` (a pod's
  ``spec.hostname`` under ``spec.subdomain``) or its dashed address (``10-244-0-5``)
- ``_<port>._<proto>.<svc>.<ns>.svc.<zone>`` SRV (and ``<svc>.<ns>.svc.<zone>`` SRV: every
  port): priority 0, weights ``100/n``, the target's address in the additional section
- ``<a-b-c-d>.<ns>.pod.<zone>`` A (the plugin's ``pods insecure``, k3s's setting)
- PTR in in-addr.arpa / ip6.arpa for ClusterIPs and endpoint addresses
- ``dns-version.<zone>`` TXT ``1.1.0``; the apex's SOA and NS (``ns.dns.<zone>``)
- NXDOMAIN for names that do not exist, NOERROR without answers (NODATA) for names that do,
  both with the zone's SOA (TTL and minimum = the record TTL, 5 s) in the authority section;
  SERVFAIL until the index has been synced once (the plugin's "not synced yet").
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.reversename
import dns.rrset

Obj = dict[str, Any]
DEFAULT_TTL = 5  # the kubernetes plugin's defaultTTL
SCHEMA_VERSION = "1.1.0"  # DNSSchemaVersion
SCHEMA_TTL = 28800
REVERSE_ZONES = (dns.name.from_text("in-addr.arpa."), dns.name.from_text("ip6.arpa."))
IN = dns.rdataclass.IN
A, AAAA, SRV, PTR, TXT = dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.SRV, dns.rdatatype.PTR, dns.rdatatype.TXT
SOA, NS, CNAME = dns.rdatatype.SOA, dns.rdatatype.NS, dns.rdatatype.CNAME


class NameError_(Exception):
    """errNoItems / errNsNotExposed / errInvalidRequest: NXDOMAIN."""


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _version(ip: str) -> int:
    try:
        return ipaddress.ip_address(ip).version
    except ValueError:
        return 0


def endpoint_hostname(ip: str, hostname: str) -> str:
    """endpointHostname: the endpoint's hostname, else its address with dashes."""
    if hostname:
        return hostname
    if "." in ip:
        return ip.replace(".", "-")
    if ":" in ip:
        h = ip.replace(":", "-")
        return h + "0" if h.endswith("-") else h
    return ""


@dataclass(frozen=True)
class Port:
    name: str
    protocol: str
    port: int  # -1: a slice without ports (the plugin's sentinel)


@dataclass(frozen=True)
class Address:
    ip: str
    hostname: str  # endpoint_hostname
    ports: tuple[Port, ...]


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    type: str
    cluster_ips: tuple[str, ...]
    ports: tuple[Port, ...]
    external_name: str = ""

    @property
    def headless(self) -> bool:
        return not self.cluster_ips or self.cluster_ips[0] == "None"


@dataclass(frozen=True)
class Target:
    """One of the plugin's msg.Service: an address (or a CNAME target) with a port, and the name
    whose address it is (an SRV record's target)."""

    host: str
    port: int
    owner: str  # "svc.ns.svc.zone." or "host.svc.ns.svc.zone."

    @property
    def is_name(self) -> bool:
        return _version(self.host) == 0


@dataclass
class Answer:
    rcode: dns.rcode.Rcode = dns.rcode.NOERROR
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    authority: list[dns.rrset.RRset] = field(default_factory=list)
    additional: list[dns.rrset.RRset] = field(default_factory=list)
    authoritative: bool = True
    chase: str = ""  # an out-of-zone CNAME target whose addresses the server should look up
    forward: bool = False  # not ours: the server forwards the query (reverse names we do not know)


def _service_from(obj: Obj) -> Service | None:
    meta, spec = _d(obj.get("metadata")), _d(obj.get("spec"))
    ns, name = meta.get("namespace"), meta.get("name")
    if not isinstance(ns, str) or not isinstance(name, str):
        return None
    ips = [str(ip) for ip in _l(spec.get("clusterIPs")) if ip] or ([str(spec["clusterIP"])] if spec.get("clusterIP")
                                                                    else [])
    ports = tuple(Port(str(_d(p).get("name") or ""), str(_d(p).get("protocol") or "TCP"), int(_d(p).get("port") or 0))
                  for p in _l(spec.get("ports")))
    return Service(ns, name, str(spec.get("type") or "ClusterIP"), tuple(ips), ports,
                   str(spec.get("externalName") or ""))


def _addresses_from(slice_: Obj) -> list[Address]:
    """endpointSliceToEndpoints: the ready endpoints (ready unset counts as ready)."""
    ports = tuple(Port(str(_d(p).get("name") or ""), str(_d(p).get("protocol") or ""),
                       int(_d(p)["port"]) if isinstance(_d(p).get("port"), int) else -1)
                  for p in _l(slice_.get("ports"))) or (Port("", "", -1),)
    out: list[Address] = []
    for ep in _l(slice_.get("endpoints")):
        ep = _d(ep)
        if _d(ep.get("conditions")).get("ready") is False:
            continue
        for ip in _l(ep.get("addresses")):
            out.append(Address(str(ip), endpoint_hostname(str(ip), str(ep.get("hostname") or "")), ports))
    return out


class ClusterZone:
    """The kubernetes plugin for one cluster domain, over an index of the API's objects."""

    def __init__(self, domain: str = "cluster.local", ttl: int = DEFAULT_TTL, dns_ips: Iterable[str] = ()) -> None:
        self.zone = dns.name.from_text(domain.strip(".") + ".")
        self.ttl = ttl
        self.dns_ips = tuple(dns_ips)  # ns.dns.<zone>: the kube-dns Service's address
        self.synced = False
        self.generation = 0  # bumped by every rebuild: what answers were cached with
        self.serial = int(time.time())  # the SOA serial: when the index last changed (APIConn.Modified)
        self.services: dict[tuple[str, str], Service] = {}
        self.endpoints: dict[tuple[str, str], list[Address]] = {}
        self.namespaces: set[str] = set()
        self.by_ip: dict[str, list[str]] = {}  # reverse: address -> owner names

    # ------------------------------------------------------------------ the index
    def rebuild(self, services: Iterable[Obj], slices: Iterable[Obj], namespaces: Iterable[Obj]) -> None:
        self.services = {}
        for obj in services:
            svc = _service_from(obj)
            if svc is not None:
                self.services[(svc.namespace, svc.name)] = svc
        self.endpoints = {}
        for s in slices:
            meta = _d(s.get("metadata"))
            owner = _d(meta.get("labels")).get("kubernetes.io/service-name")
            if isinstance(owner, str) and owner:
                self.endpoints.setdefault((str(meta.get("namespace") or ""), owner), []).extend(_addresses_from(s))
        self.namespaces = {str(_d(n.get("metadata")).get("name")) for n in namespaces}
        zone = self.zone.to_text()
        by_ip: dict[str, list[str]] = {}
        for svc in self.services.values():  # SvcIndexReverse first, then EpIndexReverse
            if not svc.headless and svc.type != "ExternalName":
                for ip in svc.cluster_ips:
                    by_ip.setdefault(ip, []).append(f"{svc.name}.{svc.namespace}.svc.{zone}")
        ep_names: dict[str, list[str]] = {}
        for (ns, name), addrs in self.endpoints.items():
            for a in addrs:
                ep_names.setdefault(a.ip, []).append(f"{a.hostname}.{name}.{ns}.svc.{zone}")
        for ip, names in ep_names.items():
            by_ip.setdefault(ip, list(dict.fromkeys(names)))
        self.by_ip = by_ip
        self.serial = int(time.time())
        self.generation += 1
        self.synced = True

    # ------------------------------------------------------------------ lookups
    def _find_services(self, ns: str, service: str, endpoint: str, port: str, proto: str) -> list[Target]:
        """findServices."""
        if ns not in self.namespaces:
            raise NameError_()
        svc = self.services.get((ns, service))
        if svc is None:
            raise NameError_()
        zone = self.zone.to_text()
        owner = f"{svc.name}.{svc.namespace}.svc.{zone}"
        if svc.type == "ExternalName":
            if endpoint or port or proto or not svc.external_name or not _version(svc.external_name) == 0:
                raise NameError_()
            return [Target(svc.external_name.rstrip(".") + ".", -1, owner)]
        found = False
        out: list[Target] = []
        if svc.headless or endpoint:
            for a in self.endpoints.get((ns, service), []):
                if endpoint and endpoint != a.hostname.lower():
                    continue
                for p in a.ports:
                    if not _match_port(port, p.name, proto, p.protocol):
                        continue
                    found = True
                    out.append(Target(a.ip, p.port, f"{a.hostname}.{owner}"))
        else:
            for p in svc.ports:
                if not _match_port(port, p.name, proto, p.protocol):
                    continue
                found = True
                out.extend(Target(ip, p.port, owner) for ip in svc.cluster_ips)
        if not found:
            raise NameError_()
        return out

    def records(self, labels: list[str]) -> list[Target] | None:
        """Records (parseRequest + findPods/findServices) for a name below the zone: the targets,
        None for a name that exists without records (NODATA); NameError_ for NXDOMAIN."""
        if not labels or labels in (["svc"], ["pod"]):
            return None
        kind, rest = labels[-1], labels[:-1]
        if kind not in ("svc", "pod"):
            raise NameError_()
        ns = rest[-1]
        if ns not in self.namespaces:
            raise NameError_()
        rest = rest[:-1]
        if not rest:
            return None
        name, rest = rest[-1], rest[:-1]
        if kind == "pod":
            if rest:
                raise NameError_()
            ip = name.replace("-", ".") if name.count("-") == 3 and "--" not in name else name.replace("-", ":")
            if _version(ip) == 0:
                raise NameError_()
            return [Target(str(ipaddress.ip_address(ip)), -1, f"{name}.{ns}.pod.{self.zone.to_text()}")]
        endpoint = port = proto = ""
        if len(rest) == 1:
            endpoint = rest[0]
        elif len(rest) == 2:
            port, proto = rest[0].removeprefix("_"), rest[1].removeprefix("_")
        elif len(rest) > 2:
            raise NameError_()
        return self._find_services(ns, name, endpoint, port, proto)

    # ------------------------------------------------------------------ answers
    def _rrset(self, name: str | dns.name.Name, rdtype: dns.rdatatype.RdataType, texts: Iterable[str], ttl: int | None = None) \
            -> dns.rrset.RRset:
        rrset = dns.rrset.RRset(dns.name.from_text(name) if isinstance(name, str) else name, IN, rdtype)
        for t in texts:
            # addresses built directly: the text parser costs ~10x more (and addresses are the common answer)
            rd = dns.rdtypes.IN.A.A(IN, A, t) if rdtype == A else dns.rdtypes.IN.AAAA.AAAA(IN, AAAA, t) \
                if rdtype == AAAA else dns.rdata.from_text(IN, rdtype, t)
            rrset.add(rd, self.ttl if ttl is None else ttl)
        return rrset

    def soa(self) -> dns.rrset.RRset:
        """plugin.SOA: ns.dns.<zone> hostmaster.<zone>, refresh 7200, retry 1800, expire 86400."""
        z = self.zone.to_text()
        return self._rrset(self.zone, SOA, [f"ns.dns.{z} hostmaster.{z} {self.serial} 7200 1800 86400 {self.ttl}"],
                           min(self.ttl, 300))

    def handles(self, qname: dns.name.Name) -> bool:
        return qname.is_subdomain(self.zone) or any(qname.is_subdomain(z) for z in REVERSE_ZONES)

    def answer(self, qname: dns.name.Name, qtype: dns.rdatatype.RdataType) -> Answer:
        """ServeDNS of the kubernetes plugin, for a name this zone handles (:meth:`handles`)."""
        if not qname.is_subdomain(self.zone):
            return self._reverse(qname, qtype)
        if qtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            return Answer(rcode=dns.rcode.REFUSED, authoritative=False)
        if not self.synced:
            return Answer(rcode=dns.rcode.SERVFAIL, authoritative=False)
        labels = [lb.decode("ascii", "replace").lower() for lb in qname.relativize(self.zone).labels]
        out = Answer()
        try:
            if qtype == SOA:
                if not labels:
                    out.answer.append(self.soa())
            elif qtype == NS and not labels:
                ns = f"ns.dns.{self.zone.to_text()}"
                out.answer.append(self._rrset(qname, NS, [ns]))
                self._addresses(out.additional, ns, [Target(ip, -1, ns) for ip in self.dns_ips])
            elif qtype == TXT:
                if labels == ["dns-version"]:
                    out.answer.append(self._rrset(qname, TXT, [f'"{SCHEMA_VERSION}"'], SCHEMA_TTL))
                else:
                    self.records(labels)  # NODATA if the name exists, else NXDOMAIN
            elif labels == ["ns", "dns"]:  # isDefaultNS
                if qtype in (A, AAAA):
                    self._addresses(out.answer, qname, [Target(ip, -1, "") for ip in self.dns_ips], qtype)
            else:
                targets = self.records(labels)
                if targets is not None:
                    self._typed(out, qname, qtype, targets)
        except NameError_:
            out.rcode = dns.rcode.NXDOMAIN
        if not out.answer:
            out.authority.append(self.soa())
        return out

    def _typed(self, out: Answer, qname: dns.name.Name, qtype: dns.rdatatype.RdataType, targets: list[Target]) -> None:
        names = [t for t in targets if t.is_name]
        if qtype in (A, AAAA, CNAME) and names:  # ExternalName
            target = names[0].host
            out.answer.append(self._rrset(qname, CNAME, [target]))
            if qtype != CNAME:
                tname = dns.name.from_text(target)
                if tname.is_subdomain(self.zone):
                    inner = self.answer(tname, qtype)
                    out.answer.extend(inner.answer)
                else:
                    out.chase = target
            return
        if qtype in (A, AAAA):
            self._addresses(out.answer, qname, targets, qtype)
        elif qtype == SRV:
            self._srv(out, qname, [t for t in targets if not t.is_name])

    def _addresses(self, into: list[dns.rrset.RRset], name: str | dns.name.Name, targets: list[Target],
                   only: dns.rdatatype.RdataType | None = None) -> None:
        v4 = list(dict.fromkeys(t.host for t in targets if _version(t.host) == 4))
        v6 = list(dict.fromkeys(t.host for t in targets if _version(t.host) == 6))
        if v4 and only in (None, A):
            into.append(self._rrset(name, A, v4))
        if v6 and only in (None, AAAA):
            into.append(self._rrset(name, AAAA, v6))

    def _srv(self, out: Answer, qname: dns.name.Name, targets: list[Target]) -> None:
        """plugin.SRV: every target weighs 100/n (at least 1), priority 0; the targets' addresses
        as additional records; duplicates (same target and port) once."""
        if not targets:
            return
        weight = max(1, math.floor(100.0 / (100 * len(targets)) * 100))
        srv: list[str] = []
        extra: dict[str, list[Target]] = {}
        for t in targets:
            if t.port == -1:
                continue
            rec = f"0 {weight} {t.port} {t.owner}"
            if rec not in srv:
                srv.append(rec)
            if t not in extra.setdefault(t.owner, []):
                extra[t.owner].append(t)
        if srv:
            out.answer.append(self._rrset(qname, SRV, srv))
        for owner, ts in extra.items():
            self._addresses(out.additional, owner, ts)

    def _reverse(self, qname: dns.name.Name, qtype: dns.rdatatype.RdataType) -> Answer:
        """Reverse: PTR for the addresses we know; anything else falls through (to the forwarder),
        as k3s's ``fallthrough in-addr.arpa ip6.arpa``."""
        if qtype != PTR or not self.synced:
            return Answer(forward=True)
        try:
            ip = dns.reversename.to_address(qname)
        except (dns.exception.SyntaxError, ValueError):
            return Answer(forward=True)
        names = self.by_ip.get(str(ipaddress.ip_address(ip)))
        if not names:
            return Answer(forward=True)
        out = Answer()
        out.answer.append(self._rrset(qname, PTR, names))
        return out


def _match_port(want_port: str, port_name: str, want_proto: str, proto: str) -> bool:
    """matchPortAndProtocol: an empty wanted port or protocol matches any (names case-insensitively)."""
    return (not want_port or want_port == port_name.lower()) and (not want_proto or want_proto == proto.lower())


def build_response(query: dns.message.Message, ans: Answer) -> dns.message.Message:
    resp = dns.message.make_response(query)
    resp.set_rcode(ans.rcode)
    if ans.authoritative:
        resp.flags |= dns.flags.AA
    resp.answer.extend(ans.answer)
    resp.authority.extend(ans.authority)
    resp.additional.extend(ans.additional)
    return resp


__all__ = ["Answer", "ClusterZone", "DEFAULT_TTL", "build_response", "endpoint_hostname"]
