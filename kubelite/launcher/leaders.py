"""Leader election for the components of `kubelite server` that must run once per cluster:
kube-controller-manager's controllers behind the Lease ``kube-system/kube-controller-manager``
and the scheduler behind ``kube-system/kube-scheduler`` (client-go's election,
:mod:`kubelite.client.leaderelection`).

Upstream, a component that loses its lease exits and its static pod restarts as a candidate.
Here the components live in the server's process: a :class:`LeaderGroup` adds its components to
the supervisor when it becomes leader and stops them when the lease is lost, then campaigns
again. As k3s does, servers on the embedded SQLite datastore (one server per data dir, held by a
lock) run no election unless ``--leader-elect`` asks for it: nobody could compete.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from kubelite.apiserver.registry import WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.client.leaderelection import (
    Election,
    LeaderElector,
    LeaseLock,
    new_identity,
)
from kubelite.controllers.events import recorder
from kubelite.launcher.supervisor import Supervisor

log = logging.getLogger("kubelite.leaders")
Obj = dict[str, Any]
LEASE_NAMESPACE = "kube-system"  # --leader-elect-resource-namespace
CONTROLLER_MANAGER = "kube-controller-manager"  # the Lease, the field manager and the event source


class StoreLeases:
    """The lock's Lease calls straight on the API server's store (in-process controllers)."""

    def __init__(self, stores: Stores, manager: str) -> None:
        self.leases = stores.get("coordination.k8s.io", "leases")
        self.opts = WriteOptions(field_manager=manager)

    async def get(self, namespace: str, name: str) -> Obj:
        return await self.leases.get(namespace, name)

    async def create(self, namespace: str, obj: Obj) -> Obj:
        return await self.leases.create(namespace, obj, self.opts)

    async def update(self, namespace: str, obj: Obj) -> Obj:
        out, _ = await self.leases.update(namespace, obj["metadata"]["name"], obj, self.opts)
        return out


class LeaderGroup:
    """Supervised components that run only while this server holds one Lease."""

    def __init__(self, supervisor: Supervisor, elector: LeaderElector,
                 components: list[tuple[str, Callable[[], Awaitable[None]]]]) -> None:
        self.supervisor = supervisor
        self.elector = elector
        self.components = components

    async def run(self) -> None:
        while True:  # a term ends when the lease is lost: campaign again
            await self.elector.run(self._lead)
            log.error("leaderelection lost: %s stopped its controllers and is a candidate again",
                      self.elector.lock.describe())

    async def _lead(self) -> None:
        started: list[str] = []
        try:
            for name, run in self.components:
                self.supervisor.add(name, run)
                started.append(name)
            await asyncio.Event().wait()
        finally:
            still = [n for n in started if n in self.supervisor.components]
            if still:  # (a server stopping may have stopped them already)
                await self.supervisor.stop(still)


def controller_manager(stores: Stores, supervisor: Supervisor, election: Election,
                       components: list[tuple[str, Callable[[], Awaitable[None]]]],
                       identity: str = "") -> LeaderGroup:
    """kube-controller-manager's election: its Lease, events from "kube-controller-manager", the
    lease kept at shutdown (it does not set ReleaseOnCancel)."""
    lock = LeaseLock(StoreLeases(stores, CONTROLLER_MANAGER), LEASE_NAMESPACE, CONTROLLER_MANAGER,
                     identity or new_identity(), recorder(stores, CONTROLLER_MANAGER))
    elector = LeaderElector(lock, election.lease_duration, election.renew_deadline, election.retry_period)
    return LeaderGroup(supervisor, elector, components)


__all__ = ["CONTROLLER_MANAGER", "LEASE_NAMESPACE", "Election", "LeaderGroup", "StoreLeases", "controller_manager"]
