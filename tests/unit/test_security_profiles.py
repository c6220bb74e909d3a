"""Security profiles in the CRI requests (seccomp, AppArmor, procMount) and the agent's
security admission (AppArmor on a host without it, hostUsers: false)."""

from cri_api.v1 import api_pb2 as cri

from kubelite.agent import crispec, security
from kubelite.kinds import _pod_validation

ROOT = "/data/seccomp"


def _pod(psc: dict | None = None, csc: dict | None = None, annotations: dict | None = None, **spec: object) -> dict:
    c: dict = {"name": "c", "image": "busybox"}
    if csc is not None:
        c["securityContext"] = csc
    s: dict = {"containers": [c], **spec}
    if psc is not None:
        s["securityContext"] = psc
    return {"metadata": {"name": "p", "namespace": "default", "uid": "u1", "annotations": annotations or {}},
            "spec": s, "status": {"phase": "Pending"}}


def _csc(pod: dict) -> cri.LinuxContainerSecurityContext:
    return crispec.security_context(pod, pod["spec"]["containers"][0], seccomp_root=ROOT)


def test_seccomp_unset_is_unconfined() -> None:
    sc = _csc(_pod())
    assert sc.seccomp.profile_type == cri.SecurityProfile.Unconfined


def test_seccomp_pod_level_runtime_default_reaches_sandbox_and_container() -> None:
    pod = _pod(psc={"seccompProfile": {"type": "RuntimeDefault"}})
    assert _csc(pod).seccomp.profile_type == cri.SecurityProfile.RuntimeDefault
    sb = crispec.sandbox_config(pod, 0, "/logs", "/kubepods/pod-u1", ROOT)
    assert sb.linux.security_context.seccomp.profile_type == cri.SecurityProfile.RuntimeDefault


def test_seccomp_container_overrides_pod() -> None:
    pod = _pod(psc={"seccompProfile": {"type": "RuntimeDefault"}}, csc={"seccompProfile": {"type": "Unconfined"}})
    assert _csc(pod).seccomp.profile_type == cri.SecurityProfile.Unconfined


def test_seccomp_localhost_is_relative_to_the_agents_root() -> None:
    pod = _pod(csc={"seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/audit.json"}})
    sp = _csc(pod).seccomp
    assert sp.profile_type == cri.SecurityProfile.Localhost
    assert sp.localhost_ref == "/data/seccomp/profiles/audit.json"


def test_proc_mount_unmasked_sends_no_masked_paths() -> None:
    assert "/proc/kcore" in _csc(_pod()).masked_paths
    sc = _csc(_pod(csc={"procMount": "Unmasked"}, hostUsers=False))
    assert list(sc.masked_paths) == [] and list(sc.readonly_paths) == []


def test_apparmor_unconfined_is_passed_and_others_not() -> None:
    sc = _csc(_pod(csc={"appArmorProfile": {"type": "Unconfined"}}))
    assert sc.apparmor.profile_type == cri.SecurityProfile.Unconfined
    assert not _csc(_pod()).HasField("apparmor")


def test_apparmor_admission_on_a_host_without_apparmor() -> None:
    msg = "Cannot enforce AppArmor: AppArmor is not enabled on the host"
    for pod in (_pod(psc={"appArmorProfile": {"type": "RuntimeDefault"}}),
                _pod(csc={"appArmorProfile": {"type": "Localhost", "localhostProfile": "x"}}),
                _pod(annotations={security.APPARMOR_ANNOTATION_PREFIX + "c": "runtime/default"})):
        assert security.admit(pod, apparmor_on_host=False) == ("AppArmor", msg)
        assert security.admit(pod, apparmor_on_host=True) is None
    for pod in (_pod(), _pod(psc={"appArmorProfile": {"type": "Unconfined"}}),
                _pod(annotations={security.APPARMOR_ANNOTATION_PREFIX + "c": "unconfined"})):
        assert security.admit(pod, apparmor_on_host=False) is None
    running = _pod(psc={"appArmorProfile": {"type": "RuntimeDefault"}})
    running["status"]["phase"] = "Running"
    assert security.admit(running, apparmor_on_host=False) is None


def test_apparmor_enabled_reads_the_module_parameter(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert not security.apparmor_enabled(str(tmp_path / "missing"))
    (tmp_path / "enabled").write_text("Y\n")
    assert security.apparmor_enabled(str(tmp_path / "enabled"))


def test_user_namespaces_need_a_handler_that_supports_them() -> None:
    assert security.user_namespace_error(_pod(), "", set()) is None
    err = security.user_namespace_error(_pod(hostUsers=False), "", set())
    assert err == 'RuntimeClass handler "" does not support user namespaces'
    assert security.user_namespace_error(_pod(hostUsers=False), "", {""}) is None


def _errors(spec_extra: dict, csc: dict | None = None) -> list[str]:
    pod = _pod(csc=csc, **spec_extra)
    c = pod["spec"]["containers"][0]
    c.update(imagePullPolicy="IfNotPresent", terminationMessagePolicy="File")
    pod["spec"].update(restartPolicy="Always", dnsPolicy="ClusterFirst", terminationGracePeriodSeconds=30)
    return [str(e) for e in _pod_validation.validate_pod_spec(pod["spec"], "p", _pod_validation.Path("spec"))]


def test_validation_unmasked_needs_host_users_false() -> None:
    errs = _errors({}, {"procMount": "Unmasked"})
    assert any("spec.containers[0].securityContext.procMount" in e and "`hostUsers` must be false to use `Unmasked`"
               in e for e in errs), errs
    assert not any("procMount" in e for e in _errors({"hostUsers": False}, {"procMount": "Unmasked"}))
    assert any("hostNetwork" in e for e in _errors({"hostUsers": False, "hostNetwork": True}))


def test_validation_apparmor_profile_field() -> None:
    errs = _errors({}, {"appArmorProfile": {"type": "Localhost"}})
    assert any("spec.containers[0].securityContext.appArmorProfile.localhostProfile: Required value: must be set "
               "when AppArmor type is Localhost" in e for e in errs), errs
    errs = _errors({}, {"appArmorProfile": {"type": "RuntimeDefault", "localhostProfile": "x"}})
    assert any("can only be set when AppArmor type is Localhost" in e for e in errs), errs
    errs = _errors({}, {"appArmorProfile": {"type": "Bogus"}})
    assert any("appArmorProfile.type: Unsupported value: \"Bogus\"" in e for e in errs), errs
    errs = _errors({"securityContext": {"appArmorProfile": {"type": "Localhost", "localhostProfile": " p"}}})
    assert any("spec.securityContext.appArmorProfile.localhostProfile" in e and "padded" in e for e in errs), errs
    assert not any("appArmor" in e for e in _errors({}, {"appArmorProfile": {"type": "Localhost",
                                                                               "localhostProfile": "k8s-x"}}))


def test_apparmor_profile_precedence_container_annotation_pod() -> None:
    ann = {security.APPARMOR_ANNOTATION_PREFIX + "c": "unconfined"}
    pod = _pod(psc={"appArmorProfile": {"type": "RuntimeDefault"}}, annotations=ann)
    assert _csc(pod).apparmor.profile_type == cri.SecurityProfile.Unconfined  # the annotation beats the pod field
    pod = _pod(psc={"appArmorProfile": {"type": "Unconfined"}})
    assert _csc(pod).apparmor.profile_type == cri.SecurityProfile.Unconfined
    pod = _pod(psc={"appArmorProfile": {"type": "Unconfined"}}, csc={"appArmorProfile": {"type": "RuntimeDefault"}})
    assert not _csc(pod).HasField("apparmor")


def test_seccomp_localhost_without_a_name_is_a_config_error() -> None:
    import pytest

    with pytest.raises(security.SecurityProfileError) as ei:
        _csc(_pod(csc={"seccompProfile": {"type": "Localhost"}}))
    assert str(ei.value) == "localhostProfile must be set if seccompProfile type is Localhost."


def test_selinux_options_reach_the_runtime_container_over_pod() -> None:
    pod = _pod(csc={"seLinuxOptions": {"type": "container_t", "level": "s0:c1,c2"}},
               psc={"seLinuxOptions": {"user": "system_u", "level": "s0:c9"}})
    sb = crispec.sandbox_config(pod, 0, "/logs", "/kubepods/pod-u1", ROOT)
    assert (sb.linux.security_context.selinux_options.user, sb.linux.security_context.selinux_options.level) == \
        ("system_u", "s0:c9")
    sc = _csc(pod)
    assert (sc.selinux_options.type, sc.selinux_options.level, sc.selinux_options.user) == \
        ("container_t", "s0:c1,c2", "")


def test_strict_supplemental_groups_need_the_runtimes_support() -> None:
    pod = _pod(psc={"supplementalGroupsPolicy": "Strict", "supplementalGroups": [4000]})
    assert security.admit(pod, False, strict_groups_supported=False) == (
        "SupplementalGroupsPolicyNotSupported", "SupplementalGroupsPolicy=Strict is not supported in this node")
    assert security.admit(pod, False, strict_groups_supported=True) is None
    assert _csc(pod).supplemental_groups_policy == 1  # Strict, for a runtime that supports it
    merge = _pod(psc={"supplementalGroupsPolicy": "Merge"})
    assert security.admit(merge, False) is None and _csc(merge).supplemental_groups_policy == 0


def test_the_linux_node_admits_only_linux_pods() -> None:
    """The kubelet's lifecycle predicate: spec.os and the pod's kubernetes.io/os label."""
    windows = {"metadata": {"name": "w"}, "spec": {"os": {"name": "windows"}, "containers": [{"name": "c"}]}}
    assert security.admit(windows, apparmor_on_host=True) == (
        "PodOSNotSupported", "Failed to admit pod as the OS field doesn't match node OS")
    labelled = {"metadata": {"name": "w", "labels": {"kubernetes.io/os": "windows"}}, "spec": {"containers": []}}
    assert security.admit(labelled, apparmor_on_host=True) == (
        "PodOSSelectorNodeLabelDoesNotMatch", "Failed to admit pod as the `kubernetes.io/os` label doesn't match "
        "node label")
    linux = {"metadata": {"name": "l", "labels": {"kubernetes.io/os": "linux"}}, "spec": {"os": {"name": "linux"}}}
    assert security.admit(linux, apparmor_on_host=True) is None
