"""The garbage collector against real stores (SQLite in a temp dir), in process."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from kubelite.api import errors
from kubelite.apiserver.registry import DeleteOptions, ResourceStore, WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.controllers.garbagecollector import GarbageCollector
from kubelite.kinds.registry import default_registry
from kubelite.store.sqlite import SQLiteStore

W = WriteOptions(field_manager="test")


@pytest.fixture
async def stores(tmp_path: Path):
    kv = SQLiteStore(str(tmp_path / "state.db"), compact_interval=0)
    await kv.start()
    registry = default_registry()
    stores = Stores.build(registry, kv)
    gc = asyncio.create_task(GarbageCollector(stores).run())
    try:
        yield stores
    finally:
        gc.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gc
        await kv.close()


async def eventually(check, timeout: float = 10.0, what: str = "condition"):
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}; last={last!r}")


async def get_or_none(store: ResourceStore, ns: str, name: str):
    try:
        return await store.get(ns, name)
    except errors.StatusError as exc:
        assert exc.code == 404
        return None


def ref(owner: dict, block: bool | None = None) -> dict:
    r = {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
         "uid": owner["metadata"]["uid"]}
    if block is not None:
        r["blockOwnerDeletion"] = block
    return r


async def configmap(stores, name: str, ns: str = "default", owners: list[dict] | None = None,
                    finalizers: list[str] | None = None) -> dict:
    meta: dict = {"name": name, "namespace": ns}
    if owners:
        meta["ownerReferences"] = owners
    if finalizers:
        meta["finalizers"] = finalizers
    obj = await stores.get("", "configmaps").create(ns, {"apiVersion": "v1", "kind": "ConfigMap",
                                                           "metadata": meta}, W)
    obj.update(apiVersion="v1", kind="ConfigMap")
    return obj


async def gone(stores, name: str, ns: str = "default") -> bool:
    return await get_or_none(stores.get("", "configmaps"), ns, name) is None


async def test_background_collects_dependents_and_their_dependents(stores) -> None:
    owner = await configmap(stores, "owner")
    child = await configmap(stores, "child", owners=[ref(owner)])
    await configmap(stores, "grandchild", owners=[ref(child)])
    await stores.get("", "configmaps").delete("default", "owner", DeleteOptions())
    await eventually(lambda: gone(stores, "child"), what="child collected")
    await eventually(lambda: gone(stores, "grandchild"), what="grandchild collected")


async def test_owner_that_never_existed_or_was_replaced(stores) -> None:
    cms = stores.get("", "configmaps")
    await configmap(stores, "ghost-child", owners=[{"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost",
                                                    "uid": "00000000-0000-0000-0000-000000000001"}])
    await configmap(stores, "real")  # same name, another uid
    await configmap(stores, "impostor-child", owners=[{"apiVersion": "v1", "kind": "ConfigMap", "name": "real",
                                                       "uid": "00000000-0000-0000-0000-000000000002"}])
    await eventually(lambda: gone(stores, "ghost-child"), what="ghost's dependent collected")
    await eventually(lambda: gone(stores, "impostor-child"), what="dependent of a replaced owner collected")
    assert await cms.get("default", "real")


async def test_dangling_reference_is_dropped_when_another_owner_remains(stores) -> None:
    a = await configmap(stores, "a")
    b = await configmap(stores, "b")
    await configmap(stores, "shared", owners=[ref(a), ref(b)])
    await stores.get("", "configmaps").delete("default", "a", DeleteOptions())

    async def only_b():
        obj = await get_or_none(stores.get("", "configmaps"), "default", "shared")
        return obj is not None and [r["name"] for r in obj["metadata"].get("ownerReferences", [])] == ["b"]

    await eventually(only_b, what="reference to a removed")
    await stores.get("", "configmaps").delete("default", "b", DeleteOptions())
    await eventually(lambda: gone(stores, "shared"), what="shared collected once both owners are gone")


async def test_orphan(stores) -> None:
    cms = stores.get("", "configmaps")
    owner = await configmap(stores, "owner")
    other = await configmap(stores, "other")
    await configmap(stores, "dep", owners=[ref(owner), ref(other)])
    obj, deleted = await cms.delete("default", "owner", DeleteOptions(propagation_policy="Orphan"))
    assert not deleted and obj["metadata"]["finalizers"] == ["orphan"] and obj["metadata"]["deletionTimestamp"]
    await eventually(lambda: gone(stores, "owner"), what="owner gone after orphaning")
    dep = await cms.get("default", "dep")
    assert [r["name"] for r in dep["metadata"]["ownerReferences"]] == ["other"]


async def test_orphan_dependents_legacy_option(stores) -> None:
    cms = stores.get("", "configmaps")
    owner = await configmap(stores, "owner")
    await configmap(stores, "dep", owners=[ref(owner)])
    with pytest.raises(errors.StatusError) as exc:
        await cms.delete("default", "owner", DeleteOptions(propagation_policy="Orphan", orphan_dependents=True))
    assert exc.value.code == 422 and "cannot be both set" in exc.value.message
    await cms.delete("default", "owner", DeleteOptions(orphan_dependents=True))
    await eventually(lambda: gone(stores, "owner"), what="owner gone after orphaning")
    assert "ownerReferences" not in (await cms.get("default", "dep"))["metadata"]


async def test_foreground_waits_for_blocking_dependents(stores) -> None:
    cms = stores.get("", "configmaps")
    owner = await configmap(stores, "owner")
    held = await configmap(stores, "held", owners=[ref(owner, block=True)], finalizers=["example.com/hold"])
    await configmap(stores, "held-child", owners=[ref(held, block=True)])
    await configmap(stores, "loose", owners=[ref(owner, block=False)])
    obj, deleted = await cms.delete("default", "owner", DeleteOptions(propagation_policy="Foreground"))
    assert not deleted and obj["metadata"]["finalizers"] == ["foregroundDeletion"]

    async def held_terminating():
        h = await get_or_none(cms, "default", "held")
        return h is not None and h["metadata"].get("deletionTimestamp") and h

    await eventually(held_terminating, what="blocking dependent deleted")
    # held has dependents of its own, so it went in the foreground: they are gone first
    await eventually(lambda: gone(stores, "held-child"), what="grandchild collected")
    assert (await cms.get("default", "owner"))["metadata"]["finalizers"] == ["foregroundDeletion"]

    def release(cur: dict) -> dict:
        cur["metadata"]["finalizers"] = [f for f in cur["metadata"]["finalizers"] if f != "example.com/hold"]
        return cur

    await cms.patch("default", "held", release, W)
    await eventually(lambda: gone(stores, "held"), what="held gone")
    await eventually(lambda: gone(stores, "owner"), what="owner gone after its dependents")
    await eventually(lambda: gone(stores, "loose"), what="non-blocking dependent collected")


async def test_namespaces_of_owners(stores) -> None:
    roles = stores.get("rbac.authorization.k8s.io", "clusterroles")
    await stores.get("", "namespaces").create("", {"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": "other"}}, W)
    elsewhere = await configmap(stores, "elsewhere", ns="other")
    # a namespaced owner is looked for in the dependent's namespace: one elsewhere reads as absent
    await configmap(stores, "cross", owners=[ref(elsewhere)])
    await eventually(lambda: gone(stores, "cross"), what="dependent of a cross-namespace owner collected")
    # a cluster-scoped owner holds a namespaced dependent until it goes
    cr = await roles.create("", {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                                 "metadata": {"name": "gc-owner"}}, W)
    cr.update(apiVersion="rbac.authorization.k8s.io/v1", kind="ClusterRole")
    await configmap(stores, "by-cluster-owner", owners=[ref(cr)])
    # a cluster-scoped dependent cannot have a namespaced owner: the reference is ignored
    await roles.create("", {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                            "metadata": {"name": "gc-bad", "ownerReferences": [ref(elsewhere)]}}, W)
    await configmap(stores, "sentinel", owners=[{"apiVersion": "v1", "kind": "ConfigMap", "name": "nope",
                                                 "uid": "00000000-0000-0000-0000-000000000003"}])
    await eventually(lambda: gone(stores, "sentinel"), what="sentinel collected")  # the GC has had its look
    assert await roles.get("", "gc-bad")
    assert await stores.get("", "configmaps").get("default", "by-cluster-owner")
    await roles.delete("", "gc-owner", DeleteOptions())
    await eventually(lambda: gone(stores, "by-cluster-owner"), what="dependent of a cluster-scoped owner collected")


async def test_delete_options_set_the_gc_finalizers(stores) -> None:
    cms = stores.get("", "configmaps")
    await configmap(stores, "x", finalizers=["orphan"])
    # an explicit Background drops the object's own orphan finalizer and deletes at once
    _, deleted = await cms.delete("default", "x", DeleteOptions(propagation_policy="Background"))
    assert deleted
    await configmap(stores, "y", finalizers=["example.com/hold"])
    obj, _ = await cms.delete("default", "y", DeleteOptions())
    assert obj["metadata"]["finalizers"] == ["example.com/hold"]
    # while it waits on finalizers (no graceful deletion pending), a new policy still applies
    obj, _ = await cms.delete("default", "y", DeleteOptions(propagation_policy="Orphan"))
    assert obj["metadata"]["finalizers"] == ["example.com/hold", "orphan"]
    dry, _ = await cms.delete("default", "y", DeleteOptions(propagation_policy="Foreground", dry_run=True))
    assert dry["metadata"]["finalizers"] == ["example.com/hold", "foregroundDeletion"]
    await cms.patch("default", "y", lambda cur: {**cur, "metadata": {**cur["metadata"], "finalizers": []}}, W)
    assert await gone(stores, "y")
