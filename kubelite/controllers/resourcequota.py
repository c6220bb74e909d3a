"""The resource quota controller (pkg/controller/resourcequota): ``status.hard`` follows
``spec.hard`` and ``status.used`` is what the namespace holds, recomputed when a quota changes,
when objects that free quota go (replenishment: a pod deleted or finished) and on a full resync.

Usage is counted with :mod:`kubelite.admission.quota` — the same arithmetic admission charges
with — under the admission plugin's per-namespace lock, so a recount never drops a charge that
admission made for an object not stored yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from decimal import Decimal
from typing import Any

from kubelite.admission import quota
from kubelite.api import errors
from kubelite.apiserver.registry import ListOptions, ResourceStore, WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.controllers.base import WorkQueue, informer
from kubelite.kinds.base import Kind, Obj
from kubelite.kinds.podutil import counts_for_quota

log = logging.getLogger("kubelite.controllers.resourcequota")
FIELD_MANAGER = "resourcequota-controller"
RESYNC_SECONDS = 300.0  # --resource-quota-sync-period


class ResourceQuotaController:
    def __init__(self, stores: Stores, lock: Any = None, resync: float = RESYNC_SECONDS) -> None:
        self.stores = stores
        self.quotas = stores.get("", "resourcequotas")
        self._lock = lock or (lambda namespace: contextlib.nullcontext())
        self.queue = WorkQueue("resourcequota", self.sync)
        self.quota_informer = informer(self.quotas, resync=resync)
        self.quota_informer.add_handler(self._quota_event)
        self.pod_informer = informer(stores.get("", "pods"))
        self.pod_informer.add_handler(self._pod_event)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.quota_informer.run())
            tg.create_task(self.pod_informer.run())
            tg.create_task(self.queue.run())

    # ------------------------------------------------------------------ events
    def _quota_event(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        if new is None:
            return
        meta = new["metadata"]
        spec_hard = (new.get("spec") or {}).get("hard") or {}
        status = new.get("status") or {}
        resync = old is new
        if resync or status.get("hard") != spec_hard or not isinstance(status.get("used"), dict):
            self.queue.add(f"{meta.get('namespace', '')}/{meta['name']}")

    def _pod_event(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        # replenishment: a pod that stops counting gives its quota back
        if old is None or old is new or not counts_for_quota(old):
            return
        if new is None or not counts_for_quota(new):
            self.replenish(old["metadata"].get("namespace", ""))

    def replenish(self, namespace: str) -> None:
        for q in self.quota_informer.list(namespace):
            self.queue.add(f"{namespace}/{q['metadata']['name']}")

    # ------------------------------------------------------------------ sync
    def _kind_for(self, resource: str) -> Kind | None:
        """The kind whose objects a quota resource counts."""
        if resource.startswith("count/"):
            plural, _, group = resource[len("count/"):].partition(".")
            store = self.stores.find(group, plural)
            return store.kind if store is not None else None
        if resource in quota.LEGACY_COUNTS:
            store = self.stores.find("", resource)
            return store.kind if store is not None else None
        return self.stores.get("", "pods").kind  # pods, cpu, memory, requests.*, limits.*, hugepages-*

    async def usage(self, namespace: str, resources: list[str]) -> dict[str, Decimal]:
        used = {r: Decimal(0) for r in resources}
        kinds: dict[Kind, ResourceStore] = {}
        for r in resources:
            kind = self._kind_for(r)
            if kind is not None:
                kinds[kind] = self.stores[kind]
        for kind, store in kinds.items():
            items, _, _, _ = await store.list(namespace, ListOptions())
            for obj in items:
                for r, v in quota.usage(kind, obj).items():
                    if r in used:
                        used[r] += v
        return used

    async def sync(self, key: str) -> None:
        namespace, _, name = key.partition("/")
        async with self._lock(namespace):
            try:
                q = await self.quotas.get(namespace, name)
            except errors.StatusError as exc:
                if exc.code == 404:
                    return
                raise
            hard = dict((q.get("spec") or {}).get("hard") or {})
            used = await self.usage(namespace, sorted(hard))
            want = {"hard": hard, "used": {r: quota.fmt(used[r], r) for r in sorted(hard)}}
            if q.get("status") == want:
                return
            q["status"] = want
            try:
                await self.quotas.update(namespace, name, q, WriteOptions(field_manager=FIELD_MANAGER), "status")
            except errors.StatusError as exc:
                if exc.code == 409:
                    self.queue.add(key)  # changed meanwhile: count again
                elif exc.code != 404:
                    raise


__all__ = ["ResourceQuotaController"]
