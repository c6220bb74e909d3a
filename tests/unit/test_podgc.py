"""The pod garbage collector over real stores (SQLite in a temp dir), in process."""

from __future__ import annotations

from pathlib import Path

from kubelite.apiserver.registry import ListOptions, WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.controllers.podgc import PodGC
from kubelite.kinds.registry import default_registry
from kubelite.store.sqlite import SQLiteStore

W = WriteOptions(field_manager="test")


def pod(name: str, node: str = "", phase: str = "") -> dict:
    p = {"metadata": {"name": name, "namespace": "default"},
         "spec": {"containers": [{"name": "c", "image": "busybox"}], **({"nodeName": node} if node else {})}}
    if phase:
        p["status"] = {"phase": phase}
    return p


async def test_orphans_after_quarantine_and_terminated_beyond_threshold(tmp_path: Path):
    kv = SQLiteStore(str(tmp_path / "db"), compact_interval=0)
    await kv.start()
    try:
        stores = Stores.build(default_registry(), kv)
        pods, nodes = stores.get("", "pods"), stores.get("", "nodes")
        await nodes.create("", {"metadata": {"name": "here"}}, W)
        await pods.create("default", pod("orphan", "gone"), W)
        await pods.create("default", pod("fine", "here"), W)
        for i in range(3):
            created = await pods.create("default", pod(f"done{i}", "here"), W)
            created["status"] = {"phase": "Succeeded"}
            await pods.update("default", created["metadata"]["name"], created, W, "status")
        gc = PodGC(stores, quarantine=0.0, terminated_threshold=1)
        for inf in (gc.pod_informer, gc.node_informer):
            await inf._list()  # one sync of the caches, as the informers' first list does
        await gc.gc()
        names = sorted(p["metadata"]["name"] for p in (await pods.list("default", ListOptions()))[0])
        assert names == ["done2", "fine"]  # the orphan and the two oldest finished pods are gone
    finally:
        await kv.close()
