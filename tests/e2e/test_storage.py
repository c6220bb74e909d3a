"""Storage for real: PersistentVolumes, claims and StorageClasses on `kubelite server` (API,
scheduler, agent, real containerd), driven by kubectl and the official client — the default
``local-path`` class, its provisioner's directories on the node, reclaim Delete and Retain,
the protection finalizers, refusals, and a kill -9 of the server while 20 claims provision."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.e2e.harness import ServerProcess, wait_until
from tests.e2e.test_agent_support import full_cluster

NODE = "kl-e2e-storage"
BUSYBOX = "kubelite.local/busybox:latest"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with full_cluster(tmp_path_factory.mktemp("storage") / "data", NODE) as c:
        yield c


def _get(server: ServerProcess, *args: str) -> dict:
    return json.loads(server.kubectl("get", *args, "-o", "json").stdout)


def _claim(name: str, storage_class: str | None = None, size: str = "64Mi") -> str:
    cls = f"\n  storageClassName: {json.dumps(storage_class)}" if storage_class is not None else ""
    return f"""
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: {name}}}
spec:
  accessModes: [ReadWriteOnce]{cls}
  resources: {{requests: {{storage: {size}}}}}
"""


def _pod(name: str, claims: list[str], command: str) -> str:
    vols = "".join(f"\n  - name: v{i}\n    persistentVolumeClaim: {{claimName: {c}}}" for i, c in enumerate(claims))
    mounts = "".join(f"\n    - {{name: v{i}, mountPath: /data{i}}}" for i in range(len(claims)))
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: ["sh", "-c", {json.dumps(command)}]
    volumeMounts:{mounts}
  volumes:{vols}
"""


def _phase(server: ServerProcess, kind: str, name: str) -> str:
    p = server.kubectl("get", kind, name, "-o", "jsonpath={.status.phase}", check=False)
    return p.stdout if p.returncode == 0 else f"<{p.stderr.strip()}>"


def _events(server: ServerProcess, name: str) -> list[tuple[str, str, str]]:
    items = _get(server, "events", "--field-selector", f"involvedObject.name={name}")["items"]
    return [(e["type"], e["reason"], e["message"]) for e in items]


def _pod_done(server: ServerProcess, name: str) -> bool:
    return _phase(server, "pod", name) == "Succeeded"


def _storage_dir(server: ServerProcess) -> Path:
    return server.data_dir / "storage"


def test_default_class_and_printing(cluster):
    server, _ = cluster
    lines = server.kubectl("get", "sc").stdout.splitlines()
    assert lines[0].split() == ["NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE", "ALLOWVOLUMEEXPANSION",
                                "AGE"]
    assert lines[1].split()[:6] == ["local-path", "(default)", "rancher.io/local-path", "Delete",
                                    "WaitForFirstConsumer", "false"]
    node = _get(server, "node", NODE)
    assert node["metadata"]["annotations"]["kubelite.io/local-path-dir"] == str(_storage_dir(server))
    server.kubectl("apply", "-f", "-", input=_claim("printed"))
    out = server.kubectl("get", "pv,pvc,sc").stdout
    assert server.kubectl("get", "pvc").stdout.splitlines()[0].split() == [
        "NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS", "MODES", "STORAGECLASS", "VOLUMEATTRIBUTESCLASS", "AGE"]
    assert "storageclass.storage.k8s.io/local-path (default)" in out
    pvc_row = next(line for line in out.splitlines() if line.startswith("persistentvolumeclaim/printed"))
    assert pvc_row.split()[:4] == ["persistentvolumeclaim/printed", "Pending", "local-path", "<unset>"]
    claim = _get(server, "pvc", "printed")
    assert claim["spec"]["storageClassName"] == "local-path"  # DefaultStorageClass admission
    assert claim["spec"]["volumeMode"] == "Filesystem"
    assert claim["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    wait_until(lambda: ("Normal", "WaitForFirstConsumer", "waiting for first consumer to be created before binding")
               in _events(server, "printed"), 30, 0.2, "WaitForFirstConsumer event")
    server.kubectl("delete", "pvc", "printed", "--timeout=30s")


def test_static_volume_binds_smallest_match_and_retains(cluster):
    server, _ = cluster
    server.kubectl("apply", "-f", "-", input="""
apiVersion: v1
kind: PersistentVolume
metadata: {name: static-big, labels: {tier: gold}}
spec:
  capacity: {storage: 2Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: manual
  hostPath: {path: /tmp/kubelite-e2e-static-big}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: static-small, labels: {tier: gold}}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce, ReadWriteMany]
  storageClassName: manual
  hostPath: {path: /tmp/kubelite-e2e-static-small}
""")
    pv = _get(server, "pv", "static-small")
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain" and pv["spec"]["volumeMode"] == "Filesystem"
    assert pv["metadata"]["finalizers"] == ["kubernetes.io/pv-protection"]
    wait_until(lambda: _phase(server, "pv", "static-small") == "Available", 30, 0.1, "PV Available")
    server.kubectl("apply", "-f", "-", input=_claim("static", "manual", "500Mi").replace(
        "spec:\n", "spec:\n  selector: {matchLabels: {tier: gold}}\n"))
    wait_until(lambda: _phase(server, "pvc", "static") == "Bound", 30, 0.1, "claim Bound")
    claim = _get(server, "pvc", "static")
    assert claim["spec"]["volumeName"] == "static-small"  # the smallest that fits
    assert claim["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] == "yes"
    assert claim["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"
    assert claim["status"]["capacity"] == {"storage": "1Gi"}
    rows = {line.split()[0]: line.split() for line in server.kubectl("get", "pv").stdout.splitlines()[1:]}
    assert rows["static-small"][:7] == ["static-small", "1Gi", "RWO,RWX", "Retain", "Bound", "default/static",
                                        "manual"]
    assert server.kubectl("get", "pv").stdout.split("\n")[0].split() == [
        "NAME", "CAPACITY", "ACCESS", "MODES", "RECLAIM", "POLICY", "STATUS", "CLAIM", "STORAGECLASS",
        "VOLUMEATTRIBUTESCLASS", "REASON", "AGE"]
    server.kubectl("delete", "pvc", "static", "--timeout=30s")
    wait_until(lambda: _phase(server, "pv", "static-small") == "Released", 30, 0.1, "PV Released")
    assert _phase(server, "pv", "static-big") == "Available"
    server.kubectl("delete", "pv", "static-small", "static-big", "--timeout=30s")


def test_local_path_keeps_files_and_reclaim_delete_removes_the_directory(cluster):
    server, _ = cluster
    server.kubectl("apply", "-f", "-", input=_claim("data"))
    write = "mkdir /data0/many && cd /data0/many && i=0; while [ $i -lt 10000 ]; do : > f$i; i=$((i+1)); done"
    server.kubectl("apply", "-f", "-", input=_pod("writer", ["data"], write))
    wait_until(lambda: _pod_done(server, "writer"), 180, 0.3, "writer Succeeded")
    claim = _get(server, "pvc", "data")
    uid = claim["metadata"]["uid"]
    assert claim["spec"]["volumeName"] == f"pvc-{uid}" and claim["status"]["phase"] == "Bound"
    assert claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == NODE
    pv = _get(server, "pv", f"pvc-{uid}")
    directory = Path(pv["spec"]["hostPath"]["path"])
    assert directory == _storage_dir(server) / f"pvc-{uid}_default_data"
    assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == [NODE]
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    events = _events(server, "data")
    assert ("Normal", "ProvisioningSucceeded", f"Successfully provisioned volume pvc-{uid}") in events
    assert ("Normal", "ExternalProvisioning",
            "Waiting for a volume to be created either by the external provisioner 'rancher.io/local-path' or "
            "manually by the system administrator. If volume creation is delayed, please verify that the "
            "provisioner is running and correctly registered.") in events
    server.kubectl("delete", "pod", "writer", "--timeout=60s")
    grow = server.kubectl("patch", "pvc", "data", "-p", '{"spec":{"resources":{"requests":{"storage":"128Mi"}}}}',
                          check=False)
    assert grow.returncode != 0 and ('persistentvolumeclaims "data" is forbidden: only dynamically provisioned pvc can '
                                     "be resized and the storageclass that provisions the pvc must support resize"
                                     in grow.stderr), grow.stderr
    server.kubectl("apply", "-f", "-", input=_pod("reader", ["data"], "ls /data0/many | wc -l"))
    wait_until(lambda: _pod_done(server, "reader"), 120, 0.3, "reader Succeeded")
    assert server.kubectl("logs", "reader").stdout.strip() == "10000"
    assert len(list((directory / "many").iterdir())) == 10000

    # in use: the claim waits on its protection finalizer until the pod is gone
    server.kubectl("apply", "-f", "-", input=_pod("holder", ["data"], "sleep 3600"))
    wait_until(lambda: _phase(server, "pod", "holder") == "Running", 120, 0.3, "holder Running")
    server.kubectl("delete", "pod", "reader", "--timeout=60s")
    server.kubectl("delete", "pvc", "data", "--wait=false")
    claim = _get(server, "pvc", "data")
    assert claim["metadata"].get("deletionTimestamp") and claim["metadata"]["finalizers"] == [
        "kubernetes.io/pvc-protection"]
    assert server.kubectl("get", "pvc", "data").stdout.splitlines()[1].split()[1] == "Terminating"
    assert directory.is_dir()
    server.kubectl("delete", "pod", "holder", "--timeout=60s")
    wait_until(lambda: "NotFound" in _phase(server, "pvc", "data"), 60, 0.2, "claim deleted")
    wait_until(lambda: "NotFound" in _phase(server, "pv", f"pvc-{uid}"), 120, 0.3, "volume deleted")
    assert not directory.exists()
    wait_until(lambda: server.kubectl("get", "pod", "-n", "kube-system", f"helper-pvc-{uid}",
                                      check=False).returncode != 0, 60, 0.3, "helper pod gone")


def test_retain_class_keeps_the_directory_and_the_volume_is_released(cluster):
    server, _ = cluster
    server.kubectl("apply", "-f", "-", input="""
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: keep}
provisioner: rancher.io/local-path
reclaimPolicy: Retain
volumeBindingMode: WaitForFirstConsumer
""")
    server.kubectl("apply", "-f", "-", input=_claim("kept", "keep"))
    server.kubectl("apply", "-f", "-", input=_pod("keeper", ["kept"], "echo hello > /data0/hi"))
    wait_until(lambda: _pod_done(server, "keeper"), 120, 0.3, "keeper Succeeded")
    claim = _get(server, "pvc", "kept")
    pv_name = claim["spec"]["volumeName"]
    directory = Path(_get(server, "pv", pv_name)["spec"]["hostPath"]["path"])
    server.kubectl("delete", "pod", "keeper", "--timeout=60s")
    # persistentVolumeClaim.readOnly: the claim's mounts are read-only
    server.kubectl("apply", "-f", "-", input=_pod("looker", ["kept"], "cat /data0/hi && touch /data0/new").replace(
        "persistentVolumeClaim: {claimName: kept}", "persistentVolumeClaim: {claimName: kept, readOnly: true}"))
    wait_until(lambda: _phase(server, "pod", "looker") == "Failed", 120, 0.3, "looker Failed")
    logs = server.kubectl("logs", "looker").stdout
    assert "hello" in logs and "Read-only file system" in logs, logs
    assert not (directory / "new").exists()
    server.kubectl("delete", "pod", "looker", "--timeout=60s")
    server.kubectl("delete", "pvc", "kept", "--timeout=60s")
    wait_until(lambda: _phase(server, "pv", pv_name) == "Released", 60, 0.2, "PV Released")
    assert (directory / "hi").read_text() == "hello\n"
    row = server.kubectl("get", "pv", pv_name).stdout.splitlines()[1].split()
    assert row[3:6] == ["Retain", "Released", "default/kept"]
    server.kubectl("delete", "pv", pv_name, "--timeout=30s")
    assert directory.is_dir()  # Retain: the data is the administrator's to remove
    import shutil

    shutil.rmtree(directory)
    server.kubectl("delete", "sc", "keep")


def test_refusals(cluster):
    server, _ = cluster
    server.kubectl("apply", "-f", "-", input=_claim("nowhere", "missing"))
    wait_until(lambda: ("Warning", "ProvisioningFailed", 'storageclass.storage.k8s.io "missing" not found')
               in _events(server, "nowhere"), 30, 0.2, "ProvisioningFailed event")
    assert _phase(server, "pvc", "nowhere") == "Pending"
    server.kubectl("delete", "pvc", "nowhere")
    server.kubectl("apply", "-f", "-", input=_claim("classless", ""))
    wait_until(lambda: ("Normal", "FailedBinding",
                        "no persistent volumes available for this claim and no storage class is set")
               in _events(server, "classless"), 30, 0.2, "FailedBinding event")
    # a pod whose claim binds immediately but is not bound cannot be scheduled
    server.kubectl("apply", "-f", "-", input=_pod("stuck", ["classless"], "true"))
    wait_until(lambda: any(r == "FailedScheduling" and "0/1 nodes are available: pod has unbound immediate "
                                                      "PersistentVolumeClaims." in m
                           for _, r, m in _events(server, "stuck")), 30, 0.2, "FailedScheduling")
    server.kubectl("delete", "pod", "stuck", "--timeout=30s")
    # a pod put on the node directly: the agent refuses to start it on an unbound claim
    server.kubectl("apply", "-f", "-", input=_pod("direct", ["classless"], "true").replace(
        "spec:\n", f"spec:\n  nodeName: {NODE}\n", 1))
    wait_until(lambda: any(r == "FailedMount" and "error processing PVC default/classless: PVC is not bound" in m
                           for _, r, m in _events(server, "direct")), 60, 0.3, "FailedMount")
    assert _phase(server, "pod", "direct") == "Pending"
    server.kubectl("delete", "pod", "direct", "--timeout=30s")
    server.kubectl("delete", "pvc", "classless")

    bad = server.kubectl("apply", "-f", "-", check=False, input="""
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: bad}
spec:
  accessModes: [ReadWriteSometimes, ReadWriteOncePod]
  selector: {matchExpressions: [{key: tier, operator: Near}]}
  resources: {requests: {storage: "0"}}
""")
    assert bad.returncode != 0
    err = bad.stderr
    for cause in ('spec.selector.matchExpressions[0].operator: Invalid value: "Near": not a valid selector operator',
                  'spec.accessModes: Unsupported value: "ReadWriteSometimes": supported values: "ReadOnlyMany", '
                  '"ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"',
                  'spec.resources[storage]: Invalid value: "0": must be greater than zero'):
        assert cause in err, err
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(config_file=str(server.kubeconfig), client_configuration=cfg)
    with client.ApiClient(cfg) as api:
        try:
            client.StorageV1Api(api).create_storage_class({
                "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "odd"},
                "provisioner": "", "reclaimPolicy": "Recycle", "volumeBindingMode": "Later"})
        except client.ApiException as exc:
            status = json.loads(exc.body)
        else:
            raise AssertionError("an invalid StorageClass was accepted")
    assert status["code"] == 422 and status["reason"] == "Invalid"
    assert {c["field"] for c in status["details"]["causes"]} == {"provisioner", "reclaimPolicy", "volumeBindingMode"}
    pv_bad = server.kubectl("apply", "-f", "-", check=False, input="""
apiVersion: v1
kind: PersistentVolume
metadata: {name: badpv}
spec:
  capacity: {storage: -1Gi}
  accessModes: []
  local: {path: /mnt/x}
""")
    assert pv_bad.returncode != 0
    for cause in ("spec.accessModes: Required value", 'spec.capacity[storage]: Invalid value: "-1Gi": must be greater '
                  "than zero", "spec.nodeAffinity: Required value: Local volume requires node affinity"):
        assert cause in pv_bad.stderr, pv_bad.stderr


def test_volume_node_affinity_conflict(cluster):
    server, _ = cluster
    server.kubectl("apply", "-f", "-", input="""
apiVersion: v1
kind: PersistentVolume
metadata: {name: elsewhere}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  claimRef: {namespace: default, name: pinned}
  hostPath: {path: /tmp/kubelite-e2e-elsewhere}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [another-node]}]
""")
    server.kubectl("apply", "-f", "-", input=_claim("pinned", ""))
    wait_until(lambda: _phase(server, "pvc", "pinned") == "Bound", 30, 0.1, "pre-bound claim Bound")
    server.kubectl("apply", "-f", "-", input=_pod("pinned-pod", ["pinned"], "true"))
    wait_until(lambda: any(r == "FailedScheduling" and "1 node(s) had volume node affinity conflict" in m
                           for _, r, m in _events(server, "pinned-pod")), 30, 0.2, "node affinity conflict")
    server.kubectl("delete", "pod", "pinned-pod", "--timeout=30s")
    server.kubectl("delete", "pvc", "pinned", "--timeout=30s")
    server.kubectl("delete", "pv", "elsewhere", "--timeout=30s")


def test_read_write_once_pod_claim_serves_one_pod(cluster):
    server, _ = cluster
    server.kubectl("apply", "-f", "-", input=_claim("solo").replace("ReadWriteOnce]", "ReadWriteOncePod]"))
    server.kubectl("apply", "-f", "-", input=_pod("solo-1", ["solo"], "sleep 3600"))
    wait_until(lambda: _phase(server, "pod", "solo-1") == "Running", 120, 0.3, "solo-1 Running")
    server.kubectl("apply", "-f", "-", input=_pod("solo-2", ["solo"], "true"))
    wait_until(lambda: any(r == "FailedScheduling" and "1 node has pod using PersistentVolumeClaim with the same name "
                                                      "and ReadWriteOncePod access mode" in m
                           for _, r, m in _events(server, "solo-2")), 30, 0.2, "ReadWriteOncePod conflict")
    server.kubectl("delete", "pod", "solo-1", "solo-2", "--timeout=60s")
    server.kubectl("delete", "pvc", "solo", "--timeout=60s")
    wait_until(lambda: not list(_storage_dir(server).iterdir()), 120, 0.5, "solo's directory removed")


def test_kill9_while_20_claims_provision(cluster):
    server, _ = cluster
    names = [f"burst-{i}" for i in range(20)]
    server.kubectl("apply", "-f", "-", input="\n---\n".join(_claim(n) for n in names))
    # (OnFailure: a container whose start the kill interrupts is started again, as it would be)
    server.kubectl("apply", "-f", "-", input="\n---\n".join(
        _pod(f"user-{i}", [n], "echo $HOSTNAME > /data0/who").replace("restartPolicy: Never", "restartPolicy: OnFailure")
        for i, n in enumerate(names)))
    # kill the server once provisioning is under way, not done
    wait_until(lambda: len(_get(server, "pv")["items"]) >= 3, 120, 0.05, "provisioning under way")
    t0 = time.monotonic()
    server.kill9()
    server.start(timeout=60)
    wait_until(lambda: all(_phase(server, "pod", f"user-{i}") == "Succeeded" for i in range(20)), 300, 1.0,
               "all 20 pods Succeeded after the restart")
    elapsed = time.monotonic() - t0
    claims = {c["metadata"]["name"]: c for c in _get(server, "pvc")["items"] if c["metadata"]["name"] in names}
    pvs = _get(server, "pv")["items"]
    assert all(claims[n]["status"]["phase"] == "Bound" for n in names)
    assert sorted(c["spec"]["volumeName"] for c in claims.values()) == sorted(
        f"pvc-{c['metadata']['uid']}" for c in claims.values())
    ours = [p for p in pvs if p["spec"].get("claimRef", {}).get("name") in names]
    assert len(ours) == 20 and len({p["spec"]["claimRef"]["name"] for p in ours}) == 20  # no double provisioning
    for i, n in enumerate(names):  # each pod wrote through its own claim's directory
        pv = next(p for p in ours if p["spec"]["claimRef"]["name"] == n)
        assert Path(pv["spec"]["hostPath"]["path"], "who").read_text().strip() == f"user-{i}"
    dirs = sorted(d.name for d in _storage_dir(server).iterdir())
    assert dirs == sorted(f"pvc-{c['metadata']['uid']}_default_{n}" for n, c in claims.items())  # no orphans
    print(f"20 claims provisioned, bound and used across a kill -9 in {elapsed:.1f}s")
    server.kubectl("delete", "pods", *[f"user-{i}" for i in range(20)], "--timeout=120s")
    server.kubectl("delete", "pvc", *names, "--timeout=120s")
    wait_until(lambda: not list(_storage_dir(server).iterdir()), 240, 0.5, "every directory removed")
    wait_until(lambda: not [p for p in _get(server, "pv")["items"]
                            if p["spec"].get("claimRef", {}).get("name") in names], 60, 0.5, "every PV deleted")
