"""The kubelet's sysctl admission (pkg/kubelet/sysctl: safe_sysctls.go, allowlist.go and
component-helpers' namespace.go): a pod's ``securityContext.sysctls`` must be on the safe list
or on ``--allowed-unsafe-sysctls`` (names or ``prefix*`` patterns, each namespaced by the
kernel), and a net sysctl may not be used with hostNetwork nor an IPC one with hostIPC.
Anything else fails the pod at admission: phase Failed, reason ``SysctlForbidden``. Allowed
sysctls go to the runtime in the sandbox config (crispec.sandbox_config)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

FORBIDDEN_REASON = "SysctlForbidden"
SYSCTL_MAX_LENGTH = 253
_SEGMENT = "[a-z0-9]([-_a-z0-9]*[a-z0-9])?"
PATTERN_FMT = f"({_SEGMENT}[\\./])*([a-z0-9][-_a-z0-9]*)?[a-z0-9*]"  # SysctlContainSlashPatternFmt
_PATTERN = re.compile(f"^{PATTERN_FMT}$")

IPC, NET = "ipc", "net"
_NAMESPACES = {"kernel.sem": IPC}
_PREFIX_NAMESPACES = {"kernel.shm": IPC, "kernel.msg": IPC, "fs.mqueue.": IPC, "net.": NET}

# (name, the first kernel that namespaces it)
SAFE_SYSCTLS: tuple[tuple[str, str], ...] = (
    ("kernel.shm_rmid_forced", ""),
    ("net.ipv4.ip_local_port_range", ""),
    ("net.ipv4.tcp_syncookies", ""),
    ("net.ipv4.ping_group_range", ""),
    ("net.ipv4.ip_unprivileged_port_start", ""),
    ("net.ipv4.ip_local_reserved_ports", "3.16"),
    ("net.ipv4.tcp_keepalive_time", "4.5"),
    ("net.ipv4.tcp_fin_timeout", "4.6"),
    ("net.ipv4.tcp_keepalive_intvl", "4.5"),
    ("net.ipv4.tcp_keepalive_probes", "4.5"),
    ("net.ipv4.tcp_rmem", ""),
    ("net.ipv4.tcp_wmem", ""),
)


class SysctlConfigError(ValueError):
    """A bad --allowed-unsafe-sysctls entry: the agent does not start."""


def to_dots(name: str) -> str:
    """ConvertSysctlVariableToDotsSeparator: ``net/ipv4/conf/eno2.100/rp_filter`` is
    ``net.ipv4.conf.eno2/100.rp_filter``."""
    m = re.search(r"[./]", name)
    if m is None or m.group() == ".":
        return name
    return name.translate(str.maketrans("./", "/."))


def namespaced_by(name: str) -> str:
    if name in _NAMESPACES:
        return _NAMESPACES[name]
    for p, ns in _PREFIX_NAMESPACES.items():
        if name.startswith(p):
            return ns
    return ""


def _kernel_version() -> tuple[int, ...]:
    release = os.uname().release
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
    return tuple(int(x) for x in m.groups() if x is not None) if m else ()


def safe_sysctls(kernel: tuple[int, ...] | None = None) -> list[str]:
    """SafeSysctlAllowlist: the safe sysctls this kernel namespaces."""
    kernel = _kernel_version() if kernel is None else kernel
    out = []
    for name, since in SAFE_SYSCTLS:
        if not since or (kernel and kernel >= tuple(int(x) for x in since.split("."))):
            out.append(name)
    return out


class Allowlist:
    """patternAllowlist."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.sysctls: dict[str, str] = {}
        self.prefixes: dict[str, str] = {}
        for s in patterns:
            if len(s) > SYSCTL_MAX_LENGTH or not _PATTERN.match(s):
                raise SysctlConfigError(f'sysctl "{s}" must have at most {SYSCTL_MAX_LENGTH} characters and match '
                                        f"regex {PATTERN_FMT}")
            s = to_dots(s)
            if s.endswith("*"):
                ns = namespaced_by(s[:-1])
                if not ns:
                    raise SysctlConfigError(f'the sysctls "{s}" are not known to be namespaced')
                self.prefixes[s[:-1]] = ns
            else:
                ns = namespaced_by(s)
                if not ns:
                    raise SysctlConfigError(f'the sysctl "{s}" are not known to be namespaced')
                self.sysctls[s] = ns

    @classmethod
    def for_node(cls, allowed_unsafe: Iterable[str] = ()) -> Allowlist:
        return cls([*safe_sysctls(), *allowed_unsafe])

    def _check(self, name: str, host_net: bool, host_ipc: bool) -> str:
        name = to_dots(name)
        ns = self.sysctls.get(name)
        if ns is None:
            ns = next((v for p, v in self.prefixes.items() if name.startswith(p)), None)
        if ns is None:
            return f'"{name}" not allowlisted'
        if (ns == IPC and host_ipc) or (ns == NET and host_net):
            return f'"{name}" not allowed with host {ns} enabled'
        return ""

    def admit(self, pod: dict[str, Any]) -> tuple[str, str] | None:
        """Admit: (reason, message) to refuse the pod, or None."""
        spec = pod.get("spec") or {}
        for s in (spec.get("securityContext") or {}).get("sysctls") or []:
            err = self._check(str((s or {}).get("name") or ""), bool(spec.get("hostNetwork")),
                              bool(spec.get("hostIPC")))
            if err:
                return FORBIDDEN_REASON, f"forbidden sysctl: {err}"
        return None
