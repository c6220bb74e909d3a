"""The pod's resolv.conf (the kubelet's DNS configurer): ClusterFirst, the host-network cases,
Default, None, dnsConfig merged, the limits and the kubelet's events."""

from __future__ import annotations

from kubelite.agent import crispec
from kubelite.agent.dns import DNSConfigurer, parse_resolv_conf


def pod(**spec) -> dict:
    return {"metadata": {"name": "p", "namespace": "team", "uid": "u1"}, "spec": {"containers": [], **spec}}


def configurer(tmp_path, text="nameserver 192.0.2.53\nsearch corp.example. lab.example\noptions timeout:2\n"):
    f = tmp_path / "resolv.conf"
    f.write_text(text)
    return DNSConfigurer(["10.43.0.10"], "cluster.local", str(f))


def test_cluster_first(tmp_path):
    servers, searches, options, events = configurer(tmp_path).pod_dns(pod())
    assert servers == ["10.43.0.10"]
    assert searches == ["team.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example", "lab.example"]
    assert options == ["ndots:5"] and events == []


def test_host_network_policies(tmp_path):
    c = configurer(tmp_path)
    # ClusterFirst on the host network is Default; ClusterFirstWithHostNet is the cluster's
    assert c.pod_dns(pod(hostNetwork=True))[:3] == (["192.0.2.53"], ["corp.example", "lab.example"], ["timeout:2"])
    assert c.pod_dns(pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet"))[0] == ["10.43.0.10"]
    assert c.pod_dns(pod(dnsPolicy="Default"))[0] == ["192.0.2.53"]


def test_none_and_dns_config_merge(tmp_path):
    c = configurer(tmp_path)
    cfg = {"nameservers": ["1.2.3.4"], "searches": ["my.example"], "options": [{"name": "ndots", "value": "2"},
                                                                             {"name": "edns0"}]}
    assert c.pod_dns(pod(dnsPolicy="None", dnsConfig=cfg))[:3] == (["1.2.3.4"], ["my.example"], ["ndots:2", "edns0"])
    servers, searches, options, _ = c.pod_dns(pod(dnsConfig={**cfg, "nameservers": ["10.43.0.10", "1.2.3.4"]}))
    assert servers == ["10.43.0.10", "1.2.3.4"] and searches[-1] == "my.example" and options == ["ndots:2", "edns0"]


def test_limits_and_events(tmp_path):
    c = configurer(tmp_path)
    servers, searches, _, events = c.pod_dns(pod(dnsConfig={"nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3"],
                                                            "searches": [f"s{i}.example" for i in range(40)]}))
    assert servers == ["10.43.0.10", "1.1.1.1", "2.2.2.2"] and len(searches) == 32
    assert [e[1] for e in events] == ["DNSConfigForming", "DNSConfigForming"]
    assert events[0][2] == ("Nameserver limits were exceeded, some nameservers have been omitted, the applied "
                            "nameserver line is: 10.43.0.10 1.1.1.1 2.2.2.2")
    # no --cluster-dns: Default, with MissingClusterDNS
    none = DNSConfigurer([], "cluster.local", c.resolv_conf)
    servers, _, _, events = none.pod_dns(pod())
    assert servers == ["192.0.2.53"] and events[0][:2] == ("Warning", "MissingClusterDNS")
    assert events[0][2].startswith('pod: "p_team(u1)". kubelet does not have ClusterDNS IP configured')


def test_resolv_conf_parsing_and_sandbox_and_hosts(tmp_path):
    assert parse_resolv_conf("# c\nnameserver 9.9.9.9 ; x\nsearch a. b\nsearch c.\noptions ndots:1 rotate\n") == (
        ["9.9.9.9"], ["c"], ["ndots:1", "rotate"])
    sb = crispec.sandbox_config(pod(), 0, "/logs", "/kubepods/pod-u1", dns=configurer(tmp_path))
    assert list(sb.dns_config.servers) == ["10.43.0.10"] and list(sb.dns_config.options) == ["ndots:5"]
    hosts = crispec.etc_hosts(pod(hostname="web-0", subdomain="web"), ["10.244.0.5"], "k8s.test")
    assert "10.244.0.5\tweb-0.web.team.svc.k8s.test\tweb-0" in hosts
