"""The ``kube-dns`` Service in kube-system (k3s's coredns manifest: labels ``k8s-app: kube-dns``,
``kubernetes.io/cluster-service``, ``kubernetes.io/name: CoreDNS``, the prometheus annotations,
ClusterIP ``--cluster-dns``, ports dns/53/UDP, dns-tcp/53/TCP, metrics/9153/TCP) and where it
leads: its Endpoints and EndpointSlice list the address the DNS server of the server's node
listens on (dns/server.py: that node's pod-network gateway), so kube-proxy DNATs the ClusterIP
there.

CoreDNS runs as pods in k3s, and its Service selects them. Here the server runs in kubelite's
process, so the Service has no selector (as for any Service whose endpoints are not pods) and
this reconciler writes the endpoint objects itself, as the `kubernetes` Service's reconciler
does (controllers/kubernetesservice.py). It re-creates whatever is deleted and puts fields
back that were changed, every 10 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from typing import Any

from kubelite.api import errors
from kubelite.api.selectors import parse_label_selector
from kubelite.apiserver.registry import DeleteOptions, ListOptions, WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.dns.server import DNS_PORT, METRICS_PORT, pod_network_gateway

log = logging.getLogger("kubelite.dns.service")
Obj = dict[str, Any]
NAME = "kube-dns"
NAMESPACE = "kube-system"
MANAGER = "kubelite-coredns"  # the field manager, and the EndpointSlice's managed-by
INTERVAL = 10.0
LABELS = {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"}
ANNOTATIONS = {"prometheus.io/port": str(METRICS_PORT), "prometheus.io/scrape": "true"}


def service_ports() -> list[Obj]:
    return [{"name": "dns", "port": DNS_PORT, "protocol": "UDP", "targetPort": DNS_PORT},
            {"name": "dns-tcp", "port": DNS_PORT, "protocol": "TCP", "targetPort": DNS_PORT},
            {"name": "metrics", "port": METRICS_PORT, "protocol": "TCP", "targetPort": METRICS_PORT}]


def endpoint_ports() -> list[Obj]:
    return [{"name": p["name"], "port": p["port"], "protocol": p["protocol"]} for p in service_ports()]


def service_object(cluster_ip: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": dict(LABELS),
                         "annotations": dict(ANNOTATIONS)},
            "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                     "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None", "ports": service_ports()}}


def slice_endpoints(address: str, node: str) -> list[Obj]:
    return [{"addresses": [address], "conditions": {"ready": True, "serving": True, "terminating": False},
             "nodeName": node}]


def slice_name(node: str) -> str:
    return f"{NAME}-{node}"[:253]


class KubeDNSService:
    """One per server with a node: the Service (whoever comes first), this node's EndpointSlice
    (``kube-dns-<node>``; several servers' DNS servers are all endpoints, as several CoreDNS
    replicas are), and the Endpoints listing every such slice's address. A slice whose Node is
    gone is deleted; a server that stops deletes its own."""

    def __init__(self, stores: Stores, cluster_ip: str, node: str) -> None:
        self.services = stores.get("", "services")
        self.endpoints = stores.get("", "endpoints")
        self.slices = stores.get("discovery.k8s.io", "endpointslices")
        self.nodes = stores.get("", "nodes")
        self.cluster_ip = cluster_ip
        self.node = node
        self.opts = WriteOptions(field_manager=MANAGER)

    async def address(self) -> str:
        """The DNS server's address: the node's pod-network gateway ("" until node IPAM gave it a CIDR)."""
        try:
            node = await self.nodes.get("", self.node)
        except errors.StatusError:
            return ""
        cidr = (node.get("spec") or {}).get("podCIDR")
        return pod_network_gateway(cidr) if cidr else ""

    async def run(self) -> None:
        try:
            while True:
                try:
                    done = await self.reconcile()
                except errors.StatusError as exc:
                    log.warning("reconciling the kube-dns Service: %s", exc.message)
                    done = False
                await asyncio.sleep(INTERVAL if done else 1.0)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.remove())

    async def remove(self) -> None:
        """This node's DNS server stops: its endpoint goes."""
        with contextlib.suppress(errors.StatusError):
            await self.slices.delete(NAMESPACE, slice_name(self.node), DeleteOptions())
        await self._endpoints()

    async def reconcile(self) -> bool:
        """One pass; False while the address is not known yet."""
        await self._service()
        address = await self.address()
        if not address:
            return False
        await self._slice(address)
        await self._endpoints()
        return True

    async def _service(self) -> None:
        try:
            cur = await self.services.get(NAMESPACE, NAME)
        except errors.StatusError as exc:
            if exc.code != 404:
                raise
            try:
                await self.services.create(NAMESPACE, service_object(self.cluster_ip), self.opts)
            except errors.StatusError as exc2:
                if exc2.code != 409 or "already exists" not in exc2.message:
                    raise  # e.g. --cluster-dns taken by another Service: said in the log, retried
            return
        spec = cur.get("spec") or {}
        if spec.get("ports") == service_ports() and not spec.get("selector"):
            return
        new = copy.deepcopy(cur)
        new["spec"]["ports"] = service_ports()
        new["spec"].pop("selector", None)
        await self.services.update(NAMESPACE, NAME, new, self.opts)

    async def _our_slices(self) -> list[Obj]:
        """The kube-dns slices this reconciler's kind writes; those of deleted Nodes are deleted."""
        items, _, _, _ = await self.slices.list(NAMESPACE, ListOptions(label_selector=parse_label_selector(
            f"kubernetes.io/service-name={NAME},endpointslice.kubernetes.io/managed-by={MANAGER}")))
        out = []
        for sl in items:
            node = next((e.get("nodeName") for e in sl.get("endpoints") or [] if e.get("nodeName")), "")
            try:
                if node:
                    await self.nodes.get("", node)
            except errors.StatusError as exc:
                if exc.code == 404:
                    with contextlib.suppress(errors.StatusError):
                        await self.slices.delete(NAMESPACE, sl["metadata"]["name"], DeleteOptions())
                    continue
            out.append(sl)
        return out

    async def _endpoints(self) -> None:
        addresses = sorted({(a, str(e.get("nodeName") or "")) for sl in await self._our_slices()
                            for e in sl.get("endpoints") or [] for a in e.get("addresses") or []})
        subsets = [{"addresses": [{"ip": a, "nodeName": n} if n else {"ip": a} for a, n in addresses],
                    "ports": endpoint_ports()}] if addresses else []
        try:
            cur = await self.endpoints.get(NAMESPACE, NAME)
        except errors.StatusError as exc:
            if exc.code != 404:
                raise
            await self.endpoints.create(NAMESPACE, {
                "apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {
                    **LABELS, "endpointslice.kubernetes.io/skip-mirror": "true"}},
                "subsets": subsets}, self.opts)
            return
        if (cur.get("subsets") or []) == subsets:
            return
        new = copy.deepcopy(cur)
        new["subsets"] = subsets
        await self.endpoints.update(NAMESPACE, NAME, new, self.opts)

    async def _slice(self, address: str) -> None:
        eps = slice_endpoints(address, self.node)
        name = slice_name(self.node)
        try:
            cur = await self.slices.get(NAMESPACE, name)
        except errors.StatusError as exc:
            if exc.code != 404:
                raise
            await self.slices.create(NAMESPACE, {
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": name, "namespace": NAMESPACE, "labels": {
                    **LABELS, "kubernetes.io/service-name": NAME, "endpointslice.kubernetes.io/managed-by": MANAGER}},
                "addressType": "IPv4", "ports": endpoint_ports(), "endpoints": eps}, self.opts)
            return
        if cur.get("endpoints") == eps and cur.get("ports") == endpoint_ports():
            return
        new = copy.deepcopy(cur)
        new["endpoints"] = eps
        new["ports"] = endpoint_ports()
        await self.slices.update(NAMESPACE, name, new, self.opts)


__all__ = ["KubeDNSService", "service_object", "slice_name"]
