"""The cluster zone's records (pure): CoreDNS's kubernetes plugin answers for Services,
headless endpoints, SRV, pods, PTR, NXDOMAIN/NODATA with the SOA, TTL 5."""

from __future__ import annotations

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from kubelite.dns.records import ClusterZone, build_response, endpoint_hostname

SERVICES = [
    {"metadata": {"namespace": "default", "name": "kuard"},
     "spec": {"clusterIP": "10.43.0.20", "clusterIPs": ["10.43.0.20"],
              "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                        {"name": "dns", "port": 53, "protocol": "UDP"}]}},
    {"metadata": {"namespace": "default", "name": "web"},
     "spec": {"clusterIP": "None", "clusterIPs": ["None"], "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}},
    {"metadata": {"namespace": "default", "name": "empty"},
     "spec": {"clusterIP": "None", "clusterIPs": ["None"], "ports": [{"name": "http", "port": 80}]}},
    {"metadata": {"namespace": "default", "name": "ext"},
     "spec": {"type": "ExternalName", "externalName": "kuard.default.svc.cluster.local"}},
    {"metadata": {"namespace": "default", "name": "far"}, "spec": {"type": "ExternalName", "externalName": "example.test"}},
]
SLICES = [
    {"metadata": {"namespace": "default", "name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
     "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
     "endpoints": [{"addresses": ["10.244.0.5"], "hostname": "web-0", "conditions": {"ready": True}},
                   {"addresses": ["10.244.0.6"], "conditions": {}},
                   {"addresses": ["10.244.0.7"], "conditions": {"ready": False}}]},
    {"metadata": {"namespace": "default", "name": "kuard-x", "labels": {"kubernetes.io/service-name": "kuard"}},
     "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
     "endpoints": [{"addresses": ["10.244.0.9"], "conditions": {"ready": True}}]},
]
NAMESPACES = [{"metadata": {"name": n}} for n in ("default", "kube-system")]


def zone() -> ClusterZone:
    z = ClusterZone("cluster.local", dns_ips=["10.43.0.10"])
    z.rebuild(SERVICES, SLICES, NAMESPACES)
    return z


def ask(z: ClusterZone, name: str, qtype: str = "A") -> dns.message.Message:
    q = dns.message.make_query(name, qtype)
    return build_response(q, z.answer(dns.name.from_text(name), q.question[0].rdtype))


def records(msg: dns.message.Message, section: str = "answer") -> list[tuple[str, int, str, str]]:
    return sorted((rr.name.to_text(), rr.ttl, dns.rdatatype.to_text(rr.rdtype), r.to_text())
                  for rr in getattr(msg, section) for r in rr)


def test_cluster_ip_service_a_record_ttl_5():
    r = ask(zone(), "kuard.default.svc.cluster.local")
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    assert records(r) == [("kuard.default.svc.cluster.local.", 5, "A", "10.43.0.20")]


def test_names_are_case_insensitive():
    assert records(ask(zone(), "KUARD.Default.SVC.cluster.local")) != []


def test_headless_service_lists_every_ready_endpoint():
    r = ask(zone(), "web.default.svc.cluster.local")
    assert [x[3] for x in records(r)] == ["10.244.0.5", "10.244.0.6"]  # 10.244.0.7 is not ready


def test_headless_without_endpoints_is_nxdomain():
    assert ask(zone(), "empty.default.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN


def test_pod_hostname_and_dashed_address_records():
    z = zone()
    assert [x[3] for x in records(ask(z, "web-0.web.default.svc.cluster.local"))] == ["10.244.0.5"]
    assert [x[3] for x in records(ask(z, "10-244-0-6.web.default.svc.cluster.local"))] == ["10.244.0.6"]
    assert ask(z, "web-1.web.default.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN
    assert endpoint_hostname("fd00::1", "") == "fd00--1" and endpoint_hostname("fd00::", "") == "fd00--0"


def test_srv_for_named_ports_of_headless_and_cluster_ip_services():
    z = zone()
    r = ask(z, "_http._tcp.web.default.svc.cluster.local", "SRV")
    assert records(r) == [
        ("_http._tcp.web.default.svc.cluster.local.", 5, "SRV", "0 50 8080 10-244-0-6.web.default.svc.cluster.local."),
        ("_http._tcp.web.default.svc.cluster.local.", 5, "SRV", "0 50 8080 web-0.web.default.svc.cluster.local.")]
    assert records(r, "additional") == [("10-244-0-6.web.default.svc.cluster.local.", 5, "A", "10.244.0.6"),
                                        ("web-0.web.default.svc.cluster.local.", 5, "A", "10.244.0.5")]
    r = ask(z, "_http._tcp.kuard.default.svc.cluster.local", "SRV")
    assert records(r) == [("_http._tcp.kuard.default.svc.cluster.local.", 5, "SRV",
                           "0 100 80 kuard.default.svc.cluster.local.")]
    assert records(r, "additional") == [("kuard.default.svc.cluster.local.", 5, "A", "10.43.0.20")]
    # every port of the service; the protocol must match
    r = ask(z, "kuard.default.svc.cluster.local", "SRV")
    assert [x[3] for x in records(r)] == ["0 50 53 kuard.default.svc.cluster.local.",
                                          "0 50 80 kuard.default.svc.cluster.local."]
    assert ask(z, "_http._udp.kuard.default.svc.cluster.local", "SRV").rcode() == dns.rcode.NXDOMAIN
    assert ask(z, "_nope._tcp.kuard.default.svc.cluster.local", "SRV").rcode() == dns.rcode.NXDOMAIN


def test_nxdomain_and_nodata_carry_the_soa():
    z = zone()
    r = ask(z, "nope.default.svc.cluster.local")
    assert r.rcode() == dns.rcode.NXDOMAIN and not r.answer
    (soa,) = records(r, "authority")
    assert soa[0] == "cluster.local." and soa[1] == 5 and soa[2] == "SOA"
    assert soa[3].startswith("ns.dns.cluster.local. hostmaster.cluster.local. ") and soa[3].endswith(
        " 7200 1800 86400 5")
    for name in ("kuard.nons.svc.cluster.local", "a.b.c.kuard.default.svc.cluster.local", "kuard.default.foo.cluster.local"):
        assert ask(z, name).rcode() == dns.rcode.NXDOMAIN, name
    # names that exist without records of the type: NOERROR, no answer, the SOA
    for name, qtype in (("kuard.default.svc.cluster.local", "AAAA"), ("default.svc.cluster.local", "A"),
                        ("svc.cluster.local", "A"), ("kuard.default.svc.cluster.local", "MX")):
        r = ask(z, name, qtype)
        assert r.rcode() == dns.rcode.NOERROR and not r.answer and records(r, "authority")[0][2] == "SOA", name
    assert ask(z, "nope.default.svc.cluster.local", "MX").rcode() == dns.rcode.NXDOMAIN


def test_not_synced_is_servfail():
    z = ClusterZone()
    assert ask(z, "kuard.default.svc.cluster.local").rcode() == dns.rcode.SERVFAIL


def test_pods_insecure():
    z = zone()
    assert records(ask(z, "10-244-0-5.default.pod.cluster.local")) == [
        ("10-244-0-5.default.pod.cluster.local.", 5, "A", "10.244.0.5")]
    assert ask(z, "10-244-0-5.nons.pod.cluster.local").rcode() == dns.rcode.NXDOMAIN
    assert ask(z, "not-an-ip.default.pod.cluster.local").rcode() == dns.rcode.NXDOMAIN


def test_ptr_for_cluster_ips_and_endpoints():
    z = zone()
    assert records(ask(z, "20.0.43.10.in-addr.arpa", "PTR")) == [
        ("20.0.43.10.in-addr.arpa.", 5, "PTR", "kuard.default.svc.cluster.local.")]
    assert records(ask(z, "5.0.244.10.in-addr.arpa", "PTR")) == [
        ("5.0.244.10.in-addr.arpa.", 5, "PTR", "web-0.web.default.svc.cluster.local.")]
    assert records(ask(z, "9.0.244.10.in-addr.arpa", "PTR")) == [
        ("9.0.244.10.in-addr.arpa.", 5, "PTR", "10-244-0-9.kuard.default.svc.cluster.local.")]
    # an address we do not know falls through to the upstream resolvers
    assert z.answer(dns.name.from_text("1.2.0.192.in-addr.arpa"), dns.rdatatype.PTR).forward


def test_external_name_is_a_cname():
    z = zone()
    r = ask(z, "ext.default.svc.cluster.local")
    assert records(r) == [("ext.default.svc.cluster.local.", 5, "CNAME", "kuard.default.svc.cluster.local."),
                          ("kuard.default.svc.cluster.local.", 5, "A", "10.43.0.20")]
    a = z.answer(dns.name.from_text("far.default.svc.cluster.local"), dns.rdatatype.A)
    assert a.chase == "example.test." and [rr.rdtype for rr in a.answer] == [dns.rdatatype.CNAME]


def test_apex_soa_ns_and_schema_version():
    z = zone()
    assert records(ask(z, "cluster.local", "SOA"))[0][2] == "SOA"
    r = ask(z, "cluster.local", "NS")
    assert records(r) == [("cluster.local.", 5, "NS", "ns.dns.cluster.local.")]
    assert records(r, "additional") == [("ns.dns.cluster.local.", 5, "A", "10.43.0.10")]
    assert records(ask(z, "ns.dns.cluster.local")) == [("ns.dns.cluster.local.", 5, "A", "10.43.0.10")]
    assert records(ask(z, "dns-version.cluster.local", "TXT")) == [
        ("dns-version.cluster.local.", 28800, "TXT", '"1.1.0"')]
    assert ask(z, "cluster.local", "AXFR").rcode() == dns.rcode.REFUSED


def test_index_follows_changes():
    z = zone()
    z.rebuild(SERVICES[1:], SLICES, NAMESPACES)
    assert ask(z, "kuard.default.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN
