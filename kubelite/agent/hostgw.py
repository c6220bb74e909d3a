"""The pod network across nodes, flannel's ``host-gw`` backend: a route to every other Node's
``spec.podCIDR`` via that node's InternalIP, so that pods on different nodes reach each other
by IP, without NAT (Kubernetes' network model).

- Routes are kernel routes tagged ``proto 76`` (:data:`ROUTE_PROTO`): the agent reconciles
  exactly those — adds and replaces what the Nodes ask for, deletes what no Node does (a node
  that went) — and leaves every other route alone. ``kubelite uninstall`` flushes them.
- host-gw needs the nodes on one L2 subnet: a node whose InternalIP is not directly
  connected (the kernel's route to it has a gateway), or is this host's own, gets no route.
- The CNI bridge's ``ipMasq`` masquerades whatever leaves a pod for another network; the nat
  chain :data:`NAT_CHAIN`, jumped to first in ``POSTROUTING``, ACCEPTs (ends nat for) traffic
  from this node's pod CIDR to the other nodes' pod CIDRs, as flannel's RETURN rules do.

The reconcile is level-triggered: on every Node event and every :data:`RESYNC_PERIOD`.
Stopping the agent leaves routes and rules in place (pods keep running across a restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import subprocess
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("kubelite.agent.hostgw")
Obj = dict[str, Any]
ROUTE_PROTO = "76"
NAT_CHAIN = "KUBELITE-POSTROUTING"
RESYNC_PERIOD = 30.0
_COMMENT = "kubelite host-gw: pod to pod without NAT"


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


def reconcile(kernel: HostRoutes, nodes: Iterable[Obj], self_name: str, own_cidr: str) -> dict[str, str]:
    """Make the tagged routes and the nat chain what the Nodes say; returns the routes."""
    want = {c: gw for c, gw in desired_routes(nodes, self_name).items() if kernel.on_link(gw)}
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


class HostGateway:
    """Watches Nodes (the agent's own client) and keeps the routes; one owned task."""

    def __init__(self, client: Any, node_name: str, own_cidr: str, kernel: HostRoutes | None = None,
                 resync: float = RESYNC_PERIOD) -> None:
        from kubelite.client.informer import ClientListWatch, Informer

        self.node_name = node_name
        self.own_cidr = own_cidr
        self.kernel = kernel or HostRoutes()
        self.resync = resync
        self.nodes = Informer(ClientListWatch(client, "v1", "nodes"), name="hostgw-nodes")
        self.nodes.add_handler(lambda etype, old, new: self._changed.set())
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self.nodes.run(), name="hostgw-informer"),
                       asyncio.create_task(self._loop(), name="hostgw")]

    async def _loop(self) -> None:
        await self.nodes.wait_synced()  # never reconcile from an empty cache: that deletes every route
        while True:
            self._changed.clear()
            try:
                await asyncio.to_thread(reconcile, self.kernel, self.nodes.list(), self.node_name, self.own_cidr)
            except Exception as exc:
                log.warning("host-gw reconcile: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self.resync)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(BaseException):
                await t
        self._tasks = []
