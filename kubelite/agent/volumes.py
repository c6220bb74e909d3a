"""Pod volumes and per-pod host directories: the kubelet's volume manager and plugins.

Each volume source is one :class:`VolumePlugin` in :data:`PLUGINS` (emptyDir, hostPath with the
kubelet's type checks, configMap, secret, downwardAPI, projected, nfs, persistentVolumeClaim);
a source without a plugin is refused, never replaced. :meth:`VolumeManager.mount_pod` is the
reconcile the pod worker runs before the sandbox (WaitForAttachAndMount): SetUp failures are
retried with the operation executor's back-off. Volumes live under
``<data_dir>/pods/<uid>/volumes/<plugin dir>/<name>``, subPath binds under
``<data_dir>/pods/<uid>/volume-subpaths/``, termination-message files under
``<data_dir>/pods/<uid>/containers/<name>/``. Projected and downwardAPI volumes
(service-account tokens, configMap, secret, downwardAPI; see agent/projected.py) are a per-pod
tmpfs kept fresh by a background refresher (tokens at 80% of their lifetime).

The refresher learns a pod when its volumes are set up, and from :meth:`VolumeManager.track`,
which each sync of a pod that already has a sandbox calls: that adopts the pods an earlier
agent set up (their tmpfs mounts survive an agent restart; like the kubelet's remount after a
restart, their tokens are requested anew at once) and hands the refresher the pod's current
labels and annotations, so downwardAPI files follow them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from cri_api.v1 import api_pb2 as cri

from kubelite.agent import projected, pvcvolume, volume_util
from kubelite.agent.backoff import Backoff
from kubelite.agent.cgroups import bytes_of
from kubelite.agent.nfs import NfsMountError, NfsVolumes
from kubelite.agent.podenv import expand
from kubelite.kinds.storage import PV_SOURCES  # the volume sources a PersistentVolume's spec may carry

log = logging.getLogger("kubelite.agent.volumes")
Obj = dict[str, Any]


def _hostpath_check(path: str, typ: str) -> None:
    """hostPath type checks (pkg/volume/hostpath checkType), creating for the *OrCreate types."""
    p = Path(path)
    if typ in ("", None):
        return
    if typ == "DirectoryOrCreate":
        if not p.exists():
            p.mkdir(mode=0o755, parents=True)
        elif not p.is_dir():
            raise SetUpError(f"hostPath type check failed: {path} is not a directory")
    elif typ == "Directory":
        if not p.exists():
            raise SetUpError(f"hostPath type check failed: {path} is not a directory")
        if not p.is_dir():
            raise SetUpError(f"hostPath type check failed: {path} is not a directory")
    elif typ == "FileOrCreate":
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
            os.close(fd)
        elif not p.is_file():
            raise SetUpError(f"hostPath type check failed: {path} is not a file")
    elif typ == "File":
        if not p.exists() or not p.is_file():
            raise SetUpError(f"hostPath type check failed: {path} is not a file")
    else:
        checks = {"Socket": (stat.S_ISSOCK, "socket file"), "CharDevice": (stat.S_ISCHR, "character device"),
                  "BlockDevice": (stat.S_ISBLK, "block device")}
        if typ not in checks:
            raise SetUpError(f"hostPath type check failed: unsupported type {typ}")
        fn, what = checks[typ]
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            raise SetUpError(f"hostPath type check failed: {path} is not a {what}") from None
        if not fn(mode):
            raise SetUpError(f"hostPath type check failed: {path} is not a {what}")


def _is_projection(volume: Obj) -> bool:
    return "projected" in volume or "downwardAPI" in volume


def _as_projected(volume: Obj) -> Obj:
    """A downwardAPI volume is a projected volume with one downwardAPI source."""
    if "downwardAPI" not in volume:
        return volume
    src = volume.get("downwardAPI") or {}
    proj: Obj = {"sources": [{"downwardAPI": {"items": src.get("items") or []}}]}
    if src.get("defaultMode") is not None:
        proj["defaultMode"] = src["defaultMode"]
    return {"name": volume.get("name", ""), "projected": proj}


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    out = []
    try:
        for line in Path("/proc/self/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 1:
                mp = parts[1].replace("\\040", " ")
                if mp.startswith(prefix) or mp == str(path):
                    out.append(mp)
    except OSError:
        pass
    return sorted(out, key=len, reverse=True)


class VolumeError(Exception):
    """A volume mount that cannot be made for one container (subPath, a missing volume):
    the container's CreateContainerConfigError."""


class SetUpError(Exception):
    """A plugin's SetUp failed: the FailedMount event ``MountVolume.SetUp failed for volume
    "<volume>" : <message>``; the mount is retried with back-off. ``volume`` names the volume
    spec when it is not the pod's volume (the PersistentVolume behind a claim)."""

    def __init__(self, message: str, volume: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.volume = volume


class SpecError(Exception):
    """The volume cannot be processed at all (no plugin for its source, an unusable claim):
    the populator's pod error, reported in ``Unable to attach or mount volumes: ...``."""


EMPTY_DIR = "kubernetes.io~empty-dir"
CONFIG_MAP_DIR = "kubernetes.io~configmap"
SECRET_DIR = "kubernetes.io~secret"
DOWNWARD_API_DIR = "kubernetes.io~downward-api"
NFS_DIR = "kubernetes.io~nfs"
READ_ONLY_DIRS = frozenset({CONFIG_MAP_DIR, SECRET_DIR, DOWNWARD_API_DIR, projected.PLUGIN_DIR})
MOUNT_BACKOFF_INITIAL = 0.5  # nestedpendingoperations: initialDurationBeforeRetry
MOUNT_BACKOFF_MAX = 122.0  # maxDurationBeforeRetry (2m2s)
NFS_MOUNT_TIMEOUT = 180.0


@dataclass(frozen=True)
class Mounted:
    """A volume set up on the node: where it is, and whether its plugin mounts it read-only
    (configMap, secret, downwardAPI and projected always; nfs and claims when asked)."""

    path: str
    readonly: bool = False


@dataclass
class VolumeContext:
    """What a plugin's SetUp gets: the manager (pod dirs, tokens), the pod, its volume, and
    ``fetch(kind, namespace, name)`` to read API objects."""

    manager: VolumeManager
    pod: Obj
    volume: Obj
    fetch: Any

    @property
    def name(self) -> str:
        return str(self.volume.get("name", ""))

    @property
    def uid(self) -> str:
        return str(self.pod["metadata"]["uid"])

    @property
    def namespace(self) -> str:
        return str(self.pod["metadata"].get("namespace", "default"))

    @property
    def fs_group(self) -> int | None:
        g = ((self.pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup")
        return g if isinstance(g, int) and not isinstance(g, bool) else None

    def dir(self, plugin_dir: str) -> Path:
        return self.manager.volume_dir(self.uid, plugin_dir, self.name)


@dataclass(frozen=True)
class VolumePlugin:
    """One volume source: ``setup`` makes the volume (idempotent) and returns it; raises
    :class:`SetUpError` or :class:`SpecError`. ``refresh``: re-run before containers start,
    so the files follow their API object."""

    setup: Callable[[VolumeContext], Awaitable[Mounted]]
    refresh: bool = False


async def _empty_dir(ctx: VolumeContext) -> Mounted:
    d = ctx.dir(EMPTY_DIR)
    ed = ctx.volume.get("emptyDir") or {}
    medium = ed.get("medium") or ""
    if medium not in ("", "Memory"):
        raise SetUpError(f"unknown storage medium \"{medium}\"")  # hugepages: none on this node
    new = not d.exists()
    d.mkdir(parents=True, exist_ok=True)
    if medium == "Memory" and not volume_util.is_mount(d):
        new = True
        opts = "mode=0777"
        if ed.get("sizeLimit") and bytes_of(ed["sizeLimit"]) > 0:
            opts += f",size={bytes_of(ed['sizeLimit'])}"
        await _mount(["-t", "tmpfs", "-o", opts, "tmpfs", str(d)])
    if new:
        os.chmod(d, 0o777)
        # the kubelet changes ownership once, when it makes the volume (no fsGroupChangePolicy)
        await asyncio.to_thread(volume_util.set_volume_ownership, str(d), ctx.fs_group, False)
    return Mounted(str(d))


async def _host_path(ctx: VolumeContext) -> Mounted:
    hp = ctx.volume.get("hostPath") or {}
    try:
        _hostpath_check(hp.get("path", ""), hp.get("type") or "")
    except OSError as exc:
        raise SetUpError(str(exc)) from exc
    return Mounted(hp.get("path", ""))


async def _config_map_or_secret(ctx: VolumeContext) -> Mounted:
    is_cm = "configMap" in ctx.volume
    kind = "configmaps" if is_cm else "secrets"
    src = ctx.volume.get("configMap" if is_cm else "secret") or {}
    obj_name = src.get("name") if is_cm else src.get("secretName")
    obj = await ctx.fetch(kind, ctx.namespace, obj_name or "")
    if obj is None and not src.get("optional"):
        raise SetUpError(f"{'configmap' if is_cm else 'secret'} \"{obj_name}\" not found")
    d = ctx.dir(CONFIG_MAP_DIR if is_cm else SECRET_DIR)
    VolumeManager._write_files(d, obj or {}, kind, src)
    await asyncio.to_thread(volume_util.set_volume_ownership, str(d), ctx.fs_group, True)
    return Mounted(str(d), readonly=True)


async def _projected_or_downward_api(ctx: VolumeContext) -> Mounted:
    m = ctx.manager
    d = m._projected_dir_for(ctx.uid, ctx.volume)
    with m._projected_lock:
        m._projected[ctx.uid] = (ctx.pod, ctx.fetch)
    try:
        await m._materialize(ctx.pod, ctx.volume, ctx.fetch, initial=True)
    except projected.ProjectionError as exc:
        raise SetUpError(str(exc)) from None
    m._ensure_refresher()
    return Mounted(str(d), readonly=True)


async def _nfs(ctx: VolumeContext) -> Mounted:
    """The kubelet's nfs plugin (agent/nfs.py): ``mount -t nfs`` with the node's kernel client
    where it has one, else a userspace NFSv4 client over FUSE; the error is the mounter's
    (``mount failed: exit status 32`` + command + output). A PersistentVolume's
    ``mountOptions`` come with its source."""
    src = ctx.volume.get("nfs") or {}
    ro = bool(src.get("readOnly"))
    try:
        path = await asyncio.to_thread(ctx.manager.nfs.setup, ctx.manager.pod_dir(ctx.uid), ctx.name, src, ro,
                                       list(ctx.volume.get("mountOptions") or []))
    except NfsMountError as exc:
        raise SetUpError(str(exc)) from None
    return Mounted(path, ro)


async def _local(ctx: VolumeContext) -> Mounted:
    """A ``local`` PersistentVolume: the path must exist on this node (its nodeAffinity put
    the pod here)."""
    src = ctx.volume.get("local") or {}
    path = str(src.get("path") or "")
    if not Path(path).exists():
        raise SetUpError(f"path {path!r} does not exist")
    return Mounted(path, bool(src.get("readOnly")))


async def _persistent_volume_claim(ctx: VolumeContext) -> Mounted:
    """The populator's createVolumeSpec for a claim: the claim must exist, not be deleted and
    be Bound to a PersistentVolume that names it; the PV's source is then mounted by its
    plugin (a volume spec named after the PV)."""
    src = ctx.volume.get("persistentVolumeClaim") or {}
    claim = src.get("claimName", "")
    where = f"error processing PVC {ctx.namespace}/{claim}"
    pvc = await ctx.fetch("persistentvolumeclaims", ctx.namespace, claim)
    if pvc is None:
        raise SpecError(f"{where}: failed to fetch PVC from API server: persistentvolumeclaims \"{claim}\" not found")
    if (pvc.get("metadata") or {}).get("deletionTimestamp"):
        raise SpecError(f"{where}: PVC is being deleted")
    if (pvc.get("status") or {}).get("phase") != "Bound":
        raise SpecError(f"{where}: PVC is not bound")
    pv_name = (pvc.get("spec") or {}).get("volumeName") or ""
    if not pv_name:
        raise SpecError(f"{where}: PVC has empty pvc.Spec.VolumeName")
    pv = await ctx.fetch("persistentvolumes", "", pv_name)
    if pv is None:
        raise SpecError(f"{where}: failed to fetch PV {pv_name} from API server: "
                        f"persistentvolumes \"{pv_name}\" not found")
    ref = (pv.get("spec") or {}).get("claimRef")
    if not ref:
        raise SpecError(f"{where}: found PV object {pv_name} but it has a nil pv.Spec.ClaimRef indicating it is "
                        "not yet bound to the claim")
    claim_uid = (pvc.get("metadata") or {}).get("uid", "")
    if ref.get("uid") != claim_uid:
        raise SpecError(f"{where}: found PV object {pv_name} but its pv.Spec.ClaimRef.UID {ref.get('uid', '')} "
                        f"does not point to claim.UID {claim_uid}")
    spec = pv.get("spec") or {}
    mode = spec.get("volumeMode") or "Filesystem"
    mounted, mapped = _mounted_and_mapped(ctx.pod, ctx.name)
    # createVolumeSpec: the claim's mode must be how the containers use it
    if mounted and mode != "Filesystem":
        raise SpecError(f"volume {ctx.name} has volumeMode {mode}, but is specified in volumeMounts")
    if mapped and mode != "Block":
        raise SpecError(f"volume {ctx.name} has volumeMode {mode}, but is specified in volumeDevices")
    if mapped:  # no plugin here maps a block device into a container (FindMapperPluginBySpec)
        raise SpecError(f"failed to get Plugin from volumeSpec for volume \"{pv_name}\" err=no volume plugin matched")
    inner = {"name": pv_name, **{k: v for k, v in spec.items() if k in PV_SOURCES}}
    if spec.get("mountOptions"):
        inner["mountOptions"] = list(spec["mountOptions"])
    ann = (pv.get("metadata") or {}).get("annotations") or {}
    if ann.get("pv.kubernetes.io/provisioned-by") == pvcvolume.LOCAL_PATH_PROVISIONER and "hostPath" in inner:
        # a local-path volume: its directory under this node's storage dir, made on first mount
        try:
            pvcvolume.local_path_dir(str((inner["hostPath"] or {}).get("path") or ""),
                                     pvcvolume.storage_dir(Path(ctx.manager.data_dir)))
        except OSError as exc:
            raise SetUpError(str(exc), pv_name) from None
    plugin = plugin_for(inner)
    if plugin is None:
        raise SpecError(f"failed to get Plugin from volumeSpec for volume \"{pv_name}\" err=no volume plugin matched")
    if src.get("readOnly"):
        for k in PV_SOURCES:
            if isinstance(inner.get(k), dict):
                inner[k] = {**inner[k], "readOnly": True}
    try:
        got = await plugin.setup(VolumeContext(ctx.manager, ctx.pod, inner, ctx.fetch))
    except SetUpError as exc:
        raise SetUpError(exc.message, exc.volume or pv_name) from None
    return Mounted(got.path, got.readonly or bool(src.get("readOnly")))


# The volume sources this node can provide: the key of the source in the Volume (or in a
# PersistentVolume's spec) -> its plugin. A source that is not here is refused ("no volume
# plugin matched"), never replaced by something else.
PLUGINS: dict[str, VolumePlugin] = {
    "emptyDir": VolumePlugin(_empty_dir),
    "hostPath": VolumePlugin(_host_path),
    "configMap": VolumePlugin(_config_map_or_secret, refresh=True),
    "secret": VolumePlugin(_config_map_or_secret, refresh=True),
    "projected": VolumePlugin(_projected_or_downward_api),
    "downwardAPI": VolumePlugin(_projected_or_downward_api),
    "nfs": VolumePlugin(_nfs),
    "persistentVolumeClaim": VolumePlugin(_persistent_volume_claim),
    "local": VolumePlugin(_local),
}


def plugin_for(volume: Obj) -> VolumePlugin | None:
    for key in volume:
        if key != "name" and key in PLUGINS:
            return PLUGINS[key]
    return None


def _mounted_and_mapped(pod: Obj, volume: str) -> tuple[bool, bool]:
    """Whether some container mounts the volume (volumeMounts), and whether one maps it as a
    block device (volumeDevices)."""
    spec = pod.get("spec") or {}
    containers = [c for key in ("initContainers", "containers", "ephemeralContainers") for c in spec.get(key) or []]
    return (any(m.get("name") == volume for c in containers for m in c.get("volumeMounts") or []),
            any(d.get("name") == volume for c in containers for d in c.get("volumeDevices") or []))


def pod_used_volumes(pod: Obj) -> list[Obj]:
    """The pod's volumes that some container (init, app or ephemeral) mounts or maps."""
    spec = pod.get("spec") or {}
    used: set[str] = set()
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            for m in (c.get("volumeMounts") or []) + (c.get("volumeDevices") or []):
                used.add(m.get("name", ""))
    return [v for v in spec.get("volumes") or [] if v.get("name") in used]


@dataclass
class MountOutcome:
    """One reconcile of a pod's volumes: what is mounted, the SetUp failures (each an event),
    the populator's pod errors, and when the earliest back-off ends."""

    volumes: dict[str, Mounted] = field(default_factory=dict)
    setup_failures: list[str] = field(default_factory=list)
    pod_errors: list[str] = field(default_factory=list)
    unmounted: list[str] = field(default_factory=list)
    not_processed: list[str] = field(default_factory=list)
    retry_in: float | None = None

    @property
    def ready(self) -> bool:
        return not self.unmounted

    def pod_error_message(self) -> str | None:
        """The kubelet's ``Unable to attach or mount volumes`` event (WaitForAttachAndMount's
        error), which it only records for the populator's errors (a plain timeout is not one)."""
        if not self.pod_errors:
            return None
        return (f"Unable to attach or mount volumes: unmounted volumes=[{' '.join(self.unmounted)}], "
                f"unattached volumes=[], failed to process volumes=[{' '.join(self.not_processed)}]: "
                + "; ".join(sorted(set(self.pod_errors))))


async def _mount(args: list[str], timeout: float = 60.0) -> None:
    """``mount ARGS`` as the kubelet's mounter runs it; a failure is its error text."""
    proc = await asyncio.create_subprocess_exec("mount", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise SetUpError(f"mount failed: exit status {proc.returncode}\nMounting command: mount\n"
                         f"Mounting arguments: {' '.join(args)}\nOutput: {out.decode(errors='replace')}")


class MountSpec(NamedTuple):
    """One CRI mount of a container."""

    host_path: str
    container_path: str
    readonly: bool = False
    propagation: cri.MountPropagation.ValueType = cri.PROPAGATION_PRIVATE
    recursive_read_only: bool = False


def resolve_recursive_read_only(vm: Obj, supports_rro: bool) -> bool:
    """resolveRecursiveReadOnly: Disabled (or unset) is a plain mount; IfPossible is recursive
    when the runtime can; Enabled fails when it cannot."""
    mode = vm.get("recursiveReadOnly") or "Disabled"
    if mode == "Disabled":
        return False
    name = vm.get("name", "")
    why = f"failed to resolve recursive read-only mode: volume \"{name}\" requested recursive read-only mode, but"
    if not vm.get("readOnly"):
        raise VolumeError(f"{why} it is not read-only")
    prop = vm.get("mountPropagation") or "None"
    if prop != "None":
        raise VolumeError(f"{why} it is not compatible with propagation \"{prop}\"")
    if mode == "IfPossible":
        return supports_rro
    if mode == "Enabled":
        if not supports_rro:
            raise VolumeError(f"{why} it is not supported by the runtime")
        return True
    raise VolumeError(f"failed to resolve recursive read-only mode: unknown recursive read-only mode \"{mode}\"")


PROPAGATION = {"None": cri.PROPAGATION_PRIVATE, "HostToContainer": cri.PROPAGATION_HOST_TO_CONTAINER,
               "Bidirectional": cri.PROPAGATION_BIDIRECTIONAL}


def needs_shared_pod_dir(pod: Obj) -> bool:
    """Whether a container mounts a volume with HostToContainer or Bidirectional propagation:
    the runtime then wants the volume on a shared (or slave) mount."""
    spec = pod.get("spec") or {}
    return any((m.get("mountPropagation") or "None") != "None"
               for key in ("initContainers", "containers", "ephemeralContainers")
               for c in spec.get(key) or [] for m in c.get("volumeMounts") or [])


class _MissingTracker(dict[str, str]):
    """expansion.Expand's mapping in ExpandContainerVolumeMounts: every reference resolves,
    an unset or empty variable to "" and is remembered as missing."""

    def __init__(self, env: Mapping[str, str]) -> None:
        super().__init__(env)
        self.missing: set[str] = set()

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> str:
        value = self.get(key, "")
        if not value:
            self.missing.add(key)
        return value


def expand_sub_path_expr(expr: str, env: Mapping[str, str]) -> str:
    """ExpandContainerVolumeMounts: ``$(VAR)`` from the container's environment; any unset
    or empty variable is an error naming them all."""
    m = _MissingTracker(env)
    out = expand(expr, m)
    if m.missing:
        raise VolumeError(f"missing value for {', '.join(sorted(m.missing))}")
    return out


def _min(a: float | None, b: float) -> float:
    return b if a is None else min(a, b)


PROJECTED_RESYNC_SECONDS = 60.0  # how often projected volumes are re-read (the kubelet's pod resync)


class VolumeManager:
    def __init__(self, data_dir: Path, client: Any = None) -> None:
        self.data_dir = Path(data_dir)
        self.pods_dir = self.data_dir / "pods"
        # projected volumes: the pods to keep fresh (uid -> (pod, fetch)), guarded against teardown
        # (which runs in a worker thread) by a lock
        self.tokens = projected.TokenManager(client)
        self._projected: dict[str, tuple[Obj, Any]] = {}
        self._projected_lock = threading.Lock()
        self._refresher: asyncio.Task | None = None
        self.resync_seconds = PROJECTED_RESYNC_SECONDS
        # pods to re-project now rather than at the next resync (adopted, or metadata changed)
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        # the actual state of the world: uid -> {volume name: mounted volume}
        self._mounted: dict[str, dict[str, Mounted]] = {}
        self._mount_backoff = Backoff(MOUNT_BACKOFF_INITIAL, MOUNT_BACKOFF_MAX)
        self._mount_tasks: dict[str, asyncio.Task[MountOutcome]] = {}  # uid -> the mounts under way
        self.nfs = NfsVolumes(backoff=False)  # the volume manager keeps the back-off

    def pod_dir(self, uid: str) -> Path:
        return self.pods_dir / uid

    def log_dir(self, pod: Obj) -> Path:
        m = pod["metadata"]
        return self.pods_dir / f"{m['namespace']}_{m['name']}_{m['uid']}"

    def container_dir(self, uid: str, container: str) -> Path:
        return self.pod_dir(uid) / "containers" / container

    def new_termination_file(self, uid: str, container: str) -> Path:
        d = self.container_dir(uid, container)
        d.mkdir(parents=True, exist_ok=True)
        p = d / os.urandom(4).hex()
        p.touch()
        os.chmod(p, 0o666)
        return p

    # ------------------------------------------------------------------ mounting (volumemanager)
    async def mount_pod(self, pod: Obj, fetch: Any, refresh: bool = False) -> MountOutcome:
        """The volume manager's reconcile for one pod: set up every volume its containers use
        (an unused one is skipped, as the kubelet's populator does) and is not mounted yet nor
        in its back-off. ``refresh`` re-runs the plugins that follow their source (configMap,
        secret) for volumes mounted already; a failed refresh keeps the mounted content.
        Nothing raises: what failed is in the outcome, for the FailedMount events."""
        uid = pod["metadata"]["uid"]
        out = MountOutcome()
        mounted = self._mounted.setdefault(uid, {})
        now = time.time()
        if needs_shared_pod_dir(pod):
            await self._make_rshared(self.pod_dir(uid))
        for v in pod_used_volumes(pod):
            name = v.get("name", "")
            have = mounted.get(name)
            plugin = plugin_for(v)
            if have is not None and not (refresh and plugin is not None and plugin.refresh):
                out.volumes[name] = have
                continue
            key = f"{uid}/{name}"
            e = self._mount_backoff._entries.get(key)
            if have is None and e is not None and now - e.last_update < e.backoff:
                out.unmounted.append(name)
                out.retry_in = _min(out.retry_in, e.backoff - (now - e.last_update))
                continue
            try:
                if plugin is None:
                    raise SpecError(f"failed to get Plugin from volumeSpec for volume \"{name}\" "
                                    "err=no volume plugin matched")
                got = await plugin.setup(VolumeContext(self, pod, v, fetch))
            except SpecError as exc:
                have = have or self._reconstructed(uid, name)
                if have is not None:
                    mounted[name] = out.volumes[name] = have
                    continue
                out.pod_errors.append(str(exc))
                out.not_processed.append(name)
                out.unmounted.append(name)
            except (SetUpError, OSError) as exc:
                msg = exc.message if isinstance(exc, SetUpError) else str(exc)
                vname = exc.volume if isinstance(exc, SetUpError) and exc.volume else name
                out.setup_failures.append(f"MountVolume.SetUp failed for volume \"{vname}\" : {msg}")
                have = have or self._reconstructed(uid, name)
                if have is not None:
                    mounted[name] = out.volumes[name] = have
                    continue
                delay = self._mount_backoff.next(key, now)
                out.unmounted.append(name)
                out.retry_in = _min(out.retry_in, delay)
            else:
                mounted[name] = got
                out.volumes[name] = got
                self._mount_backoff.reset(key)
        out.unmounted.sort()
        out.not_processed.sort()
        return out

    def _reconstructed(self, uid: str, name: str) -> Mounted | None:
        """reconstructVolume: a volume an earlier agent set up for this pod (its directory is
        still there: a mount point, or not empty) counts as mounted, so a source that went
        away since does not stop a running pod; it keeps the content it had."""
        base = self.pod_dir(uid) / "volumes"
        for d in sorted(base.glob(f"*/{name}")) if base.is_dir() else []:
            if volume_util.is_mount(d) or (d.is_dir() and any(d.iterdir())):
                return Mounted(str(d), readonly=d.parent.name in READ_ONLY_DIRS)
        return None

    async def reconcile(self, pod: Obj, fetch: Any, wait: float) -> MountOutcome | None:
        """:meth:`mount_pod` as the kubelet's reconciler runs it: in its own task, apart from
        the pod worker, which waits up to ``wait`` seconds and otherwise comes back later
        (None: still mounting) — so a slow mount never keeps a pod's deletion waiting."""
        uid = pod["metadata"]["uid"]
        task = self._mount_tasks.get(uid)
        if task is None:
            task = asyncio.create_task(self.mount_pod(pod, fetch), name=f"mount-volumes-{uid}")
            self._mount_tasks[uid] = task
        done, _ = await asyncio.wait({task}, timeout=wait)
        if not done:
            return None
        if self._mount_tasks.get(uid) is task:
            del self._mount_tasks[uid]
        return task.result()

    async def cancel_mounts(self, uid: str) -> None:
        """Stop a mount under way for a pod that goes (its mount process is killed)."""
        task = self._mount_tasks.pop(uid, None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def setup(self, pod: Obj, fetch: Any) -> dict[str, str]:
        """Mount every volume of the pod, used or not; {volume name: host path}. Raises
        :class:`VolumeError` with the first failure's event message."""
        uid = pod["metadata"]["uid"]
        out: dict[str, str] = {}
        for v in (pod.get("spec") or {}).get("volumes") or []:
            name = v.get("name", "")
            plugin = plugin_for(v)
            if plugin is None:
                raise VolumeError(f"failed to get Plugin from volumeSpec for volume \"{name}\" "
                                  "err=no volume plugin matched")
            try:
                got = await plugin.setup(VolumeContext(self, pod, v, fetch))
            except SpecError as exc:
                raise VolumeError(str(exc)) from None
            except SetUpError as exc:
                raise VolumeError(f"MountVolume.SetUp failed for volume \"{exc.volume or name}\" : "
                                  f"{exc.message}") from None
            except OSError as exc:
                raise VolumeError(f"MountVolume.SetUp failed for volume \"{name}\" : {exc}") from exc
            self._mounted.setdefault(uid, {})[name] = got
            out[name] = got.path
        return out

    async def _make_rshared(self, d: Path) -> None:
        """MakeRShared for one pod's dir, before its volumes are mounted: a bind mount of
        itself, made rshared, so HostToContainer / Bidirectional propagation reaches the
        containers (the kubelet does this to its whole root dir; teardown unmounts it)."""
        d.mkdir(parents=True, exist_ok=True)
        if volume_util.is_mount(d):
            return
        try:
            await _mount(["--bind", str(d), str(d)])
            await _mount(["--make-rshared", str(d)])
        except SetUpError as exc:
            log.warning("making %s a shared mount: %s", d, exc.message)

    def volume_dir(self, uid: str, plugin_dir: str, name: str) -> Path:
        return self.pod_dir(uid) / "volumes" / plugin_dir / name

    # ------------------------------------------------------------------ sizeLimit (eviction manager)
    def empty_dir_over_limit(self, pod: Obj) -> str | None:
        """localStorageEviction's emptyDir check: the eviction message for the first emptyDir
        whose usage exceeds its sizeLimit, or None. Runs in a thread (it walks the volumes)."""
        uid = pod["metadata"]["uid"]
        for v in (pod.get("spec") or {}).get("volumes") or []:
            ed = v.get("emptyDir")
            if not isinstance(ed, dict) or not ed.get("sizeLimit"):
                continue
            limit = bytes_of(ed["sizeLimit"])
            if limit <= 0:
                continue
            d = self.volume_dir(uid, EMPTY_DIR, v.get("name", ""))
            if d.is_dir() and volume_util.disk_usage(str(d)) > limit:
                return f"Usage of EmptyDir volume \"{v.get('name', '')}\" exceeds the limit \"{ed['sizeLimit']}\". "
        return None

    # ------------------------------------------------------------------ projected volumes
    def track(self, pod: Obj, fetch: Any) -> None:
        """Keep the projected volumes of a pod whose sandbox exists fresh with this version of
        the pod. A pod the refresher does not know yet is adopted when all its projected
        volumes are mounted already (set up by an earlier agent): re-projected at once, with
        new tokens. A known pod whose labels or annotations changed is re-projected at once
        (downwardAPI items). Cheap enough for every sync."""
        vols = [v for v in (pod.get("spec") or {}).get("volumes") or [] if _is_projection(v)]
        if not vols:
            return
        meta = pod["metadata"]
        uid = meta["uid"]
        with self._projected_lock:
            cur = self._projected.get(uid)
            if cur is not None:
                old = cur[0].get("metadata") or {}
                self._projected[uid] = (pod, fetch)
                if old.get("labels") == meta.get("labels") and old.get("annotations") == meta.get("annotations"):
                    return
                self._dirty.add(uid)
                self._wake.set()
                return
        dirs = [self._projected_dir_for(uid, v) for v in vols]
        if not all(d.is_dir() for d in dirs) or not all(volume_util.is_mount(d) for d in dirs):
            return  # not set up yet: setup() registers it
        with self._projected_lock:
            if uid in self._projected:
                return
            self._projected[uid] = (pod, fetch)
            self._dirty.add(uid)
        log.info("refreshing the projected volumes of running pod %s/%s (uid %s) set up before this agent started",
                 meta.get("namespace", ""), meta.get("name", ""), uid)
        self._wake.set()
        self._ensure_refresher()

    def tracked(self, uid: str) -> bool:
        with self._projected_lock:
            return uid in self._projected

    def _projected_dir(self, uid: str, name: str) -> Path:
        return self.pod_dir(uid) / "volumes" / projected.PLUGIN_DIR / name

    def _projected_dir_for(self, uid: str, volume: Obj) -> Path:
        plugin_dir = DOWNWARD_API_DIR if "downwardAPI" in volume else projected.PLUGIN_DIR
        return self.volume_dir(uid, plugin_dir, volume.get("name", ""))

    async def _materialize(self, pod: Obj, volume: Obj, fetch: Any, initial: bool) -> float | None:
        """Write one projected (or downwardAPI) volume; returns when its token must be
        refreshed (or None). Files get the pod's fsGroup, read-only."""
        uid = pod["metadata"]["uid"]
        d = self._projected_dir_for(uid, volume)
        volume = _as_projected(volume)
        if initial:
            d.mkdir(parents=True, exist_ok=True)
            if not volume_util.is_mount(d):
                r = subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(d)],
                                   capture_output=True, text=True)
                if r.returncode != 0:
                    raise OSError(r.stderr.strip() or "mounting tmpfs failed")
        payload, refresh = await projected.projected_payload(pod, volume, fetch, self.tokens)
        with self._projected_lock:
            # a pod torn down meanwhile (teardown runs in a thread) is not written again
            if uid not in self._projected or not d.is_dir():
                return None
            if projected.atomic_write(d, payload):
                log.debug("projected volume %s of pod %s updated", volume.get("name"), uid)
                fs_group = ((pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup")
                if isinstance(fs_group, int):
                    volume_util.set_volume_ownership(str(d), fs_group, True)
        return refresh

    def _ensure_refresher(self) -> None:
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.create_task(self._refresh_loop(), name="projected-volume-refresher")

    async def _refresh_loop(self) -> None:
        """Re-project every pod's projected volumes each resync, sooner when a token reaches
        80% of its lifetime (the kubelet's token manager + pod resync), and the pods
        :meth:`track` marks at once."""
        next_at = time.time() + self.resync_seconds
        while True:
            timeout = max(1.0, min(self.resync_seconds, next_at - time.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            full = time.time() >= next_at - 0.05  # (timers may fire a little early)
            with self._projected_lock:
                if full:
                    pods = list(self._projected.values())
                else:
                    pods = [self._projected[u] for u in self._dirty if u in self._projected]
                self._dirty.clear()
                live = set(self._projected)
            if full:
                for key in [k for k in self.tokens.cache if k[5] not in live]:
                    del self.tokens.cache[key]
                next_at = time.time() + self.resync_seconds
            for pod, fetch in pods:
                for v in (pod.get("spec") or {}).get("volumes") or []:
                    if not _is_projection(v):
                        continue
                    try:
                        at = await self._materialize(pod, v, fetch, initial=False)
                    except Exception as exc:  # keep the last good payload; try again next round
                        log.warning("refreshing projected volume %s of pod %s/%s: %s", v.get("name"),
                                    pod["metadata"].get("namespace"), pod["metadata"].get("name"), exc)
                        at = time.time() + 10
                    if at is not None:
                        next_at = min(next_at, at)

    async def close(self) -> None:
        for uid in list(self._mount_tasks):
            await self.cancel_mounts(uid)
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(BaseException):
                await self._refresher
            self._refresher = None

    @staticmethod
    def _write_files(d: Path, obj: Obj, kind: str, src: Obj) -> None:
        d.mkdir(parents=True, exist_ok=True)
        data: dict[str, bytes] = {}
        if kind == "secrets":
            data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        else:
            data = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
            data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        items = src.get("items")
        files = {it["path"]: data[it["key"]] for it in items if it.get("key") in data} if items else data
        mode = src.get("defaultMode", 0o644)
        for path, content in files.items():
            p = d / path
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_name("." + p.name + ".tmp")
            tmp.write_bytes(content)
            os.chmod(tmp, mode)
            os.replace(tmp, p)

    def mounts_for(self, pod: Obj, container: Obj, volumes: Mapping[str, Mounted],
                   env: Mapping[str, str] | None = None, supports_rro: bool = False) -> list[MountSpec]:
        """makeMounts: a mount for each volumeMount — read-only when the mount or the volume's
        plugin says so, recursively when asked and the runtime can (``supports_rro``),
        subPath (or subPathExpr expanded from the container's environment) made inside the
        volume and bind-mounted safely, and the mount propagation. Raises
        :class:`VolumeError` with the kubelet's message (CreateContainerConfigError)."""
        out: list[MountSpec] = []
        uid = pod["metadata"]["uid"]
        cname = container.get("name", "")
        for i, vm in enumerate(container.get("volumeMounts") or []):
            vname = vm.get("name", "")
            mv = volumes.get(vname)
            if mv is None:
                raise VolumeError(f"cannot find volume \"{vname}\" to mount into container \"{cname}\"")
            host = mv.path
            sub = vm.get("subPath") or ""
            if vm.get("subPathExpr"):
                sub = expand_sub_path_expr(vm["subPathExpr"], env or {})
            if sub:
                if os.path.isabs(sub):
                    raise VolumeError(f"error SubPath `{sub}` must not be an absolute path")
                if ".." in sub.split("/"):
                    raise VolumeError(f"unable to provision SubPath `{sub}`: must not contain '..'")
                target = os.path.join(host, sub)
                if not os.path.lexists(target):
                    try:
                        volume_util.safe_make_dir(host, sub, os.stat(host).st_mode)
                    except (OSError, volume_util.SubPathError) as exc:
                        log.warning("creating subPath %s of volume %s for container %s: %s", sub, vname, cname, exc)
                        raise VolumeError(f"failed to create subPath directory for volumeMount \"{vname}\" of "
                                          f"container \"{cname}\"") from None
                where = self.pod_dir(uid) / "volume-subpaths" / vname / cname / str(i)
                try:
                    host = volume_util.prepare_safe_subpath(host, sub, where)
                except (OSError, volume_util.SubPathError) as exc:
                    log.warning("preparing subPath %s of volume %s for container %s: %s", sub, vname, cname, exc)
                    raise VolumeError(f"failed to prepare subPath for volumeMount \"{vname}\" of container "
                                      f"\"{cname}\"") from None
            prop = PROPAGATION.get(vm.get("mountPropagation") or "None")
            if prop is None:
                raise VolumeError(f"invalid MountPropagation mode: \"{vm.get('mountPropagation')}\"")
            rro = resolve_recursive_read_only(vm, supports_rro)
            out.append(MountSpec(host, vm.get("mountPath", ""), bool(vm.get("readOnly")) or mv.readonly, prop, rro))
        return out

    def teardown(self, uid: str) -> None:
        """Unmount and delete everything under the pod dir (volumes, subPath binds,
        termination files) and forget the pod's mounts and their back-off."""
        with self._projected_lock:
            self._projected.pop(uid, None)
        self._mounted.pop(uid, None)
        for key in [k for k in self._mount_backoff._entries if k.startswith(f"{uid}/")]:
            self._mount_backoff.reset(key)
        d = self.pod_dir(uid)
        self.nfs.teardown(d)  # NFS first: a FUSE client is ended once its mount is gone
        for mp in _mounts_under(d):
            r = subprocess.run(["umount", mp], capture_output=True, text=True)
            if r.returncode != 0:
                subprocess.run(["umount", "-l", mp], capture_output=True)
        if left := _mounts_under(d):
            # removing the tree would walk into them (an NFS export's files would go with it)
            log.error("pod dir %s kept: %d mounts in it could not be unmounted, e.g. %s", d, len(left), left[0])
            return
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(d)

    def remove_logs(self, pod: Obj) -> None:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.log_dir(pod))

    def known_pod_dirs(self) -> list[str]:
        if not self.pods_dir.is_dir():
            return []
        return [p.name for p in self.pods_dir.iterdir() if p.is_dir() and "_" not in p.name]
