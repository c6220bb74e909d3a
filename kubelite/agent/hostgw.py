"""The pod network across nodes, flannel's ``host-gw`` backend: a route to every other Node's
``spec.podCIDR`` via that node's InternalIP, so that pods on different nodes reach each other
by IP, without NAT (Kubernetes' network model).

- Routes are kernel routes tagged ``proto 76`` (:data:`ROUTE_PROTO`): the agent reconciles
  exactly those — adds and replaces what the Nodes ask for, deletes what no Node does (a node
  that went) — and leaves every other route alone. ``kubelite uninstall`` flushes them.
- host-gw needs the nodes on one L2 subnet: a node whose InternalIP is not directly
  connected (the kernel's route to it has a gateway), or is this host's own, gets no route,
  and a warning in the log says so (flannel's host-gw logs the kernel's refusal, "network is
  unreachable"); the vxlan backend (kubelite/agent/vxlan.py) is the one for such nodes.
- The CNI bridge's ``ipMasq`` masquerades whatever leaves a pod for another network; the nat
  chain :data:`NAT_CHAIN`, jumped to first in ``POSTROUTING``, ACCEPTs (ends nat for) traffic
  from this node's pod CIDR to the other nodes' pod CIDRs, as flannel's RETURN rules do.

The reconcile is level-triggered (:class:`kubelite.agent.podnet.NodeNetwork`): on every Node
event and every resync. Stopping the agent leaves routes and rules in place (pods keep
running across a restart).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import subprocess
from collections.abc import Iterable
from typing import Any

from kubelite.agent.podnet import NodeNetwork, flannel_annotations

log = logging.getLogger("kubelite.agent.hostgw")
Obj = dict[str, Any]
ROUTE_PROTO = "76"
NAT_CHAIN = "KUBELITE-POSTROUTING"
_COMMENT = "kubelite pod network: pod to pod without NAT"


def _run(*cmd: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, input=input, timeout=30)


def internal_ip(node: Obj) -> str:
    for a in (node.get("status") or {}).get("addresses") or []:
        if a.get("type") == "InternalIP" and a.get("address"):
            return str(a["address"])
    return ""


def desired_routes(nodes: Iterable[Obj], self_name: str) -> dict[str, str]:
    """{pod CIDR: gateway} for every other node with an IPv4 pod CIDR and InternalIP."""
    out: dict[str, str] = {}
    for n in nodes:
        name = (n.get("metadata") or {}).get("name")
        cidr = (n.get("spec") or {}).get("podCIDR") or ""
        ip = internal_ip(n)
        if name == self_name or not cidr or not ip:
            continue
        try:
            net = ipaddress.ip_network(cidr, strict=False)
            addr = ipaddress.ip_address(ip)
        except ValueError:
            continue
        if net.version == 4 and addr.version == 4:
            out[str(net)] = str(addr)
    return out


def nat_rules(own_cidr: str, other_cidrs: Iterable[str]) -> str:
    """The iptables-restore input that rewrites :data:`NAT_CHAIN` in one transaction."""
    lines = ["*nat", f":{NAT_CHAIN} - [0:0]"]
    for cidr in sorted(other_cidrs):
        lines.append(f'-A {NAT_CHAIN} -s {own_cidr} -d {cidr} -m comment --comment "{_COMMENT}" -j ACCEPT')
    return "\n".join([*lines, "COMMIT", ""])


class HostRoutes:
    """The kernel side: read and write the tagged routes and the nat chain."""

    def current(self) -> dict[str, str]:
        p = _run("ip", "-j", "-4", "route", "show", "proto", ROUTE_PROTO)
        try:
            rows = json.loads(p.stdout or "[]")
        except ValueError:
            return {}
        return {r["dst"]: r.get("gateway", "") for r in rows if r.get("dst")}

    def on_link(self, ip: str) -> bool:
        """A directly connected address that is not this host's own."""
        p = _run("ip", "-j", "route", "get", ip)
        try:
            rows = json.loads(p.stdout or "[]")
        except ValueError:
            return False
        return bool(rows) and "gateway" not in rows[0] and rows[0].get("type", "unicast") == "unicast" \
            and rows[0].get("dev") != "lo"

    def replace(self, cidr: str, gateway: str) -> None:
        p = _run("ip", "route", "replace", cidr, "via", gateway, "proto", ROUTE_PROTO)
        if p.returncode != 0:
            log.warning("route to %s via %s: %s", cidr, gateway, p.stderr.strip())

    def delete(self, cidr: str) -> None:
        _run("ip", "route", "del", cidr, "proto", ROUTE_PROTO)

    def write_nat(self, own_cidr: str, other_cidrs: Iterable[str]) -> None:
        other_cidrs = list(other_cidrs)
        if not other_cidrs and _run("iptables", "-w", "-t", "nat", "-S", NAT_CHAIN).returncode != 0:
            return  # a node alone makes no chain: nothing would be in it
        p = _run("iptables-restore", "-w", "--noflush", input=nat_rules(own_cidr, other_cidrs))
        if p.returncode != 0:
            log.warning("nat chain %s: %s", NAT_CHAIN, p.stderr.strip())
            return
        if _run("iptables", "-w", "-t", "nat", "-C", "POSTROUTING", "-j", NAT_CHAIN).returncode != 0:
            _run("iptables", "-w", "-t", "nat", "-I", "POSTROUTING", "1", "-j", NAT_CHAIN)


def reconcile(kernel: HostRoutes, nodes: Iterable[Obj], self_name: str, own_cidr: str,
              warned: set[tuple[str, str]] | None = None) -> dict[str, str]:
    """Make the tagged routes and the nat chain what the Nodes say; returns the routes.
    ``warned`` remembers the (pod CIDR, InternalIP) pairs already reported as off-link, so a
    node is named once in the log, not at every resync."""
    nodes = list(nodes)
    want: dict[str, str] = {}
    off_link: set[tuple[str, str]] = set()
    for cidr, gw in desired_routes(nodes, self_name).items():
        if kernel.on_link(gw):
            want[cidr] = gw
        else:
            off_link.add((cidr, gw))
    for cidr, gw in sorted(off_link - (warned if warned is not None else set())):
        owner = next((n["metadata"]["name"] for n in nodes if (n.get("spec") or {}).get("podCIDR") == cidr), "?")
        log.warning("not routing pod CIDR %s of node %s: host-gw needs the nodes on one subnet and its "
                    "InternalIP %s is not directly connected (network is unreachable); use --flannel-backend "
                    "vxlan for nodes on different subnets", cidr, owner, gw)
    if warned is not None:
        warned.clear()
        warned |= off_link
    have = kernel.current()
    for cidr in sorted(set(have) - set(want)):
        log.info("removing route to %s (its node is gone)", cidr)
        kernel.delete(cidr)
    for cidr, gw in sorted(want.items()):
        if have.get(cidr) != gw:
            log.info("route to pod CIDR %s via %s", cidr, gw)
            kernel.replace(cidr, gw)
    if own_cidr:
        kernel.write_nat(own_cidr, want)
    return want


def remove_all(kernel: HostRoutes | None = None) -> list[str]:
    """What `kubelite uninstall` removes: the tagged routes, the jump and the nat chain."""
    kernel = kernel or HostRoutes()
    done = []
    for cidr in kernel.current():
        kernel.delete(cidr)
        done.append(f"removed route to {cidr}")
    if _run("iptables", "-w", "-t", "nat", "-S", NAT_CHAIN).returncode == 0:
        while _run("iptables", "-w", "-t", "nat", "-D", "POSTROUTING", "-j", NAT_CHAIN).returncode == 0:
            pass
        _run("iptables", "-w", "-t", "nat", "-F", NAT_CHAIN)
        _run("iptables", "-w", "-t", "nat", "-X", NAT_CHAIN)
        done.append(f"removed iptables chain {NAT_CHAIN}")
    return done


class HostGateway(NodeNetwork):
    """The host-gw backend: routes from the Nodes, through the shared Node loop."""

    backend = "host-gw"

    def __init__(self, client: Any, node_name: str, own_cidr: str, kernel: HostRoutes | None = None,
                 **kw: Any) -> None:
        super().__init__(client, node_name, own_cidr, **kw)
        self.kernel = kernel or HostRoutes()
        self._warned: set[tuple[str, str]] = set()

    def annotations(self) -> dict[str, str]:
        return flannel_annotations("host-gw", "null", self.node_ip) if self.node_ip else {}

    async def setup(self, node: Obj) -> None:
        from kubelite.agent import vxlan

        # a node switched from vxlan: its device would keep the routes' old next hops reachable
        for line in await asyncio.to_thread(vxlan.remove_device):
            log.info("%s (left by the vxlan backend)", line)

    async def reconcile(self, nodes: list[Obj]) -> None:
        await asyncio.to_thread(reconcile, self.kernel, nodes, self.node_name, self.own_cidr, self._warned)
