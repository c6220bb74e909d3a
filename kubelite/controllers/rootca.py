"""The root CA publisher (pkg/controller/certificates/rootcacertpublisher): every namespace
has a ``kube-root-ca.crt`` ConfigMap whose ``ca.crt`` is the cluster CA bundle, created when
the namespace appears and put back when it is deleted or changed."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from pathlib import Path

from kubelite.api import errors
from kubelite.apiserver.registry import ListOptions, ResourceStore, WriteOptions
from kubelite.kinds.base import Kind, Obj

log = logging.getLogger("kubelite.controllers.rootca")

ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints "
               "such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across "
               "distributions of Kubernetes clusters.")
FIELD_MANAGER = "kube-controller-manager"
RETRY_SECONDS = 1.0


def _store(stores: dict[Kind, ResourceStore], plural: str) -> ResourceStore:
    return next(s for k, s in stores.items() if k.plural == plural and k.group == "")


class RootCAPublisher:
    def __init__(self, stores: dict[Kind, ResourceStore], root_ca: bytes | Path) -> None:
        self.namespaces = _store(stores, "namespaces")
        self.configmaps = _store(stores, "configmaps")
        self.root_ca = (Path(root_ca).read_bytes() if isinstance(root_ca, Path) else root_ca).decode()
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()

    def _enqueue(self, ns: str) -> None:
        if ns and ns not in self._queued:
            self._queued.add(ns)
            self._queue.put_nowait(ns)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._watch_namespaces())
            tg.create_task(self._watch_configmaps())
            tg.create_task(self._work())

    async def _watch_namespaces(self) -> None:
        while True:
            try:
                async for etype, ns in self.namespaces.watch("", ListOptions()):
                    if etype == "DELETED" or ns["metadata"].get("deletionTimestamp"):
                        continue
                    self._enqueue(ns["metadata"]["name"])
            except errors.StatusError as exc:
                log.info("namespace watch restarted: %s", exc.message)
            await asyncio.sleep(0.1)

    async def _watch_configmaps(self) -> None:
        while True:
            try:
                async for etype, cm in self.configmaps.watch("", ListOptions()):
                    if cm.get("metadata", {}).get("name") == ROOT_CA_CONFIGMAP and etype in ("MODIFIED", "DELETED"):
                        self._enqueue(cm["metadata"].get("namespace", ""))
            except errors.StatusError as exc:
                log.info("configmap watch restarted: %s", exc.message)
            await asyncio.sleep(0.1)

    async def _work(self) -> None:
        while True:
            ns = await self._queue.get()
            self._queued.discard(ns)
            try:
                await self.sync(ns)
            except Exception:
                log.exception("publishing %s in namespace %s", ROOT_CA_CONFIGMAP, ns)
                asyncio.get_running_loop().call_later(RETRY_SECONDS, self._enqueue, ns)

    async def sync(self, namespace: str) -> None:
        try:
            ns = await self.namespaces.get("", namespace)
        except errors.StatusError as exc:
            if exc.code == 404:
                return
            raise
        if ns["metadata"].get("deletionTimestamp"):
            return  # NamespaceLifecycle would refuse the create; the namespace is going
        data = {"ca.crt": self.root_ca}
        opts = WriteOptions(field_manager=FIELD_MANAGER)
        try:
            cm = await self.configmaps.get(namespace, ROOT_CA_CONFIGMAP)
        except errors.StatusError as exc:
            if exc.code != 404:
                raise
            with contextlib.suppress(errors.StatusError):  # created meanwhile: the watch brings us back
                await self.configmaps.create(namespace, {
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": ROOT_CA_CONFIGMAP, "namespace": namespace,
                                 "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION}},
                    "data": data}, opts)
            return
        if cm.get("data") == data and (cm["metadata"].get("annotations") or {}).get(DESCRIPTION_ANNOTATION):
            return

        def fix(cur: Obj) -> Obj:
            cur = copy.deepcopy(cur)
            cur["data"] = dict(data)
            cur["metadata"].setdefault("annotations", {})
            if cur["metadata"]["annotations"] is None:
                cur["metadata"]["annotations"] = {}
            cur["metadata"]["annotations"][DESCRIPTION_ANNOTATION] = DESCRIPTION
            return cur

        await self.configmaps.patch(namespace, ROOT_CA_CONFIGMAP, fix, opts)


__all__ = ["DESCRIPTION", "DESCRIPTION_ANNOTATION", "ROOT_CA_CONFIGMAP", "RootCAPublisher"]
