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
* connections that have not yet carried an authenticated request are bounded: past
  ``max_pending``, one is closed to make room, so a flood of half-open connections cannot
  lock legitimate clients out nor exhaust file descriptors. The TLS handshake starts only
  once the ClientHello is there (a silent connection costs a descriptor, no TLS buffers),
  and the victim is, in this order: the oldest connection silent for over
  :data:`SILENT_GRACE`; the oldest open one (TLS done, no request under way); the oldest
  silent one; the oldest in its handshake; the oldest in a request. A legitimate
  client is in its handshake or a request almost all of its untrusted life, so it goes only
  after every stalled connection; a verified client certificate makes the connection
  trusted as soon as the handshake ends;
* the soft RLIMIT_NOFILE is raised to the hard limit, as Go's runtime does at start-up.

Watches and other long-running requests are in a request for their whole life and are
never cut by these timeouts. :func:`serve_https` is the one call a launcher makes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
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


class ListenError(Exception):
    """The listening socket could not be created (Go's ``failed to listen on ...``)."""


@dataclass
class ListenerLimits:
    handshake_timeout: float = 32.0  # Go: the TLS handshake shares ReadHeaderTimeout
    header_timeout: float = 32.0  # ReadHeaderTimeout
    idle_timeout: float = 90.0  # IdleTimeout
    body_timeout: float = 60.0  # the apiserver's request timeout, for reading a body
    max_pending: int = 1024  # connections without an authenticated request yet
    sweep_interval: float = 1.0


# the classes of an untrusted connection (Guard.pools): accepted and silent, in the TLS
# handshake, TLS done with no request under way, in a request
SILENT, HANDSHAKE, OPEN, BUSY = range(4)
# how long a connection may stay silent before it is the first to go (a client sends its
# ClientHello at once; the server reads it on its next turn of the event loop)
SILENT_GRACE = 1.0
ACCEPT_BATCH = 64  # connections accepted per readiness of the listening socket


class _Conn(asyncio.Protocol):
    """One accepted connection: silent until its first byte, then its TLS handshake (a task),
    then aiohttp's protocol behind a thin forwarding layer that keeps the connection's
    clock."""

    def __init__(self, guard: Guard, sock: socket.socket) -> None:
        self.guard = guard
        self.transport: asyncio.BaseTransport | None = None  # once TLS is up
        self.handler: Any = None
        self.accepted = self.idle_since = guard.loop.time()
        self.tls_done = False
        self.in_request = False
        self.trusted = False
        self.rank: int | None = None  # eviction class while untrusted (Guard.pools)
        self.pending_since: float | None = None  # first byte of a request head not yet parsed
        self.closed = False
        self._sock: socket.socket | None = sock  # until the handshake takes it over
        self._task: asyncio.Task[Any] | None = None
        guard.loop.add_reader(sock.fileno(), self._first_byte)

    def _first_byte(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        self.guard.loop.remove_reader(sock.fileno())
        self.guard.place(self, HANDSHAKE)
        self._task = self.guard.loop.create_task(self._handshake(sock))

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
        if transport.get_extra_info("peercert"):  # a client certificate the CA verified
            self.trusted = True
            g.place(self, None)
        else:
            g.place(self, OPEN)
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
        elif self._sock is not None:  # silent: never handed to TLS
            sock, self._sock = self._sock, None
            with contextlib.suppress(Exception):
                self.guard.loop.remove_reader(sock.fileno())
            with contextlib.suppress(OSError):
                sock.close()
        elif self._task is not None and not self._task.done():
            self._task.cancel()  # still in the TLS handshake

    # ------------------------------------------------------------------ requests
    def request_started(self) -> None:
        self.in_request = True
        self.pending_since = None
        if not self.trusted:
            self.guard.place(self, BUSY)

    def request_finished(self, authenticated: bool) -> None:
        self.in_request = False
        self.idle_since = self.guard.loop.time()
        if authenticated:
            self.trusted = True
        self.guard.place(self, None if self.trusted else OPEN)


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
        # the untrusted connections by eviction class, each oldest first
        self.pools: list[collections.OrderedDict[_Conn, None]] = [collections.OrderedDict() for _ in range(BUSY + 1)]
        self.by_handler: dict[Any, _Conn] = {}
        self.sock: socket.socket | None = None
        self.backlog = 1024
        self._sweeper: asyncio.Task[None] | None = None
        self.evicted = 0
        self.timed_out = 0

    def pending(self) -> int:
        """How many connections are untrusted (bounded by ``max_pending``)."""
        return sum(len(p) for p in self.pools)

    def place(self, c: _Conn, rank: int | None) -> None:
        """Move ``c`` to eviction class ``rank`` (None: trusted, never evicted)."""
        if c.rank is not None:
            self.pools[c.rank].pop(c, None)
        c.rank = rank if not c.closed else None
        if c.rank is not None:
            self.pools[c.rank][c] = None

    def add(self, c: _Conn) -> None:
        self.conns.add(c)
        if c.rank is None and not c.closed:
            self.place(c, SILENT)
        while self.pending() > self.limits.max_pending:
            victim = self._victim()
            self.place(victim, None)
            self.evicted += 1
            victim.abort()
            victim._done(None)

    def _victim(self) -> _Conn:
        silent, handshake, open_, busy = self.pools
        first = next(iter(silent), None)
        if first is not None and self.loop.time() - first.accepted > SILENT_GRACE:
            return first
        if open_:
            return next(iter(open_))
        if first is not None:  # a client that has sent its ClientHello outranks one that has not
            return first
        return next(iter(handshake), None) or next(iter(busy))

    def remove(self, c: _Conn) -> None:
        self.conns.discard(c)
        self.place(c, None)

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
        try:
            self.sock = socket.create_server((host, port), family=family, backlog=backlog)
        except OSError as exc:
            addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            why = (os.strerror(exc.errno) if exc.errno else str(exc)).lower()
            raise ListenError(f"failed to listen on {addr}: listen tcp {addr}: bind: {why}") from None
        self.sock.setblocking(False)
        self.backlog = backlog
        self.loop.add_reader(self.sock.fileno(), self._accept)
        self._sweeper = self.loop.create_task(self._sweep(), name="listener-sweeper")

    def _accept(self) -> None:
        assert self.sock is not None
        # a batch at a time: between batches the loop reads what the accepted clients sent
        # (a ClientHello takes a connection out of the silent class, first to be evicted)
        for _ in range(min(self.backlog, ACCEPT_BATCH)):
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
                c._done(None)


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


__all__ = ["BODY_DEADLINE", "Guard", "ListenError", "ListenerLimits", "bound_port", "prepare", "raise_nofile_limit", "serve_https"]
