"""Concurrent patches of one object all land (the registry retries them on conflict, as
upstream's GuaranteedUpdate), while a patch naming a stale resourceVersion is refused."""

from __future__ import annotations

import asyncio

import pytest

from kubelite.api import errors
from kubelite.apiserver.registry import WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.kinds.registry import default_registry
from kubelite.store.sqlite import SQLiteStore


def test_concurrent_patches_retry_and_stale_preconditions_conflict(tmp_path):
    async def main() -> None:
        store = SQLiteStore(str(tmp_path / "db"))
        await store.start()
        try:
            cms = Stores.build(default_registry(), store).get("", "configmaps")
            opts = WriteOptions()
            await cms.create("default", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m"}}, opts)

            def label(i: int):
                def apply(cur):
                    cur["metadata"].setdefault("labels", {})[f"l{i}"] = "x"
                    return cur
                return apply

            await asyncio.gather(*(cms.patch("default", "m", label(i), opts) for i in range(5)))
            got = await cms.get("default", "m")
            assert set(got["metadata"]["labels"]) == {f"l{i}" for i in range(5)}

            stale = "1"

            def with_stale_rv(cur):
                cur["metadata"]["resourceVersion"] = stale
                cur["metadata"].setdefault("labels", {})["late"] = "x"
                return cur

            with pytest.raises(errors.StatusError) as e:
                await cms.patch("default", "m", with_stale_rv, opts)
            assert e.value.code == 409
            assert "late" not in (await cms.get("default", "m"))["metadata"]["labels"]
        finally:
            await store.close()

    asyncio.run(main())
