"""The in-process source of an informer: list and watch straight over a ResourceStore (the
controllers that run inside the API server's process use these; remote components use
:class:`kubelite.client.informer.ClientListWatch`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from kubelite.api.selectors import FieldSelector, LabelSelector
from kubelite.apiserver.registry import ListOptions, ResourceStore
from kubelite.client.informer import Informer

Obj = dict[str, Any]


class StoreListWatch:
    def __init__(self, store: ResourceStore, namespace: str = "", label_selector: LabelSelector | None = None,
                 field_selector: FieldSelector | None = None) -> None:
        self.store = store
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        k = store.kind
        self.what = f"{k.plural}.{k.group}" if k.group else k.plural

    def _opts(self, resource_version: str = "") -> ListOptions:
        return ListOptions(label_selector=self.label_selector, field_selector=self.field_selector,
                           resource_version=resource_version)

    async def list(self) -> tuple[list[Obj], str]:
        items, rev, _, _ = await self.store.list(self.namespace, self._opts())
        return items, str(rev)

    async def watch(self, resource_version: str) -> AsyncIterator[tuple[str, Obj]]:
        async for etype, obj in self.store.watch(self.namespace, self._opts(resource_version)):
            yield etype, obj


def store_informer(store: ResourceStore, namespace: str = "", *, resync: float = 0.0) -> Informer:
    """The store's shared informer for ``namespace`` (client-go's shared informer factory):
    every in-process component watching a resource shares one list, one watch and one cache.
    The cached objects are shared too: a component must copy an object before changing it."""
    key = (namespace, resync)
    inf = store.informers.get(key)
    if inf is None:
        inf = store.informers[key] = Informer(StoreListWatch(store, namespace), resync=resync)
    return inf


__all__ = ["StoreListWatch", "store_informer"]
