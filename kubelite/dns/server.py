"""The cluster DNS server of the server's node: CoreDNS as k3s configures it (kubernetes plugin for
the cluster domain and the reverse zones with ``pods insecure`` and ``fallthrough in-addr.arpa
ip6.arpa``, ``forward . /etc/resolv.conf``, ``prometheus :9153``), in kubelite's process.

It answers on UDP and TCP port 53 of this node's pod-network gateway (the first address of the
Node's ``spec.podCIDR``, the ``kubelite0`` bridge's address: bound with IP_FREEBIND, so before
the first pod brings the bridge up), which is where the ``kube-dns`` Service's EndpointSlice
points (dns/service.py): kube-proxy DNATs the ClusterIP (10.43.0.10) there. It is no open
resolver: queries from anything but the pod network (``--cluster-cidr``), loopback and this
host's own addresses are dropped unanswered, and those are the only ones forwarded upstream.

Records come from Services, EndpointSlices and Namespaces through the project's informer
(``ClientListWatch``, with the ``system:coredns`` identity, k3s's ClusterRole of that name).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
import struct
import subprocess
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
from aiohttp import web

from kubelite.client.informer import ClientListWatch, Informer
from kubelite.dns.records import ClusterZone, build_response

log = logging.getLogger("kubelite.dns")
Obj = dict[str, Any]
DNS_PORT = 53
METRICS_PORT = 9153
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
FORWARD_TIMEOUT = 2.0  # per upstream; the forward plugin's dial/read timeouts are of this order
MAX_FORWARDS = 256  # forwarded queries in flight (the forward plugin's max_concurrent is 1000)
TCP_IDLE = 10.0  # seconds a TCP client may stay silent (CoreDNS's read timeout)
LOCAL_REFRESH = 10.0
ANSWER_CACHE = 10000  # the zone's encoded answers kept until the index changes (the cache plugin's job)


def upstreams_from(resolv_conf: str, exclude: Iterable[str] = ()) -> list[str]:
    """``forward . /etc/resolv.conf``: the node's nameservers, without our own addresses (a loop)."""
    from kubelite.agent.dns import read_resolv_conf

    skip = set(exclude)
    return [s for s in read_resolv_conf(resolv_conf)[0] if s not in skip]


def _local_addresses() -> set[str]:
    out = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True).stdout
    addrs = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) > 3 and parts[2] in ("inet", "inet6"):
            addrs.add(parts[3].split("/")[0])
    return addrs


def formerr(wire: bytes, rcode: int = dns.rcode.FORMERR) -> bytes | None:
    """A FORMERR (or another rcode) for a query we cannot parse, when it has a header at all."""
    if len(wire) < 12:
        return None
    qid, flags = struct.unpack("!HH", wire[:4])
    if flags & 0x8000:  # a response: never answer it
        return None
    return struct.pack("!HHHHHH", qid, 0x8000 | (flags & 0x7800) | (flags & 0x0100) | rcode, 0, 0, 0, 0)


def _host_port(upstream: str) -> tuple[str, int]:
    """An upstream as the forward plugin writes them: ``ip``, ``ip:port``, ``[ip6]:port``."""
    if upstream.startswith("["):
        host, _, port = upstream[1:].partition("]:")
        return host, int(port or DNS_PORT)
    if upstream.count(":") == 1:
        host, _, port = upstream.partition(":")
        return host, int(port)
    return upstream, DNS_PORT


def _freebind_socket(kind: int, address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:  # (on UDP it would let a second server share the port unnoticed)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        sock.bind((address, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Access:
    """Who may ask: the pod network, loopback and this host's addresses."""

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks] + [
            ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
        self._local: set[str] = set()
        self._local_at = float("-inf")

    def allowed(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if any(addr in n for n in self.networks if n.version == addr.version):
            return True
        if str(addr) not in self._local and time.monotonic() - self._local_at > LOCAL_REFRESH:
            self._local = _local_addresses()
            self._local_at = time.monotonic()
        return str(addr) in self._local


class DNSServer:
    """The listeners, the zone and the forwarder."""

    def __init__(self, zone: ClusterZone, address: str, access: Access, upstreams: list[str], *,
                 port: int = DNS_PORT, metrics_port: int = METRICS_PORT) -> None:
        self.zone = zone
        self.address = address
        self.port = port
        self.metrics_port = metrics_port
        self.access = access
        self.upstreams = upstreams
        self.requests: Counter[tuple[str, str, str]] = Counter()  # (proto, family, type)
        self.responses: Counter[str] = Counter()  # rcode
        self.forwards: Counter[tuple[str, str]] = Counter()  # (upstream, rcode)
        self.dropped = 0
        self._forward_slots = asyncio.Semaphore(MAX_FORWARDS)
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._metrics: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # (question as asked, rd/cd bits, EDNS, transport) -> the encoded answer without its ID
        self._answers: dict[tuple[Any, ...], bytes] = {}
        self._answers_generation = -1

    # ------------------------------------------------------------------ answering
    async def resolve(self, wire: bytes, client: str, proto: str) -> bytes | None:
        """The reply to one query from ``client`` (None: no reply)."""
        if not self.access.allowed(client):
            self.dropped += 1
            return None
        if len(wire) >= 4 and (wire[2] >> 3) & 0xF != dns.opcode.QUERY and not wire[2] & 0x80:
            self.responses["NOTIMP"] += 1  # NOTIFY, UPDATE, …: not a server for those
            return formerr(wire, dns.rcode.NOTIMP)
        try:
            query = dns.message.from_wire(wire)
        except (dns.exception.DNSException, ValueError):
            self.responses["FORMERR"] += 1
            return formerr(wire)
        if query.flags & dns.flags.QR:  # a response: never answered
            return None
        if len(query.question) != 1:
            self.responses["FORMERR"] += 1
            return formerr(wire)
        q = query.question[0]
        family = "2" if ":" in client else "1"
        self.requests[(proto, family, dns.rdatatype.to_text(q.rdtype))] += 1
        resp: dns.message.Message | None
        key: tuple[Any, ...] | None = None
        if self.zone.handles(q.name):
            if self._answers_generation != self.zone.generation:
                self._answers.clear()
                self._answers_generation = self.zone.generation
            key = (q.name.to_wire(), q.rdtype, q.rdclass, query.flags & 0x0110, query.edns, query.payload, proto)
            cached = self._answers.get(key)
            if cached is not None:
                self.responses[dns.rcode.to_text(dns.rcode.from_flags(cached[3], 0))] += 1
                return wire[:2] + cached[2:]
            ans = self.zone.answer(q.name, q.rdtype)
            if ans.forward:
                resp = await self.forward(query, proto)
            else:
                resp = build_response(query, ans)
                if ans.chase:
                    await self._chase(resp, ans.chase, q.rdtype, proto)
                    key = None  # (upstream data: not ours to keep)
            if ans.forward:
                key = None
        else:
            resp = await self.forward(query, proto)
        if resp is None:
            resp = dns.message.make_response(query)
            resp.set_rcode(dns.rcode.SERVFAIL)
        self.responses[dns.rcode.to_text(resp.rcode())] += 1
        if proto == "udp":
            limit = max(512, min(query.payload, 4096)) if query.edns >= 0 else 512
            out = resp.to_wire(max_size=limit, prefer_truncation=True)
        else:
            out = resp.to_wire()
        if key is not None and resp.rcode() != dns.rcode.SERVFAIL:
            if len(self._answers) >= ANSWER_CACHE:
                self._answers.clear()
            self._answers[key] = out
        return out

    async def forward(self, query: dns.message.Message, proto: str) -> dns.message.Message | None:
        """The forward plugin: each upstream in turn (from a random one) until one answers."""
        if not self.upstreams:
            return None
        start = random.randrange(len(self.upstreams))
        order = self.upstreams[start:] + self.upstreams[:start]
        async with self._forward_slots:
            for upstream in order:
                host, port = _host_port(upstream)
                try:
                    if proto == "tcp":
                        resp = await dns.asyncquery.tcp(query, host, port=port, timeout=FORWARD_TIMEOUT)
                    else:
                        resp, _ = await dns.asyncquery.udp_with_fallback(query, host, port=port,
                                                                         timeout=FORWARD_TIMEOUT)
                except (dns.exception.DNSException, OSError) as exc:
                    self.forwards[(upstream, "error")] += 1
                    log.debug("forwarding %s to %s: %s", query.question[0].name, upstream, exc)
                    continue
                self.forwards[(upstream, dns.rcode.to_text(resp.rcode()))] += 1
                return resp
        return None

    async def _chase(self, resp: dns.message.Message, target: str, rdtype: dns.rdatatype.RdataType, proto: str) -> None:
        """An ExternalName's CNAME to a name outside the zone: its addresses from upstream."""
        sub = dns.message.make_query(target, rdtype)
        got = await self.forward(sub, proto)
        if got is not None:
            resp.answer.extend(got.answer)

    # ------------------------------------------------------------------ listeners
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        server = self

        class _UDP(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                server._udp = transport  # type: ignore[assignment]

            def datagram_received(self, data: bytes, addr: Any) -> None:
                server._spawn(server._udp_reply(data, addr))

        udp_sock = _freebind_socket(socket.SOCK_DGRAM, self.address, self.port)
        await loop.create_datagram_endpoint(_UDP, sock=udp_sock)
        tcp_sock = _freebind_socket(socket.SOCK_STREAM, self.address, self.port)
        self._tcp = await asyncio.start_server(self._tcp_client, sock=tcp_sock)
        if self.metrics_port:
            app = web.Application(middlewares=[self._metrics_access])
            app.router.add_get("/metrics", self._metrics_page)
            self._metrics = web.AppRunner(app, access_log=None)
            await self._metrics.setup()
            await web.SockSite(self._metrics, _freebind_socket(socket.SOCK_STREAM, self.address,
                                                               self.metrics_port)).start()
        log.info("cluster DNS for %s on %s:%d (udp, tcp), upstreams %s", self.zone.zone, self.address, self.port,
                 ", ".join(self.upstreams) or "none")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _udp_reply(self, data: bytes, addr: Any) -> None:
        try:
            reply = await self.resolve(data, addr[0], "udp")
        except Exception:
            log.exception("answering a query from %s", addr[0])
            reply = formerr(data)
        if reply is not None and self._udp is not None and not self._udp.is_closing():
            self._udp.sendto(reply, addr)

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("", 0)
        try:
            if not self.access.allowed(peer[0]):
                self.dropped += 1
                return
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE)
                data = await asyncio.wait_for(reader.readexactly(struct.unpack("!H", head)[0]), TCP_IDLE)
                reply = await self.resolve(data, peer[0], "tcp")
                if reply is None:
                    return
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @web.middleware
    async def _metrics_access(self, request: web.Request, handler: Any) -> web.StreamResponse:
        peer = request.remote or ""
        if not self.access.allowed(peer):
            raise web.HTTPForbidden()
        return await handler(request)  # type: ignore[no-any-return]

    async def _metrics_page(self, _request: web.Request) -> web.Response:
        """The prometheus plugin's names for what this server counts."""
        server = f"dns://:{self.port}"
        lines = ["# HELP coredns_dns_requests_total Counter of DNS requests made per zone, protocol and family.",
                 "# TYPE coredns_dns_requests_total counter"]
        for (proto, family, qtype), n in sorted(self.requests.items()):
            lines.append(f'coredns_dns_requests_total{{family="{family}",proto="{proto}",server="{server}",'
                         f'type="{qtype}",view="",zone="."}} {n}')
        lines += ["# HELP coredns_dns_responses_total Counter of response status codes.",
                  "# TYPE coredns_dns_responses_total counter"]
        for rcode, n in sorted(self.responses.items()):
            lines.append(f'coredns_dns_responses_total{{plugin="",rcode="{rcode}",server="{server}",view="",'
                         f'zone="."}} {n}')
        lines += ["# HELP coredns_forward_requests_total Counter of requests made per upstream.",
                  "# TYPE coredns_forward_requests_total counter"]
        for (to, rcode), n in sorted(self.forwards.items()):
            host, port = _host_port(to)
            lines.append(f'coredns_forward_requests_total{{rcode="{rcode}",to="{host}:{port}"}} {n}')
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
        if self._metrics is not None:
            await self._metrics.cleanup()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class ClusterDNS:
    """The informers that feed the zone, and the server."""

    def __init__(self, client: Any, server: DNSServer) -> None:
        self.server = server
        self.zone = server.zone
        self.services = Informer(ClientListWatch(client, "v1", "services"), name="dns-services")
        self.slices = Informer(ClientListWatch(client, "discovery.k8s.io/v1", "endpointslices"),
                               name="dns-endpointslices")
        self.namespaces = Informer(ClientListWatch(client, "v1", "namespaces"), name="dns-namespaces")
        self._dirty = asyncio.Event()
        for inf in (self.services, self.slices, self.namespaces):
            inf.add_handler(self._changed)

    def _changed(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        self._dirty.set()

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                for inf in (self.services, self.slices, self.namespaces):
                    tg.create_task(inf.run())
                await self.server.start()  # (SERVFAIL for the zone until the informers synced)
                for inf in (self.services, self.slices, self.namespaces):
                    await inf.wait_synced()
                self._dirty.set()
                while True:
                    await self._dirty.wait()
                    self._dirty.clear()
                    self.zone.rebuild(self.services.list(), self.slices.list(), self.namespaces.list())
        finally:
            await asyncio.shield(self.server.close())


def pod_network_gateway(pod_cidr: str) -> str:
    """The node's address on its pod network (agent/cni.py gives the bridge the CIDR's first host)."""
    return str(next(ipaddress.ip_network(pod_cidr, strict=False).hosts()))


async def wait_pod_cidr(client: Any, node: str) -> str:
    """The Node's spec.podCIDR, once node IPAM has given it one."""
    from kubelite.api import errors

    while True:
        try:
            obj = await client.get("v1", "nodes", node)
            cidr = str((obj.get("spec") or {}).get("podCIDR") or "")
            if cidr:
                return cidr
        except errors.StatusError as exc:
            if exc.code != 404:
                log.warning("reading Node %s: %s", node, exc.message)
        await asyncio.sleep(1.0)


async def run_dns(kubeconfig: Path, node: str, *, cluster_cidr: str, domain: str, dns_ip: str,
                  resolv_conf: str = "/etc/resolv.conf", port: int = DNS_PORT, metrics_port: int = METRICS_PORT) -> None:
    """CoreDNS beside the server's node: on that node's pod-network gateway, with the kubeconfig's identity."""
    from kubelite.client.api import Client

    client = Client.from_kubeconfig(kubeconfig, user_agent="kubelite-coredns")
    try:
        address = pod_network_gateway(await wait_pod_cidr(client, node))
        zone = ClusterZone(domain, dns_ips=[dns_ip])
        server = DNSServer(zone, address, Access([cluster_cidr]), upstreams_from(resolv_conf, (address, dns_ip)),
                           port=port, metrics_port=metrics_port)
        await ClusterDNS(client, server).run()
    finally:
        await client.close()


__all__ = ["Access", "ClusterDNS", "DNSServer", "formerr", "pod_network_gateway", "run_dns", "upstreams_from"]
