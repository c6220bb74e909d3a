"""Pod volumes end to end (real server, agent, containerd): a source the node cannot provide
keeps the pod ContainerCreating with the kubelet's FailedMount events (never an empty
directory in its place); subPath / subPathExpr, read-only mounts, fsGroup ownership, and the
eviction of a pod whose emptyDir outgrows its sizeLimit."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.e2e.harness import wait_until
from tests.e2e.test_agent_support import (
    BUSYBOX,
    cid,
    create,
    cstatus,
    delete,
    get_pod,
    leftovers,
    node_env,
    phase,
    pod_manifest,
    running,
)

pytestmark = pytest.mark.e2e
node = pytest.fixture(scope="module")(node_env)


def _failed_mounts(server, name: str) -> list[dict]:
    p = server.kubectl("get", "events", "--field-selector", f"involvedObject.name={name},reason=FailedMount",
                       "-o", "json")
    return json.loads(p.stdout)["items"]


def _sleeper(mounts: list[dict], **extra) -> dict:
    return {"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"], "volumeMounts": mounts, **extra}


def test_unmountable_nfs_stays_container_creating_with_counted_failed_mounts(node):
    server, agent = node
    pod = create(server, pod_manifest("nfs-pod", agent.node_name, [_sleeper([{"name": "data", "mountPath": "/data"}])],
                                      volumes=[{"name": "data", "nfs": {"server": "my.nfs.server.local",
                                                                        "path": "/exports"}}]))
    uid = pod["metadata"]["uid"]

    def counted() -> dict | None:
        evs = _failed_mounts(server, "nfs-pod")
        return evs[0] if evs and evs[0]["count"] >= 3 else None

    # back-off 0.5 s, 1 s, 2 s, ...: the third attempt comes about 3.5 s after the first
    ev = wait_until(counted, 30, 0.3, "FailedMount seen three times")
    assert len(_failed_mounts(server, "nfs-pod")) == 1  # one Event, its count bumped
    assert ev["type"] == "Warning" and ev["source"]["component"] == "kubelet"
    vol_dir = agent.data_dir / "pods" / uid / "volumes" / "kubernetes.io~nfs" / "data"
    assert ev["message"] == (
        'MountVolume.SetUp failed for volume "data" : mount failed: exit status 32\nMounting command: mount\n'
        f"Mounting arguments: -t nfs my.nfs.server.local:/exports {vol_dir}\n"
        "Output: mount.nfs: Failed to resolve server my.nfs.server.local: Name or service not known\n")
    p = get_pod(server, "nfs-pod")
    assert phase(p) == "Pending"
    assert cstatus(p)["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert agent.containers_of(uid) == []  # no sandbox, no container, no empty directory
    assert not vol_dir.exists()
    row = server.kubectl("get", "pod", "nfs-pod").stdout.splitlines()[1].split()
    assert row[:3] == ["nfs-pod", "0/1", "ContainerCreating"]
    t0 = time.monotonic()
    delete(server, "nfs-pod")
    assert time.monotonic() - t0 < 15
    wait_until(lambda: not leftovers(agent, uid), 10, 0.2, "nothing of the pod left")


def test_sources_without_plugin_and_missing_claims_are_pod_errors(node):
    server, agent = node
    create(server, pod_manifest("nosrc", agent.node_name, [_sleeper([{"name": "disk", "mountPath": "/d"},
                                                                     {"name": "claim", "mountPath": "/c"}])],
                                volumes=[{"name": "disk", "iscsi": {"targetPortal": "10.0.0.1:3260",
                                                                    "iqn": "iqn.2001-04.com.example:storage", "lun": 0}},
                                         {"name": "claim", "persistentVolumeClaim": {"claimName": "nope"}}]))
    ev = wait_until(lambda: (_failed_mounts(server, "nosrc") or [None])[0], 30, 0.3, "FailedMount")
    assert ev["message"] == (
        "Unable to attach or mount volumes: unmounted volumes=[claim disk], unattached volumes=[], failed to "
        "process volumes=[claim disk]: error processing PVC default/nope: failed to fetch PVC from API server: "
        'persistentvolumeclaims "nope" not found; failed to get Plugin from volumeSpec for volume "disk" '
        "err=no volume plugin matched")
    p = get_pod(server, "nosrc")
    assert phase(p) == "Pending" and cstatus(p)["state"]["waiting"]["reason"] == "ContainerCreating"
    delete(server, "nosrc")


def test_sub_paths_read_only_and_fs_group(node):
    server, agent = node
    env = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    server.kubectl("create", "configmap", "vol-cfg", "--from-literal=greeting=hello")
    mounts = [{"name": "scratch", "mountPath": "/scratch"},
              {"name": "scratch", "mountPath": "/mine", "subPathExpr": "$(POD_NAME)/logs"},
              {"name": "scratch", "mountPath": "/sub", "subPath": "a/b"},
              {"name": "scratch", "mountPath": "/ro", "subPath": "shared", "readOnly": True},
              {"name": "cfg", "mountPath": "/cfg"}]
    pod = create(server, pod_manifest("details", agent.node_name, [_sleeper(mounts, env=env)],
                                      securityContext={"fsGroup": 2345, "runAsUser": 1000},
                                      volumes=[{"name": "scratch", "emptyDir": {}},
                                               {"name": "cfg", "configMap": {"name": "vol-cfg"}}]))
    uid = pod["metadata"]["uid"]
    p = wait_until(lambda: (q := get_pod(server, "details")) is not None and running(q) and q, 60, 0.3, "Running")
    c = cid(p)
    host = agent.data_dir / "pods" / uid / "volumes" / "kubernetes.io~empty-dir" / "scratch"
    agent.exec(c, "sh", "-c", "echo one > /mine/f && echo two > /sub/g && echo three > /scratch/h")
    assert (host / "details" / "logs" / "f").read_text() == "one\n"  # $(POD_NAME) expanded
    assert (host / "a" / "b" / "g").read_text() == "two\n"
    # fsGroup: the volume and what the container writes there belong to the group
    out = agent.exec(c, "sh", "-c", "stat -c %g /scratch /scratch/h /cfg/greeting; id -G").split("\n")
    assert out[:3] == ["2345", "2345", "2345"] and "2345" in out[3].split()
    assert agent.exec(c, "cat", "/cfg/greeting") == "hello"
    for path in ("/ro/x", "/cfg/x"):  # a readOnly mount, and configMap volumes are always read-only
        r = agent.ctr("task", "exec", "--exec-id", "ro" + path.replace("/", "-"), c, "touch", path, check=False)
        assert r.returncode != 0 and "Read-only file system" in r.stderr
    delete(server, "details")
    server.kubectl("delete", "configmap", "vol-cfg")
    wait_until(lambda: not leftovers(agent, uid), 10, 0.2, "subPath binds unmounted, pod dir gone")


def test_sub_path_expr_without_value_is_create_container_config_error(node):
    server, agent = node
    create(server, pod_manifest("noexpr", agent.node_name, [_sleeper(
        [{"name": "s", "mountPath": "/s", "subPathExpr": "$(NOT_SET)"}])], volumes=[{"name": "s", "emptyDir": {}}]))
    p = wait_until(lambda: (q := get_pod(server, "noexpr")) is not None
                   and cstatus(q).get("state", {}).get("waiting", {}).get("reason") == "CreateContainerConfigError"
                   and q, 60, 0.3, "CreateContainerConfigError")
    assert cstatus(p)["state"]["waiting"]["message"] == "missing value for NOT_SET"
    delete(server, "noexpr")


def test_empty_dir_over_size_limit_is_evicted(node):
    from kubernetes import client, config, watch

    server, agent = node
    pod = create(server, pod_manifest("filler", agent.node_name, [{
        "name": "c", "image": BUSYBOX, "command": ["sh", "-c", "dd if=/dev/zero of=/cache/f bs=1M count=3; sleep 3600"],
        "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]}],
        volumes=[{"name": "cache", "emptyDir": {"sizeLimit": "1Mi"}}]))
    uid = pod["metadata"]["uid"]
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(server.kubeconfig), client_configuration=cfg)
    with client.ApiClient(cfg) as api:
        core = client.CoreV1Api(api)
        w = watch.Watch()
        seen = None
        for ev in w.stream(core.list_namespaced_pod, "default", field_selector="metadata.name=filler",
                           resource_version=pod["metadata"]["resourceVersion"], timeout_seconds=60):
            st = ev["object"].status
            if st.phase == "Failed":
                seen = ev["object"]
                w.stop()
        assert seen is not None, "no Failed pod within 60 s"
        msg = 'Usage of EmptyDir volume "cache" exceeds the limit "1Mi". '
        assert (seen.status.reason, seen.status.message) == ("Evicted", msg)
        cond = next(c for c in seen.status.conditions if c.type == "DisruptionTarget")
        assert (cond.status, cond.reason, cond.message) == ("True", "TerminationByKubelet", msg)
        evs = core.list_namespaced_event("default", field_selector="involvedObject.name=filler,reason=Evicted").items
        assert [(e.type, e.message) for e in evs] == [("Warning", msg)]
        assert seen.status.container_statuses[0].state.terminated is not None  # killed, not restarted
        assert agent.ctr("tasks", "ls", check=False).stdout.count(cid(get_pod(server, "filler"))) == 0
    delete(server, "filler")
    wait_until(lambda: not leftovers(agent, uid), 10, 0.2, "nothing of the pod left")


def _host_mounts() -> set[str]:
    return {ln.split()[1] for ln in open("/proc/self/mounts").read().splitlines()}


def test_mount_propagation_host_to_container_and_bidirectional(node):
    server, agent = node
    pod = create(server, pod_manifest("propagate", agent.node_name, [
        _sleeper([{"name": "shared", "mountPath": "/vol", "mountPropagation": "HostToContainer"}]),
        {"name": "maker", "image": BUSYBOX, "securityContext": {"privileged": True},
         "command": ["sh", "-c", "mkdir -p /vol/inner && mount -t tmpfs tmpfs /vol/inner && sleep 3600"],
         "volumeMounts": [{"name": "shared", "mountPath": "/vol", "mountPropagation": "Bidirectional"}]}],
        volumes=[{"name": "shared", "emptyDir": {}}]))
    uid = pod["metadata"]["uid"]
    p = wait_until(lambda: (q := get_pod(server, "propagate")) is not None and running(q) and q, 60, 0.3, "Running")
    d = agent.data_dir / "pods" / uid / "volumes" / "kubernetes.io~empty-dir" / "shared"
    # Bidirectional: the privileged container's mount reaches the host (and the other container)
    wait_until(lambda: str(d / "inner") in _host_mounts(), 20, 0.2, "the container's tmpfs on the host")
    # HostToContainer: a mount made on the host after the start reaches the container
    (d / "late").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(d / "late")], check=True)
    seen = agent.exec(cid(p, "c"), "sh", "-c", "grep -c -e ' /vol/late ' -e ' /vol/inner ' /proc/mounts")
    assert seen.strip() == "2"
    delete(server, "propagate")
    wait_until(lambda: not leftovers(agent, uid), 20, 0.2, "propagated mounts unmounted, pod dir gone")


def test_recursive_read_only_enabled_is_refused_by_this_runtime(node):
    server, agent = node
    create(server, pod_manifest("rro", agent.node_name, [_sleeper(
        [{"name": "s", "mountPath": "/s", "readOnly": True, "recursiveReadOnly": "Enabled"}])],
        volumes=[{"name": "s", "emptyDir": {}}]))
    p = wait_until(lambda: (q := get_pod(server, "rro")) is not None
                   and cstatus(q).get("state", {}).get("waiting", {}).get("reason") == "CreateContainerConfigError"
                   and q, 60, 0.3, "CreateContainerConfigError")
    assert cstatus(p)["state"]["waiting"]["message"] == (
        'failed to resolve recursive read-only mode: volume "s" requested recursive read-only mode, but it is not '
        "supported by the runtime")
    delete(server, "rro")
