"""Objects stored before bodies were type-checked can still be deleted (never a 500)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from kubelite.api import errors
from kubelite.apiserver.registry import DeleteOptions, ResourceStore
from kubelite.kinds.registry import default_registry
from kubelite.store.sqlite import SQLiteStore


@pytest.fixture
async def stores(tmp_path: Path):
    kv = SQLiteStore(str(tmp_path / "state.db"), compact_interval=0)
    await kv.start()
    reg = default_registry()
    yield kv, {k.plural: ResourceStore(k, kv) for k in reg.all() if not k.group}
    await kv.close()


POISON = [
    ("configmaps", {"metadata": {"name": "m1", "namespace": "default", "uid": "u", "finalizers": 5}}),
    ("configmaps", {"metadata": {"name": "m2", "namespace": "default", "uid": "u", "finalizers": ["a", 7],
                                 "deletionTimestamp": "2020-01-01T00:00:00Z", "deletionGracePeriodSeconds": "x"}}),
    ("pods", {"metadata": {"name": "p1", "namespace": "default", "uid": "u"},
              "spec": {"nodeName": "n", "terminationGracePeriodSeconds": "abc"}, "status": "weird"}),
]


@pytest.mark.parametrize("plural,obj", POISON, ids=[o["metadata"]["name"] for _, o in POISON])
async def test_delete_of_a_malformed_stored_object(stores, plural, obj):
    kv, by_plural = stores
    store = by_plural[plural]
    await kv.create(store.key("default", obj["metadata"]["name"]), orjson.dumps(obj))
    name = obj["metadata"]["name"]
    got, deleted = await store.delete("default", name, DeleteOptions())
    if not deleted:  # "a" is a real finalizer: the object waits for it, with the junk dropped
        assert got["metadata"]["finalizers"] == ["a"]
        return
    with pytest.raises(errors.StatusError) as ei:
        await store.get("default", name)
    assert ei.value.code == 404
