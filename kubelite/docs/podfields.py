"""The Pod field table (docs/pod-fields.md), generated from the served 1.37 schema.

    python -m kubelite.docs.podfields > docs/pod-fields.md

Every property of the structs in ``STRUCTS`` must have an entry in ``FIELDS``; the unit test
fails when the schema has a field that is classified nowhere, so a new field cannot be forgotten.
Statuses: ``honoured`` (note: how), ``refused`` (note: kubelite's exact message),
``not honoured yet`` (accepted but no code acts on it: a bug), ``unreviewed`` (code reads
the field, but nobody has yet checked it is honoured in full).
"""

from __future__ import annotations

import sys

from kubelite.api import schema

STRUCTS = ["PodSpec", "Container", "EphemeralContainer", "PodSecurityContext", "SecurityContext", "Probe",
           "Lifecycle", "LifecycleHandler"]
STATUSES = ("honoured", "refused", "not honoured yet", "unreviewed")
_NO_CODE = "accepted by the API server; nothing in agent/, scheduler/ or admission/ reads it"

_UNREVIEWED_NOTE = "read by kubelite code; not yet checked field by field"
_NOT_YET: dict[str, list[str]] = {}


def _properties(struct: str) -> list[str]:
    return list(schema.definitions()[f"io.k8s.api.core.v1.{struct}"]["properties"])


# field path ("Struct.field") -> (status, note)
FIELDS: dict[str, tuple[str, str]] = {
    f"{struct}.{name}": ("not honoured yet", _NO_CODE) if name in _NOT_YET.get(struct, [])
    else ("unreviewed", _UNREVIEWED_NOTE)
    for struct in STRUCTS for name in _properties(struct)}
FIELDS.update({
    "PodSpec.affinity": ("honoured", "the scheduler: node affinity (required filters, preferred scores), pod "
                                     "affinity and anti-affinity (required filters, preferred scores, existing "
                                     "pods' terms too), namespaces, namespaceSelector, matchLabelKeys, "
                                     "mismatchLabelKeys"),
    "PodSpec.topologySpreadConstraints": ("honoured", "the scheduler: DoNotSchedule filters, ScheduleAnyway "
                                                      "scores; minDomains, nodeAffinityPolicy, nodeTaintsPolicy, "
                                                      "matchLabelKeys; no cluster default constraints"),
})
_SECCOMP = ("honoured", "the agent's CRI request (LinuxContainerSecurityContext.seccomp, the sandbox's from the "
                        "pod): RuntimeDefault, Unconfined (also when unset), Localhost relative to "
                        "`<data dir>/seccomp`; a missing Localhost file is containerd's CreateContainerError; the "
                        "container's profile wins over the pod's")
_APPARMOR = ("refused", "this host has no AppArmor: any type but Unconfined (the deprecated "
                        "`container.apparmor.security.beta.kubernetes.io/*` annotations too) fails the pod at the "
                        "agent's admission, phase Failed, reason `AppArmor`, message `Pod was rejected: Cannot "
                        "enforce AppArmor: AppArmor is not enabled on the host`; Unconfined is passed to the runtime")
_VOLUMES = ("honoured", "the agent's volume plugins (agent/volumes.py, one per source, see docs/storage.md): "
                       "emptyDir (disk, or tmpfs for medium Memory), hostPath with its type checks, configMap, "
                       "secret, downwardAPI, projected, nfs (the node's `mount -t nfs`), persistentVolumeClaim (the "
                       "claim must be Bound to a PV whose source has a plugin); volumes no container mounts are "
                       "skipped. Any other source is refused: the pod stays ContainerCreating with FailedMount "
                       "`Unable to attach or mount volumes: ... failed to get Plugin from volumeSpec for volume "
                       "\"x\" err=no volume plugin matched`; a failing SetUp is FailedMount `MountVolume.SetUp "
                       "failed for volume \"x\" : ...`, retried with back-off (0.5 s doubling to 2m2s). emptyDir "
                       "sizeLimit: a pod whose emptyDir holds more is evicted (phase Failed, reason Evicted, `Usage "
                       "of EmptyDir volume \"x\" exceeds the limit \"1Mi\". `, DisruptionTarget); hugepages "
                       "media are refused (`unknown storage medium`)")
_VOLUME_MOUNTS = ("honoured", "readOnly (and always read-only for configMap, secret, downwardAPI, projected; "
                              "nfs/claims when their readOnly says so), subPath and subPathExpr (`$(VAR)` from the "
                              "container's env; `missing value for X`, ``error SubPath `/x` must not be an absolute "
                              "path``, ``unable to provision SubPath `a/..`: must not contain '..'``; made inside the "
                              "volume and bind-mounted after opening it without following symlinks out of it: "
                              "`failed to prepare subPath for volumeMount \"v\" of container \"c\"`), "
                              "mountPropagation None/HostToContainer/Bidirectional to the CRI (the pod dir is made "
                              "rshared for such a pod; Bidirectional only for privileged containers, by validation); "
                              "recursiveReadOnly against the runtime handler's CRI features (containerd 1.6 has "
                              "none: IfPossible is a plain read-only mount, Enabled is `failed to resolve recursive "
                              "read-only mode: volume \"v\" requested recursive read-only mode, but it is not "
                              "supported by the runtime`)")
_SELINUX = ("honoured", "the container's, else the pod's, in the CRI requests (sandbox and container "
                        "SELinuxOption); a runtime on a host without SELinux, as here, applies no label")
_WINDOWS = ("honoured", "ignored on Linux nodes, as the Linux kubelet does (there is no Windows node)")
FIELDS.update({
    "PodSecurityContext.seccompProfile": _SECCOMP,
    "SecurityContext.seccompProfile": _SECCOMP,
    "PodSecurityContext.appArmorProfile": _APPARMOR,
    "SecurityContext.appArmorProfile": _APPARMOR,
    "SecurityContext.procMount": ("honoured", "Unmasked sends no masked or read-only paths to the runtime; the "
                                              "API server requires `hostUsers: false` for it (\"`hostUsers` must "
                                              "be false to use `Unmasked`\")"),
    "PodSpec.runtimeClassName": ("honoured", "RuntimeClass admission (an unknown class: `pod rejected: "
                                             "RuntimeClass \"x\" not found`; overhead.podFixed into spec.overhead, "
                                             "scheduling merged into nodeSelector/tolerations); the agent passes its "
                                             "handler to RunPodSandbox (only the default runc handler exists here: "
                                             "another is containerd's FailedCreatePodSandBox error)"),
    "PodSpec.overhead": ("honoured", "set by RuntimeClass admission (a pod's own differing overhead is refused); "
                                     "counted in the pod's requests by the scheduler and ResourceQuota "
                                     "(kinds/podutil.py)"),
    "PodSpec.priorityClassName": ("honoured", "Priority admission sets spec.priority and preemptionPolicy "
                                              "from the PriorityClass (or the global default; "
                                              "system-cluster-critical and system-node-critical exist)"),
    "PodSpec.priority": ("honoured", "set by Priority admission; orders the scheduling queue and decides who "
                                     "preempts whom (DefaultPreemption: victims of lower priority get "
                                     "DisruptionTarget/PreemptionByScheduler and a graceful delete, the preemptor "
                                     "status.nominatedNodeName); victims whose eviction would violate a "
                                     "PodDisruptionBudget are reprieved first and nodes with fewer violations "
                                     "preferred"),
    "PodSpec.preemptionPolicy": ("honoured", "Never: the pod waits instead of preempting (`preemption: not "
                                             "eligible due to preemptionPolicy=Never.`); it can still be a victim"),
    "Container.resizePolicy": ("honoured", "in-place resize through `pods/resize`: NotRequired (the default) "
                                           "updates the running container (UpdateContainerResources, the pod "
                                           "cgroup first), RestartContainer restarts it (`Container c resize "
                                           "requires restart`); PodResizePending (Deferred/Infeasible, the "
                                           "kubelet's messages), PodResizeInProgress, ResizeStarted/ResizeCompleted "
                                           "events, containerStatuses[].allocatedResources and .resources (read "
                                           "from the cgroup); pod-level resources cannot be resized (as upstream); "
                                           "ResourceQuota charges what a resize adds; LimitRange's min/max "
                                           "validate it (`maximum cpu usage per Container is 800m, but limit is "
                                           "1`)"),
    "EphemeralContainer.resizePolicy": ("refused", "`Forbidden: cannot be set for an Ephemeral Container` "
                                                   "(ephemeral containers are not resized)"),
    "PodSecurityContext.sysctls": ("honoured", "the kubelet's allowlist at admission: the safe sysctls "
                                               "(kernel.shm_rmid_forced, net.ipv4.ip_local_port_range, "
                                               "tcp_syncookies, ping_group_range, ip_unprivileged_port_start, "
                                               "ip_local_reserved_ports, tcp_keepalive_time/intvl/probes, "
                                               "tcp_fin_timeout, tcp_rmem, tcp_wmem, as the kernel namespaces them) "
                                               "and the agent's `--allowed-unsafe-sysctls`; others fail the pod: "
                                               "phase Failed, reason `SysctlForbidden`, message `Pod was rejected: "
                                               "forbidden sysctl: \"kernel.sem\" not allowlisted` (net ones with "
                                               "hostNetwork, IPC ones with hostIPC: `not allowed with host net "
                                               "enabled`); allowed ones go to the sandbox (LinuxPodSandboxConfig.sysctls)"),
    "PodSpec.dnsPolicy": ("honoured", "the kubelet's DNS configurer (agent/dns.py): ClusterFirst (the default) "
                                      "gets the agent's --cluster-dns (the server's node: the kube-dns Service, "
                                      "10.43.0.10), search `<ns>.svc.<domain> svc.<domain> <domain>` + the node's, "
                                      "`options ndots:5`; with hostNetwork it is Default; ClusterFirstWithHostNet is "
                                      "ClusterFirst; Default: the node's resolv.conf; None: dnsConfig only; without "
                                      "--cluster-dns ClusterFirst falls back to Default with the MissingClusterDNS event"),
    "PodSpec.dnsConfig": ("honoured", "appended to the policy's configuration: nameservers and searches without "
                                      "duplicates, options replacing those of the same name; cut to 3 nameservers, "
                                      "32 search paths, 2048 characters with the DNSConfigForming event"),
    "PodSpec.volumes": _VOLUMES,
    "Container.volumeMounts": _VOLUME_MOUNTS,
    "EphemeralContainer.volumeMounts": _VOLUME_MOUNTS,
    "PodSecurityContext.fsGroup": ("honoured", "a supplemental group of every container; emptyDir (once, when "
                                               "made), configMap, secret, downwardAPI and projected volumes get the "
                                               "group and group rw (ro for the read-only ones) permissions, "
                                               "directories setgid, as SetVolumeOwnership does; hostPath and nfs are "
                                               "left alone"),
    "PodSecurityContext.fsGroupChangePolicy": ("honoured", "as the kubelet: it only applies to persistent volumes "
                                                           "whose plugin manages ownership; for emptyDir, configMap, "
                                                           "secret, downwardAPI and projected the kubelet always "
                                                           "changes ownership (it passes no policy), hostPath and nfs "
                                                           "never; OnRootMismatch (root group, setgid and "
                                                           "permissions already right: nothing changed) is in "
                                                           "agent/volume_util.py for such plugins"),
    "PodSpec.enableServiceLinks": ("honoured", "the agent's Service informer: `{SVC}_SERVICE_HOST`, "
                                               "`_SERVICE_PORT`, `_SERVICE_PORT_{NAME}` and the Docker link "
                                               "variables for the namespace's Services with a cluster IP (unset "
                                               "or true), always the `kubernetes` Service's; usable in `$(VAR)` "
                                               "expansion, declared variables win; before the first list of "
                                               "Services the container fails with CreateContainerConfigError "
                                               "`services have not yet been read at least once, cannot construct "
                                               "envvars`"),
    "PodSpec.setHostnameAsFQDN": ("honoured", "with a subdomain, the sandbox's hostname is "
                                              "`<hostname>.<subdomain>.<namespace>.svc.cluster.local`; past the "
                                              "kernel's 64 characters the sandbox is not created: "
                                              "FailedCreatePodSandBox `Failed to create pod sandbox: failed to "
                                              "construct FQDN from pod hostname and cluster domain, FQDN ... is too "
                                              "long (64 characters is the max, N characters requested)`"),
    "PodSpec.hostnameOverride": ("honoured", "the sandbox's hostname and /etc/hosts entry (no domain), over "
                                             "hostname/subdomain; a DNS subdomain of at most 64 characters, "
                                             "forbidden with setHostnameAsFQDN or hostNetwork (`may not be "
                                             "specified when setHostnameAsFQDN is true`)"),
    "PodSecurityContext.supplementalGroupsPolicy": ("refused", "Strict: the runtime's CRI Status reports no "
                                                               "support (containerd 1.6; node status "
                                                               "`features.supplementalGroupsPolicy: false`), so "
                                                               "the kubelet's admission fails the pod: phase "
                                                               "Failed, reason `SupplementalGroupsPolicyNotSupported`, "
                                                               "message `Pod was rejected: SupplementalGroupsPolicy="
                                                               "Strict is not supported in this node`; Merge (the "
                                                               "default) runs"),
    "PodSecurityContext.seLinuxOptions": _SELINUX,
    "SecurityContext.seLinuxOptions": _SELINUX,
    "PodSecurityContext.seLinuxChangePolicy": ("honoured", "as its documentation says, no effect on a node without "
                                                           "SELinux (this one): volumes are not relabelled"),
    "PodSecurityContext.windowsOptions": _WINDOWS,
    "SecurityContext.windowsOptions": _WINDOWS,
    "Lifecycle.stopSignal": ("honoured", "needs spec.os.name and a signal of that OS (upstream's validation); "
                                         "sent in the CRI ContainerConfig, and since containerd 1.6 predates it, "
                                         "the agent signals the container's init process itself (pidfd) when it "
                                         "stops the container, then SIGKILL once it exits or the grace period "
                                         "ends; containerStatuses[].stopSignal is not reported"),
    "PodSpec.hostUsers": ("refused", "false: containerd 1.6 reports no user-namespace support, so the sandbox is "
                                     "not created: FailedCreatePodSandBox `Failed to create pod sandbox: "
                                     "RuntimeClass handler \"\" does not support user namespaces` (the pod stays "
                                     "Pending); true or unset: the host user namespace"),
})


_ALPHA_DROPPED = ("refused", "its feature gate ({gate}, alpha) is off by default in 1.37: the API server drops "
                            "the field on create and on an update that did not have it (dropDisabledFields), for "
                            "pods and the templates of workloads, so it is never stored")
_VOLUME_DEVICES = ("refused", "validation as upstream (a persistentVolumeClaim or ephemeral volume, not also "
                              "mounted at the same path); the agent's populator then checks the claim's PV: "
                              "`volume x has volumeMode Filesystem, but is specified in volumeDevices` (and `... "
                              "Block, but is specified in volumeMounts`), and since no plugin here maps block "
                              "devices a Block PV is `failed to get Plugin from volumeSpec for volume \"pv\" "
                              "err=no volume plugin matched`: the pod stays ContainerCreating with FailedMount "
                              "`Unable to attach or mount volumes: ...`")
_RESTART_RULES = ("honoured", "ContainerRestartRules (beta, on since 1.35): validation as upstream (restartPolicy "
                              "required with rules, at most 20 rules, action `Restart` — RestartAllContainers, "
                              "whose gate kubelite does not enable, is `Unsupported value` —, exitCodes "
                              "In/NotIn with at most 255 distinct values; not on sidecars); the agent restarts an "
                              "exited container when the first matching rule says Restart, else by its "
                              "restartPolicy (ContainerShouldRestart), and the pod phase counts it as restarting")
FIELDS.update({
    "PodSpec.evictionResponders": (_ALPHA_DROPPED[0], _ALPHA_DROPPED[1].format(gate="EvictionRequestAPI")),
    "PodSpec.schedulingGroup": (_ALPHA_DROPPED[0], _ALPHA_DROPPED[1].format(gate="GenericWorkload")),
    "PodSpec.resourceClaims": ("refused", "DRA is on by default upstream but kubelite serves no resource.k8s.io "
                                          "kinds, so no claim can exist: the scheduler's DynamicResources "
                                          "PreEnqueue keeps the pod Pending (PodScheduled False, Unschedulable, "
                                          "FailedScheduling) with `resourceclaim.resource.k8s.io \"x\" not found` "
                                          "or `pod \"ns/p\": ResourceClaim not created yet`; a pod bound by "
                                          "nodeName gets no sandbox: FailedPrepareDynamicResources `Failed to "
                                          "prepare dynamic resources: failed to fetch ResourceClaim x referenced "
                                          "by pod p: resourceclaims.resource.k8s.io \"x\" not found` (or `prepare "
                                          "resource claim: ...`), retried"),
    "Container.volumeDevices": _VOLUME_DEVICES,
    "EphemeralContainer.volumeDevices": _VOLUME_DEVICES,
    "Container.restartPolicyRules": _RESTART_RULES,
    "Container.restartPolicy": ("honoured", "init containers: Always makes a sidecar (started, and its startup "
                                            "probe passed, before the next init container; restarted whenever it "
                                            "exits; probed; counted in ContainersReady; stopped after the app "
                                            "containers, in reverse order), OnFailure/Never override the pod's "
                                            "policy for a failed init container; app containers (ContainerRestart"
                                            "Rules): Always/OnFailure/Never override the pod's policy for restarts "
                                            "and the pod phase"),
    "EphemeralContainer.restartPolicy": ("refused", "`Forbidden: cannot be set for an Ephemeral Container`; ephemeral "
                                                    "containers start once and are never restarted"),
    "EphemeralContainer.restartPolicyRules": ("refused", "`Forbidden: cannot be set for an Ephemeral Container`"),
})


# --------------------------------------------------------------------------- the container's process
_COMMAND = ("honoured", "replaces the image's Entrypoint (args: its Cmd) in the CRI ContainerConfig, `$(VAR)` "
                        "expanded from the container's environment, `$$` escaping, unknown references kept")
_ENV = ("honoured", "makeEnvironmentVariables: value with `$(VAR)` expansion from the variables before it and the "
                    "service variables; valueFrom fieldRef (metadata.name/namespace/uid/labels/annotations, "
                    "spec.nodeName/serviceAccountName, status.hostIP(s)/podIP(s)), resourceFieldRef (ceil to the "
                    "divisor; a limit the container lacks is the node's allocatable), configMapKeyRef/secretKeyRef "
                    "(optional honoured); a missing source is CreateContainerConfigError `configmap \"x\" not "
                    "found` / `couldn't find key k in ConfigMap ns/x`")
_ENV_FROM = ("honoured", "every key of the configMap/secret, with the prefix, before env (which wins); a missing "
                         "non-optional source is CreateContainerConfigError")
_WORKING_DIR = ("honoured", "the CRI working_dir (the runtime creates it)")
_IMAGE = ("honoured", "pulled by the agent's image manager (pull secrets, registries config), events Pulling/Pulled/"
                      "Failed, ErrImagePull / ImagePullBackOff with back-off")
_PULL_POLICY = ("honoured", "defaulted as upstream (Always for :latest or no tag); Always pulls, IfNotPresent pulls "
                            "when absent, Never: ErrImageNeverPull `Container image \"x\" is not present with pull "
                            "policy of Never`")
_STDIO = ("honoured", "passed to the CRI ContainerConfig; `kubectl attach` / `run -it` stream through it")
_TERM_PATH = ("honoured", "a world-writable file made per container and bind-mounted there (any user may write it); "
                          "read into state.terminated.message (at most 4096 bytes)")
_TERM_POLICY = ("honoured", "File: the file only; FallbackToLogsOnError: the log's tail (80 lines) when the file is "
                            "empty and the container failed")
_SECURITY_CONTEXT = ("honoured", "determineEffectiveSecurityContext into the CRI LinuxContainerSecurityContext (its "
                                 "fields below)")
_NAME = ("honoured", "the CRI container name, the status entry and events' fieldPath")
_EPH_FORBIDDEN = ("refused", "`Forbidden: cannot be set for an Ephemeral Container` (validation, as upstream)")
for _s in ("Container", "EphemeralContainer"):
    FIELDS.update({
        f"{_s}.command": _COMMAND, f"{_s}.args": _COMMAND, f"{_s}.env": _ENV, f"{_s}.envFrom": _ENV_FROM,
        f"{_s}.workingDir": _WORKING_DIR, f"{_s}.image": _IMAGE, f"{_s}.imagePullPolicy": _PULL_POLICY,
        f"{_s}.stdin": _STDIO, f"{_s}.stdinOnce": _STDIO, f"{_s}.tty": _STDIO,
        f"{_s}.terminationMessagePath": _TERM_PATH, f"{_s}.terminationMessagePolicy": _TERM_POLICY,
        f"{_s}.securityContext": _SECURITY_CONTEXT, f"{_s}.name": _NAME,
    })
for _f in ("ports", "livenessProbe", "readinessProbe", "startupProbe", "lifecycle", "resources"):
    FIELDS[f"EphemeralContainer.{_f}"] = _EPH_FORBIDDEN
FIELDS.update({
    "EphemeralContainer.targetContainerName": ("honoured", "the CRI NamespaceOption TARGET: the ephemeral container "
                                                           "joins that running container's PID namespace"),
    "PodSpec.ephemeralContainers": ("honoured", "added only through `pods/ephemeralcontainers` (`kubectl debug`); "
                                                "each started once, never restarted, ephemeralContainerStatuses"),
    "Container.ports": ("honoured", "hostPort/hostIP/protocol through the CNI portmap plugin (the scheduler's "
                                    "NodePorts filter), named ports for probes and hooks, the CRI annotation"),
    "Container.resources": ("honoured", "requests and limits: the container cgroup (cpu shares/quota, memory "
                                        "limit, OOM score), the pod cgroup, QoS class, the scheduler's fit, "
                                        "ResourceQuota and LimitRange; in-place resize; `claims` name "
                                        "spec.resourceClaims (refused, below)"),
    "Container.lifecycle": ("honoured", "postStart after StartContainer (a failure: FailedPostStartHook, the "
                                        "container killed and restarted by policy) and preStop before the stop "
                                        "signal within the grace period (FailedPreStopHook); stopSignal below"),
    "Container.livenessProbe": ("honoured", "a probe worker per container: failures past failureThreshold kill "
                                            "the container (`Container c failed liveness probe, will be "
                                            "restarted`), restarted by its restart policy; Unhealthy events"),
    "Container.readinessProbe": ("honoured", "containerStatuses[].ready and the Ready condition (initially False), "
                                             "thus Endpoints; probed also while terminating"),
    "Container.startupProbe": ("honoured", "containerStatuses[].started; liveness and readiness wait for it; its "
                                           "failure kills the container like liveness; a sidecar's gates the next "
                                           "init container"),
    "Lifecycle.postStart": ("honoured", "run right after the container starts; exec and httpGet hooks are checked "
                                        "by e2e tests"),
    "Lifecycle.preStop": ("honoured", "run before the stop signal when the container is killed (deletion, probe, "
                                      "spec change), inside terminationGracePeriodSeconds; the rest of the period "
                                      "is the stop's"),
    "LifecycleHandler.exec": ("honoured", "CRI ExecSync in the container, no timeout; a non-zero exit is `Exec "
                                          "lifecycle hook ([cmd]) for Container \"c\" in Pod \"p_ns(uid)\" failed - "
                                          "error: command 'cmd' exited with N: ..., message: \"...\"`"),
    "LifecycleHandler.httpGet": ("honoured", "GET to host (default the pod IP), port (named ports resolved), "
                                             "path, scheme, headers; any response is success, no response is `HTTP "
                                             "lifecycle hook (path) for Container ... failed - error: ...`"),
    "LifecycleHandler.sleep": ("honoured", "sleeps the seconds (0 allowed); a preStop sleep is cut short by the "
                                           "grace period"),
    "LifecycleHandler.tcpSocket": ("refused", "accepted by validation (deprecated) but, as in the kubelet, not run: "
                                              "`Cannot run handler: invalid handler: &LifecycleHandler{...}` "
                                              "(FailedPostStartHook / FailedPreStopHook)"),
})
_PROBE = {
    "exec": "CRI ExecSync with timeoutSeconds (a timeout is a failure); exit 0 is success",
    "httpGet": "GET with the kubelet's User-Agent and headers, 200-399 success, redirects to the same host followed; "
               "the pod IP by default",
    "tcpSocket": "a TCP connect to host (default the pod IP) and port",
    "grpc": "grpc.health.v1.Health/Check, plaintext, the service name; SERVING is success",
    "initialDelaySeconds": "the first probe after the container has run this long",
    "periodSeconds": "the worker's interval",
    "timeoutSeconds": "each probe's deadline",
    "successThreshold": "consecutive successes to flip to success (1 for liveness/startup, by validation)",
    "failureThreshold": "consecutive failures to flip to failure",
    "terminationGracePeriodSeconds": "the grace period of a kill by a failed liveness/startup probe, instead of "
                                     "the pod's",
}
FIELDS.update({f"Probe.{k}": ("honoured", v) for k, v in _PROBE.items()})
# --------------------------------------------------------------------------- security contexts
FIELDS.update({
    "SecurityContext.runAsUser": ("honoured", "the CRI run_as_user (the container's, else the pod's); e2e-checked"),
    "SecurityContext.runAsGroup": ("honoured", "the CRI run_as_group (the container's, else the pod's); e2e-checked"),
    "PodSecurityContext.runAsUser": ("honoured", "the default of every container's runAsUser, and the sandbox's"),
    "PodSecurityContext.runAsGroup": ("honoured", "the default of every container's runAsGroup, and the sandbox's"),
    "SecurityContext.runAsNonRoot": ("honoured", "verifyRunAsNonRoot against runAsUser or the image's user: "
                                                 "CreateContainerConfigError `container has runAsNonRoot and image "
                                                 "will run as root (pod: \"p_ns(uid)\", container: c)` and the "
                                                 "other upstream texts"),
    "PodSecurityContext.runAsNonRoot": ("honoured", "the default of every container's runAsNonRoot"),
    "PodSecurityContext.supplementalGroups": ("honoured", "the CRI supplemental_groups of the sandbox and every "
                                                          "container (with fsGroup)"),
    "SecurityContext.readOnlyRootFilesystem": ("honoured", "the CRI readonly_rootfs; e2e-checked"),
    "SecurityContext.allowPrivilegeEscalation": ("honoured", "false sets the CRI no_new_privs (NoNewPrivs: 1, "
                                                             "e2e-checked)"),
    "SecurityContext.capabilities": ("honoured", "add/drop to the CRI Capability (`ALL` as the runtime reads it); "
                                                 "e2e-checked"),
    "SecurityContext.privileged": ("honoured", "the CRI privileged flag (all devices and capabilities, no masked "
                                               "paths); the sandbox is privileged when any container (init and "
                                               "ephemeral too) is"),
    "PodSpec.securityContext": ("honoured", "the PodSecurityContext fields below: the sandbox's and every "
                                            "container's defaults"),
})
# --------------------------------------------------------------------------- the pod
FIELDS.update({
    "PodSpec.containers": ("honoured", "started together once the init containers are done; restarted by policy"),
    "PodSpec.initContainers": ("honoured", "run one at a time in order before the app containers (a failure retried "
                                           "by the restart policy, or the pod Failed under Never), Initialized "
                                           "condition, PodInitializing; sidecars with restartPolicy Always"),
    "PodSpec.restartPolicy": ("honoured", "Always/OnFailure/Never for containers without their own, crash back-off "
                                          "(10 s doubling to 5 min, CrashLoopBackOff), the pod phase (getPhase)"),
    "PodSpec.terminationGracePeriodSeconds": ("honoured", "the stop timeout of every container (preStop included); "
                                                          "deletion's default grace period; sidecars get what is "
                                                          "left after the app containers"),
    "PodSpec.activeDeadlineSeconds": ("honoured", "past it the pod is killed: phase Failed, reason DeadlineExceeded, "
                                                  "`Pod was active on the node longer than the specified deadline`; "
                                                  "may only be lowered"),
    "PodSpec.readinessGates": ("honoured", "Ready only when every gate's condition is True "
                                           "(`ReadinessGatesNotReady`)"),
    "PodSpec.hostNetwork": ("honoured", "the node's network and UTS namespaces (no sandbox hostname, no CNI), "
                                        "podIP(s) = the node's, dnsPolicy Default unless ClusterFirstWithHostNet, "
                                        "the node's /etc/hosts with hostAliases appended; e2e-checked"),
    "PodSpec.hostPID": ("honoured", "the CRI PID namespace NODE for the sandbox and every container; e2e-checked"),
    "PodSpec.hostIPC": ("honoured", "the CRI IPC namespace NODE; e2e-checked"),
    "PodSpec.shareProcessNamespace": ("honoured", "the CRI PID namespace POD: one PID namespace with the pause "
                                                  "process as PID 1; e2e-checked"),
    "PodSpec.hostAliases": ("honoured", "appended to the kubelet-managed /etc/hosts (`# Entries added by "
                                        "HostAliases.`), hostNetwork pods included; e2e-checked"),
    "PodSpec.hostname": ("honoured", "the sandbox hostname and /etc/hosts entry (else the pod name, cut to 63)"),
    "PodSpec.subdomain": ("honoured", "with hostname, the FQDN `h.sub.ns.svc.<domain>` in /etc/hosts (and for "
                                      "setHostnameAsFQDN) and the cluster DNS's records for a headless Service of "
                                      "that name"),
    "PodSpec.nodeSelector": ("honoured", "the scheduler's NodeAffinity filter (`node(s) didn't match Pod's node "
                                         "affinity/selector`)"),
    "PodSpec.tolerations": ("honoured", "the scheduler's TaintToleration filter (NoSchedule, NoExecute) and score "
                                        "(PreferNoSchedule), node unschedulable; NoExecute eviction with "
                                        "tolerationSeconds by the taint-eviction controller; DefaultToleration"
                                        "Seconds defaults"),
    "PodSpec.nodeName": ("honoured", "a pod with one bypasses the scheduler; the node's agent runs the pods bound "
                                     "to it; set by the binding subresource"),
    "PodSpec.schedulerName": ("honoured", "the scheduler takes only pods naming `default-scheduler` (the default); "
                                          "others wait for their scheduler"),
    "PodSpec.schedulingGates": ("honoured", "the scheduler skips a gated pod; PodScheduled False, reason "
                                            "SchedulingGated, `Scheduling is blocked due to non-empty scheduling "
                                            "gates` (kubectl: SchedulingGated); gates may only be removed"),
    "PodSpec.imagePullSecrets": ("honoured", "their dockerconfigjson credentials for the pulls (else the service "
                                             "account's, copied in by admission)"),
    "PodSpec.serviceAccountName": ("honoured", "ServiceAccount admission: defaulted to `default`, must exist (403 "
                                               "`error looking up service account ns/x`); the token volume is its "
                                               "bound token"),
    "PodSpec.serviceAccount": ("honoured", "deprecated alias kept equal to serviceAccountName"),
    "PodSpec.automountServiceAccountToken": ("honoured", "false (on the pod, else the service account) skips the "
                                                         "kube-api-access projected volume"),
    "PodSpec.os": ("honoured", "validation by OS; this Linux node's admission refuses another: phase Failed, reason "
                               "PodOSNotSupported, `Pod was rejected: Failed to admit pod as the OS field doesn't "
                               "match node OS` (and PodOSSelectorNodeLabelDoesNotMatch for a pod labelled "
                               "kubernetes.io/os of another OS)"),
    "PodSpec.resources": ("honoured", "pod-level requests/limits: the pod cgroup, the scheduler's fit, QoS and "
                                      "quota (kinds/podutil.py); not resizable, as upstream"),
})


def schema_fields() -> list[str]:
    return [f"{s}.{n}" for s in STRUCTS for n in _properties(s)]


def render() -> str:
    out = [f"# Pod fields in kubelite (Kubernetes {schema.K8S_VERSION})", "",
           "Generated by `python -m kubelite.docs.podfields > docs/pod-fields.md`; do not edit.", ""]
    for struct in STRUCTS:
        out += [f"## {struct}", "", "| field | status | note |", "|---|---|---|"]
        for name in _properties(struct):
            status, note = FIELDS[f"{struct}.{name}"]
            out.append(f"| `{name}` | {status} | {note} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render())
