"""The API's HTTPS listener: the application of :mod:`kubelite.apiserver.app` on a TLS socket.

It knows nothing of what runs beside it; :mod:`kubelite.launcher` builds the handler, the
middlewares and the health checks and hands them in."""

from __future__ import annotations

import logging
import ssl

from aiohttp import web

from kubelite.apiserver.app import App, HealthChecks, build_app
from kubelite.apiserver.handlers import APIHandler

log = logging.getLogger("kubelite.apiserver")


class APIServer:
    def __init__(self, handler: APIHandler, middlewares: list, ssl_context: ssl.SSLContext, bind_address: str,
                 port: int, health: HealthChecks | None = None) -> None:
        self.app, self.state = build_app(handler, middlewares, health)
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
        self.runner = web.AppRunner(self.app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.bind_address, self.port, ssl_context=self.ssl_context,
                           backlog=1024, reuse_address=True)
        await site.start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


__all__ = ["APIServer", "App"]
