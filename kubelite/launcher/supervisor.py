"""Runs the components of a kubelite process and keeps them running.

Every component is a coroutine factory the supervisor owns: it runs it as a task, and when the
coroutine ends — by raising or by returning (components run until cancelled) — logs it with its
traceback and starts it again after a back-off that doubles from 1 s to 30 s per consecutive
quick failure (a component that ran for a minute starts over at 1 s). While a component waits to
be restarted it is unhealthy, and /readyz?verbose names it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger("kubelite.supervisor")

INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 30.0
STABLE_AFTER = 60.0  # seconds of running that reset the back-off


# the supervised component the running code works for ("" outside one): a shared informer
# serves several, and logs and tests can tell them apart
COMPONENT: contextvars.ContextVar[str] = contextvars.ContextVar("kubelite_component", default="")


@dataclass
class Component:
    name: str
    run: Callable[[], Awaitable[None]]
    restarts: int = 0
    healthy: bool = True
    last_error: str = ""
    task: asyncio.Task[None] | None = None


class Supervisor:
    def __init__(self, initial_backoff: float = INITIAL_BACKOFF, max_backoff: float = MAX_BACKOFF) -> None:
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.components: dict[str, Component] = {}
        self._stopping = False

    def add(self, name: str, run: Callable[[], Awaitable[None]]) -> Component:
        """Start supervising ``run()`` as ``name`` (at once when called on a running loop)."""
        if name in self.components:
            raise ValueError(f"component {name} is already supervised")
        c = Component(name, run)
        self.components[name] = c
        c.task = asyncio.create_task(self._keep(c), name=f"component/{name}")
        return c

    def health(self) -> list[tuple[str, bool]]:
        return [(f"component/{c.name}", c.healthy) for c in self.components.values()]

    async def _keep(self, c: Component) -> None:
        COMPONENT.set(c.name)  # the tasks the component starts inherit it
        backoff = self.initial_backoff
        while True:
            started = time.monotonic()
            try:
                await c.run()
                c.last_error = "returned"
                log.error("component %s returned; restarting it in %.0fs", c.name, backoff)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                c.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("component %s crashed; restarting it in %.0fs", c.name, backoff)
            if time.monotonic() - started >= STABLE_AFTER:
                backoff = self.initial_backoff
            c.healthy = False
            c.restarts += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)
            c.healthy = True
            log.info("component %s restarting (restart %d)", c.name, c.restarts)

    async def stop(self, names: list[str] | None = None) -> None:
        """Cancel the components (all, newest first, or the named ones) and wait for them."""
        chosen = [self.components[n] for n in names] if names else list(reversed(self.components.values()))
        for c in chosen:
            if c.task is not None:
                c.task.cancel()
        for c in chosen:
            if c.task is not None:
                with contextlib.suppress(BaseException):
                    await c.task
            self.components.pop(c.name, None)


__all__ = ["Component", "Supervisor"]
