"""The pod network across nodes, flannel's ``vxlan`` backend (flannel's pkg/backend/vxlan):
an overlay for nodes that do not share a subnet, so that pods on different nodes still reach
each other by IP, without NAT.

- One kernel vxlan device, :data:`DEVICE` (``flannel.1``: VNI 1, UDP port 8472 — flannel's
  default, the kernel's historical one rather than IANA's 4789 —, ``nolearning``, over the
  interface that carries the node's IP, MTU that interface's less :data:`ENCAP_OVERHEAD`),
  with the node's pod CIDR's network address as a /32 (the source of host-to-pod traffic).
  The pods' bridge gets the same MTU (the CNI config, and pinned on the bridge: see
  :func:`kubelite.agent.cni.pin_bridge_mtu`), so their packets fit the tunnel.
- The node publishes itself in its Node's annotations (flannel's kube subnet manager):
  ``flannel.alpha.coreos.com/backend-type: vxlan``, ``backend-data: {"VNI":1,"VtepMAC":…}``,
  ``public-ip`` (its InternalIP) and ``kube-subnet-manager: "true"``. A restarted agent
  whose device is gone makes it again with the MAC from its annotation, so the other nodes'
  entries stay right.
- For every other annotated node: a permanent neighbour entry (its pod CIDR's network
  address → its VtepMAC), an FDB entry (VtepMAC → its public IP) and a route ``<podCIDR> via
  <network address> dev flannel.1 onlink``, tagged ``proto 76`` as host-gw's are — added in
  that order (the kernel must never resolve the next hop itself), removed in reverse.
- The nat chain of host-gw (:func:`kubelite.agent.hostgw.nat_rules`) exempts pod-to-pod
  traffic from the CNI bridge's masquerade here too.

Reconciled by :class:`kubelite.agent.podnet.NodeNetwork` (every Node change it reads and every
resync; each pass also makes the device again if someone deleted it). Stopping the agent leaves all of it
in place; ``kubelite uninstall`` deletes the device (its routes and entries go with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import re
import secrets
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubelite.agent import cni
from kubelite.agent.hostgw import ROUTE_PROTO, HostRoutes
from kubelite.agent.podnet import (
    BACKEND_DATA,
    BACKEND_TYPE,
    KUBE_SUBNET_MANAGER,
    PUBLIC_IP,
    NodeNetwork,
    PodNetworkError,
    flannel_annotations,
)

log = logging.getLogger("kubelite.agent.vxlan")
Obj = dict[str, Any]

VNI = 1
DEVICE = f"flannel.{VNI}"
PORT = 8472
ENCAP_OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


@dataclass(frozen=True)
class Peer:
    """Another node as the vxlan backend sees it (flannel's lease of that node)."""

    node: str
    cidr: str  # its pod CIDR
    gateway: str  # the pod CIDR's network address: that node's flannel.1 address
    vtep_mac: str  # that node's flannel.1 MAC
    public_ip: str  # where its VXLAN packets go


def new_mac() -> str:
    """A random locally administered unicast MAC (flannel's mac.NewHardwareAddr)."""
    b = bytearray(secrets.token_bytes(6))
    b[0] = (b[0] & 0xFE) | 0x02
    return ":".join(f"{x:02x}" for x in b)


def backend_data(mac: str) -> str:
    """The ``backend-data`` annotation as flannel marshals it: ``{"VNI":1,"VtepMAC":"…"}``."""
    return json.dumps({"VNI": VNI, "VtepMAC": mac}, separators=(",", ":"))


def node_annotations(mac: str, public_ip: str) -> dict[str, str]:
    return flannel_annotations("vxlan", backend_data(mac), public_ip)


def _annotations(node: Obj) -> dict[str, str]:
    return (node.get("metadata") or {}).get("annotations") or {}


def stored_mac(node: Obj | None) -> str:
    """The VtepMAC this node published before (flannel's GetStoredMacAddresses), or ""."""
    try:
        mac = str(json.loads(_annotations(node or {}).get(BACKEND_DATA) or "{}").get("VtepMAC") or "").lower()
    except (ValueError, AttributeError):
        return ""
    return mac if _MAC_RE.match(mac) else ""


def peer_of(node: Obj) -> tuple[Peer | None, str]:
    """The node as a peer, or None and why not ("" when it is simply not a flannel node yet)."""
    name = str((node.get("metadata") or {}).get("name") or "")
    ann = _annotations(node)
    if ann.get(KUBE_SUBNET_MANAGER) != "true":
        return None, ""
    cidr = (node.get("spec") or {}).get("podCIDR") or ""
    if ann.get(BACKEND_TYPE) != "vxlan":
        return None, f"ignoring non-vxlan subnet({cidr}) of node {name}: type={ann.get(BACKEND_TYPE, '')}"
    try:
        public_ip = ipaddress.ip_address(ann.get(PUBLIC_IP, ""))
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError as exc:
        return None, f"Error turning node {name!r} to lease: {exc}"
    if public_ip.version != 4 or net.version != 4:
        return None, f"Error turning node {name!r} to lease: missing IPv4 address on n.Spec.PodCIDRs"
    try:
        data = json.loads(ann.get(BACKEND_DATA) or "")
        mac = str(data["VtepMAC"]).lower()
    except (ValueError, KeyError, TypeError) as exc:
        return None, f"error decoding subnet lease JSON of node {name}: {exc!r}"
    if not _MAC_RE.match(mac):
        return None, f"error decoding subnet lease JSON of node {name}: VtepMAC {mac!r} is not a MAC address"
    return Peer(name, str(net), str(net.network_address), mac, str(public_ip)), ""


def desired_peers(nodes: Iterable[Obj], self_name: str) -> tuple[dict[str, Peer], dict[str, str]]:
    """({pod CIDR: peer} for every other vxlan node, {node: why it is not one})."""
    peers: dict[str, Peer] = {}
    skipped: dict[str, str] = {}
    for n in nodes:
        name = (n.get("metadata") or {}).get("name")
        if name == self_name:
            continue
        peer, why = peer_of(n)
        if peer is not None:
            peers[peer.cidr] = peer
        elif why:
            skipped[str(name)] = why
    return peers, skipped


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=30)


def _json(*cmd: str) -> list[Obj]:
    p = _run(*cmd)
    try:
        rows = json.loads(p.stdout or "[]")
    except ValueError:
        return []
    return rows if isinstance(rows, list) else []


class VxlanKernel:
    """The kernel side: the device, its routes, neighbour and FDB entries (``ip``, ``bridge``)."""

    def __init__(self) -> None:
        self.routes_nat = HostRoutes()

    def _check(self, *cmd: str) -> None:
        p = _run(*cmd)
        if p.returncode != 0:
            raise PodNetworkError(f"{' '.join(cmd)}: {p.stderr.strip()}")

    def parent(self, ip: str) -> tuple[str, int] | None:
        """(name, MTU) of the interface that carries ``ip``."""
        for link in _json("ip", "-j", "-4", "addr", "show", "to", f"{ip}/32"):
            if link.get("ifname"):
                return str(link["ifname"]), int(link.get("mtu") or 1500)
        return None

    def link(self) -> Obj | None:
        rows = _json("ip", "-j", "-d", "link", "show", "dev", DEVICE)
        return rows[0] if rows else None

    def add_link(self, mac: str, local: str, parent: str, mtu: int) -> None:
        self._check("ip", "link", "add", DEVICE, "address", mac, "mtu", str(mtu), "type", "vxlan", "id", str(VNI),
                    "local", local, "dev", parent, "dstport", str(PORT), "nolearning")
        # as flannel: no router advertisements on the overlay
        with contextlib.suppress(OSError):
            Path(f"/proc/sys/net/ipv6/conf/{DEVICE}/accept_ra").write_text("0")

    def set_mtu(self, mtu: int) -> None:
        self._check("ip", "link", "set", DEVICE, "mtu", str(mtu))

    def pin_bridge_mtu(self, mtu: int) -> None:
        cni.pin_bridge_mtu(mtu)

    def set_up(self) -> None:
        self._check("ip", "link", "set", DEVICE, "up")

    def delete_link(self) -> None:
        _run("ip", "link", "del", DEVICE)

    def addresses(self) -> list[str]:
        return [f"{a['local']}/{a['prefixlen']}" for link in _json("ip", "-j", "-4", "addr", "show", "dev", DEVICE)
                for a in link.get("addr_info") or [] if a.get("family") == "inet"]

    def add_address(self, cidr: str) -> None:
        self._check("ip", "addr", "add", cidr, "dev", DEVICE)

    def delete_address(self, cidr: str) -> None:
        _run("ip", "addr", "del", cidr, "dev", DEVICE)

    def routes(self) -> dict[str, tuple[str, str]]:
        """{pod CIDR: (gateway, device)} of the tagged routes (host-gw's too, if any are left)."""
        return {r["dst"]: (r.get("gateway", ""), r.get("dev", ""))
                for r in _json("ip", "-j", "-4", "route", "show", "proto", ROUTE_PROTO) if r.get("dst")}

    def replace_route(self, cidr: str, gateway: str) -> None:
        self._check("ip", "route", "replace", cidr, "via", gateway, "dev", DEVICE, "onlink", "proto", ROUTE_PROTO)

    def delete_route(self, cidr: str) -> None:
        _run("ip", "route", "del", cidr, "proto", ROUTE_PROTO)

    def neighbours(self) -> dict[str, str]:
        """{IP: MAC} of the permanent neighbour entries on the device."""
        return {n["dst"]: str(n.get("lladdr", "")).lower()
                for n in _json("ip", "-j", "-4", "neigh", "show", "dev", DEVICE, "nud", "permanent") if n.get("dst")}

    def replace_neighbour(self, ip: str, mac: str) -> None:
        self._check("ip", "neigh", "replace", ip, "lladdr", mac, "dev", DEVICE, "nud", "permanent")

    def delete_neighbour(self, ip: str) -> None:
        _run("ip", "neigh", "del", ip, "dev", DEVICE)

    def fdb(self) -> dict[str, str]:
        """{MAC: remote IP} of the device's permanent FDB entries."""
        return {str(e["mac"]).lower(): e.get("dst", "") for e in _json("bridge", "-j", "fdb", "show", "dev", DEVICE)
                if e.get("mac") and e.get("state") == "permanent" and "self" in (e.get("flags") or [])}

    def add_fdb(self, mac: str, dst: str) -> None:
        self._check("bridge", "fdb", "replace", mac, "dev", DEVICE, "dst", dst, "self", "permanent")

    def delete_fdb(self, mac: str, dst: str) -> None:
        _run("bridge", "fdb", "del", mac, "dev", DEVICE, "dst", dst, "self")

    def write_nat(self, own_cidr: str, other_cidrs: Iterable[str]) -> None:
        self.routes_nat.write_nat(own_cidr, other_cidrs)


def _incompatible(info: Obj, local: str, parent: str) -> str:
    """Why an existing device is not the one we would make (flannel's vxlanLinksIncompat)."""
    kind = (info.get("linkinfo") or {}).get("info_kind")
    if kind != "vxlan":
        return f"link type: {kind} vs vxlan"
    data = (info.get("linkinfo") or {}).get("info_data") or {}
    for what, have, want in (("vni", data.get("id"), VNI), ("vtep (external) IP", data.get("local"), local),
                             ("vtep (external) interface", data.get("link"), parent),
                             ("port", data.get("port"), PORT), ("learning", data.get("learning"), False)):
        if have != want:
            return f"{what}: {have} vs {want}"
    return ""


def ensure_device(kernel: VxlanKernel, public_ip: str, own_cidr: str, mac: str = "") -> str:
    """Make :data:`DEVICE` what it must be (created with ``mac`` if it has to be made, or a new
    MAC); returns its MAC. Idempotent: a compatible device is kept as it is."""
    parent = kernel.parent(public_ip)
    if parent is None:
        raise PodNetworkError(f"vxlan: no interface has the node's IP {public_ip} (the VXLAN packets' source); "
                              "give the agent --node-ip an address of this host")
    parent_name, parent_mtu = parent
    mtu = parent_mtu - ENCAP_OVERHEAD
    info = kernel.link()
    if info is not None:
        why = _incompatible(info, public_ip, parent_name)
        if why:
            log.warning("%r already exists with incompatible configuration: %s; recreating device", DEVICE, why)
            kernel.delete_link()
            info = None
    if info is None:
        mac = mac or new_mac()
        log.info("creating %s (VNI %d, port %d, over %s, MTU %d, MAC %s)", DEVICE, VNI, PORT, parent_name, mtu, mac)
        kernel.add_link(mac, public_ip, parent_name, mtu)
        info = kernel.link() or {"address": mac, "mtu": mtu}
    elif int(info.get("mtu") or 0) != mtu:
        kernel.set_mtu(mtu)
    # a /32, so that no broadcast or subnet route is made: only the source of host-to-pod traffic
    want = f"{ipaddress.ip_network(own_cidr, strict=False).network_address}/32"
    have = kernel.addresses()
    for a in have:
        if a != want:
            kernel.delete_address(a)
    if want not in have:
        kernel.add_address(want)
    if "UP" not in (info.get("flags") or []):
        kernel.set_up()
    return str(info.get("address") or mac).lower()


def reconcile(kernel: VxlanKernel, nodes: Iterable[Obj], self_name: str, own_cidr: str,
              warned: dict[str, str] | None = None) -> dict[str, Peer]:
    """Make the routes, neighbour and FDB entries and the nat chain what the Nodes say;
    returns the peers. ``warned`` remembers the reasons already logged, per node."""
    peers, skipped = desired_peers(nodes, self_name)
    for name, why in sorted(skipped.items()):
        if warned is None or warned.get(name) != why:
            log.warning("%s", why)
    if warned is not None:
        warned.clear()
        warned.update(skipped)
    want_neigh = {p.gateway: p.vtep_mac for p in peers.values()}
    want_fdb = {p.vtep_mac: p.public_ip for p in peers.values()}
    routes, neigh, fdb = kernel.routes(), kernel.neighbours(), kernel.fdb()
    # gone first, in reverse order of making: route, neighbour, FDB entry
    for cidr in sorted(set(routes) - set(peers)):
        log.info("removing route to %s (its node is gone)", cidr)
        kernel.delete_route(cidr)
    for ip in sorted(set(neigh) - set(want_neigh)):
        kernel.delete_neighbour(ip)
    for mac, dst in sorted(fdb.items()):
        if want_fdb.get(mac) != dst:
            kernel.delete_fdb(mac, dst)
    for cidr, p in sorted(peers.items()):
        if neigh.get(p.gateway) != p.vtep_mac:
            kernel.replace_neighbour(p.gateway, p.vtep_mac)
        if fdb.get(p.vtep_mac) != p.public_ip:
            kernel.add_fdb(p.vtep_mac, p.public_ip)
        if routes.get(cidr) != (p.gateway, DEVICE):
            log.info("subnet %s of node %s: via %s, VtepMAC %s at %s", cidr, p.node, p.gateway, p.vtep_mac,
                     p.public_ip)
            kernel.replace_route(cidr, p.gateway)
    if own_cidr:
        kernel.write_nat(own_cidr, peers)
    return peers


def remove_device(kernel: VxlanKernel | None = None) -> list[str]:
    """Delete :data:`DEVICE` if it is a vxlan device (its routes and entries go with it)."""
    kernel = kernel or VxlanKernel()
    info = kernel.link()
    if info is None or (info.get("linkinfo") or {}).get("info_kind") != "vxlan":
        return []
    kernel.delete_link()
    return [f"removed vxlan device {DEVICE}"]


def remove_all(kernel: VxlanKernel | None = None) -> list[str]:
    """What `kubelite uninstall` removes of the vxlan backend (host-gw's removes the nat chain)."""
    return remove_device(kernel)


class VxlanNetwork(NodeNetwork):
    """The vxlan backend: the device at start, then the shared loop."""

    backend = "vxlan"

    def __init__(self, client: Any, node_name: str, own_cidr: str, kernel: VxlanKernel | None = None,
                 **kw: Any) -> None:
        super().__init__(client, node_name, own_cidr, **kw)
        self.kernel = kernel or VxlanKernel()
        self.mac = ""
        self._warned: dict[str, str] = {}

    async def setup(self, node: Obj) -> None:
        mac = stored_mac(node)
        if mac:
            log.info("Interface %s mac address set to: %s", DEVICE, mac)
        self.mac = await asyncio.to_thread(ensure_device, self.kernel, self.node_ip, self.own_cidr, mac)

    def annotations(self) -> dict[str, str]:
        return node_annotations(self.mac, self.node_ip)

    async def reconcile(self, nodes: list[Obj]) -> None:
        # the device again if it went (flannel watches for its deletion and makes it again)
        self.mac = await asyncio.to_thread(ensure_device, self.kernel, self.node_ip, self.own_cidr, self.mac)
        mtu = await asyncio.to_thread(pod_mtu, self.node_ip, self.kernel)
        if mtu > 0:  # the pods' bridge again if it was made anew (cni.pin_bridge_mtu)
            await asyncio.to_thread(self.kernel.pin_bridge_mtu, mtu)
        await asyncio.to_thread(reconcile, self.kernel, nodes, self.node_name, self.own_cidr, self._warned)


def pod_mtu(node_ip: str, kernel: VxlanKernel | None = None) -> int:
    """The pods' MTU on a vxlan node (flannel's FLANNEL_MTU), 0 if the interface is unknown."""
    parent = (kernel or VxlanKernel()).parent(node_ip)
    return parent[1] - ENCAP_OVERHEAD if parent else 0
