"""The pod's resolv.conf, as the kubelet's DNS configurer (pkg/kubelet/network/dns/dns.go) builds it.

``dnsPolicy`` picks the base: ``ClusterFirst`` (the default; ``Default`` for a hostNetwork pod)
and ``ClusterFirstWithHostNet`` use the cluster DNS (``--cluster-dns``) with the search list
``<ns>.svc.<domain> svc.<domain> <domain>`` before the host's and ``options ndots:5``;
``Default`` is the node's own resolv.conf; ``None`` starts empty. ``spec.dnsConfig`` is then
appended (nameservers and searches without duplicates, options overriding by name) and the
result is cut to what resolvers honour (3 nameservers, 32 search paths, 2048 characters), with
the kubelet's ``DNSConfigForming`` event when something was left out. A cluster-DNS pod on a
node without ``--cluster-dns`` gets ``Default``, with the kubelet's ``MissingClusterDNS`` event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cri_api.v1 import api_pb2 as cri

Obj = dict[str, Any]
Event = tuple[str, str, str]  # (type, reason, message)

MAX_NAMESERVERS = 3  # validation.MaxDNSNameservers
MAX_SEARCH_PATHS = 32  # validation.MaxDNSSearchPaths
MAX_SEARCH_CHARS = 2048  # validation.MaxDNSSearchListChars
DEFAULT_OPTIONS = ("ndots:5",)
HOST_RESOLV_CONF = "/etc/resolv.conf"


def parse_resolv_conf(text: str) -> tuple[list[str], list[str], list[str]]:
    """parseResolvConf: (nameservers, searches, options); the last ``search`` line wins and a
    trailing dot is dropped from search paths, as the kubelet does."""
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split(";", 1)[0].split()
        if not parts:
            continue
        if parts[0] == "nameserver" and len(parts) > 1:
            servers.append(parts[1])
        elif parts[0] == "search":
            searches = [s.removesuffix(".") for s in parts[1:] if s != "."]
        elif parts[0] == "options":
            options.extend(parts[1:])
    return servers, searches, options


def read_resolv_conf(path: str) -> tuple[list[str], list[str], list[str]]:
    try:
        return parse_resolv_conf(Path(path).read_text())
    except OSError:
        return [], [], []


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def merge_options(existing: list[str], extra: list[Any]) -> list[str]:
    """mergeDNSOptions: the pod's options override the base's of the same name."""
    merged: dict[str, str] = {}
    for op in existing:
        name, _, value = op.partition(":")
        merged[name] = value
    for o in extra:
        o = o if isinstance(o, dict) else {}
        merged[str(o.get("name") or "")] = str(o.get("value") or "")
    return [f"{k}:{v}" if v else k for k, v in merged.items()]


def pod_dns_type(pod: Obj) -> str:
    """getPodDNSType: "cluster", "host" or "none"."""
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy == "None":
        return "none"
    if policy == "ClusterFirstWithHostNet" or (policy == "ClusterFirst" and not spec.get("hostNetwork")):
        return "cluster"
    return "host"


@dataclass
class DNSConfigurer:
    """The kubelet's --cluster-dns, --cluster-domain and --resolv-conf, and what they give a pod."""

    cluster_dns: list[str] = field(default_factory=list)
    cluster_domain: str = "cluster.local"
    resolv_conf: str = HOST_RESOLV_CONF

    def searches_cluster_first(self, host_search: list[str], pod: Obj) -> list[str]:
        """generateSearchesForDNSClusterFirst."""
        if not self.cluster_domain:
            return host_search
        ns = pod["metadata"].get("namespace") or "default"
        d = self.cluster_domain
        return _unique([f"{ns}.svc.{d}", f"svc.{d}", d, *host_search])

    def pod_dns(self, pod: Obj) -> tuple[list[str], list[str], list[str], list[Event]]:
        """GetPodDNS: (nameservers, searches, options) of the pod and the events the kubelet records."""
        events: list[Event] = []
        kind = pod_dns_type(pod)
        if kind == "cluster" and not self.cluster_dns:
            m = pod["metadata"]
            policy = (pod.get("spec") or {}).get("dnsPolicy") or "ClusterFirst"
            events.append(("Warning", "MissingClusterDNS",  # (format.Pod: name_namespace(uid))
                           f"pod: \"{m['name']}_{m.get('namespace', '')}({m.get('uid', '')})\". kubelet does not "
                           f"have ClusterDNS IP configured and cannot create Pod using \"{policy}\" policy. "
                           "Falling back to \"Default\" policy."))
            kind = "host"
        servers: list[str] = []
        searches: list[str] = []
        options: list[str] = []
        if kind == "cluster":
            _, host_search, _ = read_resolv_conf(self.resolv_conf)
            servers = list(self.cluster_dns)
            searches = self.searches_cluster_first(host_search, pod)
            options = list(DEFAULT_OPTIONS)
        elif kind == "host":
            servers, searches, options = read_resolv_conf(self.resolv_conf)
        extra = (pod.get("spec") or {}).get("dnsConfig")
        if isinstance(extra, dict):  # appendDNSConfig
            servers = _unique(servers + [str(s) for s in extra.get("nameservers") or []])
            searches = _unique(searches + [str(s) for s in extra.get("searches") or []])
            options = merge_options(options, list(extra.get("options") or []))
        return (*self._fit_limits(servers, searches, events), options, events)

    @staticmethod
    def _fit_limits(servers: list[str], searches: list[str], events: list[Event]) -> tuple[list[str], list[str]]:
        """formDNSConfigFitsLimits (and formDNSSearchFitsLimits)."""
        if len(servers) > MAX_NAMESERVERS:
            servers = servers[:MAX_NAMESERVERS]
            events.append(("Warning", "DNSConfigForming",
                           "Nameserver limits were exceeded, some nameservers have been omitted, the applied "
                           f"nameserver line is: {' '.join(servers)}"))
        limited = False
        if len(" ".join(searches)) > MAX_SEARCH_CHARS:
            while searches and len(" ".join(searches)) > MAX_SEARCH_CHARS:
                searches = searches[:-1]
            limited = True
        if len(searches) > MAX_SEARCH_PATHS:
            searches = searches[:MAX_SEARCH_PATHS]
            limited = True
        if limited:
            events.append(("Warning", "DNSConfigForming",
                           "Search Line limits were exceeded, some search paths have been omitted, the applied "
                           f"search line is: {' '.join(searches)}"))
        return servers, searches

    def cri_config(self, pod: Obj) -> tuple[Any, list[Event]]:
        servers, searches, options, events = self.pod_dns(pod)
        return cri.DNSConfig(servers=servers, searches=searches, options=options), events


__all__ = ["DNSConfigurer", "merge_options", "parse_resolv_conf", "pod_dns_type", "read_resolv_conf"]
