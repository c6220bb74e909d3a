"""PodSecurity baseline's sysctl check (check_sysctls.go, policy v1.32): the safe set only."""

from kubelite.admission import podsecurity


def _pod(*names: str) -> dict:
    return {"spec": {"containers": [{"name": "c", "image": "i"}],
                     "securityContext": {"sysctls": [{"name": n, "value": "1"} for n in names]}}}


def test_v1_32_safe_sysctls_pass_and_others_are_named():
    assert podsecurity.sysctls(_pod("net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem", "net.ipv4.tcp_keepalive_probes",
                                    "kernel.shm_rmid_forced")) is None
    assert podsecurity.sysctls(_pod("net.ipv4.tcp_rmem", "kernel.msgmax")) == ("forbidden sysctls", "kernel.msgmax")
