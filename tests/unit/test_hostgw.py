"""host-gw: the routes and nat rules the agent derives from the Nodes (a fake kernel)."""

from __future__ import annotations

import logging

from kubelite.agent import hostgw


def node(name: str, cidr: str = "", ip: str = "") -> dict:
    n: dict = {"metadata": {"name": name}, "spec": {}, "status": {}}
    if cidr:
        n["spec"]["podCIDR"] = cidr
    if ip:
        n["status"]["addresses"] = [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}]
    return n


class FakeKernel(hostgw.HostRoutes):
    def __init__(self, routes: dict[str, str] | None = None, off_link: tuple[str, ...] = ()) -> None:
        self.routes = dict(routes or {})
        self.off_link = off_link
        self.nat: tuple[str, list[str]] | None = None
        self.calls: list[tuple] = []

    def current(self) -> dict[str, str]:
        return dict(self.routes)

    def on_link(self, ip: str) -> bool:
        return ip not in self.off_link

    def replace(self, cidr: str, gateway: str) -> None:
        self.calls.append(("replace", cidr, gateway))
        self.routes[cidr] = gateway

    def delete(self, cidr: str) -> None:
        self.calls.append(("delete", cidr))
        self.routes.pop(cidr, None)

    def write_nat(self, own_cidr: str, other_cidrs) -> None:
        self.nat = (own_cidr, sorted(other_cidrs))


def test_desired_routes_skip_self_and_incomplete_nodes():
    nodes = [node("a", "10.244.0.0/24", "198.19.250.2"), node("b", "10.244.1.0/24", "198.19.250.3"),
             node("c", "10.244.2.0/24"), node("d", ip="198.19.250.5"), node("e", "fd00::/64", "fd00::1"),
             node("f", "bogus", "198.19.250.7")]
    assert hostgw.desired_routes(nodes, "a") == {"10.244.1.0/24": "198.19.250.3"}


def test_reconcile_adds_replaces_and_removes_only_what_the_nodes_say():
    k = FakeKernel({"10.244.1.0/24": "198.19.250.9", "10.244.7.0/24": "198.19.250.8"}, off_link=("203.0.113.9",))
    nodes = [node("a", "10.244.0.0/24", "198.19.250.2"), node("b", "10.244.1.0/24", "198.19.250.3"),
             node("c", "10.244.2.0/24", "198.19.250.4"), node("far", "10.244.3.0/24", "203.0.113.9")]
    got = hostgw.reconcile(k, nodes, "a", "10.244.0.0/24")
    assert got == {"10.244.1.0/24": "198.19.250.3", "10.244.2.0/24": "198.19.250.4"} == k.routes
    assert k.calls == [("delete", "10.244.7.0/24"), ("replace", "10.244.1.0/24", "198.19.250.3"),
                       ("replace", "10.244.2.0/24", "198.19.250.4")]
    assert k.nat == ("10.244.0.0/24", ["10.244.1.0/24", "10.244.2.0/24"])
    k.calls.clear()
    hostgw.reconcile(k, nodes, "a", "10.244.0.0/24")
    assert k.calls == []  # level-triggered and idempotent
    hostgw.reconcile(k, nodes[:2], "a", "10.244.0.0/24")  # c went
    assert k.calls == [("delete", "10.244.2.0/24")] and k.nat == ("10.244.0.0/24", ["10.244.1.0/24"])


def test_off_link_nodes_get_no_route():
    k = FakeKernel(off_link=("203.0.113.9",))
    assert hostgw.reconcile(k, [node("far", "10.244.3.0/24", "203.0.113.9")], "a", "10.244.0.0/24") == {}


def test_nat_rules_accept_pod_to_pod_before_masquerade():
    text = hostgw.nat_rules("10.244.0.0/24", ["10.244.2.0/24", "10.244.1.0/24"])
    assert text.splitlines() == [
        "*nat", ":KUBELITE-POSTROUTING - [0:0]",
        '-A KUBELITE-POSTROUTING -s 10.244.0.0/24 -d 10.244.1.0/24 -m comment --comment '
        '"kubelite pod network: pod to pod without NAT" -j ACCEPT',
        '-A KUBELITE-POSTROUTING -s 10.244.0.0/24 -d 10.244.2.0/24 -m comment --comment '
        '"kubelite pod network: pod to pod without NAT" -j ACCEPT',
        "COMMIT"]


def test_off_link_nodes_are_named_in_the_log_once(caplog):
    k = FakeKernel(off_link=("203.0.113.9",))
    nodes = [node("far", "10.244.3.0/24", "203.0.113.9")]
    warned: set[tuple[str, str]] = set()
    with caplog.at_level(logging.WARNING, logger="kubelite.agent.hostgw"):
        hostgw.reconcile(k, nodes, "a", "10.244.0.0/24", warned)
        hostgw.reconcile(k, nodes, "a", "10.244.0.0/24", warned)
    assert [r.getMessage() for r in caplog.records] == [
        "not routing pod CIDR 10.244.3.0/24 of node far: host-gw needs the nodes on one subnet and its InternalIP "
        "203.0.113.9 is not directly connected (network is unreachable); use --flannel-backend vxlan for nodes on "
        "different subnets"]
    assert warned == {("10.244.3.0/24", "203.0.113.9")}
    hostgw.reconcile(k, [], "a", "10.244.0.0/24", warned)  # gone: a return would be named again
    assert warned == set()
