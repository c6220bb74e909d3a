"""The Service store (pkg/registry/core/service/storage): the generic store plus ClusterIP and
NodePort allocation around every write, as upstream's BeginCreate / BeginUpdate / AfterDelete
hooks with their transactions — what a failed write allocated is released, what a deleted
Service (or a type change) no longer holds is released, so nothing leaks.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubelite.api import errors
from kubelite.api import field as f
from kubelite.api.field import Path
from kubelite.apiserver.registry import DeleteOptions, ListOptions, ResourceStore, WriteOptions
from kubelite.kinds.base import Kind, Obj
from kubelite.kinds.service_alloc import AllocationError, NodePorts, PortError, ServiceIPs
from kubelite.kinds.services import (
    init_ip_families,
    is_headless,
    needs_health_check,
    needs_node_ports,
    spec_of,
)
from kubelite.store.base import KV, Store

log = logging.getLogger("kubelite.services")
# k3s's --service-cidr default (kube-apiserver's --service-cluster-ip-range defaults to 10.96.0.0/12)
DEFAULT_SERVICE_CIDR = "10.43.0.0/16"
DEFAULT_NODE_PORT_RANGE = "30000-32767"


@dataclass
class Holdings:
    ips: list[str] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.ips or self.ports)


def holdings(svc: Obj | None) -> Holdings:
    """The ClusterIPs and NodePorts a stored Service holds."""
    if not svc:
        return Holdings()
    spec = spec_of(svc)
    h = Holdings()
    if spec.get("type") != "ExternalName":
        h.ips = [str(ip) for ip in spec.get("clusterIPs") or [] if ip and ip != "None"]
    for p in spec.get("ports") or []:
        np = p.get("nodePort") if isinstance(p, dict) else None
        if isinstance(np, int) and not isinstance(np, bool) and np:
            h.ports.append(np)
    hc = spec.get("healthCheckNodePort")
    if isinstance(hc, int) and not isinstance(hc, bool) and hc:
        h.ports.append(hc)
    return h


def _minus(a: Holdings, b: Holdings) -> Holdings:
    return Holdings([ip for ip in a.ips if ip not in b.ips], [p for p in a.ports if p not in b.ports])


def patch_allocated_values(new: Obj, old: Obj) -> None:
    """patchAllocatedValues: an update that leaves out allocated values keeps them."""
    spec, ospec = spec_of(new), spec_of(old)
    if not isinstance(new.get("spec"), dict):
        return
    both_ip = "ExternalName" not in (spec.get("type"), ospec.get("type"))
    if both_ip and not spec.get("clusterIP") and ospec.get("clusterIP"):
        spec["clusterIP"] = ospec["clusterIP"]
        spec["clusterIPs"] = copy.deepcopy(ospec.get("clusterIPs") or [ospec["clusterIP"]])
    if needs_node_ports(old) and needs_node_ports(new):
        used = {(str(p.get("protocol")), p.get("port")): p.get("nodePort") for p in ospec.get("ports") or []
                if isinstance(p, dict) and p.get("nodePort")}
        for p in spec.get("ports") or []:
            if isinstance(p, dict) and not p.get("nodePort"):
                np = used.get((str(p.get("protocol")), p.get("port")))
                if np:
                    p["nodePort"] = np
    if needs_health_check(old) and needs_health_check(new) and not spec.get("healthCheckNodePort"):
        if ospec.get("healthCheckNodePort"):
            spec["healthCheckNodePort"] = ospec["healthCheckNodePort"]


class _Need(Exception):
    """Raised from inside an update's mutation: allocate these, then try again."""

    def __init__(self) -> None:
        super().__init__("allocation needed")
        self.static_ip = ""
        self.dynamic_ip = False
        self.static_ports: list[tuple[Path, int]] = []
        self.dynamic_ports = 0

    def any(self) -> bool:
        return bool(self.static_ip or self.dynamic_ip or self.static_ports or self.dynamic_ports)


@dataclass
class _Held:
    """What one update allocated so far."""

    dynamic_ip: str = ""
    static_ips: list[str] = field(default_factory=list)
    dynamic_ports: list[int] = field(default_factory=list)
    static_ports: list[int] = field(default_factory=list)
    last_old: Obj | None = None

    def all(self) -> Holdings:
        return Holdings(([self.dynamic_ip] if self.dynamic_ip else []) + self.static_ips,
                        self.dynamic_ports + self.static_ports)


class ServiceStore(ResourceStore):
    def __init__(self, kind: Kind, store: Store, storage_kind: Kind | None = None) -> None:
        super().__init__(kind, store, storage_kind)
        self.ips = ServiceIPs(store, DEFAULT_SERVICE_CIDR)
        self.node_ports = NodePorts(store, DEFAULT_NODE_PORT_RANGE)

    def configure(self, service_cidr: str, node_port_range: str) -> None:
        self.ips = ServiceIPs(self.store, service_cidr)
        self.node_ports = NodePorts(self.store, node_port_range)

    async def repair(self, free_leaks: bool = True) -> None:
        """Rebuild both bitmaps from the stored Services (upstream's repair controllers, run
        before the API serves): what a crash left allocated without a Service is freed. With
        other servers on the datastore (``free_leaks=False``) only what Services hold is marked,
        since another server's create may be between its allocation and its write."""
        items, _, _, _ = await self.list("", ListOptions())
        ips: list[str] = []
        ports: list[int] = []
        for svc in items:
            h = holdings(svc)
            ips += h.ips
            ports += h.ports
        if not free_leaks:
            ips += await self.ips.allocated()
            ports += await self.node_ports.allocated()
        await self.ips.rebuild(ips)
        await self.node_ports.rebuild(ports)

    # ------------------------------------------------------------------ allocation
    def _invalid_ip(self, name: str, ips: list[str], ip: str, exc: Exception) -> errors.StatusError:
        return self.invalid(name, [f.invalid(Path("spec", "clusterIPs"), ips, f"failed to allocate IP {ip}: {exc}")])

    async def _release(self, h: Holdings) -> None:
        try:
            await self.ips.release(h.ips)
            await self.node_ports.release(h.ports)
        except Exception:  # the repair at the next start frees them
            log.exception("releasing %s failed", h)

    def _needs(self, new: Obj, old: Obj | None, held: _Held, name: str) -> _Need:
        """What ``new`` needs allocated beyond what ``old`` holds and this write holds; fills in
        the values already allocated for it."""
        spec = new["spec"]
        have = holdings(old)
        have_ips = set(have.ips) | set(held.static_ips)
        have_ports = set(have.ports) | set(held.static_ports)
        need = _Need()
        if spec.get("type") != "ExternalName" and not is_headless(new):
            ips = spec.get("clusterIPs") or []
            if not ips:
                if held.dynamic_ip:
                    spec["clusterIP"] = held.dynamic_ip
                    spec["clusterIPs"] = [held.dynamic_ip]
                else:
                    need.dynamic_ip = True
            elif ips[0] not in have_ips:
                need.static_ip = str(ips[0])
        free = list(held.dynamic_ports)
        if needs_node_ports(new):
            for i, p in enumerate(spec.get("ports") or []):
                if not isinstance(p, dict):
                    continue
                np = p.get("nodePort")
                if isinstance(np, int) and not isinstance(np, bool) and np:
                    if np not in have_ports:
                        need.static_ports.append((Path("spec", "ports").index(i).child("nodePort"), np))
                elif free:
                    p["nodePort"] = free.pop(0)
                else:
                    need.dynamic_ports += 1
        if needs_health_check(new):
            hc = spec.get("healthCheckNodePort")
            if isinstance(hc, int) and not isinstance(hc, bool) and hc:
                if hc not in have_ports:
                    need.static_ports.append((Path("spec", "healthCheckNodePort"), hc))
            elif free:
                spec["healthCheckNodePort"] = free.pop(0)
            else:
                need.dynamic_ports += 1
        return need

    async def _allocate(self, name: str, new: Obj, need: _Need, held: _Held, dry_run: bool) -> None:
        spec = new["spec"]
        if need.dynamic_ip:
            try:
                held.dynamic_ip = await self.ips.allocate("", dry_run)
            except AllocationError as exc:
                raise errors.internal(f"failed to allocate a serviceIP: {exc}") from exc
        if need.static_ip:
            try:
                held.static_ips.append(await self.ips.allocate(need.static_ip, dry_run))
            except AllocationError as exc:
                raise self._invalid_ip(name, list(spec.get("clusterIPs") or []), need.static_ip, exc) from exc
        if need.static_ports or need.dynamic_ports:
            wanted = [p for _, p in need.static_ports]
            try:
                held.dynamic_ports += await self.node_ports.allocate(wanted, need.dynamic_ports, dry_run)
            except PortError as exc:
                path, port = need.static_ports[exc.index]
                if str(path).endswith("healthCheckNodePort"):
                    raise errors.internal(f"failed to allocate requested HealthCheck NodePort {port}: {exc}") from exc
                raise self.invalid(name, [f.invalid(path, port, str(exc))]) from exc
            except AllocationError as exc:
                raise errors.internal(f"failed to allocate a nodePort: {exc}") from exc
            held.static_ports += wanted

    async def _prepare(self, name: str, new: Obj, old: Obj | None, held: _Held, dry_run: bool) -> None:
        """Allocate everything ``new`` needs (create: old is None)."""
        errs = init_ip_families(new, self.ips.family)
        if errs:
            raise self.invalid(name, errs)
        need = self._needs(new, old, held, name)
        if need.any():
            await self._allocate(name, new, need, held, dry_run)
            self._needs(new, old, held, name)

    # ------------------------------------------------------------------ writes
    async def create(self, namespace: str, obj: Obj, opts: WriteOptions) -> Obj:
        self._check_meta_kind(obj)
        if not isinstance(obj.get("spec"), dict):
            return await super().create(namespace, obj, opts)
        self.strategy.default(obj)
        held = _Held()
        try:
            await self._prepare(obj["metadata"].get("name", ""), obj, None, held, opts.dry_run)
            return await super().create(namespace, obj, opts)
        except BaseException:
            if not opts.dry_run:
                await self._release(held.all())
            raise

    async def _guaranteed_update(self, key: str, name: str, kv: KV, mutate: Callable[[Obj], Obj],
                                 opts: WriteOptions, subresource: str, expected: int,
                                 patch: bool = False) -> tuple[Obj, bool]:
        if subresource:
            return await super()._guaranteed_update(key, name, kv, mutate, opts, subresource, expected, patch)
        held = _Held()

        def with_allocations(old: Obj) -> Obj:
            new = mutate(old)
            held.last_old = old
            if not isinstance(new, dict) or not isinstance(new.get("spec"), dict):
                return new
            self.strategy.default(new)
            self.strategy.prepare_for_update(new, old)
            patch_allocated_values(new, old)
            errs = init_ip_families(new, self.ips.family)
            if errs:
                raise self.invalid(name, errs)
            need = self._needs(new, old, held, name)
            if need.any():
                need_obj[0] = new
                raise need
            return new

        need_obj: list[Obj] = [{}]
        try:
            for _ in range(8):
                try:
                    out, created = await super()._guaranteed_update(key, name, kv, with_allocations, opts,
                                                                    subresource, expected, patch)
                except _Need as need:
                    await self._allocate(name, need_obj[0], need, held, opts.dry_run)
                    fresh = await self.store.get(key)
                    if fresh is None:
                        raise self.not_found(name) from None
                    kv = fresh
                    continue
                break
            else:
                raise self.conflict(name, "the object is being modified too often; please try again")
        except BaseException:
            if not opts.dry_run:
                await self._release(held.all())
            raise
        if not opts.dry_run:
            now = holdings(out) if not self._gone(out) else Holdings()
            await self._release(_minus(held.all(), now))
            await self._release(_minus(holdings(held.last_old), now))
        return out, created

    def _gone(self, obj: Obj) -> bool:
        """Whether an update deleted the object (its last finalizer removed)."""
        return self._should_delete_during_update(obj)

    async def delete(self, namespace: str, name: str, opts: DeleteOptions) -> tuple[Obj, bool]:
        obj, deleted = await super().delete(namespace, name, opts)
        if deleted and not opts.dry_run:
            await self._release(holdings(obj))
        return obj, deleted


def configure(stores: Any, service_cidr: str, node_port_range: str) -> ServiceStore:
    """Point the Service store at the server's ranges (--service-cidr, --service-node-port-range)."""
    store = stores.get("", "services")
    if not isinstance(store, ServiceStore):
        raise TypeError("the services store does not allocate ClusterIPs")
    store.configure(service_cidr, node_port_range)
    return store


__all__ = ["DEFAULT_NODE_PORT_RANGE", "DEFAULT_SERVICE_CIDR", "Holdings", "ServiceStore", "configure", "holdings",
           "patch_allocated_values"]
