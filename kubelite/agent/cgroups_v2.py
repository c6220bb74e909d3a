"""Pod cgroups on cgroup v2 (a unified hierarchy at /sys/fs/cgroup): the kubelet's
pkg/kubelet/cm/cgroup_v2_manager_linux.go and cgroup_manager_linux.go (``toResources``,
``getCPUWeight``), and runc's libcontainer/cgroups/fs2 (create.go, cpu.go, memory.go, pids.go).

A child sees only the controllers its parent enabled in ``cgroup.subtree_control``, so the
manager enables them top-down, from the root through ``kubepods`` to the QoS cgroups (runc
does the same below, for the pod cgroup, when it creates a container). Limits:

=================  ==============================================================
``cpu.weight``     from the v1 shares: ``1 + ((shares - 2) * 9999) / 262142``
``cpu.max``        ``"<quota> <period>"``, ``"max <period>"`` without a limit
``memory.max``     bytes, ``"max"`` without a limit
``pids.max``       the pod pids limit, when one is configured
=================  ==============================================================

Containers get ``memory.oom.group = 1`` (the kubelet's default ``singleProcessOOMKill:
false`` on v2: an OOM kills the whole container) and, where the kernel accounts swap,
``memory.swap.max = 0`` (the default ``NoSwap`` behaviour), through the CRI ``unified`` map.
"""

from __future__ import annotations

import errno
import logging
import time
from pathlib import Path
from typing import Any

from kubelite.agent.cgroups import (
    QOS_PARENTS,
    QUOTA_PERIOD,
    ROOT_NAME,
    CgroupError,
    CgroupManager,
    CgroupUsage,
    ResourceConfig,
    _read_int,
    read_flat_keyed,
    read_tokens,
    shares_to_weight,
    working_set,
    write,
)

log = logging.getLogger("kubelite.agent.cgroups")

# getSupportedUnifiedControllers: what the kubelet enables (those the kernel has)
SUPPORTED = ("cpu", "cpuset", "hugetlb", "memory", "pids")
REQUIRED = ("cpu", "memory")
MIN_WEIGHT = 1


class V2CgroupManager(CgroupManager):
    version = 2

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.available: set[str] = set()

    def _required(self) -> list[str]:
        return list(REQUIRED) + (["pids"] if self.pids_limit else [])

    def validate(self) -> None:
        path = self.root / "cgroup.controllers"
        try:
            self.available = read_tokens(path)
        except OSError as exc:
            raise CgroupError(f"cannot enforce pod resource limits: cannot read {path}: "
                              f"{exc.strerror or exc}") from exc
        missing = sorted(set(self._required()) - self.available)
        if missing:
            raise CgroupError(f"cannot enforce pod resource limits: cgroup {str(self.root)!r} has some missing "
                              f"controllers: {', '.join(missing)} (cgroup.controllers: "
                              f"{' '.join(sorted(self.available)) or 'none'}); on cgroup v2 the "
                              f"{' and '.join(missing)} controller{'s' if len(missing) > 1 else ''} must be "
                              "available and delegated to this cgroup")

    def _enable(self, d: Path, allowed: set[str]) -> set[str]:
        """Enable ``allowed`` for the children of ``d`` (as runc's CreateCgroupPath: all at
        once, else one by one); returns what ``cgroup.subtree_control`` then holds."""
        ctl = d / "cgroup.subtree_control"
        try:
            enabled = read_tokens(ctl)
        except OSError:
            enabled = set()
        error: OSError | None = None
        if not allowed <= enabled:
            # every wanted controller, not just the missing ones: enabling one twice is a no-op
            want = sorted(allowed)
            try:
                write(ctl, " ".join(f"+{c}" for c in want))
            except OSError:
                for c in want:
                    try:
                        write(ctl, f"+{c}")
                    except OSError as exc:
                        error = exc
            try:
                enabled = read_tokens(ctl)
            except OSError as exc:
                error, enabled = exc, set()
        missing = sorted(set(self._required()) - enabled)
        if missing:
            why = f": {error.strerror or error}" if error is not None else ""
            hint = (" (a cgroup with processes of its own cannot enable controllers for children: run kubelite "
                    "in a delegated cgroup with none)") if error is not None and error.errno == errno.EBUSY else ""
            raise CgroupError(f"cannot enforce pod resource limits: could not enable the {', '.join(missing)} "
                              f"controller{'s' if len(missing) > 1 else ''} in {ctl}{why}{hint}")
        return enabled & allowed

    def ensure_qos_roots(self) -> None:
        """The root, ``kubepods`` and its QoS children, each with the controllers enabled for
        what is below it; the best-effort cgroup gets the minimum weight (as MinShares on v1)."""
        if not self.available:
            self.validate()
        allowed = self._enable(self.root, self.available & set(SUPPORTED))
        for name in QOS_PARENTS:  # kubepods first: the QoS cgroups see what it enabled
            d = self.root / name
            try:
                d.mkdir(exist_ok=True)
            except OSError as exc:
                raise CgroupError(f"cannot enforce pod resource limits: cannot create cgroup {d}: "
                                  f"{exc.strerror or exc}") from exc
            enabled = self._enable(d, allowed)
            if name == ROOT_NAME:
                allowed = enabled
        try:
            write(self.root / ROOT_NAME / "besteffort" / "cpu.weight", str(MIN_WEIGHT))
        except OSError as exc:
            log.warning("could not set the best-effort QoS cgroup's cpu.weight: %s", exc)

    def _mkdir(self, name: str) -> None:
        (self.root / name).mkdir(parents=True, exist_ok=True)

    def apply(self, name: str, cfg: ResourceConfig) -> None:
        d = self.root / name
        if cfg.cpu_shares is not None:
            write(d / "cpu.weight", str(shares_to_weight(cfg.cpu_shares)))
        quota = str(cfg.cpu_quota) if cfg.cpu_quota and cfg.cpu_quota > 0 else "max"
        write(d / "cpu.max", f"{quota} {cfg.cpu_period or QUOTA_PERIOD}")
        write(d / "memory.max", str(cfg.memory_limit) if cfg.memory_limit and cfg.memory_limit > 0 else "max")
        if cfg.pids_limit is not None:
            write(d / "pids.max", str(cfg.pids_limit))

    def read(self, name: str) -> ResourceConfig | None:
        d = self.root / name
        if not d.is_dir():
            return None
        try:
            weight = int((d / "cpu.weight").read_text())
            quota, period = (d / "cpu.max").read_text().split()
            mem = (d / "memory.max").read_text().strip()
        except (OSError, ValueError):
            return None
        # the inverse of shares_to_weight (what runc does to report cpu.shares on v2)
        shares = 2 + ((weight - 1) * 262142 + 9998) // 9999
        return ResourceConfig(cpu_shares=shares, cpu_quota=-1 if quota == "max" else int(quota),
                              cpu_period=int(period), memory_limit=-1 if mem == "max" else int(mem))

    def usage(self, name: str) -> CgroupUsage | None:
        """cpu.stat's usage_usec; memory.current less memory.stat's inactive_file. The root
        has no memory.current: there the node's figures come from /proc/meminfo, as cAdvisor's."""
        d = self.root / name if name else self.root
        if not d.is_dir():
            return None
        now = time.time()
        cpu_stat = read_flat_keyed(d / "cpu.stat")
        cpu = cpu_stat["usage_usec"] * 1000 if "usage_usec" in cpu_stat else None
        stat = read_flat_keyed(d / "memory.stat")
        mem = _read_int(d / "memory.current") if name else _meminfo_used()
        return CgroupUsage(now, cpu, mem, working_set(mem, stat.get("inactive_file")), stat.get("anon"),
                           stat.get("pgfault"), stat.get("pgmajfault"))

    def swap_controller_available(self) -> bool:
        """swapControllerAvailable: memory.swap.max exists below the root (the root has none)."""
        return (self.root / ROOT_NAME / "memory.swap.max").exists()

    def tune_container(self, resources: Any) -> None:
        resources.unified["memory.oom.group"] = "1"
        if self.swap_controller_available():
            resources.unified["memory.swap.max"] = "0"


def _meminfo_used(path: Path = Path("/proc/meminfo")) -> int | None:
    """MemTotal - MemFree in bytes (the root cgroup's usage on a v2 host)."""
    fields: dict[str, int] = {}
    try:
        for line in path.read_text().splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts:
                fields[key] = int(parts[0]) * 1024
    except (OSError, ValueError):
        return None
    if "MemTotal" not in fields or "MemFree" not in fields:
        return None
    return fields["MemTotal"] - fields["MemFree"]
