"""In-process components share one informer per resource (client-go's shared informer
factory): one list, one watch, one cache; the watch stops when the last component stops,
and a handler added after the informer filled gets the objects it already holds."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from kubelite.apiserver.listwatch import store_informer
from kubelite.apiserver.registry import WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.controllers.base import informer
from kubelite.kinds.registry import default_registry
from kubelite.store.sqlite import SQLiteStore


def _cm(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": name}}


async def _until(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def test_components_share_one_informer_and_its_watch(tmp_path):
    async def main() -> None:
        backend = SQLiteStore(str(tmp_path / "db"))
        await backend.start()
        try:
            cms = Stores.build(default_registry(), backend).get("", "configmaps")
            await cms.create("default", _cm("before"), WriteOptions())
            a, b = informer(cms), store_informer(cms)
            assert a is b
            assert informer(cms, "other") is not a and informer(cms, resync=5.0) is not a

            lists = 0
            real_list = a.source.list

            async def counting_list() -> Any:
                nonlocal lists
                lists += 1
                return await real_list()

            a.source.list = counting_list  # type: ignore[method-assign]
            first, second = asyncio.create_task(a.run()), asyncio.create_task(b.run())
            await a.wait_synced(5)
            seen: list[tuple[str, str]] = []
            a.add_handler(lambda t, old, new: seen.append((t, (new or old or {})["metadata"]["name"])))
            await _until(lambda: seen == [("ADDED", "before")])  # replayed for a late handler
            await cms.create("default", _cm("after"), WriteOptions())
            await _until(lambda: ("ADDED", "after") in seen)
            assert lists == 1 and seen.count(("ADDED", "after")) == 1

            await _stop(first)  # one component stops: the shared watch goes on for the other
            await cms.create("default", _cm("later"), WriteOptions())
            await _until(lambda: ("ADDED", "later") in seen)
            loop = a._loop
            assert loop is not None and not loop.done()
            await _stop(second)  # the last one stops: so does the watch
            assert loop.done()
        finally:
            await backend.close()

    asyncio.run(main())


def test_a_run_starting_as_the_last_one_stops_gets_a_live_loop_and_replays_wait(tmp_path):
    async def main() -> None:
        backend = SQLiteStore(str(tmp_path / "db"))
        await backend.start()
        try:
            cms = Stores.build(default_registry(), backend).get("", "configmaps")
            await cms.create("default", _cm("one"), WriteOptions())
            inf = informer(cms)
            first = asyncio.create_task(inf.run())
            await inf.wait_synced(5)
            # the last runner stops while, in the same turn, another component starts one
            first.cancel()
            second = asyncio.create_task(inf.run())
            with contextlib.suppress(asyncio.CancelledError):
                await first
            await asyncio.sleep(0)
            await cms.create("default", _cm("two"), WriteOptions())
            await _until(lambda: inf.get("default", "two") is not None)
            assert not second.done()

            # a handler added in a constructor, before the state it uses exists, is
            # replayed only once the constructor has finished
            class Component:
                def __init__(self) -> None:
                    inf.add_handler(self.on_event)
                    self.seen: list[str] = []

                def on_event(self, t: str, old: Any, new: Any) -> None:
                    self.seen.append(new["metadata"]["name"])

            comp = Component()
            await _until(lambda: len(comp.seen) == 2)
            assert sorted(comp.seen) == ["one", "two"]
            await _stop(second)
        finally:
            await backend.close()

    asyncio.run(main())
