"""SyncPod and KillPod against the CRI (kuberuntime_manager.go computePodActions/SyncPod,
kuberuntime_container.go startContainer/killContainer), with the kubelet's events."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from cri_api.v1 import api_pb2 as cri

from kubelite.agent import allocation, cni, containergc, crispec, security
from kubelite.agent.backoff import (
    CONTAINER_BACKOFF_INITIAL,
    CONTAINER_BACKOFF_MAX,
    IMAGE_BACKOFF_INITIAL,
    IMAGE_BACKOFF_MAX,
    Backoff,
)
from kubelite.agent.cgroups import CgroupManager, ResourceConfig, pod_cgroup_name, pod_resource_config
from kubelite.agent.crispec import ContainerState, PodRuntime, format_pod
from kubelite.agent.dns import DNSConfigurer
from kubelite.agent.hooks import run_hook
from kubelite.agent.podenv import EnvError, expand_command_and_args, make_environment
from kubelite.agent.pullsecrets import auth_for
from kubelite.agent.registries import Registries
from kubelite.agent.volumes import Mounted, MountOutcome, MountSpec, VolumeError, VolumeManager
from kubelite.kinds.podutil import (
    container_should_restart,
    is_restartable_init_container,
    resource_claim_error,
    restart_on_failure,
)

log = logging.getLogger("kubelite.agent.runtime")
Obj = dict[str, Any]
MIN_GRACE_PERIOD = 2  # minimumGracePeriodInSeconds
DEFAULT_GRACE_PERIOD = 30
IMAGE_STATUS_TTL = 5.0  # a present image's ImageStatus answer is reused this long
MOUNT_WAIT = 2.0  # how long a sync waits for the pod's volumes before it looks again (MOUNT_POLL)
MOUNT_POLL = 0.5
POD_SYNC_BACKOFF = 10.0  # a pod sync that failed (volumes the populator refused) is retried after this


def default_parallelism() -> int:
    """Sandbox creations / container starts at once: enough to keep containerd, runc and
    CNI busy on every CPU, few enough that a burst does not make each of them crawl."""
    return 2 * (os.cpu_count() or 1)


class RuntimeLimiter:
    """At most ``limit`` heavy runtime operations (RunPodSandbox, CreateContainer +
    StartContainer) at once. Waiters are served by priority, then in arrival order: the
    agent gives each pod the order in which it first synced, so in a burst the pods that
    came first get their containers started before later pods get sandboxes, and finish
    first, instead of all of them crawling through containerd together."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._busy = 0
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    @property
    def busy(self) -> int:
        return self._busy

    @contextlib.asynccontextmanager
    async def slot(self, priority: float = 0.0) -> AsyncIterator[None]:
        if self._busy < self.limit and not self._waiters:
            self._busy += 1
        else:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiters, (priority, next(self._seq), fut))
            try:
                await fut  # a releasing holder hands its slot over
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._release()  # handed over, but we are gone: pass it on
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)
                return
        self._busy -= 1


@dataclass
class SyncResult:
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (reason, message)
    next_wake: float | None = None  # seconds until a back-off expires
    changed: bool = False


def _rpc_message(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.details() or str(exc.code())
    return str(exc)


def rpc_error_string(exc: grpc.aio.AioRpcError) -> str:
    """A gRPC status error as Go prints it (``status.Error``'s Error()), which the kubelet's
    FailedCreatePodSandBox event carries whole: ``rpc error: code = Unknown desc = ...``."""
    name = exc.code().name
    code = "Canceled" if name == "CANCELLED" else "".join(w.capitalize() for w in name.split("_"))
    return f"rpc error: code = {code} desc = {exc.details() or ''}"


class RuntimeManager:
    def __init__(self, cri_client: Any, images: Any, cgroups: CgroupManager, volumes: VolumeManager,
                 recorder: Any, fetch: Any, host_ip: str = "", memory_capacity: int = 1 << 40,
                 parallelism: int = 0, registries: Registries | None = None,
                 dns: DNSConfigurer | None = None) -> None:
        self.cri = cri_client
        self.rt = cri_client.runtime
        self.images = images
        self.cgroups = cgroups
        self.volumes = volumes
        self.recorder = recorder
        self.fetch = fetch  # async (kind, namespace, name) -> obj | None
        self.registries = registries or Registries()  # registries.yaml: mirrors and credentials
        self.host_ip = host_ip
        self.dns = dns or DNSConfigurer()  # the kubelet's --cluster-dns / --cluster-domain: pods' resolv.conf
        self.memory_capacity = memory_capacity
        self.crash_backoff = Backoff(CONTAINER_BACKOFF_INITIAL, CONTAINER_BACKOFF_MAX)
        self.image_backoff = Backoff(IMAGE_BACKOFF_INITIAL, IMAGE_BACKOFF_MAX)
        self._pull_errors: dict[str, str] = {}
        # the prober (agent/prober.py ProbeManager), set by the agent: liveness/startup failures
        self.prober: Any = None
        # the node's view of every Service (the agent's informer; None until first listed),
        # for the service environment variables
        self.services: Callable[[], list[Obj] | None] = list
        self.limiter = RuntimeLimiter(parallelism or default_parallelism())
        self._pod_order: dict[str, int] = {}  # uid -> order of first sync: the limiter's priority
        self._order_seq = itertools.count()
        self._image_cache: dict[str, tuple[float, Any]] = {}  # image -> (expiry, CRI Image)
        self.gc_policy = containergc.DEFAULT_POLICY  # containerGC (see garbage_collect)
        # async (name) -> RuntimeClass | None, set by the agent (node.k8s.io/v1)
        self.fetch_runtime_class: Any = None
        # () -> the node's allocatable ({"cpu": "2", ...}), set by the agent: the downward API's
        # value for a limit the container does not set
        self.node_allocatable: Callable[[], dict[str, str]] = dict
        # resources allocated to pods and acknowledged per container (in-place resize), set by the agent
        self.allocation: allocation.AllocationManager | None = None

    # ------------------------------------------------------------------ events
    def event(self, pod: Obj, type_: str, reason: str, message: str, container: str | None = None,
              init: bool = False) -> None:
        ref = {"kind": "Pod", "apiVersion": "v1", "namespace": pod["metadata"].get("namespace", ""),
               "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"],
               "resourceVersion": pod["metadata"].get("resourceVersion", "")}
        if container is not None:
            ephemeral = any(c.get("name") == container for c in pod["spec"].get("ephemeralContainers") or [])
            where = "ephemeralContainers" if ephemeral else "initContainers" if init else "containers"
            ref["fieldPath"] = f"spec.{where}{{{container}}}"
        self.recorder.emit(ref, type_, reason, message)

    # ------------------------------------------------------------------ sync
    async def sync_pod(self, pod: Obj, pr: PodRuntime) -> SyncResult:
        """One SyncPod pass: sandbox, init containers in order, then the app containers."""
        res = SyncResult()
        spec = pod["spec"]
        uid = pod["metadata"]["uid"]
        if uid not in self._pod_order:
            self._pod_order[uid] = next(self._order_seq)
        policy = spec.get("restartPolicy") or "Always"
        sb = pr.latest_sandbox()
        create_sandbox = sb is None or not sb.ready or sum(1 for s in pr.sandboxes if s.ready) > 1
        if create_sandbox and sb is not None and pr.containers:
            # A dead sandbox of a pod that will not restart anything stays dead.
            # (computePodActions: not without a container left to start)
            if policy == "Never" or all(
                    (c := pr.latest(x["name"])) is not None and c.state == "exited"
                    and not container_should_restart(x, spec, c.exit_code) for x in spec.get("containers") or []):
                return res
        # WaitForAttachAndMount: no sandbox and no container before every volume is there
        if not await self._mount_volumes(pod, res):
            return res
        if create_sandbox:
            if sb is not None:
                res.changed = True
                await self.kill_pod(pod, pr, grace=MIN_GRACE_PERIOD, events=False)
                await self._remove_dead_sandboxes(pr)
                self.event(pod, "Normal", "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.")
            claim_error = resource_claim_error(pod, kubelet=True)
            if claim_error is not None:  # PrepareDynamicResources, before any sandbox
                self.event(pod, "Warning", "FailedPrepareDynamicResources",
                           f"Failed to prepare dynamic resources: {claim_error}")
                res.next_wake = _min(res.next_wake, POD_SYNC_BACKOFF)
                return res
            attempt = (sb.attempt + 1) if sb is not None else 0
            sandbox_id = await self._create_sandbox(pod, attempt, res)
            if sandbox_id is None:
                return res
            res.changed = True
            # the new sandbox (and its IP) from PodSandboxStatus: no relist of the whole pod
            try:
                full = await self.rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id),
                                                      timeout=30)
            except grpc.aio.AioRpcError as exc:
                log.warning("PodSandboxStatus %s: %s", sandbox_id[:12], _rpc_message(exc))
                return res
            sb = crispec.sandbox_state_from_status(full.status)
            if not (spec.get("hostNetwork") or False):
                await asyncio.to_thread(cni.forget_neighbours, sb.ips)
            pr = PodRuntime(uid, [sb, *pr.sandboxes], pr.containers)
            for c in pr.containers:  # containers of an older sandbox are history now
                if c.sandbox_id != sb.id and c.state == "running":
                    await self._stop(c.id, MIN_GRACE_PERIOD)
        assert sb is not None
        if not create_sandbox:
            # projected volumes set up before (maybe by an earlier agent) follow this pod version
            self.volumes.track(pod, self.fetch)
        sb_config = self._sandbox_config(pod, sb.attempt)
        self._write_etc_hosts(pod, sb.ips)
        ctx = _SyncPass(self, pod, sb.id, sb_config, pr, sb.ips, res)
        # init containers, one at a time (computeInitContainerActions); once an app container
        # has run in this sandbox the pod is initialized and only the sidecars are kept going
        initialized = any(not c.is_init and c.sandbox_id == sb.id for c in pr.containers)
        for ic in spec.get("initContainers") or []:
            c = self._latest_in(pr, ic["name"], sb.id, init=True)
            if is_restartable_init_container(ic):
                # a sidecar: started (its startup probe passed) before the next init container,
                # restarted whenever it exits, kept running beside the app containers
                started = c is not None and c.state == "running" and (
                    self.prober is None or self.prober.is_started(c))
                await self._sync_container(ctx, ic, policy, init=True)
                if not started and not initialized:
                    return res
                continue
            if initialized:
                continue
            if c is None or c.state in ("created",):
                await self._start(ctx, ic, init=True)
                return res
            if c.state == "running":
                return res
            if c.state == "exited" and c.exit_code == 0:
                continue
            if not restart_on_failure(ic, spec):
                return res  # pod failed
            await self._start(ctx, ic, init=True)
            return res
        # the app containers are independent of each other: all at once
        await asyncio.gather(*(self._sync_container(ctx, ct, policy) for ct in spec.get("containers") or []))
        # ephemeral containers (kubectl debug) start once and are never restarted
        for ec in spec.get("ephemeralContainers") or []:
            if pr.latest(ec["name"]) is None:
                await self._start(ctx, ec, target=self._target_id(pr, sb.id, ec.get("targetContainerName") or ""))
        return res

    async def _mount_volumes(self, pod: Obj, res: SyncResult) -> bool:
        """The volume manager's mounts for this pod: each SetUp failure is a FailedMount event
        (retried with the operation executor's back-off), the populator's errors one
        ``Unable to attach or mount volumes`` event per sync (retried like a failed pod sync).
        False while a volume is missing: the pod stays ContainerCreating."""
        outcome = await self.volumes.reconcile(pod, self.fetch, MOUNT_WAIT)
        if outcome is None:  # still mounting: look again soon
            res.next_wake = _min(res.next_wake, MOUNT_POLL)
            return False
        self._mount_events(pod, outcome)
        if outcome.ready:
            return True
        pod_error = outcome.pod_error_message()
        if pod_error is not None:
            self.event(pod, "Warning", "FailedMount", pod_error)
            res.next_wake = _min(res.next_wake, POD_SYNC_BACKOFF)
        if outcome.retry_in is not None:
            res.next_wake = _min(res.next_wake, outcome.retry_in + 0.05)
        return False

    def _mount_events(self, pod: Obj, outcome: MountOutcome) -> None:
        for msg in outcome.setup_failures:
            self.event(pod, "Warning", "FailedMount", msg)

    @staticmethod
    def _target_id(pr: PodRuntime, sandbox_id: str, name: str) -> str:
        """The running container of the pod's current sandbox whose process namespace an
        ephemeral container joins (targetContainerName); "" for the pod's own namespace."""
        if not name:
            return ""
        c = pr.latest(name)
        return c.id if c is not None and c.state == "running" and c.sandbox_id == sandbox_id else ""

    async def _sync_container(self, ctx: _SyncPass, ct: Obj, policy: str, init: bool = False) -> None:
        pod, pr, sb_id, res = ctx.pod, ctx.pr, ctx.sandbox_id, ctx.res
        c = self._latest_in(pr, ct["name"], sb_id, init) if init else pr.latest(ct["name"])
        if c is not None and c.state == "running":
            probe_failed = self.prober.kill_reason(c.id) if self.prober is not None else None
            same = crispec.same_definition(c.hash, ct)
            if c.sandbox_id == sb_id and same and probe_failed:
                # computePodActions: a failed liveness/startup probe kills the container;
                # it starts again in this pass unless its restartPolicy (else the pod's) is Never
                restart = restart_on_failure(ct, pod["spec"])
                msg = f"Container {ct['name']} failed {probe_failed} probe"
                await self.kill_container(pod, ct, c, self._probe_grace(pod, ct, probe_failed),
                                          f"{msg}, will be restarted" if restart else msg, ctx.ips)
                res.changed = True
                if not restart:
                    return
                await self._start(ctx, ct, init=init)
                return
            if c.sandbox_id == sb_id and same:
                if self.allocation is None:
                    return
                acked = self.allocation.acknowledged(c.id)
                want = allocation.resources_of(ct)
                if acked is None:  # started by an agent that did not record it: adopt
                    self.allocation.acknowledge(c.id, want)
                    return
                if allocation.same_resources(acked, want):
                    return
                if not allocation.needs_restart(ct, acked, want):
                    await self._resize_container(ctx, ct, c, want)
                    return
                await self.kill_container(pod, ct, c, self._grace(pod, None),
                                          f"Container {ct['name']} resize requires restart", ctx.ips)
                res.changed = True
                if await self._resize_pod_cgroup(ctx, grow_only=True):
                    await self._start(ctx, ct, init=init)
                    await self._resize_pod_cgroup(ctx)
                return
            # spec changed (or it runs in an old sandbox): restart it
            await self.kill_container(pod, ct, c, self._grace(pod, None),
                                      f"Container {ct['name']} definition changed, will be restarted", ctx.ips)
            res.changed = True
        elif c is not None and c.state == "exited" and c.sandbox_id == sb_id and not container_should_restart(
                ct, pod["spec"], c.exit_code):
            return
        elif c is not None and c.state == "created":
            res.changed = True
            await self._remove(c.id)
        await self._start(ctx, ct, init=init)

    async def _resize_container(self, ctx: _SyncPass, ct: Obj, c: ContainerState, want: Obj) -> None:
        """doPodResizeAction for one container: the pod cgroup is first raised to hold both the
        old and the new limits, the container updated through UpdateContainerResources, then
        the pod cgroup set to the new limits. An error is kept for the PodResizeInProgress
        condition (reason Error) and retried on the next sync."""
        assert self.allocation is not None
        pod = ctx.pod
        if not await self._resize_pod_cgroup(ctx, grow_only=True):
            return
        try:
            linux = crispec.container_resources(pod, ct, self.memory_capacity)
            self.cgroups.tune_container(linux)
            await self.rt.UpdateContainerResources(cri.UpdateContainerResourcesRequest(
                container_id=c.id, linux=linux), timeout=60)
        except grpc.aio.AioRpcError as exc:
            self._resize_failed(ctx, ct["name"], _rpc_message(exc))
            return
        if not await self._resize_pod_cgroup(ctx):
            return
        self.allocation.acknowledge(c.id, want)
        self.allocation.errors.pop(pod["metadata"]["uid"], None)
        ctx.res.changed = True

    async def _resize_pod_cgroup(self, ctx: _SyncPass, grow_only: bool = False) -> bool:
        """The pod cgroup to the allocated pod's limits; ``grow_only``: to limits that hold both
        the current and the new ones (before the containers change)."""
        pod = ctx.pod
        name = pod_cgroup_name(pod)
        cfg = pod_resource_config(pod)
        cfg.pids_limit = self.cgroups.pids_limit
        try:
            if grow_only:
                cfg = _larger(await asyncio.to_thread(self.cgroups.read, name), cfg)
            await asyncio.to_thread(self.cgroups.apply, name, cfg)
        except OSError as exc:
            self._resize_failed(ctx, "", f"pod cgroup {name}: {exc.strerror or exc}")
            return False
        return True

    def _resize_failed(self, ctx: _SyncPass, container: str, msg: str) -> None:
        """Kept for the PodResizeInProgress condition (reason Error); retried on the next sync."""
        assert self.allocation is not None
        log.warning("resizing %s of pod %s: %s", container or "the pod cgroup", format_pod(ctx.pod), msg)
        self.allocation.errors[ctx.pod["metadata"]["uid"]] = msg
        ctx.res.next_wake = _min(ctx.res.next_wake, 2)

    async def _remove_dead_sandboxes(self, pr: PodRuntime) -> None:
        """Sandboxes that are not ready and hold no containers are of no further use."""
        used = {c.sandbox_id for c in pr.containers}
        for s in pr.sandboxes:
            if not s.ready and s.id not in used:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await self.rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=s.id), timeout=60)

    async def garbage_collect(self, pod: Obj, pr: PodRuntime, now: float | None = None,
                              policy: containergc.GCPolicy | None = None) -> list[str]:
        """containerGC for one live pod: remove its exited containers but the newest per container
        name (with their log files), then its dead sandboxes but the newest. Returns the removed
        container and sandbox ids. Running containers and the newest sandbox are never touched."""
        uid = pod["metadata"]["uid"]
        if pr.uid != uid:
            return []
        victims = [c for _, c in containergc.select_containers({uid: pr.containers},
                                                               time.time() if now is None else now,
                                                               policy or self.gc_policy)]
        removed: list[str] = []
        log_dir = self.volumes.log_dir(pod)
        for c in victims:
            try:
                await self.rt.RemoveContainer(cri.RemoveContainerRequest(container_id=c.id), timeout=60)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    log.warning("RemoveContainer %s: %s", c.id[:12], _rpc_message(exc))
                    continue
            removed.append(c.id)
            path = containergc.container_log_path(c, log_dir)
            if path is not None:
                await asyncio.to_thread(containergc.remove_log_files, path)
        for s in containergc.select_sandboxes(pr, removed):
            try:
                await self.rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=s.id), timeout=60)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    log.warning("RemovePodSandbox %s: %s", s.id[:12], _rpc_message(exc))
                    continue
            removed.append(s.id)
        if removed:
            log.info("container GC of pod %s removed %d container(s)/sandbox(es)", format_pod(pod), len(removed))
        return removed

    def _latest_in(self, pr: PodRuntime, name: str, sandbox_id: str, init: bool) -> ContainerState | None:
        for c in pr.containers:
            if c.name == name and c.is_init == init and c.sandbox_id == sandbox_id:
                return c
        return None

    def _sandbox_config(self, pod: Obj, attempt: int) -> Any:
        log_dir = self.volumes.log_dir(pod)
        cgroup_parent = "/" + crispec_cgroup_name(pod)
        return crispec.sandbox_config(pod, attempt, str(log_dir), cgroup_parent, str(self.seccomp_root), self.dns)

    @property
    def seccomp_root(self) -> Path:
        """Where ``Localhost`` seccomp profiles live (the kubelet's ``<root-dir>/seccomp``)."""
        return Path(self.volumes.data_dir) / security.SECCOMP_DIR

    async def _runtime_handler(self, pod: Obj) -> str:
        """LookupRuntimeHandler (pkg/kubelet/runtimeclass): the pod's RuntimeClass handler, ""
        (the runtime's default) without one; LookupError with the kubelet's message."""
        name = pod["spec"].get("runtimeClassName")
        if not name:
            return ""
        try:
            rc = await self.fetch_runtime_class(name) if self.fetch_runtime_class is not None else None
        except Exception as exc:
            raise LookupError(f"failed to lookup RuntimeClass {name}: {exc}") from exc
        if rc is None:
            raise LookupError(f"runtimeclass.node.k8s.io \"{name}\" not found")
        return str(rc.get("handler") or "")

    async def _supports_rro(self, pod: Obj) -> bool:
        """Whether the pod's runtime handler reports recursive read-only mounts (CRI Status
        features), asked only for pods that request them."""
        if not any(m.get("recursiveReadOnly") not in (None, "Disabled")
                   for key in ("initContainers", "containers", "ephemeralContainers")
                   for c in pod["spec"].get(key) or [] for m in c.get("volumeMounts") or []):
            return False
        try:
            st = await self.cri.status()
        except grpc.aio.AioRpcError:
            return False
        try:
            handler = await self._runtime_handler(pod)
        except LookupError:
            return False
        return any(h.name == handler and h.features.recursive_read_only_mounts for h in st.runtime_handlers)

    async def _userns_handlers(self) -> set[str]:
        """The runtime handlers whose CRI Status reports user-namespace support."""
        try:
            st = await self.cri.status()
        except grpc.aio.AioRpcError:
            return set()
        return {h.name for h in st.runtime_handlers if h.features.user_namespaces}

    async def _create_sandbox(self, pod: Obj, attempt: int, res: SyncResult) -> str | None:
        try:
            self.cgroups.ensure_pod(pod)
        except OSError as exc:
            self.event(pod, "Warning", "FailedCreatePodSandBox", f"Failed to create pod cgroup: {exc}")
            res.next_wake = 5
            return None
        log_dir = self.volumes.log_dir(pod)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.volumes.pod_dir(pod["metadata"]["uid"]).mkdir(parents=True, exist_ok=True)
        _, dns_events = self.dns.cri_config(pod)
        for type_, reason, message in dns_events:
            self.event(pod, type_, reason, message)
        try:
            handler = await self._runtime_handler(pod)
        except LookupError as exc:
            self.event(pod, "Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {exc.args[0]}")
            res.next_wake = 5
            return None
        if pod["spec"].get("hostUsers") is False:
            err = security.user_namespace_error(pod, handler, await self._userns_handlers())
            if err is not None:
                self.event(pod, "Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {err}")
                res.next_wake = 5
                return None
        try:
            config = self._sandbox_config(pod, attempt)
        except crispec.SandboxConfigError as exc:
            self.event(pod, "Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {exc}")
            res.next_wake = 5
            return None
        try:
            async with self.limiter.slot(self._priority(pod)):
                resp = await self.rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config, runtime_handler=handler),
                                                   timeout=120)
        except grpc.aio.AioRpcError as exc:
            self.event(pod, "Warning", "FailedCreatePodSandBox",
                       f"Failed to create pod sandbox: {rpc_error_string(exc)}")
            res.next_wake = 5
            return None
        return resp.pod_sandbox_id

    def _write_etc_hosts(self, pod: Obj, ips: list[str]) -> Path:
        p = self.volumes.pod_dir(pod["metadata"]["uid"]) / "etc-hosts"
        text = crispec.etc_hosts(pod, ips, self.dns.cluster_domain)
        if not p.exists() or p.read_text() != text:
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_suffix(".tmp")
            tmp.write_text(text)
            os.replace(tmp, p)
        return p

    def _grace(self, pod: Obj, override: int | None) -> int:
        if override is not None:
            g = override
        elif pod["metadata"].get("deletionGracePeriodSeconds") is not None:
            g = pod["metadata"]["deletionGracePeriodSeconds"]
        else:
            g = pod["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE_PERIOD)
            if g is None:
                g = DEFAULT_GRACE_PERIOD
        return max(int(g), MIN_GRACE_PERIOD)

    def _probe_grace(self, pod: Obj, ct: Obj, probe: str) -> int:
        """setTerminationGracePeriod: the probe's terminationGracePeriodSeconds, unless the
        pod is being deleted."""
        probe_spec = ct.get(f"{probe}Probe") or {}
        if pod["metadata"].get("deletionGracePeriodSeconds") is None and \
                probe_spec.get("terminationGracePeriodSeconds") is not None:
            return self._grace(pod, probe_spec["terminationGracePeriodSeconds"])
        return self._grace(pod, None)

    @staticmethod
    def backoff_key(pod: Obj, container: Obj) -> str:
        m = pod["metadata"]
        return f"{m['name']}_{m.get('namespace', '')}_{m['uid']}_{container['name']}_{crispec.container_hash(container)}"

    def _priority(self, pod: Obj) -> float:
        return float(self._pod_order.get(pod["metadata"]["uid"], 0))

    async def _start(self, ctx: _SyncPass, ct: Obj, init: bool = False, target: str | None = None) -> None:
        """Create and start ``ct``; ``target`` is set for an ephemeral container (the id of the
        container whose process namespace it joins, or "")."""
        pod, sandbox_id, sb_config, pr, res = ctx.pod, ctx.sandbox_id, ctx.sb_config, ctx.pr, ctx.res
        name = ct["name"]
        prev = pr.latest(name)
        # doBackOff: a container that died recently waits
        if prev is not None and prev.state == "exited":
            key = self.backoff_key(pod, ct)
            if self.crash_backoff.is_in_backoff_since(key, prev.finished_at):
                delay = self.crash_backoff.get(key)
                self.event(pod, "Warning", "BackOff",
                           f"Back-off restarting failed container {name} in pod {format_pod(pod)}", name, init)
                res.waiting[name] = ("CrashLoopBackOff",
                                     f"back-off {_dur(delay)} restarting failed container={name} pod={format_pod(pod)}")
                res.next_wake = _min(res.next_wake, self.crash_backoff.remaining(key, prev.finished_at) + 0.05)
                return
            self.crash_backoff.next(key, prev.finished_at)
        got = await self._ensure_image(pod, ct, sb_config, res, init)
        if got is None:
            return
        ref, img = got
        restart_count = prev.restart_count + 1 if prev is not None else 0
        try:
            config = await self._container_config(ctx, ct, ref, img, restart_count, init, target)
        except (EnvError, VolumeError, crispec.ContainerConfigError, security.SecurityProfileError) as exc:
            msg = str(exc)
            self.event(pod, "Warning", "Failed", f"Error: {msg}", name, init)
            res.waiting[name] = ("CreateContainerConfigError", msg)
            res.next_wake = _min(res.next_wake, 2)
            return
        async with self.limiter.slot(self._priority(pod)):
            try:
                cresp = await self.rt.CreateContainer(cri.CreateContainerRequest(
                    pod_sandbox_id=sandbox_id, config=config, sandbox_config=sb_config), timeout=120)
            except grpc.aio.AioRpcError as exc:
                self._image_cache.pop(ct.get("image", ""), None)  # perhaps removed since: ask again
                msg = _rpc_message(exc)
                self.event(pod, "Warning", "Failed", f"Error: {msg}", name, init)
                res.waiting[name] = ("CreateContainerError", msg)
                res.next_wake = _min(res.next_wake, 2)
                return
            self.event(pod, "Normal", "Created", f"Created container: {name}", name, init)
            res.changed = True
            if self.allocation is not None:
                self.allocation.acknowledge(cresp.container_id, allocation.resources_of(ct))
            try:
                await self.rt.StartContainer(cri.StartContainerRequest(container_id=cresp.container_id),
                                             timeout=120)
            except grpc.aio.AioRpcError as exc:
                msg = _rpc_message(exc)
                self.event(pod, "Warning", "Failed", f"Error: {msg}", name, init)
                res.waiting[name] = ("RunContainerError", msg)
                return
        self.event(pod, "Normal", "Started", f"Started container {name}", name, init)
        res.changed = True
        post_start = (ct.get("lifecycle") or {}).get("postStart")
        if isinstance(post_start, dict):
            # the kubelet runs the hook right after the start; a failure kills the container
            failed = await run_hook(self.rt, pod, ct, cresp.container_id, post_start, ctx.ips[0] if ctx.ips else "")
            if failed is not None:
                self.event(pod, "Warning", "FailedPostStartHook", failed, name, init)
                self.event(pod, "Normal", "Killing", "FailedPostStartHook", name, init)
                await self._stop(cresp.container_id, self._grace(pod, None))
                res.waiting[name] = ("PostStartHookError", failed)

    async def _image_status(self, image: str) -> Any:
        """ImageStatus, a present image's answer reused for IMAGE_STATUS_TTL (a burst of pods
        with the same images asks once)."""
        now = time.monotonic()
        hit = self._image_cache.get(image)
        if hit is not None and hit[0] > now:
            return hit[1]
        img = await self.images.status(image)
        if img is not None:
            self._image_cache[image] = (now + IMAGE_STATUS_TTL, img)
            if len(self._image_cache) > 256:
                self._image_cache = {k: v for k, v in self._image_cache.items() if v[0] > now}
        else:
            self._image_cache.pop(image, None)
        return img

    async def _ensure_image(self, pod: Obj, ct: Obj, sb_config: Any, res: SyncResult,
                            init: bool) -> tuple[str, Any] | None:
        """(image ref, its CRI Image record) once the image is there."""
        from kubelite.agent.images import ErrImageNeverPull, ImageError

        name = ct["name"]
        image = ct.get("image", "")
        policy = ct.get("imagePullPolicy") or "IfNotPresent"
        key = f"{pod['metadata']['uid']}_{image}"
        try:
            present = await self._image_status(image) if policy != "Always" else None
        except Exception:  # invalid names surface from ensure_image below
            present = None
        if present is not None:
            self.event(pod, "Normal", "Pulled", f"Container image \"{image}\" already present on machine", name, init)
            return present.id, present
        if policy == "Never":
            msg = f"Container image \"{image}\" is not present with pull policy of Never"
            self.event(pod, "Warning", "ErrImageNeverPull", msg, name, init)
            res.waiting[name] = ("ErrImageNeverPull", msg)
            return None
        now = time.time()
        e = self.image_backoff._entries.get(key)
        if e is not None and now - e.last_update < e.backoff:
            self.event(pod, "Normal", "BackOff", f"Back-off pulling image \"{image}\"", name, init)
            self.event(pod, "Warning", "Failed", "Error: ImagePullBackOff", name, init)
            prev = res.waiting.get(name, ("", ""))[1]
            res.waiting[name] = ("ImagePullBackOff", f"Back-off pulling image \"{image}\": ErrImagePull: "
                                 f"{self._pull_errors.get(key, prev)}")
            res.next_wake = _min(res.next_wake, e.backoff - (now - e.last_update) + 0.05)
            return None
        self.event(pod, "Normal", "Pulling", f"Pulling image \"{image}\"", name, init)
        t0 = time.monotonic()
        try:
            # registry credentials: imagePullSecrets, then registries.yaml (kubelite/agent/pullsecrets.py)
            auth = await auth_for(self.fetch, pod, image, self.registries)
            ref = await self.images.ensure_image(image, policy, auth=auth, sandbox_config=sb_config)
        except ErrImageNeverPull as exc:
            self.event(pod, "Warning", "ErrImageNeverPull", exc.message, name, init)
            res.waiting[name] = ("ErrImageNeverPull", exc.message)
            return None
        except ImageError as exc:
            self.image_backoff.next(key, time.time())
            self._pull_errors[key] = exc.message
            self.event(pod, "Warning", "Failed", f"Failed to pull image \"{image}\": {exc.message}", name, init)
            self.event(pod, "Warning", "Failed", f"Error: {exc.reason}", name, init)
            res.waiting[name] = (exc.reason, exc.message)
            res.next_wake = _min(res.next_wake, self.image_backoff.get(key) + 0.05)
            return None
        self.image_backoff.reset(key)
        took = time.monotonic() - t0
        size = ""
        st = None
        with contextlib.suppress(Exception):
            st = await self.images.status(ref)
            if st is not None:
                size = f" Image size: {st.size} bytes."
        self.event(pod, "Normal", "Pulled",
                   f"Successfully pulled image \"{image}\" in {_dur(took)} ({_dur(took)} including waiting).{size}",
                   name, init)
        return ref, st

    async def _container_config(self, ctx: _SyncPass, ct: Obj, image_ref: str, img: Any, restart_count: int,
                                init: bool, target: str | None = None) -> Any:
        pod = ctx.pod
        uid = pod["metadata"]["uid"]
        env = await make_environment(pod, ct, self.fetch, self.host_ip, ctx.ips, self.node_allocatable(),
                                     services=self.services())
        if img is None:
            img = await self.images.status(image_ref)
        image_uid = img.uid.value if img is not None and img.HasField("uid") else None
        image_user = img.username if img is not None else ""
        crispec.verify_run_as_non_root(pod, ct, image_uid, image_user)
        vols = await ctx.volumes()
        mounts = self.volumes.mounts_for(pod, ct, vols, dict(env), await self._supports_rro(pod))
        if not any(m.container_path == "/etc/hosts" for m in mounts):
            mounts.append(MountSpec(str(self.volumes.pod_dir(uid) / "etc-hosts"), "/etc/hosts"))
        tmp = ct.get("terminationMessagePath", "/dev/termination-log")
        if tmp:
            f = self.volumes.new_termination_file(uid, ct["name"])
            mounts.append(MountSpec(str(f), tmp))
        (self.volumes.log_dir(pod) / ct["name"]).mkdir(parents=True, exist_ok=True)
        command, args = expand_command_and_args(ct, dict(env))
        config = crispec.container_config(pod, ct, image_ref=image_ref, restart_count=restart_count,
                                          command=command, args=args, env=env, mounts=mounts,
                                          memory_capacity=self.memory_capacity, is_init=init, target_id=target,
                                          seccomp_root=str(self.seccomp_root))
        self.cgroups.tune_container(config.linux.resources)  # swap / OOM-group settings of the layout
        return config

    # ------------------------------------------------------------------ kill
    async def _stop(self, container_id: str, grace: int, stop_signal: str | None = None) -> None:
        """StopContainer with the grace period. A container with a lifecycle.stopSignal gets that
        signal first: the runtime's CRI carries it (ContainerConfig.stop_signal), but containerd
        1.6 predates it and would send the image's STOPSIGNAL, so the agent signals the
        container's init process itself and stops it at once after it exits or the grace period
        ends (SIGKILL)."""
        if stop_signal is not None:
            exited = await self._signal_and_wait(container_id, crispec.signal_number(stop_signal), grace)
            if exited is not None:
                grace = 0
        try:
            await self.rt.StopContainer(cri.StopContainerRequest(container_id=container_id, timeout=grace),
                                        timeout=grace + 30)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                log.warning("StopContainer %s: %s", container_id[:12], _rpc_message(exc))

    async def _signal_and_wait(self, container_id: str, signum: int, grace: int) -> bool | None:
        """Send ``signum`` to the container's init process (its host PID from the runtime's
        verbose status, held by a pidfd so a reused PID is never signalled) and wait up to
        ``grace`` seconds for it to exit: True if it did, False if not, None if it could not be
        signalled (not running, no PID)."""
        try:
            st = await self.rt.ContainerStatus(cri.ContainerStatusRequest(container_id=container_id, verbose=True),
                                               timeout=10)
            pid = int(json.loads(st.info.get("info") or "{}").get("pid") or 0)
        except (grpc.aio.AioRpcError, ValueError, TypeError):
            return None
        if pid <= 0 or st.status.state != cri.CONTAINER_RUNNING:
            return None
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return None
        loop = asyncio.get_running_loop()
        try:
            try:  # still that container's process once held (not a PID reused in between)
                again = await self.rt.ContainerStatus(cri.ContainerStatusRequest(container_id=container_id), timeout=10)
            except grpc.aio.AioRpcError:
                return None
            if again.status.state != cri.CONTAINER_RUNNING:
                return None
            signal.pidfd_send_signal(fd, signum)
            gone: asyncio.Future[None] = loop.create_future()
            def exited() -> None:
                if not gone.done():
                    gone.set_result(None)

            loop.add_reader(fd, exited)
            try:
                await asyncio.wait_for(gone, grace)
                return True
            except TimeoutError:
                return False
            finally:
                loop.remove_reader(fd)
        except OSError:
            return None
        finally:
            os.close(fd)

    async def _remove(self, container_id: str) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError):
            await self.rt.RemoveContainer(cri.RemoveContainerRequest(container_id=container_id), timeout=60)

    async def kill_container(self, pod: Obj, spec_c: Obj | None, c: ContainerState, grace: int, message: str = "",
                             ips: list[str] | None = None, events: bool = True) -> None:
        """killContainer: the Killing event, the preStop hook (within the grace period; a
        failure is a FailedPreStopHook event), then the stop with what is left of the grace
        period (never under the 2 s minimum)."""
        if events:
            self.event(pod, "Normal", "Killing", message or f"Stopping container {c.name}", c.name, c.is_init)
        pre_stop = ((spec_c or {}).get("lifecycle") or {}).get("preStop")
        if isinstance(pre_stop, dict) and grace > 0:
            t0 = time.monotonic()
            pod_ip = (ips or [""])[0] if ips else ((pod.get("status") or {}).get("podIP") or "")
            try:
                failed = await asyncio.wait_for(run_hook(self.rt, pod, spec_c or {}, c.id, pre_stop, pod_ip), grace)
            except TimeoutError:
                failed = None
                log.info("preStop hook of %s/%s not completed in its grace period", format_pod(pod), c.name)
            if failed is not None:
                log.info("preStop hook failed: %s", failed)
                # the kubelet keeps the message out of the event, lest secrets leak
                self.event(pod, "Warning", "FailedPreStopHook", "PreStopHook failed", c.name, c.is_init)
            grace -= int(time.monotonic() - t0)
        await self._stop(c.id, max(grace, MIN_GRACE_PERIOD), crispec.stop_signal_of(spec_c or {}))

    async def kill_pod(self, pod: Obj | None, pr: PodRuntime, grace: int | None = None, events: bool = True) -> None:
        """killPodWithSyncResult: stop the running containers (in parallel, each with the grace
        period and its preStop hook), then stop every sandbox of the pod. Nothing is removed."""
        g = self._grace(pod, grace) if pod is not None else max(grace or MIN_GRACE_PERIOD, MIN_GRACE_PERIOD)

        async def stop_one(c: ContainerState) -> None:
            if pod is None:
                await self._stop(c.id, g)
                return
            await self.kill_container(pod, _spec_of(pod, c.name), c, g, events=events)

        # the app (and ephemeral) containers first, then the sidecars one by one in reverse
        # order with what is left of the grace period (killContainersWithSyncResult)
        deadline = time.monotonic() + g
        running = pr.running()
        await asyncio.gather(*(stop_one(c) for c in running if not c.is_init))
        order = {ct.get("name"): i for i, ct in enumerate(((pod or {}).get("spec") or {}).get("initContainers") or [])}
        sidecars = sorted((c for c in running if c.is_init), key=lambda c: -order.get(c.name, 0))
        for c in sidecars:
            g = max(MIN_GRACE_PERIOD, int(deadline - time.monotonic()))
            await stop_one(c)
        for sb in pr.sandboxes:
            if sb.ready:
                try:
                    await self.rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sb.id), timeout=60)
                except grpc.aio.AioRpcError as exc:
                    log.warning("StopPodSandbox %s: %s", sb.id[:12], _rpc_message(exc))

    async def remove_pod(self, uid: str, pod: Obj | None, pr: PodRuntime) -> None:
        """Remove containers and sandboxes (CNI teardown happens on stop), volumes, the pod dir,
        the logs and the pod cgroup."""
        for c in pr.containers:
            await self._remove(c.id)
        for sb in pr.sandboxes:
            try:
                await self.rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sb.id), timeout=60)
                await self.rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=sb.id), timeout=60)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    log.warning("RemovePodSandbox %s: %s", sb.id[:12], _rpc_message(exc))
        await self.volumes.cancel_mounts(uid)
        await asyncio.to_thread(self.volumes.teardown, uid)
        if pod is not None:
            await asyncio.to_thread(self.volumes.remove_logs, pod)
        else:
            for d in self.volumes.pods_dir.glob(f"*_{uid}") if self.volumes.pods_dir.exists() else []:
                await asyncio.to_thread(_rmtree, d)
        names = self.cgroups.pod_cgroup_names()
        if uid in names:
            await asyncio.to_thread(self.cgroups.remove, names[uid])
        for k in [k for k in self.crash_backoff._entries if f"_{uid}_" in k]:
            self.crash_backoff.reset(k)
        self._pod_order.pop(uid, None)


class _SyncPass:
    """What one SyncPod pass shares between its containers: the sandbox, the runtime state
    it started from, the result, and the pod's volumes (set up once per pass, not once per
    container)."""

    def __init__(self, rm: RuntimeManager, pod: Obj, sandbox_id: str, sb_config: Any, pr: PodRuntime,
                 ips: list[str], res: SyncResult) -> None:
        self.rm = rm
        self.pod = pod
        self.sandbox_id = sandbox_id
        self.sb_config = sb_config
        self.pr = pr
        self.ips = ips
        self.res = res
        self._volumes: asyncio.Future[MountOutcome] | None = None

    async def volumes(self) -> dict[str, Mounted]:
        """The pod's volumes, configMap and secret ones refreshed from the API first."""
        if self._volumes is None:
            self._volumes = asyncio.ensure_future(self.rm.volumes.mount_pod(self.pod, self.rm.fetch, refresh=True))
            outcome = await asyncio.shield(self._volumes)
            self.rm._mount_events(self.pod, outcome)
        return (await asyncio.shield(self._volumes)).volumes


def _larger(a: ResourceConfig | None, b: ResourceConfig) -> ResourceConfig:
    """A config at least as permissive as both (-1 / None: unlimited)."""
    if a is None:
        return b

    def most(x: int | None, y: int | None) -> int | None:
        if x is None or y is None or x <= 0 or y <= 0:
            return -1
        return max(x, y)

    return ResourceConfig(cpu_shares=max(a.cpu_shares or 0, b.cpu_shares or 0) or None,
                          cpu_quota=most(a.cpu_quota, b.cpu_quota), cpu_period=b.cpu_period or a.cpu_period,
                          memory_limit=most(a.memory_limit, b.memory_limit), pids_limit=b.pids_limit)


def _spec_of(pod: Obj, name: str) -> Obj | None:
    spec = pod.get("spec") or {}
    for key in ("containers", "initContainers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            if isinstance(c, dict) and c.get("name") == name:
                return c
    return None


def crispec_cgroup_name(pod: Obj) -> str:
    from kubelite.agent.cgroups import pod_cgroup_name

    return pod_cgroup_name(pod)


def _rmtree(p: Path) -> None:
    import shutil

    shutil.rmtree(p, ignore_errors=True)


def _min(a: float | None, b: float) -> float:
    return b if a is None else min(a, b)


def _dur(seconds: float) -> str:
    """Go's time.Duration String for the cases we print (``10s``, ``1m20s``, ``5m0s``, ``1.234s``)."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        s = f"{seconds:.3f}".rstrip("0").rstrip(".")
        return f"{s}s"
    m, rest = divmod(int(seconds), 60)
    return f"{m}m{rest}s"
