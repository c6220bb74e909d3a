"""The narrow, etcd-shaped store interface the API server sees (kine's design).

Keys are strings, values bytes. Every write gets a new global revision; an object's
``mod_revision`` is its resourceVersion. SQLite is the default implementation; an etcd
backend (kubelite.store.etcd) implements the same interface.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class KV:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Event:
    type: str  # "PUT" (create or update) or "DELETE"
    kv: KV  # for DELETE: the deleted value, with mod_revision = the delete's revision
    prev: KV | None  # previous value (None on create)

    @property
    def created(self) -> bool:
        return self.type == "PUT" and self.prev is None


class StoreError(Exception):
    pass


class KeyExistsError(StoreError):
    pass


class KeyNotFoundError(StoreError):
    pass


class ConflictError(StoreError):
    """The compare-and-swap revision did not match; ``current`` is the stored value (or None)."""

    def __init__(self, current: KV | None) -> None:
        super().__init__("revision mismatch")
        self.current = current


class CompactedError(StoreError):
    """The requested revision is older than the compacted revision."""

    def __init__(self, requested: int, compacted: int) -> None:
        super().__init__(f"revision {requested} compacted (oldest {compacted})")
        self.requested = requested
        self.compacted = compacted


class FutureRevisionError(StoreError):
    def __init__(self, requested: int, current: int) -> None:
        super().__init__(f"revision {requested} is in the future (current {current})")
        self.requested = requested
        self.current = current


class StoreClosedError(StoreError):
    """The store is not started or has been closed."""


class WatchOverflowError(StoreError):
    """A watcher fell too far behind (its queue overflowed); it has been terminated.

    The consumer should end the watch; the client re-lists and watches again."""

    def __init__(self, prefix: str, queued: int) -> None:
        super().__init__(f"watch on {prefix!r} fell behind by more than {queued} events")
        self.prefix = prefix


@dataclass(frozen=True, slots=True)
class ListResult:
    kvs: list[KV]
    revision: int  # the revision the list was read at
    more: bool  # True when a limit cut the result short


class Store(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def current_revision(self) -> int: ...

    async def compacted_revision(self) -> int: ...

    async def get(self, key: str, revision: int = 0) -> KV | None:
        """Value at ``revision`` (0 = latest). Raises CompactedError/FutureRevisionError."""
        ...

    async def list(self, prefix: str, revision: int = 0, limit: int = 0, start_key: str = "") -> ListResult:
        """Live keys under ``prefix`` at ``revision`` (0 = latest), ordered by key, starting at
        ``start_key`` (inclusive) when given, at most ``limit`` when > 0."""
        ...

    async def count(self, prefix: str) -> int: ...

    async def create(self, key: str, value: bytes) -> KV:
        """Raises KeyExistsError."""
        ...

    async def update(self, key: str, value: bytes, expected_revision: int) -> KV:
        """CAS on mod_revision (0 = unconditional). Raises KeyNotFoundError / ConflictError."""
        ...

    async def delete(self, key: str, expected_revision: int = 0) -> KV:
        """Returns the deleted KV with mod_revision = delete revision. CAS like update."""
        ...

    def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        """Events for keys under ``prefix`` with revision > ``from_revision`` (0 = from now on).
        Raises CompactedError (on first iteration) when ``from_revision`` is below the
        compacted revision. Iteration ends only when the consumer stops or the store closes."""
        ...

    async def compact(self, revision: int) -> None: ...
