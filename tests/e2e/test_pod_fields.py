"""Pod fields the kubelet acts on, as the node conformance tests check them: lifecycle hooks
(postStart/preStop, exec and httpGet, a failing postStart), activeDeadlineSeconds and
readinessGates,
preemption, in-place resize and sysctls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.harness import wait_until
from tests.e2e.test_agent_support import BUSYBOX, KUARD, full_cluster, get_pod, http_get

NODE = "kl-e2e-fields"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with full_cluster(tmp_path_factory.mktemp("fields") / "data", NODE,
                      extra=("--allowed-unsafe-sysctls", "kernel.msg*")) as c:
        yield c


def _apply(server, manifest: dict) -> None:
    server.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def _pod(name: str, containers: list[dict], **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": containers, **spec}}


def _cond(pod: dict, ctype: str) -> dict:
    return next((c for c in pod["status"].get("conditions") or [] if c["type"] == ctype), {})


def _running(server, name: str) -> dict:
    try:
        return wait_until(lambda: (p := get_pod(server, name)) and p["status"].get("phase") == "Running" and p,
                          90, 0.2, f"{name} running")
    except AssertionError as exc:
        events = [(e["reason"], e["message"]) for e in _events(server, name)]
        raise AssertionError(f"{exc}\nstatus: {json.dumps((get_pod(server, name) or {}).get('status'))}\n"
                             f"events: {events}") from None


def _logs(server, name: str, container: str) -> str:
    return server.kubectl("logs", name, "-c", container, check=False).stdout


def _events(server, name: str) -> list[dict]:
    out = server.kubectl("get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json").stdout
    return json.loads(out)["items"]


def test_prestop_exec_runs_before_the_stop_signal(cluster):
    server, _ = cluster
    shared = [{"name": "shared", "mountPath": "/shared"}]
    _apply(server, _pod("prestop", [
        {"name": "main", "image": BUSYBOX, "volumeMounts": shared,
         "command": ["sh", "-c", "trap 'test -f /shared/marker && echo term-after-marker; exit 0' TERM; "
                                 "while :; do sleep 0.2; done"],
         "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "echo bye > /shared/marker; sleep 2"]}}}},
        {"name": "watcher", "image": BUSYBOX, "volumeMounts": shared,
         "command": ["sh", "-c", "while [ ! -f /shared/marker ]; do sleep 0.1; done; echo saw-marker; "
                                 "while :; do sleep 1; done"]}],
        volumes=[{"name": "shared", "emptyDir": {}}], terminationGracePeriodSeconds=15))
    _running(server, "prestop")
    server.kubectl("delete", "pod", "prestop", "--wait=false")
    # while the pod terminates: the sidecar saw the hook's marker, and the main container got
    # its SIGTERM only after the hook had written it
    wait_until(lambda: "saw-marker" in _logs(server, "prestop", "watcher"), 30, 0.3, "the sidecar saw the marker")
    wait_until(lambda: "term-after-marker" in _logs(server, "prestop", "main"), 30, 0.3, "TERM after the hook")
    wait_until(lambda: get_pod(server, "prestop") is None, 60, 0.3, "pod gone")


def test_poststart_exec_and_http_hooks(cluster):
    server, _ = cluster
    _apply(server, _pod("handler", [{"name": "kuard", "image": KUARD}]))
    handler = _running(server, "handler")
    hip = handler["status"]["podIP"]
    _apply(server, _pod("hooked", [
        {"name": "c", "image": BUSYBOX,
         "command": ["sh", "-c", "while [ ! -f /tmp/post ]; do sleep 0.1; done; cat /tmp/post; sleep 3600"],
         "lifecycle": {
             "postStart": {"exec": {"command": ["sh", "-c", "echo poststart-ran > /tmp/post"]}},
             "preStop": {"httpGet": {"host": hip, "port": 8080, "path": "/ready/api/fail?n=7"}}}}],
        terminationGracePeriodSeconds=5))
    _running(server, "hooked")
    wait_until(lambda: "poststart-ran" in _logs(server, "hooked", "c"), 30, 0.3, "postStart ran")
    server.kubectl("delete", "pod", "hooked", "--wait=true", "--timeout=60s")
    # the preStop GET reached the handler: its readiness is now armed to fail 7 times
    code, body = http_get(f"http://{hip}:8080/ready/api/config")
    assert code == 200 and json.loads(body)["failNext"] == 7, body


def test_failing_poststart_kills_the_container(cluster):
    server, _ = cluster
    # (the kill uses the pod's grace period, as the kubelet's: keep it short, sleep ignores SIGTERM)
    _apply(server, _pod("badhook", [{"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"],
                                     "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "exit 3"]}}}}],
                        terminationGracePeriodSeconds=2))
    ev = wait_until(lambda: next((e for e in _events(server, "badhook") if e["reason"] == "FailedPostStartHook"), None),
                    60, 0.3, "FailedPostStartHook event")
    pod = get_pod(server, "badhook")
    uid = pod["metadata"]["uid"]
    assert ev["type"] == "Warning"
    assert ev["message"] == (f'Exec lifecycle hook ([sh -c exit 3]) for Container "c" in Pod "badhook_default({uid})" '
                             f"failed - error: command 'sh -c exit 3' exited with 3: , message: \"\"")
    # killed, and started again by the restart policy
    wait_until(lambda: (get_pod(server, "badhook")["status"].get("containerStatuses") or [{}])[0].get(
        "restartCount", 0) >= 1, 60, 0.3, "restarted")
    server.kubectl("delete", "pod", "badhook", "--grace-period=1", "--wait=false")


def test_active_deadline_fails_the_pod(cluster):
    server, _ = cluster
    _apply(server, _pod("deadline", [{"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"]}],
                        activeDeadlineSeconds=3, terminationGracePeriodSeconds=1))
    pod = wait_until(lambda: (p := get_pod(server, "deadline")) and p["status"].get("phase") == "Failed" and p,
                     40, 0.3, "Failed")
    assert pod["status"]["reason"] == "DeadlineExceeded"
    assert pod["status"]["message"] == "Pod was active on the node longer than the specified deadline"
    assert any(e["reason"] == "DeadlineExceeded" for e in _events(server, "deadline"))


def test_readiness_gates(cluster):
    server, _ = cluster
    _apply(server, _pod("gated", [{"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"]}],
                        readinessGates=[{"conditionType": "example.com/feature-1"}]))
    pod = wait_until(lambda: (p := get_pod(server, "gated")) and _cond(p, "ContainersReady").get("status") == "True"
                     and p, 60, 0.3, "containers ready")
    ready = _cond(pod, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ReadinessGatesNotReady"
    assert ready["message"] == 'corresponding condition of pod readiness gate "example.com/feature-1" does not exist.'
    server.kubectl("patch", "pod", "gated", "--subresource=status", "--type=strategic", "-p", json.dumps(
        {"status": {"conditions": [{"type": "example.com/feature-1", "status": "False"}]}}))
    wait_until(lambda: _cond(get_pod(server, "gated"), "Ready").get("message") ==
               'the status of pod readiness gate "example.com/feature-1" is not "True", but False', 20, 0.3,
               "gate False")
    server.kubectl("patch", "pod", "gated", "--subresource=status", "--type=strategic", "-p", json.dumps(
        {"status": {"conditions": [{"type": "example.com/feature-1", "status": "True"}]}}))
    wait_until(lambda: _cond(get_pod(server, "gated"), "Ready").get("status") == "True", 20, 0.3, "Ready")


def _milli_cpu(q: str) -> int:
    from kubelite.api.quantity import parse_quantity
    return int(parse_quantity(q) * 1000)


def test_higher_priority_pod_preempts_on_a_full_node(cluster):
    """A priority-1000 pod preempts a priority-0 pod that fills the node: the victim gets
    DisruptionTarget, terminates within its grace period (Terminating, then gone), and the
    preemptor, nominated to the node meanwhile, runs there."""
    server, _ = cluster
    _apply(server, {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                    "metadata": {"name": "kl-e2e-high"}, "value": 1000})
    try:
        node = json.loads(server.kubectl("get", "node", NODE, "-o", "json").stdout)
        pods = json.loads(server.kubectl("get", "pods", "-A", "-o", "json",
                                         "--field-selector", f"spec.nodeName={NODE}").stdout)["items"]
        used = sum(_milli_cpu(r) for p in pods if p["status"].get("phase") not in ("Succeeded", "Failed")
                   for c in p["spec"]["containers"] if (r := c.get("resources", {}).get("requests", {}).get("cpu")))
        free = _milli_cpu(node["status"]["allocatable"]["cpu"]) - used
        assert free >= 600, f"the node has {free}m CPU free"
        # the victim takes all the CPU left; on SIGTERM it takes 3 s to exit
        _apply(server, _pod("victim", [{"name": "c", "image": BUSYBOX, "resources": {"requests": {"cpu": f"{free}m"}},
                                        "command": ["sh", "-c", "trap 'sleep 3; exit 0' TERM; "
                                                                "while :; do sleep 0.2; done"]}],
                            terminationGracePeriodSeconds=20))
        victim = _running(server, "victim")
        assert victim["spec"]["priority"] == 0
        _apply(server, _pod("preemptor", [{"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"],
                                           "resources": {"requests": {"cpu": "500m"}}}],
                            priorityClassName="kl-e2e-high", terminationGracePeriodSeconds=1))
        terminating = wait_until(lambda: (p := get_pod(server, "victim")) and p["metadata"].get("deletionTimestamp")
                                 and p, 60, 0.2, "victim Terminating")
        cond = _cond(terminating, "DisruptionTarget")
        assert (cond["status"], cond["reason"], cond["message"]) == (
            "True", "PreemptionByScheduler", "default-scheduler: preempting to accommodate a higher priority pod")
        assert terminating["metadata"]["deletionGracePeriodSeconds"] == 20
        out = server.kubectl("get", "pod", "victim", check=False).stdout
        assert "Terminating" in out or "NotFound" in out, out
        pre = get_pod(server, "preemptor")
        assert pre["spec"]["priority"] == 1000
        if not pre["spec"].get("nodeName"):  # still waiting for the room: nominated to the node
            assert pre["status"].get("nominatedNodeName") == NODE, pre["status"]
        wait_until(lambda: get_pod(server, "victim") is None, 60, 0.2, "victim gone")
        ev = next(e for e in _events(server, "victim") if e["reason"] == "Preempted")
        assert ev["type"] == "Normal"
        assert ev["message"] == f"Preempted by pod {pre['metadata']['uid']} on node {NODE}"
        running = _running(server, "preemptor")
        assert running["spec"]["nodeName"] == NODE
        assert not running["status"].get("nominatedNodeName")
    finally:
        server.kubectl("delete", "pod", "victim", "preemptor", "--ignore-not-found", "--grace-period=1",
                       "--wait=true", "--timeout=60s", check=False)
        server.kubectl("delete", "priorityclass", "kl-e2e-high", "--ignore-not-found", check=False)


def _cgroup_value(pod: dict, controller: str, name: str, container: bool = True) -> int:
    """A value of the container's cgroup (or of the pod's, ``container=False``) on this v1 host."""
    cid = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    qos = pod["status"]["qosClass"].lower()
    parent = "kubepods" if qos == "guaranteed" else f"kubepods/{qos}"
    d = Path(f"/sys/fs/cgroup/{controller}/{parent}/pod{pod['metadata']['uid']}")
    return int(((d / cid) if container else d).joinpath(name).read_text())


def test_in_place_resize(cluster):
    """kubectl patch --subresource resize: a higher CPU limit reaches the container's cgroup
    without a restart (NotRequired); a memory change restarts it (RestartContainer); a resize
    the node cannot hold is Infeasible; one that changes the QoS class is refused."""
    server, _ = cluster
    _apply(server, _pod("resize", [{
        "name": "c", "image": BUSYBOX, "command": ["sleep", "3600"],
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "64Mi"}},
        "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"},
                         {"resourceName": "memory", "restartPolicy": "RestartContainer"}]}],
        terminationGracePeriodSeconds=1))
    try:
        pod = _running(server, "resize")
        cs = pod["status"]["containerStatuses"][0]
        assert cs["allocatedResources"] == {"cpu": "100m", "memory": "64Mi"}
        assert cs["resources"] == {"limits": {"cpu": "200m", "memory": "64Mi"},
                                   "requests": {"cpu": "100m", "memory": "64Mi"}}
        assert _cgroup_value(pod, "cpu", "cpu.cfs_quota_us") == 20000
        assert pod["metadata"]["generation"] == 1
        server.kubectl("patch", "pod", "resize", "--subresource", "resize", "--patch",
                       json.dumps({"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "400m"}}}]}}))

        def resized():
            p = get_pod(server, "resize")
            s = p["status"]["containerStatuses"][0]
            return (s.get("resources", {}).get("limits", {}).get("cpu") == "400m"
                    and not _cond(p, "PodResizeInProgress") and p["status"].get("observedGeneration") == 2 and p)

        pod = wait_until(resized, 60, 0.3, "cpu limit resized")
        assert pod["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "400m"
        assert _cgroup_value(pod, "cpu", "cpu.cfs_quota_us") == 40000
        assert _cgroup_value(pod, "cpu", "cpu.cfs_quota_us", container=False) == 40000  # the pod's too
        cs = pod["status"]["containerStatuses"][0]
        assert cs["restartCount"] == 0 and "running" in cs["state"]
        reasons = [e["reason"] for e in _events(server, "resize")]
        assert "ResizeStarted" in reasons and "ResizeCompleted" in reasons
        started = next(e for e in _events(server, "resize") if e["reason"] == "ResizeStarted")
        assert started["message"] == (
            'Pod resize started: {"containers":[{"name":"c","resources":{"limits":{"cpu":"400m","memory":"64Mi"},'
            '"requests":{"cpu":"100m","memory":"64Mi"}}}],"generation":2}')
        # the QoS class may not change: requests equal to limits would make it Guaranteed
        p = server.kubectl("patch", "pod", "resize", "--subresource", "resize", "--patch", json.dumps(
            {"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "400m"}}}]}}), check=False)
        assert p.returncode != 0
        assert ('The Pod "resize" is invalid: spec: Invalid value: "Burstable": Pod QOS Class may not change '
                'as a result of resizing') in p.stderr
        # more CPU than the node has: Infeasible, nothing changes
        server.kubectl("patch", "pod", "resize", "--subresource", "resize", "--patch", json.dumps(
            {"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "100"},
                                                                  "limits": {"cpu": "200"}}}]}}))
        node = json.loads(server.kubectl("get", "node", NODE, "-o", "json").stdout)
        cap = _milli_cpu(node["status"]["allocatable"]["cpu"])
        pending = wait_until(lambda: _cond(get_pod(server, "resize"), "PodResizePending") or None, 30, 0.3,
                             "PodResizePending")
        assert pending["reason"] == "Infeasible" and pending["observedGeneration"] == 3
        assert pending["message"] == f"Node didn't have enough capacity: cpu, requested: 100000, capacity: {cap}"
        assert any(e["reason"] == "ResizeInfeasible" for e in _events(server, "resize"))
        # back to a feasible size, with more memory: the memory policy restarts the container
        server.kubectl("patch", "pod", "resize", "--subresource", "resize", "--patch", json.dumps(
            {"spec": {"containers": [{"name": "c", "resources": {
                "requests": {"cpu": "100m", "memory": "96Mi"}, "limits": {"cpu": "400m", "memory": "96Mi"}}}]}}))

        def restarted():
            p = get_pod(server, "resize")
            s = p["status"]["containerStatuses"][0]
            return (s.get("restartCount") == 1 and "running" in s["state"]
                    and s.get("resources", {}).get("limits", {}).get("memory") == "96Mi"
                    and not _cond(p, "PodResizePending") and not _cond(p, "PodResizeInProgress") and p)

        pod = wait_until(restarted, 60, 0.3, "restarted with more memory")
        assert _cgroup_value(pod, "memory", "memory.limit_in_bytes") == 96 * 1024 * 1024
        assert _cgroup_value(pod, "memory", "memory.limit_in_bytes", container=False) == 96 * 1024 * 1024
    finally:
        server.kubectl("delete", "pod", "resize", "--ignore-not-found", "--grace-period=1", "--wait=false",
                       check=False)


def test_sysctls_safe_allowed_and_forbidden(cluster):
    """Safe sysctls and those on --allowed-unsafe-sysctls reach the pod's namespaces; any other
    fails the pod at the kubelet's admission (SysctlForbidden)."""
    server, _ = cluster
    _apply(server, _pod("sysctls", [{"name": "c", "image": BUSYBOX, "command": [
        "sh", "-c", "cat /proc/sys/kernel/shm_rmid_forced /proc/sys/net/ipv4/ip_local_port_range "
                    "/proc/sys/kernel/msgmax; sleep 3600"]}],
        securityContext={"sysctls": [{"name": "kernel.shm_rmid_forced", "value": "1"},
                                     {"name": "net.ipv4.ip_local_port_range", "value": "1024 50000"},
                                     {"name": "kernel.msgmax", "value": "10000"}]},
        terminationGracePeriodSeconds=1))
    _apply(server, _pod("unsafe-sysctl", [{"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"]}],
                        securityContext={"sysctls": [{"name": "kernel.sem", "value": "250 32000 100 128"}]}))
    try:
        _running(server, "sysctls")
        out = wait_until(lambda: (o := _logs(server, "sysctls", "c")).count("\n") >= 3 and o, 30, 0.3, "sysctl values")
        assert out.split() == ["1", "1024", "50000", "10000"]
        pod = wait_until(lambda: (p := get_pod(server, "unsafe-sysctl")) and p["status"].get("phase") == "Failed"
                         and p, 60, 0.3, "unsafe sysctl refused")
        assert pod["status"]["reason"] == "SysctlForbidden"
        assert pod["status"]["message"] == 'Pod was rejected: forbidden sysctl: "kernel.sem" not allowlisted'
        ev = next(e for e in _events(server, "unsafe-sysctl") if e["reason"] == "SysctlForbidden")
        assert ev["type"] == "Warning" and ev["message"] == 'forbidden sysctl: "kernel.sem" not allowlisted'
    finally:
        server.kubectl("delete", "pod", "sysctls", "unsafe-sysctl", "--ignore-not-found", "--grace-period=1",
                       "--wait=false", check=False)


def test_hostname_fqdn_and_override(cluster):
    """setHostnameAsFQDN puts the FQDN in the kernel's hostname, hostnameOverride replaces the
    hostname (and /etc/hosts' entry), and an FQDN past the kernel's 64 characters fails the
    sandbox with the kubelet's message."""
    server, _ = cluster
    show = [{"name": "c", "image": BUSYBOX, "command": ["sh", "-c", "hostname; grep -v '^#' /etc/hosts | tail -1; "
                                                                   "sleep 3600"]}]
    long = "l" * 40
    _apply(server, _pod("fqdn", show, hostname="web", subdomain="sub", setHostnameAsFQDN=True,
                        terminationGracePeriodSeconds=1))
    _apply(server, _pod("override", show, hostname="web", subdomain="sub", hostnameOverride="db.example.org",
                        terminationGracePeriodSeconds=1))
    _apply(server, _pod(long, show, subdomain="sub", setHostnameAsFQDN=True, terminationGracePeriodSeconds=1))
    try:
        for name, want in (("fqdn", "web.sub.default.svc.cluster.local"), ("override", "db.example.org")):
            _running(server, name)
            out = wait_until(lambda n=name: (o := _logs(server, n, "c")).count("\n") >= 2 and o, 30, 0.3,
                             f"{name}'s hostname")
            hostname, hosts = out.splitlines()[:2]
            pod_ip = get_pod(server, name)["status"]["podIP"]
            assert hostname == want
            assert hosts.split() == ([pod_ip, "web.sub.default.svc.cluster.local", "web"] if name == "fqdn"
                                     else [pod_ip, "db.example.org"])
        fqdn = f"{long}.sub.default.svc.cluster.local"
        msg = (f"Failed to create pod sandbox: failed to construct FQDN from pod hostname and cluster domain, FQDN "
               f"{fqdn} is too long (64 characters is the max, {len(fqdn)} characters requested)")
        ev = wait_until(lambda: next((e for e in _events(server, long) if e["reason"] == "FailedCreatePodSandBox"),
                                     None), 60, 0.3, "the sandbox refused")
        assert ev["type"] == "Warning" and ev["message"] == msg
        assert get_pod(server, long)["status"]["phase"] == "Pending"
        bad = server.kubectl("apply", "-f", "-", check=False, input=json.dumps(
            _pod("both", show, hostnameOverride="h", setHostnameAsFQDN=True)))
        assert bad.returncode != 0
        assert "spec.hostnameOverride: Forbidden: may not be specified when setHostnameAsFQDN is true" in bad.stderr
    finally:
        server.kubectl("delete", "pod", "fqdn", "override", long, "--ignore-not-found", "--grace-period=1",
                       "--wait=false", check=False)


def test_strict_supplemental_groups_refused_where_the_runtime_cannot(cluster):
    """containerd 1.6 reports no supplemental-groups policy support: the node says so in
    status.features, and a Strict pod is refused at the kubelet's admission (Merge runs)."""
    server, _ = cluster
    node = json.loads(server.kubectl("get", "node", NODE, "-o", "json").stdout)
    assert node["status"]["features"] == {"supplementalGroupsPolicy": False}
    sleep = [{"name": "c", "image": BUSYBOX, "command": ["sh", "-c", "id -G; sleep 3600"]}]
    _apply(server, _pod("strict-groups", sleep, securityContext={"supplementalGroupsPolicy": "Strict",
                                                                   "supplementalGroups": [4000]}))
    _apply(server, _pod("merge-groups", sleep, securityContext={"supplementalGroupsPolicy": "Merge",
                                                                  "supplementalGroups": [4000]},
                        terminationGracePeriodSeconds=1))
    try:
        pod = wait_until(lambda: (p := get_pod(server, "strict-groups")) and p["status"].get("phase") == "Failed"
                         and p, 60, 0.3, "Strict refused")
        assert pod["status"]["reason"] == "SupplementalGroupsPolicyNotSupported"
        assert pod["status"]["message"] == "Pod was rejected: SupplementalGroupsPolicy=Strict is not supported in this node"
        ev = next(e for e in _events(server, "strict-groups") if e["reason"] == "SupplementalGroupsPolicyNotSupported")
        assert ev["type"] == "Warning" and ev["message"] == "SupplementalGroupsPolicy=Strict is not supported in this node"
        _running(server, "merge-groups")
        out = wait_until(lambda: _logs(server, "merge-groups", "c").strip(), 30, 0.3, "merge-groups' groups")
        assert "4000" in out.split()
    finally:
        server.kubectl("delete", "pod", "strict-groups", "merge-groups", "--ignore-not-found", "--grace-period=1",
                       "--wait=false", check=False)


def test_stop_signal_reaches_the_container(cluster):
    """lifecycle.stopSignal is the signal the container gets when it is stopped (here by a failed
    liveness probe; the previous instance's log says which signal it caught); without one the
    runtime's default, SIGTERM. The API server wants spec.os.name for it, as upstream."""
    server, _ = cluster
    script = ('trap "echo caught-usr1; exit 0" USR1; trap "echo caught-term; exit 0" TERM; '
              'echo started; while true; do sleep 0.2; done')
    probe = {"exec": {"command": ["sh", "-c", "test ! -e /tmp/die"]}, "periodSeconds": 1, "failureThreshold": 1}

    def ct(stop: str | None) -> list[dict]:
        c: dict = {"name": "c", "image": BUSYBOX, "command": ["sh", "-c", script], "livenessProbe": probe}
        if stop:
            c["lifecycle"] = {"stopSignal": stop}
        return [c]

    bad = server.kubectl("apply", "-f", "-", check=False, input=json.dumps(_pod("no-os", ct("SIGUSR1"))))
    assert bad.returncode != 0 and ("spec.containers[0].lifecycle.stopSignal: Forbidden: may not be set for "
                                    "containers with empty `spec.os.name`") in bad.stderr
    bad = server.kubectl("apply", "-f", "-", check=False,
                         input=json.dumps(_pod("bad-sig", ct("SIGFOO"), os={"name": "linux"})))
    assert bad.returncode != 0 and 'spec.containers[0].lifecycle.stopSignal: Unsupported value: "SIGFOO"' in bad.stderr
    _apply(server, _pod("usr1", ct("SIGUSR1"), os={"name": "linux"}, terminationGracePeriodSeconds=10))
    _apply(server, _pod("term", ct(None), terminationGracePeriodSeconds=10))
    try:
        for name, want in (("usr1", "caught-usr1"), ("term", "caught-term")):
            _running(server, name)
            wait_until(lambda n=name: "started" in _logs(server, n, "c"), 30, 0.2, f"{name} started")
            server.kubectl("exec", name, "-c", "c", "--", "touch", "/tmp/die")

            def restarted(n=name):
                p = get_pod(server, n)
                st = (p["status"].get("containerStatuses") or [{}])[0]
                return st.get("restartCount", 0) >= 1 and p
            wait_until(restarted, 60, 0.3, f"{name} restarted by its liveness probe")
            prev = server.kubectl("logs", name, "-c", "c", "--previous", check=False).stdout
            assert prev.split() == ["started", want], prev
    finally:
        server.kubectl("delete", "pod", "usr1", "term", "--ignore-not-found", "--grace-period=1", "--wait=false",
                       check=False)


def test_preemption_spares_pods_a_disruption_budget_protects(cluster):
    """Of two equal-priority victims, preemption reprieves first the one whose eviction would
    violate its PodDisruptionBudget (filterPodsWithPDBViolation), so the other, older pod goes —
    without the budget the older one would be reprieved."""
    server, _ = cluster
    _apply(server, {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                    "metadata": {"name": "kl-e2e-high2"}, "value": 1000})
    names = ["unguarded", "guarded", "preemptor2"]
    try:
        node = json.loads(server.kubectl("get", "node", NODE, "-o", "json").stdout)
        pods = json.loads(server.kubectl("get", "pods", "-A", "-o", "json",
                                         "--field-selector", f"spec.nodeName={NODE}").stdout)["items"]
        used = sum(_milli_cpu(r) for p in pods if p["status"].get("phase") not in ("Succeeded", "Failed")
                   for c in p["spec"]["containers"] if (r := c.get("resources", {}).get("requests", {}).get("cpu")))
        half = (_milli_cpu(node["status"]["allocatable"]["cpu"]) - used) // 2
        assert half >= 200, f"the node has {2 * half}m CPU free"

        def sleeper(name: str, labels: dict, **spec) -> dict:
            m = _pod(name, [{"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"],
                             "resources": {"requests": {"cpu": f"{half}m"}}}], terminationGracePeriodSeconds=1, **spec)
            m["metadata"]["labels"] = labels
            return m

        _apply(server, sleeper("unguarded", {"app": "unguarded"}))
        _running(server, "unguarded")
        _apply(server, sleeper("guarded", {"app": "guarded"}))
        _running(server, "guarded")
        _apply(server, {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "guard"},
                        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}}})
        wait_until(lambda: (st := json.loads(server.kubectl("get", "pdb", "guard", "-o", "json").stdout)
                            .get("status", {})).get("currentHealthy") == 1 and st.get("disruptionsAllowed") == 0,
                   30, 0.2, "the budget allows no disruption")
        _apply(server, sleeper("preemptor2", {"app": "preemptor"}, priorityClassName="kl-e2e-high2"))
        wait_until(lambda: get_pod(server, "unguarded") is None, 60, 0.2, "the unguarded pod preempted")
        assert _running(server, "preemptor2")["spec"]["nodeName"] == NODE
        guarded = get_pod(server, "guarded")
        assert guarded is not None and not guarded["metadata"].get("deletionTimestamp")
    finally:
        server.kubectl("delete", "pod", *names, "--ignore-not-found", "--grace-period=1", "--wait=true",
                       "--timeout=60s", check=False)
        server.kubectl("delete", "pdb", "guard", "--ignore-not-found", check=False)
        server.kubectl("delete", "priorityclass", "kl-e2e-high2", "--ignore-not-found", check=False)


def test_limit_range_checks_a_resize(cluster):
    """LimitRanger validates pods/resize as upstream's SupportsAttributes special case: a resize
    past the namespace's maximum is forbidden and changes nothing."""
    server, _ = cluster
    server.kubectl("create", "namespace", "kl-e2e-lr")
    try:
        _apply(server, {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "cap", "namespace": "kl-e2e-lr"},
                        "spec": {"limits": [{"type": "Container", "max": {"cpu": "800m"}}]}})
        pod = _pod("lr-resize", [{"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"],
                                  "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "500m"}}}],
                   terminationGracePeriodSeconds=1)
        pod["metadata"]["namespace"] = "kl-e2e-lr"
        _apply(server, pod)
        patch = json.dumps({"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "1"}}}]}})
        out = server.kubectl("patch", "pod", "lr-resize", "-n", "kl-e2e-lr", "--subresource", "resize", "--patch",
                             patch, check=False)
        assert out.returncode != 0
        assert ('pods "lr-resize" is forbidden: maximum cpu usage per Container is 800m, but limit is 1'
                in out.stderr), out.stderr
        got = json.loads(server.kubectl("get", "pod", "lr-resize", "-n", "kl-e2e-lr", "-o", "json").stdout)
        assert got["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "500m"
        ok = json.dumps({"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "700m"}}}]}})
        server.kubectl("patch", "pod", "lr-resize", "-n", "kl-e2e-lr", "--subresource", "resize", "--patch", ok)
    finally:
        server.kubectl("delete", "namespace", "kl-e2e-lr", "--wait=false", check=False)


def _status_of(pod: dict, name: str, init: bool = False) -> dict:
    key = "initContainerStatuses" if init else "containerStatuses"
    return next(s for s in pod["status"].get(key) or [] if s["name"] == name)


def _phase(server, name: str, phase: str, timeout: float = 90) -> dict:
    return wait_until(lambda: (p := get_pod(server, name)) and p["status"].get("phase") == phase and p,
                      timeout, 0.3, f"{name} {phase}")


def test_init_containers_sidecars_and_restart_rules(cluster):
    """Init containers on RestartNever and RestartAlways pods, failing ones, a sidecar
    (restartPolicy Always) started before the next init container and stopped after the app,
    and a container restartPolicyRule restarting exit code 42 in a RestartNever pod."""
    server, _ = cluster
    shared = [{"name": "shared", "mountPath": "/shared"}]
    app = ("n=$(cat /shared/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /shared/n; "
           "cat /shared/first /shared/side; [ $n -ge 2 ] || exit 42")
    _apply(server, _pod("inits", [
        {"name": "app", "image": BUSYBOX, "command": ["sh", "-c", app], "volumeMounts": shared,
         "restartPolicy": "Never",
         "restartPolicyRules": [{"action": "Restart", "exitCodes": {"operator": "In", "values": [42]}}]}],
        initContainers=[
            {"name": "first", "image": BUSYBOX, "command": ["sh", "-c", "echo first-ran > /shared/first"],
             "volumeMounts": shared},
            {"name": "side", "image": BUSYBOX, "restartPolicy": "Always", "volumeMounts": shared,
             "command": ["sh", "-c", "echo side-up > /shared/side; trap 'exit 0' TERM; while :; do sleep 0.2; done"],
             "startupProbe": {"exec": {"command": ["test", "-f", "/shared/side"]}, "periodSeconds": 1}},
            {"name": "after-side", "image": BUSYBOX, "command": ["test", "-f", "/shared/side"],
             "volumeMounts": shared}],
        volumes=[{"name": "shared", "emptyDir": {}}], restartPolicy="Never", terminationGracePeriodSeconds=5))
    _apply(server, _pod("init-fails-never", [{"name": "app", "image": BUSYBOX, "command": ["sleep", "3600"]}],
                        initContainers=[{"name": "bad", "image": BUSYBOX, "command": ["sh", "-c", "exit 3"]}],
                        restartPolicy="Never"))
    _apply(server, _pod("init-fails-always", [{"name": "app", "image": BUSYBOX, "command": ["sleep", "3600"]}],
                        initContainers=[{"name": "ok", "image": BUSYBOX, "command": ["true"]},
                                        {"name": "bad", "image": BUSYBOX, "command": ["false"]}],
                        terminationGracePeriodSeconds=1))
    _apply(server, _pod("init-ok-always", [{"name": "app", "image": BUSYBOX, "command": ["sleep", "3600"]}],
                        initContainers=[{"name": "a", "image": BUSYBOX, "command": ["true"]},
                                        {"name": "b", "image": BUSYBOX, "command": ["true"]}],
                        terminationGracePeriodSeconds=1))

    # RestartNever, the init container failed: the pod fails, its app container never starts
    pod = _phase(server, "init-fails-never", "Failed")
    assert _status_of(pod, "bad", init=True)["state"]["terminated"]["exitCode"] == 3
    assert "waiting" in _status_of(pod, "app")["state"]
    # RestartAlways: both init containers ran, the app runs, the pod is Initialized
    pod = _phase(server, "init-ok-always", "Running")
    assert all(_status_of(pod, n, init=True)["state"]["terminated"]["reason"] == "Completed" for n in "ab")
    assert _cond(pod, "Initialized")["status"] == "True"
    # RestartAlways, the second init container fails: retried, the app never starts
    pod = wait_until(lambda: (p := get_pod(server, "init-fails-always")) and _status_of(
        p, "bad", init=True).get("restartCount", 0) >= 1 and p, 90, 0.3, "the failing init container retried")
    assert pod["status"]["phase"] == "Pending"
    assert _cond(pod, "Initialized") | {"lastTransitionTime": None} == {
        "type": "Initialized", "status": "False", "reason": "ContainersNotInitialized", "lastProbeTime": None,
        "message": "containers with incomplete status: [bad]", "lastTransitionTime": None}
    assert _status_of(pod, "app")["state"]["waiting"]["reason"] == "PodInitializing"

    # the sidecar ran beside the app; the rule restarted exit 42 once; then the pod succeeded
    # (RestartNever) and the sidecar was stopped
    pod = _phase(server, "inits", "Succeeded", 120)
    st = _status_of(pod, "app")
    assert st["restartCount"] == 1 and st["state"]["terminated"]["exitCode"] == 0, st
    assert st["lastState"]["terminated"]["exitCode"] == 42
    assert _logs(server, "inits", "app").split() == ["first-ran", "side-up"]
    wait_until(lambda: "terminated" in _status_of(get_pod(server, "inits"), "side", init=True)["state"], 30, 0.3,
               "the sidecar's final state")
    assert _status_of(pod, "after-side", init=True)["state"]["terminated"]["exitCode"] == 0
    for name in ("inits", "init-fails-never", "init-fails-always", "init-ok-always"):
        server.kubectl("delete", "pod", name, "--wait=false")
    for name in ("inits", "init-fails-never", "init-fails-always", "init-ok-always"):
        wait_until(lambda n=name: get_pod(server, n) is None, 60, 0.3, f"{name} gone")


def test_process_env_security_and_termination_message_fields(cluster):
    """What the node conformance tests check of a container's process: command/args over the
    image's, workingDir, downward API and configMap env with $(VAR) expansion (and $$
    escapes), runAsUser/runAsGroup, readOnlyRootFilesystem, allowPrivilegeEscalation=false,
    capabilities, hostAliases, and the termination message from a file at a custom path
    (written as non-root) or from the log on error (FallbackToLogsOnError)."""
    server, _ = cluster
    server.kubectl("create", "configmap", "procfields-cm", "--from-literal=color=blue")
    scratch = [{"name": "scratch", "mountPath": "/scratch"}]
    script = ('echo "ids $(id -u) $(id -g) $(pwd) $0"; '
              'echo "env $POD_NAME $GREETING $ESCAPED $UNKNOWN $MEM_LIMIT $CPU_REQ $CM_color"; '
              'grep NoNewPrivs /proc/self/status; grep -c alias.test /etc/hosts; '
              'touch /rootfs-write 2>/dev/null && echo rootfs-writable || echo rootfs-read-only; '
              'echo -n file-msg > /dev/custom-log')
    env = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
           {"name": "GREETING", "value": "hello-$(POD_NAME)"},
           {"name": "ESCAPED", "value": "$$(POD_NAME)"},
           {"name": "UNKNOWN", "value": "$(NOPE)"},
           {"name": "MEM_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
           {"name": "CPU_REQ", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}}]
    _apply(server, _pod("procfields", [
        {"name": "proc", "image": BUSYBOX, "command": ["sh", "-c"], "args": [script, "$(POD_NAME)"],
         "workingDir": "/scratch", "volumeMounts": scratch, "env": env,
         "envFrom": [{"prefix": "CM_", "configMapRef": {"name": "procfields-cm"}}],
         "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "100m", "memory": "64Mi"}},
         "terminationMessagePath": "/dev/custom-log",
         "securityContext": {"runAsUser": 1234, "runAsGroup": 5678, "readOnlyRootFilesystem": True,
                             "allowPrivilegeEscalation": False}},
        {"name": "caps", "image": BUSYBOX, "args": ["sh", "-c", "grep CapEff /proc/self/status; echo -n log-tail; exit 1"],
         "terminationMessagePolicy": "FallbackToLogsOnError",
         "securityContext": {"capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}}},
        {"name": "file-wins", "image": BUSYBOX, "terminationMessagePolicy": "FallbackToLogsOnError",
         "command": ["sh", "-c", "echo -n from-file > /dev/termination-log; echo noise; exit 2"]},
        {"name": "ok-no-msg", "image": BUSYBOX, "terminationMessagePolicy": "FallbackToLogsOnError",
         "command": ["sh", "-c", "echo noise"]}],
        restartPolicy="Never", volumes=[{"name": "scratch", "emptyDir": {}}],
        hostAliases=[{"ip": "127.0.0.5", "hostnames": ["alias.test"]}]))
    pod = _phase(server, "procfields", "Failed")
    assert _logs(server, "procfields", "proc").splitlines() == [
        "ids 1234 5678 /scratch procfields",
        "env procfields hello-procfields $(POD_NAME) $(NOPE) 64 100 blue",
        "NoNewPrivs:\t1", "1", "rootfs-read-only"]
    terminated = {s["name"]: s["state"]["terminated"] for s in pod["status"]["containerStatuses"]}
    assert terminated["proc"]["exitCode"] == 0 and terminated["proc"]["message"] == "file-msg"
    assert _logs(server, "procfields", "caps").startswith("CapEff:\t0000000000000001")
    assert terminated["caps"]["exitCode"] == 1 and terminated["caps"]["message"].endswith("log-tail")
    assert terminated["file-wins"]["exitCode"] == 2 and terminated["file-wins"]["message"] == "from-file"
    assert terminated["ok-no-msg"]["exitCode"] == 0 and "message" not in terminated["ok-no-msg"]
    server.kubectl("delete", "pod", "procfields", "--wait=true", "--timeout=60s")
    server.kubectl("delete", "configmap", "procfields-cm")


def test_host_namespaces_and_shared_process_namespace(cluster):
    """hostNetwork (the node's IP as the pod's, the node's hosts file with the aliases),
    hostPID and hostIPC (the node's PID 1 and IPC namespace), shareProcessNamespace (one PID
    namespace for the pod's containers, the pause process as PID 1)."""
    server, _ = cluster
    import os
    import socket
    ipc_ns = os.readlink("/proc/self/ns/ipc")
    _apply(server, _pod("hostns", [
        {"name": "c", "image": BUSYBOX, "command": ["sh", "-c", "hostname; readlink /proc/self/ns/ipc; "
                                                                "grep -c alias.test /etc/hosts; cat /proc/1/comm; "
                                                                "sleep 3600"]}],
        hostNetwork=True, hostPID=True, hostIPC=True, terminationGracePeriodSeconds=1,
        hostAliases=[{"ip": "127.0.0.5", "hostnames": ["alias.test"]}]))
    _apply(server, _pod("sharedpid", [
        {"name": "a", "image": BUSYBOX, "command": ["sh", "-c", "exec sleep 3601"]},
        {"name": "b", "image": BUSYBOX, "command": ["sh", "-c", "while ! ps | grep -q 'sleep 3601'; do sleep 0.2; "
                                                                "done; echo saw-a; cat /proc/1/comm; sleep 3600"]}],
        shareProcessNamespace=True, terminationGracePeriodSeconds=1))
    pod = _running(server, "hostns")
    assert pod["status"]["podIP"] == pod["status"]["hostIP"]
    out = wait_until(lambda: (o := _logs(server, "hostns", "c").split()) and len(o) >= 4 and o, 30, 0.3, "hostns logs")
    assert out[0] == socket.gethostname() and out[1] == ipc_ns and out[2] == "1"
    with open("/proc/1/comm") as f:
        assert out[3] == f.read().strip()
    _running(server, "sharedpid")
    out = wait_until(lambda: (o := _logs(server, "sharedpid", "b").split()) and len(o) >= 2 and o, 30, 0.3,
                     "sharedpid logs")
    assert out == ["saw-a", "pause"]
    for name in ("hostns", "sharedpid"):
        server.kubectl("delete", "pod", name, "--wait=false")
    for name in ("hostns", "sharedpid"):
        wait_until(lambda n=name: get_pod(server, n) is None, 60, 0.3, f"{name} gone")


def test_fields_kubelite_refuses(cluster):
    """What cannot be had is refused as upstream refuses it: resource claims (no DRA kinds
    served), alpha-gated fields dropped, another OS rejected by the node; and scheduling
    gates show as SchedulingGated."""
    server, _ = cluster
    c = [{"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"]}]
    _apply(server, _pod("refused-claims", c, resourceClaims=[{"name": "gpu", "resourceClaimName": "gpu-claim"}]))
    _apply(server, _pod("sched-gated", c, schedulingGates=[{"name": "example.com/later"}],
                        evictionResponders=[{"name": "example.com/drain", "priority": 10000}]))
    _apply(server, _pod("refused-os", [{"name": "c", "image": BUSYBOX}], os={"name": "windows"}))
    ev = wait_until(lambda: next((e for e in _events(server, "refused-claims") if e["reason"] == "FailedScheduling"), None),
                    30, 0.3, "FailedScheduling")
    assert ev["message"] == 'resourceclaim.resource.k8s.io "gpu-claim" not found'
    cond = _cond(get_pod(server, "refused-claims"), "PodScheduled")
    assert (cond["status"], cond["reason"]) == ("False", "Unschedulable")
    gated = get_pod(server, "sched-gated")
    assert "evictionResponders" not in gated["spec"]
    cond = _cond(gated, "PodScheduled")
    assert (cond["status"], cond["reason"], cond["message"]) == (
        "False", "SchedulingGated", "Scheduling is blocked due to non-empty scheduling gates")
    assert "SchedulingGated" in server.kubectl("get", "pod", "sched-gated").stdout
    pod = _phase(server, "refused-os", "Failed", 60)
    assert (pod["status"]["reason"], pod["status"]["message"]) == (
        "PodOSNotSupported", "Pod was rejected: Failed to admit pod as the OS field doesn't match node OS")
    for name in ("refused-claims", "sched-gated", "refused-os"):
        server.kubectl("delete", "pod", name, "--wait=false")
    for name in ("refused-claims", "sched-gated", "refused-os"):
        wait_until(lambda n=name: get_pod(server, n) is None, 60, 0.3, f"{name} gone")
