"""The node agent end to end: real server, real containerd/runc/CNI, pods bound by spec.nodeName."""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.harness import wait_until
from tests.e2e.test_agent_support import (
    BUSYBOX,
    KUARD,
    bridge_ports,
    cid,
    create,
    cstatus,
    delete,
    full_cluster,
    get_pod,
    http_get,
    leftovers,
    netns_of,
    node_env,
    phase,
    pod_manifest,
    running,
    wait_pod,
)

pytestmark = pytest.mark.e2e
node = pytest.fixture(scope="module")(node_env)


def _events(server, name: str) -> list[tuple[str, str, str]]:
    p = server.kubectl("get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json")
    return [(e["type"], e["reason"], e["message"]) for e in json.loads(p.stdout)["items"]]


def test_kuard_lifecycle(node):
    server, agent = node
    netns_before, ports_before = netns_of(agent), bridge_ports()
    t0 = time.monotonic()
    server.kubectl("apply", "-f", "-", input=json.dumps(pod_manifest(
        "kuard", agent.node_name, [{"name": "kuard", "image": KUARD,
                                    "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}]}])))
    pod = wait_pod(server, "kuard", running, 60, "kuard Running")
    latency = time.monotonic() - t0
    print(f"kuard create->Running {latency:.2f}s")
    st = pod["status"]
    assert st["podIP"].startswith("10.244.") and st["podIPs"] == [{"ip": st["podIP"]}]
    assert st["hostIP"] and st["qosClass"] == "BestEffort" and st["startTime"]
    cs = cstatus(pod)
    assert cs["ready"] and cs["started"] and cs["restartCount"] == 0 and cs["containerID"].startswith("containerd://")
    assert cs["image"] == KUARD and cs["imageID"]
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds == {"PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True",
                     "ContainersReady": "True"}
    out = server.kubectl("get", "pod", "kuard").stdout
    assert "1/1" in out and "Running" in out
    code, body = http_get(f"http://{st['podIP']}:8080/env/api")
    assert code == 200 and json.loads(body)["env"]["HOSTNAME"] == "kuard"
    reasons = [r for _, r, _ in _events(server, "kuard")]
    for r in ("Pulled", "Created", "Started"):
        assert r in reasons
    assert ("Normal", "Created", "Created container: kuard") in _events(server, "kuard")
    uid = pod["metadata"]["uid"]
    assert agent.containers_of(uid)
    # delete: Terminating, then gone, with nothing left behind
    took = delete(server, "kuard")
    assert took < 10
    assert get_pod(server, "kuard") is None
    assert ("Normal", "Killing", "Stopping container kuard") in _events(server, "kuard")
    wait_until(lambda: not leftovers(agent, uid), 10, 0.2, "no leftovers")
    assert netns_of(agent) == netns_before
    assert bridge_ports() == ports_before


def test_two_containers_share_network_ipc_and_volume(node):
    server, agent = node
    vol = [{"name": "shared", "mountPath": "/shared"}]
    create(server, pod_manifest("duo", agent.node_name, [
        {"name": "web", "image": BUSYBOX, "command": ["httpd", "-f", "-p", "8080", "-h", "/shared"],
         "volumeMounts": vol},
        {"name": "side", "image": BUSYBOX, "command": ["sleep", "3600"], "volumeMounts": vol},
    ], volumes=[{"name": "shared", "emptyDir": {}}]))
    pod = wait_pod(server, "duo", running, 60, "duo Running")
    web, side = cid(pod, "web"), cid(pod, "side")
    assert agent.exec(web, "hostname").strip() == agent.exec(side, "hostname").strip() == "duo"
    ip = pod["status"]["podIP"]
    assert ip in agent.exec(web, "ip", "-4", "addr") and ip in agent.exec(side, "ip", "-4", "addr")
    agent.exec(side, "sh", "-c", "echo hello-from-side > /shared/index.html")
    assert "hello-from-side" in agent.exec(side, "wget", "-q", "-O", "-", "http://localhost:8080/index.html")
    assert "hello-from-side" in http_get(f"http://{ip}:8080/index.html")[1]
    key = agent.exec(web, "ipcmk", "-M", "1024").strip()
    shmid = key.split()[-1]
    assert shmid in agent.exec(side, "ipcs", "-m")
    mem = [agent.exec(c, "cat", "/proc/self/cgroup") for c in (web, side)]
    mem = [next(ln for ln in m.splitlines() if ":memory:" in ln) for m in mem]
    assert mem[0] != mem[1]
    uid = pod["metadata"]["uid"]
    host_cg = f"/sys/fs/cgroup/memory/kubepods/besteffort/pod{uid}"
    from pathlib import Path
    assert Path(host_cg).is_dir()
    delete(server, "duo")
    wait_until(lambda: not leftovers(agent, uid), 10, 0.2, "no leftovers")


def test_two_pods_are_isolated(node):
    server, agent = node
    for n in ("iso-a", "iso-b"):
        create(server, pod_manifest(n, agent.node_name, [{"name": "c", "image": BUSYBOX,
                                                          "command": ["sleep", "3600"]}]))
    a = wait_pod(server, "iso-a", running)
    b = wait_pod(server, "iso-b", running)
    assert a["status"]["podIP"] != b["status"]["podIP"]
    assert agent.exec(cid(a), "hostname").strip() == "iso-a"
    assert agent.exec(cid(b), "hostname").strip() == "iso-b"
    ps = agent.exec(cid(a), "ps")
    assert "sleep 3600" in ps and len([ln for ln in ps.splitlines() if "sleep" in ln]) == 1
    # pods reach each other over the bridge
    out = agent.exec(cid(a), "ping", "-c", "1", "-W", "2", b["status"]["podIP"])
    assert "1 packets received" in out
    for n in ("iso-a", "iso-b"):
        server.kubectl("delete", "pod", n, "--wait=false")
    wait_until(lambda: get_pod(server, "iso-a") is None and get_pod(server, "iso-b") is None, 20, 0.2)


def test_restart_policies(node):
    server, agent = node
    c = {"name": "c", "image": BUSYBOX}
    create(server, pod_manifest("rp-never-ok", agent.node_name, [dict(c, command=["true"])], restartPolicy="Never"))
    create(server, pod_manifest("rp-never-fail", agent.node_name, [dict(c, command=["sh", "-c", "echo bye >"
                                                                                   " /dev/termination-log; exit 3"])],
                                restartPolicy="Never"))
    create(server, pod_manifest("rp-onfailure", agent.node_name, [dict(c, command=["true"])],
                                restartPolicy="OnFailure"))
    create(server, pod_manifest("rp-always", agent.node_name, [dict(c, command=["false"])]))
    ok = wait_pod(server, "rp-never-ok", lambda p: phase(p) == "Succeeded", 30)
    t = cstatus(ok)["state"]["terminated"]
    assert t["reason"] == "Completed" and t["exitCode"] == 0
    conds = {x["type"]: (x["status"], x.get("reason")) for x in ok["status"]["conditions"]}
    assert conds["Ready"] == ("False", "PodCompleted")
    fail = wait_pod(server, "rp-never-fail", lambda p: phase(p) == "Failed", 30)
    t = cstatus(fail)["state"]["terminated"]
    assert t["reason"] == "Error" and t["exitCode"] == 3 and t["message"] == "bye\n"
    wait_pod(server, "rp-onfailure", lambda p: phase(p) == "Succeeded", 30)
    crash = wait_pod(server, "rp-always", lambda p: cstatus(p).get("state", {}).get("waiting", {}).get("reason")
                     == "CrashLoopBackOff" and cstatus(p)["restartCount"] >= 1, 40, "CrashLoopBackOff")
    assert phase(crash) == "Running"
    assert cstatus(crash)["lastState"]["terminated"]["exitCode"] == 1
    assert any(r == "BackOff" and m.startswith("Back-off restarting failed container c in pod rp-always_default(")
               for _, r, m in _events(server, "rp-always"))
    # finished pods keep their status
    assert phase(get_pod(server, "rp-never-ok")) == "Succeeded"
    for n in ("rp-never-ok", "rp-never-fail", "rp-onfailure", "rp-always"):
        server.kubectl("delete", "pod", n, "--wait=false")
    wait_until(lambda: all(get_pod(server, n) is None for n in ("rp-never-ok", "rp-never-fail", "rp-onfailure",
                                                                "rp-always")), 30, 0.2)


def test_oom_killed_and_restarts(node):
    server, agent = node
    res = {"limits": {"memory": "64Mi", "cpu": "500m"}}
    create(server, pod_manifest("oom", agent.node_name, [{
        "name": "hog", "image": BUSYBOX, "resources": res,
        "command": ["sh", "-c", "sleep 0.5; tail /dev/zero"]}]))
    pod = wait_pod(server, "oom", lambda p: (cstatus(p).get("lastState", {}).get("terminated", {}).get("reason")
                                             == "OOMKilled" or cstatus(p).get("state", {}).get("terminated", {})
                                             .get("reason") == "OOMKilled") and cstatus(p)["restartCount"] >= 1,
                   60, "OOMKilled")
    t = cstatus(pod)["lastState"].get("terminated") or cstatus(pod)["state"]["terminated"]
    assert t["exitCode"] == 137
    assert pod["status"]["qosClass"] == "Guaranteed"
    uid = pod["metadata"]["uid"]
    from pathlib import Path
    limit = Path(f"/sys/fs/cgroup/memory/kubepods/pod{uid}/memory.limit_in_bytes").read_text().strip()
    assert int(limit) == 64 * 1024 * 1024
    assert Path(f"/sys/fs/cgroup/cpu/kubepods/pod{uid}/cpu.cfs_quota_us").read_text().strip() == "50000"
    assert Path(f"/sys/fs/cgroup/cpu/kubepods/pod{uid}/cpu.shares").read_text().strip() == "512"
    server.kubectl("delete", "pod", "oom", "--wait=false")


def test_cpu_limit_half_a_core(node):
    server, agent = node
    create(server, pod_manifest("spin", agent.node_name, [{
        "name": "spin", "image": BUSYBOX, "resources": {"limits": {"cpu": "500m"}, "requests": {"cpu": "100m"}},
        "command": ["sh", "-c", "while :; do :; done"]}]))
    pod = wait_pod(server, "spin", running)
    uid = pod["metadata"]["uid"]
    from pathlib import Path
    usage = Path(f"/sys/fs/cgroup/cpuacct/kubepods/burstable/pod{uid}/cpuacct.usage")
    time.sleep(0.5)  # let the loop get going (measurement window, not synchronisation)
    u0, t0 = int(usage.read_text()), time.monotonic()
    time.sleep(2)
    u1, t1 = int(usage.read_text()), time.monotonic()
    share = (u1 - u0) / 1e9 / (t1 - t0)
    print(f"cpu share with limit 500m: {share:.2%}")
    assert 0.35 <= share <= 0.65
    assert Path(f"/sys/fs/cgroup/cpu/kubepods/burstable/pod{uid}/cpu.shares").read_text().strip() == "102"
    server.kubectl("delete", "pod", "spin", "--wait=false")


def test_cgroup_v1_host_no_swap_and_the_nodes_warning(node):
    """This host is cgroup v1 (hybrid): the container's memory+swap limit is its memory limit
    (the kubelet's NoSwap), and the Node carries the kubelet's CgroupV1 warning."""
    server, agent = node
    create(server, pod_manifest("noswap", agent.node_name, [{
        "name": "c", "image": BUSYBOX, "resources": {"limits": {"memory": "32Mi"}}, "command": ["sleep", "3600"]}]))
    pod = wait_pod(server, "noswap", running)
    from pathlib import Path
    d = Path(f"/sys/fs/cgroup/memory/kubepods/burstable/pod{pod['metadata']['uid']}/{cid(pod)}")
    assert int((d / "memory.limit_in_bytes").read_text()) == 32 << 20
    assert int((d / "memory.memsw.limit_in_bytes").read_text()) == 32 << 20
    warning = ("Warning", "CgroupV1", "cgroup v1 support is in maintenance mode, please migrate to cgroup v2")
    wait_until(lambda: warning in _events(server, agent.node_name), 10, 0.2, "the CgroupV1 event")
    server.kubectl("delete", "pod", "noswap", "--wait=false")


def test_grace_period(node):
    server, agent = node
    create(server, pod_manifest("stubborn", agent.node_name, [{
        "name": "c", "image": BUSYBOX, "command": ["sh", "-c", "trap '' TERM; while :; do sleep 1; done"]}],
        terminationGracePeriodSeconds=3))
    create(server, pod_manifest("polite", agent.node_name, [{
        "name": "c", "image": BUSYBOX, "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]}],
        terminationGracePeriodSeconds=30))
    wait_pod(server, "stubborn", running)
    wait_pod(server, "polite", running)
    took = delete(server, "stubborn")
    assert 3 <= took < 10, took
    took = delete(server, "polite")
    assert took < 3, took


def test_host_port(node):
    server, agent = node
    create(server, pod_manifest("hp", agent.node_name, [{
        "name": "kuard", "image": KUARD, "ports": [{"containerPort": 8080, "hostPort": 18080}]}]))
    pod = wait_pod(server, "hp", running)
    host_ip = pod["status"]["hostIP"]
    code, _ = wait_until(lambda: _try_get(f"http://{host_ip}:18080/healthy"), 10, 0.2, "hostPort answers")
    assert code == 200
    delete(server, "hp")


def _try_get(url):
    try:
        return http_get(url, 1)
    except OSError:
        return None


def test_image_pull_backoff(node):
    server, agent = node
    create(server, pod_manifest("missing", agent.node_name, [{"name": "c", "image": "127.0.0.1:1/nope:1.0"}]))
    pod = wait_pod(server, "missing", lambda p: cstatus(p).get("state", {}).get("waiting", {}).get("reason")
                   in ("ErrImagePull", "ImagePullBackOff"), 30)
    assert phase(pod) == "Pending"
    wait_pod(server, "missing", lambda p: cstatus(p).get("state", {}).get("waiting", {}).get("reason")
             == "ImagePullBackOff", 30, "ImagePullBackOff")
    reasons = {(t, r) for t, r, _ in _events(server, "missing")}
    assert ("Normal", "Pulling") in reasons and ("Warning", "Failed") in reasons
    delete(server, "missing")


def test_run_as_non_root_config_error(node):
    server, agent = node
    create(server, pod_manifest("nonroot", agent.node_name, [{
        "name": "c", "image": BUSYBOX, "command": ["sleep", "60"], "securityContext": {"runAsNonRoot": True}}]))
    pod = wait_pod(server, "nonroot", lambda p: cstatus(p).get("state", {}).get("waiting", {}).get("reason")
                   == "CreateContainerConfigError", 30)
    assert "container has runAsNonRoot and image will run as root" in cstatus(pod)["state"]["waiting"]["message"]
    delete(server, "nonroot")


def test_volumes_tmpfs_hostpath_and_failed_mount(node, tmp_path):
    server, agent = node
    hp = tmp_path / "made-by-agent"
    create(server, pod_manifest("vols", agent.node_name, [{
        "name": "c", "image": BUSYBOX, "command": ["sleep", "3600"],
        "volumeMounts": [{"name": "mem", "mountPath": "/mem"}, {"name": "host", "mountPath": "/host"},
                         {"name": "host", "mountPath": "/sub", "subPath": "a/b", "readOnly": True}]}],
        volumes=[{"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
                 {"name": "host", "hostPath": {"path": str(hp), "type": "DirectoryOrCreate"}}]))
    pod = wait_pod(server, "vols", running)
    c = cid(pod)
    assert "tmpfs" in agent.exec(c, "sh", "-c", "grep ' /mem ' /proc/mounts")
    agent.exec(c, "sh", "-c", "echo hi > /host/f")
    assert (hp / "f").read_text() == "hi\n" and (hp / "a" / "b").is_dir()
    assert "Read-only" in agent.ctr("task", "exec", "--exec-id", "ro1", c, "touch", "/sub/x", check=False).stderr
    uid = pod["metadata"]["uid"]
    delete(server, "vols")
    wait_until(lambda: not leftovers(agent, uid), 10, 0.2, "tmpfs unmounted, pod dir gone")
    create(server, pod_manifest("badvol", agent.node_name, [{
        "name": "c", "image": BUSYBOX, "command": ["sleep", "3600"], "volumeMounts": [{"name": "h", "mountPath": "/h"}]}],
        volumes=[{"name": "h", "hostPath": {"path": str(tmp_path / "absent"), "type": "Directory"}}]))
    wait_until(lambda: any(r == "FailedMount" for _, r, _ in _events(server, "badvol")), 20, 0.2, "FailedMount")
    assert phase(get_pod(server, "badvol")) == "Pending"
    delete(server, "badvol")


def test_agent_kill9_keeps_containers(node):
    server, agent = node
    create(server, pod_manifest("survivor", agent.node_name, [{"name": "c", "image": BUSYBOX,
                                                               "command": ["sleep", "3600"]}]))
    before = wait_pod(server, "survivor", running)
    agent.kill9()
    agent.start()
    time.sleep(0)
    # give the new agent a few relists, then compare
    after = wait_pod(server, "survivor", lambda p: running(p), 30)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        after = get_pod(server, "survivor")
        assert cid(after) == cid(before)
        assert cstatus(after)["restartCount"] == 0
        time.sleep(0.5)
    assert agent.exec(cid(after), "true") == ""
    delete(server, "survivor")


def test_container_gc_of_a_crash_looping_pod(node):
    """The container GC (kuberuntime_gc.go): a crash-looping pod keeps only the newest exited
    container per container name besides the current one, with its log; --previous still works."""
    server, agent = node
    create(server, pod_manifest("gc-crash", agent.node_name,
                                [{"name": "c", "image": BUSYBOX, "command": ["sh", "-c", "echo bye; exit 1"]}]))
    pod = wait_pod(server, "gc-crash", lambda p: cstatus(p).get("restartCount", 0) >= 2, 45, "2 restarts")
    uid = pod["metadata"]["uid"]
    log_dir = agent.data_dir / "pods" / f"default_gc-crash_{uid}" / "c"

    def app_containers() -> list[str]:
        return agent.ctr("containers", "ls", "-q", f'labels."io.kubernetes.pod.uid"=={uid},'
                         'labels."io.cri-containerd.kind"==container').stdout.split()

    # the sync that started attempt 2 removed attempt 0 (container and log); the periodic pass
    # may also have taken attempt 1 once attempt 2 exited
    wait_until(lambda: len(app_containers()) <= 2 and not (log_dir / "0.log").exists(), 10, 0.2, "GC")
    logs = sorted(p.name for p in log_dir.iterdir())
    assert "0.log" not in logs and set(logs) <= {"1.log", "2.log", "3.log"} and logs, logs
    sandboxes = agent.ctr("containers", "ls", "-q", f'labels."io.kubernetes.pod.uid"=={uid},'
                          'labels."io.cri-containerd.kind"==sandbox').stdout.split()
    assert len(sandboxes) == 1
    pod = get_pod(server, "gc-crash")
    assert cstatus(pod)["lastState"]["terminated"]["exitCode"] == 1
    delete(server, "gc-crash")
    assert leftovers(agent, uid) == []


def test_logs_previous_after_container_gc(tmp_path):
    """`kubectl logs --previous` follows lastState like the kubelet: in CrashLoopBackOff the
    newest exited container, which the GC keeps (this needs the agent's endpoint: a full server)."""
    with full_cluster(tmp_path / "data", "kl-e2e-gc") as (server, view):
        create(server, pod_manifest("gc-logs", "kl-e2e-gc", [{"name": "c", "image": BUSYBOX, "command": [
            "sh", "-c", "echo run $(ls /tmp | wc -l); touch /tmp/x; exit 1"]}]))
        pod = wait_pod(server, "gc-logs", lambda p: cstatus(p).get("restartCount", 0) >= 2
                       and "waiting" in cstatus(p).get("state", {}), 45, "2 restarts")
        uid = pod["metadata"]["uid"]
        log_dir = view.data_dir / "pods" / f"default_gc-logs_{uid}" / "c"
        wait_until(lambda: not (log_dir / "0.log").exists(), 10, 0.2, "GC of attempt 0")
        assert server.kubectl("logs", "gc-logs", "--previous").stdout == "run 0\n"
        assert server.kubectl("logs", "gc-logs").stdout == "run 0\n"
        delete(server, "gc-logs")
        assert leftovers(view, uid) == []
