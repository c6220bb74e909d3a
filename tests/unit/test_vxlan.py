"""vxlan: the device, routes, neighbour and FDB entries the agent derives from the Nodes (a fake kernel)."""

from __future__ import annotations

import json
import logging

import pytest

from kubelite.agent import cni, podnet, vxlan
from kubelite.agent.podnet import PodNetworkError

MAC_A, MAC_B, MAC_C = "0a:00:00:00:00:0a", "0a:00:00:00:00:0b", "0a:00:00:00:00:0c"


def node(name: str, cidr: str = "", ip: str = "", mac: str = "", backend: str = "vxlan") -> dict:
    n: dict = {"metadata": {"name": name, "annotations": {}}, "spec": {}, "status": {}}
    if cidr:
        n["spec"]["podCIDR"] = cidr
    if ip:
        n["status"]["addresses"] = [{"type": "InternalIP", "address": ip}]
    if mac:
        n["metadata"]["annotations"] = {**vxlan.node_annotations(mac, ip), vxlan.BACKEND_TYPE: backend}
    return n


class FakeKernel(vxlan.VxlanKernel):
    def __init__(self, parents: dict[str, tuple[str, int]] | None = None) -> None:
        self.parents = parents if parents is not None else {"198.19.250.2": ("eth0", 1500)}
        self.dev: dict | None = None
        self.addrs: list[str] = []
        self.route_table: dict[str, tuple[str, str]] = {}
        self.neigh: dict[str, str] = {}
        self.fdb_table: dict[str, str] = {}
        self.nat: tuple[str, list[str]] | None = None
        self.calls: list[tuple] = []

    def parent(self, ip: str) -> tuple[str, int] | None:
        return self.parents.get(ip)

    def link(self) -> dict | None:
        return self.dev

    def add_link(self, mac: str, local: str, parent: str, mtu: int) -> None:
        self.calls.append(("add_link", mac, local, parent, mtu))
        self.dev = {"address": mac, "mtu": mtu, "flags": ["BROADCAST"],
                    "linkinfo": {"info_kind": "vxlan", "info_data": {"id": 1, "local": local, "link": parent,
                                                                     "port": 8472, "learning": False}}}

    def set_mtu(self, mtu: int) -> None:
        self.calls.append(("set_mtu", mtu))
        assert self.dev is not None
        self.dev["mtu"] = mtu

    def pin_bridge_mtu(self, mtu: int) -> None:
        self.calls.append(("pin_bridge_mtu", mtu))

    def set_up(self) -> None:
        self.calls.append(("set_up",))
        assert self.dev is not None
        self.dev["flags"] = [*self.dev["flags"], "UP"]

    def delete_link(self) -> None:
        self.calls.append(("delete_link",))
        self.dev = None
        self.addrs, self.neigh, self.fdb_table = [], {}, {}
        self.route_table = {c: r for c, r in self.route_table.items() if r[1] != vxlan.DEVICE}

    def addresses(self) -> list[str]:
        return list(self.addrs)

    def add_address(self, cidr: str) -> None:
        self.calls.append(("add_address", cidr))
        self.addrs.append(cidr)

    def delete_address(self, cidr: str) -> None:
        self.calls.append(("delete_address", cidr))
        self.addrs.remove(cidr)

    def routes(self) -> dict[str, tuple[str, str]]:
        return dict(self.route_table)

    def replace_route(self, cidr: str, gateway: str) -> None:
        self.calls.append(("route", cidr, gateway))
        self.route_table[cidr] = (gateway, vxlan.DEVICE)

    def delete_route(self, cidr: str) -> None:
        self.calls.append(("del_route", cidr))
        del self.route_table[cidr]

    def neighbours(self) -> dict[str, str]:
        return dict(self.neigh)

    def replace_neighbour(self, ip: str, mac: str) -> None:
        self.calls.append(("neigh", ip, mac))
        self.neigh[ip] = mac

    def delete_neighbour(self, ip: str) -> None:
        self.calls.append(("del_neigh", ip))
        del self.neigh[ip]

    def fdb(self) -> dict[str, str]:
        return dict(self.fdb_table)

    def add_fdb(self, mac: str, dst: str) -> None:
        self.calls.append(("fdb", mac, dst))
        self.fdb_table[mac] = dst

    def delete_fdb(self, mac: str, dst: str) -> None:
        self.calls.append(("del_fdb", mac, dst))
        del self.fdb_table[mac]

    def write_nat(self, own_cidr: str, other_cidrs) -> None:
        self.nat = (own_cidr, sorted(other_cidrs))


def test_annotations_are_flannels():
    ann = vxlan.node_annotations(MAC_A, "198.19.250.2")
    assert ann == {"flannel.alpha.coreos.com/backend-data": '{"VNI":1,"VtepMAC":"0a:00:00:00:00:0a"}',
                   "flannel.alpha.coreos.com/backend-type": "vxlan",
                   "flannel.alpha.coreos.com/kube-subnet-manager": "true",
                   "flannel.alpha.coreos.com/public-ip": "198.19.250.2"}
    assert vxlan.stored_mac(node("a", "10.244.0.0/24", "198.19.250.2", MAC_A)) == MAC_A
    assert vxlan.stored_mac(node("a")) == "" and vxlan.stored_mac(None) == ""
    mac = vxlan.new_mac()
    assert int(mac[:2], 16) & 0b11 == 0b10  # locally administered, unicast
    assert vxlan.new_mac() != mac


def test_desired_peers_skip_self_unannotated_and_bad_nodes():
    bad_data = node("g", "10.244.6.0/24", "198.19.250.8", MAC_C)
    bad_data["metadata"]["annotations"][vxlan.BACKEND_DATA] = "{not json"
    nodes = [node("a", "10.244.0.0/24", "198.19.250.2", MAC_A), node("b", "10.244.1.0/24", "198.19.250.3", MAC_B),
             node("c", "10.244.2.0/24", "198.19.250.4"),  # not (yet) a flannel node: silently not a peer
             node("d", "10.244.3.0/24", "198.19.250.5", MAC_C, backend="host-gw"),
             node("e", "fd00::/64", "198.19.250.6", MAC_C), node("f", "", "198.19.250.7", MAC_C), bad_data]
    peers, skipped = vxlan.desired_peers(nodes, "a")
    assert peers == {"10.244.1.0/24": vxlan.Peer("b", "10.244.1.0/24", "10.244.1.0", MAC_B, "198.19.250.3")}
    assert sorted(skipped) == ["d", "e", "f", "g"]
    assert skipped["d"] == "ignoring non-vxlan subnet(10.244.3.0/24) of node d: type=host-gw"
    assert skipped["e"].startswith("Error turning node 'e' to lease")
    assert skipped["g"].startswith("error decoding subnet lease JSON of node g")


def test_ensure_device_makes_flannel_1_once():
    k = FakeKernel()
    mac = vxlan.ensure_device(k, "198.19.250.2", "10.244.0.0/24")
    assert k.calls == [("add_link", mac, "198.19.250.2", "eth0", 1450), ("add_address", "10.244.0.0/32"),
                       ("set_up",)]
    k.calls.clear()
    assert vxlan.ensure_device(k, "198.19.250.2", "10.244.0.0/24", MAC_B) == mac  # a compatible device stays
    assert k.calls == []


def test_ensure_device_reuses_the_stored_mac_and_fixes_what_differs():
    k = FakeKernel()
    assert vxlan.ensure_device(k, "198.19.250.2", "10.244.0.0/24", MAC_A) == MAC_A
    assert k.calls[0] == ("add_link", MAC_A, "198.19.250.2", "eth0", 1450)
    k.calls.clear()
    k.addrs = ["10.244.9.0/32", "10.244.0.0/32"]  # a pod CIDR of an earlier life
    k.parents["198.19.250.2"] = ("eth0", 9000)
    vxlan.ensure_device(k, "198.19.250.2", "10.244.0.0/24", MAC_A)
    assert k.calls == [("set_mtu", 8950), ("delete_address", "10.244.9.0/32")]
    # another VNI or port or parent is another device: made again (flannel's vxlanLinksIncompat)
    assert k.dev is not None
    k.dev["linkinfo"]["info_data"]["port"] = 4789
    k.calls.clear()
    vxlan.ensure_device(k, "198.19.250.2", "10.244.0.0/24", MAC_A)
    assert k.calls[:2] == [("delete_link",), ("add_link", MAC_A, "198.19.250.2", "eth0", 8950)]


def test_ensure_device_refuses_a_node_ip_of_no_interface():
    with pytest.raises(PodNetworkError, match="no interface has the node's IP 203.0.113.9"):
        vxlan.ensure_device(FakeKernel(), "203.0.113.9", "10.244.0.0/24")


def test_reconcile_adds_neighbour_fdb_then_route_and_removes_what_went():
    k = FakeKernel()
    vxlan.ensure_device(k, "198.19.250.2", "10.244.0.0/24", MAC_A)
    k.route_table["10.244.7.0/24"] = ("198.19.250.9", "eth0")  # left by host-gw
    k.calls.clear()
    nodes = [node("a", "10.244.0.0/24", "198.19.250.2", MAC_A), node("b", "10.244.1.0/24", "198.19.250.3", MAC_B),
             node("c", "10.244.2.0/24", "198.19.250.4", MAC_C)]
    peers = vxlan.reconcile(k, nodes, "a", "10.244.0.0/24")
    assert sorted(peers) == ["10.244.1.0/24", "10.244.2.0/24"]
    assert k.calls == [("del_route", "10.244.7.0/24"),
                       ("neigh", "10.244.1.0", MAC_B), ("fdb", MAC_B, "198.19.250.3"), ("route", "10.244.1.0/24", "10.244.1.0"),
                       ("neigh", "10.244.2.0", MAC_C), ("fdb", MAC_C, "198.19.250.4"), ("route", "10.244.2.0/24", "10.244.2.0")]
    assert k.route_table == {"10.244.1.0/24": ("10.244.1.0", "flannel.1"), "10.244.2.0/24": ("10.244.2.0", "flannel.1")}
    assert k.neigh == {"10.244.1.0": MAC_B, "10.244.2.0": MAC_C}
    assert k.fdb_table == {MAC_B: "198.19.250.3", MAC_C: "198.19.250.4"}
    assert k.nat == ("10.244.0.0/24", ["10.244.1.0/24", "10.244.2.0/24"])
    k.calls.clear()
    vxlan.reconcile(k, nodes, "a", "10.244.0.0/24")
    assert k.calls == []  # level-triggered and idempotent
    # c went; b's agent came back with a new device (another MAC) on another address
    b2 = node("b", "10.244.1.0/24", "198.19.250.13", MAC_A.replace("0a", "0e", 1))
    vxlan.reconcile(k, [nodes[0], b2], "a", "10.244.0.0/24")
    new_b = MAC_A.replace("0a", "0e", 1)
    assert k.calls == [("del_route", "10.244.2.0/24"), ("del_neigh", "10.244.2.0"),
                       ("del_fdb", MAC_B, "198.19.250.3"), ("del_fdb", MAC_C, "198.19.250.4"),
                       ("neigh", "10.244.1.0", new_b), ("fdb", new_b, "198.19.250.13")]
    assert k.route_table == {"10.244.1.0/24": ("10.244.1.0", "flannel.1")}
    assert k.fdb_table == {new_b: "198.19.250.13"} and k.neigh == {"10.244.1.0": new_b}
    assert k.nat == ("10.244.0.0/24", ["10.244.1.0/24"])


def test_reconcile_names_a_skipped_node_once(caplog):
    k = FakeKernel()
    nodes = [node("d", "10.244.3.0/24", "198.19.250.5", MAC_C, backend="host-gw")]
    warned: dict[str, str] = {}
    with caplog.at_level(logging.WARNING, logger="kubelite.agent.vxlan"):
        vxlan.reconcile(k, nodes, "a", "10.244.0.0/24", warned)
        vxlan.reconcile(k, nodes, "a", "10.244.0.0/24", warned)
    assert [r.getMessage() for r in caplog.records] == ["ignoring non-vxlan subnet(10.244.3.0/24) of node d: type=host-gw"]


def test_remove_all_deletes_the_device_with_its_routes():
    k = FakeKernel()
    vxlan.ensure_device(k, "198.19.250.2", "10.244.0.0/24", MAC_A)
    vxlan.reconcile(k, [node("b", "10.244.1.0/24", "198.19.250.3", MAC_B)], "a", "10.244.0.0/24")
    assert vxlan.remove_all(k) == ["removed vxlan device flannel.1"]
    assert k.dev is None and k.route_table == {} and k.fdb_table == {} and k.neigh == {}
    assert vxlan.remove_all(k) == []
    k.dev = {"linkinfo": {"info_kind": "bridge"}}  # someone else's flannel.1 is not ours to delete
    assert vxlan.remove_all(k) == []


def test_pod_mtu_and_cni_config():
    assert vxlan.pod_mtu("198.19.250.2", FakeKernel()) == 1450
    assert vxlan.pod_mtu("203.0.113.9", FakeKernel()) == 0
    assert cni.conflist("10.244.0.0/24", "/d", mtu=1450)["plugins"][0]["mtu"] == 1450  # type: ignore[arg-type]
    assert "mtu" not in cni.conflist("10.244.0.0/24", "/d")["plugins"][0]  # type: ignore[arg-type]


def test_backends():
    assert podnet.new_backend("none", None, "a", "10.244.0.0/24", "198.19.250.2") is None
    with pytest.raises(ValueError, match="unknown flannel backend 'udp'"):
        podnet.new_backend("udp", None, "a", "10.244.0.0/24", "198.19.250.2")
    assert json.loads(vxlan.backend_data(MAC_A)) == {"VNI": 1, "VtepMAC": MAC_A}


class FakeClient:
    def __init__(self, node: dict) -> None:
        self.node = node
        self.patches: list[dict] = []

    async def get(self, api_version: str, plural: str, name: str, **kw) -> dict:
        return json.loads(json.dumps(self.node))

    async def patch(self, api_version: str, plural: str, name: str, patch: dict, **kw) -> dict:
        self.patches.append(patch)
        self.node["metadata"]["annotations"].update(patch["metadata"]["annotations"])
        return self.node


async def test_the_node_publishes_its_backend_once_and_again_when_it_drifts():
    own = node("a", "10.244.0.0/24", "198.19.250.2", MAC_A)  # a restarted node: its MAC is stored
    client = FakeClient(own)
    net = vxlan.VxlanNetwork(client, "a", "10.244.0.0/24", kernel=FakeKernel(), node_ip="198.19.250.2")
    await net.setup(await client.get("v1", "nodes", "a"))
    assert net.mac == MAC_A  # the device is made again with the MAC the other nodes know
    await net.publish(client.node)
    assert client.patches == []  # nothing drifted
    client.node["metadata"]["annotations"][vxlan.PUBLIC_IP] = "203.0.113.1"
    await net.publish(client.node)
    assert client.patches == [{"metadata": {"annotations": vxlan.node_annotations(MAC_A, "198.19.250.2")}}]

    # the same node on host-gw: vxlan nodes read "ignoring non-vxlan subnet" and forget it
    from kubelite.agent.hostgw import HostGateway

    gw = HostGateway(client, "a", "10.244.0.0/24", node_ip="198.19.250.2")
    await gw.publish(client.node)
    assert client.node["metadata"]["annotations"] == {
        "flannel.alpha.coreos.com/backend-data": "null", "flannel.alpha.coreos.com/backend-type": "host-gw",
        "flannel.alpha.coreos.com/kube-subnet-manager": "true", "flannel.alpha.coreos.com/public-ip": "198.19.250.2"}
    assert vxlan.peer_of(client.node) == (None, "ignoring non-vxlan subnet(10.244.0.0/24) of node a: type=host-gw")


def test_only_what_the_backends_read_wakes_the_loop():
    net = vxlan.VxlanNetwork(FakeClient(node("a")), "a", "10.244.0.0/24", kernel=FakeKernel(), node_ip="198.19.250.2")
    b = node("b", "10.244.1.0/24", "198.19.250.3", MAC_B)
    heartbeat = json.loads(json.dumps(b))
    heartbeat["status"]["conditions"] = [{"type": "Ready", "status": "True", "lastHeartbeatTime": "now"}]
    heartbeat["metadata"]["annotations"]["node.alpha.kubernetes.io/ttl"] = "0"
    net._node_event("MODIFIED", b, heartbeat)
    assert not net._changed.is_set()
    for change in (lambda n: n["metadata"]["annotations"].update({vxlan.BACKEND_DATA: vxlan.backend_data(MAC_C)}),
                   lambda n: n["spec"].update({"podCIDR": "10.244.9.0/24"}),
                   lambda n: n["status"].update({"addresses": [{"type": "InternalIP", "address": "198.19.250.9"}]})):
        changed = json.loads(json.dumps(b))
        change(changed)
        net._node_event("MODIFIED", b, changed)
        assert net._changed.is_set()
        net._changed.clear()
    net._node_event("DELETED", b, None)
    assert net._changed.is_set()


def test_uninstall_removes_the_pod_network(monkeypatch, tmp_path):
    from kubelite.cli import uninstall

    for fn in ("remove_bridge", "remove_hostport_chains", "remove_cgroup_roots", "remove_runtime_dirs", "pods_left"):
        monkeypatch.setattr(uninstall, fn, lambda: [])
    monkeypatch.setattr(vxlan, "remove_all", lambda kernel=None: ["removed vxlan device flannel.1"])
    from kubelite.agent import hostgw

    monkeypatch.setattr(hostgw, "remove_all", lambda kernel=None: ["removed iptables chain KUBELITE-POSTROUTING"])
    from kubelite.proxy import iptables

    # never the host's real service rules: another server on this machine may be using them
    monkeypatch.setattr(iptables, "cleanup_now", lambda: [])
    assert uninstall.uninstall(tmp_path, purge=False) == (
        0, ["removed vxlan device flannel.1", "removed iptables chain KUBELITE-POSTROUTING"])
