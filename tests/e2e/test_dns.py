"""Cluster DNS end to end: `kubelite server` with its node; the kube-dns Service at 10.43.0.10
leads (through the service proxy) to the DNS server; a pod's resolv.conf is the kubelet's
ClusterFirst one; from a pod, `wget http://kuard.default.svc.cluster.local/` and `http://kuard/`
reach a pod exposed with `kubectl expose`; a headless Service's name lists every ready pod and its
SRV record the named port; unknown names are NXDOMAIN; a Service without endpoints refuses
connections at once. DNS traffic goes only to the service network of this host."""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import sys
import time

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.e2e.harness import wait_until
from tests.e2e.test_agent_support import BUSYBOX, KUARD, full_cluster, pod_manifest, running, wait_pod

pytestmark = pytest.mark.e2e
NODE = "kl-e2e-dns"
DNS_IP = "10.43.0.10"


def _kube_chains(table: str) -> set[str]:
    out = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True).stdout
    return {ln[1:].split()[0] for ln in out.splitlines() if ln.startswith(":KUBE-")}


def _query(name: str, qtype: str, tcp: bool = False) -> dns.message.Message:
    q = dns.message.make_query(name, qtype)
    return (dns.query.tcp if tcp else dns.query.udp)(q, DNS_IP, timeout=2)


def _try_query(name: str, qtype: str = "A") -> dns.message.Message | None:
    try:
        return _query(name, qtype)
    except (OSError, dns.exception.DNSException):
        return None


def _answers(msg: dns.message.Message) -> list[str]:
    return sorted(r.to_text() for rr in msg.answer for r in rr)


OUTSIDER = ("""
import socket, struct, sys
import dns.message
q = dns.message.make_query("kuard.default.svc.cluster.local", "A").to_wire()
t = socket.create_connection((sys.argv[1], 53), timeout=3)
t.sendall(struct.pack("!H", len(q)) + q)
try:
    tcp = "answered" if t.recv(2) else "closed"
except socket.timeout:
    tcp = "timeout"
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(2)
u.sendto(q, (sys.argv[1], 53))
try:
    u.recv(512)
    udp = "answered"
except socket.timeout:
    udp = "timeout"
print(tcp, udp)
""")


def _outsider_asks(address: str) -> tuple[str, ...]:
    """From a network namespace joined to this host by a veth pair (198.18.77.0/30, routed to the
    pod network through the host): (tcp, udp) outcome of a query to ``address``."""
    ns, host_if, ns_if = "kl-e2e-dnsout", "kl-dnso0", "kl-dnso1"
    run = lambda *a: subprocess.run(a, capture_output=True, text=True, check=True)  # noqa: E731
    try:
        run("ip", "netns", "add", ns)
        run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        run("ip", "link", "set", ns_if, "netns", ns)
        run("ip", "addr", "add", "198.18.77.1/30", "dev", host_if)
        run("ip", "link", "set", host_if, "up")
        run("ip", "netns", "exec", ns, "ip", "addr", "add", "198.18.77.2/30", "dev", ns_if)
        run("ip", "netns", "exec", ns, "ip", "link", "set", ns_if, "up")
        run("ip", "netns", "exec", ns, "ip", "route", "add", f"{address}/32", "via", "198.18.77.1")
        out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", OUTSIDER, address], capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return tuple(out.stdout.split())
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_cluster_dns_from_pods(tmp_path):
    if _kube_chains("nat") or _kube_chains("filter"):
        pytest.skip("another service proxy's KUBE-* chains are on this host")
    with full_cluster(tmp_path / "data", NODE) as (server, _view):
        svc = json.loads(server.kubectl("get", "svc", "kube-dns", "-n", "kube-system", "-o", "json").stdout)
        assert svc["spec"]["clusterIP"] == DNS_IP
        assert [(p["name"], p["port"], p["protocol"]) for p in svc["spec"]["ports"]] == [
            ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")]
        assert svc["metadata"]["labels"]["k8s-app"] == "kube-dns"

        def dns_endpoints():
            items = json.loads(server.kubectl("get", "endpointslices", "-n", "kube-system", "-l",
                                              "kubernetes.io/service-name=kube-dns", "-o", "json").stdout)["items"]
            return [(s["metadata"]["name"], a, e.get("nodeName")) for s in items for e in s["endpoints"]
                    for a in e["addresses"]]
        # where the DNS server listens: the node's pod-network gateway (the first address of its pod CIDR)
        node = json.loads(server.kubectl("get", "node", NODE, "-o", "json").stdout)
        gateway = str(next(ipaddress.ip_network(node["spec"]["podCIDR"]).hosts()))
        wait_until(lambda: dns_endpoints() == [(f"kube-dns-{NODE}", gateway, NODE)], 30, 0.2, "kube-dns's endpoint")

        server.kubectl("run", "kuard", f"--image={KUARD}", "--port=8080")
        client = pod_manifest("client", NODE, [{"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"]}])
        server.kubectl("create", "-f", "-", input=json.dumps(client))
        for i in range(2):  # a headless Service's pods, with hostnames under its subdomain
            m = pod_manifest(f"web-{i}", NODE, [{"name": "web", "image": KUARD,
                                                 "ports": [{"containerPort": 8080, "name": "http"}]}],
                             hostname=f"web-{i}", subdomain="web")
            m["metadata"]["labels"] = {"app": "web"}
            server.kubectl("create", "-f", "-", input=json.dumps(m))
        # the Services come once the pods run: a container started after the kuard Service exists
        # gets its link variable KUARD_PORT=tcp://<ip>:80 (enableServiceLinks), which the kuard
        # stand-in would read as its port
        for name in ("kuard", "client", "web-0", "web-1"):
            wait_pod(server, name, running, 90, f"{name} running")
        server.kubectl("expose", "pod", "kuard", "--port", "80", "--target-port", "8080")
        headless = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                    "spec": {"clusterIP": "None", "selector": {"app": "web"},
                             "ports": [{"name": "http", "port": 8080, "targetPort": "http"}]}}
        server.kubectl("create", "-f", "-", input=json.dumps(headless))
        nobody = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nobody"},
                  "spec": {"selector": {"app": "nobody"}, "ports": [{"port": 80, "targetPort": 8080}]}}
        server.kubectl("create", "-f", "-", input=json.dumps(nobody))
        web_ips = sorted(json.loads(server.kubectl("get", "pod", f"web-{i}", "-o", "json").stdout)["status"]["podIP"]
                         for i in range(2))

        # the pod's resolv.conf: the kubelet's ClusterFirst configuration
        resolv = server.kubectl("exec", "client", "--", "cat", "/etc/resolv.conf").stdout.splitlines()
        assert f"nameserver {DNS_IP}" in resolv and "options ndots:5" in resolv
        search = next(ln for ln in resolv if ln.startswith("search ")).split()[1:]
        assert search[:3] == ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]

        # the service answers from the node (kube-proxy DNATs 10.43.0.10 to the DNS server)
        wait_until(lambda: (r := _try_query("kuard.default.svc.cluster.local")) is not None and r.answer, 30, 0.2,
                   "the cluster DNS answering")
        kuard_ip = json.loads(server.kubectl("get", "svc", "kuard", "-o", "json").stdout)["spec"]["clusterIP"]
        r = _query("kuard.default.svc.cluster.local", "A")
        assert _answers(r) == [kuard_ip] and r.answer[0].ttl == 5
        assert _answers(_query("kuard.default.svc.cluster.local", "A", tcp=True)) == [kuard_ip]
        wait_until(lambda: _answers(_query("web.default.svc.cluster.local", "A")) == web_ips, 30, 0.2,
                   "the headless Service's ready pods")
        srv = _query("_http._tcp.web.default.svc.cluster.local", "SRV")
        assert _answers(srv) == ["0 50 8080 web-0.web.default.svc.cluster.local.",
                                 "0 50 8080 web-1.web.default.svc.cluster.local."]
        assert sorted(r.to_text() for rr in srv.additional for r in rr) == web_ips
        assert _answers(_query("web-1.web.default.svc.cluster.local", "A")) == [
            json.loads(server.kubectl("get", "pod", "web-1", "-o", "json").stdout)["status"]["podIP"]]
        rev = ".".join(reversed(kuard_ip.split("."))) + ".in-addr.arpa"
        assert _answers(_query(rev, "PTR")) == ["kuard.default.svc.cluster.local."]
        nx = _query("nope.default.svc.cluster.local", "A")
        assert nx.rcode() == dns.rcode.NXDOMAIN and nx.authority[0].rdtype == dns.rdatatype.SOA

        # from a pod, by the full name and by the short one (the search path), once kuard is a ready
        # endpoint and the proxy has its rules (until then the Service refuses connections)
        wait_until(lambda: '"default/kuard cluster IP"' in subprocess.run(
            ["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout, 60, 0.1, "kuard's rules")
        # (kuard has no readiness probe: it may not listen yet when it is Running and Ready)
        def fetch(url: str) -> str:
            p = server.kubectl("exec", "client", "--", "wget", "-qO-", url, check=False)
            return p.stdout if p.returncode == 0 else ""
        for url in ("http://kuard.default.svc.cluster.local/", "http://kuard/"):
            page = wait_until(lambda url=url: fetch(url), 30, 0.2, f"{url} from the client pod")
            assert 'id="hostname">kuard<' in page, url
        out = server.kubectl("exec", "client", "--", "nslookup", "web.default.svc.cluster.local").stdout
        assert all(ip in out for ip in web_ips), out
        p = server.kubectl("exec", "client", "--", "nslookup", "nope.default.svc.cluster.local", check=False)
        assert p.returncode != 0 and "NXDOMAIN" in p.stdout + p.stderr

        # no endpoints: refused at once (kube-proxy's REJECT), from the node and from a pod
        nobody_ip = json.loads(server.kubectl("get", "svc", "nobody", "-o", "json").stdout)["spec"]["clusterIP"]
        wait_until(lambda: '"default/nobody has no endpoints"' in subprocess.run(
            ["iptables-save", "-t", "filter"], capture_output=True, text=True).stdout, 10, 0.1, "the REJECT rule")
        t0 = time.monotonic()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((nobody_ip, 80), timeout=5)
        refused_in = time.monotonic() - t0
        assert refused_in < 1.0
        t0 = time.monotonic()
        p = server.kubectl("exec", "client", "--", "wget", "-qO-", "http://nobody/", check=False)
        assert p.returncode != 0 and "refused" in (p.stdout + p.stderr).lower(), p.stderr
        assert time.monotonic() - t0 < 5.0

        # not an open resolver: a host outside the pod network that routes to the DNS server's address
        # reaches it (TCP is accepted) but gets no answer
        assert _outsider_asks(gateway) == ("closed", "timeout")

        # a new Service's name resolves as soon as the DNS server's watch sees it
        late = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "late"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}
        t0 = time.monotonic()
        server.kubectl("create", "-f", "-", input=json.dumps(late))
        wait_until(lambda: (r := _try_query("late.default.svc.cluster.local")) is not None and r.answer, 10, 0.01,
                   "the new Service's name")
        named_in = time.monotonic() - t0
        print(f"\na new Service resolves {named_in * 1000:.0f} ms after kubectl create started (kubectl's own "
              f"time included); a Service without endpoints refused in {refused_in * 1000:.1f} ms")
    # the server stopped: no rule of the proxy is left in either table
    assert not _kube_chains("nat") and not _kube_chains("filter")
