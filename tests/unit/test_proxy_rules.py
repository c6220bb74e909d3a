"""The service proxy's nat rules (pure): upstream's chain names, even spreading, NodePorts,
masquerade marks, stale chains deleted."""

from __future__ import annotations

from kubelite.proxy.iptables import build_rules, probability, sep_chain, svc_chain

SVC = {"metadata": {"name": "web", "namespace": "default"},
       "spec": {"type": "NodePort", "clusterIP": "10.43.0.10",
                "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}}
SLICE = {"metadata": {"name": "web-x", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
         "addressType": "IPv4", "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
         "endpoints": [{"addresses": [f"10.244.0.{i}"], "conditions": {"ready": i != 4}} for i in range(2, 6)]}


def test_rules_spread_evenly_over_ready_endpoints():
    text, wanted = build_rules([SVC], {"default/web": [SLICE]}, {"KUBE-SVC-OLDOLDOLDOLDOLD"})
    svc = svc_chain("default/web", "tcp")
    assert svc.startswith("KUBE-SVC-") and len(svc) == len("KUBE-SVC-") + 16
    lines = text.splitlines()
    assert f'-A KUBE-SERVICES -m comment --comment "default/web cluster IP" -m tcp -p tcp -d 10.43.0.10/32 ' \
           f"--dport 80 -j {svc}" in lines
    jumps = [ln for ln in lines if ln.startswith(f"-A {svc} ")]
    assert [("--probability 0.3333333333" in j, "--probability 0.5000000000" in j) for j in jumps] == [
        (True, False), (False, True), (False, False)]
    assert "10.244.0.4" not in text  # not ready: no traffic
    sep = sep_chain("default/web", "tcp", "10.244.0.2:8080")
    assert f'-A {sep} -m comment --comment "default/web" -m tcp -p tcp -j DNAT --to-destination 10.244.0.2:8080' in lines
    assert f'-A {sep} -m comment --comment "default/web" -s 10.244.0.2/32 -j KUBE-MARK-MASQ' in lines
    assert any("--dport 30080 -j KUBE-EXT-" in ln for ln in lines)
    assert lines[-3].endswith("-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS")
    assert "-X KUBE-SVC-OLDOLDOLDOLDOLD" in lines and ":KUBE-SVC-OLDOLDOLDOLDOLD - [0:0]" in lines
    assert probability(3) == "0.3333333333"


def test_no_endpoints_no_rules():
    text, wanted = build_rules([SVC], {}, set())
    assert "KUBE-SVC-" not in text and wanted == {"KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING",
                                                  "KUBE-MARK-MASQ"}


def test_no_endpoints_rejects_in_the_filter_table():
    from kubelite.proxy.iptables import build_filter_rules

    udp = {"metadata": {"name": "dns", "namespace": "kube-system"},
           "spec": {"clusterIP": "10.43.0.53", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}}
    lines = build_filter_rules([SVC, udp], {}).splitlines()
    assert lines[:3] == ["*filter", ":KUBE-SERVICES - [0:0]", ":KUBE-EXTERNAL-SERVICES - [0:0]"]
    assert '-A KUBE-SERVICES -m comment --comment "default/web has no endpoints" -m tcp -p tcp -d 10.43.0.10/32 ' \
           "--dport 80 -j REJECT" in lines
    assert '-A KUBE-SERVICES -m comment --comment "kube-system/dns:dns has no endpoints" -m udp -p udp ' \
           "-d 10.43.0.53/32 --dport 53 -j REJECT" in lines
    assert '-A KUBE-EXTERNAL-SERVICES -m comment --comment "default/web has no endpoints" -m addrtype --dst-type ' \
           "LOCAL -m tcp -p tcp --dport 30080 -j REJECT" in lines
    # with a ready endpoint: no REJECT (and the nat rules take the traffic)
    assert "REJECT" not in build_filter_rules([SVC], {"default/web": [SLICE]})
