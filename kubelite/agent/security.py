"""Security profiles of a pod as the kubelet hands them to the runtime, and the node-side
checks that refuse what this host cannot enforce.

- seccomp (pkg/kubelet/kuberuntime/helpers.go ``getSeccompProfile`` / ``fieldSeccompProfile``):
  the container's ``seccompProfile`` wins over the pod's; nothing set is ``Unconfined`` (the
  kubelet's default without ``--seccomp-default``). ``Localhost`` names a file relative to the
  agent's seccomp root, ``<data dir>/seccomp`` (the kubelet's ``<root-dir>/seccomp``); the
  runtime loads it, so a missing file is containerd's CreateContainer error.
- AppArmor (pkg/security/apparmor/validate.go, pkg/kubelet/lifecycle/handlers.go): a pod that
  asks for any profile but ``Unconfined`` (fields or the deprecated
  ``container.apparmor.security.beta.kubernetes.io/*`` annotations) is refused at admission
  on a host without AppArmor, ``RuntimeDefault`` included: the kubelet's ``isRequired`` counts
  every type but Unconfined.
- user namespaces (pkg/kubelet/userns/userns_manager.go ``GetOrCreateUserNamespaceMappings``):
  ``hostUsers: false`` needs a runtime handler that reports user-namespace support in its CRI
  Status; containerd 1.6 reports no handler features at all, so the sandbox is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cri_api.v1 import api_pb2 as cri

Obj = dict[str, Any]

SECCOMP_DIR = "seccomp"  # under the agent's data dir
APPARMOR_ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/"
APPARMOR_UNCONFINED_ANNOTATION = "unconfined"
APPARMOR_NOT_ADMITTED_REASON = "AppArmor"
# the kubelet's admission of supplementalGroupsPolicy: Strict needs the runtime's support
# (its CRI Status features, the node's status.features.supplementalGroupsPolicy)
SUPPLEMENTAL_GROUPS_NOT_SUPPORTED = "SupplementalGroupsPolicyNotSupported"
APPARMOR_ENABLED_FILE = "/sys/module/apparmor/parameters/enabled"

_SECCOMP_TYPES = {"RuntimeDefault": cri.SecurityProfile.RuntimeDefault,
                  "Unconfined": cri.SecurityProfile.Unconfined,
                  "Localhost": cri.SecurityProfile.Localhost}


class SecurityProfileError(Exception):
    """A profile the kubelet cannot turn into a CRI request."""


def seccomp_profile(pod_sc: Obj | None, container_sc: Obj | None, root: Path | str) -> Any:
    """getSeccompProfile: the CRI SecurityProfile (container field first, then the pod's)."""
    for sc in (container_sc, pod_sc):
        sp = (sc or {}).get("seccompProfile")
        if sp:
            return _field_seccomp_profile(sp, Path(root))
    return cri.SecurityProfile(profile_type=cri.SecurityProfile.Unconfined)


def _field_seccomp_profile(sp: Obj, root: Path) -> Any:
    t = sp.get("type")
    if t == "Localhost":
        name = sp.get("localhostProfile") or ""
        if not name:
            raise SecurityProfileError("localhostProfile must be set if seccompProfile type is Localhost.")
        return cri.SecurityProfile(profile_type=cri.SecurityProfile.Localhost, localhost_ref=str(root / name))
    return cri.SecurityProfile(profile_type=_SECCOMP_TYPES.get(t or "", cri.SecurityProfile.Unconfined))


def apparmor_unconfined(pod: Obj, container: Obj) -> Any | None:
    """The CRI AppArmor profile for a container the admission let through: only Unconfined
    can get here on a host without AppArmor (None: nothing was asked)."""
    if _apparmor_type(pod, container) == "Unconfined":
        return cri.SecurityProfile(profile_type=cri.SecurityProfile.Unconfined)
    return None


def _apparmor_type(pod: Obj, container: Obj) -> str | None:
    """GetProfile's type: the container's field, then the deprecated annotation (static pods
    may not have had it synced to the fields), then the pod's field."""
    prof = (container.get("securityContext") or {}).get("appArmorProfile")
    if prof:
        return str(prof.get("type") or "")
    ann = ((pod.get("metadata") or {}).get("annotations") or {}).get(
        APPARMOR_ANNOTATION_PREFIX + container.get("name", ""))
    if ann == APPARMOR_UNCONFINED_ANNOTATION:
        return "Unconfined"
    if ann == "runtime/default":
        return "RuntimeDefault"
    if ann is not None and ann.startswith("localhost/"):
        return "Localhost"
    prof = ((pod.get("spec") or {}).get("securityContext") or {}).get("appArmorProfile")
    return str(prof.get("type") or "") if prof else None


def apparmor_required(pod: Obj) -> bool:
    """isRequired: any profile but Unconfined, in the fields or the deprecated annotations."""
    spec = pod.get("spec") or {}
    prof = (spec.get("securityContext") or {}).get("appArmorProfile")
    if prof and prof.get("type") != "Unconfined":
        return True
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            p = (c.get("securityContext") or {}).get("appArmorProfile")
            if p and p.get("type") != "Unconfined":
                return True
    for k, v in ((pod.get("metadata") or {}).get("annotations") or {}).items():
        if k.startswith(APPARMOR_ANNOTATION_PREFIX):
            return bool(v != APPARMOR_UNCONFINED_ANNOTATION)  # the first such annotation decides, as upstream
    return False


def apparmor_enabled(path: str = APPARMOR_ENABLED_FILE) -> bool:
    """IsAppArmorEnabled (the kernel module's ``enabled`` parameter reads ``Y``)."""
    try:
        return Path(path).read_text().startswith("Y")
    except OSError:
        return False


def admit(pod: Obj, apparmor_on_host: bool, strict_groups_supported: bool = False) -> tuple[str, str] | None:
    """The kubelet's pod admit handlers that concern security: (reason, message) to refuse,
    or None. Only a Pending pod is checked (a running pod is never re-admitted)."""
    if ((pod.get("status") or {}).get("phase") or "Pending") != "Pending":
        return None
    # the lifecycle predicate's OS checks: this is a Linux node
    if (((pod.get("metadata") or {}).get("labels") or {}).get("kubernetes.io/os") or "linux") != "linux":
        return "PodOSSelectorNodeLabelDoesNotMatch", ("Failed to admit pod as the `kubernetes.io/os` label doesn't "
                                                      "match node label")
    if (((pod.get("spec") or {}).get("os") or {}).get("name") or "linux") != "linux":
        return "PodOSNotSupported", "Failed to admit pod as the OS field doesn't match node OS"
    if apparmor_required(pod) and not apparmor_on_host:
        return APPARMOR_NOT_ADMITTED_REASON, "Cannot enforce AppArmor: AppArmor is not enabled on the host"
    psc = (pod.get("spec") or {}).get("securityContext") or {}
    if psc.get("supplementalGroupsPolicy") == "Strict" and not strict_groups_supported:
        return SUPPLEMENTAL_GROUPS_NOT_SUPPORTED, "SupplementalGroupsPolicy=Strict is not supported in this node"
    return None


def user_namespace_error(pod: Obj, handler: str, userns_handlers: set[str]) -> str | None:
    """GetOrCreateUserNamespaceMappings' refusal for ``hostUsers: false``, or None."""
    if (pod.get("spec") or {}).get("hostUsers") is not False:
        return None
    if handler in userns_handlers:
        return None
    return f"RuntimeClass handler \"{handler}\" does not support user namespaces"
