"""Slow and half-open clients cannot exhaust the API server: 5,000 connections that send
nothing (before or after TLS), partial headers or a partial body do not stop a legitimate
client, and the server closes them within its timeouts (shortened here to keep the test
quick; the defaults are kube-apiserver's 32 s header and 90 s idle timeouts)."""

from __future__ import annotations

import asyncio
import resource
import ssl
import time

import pytest

from tests.e2e.harness import ServerProcess, admin_ssl_context

HEADER_TIMEOUT = 5.0
N_EACH = 1250  # x4 kinds = 5,000 connections


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    base = tmp_path_factory.mktemp("conns")
    s = ServerProcess(base / "data", extra=["--disable-agent", "--disable-scheduler", "--request-header-timeout", str(HEADER_TIMEOUT),
                                            "--body-timeout", str(HEADER_TIMEOUT), "--idle-timeout", "8"]).start()
    yield s
    s.stop()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def insecure() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def open_bad(port: int, kind: str, ctx: ssl.SSLContext):
    """One misbehaving connection; None when the server already closed it (evicted)."""
    try:
        if kind == "tcp":
            return await asyncio.open_connection("127.0.0.1", port)
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        if kind == "headers":
            w.write(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        elif kind == "body":
            w.write(b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"metadata\":")
        return r, w
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
        return None


async def is_closed(conn, timeout: float) -> bool:
    if conn is None:
        return True
    r, _ = conn
    try:
        while await asyncio.wait_for(r.read(65536), timeout):
            pass
        return True
    except (OSError, ssl.SSLError):
        return True
    except TimeoutError:
        return False


async def legit(port: int, ctx: ssl.SSLContext) -> tuple[float, bytes]:
    t = time.monotonic()
    r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=ctx), 5)
    try:
        w.write(b"GET /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out = await asyncio.wait_for(r.read(), 5)
    finally:
        w.close()
    return time.monotonic() - t, out


async def test_five_thousand_half_open_connections(srv):
    port = srv.port
    admin = admin_ssl_context(srv.kubeconfig)
    bad_ctx = insecure()
    latencies: list[float] = []
    stop = asyncio.Event()

    async def probe() -> None:
        while not stop.is_set():
            took, out = await legit(port, admin)
            assert out.startswith(b"HTTP/1.1 200"), out[:200]
            latencies.append(took)
            await asyncio.sleep(0.2)

    prober = asyncio.create_task(probe())
    conns = []
    sem = asyncio.Semaphore(64)

    async def one(kind: str):
        async with sem:
            return await open_bad(port, kind, bad_ctx)

    t0 = time.monotonic()
    for kind in ("tcp", "tls", "headers", "body"):
        conns += await asyncio.gather(*(one(kind) for _ in range(N_EACH)))
    opened = time.monotonic() - t0
    assert len(conns) == 4 * N_EACH
    # every connection is gone within the header/body timeout (plus the sweep), counted from
    # when the flood was complete
    results = await asyncio.gather(*(is_closed(c, HEADER_TIMEOUT + 4) for c in conns))
    stop.set()
    await prober
    for c in conns:
        if c is not None:
            c[1].close()
    assert all(results), f"{results.count(False)} connections still open"
    # (the flood's TLS handshakes and this client share the machine's two cores)
    assert latencies and max(latencies) < 2.0, f"legitimate requests took up to {max(latencies):.2f}s"
    print(f"\nflood of {len(conns)} opened in {opened:.1f}s; {len(latencies)} legitimate requests, "
          f"max {max(latencies) * 1000:.0f} ms")
    took, out = await legit(port, admin)
    assert out.startswith(b"HTTP/1.1 200") and took < 2.0
