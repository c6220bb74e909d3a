"""The EndpointSlice controller (pkg/controller/endpointslice, staging endpointslice/reconciler):
for every Service with a selector, EndpointSlices listing the pods it selects — addresses
(pod IPs), ready/serving/terminating conditions from the pods' readiness, targetRef,
nodeName, and the Service's ports resolved against the pods' container ports — at most 100
endpoints a slice, pods with other resolved ports in other slices.

The decisions are pure functions (:func:`desired_slices` and friends); the controller only
watches Services, pods and its slices and writes the difference.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from typing import Any

from kubelite.api import errors
from kubelite.api.meta import now_rfc3339
from kubelite.api.selectors import selector_from_set
from kubelite.apiserver.registry import DeleteOptions, WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.controllers import controller_utils as cu
from kubelite.controllers.base import WorkQueue, informer

log = logging.getLogger("kubelite.controllers.endpointslice")
Obj = dict[str, Any]

CONTROLLER_NAME = "endpointslice-controller.k8s.io"
COMPONENT = "endpointslice-controller"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
HEADLESS_LABEL = "service.kubernetes.io/headless"
TRIGGER_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
MAX_ENDPOINTS_PER_SLICE = 100  # --max-endpoints-per-slice
CONFLICT_RETRY = 0.1
STALE_SECONDS = 5.0  # how long a sync waits for the informer to show its own writes


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def selects(svc: Obj, pod: Obj) -> bool:
    sel = _d(svc.get("spec")).get("selector")
    if not isinstance(sel, dict) or not sel:
        return False
    return selector_from_set(sel).matches(_d(cu.meta(pod).get("labels")))


def should_be_in_endpoints(pod: Obj, include_terminating: bool) -> bool:
    """endpointutil.ShouldPodBeInEndpoints."""
    status = _d(pod.get("status"))
    if status.get("phase") in ("Succeeded", "Failed"):
        return False
    if not status.get("podIP"):
        return False
    return include_terminating or not cu.meta(pod).get("deletionTimestamp")


def find_port(pod: Obj, svc_port: dict[str, Any]) -> int | None:
    """podutil.FindPort: a numeric targetPort as it is, a named one from the containers' ports."""
    tp = svc_port.get("targetPort")
    if isinstance(tp, int) and not isinstance(tp, bool):
        return tp
    if isinstance(tp, str) and tp.isdigit():
        return int(tp)
    spec = _d(pod.get("spec"))
    containers = _l(spec.get("containers")) + [c for c in _l(spec.get("initContainers"))
                                                 if _d(c).get("restartPolicy") == "Always"]
    proto = svc_port.get("protocol") or "TCP"
    for c in containers:
        for p in _l(_d(c).get("ports")):
            p = _d(p)
            if p.get("name") == tp and (p.get("protocol") or "TCP") == proto:
                n = p.get("containerPort")
                return n if isinstance(n, int) else None
    return None


def endpoint_ports(svc: Obj, pod: Obj) -> list[Obj]:
    """getEndpointPorts."""
    out = []
    for sp in _l(_d(svc.get("spec")).get("ports")):
        sp = _d(sp)
        n = find_port(pod, sp)
        if n is None:
            continue
        port: Obj = {"name": sp.get("name") or "", "port": n, "protocol": sp.get("protocol") or "TCP"}
        if sp.get("appProtocol"):
            port["appProtocol"] = sp["appProtocol"]
        out.append(port)
    return out


def address_type(svc: Obj) -> str:
    fams = _l(_d(svc.get("spec")).get("ipFamilies"))
    return str(fams[0]) if fams else "IPv4"


def pod_address(pod: Obj, family: str) -> str:
    status = _d(pod.get("status"))
    ips = [str(_d(p).get("ip") or "") for p in _l(status.get("podIPs"))] or [str(status.get("podIP") or "")]
    for ip in ips:
        if (":" in ip) == (family == "IPv6") and ip:
            return ip
    return ""


def endpoint_for(svc: Obj, pod: Obj, family: str) -> Obj | None:
    """podToEndpoint."""
    ip = pod_address(pod, family)
    if not ip:
        return None
    spec = _d(svc.get("spec"))
    serving = cu.is_pod_ready(pod)
    terminating = bool(cu.meta(pod).get("deletionTimestamp"))
    ready = bool(spec.get("publishNotReadyAddresses")) or (serving and not terminating)
    m = cu.meta(pod)
    ep: Obj = {"addresses": [ip], "conditions": {"ready": ready, "serving": serving, "terminating": terminating}}
    pspec = _d(pod.get("spec"))
    if pspec.get("hostname") and pspec.get("subdomain") == cu.meta(svc).get("name"):
        ep["hostname"] = pspec["hostname"]
    ep["targetRef"] = {"kind": "Pod", "namespace": m.get("namespace", ""), "name": m.get("name", ""),
                       "uid": m.get("uid", "")}
    if pspec.get("nodeName"):
        ep["nodeName"] = pspec["nodeName"]
    return ep


def _ports_key(ports: list[Obj]) -> tuple[tuple[str, int, str, str], ...]:
    return tuple(sorted((str(p.get("name") or ""), int(p.get("port") or 0), str(p.get("protocol") or ""),
                         str(p.get("appProtocol") or "")) for p in ports))


def desired_slices(svc: Obj, pods: list[Obj], max_per_slice: int = MAX_ENDPOINTS_PER_SLICE
                   ) -> list[tuple[list[Obj], list[Obj]]]:
    """(ports, endpoints) of every slice the Service should have: pods grouped by their resolved
    ports, each group cut into slices of at most ``max_per_slice``; one empty slice when no pod
    is selected (upstream's placeholder)."""
    family = address_type(svc)
    groups: dict[tuple[Any, ...], tuple[list[Obj], list[Obj]]] = {}
    include_terminating = True
    for pod in sorted(pods, key=lambda p: str(cu.meta(p).get("name", ""))):
        if not selects(svc, pod) or not should_be_in_endpoints(pod, include_terminating):
            continue
        ep = endpoint_for(svc, pod, family)
        if ep is None:
            continue
        ports = endpoint_ports(svc, pod)
        groups.setdefault(_ports_key(ports), (ports, []))[1].append(ep)
    out: list[tuple[list[Obj], list[Obj]]] = []
    for ports, eps in groups.values():
        for i in range(0, len(eps), max_per_slice):
            out.append((ports, eps[i:i + max_per_slice]))
    return out or [([], [])]


def slice_labels(svc: Obj) -> dict[str, str]:
    """setEndpointSliceLabels: the Service's labels (but the reserved ones), the service name,
    the managing controller, and the headless marker."""
    labels = {k: str(v) for k, v in _d(cu.meta(svc).get("labels")).items()
              if k not in (SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL)}
    labels[SERVICE_NAME_LABEL] = cu.meta(svc).get("name", "")
    labels[MANAGED_BY_LABEL] = CONTROLLER_NAME
    if _d(svc.get("spec")).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    return labels


def new_slice(svc: Obj, ports: list[Obj], eps: list[Obj]) -> Obj:
    m = cu.meta(svc)
    ref = cu.new_controller_ref(svc, "v1", "Service")
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"generateName": f"{m.get('name', '')}-", "namespace": m.get("namespace", ""),
                         "labels": slice_labels(svc), "ownerReferences": [ref]},
            "addressType": address_type(svc), "endpoints": eps, "ports": ports or None}


def same_content(cur: Obj, ports: list[Obj], eps: list[Obj], labels: dict[str, str]) -> bool:
    return (_l(cur.get("endpoints")) == eps and (cur.get("ports") or []) == ports
            and _d(cu.meta(cur).get("labels")) == labels)


class ServicePodController:
    """What the EndpointSlice and Endpoints controllers share: Service and pod informers and
    the map from a pod event to the Services that select the pod."""

    name = COMPONENT

    def __init__(self, stores: Stores) -> None:
        self.services = stores.get("", "services")
        self.pods = stores.get("", "pods")
        self.opts = WriteOptions(field_manager=self.name)
        self.svc_informer = informer(self.services)
        self.pod_informer = informer(self.pods)
        self.queue = WorkQueue(self.name, self.sync)
        self.svc_informer.add_handler(self._on_service)
        self.pod_informer.add_handler(self._on_pod)

    def informers(self) -> list[Any]:
        return [self.svc_informer, self.pod_informer]

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for inf in self.informers():
                tg.create_task(inf.run())
            for inf in self.informers():
                await inf.wait_synced()
            for svc in self.svc_informer.list():
                self.queue.add(cu.key_of(svc))
            await self.queue.run()

    def _on_service(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        if obj is not None:
            self.queue.add(cu.key_of(obj))

    def _on_pod(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        if old is not None and new is not None and \
                cu.meta(old).get("resourceVersion") == cu.meta(new).get("resourceVersion"):
            return
        for pod in (old, new):
            if pod is None:
                continue
            for svc in self.svc_informer.list(cu.meta(pod).get("namespace", "")):
                if selects(svc, pod):
                    self.queue.add(cu.key_of(svc))

    async def sync(self, key: str) -> bool:
        try:
            await self._sync(key)
        except errors.StatusError as exc:
            causes = (exc.details or {}).get("causes") or []
            if any(_d(c).get("reason") == "NamespaceTerminating" for c in causes):
                return False  # the namespace goes, and its Services with it
            if exc.code not in (409, 404):
                raise
            log.debug("%s %s: %s; syncing again", self.name, key, exc.message)
            asyncio.get_running_loop().call_later(CONFLICT_RETRY, self.queue.add, key)
        return False

    async def _sync(self, key: str) -> None:
        raise NotImplementedError


class EndpointSliceController(ServicePodController):
    name = COMPONENT

    def __init__(self, stores: Stores, max_per_slice: int = MAX_ENDPOINTS_PER_SLICE) -> None:
        super().__init__(stores)
        self.slices = stores.get("discovery.k8s.io", "endpointslices")
        self.max_per_slice = max_per_slice
        self.slice_informer = informer(self.slices)
        self.slice_informer.add_index("service", self._slice_service_index)
        self.slice_informer.add_handler(self._on_slice)
        # endpointSliceTracker: the writes of a Service's last sync that the informer has not
        # shown yet (slice name -> resourceVersion written, "" for a deletion); a sync waits for
        # them, or it would act on stale slices (and, say, create a second placeholder)
        self._written: dict[str, dict[str, tuple[str, float]]] = {}

    def informers(self) -> list[Any]:
        return [*super().informers(), self.slice_informer]

    @staticmethod
    def _slice_service_index(s: Obj) -> list[str]:
        labels = _d(cu.meta(s).get("labels"))
        if labels.get(MANAGED_BY_LABEL) != CONTROLLER_NAME or SERVICE_NAME_LABEL not in labels:
            return []
        return [f"{cu.meta(s).get('namespace', '')}/{labels[SERVICE_NAME_LABEL]}"]

    def _on_slice(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        if obj is None:
            return
        for key in self._slice_service_index(obj):
            self.queue.add(key)

    def _stale(self, key: str, ns: str) -> bool:
        written = self._written.get(key)
        if not written:
            return False
        now = time.monotonic()
        for name, (rv, at) in list(written.items()):
            seen = self.slice_informer.get(ns, name)
            if rv == "" and seen is None or rv and seen is not None and int(
                    cu.meta(seen).get("resourceVersion") or 0) >= int(rv) or now - at > STALE_SECONDS:
                del written[name]
        if not written:
            del self._written[key]
            return False
        return True

    async def _sync(self, key: str) -> None:
        ns, name = cu.split_key(key)
        if self._stale(key, ns):
            asyncio.get_running_loop().call_later(0.05, self.queue.add, key)
            return
        svc = self.svc_informer.get(ns, name)
        existing = sorted(self.slice_informer.by_index("service", key), key=lambda s: cu.meta(s).get("name", ""))
        if svc is None or _d(svc.get("spec")).get("type") == "ExternalName":
            for s in existing:  # owned slices also go with the Service through the garbage collector
                await self._delete(s)
            return
        if not isinstance(_d(svc.get("spec")).get("selector"), dict) or not svc["spec"]["selector"]:
            return  # slices of a Service without a selector are written by its owner
        labels = slice_labels(svc)
        family = address_type(svc)
        wanted = desired_slices(svc, self.pod_informer.list(ns), self.max_per_slice)
        pool: dict[tuple[Any, ...], list[Obj]] = {}
        for s in existing:
            if s.get("addressType") == family:
                pool.setdefault(_ports_key(_l(s.get("ports"))), []).append(s)
            else:
                await self._delete(s)
        for ports, eps in wanted:
            candidates = pool.get(_ports_key(ports)) or []
            if candidates:
                cur = candidates.pop(0)
                if not same_content(cur, ports, eps, labels):
                    await self._update(cur, svc, ports, eps, labels)
                continue
            # a slice of other ports is reused before a new one is made (fewer writes)
            spare = next((lst for lst in pool.values() if lst), None)
            if spare:
                await self._update(spare.pop(0), svc, ports, eps, labels)
            else:
                obj = new_slice(svc, ports, eps)
                obj["metadata"]["annotations"] = {TRIGGER_ANNOTATION: now_rfc3339()}
                made = await self.slices.create(ns, obj, self.opts)
                self._wrote(svc, made)
        for lst in pool.values():
            for s in lst:
                await self._delete(s)

    async def _update(self, cur: Obj, svc: Obj, ports: list[Obj], eps: list[Obj], labels: dict[str, str]) -> None:
        new = copy.deepcopy(cur)
        new["endpoints"] = eps
        new["ports"] = ports or None
        new["metadata"]["labels"] = labels
        new["metadata"].setdefault("annotations", {})[TRIGGER_ANNOTATION] = now_rfc3339()
        m = cu.meta(cur)
        out, _ = await self.slices.update(m.get("namespace", ""), m.get("name", ""), new, self.opts)
        self._wrote(svc, out)

    def _wrote(self, svc: Obj, slice_: Obj, deleted: bool = False) -> None:
        m = cu.meta(slice_)
        rv = "" if deleted else str(m.get("resourceVersion") or "0")
        self._written.setdefault(cu.key_of(svc), {})[m.get("name", "")] = (rv, time.monotonic())

    async def _delete(self, s: Obj) -> None:
        m = cu.meta(s)
        try:
            await self.slices.delete(m.get("namespace", ""), m.get("name", ""), DeleteOptions())
        except errors.StatusError as exc:
            if exc.code != 404:
                raise
        labels = _d(m.get("labels"))
        if SERVICE_NAME_LABEL in labels:
            key = f"{m.get('namespace', '')}/{labels[SERVICE_NAME_LABEL]}"
            self._written.setdefault(key, {})[m.get("name", "")] = ("", time.monotonic())


__all__ = ["EndpointSliceController", "ServicePodController", "desired_slices", "endpoint_for", "find_port"]
