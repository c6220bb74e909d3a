"""The node IPAM controller, as kube-controller-manager's range allocator
(pkg/controller/nodeipam/ipam/range_allocator.go): every Node without ``spec.podCIDR`` gets
the lowest free ``/--node-cidr-mask-size`` block of ``--cluster-cidr``; the block is released
when the Node is deleted. The allocation map is rebuilt from the Nodes at start (CIDRs that
nodes already have, in range, are marked used), so a restart never hands one out twice.
When the range is full the Node gets upstream's ``CIDRNotAvailable`` event and is retried."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any

from kubelite.api import errors
from kubelite.apiserver.registry import WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.client.events import EventRecorder
from kubelite.controllers.base import WorkQueue, informer

log = logging.getLogger("kubelite.controllers.nodeipam")
Obj = dict[str, Any]

DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"
DEFAULT_NODE_MASK = 24
FIELD_MANAGER = "node-ipam-controller"


class CIDRFull(Exception):
    pass


class RangeAllocator:
    """The blocks of one cluster CIDR: the lowest free one first (cidrset's next-free search)."""

    def __init__(self, cluster_cidr: str, mask: int) -> None:
        self.net = ipaddress.ip_network(cluster_cidr, strict=True)
        if mask < self.net.prefixlen:
            raise ValueError(f"--node-cidr-mask-size {mask} is smaller than the cluster CIDR's /{self.net.prefixlen}")
        if mask - self.net.prefixlen > 16:
            raise ValueError("CIDRSet: the cluster CIDR holds more than 65536 node CIDRs")  # as upstream's cidrset
        self.mask = mask
        self.size = 1 << (mask - self.net.prefixlen)
        self.used: set[int] = set()

    def _index(self, cidr: str) -> int | None:
        try:
            n = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return None
        if n.version != self.net.version or n.prefixlen != self.mask or not n.subnet_of(self.net):  # type: ignore[arg-type]
            return None
        return (int(n.network_address) - int(self.net.network_address)) >> (n.max_prefixlen - self.mask)

    def _cidr(self, i: int) -> str:
        base = int(self.net.network_address) + (i << (self.net.max_prefixlen - self.mask))
        return str(ipaddress.ip_network((base, self.mask)))

    def occupy(self, cidr: str) -> bool:
        i = self._index(cidr)
        if i is None:
            return False
        self.used.add(i)
        return True

    def release(self, cidr: str) -> bool:
        i = self._index(cidr)
        if i is None or i not in self.used:
            return False
        self.used.discard(i)
        return True

    def allocate(self) -> str:
        for i in range(self.size):
            if i not in self.used:
                self.used.add(i)
                return self._cidr(i)
        raise CIDRFull(f"no remaining CIDRs left to allocate in the cluster CIDR {self.net}")


class NodeIPAMController:
    def __init__(self, stores: Stores, cluster_cidr: str = DEFAULT_CLUSTER_CIDR, mask: int = DEFAULT_NODE_MASK,
                 recorder: EventRecorder | None = None) -> None:
        self.nodes = stores.get("", "nodes")
        self.alloc = RangeAllocator(cluster_cidr, mask)
        self.recorder = recorder
        self.informer = informer(self.nodes)
        self.queue = WorkQueue("node-ipam", self.sync, retry=5.0)
        self._rebuilt = False  # the map holds every Node's block: events may allocate

    async def run(self) -> None:
        self.informer.add_handler(self._on_event)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.informer.run())
                await self.informer.wait_synced()
                for node in self.informer.list():  # rebuild the map before handing anything out
                    self._occupy(node)
                self._rebuilt = True
                for node in self.informer.list():
                    self.queue.add(node["metadata"]["name"])
                tg.create_task(self.queue.run())
        finally:  # the informer is shared and outlives this run: a restart adds its handler again
            self.informer.remove_handler(self._on_event)
            self._rebuilt = False

    def _on_event(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        if new is None:  # deleted: its block is free, and a node waiting for one gets it
            if old is not None and self.alloc.release(_pod_cidr(old)):
                for n in self.informer.list():
                    if not _pod_cidr(n):
                        self.queue.add(n["metadata"]["name"])
            return
        if self._rebuilt:
            self._occupy(new)
            self.queue.add(new["metadata"]["name"])

    def _occupy(self, node: Obj) -> None:
        if _pod_cidr(node):
            self.alloc.occupy(_pod_cidr(node))

    async def sync(self, name: str) -> bool:
        node = self.informer.get("", name)
        if node is None or _pod_cidr(node):
            return False
        try:
            cidr = self.alloc.allocate()
        except CIDRFull as exc:
            log.warning("node %s: %s", name, exc)
            if self.recorder is not None:
                await self.recorder.record(node, "Normal", "CIDRNotAvailable", f"Node {name} status is now: CIDRNotAvailable")
            return True  # a block may be released later

        def assign(cur: Obj) -> Obj:
            spec = cur.setdefault("spec", {})
            if spec.get("podCIDR"):
                raise _Taken(spec["podCIDR"])
            spec["podCIDR"], spec["podCIDRs"] = cidr, [cidr]
            return cur

        try:
            await self.nodes.patch("", name, assign, WriteOptions(field_manager=FIELD_MANAGER))
        except _Taken as t:  # someone else set it meanwhile: that block is the node's
            self.alloc.release(cidr)
            self.alloc.occupy(t.cidr)
            return False
        except BaseException as exc:
            self.alloc.release(cidr)
            if isinstance(exc, errors.StatusError) and exc.code == 404:
                return False
            raise
        log.info("node %s: allocated pod CIDR %s", name, cidr)
        return False


def _pod_cidr(node: Obj) -> str:
    return (node.get("spec") or {}).get("podCIDR") or ""


class _Taken(Exception):
    def __init__(self, cidr: str) -> None:
        super().__init__(cidr)
        self.cidr = cidr
