"""Pod-level cgroups, cgroupfs driver: the kubelet's cgroup manager
(pkg/kubelet/cm/cgroup_manager_linux.go, cgroup_v1_manager_linux.go, cgroup_v2_manager_linux.go),
pod container manager (pod_container_manager_linux.go, helpers_linux.go) and QoS roots
(qos_container_manager_linux.go).

Names: ``kubepods/pod<uid>`` for Guaranteed pods, ``kubepods/burstable/pod<uid>`` and
``kubepods/besteffort/pod<uid>`` for the others. The agent creates the pod cgroup with its
limits before the sandbox (containerd puts the sandbox and containers under it via
``cgroup_parent``) and removes it after teardown: containerd never does either.

The host's layout is read from the mount table (libcontainer's ``IsCgroup2UnifiedMode``
asks statfs the same question):

- ``legacy`` (v1): one hierarchy per controller under ``/sys/fs/cgroup``
  (``cpu.shares``, ``cpu.cfs_quota_us``, ``memory.limit_in_bytes``) — :mod:`cgroups_v1`;
- ``hybrid``: the same, plus an empty cgroup2 tree at ``/sys/fs/cgroup/unified`` where runc
  also makes the pod's directories (this is v1 for limits);
- ``unified`` (v2): ``/sys/fs/cgroup`` is cgroup2 itself; controllers are enabled top-down
  through ``cgroup.subtree_control`` and limits are ``cpu.weight``, ``cpu.max``,
  ``memory.max``, ``pids.max`` — :mod:`cgroups_v2`.

A host where limits cannot be enforced — no cgroup filesystem, a v1 controller not
mounted, a v2 controller not available or not delegated — makes :func:`open_cgroups` raise
:class:`CgroupError`, and the agent refuses to start rather than run pods without limits.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from kubelite.api import quantity
from kubelite.kinds.podutil import compute_qos_class, pod_requests

log = logging.getLogger("kubelite.agent.cgroups")

CGROUP_ROOT = Path("/sys/fs/cgroup")
ROOT_NAME = "kubepods"
QOS_PARENTS = (ROOT_NAME, f"{ROOT_NAME}/burstable", f"{ROOT_NAME}/besteffort")
CGROUP_DRIVER = "cgroupfs"
MIN_SHARES = 2
MAX_SHARES = 262144
SHARES_PER_CPU = 1024
MILLI_CPU_TO_CPU = 1000
MAX_WEIGHT = 10000
QUOTA_PERIOD = 100000  # µs, the kernel's and the kubelet's default
MIN_QUOTA_PERIOD = 1000
V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "devices", "freezer", "hugetlb",
                  "net_cls", "net_prio", "perf_event", "rdma", "misc")


class CgroupError(RuntimeError):
    """The host's cgroups cannot enforce pod limits: the agent must not start."""


# --------------------------------------------------------------------------- arithmetic
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


def shares_to_weight(shares: int) -> int:
    """getCPUWeight (cgroup_manager_linux.go): cpu.shares [2, 262144] -> cpu.weight [1, 10000]."""
    if shares >= MAX_SHARES:
        return MAX_WEIGHT
    return 1 + ((max(shares, MIN_SHARES) - 2) * 9999) // 262142


def milli(q: Any) -> int:
    v = quantity.parse_quantity(str(q))
    return int((v * 1000).to_integral_value(rounding="ROUND_CEILING"))


def bytes_of(q: Any) -> int:
    return int(quantity.parse_quantity(str(q)).to_integral_value(rounding="ROUND_CEILING"))


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return list(pod.get("spec", {}).get("containers") or [])


def _limit_sum(pod: dict[str, Any], name: str) -> Decimal | None:
    """Sum of the app containers' limits (max'd with each init container's) plus the pod's
    overhead, or None when some app container has no limit for ``name``."""
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
    overhead = (pod.get("spec", {}).get("overhead") or {}).get(name)
    if overhead is not None:  # PodLimits adds the RuntimeClass overhead where a limit exists
        total += quantity.parse_quantity(str(overhead))
    return total


@dataclass
class ResourceConfig:
    """cm.ResourceConfig, in v1 units (shares; the v2 manager converts)."""
    cpu_shares: int | None = None
    cpu_quota: int | None = None  # -1: unlimited
    cpu_period: int | None = None
    memory_limit: int | None = None  # -1: unlimited
    pids_limit: int | None = None  # the kubelet's --pod-max-pids; None: untouched


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


# --------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class CgroupLayout:
    """What is mounted where: ``mode`` is ``legacy``, ``hybrid``, ``unified`` or ``none``;
    ``hierarchies`` maps each v1 controller (and ``unified`` in hybrid mode) to its mount,
    or ``unified`` to the root on a v2 host."""
    mode: str
    root: Path
    hierarchies: dict[str, Path] = field(default_factory=dict)

    @property
    def version(self) -> int:
        return 2 if self.mode == "unified" else 1

    def bases(self) -> list[Path]:
        """Every tree a pod cgroup has a directory in."""
        return sorted(set(self.hierarchies.values()))

    def describe(self) -> str:
        if self.mode == "none":
            return f"no cgroup filesystem at {self.root}"
        return f"cgroup v{self.version} ({self.mode}) at {self.root}, {CGROUP_DRIVER} driver"


def _unescape(field_: str) -> str:
    """/proc/self/mounts writes space, tab, newline and backslash as octal escapes."""
    for code, ch in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field_ = field_.replace(code, ch)
    return field_


def detect_layout(root: Path = CGROUP_ROOT, mounts: str | None = None) -> CgroupLayout:
    """The cgroup layout under ``root`` from the mount table (``/proc/self/mounts`` unless
    given). A later mount on ``root`` hides what was mounted there before."""
    if mounts is None:
        try:
            mounts = Path("/proc/self/mounts").read_text()
        except OSError:
            mounts = ""
    root = Path(root)
    root_v2 = False
    v1: dict[str, Path] = {}
    unified: Path | None = None
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        fstype, mnt = parts[2], Path(_unescape(parts[1]))
        if mnt == root:
            root_v2, v1, unified = fstype == "cgroup2", {}, None
        elif root not in mnt.parents:
            continue
        elif fstype == "cgroup2":
            unified = mnt
        elif fstype == "cgroup":
            for opt in parts[3].split(","):
                if opt in V1_CONTROLLERS:
                    v1[opt] = mnt
                elif opt.startswith("name="):
                    v1[opt[5:]] = mnt
    if root_v2:
        return CgroupLayout("unified", root, {"unified": root})
    if not v1:
        return CgroupLayout("none", root)
    if unified is not None:  # hybrid: runc also makes the pod's directories in the unified tree
        v1["unified"] = unified
        return CgroupLayout("hybrid", root, v1)
    return CgroupLayout("legacy", root, v1)


def read_tokens(path: Path) -> set[str]:
    """The names in a ``cgroup.controllers`` / ``cgroup.subtree_control`` file. A leading
    ``+`` is dropped: the kernel never shows one, but a plain file that stands in for
    cgroupfs in tests keeps what was written to it."""
    return {t.lstrip("+") for t in path.read_text().split()}


def write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


# --------------------------------------------------------------------------- usage
@dataclass(frozen=True)
class CgroupUsage:
    """What a cgroup has used, as cAdvisor reads it: cumulative CPU time (ns), memory in use
    and its working set (usage less inactive file pages, the figure the kubelet evicts and
    metrics-server reports on), at ``time`` (Unix seconds). A figure the kernel does not give
    is None, never 0."""
    time: float
    cpu_ns: int | None = None
    memory_bytes: int | None = None
    working_set_bytes: int | None = None
    rss_bytes: int | None = None
    page_faults: int | None = None
    major_page_faults: int | None = None


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def read_flat_keyed(path: Path) -> dict[str, int]:
    """A ``memory.stat`` / ``cpu.stat`` file: ``key value`` lines."""
    out: dict[str, int] = {}
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            out[key] = int(value)
    return out


def working_set(usage: int | None, inactive_file: int | None) -> int | None:
    """cAdvisor's working set: usage minus inactive file pages, never below 0."""
    if usage is None:
        return None
    return max(0, usage - (inactive_file or 0))


# --------------------------------------------------------------------------- manager
class CgroupManager:
    """Creates, updates, lists and removes pod cgroups (one directory per tree of the layout).

    :meth:`validate` says, without changing anything, whether limits can be enforced;
    :meth:`ensure_qos_roots` makes ``kubepods`` and its QoS children; both raise
    :class:`CgroupError`. The layout-specific parts are in :mod:`cgroups_v1` and
    :mod:`cgroups_v2`; use :func:`open_cgroups` to get the right one, checked.
    """

    version: ClassVar[int] = 0
    driver: ClassVar[str] = CGROUP_DRIVER

    def __init__(self, layout: CgroupLayout, pids_limit: int | None = None) -> None:
        self.layout = layout
        self.root = layout.root
        # the kubelet's podPidsLimit: only a positive value limits (default -1)
        self.pids_limit = pids_limit if pids_limit is not None and pids_limit > 0 else None
        self._paths = layout.bases()

    def describe(self) -> str:
        return self.layout.describe()

    # -- layout-specific
    def validate(self) -> None:
        raise NotImplementedError

    def ensure_qos_roots(self) -> None:
        raise NotImplementedError

    def apply(self, name: str, cfg: ResourceConfig) -> None:
        raise NotImplementedError

    def tune_container(self, resources: Any) -> None:
        """Adjust a container's CRI ``LinuxContainerResources`` to the host's layout
        (swap and OOM-group settings, as generateLinuxContainerResources does)."""

    def read(self, name: str) -> ResourceConfig | None:
        """The limits a cgroup has now (a container's: ``<pod cgroup>/<container id>``, as
        runc names them with the cgroupfs driver); None when it does not exist. Unlimited
        quota and memory read as -1."""
        raise NotImplementedError

    def usage(self, name: str) -> CgroupUsage | None:
        """What the cgroup ``name`` (``""``: the root, i.e. the whole node) has used; None when
        it does not exist."""
        raise NotImplementedError

    def _mkdir(self, name: str) -> None:
        for base in self._paths:
            (base / name).mkdir(parents=True, exist_ok=True)

    # -- common
    def ensure_pod(self, pod: dict[str, Any]) -> str:
        """Create the pod cgroup and apply its limits; returns its name (the sandbox's cgroup_parent)."""
        name = pod_cgroup_name(pod)
        self._mkdir(name)
        cfg = pod_resource_config(pod)
        cfg.pids_limit = self.pids_limit
        self.apply(name, cfg)
        return "/" + name

    def pod_cgroup_names(self) -> dict[str, str]:
        """Existing pod cgroups as {pod uid: name}, in any tree."""
        out: dict[str, str] = {}
        for base in self._paths:
            for parent in QOS_PARENTS:
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
        """Remove the pod cgroup (deepest first) in every tree, killing stragglers."""
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
            if pid <= 0:  # a process outside this PID namespace reads as 0: kill(0) is our own group
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def manager_for(layout: CgroupLayout, pids_limit: int | None = None) -> CgroupManager:
    """The manager for a layout (not yet checked)."""
    if layout.mode == "none":
        raise CgroupError(f"cannot enforce pod resource limits: {layout.describe()} (mount cgroup v2 there, "
                          f"or the v1 cpu, cpuacct, cpuset and memory hierarchies)")
    if layout.version == 2:
        from kubelite.agent.cgroups_v2 import V2CgroupManager

        return V2CgroupManager(layout, pids_limit)
    from kubelite.agent.cgroups_v1 import V1CgroupManager

    return V1CgroupManager(layout, pids_limit)


def check_host(root: Path = CGROUP_ROOT, mounts: str | None = None, pids_limit: int | None = None) -> CgroupManager:
    """Detect and validate without changing anything (``kubelite server``'s pre-flight)."""
    mgr = manager_for(detect_layout(root, mounts), pids_limit)
    mgr.validate()
    return mgr


def open_cgroups(root: Path = CGROUP_ROOT, mounts: str | None = None, pids_limit: int | None = None) -> CgroupManager:
    """Detect the layout, check that limits can be enforced and make the QoS roots; raises
    :class:`CgroupError` with the reason when they cannot."""
    mgr = check_host(root, mounts, pids_limit)
    mgr.ensure_qos_roots()
    return mgr
