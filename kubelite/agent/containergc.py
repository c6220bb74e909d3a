"""Garbage collection of dead containers and sandboxes (the kubelet's containerGC,
pkg/kubelet/kuberuntime/kuberuntime_gc.go), for pods that still exist.

The selection is pure (lists of :class:`ContainerState` / :class:`SandboxState` in, the ones
to remove out); :meth:`kubelite.agent.runtime.RuntimeManager.garbage_collect` does the CRI
calls and removes the log files.

Defaults are the kubelet's: ``MinAge`` 0 (``--minimum-container-ttl-duration``),
``MaxPerPodContainer`` 1 (``--maximum-dead-containers-per-container``), ``MaxContainers`` -1
(``--maximum-dead-containers``, no limit). Unlike the kubelet only *exited* containers are
evictable here: a ``created`` container is the one a sync pass is about to start.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from kubelite.agent.crispec import ContainerState, PodRuntime, SandboxState

CONTAINER_GC_PERIOD = 60.0  # ContainerGCPeriod in kubelet.go


@dataclass(frozen=True)
class GCPolicy:
    min_age: float = 0.0
    max_per_pod_container: int = 1
    max_containers: int = -1


DEFAULT_POLICY = GCPolicy()


def _newest_first(cs: Iterable[ContainerState]) -> list[ContainerState]:
    return sorted(cs, key=lambda c: (c.created_at, c.attempt, c.id), reverse=True)


def evictable_units(pods: Mapping[str, Iterable[ContainerState]], now: float,
                    policy: GCPolicy = DEFAULT_POLICY) -> dict[tuple[str, str], list[ContainerState]]:
    """evictableContainers: the exited containers older than MinAge, per (pod uid, container
    name), newest first. Running, created and unknown containers are never in it."""
    units: dict[tuple[str, str], list[ContainerState]] = {}
    for uid, containers in pods.items():
        for c in containers:
            if c.state != "exited":
                continue
            if policy.min_age > 0 and c.created_at and now - c.created_at < policy.min_age:
                continue
            units.setdefault((uid, c.name), []).append(c)
    return {k: _newest_first(v) for k, v in units.items()}


def select_containers(pods: Mapping[str, Iterable[ContainerState]], now: float,
                      policy: GCPolicy = DEFAULT_POLICY) -> list[tuple[str, ContainerState]]:
    """The (pod uid, container) pairs to remove: in each (pod, container name) unit all
    exited containers but the ``max_per_pod_container`` newest; then, if ``max_containers``
    is set, the oldest of what is left until at most that many dead containers remain
    (first evenly per unit, then globally oldest first, as evictContainers does)."""
    units = evictable_units(pods, now, policy)
    out: list[tuple[str, ContainerState]] = []

    def enforce(per_unit: int) -> None:
        for key, cs in units.items():
            if len(cs) > per_unit:
                keep = max(per_unit, 0)
                out.extend((key[0], c) for c in cs[keep:])
                units[key] = cs[:keep]

    if policy.max_per_pod_container >= 0:
        enforce(policy.max_per_pod_container)
    if policy.max_containers >= 0 and units:
        total = sum(len(cs) for cs in units.values())
        if total > policy.max_containers:
            enforce(max(policy.max_containers // len(units), 1))
            rest = [(k[0], c) for k, cs in units.items() for c in cs]
            excess = len(rest) - policy.max_containers
            if excess > 0:
                rest.sort(key=lambda uc: (uc[1].created_at, uc[1].attempt, uc[1].id))
                out.extend(rest[:excess])
    return out


def select_sandboxes(pr: PodRuntime, removed: Iterable[str] = (), pod_exists: bool = True) -> list[SandboxState]:
    """evictSandboxes for one pod: sandboxes that are not ready and hold no container (left
    after removing the container ids in ``removed``) are removed, except the newest sandbox
    of a pod that still exists."""
    gone = set(removed)
    used = {c.sandbox_id for c in pr.containers if c.id not in gone}
    sandboxes = sorted(pr.sandboxes, key=lambda s: (s.created_at, s.attempt, s.id), reverse=True)
    if pod_exists:
        sandboxes = sandboxes[1:]
    return [s for s in sandboxes if not s.ready and s.id not in used]


def container_log_path(c: ContainerState, log_dir: Path) -> Path | None:
    """The log file of a container: its CRI log path (absolute, or relative to the pod's log
    directory); None when it has none or it lies outside ``log_dir``."""
    if not c.log_path:
        return None
    p = Path(c.log_path)
    if not p.is_absolute():
        p = log_dir / p
    p = Path(os.path.normpath(p))
    root = Path(os.path.normpath(log_dir))
    if root not in p.parents:
        return None
    return p


def remove_log_files(path: Path) -> list[Path]:
    """removeContainerLog / ContainerLogManager.Clean: the log and its rotated files."""
    removed = []
    candidates = [path, *path.parent.glob(path.name + ".*")] if path.parent.is_dir() else [path]
    for p in candidates:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            p.unlink()
            removed.append(p)
    return removed
