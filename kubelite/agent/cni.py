"""The pod network: one bridge ``kubelite0`` with host-local IPAM over the node's pod CIDR.

containerd's CRI plugin reads ``<data_dir>/cni/net.d`` (its ``conf_dir``) and runs the
plugins from /usr/lib/cni; it adds the loopback interface itself (go-cni's loopback
network, plugin ``loopback``), so the conflist only names bridge and portmap.

Pod CIDR: the Node's ``spec.podCIDR``, given by the server's node IPAM controller
(kubelite/controllers/nodeipam.py) from ``--cluster-cidr`` (default 10.244.0.0/16, clear
of podman's 10.88/16 and 10.89/24).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

log = logging.getLogger("kubelite.agent.cni")
BRIDGE = "kubelite0"
NETWORK_NAME = "kubelite"
CONFLIST_NAME = "10-kubelite.conflist"
CNI_VERSION = "1.0.0"


def conf_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "cni" / "net.d"


def ipam_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "cni" / "ipam"


def conflist(pod_cidr: str, data_dir: Path, mtu: int = 0) -> dict:
    """``mtu`` (> 0): the bridge's and the pods' interfaces' (the vxlan backend's overlay MTU)."""
    net = ipaddress.ip_network(pod_cidr, strict=False)
    gateway = str(next(net.hosts()))
    doc: dict[str, Any] = {
        "cniVersion": CNI_VERSION,
        "name": NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": str(net), "gateway": gateway}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(ipam_dir(data_dir)),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
        ],
    }
    if mtu > 0:
        doc["plugins"][0]["mtu"] = mtu
    return doc


def write_conflist(data_dir: Path, pod_cidr: str, mtu: int = 0) -> Path:
    """Write (atomically, only when it changed) the network config; returns its path."""
    d = conf_dir(data_dir)
    d.mkdir(parents=True, exist_ok=True)
    ipam_dir(data_dir).mkdir(parents=True, exist_ok=True)
    path = d / CONFLIST_NAME
    text = json.dumps(conflist(pod_cidr, data_dir, mtu), indent=2) + "\n"
    if path.exists() and path.read_text() == text:
        return path
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def _bridge_addresses() -> list[str] | None:
    """IPv4 addresses (CIDR form) of the bridge, or None when it does not exist."""
    p = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", BRIDGE], capture_output=True, text=True)
    if p.returncode != 0:
        return None
    return [ln.split()[3] for ln in p.stdout.splitlines() if len(ln.split()) > 3]


def forget_neighbours(ips: list[str]) -> None:
    """Drop the host's neighbour entries for a new pod's addresses on the bridge. host-local
    IPAM hands an address out again as soon as it is free, and an entry learnt for the pod that
    had it before (another MAC, STALE) would keep the host's packets to the new pod going to a
    MAC that no longer exists until the kernel re-probes it (5 s and more): probes and port
    forwards would time out on a pod that is up."""
    for ip in ips:
        subprocess.run(["ip", "neigh", "flush", "to", ip, "dev", BRIDGE], capture_output=True)


def bridge_ports() -> list[str]:
    p = subprocess.run(["ip", "-o", "link", "show", "master", BRIDGE], capture_output=True, text=True)
    return [ln.split(":")[1].strip().split("@")[0] for ln in p.stdout.splitlines() if ln.strip()]


def _bridge_mtu() -> int | None:
    p = subprocess.run(["ip", "-j", "link", "show", "dev", BRIDGE], capture_output=True, text=True)
    if p.returncode != 0:
        return None
    rows = json.loads(p.stdout or "[]")
    return int(rows[0].get("mtu") or 0) if rows else None


def pin_bridge_mtu(mtu: int, *, at_start: bool = False) -> None:
    """Give the bridge the pods' MTU (the vxlan backend's) for good. The bridge plugin sets its
    ``mtu`` only on the bridge it creates, and there as the kernel's initial value: the kernel
    then gives a bridge the lowest MTU of its ports, and 1500 again when the last port goes
    (br_mtu_auto_adjust), so an idle node's bridge (the host's route to its pods) would no
    longer fit the tunnel. An MTU set with ``ip link set`` is the user's and stays. A missing
    bridge is made here for it (the plugin takes an existing bridge as it is); ``at_start``: a
    bridge that already has the MTU may have it only from its ports (a bridge made by the
    plugin), so it is set through another value once."""
    have = _bridge_mtu()
    if have is None:
        log.info("creating bridge %s with MTU %d", BRIDGE, mtu)
        subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], capture_output=True)
        have = _bridge_mtu()
        if have is None:
            log.warning("bridge %s could not be made; its MTU is the bridge plugin's", BRIDGE)
            return
    if have == mtu and at_start:  # setting the MTU it has is a no-op to the kernel: not the user's yet
        subprocess.run(["ip", "link", "set", BRIDGE, "mtu", str(mtu - 1)], capture_output=True)
        have = mtu - 1
    if have != mtu:
        p = subprocess.run(["ip", "link", "set", BRIDGE, "mtu", str(mtu)], capture_output=True, text=True)
        if p.returncode != 0:
            log.warning("bridge %s MTU %d: %s", BRIDGE, mtu, p.stderr.strip())


def reconcile_bridge(pod_cidr: str) -> None:
    """The bridge plugin refuses a bridge that carries another gateway address: a bridge left
    by an earlier node with another pod CIDR is deleted when nothing is attached to it."""
    addrs = _bridge_addresses()
    if not addrs:
        return
    net = ipaddress.ip_network(pod_cidr, strict=False)
    gateway = f"{next(net.hosts())}/{net.prefixlen}"
    if gateway in addrs:
        return
    if bridge_ports():
        log.error("bridge %s has %s and pods attached; pods of pod CIDR %s cannot start", BRIDGE, addrs, pod_cidr)
        return
    log.info("deleting stale bridge %s (%s)", BRIDGE, ", ".join(addrs))
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
