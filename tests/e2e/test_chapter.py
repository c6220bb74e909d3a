"""The book chapter's flow against `kubelite server` as a user runs it (API + scheduler + agent)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.e2e.harness import KUBECTL, ROOT, ServerProcess, wait_until
from tests.e2e.test_agent_support import full_cluster, http_get, leftovers

NODE = "kl-e2e-chapter"
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with full_cluster(tmp_path_factory.mktemp("chapter") / "data", NODE) as c:
        yield c


def _watch(server: ServerProcess, *args: str) -> subprocess.Popen:
    env = dict(os.environ, KUBECONFIG=str(server.kubeconfig), HOME=str(server.data_dir.parent))
    return subprocess.Popen([KUBECTL, "get", "pods", "-w", "--output-watch-events", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _read_until(w: subprocess.Popen, pred, limit: int = 50) -> list[list[str]]:
    seen = []
    assert w.stdout is not None
    for _ in range(limit):
        line = w.stdout.readline()
        if not line:
            break
        cells = line.split()
        seen.append(cells)
        if pred(cells):
            return seen
    raise AssertionError(f"not seen; got {seen}")


def test_run_get_delete_leaves_nothing(cluster):
    server, node = cluster
    w = _watch(server, "--field-selector=metadata.name=kuard")
    try:
        out = server.kubectl("run", "kuard", "--image=kubelite.local/kuard-amd64:blue").stdout
        assert out.strip() == "pod/kuard created"
        rows = _read_until(w, lambda c: c[:5] == ["MODIFIED", "kuard", "1/1", "Running", "0"])
        statuses = [r[3] for r in rows if r[0] in ("ADDED", "MODIFIED")]
        assert statuses[0] == "Pending"
        assert "ContainerCreating" in statuses or "Pending" in statuses
        got = server.kubectl("get", "pods").stdout.splitlines()
        assert got[1].split()[:4] == ["kuard", "1/1", "Running", "0"]
        pod = json.loads(server.kubectl("get", "pod", "kuard", "-o", "json").stdout)
        ip = pod["status"]["podIP"]
        code, page = http_get(f"http://{ip}:8080/")
        assert code == 200 and "kuard" in page and ip in page
        uid = pod["metadata"]["uid"]
        out = server.kubectl("delete", "pods/kuard").stdout
        assert out.strip() == 'pod "kuard" deleted from default namespace'
        rows = _read_until(w, lambda c: c[:2] == ["DELETED", "kuard"])
        assert any(r[0] == "MODIFIED" and r[3] == "Terminating" for r in rows)
    finally:
        w.kill()
        w.wait()
    wait_until(lambda: not leftovers(node, uid), 30, 0.1, "nothing left on the host")


def test_apply_describe_events(cluster):
    server, _ = cluster
    server.kubectl("apply", "-f", str(EXAMPLES / "kuard-pod.yaml"))
    server.kubectl("wait", "--for=condition=Ready", "pod/kuard", "--timeout=60s")
    out = server.kubectl("describe", "pods", "kuard").stdout
    events = out[out.index("Events:"):]
    for reason in ("Scheduled", "Pulled", "Created", "Started"):
        assert f"Normal  {reason}" in events or f"Normal   {reason}" in events, events
    assert f"Successfully assigned default/kuard to {NODE}" in events
    assert "Status:           Running" in out
    server.kubectl("delete", "-f", str(EXAMPLES / "kuard-pod.yaml"))


def test_unschedulable_requests_stay_pending(cluster):
    server, _ = cluster
    big = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "huge"},
           "spec": {"containers": [{"name": "c", "image": "kubelite.local/kuard-amd64:blue",
                                    "resources": {"requests": {"cpu": "1000"}}}]}}
    server.kubectl("apply", "-f", "-", input=json.dumps(big))

    def failed_scheduling() -> str:
        p = server.kubectl("get", "events", "--field-selector", "involvedObject.name=huge,reason=FailedScheduling",
                           "-o", "json")
        items = json.loads(p.stdout)["items"]
        return items[0]["message"] if items else ""

    msg = wait_until(failed_scheduling, 30, 0.1, "FailedScheduling event")
    assert msg.startswith("0/1 nodes are available: 1 Insufficient cpu.")
    pod = json.loads(server.kubectl("get", "pod", "huge", "-o", "json").stdout)
    assert pod["status"]["phase"] == "Pending"
    cond = next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
    assert cond["status"] == "False" and cond["reason"] == "Unschedulable"
    server.kubectl("delete", "pod", "huge")


def test_server_kill9_keeps_containers(cluster, tmp_path):
    server, _ = cluster
    server.kubectl("run", "steady", "--image=kubelite.local/kuard-amd64:blue")
    server.kubectl("wait", "--for=condition=Ready", "pod/steady", "--timeout=60s")
    before = json.loads(server.kubectl("get", "pod", "steady", "-o", "json").stdout)["status"]["containerStatuses"][0]
    server.kill9()
    server.start()
    server.kubectl("wait", "--for=condition=Ready", "pod/steady", "--timeout=60s")
    after = json.loads(server.kubectl("get", "pod", "steady", "-o", "json").stdout)["status"]["containerStatuses"][0]
    assert after["containerID"] == before["containerID"]
    assert after["restartCount"] == before["restartCount"] == 0
    ip = json.loads(server.kubectl("get", "pod", "steady", "-o", "json").stdout)["status"]["podIP"]
    assert http_get(f"http://{ip}:8080/healthy") == (200, "ok")
    server.kubectl("delete", "pod", "steady")


def test_logs_exec_port_forward(cluster):
    server, _ = cluster
    server.kubectl("run", "talk", "--image=kubelite.local/kuard-amd64:blue")
    server.kubectl("wait", "--for=condition=Ready", "pod/talk", "--timeout=60s")
    out = server.kubectl("exec", "talk", "--", "sh", "-c", "echo hello from $(hostname)").stdout
    assert out.strip() == "hello from talk"
    logs = server.kubectl("logs", "talk").stdout
    assert logs  # kuard logs its start-up
    p = server.kubectl("exec", "talk", "--", "sh", "-c", "exit 3", check=False)
    assert p.returncode == 3
    env = dict(os.environ, KUBECONFIG=str(server.kubeconfig), HOME=str(server.data_dir.parent))
    from tests.e2e.harness import free_port

    port = free_port()
    pf = subprocess.Popen([KUBECTL, "port-forward", "pod/talk", f"{port}:8080"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert pf.stdout is not None
        assert pf.stdout.readline().startswith(f"Forwarding from 127.0.0.1:{port} -> 8080")
        assert http_get(f"http://127.0.0.1:{port}/healthy") == (200, "ok")
    finally:
        pf.kill()
        pf.wait()
    server.kubectl("delete", "pod", "talk")


def test_full_manifest_waits_for_its_nfs_volume(cluster):
    """kuard-pod-full.yaml mounts NFS from my.nfs.server.local, which does not resolve here: as
    on a kubelet, the pod stays ContainerCreating with FailedMount events naming the volume and
    the mount error, and nothing runs in place of the volume."""
    server, node = cluster
    server.kubectl("apply", "-f", str(EXAMPLES / "kuard-pod-full.yaml"))

    def failed_mount() -> dict | None:
        p = server.kubectl("get", "events", "--field-selector", "involvedObject.name=kuard,reason=FailedMount",
                           "-o", "json")
        items = json.loads(p.stdout)["items"]
        return items[0] if items and items[0]["count"] >= 2 else None

    ev = wait_until(failed_mount, 30, 0.2, "FailedMount events")
    msg = ev["message"]
    assert msg.startswith('MountVolume.SetUp failed for volume "kuard-data" : mount failed: exit status 32\n'
                          "Mounting command: mount\nMounting arguments: -t nfs my.nfs.server.local:/exports ")
    assert msg.endswith("/volumes/kubernetes.io~nfs/kuard-data\nOutput: mount.nfs: Failed to resolve server "
                        "my.nfs.server.local: Name or service not known\n")
    row = server.kubectl("get", "pods", "kuard").stdout.splitlines()[1].split()
    assert row[:4] == ["kuard", "0/1", "ContainerCreating", "0"]
    pod = json.loads(server.kubectl("get", "pod", "kuard", "-o", "json").stdout)
    uid = pod["metadata"]["uid"]
    assert pod["status"]["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert node.containers_of(uid) == []
    out = server.kubectl("describe", "pod", "kuard").stdout
    assert "Warning  FailedMount" in out and 'MountVolume.SetUp failed for volume "kuard-data"' in out
    server.kubectl("delete", "-f", str(EXAMPLES / "kuard-pod-full.yaml"), "--timeout=30s")
    wait_until(lambda: not leftovers(node, uid), 30, 0.1, "nothing left on the host")
