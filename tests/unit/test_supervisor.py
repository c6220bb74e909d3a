"""The launcher's supervisor: a component that crashes or returns is logged with its
traceback, reported unhealthy while it waits, and started again with a growing back-off."""

from __future__ import annotations

import asyncio
import logging

from kubelite.launcher.supervisor import Supervisor


async def _until(pred, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_crashing_component_is_logged_and_restarted(caplog):
    caplog.set_level(logging.INFO, "kubelite.supervisor")
    sup = Supervisor(initial_backoff=0.05, max_backoff=0.2)
    calls = []
    release = asyncio.Event()

    async def flaky() -> None:
        calls.append(asyncio.get_running_loop().time())
        if len(calls) <= 2:
            raise RuntimeError(f"boom {len(calls)}")
        await release.wait()

    c = sup.add("flaky", flaky)
    await _until(lambda: len(calls) == 3)
    assert c.restarts == 2 and c.healthy and c.last_error == "RuntimeError: boom 2"
    assert calls[2] - calls[1] >= calls[1] - calls[0]  # the back-off grows
    crashed = [r for r in caplog.records if "component flaky crashed" in r.getMessage()]
    assert len(crashed) == 2 and all(r.exc_info and "boom" in str(r.exc_info[1]) for r in crashed)
    assert sup.health() == [("component/flaky", True)]
    await sup.stop()
    assert sup.components == {}


async def test_component_that_returns_is_restarted_and_unhealthy_meanwhile():
    sup = Supervisor(initial_backoff=0.3, max_backoff=0.3)
    runs = []

    async def quitter() -> None:
        runs.append(1)

    sup.add("quitter", quitter)
    await _until(lambda: runs == [1] and sup.health() == [("component/quitter", False)])
    await _until(lambda: len(runs) == 2)
    await sup.stop()


async def test_stop_cancels_the_components():
    sup = Supervisor()
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    sup.add("forever", forever)
    await asyncio.sleep(0)
    await sup.stop()
    assert cancelled.is_set()
