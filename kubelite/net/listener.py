"""The HTTPS listener with connection hygiene: what Go's net/http server and kube-apiserver's
serving options give the apiserver, for an aiohttp application.

k8s.io/apiserver/pkg/server/secure_serving.go runs ``http.Server{ReadHeaderTimeout: 32s,
IdleTimeout: 90s, MaxHeaderBytes: 1 MiB}``; Go bounds the TLS handshake by the same 32 s.
aiohttp has keep-alive timeouts but no handshake or header deadline, so this module owns
the accept loop:

* every TCP connection is accepted here and its TLS handshake runs as a task
  (``loop.connect_accepted_socket`` with a handshake timeout; cancelling it ends a
  connection still in the handshake), then aiohttp's protocol serves it behind a thin
  forwarding protocol;
* a sweeper closes connections that finished no request head within the header timeout
  (nothing sent after TLS, partial headers), and idle keep-alive connections after the idle
  timeout; bodies must arrive within the body timeout (:data:`BODY_DEADLINE`, read by
  :func:`kubelite.apiserver.http.read_body`);
* connections that have not yet carried an authenticated request (in TLS handshake, idle,
  anonymous) are bounded: past ``max_pending``, the oldest of them is closed to make room,
  so a flood of half-open connections cannot lock legitimate clients out nor exhaust file
  descriptors;
* the soft RLIMIT_NOFILE is raised to the hard limit, as Go's runtime does at start-up.

Watches and other long-running requests are in a request for their whole life and are
never cut by these timeouts. :func:`serve_https` is the one call a launcher makes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import resource
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

# when the body of the current request must have arrived (loop time)
BODY_DEADLINE: web.RequestKey[float] = web.RequestKey("body_deadline", float)


@dataclass
class ListenerLimits:
    handshake_timeout: float = 32.0  # Go: the TLS handshake shares ReadHeaderTimeout
    header_timeout: float = 32.0  # ReadHeaderTimeout
    idle_timeout: float = 90.0  # IdleTimeout
    body_timeout: float = 60.0  # the apiserver's request timeout, for reading a body
    max_pending: int = 1024  # connections without an authenticated request yet
    sweep_interval: float = 1.0


class _Conn(asyncio.Protocol):
    """One accepted connection: its TLS handshake (a task), then aiohttp's protocol behind a
    thin forwarding layer that keeps the connection's clock."""

    def __init__(self, guard: Guard, sock: socket.socket) -> None:
        self.guard = guard
        self.transport: asyncio.BaseTransport | None = None  # once TLS is up
        self.handler: Any = None
        self.accepted = self.idle_since = guard.loop.time()
        self.tls_done = False
        self.in_request = False
        self.trusted = False
        self.pending_since: float | None = None  # first byte of a request head not yet parsed
        self.closed = False
        self._task: asyncio.Task[Any] = guard.loop.create_task(self._handshake(sock))

    async def _handshake(self, sock: socket.socket) -> None:
        g = self.guard
        try:
            if g.ssl_context is not None:
                await g.loop.connect_accepted_socket(lambda: self, sock, ssl=g.ssl_context,
                                                     ssl_handshake_timeout=g.limits.handshake_timeout)
            else:
                await g.loop.connect_accepted_socket(lambda: self, sock)
        except (TimeoutError, OSError, ssl.SSLError, ConnectionError, RuntimeError, asyncio.CancelledError):
            # the handshake failed, timed out or was cancelled (eviction): the loop closed the socket
            with contextlib.suppress(OSError):
                sock.close()
            self._done(None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        g = self.guard
        self.transport = transport
        if self.closed:  # evicted while the handshake finished
            transport.abort()  # type: ignore[attr-defined]
            return
        self.tls_done = True
        self.idle_since = g.loop.time()
        self.handler = g.factory()
        g.by_handler[self.handler] = self
        self.handler.connection_made(transport)

    # ------------------------------------------------------------------ TLS side (app protocol)
    def data_received(self, data: bytes) -> None:
        if not self.in_request and self.pending_since is None:
            self.pending_since = self.guard.loop.time()
        if self.handler is not None:
            self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        if self.handler is not None:
            return self.handler.eof_received()  # type: ignore[no-any-return]
        return None

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._done(exc)

    def _done(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        self.guard.remove(self)
        if self.handler is not None:
            self.guard.by_handler.pop(self.handler, None)
            with contextlib.suppress(Exception):
                self.handler.connection_lost(exc)

    def abort(self) -> None:
        if self.transport is not None:
            with contextlib.suppress(Exception):
                self.transport.abort()  # type: ignore[attr-defined]
        elif not self._task.done():
            self._task.cancel()  # still in the TLS handshake

    # ------------------------------------------------------------------ requests
    def request_started(self) -> None:
        self.in_request = True
        self.pending_since = None

    def request_finished(self, authenticated: bool) -> None:
        self.in_request = False
        self.idle_since = self.guard.loop.time()
        if authenticated and not self.trusted:
            self.trusted = True
            self.guard.pool.pop(self, None)


class Guard:
    """The connections of one listener, their deadlines and the bound on untrusted ones."""

    def __init__(self, factory: Callable[[], Any], ssl_context: ssl.SSLContext | None,
                 limits: ListenerLimits, trusted: Callable[[web.Request], bool] | None = None) -> None:
        self.factory = factory
        self.trusted = trusted or (lambda request: False)
        self.ssl_context = ssl_context
        self.limits = limits
        self.loop: asyncio.AbstractEventLoop | Any = None  # the running loop, from start()
        self.conns: set[_Conn] = set()
        self.pool: collections.OrderedDict[_Conn, None] = collections.OrderedDict()
        self.by_handler: dict[Any, _Conn] = {}
        self.sock: socket.socket | None = None
        self.backlog = 1024
        self._sweeper: asyncio.Task[None] | None = None
        self.evicted = 0
        self.timed_out = 0

    def add(self, c: _Conn) -> None:
        self.conns.add(c)
        self.pool[c] = None
        while len(self.pool) > self.limits.max_pending:
            victim = next((x for x in self.pool if not x.in_request), None) or next(iter(self.pool))
            self.pool.pop(victim, None)
            self.evicted += 1
            victim.abort()
            victim._done(None)

    def remove(self, c: _Conn) -> None:
        self.conns.discard(c)
        self.pool.pop(c, None)

    async def _sweep(self) -> None:
        lim = self.limits
        while True:
            await asyncio.sleep(lim.sweep_interval)
            now = self.loop.time()
            for c in list(self.conns):
                if c.in_request:
                    continue
                if not c.tls_done:
                    late = now - c.accepted > lim.handshake_timeout
                elif c.pending_since is not None:
                    late = now - c.pending_since > lim.header_timeout
                else:
                    late = now - c.idle_since > lim.idle_timeout
                if late:
                    self.timed_out += 1
                    c.abort()
                    c._done(None)

    def middleware(self) -> Any:
        """Outermost middleware: marks the connection busy for the request and trusted once a
        request on it authenticated; sets the body deadline."""
        lim = self.limits

        @web.middleware
        async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                        ) -> web.StreamResponse:
            conn = self.by_handler.get(request.protocol)
            if conn is not None:
                conn.request_started()
            request[BODY_DEADLINE] = self.loop.time() + lim.body_timeout
            try:
                return await handler(request)
            finally:
                if conn is not None:
                    conn.request_finished(self.trusted(request))

        return guard

    async def start(self, host: str, port: int, backlog: int) -> None:
        self.loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.create_server((host, port), family=family, backlog=backlog)
        self.sock.setblocking(False)
        self.backlog = backlog
        self.loop.add_reader(self.sock.fileno(), self._accept)
        self._sweeper = self.loop.create_task(self._sweep(), name="listener-sweeper")

    def _accept(self) -> None:
        assert self.sock is not None
        for _ in range(self.backlog):
            try:
                conn, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: try again on the next readiness
                log.warning("accept failed: %s", exc.strerror)
                return
            conn.setblocking(False)
            self.add(_Conn(self, conn))

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self.sock is not None:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
        for c in list(self.conns):
            if not c.tls_done:
                c.abort()


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one (Go does this for every program since 1.19)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return hard
    return soft


def prepare(limits: ListenerLimits, trusted: Callable[[web.Request], bool] | None = None) -> Guard:
    """The guard for a listener; its :meth:`Guard.middleware` goes first in the app's chain.
    ``trusted(request)`` says whether a served request makes its connection trusted (the API
    server: it authenticated as someone other than system:anonymous; the agent: it came from
    the API server)."""
    raise_nofile_limit()
    return Guard(lambda: None, None, limits, trusted)


async def serve_https(runner: web.AppRunner, guard: Guard, host: str, port: int,
                      ssl_context: ssl.SSLContext, backlog: int = 1024) -> Guard:
    """Listen on ``host:port`` with TLS and the guard's limits, serving ``runner``'s app
    (after ``runner.setup()``); returns the guard, whose ``close()`` stops listening."""
    server = runner.server
    assert server is not None, "runner.setup() first"
    guard.factory = server
    guard.ssl_context = ssl_context
    await guard.start(host, port, backlog)
    return guard


def bound_port(guard: Guard) -> int:
    """The port the listener got (for port 0)."""
    assert guard.sock is not None
    return int(guard.sock.getsockname()[1])


__all__ = ["BODY_DEADLINE", "Guard", "ListenerLimits", "bound_port", "prepare", "raise_nofile_limit", "serve_https"]
