"""The pod network across nodes: the agent's ``--flannel-backend`` (host-gw, vxlan or none).

Both backends are one loop over a Node informer (:class:`NodeNetwork`): level-triggered, on
every Node event and every :data:`RESYNC_PERIOD`, never from an empty cache. Each backend
contributes only :meth:`NodeNetwork.setup` (once, before the loop),
:meth:`NodeNetwork.annotations` and :meth:`NodeNetwork.reconcile` (the kernel state from the
list of Nodes).

Every node publishes its backend in its Node's annotations as flannel's kube subnet manager
does (``flannel.alpha.coreos.com/backend-type``, ``backend-data``, ``public-ip``,
``kube-subnet-manager``), at start and whenever they drift: so a node that switches from
vxlan to host-gw tells the vxlan nodes to forget it.

Stopping the agent leaves the kernel state in place (pods keep running across a restart, as
with flannel); ``kubelite uninstall`` removes it (:func:`remove_all`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

log = logging.getLogger("kubelite.agent.podnet")
Obj = dict[str, Any]
RESYNC_PERIOD = 30.0
BACKENDS = ("host-gw", "vxlan", "none")
ANNOTATION_PREFIX = "flannel.alpha.coreos.com/"
BACKEND_TYPE = ANNOTATION_PREFIX + "backend-type"
BACKEND_DATA = ANNOTATION_PREFIX + "backend-data"
PUBLIC_IP = ANNOTATION_PREFIX + "public-ip"
KUBE_SUBNET_MANAGER = ANNOTATION_PREFIX + "kube-subnet-manager"


def flannel_annotations(backend_type: str, backend_data: str, public_ip: str) -> dict[str, str]:
    """A node's flannel annotations (backend-data is JSON: "null" for host-gw, as flannel's)."""
    return {BACKEND_DATA: backend_data, BACKEND_TYPE: backend_type, KUBE_SUBNET_MANAGER: "true",
            PUBLIC_IP: public_ip}


def network_view(node: Obj) -> tuple[Any, ...]:
    """What of a Node the backends read: its pod CIDR, InternalIP and flannel annotations."""
    ann = (node.get("metadata") or {}).get("annotations") or {}
    addresses = (node.get("status") or {}).get("addresses") or []
    return ((node.get("spec") or {}).get("podCIDR"),
            tuple(a.get("address") for a in addresses if a.get("type") == "InternalIP"),
            tuple(sorted((k, v) for k, v in ann.items() if k.startswith(ANNOTATION_PREFIX))))


class PodNetworkError(RuntimeError):
    """The node's pod network cannot be set up: the agent does not start, and says why."""


class NodeNetwork:
    """Watches Nodes (the agent's own client) and keeps the kernel in step; one owned task."""

    backend = ""

    def __init__(self, client: Any, node_name: str, own_cidr: str, node_ip: str = "",
                 resync: float = RESYNC_PERIOD) -> None:
        from kubelite.client.informer import ClientListWatch, Informer

        self.client = client
        self.node_name = node_name
        self.own_cidr = own_cidr
        self.node_ip = node_ip
        self.resync = resync
        self.nodes = Informer(ClientListWatch(client, "v1", "nodes"), name=f"{self.backend}-nodes")
        self.nodes.add_handler(self._node_event)
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def _node_event(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        # a Node's status is written every few seconds: only what a backend reads wakes the loop
        # (flannel's handleUpdateLeaseEvent), the resync catches anything else
        if etype != "MODIFIED" or old is None or new is None or network_view(old) != network_view(new):
            self._changed.set()

    async def setup(self, node: Obj) -> None:
        """What must be in place before the annotations are published (a device)."""

    def annotations(self) -> dict[str, str]:
        """This node's flannel annotations (none without a node IP)."""
        return {}

    async def reconcile(self, nodes: list[Obj]) -> None:
        raise NotImplementedError

    async def publish(self, node: Obj) -> None:
        want = self.annotations()
        have = (node.get("metadata") or {}).get("annotations") or {}
        if any(have.get(k) != v for k, v in want.items()):
            await self.client.patch("v1", "nodes", self.node_name, {"metadata": {"annotations": want}},
                                    patch_type="merge")

    async def start(self) -> None:
        node = await self.client.get("v1", "nodes", self.node_name)
        await self.setup(node)
        await self.publish(node)
        self._tasks = [asyncio.create_task(self.nodes.run(), name=f"{self.backend}-informer"),
                       asyncio.create_task(self._loop(), name=self.backend)]

    async def _loop(self) -> None:
        await self.nodes.wait_synced()  # never reconcile from an empty cache: that deletes every route
        while True:
            self._changed.clear()
            try:
                nodes = self.nodes.list()
                await self.reconcile(nodes)
                own = next((n for n in nodes if (n.get("metadata") or {}).get("name") == self.node_name), None)
                if own is not None:  # after reconcile: a device made again may have a new MAC
                    await self.publish(own)
            except Exception as exc:
                log.warning("%s reconcile: %s", self.backend, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self.resync)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(BaseException):
                await t
        self._tasks = []


def new_backend(name: str, client: Any, node_name: str, own_cidr: str, node_ip: str) -> NodeNetwork | None:
    """The agent's ``--flannel-backend``: a backend to start, or None for ``none``."""
    if name == "host-gw":
        from kubelite.agent.hostgw import HostGateway

        return HostGateway(client, node_name, own_cidr, node_ip=node_ip)
    if name == "vxlan":
        from kubelite.agent.vxlan import VxlanNetwork

        return VxlanNetwork(client, node_name, own_cidr, node_ip=node_ip)
    if name == "none":
        return None
    raise ValueError(f"unknown flannel backend {name!r} (one of {', '.join(BACKENDS)})")


def remove_all() -> list[str]:
    """What `kubelite uninstall` removes of every backend."""
    from kubelite.agent import hostgw, vxlan

    return vxlan.remove_all() + hostgw.remove_all()
