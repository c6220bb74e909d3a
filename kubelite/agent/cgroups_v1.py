"""Pod cgroups on cgroup v1 (legacy and hybrid hosts): pkg/kubelet/cm/cgroup_v1_manager_linux.go
and the v1 side of runc's libcontainer/cgroups/fs (cpu.go, memory.go, pids.go, cpuset.go).

Every pod cgroup has a directory in every mounted hierarchy (and in the unified tree of a
hybrid host, where runc puts the containers too); limits go to ``cpu.shares``,
``cpu.cfs_period_us`` / ``cpu.cfs_quota_us``, ``memory.limit_in_bytes`` and ``pids.max``.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from kubelite.agent.cgroups import (
    MIN_SHARES,
    QOS_PARENTS,
    ROOT_NAME,
    CgroupError,
    CgroupManager,
    CgroupUsage,
    ResourceConfig,
    _read_int,
    read_flat_keyed,
    working_set,
    write,
)

# validateSystemRequirements (container_manager_linux.go): the hierarchies the kubelet needs
REQUIRED = ("cpu", "cpuacct", "cpuset", "memory")
# memory.limit_in_bytes of an unlimited cgroup (PAGE_COUNTER_MAX pages, page-aligned)
V1_UNLIMITED_MEMORY = 9223372036854771712


class V1CgroupManager(CgroupManager):
    version = 1

    def path(self, controller: str, name: str) -> Path | None:
        base = self.layout.hierarchies.get(controller)
        return base / name if base else None

    def validate(self) -> None:
        required = list(REQUIRED) + (["pids"] if self.pids_limit else [])
        missing = sorted(c for c in required if c not in self.layout.hierarchies)
        if missing:
            raise CgroupError("cannot enforce pod resource limits: system validation failed - Following Cgroup "
                              f"subsystem not mounted: [{' '.join(missing)}]")
        cpu = self.layout.hierarchies["cpu"]
        if not (cpu / "cpu.cfs_quota_us").exists():
            raise CgroupError(f"cannot enforce pod CPU limits: {cpu} has no cpu.cfs_quota_us (the kernel lacks "
                              f"CFS bandwidth control, CONFIG_CFS_BANDWIDTH)")

    def ensure_qos_roots(self) -> None:
        for name in QOS_PARENTS:
            self._mkdir(name)
        p = self.path("cpu", f"{ROOT_NAME}/besteffort")
        if p is not None:
            with contextlib.suppress(OSError):
                write(p / "cpu.shares", str(MIN_SHARES))

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
                        write(p, (sub.parent / f).read_text().strip())

    def apply(self, name: str, cfg: ResourceConfig) -> None:
        cpu = self.path("cpu", name)
        if cpu is not None:
            if cfg.cpu_shares is not None:
                write(cpu / "cpu.shares", str(cfg.cpu_shares))
            if cfg.cpu_period is not None:
                write(cpu / "cpu.cfs_period_us", str(cfg.cpu_period))
            write(cpu / "cpu.cfs_quota_us", str(cfg.cpu_quota if cfg.cpu_quota else -1))
        mem = self.path("memory", name)
        if mem is not None:
            write(mem / "memory.limit_in_bytes", str(cfg.memory_limit if cfg.memory_limit else -1))
        pids = self.path("pids", name)
        if pids is not None and cfg.pids_limit is not None:
            write(pids / "pids.max", str(cfg.pids_limit))

    def read(self, name: str) -> ResourceConfig | None:
        cpu, mem = self.path("cpu", name), self.path("memory", name)
        if cpu is None or not cpu.is_dir():
            return None
        try:
            cfg = ResourceConfig(cpu_shares=int((cpu / "cpu.shares").read_text()),
                                 cpu_quota=int((cpu / "cpu.cfs_quota_us").read_text()),
                                 cpu_period=int((cpu / "cpu.cfs_period_us").read_text()))
            if mem is not None and mem.is_dir():
                limit = int((mem / "memory.limit_in_bytes").read_text())
                cfg.memory_limit = -1 if limit >= V1_UNLIMITED_MEMORY else limit
        except (OSError, ValueError):
            return None
        return cfg

    def usage(self, name: str) -> CgroupUsage | None:
        """cpuacct.usage; memory.usage_in_bytes less memory.stat's total_inactive_file."""
        cpu_dir, mem_dir = self.path("cpuacct", name), self.path("memory", name)
        if (cpu_dir is None or not cpu_dir.is_dir()) and (mem_dir is None or not mem_dir.is_dir()):
            return None
        now = time.time()
        cpu = _read_int(cpu_dir / "cpuacct.usage") if cpu_dir is not None else None
        mem = stat = None
        if mem_dir is not None:
            mem = _read_int(mem_dir / "memory.usage_in_bytes")
            stat = read_flat_keyed(mem_dir / "memory.stat")
        stat = stat or {}
        return CgroupUsage(now, cpu, mem, working_set(mem, stat.get("total_inactive_file")), stat.get("total_rss"),
                           stat.get("total_pgfault"), stat.get("total_pgmajfault"))

    def swap_controller_available(self) -> bool:
        """swapControllerAvailable: memory.memsw.* exists (swap accounting is on)."""
        mem = self.layout.hierarchies.get("memory")
        return mem is not None and (mem / "memory.memsw.limit_in_bytes").exists()

    def tune_container(self, resources: Any) -> None:
        """ConfigureNoSwap on v1: memory+swap = memory, so a limited container cannot swap."""
        if resources.memory_limit_in_bytes and self.swap_controller_available():
            resources.memory_swap_limit_in_bytes = resources.memory_limit_in_bytes
