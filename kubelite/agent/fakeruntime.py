"""A fake CRI runtime for hollow nodes (kubemark's fake remote runtime): in-process,
deterministic, with configurable latencies, answering the same ``runtime.v1`` calls the agent
makes on containerd's CRI (``cri.runtime.X(request)`` / ``cri.image.X(request)``) with the same
protobuf messages. It touches no cgroup, network namespace, mount or iptables rule: pod IPs
come from the node's pod CIDR (``UpdateRuntimeConfig``, as the kubelet hands it to the runtime)
in memory, and container processes are a clock.

    cri = FakeCRI(FakeLatencies(sandbox_run=0.05), node_ip="10.0.0.7")
    await cri.runtime.UpdateRuntimeConfig(pb.UpdateRuntimeConfigRequest(
        runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr="10.244.3.0/24"))))
    sb = await cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=...))

What a container does follows from its command (image entrypoints are unknown): ``true``,
``echo …``, ``exit N`` / ``sh -c "exit N"``, ``false`` and ``sleep N`` exit (0, 0, N, 1, 0 after
N seconds); anything else, an empty command included, runs until stopped. ``ExecSync`` answers
``true``/``false``/``echo``/``exit N`` and exits 0 otherwise (exec probes pass); the streaming
calls (Exec, Attach, PortForward) and stats are refused with UNIMPLEMENTED, as a runtime
without them does.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from cri_api.v1 import api_pb2 as pb

RUNTIME_NAME = "fake"
RUNTIME_VERSION = "0.1.0"
FOREVER = float("inf")


@dataclass(frozen=True)
class FakeLatencies:
    """Seconds each call takes (the kubelet sees these as runtime operation latencies)."""

    sandbox_run: float = 0.0
    container_create: float = 0.0
    container_start: float = 0.0
    container_stop: float = 0.0
    image_pull: float = 0.0

    @classmethod
    def parse(cls, spec: str) -> FakeLatencies:
        """``sandbox_run=0.1,container_start=0.05`` (seconds; unknown names are a ValueError)."""
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, _, value = part.partition("=")
            name = name.strip().replace("-", "_")
            if name not in cls.__dataclass_fields__:
                raise ValueError(f"unknown fake runtime latency {name!r} "
                                 f"(one of {', '.join(cls.__dataclass_fields__)})")
            values[name] = float(value)
        return cls(**values)


def _rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


def run_time(argv: list[str]) -> tuple[float, int]:
    """(seconds it runs, exit code) of a container process started with ``argv``."""
    if not argv:
        return FOREVER, 0
    if argv[0].rsplit("/", 1)[-1] in ("sh", "bash", "ash") and len(argv) >= 3 and argv[1] == "-c":
        try:
            argv = shlex.split(argv[2])
        except ValueError:
            return FOREVER, 0
        if not argv:
            return 0.0, 0
    prog = argv[0].rsplit("/", 1)[-1]
    if prog == "true" or prog == "echo":
        return 0.0, 0
    if prog == "false":
        return 0.0, 1
    if prog == "exit":
        try:
            return 0.0, int(argv[1]) & 0xFF if len(argv) > 1 else 0
        except ValueError:
            return 0.0, 2
    if prog == "sleep" and len(argv) == 2:
        try:
            return max(0.0, float(argv[1].rstrip("s"))), 0
        except ValueError:
            return FOREVER, 0
    return FOREVER, 0


@dataclass
class _Sandbox:
    id: str
    config: pb.PodSandboxConfig
    created_at: int
    ip: str
    ready: bool = True


@dataclass
class _Container:
    id: str
    sandbox_id: str
    config: pb.ContainerConfig
    created_at: int
    log_path: str
    started: float = 0.0  # monotonic start time, 0: created only
    started_at: int = 0
    stopped: float = 0.0  # monotonic time a stop ended it
    stop_code: int = 0
    runs_for: float = FOREVER
    exit_code: int = 0
    labels: dict[str, str] = field(default_factory=dict)


class FakeRuntimeService:
    """The RuntimeService half of the fake CRI (method names and messages as the stub's)."""

    def __init__(self, latencies: FakeLatencies, node_ip: str = "127.0.0.1",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.latencies = latencies
        self.node_ip = node_ip
        self.clock = clock
        self.pod_cidr = ""
        self._ips: set[str] = set()
        self._ip_iter: Any = iter(())
        self._ids = itertools.count(1)
        self.sandboxes: dict[str, _Sandbox] = {}
        self.containers: dict[str, _Container] = {}
        self.calls: dict[str, int] = {}

    # ------------------------------------------------------------------ helpers
    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def _new_id(self) -> str:
        return f"{next(self._ids):064x}"

    @staticmethod
    async def _take(seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)

    def _allocate_ip(self) -> str:
        if not self.pod_cidr:
            raise _rpc_error(grpc.StatusCode.FAILED_PRECONDITION,
                             "failed to setup network for sandbox: no pod CIDR (UpdateRuntimeConfig) yet")
        net = ipaddress.ip_network(self.pod_cidr)
        for _ in range(2):  # the iterator runs out once: start over to reuse released addresses
            for host in self._ip_iter:
                ip = str(host)
                if ip not in self._ips and host != net.network_address + 1:  # .1 is the bridge's
                    self._ips.add(ip)
                    return ip
            self._ip_iter = iter(net.hosts())
        raise _rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f"failed to allocate for range 0: no IP addresses available in range set: {net}")

    def _sandbox(self, sandbox_id: str) -> _Sandbox:
        sb = self.sandboxes.get(sandbox_id)
        if sb is None:
            raise _rpc_error(grpc.StatusCode.NOT_FOUND,
                             f'an error occurred when try to find sandbox "{sandbox_id}": not found')
        return sb

    def _container(self, container_id: str) -> _Container:
        c = self.containers.get(container_id)
        if c is None:
            raise _rpc_error(grpc.StatusCode.NOT_FOUND,
                             f'an error occurred when try to find container "{container_id}": not found')
        return c

    def _state(self, c: _Container) -> tuple[Any, float, int]:
        """(CRI state, monotonic finish time or 0, exit code) of a container now."""
        if not c.started:
            return pb.CONTAINER_CREATED, 0.0, 0
        if c.stopped and (c.started + c.runs_for > c.stopped):
            return pb.CONTAINER_EXITED, c.stopped, c.stop_code
        end = c.started + c.runs_for
        if end <= self.clock():
            return pb.CONTAINER_EXITED, end, c.exit_code
        return pb.CONTAINER_RUNNING, 0.0, 0

    def next_exit(self, sandbox_id: str = "") -> float:
        """The monotonic time the next running container (of one sandbox) exits (inf: none will)."""
        ends = [c.started + c.runs_for for c in self.containers.values()
                if c.started and not c.stopped and c.started + c.runs_for > self.clock()
                and (not sandbox_id or c.sandbox_id == sandbox_id)]
        return min(ends, default=FOREVER)

    def _wall(self, mono: float) -> int:
        return time.time_ns() - int((self.clock() - mono) * 1e9)

    # ------------------------------------------------------------------ runtime info
    async def Version(self, request: pb.VersionRequest, **_: Any) -> pb.VersionResponse:
        return pb.VersionResponse(version="0.1.0", runtime_name=RUNTIME_NAME, runtime_version=RUNTIME_VERSION,
                                  runtime_api_version="v1")

    async def Status(self, request: pb.StatusRequest, **_: Any) -> pb.StatusResponse:
        conds = [pb.RuntimeCondition(type="RuntimeReady", status=True),
                 pb.RuntimeCondition(type="NetworkReady", status=bool(self.pod_cidr),
                                     reason="" if self.pod_cidr else "NetworkPluginNotReady",
                                     message="" if self.pod_cidr else "no pod CIDR yet")]
        return pb.StatusResponse(status=pb.RuntimeStatus(conditions=conds))

    async def UpdateRuntimeConfig(self, request: pb.UpdateRuntimeConfigRequest,
                                  **_: Any) -> pb.UpdateRuntimeConfigResponse:
        cidr = request.runtime_config.network_config.pod_cidr
        if cidr and cidr != self.pod_cidr:
            self.pod_cidr = str(ipaddress.ip_network(cidr, strict=False))
            self._ip_iter = iter(ipaddress.ip_network(self.pod_cidr).hosts())
        return pb.UpdateRuntimeConfigResponse()

    # ------------------------------------------------------------------ sandboxes
    async def RunPodSandbox(self, request: pb.RunPodSandboxRequest, **_: Any) -> pb.RunPodSandboxResponse:
        self._count("RunPodSandbox")
        await self._take(self.latencies.sandbox_run)
        cfg = request.config
        host_network = cfg.linux.security_context.namespace_options.network == pb.NODE
        ip = self.node_ip if host_network else self._allocate_ip()
        sb = _Sandbox(self._new_id(), cfg, time.time_ns(), ip)
        self.sandboxes[sb.id] = sb
        return pb.RunPodSandboxResponse(pod_sandbox_id=sb.id)

    async def StopPodSandbox(self, request: pb.StopPodSandboxRequest, **_: Any) -> pb.StopPodSandboxResponse:
        sb = self.sandboxes.get(request.pod_sandbox_id)
        if sb is None:  # stopping what is gone is not an error (CRI)
            return pb.StopPodSandboxResponse()
        for c in [c for c in self.containers.values() if c.sandbox_id == sb.id]:
            await self._stop(c, 0)
        sb.ready = False
        if sb.ip != self.node_ip:
            self._ips.discard(sb.ip)
        return pb.StopPodSandboxResponse()

    async def RemovePodSandbox(self, request: pb.RemovePodSandboxRequest,
                               **_: Any) -> pb.RemovePodSandboxResponse:
        sb = self.sandboxes.pop(request.pod_sandbox_id, None)
        if sb is not None:
            if sb.ip != self.node_ip:
                self._ips.discard(sb.ip)
            for cid in [c.id for c in self.containers.values() if c.sandbox_id == sb.id]:
                del self.containers[cid]
        return pb.RemovePodSandboxResponse()

    def _sandbox_msg(self, sb: _Sandbox) -> pb.PodSandbox:
        return pb.PodSandbox(id=sb.id, metadata=sb.config.metadata, created_at=sb.created_at,
                             state=pb.SANDBOX_READY if sb.ready else pb.SANDBOX_NOTREADY,
                             labels=dict(sb.config.labels), annotations=dict(sb.config.annotations))

    async def PodSandboxStatus(self, request: pb.PodSandboxStatusRequest,
                               **_: Any) -> pb.PodSandboxStatusResponse:
        sb = self._sandbox(request.pod_sandbox_id)
        st = pb.PodSandboxStatus(id=sb.id, metadata=sb.config.metadata, created_at=sb.created_at,
                                 state=pb.SANDBOX_READY if sb.ready else pb.SANDBOX_NOTREADY,
                                 network=pb.PodSandboxNetworkStatus(ip=sb.ip),
                                 labels=dict(sb.config.labels), annotations=dict(sb.config.annotations))
        return pb.PodSandboxStatusResponse(status=st)

    async def ListPodSandbox(self, request: pb.ListPodSandboxRequest, **_: Any) -> pb.ListPodSandboxResponse:
        f = request.filter
        out = []
        for sb in self.sandboxes.values():
            msg = self._sandbox_msg(sb)
            if f.id and sb.id != f.id:
                continue
            if f.HasField("state") and msg.state != f.state.state:
                continue
            if any(msg.labels.get(k) != v for k, v in f.label_selector.items()):
                continue
            out.append(msg)
        return pb.ListPodSandboxResponse(items=out)

    # ------------------------------------------------------------------ containers
    async def CreateContainer(self, request: pb.CreateContainerRequest, **_: Any) -> pb.CreateContainerResponse:
        self._count("CreateContainer")
        sb = self._sandbox(request.pod_sandbox_id)
        if not sb.ready:
            raise _rpc_error(grpc.StatusCode.FAILED_PRECONDITION, f"sandbox {sb.id} is not ready")
        await self._take(self.latencies.container_create)
        cfg = request.config
        c = _Container(self._new_id(), sb.id, cfg, time.time_ns(),
                       f"{request.sandbox_config.log_directory}/{cfg.log_path}" if cfg.log_path else "",
                       labels=dict(cfg.labels))
        self.containers[c.id] = c
        return pb.CreateContainerResponse(container_id=c.id)

    async def StartContainer(self, request: pb.StartContainerRequest, **_: Any) -> pb.StartContainerResponse:
        self._count("StartContainer")
        c = self._container(request.container_id)
        if c.started:
            raise _rpc_error(grpc.StatusCode.UNKNOWN, f"container {c.id} is already started")
        await self._take(self.latencies.container_start)
        c.runs_for, c.exit_code = run_time([*c.config.command, *c.config.args])
        c.started, c.started_at = self.clock(), time.time_ns()
        return pb.StartContainerResponse()

    async def _stop(self, c: _Container, timeout: int) -> None:
        state, _, _ = self._state(c)
        if state != pb.CONTAINER_RUNNING:
            if not c.started:  # a created, never started container is just exited
                c.started = c.stopped = self.clock()
                c.runs_for, c.stop_code = FOREVER, 0
            return
        await self._take(self.latencies.container_stop)
        c.stopped, c.stop_code = self.clock(), 137 if timeout == 0 else 143  # SIGKILL / SIGTERM obeyed

    async def StopContainer(self, request: pb.StopContainerRequest, **_: Any) -> pb.StopContainerResponse:
        self._count("StopContainer")
        c = self.containers.get(request.container_id)
        if c is not None:
            await self._stop(c, request.timeout)
        return pb.StopContainerResponse()

    async def RemoveContainer(self, request: pb.RemoveContainerRequest, **_: Any) -> pb.RemoveContainerResponse:
        c = self.containers.get(request.container_id)
        if c is not None:
            if self._state(c)[0] == pb.CONTAINER_RUNNING:
                raise _rpc_error(grpc.StatusCode.UNKNOWN, f"container {c.id} is running, stop it first")
            del self.containers[c.id]
        return pb.RemoveContainerResponse()

    def _container_msg(self, c: _Container) -> pb.Container:
        state, _, _ = self._state(c)
        return pb.Container(id=c.id, pod_sandbox_id=c.sandbox_id, metadata=c.config.metadata,
                            image=c.config.image, image_ref=c.config.image.image, state=state,
                            created_at=c.created_at, labels=c.labels, annotations=dict(c.config.annotations))

    async def ListContainers(self, request: pb.ListContainersRequest, **_: Any) -> pb.ListContainersResponse:
        f = request.filter
        out = []
        for c in self.containers.values():
            if f.id and c.id != f.id or f.pod_sandbox_id and c.sandbox_id != f.pod_sandbox_id:
                continue
            msg = self._container_msg(c)
            if f.HasField("state") and msg.state != f.state.state:
                continue
            if any(msg.labels.get(k) != v for k, v in f.label_selector.items()):
                continue
            out.append(msg)
        return pb.ListContainersResponse(containers=out)

    async def ContainerStatus(self, request: pb.ContainerStatusRequest, **_: Any) -> pb.ContainerStatusResponse:
        c = self._container(request.container_id)
        state, finished, code = self._state(c)
        reason = ""
        if state == pb.CONTAINER_EXITED:
            reason = "Completed" if code == 0 else "Error"
        st = pb.ContainerStatus(id=c.id, metadata=c.config.metadata, state=state, created_at=c.created_at,
                                started_at=c.started_at, finished_at=self._wall(finished) if finished else 0,
                                exit_code=code, image=c.config.image, image_ref=c.config.image.image,
                                image_id=c.config.image.image, reason=reason, labels=c.labels,
                                annotations=dict(c.config.annotations), log_path=c.log_path)
        return pb.ContainerStatusResponse(status=st)

    async def UpdateContainerResources(self, request: pb.UpdateContainerResourcesRequest,
                                       **_: Any) -> pb.UpdateContainerResourcesResponse:
        self._container(request.container_id)
        return pb.UpdateContainerResourcesResponse()

    async def ReopenContainerLog(self, request: pb.ReopenContainerLogRequest,
                                 **_: Any) -> pb.ReopenContainerLogResponse:
        self._container(request.container_id)
        return pb.ReopenContainerLogResponse()

    async def ExecSync(self, request: pb.ExecSyncRequest, **_: Any) -> pb.ExecSyncResponse:
        c = self._container(request.container_id)
        if self._state(c)[0] != pb.CONTAINER_RUNNING:
            raise _rpc_error(grpc.StatusCode.UNKNOWN, f"container {c.id} is not running")
        argv = list(request.cmd)
        prog = argv[0].rsplit("/", 1)[-1] if argv else ""
        if prog == "echo":
            return pb.ExecSyncResponse(stdout=(" ".join(argv[1:]) + "\n").encode(), exit_code=0)
        code = run_time(argv)[1]
        return pb.ExecSyncResponse(exit_code=code)

    async def _unimplemented(self, request: Any, **_: Any) -> Any:
        raise _rpc_error(grpc.StatusCode.UNIMPLEMENTED, "the fake runtime of a hollow node does not stream")

    Exec = Attach = PortForward = _unimplemented
    ContainerStats = ListContainerStats = PodSandboxStats = ListPodSandboxStats = _unimplemented


class FakeImageService:
    """The ImageService half: every image "pulls" (after the pull latency) and is then present."""

    def __init__(self, latencies: FakeLatencies) -> None:
        self.latencies = latencies
        self.images: dict[str, pb.Image] = {}

    async def PullImage(self, request: pb.PullImageRequest, **_: Any) -> pb.PullImageResponse:
        ref = request.image.image
        if ref not in self.images:
            if self.latencies.image_pull > 0:
                await asyncio.sleep(self.latencies.image_pull)
            self.images[ref] = pb.Image(id=f"sha256:{abs(hash(ref)):064x}"[:71], repo_tags=[ref], size=1 << 20)
        return pb.PullImageResponse(image_ref=self.images[ref].id)

    async def ImageStatus(self, request: pb.ImageStatusRequest, **_: Any) -> pb.ImageStatusResponse:
        img = self.images.get(request.image.image)
        return pb.ImageStatusResponse(image=img) if img is not None else pb.ImageStatusResponse()

    async def ListImages(self, request: pb.ListImagesRequest, **_: Any) -> pb.ListImagesResponse:
        return pb.ListImagesResponse(images=list(self.images.values()))

    async def RemoveImage(self, request: pb.RemoveImageRequest, **_: Any) -> pb.RemoveImageResponse:
        self.images.pop(request.image.image, None)
        return pb.RemoveImageResponse()

    async def ImageFsInfo(self, request: pb.ImageFsInfoRequest, **_: Any) -> pb.ImageFsInfoResponse:
        return pb.ImageFsInfoResponse()


class FakeCRI:
    """Stands where :class:`kubelite.agent.cri.CRI` does: ``runtime`` and ``image`` services."""

    def __init__(self, latencies: FakeLatencies | None = None, node_ip: str = "127.0.0.1",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.latencies = latencies or FakeLatencies()
        self.runtime = FakeRuntimeService(self.latencies, node_ip, clock)
        self.image = FakeImageService(self.latencies)

    async def close(self) -> None:
        pass

    async def version(self, timeout: float | None = 5.0) -> pb.VersionResponse:
        return await self.runtime.Version(pb.VersionRequest(version="v1"))

    async def status(self, verbose: bool = False, timeout: float | None = 5.0) -> pb.StatusResponse:
        return await self.runtime.Status(pb.StatusRequest(verbose=verbose))

    async def runtime_ready(self, timeout: float | None = 5.0) -> tuple[bool, str]:
        return True, ""

    async def network_ready(self, timeout: float | None = 5.0) -> tuple[bool, str]:
        ok = bool(self.runtime.pod_cidr)
        return ok, "" if ok else "NetworkPluginNotReady: no pod CIDR yet"
