"""Pod-level cgroups (cm/pod_container_manager_linux.go + qos_container_manager_linux.go).

Layout (cgroupfs driver, cgroup v1): ``kubepods/pod<uid>`` for Guaranteed pods,
``kubepods/burstable/pod<uid>`` and ``kubepods/besteffort/pod<uid>`` for the others,
in every v1 hierarchy. The agent creates the pod cgroup with its limits before the
sandbox (containerd puts the sandbox and containers under it via ``cgroup_parent``) and
removes it after teardown: containerd never does either.

v2 (unified) would use the same names under one tree with ``cpu.weight``/``cpu.max``/
``memory.max``; this machine is v1 hybrid, so only v1 is implemented.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from kubelite.api import quantity
from kubelite.kinds.podutil import compute_qos_class, pod_requests

log = logging.getLogger("kubelite.agent.cgroups")

CGROUP_ROOT = Path("/sys/fs/cgroup")
ROOT_NAME = "kubepods"
MIN_SHARES = 2
MAX_SHARES = 262144
SHARES_PER_CPU = 1024
MILLI_CPU_TO_CPU = 1000
QUOTA_PERIOD = 100000  # µs, the kernel's and the kubelet's default
MIN_QUOTA_PERIOD = 1000


def milli_cpu_to_shares(milli_cpu: int) -> int:
    """MilliCPUToShares: 1000m = 1024 shares, never below 2."""
    if milli_cpu == 0:
        return MIN_SHARES
    shares = milli_cpu * SHARES_PER_CPU // MILLI_CPU_TO_CPU
    return max(MIN_SHARES, min(shares, MAX_SHARES))


def milli_cpu_to_quota(milli_cpu: int, period: int = QUOTA_PERIOD) -> int:
    """MilliCPUToQuota: the CFS quota (µs per period) for a limit; 0 means none."""
    if milli_cpu == 0:
        return 0
    return max(milli_cpu * period // MILLI_CPU_TO_CPU, MIN_QUOTA_PERIOD)


def milli(q: Any) -> int:
    v = quantity.parse_quantity(str(q))
    return int((v * 1000).to_integral_value(rounding="ROUND_CEILING"))


def bytes_of(q: Any) -> int:
    return int(quantity.parse_quantity(str(q)).to_integral_value(rounding="ROUND_CEILING"))


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return list(pod.get("spec", {}).get("containers") or [])


def _limit_sum(pod: dict[str, Any], name: str) -> Decimal | None:
    """Sum of the app containers' limits (max'd with each init container's), or None when
    some app container has no limit for ``name``."""
    total = Decimal(0)
    for c in _containers(pod):
        v = ((c.get("resources") or {}).get("limits") or {}).get(name)
        if v is None:
            return None
        total += quantity.parse_quantity(str(v))
    for c in pod.get("spec", {}).get("initContainers") or []:
        v = ((c.get("resources") or {}).get("limits") or {}).get(name)
        if v is not None:
            total = max(total, quantity.parse_quantity(str(v)))
    return total


@dataclass
class ResourceConfig:
    cpu_shares: int | None = None
    cpu_quota: int | None = None  # -1: unlimited
    cpu_period: int | None = None
    memory_limit: int | None = None  # -1: unlimited


def pod_resource_config(pod: dict[str, Any]) -> ResourceConfig:
    """ResourceConfigForPod: shares from requests, quota and memory from limits (when every
    container has one), nothing for BestEffort beyond the minimum shares."""
    qos = compute_qos_class(pod)
    reqs = pod_requests(pod)
    cpu_req = milli(reqs["cpu"]) if "cpu" in reqs else 0
    cfg = ResourceConfig(cpu_shares=milli_cpu_to_shares(cpu_req))
    if qos == "BestEffort":
        cfg.cpu_shares = MIN_SHARES
        return cfg
    cpu_lim = _limit_sum(pod, "cpu")
    mem_lim = _limit_sum(pod, "memory")
    if cpu_lim is not None:
        cfg.cpu_quota = milli_cpu_to_quota(milli(cpu_lim))
        cfg.cpu_period = QUOTA_PERIOD
    if mem_lim is not None:
        cfg.memory_limit = bytes_of(mem_lim)
    return cfg


def pod_cgroup_name(pod: dict[str, Any]) -> str:
    """``kubepods[/burstable|/besteffort]/pod<uid>`` (the cgroupfs driver's name)."""
    uid = pod["metadata"]["uid"]
    qos = compute_qos_class(pod)
    if qos == "Guaranteed":
        return f"{ROOT_NAME}/pod{uid}"
    return f"{ROOT_NAME}/{qos.lower()}/pod{uid}"


def v1_hierarchies(root: Path = CGROUP_ROOT) -> dict[str, Path]:
    """Mounted v1 hierarchies by controller name (co-mounted ones share a path), plus the
    hybrid-mode ``unified`` tree."""
    found: dict[str, Path] = {}
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return found
    for line in mounts:
        parts = line.split()
        if len(parts) < 4 or parts[2] not in ("cgroup", "cgroup2"):
            continue
        mnt = Path(parts[1])
        if root not in mnt.parents:
            continue
        if parts[2] == "cgroup2":  # hybrid: runc also makes the pod's directories in the unified tree
            found["unified"] = mnt
            continue
        for opt in parts[3].split(","):
            if opt in ("cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "devices", "freezer",
                       "hugetlb", "net_cls", "net_prio", "perf_event", "rdma", "misc"):
                found[opt] = mnt
            elif opt.startswith("name="):
                found[opt[5:]] = mnt
    return found


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


class CgroupManager:
    """Creates, updates and removes pod cgroups in every v1 hierarchy."""

    def __init__(self, root: Path = CGROUP_ROOT) -> None:
        self.hierarchies = v1_hierarchies(root)
        self._paths = sorted(set(self.hierarchies.values()))

    def path(self, controller: str, name: str) -> Path | None:
        base = self.hierarchies.get(controller)
        return base / name if base else None

    def _mkdir(self, name: str) -> None:
        for base in self._paths:
            d = base / name
            if d.exists():
                continue
            # cpuset children start empty and refuse tasks: copy the parent's values down.
            parts = Path(name).parts
            for i in range(1, len(parts) + 1):
                sub = base.joinpath(*parts[:i])
                if not sub.exists():
                    sub.mkdir()
                for f in ("cpuset.cpus", "cpuset.mems"):
                    p = sub / f
                    if p.exists() and not p.read_text().strip():
                        _write(p, (sub.parent / f).read_text().strip())

    def ensure_qos_roots(self) -> None:
        for name in (ROOT_NAME, f"{ROOT_NAME}/burstable", f"{ROOT_NAME}/besteffort"):
            self._mkdir(name)
        p = self.path("cpu", f"{ROOT_NAME}/besteffort")
        if p is not None:
            with contextlib.suppress(OSError):
                _write(p / "cpu.shares", str(MIN_SHARES))

    def ensure_pod(self, pod: dict[str, Any]) -> str:
        """Create the pod cgroup and apply its limits; returns its name (the sandbox's cgroup_parent)."""
        name = pod_cgroup_name(pod)
        self._mkdir(name)
        self.apply(name, pod_resource_config(pod))
        return "/" + name

    def apply(self, name: str, cfg: ResourceConfig) -> None:
        cpu = self.path("cpu", name)
        if cpu is not None:
            if cfg.cpu_shares is not None:
                _write(cpu / "cpu.shares", str(cfg.cpu_shares))
            if cfg.cpu_period is not None:
                _write(cpu / "cpu.cfs_period_us", str(cfg.cpu_period))
            _write(cpu / "cpu.cfs_quota_us", str(cfg.cpu_quota if cfg.cpu_quota else -1))
        mem = self.path("memory", name)
        if mem is not None:
            _write(mem / "memory.limit_in_bytes", str(cfg.memory_limit if cfg.memory_limit else -1))

    def pod_cgroup_names(self) -> dict[str, str]:
        """Existing pod cgroups as {pod uid: name}, in any hierarchy."""
        out: dict[str, str] = {}
        for base in self._paths:
            for parent in (ROOT_NAME, f"{ROOT_NAME}/burstable", f"{ROOT_NAME}/besteffort"):
                d = base / parent
                if not d.is_dir():
                    continue
                for child in d.iterdir():
                    if child.is_dir() and child.name.startswith("pod"):
                        out.setdefault(child.name[3:], f"{parent}/{child.name}")
        return out

    def exists(self, name: str) -> bool:
        return any((base / name).exists() for base in self._paths)

    def remove(self, name: str, timeout: float = 5.0) -> bool:
        """Remove the pod cgroup (deepest first) in every hierarchy, killing stragglers."""
        deadline = time.monotonic() + timeout
        ok = True
        for base in self._paths:
            top = base / name
            if not top.exists():
                continue
            dirs = sorted((Path(r) for r, _, _ in os.walk(top)), key=lambda p: len(p.parts), reverse=True)
            for d in dirs:
                while True:
                    try:
                        d.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError as exc:
                        if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                            log.warning("could not remove cgroup %s: %s", d, exc)
                            ok = False
                            break
                        self._kill_procs(d)
                        time.sleep(0.05)
        return ok

    @staticmethod
    def _kill_procs(d: Path) -> None:
        try:
            pids = [int(p) for p in (d / "cgroup.procs").read_text().split()]
        except OSError:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
