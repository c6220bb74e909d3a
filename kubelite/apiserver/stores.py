"""The API server's stores, one per served kind, and the one typed way to find them.

    stores = Stores.build(registry, backend)
    pods = stores.get("", "pods")            # the ResourceStore of core/v1 pods
    stores[kind]                             # by Kind
    stores.find("policy", "poddisruptionbudgets")   # None when that kind is not served

A kind served in another version shares the storage of the kind it is stored as (its
:class:`~kubelite.kinds.base.StoredAs`). Virtual kinds (create-only, never stored) get the
object their ``Kind.virtual`` factory builds once the API server's REST context exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from kubelite.apiserver.admission import Chain
from kubelite.apiserver.registry import ResourceStore, WriteOptions
from kubelite.kinds.base import Kind, Obj
from kubelite.kinds.registry import Registry
from kubelite.store.base import Store


class CreateOnly(Protocol):
    """What a virtual kind's object answers (a POST that stores nothing)."""

    kind: Kind

    async def create(self, namespace: str, obj: Obj, opts: WriteOptions) -> Obj: ...


class Stores:
    def __init__(self, registry: Registry, stores: dict[Kind, ResourceStore]) -> None:
        self.registry = registry
        self._stores = stores
        self._virtual: dict[Kind, CreateOnly] = {}

    @classmethod
    def build(cls, registry: Registry, backend: Store) -> Stores:
        stores: dict[Kind, ResourceStore] = {}
        for kind in registry.all():
            if kind.virtual is not None:
                continue
            storage_kind = None
            if kind.stored_as is not None:
                sa = kind.stored_as
                storage_kind = registry.by_kind(sa.group, sa.version, sa.kind)
                if storage_kind is None:
                    raise LookupError(f"{kind.plural}.{kind.group} is stored as {sa.kind}, which is not served")
            stores[kind] = (kind.store or ResourceStore)(kind, backend, storage_kind)
        return cls(registry, stores)

    # ------------------------------------------------------------------ lookups
    def __getitem__(self, kind: Kind) -> ResourceStore:
        return self._stores[kind]

    def __contains__(self, kind: object) -> bool:
        return kind in self._stores

    def __iter__(self) -> Iterator[Kind]:
        return iter(self._stores)

    def items(self) -> Iterator[tuple[Kind, ResourceStore]]:
        return iter(self._stores.items())

    def values(self) -> Iterator[ResourceStore]:
        return iter(self._stores.values())

    def find(self, group: str, plural: str, version: str = "") -> ResourceStore | None:
        """The store of ``plural`` in ``group`` (the first served version unless ``version``)."""
        for k, s in self._stores.items():
            if k.group == group and k.plural == plural and (not version or k.version == version):
                return s
        return None

    def get(self, group: str, plural: str, version: str = "") -> ResourceStore:
        s = self.find(group, plural, version)
        if s is None:
            raise LookupError(f"{plural}{'.' + group if group else ''} is not served")
        return s

    def for_kind(self, group: str, kind: str) -> ResourceStore | None:
        """The store that serves ``kind`` of ``group`` (an ownerReference's apiVersion/kind)."""
        for k, s in self._stores.items():
            if k.group == group and k.kind == kind:
                return s
        return None

    def for_request(self, kind: Kind) -> ResourceStore | CreateOnly:
        """What serves requests for ``kind``: its store, or the object of a virtual kind."""
        if kind in self._virtual:
            return self._virtual[kind]
        return self._stores[kind]

    # ------------------------------------------------------------------ wiring
    def attach_virtual(self, context: Any) -> None:
        """Build the objects of the virtual kinds (once the REST context exists)."""
        for kind in self.registry.all():
            if kind.virtual is not None:
                self._virtual[kind] = kind.virtual(context, kind)

    def set_admission(self, chain: Chain) -> None:
        for s in self._stores.values():
            s.admission = chain


__all__ = ["CreateOnly", "Stores"]
