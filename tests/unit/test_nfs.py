"""NFS volumes: the agent's mount logic (kubelite/agent/nfs.py) and the FUSE client's
operations (kubelite/agent/nfsfuse.py) over a fake nfs-rs client. The real mounts, against
nfs-ganesha, are in tests/e2e/test_nfs.py."""

from __future__ import annotations

import errno
import socket
import stat
import subprocess
from dataclasses import dataclass, field

import pytest

from kubelite.agent import nfs as nfsmod
from kubelite.agent import nfsfuse
from kubelite.agent.nfs import NfsMountError, NfsVolumes
from kubelite.agent.volumes import Mounted, VolumeError, VolumeManager


def test_split_source():
    assert nfsfuse.split_source("my.nfs.server.local:/exports") == ("my.nfs.server.local", "/exports")
    assert nfsfuse.split_source("10.0.0.5:/a/b") == ("10.0.0.5", "/a/b")
    assert nfsfuse.split_source("[fd00::1]:/exports") == ("fd00::1", "/exports")
    assert nfsfuse.server_url("fd00::1") == "nfs://[fd00::1]/"
    for bad in ("server", "server:exports", ":/exports"):
        with pytest.raises(ValueError):
            nfsfuse.split_source(bad)


def test_errno_of():
    class WithErrno(Exception):
        errno = errno.ENOSPC

    assert nfsfuse.errno_of(WithErrno()) == errno.ENOSPC
    assert nfsfuse.errno_of(FileNotFoundError("x")) == errno.ENOENT
    assert nfsfuse.errno_of(FileExistsError("x")) == errno.EEXIST
    assert nfsfuse.errno_of(RuntimeError("NFS4 error: directory not empty")) == errno.ENOTEMPTY
    assert nfsfuse.errno_of(RuntimeError("something odd")) == errno.EIO


def test_mount_options():
    assert nfsfuse.versions_of(set()) == ["4.1", "4.0"]
    assert nfsfuse.versions_of({"ro", "nfsvers=4.0"}) == ["4.0"]
    assert nfsfuse.versions_of({"vers=4"}) == ["4.1", "4.0"]
    for bad in ("nfsvers=3", "soft", "timeo=600"):
        with pytest.raises(ValueError):
            nfsfuse.versions_of({bad})


def test_mount_errors_read_as_mount_nfs_writes_them():
    src = "127.9.9.9:/exports"
    gai = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert nfsfuse.mount_error("my.nfs.server.local:/exports", "my.nfs.server.local", gai) == (
        "mount.nfs: Failed to resolve server my.nfs.server.local: Name or service not known")
    assert nfsfuse.mount_error(src, "127.9.9.9", ConnectionRefusedError("Connection refused (os error 111)")) == (
        "mount.nfs: Connection refused")
    assert nfsfuse.mount_error(src, "127.9.9.9", TimeoutError("deadline")) == "mount.nfs: Connection timed out"
    assert nfsfuse.mount_error(src, "127.9.9.9", FileNotFoundError("NFS4 error: no such file or directory")) == (
        "mount.nfs: mounting 127.9.9.9:/exports failed, reason given by server: No such file or directory")
    assert nfsfuse.mount_error(src, "127.9.9.9", PermissionError("x")) == (
        "mount.nfs: access denied by server while mounting 127.9.9.9:/exports")


@dataclass
class Info:
    path: str
    type: str
    mode: int = 0o644
    nlink: int = 1
    uid: int = 0
    gid: int = 0
    size: int = 0
    used: int = 0
    fsid: int = 1
    fileid: int = 7
    atime: int = 1
    mtime: int = 2
    ctime: int = 3


@dataclass
class Entry:
    name: str
    info: Info


@dataclass
class FakeFile:
    data: bytearray = field(default_factory=bytearray)
    closed: bool = False

    def read_at(self, offset, size):
        return bytes(self.data[offset:offset + size])

    def write_at(self, data, offset):
        self.data[offset:offset + len(data)] = data
        return len(data)

    def writable(self):
        return True

    def truncate(self, size):
        del self.data[size:]

    def flush(self):
        pass

    def close(self):
        self.closed = True


class FakeClient:
    def __init__(self):
        self.files = {"exports/hi.txt": FakeFile(bytearray(b"hello"))}
        self.dirs = {"exports"}
        self.calls = []

    def stat(self, p):
        self.calls.append(("stat", p))
        if p in self.dirs:
            return Info(p, "directory", 0o755, 2)
        if p in self.files:
            return Info(p, "file", size=len(self.files[p].data))
        raise FileNotFoundError(p)

    def scandir(self, p):
        kids = [k for k in [*self.files, *self.dirs] if k.rsplit("/", 1)[0] == p and k != p]
        return [Entry(k.rsplit("/", 1)[1], self.stat(k)) for k in kids]

    def open(self, p, mode):
        if "w" in mode:
            self.files[p] = FakeFile()
        return self.files[p]

    def chmod(self, p, mode):
        self.calls.append(("chmod", p, mode))

    def mkdir(self, p, mode):
        self.dirs.add(p)


def test_operations_map_paths_below_the_export():
    c = FakeClient()
    ops = nfsfuse.NfsOperations(c, "/exports")
    root = ops.getattr("/")
    assert stat.S_ISDIR(root["st_mode"]) and root["st_mode"] & 0o7777 == 0o755
    f = ops.getattr("/hi.txt")
    assert stat.S_ISREG(f["st_mode"]) and f["st_size"] == 5 and f["st_mtime"] == 2
    assert [e if isinstance(e, str) else e[0] for e in ops.readdir("/", 0)] == [".", "..", "hi.txt"]
    fh = ops.open("/hi.txt", 0)
    assert ops.read("/hi.txt", 3, 1, fh) == b"ell"
    ops.release("/hi.txt", fh)
    fh = ops.create("/new.txt", 0o640)
    assert ("chmod", "exports/new.txt", 0o640) in c.calls
    assert ops.write("/new.txt", b"abc", 0, fh) == 3
    ops.release("/new.txt", fh)
    assert c.files["exports/new.txt"].data == b"abc" and c.files["exports/new.txt"].closed
    ops.mkdir("/d", 0o755)
    assert "exports/d" in c.dirs
    from mfusepy import FuseOSError

    with pytest.raises(FuseOSError) as ei:
        ops.getattr("/absent")
    assert ei.value.errno == errno.ENOENT


def test_failed_mount_wording_and_backoff(tmp_path, monkeypatch):
    vols = NfsVolumes(kernel=True)
    runs = []

    def fake_run(argv, **kw):
        runs.append(argv)
        return subprocess.CompletedProcess(argv, 32, "", "mount.nfs: Connection refused\n")

    monkeypatch.setattr(nfsmod.subprocess, "run", fake_run)
    pod_dir = tmp_path / "pods" / "uid1"
    target = pod_dir / "volumes" / "kubernetes.io~nfs" / "kuard-data"
    with pytest.raises(NfsMountError) as ei:
        vols.setup(pod_dir, "kuard-data", {"server": "127.9.9.9", "path": "/exports", "readOnly": True})
    assert str(ei.value) == ("mount failed: exit status 32\nMounting command: mount\n"
                             f"Mounting arguments: -t nfs -o ro 127.9.9.9:/exports {target}\n"
                             "Output: mount.nfs: Connection refused\n")
    assert ei.value.report and ei.value.retry_after == nfsmod.RETRY_INITIAL
    assert runs == [["mount", "-t", "nfs", "-o", "ro", "127.9.9.9:/exports", str(target)]]
    # within the back-off: no new attempt, no new event
    with pytest.raises(NfsMountError) as ei:
        vols.setup(pod_dir, "kuard-data", {"server": "127.9.9.9", "path": "/exports", "readOnly": True})
    assert not ei.value.report and 0 < ei.value.retry_after <= nfsmod.RETRY_INITIAL and len(runs) == 1
    # the next attempt doubles the delay
    key = str(target)
    vols._failed_at[key] -= 1
    with pytest.raises(NfsMountError) as ei:
        vols.setup(pod_dir, "kuard-data", {"server": "127.9.9.9", "path": "/exports"})
    assert ei.value.report and ei.value.retry_after == 2 * nfsmod.RETRY_INITIAL and len(runs) == 2
    assert "-o" not in runs[1]
    # a volume manager with a back-off of its own for every plugin: every call is an attempt
    plain = NfsVolumes(kernel=True, backoff=False)
    for _ in range(2):
        with pytest.raises(NfsMountError) as ei:
            plain.setup(pod_dir, "kuard-data", {"server": "127.9.9.9", "path": "/exports"})
        assert ei.value.report
    assert len(runs) == 4
    # a PersistentVolume's mountOptions join "ro" as the plugin joins them: unique, sorted
    with pytest.raises(NfsMountError):
        plain.setup(pod_dir, "pv-1", {"server": "s", "path": "/e"}, read_only=True,
                    mount_options=["nfsvers=4.1", "ro"])
    assert runs[-1][:4] == ["mount", "-t", "nfs", "-o"] and runs[-1][4] == "nfsvers=4.1,ro"


async def test_volume_manager_reports_failed_mount(tmp_path, monkeypatch):
    vm = VolumeManager(tmp_path)
    vm.nfs = NfsVolumes(kernel=True, backoff=False)
    monkeypatch.setattr(nfsmod.subprocess, "run", lambda argv, **kw: subprocess.CompletedProcess(argv, 32, "", "no"))
    pod = {"metadata": {"uid": "u1", "namespace": "default", "name": "p"},
           "spec": {"volumes": [{"name": "kuard-data", "nfs": {"server": "s", "path": "/exports"}}]}}
    with pytest.raises(VolumeError) as ei:
        await vm.setup(pod, None)
    assert str(ei.value).startswith('MountVolume.SetUp failed for volume "kuard-data" : mount failed: exit status 32')


def test_read_only_source_makes_container_mounts_read_only(tmp_path):
    vm = VolumeManager(tmp_path)
    pod = {"metadata": {"uid": "u1"}, "spec": {"volumes": [
        {"name": "ro", "nfs": {"server": "s", "path": "/e", "readOnly": True}},
        {"name": "rw", "nfs": {"server": "s", "path": "/e"}}]}}
    ct = {"name": "c", "volumeMounts": [{"name": "ro", "mountPath": "/a"}, {"name": "rw", "mountPath": "/b"}]}
    got = vm.mounts_for(pod, ct, {"ro": Mounted("/h/ro", True), "rw": Mounted("/h/rw", False)})
    assert [(m[0], m[1], m[2]) for m in got] == [("/h/ro", "/a", True), ("/h/rw", "/b", False)]


def test_teardown_ends_only_our_fuse_process(tmp_path):
    """A PID file whose process is not our FUSE client (PID reused) is left alone."""
    vols = NfsVolumes(kernel=False)
    pod_dir = tmp_path / "pods" / "u2"
    state = pod_dir / "plugins" / "kubernetes.io~nfs" / "v"
    state.mkdir(parents=True)
    (pod_dir / "volumes" / "kubernetes.io~nfs" / "v").mkdir(parents=True)
    other = subprocess.Popen(["sleep", "30"])
    try:
        (state / "fuse.pid").write_text(f"{other.pid}\n")
        vols.teardown(pod_dir)
        assert other.poll() is None  # not ours: not signalled
        assert not state.exists()
    finally:
        other.kill()
        other.wait()


def test_kernel_nfs_available_needs_mount_nfs(monkeypatch):
    monkeypatch.setattr(nfsmod.shutil, "which", lambda name, path=None: None)
    assert nfsmod.kernel_nfs_available() is False


def test_uninstall_purge_refuses_a_data_dir_with_mounts(tmp_path):
    """`kubelite uninstall --purge` never removes a tree with a mount in it (an NFS export's
    files would go with it)."""
    from kubelite.cli.uninstall import mounts_under, uninstall

    d = tmp_path / "data" / "pods" / "u" / "volumes" / "kubernetes.io~nfs" / "v"
    d.mkdir(parents=True)
    (d / "precious").write_text("x")
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(d)], check=True)
    try:
        (d / "precious").write_text("on the mount")
        assert mounts_under(tmp_path / "data") == [str(d)]
        code, out = uninstall(tmp_path / "data", purge=True)
        assert code == 1 and "still mounted under" in out[0]
        assert (d / "precious").read_text() == "on the mount"
    finally:
        subprocess.run(["umount", str(d)], check=True)
    assert mounts_under(tmp_path / "data") == []
