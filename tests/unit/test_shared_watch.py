"""HTTP watches of one kind share each change's decoded object (upstream's watch cache
serializes an event once for all its watchers); other callers keep getting their own copies,
and selector transitions still work on the shared previous object."""

from __future__ import annotations

import asyncio
from typing import Any

from kubelite.api.selectors import parse_label_selector
from kubelite.apiserver.registry import ListOptions, SharedObj, WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.kinds.registry import default_registry
from kubelite.store.sqlite import SQLiteStore


def _cm(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels},
            "data": {"k": name}}


async def _take(it: Any, n: int) -> list[tuple[str, Any]]:
    out = []
    async with asyncio.timeout(5):
        while len(out) < n:
            out.append(await it.__anext__())
    return out


def test_shared_watches_get_one_object_per_change_and_private_ones_their_own(tmp_path):
    async def main() -> None:
        backend = SQLiteStore(str(tmp_path / "db"))
        await backend.start()
        try:
            cms = Stores.build(default_registry(), backend).get("", "configmaps")
            await cms.create("default", _cm("seed", {}), WriteOptions())  # so that the list's RV is not "0"
            rv = str((await cms.list("default", ListOptions()))[1])
            opts = ListOptions(resource_version=rv)
            sel = ListOptions(resource_version=rv, label_selector=parse_label_selector("app=web"))
            a, b = cms.watch("default", opts, shared=True), cms.watch("default", opts, shared=True)
            own = cms.watch("default", opts)
            selected = cms.watch("default", sel, shared=True)
            created = await cms.create("default", _cm("c1", {"app": "web"}), WriteOptions())
            created["metadata"]["labels"] = {"app": "db"}
            await cms.update("default", "c1", created, WriteOptions())

            (ta, oa), (ua, _) = await _take(a, 2)
            (tb, ob), _ = await _take(b, 2)
            (to, oo), _ = await _take(own, 2)
            assert (ta, tb, to, ua) == ("ADDED", "ADDED", "ADDED", "MODIFIED")
            assert isinstance(oa, SharedObj) and oa is ob  # decoded once for both
            assert not isinstance(oo, SharedObj) and oo == oa and oo is not oa
            # leaving the selector: DELETED, judged on the previous object
            got = await _take(selected, 2)
            assert [t for t, _ in got] == ["ADDED", "DELETED"]
            assert got[1][1]["metadata"]["labels"] == {"app": "db"}
            for it in (a, b, own, selected):
                await it.aclose()
        finally:
            await backend.close()

    asyncio.run(main())
