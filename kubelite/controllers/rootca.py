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
from kubelite.apiserver.registry import WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.controllers.base import WorkQueue, informer
from kubelite.kinds.base import Obj

log = logging.getLogger("kubelite.controllers.rootca")

ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints "
               "such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across "
               "distributions of Kubernetes clusters.")
FIELD_MANAGER = "kube-controller-manager"
RETRY_SECONDS = 1.0


class RootCAPublisher:
    def __init__(self, stores: Stores, root_ca: bytes | Path) -> None:
        self.namespaces = stores.get("", "namespaces")
        self.configmaps = stores.get("", "configmaps")
        self.root_ca = (Path(root_ca).read_bytes() if isinstance(root_ca, Path) else root_ca).decode()
        self.queue = WorkQueue("root-ca-publisher", self.sync, RETRY_SECONDS)
        self.namespace_informer = informer(self.namespaces)
        self.namespace_informer.add_handler(self._namespace_event)
        self.configmap_informer = informer(self.configmaps)
        self.configmap_informer.add_handler(self._configmap_event)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.namespace_informer.run())
            tg.create_task(self.configmap_informer.run())
            tg.create_task(self.queue.run())

    def _namespace_event(self, etype: str, old: Obj | None, ns: Obj | None) -> None:
        if ns is not None and not ns["metadata"].get("deletionTimestamp"):
            self.queue.add(ns["metadata"]["name"])

    def _configmap_event(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        cm = new or old or {}
        if cm["metadata"].get("name") == ROOT_CA_CONFIGMAP and etype in ("MODIFIED", "DELETED"):
            self.queue.add(cm["metadata"].get("namespace", ""))

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
