"""The kubelet's sysctl allowlist (pkg/kubelet/sysctl allowlist_test.go cases)."""

from __future__ import annotations

import pytest

from kubelite.agent.sysctls import Allowlist, SysctlConfigError, safe_sysctls, to_dots


def _pod(*names: str, **spec) -> dict:
    return {"spec": {"securityContext": {"sysctls": [{"name": n, "value": "1"} for n in names]}, **spec}}


def test_safe_list_follows_the_kernel():
    assert "net.ipv4.tcp_fin_timeout" in safe_sysctls((6, 1))
    old = safe_sysctls((4, 4))
    assert "net.ipv4.tcp_keepalive_time" not in old and "net.ipv4.ip_local_reserved_ports" in old
    assert "kernel.shm_rmid_forced" in safe_sysctls(())


def test_admit_safe_unsafe_and_host_namespaces():
    w = Allowlist([*safe_sysctls((6, 1)), "kernel.msg*", "kernel.sem"])
    assert w.admit(_pod("kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "kernel.msgmax")) is None
    assert w.admit(_pod("net/ipv4/ip_local_port_range")) is None  # slashes as separators
    assert w.admit(_pod("kernel.shmmax")) == ("SysctlForbidden", 'forbidden sysctl: "kernel.shmmax" not allowlisted')
    assert w.admit(_pod("net.ipv4.tcp_syncookies", hostNetwork=True)) == (
        "SysctlForbidden", 'forbidden sysctl: "net.ipv4.tcp_syncookies" not allowed with host net enabled')
    assert w.admit(_pod("kernel.sem", hostIPC=True)) == (
        "SysctlForbidden", 'forbidden sysctl: "kernel.sem" not allowed with host ipc enabled')
    assert w.admit({"spec": {}}) is None


def test_bad_patterns_stop_the_agent():
    with pytest.raises(SysctlConfigError, match='the sysctl "vm.swappiness" are not known to be namespaced'):
        Allowlist(["vm.swappiness"])
    with pytest.raises(SysctlConfigError, match=r'the sysctls "kernel\.\*" are not known to be namespaced'):
        Allowlist(["kernel.*"])
    with pytest.raises(SysctlConfigError, match='sysctl "Net.foo" must have at most 253 characters'):
        Allowlist(["Net.foo"])
    assert to_dots("net/ipv4/conf/eno2.100/rp_filter") == "net.ipv4.conf.eno2/100.rp_filter"
