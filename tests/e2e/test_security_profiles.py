"""Security profiles on a real node: seccomp enforced by containerd/runc (RuntimeDefault,
Unconfined, a Localhost profile from the agent's seccomp root, a missing one), AppArmor
refused by the agent's admission on this host without AppArmor, and hostUsers: false refused
at sandbox creation (containerd 1.6 has no user namespaces)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.e2e.harness import wait_until
from tests.e2e.test_agent_support import (
    BUSYBOX,
    cid,
    create,
    cstatus,
    node_env,
    phase,
    pod_manifest,
    running,
    wait_pod,
)

pytestmark = pytest.mark.e2e
node = pytest.fixture(scope="module")(node_env)

SLEEP = ["sleep", "3600"]
DENY_MKDIR = {"defaultAction": "SCMP_ACT_ALLOW",
              "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}


def _events(server, name: str) -> list[tuple[str, str, str]]:
    p = server.kubectl("get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json")
    return [(e["type"], e["reason"], e["message"]) for e in json.loads(p.stdout)["items"]]


def _seccomp_mode(agent, container_id: str) -> str:
    status = agent.exec(container_id, "cat", "/proc/self/status")
    return next(ln.split()[1] for ln in status.splitlines() if ln.startswith("Seccomp:"))


def test_security_profiles(node):
    server, agent = node
    (agent.data_dir / "seccomp" / "profiles").mkdir(parents=True, exist_ok=True)
    (agent.data_dir / "seccomp" / "profiles" / "deny-mkdir.json").write_text(json.dumps(DENY_MKDIR))
    create(server, pod_manifest("sec", agent.node_name, [
        {"name": "default", "image": BUSYBOX, "command": SLEEP},
        {"name": "unconfined", "image": BUSYBOX, "command": SLEEP,
         "securityContext": {"seccompProfile": {"type": "Unconfined"}, "appArmorProfile": {"type": "Unconfined"}}},
        {"name": "local", "image": BUSYBOX, "command": SLEEP,
         "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/deny-mkdir.json"}}},
    ], securityContext={"seccompProfile": {"type": "RuntimeDefault"}}))
    create(server, pod_manifest("sec-missing", agent.node_name, [
        {"name": "c", "image": BUSYBOX, "command": SLEEP,
         "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "nope.json"}}}]))
    create(server, pod_manifest("aa-default", agent.node_name, [
        {"name": "c", "image": BUSYBOX, "command": SLEEP}],
        securityContext={"appArmorProfile": {"type": "RuntimeDefault"}}))
    aa_annotated = pod_manifest("aa-annotated", agent.node_name, [{"name": "c", "image": BUSYBOX, "command": SLEEP}])
    aa_annotated["metadata"]["annotations"] = {"container.apparmor.security.beta.kubernetes.io/c": "localhost/x"}
    create(server, aa_annotated)
    create(server, pod_manifest("userns", agent.node_name, [{"name": "c", "image": BUSYBOX, "command": SLEEP}],
                                hostUsers=False))

    pod = wait_pod(server, "sec", running, 60, "sec Running")
    assert _seccomp_mode(agent, cid(pod, "default")) == "2"  # filter mode: RuntimeDefault from the pod
    assert _seccomp_mode(agent, cid(pod, "unconfined")) == "0"  # the container's Unconfined wins
    local = cid(pod, "local")
    assert _seccomp_mode(agent, local) == "2"
    p = agent.ctr("task", "exec", "--exec-id", "mk", local, "mkdir", "/tmp/blocked", check=False)
    assert p.returncode != 0 and "Operation not permitted" in p.stderr + p.stdout
    agent.exec(cid(pod, "default"), "mkdir", "/tmp/allowed")  # RuntimeDefault allows mkdir

    missing = wait_pod(server, "sec-missing",
                       lambda p: cstatus(p).get("state", {}).get("waiting", {}).get("reason") == "CreateContainerError",
                       30, "CreateContainerError")
    msg = cstatus(missing)["state"]["waiting"]["message"]
    assert "seccomp" in msg and "nope.json" in msg, msg
    assert any(t == "Warning" and r == "Failed" and "nope.json" in m for t, r, m in _events(server, "sec-missing"))

    want = "Cannot enforce AppArmor: AppArmor is not enabled on the host"
    for name in ("aa-default", "aa-annotated"):
        aa = wait_pod(server, name, lambda p: phase(p) == "Failed", 30, f"{name} rejected")
        assert aa["status"]["reason"] == "AppArmor"
        assert aa["status"]["message"] == f"Pod was rejected: {want}"
        assert ("Warning", "AppArmor", want) in _events(server, name)
        assert not agent.containers_of(aa["metadata"]["uid"])

    async def handlers() -> list:
        from kubelite.agent.cri import connect
        async with await connect(agent.socket) as c:
            return list((await c.status()).runtime_handlers)
    assert not any(h.features.user_namespaces for h in asyncio.run(handlers()))  # containerd 1.6: none reported
    want_sb = 'Failed to create pod sandbox: RuntimeClass handler "" does not support user namespaces'
    wait_until(lambda: ("Warning", "FailedCreatePodSandBox", want_sb) in _events(server, "userns"), 30, 0.3,
               "userns refused")
    assert phase(wait_pod(server, "userns", lambda p: True)) == "Pending"
    assert not agent.containers_of(wait_pod(server, "userns", lambda p: True)["metadata"]["uid"])


def test_runtime_class(node):
    server, agent = node
    for name, handler in (("rc-runc", "runc"), ("rc-bogus", "bogus")):
        server.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": name}, "handler": handler,
            "overhead": {"podFixed": {"cpu": "100m", "memory": "32Mi"}}}))
    out = server.kubectl("get", "runtimeclass").stdout
    assert "HANDLER" in out and "rc-runc" in out and "bogus" in out
    p = server.kubectl("create", "-f", "-", check=False, input=json.dumps(pod_manifest(
        "rc-missing", agent.node_name, [{"name": "c", "image": BUSYBOX, "command": SLEEP}], runtimeClassName="nope")))
    assert p.returncode != 0
    assert 'pods "rc-missing" is forbidden: pod rejected: RuntimeClass "nope" not found' in p.stderr
    limits = {"cpu": "200m", "memory": "64Mi"}
    created = create(server, pod_manifest("rc-pod", agent.node_name, [
        {"name": "c", "image": BUSYBOX, "command": SLEEP, "resources": {"limits": limits, "requests": limits}}],
        runtimeClassName="rc-runc"))
    assert created["spec"]["overhead"] == {"cpu": "100m", "memory": "32Mi"}
    create(server, pod_manifest("rc-bad-handler", agent.node_name,
                                [{"name": "c", "image": BUSYBOX, "command": SLEEP}], runtimeClassName="rc-bogus"))
    pod = wait_pod(server, "rc-pod", running, 60, "rc-pod Running")
    # the pod cgroup holds the containers' limits plus the overhead (Guaranteed: kubepods/pod<uid>)
    mem = Path(f"/sys/fs/cgroup/memory/kubepods/pod{pod['metadata']['uid']}/memory.limit_in_bytes")
    assert int(mem.read_text()) == (64 + 32) * 1024 * 1024

    def refused() -> bool:
        return ("Warning", "FailedCreatePodSandBox", 'Failed to create pod sandbox: rpc error: code = Unknown desc = '
                'failed to get sandbox runtime: no runtime for "bogus" is configured') in _events(server, "rc-bad-handler")
    wait_until(refused, 30, 0.3, "unknown handler refused")
    assert phase(wait_pod(server, "rc-bad-handler", lambda p: True)) == "Pending"


def test_scheduler_counts_the_runtime_class_overhead(tmp_path):
    """A pod whose own request fits but whose RuntimeClass overhead does not stays unscheduled."""
    from kubelite.api.quantity import parse_quantity
    from tests.e2e.test_agent_support import full_cluster

    node_name = "kl-e2e-overhead"
    with full_cluster(tmp_path / "data", node_name) as (server, _):
        alloc = json.loads(server.kubectl("get", "node", node_name, "-o", "json").stdout)["status"]["allocatable"]
        too_much = str(int(parse_quantity(alloc["cpu"])) + 1)
        for name, cpu in (("heavy", too_much), ("light", "10m")):
            server.kubectl("apply", "-f", "-", input=json.dumps({
                "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": name}, "handler": "runc",
                "overhead": {"podFixed": {"cpu": cpu}}}))
        for name in ("heavy", "light"):
            server.kubectl("create", "-f", "-", input=json.dumps({
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"oh-{name}"},
                "spec": {"runtimeClassName": name, "terminationGracePeriodSeconds": 1, "containers": [
                    {"name": "c", "image": BUSYBOX, "command": SLEEP, "resources": {"requests": {"cpu": "10m"}}}]}}))
        wait_pod(server, "oh-light", running, 60, "oh-light Running")

        def unschedulable() -> bool:
            return any(r == "FailedScheduling" and "Insufficient cpu" in m for _, r, m in _events(server, "oh-heavy"))
        wait_until(unschedulable, 30, 0.3, "oh-heavy FailedScheduling")
        assert not (wait_pod(server, "oh-heavy", lambda p: True)["spec"].get("nodeName"))
