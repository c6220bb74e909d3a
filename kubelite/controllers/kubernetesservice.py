"""The `kubernetes` Service in `default` (pkg/controlplane/controller/kubernetesservice and the
endpoint reconciler): ClusterIP = the first address of --service-cidr, port 443 (https) to the
API server's port, and Endpoints and an EndpointSlice listing the API server's address.

Every API server runs it (upstream too). Each server adds its own address and keeps the
others'; a server removes its address when it stops. (Upstream's lease reconciler also
drops the address of a server that died without stopping; kubelite does not yet.)
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from typing import Any

from kubelite.api import errors
from kubelite.apiserver.registry import WriteOptions
from kubelite.apiserver.stores import Stores

log = logging.getLogger("kubelite.controllers.kubernetesservice")
Obj = dict[str, Any]
NAME = "kubernetes"
NAMESPACE = "default"
COMPONENT = "kube-apiserver"
INTERVAL = 10.0  # --endpoint-reconciler interval (EndpointInterval)
LABELS = {"component": "apiserver", "provider": "kubernetes"}


def service_object(cluster_ip: str, port: int) -> Obj:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": dict(LABELS)},
            "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                     "sessionAffinity": "None", "ipFamilyPolicy": "SingleStack",
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}}


class KubernetesService:
    def __init__(self, stores: Stores, cluster_ip: str, address: str, port: int) -> None:
        self.services = stores.get("", "services")
        self.endpoints = stores.get("", "endpoints")
        self.slices = stores.get("discovery.k8s.io", "endpointslices")
        self.cluster_ip = cluster_ip
        self.address = address
        self.port = port
        self.opts = WriteOptions(field_manager=COMPONENT)

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.reconcile()
                except errors.StatusError as exc:
                    log.warning("reconciling the kubernetes Service: %s", exc.message)
                await asyncio.sleep(INTERVAL)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.reconcile(remove=True))

    async def reconcile(self, remove: bool = False) -> None:
        if not remove:
            try:
                await self.services.get(NAMESPACE, NAME)
            except errors.StatusError as exc:
                if exc.code != 404:
                    raise
                with contextlib.suppress(errors.StatusError):  # another server made it first
                    await self.services.create(NAMESPACE, service_object(self.cluster_ip, self.port), self.opts)
        await self._endpoints(remove)
        await self._slice(remove)

    def _addresses(self, current: list[str], remove: bool) -> list[str]:
        addrs = [a for a in current if a != self.address]
        if not remove:
            addrs.append(self.address)
        return sorted(set(addrs))

    async def _endpoints(self, remove: bool) -> None:
        ports = [{"name": "https", "port": self.port, "protocol": "TCP"}]
        try:
            cur = await self.endpoints.get(NAMESPACE, NAME)
        except errors.StatusError as exc:
            if exc.code != 404 or remove:
                return
            await self.endpoints.create(NAMESPACE, {
                "apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": NAME, "namespace": NAMESPACE,
                             "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                "subsets": [{"addresses": [{"ip": self.address}], "ports": ports}]}, self.opts)
            return
        have = [str(a.get("ip")) for s in cur.get("subsets") or [] for a in s.get("addresses") or []]
        addrs = self._addresses(have, remove)
        subsets = [{"addresses": [{"ip": a} for a in addrs], "ports": ports}] if addrs else []
        if (cur.get("subsets") or []) == subsets:
            return
        new = copy.deepcopy(cur)
        new["subsets"] = subsets
        await self.endpoints.update(NAMESPACE, NAME, new, self.opts)

    async def _slice(self, remove: bool) -> None:
        ports = [{"name": "https", "port": self.port, "protocol": "TCP"}]
        try:
            cur = await self.slices.get(NAMESPACE, NAME)
        except errors.StatusError as exc:
            if exc.code != 404 or remove:
                return
            await self.slices.create(NAMESPACE, {
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": NAME, "namespace": NAMESPACE,
                             "labels": {"kubernetes.io/service-name": NAME}},
                "addressType": "IPv4", "ports": ports,
                "endpoints": [{"addresses": [self.address], "conditions": {"ready": True}}]}, self.opts)
            return
        have = [str(a) for e in cur.get("endpoints") or [] for a in e.get("addresses") or []]
        eps = [{"addresses": [a], "conditions": {"ready": True}} for a in self._addresses(have, remove)]
        if (cur.get("endpoints") or []) == eps and cur.get("ports") == ports:
            return
        new = copy.deepcopy(cur)
        new["endpoints"] = eps
        new["ports"] = ports
        await self.slices.update(NAMESPACE, NAME, new, self.opts)


__all__ = ["KubernetesService", "service_object"]
