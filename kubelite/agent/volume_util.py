"""What the kubelet does to volumes beyond mounting them: fsGroup ownership
(pkg/volume/volume_linux.go SetVolumeOwnership), safe subPath bind mounts
(pkg/volume/util/subpath/subpath_linux.go PrepareSafeSubpath / SafeMakeDir), and the disk
usage the eviction manager compares with an emptyDir's sizeLimit (pkg/volume/util/fs DiskUsage)."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
from pathlib import Path

RW_MASK = 0o660
RO_MASK = 0o440
EXEC_MASK = 0o110


class SubPathError(Exception):
    """A subPath that cannot be prepared safely (the detail stays in the log, as upstream)."""


def requires_permission_change(root: str, fs_group: int, readonly: bool) -> bool:
    """requiresPermissionChange: the OnRootMismatch test — the root's group, its setgid bit
    and a superset of the permissions the volume needs."""
    try:
        st = os.stat(root)
    except OSError:
        return True
    if st.st_gid != fs_group or not stat.S_ISDIR(st.st_mode):
        return True
    want = (RO_MASK if readonly else RW_MASK) | EXEC_MASK
    return (st.st_mode & 0o777 & want) != want or not st.st_mode & stat.S_ISGID


def set_volume_ownership(root: str, fs_group: int | None, readonly: bool, policy: str | None = None) -> None:
    """SetVolumeOwnership: every file of the volume gets group ``fs_group`` and rw (ro for a
    read-only volume) group permissions, directories also x and setgid, symlinks only the
    group. ``policy`` OnRootMismatch skips a volume whose root is already right; the kubelet
    passes no policy (Always) for emptyDir, configMap, secret, downwardAPI and projected."""
    if fs_group is None:
        return
    if policy == "OnRootMismatch" and not requires_permission_change(root, fs_group, readonly):
        return
    mask = RO_MASK if readonly else RW_MASK
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames, None]:
            p = dirpath if name is None else os.path.join(dirpath, name)
            if name is not None and name in dirnames and not os.path.islink(p):
                continue  # a directory is handled when os.walk enters it
            try:
                st = os.lstat(p)
                os.lchown(p, -1, fs_group)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):
                continue
            m = st.st_mode & 0o7777 | mask
            if stat.S_ISDIR(st.st_mode):
                m |= stat.S_ISGID | EXEC_MASK
            with contextlib.suppress(OSError):
                os.chmod(p, m)


def _open_beneath(base: str, sub: str) -> int:
    """doSafeOpen: open ``base/sub`` one component at a time with O_NOFOLLOW, so no symlink
    (planted by a container) can lead outside ``base``. Returns an O_PATH fd."""
    fd = os.open(base, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in Path(sub).parts:
            if part in ("", "."):
                continue
            if part == "..":
                raise SubPathError(f"path {sub!r} has a '..' component")
            nfd = os.open(part, os.O_PATH | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise SubPathError(f"{sub!r} contains a symlink")
        return fd
    except BaseException:
        os.close(fd)
        raise


def safe_make_dir(base: str, sub: str, mode: int) -> None:
    """SafeMakeDir: create the missing directories of ``sub`` under ``base`` without following
    symlinks; each new directory gets the volume root's mode (so fsGroup access holds)."""
    fd = os.open(base, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in Path(sub).parts:
            if part in ("", "."):
                continue
            if part == "..":
                raise SubPathError(f"path {sub!r} has a '..' component")
            try:
                os.mkdir(part, mode & 0o7777, dir_fd=fd)
                created = True
            except FileExistsError:
                created = False
            nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
            if created:
                os.chmod(fd, mode & 0o7777)
    except OSError as exc:
        raise SubPathError(str(exc)) from exc
    finally:
        os.close(fd)


def prepare_safe_subpath(volume_path: str, sub: str, target: Path) -> str:
    """PrepareSafeSubpath: bind-mount ``volume_path/sub`` (opened safely) onto ``target``
    (``<pod dir>/volume-subpaths/<volume>/<container>/<index>``) and return ``target``: the
    runtime then mounts a path that cannot be swapped for a symlink afterwards."""
    # doBindSubPath: symlinks are resolved first and the result must stay within the volume;
    # then it is opened component by component, so nothing can be swapped in meanwhile
    base = os.path.realpath(volume_path)
    resolved = os.path.realpath(os.path.join(volume_path, sub))
    if resolved != base and not resolved.startswith(base + "/"):
        raise SubPathError(f"subpath {resolved!r} not within volume path {base!r}")
    try:
        fd = _open_beneath(base, os.path.relpath(resolved, base))
    except OSError as exc:
        raise SubPathError(str(exc)) from exc
    try:
        st = os.fstat(fd)
        if is_mount(target):
            cur = os.stat(target)
            if (cur.st_dev, cur.st_ino) == (st.st_dev, st.st_ino):
                return str(target)  # bound before (a restarted container)
            subprocess.run(["umount", str(target)], capture_output=True)
        is_dir = stat.S_ISDIR(st.st_mode)
        target.parent.mkdir(parents=True, exist_ok=True)
        if is_dir:
            target.mkdir(exist_ok=True)
        elif not target.exists():
            target.touch()
        r = subprocess.run(["mount", "--no-canonicalize", "--bind", f"/proc/{os.getpid()}/fd/{fd}", str(target)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise SubPathError(r.stderr.strip() or "bind mount failed")
    finally:
        os.close(fd)
    return str(target)


def is_mount(path: str | Path) -> bool:
    """Whether ``path`` is a mount point (of this mount namespace)."""
    target = str(path)
    try:
        with open("/proc/self/mounts") as f:
            return any(len(parts := line.split()) > 1 and parts[1].replace("\\040", " ") == target for line in f)
    except OSError:
        return False


def disk_usage(root: str) -> int:
    """Bytes a directory tree occupies on disk (blocks, each inode once, one filesystem), as
    the kubelet's ``du``-like DiskUsage measures an emptyDir."""
    total = 0
    seen: set[tuple[int, int]] = set()
    try:
        dev = os.lstat(root).st_dev
    except OSError:
        return 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [".", *filenames, *dirnames]:
            p = dirpath if name == "." else os.path.join(dirpath, name)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if st.st_dev != dev:
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += st.st_blocks * 512
    return total
