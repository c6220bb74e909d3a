"""Pod resource allocation and in-place resize, as the kubelet's allocation manager
(pkg/kubelet/allocation), the resize half of kuberuntime_manager.go and the resize conditions
of status_manager.go.

Four states of a container's resources, moved along in this order:

* desired: ``spec.containers[i].resources`` (changed through ``pods/resize``);
* allocated: what the agent admitted — checkpointed in ``<data dir>/allocated_pods_state.json``
  with the acknowledged ones, reported (requests) as ``containerStatuses[i].allocatedResources``;
  containers (re)start with these;
* acknowledged: what was last sent to the runtime for a container (CreateContainer or
  UpdateContainerResources);
* actual: read back from the container's cgroup, reported as ``containerStatuses[i].resources``.

A resize that does not fit the node at all is ``Infeasible``, one that does not fit next to the
other pods now is ``Deferred`` (condition ``PodResizePending``, retried on every sync); an
admitted one is ``PodResizeInProgress`` until every running container has been updated —
without a restart where the container's ``resizePolicy`` is ``NotRequired`` (the default), by
restarting it where a changed resource says ``RestartContainer``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

from kubelite.agent.cgroups import ResourceConfig
from kubelite.api.quantity import format_quantity, parse_quantity
from kubelite.kinds.podutil import pod_requests

log = logging.getLogger("kubelite.agent.allocation")
Obj = dict[str, Any]

STATE_FILE = "allocated_pods_state.json"
PENDING = "PodResizePending"
IN_PROGRESS = "PodResizeInProgress"
DEFERRED = "Deferred"
INFEASIBLE = "Infeasible"
ERROR = "Error"
RESIZABLE = ("cpu", "memory")
# event reasons (pkg/kubelet/events)
RESIZE_STARTED = "ResizeStarted"
RESIZE_COMPLETED = "ResizeCompleted"
RESIZE_ERROR = "ResizeError"
RESIZE_DEFERRED = "ResizeDeferred"
RESIZE_INFEASIBLE = "ResizeInfeasible"


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def resizable_containers(pod: Obj) -> list[tuple[str, Obj]]:
    """(kind, container) of the containers that have an allocation: app containers and
    sidecars (restartable init containers)."""
    spec = _d(pod.get("spec"))
    out = [("initContainers", c) for c in spec.get("initContainers") or [] if _d(c).get("restartPolicy") == "Always"]
    return out + [("containers", c) for c in spec.get("containers") or []]


def resources_of(c: Obj) -> Obj:
    """A container's resources as the allocation keeps them (limits and requests only)."""
    r = _d(c.get("resources"))
    return {k: dict(r[k]) for k in ("limits", "requests") if isinstance(r.get(k), dict) and r[k]}


def same_resources(a: Obj | None, b: Obj | None) -> bool:
    """Semantic equality: 0.5 and 500m are the same cpu."""
    def norm(r: Obj | None) -> dict[str, dict[str, Decimal]]:
        out: dict[str, dict[str, Decimal]] = {}
        for k, rl in _d(r).items():
            vals = {}
            for name, q in _d(rl).items():
                try:
                    vals[name] = parse_quantity(q)
                except (ValueError, TypeError):
                    vals[name] = Decimal(-1)
            if vals:
                out[k] = vals
        return out
    return norm(a) == norm(b)


def resize_policy(c: Obj, resource: str) -> str:
    for p in c.get("resizePolicy") or []:
        if _d(p).get("resourceName") == resource:
            return str(_d(p).get("restartPolicy") or "NotRequired")
    return "NotRequired"


def changed_resources(old: Obj | None, new: Obj | None) -> list[str]:
    """The resizable resources whose request or limit differ."""
    out = []
    for name in RESIZABLE:
        for key in ("requests", "limits"):
            a, b = _d(_d(old).get(key)).get(name), _d(_d(new).get(key)).get(name)
            if not same_resources({key: {name: a}} if a is not None else {}, {key: {name: b}} if b is not None else {}):
                out.append(name)
                break
    return out


def needs_restart(c: Obj, old: Obj | None, new: Obj | None) -> bool:
    """RestartContainer takes precedence over NotRequired when both resources change."""
    return any(resize_policy(c, r) == "RestartContainer" for r in changed_resources(old, new))


# ------------------------------------------------------------------------------------------ decision
def check_resize(pod: Obj, others: Iterable[Obj], allocatable: dict[str, str]) -> tuple[str, str]:
    """Whether the desired resources can be allocated: ("", "") when they can, else
    (Infeasible, message) when the node could never hold them, or (Deferred, message) when the
    other pods' allocations leave too little now (the kubelet's canResizePod / predicate)."""
    want = pod_requests(pod)

    def cap(name: str) -> int:
        q = allocatable.get(name)
        if q is None:
            return 0
        v = parse_quantity(q)
        return int(v * 1000) if name == "cpu" else int(v)

    def req(reqs: dict[str, Decimal], name: str) -> int:
        v = reqs.get(name, Decimal(0))
        return int((v * 1000).to_integral_value(rounding="ROUND_CEILING")) if name == "cpu" else int(v)

    cpu_req, mem_req = req(want, "cpu"), req(want, "memory")
    if mem_req > cap("memory") or cpu_req > cap("cpu"):
        if mem_req > cap("memory"):
            detail = f"memory, requested: {mem_req}, capacity: {cap('memory')}"
        else:
            detail = f"cpu, requested: {cpu_req}, capacity: {cap('cpu')}"
        return INFEASIBLE, "Node didn't have enough capacity: " + detail
    used = {"cpu": 0, "memory": 0}
    for p in others:
        r = pod_requests(p)
        for name in used:
            used[name] += req(r, name)
    for name, asked in (("cpu", cpu_req), ("memory", mem_req)):
        if asked and used[name] + asked > cap(name):
            return DEFERRED, (f"Node didn't have enough resource: {name}, requested: {asked}, used: {used[name]}, "
                              f"capacity: {cap(name)}")
    return "", ""


def resize_message(prefix: str, pod: Obj, generation: int, error: str = "") -> str:
    """podResizeMessage: the prefix and a JSON summary of the pod's resources."""
    summary: Obj = {}
    for kind, c in resizable_containers(pod):
        res = {k: dict(sorted(v.items())) for k, v in resources_of(c).items()}  # Go sorts map keys
        summary.setdefault(kind, []).append({"name": c.get("name", ""), "resources": res})
    body: Obj = {k: summary[k] for k in ("initContainers", "containers") if k in summary}
    body["generation"] = generation
    if error:
        body["error"] = error
    return f"{prefix}: {json.dumps(body, separators=(',', ':'), sort_keys=False)}"


# ------------------------------------------------------------------------------------------ actual
def actual_resources(allocated: Obj, cfg: ResourceConfig | None) -> Obj:
    """convertContainerStatusResources for a running container: the allocation, with the cpu
    limit, cpu request and memory limit the cgroup has."""
    out = copy.deepcopy(allocated)
    if cfg is None:
        return out
    limits, requests = out.get("limits"), out.get("requests")
    if limits is not None:
        if cfg.cpu_quota is not None and cfg.cpu_quota > 0 and cfg.cpu_period:
            limits["cpu"] = format_quantity(Decimal(cfg.cpu_quota * 1000 // cfg.cpu_period) / 1000, "DecimalSI")
        if cfg.memory_limit is not None and cfg.memory_limit > 0:
            limits["memory"] = format_quantity(cfg.memory_limit, "BinarySI")
    if requests is not None and cfg.cpu_shares is not None and cfg.cpu_shares >= 2 and "cpu" in requests:
        milli = -(-cfg.cpu_shares * 1000 // 1024)  # sharesToMilliCPU rounds up
        requests["cpu"] = format_quantity(Decimal(milli) / 1000, "DecimalSI")
    return out


# ------------------------------------------------------------------------------------------ state
class AllocationManager:
    """The allocation and acknowledged-resources checkpoint."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._pods: dict[str, dict[str, Obj]] = {}  # pod uid -> container name -> resources
        self._acked: dict[str, Obj] = {}  # container id -> resources sent to the runtime
        self.errors: dict[str, str] = {}  # pod uid -> the last error actuating its resize
        if path is not None:
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(path.read_text())
                self._pods = {str(k): dict(v) for k, v in _d(data.get("pods")).items()}
                self._acked = {str(k): dict(v) for k, v in _d(data.get("acknowledged")).items()}

    def _save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps({"pods": self._pods, "acknowledged": self._acked}))
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("could not write the allocation checkpoint %s: %s", self.path, exc)

    def is_allocated(self, uid: str) -> bool:
        return uid in self._pods

    def set_allocated(self, pod: Obj) -> None:
        """SetAllocatedResources: the pod's current spec is what it is allocated."""
        self._pods[pod["metadata"]["uid"]] = {c["name"]: resources_of(c) for _, c in resizable_containers(pod)}
        self._save()

    def allocation(self, uid: str, name: str) -> Obj | None:
        return self._pods.get(uid, {}).get(name)

    def allocated_pod(self, pod: Obj) -> Obj:
        """UpdatePodFromAllocation: the pod with its allocated resources (a copy when they
        differ from the spec's, else the pod itself)."""
        alloc = self._pods.get(pod["metadata"]["uid"])
        if not alloc:
            return pod
        differs = [(k, c["name"]) for k, c in resizable_containers(pod)
                   if c["name"] in alloc and not same_resources(resources_of(c), alloc[c["name"]])]
        if not differs:
            return pod
        out = copy.deepcopy(pod)
        for kind, c in resizable_containers(out):
            if (kind, c["name"]) in differs:
                c["resources"] = {**_d(c.get("resources")), **copy.deepcopy(alloc[c["name"]])}
                for k in ("limits", "requests"):
                    if k not in alloc[c["name"]]:
                        c["resources"].pop(k, None)
        return out

    def resize_pending(self, pod: Obj) -> bool:
        """Desired != allocated."""
        return self.allocated_pod(pod) is not pod

    def acknowledge(self, container_id: str, resources: Obj) -> None:
        self._acked[container_id] = copy.deepcopy(resources)
        self._save()

    def acknowledged(self, container_id: str) -> Obj | None:
        return self._acked.get(container_id)

    def remove(self, uid: str, container_ids: Iterable[str] = ()) -> None:
        changed = self._pods.pop(uid, None) is not None
        for cid in container_ids:
            changed = self._acked.pop(cid, None) is not None or changed
        if changed:
            self._save()

    def retain(self, uids: set[str], container_ids: set[str]) -> None:
        """RemoveOrphanedPods: forget pods and containers that are gone."""
        gone = [u for u in self._pods if u not in uids]
        dead = [c for c in self._acked if c not in container_ids]
        for u in gone:
            del self._pods[u]
        for c in dead:
            del self._acked[c]
        if gone or dead:
            self._save()
