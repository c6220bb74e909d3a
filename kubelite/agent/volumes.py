"""Pod volumes and per-pod host directories.

``<data_dir>/pods/<uid>/volumes/kubernetes.io~empty-dir/<name>`` (tmpfs for medium Memory),
hostPath with the kubelet's type checks, configMap/secret as files, and per-container
termination-message files under ``<data_dir>/pods/<uid>/containers/<name>/``, and projected
volumes (service-account tokens, configMap, secret, downwardAPI; see agent/projected.py) on a
per-pod tmpfs, kept fresh by a background refresher (tokens at 80% of their lifetime).

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
from pathlib import Path
from typing import Any

from kubelite.agent import projected
from kubelite.agent.cgroups import bytes_of
from kubelite.agent.nfs import NfsMountError, NfsVolumes

log = logging.getLogger("kubelite.agent.volumes")
Obj = dict[str, Any]


class VolumeError(Exception):
    """A volume that cannot be set up (reported as a FailedMount event). ``retry_after``: a
    mount that is retried with back-off, the pod left ContainerCreating meanwhile (``report``:
    a new failure rather than one still backing off)."""

    def __init__(self, message: str, retry_after: float | None = None, report: bool = True) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.report = report


def _hostpath_check(path: str, typ: str) -> None:
    """hostPath type checks (pkg/volume/hostpath checkType), creating for the *OrCreate types."""
    p = Path(path)
    if typ in ("", None):
        return
    if typ == "DirectoryOrCreate":
        if not p.exists():
            p.mkdir(mode=0o755, parents=True)
        elif not p.is_dir():
            raise VolumeError(f"hostPath type check failed: {path} is not a directory")
    elif typ == "Directory":
        if not p.exists():
            raise VolumeError(f"hostPath type check failed: {path} is not a directory")
        if not p.is_dir():
            raise VolumeError(f"hostPath type check failed: {path} is not a directory")
    elif typ == "FileOrCreate":
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
            os.close(fd)
        elif not p.is_file():
            raise VolumeError(f"hostPath type check failed: {path} is not a file")
    elif typ == "File":
        if not p.exists() or not p.is_file():
            raise VolumeError(f"hostPath type check failed: {path} is not a file")
    else:
        checks = {"Socket": (stat.S_ISSOCK, "socket file"), "CharDevice": (stat.S_ISCHR, "character device"),
                  "BlockDevice": (stat.S_ISBLK, "block device")}
        if typ not in checks:
            raise VolumeError(f"hostPath type check failed: unsupported type {typ}")
        fn, what = checks[typ]
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            raise VolumeError(f"hostPath type check failed: {path} is not a {what}") from None
        if not fn(mode):
            raise VolumeError(f"hostPath type check failed: {path} is not a {what}")


def _is_mount(path: Path) -> bool:
    target = str(path)
    try:
        for line in Path("/proc/self/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 1 and parts[1].replace("\\040", " ") == target:
                return True
    except OSError:
        pass
    return False


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
        self.nfs = NfsVolumes()

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

    async def setup(self, pod: Obj, fetch: Any) -> dict[str, str]:
        """Make every volume of the pod; returns {volume name: host path}. ``fetch(kind, ns,
        name)`` reads configmaps/secrets. Raises :class:`VolumeError`."""
        uid = pod["metadata"]["uid"]
        ns = pod["metadata"].get("namespace", "default")
        out: dict[str, str] = {}
        for v in pod.get("spec", {}).get("volumes") or []:
            name = v.get("name", "")
            if "emptyDir" in v:
                d = self.pod_dir(uid) / "volumes" / "kubernetes.io~empty-dir" / name
                d.mkdir(parents=True, exist_ok=True)
                ed = v.get("emptyDir") or {}
                if ed.get("medium") == "Memory" and not _is_mount(d):
                    opts = "mode=0777"
                    if ed.get("sizeLimit"):
                        opts += f",size={bytes_of(ed['sizeLimit'])}"
                    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(d)],
                                       capture_output=True, text=True)
                    if r.returncode != 0:
                        raise VolumeError(f"MountVolume.SetUp failed for volume \"{name}\" : {r.stderr.strip()}")
                else:
                    os.chmod(d, 0o777)
                out[name] = str(d)
            elif "hostPath" in v:
                hp = v["hostPath"] or {}
                try:
                    _hostpath_check(hp.get("path", ""), hp.get("type") or "")
                except OSError as exc:
                    raise VolumeError(f"MountVolume.SetUp failed for volume \"{name}\" : {exc}") from exc
                except VolumeError as exc:
                    raise VolumeError(f"MountVolume.SetUp failed for volume \"{name}\" : {exc}") from None
                out[name] = hp.get("path", "")
            elif "configMap" in v or "secret" in v:
                kind = "configmaps" if "configMap" in v else "secrets"
                src = v.get("configMap") or v.get("secret") or {}
                obj_name = src.get("name") if kind == "configmaps" else src.get("secretName")
                obj = await fetch(kind, ns, obj_name or "")
                plugin = "kubernetes.io~configmap" if kind == "configmaps" else "kubernetes.io~secret"
                d = self.pod_dir(uid) / "volumes" / plugin / name
                if obj is None and not src.get("optional"):
                    what = "configmap" if kind == "configmaps" else "secret"
                    raise VolumeError(f"MountVolume.SetUp failed for volume \"{name}\" : "
                                      f"{what} \"{obj_name}\" not found")
                self._write_files(d, obj or {}, kind, src)
                out[name] = str(d)
            elif "projected" in v:
                d = self._projected_dir(uid, name)
                with self._projected_lock:
                    self._projected[uid] = (pod, fetch)
                try:
                    await self._materialize(pod, v, fetch, initial=True)
                except projected.ProjectionError as exc:
                    raise VolumeError(f"MountVolume.SetUp failed for volume \"{name}\" : {exc}") from None
                except OSError as exc:
                    raise VolumeError(f"MountVolume.SetUp failed for volume \"{name}\" : {exc}") from exc
                self._ensure_refresher()
                out[name] = str(d)
            elif "nfs" in v:
                out[name] = await self.setup_nfs(uid, name, v.get("nfs") or {})
            else:
                # unsupported volume sources get an empty directory so containers can start
                d = self.pod_dir(uid) / "volumes" / "kubernetes.io~empty-dir" / name
                d.mkdir(parents=True, exist_ok=True)
                out[name] = str(d)
        return out

    async def mount_network_volumes(self, pod: Obj) -> None:
        """Mount the pod's volumes that live on another machine (nfs) — the kubelet's
        WaitForAttachAndMount, before the sandbox: a pod whose export cannot be mounted gets
        no sandbox and pulls no image. :meth:`setup` finds them mounted. Raises
        :class:`VolumeError`."""
        uid = pod["metadata"]["uid"]
        for v in (pod.get("spec") or {}).get("volumes") or []:
            if "nfs" in v:
                await self.setup_nfs(uid, v.get("name", ""), v.get("nfs") or {})

    async def setup_nfs(self, uid: str, name: str, source: Obj, read_only: bool = False,
                        mount_options: list[str] | None = None) -> str:
        """Mount an NFS source (a pod volume's ``nfs``, or an NFS PersistentVolume's
        ``spec.nfs`` under the PV's name, with its ``spec.mountOptions``) for pod ``uid``;
        returns the host path. Raises :class:`VolumeError` (retried with back-off)."""
        try:
            return await asyncio.to_thread(self.nfs.setup, self.pod_dir(uid), name, source, read_only, mount_options)
        except NfsMountError as exc:
            raise VolumeError(f"MountVolume.SetUp failed for volume \"{name}\" : {exc}", exc.retry_after,
                              exc.report) from None

    # ------------------------------------------------------------------ projected volumes
    def track(self, pod: Obj, fetch: Any) -> None:
        """Keep the projected volumes of a pod whose sandbox exists fresh with this version of
        the pod. A pod the refresher does not know yet is adopted when all its projected
        volumes are mounted already (set up by an earlier agent): re-projected at once, with
        new tokens. A known pod whose labels or annotations changed is re-projected at once
        (downwardAPI items). Cheap enough for every sync."""
        vols = [v for v in (pod.get("spec") or {}).get("volumes") or [] if "projected" in v]
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
        dirs = [self._projected_dir(uid, v.get("name", "")) for v in vols]
        if not all(d.is_dir() for d in dirs) or not all(_is_mount(d) for d in dirs):
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

    async def _materialize(self, pod: Obj, volume: Obj, fetch: Any, initial: bool) -> float | None:
        """Write one projected volume; returns when its token must be refreshed (or None)."""
        uid = pod["metadata"]["uid"]
        d = self._projected_dir(uid, volume.get("name", ""))
        if initial:
            d.mkdir(parents=True, exist_ok=True)
            if not _is_mount(d):
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
                    if "projected" not in v:
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

    def mounts_for(self, pod: Obj, container: Obj, volume_paths: dict[str, str]) -> list[tuple[str, str, bool]]:
        """(host path, container path, read only) for each volumeMount, subPath made."""
        out = []
        # a volume the source makes read-only (nfs readOnly) is read-only in every container
        forced_ro = {v.get("name") for v in (pod.get("spec") or {}).get("volumes") or []
                     if isinstance(v.get("nfs"), dict) and v["nfs"].get("readOnly")}
        for vm in container.get("volumeMounts") or []:
            host = volume_paths.get(vm.get("name", ""))
            if host is None:
                raise VolumeError(f"cannot find volume \"{vm.get('name')}\" to mount into container "
                                  f"\"{container.get('name')}\"")
            sub = vm.get("subPath") or ""
            if sub:
                if sub.startswith("/") or ".." in Path(sub).parts:
                    raise VolumeError(f"subPath \"{sub}\" must be a relative path without '..'")
                target = Path(host) / sub
                if not target.exists():
                    target.mkdir(parents=True, mode=0o755)
                host = str(target)
            out.append((host, vm.get("mountPath", ""), bool(vm.get("readOnly")) or vm.get("name") in forced_ro))
        return out

    def teardown(self, uid: str) -> None:
        """Unmount and delete everything under the pod dir (volumes, termination files)."""
        with self._projected_lock:
            self._projected.pop(uid, None)
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
