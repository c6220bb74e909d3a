"""The API's HTTPS listener: the application of :mod:`kubelite.apiserver.app` on a TLS socket.

It knows nothing of what runs beside it; :mod:`kubelite.launcher` builds the handler, the
middlewares and the health checks and hands them in."""

from __future__ import annotations

import logging
import ssl

from aiohttp import web

from kubelite.apiserver.app import App, Handler, HealthChecks, build_app
from kubelite.apiserver.auth import ANONYMOUS_USER, USER
from kubelite.apiserver.handlers import APIHandler
from kubelite.net import listener

log = logging.getLogger("kubelite.apiserver")


def _authenticated(request: web.Request) -> bool:
    """A connection is trusted once a request on it authenticated as someone."""
    user = request.get(USER)
    return user is not None and user.name != ANONYMOUS_USER


class APIServer:
    def __init__(self, handler: APIHandler, middlewares: list, ssl_context: ssl.SSLContext, bind_address: str,
                 port: int, health: HealthChecks | None = None,
                 limits: listener.ListenerLimits | None = None, metrics: Handler | None = None) -> None:
        # connection hygiene (kubelite/net/listener.py): its middleware goes first
        self.guard = listener.prepare(limits or listener.ListenerLimits(), trusted=_authenticated)
        self.app, self.state = build_app(handler, [self.guard.middleware(), *middlewares], health, metrics)
        self.ssl_context = ssl_context
        self.bind_address = bind_address
        self.port = port
        self.runner: web.AppRunner | None = None

    @property
    def ready(self) -> bool:
        return self.state.ready

    @ready.setter
    def ready(self, value: bool) -> None:
        self.state.ready = value

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0,
                                    keepalive_timeout=self.guard.limits.idle_timeout)
        await self.runner.setup()
        await listener.serve_https(self.runner, self.guard, self.bind_address, self.port, self.ssl_context)

    async def stop(self) -> None:
        await self.guard.close()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


__all__ = ["APIServer", "App"]
