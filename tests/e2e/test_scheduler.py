"""The scheduler against a real server: nodes are created through the API (no agent yet), the
scheduler runs in the test's event loop, results are checked through the API and kubectl."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from kubelite.api import errors
from kubelite.client.api import Client
from kubelite.scheduler import Scheduler

pytestmark = pytest.mark.e2e

MSG_CPU = ("0/{n} nodes are available: {n} Insufficient cpu. no new claims to deallocate, preemption: "
           "0/{n} nodes are available: {n} Preemption is not helpful for scheduling.")


def _ns() -> str:
    return "sched-" + uuid.uuid4().hex[:8]


async def make_node(c: Client, name: str, cpu: str = "2", memory: str = "4Gi", pods: str = "110",
                    labels: dict | None = None, taints: list | None = None, ready: str = "True") -> dict:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": taints} if taints else {}}
    await c.create("v1", "nodes", node)
    status = {"status": {"capacity": {"cpu": cpu, "memory": memory, "pods": pods},
                         "allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
                         "conditions": [{"type": "Ready", "status": ready, "reason": "KubeletReady",
                                         "message": "kubelet is posting ready status",
                                         "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                                         "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}
    return await c.patch("v1", "nodes", name, status, patch_type="merge", sub="status")


def pod(name: str, cpu: str | None = None, **spec: Any) -> dict:
    c: dict[str, Any] = {"name": "c", "image": "kubelite.local/busybox:latest"}
    if cpu:
        c["resources"] = {"requests": {"cpu": cpu}}
    if "ports" in spec:
        c["ports"] = spec.pop("ports")
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [c], **spec}}


async def wait_for(fn, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await fn()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last={last!r}")


async def events_for(c: Client, ns: str, name: str) -> list[dict]:
    evs = await c.list("v1", "events", namespace=ns, fieldSelector=f"involvedObject.name={name}")
    return evs["items"]


class Env:
    def __init__(self, c: Client, sched: Scheduler, task: asyncio.Task) -> None:
        self.c, self.sched, self.task = c, sched, task


@pytest.fixture
async def env(server):
    async with Client.from_kubeconfig(server.kubeconfig) as c:
        # start from no nodes: each test makes its own
        for n in (await c.list("v1", "nodes"))["items"]:
            await c.delete("v1", "nodes", n["metadata"]["name"])
        sched = Scheduler(c)
        task = asyncio.create_task(sched.run())
        await asyncio.wait_for(sched.wait_synced(), 10)
        try:
            yield Env(c, sched, task)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            for n in (await c.list("v1", "nodes"))["items"]:
                await c.delete("v1", "nodes", n["metadata"]["name"])


async def _mkns(c: Client) -> str:
    ns = _ns()
    await c.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    return ns


async def _bound(c: Client, ns: str, name: str) -> str:
    p = await c.get("v1", "pods", name, namespace=ns)
    return p["spec"].get("nodeName", "")


async def test_binds_to_ready_node_with_scheduled_event(env, server):
    c = env.c
    await make_node(c, "n1")
    await make_node(c, "n-notready", ready="False")
    ns = await _mkns(c)
    await c.create("v1", "pods", pod("p1", cpu="500m"), namespace=ns)
    node = await wait_for(lambda: _bound(c, ns, "p1"), what="p1 bound")
    assert node == "n1"
    p = await c.get("v1", "pods", "p1", namespace=ns)
    cond = next(x for x in p["status"]["conditions"] if x["type"] == "PodScheduled")
    assert cond["status"] == "True" and cond["lastTransitionTime"]
    evs = await wait_for(lambda: events_for(c, ns, "p1"), what="Scheduled event")
    assert evs[0]["reason"] == "Scheduled" and evs[0]["type"] == "Normal"
    assert evs[0]["message"] == f"Successfully assigned {ns}/p1 to n1"
    assert evs[0]["source"]["component"] == "default-scheduler"
    out = await asyncio.to_thread(server.kubectl, "get", "pod", "p1", "-n", ns, "-o", "wide")
    assert "n1" in out.stdout.splitlines()[1]


async def test_unschedulable_then_bigger_node(env, server):
    c = env.c
    await make_node(c, "small")
    ns = await _mkns(c)
    await c.create("v1", "pods", pod("big", cpu="3"), namespace=ns)

    async def failed():
        p = await c.get("v1", "pods", "big", namespace=ns)
        conds = [x for x in p["status"].get("conditions") or [] if x["type"] == "PodScheduled"]
        return conds[0] if conds else None

    cond = await wait_for(failed, what="PodScheduled=False")
    assert cond["status"] == "False" and cond["reason"] == "Unschedulable"
    assert cond["message"] == MSG_CPU.format(n=1)
    evs = await events_for(c, ns, "big")
    assert [e["reason"] for e in evs] == ["FailedScheduling"] and evs[0]["type"] == "Warning"
    assert evs[0]["message"] == MSG_CPU.format(n=1)
    p = await c.get("v1", "pods", "big", namespace=ns)
    assert p["status"]["phase"] == "Pending" and not p["spec"].get("nodeName")
    out = await asyncio.to_thread(server.kubectl, "describe", "pod", "big", "-n", ns)
    assert "FailedScheduling" in out.stdout and "Insufficient cpu" in out.stdout
    # a bigger node: the pod is retried because the cluster changed
    await make_node(c, "large", cpu="4", memory="8Gi")
    assert await wait_for(lambda: _bound(c, ns, "big"), what="big bound") == "large"
    p = await c.get("v1", "pods", "big", namespace=ns)
    cond = next(x for x in p["status"]["conditions"] if x["type"] == "PodScheduled")
    assert cond["status"] == "True"


async def test_no_victims_message_when_node_is_full(env):
    c = env.c
    await make_node(c, "n1")
    ns = await _mkns(c)
    await c.create("v1", "pods", pod("a", cpu="1500m"), namespace=ns)
    await wait_for(lambda: _bound(c, ns, "a"), what="a bound")
    await c.create("v1", "pods", pod("b", cpu="1"), namespace=ns)

    async def msg():
        evs = await events_for(c, ns, "b")
        return evs[0]["message"] if evs else None

    assert await wait_for(msg, what="b FailedScheduling") == (
        "0/1 nodes are available: 1 Insufficient cpu. no new claims to deallocate, preemption: "
        "0/1 nodes are available: 1 No preemption victims found for incoming pod.")
    # deleting a: b gets the room
    await c.delete("v1", "pods", "a", namespace=ns, grace_period_seconds=0)
    assert await wait_for(lambda: _bound(c, ns, "b"), what="b bound") == "n1"


async def test_node_selector_taints_and_mixed_reasons(env):
    c = env.c
    await make_node(c, "plain")
    await make_node(c, "ssd", labels={"disk": "ssd"}, taints=[{"key": "dedicated", "value": "db",
                                                               "effect": "NoSchedule"}])
    ns = await _mkns(c)
    await c.create("v1", "pods", pod("sel", nodeSelector={"disk": "ssd"}), namespace=ns)

    async def msg(name):
        evs = await events_for(c, ns, name)
        return evs[0]["message"] if evs else None

    assert await wait_for(lambda: msg("sel"), what="sel fails") == (
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had "
        "untolerated taint(s). no new claims to deallocate, preemption: 0/2 nodes are available: "
        "2 Preemption is not helpful for scheduling.")
    await c.create("v1", "pods", pod("tol", nodeSelector={"disk": "ssd"}, tolerations=[
        {"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]), namespace=ns)
    assert await wait_for(lambda: _bound(c, ns, "tol"), what="tol bound") == "ssd"
    # an untainted pod without selector never lands on the tainted node
    await c.create("v1", "pods", pod("any"), namespace=ns)
    assert await wait_for(lambda: _bound(c, ns, "any"), what="any bound") == "plain"


async def test_prebound_and_other_scheduler_pods_are_skipped(env):
    c = env.c
    await make_node(c, "n1")
    ns = await _mkns(c)
    await c.create("v1", "pods", pod("pre", nodeName="elsewhere"), namespace=ns)
    await c.create("v1", "pods", pod("other", schedulerName="my-scheduler"), namespace=ns)
    await c.create("v1", "pods", pod("mine"), namespace=ns)
    assert await wait_for(lambda: _bound(c, ns, "mine"), what="mine bound") == "n1"
    await asyncio.sleep(0.3)
    assert await _bound(c, ns, "pre") == "elsewhere"
    assert await _bound(c, ns, "other") == ""
    assert await events_for(c, ns, "pre") == [] and await events_for(c, ns, "other") == []


async def test_host_port_conflict(env):
    c = env.c
    await make_node(c, "n1")
    ns = await _mkns(c)
    port = [{"containerPort": 80, "hostPort": 8080}]
    await c.create("v1", "pods", pod("w1", ports=port), namespace=ns)
    await wait_for(lambda: _bound(c, ns, "w1"), what="w1 bound")
    await c.create("v1", "pods", pod("w2", ports=port), namespace=ns)

    async def msg():
        evs = await events_for(c, ns, "w2")
        return evs[0]["message"] if evs else None

    assert await wait_for(msg, what="w2 fails") == (
        "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports. no new claims "
        "to deallocate, preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.")
    await make_node(c, "n2")
    assert await wait_for(lambda: _bound(c, ns, "w2"), what="w2 bound") == "n2"


async def test_110_pods_packed_quickly(env):
    c = env.c
    await make_node(c, "bulk", cpu="2")  # a fresh name: pods of other tests stay bound to theirs
    ns = await _mkns(c)
    t0 = time.monotonic()
    sem = asyncio.Semaphore(32)

    async def mk(i):
        async with sem:
            await c.create("v1", "pods", pod(f"p{i}", cpu="10m"), namespace=ns)

    await asyncio.gather(*(mk(i) for i in range(111)))
    created = time.monotonic()

    async def all_bound():
        items = (await c.list("v1", "pods", namespace=ns))["items"]
        return sum(1 for p in items if p["spec"].get("nodeName")) == 110 and len(items) == 111

    await wait_for(all_bound, timeout=30, what="110 bound")
    done = time.monotonic()
    print(f"\n110 pods: created in {created - t0:.2f}s, all bound {done - t0:.2f}s after the first create")
    assert done - t0 < 10
    items = (await c.list("v1", "pods", namespace=ns))["items"]
    left = [p for p in items if not p["spec"].get("nodeName")]
    assert len(left) == 1

    async def too_many():
        evs = await events_for(c, ns, left[0]["metadata"]["name"])
        return evs[0]["message"] if evs else None

    assert await wait_for(too_many, what="Too many pods") == (
        "0/1 nodes are available: 1 Too many pods. no new claims to deallocate, preemption: "
        "0/1 nodes are available: 1 No preemption victims found for incoming pod.")


async def test_binding_subresource(env, server):
    """The binding subresource on its own (no scheduler involved: schedulerName is not ours)."""
    c = env.c
    ns = await _mkns(c)
    await c.create("v1", "pods", pod("b1", schedulerName="nobody"), namespace=ns)
    path = f"/api/v1/namespaces/{ns}/pods/b1/binding"
    with pytest.raises(errors.StatusError) as ei:
        await c.request("POST", path, {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "other"},
                                       "target": {"name": "n1"}})
    assert ei.value.code == 400 and ei.value.message == "name in URL does not match name in Binding object"
    with pytest.raises(errors.StatusError) as ei:
        await c.request("POST", f"/api/v1/namespaces/{ns}/pods/nope/binding",
                        {"metadata": {"name": "nope"}, "target": {"name": "n1"}})
    assert ei.value.code == 404 and ei.value.message == 'pods "nope" not found'
    st = await c.request("POST", path, {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "b1"},
                                        "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}})
    assert st["kind"] == "Status" and st["status"] == "Success"
    p = await c.get("v1", "pods", "b1", namespace=ns)
    assert p["spec"]["nodeName"] == "n1"
    assert [x["type"] for x in p["status"]["conditions"]] == ["PodScheduled"]
    assert p["status"]["conditions"][0]["status"] == "True"
    with pytest.raises(errors.StatusError) as ei:
        await c.request("POST", path, {"metadata": {"name": "b1"}, "target": {"name": "n2"}})
    assert ei.value.code == 409
    assert ei.value.message == ('Operation cannot be fulfilled on pods/binding "b1": '
                                'pod b1 is already assigned to node "n1"')


async def test_required_anti_affinity_spreads_then_reports(env):
    """Pods with required anti-affinity land on distinct nodes; once every untainted node has
    one, the next pod's FailedScheduling names each node's reason as upstream does."""
    c = env.c
    for name in ("n1", "n2"):
        await make_node(c, name, labels={"kubernetes.io/hostname": name})
    await make_node(c, "n3", labels={"kubernetes.io/hostname": "n3"},
                    taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])
    ns = await _mkns(c)
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    for i in range(3):
        p = pod(f"web-{i}", affinity=anti)
        p["metadata"]["labels"] = {"app": "web"}
        await c.create("v1", "pods", p, namespace=ns)

    async def placed():
        hosts = [await _bound(c, ns, f"web-{i}") for i in range(2)]
        return hosts if all(hosts) else None

    hosts = await wait_for(placed, what="two web pods bound")
    assert sorted(hosts) == ["n1", "n2"]

    async def msg():
        evs = [e for e in await events_for(c, ns, "web-2") if e["reason"] == "FailedScheduling"]
        return evs[0]["message"] if evs else None

    assert await wait_for(msg, what="web-2 FailedScheduling") == (
        "0/3 nodes are available: 1 node(s) had untolerated taint(s), 2 node(s) didn't match pod "
        "anti-affinity rules. no new claims to deallocate, preemption: 0/3 nodes are available: "
        "1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod.")
    assert await _bound(c, ns, "web-2") == ""


async def test_topology_spread_do_not_schedule(env):
    """maxSkew 1 over hostnames: 6 replicas land 2/2/2 on 3 nodes, even when one node is much
    bigger (resources alone would pile them there)."""
    c = env.c
    await make_node(c, "big", cpu="64", memory="256Gi", labels={"kubernetes.io/hostname": "big"})
    for name in ("s1", "s2"):
        await make_node(c, name, labels={"kubernetes.io/hostname": name})
    ns = await _mkns(c)
    spread = [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
               "labelSelector": {"matchLabels": {"app": "spread"}}}]
    for i in range(6):
        p = pod(f"r-{i}", cpu="100m", topologySpreadConstraints=spread)
        p["metadata"]["labels"] = {"app": "spread"}
        await c.create("v1", "pods", p, namespace=ns)

    async def placed():
        hosts = [await _bound(c, ns, f"r-{i}") for i in range(6)]
        return hosts if all(hosts) else None

    hosts = await wait_for(placed, what="six replicas bound")
    assert sorted(hosts.count(n) for n in ("big", "s1", "s2")) == [2, 2, 2], hosts
