"""The node IPAM range allocator and controller: unique blocks, release, a full range, and a
restart that rebuilds the map from the Nodes."""

from __future__ import annotations

import asyncio

import pytest

from kubelite.controllers.nodeipam import CIDRFull, NodeIPAMController, RangeAllocator


def test_lowest_free_blocks_are_unique_and_released():
    a = RangeAllocator("10.244.0.0/22", 24)
    got = [a.allocate() for _ in range(4)]
    assert got == ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"]
    with pytest.raises(CIDRFull, match="no remaining CIDRs left to allocate in the cluster CIDR 10.244.0.0/22"):
        a.allocate()
    a.release("10.244.1.0/24")
    assert a.allocate() == "10.244.1.0/24"


def test_occupy_ignores_blocks_outside_the_range():
    a = RangeAllocator("10.244.0.0/16", 24)
    assert a.occupy("10.244.0.0/24")
    assert not a.occupy("10.99.0.0/24") and not a.occupy("10.244.1.0/25") and not a.occupy("bogus")
    assert a.allocate() == "10.244.1.0/24"


def test_bad_ranges_are_refused():
    with pytest.raises(ValueError):
        RangeAllocator("10.244.0.0/16", 8)
    with pytest.raises(ValueError):
        RangeAllocator("10.244.0.1/16", 24)  # host bits set


class _Rec:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    async def record(self, node, type_, reason, message):
        self.events.append((type_, reason, message))


def test_controller_assigns_rebuilds_and_reports_a_full_range(tmp_path):
    from kubelite.apiserver.registry import WriteOptions
    from kubelite.apiserver.stores import Stores
    from kubelite.kinds.registry import default_registry
    from kubelite.store.sqlite import SQLiteStore

    async def main():
        store = SQLiteStore(str(tmp_path / "db"))
        await store.start()
        stores = Stores.build(default_registry(), store)
        nodes = stores.get("", "nodes")
        opts = WriteOptions()

        async def node(name: str, **spec):
            await nodes.create("", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": spec}, opts)

        async def cidr_of(name: str, timeout: float = 10) -> str:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while loop.time() < deadline:
                n = await nodes.get("", name)
                if (n.get("spec") or {}).get("podCIDR"):
                    return n["spec"]["podCIDR"]
                await asyncio.sleep(0.02)
            raise AssertionError(f"{name} got no podCIDR")

        await node("had", podCIDR="10.244.0.0/24")  # from before: kept and marked used
        rec = _Rec()
        c = NodeIPAMController(stores, "10.244.0.0/23", 24, rec)  # type: ignore[arg-type]
        task = asyncio.create_task(c.run())
        await node("a")
        assert await cidr_of("a") == "10.244.1.0/24"
        assert (await nodes.get("", "a"))["spec"]["podCIDRs"] == ["10.244.1.0/24"]
        await node("b")  # the range is full
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not rec.events and loop.time() < deadline:
            await asyncio.sleep(0.02)
        assert rec.events[0] == ("Normal", "CIDRNotAvailable", "Node b status is now: CIDRNotAvailable")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        assert c._on_event not in c.informer.handlers  # a stopped controller leaves the shared informer

        # a restarted controller (in a fresh server: its own informer) rebuilds its map;
        # deleting a node frees its block for b
        c2 = NodeIPAMController(Stores.build(default_registry(), store), "10.244.0.0/23", 24, rec)  # type: ignore[arg-type]
        task2 = asyncio.create_task(c2.run())
        from kubelite.apiserver.registry import DeleteOptions
        await nodes.delete("", "a", DeleteOptions())
        assert await cidr_of("b") == "10.244.1.0/24"
        task2.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task2
        await store.close()

    asyncio.run(main())
