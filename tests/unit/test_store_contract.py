"""The store contract on SQLite (tests/e2e/test_store_etcd.py runs the same bodies on etcd)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubelite.store.sqlite import SQLiteStore
from tests.store_contract import StoreContract


class TestSQLiteStoreContract(StoreContract):
    @pytest.fixture
    async def open_store(self, tmp_path: Path):
        opened: list[SQLiteStore] = []

        async def open_() -> SQLiteStore:
            s = SQLiteStore(str(tmp_path / "state.db"), compact_interval=0)
            await s.start()
            opened.append(s)
            return s

        yield open_
        for s in opened:
            await s.close()

    @pytest.fixture
    async def store(self, open_store):
        return await open_store()
