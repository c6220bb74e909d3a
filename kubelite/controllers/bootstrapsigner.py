"""kube-public/cluster-info and bootstrap-token housekeeping (pkg/controller/bootstrap and
kubeadm's cluster-info phase):

* :class:`ClusterInfoPublisher`: the ConfigMap ``cluster-info`` in ``kube-public`` holds a
  kubeconfig with the API server's address and the cluster CA (key ``kubeconfig``), readable
  by ``system:anonymous`` (Role/RoleBinding ``kubeadm:bootstrap-signer-clusterinfo``), and,
  like the bootstrapsigner controller, one detached JWS (HS256, ``kid`` = token id, key = token
  secret) per bootstrap token with ``usage-bootstrap-signing`` under ``jws-kubeconfig-<id>``.
  A joining node reads it without credentials, checks the CA against its
  ``--ca-cert-hash`` pin and the signature against its token, and only then sends the token.
* :class:`TokenCleaner`: deletes bootstrap-token Secrets once they have expired.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import datetime as dt
import logging
from typing import Any

import yaml

from kubelite.api import errors
from kubelite.api.bootstraptoken import (
    CLUSTER_INFO,
    JWS_PREFIX,
    KUBECONFIG_KEY,
    PUBLIC_NAMESPACE,
    detached_signature,
)
from kubelite.apiserver.registry import DeleteOptions, ListOptions, WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.auth import bootstrap_tokens as bt
from kubelite.controllers.base import informer

log = logging.getLogger("kubelite.controllers.bootstrapsigner")

ROLE_NAME = "kubeadm:bootstrap-signer-clusterinfo"
FIELD_MANAGER = "kube-controller-manager"
RESYNC_SECONDS = 30.0


def cluster_info_kubeconfig(server_url: str, ca_pem: bytes) -> str:
    cfg: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "preferences": {},
           "clusters": [{"name": "", "cluster": {"server": server_url,
                                                 "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
           "contexts": None, "current-context": "", "users": None}
    return yaml.safe_dump(cfg, sort_keys=True)


class ClusterInfoPublisher:
    def __init__(self, stores: Stores, server_url: str, ca_pem: bytes) -> None:
        self.namespaces = stores.get("", "namespaces")
        self.configmaps = stores.get("", "configmaps")
        self.secrets = stores.get("", "secrets")
        self.roles = stores.get("rbac.authorization.k8s.io", "roles")
        self.rolebindings = stores.get("rbac.authorization.k8s.io", "rolebindings")
        self.kubeconfig = cluster_info_kubeconfig(server_url, ca_pem)
        self._wake = asyncio.Event()
        self.secret_informer = informer(self.secrets, bt.NAMESPACE)
        self.secret_informer.add_handler(self._secret_event)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.secret_informer.run())
            tg.create_task(self._loop())

    def _secret_event(self, etype: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        if (new or old or {}).get("type") == bt.SECRET_TYPE:
            self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                await self.sync()
            except Exception as exc:
                log.warning("publishing %s/%s: %s", PUBLIC_NAMESPACE, CLUSTER_INFO, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), RESYNC_SECONDS)
            self._wake.clear()

    async def _ensure(self, store: Any, namespace: str, obj: dict[str, Any]) -> None:
        with contextlib.suppress(errors.StatusError):
            await store.get(namespace, obj["metadata"]["name"])
            return
        with contextlib.suppress(errors.StatusError):
            await store.create(namespace, obj, WriteOptions(field_manager=FIELD_MANAGER))

    async def sync(self) -> None:
        opts = WriteOptions(field_manager=FIELD_MANAGER)
        await self._ensure(self.namespaces, "", {"apiVersion": "v1", "kind": "Namespace",
                                                 "metadata": {"name": PUBLIC_NAMESPACE}})
        rbac = "rbac.authorization.k8s.io"
        await self._ensure(self.roles, PUBLIC_NAMESPACE, {
            "apiVersion": f"{rbac}/v1", "kind": "Role",
            "metadata": {"name": ROLE_NAME, "namespace": PUBLIC_NAMESPACE},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [CLUSTER_INFO],
                       "verbs": ["get"]}]})
        await self._ensure(self.rolebindings, PUBLIC_NAMESPACE, {
            "apiVersion": f"{rbac}/v1", "kind": "RoleBinding",
            "metadata": {"name": ROLE_NAME, "namespace": PUBLIC_NAMESPACE},
            "roleRef": {"apiGroup": rbac, "kind": "Role", "name": ROLE_NAME},
            "subjects": [{"apiGroup": rbac, "kind": "User", "name": "system:anonymous"}]})
        data = {KUBECONFIG_KEY: self.kubeconfig}
        items, *_ = await self.secrets.list(bt.NAMESPACE, ListOptions())
        for s in items:
            if s.get("type") != bt.SECRET_TYPE or s["metadata"].get("deletionTimestamp"):
                continue
            tid, tsecret = bt.secret_data(s, bt.TOKEN_ID_KEY), bt.secret_data(s, bt.TOKEN_SECRET_KEY)
            if (not tid or not tsecret or bt.secret_data(s, bt.USAGE_SIGNING) != "true" or bt.has_expired(s)
                    or s["metadata"].get("name") != bt.secret_name(tid)):
                continue
            data[JWS_PREFIX + tid] = detached_signature(self.kubeconfig, tid, tsecret)
        try:
            cm = await self.configmaps.get(PUBLIC_NAMESPACE, CLUSTER_INFO)
        except errors.StatusError as exc:
            if exc.code != 404:
                raise
            await self.configmaps.create(PUBLIC_NAMESPACE, {"apiVersion": "v1", "kind": "ConfigMap",
                                                            "metadata": {"name": CLUSTER_INFO}, "data": data}, opts)
            return
        if cm.get("data") == data:
            return

        def fix(cur: dict[str, Any]) -> dict[str, Any]:
            cur = copy.deepcopy(cur)
            cur["data"] = dict(data)
            return cur

        await self.configmaps.patch(PUBLIC_NAMESPACE, CLUSTER_INFO, fix, opts)


class TokenCleaner:
    """tokencleaner: expired bootstrap-token Secrets are deleted."""

    def __init__(self, stores: Stores, interval: float = RESYNC_SECONDS) -> None:
        self.secrets = stores.get("", "secrets")
        self.interval = interval

    async def sweep(self, now: dt.datetime | None = None) -> list[str]:
        gone = []
        items, *_ = await self.secrets.list(bt.NAMESPACE, ListOptions())
        for s in items:
            if s.get("type") == bt.SECRET_TYPE and bt.has_expired(s, now):
                name = s["metadata"]["name"]
                with contextlib.suppress(errors.StatusError):
                    await self.secrets.delete(bt.NAMESPACE, name, DeleteOptions(
                        preconditions={"uid": s["metadata"].get("uid")}))
                    gone.append(name)
                    log.info("deleted expired bootstrap token secret %s", name)
        return gone

    async def run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("bootstrap token cleanup: %s", exc)
            await asyncio.sleep(self.interval)


__all__ = ["CLUSTER_INFO", "ClusterInfoPublisher", "JWS_PREFIX", "TokenCleaner", "cluster_info_kubeconfig",
           "detached_signature"]
