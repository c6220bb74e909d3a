"""A userspace NFS client mounted with FUSE, for nodes whose kernel has no NFS client.

``python -m kubelite.agent.nfsfuse [-o ro] SERVER:PATH MOUNTPOINT`` connects to the NFSv4
server with `nfs-rs` (a maintained userspace NFSv3/v4.x client), checks that PATH is a
directory there, then serves it at MOUNTPOINT through libfuse 3 (via `mfusepy`), in the
foreground, until the mount point is unmounted or the process gets SIGTERM. It prints
``ready`` on stdout once the kernel has the mount; on a failure before that it prints the
reason on stderr and exits 32, mount(8)'s "mount failure" status, so that the agent reports
it as the kubelet reports a failed ``mount -t nfs``.

The client connects to the server's NFSv4 pseudo-root and reaches the export through it:
nfs-rs looks the export's own root up by the name "." (which NFSv4 servers answer with
NFS4ERR_BADNAME, nfs-ganesha among them), while every path below the root works.

Every request goes to the server as AUTH_SYS root; the kernel checks the caller's
permissions against the file modes first (``default_permissions``), and ``allow_other``
lets containers running as any user in.
"""

from __future__ import annotations

import argparse
import errno
import logging
import socket
import stat
import sys
import time
from typing import Any

log = logging.getLogger("kubelite.agent.nfsfuse")

MOUNT_FAILURE = 32  # mount(8): "mount failure"
NFS_VERSIONS = ["4.1", "4.0"]
CONNECT_TIMEOUT = 10.0
OPERATION_TIMEOUT = 60.0

_TYPE_BITS = {"file": stat.S_IFREG, "directory": stat.S_IFDIR, "symlink": stat.S_IFLNK,
              "block_device": stat.S_IFBLK, "character_device": stat.S_IFCHR, "fifo": stat.S_IFIFO,
              "socket": stat.S_IFSOCK}


def split_source(source: str) -> tuple[str, str]:
    """``server:/path`` (a bracketed IPv6 server too) -> (server, /path)."""
    if source.startswith("["):
        host, _, rest = source[1:].partition("]")
        path = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, path = source.rpartition(":")
    if not host or not path.startswith("/"):
        raise ValueError(f"bad NFS source {source!r}: want server:/path")
    return host, path


def server_url(host: str) -> str:
    return f"nfs://[{host}]/" if ":" in host else f"nfs://{host}/"


def errno_of(exc: BaseException) -> int:
    """The errno a FUSE reply carries for an nfs-rs (or any) exception."""
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code > 0:
        return code
    for cls, code in ((FileNotFoundError, errno.ENOENT), (FileExistsError, errno.EEXIST),
                      (PermissionError, errno.EACCES), (IsADirectoryError, errno.EISDIR),
                      (NotADirectoryError, errno.ENOTDIR), (TimeoutError, errno.ETIMEDOUT),
                      (NotImplementedError, errno.ENOSYS), (ConnectionError, errno.EIO)):
        if isinstance(exc, cls):
            return code
    text = str(exc).lower()
    for words, code in (("not empty", errno.ENOTEMPTY), ("read-only", errno.EROFS), ("no space", errno.ENOSPC),
                        ("permission", errno.EACCES), ("access", errno.EACCES), ("name too long", errno.ENAMETOOLONG),
                        ("stale", errno.ESTALE), ("quota", errno.EDQUOT)):
        if words in text:
            return code
    return errno.EIO


def stat_of(info: Any) -> dict[str, Any]:
    """An nfs-rs FileInfo as the stat(2) dict mfusepy fills in (times in ns: use_ns)."""
    kind = getattr(info.type, "value", str(info.type))
    return {"st_mode": _TYPE_BITS.get(kind, 0) | (info.mode & 0o7777), "st_nlink": info.nlink,
            "st_uid": info.uid, "st_gid": info.gid, "st_size": info.size, "st_blocks": (info.used + 511) // 512,
            "st_ino": info.fileid, "st_atime": info.atime, "st_mtime": info.mtime, "st_ctime": info.ctime,
            "st_blksize": 4096}


class NfsOperations:
    """The FUSE operations over one nfs-rs client; paths are mapped below the export."""

    use_ns = True  # utimens and st_*time in nanoseconds

    def __init__(self, client: Any, export: str, on_ready: Any = None, connect_export: Any = None) -> None:
        self.client = client
        self.export = export.strip("/")
        self.on_ready = on_ready
        # the pseudo-root's FSSTAT describes the pseudo file system (all zeros): capacity comes
        # from a second client on the export itself, made when first asked
        self._connect_export = connect_export
        self._export_client: Any = None
        self._files: dict[int, Any] = {}
        self._next_fh = 1

    def _p(self, path: str) -> str:
        rel = path.strip("/")
        return f"{self.export}/{rel}" if rel else self.export

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from mfusepy import FuseOSError

        try:
            return fn(*args, **kwargs)
        except FuseOSError:
            raise
        except Exception as exc:
            raise FuseOSError(errno_of(exc)) from exc

    # -- lifecycle
    def init(self, path: str) -> None:
        if self.on_ready is not None:
            self.on_ready()

    def destroy(self, path: str) -> None:
        for f in self._files.values():
            try:
                f.close()
            except Exception as exc:  # the server may be gone: nothing left to save
                log.warning("closing an open file at unmount: %s", exc)
        self._files.clear()
        if self._export_client is not None:
            self._export_client.close()

    # -- metadata
    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        return stat_of(self._call(self.client.stat, self._p(path)))

    def readdir(self, path: str, fh: int) -> list[Any]:
        entries = self._call(lambda: list(self.client.scandir(self._p(path))))
        out: list[Any] = [".", ".."]
        out += [(e.name, stat_of(e.info), 0) for e in entries if e.name not in (".", "..")]
        return out

    def statfs(self, path: str) -> dict[str, int]:
        if self._export_client is None and self._connect_export is not None:
            self._export_client = self._call(self._connect_export)
        fs = self._call((self._export_client or self.client).fs_stat)
        bs = 4096
        return {"f_bsize": bs, "f_frsize": bs, "f_blocks": fs.total_bytes // bs, "f_bfree": fs.free_bytes // bs,
                "f_bavail": fs.available_bytes // bs, "f_files": fs.total_files, "f_ffree": fs.free_files,
                "f_favail": fs.available_files, "f_namemax": 255}

    def chmod(self, path: str, mode: int) -> int:
        self._call(self.client.chmod, self._p(path), mode & 0o7777)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        self._call(self.client.chown, self._p(path), uid, gid)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        if times is None:
            now = time.time_ns()
            times = (now, now)
        self._call(self.client.utime, self._p(path), ns=(int(times[0]), int(times[1])))
        return 0

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        f = self._files.get(fh) if fh else None
        if f is not None and f.writable():
            self._call(f.truncate, length)
        else:
            self._call(self.client.truncate, self._p(path), length)
        return 0

    # -- names
    def mkdir(self, path: str, mode: int) -> int:
        self._call(self.client.mkdir, self._p(path), mode & 0o7777)
        return 0

    def rmdir(self, path: str) -> int:
        self._call(self.client.rmdir, self._p(path))
        return 0

    def unlink(self, path: str) -> int:
        self._call(self.client.unlink, self._p(path))
        return 0

    def rename(self, old: str, new: str) -> int:
        self._call(self.client.rename, self._p(old), self._p(new))
        return 0

    def symlink(self, target: str, source: str) -> int:
        # mfusepy: ``target`` is the new link, ``source`` what it points to (ln -s source target)
        self._call(self.client.symlink, source, self._p(target))
        return 0

    def link(self, target: str, source: str) -> int:
        self._call(self.client.link, self._p(source), self._p(target))
        return 0

    def readlink(self, path: str) -> str:
        return str(self._call(self.client.readlink, self._p(path)))

    # -- files
    def _keep(self, f: Any) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self._files[fh] = f
        return fh

    def open(self, path: str, flags: int) -> int:
        import os

        mode = "rb" if (flags & os.O_ACCMODE) == os.O_RDONLY else "r+b"
        return self._keep(self._call(self.client.open, self._p(path), mode))

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        f = self._call(self.client.open, self._p(path), "w+b")
        try:
            self._call(self.client.chmod, self._p(path), mode & 0o7777)
        except Exception:
            f.close()
            raise
        return self._keep(f)

    def _file(self, fh: int) -> Any:
        from mfusepy import FuseOSError

        f = self._files.get(fh)
        if f is None:
            raise FuseOSError(errno.EBADF)
        return f

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return bytes(self._call(self._file(fh).read_at, offset, size))

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        return int(self._call(self._file(fh).write_at, data, offset))

    def flush(self, path: str, fh: int) -> int:
        self._call(self._file(fh).flush)
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        return self.flush(path, fh)

    def release(self, path: str, fh: int) -> int:
        f = self._files.pop(fh, None)
        if f is not None:
            self._call(f.close)
        return 0


def _client(url: str, versions: list[str]) -> Any:
    from nfs_rs import Client

    return Client.connect(url, versions=versions, connect_timeout=CONNECT_TIMEOUT,
                          operation_timeout=OPERATION_TIMEOUT)


def connect(host: str, export: str, versions: list[str]) -> Any:
    """An nfs-rs client on the server's pseudo-root, the export checked to be a directory there."""
    client = _client(server_url(host), versions)
    try:
        rel = export.strip("/")
        if not rel:
            raise ValueError("the server's NFSv4 pseudo-root itself cannot be mounted: name an export below it")
        info = client.stat(rel)
        if getattr(info.type, "value", "") != "directory":
            raise NotADirectoryError(export)
    except BaseException:
        client.close()
        raise
    return client


def versions_of(opts: set[str]) -> list[str]:
    """The NFS versions to try for mount options ``ro``/``rw`` and ``nfsvers=``/``vers=``
    (4, 4.0, 4.1); any other option is refused (ValueError) rather than silently ignored."""
    versions = list(NFS_VERSIONS)
    for o in opts:
        key, _, value = o.partition("=")
        if o in ("ro", "rw"):
            continue
        if key in ("nfsvers", "vers") and value in ("4", "4.0", "4.1"):
            versions = NFS_VERSIONS if value == "4" else [value]
            continue
        raise ValueError(o)
    return versions


def mount_error(source: str, host: str, exc: BaseException) -> str:
    """What mount.nfs prints for the same failure, so that both clients read alike."""
    text = str(exc).lower()
    if isinstance(exc, socket.gaierror) or "lookup address" in text:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else "Name or service not known"
        return f"mount.nfs: Failed to resolve server {host}: {reason}"
    if isinstance(exc, ConnectionRefusedError) or "connection refused" in text:
        return "mount.nfs: Connection refused"
    if isinstance(exc, TimeoutError) or "timed out" in text:
        return "mount.nfs: Connection timed out"
    if isinstance(exc, FileNotFoundError):
        return f"mount.nfs: mounting {source} failed, reason given by server: No such file or directory"
    if isinstance(exc, NotADirectoryError):
        return f"mount.nfs: mounting {source} failed, reason given by server: Not a directory"
    if isinstance(exc, PermissionError):
        return f"mount.nfs: access denied by server while mounting {source}"
    return f"mount.nfs: {source}: {exc}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="kubelite-nfs-fuse", description=__doc__.splitlines()[0])
    ap.add_argument("-o", dest="options", default="", help="mount options: ro")
    ap.add_argument("source", help="server:/path")
    ap.add_argument("mountpoint")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    opts = {o for o in a.options.split(",") if o}
    try:
        versions = versions_of(opts)
    except ValueError as exc:
        # mount.nfs's answer to an option it does not know
        print(f"mount.nfs: an incorrect mount option was specified ({exc})", file=sys.stderr)
        return MOUNT_FAILURE
    try:
        host, export = split_source(a.source)
    except ValueError as exc:
        print(f"mount.nfs: {exc}", file=sys.stderr)
        return MOUNT_FAILURE
    try:
        socket.getaddrinfo(host, 2049, type=socket.SOCK_STREAM)
        client = connect(host, export, versions)
    except Exception as exc:
        log.debug("mounting %s: %r", a.source, exc)
        print(mount_error(a.source, host, exc), file=sys.stderr)
        return MOUNT_FAILURE

    mounted = False

    def ready() -> None:
        nonlocal mounted
        mounted = True
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        sys.stdout.close()

    try:
        from mfusepy import FUSE

        ops = NfsOperations(client, export, ready, lambda: _client(server_url(host) + export.strip("/"), versions))
        FUSE(ops, a.mountpoint, foreground=True, nothreads=True, allow_other=True,
             default_permissions=True, ro="ro" in opts, fsname=a.source, subtype="nfs")
    except Exception as exc:
        if mounted:  # libfuse's loop ends with an error code when SIGTERM stops it: a clean end
            log.info("%s: FUSE session ended: %s", a.mountpoint, exc)
            return 0
        print(f"mount.nfs: {a.source}: FUSE: {exc}", file=sys.stderr)
        return MOUNT_FAILURE
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
