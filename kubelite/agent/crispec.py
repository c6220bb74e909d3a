"""The pod's view of the CRI (kuberuntime_sandbox.go, kuberuntime_container.go): sandbox and
container configs from a Pod, and the runtime state of a pod read back through its labels.

Labels and annotations are the kubelet's (pkg/kubelet/kuberuntime/labels.go), so a kubelet
and kubelite would recognise each other's containers, and a restarted agent re-adopts its
own by ``io.kubernetes.pod.uid``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from cri_api.v1 import api_pb2 as cri

from kubelite.agent import security
from kubelite.agent.cgroups import (
    MIN_SHARES,
    QUOTA_PERIOD,
    bytes_of,
    milli,
    milli_cpu_to_quota,
    milli_cpu_to_shares,
)
from kubelite.agent.dns import DNSConfigurer
from kubelite.agent.volumes import MountSpec
from kubelite.kinds.podutil import compute_qos_class

log = logging.getLogger("kubelite.agent.runtime")
Obj = dict[str, Any]

POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
POD_UID = "io.kubernetes.pod.uid"
CONTAINER_NAME = "io.kubernetes.container.name"
CONTAINER_HASH = "io.kubernetes.container.hash"
CONTAINER_RESTART_COUNT = "io.kubernetes.container.restartCount"
CONTAINER_TERMINATION_MESSAGE_PATH = "io.kubernetes.container.terminationMessagePath"
CONTAINER_TERMINATION_MESSAGE_POLICY = "io.kubernetes.container.terminationMessagePolicy"
POD_TERMINATION_GRACE_PERIOD = "io.kubernetes.pod.terminationGracePeriod"
CONTAINER_PORTS = "io.kubernetes.container.ports"
CONTAINER_TYPE = "io.kubernetes.container.type"  # ours: "init" for init containers
KUBERNETES_MANAGED_LABEL = "io.kubernetes.pod.uid"

MAX_TERMINATION_MESSAGE = 4096
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048
OOM_GUARANTEED = -997
OOM_BESTEFFORT = 1000


def format_pod(pod: Obj) -> str:
    """format.Pod: ``name_namespace(uid)``."""
    m = pod["metadata"]
    return f"{m['name']}_{m.get('namespace', '')}({m['uid']})"


def container_hash(container: Obj) -> str:
    """A stable hash of the container spec without its resources (the kubelet's
    HashContainer, our own encoding): an in-place resize is not a new definition."""
    rest = {k: v for k, v in container.items() if k != "resources"}
    return "r" + hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()[:7]


def legacy_container_hash(container: Obj) -> str:
    """The hash containers started before in-place resize carry (resources included)."""
    return hashlib.sha256(json.dumps(container, sort_keys=True).encode()).hexdigest()[:8]


def same_definition(c_hash: str, container: Obj) -> bool:
    return c_hash in (container_hash(container), legacy_container_hash(container))


# --------------------------------------------------------------------------- runtime state
@dataclass
class SandboxState:
    id: str
    ready: bool
    attempt: int
    created_at: float
    ip: str = ""
    ips: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class ContainerState:
    id: str
    name: str
    state: str  # created | running | exited | unknown
    attempt: int
    sandbox_id: str
    created_at: float
    started_at: float = 0.0
    finished_at: float = 0.0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    image: str = ""
    image_ref: str = ""
    restart_count: int = 0
    hash: str = ""
    termination_message_path: str = ""
    termination_message_policy: str = ""
    mounts: list[tuple[str, str]] = field(default_factory=list)  # (container path, host path)
    log_path: str = ""
    is_init: bool = False


@dataclass
class PodRuntime:
    """Everything the runtime has for one pod uid, newest first."""
    uid: str
    sandboxes: list[SandboxState] = field(default_factory=list)
    containers: list[ContainerState] = field(default_factory=list)

    def latest_sandbox(self) -> SandboxState | None:
        return self.sandboxes[0] if self.sandboxes else None

    def latest(self, name: str) -> ContainerState | None:
        for c in self.containers:
            if c.name == name:
                return c
        return None

    def running(self) -> list[ContainerState]:
        return [c for c in self.containers if c.state == "running"]


_STATES = {cri.CONTAINER_CREATED: "created", cri.CONTAINER_RUNNING: "running",
           cri.CONTAINER_EXITED: "exited", cri.CONTAINER_UNKNOWN: "unknown"}


def _ns(v: int) -> float:
    return v / 1e9 if v else 0.0


def container_state_from_status(st: Any, sandbox_id: str) -> ContainerState:
    ann = dict(st.annotations)
    labels = dict(st.labels)
    return ContainerState(
        id=st.id, name=labels.get(CONTAINER_NAME, st.metadata.name), state=_STATES.get(st.state, "unknown"),
        attempt=st.metadata.attempt, sandbox_id=sandbox_id, created_at=_ns(st.created_at),
        started_at=_ns(st.started_at), finished_at=_ns(st.finished_at), exit_code=st.exit_code,
        reason=st.reason, message=st.message, image=st.image.image, image_ref=st.image_ref,
        restart_count=int(ann.get(CONTAINER_RESTART_COUNT, st.metadata.attempt) or 0),
        hash=ann.get(CONTAINER_HASH, ""),
        termination_message_path=ann.get(CONTAINER_TERMINATION_MESSAGE_PATH, ""),
        termination_message_policy=ann.get(CONTAINER_TERMINATION_MESSAGE_POLICY, ""),
        mounts=[(m.container_path, m.host_path) for m in st.mounts], log_path=st.log_path,
        is_init=labels.get(CONTAINER_TYPE) == "init")


def termination_message(c: ContainerState) -> str:
    """getTerminationMessage: the file mounted at terminationMessagePath, else (for
    FallbackToLogsOnError and a failed container) the tail of its log."""
    msg = ""
    if c.termination_message_path:
        for cpath, hpath in c.mounts:
            if cpath == c.termination_message_path:
                try:
                    with open(hpath, "rb") as f:
                        msg = f.read(MAX_TERMINATION_MESSAGE).decode(errors="replace")
                except OSError:
                    pass
                break
    if not msg and c.termination_message_policy == "FallbackToLogsOnError" and c.exit_code != 0 and c.log_path:
        msg = _log_tail(c.log_path)
    return msg


def _log_tail(path: str) -> str:
    """The last lines of a CRI log file, payloads only (``<time> <stream> <P|F> <text>``)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            lines = f.read().decode(errors="replace").splitlines()[-FALLBACK_LOG_LINES:]
    except OSError:
        return ""
    out = []
    for ln in lines:
        parts = ln.split(" ", 3)
        if len(parts) == 4:
            out.append(parts[3] + ("\n" if parts[2] == "F" else ""))
    text = "".join(out)
    return text[-FALLBACK_LOG_BYTES:]


# --------------------------------------------------------------------------- sandbox config
CLUSTER_DOMAIN = "cluster.local"
HOSTNAME_MAX = 63  # a DNS label
FQDN_MAX = 64  # the kernel's nodename field


class SandboxConfigError(Exception):
    """The pod's sandbox config cannot be generated (a FailedCreatePodSandBox event)."""


def _truncate_hostname(hostname: str) -> str:
    """truncatePodHostnameIfNeeded: at most 63 characters, no trailing '-' or '.'."""
    if len(hostname) <= HOSTNAME_MAX:
        return hostname
    return hostname[:HOSTNAME_MAX].rstrip("-.")


def pod_hostname_and_domain(pod: Obj, cluster_domain: str = CLUSTER_DOMAIN) -> tuple[str, str]:
    """GeneratePodHostNameAndDomain: ``hostnameOverride`` (no domain), else ``hostname`` or the
    pod's name, truncated to a DNS label; the domain ``<subdomain>.<namespace>.svc.<cluster
    domain>`` when ``subdomain`` is set."""
    spec = pod.get("spec") or {}
    meta = pod["metadata"]
    override = spec.get("hostnameOverride")
    if override:
        return _truncate_hostname(override), ""
    hostname = _truncate_hostname(spec.get("hostname") or meta["name"])
    sub = spec.get("subdomain")
    domain = f"{sub}.{meta.get('namespace', '')}.svc.{cluster_domain}" if sub and cluster_domain else ""
    return hostname, domain


def kernel_hostname(hostname: str, domain: str, as_fqdn: bool) -> str:
    """GetNodenameForKernel: with ``setHostnameAsFQDN`` and a domain, the FQDN (at most 64
    characters, the kernel's limit)."""
    if not (domain and as_fqdn):
        return hostname
    fqdn = f"{hostname}.{domain}"
    if len(fqdn) > FQDN_MAX:
        raise SandboxConfigError(f"failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} is too "
                                 f"long ({FQDN_MAX} characters is the max, {len(fqdn)} characters requested)")
    return fqdn


def _selinux_and_groups_policy(sc: Any, psc: Obj, csc: Obj) -> None:
    """SELinux options (the container's, else the pod's: determineEffectiveSecurityContext) and
    the supplemental-groups policy, as the kubelet hands them to the runtime (a runtime on a
    host without SELinux ignores the options; Strict reaches only runtimes that support it —
    the agent's admission refuses it elsewhere)."""
    se = csc.get("seLinuxOptions") or psc.get("seLinuxOptions") or {}
    if se:
        sc.selinux_options.CopyFrom(cri.SELinuxOption(user=se.get("user", ""), role=se.get("role", ""),
                                                      type=se.get("type", ""), level=se.get("level", "")))
    if psc.get("supplementalGroupsPolicy") == "Strict":
        sc.supplemental_groups_policy = cri.SupplementalGroupsPolicy.Strict


def sandbox_config(pod: Obj, attempt: int, log_directory: str, cgroup_parent: str,
                   seccomp_root: str = "/var/lib/kubelet/seccomp", dns: DNSConfigurer | None = None) -> Any:
    m = pod["metadata"]
    spec = pod.get("spec") or {}
    host_network = bool(spec.get("hostNetwork"))
    if host_network:
        hostname = ""  # generatePodSandboxConfig sets none: the pod has the node's UTS namespace
    else:
        name, domain = pod_hostname_and_domain(pod, (dns or DNSConfigurer()).cluster_domain)
        hostname = kernel_hostname(name, domain, bool(spec.get("setHostnameAsFQDN")))
    labels = dict(m.get("labels") or {})
    labels.update({POD_NAME: m["name"], POD_NAMESPACE: m.get("namespace", ""), POD_UID: m["uid"]})
    annotations = dict(m.get("annotations") or {})
    ports = []
    for c in spec.get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                proto = {"TCP": cri.TCP, "UDP": cri.UDP, "SCTP": cri.SCTP}.get(p.get("protocol", "TCP"), cri.TCP)
                ports.append(cri.PortMapping(protocol=proto, container_port=p["containerPort"],
                                             host_port=p["hostPort"], host_ip=p.get("hostIP", "")))
    dns_config, _ = (dns or DNSConfigurer()).cri_config(pod)
    psc = spec.get("securityContext") or {}
    ns_opts = cri.NamespaceOption(
        network=cri.NODE if host_network else cri.POD,
        pid=cri.NODE if spec.get("hostPID") else (cri.POD if spec.get("shareProcessNamespace") else cri.CONTAINER),
        ipc=cri.NODE if spec.get("hostIPC") else cri.POD)
    sc = cri.LinuxSandboxSecurityContext(
        namespace_options=ns_opts,
        # HasPrivilegedContainer: init and ephemeral containers count too
        privileged=any(((c.get("securityContext") or {}).get("privileged"))
                       for k in ("initContainers", "containers", "ephemeralContainers") for c in spec.get(k) or []),
        supplemental_groups=list(psc.get("supplementalGroups") or []) + ([psc["fsGroup"]] if "fsGroup" in psc else []))
    _selinux_and_groups_policy(sc, psc, {})
    if "runAsUser" in psc:
        sc.run_as_user.value = psc["runAsUser"]
    if "runAsGroup" in psc:
        sc.run_as_group.value = psc["runAsGroup"]
    sc.seccomp.CopyFrom(security.seccomp_profile(psc, None, seccomp_root))
    sysctls = {s["name"]: s.get("value", "") for s in psc.get("sysctls") or []}
    return cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=m["name"], uid=m["uid"], namespace=m.get("namespace", ""),
                                        attempt=attempt),
        hostname=hostname, log_directory=log_directory, dns_config=dns_config, port_mappings=ports,
        labels=labels, annotations=annotations,
        linux=cri.LinuxPodSandboxConfig(cgroup_parent=cgroup_parent, security_context=sc, sysctls=sysctls))


# --------------------------------------------------------------------------- container config
def _host_alias_entries(spec: Obj) -> str:
    """hostsEntriesFromHostAliases: one header, then a line per alias."""
    aliases = spec.get("hostAliases") or []
    if not aliases:
        return ""
    return "\n# Entries added by HostAliases.\n" + "".join(
        f"{ha.get('ip')}\t" + "\t".join(ha.get("hostnames") or []) + "\n" for ha in aliases)


def etc_hosts(pod: Obj, pod_ips: list[str], cluster_domain: str = CLUSTER_DOMAIN,
              node_hosts: str = "/etc/hosts") -> str:
    """The kubelet's managed /etc/hosts (the FQDN of a pod with a subdomain:
    GeneratePodHostNameAndDomain); a hostNetwork pod's is the node's file with the host
    aliases added (nodeHostsFileContent)."""
    spec = pod.get("spec") or {}
    if spec.get("hostNetwork"):
        try:
            with open(node_hosts, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            text = ""
        return "# Kubernetes-managed hosts file (host network).\n" + text + _host_alias_entries(spec)
    name, domain = pod_hostname_and_domain(pod, cluster_domain)
    lines = ["# Kubernetes-managed hosts file.", "127.0.0.1\tlocalhost",
             "::1\tlocalhost ip6-localhost ip6-loopback", "fe00::0\tip6-localnet", "fe00::0\tip6-mcastprefix",
             "fe00::1\tip6-allnodes", "fe00::2\tip6-allrouters"]
    fqdn = f"{name}.{domain}" if domain else ""
    for ip in pod_ips:
        lines.append(f"{ip}\t{fqdn}\t{name}" if fqdn else f"{ip}\t{name}")
    return "\n".join(lines) + "\n" + _host_alias_entries(spec)


def _oom_score_adj(pod: Obj, container: Obj, memory_capacity: int) -> int:
    """GetContainerOOMScoreAdjust (the runtime clamps it under restrict_oom_score_adj)."""
    qos = compute_qos_class(pod)
    if qos == "Guaranteed":
        return OOM_GUARANTEED
    if qos == "BestEffort":
        return OOM_BESTEFFORT
    req = ((container.get("resources") or {}).get("requests") or {}).get("memory")
    mem_req = bytes_of(req) if req else 0
    adj = 1000 - (1000 * mem_req) // max(memory_capacity, 1)
    return int(min(max(adj, 2), 999))


def container_resources(pod: Obj, container: Obj, memory_capacity: int) -> Any:
    res = container.get("resources") or {}
    req = res.get("requests") or {}
    lim = res.get("limits") or {}
    r = cri.LinuxContainerResources(oom_score_adj=_oom_score_adj(pod, container, memory_capacity))
    cpu_req = req.get("cpu") or lim.get("cpu")
    r.cpu_shares = milli_cpu_to_shares(milli(cpu_req)) if cpu_req else MIN_SHARES
    if lim.get("cpu"):
        r.cpu_quota = milli_cpu_to_quota(milli(lim["cpu"]))
        r.cpu_period = QUOTA_PERIOD
    if lim.get("memory"):
        r.memory_limit_in_bytes = bytes_of(lim["memory"])
    return r


class ContainerConfigError(Exception):
    """CreateContainerConfigError: the message is shown in the waiting state."""


def verify_run_as_non_root(pod: Obj, container: Obj, image_uid: int | None, image_user: str) -> None:
    """verifyRunAsNonRoot."""
    csc = container.get("securityContext") or {}
    psc = (pod.get("spec") or {}).get("securityContext") or {}
    non_root = csc.get("runAsNonRoot", psc.get("runAsNonRoot"))
    if not non_root:
        return
    run_as_user = csc.get("runAsUser", psc.get("runAsUser"))
    fp = format_pod(pod)
    name = container.get("name", "")
    if run_as_user is not None:
        if run_as_user == 0:
            raise ContainerConfigError(f"container's runAsUser breaks non-root policy (pod: \"{fp}\", "
                                       f"container: {name})")
        return
    if image_uid is not None and image_uid == 0:
        raise ContainerConfigError(f"container has runAsNonRoot and image will run as root (pod: \"{fp}\", "
                                   f"container: {name})")
    if image_uid is None and image_user:
        raise ContainerConfigError(f"container has runAsNonRoot and image has non-numeric user ({image_user}), "
                                   f"cannot verify user is non-root (pod: \"{fp}\", container: {name})")
    if image_uid is None and not image_user:
        raise ContainerConfigError(f"container has runAsNonRoot and image will run as root (pod: \"{fp}\", "
                                   f"container: {name})")


def security_context(pod: Obj, container: Obj, target_id: str = "",
                     seccomp_root: str = "/var/lib/kubelet/seccomp") -> Any:
    """The container's Linux security context (determineEffectiveSecurityContext);
    ``target_id`` (an ephemeral container's target) puts it in that container's process
    namespace."""
    spec = pod.get("spec") or {}
    psc = spec.get("securityContext") or {}
    csc = container.get("securityContext") or {}
    host_network = bool(spec.get("hostNetwork"))
    sc = cri.LinuxContainerSecurityContext(
        privileged=bool(csc.get("privileged")),
        readonly_rootfs=bool(csc.get("readOnlyRootFilesystem")),
        namespace_options=cri.NamespaceOption(
            network=cri.NODE if host_network else cri.POD,
            pid=cri.NODE if spec.get("hostPID") else (cri.POD if spec.get("shareProcessNamespace") else cri.CONTAINER),
            ipc=cri.NODE if spec.get("hostIPC") else cri.POD),
        supplemental_groups=list(psc.get("supplementalGroups") or []) + ([psc["fsGroup"]] if "fsGroup" in psc else []))
    _selinux_and_groups_policy(sc, psc, csc)
    if target_id and not spec.get("hostPID") and not spec.get("shareProcessNamespace"):
        sc.namespace_options.pid = cri.TARGET
        sc.namespace_options.target_id = target_id
    caps = csc.get("capabilities") or {}
    if caps:
        sc.capabilities.CopyFrom(cri.Capability(add_capabilities=list(caps.get("add") or []),
                                                drop_capabilities=list(caps.get("drop") or [])))
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    gid = csc.get("runAsGroup", psc.get("runAsGroup"))
    if uid is not None:
        sc.run_as_user.value = uid
    if gid is not None:
        sc.run_as_group.value = gid
    if csc.get("allowPrivilegeEscalation") is False and not csc.get("privileged"):
        sc.no_new_privs = True
    sc.seccomp.CopyFrom(security.seccomp_profile(psc, csc, seccomp_root))
    apparmor = security.apparmor_unconfined(pod, container)
    if apparmor is not None:
        sc.apparmor.CopyFrom(apparmor)
        sc.apparmor_profile = "unconfined"
    # privileged or procMount Unmasked: no masked or read-only /proc paths (the runtime's
    # defaults apply only when the kubelet sends none, so it sends none by leaving them empty)
    if not csc.get("privileged") and csc.get("procMount") != "Unmasked":
        sc.masked_paths.extend(["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                                "/sys/firmware", "/sys/devices/virtual/powercap"])
        sc.readonly_paths.extend(["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                  "/proc/sysrq-trigger"])
    return sc


def container_config(pod: Obj, container: Obj, *, image_ref: str, restart_count: int, command: list[str],
                     args: list[str], env: list[tuple[str, str]], mounts: list[MountSpec],
                     memory_capacity: int, is_init: bool = False, target_id: str | None = None,
                     seccomp_root: str = "/var/lib/kubelet/seccomp") -> Any:
    """The CRI ContainerConfig; ``target_id`` is not None for an ephemeral container."""
    m = pod["metadata"]
    name = container["name"]
    labels = {POD_NAME: m["name"], POD_NAMESPACE: m.get("namespace", ""), POD_UID: m["uid"], CONTAINER_NAME: name}
    if is_init:
        labels[CONTAINER_TYPE] = "init"
    elif target_id is not None:
        labels[CONTAINER_TYPE] = "ephemeral"
    grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
    annotations = {
        CONTAINER_HASH: container_hash(container),
        CONTAINER_RESTART_COUNT: str(restart_count),
        CONTAINER_TERMINATION_MESSAGE_PATH: container.get("terminationMessagePath", "/dev/termination-log"),
        CONTAINER_TERMINATION_MESSAGE_POLICY: container.get("terminationMessagePolicy", "File"),
    }
    if grace is not None:
        annotations[POD_TERMINATION_GRACE_PERIOD] = str(grace)
    if container.get("ports"):
        annotations[CONTAINER_PORTS] = json.dumps(container["ports"], separators=(",", ":"))
    return cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name=name, attempt=restart_count),
        image=cri.ImageSpec(image=image_ref, user_specified_image=container.get("image", "")),
        command=command, args=args, working_dir=container.get("workingDir", ""),
        envs=[cri.KeyValue(key=k, value=v) for k, v in env],
        mounts=[cri.Mount(host_path=m.host_path, container_path=m.container_path, readonly=m.readonly,
                          propagation=m.propagation, recursive_read_only=m.recursive_read_only) for m in mounts],
        labels=labels, annotations=annotations, log_path=f"{name}/{restart_count}.log",
        stdin=bool(container.get("stdin")), stdin_once=bool(container.get("stdinOnce")),
        tty=bool(container.get("tty")),
        linux=cri.LinuxContainerConfig(resources=container_resources(pod, container, memory_capacity),
                                       security_context=security_context(pod, container, target_id or "",
                                                                         seccomp_root)),
        stop_signal=cri_stop_signal(container))


def stop_signal_of(container: Obj) -> str | None:
    """The container's lifecycle.stopSignal (None: the runtime's default, the image's STOPSIGNAL)."""
    sig = ((container.get("lifecycle") or {}).get("stopSignal"))
    return sig or None


def cri_stop_signal(container: Obj) -> Any:
    """The CRI Signal enum value for the container's stop signal (RUNTIME_DEFAULT without one)."""
    sig = stop_signal_of(container)
    if sig is None:
        return cri.RUNTIME_DEFAULT
    return cri.Signal.Value(sig.replace("+", "PLUS").replace("-", "MINUS"))


def signal_number(name: str) -> int:
    """The Linux signal number of an API Signal name (``SIGUSR1``, ``SIGRTMIN+3``, ``SIGRTMAX-2``)."""
    if name.startswith("SIGRTMIN+"):
        return int(signal.SIGRTMIN) + int(name[9:])
    if name.startswith("SIGRTMAX-"):
        return int(signal.SIGRTMAX) - int(name[9:])
    aliases = {"SIGCLD": "SIGCHLD", "SIGPOLL": "SIGIO", "SIGIOT": "SIGABRT"}
    if name == "SIGSTKFLT":
        return 16
    return int(getattr(signal, aliases.get(name, name)))


# --------------------------------------------------------------------------- reading state
def sandbox_state_from_status(st: Any) -> SandboxState:
    """A SandboxState from a PodSandboxStatus answer (what RunPodSandbox's caller asks next)."""
    ready = st.state == cri.SANDBOX_READY
    ip = st.network.ip if ready else ""
    return SandboxState(st.id, ready, st.metadata.attempt, _ns(st.created_at), ip=ip,
                        ips=[ip] + [a.ip for a in st.network.additional_ips] if ip else [], labels=dict(st.labels))


async def _sandbox_state(cri_rt: Any, sb: Any) -> SandboxState:
    st = SandboxState(sb.id, sb.state == cri.SANDBOX_READY, sb.metadata.attempt, _ns(sb.created_at),
                      labels=dict(sb.labels))
    if st.ready:
        try:
            full = await cri_rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=sb.id), timeout=30)
            st.ip = full.status.network.ip
            st.ips = [st.ip] + [a.ip for a in full.status.network.additional_ips] if st.ip else []
        except Exception as exc:  # raced with removal
            log.debug("sandbox status %s: %s", sb.id, exc)
    return st


async def _container_state(cri_rt: Any, c: Any) -> ContainerState | None:
    try:
        full = await cri_rt.ContainerStatus(cri.ContainerStatusRequest(container_id=c.id), timeout=30)
    except Exception as exc:  # raced with removal
        log.debug("container status %s: %s", c.id, exc)
        return None
    return container_state_from_status(full.status, c.pod_sandbox_id)


def _sort(pr: PodRuntime) -> None:
    # the id breaks ties: two listings of the same containers always give the same order
    pr.sandboxes.sort(key=lambda s: (s.created_at, s.attempt, s.id), reverse=True)
    pr.containers.sort(key=lambda c: (c.created_at, c.attempt, c.id), reverse=True)


async def list_pod_runtime(cri_rt: Any, uid: str | None = None) -> dict[str, PodRuntime]:
    """Sandboxes and containers (with full statuses) grouped by pod uid, newest first.
    Uncached: the agent's pod workers read :class:`RuntimeCache` instead."""
    sel = {POD_UID: uid} if uid else {}
    sbs = await cri_rt.ListPodSandbox(cri.ListPodSandboxRequest(filter=cri.PodSandboxFilter(label_selector=sel)),
                                      timeout=30)
    cts = await cri_rt.ListContainers(cri.ListContainersRequest(filter=cri.ContainerFilter(label_selector=sel)),
                                      timeout=30)
    out: dict[str, PodRuntime] = {}
    for sb in sbs.items:
        puid = sb.labels.get(POD_UID)
        if puid:
            out.setdefault(puid, PodRuntime(puid)).sandboxes.append(await _sandbox_state(cri_rt, sb))
    for c in cts.containers:
        puid = c.labels.get(POD_UID)
        if not puid:
            continue
        st = await _container_state(cri_rt, c)
        if st is not None:
            out.setdefault(puid, PodRuntime(puid)).containers.append(st)
    for pr in out.values():
        _sort(pr)
    return out


class RuntimeCache:
    """The node's runtime state, shared by every pod worker (the kubelet's PLEG + pod cache).

    One relist is one ListPodSandbox and one ListContainers for the whole node; the full
    ContainerStatus / PodSandboxStatus is asked only for a container or sandbox whose listed
    state is new (a container's status does not change while its state does not). Callers
    say how fresh they need it: ``await cache.get(uid, newer_than=t)`` returns the pod's
    state from a relist that started after ``t`` (the moment the caller last changed
    something), so a worker sees its own changes while the many workers of a burst share
    relists instead of each listing the runtime. ``on_change(uid)`` is called for every pod
    whose sandboxes or containers changed between two relists.

    The objects handed out are shared and must not be modified.
    """

    def __init__(self, cri_rt: Any, on_change: Any = None) -> None:
        self.rt = cri_rt
        self.on_change = on_change
        self.relists = 0
        self._pods: dict[str, PodRuntime] = {}
        self._fingerprints: dict[str, frozenset[tuple[str, int]]] = {}
        self._at = float("-inf")  # when the relist behind _pods started (time.monotonic)
        self._inflight: asyncio.Task[None] | None = None
        self._containers: dict[str, tuple[int, ContainerState]] = {}  # id -> (listed state, status)
        self._sandboxes: dict[str, tuple[int, SandboxState]] = {}

    @property
    def listed_at(self) -> float:
        return self._at

    def pods(self) -> dict[str, PodRuntime]:
        """Every pod uid of the last relist."""
        return dict(self._pods)

    async def get(self, uid: str, newer_than: float = float("-inf")) -> PodRuntime:
        await self.refresh(newer_than)
        return self._pods.get(uid) or PodRuntime(uid)

    async def refresh(self, newer_than: float | None = None) -> None:
        """Make sure the state comes from a relist started after ``newer_than`` (default:
        now). Joins the relist under way if that one is fresh enough."""
        if newer_than is None:
            newer_than = time.monotonic()
        while self._at < newer_than:
            task = self._inflight
            if task is None:
                task = self._inflight = asyncio.create_task(self._relist(), name="runtime-relist")
            await asyncio.shield(task)

    async def close(self) -> None:
        task = self._inflight
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def _relist(self) -> None:
        try:
            started = time.monotonic()
            sbs = await self.rt.ListPodSandbox(cri.ListPodSandboxRequest(), timeout=30)
            cts = await self.rt.ListContainers(cri.ListContainersRequest(), timeout=30)
            sb_items = [s for s in sbs.items if s.labels.get(POD_UID)]
            ct_items = [c for c in cts.containers if c.labels.get(POD_UID)]
            new_sbs = [s for s in sb_items if self._sandboxes.get(s.id, (None,))[0] != s.state]
            new_cts = [c for c in ct_items if self._containers.get(c.id, (None,))[0] != c.state]
            got_sbs = await asyncio.gather(*(_sandbox_state(self.rt, s) for s in new_sbs))
            got_cts = await asyncio.gather(*(_container_state(self.rt, c) for c in new_cts))
            sandboxes = {s.id: v for s, v in ((s, self._sandboxes.get(s.id)) for s in sb_items) if v is not None}
            containers = {c.id: v for c, v in ((c, self._containers.get(c.id)) for c in ct_items) if v is not None}
            for s, st in zip(new_sbs, got_sbs, strict=True):
                sandboxes[s.id] = (s.state, st)
            for c, cst in zip(new_cts, got_cts, strict=True):
                if cst is not None:
                    containers[c.id] = (c.state, cst)
            pods: dict[str, PodRuntime] = {}
            for s in sb_items:
                if s.id in sandboxes:
                    uid = s.labels[POD_UID]
                    pods.setdefault(uid, PodRuntime(uid)).sandboxes.append(sandboxes[s.id][1])
            for c in ct_items:
                if c.id in containers:
                    uid = c.labels[POD_UID]
                    pods.setdefault(uid, PodRuntime(uid)).containers.append(containers[c.id][1])
            fingerprints: dict[str, frozenset[tuple[str, int]]] = {}
            for uid, pr in pods.items():
                _sort(pr)
                fingerprints[uid] = frozenset([(x.id, sandboxes[x.id][0]) for x in pr.sandboxes]
                                              + [(x.id, containers[x.id][0]) for x in pr.containers])
            changed = [u for u in set(fingerprints) | set(self._fingerprints)
                       if fingerprints.get(u) != self._fingerprints.get(u)]
            self._sandboxes, self._containers = sandboxes, containers
            self._pods, self._fingerprints, self._at = pods, fingerprints, started
            self.relists += 1
        finally:
            self._inflight = None
        if self.on_change is not None:
            for uid in changed:
                self.on_change(uid)
