"""The guarded HTTPS listener against a small aiohttp app on 127.0.0.1 (no kubelite server):
handshake, header, idle and body deadlines, the bound on untrusted connections, and the
max-inflight limit."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from aiohttp import web

from kubelite.apiserver import http
from kubelite.apiserver.app import status_errors
from kubelite.apiserver.auth import USER, UserInfo
from kubelite.apiserver.inflight import inflight_middleware
from kubelite.net import listener
from kubelite.tls import pki as pki_mod

LIMITS = listener.ListenerLimits(handshake_timeout=0.6, header_timeout=0.6, idle_timeout=1.0, body_timeout=0.6,
                                 max_pending=40, sweep_interval=0.1)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> pki_mod.PKI:
    return pki_mod.ensure_pki(Path(tmp_path_factory.mktemp("pki")))


@web.middleware
async def fake_auth(request: web.Request, handler):
    if request.headers.get("Authorization") == "Bearer good":
        request[USER] = UserInfo("alice", ("system:authenticated",))
    return await handler(request)


async def echo(request: web.Request) -> web.Response:
    body = await http.read_body(request)
    return web.Response(text=f"ok {len(body)}")


async def start(pki: pki_mod.PKI, limits: listener.ListenerLimits = LIMITS, extra: tuple = ()):
    guard = listener.prepare(limits, trusted=lambda r: r.get(USER) is not None)
    app = web.Application(middlewares=[status_errors, guard.middleware(), fake_auth, *extra])
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=limits.idle_timeout)
    await runner.setup()
    await listener.serve_https(runner, guard, "127.0.0.1", 0, pki_mod.server_ssl_context(pki))
    return guard, runner, listener.bound_port(guard)


def client_ctx() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def legit_get(port: int, body: bytes = b"") -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx())
    try:
        w.write(b"POST /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer good\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        return await r.read()
    finally:
        w.close()


async def closed(reader: asyncio.StreamReader, timeout: float) -> bool:
    try:
        data = await asyncio.wait_for(reader.read(65536), timeout)
        while data:
            data = await asyncio.wait_for(reader.read(65536), timeout)
        return True
    except (ConnectionError, ssl.SSLError):
        return True
    except TimeoutError:
        return False


async def test_half_open_connections_are_closed_and_legit_clients_served(pki):
    guard, runner, port = await start(pki, listener.ListenerLimits(
        handshake_timeout=0.6, header_timeout=0.6, idle_timeout=1.0, body_timeout=0.6, max_pending=1000,
        sweep_interval=0.1))
    try:
        conns = []
        for _ in range(10):  # nothing at all (not even a TLS hello)
            conns.append(await asyncio.open_connection("127.0.0.1", port))
        for _ in range(10):  # TLS, then nothing
            conns.append(await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx()))
        for _ in range(10):  # partial headers
            r, w = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx())
            w.write(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
            conns.append((r, w))
        for _ in range(10):  # a partial body
            r, w = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx())
            w.write(b"POST /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer good\r\nContent-Length: 100\r\n\r\nabc")
            conns.append((r, w))
        t0 = asyncio.get_running_loop().time()
        assert (await legit_get(port, b"hello")).endswith(b"ok 5")
        assert asyncio.get_running_loop().time() - t0 < 1.0
        results = await asyncio.gather(*(closed(r, 3.0) for r, _ in conns))
        assert all(results)
    finally:
        for _, w in conns:
            w.close()
        await guard.close()
        await runner.cleanup()


async def test_the_partial_body_gets_the_request_timeout(pki):
    guard, runner, port = await start(pki)
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx())
        w.write(b"POST /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer good\r\nContent-Length: 100\r\n\r\nabc")
        data = await asyncio.wait_for(r.read(), 3)
        assert data.startswith(b"HTTP/1.1 504")
        assert b"Timeout: request did not complete within the allotted timeout" in data
        w.close()
    finally:
        await guard.close()
        await runner.cleanup()


async def test_untrusted_connections_are_bounded_oldest_first(pki):
    guard, runner, port = await start(pki, listener.ListenerLimits(
        handshake_timeout=10, header_timeout=10, idle_timeout=10, body_timeout=10, max_pending=40))
    try:
        idle = [await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx()) for _ in range(60)]
        await asyncio.sleep(0)  # let the server account for the last accepts
        assert guard.pending() <= 40
        assert guard.evicted >= 20
        assert await closed(idle[0][0], 1.0)  # the oldest went first
        assert (await legit_get(port)).endswith(b"ok 0")
        for _, w in idle:
            w.close()
    finally:
        await guard.close()
        await runner.cleanup()


async def test_silent_connections_go_first_once_past_their_grace(pki, monkeypatch):
    monkeypatch.setattr(listener, "SILENT_GRACE", 0.2)
    guard, runner, port = await start(pki, listener.ListenerLimits(
        handshake_timeout=10, header_timeout=10, idle_timeout=10, body_timeout=10, max_pending=40))
    try:
        silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(30)]
        while not all(c.accepted < asyncio.get_running_loop().time() - 0.3 for c in guard.conns):
            await asyncio.sleep(0.05)
        tls = [await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx()) for _ in range(30)]
        assert guard.pending() <= 40 and guard.evicted >= 20
        assert await closed(silent[0][0], 1.0)  # the oldest silent one went
        assert not await closed(tls[0][0], 0.3)  # TLS ones stay while stale silent ones remain
        # and a legitimate client gets through
        assert (await legit_get(port)).endswith(b"ok 0")
        for _, w in tls + silent:
            w.close()
    finally:
        await guard.close()
        await runner.cleanup()


async def test_a_verified_client_certificate_trusts_the_connection_at_once(pki):
    guard, runner, port = await start(pki, listener.ListenerLimits(
        handshake_timeout=10, header_timeout=10, idle_timeout=10, body_timeout=10, max_pending=5))
    try:
        ctx = pki_mod.client_ssl_context(pki, pki.admin_cert, pki.admin_key)
        ctx.check_hostname = False
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        anonymous = [await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx()) for _ in range(20)]
        assert guard.pending() <= 5
        w.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")  # never evicted, though it sent nothing before
        assert (await asyncio.wait_for(r.readuntil(b"ok 0"), 2)).startswith(b"HTTP/1.1 200")
        w.close()
        for _, aw in anonymous:
            aw.close()
    finally:
        await guard.close()
        await runner.cleanup()


async def test_trusted_keepalive_connections_are_not_evicted(pki):
    guard, runner, port = await start(pki, listener.ListenerLimits(
        handshake_timeout=5, header_timeout=5, idle_timeout=5, body_timeout=5, max_pending=5, sweep_interval=0.1))
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx())
        w.write(b"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer good\r\n\r\n")
        assert (await r.readuntil(b"ok 0")).startswith(b"HTTP/1.1 200")
        others = [await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx()) for _ in range(20)]
        w.write(b"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer good\r\n\r\n")
        assert (await asyncio.wait_for(r.readuntil(b"ok 0"), 2)).startswith(b"HTTP/1.1 200")
        w.close()
        for _, ow in others:
            ow.close()
    finally:
        await guard.close()
        await runner.cleanup()


async def test_max_inflight_answers_429_but_lets_masters_through(pki):
    gate = asyncio.Event()

    @web.middleware
    async def slow(request, handler):
        if request.headers.get("X-Slow"):
            await gate.wait()
        return await handler(request)

    @web.middleware
    async def masters(request, handler):
        if request.headers.get("X-Masters"):
            request[USER] = UserInfo("root", ("system:masters",))
        return await handler(request)

    guard, runner, port = await start(pki, extra=(masters, inflight_middleware(1, 1), slow))
    try:
        async def call(*headers: bytes) -> bytes:
            r, w = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx())
            w.write(b"GET /api/v1/pods HTTP/1.1\r\nHost: a\r\nConnection: close\r\n" + b"".join(headers) + b"\r\n")
            out = await r.read()
            w.close()
            return out

        blocked = asyncio.ensure_future(call(b"X-Slow: 1\r\n"))
        while not guard.conns or not any(c.in_request for c in guard.conns):
            await asyncio.sleep(0.01)
        refused = await call()
        assert refused.startswith(b"HTTP/1.1 429") and b"Retry-After: 1" in refused
        assert refused.endswith(b"Too many requests, please try again later.\n")
        assert (await call(b"X-Masters: 1\r\n")).startswith(b"HTTP/1.1 200")
        watch = await asyncio.wait_for(_watch(port), 2)
        assert watch.startswith(b"HTTP/1.1 200")  # watches are long-running: not counted
        gate.set()
        assert (await blocked).startswith(b"HTTP/1.1 200")
    finally:
        gate.set()
        await guard.close()
        await runner.cleanup()


async def _watch(port: int) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx())
    w.write(b"GET /api/v1/pods?watch=true HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    out = await r.read()
    w.close()
    return out


def test_under_uvloop(pki):
    """kubelite server runs on uvloop, whose transports and start_tls are its own."""
    import uvloop

    async def scenario() -> None:
        guard, runner, port = await start(pki)
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx())
            w.write(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
            assert (await legit_get(port, b"hi")).endswith(b"ok 2")
            assert await closed(r, 3.0)
            w.close()
        finally:
            await guard.close()
            await runner.cleanup()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())


async def test_a_port_in_use_is_go_s_listen_error(pki):
    guard, runner, port = await start(pki)
    try:
        other = listener.prepare(LIMITS)
        with pytest.raises(listener.ListenError) as exc:
            await other.start("127.0.0.1", port, 16)
        assert str(exc.value) == (f"failed to listen on 127.0.0.1:{port}: listen tcp 127.0.0.1:{port}: bind: "
                                  "address already in use")
    finally:
        await guard.close()
        await runner.cleanup()
