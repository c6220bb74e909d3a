"""The Endpoints controller (pkg/controller/endpoint): the legacy v1 Endpoints of every Service
with a selector, named as the Service — ready pods in ``addresses``, the others in
``notReadyAddresses`` (all in ``addresses`` with publishNotReadyAddresses), terminating pods
left out unless published, one subset per set of resolved ports."""

from __future__ import annotations

import copy
from typing import Any

from kubelite.api import errors
from kubelite.api.meta import now_rfc3339
from kubelite.apiserver.registry import DeleteOptions
from kubelite.apiserver.stores import Stores
from kubelite.controllers import controller_utils as cu
from kubelite.controllers.endpointslice import (
    HEADLESS_LABEL,
    TRIGGER_ANNOTATION,
    ServicePodController,
    endpoint_ports,
    pod_address,
    selects,
    should_be_in_endpoints,
)

Obj = dict[str, Any]
COMPONENT = "endpoint-controller"
MAX_CAPACITY = 1000  # maxCapacity: addresses an Endpoints object holds at most
OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def address_count(subsets: list[Obj]) -> int:
    return sum(len(s.get("addresses") or []) + len(s.get("notReadyAddresses") or []) for s in subsets)


def desired_subsets(svc: Obj, pods: list[Obj], capacity: int = MAX_CAPACITY) -> list[Obj]:
    """The subsets of a Service's Endpoints (repacked: one per distinct port list), at most
    ``capacity`` addresses (ready ones first, as upstream truncates)."""
    spec = _d(svc.get("spec"))
    publish = bool(spec.get("publishNotReadyAddresses"))
    family = (spec.get("ipFamilies") or ["IPv4"])[0]
    groups: dict[str, tuple[list[Obj], list[Obj], list[Obj]]] = {}
    for pod in pods:
        if not selects(svc, pod) or not should_be_in_endpoints(pod, publish):
            continue
        ip = pod_address(pod, family)
        if not ip:
            continue
        m = cu.meta(pod)
        addr: Obj = {"ip": ip}
        pspec = _d(pod.get("spec"))
        if pspec.get("hostname") and pspec.get("subdomain") == cu.meta(svc).get("name"):
            addr["hostname"] = pspec["hostname"]
        if pspec.get("nodeName"):
            addr["nodeName"] = pspec["nodeName"]
        addr["targetRef"] = {"kind": "Pod", "namespace": m.get("namespace", ""), "name": m.get("name", ""),
                             "uid": m.get("uid", "")}
        ports = [{k: v for k, v in p.items() if k != "appProtocol" or v} for p in endpoint_ports(svc, pod)]
        if not ports and spec.get("ports"):
            continue  # no port of this pod resolves: nothing to reach it on
        for p in ports:
            if not p.get("name"):
                p.pop("name", None)
        key = repr(sorted((str(p.get("name", "")), p["port"], p["protocol"]) for p in ports))
        g = groups.setdefault(key, (sorted(ports, key=lambda p: str(p.get("name", ""))), [], []))
        (g[1] if publish or cu.is_pod_ready(pod) else g[2]).append(addr)
    out = []
    room = capacity
    for ports, ready, not_ready in groups.values():
        ready, not_ready = ready[:room], not_ready[:max(0, room - len(ready))]
        room -= len(ready) + len(not_ready)
        if not ready and not not_ready:
            continue
        subset: Obj = {}
        if ready:
            subset["addresses"] = sorted(ready, key=lambda a: (a["ip"], a["targetRef"]["uid"]))
        if not_ready:
            subset["notReadyAddresses"] = sorted(not_ready, key=lambda a: (a["ip"], a["targetRef"]["uid"]))
        if ports:
            subset["ports"] = ports
        out.append(subset)
    return out


def endpoints_labels(svc: Obj) -> dict[str, str]:
    labels = {k: str(v) for k, v in _d(cu.meta(svc).get("labels")).items() if k != HEADLESS_LABEL}
    if _d(svc.get("spec")).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    return labels


class EndpointsController(ServicePodController):
    name = COMPONENT

    def __init__(self, stores: Stores) -> None:
        super().__init__(stores)
        self.endpoints = stores.get("", "endpoints")

    async def _sync(self, key: str) -> None:
        ns, name = cu.split_key(key)
        svc = self.svc_informer.get(ns, name)
        if svc is None:
            try:  # the Endpoints of a deleted Service go with it
                await self.endpoints.delete(ns, name, DeleteOptions())
            except errors.StatusError as exc:
                if exc.code != 404:
                    raise
            return
        sel = _d(svc.get("spec")).get("selector")
        if not isinstance(sel, dict) or not sel:
            return  # Endpoints of a Service without a selector are its owner's
        pods = self.pod_informer.list(ns)
        subsets = desired_subsets(svc, pods)
        labels = endpoints_labels(svc)
        truncated = address_count(subsets) >= MAX_CAPACITY and \
            address_count(desired_subsets(svc, pods, MAX_CAPACITY + 1)) > MAX_CAPACITY
        try:
            cur = await self.endpoints.get(ns, name)
        except errors.StatusError as exc:
            if exc.code != 404:
                raise
            annotations = {TRIGGER_ANNOTATION: now_rfc3339()}
            if truncated:
                annotations[OVER_CAPACITY] = "truncated"
            obj: Obj = {"apiVersion": "v1", "kind": "Endpoints",
                        "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": annotations}}
            if subsets:
                obj["subsets"] = subsets
            await self.endpoints.create(ns, obj, self.opts)
            return
        over = _d(cu.meta(cur).get("annotations")).get(OVER_CAPACITY) == "truncated"
        if (cur.get("subsets") or []) == subsets and _d(cu.meta(cur).get("labels")) == labels and over == truncated:
            return
        new = copy.deepcopy(cur)
        if subsets:
            new["subsets"] = subsets
        else:
            new.pop("subsets", None)
        new["metadata"]["labels"] = labels
        annotations = new["metadata"].setdefault("annotations", {})
        annotations[TRIGGER_ANNOTATION] = now_rfc3339()
        if truncated:
            annotations[OVER_CAPACITY] = "truncated"
        else:
            annotations.pop(OVER_CAPACITY, None)
        await self.endpoints.update(ns, name, new, self.opts)


__all__ = ["EndpointsController", "desired_subsets"]
