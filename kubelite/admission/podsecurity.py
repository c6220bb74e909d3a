"""Pod Security Admission (k8s.io/pod-security-admission): the ``enforce`` level of a
namespace (label ``pod-security.kubernetes.io/enforce``: privileged | baseline |
restricted) refuses pods that violate it, with upstream's message::

    pods "p" is forbidden: violates PodSecurity "restricted:latest": privileged (container
    "c" must not set securityContext.privileged=true), allowPrivilegeEscalation != false (…)

Checks run in upstream's order (baseline checks by ID, then restricted checks by ID)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from kubelite.api import errors
from kubelite.apiserver.admission import CREATE, UPDATE, Attributes
from kubelite.apiserver.stores import Stores

LABEL = "pod-security.kubernetes.io/enforce"
LEVELS = ("privileged", "baseline", "restricted")

BASELINE_CAPS = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
                 "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"}  # as of policy v1.32
RESTRICTED_VOLUME_OK = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                        "projected", "secret"}

Pod = dict[str, Any]
Check = Callable[[Pod], tuple[str, str] | None]


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _containers(pod: Pod) -> list[dict[str, Any]]:
    spec = _d(pod.get("spec"))
    out = []
    for key in ("initContainers", "containers", "ephemeralContainers"):
        out += [c for c in spec.get(key) or [] if isinstance(c, dict)]
    return out


def _names(kind: str, names: list[str]) -> str:
    quoted = ", ".join(json.dumps(n) for n in names)
    return f'{kind}{"s" if len(names) != 1 else ""} {quoted}'


def _sc(c: dict[str, Any]) -> dict[str, Any]:
    return _d(c.get("securityContext"))


def _psc(pod: Pod) -> dict[str, Any]:
    return _d(_d(pod.get("spec")).get("securityContext"))


# --------------------------------------------------------------------------- baseline


def host_namespaces(pod: Pod) -> tuple[str, str] | None:
    spec = _d(pod.get("spec"))
    bad = [f"{k}=true" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k) is True]
    return ("host namespaces", ", ".join(bad)) if bad else None


def host_path_volumes(pod: Pod) -> tuple[str, str] | None:
    vols = [v.get("name", "") for v in _d(pod.get("spec")).get("volumes") or [] if _d(v).get("hostPath") is not None]
    return ("hostPath volumes", _names("volume", vols)) if vols else None


def host_ports(pod: Pod) -> tuple[str, str] | None:
    bad_c, ports = [], []
    for c in _containers(pod):
        found = False
        for p in c.get("ports") or []:
            hp = _d(p).get("hostPort")
            if hp:
                found = True
                ports.append(str(hp))
        if found:
            bad_c.append(c.get("name", ""))
    if not bad_c:
        return None
    return "hostPort", f"{_names('container', bad_c)} {'uses hostPort' if len(ports) == 1 else 'use hostPorts'} " \
                       f"{', '.join(ports)}"


def privileged(pod: Pod) -> tuple[str, str] | None:
    bad = [c.get("name", "") for c in _containers(pod) if _sc(c).get("privileged") is True]
    return ("privileged", f"{_names('container', bad)} must not set securityContext.privileged=true") if bad else None


def capabilities_baseline(pod: Pod) -> tuple[str, str] | None:
    bad_c, caps = [], []
    for c in _containers(pod):
        added = [x for x in _d(_sc(c).get("capabilities")).get("add") or [] if x not in BASELINE_CAPS]
        if added:
            bad_c.append(c.get("name", ""))
            caps += [x for x in added if x not in caps]
    if not bad_c:
        return None
    return "non-default capabilities", (f"{_names('container', bad_c)} must not include "
                                        f"{', '.join(json.dumps(x) for x in caps)} in securityContext.capabilities.add")


def proc_mount(pod: Pod) -> tuple[str, str] | None:
    bad = [c.get("name", "") for c in _containers(pod) if _sc(c).get("procMount") not in (None, "Default")]
    return ("procMount", f'{_names("container", bad)} must not set securityContext.procMount to "Unmasked"') \
        if bad else None


def sysctls(pod: Pod) -> tuple[str, str] | None:
    bad = [_d(s).get("name", "") for s in _psc(pod).get("sysctls") or [] if _d(s).get("name") not in SAFE_SYSCTLS]
    return ("forbidden sysctls", ", ".join(bad)) if bad else None


# --------------------------------------------------------------------------- restricted


def allow_privilege_escalation(pod: Pod) -> tuple[str, str] | None:
    bad = [c.get("name", "") for c in _containers(pod) if _sc(c).get("allowPrivilegeEscalation") is not False]
    return ("allowPrivilegeEscalation != false",
            f"{_names('container', bad)} must set securityContext.allowPrivilegeEscalation=false") if bad else None


def capabilities_restricted(pod: Pod) -> tuple[str, str] | None:
    no_drop, bad_add, caps = [], [], []
    for c in _containers(pod):
        cap = _d(_sc(c).get("capabilities"))
        if "ALL" not in (cap.get("drop") or []):
            no_drop.append(c.get("name", ""))
        added = [x for x in cap.get("add") or [] if x != "NET_BIND_SERVICE"]
        if added:
            bad_add.append(c.get("name", ""))
            caps += [x for x in added if x not in caps]
    details = []
    if no_drop:
        details.append(f'{_names("container", no_drop)} must set securityContext.capabilities.drop=["ALL"]')
    if bad_add:
        details.append(f"{_names('container', bad_add)} must not include {', '.join(json.dumps(x) for x in caps)} "
                       f"in securityContext.capabilities.add")
    return ("unrestricted capabilities", "; ".join(details)) if details else None


def restricted_volumes(pod: Pod) -> tuple[str, str] | None:
    bad, types = [], []
    for v in _d(pod.get("spec")).get("volumes") or []:
        v = _d(v)
        kinds = [k for k in v if k != "name"]
        for k in kinds:
            if k not in RESTRICTED_VOLUME_OK:
                bad.append(v.get("name", ""))
                if k not in types:
                    types.append(k)
    if not bad:
        return None
    tlist = ", ".join(json.dumps(t) for t in types)
    return "restricted volume types", (f"{_names('volume', bad)} "
                                       f"{'uses restricted volume type' if len(types) == 1 else 'use restricted volume types'} "
                                       f"{tlist}")


def run_as_non_root(pod: Pod) -> tuple[str, str] | None:
    pod_val = _psc(pod).get("runAsNonRoot")
    explicit_false, implicit = [], []
    for c in _containers(pod):
        v = _sc(c).get("runAsNonRoot")
        if v is False:
            explicit_false.append(c.get("name", ""))
        elif v is None and pod_val is not True:
            implicit.append(c.get("name", ""))
    details = []
    if pod_val is False:
        details.append("pod must not set securityContext.runAsNonRoot=false")
    if explicit_false:
        details.append(f"{_names('container', explicit_false)} must not set securityContext.runAsNonRoot=false")
    if implicit and pod_val is not False:
        details.append(f"pod or {_names('container', implicit)} must set securityContext.runAsNonRoot=true")
    return ("runAsNonRoot != true", "; ".join(details)) if details else None


def run_as_user(pod: Pod) -> tuple[str, str] | None:
    details = []
    if _psc(pod).get("runAsUser") == 0:
        details.append("pod must not set runAsUser=0")
    bad = [c.get("name", "") for c in _containers(pod) if _sc(c).get("runAsUser") == 0]
    if bad:
        details.append(f"{_names('container', bad)} must not set runAsUser=0")
    return ("runAsUser=0", "; ".join(details)) if details else None


def seccomp_restricted(pod: Pod) -> tuple[str, str] | None:
    ok = ("RuntimeDefault", "Localhost")
    pod_type = _d(_psc(pod).get("seccompProfile")).get("type")
    details = []
    if pod_type is not None and pod_type not in ok:
        details.append(f'pod must not set securityContext.seccompProfile.type to "{pod_type}"')
    explicit_bad, implicit = [], []
    for c in _containers(pod):
        t = _d(_sc(c).get("seccompProfile")).get("type")
        if t is not None and t not in ok:
            explicit_bad.append(c.get("name", ""))
        elif t is None and pod_type is None:
            implicit.append(c.get("name", ""))
    if explicit_bad:
        details.append(f'{_names("container", explicit_bad)} must not set securityContext.seccompProfile.type to '
                       f'"Unconfined"')
    if implicit:
        details.append(f'pod or {_names("container", implicit)} must set securityContext.seccompProfile.type to '
                       f'"RuntimeDefault" or "Localhost"')
    return ("seccompProfile", "; ".join(details)) if details else None


BASELINE: list[Check] = [capabilities_baseline, host_namespaces, host_path_volumes, host_ports, privileged, proc_mount,
                         sysctls]
RESTRICTED: list[Check] = [allow_privilege_escalation, capabilities_restricted, restricted_volumes, run_as_non_root,
                           run_as_user, seccomp_restricted]


def violations(pod: Pod, level: str) -> list[str]:
    if level == "privileged":
        return []
    checks = list(BASELINE)
    if level == "restricted":
        checks = [c for c in checks if c is not capabilities_baseline] + RESTRICTED
    out = []
    for check in checks:
        r = check(pod)
        if r is not None:
            reason, detail = r
            out.append(f"{reason} ({detail})" if detail else reason)
    return out


class PodSecurity:
    def __init__(self, stores: Stores) -> None:
        self.stores = stores

    def _ns_store(self) -> Any:
        return self.stores.find("", "namespaces")

    async def admit(self, a: Attributes) -> None:
        return None

    async def validate(self, a: Attributes) -> None:
        if a.kind.group != "" or a.kind.plural != "pods" or a.subresource or a.obj is None:
            return
        if a.operation not in (CREATE, UPDATE):
            return
        store = self._ns_store()
        if store is None or not a.namespace:
            return
        try:
            ns = await store.get("", a.namespace)
        except errors.StatusError:
            return
        labels = ns["metadata"].get("labels") or {}
        level = labels.get(LABEL, "privileged")
        if level not in LEVELS or level == "privileged":
            return
        if a.operation == UPDATE and a.old is not None and a.old.get("spec") == a.obj.get("spec"):
            return  # metadata-only updates are not re-evaluated
        version = labels.get(LABEL + "-version", "latest") or "latest"
        found = violations(a.obj, level)
        if found:
            name = a.name or (a.obj.get("metadata") or {}).get("name", "")
            raise errors.forbidden("pods", name, f'violates PodSecurity "{level}:{version}": ' + ", ".join(found))


__all__ = ["PodSecurity", "violations"]
