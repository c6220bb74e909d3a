"""The DNS server's transports on 127.0.0.1 (UDP and TCP), its access rule, truncation, FORMERR,
and forwarding of names outside the zone to the upstream (a second server on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import socket

import dns.asyncquery
import dns.flags
import dns.message
import dns.opcode
import dns.rcode

from kubelite.dns.records import ClusterZone
from kubelite.dns.server import Access, DNSServer, formerr, upstreams_from


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _zone(domain: str, n: int = 1) -> ClusterZone:
    z = ClusterZone(domain)
    svc = {"metadata": {"namespace": "default", "name": "big"},
           "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}}
    sl = {"metadata": {"namespace": "default", "name": "big-1", "labels": {"kubernetes.io/service-name": "big"}},
          "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
          "endpoints": [{"addresses": [f"10.244.{i // 250}.{i % 250 + 1}"]} for i in range(n)]}
    z.rebuild([svc], [sl], [{"metadata": {"name": "default"}}])
    return z


def test_udp_tcp_truncation_forwarding_and_access():
    async def main():
        # the "upstream": another instance, authoritative for upstream.test
        up_port = _free_port()
        upstream = DNSServer(_zone("upstream.test"), "127.0.0.1", Access([]), [], port=up_port, metrics_port=0)
        await upstream.start()
        port = _free_port()
        server = DNSServer(_zone("cluster.local", n=60), "127.0.0.1", Access(["10.244.0.0/16"]),
                           [f"127.0.0.1:{up_port}"], port=port, metrics_port=_free_port())
        await server.start()
        try:
            q = dns.message.make_query("big.default.svc.cluster.local", "A")
            r = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=2)
            assert r.flags & dns.flags.TC and not r.answer  # 60 addresses do not fit in 512 bytes
            r = await dns.asyncquery.tcp(q, "127.0.0.1", port=port, timeout=2)
            assert len(r.answer[0]) == 60 and not r.flags & dns.flags.TC
            q = dns.message.make_query("big.default.svc.cluster.local", "A", use_edns=0, payload=4096)
            r = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=2)
            assert len(r.answer[0]) == 60
            r = await dns.asyncquery.udp(dns.message.make_query("nope.default.svc.cluster.local", "A"), "127.0.0.1",
                                         port=port, timeout=2)
            assert r.rcode() == dns.rcode.NXDOMAIN
            # outside the zone: forwarded, the upstream's answer comes back
            r = await dns.asyncquery.udp(dns.message.make_query("big.default.svc.upstream.test", "A"), "127.0.0.1",
                                         port=port, timeout=2)
            assert r.rcode() == dns.rcode.NOERROR and len(r.answer[0]) == 1
            assert server.forwards[(f"127.0.0.1:{up_port}", "NOERROR")] == 1
            r = await dns.asyncquery.tcp(dns.message.make_query("big.default.svc.upstream.test", "A"), "127.0.0.1",
                                         port=port, timeout=2)
            assert len(r.answer[0]) == 1
            assert server.requests[("udp", "1", "A")] >= 4 and server.responses["NXDOMAIN"] == 1
            # not from the pod network, loopback or this host: dropped
            assert await server.resolve(q.to_wire(), "198.51.100.7", "udp") is None and server.dropped == 1
            assert await server.resolve(b"\x12\x34\x01\x00garbage", "127.0.0.1", "udp") == formerr(
                b"\x12\x34\x01\x00garbage")
            update = dns.message.make_query("big.default.svc.cluster.local", "A")
            update.set_opcode(dns.opcode.UPDATE)
            reply = await server.resolve(update.to_wire(), "127.0.0.1", "udp")
            assert dns.message.from_wire(reply).rcode() == dns.rcode.NOTIMP
            assert server.access.allowed("10.244.7.7") and server.access.allowed("::ffff:127.0.0.1")
            # the prometheus plugin's counters on the metrics port
            import aiohttp

            async with aiohttp.ClientSession() as http, http.get(
                    f"http://127.0.0.1:{server.metrics_port}/metrics") as resp:
                text = await resp.text()
            assert 'coredns_dns_responses_total{plugin="",rcode="NXDOMAIN"' in text
            assert f'coredns_forward_requests_total{{rcode="NOERROR",to="127.0.0.1:{up_port}"}} 2' in text
        finally:
            await server.close()
            await upstream.close()

    asyncio.run(main())


def test_no_upstream_is_servfail_and_upstreams_skip_ourselves(tmp_path):
    async def main():
        server = DNSServer(_zone("cluster.local"), "127.0.0.1", Access([]), [], port=0, metrics_port=0)
        reply = await server.resolve(dns.message.make_query("example.test", "A").to_wire(), "127.0.0.1", "udp")
        assert dns.message.from_wire(reply).rcode() == dns.rcode.SERVFAIL

    asyncio.run(main())
    f = tmp_path / "resolv.conf"
    f.write_text("nameserver 10.43.0.10\nnameserver 127.0.0.53\n")
    assert upstreams_from(str(f), ("10.43.0.10", "10.244.0.1")) == ["127.0.0.53"]
