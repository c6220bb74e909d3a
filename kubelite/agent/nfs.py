"""NFS volumes (pkg/volume/nfs): a pod's ``nfs`` volume, or an NFS PersistentVolume.

The volume is mounted at ``<pod dir>/volumes/kubernetes.io~nfs/<name>`` (``name`` is the pod
volume's name, or the PV's for a claim) and bind-mounted into the containers from there.
Where the kernel has an NFS client, that is ``mount -t nfs [-o ro] server:path dir``, as the
kubelet does. Where it has none, but FUSE works, :mod:`kubelite.agent.nfsfuse` serves the
export there (one process per pod volume, its PID kept under ``<pod dir>/plugins/`` so that a
restarted agent still ends it); it is unmounted and ended when the pod goes.

A failed mount is reported in the kubelet's words (mount-utils' ``mount failed: exit status
32\\nMounting command: ...``) and retried with the volume manager's exponential back-off
(500 ms doubling to 2m2s, per volume); while it backs off the pod stays ContainerCreating.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from kubelite.agent.backoff import Backoff

log = logging.getLogger("kubelite.agent.nfs")
Obj = dict[str, Any]

PLUGIN_DIR = "kubernetes.io~nfs"
FUSE_MODULE = "kubelite.agent.nfsfuse"
MOUNT_TIMEOUT = 45.0  # the FUSE client's connect (10 s) and first look-ups, with room to spare
STOP_TIMEOUT = 5.0
# pkg/volume/util/nestedpendingoperations: initialDurationBeforeRetry, maxDurationBeforeRetry
RETRY_INITIAL = 0.5
RETRY_MAX = 122.0
GONE_KEPT = 4096


class NfsMountError(Exception):
    """A mount that failed (``report``: a new failure, worth an event) and may be tried again
    in ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float, report: bool = True) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.report = report


def kernel_nfs_available() -> bool:
    """Whether ``mount -t nfs`` can work here: mount.nfs (nfs-common) and an NFS client in
    the kernel, built in or as a module it can load."""
    if shutil.which("mount.nfs", path=f"{os.environ.get('PATH', os.defpath)}:/sbin:/usr/sbin") is None:
        return False
    try:
        fs = Path("/proc/filesystems").read_text().split()
    except OSError:
        fs = []
    if "nfs" in fs or "nfs4" in fs:
        return True
    return any(Path("/lib/modules", platform.release(), "kernel/fs/nfs").glob("nfs.ko*"))


def _mounted(target: Path) -> bool:
    t = str(target)
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return False
    return any(len(p := ln.split()) > 1 and p[1].replace("\\040", " ") == t for ln in lines)


def _mount_failed(err: str, command: str, args: list[str], output: str) -> str:
    """mount-utils' doMount error (the kubelet's FailedMount text after ``SetUp failed ... : ``)."""
    return (f"mount failed: {err}\nMounting command: {command}\nMounting arguments: {' '.join(args)}\n"
            f"Output: {output}")


class NfsVolumes:
    """Mounts and unmounts the NFS volumes of a node's pods. ``backoff``: keep the retry
    back-off here (False for a caller whose volume manager keeps one for every plugin)."""

    def __init__(self, kernel: bool | None = None, python: str = sys.executable, backoff: bool = True) -> None:
        self.kernel = kernel_nfs_available() if kernel is None else kernel
        self.python = python
        self.use_backoff = backoff
        self.backoff = Backoff(RETRY_INITIAL, RETRY_MAX)
        self._failed_at: dict[str, float] = {}
        self._last_error: dict[str, str] = {}
        self._children: dict[str, subprocess.Popen] = {}  # target -> the FUSE process we started
        # one lock per pod dir: a tear-down waits for a mount under way (in a thread nobody can
        # cancel) rather than leave the mount it makes behind
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        # pod dirs torn down (oldest first, a bounded memory): a mount that was waiting for
        # the lock then is refused, not made in a pod dir about to be removed
        self._gone: dict[str, None] = {}

    def _lock(self, pod_dir: Path) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(str(pod_dir), threading.Lock())

    @staticmethod
    def volume_dir(pod_dir: Path, name: str) -> Path:
        return Path(pod_dir) / "volumes" / PLUGIN_DIR / name

    @staticmethod
    def _state_dir(pod_dir: Path, name: str) -> Path:
        return Path(pod_dir) / "plugins" / PLUGIN_DIR / name

    # ------------------------------------------------------------------ set-up
    def setup(self, pod_dir: Path, name: str, source: Obj, read_only: bool = False,
              mount_options: list[str] | None = None) -> str:
        """Mount ``source`` (a pod volume's or a PV's ``nfs``: server, path, readOnly) for the
        volume ``name`` of the pod whose dir is ``pod_dir``; returns the host path.
        ``mount_options``: a PersistentVolume's ``spec.mountOptions``. Blocking. Raises
        :class:`NfsMountError`."""
        with self._lock(pod_dir):
            return self._setup(Path(pod_dir), name, source, read_only, mount_options or [])

    def _setup(self, pod_dir: Path, name: str, source: Obj, read_only: bool, mount_options: list[str]) -> str:
        if str(pod_dir) in self._gone:
            raise NfsMountError("the pod's volumes were torn down", RETRY_MAX, report=False)
        target = self.volume_dir(pod_dir, name)
        key = str(target)
        if _mounted(target):
            try:
                os.stat(target)
                return key
            except OSError as exc:  # a FUSE client that died leaves "not connected": mount anew
                if exc.errno not in (errno.ENOTCONN, errno.EIO, errno.ESTALE):
                    raise NfsMountError(str(exc), RETRY_INITIAL) from exc
                log.warning("NFS volume %s is mounted but unusable (%s): mounting it again", key, exc)
                self._unmount(target, self._state_dir(pod_dir, name))
        failed = self._failed_at.get(key)
        if self.use_backoff and failed is not None and self.backoff.is_in_backoff_since(key, failed):
            raise NfsMountError(self._last_error.get(key, "mount failed"), self.backoff.remaining(key, failed),
                                report=False)
        ro = read_only or bool(source.get("readOnly"))
        # the nfs plugin's JoinMountOptions(mountOptions, ["ro"]): unique and sorted
        options = sorted({*mount_options, *(["ro"] if ro else [])})
        spec = f"{source.get('server', '')}:{source.get('path', '')}"
        target.mkdir(parents=True, exist_ok=True)
        try:
            if self.kernel:
                self._mount_kernel(spec, target, options)
            else:
                self._mount_fuse(spec, target, options, self._state_dir(pod_dir, name))
        except NfsMountError as exc:
            with contextlib.suppress(OSError):
                target.rmdir()  # as the plugin cleans up the mount point of a failed mount
            now = time.time()
            self._failed_at[key] = now
            self._last_error[key] = str(exc)
            raise NfsMountError(str(exc), self.backoff.next(key, now)) from None
        self.backoff.reset(key)
        self._failed_at.pop(key, None)
        self._last_error.pop(key, None)
        log.info("mounted NFS %s at %s (%s client%s)", spec, key, "kernel" if self.kernel else "FUSE",
                 f", -o {','.join(options)}" if options else "")
        return key

    def _mount_kernel(self, spec: str, target: Path, options: list[str]) -> None:
        args = ["-t", "nfs", *(["-o", ",".join(options)] if options else []), spec, str(target)]
        try:
            r = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=MOUNT_TIMEOUT * 4)
        except subprocess.TimeoutExpired as exc:
            raise NfsMountError(_mount_failed("signal: killed", "mount", args, str(exc.output or "")),
                                RETRY_INITIAL) from None
        if r.returncode != 0:
            raise NfsMountError(_mount_failed(f"exit status {r.returncode}", "mount", args, r.stdout + r.stderr),
                                RETRY_INITIAL)

    def _mount_fuse(self, spec: str, target: Path, options: list[str], state: Path) -> None:
        args = [*(["-o", ",".join(options)] if options else []), spec, str(target)]
        command = f"{self.python} -m {FUSE_MODULE}"
        state.mkdir(parents=True, exist_ok=True)
        err_path = state / "fuse.log"
        with open(err_path, "wb") as err:
            proc = subprocess.Popen([self.python, "-m", FUSE_MODULE, *args], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=err, start_new_session=True)
        assert proc.stdout is not None
        (state / "fuse.pid").write_text(f"{proc.pid}\n")
        line = b""
        deadline = time.monotonic() + MOUNT_TIMEOUT
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
                if ready:
                    line = proc.stdout.readline()
                    break
        finally:
            proc.stdout.close()
        if line.strip() == b"ready" and _mounted(target):
            self._children[str(target)] = proc
            return
        with contextlib.suppress(subprocess.TimeoutExpired):  # stdout at EOF: it is on its way out
            proc.wait(max(0.1, min(STOP_TIMEOUT, deadline - time.monotonic())))
        if proc.poll() is None:  # no answer in time: end it (the mount, if any, first)
            self._stop(proc.pid, target, proc)
            status = "signal: killed"
            output = f"no answer within {MOUNT_TIMEOUT:.0f}s"
        else:
            proc.wait()
            status = f"exit status {proc.returncode}"
            output = ""
        with contextlib.suppress(OSError):
            # the client's stderr as mount-utils passes mount's output on: as it is
            output = err_path.read_text(errors="replace") + (f"{output}\n" if output else "")
        with contextlib.suppress(OSError):
            (state / "fuse.pid").unlink()
        raise NfsMountError(_mount_failed(status, command, args, output), RETRY_INITIAL)

    # ------------------------------------------------------------------ tear-down
    def teardown(self, pod_dir: Path) -> None:
        """Unmount every NFS volume of the pod and end the FUSE processes it had. Blocking."""
        with self._lock(pod_dir):
            vols = Path(pod_dir) / "volumes" / PLUGIN_DIR
            states = Path(pod_dir) / "plugins" / PLUGIN_DIR
            names = {p.name for d in (vols, states) if d.is_dir() for p in d.iterdir()}
            for name in sorted(names):
                target = vols / name
                self._unmount(target, states / name)
                key = str(target)
                self.backoff.reset(key)
                self._failed_at.pop(key, None)
                self._last_error.pop(key, None)
            self._gone[str(pod_dir)] = None
            while len(self._gone) > GONE_KEPT:
                del self._gone[next(iter(self._gone))]
        with self._locks_guard:
            self._locks.pop(str(pod_dir), None)

    def _unmount(self, target: Path, state: Path) -> None:
        if _mounted(target):
            r = subprocess.run(["umount", str(target)], capture_output=True, text=True)
            if r.returncode != 0:
                log.warning("umount %s: %s; detaching it", target, r.stderr.strip())
                subprocess.run(["umount", "-l", str(target)], capture_output=True)
        proc = self._children.pop(str(target), None)
        pid = proc.pid if proc is not None else _read_pid(state / "fuse.pid")
        if pid is not None:
            self._stop(pid, target, proc)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(state)

    def _stop(self, pid: int, target: Path, proc: subprocess.Popen | None) -> None:
        """End the FUSE process ``pid`` serving ``target``: it leaves by itself once unmounted;
        SIGTERM, then SIGKILL, if it does not."""
        if proc is None and not _is_our_fuse(pid, target):
            return  # gone, or the PID now belongs to someone else
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            if _wait_gone(pid, proc, STOP_TIMEOUT):
                break
        if _mounted(target):
            subprocess.run(["umount", "-l", str(target)], capture_output=True)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _is_our_fuse(pid: int, target: Path) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return FUSE_MODULE.encode() in argv and str(target).encode() in argv


def _wait_gone(pid: int, proc: subprocess.Popen | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    if proc is not None:
        try:
            proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    while time.monotonic() < deadline:
        try:
            st = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True
        if st.rsplit(")", 1)[-1].split()[0] == "Z":
            return True  # exited; its parent (not us) reaps it
        time.sleep(0.05)
    return False
