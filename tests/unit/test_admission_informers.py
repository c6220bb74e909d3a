"""LimitRanger and Priority admission read LimitRanges and PriorityClasses from an informer
(no store list per pod create), and fall back to a live lookup for what the informer does
not hold yet, so an object created a moment ago is still honoured."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from kubelite.admission.limitranger import LimitRanger
from kubelite.admission.priority import PriorityAdmission
from kubelite.apiserver.admission import CREATE, Attributes
from kubelite.apiserver.listwatch import store_informer
from kubelite.apiserver.registry import WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.kinds.registry import default_registry
from kubelite.store.sqlite import SQLiteStore

SCHED = "scheduling.k8s.io"


def _pod(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


def _limit_range(name: str, cpu: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": name},
            "spec": {"limits": [{"type": "Container", "default": {"cpu": cpu}}]}}


def _priority_class(name: str, value: int, default: bool = False) -> dict[str, Any]:
    return {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
            "value": value, "globalDefault": default}


async def _until(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


class _CountingLists:
    """Wraps a ResourceStore and counts its list calls."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lists = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def list(self, *args: Any, **kw: Any) -> Any:
        self.lists += 1
        return await self.inner.list(*args, **kw)


class _Stores:
    def __init__(self, stores: Stores, wrapped: dict[tuple[str, str], Any]) -> None:
        self.stores, self.wrapped = stores, wrapped

    def find(self, group: str, plural: str) -> Any:
        return self.wrapped.get((group, plural)) or self.stores.find(group, plural)


def test_admission_reads_informers_and_looks_up_what_they_lack(tmp_path):
    async def main() -> None:
        backend = SQLiteStore(str(tmp_path / "db"))
        await backend.start()
        tasks: list[asyncio.Task[None]] = []
        try:
            stores = Stores.build(default_registry(), backend)
            lrs, pcs = stores.get("", "limitranges"), stores.get(SCHED, "priorityclasses")
            pods_kind = stores.get("", "pods").kind
            counted = {("", "limitranges"): _CountingLists(lrs), (SCHED, "priorityclasses"): _CountingLists(pcs)}
            lr_inf, pc_inf = store_informer(lrs), store_informer(pcs)
            tasks = [asyncio.create_task(lr_inf.run()), asyncio.create_task(pc_inf.run())]
            await lr_inf.wait_synced(5)
            await pc_inf.wait_synced(5)
            view: Any = _Stores(stores, counted)
            limits, priority = LimitRanger(view, lr_inf), PriorityAdmission(view, pc_inf)
            opts = WriteOptions()

            async def admit(pod: dict[str, Any]) -> dict[str, Any]:
                a = Attributes(CREATE, pods_kind, "default", pod["metadata"]["name"], pod, None)
                for plugin in (limits, priority):
                    await plugin.admit(a)
                    await plugin.validate(a)
                return pod

            # no LimitRange: one live lookup, then the remembered answer
            for i in range(3):
                await admit(_pod(f"p{i}"))
            assert counted[("", "limitranges")].lists == 1
            assert counted[(SCHED, "priorityclasses")].lists == 0

            # a LimitRange the informer holds applies without a store list
            await lrs.create("default", _limit_range("cpu", "250m"), opts)
            await _until(lambda: lr_inf.get("default", "cpu") is not None)
            got = await admit(_pod("with-default"))
            assert got["spec"]["containers"][0]["resources"]["limits"] == {"cpu": "250m"}
            assert counted[("", "limitranges")].lists == 1

            # a global default PriorityClass from the informer; a named class the informer
            # does not hold yet is looked up live instead of refused
            await pcs.create("", _priority_class("everyday", 7, default=True), opts)
            await _until(lambda: pc_inf.get("", "everyday") is not None)
            assert (await admit(_pod("defaulted")))["spec"]["priority"] == 7
            await pcs.create("", _priority_class("urgent", 1000), opts)
            await _until(lambda: pc_inf.get("", "urgent") is not None)
            pc_inf.objects.pop(("", "urgent"), None)  # as if its watch event were still on its way
            assert (await admit(_pod("named", priorityClassName="urgent")))["spec"]["priority"] == 1000
            assert counted[(SCHED, "priorityclasses")].lists == 0
        finally:
            for t in tasks:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            await backend.close()

    asyncio.run(main())
