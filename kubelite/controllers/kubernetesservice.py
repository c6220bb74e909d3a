"""The `kubernetes` Service in `default` (pkg/controlplane/controller/kubernetesservice and the
endpoint reconciler): ClusterIP = the first address of --service-cidr, port 443 (https) to the
API server's port, and Endpoints and an EndpointSlice listing the API server's address.

Every API server runs it (upstream too), with upstream's default "lease" endpoint reconciler:
each server renews a record of its address under ``/registry/masterleases/<ip>`` every 10 s;
the endpoints list the addresses renewed within the last 15 s (a record past that is
removed), so a server that died drops out, and one that stops removes its record at once.
(Upstream's records are etcd keys with a TTL; the datastore interface has none, so the
record holds its renewal time.)
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from typing import Any

import orjson

from kubelite.api import errors
from kubelite.apiserver.registry import WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.store.base import ConflictError, KeyExistsError, KeyNotFoundError

log = logging.getLogger("kubelite.controllers.kubernetesservice")
Obj = dict[str, Any]
NAME = "kubernetes"
NAMESPACE = "default"
COMPONENT = "kube-apiserver"
INTERVAL = 10.0  # --endpoint-reconciler interval (EndpointInterval)
LEASE_TTL = 15.0  # DefaultEndpointReconcilerTTL
LEASES = "/registry/masterleases/"
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
        self.backend = self.services.store

    async def _live_addresses(self, remove: bool) -> list[str]:
        """Renew (or, when stopping, drop) this server's record; the addresses still live."""
        key = LEASES + self.address
        if remove:
            try:
                await self.backend.delete(key)
            except KeyNotFoundError:
                pass
        else:
            value = orjson.dumps({"ip": self.address, "renewTime": time.time()})
            cur = await self.backend.get(key)
            try:
                if cur is None:
                    await self.backend.create(key, value)
                else:
                    await self.backend.update(key, value, cur.mod_revision)
            except (KeyExistsError, ConflictError, KeyNotFoundError):
                pass  # renewed by another writer of the same address
        live: list[str] = []
        now = time.time()
        for kv in (await self.backend.list(LEASES)).kvs:
            try:
                rec = orjson.loads(kv.value)
                fresh = now - float(rec.get("renewTime", 0)) <= LEASE_TTL
                ip = str(rec.get("ip") or "")
            except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
                fresh, ip = False, ""
            if fresh and ip:
                live.append(ip)
            else:
                with contextlib.suppress(ConflictError, KeyNotFoundError):
                    await self.backend.delete(kv.key, kv.mod_revision)
        return sorted(set(live))

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
        addrs = await self._live_addresses(remove)
        await self._endpoints(addrs, remove)
        await self._slice(addrs, remove)

    async def _endpoints(self, addrs: list[str], remove: bool) -> None:
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
                "subsets": [{"addresses": [{"ip": a} for a in addrs], "ports": ports}]}, self.opts)
            return
        subsets = [{"addresses": [{"ip": a} for a in addrs], "ports": ports}] if addrs else []
        if (cur.get("subsets") or []) == subsets:
            return
        new = copy.deepcopy(cur)
        new["subsets"] = subsets
        await self.endpoints.update(NAMESPACE, NAME, new, self.opts)

    async def _slice(self, addrs: list[str], remove: bool) -> None:
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
                "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addrs]}, self.opts)
            return
        eps = [{"addresses": [a], "conditions": {"ready": True}} for a in addrs]
        if (cur.get("endpoints") or []) == eps and cur.get("ports") == ports:
            return
        new = copy.deepcopy(cur)
        new["endpoints"] = eps
        new["ports"] = ports
        await self.slices.update(NAMESPACE, NAME, new, self.opts)


__all__ = ["KubernetesService", "service_object"]
