"""Unit tests of the agent's pure parts: back-off, $(VAR) expansion, cgroup arithmetic,
getPhase, CNI config, runAsNonRoot."""

from __future__ import annotations

import pytest

from kubelite.agent import cni
from kubelite.agent.backoff import Backoff
from kubelite.agent.cgroups import (
    milli_cpu_to_quota,
    milli_cpu_to_shares,
    pod_cgroup_name,
    pod_resource_config,
)
from kubelite.agent.crispec import ContainerConfigError, verify_run_as_non_root
from kubelite.agent.podenv import expand, make_environment
from kubelite.agent.status import get_phase, pending_init_containers
from kubelite.kinds.podutil import container_should_restart


def test_backoff_doubles_caps_and_resets():
    now = [1000.0]
    b = Backoff(10, 300, clock=lambda: now[0])
    assert [b.next("k") for _ in range(7)] == [10, 20, 40, 80, 160, 300, 300]
    assert b.is_in_backoff_since("k", now[0] - 100)
    assert not b.is_in_backoff_since("k", now[0] - 301)
    now[0] += 601  # 10 minutes without a step: start over
    assert b.next("k") == 10


def test_expand_like_upstream():
    env = {"A": "x", "B": "y"}
    assert expand("$(A)-$(B)", env) == "x-y"
    assert expand("$$(A)", env) == "$(A)"
    assert expand("$(C)", env) == "$(C)"
    assert expand("$(A", env) == "$(A"
    assert expand("a$b", env) == "a$b"


async def test_environment_order_and_refs():
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "x"}},
           "spec": {"nodeName": "n1", "serviceAccountName": "default", "containers": []}}
    c = {"name": "c", "resources": {"limits": {"memory": "64Mi"}},
         "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
         "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                 {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                 {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                 {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                 {"name": "GREETING", "value": "hi $(POD) $(CM_k)"}]}

    async def fetch(kind, ns, name):
        return {"data": {"k": "v"}} if kind == "configmaps" and name == "cm" else None

    env = dict(await make_environment(pod, c, fetch, "192.0.2.2", ["10.244.0.5"]))
    assert env == {"CM_k": "v", "POD": "p", "IP": "10.244.0.5", "APP": "x", "MEM": "64", "GREETING": "hi p v"}


def test_cgroup_math():
    assert milli_cpu_to_shares(0) == 2 and milli_cpu_to_shares(1) == 2 and milli_cpu_to_shares(1000) == 1024
    assert milli_cpu_to_quota(500) == 50000 and milli_cpu_to_quota(1) == 1000
    g = {"metadata": {"uid": "u"}, "spec": {"containers": [
        {"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}}]}}
    assert pod_cgroup_name(g) == "kubepods/podu"
    cfg = pod_resource_config(g)
    assert (cfg.cpu_shares, cfg.cpu_quota, cfg.memory_limit) == (1024, 100000, 1 << 30)
    b = {"metadata": {"uid": "u"}, "spec": {"containers": [
        {"name": "a", "resources": {"requests": {"cpu": "250m"}}}, {"name": "b"}]}}
    assert pod_cgroup_name(b) == "kubepods/burstable/podu"
    cfg = pod_resource_config(b)
    assert (cfg.cpu_shares, cfg.cpu_quota, cfg.memory_limit) == (256, None, None)
    be = {"metadata": {"uid": "u"}, "spec": {"containers": [{"name": "a"}]}}
    assert pod_cgroup_name(be) == "kubepods/besteffort/podu" and pod_resource_config(be).cpu_shares == 2


def _st(state, last=None):
    return {"state": state, "lastState": last or {}}


@pytest.mark.parametrize("policy,states,expect", [
    ("Always", [_st({"running": {}})], "Running"),
    ("Always", [_st({"waiting": {"reason": "ContainerCreating"}})], "Pending"),
    ("Always", [_st({"waiting": {"reason": "CrashLoopBackOff"}}, {"terminated": {"exitCode": 1}})], "Running"),
    ("Never", [_st({"terminated": {"exitCode": 0}})], "Succeeded"),
    ("Never", [_st({"terminated": {"exitCode": 2}})], "Failed"),
    ("OnFailure", [_st({"terminated": {"exitCode": 0}})], "Succeeded"),
    ("OnFailure", [_st({"terminated": {"exitCode": 1}})], "Running"),
])
def test_get_phase(policy, states, expect):
    assert get_phase({"spec": {"restartPolicy": policy}}, [], states, False) == expect


_RULE42 = {"restartPolicy": "Never",
           "restartPolicyRules": [{"action": "Restart", "exitCodes": {"operator": "In", "values": [42]}}]}


@pytest.mark.parametrize("policy,container,exit_code,expect", [
    ("Never", _RULE42, 42, "Running"),  # the rule restarts it
    ("Never", _RULE42, 1, "Failed"),
    ("Always", {"restartPolicy": "Never"}, 0, "Succeeded"),  # the container's policy wins
    ("Never", {"restartPolicy": "OnFailure"}, 3, "Running"),
    ("Always", {"restartPolicy": "OnFailure"}, 0, "Succeeded"),
])
def test_get_phase_with_container_restart_rules(policy, container, exit_code, expect):
    pod = {"spec": {"restartPolicy": policy, "containers": [{"name": "a", **container}]}}
    st = {"name": "a", **_st({"terminated": {"exitCode": exit_code}})}
    assert get_phase(pod, [], [st], False) == expect
    assert container_should_restart(pod["spec"]["containers"][0], pod["spec"], exit_code) == (expect == "Running")


def test_get_phase_with_sidecars_and_init_restart_policy():
    spec = {"restartPolicy": "Always", "containers": [{"name": "app"}],
            "initContainers": [{"name": "side", "restartPolicy": "Always"}, {"name": "once", "restartPolicy": "Never"}]}
    waiting = {"name": "app", **_st({"waiting": {"reason": "PodInitializing"}})}
    side_running = {"name": "side", "started": True, **_st({"running": {}})}
    # a started sidecar no longer holds the init sequence; a failed init container with its
    # own restartPolicy Never fails the pod although the pod's policy is Always
    once_failed = {"name": "once", **_st({"terminated": {"exitCode": 1}})}
    assert get_phase({"spec": spec}, [side_running, once_failed], [waiting], False) == "Failed"
    once_done = {"name": "once", **_st({"terminated": {"exitCode": 0}})}
    assert pending_init_containers(spec, [side_running, once_done], [waiting]) == []
    side_starting = {"name": "side", "started": False, **_st({"running": {}})}
    assert pending_init_containers(spec, [side_starting, once_done], [waiting]) == ["side"]
    assert get_phase({"spec": spec}, [side_starting, once_done], [waiting], False) == "Pending"
    running = {"name": "app", **_st({"running": {}})}
    assert get_phase({"spec": spec}, [side_running, once_done], [running], False) == "Running"


def test_conflist_and_cidr():
    cidr = "10.244.3.0/24"
    conf = cni.conflist(cidr, "/d")
    bridge = conf["plugins"][0]
    assert bridge["bridge"] == "kubelite0" and bridge["isGateway"] and bridge["ipMasq"] and bridge["hairpinMode"]
    assert bridge["ipam"]["ranges"][0][0]["subnet"] == cidr and bridge["ipam"]["dataDir"] == "/d/cni/ipam"
    assert conf["plugins"][1] == {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}


def test_run_as_non_root():
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "spec": {}}
    c = {"name": "c", "securityContext": {"runAsNonRoot": True}}
    with pytest.raises(ContainerConfigError, match="container has runAsNonRoot and image will run as root"):
        verify_run_as_non_root(pod, c, 0, "")
    verify_run_as_non_root(pod, c, 1000, "")
    verify_run_as_non_root(pod, dict(c, securityContext={"runAsNonRoot": True, "runAsUser": 1}), 0, "")


# --------------------------------------------------------------------------- status feedback loop
def _two_sandbox_runtime():
    """A pod whose first sandbox died: its containers exited there and run again, restarted,
    in a second sandbox."""
    from kubelite.agent.crispec import ContainerState, PodRuntime, SandboxState

    t = 1_700_000_000.0
    old_sb = SandboxState("s1", False, 0, t)
    new_sb = SandboxState("s2", True, 1, t + 10, ip="10.244.0.7", ips=["10.244.0.7"])
    cs = [ContainerState("k1", "kuard", "exited", 0, "s1", t + 1, t + 1.5, t + 9, 137),
          ContainerState("c1", "sidecar", "exited", 0, "s1", t + 1, t + 1.6, t + 9, 137),
          ContainerState("k2", "kuard", "running", 1, "s2", t + 11, t + 11.5, restart_count=1),
          ContainerState("c2", "sidecar", "running", 1, "s2", t + 11, t + 11.6, restart_count=1)]
    cs.sort(key=lambda c: (c.created_at, c.attempt, c.id), reverse=True)
    return PodRuntime("u", [new_sb, old_sb], cs)


def test_status_is_stable_across_resyncs_and_lagging_echoes(monkeypatch):
    """Two syncs between a status write and its watch echo used to copy different
    startTime/transition times back from the lagging API copy, so every echo produced a
    different status and another write (about every 150 ms, until the pod was deleted)."""
    import copy

    from kubelite.agent import status as status_mod
    from kubelite.agent.status import StatusManager, generate_status

    clock = ["2026-01-01T00:00:28Z"]
    monkeypatch.setattr(status_mod, "now_rfc3339", lambda: clock[0])
    pod = {"metadata": {"name": "p", "namespace": "default", "uid": "u"},
           "spec": {"restartPolicy": "Always", "containers": [{"name": "kuard", "image": "k"},
                                                              {"name": "sidecar", "image": "b"}]},
           "status": {"phase": "Pending", "conditions": [
               {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:01Z"}]}}
    pr = _two_sandbox_runtime()
    mgr = StatusManager(client=None)  # not started: nothing is sent, writes stay pending
    writes = []

    def sync(api_pod):
        st = generate_status(api_pod, pr, {}, "192.0.2.2", previous=mgr.latest("u"))
        before = mgr.latest("u")
        mgr.set_status(api_pod, st)
        if mgr.latest("u") is not before:
            writes.append(st)
        return st

    stale = copy.deepcopy(pod)
    first = sync(stale)
    # the write is sent; its echo has not arrived yet when the next syncs run a second later
    mgr._last["u"] = mgr._pending.pop("u")[2]
    clock[0] = "2026-01-01T00:00:29Z"
    assert sync(stale) == first
    # the echo arrives (as the API stores it), then an older one, then the newest again
    echo = dict(copy.deepcopy(pod), status=copy.deepcopy(first))
    for api_pod in (echo, stale, echo):
        clock[0] = "2026-01-01T00:00:31Z"
        assert sync(api_pod) == first
    assert len(writes) == 1
    assert first["startTime"] == "2026-01-01T00:00:28Z" and first["phase"] == "Running"
    kuard = first["containerStatuses"][0]
    assert kuard["containerID"] == "containerd://k2" and kuard["restartCount"] == 1
    assert kuard["lastState"]["terminated"]["containerID"] == "containerd://k1"
    assert [c["type"] for c in first["conditions"]][-1] == "PodScheduled"


async def test_status_written_again_when_someone_else_changed_what_the_kubelet_owns():
    """needsReconcile: the node lifecycle controller set Ready=False while the node was
    unreachable; the agent's next sync writes its own Ready=True again. A lagging echo of
    its own write, or a change to a condition others own, is no reason to."""
    import copy

    from kubelite.agent.status import StatusManager

    class Client:
        def __init__(self) -> None:
            self.rv = 1
            self.patches: list[dict] = []

        async def patch(self, *args, **kw):
            self.patches.append(args[3])
            self.rv += 1
            return {"metadata": {"resourceVersion": str(self.rv)}}

    def pod(rv: int, ready: str, *extra: dict) -> dict:
        return {"metadata": {"name": "p", "namespace": "default", "uid": "u", "resourceVersion": str(rv)},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": ready}, *extra]}}

    ours = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    client = Client()
    mgr = StatusManager(client)
    mgr.start()
    try:
        mgr.set_status(pod(1, "False"), copy.deepcopy(ours))
        await mgr.flush()
        assert len(client.patches) == 1 and mgr._written_rv["u"] == 2
        for seen in (pod(1, "False"), pod(2, "True")):  # the lagging echo, then the echo
            mgr.set_status(seen, copy.deepcopy(ours))
            await mgr.flush()
        assert len(client.patches) == 1
        target = {"type": "DisruptionTarget", "status": "True"}
        mgr.set_status(pod(3, "True", target), copy.deepcopy(ours))  # others' condition: not ours to restore
        await mgr.flush()
        assert len(client.patches) == 1
        mgr.set_status(pod(4, "False"), copy.deepcopy(ours))  # MarkPodsNotReady, by another writer
        await mgr.flush()
        assert len(client.patches) == 2 and client.patches[1]["status"] == ours
        mgr.set_status(pod(5, "True"), copy.deepcopy(ours))
        await mgr.flush()
        assert len(client.patches) == 2
    finally:
        await mgr.stop()


def test_runtime_listing_order_is_total():
    """Containers created in the same instant come back in the same order every relist."""
    from kubelite.agent.crispec import ContainerState, PodRuntime, _sort

    a = ContainerState("a", "x", "exited", 0, "s", 5.0)
    b = ContainerState("b", "x", "exited", 0, "s", 5.0)
    p1, p2 = PodRuntime("u", [], [a, b]), PodRuntime("u", [], [b, a])
    _sort(p1)
    _sort(p2)
    assert [c.id for c in p1.containers] == [c.id for c in p2.containers]


def test_status_echo_does_not_wake_the_worker():
    from kubelite.agent.worker import _needs_sync

    pod = {"metadata": {"name": "p", "uid": "u", "resourceVersion": "1"}, "spec": {"containers": []},
           "status": {"phase": "Pending"}}
    echo = {**pod, "metadata": {**pod["metadata"], "resourceVersion": "2"}, "status": {"phase": "Running"}}
    assert not _needs_sync(pod, echo)
    assert _needs_sync(echo, {**echo, "status": {"phase": "Failed"}})
    assert _needs_sync(echo, {**echo, "metadata": {**echo["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}})


async def test_runtime_limiter_bounds_and_serves_earliest_pod_first():
    import asyncio

    from kubelite.agent.runtime import RuntimeLimiter

    lim = RuntimeLimiter(2)
    running, peak, order = 0, 0, []
    gate = asyncio.Event()

    async def op(prio, tag):
        nonlocal running, peak
        async with lim.slot(prio):
            running += 1
            peak = max(peak, running)
            order.append(tag)
            await gate.wait()
            running -= 1

    tasks = [asyncio.create_task(op(p, f"pod{p}")) for p in (0, 1, 5, 4, 3)]
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(op(2, "gone"))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(*tasks)
    assert peak == 2 and order == ["pod0", "pod1", "pod3", "pod4", "pod5"] and lim.busy == 0


# --------------------------------------------------------------------------- container GC
def _ct(cid: str, name: str, state: str, attempt: int, sandbox: str = "s1", log_path: str = ""):
    from kubelite.agent.crispec import ContainerState

    return ContainerState(cid, name, state, attempt, sandbox, created_at=100.0 + attempt, log_path=log_path)


def test_container_gc_keeps_newest_exited_per_container_name():
    from kubelite.agent.containergc import select_containers

    pods = {
        "u1": [_ct("a0", "a", "exited", 0), _ct("a1", "a", "exited", 1), _ct("a2", "a", "exited", 2),
               _ct("a3", "a", "running", 3),
               _ct("b0", "b", "exited", 0), _ct("b1", "b", "created", 1),
               _ct("c0", "c", "running", 0)],
        "u2": [_ct("x0", "a", "exited", 0), _ct("x1", "a", "exited", 1), _ct("x2", "a", "unknown", 2)],
    }
    got = sorted((uid, c.id) for uid, c in select_containers(pods, now=1000.0))
    # running, created and unknown containers stay; so does the newest exited per (pod, name)
    assert got == [("u1", "a0"), ("u1", "a1"), ("u2", "x0")]
    # nothing exited twice: nothing to do
    assert select_containers({"u": [_ct("a0", "a", "exited", 0), _ct("a1", "a", "running", 1)]}, 1000.0) == []


def test_container_gc_policy_min_age_and_limits():
    from kubelite.agent.containergc import GCPolicy, select_containers

    pods = {"u": [_ct(f"a{i}", "a", "exited", i) for i in range(4)] + [_ct(f"b{i}", "b", "exited", i)
                                                                       for i in range(2)]}
    # MinAge: containers created less than min_age ago are not evictable yet (a2: 102, a3: 103);
    # of the rest the newest per name stays (a1, b1)
    got = {c.id for _, c in select_containers(pods, now=110.0, policy=GCPolicy(min_age=8.5))}
    assert got == {"a0", "b0"}
    # MaxPerPodContainer 2
    got = {c.id for _, c in select_containers(pods, now=1000.0, policy=GCPolicy(max_per_pod_container=2))}
    assert got == {"a0", "a1"}
    # MaxContainers 1 on top of the per-container limit: the oldest of what is left (b1) goes too
    got = {c.id for _, c in select_containers(pods, now=1000.0, policy=GCPolicy(max_containers=1))}
    assert got == {"a0", "a1", "a2", "b0", "b1"}


def test_sandbox_gc_keeps_newest_and_used_ones():
    from kubelite.agent.containergc import select_sandboxes
    from kubelite.agent.crispec import PodRuntime, SandboxState

    s0 = SandboxState("s0", False, 0, 10.0)
    s1 = SandboxState("s1", False, 1, 20.0)
    s2 = SandboxState("s2", False, 2, 30.0)
    s3 = SandboxState("s3", True, 3, 40.0)
    pr = PodRuntime("u", [s3, s2, s1, s0], [_ct("c0", "c", "exited", 0, sandbox="s1"),
                                           _ct("c1", "c", "running", 1, sandbox="s3")])
    assert [s.id for s in select_sandboxes(pr)] == ["s2", "s0"]
    # once its container is removed, s1 goes too
    assert [s.id for s in select_sandboxes(pr, removed=["c0"])] == ["s2", "s1", "s0"]
    # the newest sandbox stays even when dead and empty (the pod still exists)
    dead = PodRuntime("u", [s2, s1], [])
    assert [s.id for s in select_sandboxes(dead)] == ["s1"]
    assert [s.id for s in select_sandboxes(dead, pod_exists=False)] == ["s2", "s1"]


def test_container_gc_log_files(tmp_path):
    from kubelite.agent.containergc import container_log_path, remove_log_files

    d = tmp_path / "default_p_uid" / "c"
    d.mkdir(parents=True)
    for f in ("0.log", "0.log.20260101-000000", "0.log.20260101-000001.gz", "1.log", "10.log"):
        (d / f).write_text("x")
    c = _ct("c0", "c", "exited", 0, log_path=str(d / "0.log"))
    p = container_log_path(c, tmp_path / "default_p_uid")
    assert p == d / "0.log"
    assert len(remove_log_files(p)) == 3
    assert sorted(f.name for f in d.iterdir()) == ["1.log", "10.log"]
    assert container_log_path(_ct("c1", "c", "exited", 1, log_path="c/1.log"), tmp_path / "default_p_uid") \
        == d / "1.log"
    # never outside the pod's log directory
    assert container_log_path(_ct("x", "c", "exited", 1, log_path="/etc/passwd"), tmp_path / "default_p_uid") is None
    assert container_log_path(_ct("x", "c", "exited", 1, log_path="../../x.log"), tmp_path / "default_p_uid") is None
    assert container_log_path(_ct("x", "c", "exited", 1), tmp_path) is None


async def test_runtime_garbage_collect_calls_cri_and_removes_logs(tmp_path):
    from types import SimpleNamespace

    from kubelite.agent.crispec import PodRuntime, SandboxState
    from kubelite.agent.runtime import RuntimeManager

    calls: list[tuple[str, str]] = []

    class FakeRT:
        async def RemoveContainer(self, req, timeout=None):
            calls.append(("container", req.container_id))

        async def RemovePodSandbox(self, req, timeout=None):
            calls.append(("sandbox", req.pod_sandbox_id))

    pod = {"metadata": {"name": "p", "namespace": "default", "uid": "u"}, "spec": {}}
    log_dir = tmp_path / "default_p_u"
    (log_dir / "c").mkdir(parents=True)
    for i in range(3):
        (log_dir / "c" / f"{i}.log").write_text(str(i))
    volumes = SimpleNamespace(log_dir=lambda p: log_dir)
    rm = RuntimeManager(SimpleNamespace(runtime=FakeRT()), None, None, volumes, None, None)
    pr = PodRuntime("u", [SandboxState("s1", True, 1, 20.0), SandboxState("s0", False, 0, 10.0)],
                    [_ct("c2", "c", "running", 2, log_path=str(log_dir / "c/2.log")),
                     _ct("c1", "c", "exited", 1, log_path=str(log_dir / "c/1.log")),
                     _ct("c0", "c", "exited", 0, sandbox="s0", log_path=str(log_dir / "c/0.log"))])
    removed = await rm.garbage_collect(pod, pr, now=1000.0)
    assert removed == ["c0", "s0"] and calls == [("container", "c0"), ("sandbox", "s0")]
    assert sorted(f.name for f in (log_dir / "c").iterdir()) == ["1.log", "2.log"]
    # another pod's runtime state is never touched
    assert await rm.garbage_collect(pod, PodRuntime("other", [], pr.containers), now=1000.0) == []
