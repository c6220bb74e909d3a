"""The fake CRI runtime of hollow nodes: the calls the agent makes, answered in memory."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from cri_api.v1 import api_pb2 as pb

from kubelite.agent import crispec
from kubelite.agent.fakeruntime import FOREVER, FakeCRI, FakeLatencies, run_time
from kubelite.agent.status import generate_status


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def pod(name: str = "p", command: list[str] | None = None, host_network: bool = False, **spec: object) -> dict:
    c: dict = {"name": "c", "image": "busybox"}
    if command is not None:
        c["command"] = command
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
            "spec": {"containers": [c], "hostNetwork": host_network, **spec}, "status": {}}


async def with_cidr(cri: FakeCRI, cidr: str = "10.244.3.0/24") -> None:
    await cri.runtime.UpdateRuntimeConfig(pb.UpdateRuntimeConfigRequest(
        runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr=cidr))))


async def run_pod(cri: FakeCRI, p: dict) -> tuple[str, str]:
    sb = await cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=crispec.sandbox_config(p, 0, "", "")))
    c = p["spec"]["containers"][0]
    cfg = crispec.container_config(p, c, image_ref=c["image"], restart_count=0, command=list(c.get("command") or []),
                                   args=[], env=[], mounts=[], memory_capacity=1 << 30)
    created = await cri.runtime.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=sb.pod_sandbox_id,
                                                                          config=cfg))
    await cri.runtime.StartContainer(pb.StartContainerRequest(container_id=created.container_id))
    return sb.pod_sandbox_id, created.container_id


def test_run_time_follows_the_command():
    assert run_time([]) == (FOREVER, 0)
    assert run_time(["true"]) == (0.0, 0)
    assert run_time(["/bin/false"]) == (0.0, 1)
    assert run_time(["sh", "-c", "exit 3"]) == (0.0, 3)
    assert run_time(["sleep", "5"]) == (5.0, 0)
    assert run_time(["nginx", "-g", "daemon off;"]) == (FOREVER, 0)


def test_latencies_parse():
    lat = FakeLatencies.parse("sandbox_run=0.5, container-start=0.25")
    assert (lat.sandbox_run, lat.container_start, lat.container_create) == (0.5, 0.25, 0.0)
    with pytest.raises(ValueError, match="unknown fake runtime latency 'bogus'"):
        FakeLatencies.parse("bogus=1")


async def test_sandbox_needs_a_pod_cidr_then_gets_ips_from_it():
    cri = FakeCRI()
    st = await cri.status()
    assert {c.type: c.status for c in st.status.conditions} == {"RuntimeReady": True, "NetworkReady": False}
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=crispec.sandbox_config(pod(), 0, "", "")))
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await with_cidr(cri)
    assert (await cri.network_ready())[0]
    ips = []
    for i in range(3):
        sb_id, _ = await run_pod(cri, pod(f"p{i}"))
        st = await cri.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sb_id))
        ips.append(st.status.network.ip)
    assert ips == ["10.244.3.2", "10.244.3.3", "10.244.3.4"]  # .1 is the bridge's


async def test_host_network_pods_get_the_node_ip():
    cri = FakeCRI(node_ip="127.1.0.9")
    await with_cidr(cri)
    sb_id, _ = await run_pod(cri, pod(host_network=True))
    st = await cri.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sb_id))
    assert st.status.network.ip == "127.1.0.9"


async def test_addresses_are_reused_after_removal_and_run_out_cleanly():
    cri = FakeCRI()
    await with_cidr(cri, "10.244.3.0/30")  # hosts .1 (bridge) and .2
    sb_id, _ = await run_pod(cri, pod("a"))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await run_pod(cri, pod("b"))
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "no IP addresses available in range set: 10.244.3.0/30" in (exc.value.details() or "")
    await cri.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sb_id))
    await cri.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sb_id))
    sb2, _ = await run_pod(cri, pod("b"))
    st = await cri.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sb2))
    assert st.status.network.ip == "10.244.3.2"


async def test_containers_exit_per_command_on_the_clock():
    clock = Clock()
    cri = FakeCRI(clock=clock)
    await with_cidr(cri)
    _, forever = await run_pod(cri, pod("f", ["nginx"]))
    _, fails = await run_pod(cri, pod("x", ["false"]))
    _, sleeps = await run_pod(cri, pod("s", ["sleep", "30"]))

    async def state(cid: str) -> tuple[int, int]:
        st = (await cri.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=cid))).status
        return st.state, st.exit_code

    assert await state(forever) == (pb.CONTAINER_RUNNING, 0)
    assert await state(fails) == (pb.CONTAINER_EXITED, 1)
    assert await state(sleeps) == (pb.CONTAINER_RUNNING, 0)
    assert cri.runtime.next_exit() == clock.t + 30
    clock.t += 30
    assert await state(sleeps) == (pb.CONTAINER_EXITED, 0)
    assert cri.runtime.next_exit() == FOREVER
    await cri.runtime.StopContainer(pb.StopContainerRequest(container_id=forever, timeout=30))
    assert await state(forever) == (pb.CONTAINER_EXITED, 143)
    # listing filters as containerd's do
    running = await cri.runtime.ListContainers(pb.ListContainersRequest(
        filter=pb.ContainerFilter(state=pb.ContainerStateValue(state=pb.CONTAINER_RUNNING))))
    assert running.containers == []
    by_pod = await cri.runtime.ListContainers(pb.ListContainersRequest(
        filter=pb.ContainerFilter(label_selector={crispec.POD_UID: "uid-x"})))
    assert [c.id for c in by_pod.containers] == [fails]


async def test_status_generated_from_the_fake_runtime_is_a_running_pod():
    cri = FakeCRI()
    await with_cidr(cri)
    p = pod("web", ["nginx"])
    await run_pod(cri, p)
    pr = (await crispec.list_pod_runtime(cri.runtime, "uid-web"))["uid-web"]
    st = generate_status(p, pr, {}, "127.1.0.1")
    assert st["phase"] == "Running"
    assert st["podIP"] == "10.244.3.2"
    assert st["containerStatuses"][0]["state"].keys() == {"running"}
    assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "True"


async def test_streaming_is_refused_and_exec_sync_answers():
    cri = FakeCRI()
    await with_cidr(cri)
    _, cid = await run_pod(cri, pod("e", ["nginx"]))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await cri.runtime.Exec(pb.ExecRequest(container_id=cid, cmd=["sh"]))
    assert exc.value.code() == grpc.StatusCode.UNIMPLEMENTED
    got = await cri.runtime.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["echo", "hi"]))
    assert (got.stdout, got.exit_code) == (b"hi\n", 0)
    got = await cri.runtime.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["false"]))
    assert got.exit_code == 1


async def test_latencies_are_taken():
    cri = FakeCRI(FakeLatencies(sandbox_run=0.05, container_start=0.05))
    await with_cidr(cri)
    t0 = time.monotonic()
    await run_pod(cri, pod())
    assert time.monotonic() - t0 >= 0.1
    assert cri.runtime.calls == {"RunPodSandbox": 1, "CreateContainer": 1, "StartContainer": 1}


async def test_images_pull_once():
    cri = FakeCRI()
    spec = pb.ImageSpec(image="busybox:latest")
    assert not (await cri.image.ImageStatus(pb.ImageStatusRequest(image=spec))).HasField("image")
    ref = (await cri.image.PullImage(pb.PullImageRequest(image=spec))).image_ref
    assert (await cri.image.ImageStatus(pb.ImageStatusRequest(image=spec))).image.id == ref
    await asyncio.sleep(0)
