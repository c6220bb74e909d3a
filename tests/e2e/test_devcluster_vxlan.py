"""`kubelite dev cluster up --flannel-backend vxlan`: three nodes on two subnets (routed through
this host, as machines in different networks) whose pods reach each other through flannel's
vxlan overlay only (flannel.1, FDB and neighbour entries from the Nodes' flannel annotations),
entries that follow the Nodes, and a host left as it was found; host-gw on the same layout
skips the node it cannot reach directly and says why. (The nodes' iptables rules added here
go with their network namespaces.)"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from tests.e2e.harness import free_port, wait_until
from tests.e2e.test_devcluster import before, check_all_pairs, host_state, kubectl_for, kubelite, mounts

__all__ = ["before"]  # the fixture
NAME = "klvx"
SUBNET = "198.19.247.0/24"  # not the default one, nor test_devcluster's
OTHER_SUBNET = "198.19.246.0/24"  # node 2's
ANN = "flannel.alpha.coreos.com/"
GONE_MAC = "0a:58:00:00:00:01"


@pytest.fixture(autouse=True)
def ip_forward():
    """Nodes on two subnets need this host to route between them (`dev cluster up` refuses
    otherwise): on, as the CNI bridge plugin itself turns it on for any pod, and put back."""
    knob = Path("/proc/sys/net/ipv4/ip_forward")
    was = knob.read_text().strip()
    knob.write_text("1\n")
    yield
    knob.write_text(was + "\n")


def node_json(data: Path, node: str, *cmd: str) -> list[dict]:
    out = kubelite("dev", "cluster", "exec", "--data-dir", str(data), node, "--", *cmd)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout or "[]")


def overlay(data: Path, node: str) -> dict:
    """What the vxlan backend made on a node: routes, neighbour and FDB entries on flannel.1."""
    routes = node_json(data, node, "ip", "-j", "-4", "route", "show", "proto", "76")
    neigh = node_json(data, node, "ip", "-j", "-4", "neigh", "show", "dev", "flannel.1", "nud", "permanent")
    fdb = node_json(data, node, "bridge", "-j", "fdb", "show", "dev", "flannel.1")
    return {"routes": {r["dst"]: (r["gateway"], r["dev"], r.get("flags")) for r in routes},
            "neigh": {n["dst"]: n["lladdr"] for n in neigh},
            "fdb": {e["mac"]: e["dst"] for e in fdb if e.get("state") == "permanent"}}


def want_overlay(peers: dict[str, tuple[str, str, str]]) -> dict:
    """peers: {pod CIDR: (VtepMAC, public IP)}."""
    gw = {c: str(ipaddress.ip_network(c).network_address) for c in peers}
    return {"routes": {c: (gw[c], "flannel.1", ["onlink"]) for c in peers},
            "neigh": {gw[c]: mac for c, (mac, _) in peers.items()},
            "fdb": {mac: ip for mac, ip in peers.values()}}


def test_dev_cluster_on_vxlan(tmp_path, before):
    data = tmp_path / "dev"
    kc = tmp_path / "kc.yaml"
    kubectl = kubectl_for(kc, tmp_path)
    up = kubelite("dev", "cluster", "up", "--nodes", "3", "--data-dir", str(data), "--kubeconfig", str(kc),
                  "--name", NAME, "--subnet", SUBNET, "--subnet", OTHER_SUBNET, "--port", str(free_port()),
                  "--flannel-backend", "vxlan")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        names = [f"{NAME}-{i}" for i in (1, 2, 3)]

        def published() -> dict:
            """{node: (podCIDR, VtepMAC, InternalIP)} once every node has its flannel annotations."""
            out = {}
            for n in json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"]:
                ann = n["metadata"].get("annotations") or {}
                if ann.get(ANN + "kube-subnet-manager") != "true":
                    return {}
                ip = next(a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP")
                assert ann[ANN + "backend-type"] == "vxlan" and ann[ANN + "public-ip"] == ip
                data_ = json.loads(ann[ANN + "backend-data"])
                assert data_["VNI"] == 1 and list(data_) == ["VNI", "VtepMAC"]
                out[n["metadata"]["name"]] = (n["spec"]["podCIDR"], data_["VtepMAC"], ip)
            return out

        nodes = wait_until(published, 30, 0.3, "flannel annotations on every node")
        assert sorted(nodes) == names
        # nodes 1 and 3 share a subnet, node 2 is on the other: no node-to-node link between them
        assert [ipaddress.ip_address(nodes[n][2]) in ipaddress.ip_network(SUBNET) for n in names] == [True, False, True]
        for n in names:  # the device as flannel makes it, its MAC the published one
            cidr, mac, ip = nodes[n]
            link = node_json(data, n, "ip", "-j", "-d", "link", "show", "flannel.1")[0]
            info = link["linkinfo"]["info_data"]
            assert link["linkinfo"]["info_kind"] == "vxlan" and link["address"] == mac and link["mtu"] == 1450
            assert (info["id"], info["port"], info["learning"], info["local"], info["link"]) == (1, 8472, False, ip,
                                                                                                  "eth0")
            addrs = node_json(data, n, "ip", "-j", "-4", "addr", "show", "dev", "flannel.1")[0]["addr_info"]
            assert [(a["local"], a["prefixlen"]) for a in addrs] == [(str(ipaddress.ip_network(cidr)[0]), 32)]
            want = want_overlay({c: (m, i) for o, (c, m, i) in nodes.items() if o != n})
            wait_until(lambda n=n, want=want: overlay(data, n) == want, 30, 0.3, f"vxlan entries on {n}")

        # pods' packets may leave a node only inside the tunnel: nothing is forwarded out of eth0
        # as it is (host-gw would be), and the VXLAN packets are counted on their way out
        for n in names:
            for rule in (["FORWARD", "-o", "eth0", "-j", "DROP"],
                         ["OUTPUT", "-o", "eth0", "-p", "udp", "--dport", "8472", "-j", "ACCEPT"]):
                ok = kubelite("dev", "cluster", "exec", "--data-dir", str(data), n, "--", "iptables", "-w", "-I", *rule)
                assert ok.returncode == 0, ok.stderr
        check_all_pairs(kubectl, names)  # 30/30, no NAT: each server sees the client's pod IP
        for n in names:
            out = kubelite("dev", "cluster", "exec", "--data-dir", str(data), n, "--", "iptables", "-w", "-nvxL",
                           "OUTPUT").stdout
            counted = next(ln.split() for ln in out.splitlines() if "dpt:8472" in ln)
            assert int(counted[0]) > 0, out  # packets
        # the pods' interfaces fit the tunnel, and the bridge still does once its pods are gone
        # (the kernel's own choice for a bridge without ports would be 1500)
        for n in names:
            wait_until(lambda n=n: node_json(data, n, "ip", "-j", "link", "show", "master", "kubelite0") == [], 60,
                       0.3, f"no pod left on {n}'s bridge")
            assert node_json(data, n, "ip", "-j", "link", "show", "kubelite0")[0]["mtu"] == 1450

        # a node that comes, changes its VtepMAC, and goes: every node follows
        gone_ip = str(ipaddress.ip_network(SUBNET)[50])
        kubectl("create", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": f"{NAME}-gone", "annotations": {
                ANN + "backend-type": "vxlan", ANN + "kube-subnet-manager": "true", ANN + "public-ip": gone_ip,
                ANN + "backend-data": json.dumps({"VNI": 1, "VtepMAC": GONE_MAC})}}}))
        gone_cidr = wait_until(lambda: json.loads(kubectl("get", "node", f"{NAME}-gone", "-o", "json").stdout)[
            "spec"].get("podCIDR"), 15, 0.2, "podCIDR of the new node")
        gone_gw = str(ipaddress.ip_network(gone_cidr)[0])
        for n in names:
            wait_until(lambda n=n: (lambda o: o["routes"].get(gone_cidr) == (gone_gw, "flannel.1", ["onlink"])
                                    and o["neigh"].get(gone_gw) == GONE_MAC and o["fdb"].get(GONE_MAC) == gone_ip)(
                overlay(data, n)), 30, 0.3, f"entries for the new node on {n}")
        # someone deletes node 1's device (its entries go with it): the next pass makes it again,
        # with the MAC the other nodes know, and every entry with it
        gone_dev = kubelite("dev", "cluster", "exec", "--data-dir", str(data), names[0], "--", "ip", "link", "del",
                            "flannel.1")
        assert gone_dev.returncode == 0, gone_dev.stderr
        new_mac = "0a:58:00:00:00:02"
        kubectl("annotate", "node", f"{NAME}-gone", "--overwrite",
                f"{ANN}backend-data={json.dumps({'VNI': 1, 'VtepMAC': new_mac})}")
        wait_until(lambda: (lambda o: o["neigh"].get(gone_gw) == new_mac and GONE_MAC not in o["fdb"]
                            and o["fdb"].get(new_mac) == gone_ip)(overlay(data, names[0])), 30, 0.3,
                   "entries follow the new VtepMAC")
        assert node_json(data, names[0], "ip", "-j", "link", "show", "flannel.1")[0]["address"] == nodes[names[0]][1]
        kubectl("delete", "node", f"{NAME}-gone")
        for n in names:
            want = want_overlay({c: (m, i) for o, (c, m, i) in nodes.items() if o != n})
            wait_until(lambda n=n, want=want: overlay(data, n) == want, 30, 0.3, f"entries of the gone node off {n}")
    finally:
        down = kubelite("dev", "cluster", "down", "--data-dir", str(data))
    assert down.returncode == 0, down.stdout + down.stderr
    # no flannel.1, fdb or route left: the root namespace as it was (the nodes' went with them)
    after = host_state()
    for what in before:
        assert after[what] == before[what], what
    assert [m for m in mounts() if str(data) in m] == [] and not data.exists()


def test_host_gw_skips_a_node_on_another_subnet(tmp_path, before):
    data = tmp_path / "dev"
    kc = tmp_path / "kc.yaml"
    kubectl = kubectl_for(kc, tmp_path)
    up = kubelite("dev", "cluster", "up", "--nodes", "2", "--data-dir", str(data), "--kubeconfig", str(kc),
                  "--name", "klhg", "--subnet", SUBNET, "--subnet", OTHER_SUBNET, "--port", str(free_port()))
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        nodes = {n["metadata"]["name"]: n for n in json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"]}
        cidr2 = nodes["klhg-2"]["spec"]["podCIDR"]
        ip2 = next(a["address"] for a in nodes["klhg-2"]["status"]["addresses"] if a["type"] == "InternalIP")
        log = data / "nodes" / "klhg-1" / "logs" / "agent.log"
        want = (f"not routing pod CIDR {cidr2} of node klhg-2: host-gw needs the nodes on one subnet and its "
                f"InternalIP {ip2} is not directly connected")
        wait_until(lambda: want in log.read_text(errors="replace"), 30, 0.3, "host-gw's reason in the agent's log")
        assert node_json(data, "klhg-1", "ip", "-j", "-4", "route", "show", "proto", "76") == []
        wait_until(lambda: (json.loads(kubectl("get", "node", "klhg-1", "-o", "json").stdout)["metadata"]
                            .get("annotations") or {}).get(ANN + "backend-type") == "host-gw", 30, 0.3,
                   "host-gw's annotations")
    finally:
        down = kubelite("dev", "cluster", "down", "--data-dir", str(data))
    assert down.returncode == 0, down.stdout + down.stderr
    after = host_state()
    for what in before:
        assert after[what] == before[what], what
    assert [m for m in mounts() if str(data) in m] == []
