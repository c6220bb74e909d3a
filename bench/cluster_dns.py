"""Benchmark of the cluster DNS server (kubelite/dns) on 127.0.0.1, client and server in one
process (so the figures are a floor): UDP query latency and throughput for a ClusterIP name, a headless name and NXDOMAIN, over a zone of N Services, and
the time to rebuild the index.

.venv/bin/python bench/cluster_dns.py [--services 1000] [--queries 5000] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dns.message  # noqa: E402
import uvloop  # noqa: E402

from kubelite.dns.records import ClusterZone  # noqa: E402
from kubelite.dns.server import Access, DNSServer  # noqa: E402


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * p))] * 1000


def objects(n: int) -> tuple[list[dict], list[dict], list[dict]]:
    svcs, slices = [], []
    for i in range(n):
        headless = i % 2 == 1
        svcs.append({"metadata": {"namespace": "default", "name": f"s{i}"},
                     "spec": {"clusterIP": "None" if headless else f"10.43.{i // 250}.{i % 250 + 2}",
                              "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
        slices.append({"metadata": {"namespace": "default", "name": f"s{i}-x",
                                    "labels": {"kubernetes.io/service-name": f"s{i}"}},
                       "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                       "endpoints": [{"addresses": [f"10.244.{(3 * i + k) // 250}.{(3 * i + k) % 250 + 2}"],
                                      "conditions": {"ready": True}} for k in range(3)]})
    return svcs, slices, [{"metadata": {"name": "default"}}]


async def run(args: argparse.Namespace) -> None:
    zone = ClusterZone()
    svcs, slices, nss = objects(args.services)
    t0 = time.perf_counter()
    zone.rebuild(svcs, slices, nss)
    rebuild = time.perf_counter() - t0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = DNSServer(zone, "127.0.0.1", Access([]), [], port=port, metrics_port=0)
    await server.start()
    print(f"{args.services} Services, {3 * args.services} endpoints: index rebuilt in {rebuild * 1000:.1f} ms")
    try:
        loop = asyncio.get_running_loop()
        waiting: dict[int, asyncio.Future[bytes]] = {}

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: object) -> None:
                f = waiting.pop(int.from_bytes(data[:2], "big"), None)
                if f is not None and not f.done():
                    f.set_result(data)

        transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", port))
        try:
            for label, name in (("ClusterIP A", "s0.default.svc.cluster.local"),
                                ("headless A (3 endpoints)", "s1.default.svc.cluster.local"),
                                ("NXDOMAIN", "nope.default.svc.cluster.local")):
                wire = dns.message.make_query(name, "A").to_wire()
                lat: list[float] = []
                sem = asyncio.Semaphore(args.concurrency)

                async def one(i: int, wire: bytes = wire, sem: asyncio.Semaphore = sem, lat: list[float] = lat) -> None:
                    async with sem:
                        qid = i & 0xFFFF
                        f = waiting[qid] = loop.create_future()
                        t = time.perf_counter()
                        transport.sendto(qid.to_bytes(2, "big") + wire[2:])
                        await asyncio.wait_for(f, 5)
                        lat.append(time.perf_counter() - t)

                t0 = time.perf_counter()
                await asyncio.gather(*(one(i) for i in range(args.queries)))
                wall = time.perf_counter() - t0
                print(f"{label:26s} {args.queries / wall:8.0f} queries/s  p50 {pct(lat, .5):.2f} ms  "
                      f"p99 {pct(lat, .99):.2f} ms  (concurrency {args.concurrency}, one client socket)")
        finally:
            transport.close()
    finally:
        await server.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=50)
    uvloop.install()
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
