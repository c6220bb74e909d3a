"""Stopping the agent's pod workers: a pod mid-teardown finishes, a running pod is left."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from kubelite.agent.worker import PodWorkers


def _workers() -> PodWorkers:
    return PodWorkers(runtime=SimpleNamespace(rt=None), status=None, client=None, host_ip="127.0.0.1")  # type: ignore[arg-type]


def _stub(pool: PodWorkers, uid: str, body: Any, removed: bool = False, deleting: bool = False) -> SimpleNamespace:
    meta: dict[str, Any] = {"uid": uid, "name": uid}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    w = SimpleNamespace(uid=uid, removed=removed, pod={"metadata": meta})
    w.task = asyncio.ensure_future(body())
    pool.workers[uid] = w  # type: ignore[assignment]
    return w


def test_teardown_in_progress_finishes_and_running_pods_are_cancelled():
    async def main() -> list[str]:
        done: list[str] = []
        pool = _workers()

        async def teardown(name: str) -> None:
            await asyncio.sleep(0.2)
            done.append(name)

        async def forever() -> None:
            await asyncio.Event().wait()

        _stub(pool, "forced", lambda: teardown("forced"), removed=True)
        _stub(pool, "graceful", lambda: teardown("graceful"), deleting=True)
        running = _stub(pool, "running", forever)
        await pool.stop()
        assert running.task.cancelled()
        return done

    assert sorted(asyncio.run(main())) == ["forced", "graceful"]


def test_teardown_grace_is_bounded():
    async def main() -> bool:
        pool = _workers()

        async def stuck() -> None:
            await asyncio.Event().wait()

        w = _stub(pool, "stuck", stuck, removed=True)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await pool.stop(teardown_grace=0.2)
        return w.task.cancelled() and loop.time() - t0 < 2

    assert asyncio.run(main())
