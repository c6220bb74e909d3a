"""`kubelite doctor`'s diagnosis over recorded objects: the pods, events, nodes and logs a real
server and agent produced (tests/unit/doctor_fixtures/e2e-recorded.json, recorded by
tests/e2e/test_doctor.py with KUBELITE_RECORD_DOCTOR) and, for what the agent does not
produce today, objects in the shape upstream's kubelet and scheduler write them."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path

import pytest

from kubelite.doctor import Evidence, diagnose
from kubelite.doctor.collect import _ok, gather
from kubelite.doctor.evidence import events_of
from kubelite.doctor.scheduling import fit_reasons, fmt_quantity

RECORDED = json.loads((Path(__file__).parent / "doctor_fixtures" / "e2e-recorded.json").read_text())
NOW = 1_800_000_000.0
T = "2027-01-15T08:00:00Z"  # = NOW


def _flat(d) -> str:
    return " ".join(d.text().split())


def _recorded(name: str) -> Evidence:
    return Evidence.from_dict(copy.deepcopy(RECORDED[name]))


# --------------------------------------------------------------------------- what the agent produced
EXPECT = {
    "dr-cpu": ("InsufficientResources", "", ["requests 64 CPU", 'node "kl-e2e-doctor" has 2 CPU allocatable',
                                             "no node here can ever hold it", "at most 2 fits the biggest node"]),
    "dr-selector": ("NodeSelectorMismatch", "", ['"kl-e2e-doctor" has no disktype label',
                                                 "kubectl label nodes kl-e2e-doctor disktype=ssd"]),
    "dr-taint": ("UntoleratedTaint", "", ["kubelite.io/doctor=e2e:NoSchedule",
                                          "{key: kubelite.io/doctor, operator: Equal, value: e2e, effect: NoSchedule}",
                                          "kubectl taint nodes kl-e2e-doctor kubelite.io/doctor=e2e:NoSchedule-"]),
    "dr-image-missing": ("ImageNotFound", "main", ["no-such-tag", "the repository or the tag does not exist",
                                                   "kubectl set image pod/dr-image-missing main=IMAGE"]),
    "dr-image-auth": ("ImagePullUnauthorized", "main", ["401 Unauthorized", "the pod has no imagePullSecrets",
                                                        "--docker-server=127.0.0.1:"]),
    "dr-crash": ("CrashLoopBackOff", "main", ["exit code 3", '"error: cannot connect to the database at db:5432"',
                                              "kubectl logs dr-crash -c main --previous"]),
    "dr-oom": ("OOMKilled", "main", ["more memory than its limit (20Mi)", "exit code 137",
                                     "raise resources.limits.memory"]),
    "dr-readiness": ("ReadinessProbeFailing", "main", ["exec cat /tmp/ready", "can't open '/tmp/ready'",
                                                       "Services send it no traffic"]),
    "dr-liveness": ("LivenessProbeFailing", "main", ["because its liveness probe (exec cat /tmp/healthy) failed",
                                                     "startupProbe"]),
    "dr-configmap": ("ConfigMapNotFound", "main", ['named by container "main" envFrom[0].configMapRef',
                                                   "kubectl create configmap dr-missing-config -n default"]),
    "dr-secret": ("SecretNotFound", "main", ['named by volume "creds"',
                                             "kubectl create secret generic dr-missing-secret -n default"]),
    "dr-hostpath": ("VolumeMountFailed", "main", ['hostPath volume "data"', "is not a directory",
                                                  "create /nonexistent/kubelite-doctor on the node"]),
}


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_recorded_cases(name):
    d = diagnose(_recorded(name))
    reason, container, words = EXPECT[name]
    assert [(f.reason, f.container) for f in d.findings] == [(reason, container)], d.text()
    flat = _flat(d)
    for w in words:
        assert w in flat, d.text()
    assert not d.healthy


def test_recorded_healthy_pod_and_noise_events():
    d = diagnose(_recorded("dr-healthy"))
    # the MissingClusterDNS warning every pod gets here is not why a pod fails
    assert d.healthy and d.summary == "Running and Ready: nothing to fix."
    assert d.text().startswith("pod/dr-healthy in namespace default: Running (1/1 ready, 0 restarts, node ")


def test_recorded_without_node_access_uses_the_message():
    ev = _recorded("dr-taint")
    ev.nodes = None
    (f,) = diagnose(ev).findings
    assert f.reason == "UntoleratedTaint" and "1 node: a taint the pod does not tolerate" in f.cause


def test_recorded_crash_loop_without_logs():
    ev = _recorded("dr-crash")
    ev.logs = {}
    (f,) = diagnose(ev).findings
    assert "last log line" not in f.cause and "exit code 3" in f.cause


def test_to_dict_is_json():
    d = diagnose(_recorded("dr-oom")).to_dict()
    assert set(d) == {"namespace", "name", "status", "ready", "restarts", "node", "healthy", "summary", "findings"}
    assert set(d["findings"][0]) == {"reason", "severity", "container", "cause", "fix", "evidence"}
    json.dumps(d)


# --------------------------------------------------------------------------- upstream shapes
def _node(name: str = "n1", cpu: str = "4", memory: str = "8Gi", ready: str = "True", **spec) -> dict:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}, "spec": spec,
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                       "conditions": [{"type": "Ready", "status": ready, "reason": "KubeletReady" if ready == "True"
                                       else "NodeStatusUnknown", "message": "Kubelet stopped posting node status."
                                       if ready != "True" else "kubelet is posting ready status",
                                       "lastHeartbeatTime": "2027-01-15T07:55:00Z"}]}}


def _pod(name: str = "p", containers: list | None = None, node: str = "n1", phase: str = "Pending",
         statuses: list | None = None, **spec) -> dict:
    containers = containers or [{"name": "app", "image": "app:1"}]
    s: dict = {"containers": containers, **spec}
    if node:
        s["nodeName"] = node
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "creationTimestamp":
                         "2027-01-15T07:50:00Z"},
            "spec": s, "status": {"phase": phase, "containerStatuses": statuses or []}}


def _cs(name: str = "app", state: dict | None = None, last: dict | None = None, ready: bool = False,
        restarts: int = 0, started: bool | None = None) -> dict:
    cs = {"name": name, "image": "app:1", "ready": ready, "restartCount": restarts,
          "state": state or {"waiting": {"reason": "ContainerCreating"}}, "lastState": last or {}}
    if started is not None:
        cs["started"] = started
    return cs


def _event(reason: str, message: str, type_: str = "Warning", container: str = "", count: int = 1,
           at: str = T, pod: str = "p") -> dict:
    inv = {"kind": "Pod", "name": pod, "namespace": "default", "uid": f"uid-{pod}"}
    if container:
        inv["fieldPath"] = f"spec.containers{{{container}}}"
    return {"type": type_, "reason": reason, "message": message, "count": count, "lastTimestamp": at,
            "involvedObject": inv}


def _ev(pod: dict, events=(), nodes=None, node_pods=None, logs=None) -> Evidence:
    return Evidence(pod, list(events), [_node()] if nodes is None else nodes, node_pods, logs or {}, NOW)


NFS_MSG = ('MountVolume.SetUp failed for volume "kuard-data" : mount failed: exit status 32\n'
           "Mounting command: mount\nMounting arguments: -t nfs my.nfs.server.local:/exports "
           "/var/lib/kubelet/pods/uid-p/volumes/kubernetes.io~nfs/kuard-data\n"
           "Output: mount.nfs: Failed to resolve server my.nfs.server.local: Name or service not known")


def test_failed_mount_event_while_container_creating():
    """Upstream: the pod stays ContainerCreating and the kubelet reports FailedMount."""
    pod = _pod(statuses=[_cs()], volumes=[{"name": "kuard-data", "nfs": {"server": "my.nfs.server.local",
                                                                         "path": "/exports"}}])
    d = diagnose(_ev(pod, [_event("FailedMount", NFS_MSG, count=4)]))
    (f,) = d.findings
    assert f.reason == "VolumeMountFailed" and f.container == ""
    assert f.cause == ('the node cannot mount the nfs volume "kuard-data": mount.nfs: Failed to resolve server '
                       "my.nfs.server.local: Name or service not known (mount failed: exit status 32)")
    assert "my.nfs.server.local exports /exports" in f.fix
    assert f.evidence[0].startswith("event FailedMount: MountVolume.SetUp failed") and "(x4, last 0s ago)" in \
        f.evidence[0]


def test_failed_mount_configmap_volume_and_timeout():
    pod = _pod(statuses=[_cs()], volumes=[{"name": "cfg", "configMap": {"name": "app-config"}}])
    msg = 'MountVolume.SetUp failed for volume "cfg" : configmap "app-config" not found'
    (f,) = diagnose(_ev(pod, [_event("FailedMount", msg)])).findings
    assert f.reason == "ConfigMapNotFound" and 'named by volume "cfg"' in f.cause
    assert "kubectl create configmap app-config -n default" in f.fix
    timeout = ("Unable to attach or mount volumes: unmounted volumes=[cfg], unattached volumes=[cfg "
               "kube-api-access-x]: timed out waiting for the condition")
    (f,) = diagnose(_ev(pod, [_event("FailedMount", timeout)])).findings
    assert f.reason == "VolumeMountFailed" and "volume(s) cfg" in f.cause
    # an old FailedMount (an hour ago) is not the cause any more
    d = diagnose(_ev(pod, [_event("FailedMount", msg, at="2027-01-15T07:00:00Z")]))
    assert [f.reason for f in d.findings] == ["ContainerCreating"]


def test_taint_of_a_node_that_is_not_ready():
    pod = _pod(node="")
    pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                    "message": "0/1 nodes are available: 1 node(s) had untolerated taint(s). "
                                               "preemption: 0/1 nodes are available: 1 Preemption is not helpful "
                                               "for scheduling.", "lastTransitionTime": T}]
    node = _node(ready="Unknown", taints=[{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}])
    (f,) = diagnose(_ev(pod, nodes=[node], node_pods=[])).findings
    assert f.reason == "NodeNotReady" and "is unreachable" in f.cause and "Ready=Unknown" in f.cause


def test_cordoned_node_and_no_nodes_and_old_taint_message():
    pod = _pod(node="")
    pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                    "message": "0/1 nodes are available: 1 node(s) were unschedulable.",
                                    "lastTransitionTime": T}]
    (f,) = diagnose(_ev(pod, nodes=[_node(unschedulable=True)], node_pods=[])).findings
    assert f.reason == "NodeUnschedulable" and "kubectl uncordon n1" in f.fix
    pod["status"]["conditions"][0]["message"] = "no nodes available to schedule pods"
    (f,) = diagnose(_ev(pod, nodes=[], node_pods=[])).findings
    assert f.reason == "NoNodes"
    pod["status"]["conditions"][0]["message"] = ("0/3 nodes are available: 3 node(s) had untolerated taint "
                                                 "{node-role.kubernetes.io/control-plane: }. preemption: …")
    assert fit_reasons(pod["status"]["conditions"][0]["message"]) == [
        (3, "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }")]
    (f,) = diagnose(Evidence(pod, [], None, None, {}, NOW)).findings
    assert f.reason == "UntoleratedTaint" and f.cause.startswith("3 nodes:")


def test_full_nodes_say_make_room():
    pod = _pod(node="", containers=[{"name": "app", "image": "app:1",
                                     "resources": {"requests": {"cpu": "1", "memory": "3Gi"}}}])
    pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                    "message": "0/1 nodes are available: 1 Insufficient memory.",
                                    "lastTransitionTime": T}]
    other = _pod("big", containers=[{"name": "x", "image": "x:1", "resources": {"requests": {"memory": "6Gi"}}}])
    (f,) = diagnose(_ev(pod, nodes=[_node()], node_pods=[other])).findings
    assert f.reason == "InsufficientResources"
    assert 'node "n1" has 8Gi memory allocatable, 6Gi requested by 1 other pod, 2Gi free' in f.cause
    assert f.fix.startswith("make room")


def test_stale_scheduling_message_and_waiting_for_the_scheduler():
    pod = _pod(node="", containers=[{"name": "app", "image": "app:1", "resources": {"requests": {"cpu": "1"}}}])
    ev = _event("FailedScheduling", "0/1 nodes are available: 1 Insufficient cpu.", at="2027-01-15T07:59:00Z")
    (f,) = diagnose(_ev(pod, [ev], nodes=[_node()], node_pods=[])).findings
    assert (f.reason, f.severity) == ("Unschedulable", "info") and "one fits now" in f.cause
    (f,) = diagnose(_ev(pod)).findings
    assert (f.reason, f.severity) == ("WaitingForScheduler", "error") and "no scheduler" in f.cause
    pod["metadata"]["creationTimestamp"] = "2027-01-15T07:59:58Z"
    (f,) = diagnose(_ev(pod)).findings
    assert (f.reason, f.severity) == ("WaitingForScheduler", "info")


@pytest.mark.parametrize("code, words", [
    (0, "restartPolicy Always starts it again"),
    (127, "the command was not found in the image"),
    (1, "a general error of the application"),
])
def test_crash_loop_exit_codes(code, words):
    last = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                           "startedAt": "2027-01-15T07:59:50Z", "finishedAt": "2027-01-15T07:59:55Z"}}
    pod = _pod(phase="Running", statuses=[_cs(state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
                                              last=last, restarts=4)])
    (f,) = diagnose(_ev(pod, logs={"app": {"previous": "line one\nthe end\n\n"}})).findings
    assert f.reason == "CrashLoopBackOff" and words in f.cause + f.fix
    assert '"the end"' in f.cause and "after running 5s" in f.cause and "restarted 4 times" in f.cause


def test_startup_probe_failing_and_readiness_pending():
    probe = {"exec": {"command": ["test", "-f", "/ready"]}, "periodSeconds": 5, "initialDelaySeconds": 30}
    pod = _pod(phase="Running", containers=[{"name": "app", "image": "app:1", "startupProbe": probe}],
               statuses=[_cs(state={"running": {"startedAt": "2027-01-15T07:59:50Z"}}, started=False)])
    (f,) = diagnose(_ev(pod, [_event("Unhealthy", "Startup probe failed: ", container="app")])).findings
    assert f.reason == "StartupProbeFailing"
    pod["spec"]["containers"][0] = {"name": "app", "image": "app:1", "readinessProbe": probe}
    pod["status"]["containerStatuses"][0]["started"] = True
    d = diagnose(_ev(pod))
    (f,) = d.findings
    assert (f.reason, f.severity) == ("ReadinessProbePending", "info") and "initialDelaySeconds 30" in f.cause
    assert d.summary.startswith("Nothing wrong yet")


def test_probe_events_of_another_container_do_not_count():
    probe = {"httpGet": {"path": "/ready", "port": 8080}}
    pod = _pod(phase="Running", containers=[{"name": "app", "image": "app:1", "readinessProbe": probe},
                                            {"name": "side", "image": "s:1"}],
               statuses=[_cs(state={"running": {"startedAt": T}}),
                         _cs("side", state={"running": {"startedAt": T}}, ready=True)])
    ev = _event("Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503", container="side")
    (f,) = diagnose(_ev(pod, [ev])).findings
    assert f.reason == "ReadinessProbePending"
    ev = _event("Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503", container="app")
    (f,) = diagnose(_ev(pod, [ev])).findings
    assert f.reason == "ReadinessProbeFailing" and "httpGet /ready on port 8080" in f.cause
    assert "statuscode: 503" in f.cause and "kubectl port-forward pod/p" in f.fix


def test_config_key_not_found_and_command_not_found():
    msg = "couldn't find key DB_URL in ConfigMap default/app-config"
    pod = _pod(statuses=[_cs(state={"waiting": {"reason": "CreateContainerConfigError", "message": msg}})])
    (f,) = diagnose(_ev(pod)).findings
    assert f.reason == "ConfigKeyNotFound" and 'no key "DB_URL"' in f.cause and "kubectl edit configmap app-config" \
        in f.fix
    msg = ('failed to create containerd task: failed to create shim task: OCI runtime create failed: exec: '
           '"/app/server": stat /app/server: no such file or directory: unknown')
    pod = _pod(statuses=[_cs(state={"waiting": {"reason": "RunContainerError", "message": msg}})])
    (f,) = diagnose(_ev(pod)).findings
    assert f.reason == "CommandNotFound"


def test_init_container_blocks_the_rest():
    last = {"terminated": {"exitCode": 1, "reason": "Error"}}
    pod = _pod(initContainers=[{"name": "migrate", "image": "m:1"}],
               statuses=[_cs(state={"waiting": {"reason": "PodInitializing"}})])
    pod["status"]["initContainerStatuses"] = [_cs("migrate", state={"waiting": {"reason": "CrashLoopBackOff"}},
                                                  last=last, restarts=2)]
    (f,) = diagnose(_ev(pod, logs={"migrate": {"previous": "relation users does not exist"}})).findings
    assert f.reason == "CrashLoopBackOff" and f.container == "migrate" and f.cause.startswith("init container:")


def test_restart_policy_never_and_succeeded():
    term = {"terminated": {"exitCode": 2, "reason": "Error"}}
    pod = _pod(phase="Failed", restartPolicy="Never", statuses=[_cs(state=term)])
    (f,) = diagnose(_ev(pod, logs={"app": {"current": "usage: app [-v]"}})).findings
    assert f.reason == "ContainerFailed" and "restartPolicy Never" in f.cause and '"usage: app [-v]"' in f.cause
    pod = _pod(phase="Succeeded", restartPolicy="Never",
               statuses=[_cs(state={"terminated": {"exitCode": 0, "reason": "Completed"}})])
    d = diagnose(_ev(pod))
    assert d.healthy and d.summary.startswith("Completed")


def test_node_not_ready_and_terminating():
    pod = _pod(phase="Running", statuses=[_cs(state={"running": {"startedAt": T}}, ready=True)])
    d = diagnose(_ev(pod, nodes=[_node(ready="Unknown")]))
    (f,) = d.findings
    assert f.reason == "NodeNotReady" and "last heartbeat 5m ago" in f.cause
    assert diagnose(_ev(pod, nodes=[])).findings[0].reason == "NodeNotFound"
    pod["metadata"]["deletionTimestamp"] = "2027-01-15T07:58:00Z"
    pod["metadata"]["finalizers"] = ["example.com/cleanup"]
    (f,) = diagnose(_ev(pod)).findings
    assert (f.reason, f.severity) == ("Terminating", "warning") and "example.com/cleanup" in f.cause


def test_image_pull_unreachable_and_never_pull():
    msg = ('failed to pull and unpack image "reg.example:5000/app:1": failed to resolve reference '
           '"reg.example:5000/app:1": failed to do request: Head "https://reg.example:5000/v2/app/manifests/1": '
           "dial tcp: lookup reg.example: no such host")
    pod = _pod(containers=[{"name": "app", "image": "reg.example:5000/app:1"}],
               statuses=[_cs(state={"waiting": {"reason": "ErrImagePull", "message": msg}})])
    (f,) = diagnose(_ev(pod)).findings
    assert f.reason == "RegistryUnreachable" and "reg.example:5000" in f.cause
    pod["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": "ErrImageNeverPull", "message": "x"}}
    assert diagnose(_ev(pod)).findings[0].reason == "ImageNeverPull"


def test_fresh_pod_is_on_its_way():
    pod = _pod(statuses=[_cs()])
    pod["metadata"]["creationTimestamp"] = "2027-01-15T07:59:57Z"
    (f,) = diagnose(_ev(pod)).findings
    assert (f.reason, f.severity) == ("ContainerCreating", "info")


def test_quantities_and_fit_reasons():
    assert fmt_quantity("cpu", 64000) == "64" and fmt_quantity("cpu", 1500) == "1500m"
    assert fmt_quantity("memory", 256 << 20) == "256Mi" and fmt_quantity("memory", 24683584 * 1024) == "23.5Gi"
    assert fit_reasons("0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node "
                       "affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful.") == [
        (1, "Insufficient cpu"), (2, "node(s) didn't match Pod's node affinity/selector")]


# --------------------------------------------------------------------------- the client layer
class _FakeClient:
    """Answers like the API server for gather(): lists, a get, and logs."""

    def __init__(self, pods: list[dict], events: list[dict], nodes_forbidden: bool = False) -> None:
        self.pods, self.events, self.nodes_forbidden = pods, events, nodes_forbidden
        self.log_calls: list[tuple[str, dict]] = []

    async def get(self, api_version, plural, name, namespace=""):
        from kubelite.api import errors

        for p in self.pods:
            if p["metadata"]["name"] == name:
                return p
        raise errors.StatusError(404, "NotFound", f'pods "{name}" not found')

    async def list(self, api_version, plural, namespace="", **params):
        from kubelite.api import errors

        if plural == "nodes":
            if self.nodes_forbidden:
                raise errors.StatusError(403, "Forbidden", "nodes is forbidden")
            return {"items": [_node()]}
        return {"items": self.pods if plural == "pods" else self.events}

    async def text(self, path, params=None, timeout=30.0):
        self.log_calls.append((path, dict(params or {})))
        return "last words\n"


def test_gather_reads_what_the_diagnosis_needs():
    crash = _pod("crash", phase="Running", statuses=[_cs(state={"waiting": {"reason": "CrashLoopBackOff"}},
                                                         last={"terminated": {"exitCode": 1}}, restarts=3)])
    fine = _pod("fine", phase="Running", statuses=[_cs(state={"running": {"startedAt": T}}, ready=True)])
    fine["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    pending = _pod("pending", node="")
    events = [_event("BackOff", "Back-off restarting failed container", pod="crash"),
              _event("FailedScheduling", "0/1 nodes are available: 1 Insufficient cpu.", pod="pending")]
    c = _FakeClient([crash, fine, pending], events, nodes_forbidden=True)
    got = asyncio.run(gather(c, "default"))  # type: ignore[arg-type]
    assert [e.pod["metadata"]["name"] for e in got] == ["crash", "pending"]
    assert got[0].logs == {"app": {"previous": "last words\n"}}
    assert c.log_calls == [("/api/v1/namespaces/default/pods/crash/log",
                            {"container": "app", "previous": "true", "tailLines": 20, "limitBytes": 65536})]
    assert [e["reason"] for e in got[0].events] == ["BackOff"] and got[0].nodes is None
    assert got[1].node_pods is not None
    assert len(asyncio.run(gather(c, "default", include_healthy=True))) == 3  # type: ignore[arg-type]


def test_ok_and_events_of():
    fine = _pod("fine", phase="Running", statuses=[_cs(state={"running": {"startedAt": T}}, ready=True)])
    fine["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert _ok(fine, NOW)
    fine["status"]["containerStatuses"][0]["lastState"] = {"terminated": {"finishedAt": "2027-01-15T07:58:00Z"}}
    assert not _ok(fine, NOW) and _ok(fine, NOW + 3600)
    other_uid = _event("Failed", "x", pod="fine")
    other_uid["involvedObject"]["uid"] = "an-older-pod"
    assert events_of(fine, [other_uid, _event("Failed", "y", pod="fine"), _event("Failed", "z", pod="x")]) == [
        _event("Failed", "y", pod="fine")]
