"""Namespace controllers: the system namespaces, each namespace's ``default`` service
account, and deletion of a Terminating namespace's contents before it goes."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from kubelite.api import errors
from kubelite.apiserver.registry import DeleteOptions, ListOptions, WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.controllers.base import WorkQueue, informer
from kubelite.kinds.base import Obj

log = logging.getLogger("kubelite.controllers.namespace")

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class NamespaceController:
    def __init__(self, stores: Stores) -> None:
        self.stores = stores
        self.namespaces = stores.get("", "namespaces")
        self.serviceaccounts = stores.get("", "serviceaccounts")
        self.queue = WorkQueue("namespace", self.sync)
        self.informer = informer(self.namespaces)
        self.informer.add_handler(lambda _t, old, new: self.queue.add(((new or old) or {})["metadata"]["name"]))

    async def bootstrap(self) -> None:
        for name in SYSTEM_NAMESPACES:
            with contextlib.suppress(errors.StatusError):
                await self.namespaces.create("", {"apiVersion": "v1", "kind": "Namespace",
                                                  "metadata": {"name": name}}, WriteOptions(
                    field_manager="kube-apiserver"))

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.informer.run())
            tg.create_task(self.queue.run())

    async def sync(self, name: str) -> bool:
        """Returns True when the namespace needs another look later."""
        try:
            ns = await self.namespaces.get("", name)
        except errors.StatusError as exc:
            if exc.code == 404:
                return False
            raise
        if not ns["metadata"].get("deletionTimestamp"):
            await self._ensure_default_sa(name)
            return False
        return await self._delete_contents(ns)

    async def _ensure_default_sa(self, namespace: str) -> None:
        try:
            await self.serviceaccounts.get(namespace, "default")
        except errors.StatusError as exc:
            if exc.code != 404:
                raise
            with contextlib.suppress(errors.StatusError):
                await self.serviceaccounts.create(namespace, {
                    "apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": "default", "namespace": namespace}}, WriteOptions(
                    field_manager="kube-controller-manager"))

    async def _delete_contents(self, ns: Obj) -> bool:
        name = ns["metadata"]["name"]
        remaining = 0
        for kind, store in self.stores.items():
            if not kind.namespaced or "events.k8s.io" == kind.group:
                continue
            items, _, _, _ = await store.list(name, ListOptions())
            for obj in items:
                remaining += 1
                if obj["metadata"].get("deletionTimestamp"):
                    continue
                with contextlib.suppress(errors.StatusError):  # the deleter's policy: Background
                    await store.delete(name, obj["metadata"]["name"], DeleteOptions(propagation_policy="Background"))
        if remaining:
            return True
        # everything is gone: finalize (drop spec.finalizers) so the namespace itself goes

        def finalize(cur: Obj) -> Obj:
            cur.setdefault("spec", {})["finalizers"] = []
            return cur

        try:
            await self.namespaces.patch("", name, finalize, WriteOptions(field_manager="kube-controller-manager"),
                                        subresource="finalize")
        except errors.StatusError as exc:
            if exc.code != 404:
                raise
        return False
