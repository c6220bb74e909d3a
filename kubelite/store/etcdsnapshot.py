"""Reading an etcd snapshot file (what `kubelite datastore snapshot save` writes on etcd: the
stream of etcd's Maintenance.Snapshot, a bbolt database with its sha256 appended).

Nothing but etcd reads its own format reliably, so the file is opened with etcd's own tools, as
etcd's documented restore does: ``etcdctl snapshot restore`` (which checks the hash) makes a
throw-away member data dir from it, and a throw-away single-member etcd on it, listening on
unix sockets inside a private temporary directory only (no port, nothing reachable from
outside), serves its keys to :func:`read_snapshot`; then it is stopped (by its PID) and the
directory removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import grpc
import grpc.aio
from aetcd import rpc

from kubelite.store.etcdwatch import _prefix_end

_NAME = "kubelite-restore"
_PEER = "unix://peer:0"  # etcd wants host:port; with cwd = the private temp dir this is the socket "peer:0"
_CLIENT = "unix://client:0"
_START_TIMEOUT = 30.0


class SnapshotReadError(Exception):
    pass


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SnapshotReadError(
            f"reading an etcd snapshot needs etcd's own tools, and `{name}` is not installed "
            "(Debian: apt-get install etcd-server etcd-client)")
    return path


def clean_env() -> dict[str, str]:
    """The environment without ETCD_* / ETCDCTL_* variables: etcd takes every flag from one, so a
    user's (ETCD_LISTEN_CLIENT_URLS, ETCD_DATA_DIR, ...) must not reach a throw-away member."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "ETCDCTL_"))}
    env["ETCDCTL_API"] = "3"
    return env


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


async def _read(sock: Path, key_prefix: str, logical_root: str, proc: subprocess.Popen[bytes],
                log: Path) -> tuple[dict[str, bytes], int]:
    ch = grpc.aio.insecure_channel(f"unix:{sock}")
    try:
        kv = rpc.KVStub(ch)
        lo = (key_prefix + "/").encode()
        end = _prefix_end(lo)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _START_TIMEOUT
        while True:  # until the throw-away member has elected itself and answers
            if proc.poll() is not None:
                raise SnapshotReadError(f"etcd could not serve the snapshot: {_last_line(log.read_text())}")
            try:
                first = await kv.Range(rpc.RangeRequest(key=lo, range_end=end, limit=1000), timeout=2)
                break
            except grpc.aio.AioRpcError as exc:
                if loop.time() > deadline:
                    raise SnapshotReadError(f"etcd did not serve the snapshot within {_START_TIMEOUT:.0f} s: "
                                            f"{exc.details()}") from None
                await asyncio.sleep(0.1)
        rev = int(first.header.revision)
        out: dict[str, bytes] = {}
        resp = first
        while True:
            for item in resp.kvs:
                out[logical_root + item.key.decode()[len(key_prefix):]] = bytes(item.value)
            if not resp.more or not resp.kvs:
                return out, rev
            resp = await kv.Range(rpc.RangeRequest(key=bytes(resp.kvs[-1].key) + b"\0", range_end=end,
                                                   limit=1000, revision=rev), timeout=30)
    finally:
        await ch.close()


async def read_snapshot(path: Path, key_prefix: str = "/registry",
                        logical_root: str = "/registry") -> tuple[dict[str, bytes], int]:
    """The keys under ``key_prefix`` in the etcd snapshot ``path`` (as logical keys, the store's
    ``/registry/...``) and the snapshot's revision. Raises SnapshotReadError."""
    key_prefix = key_prefix.rstrip("/")
    logical_root = logical_root.rstrip("/")
    etcdctl, etcd = _tool("etcdctl"), _tool("etcd")
    if not path.is_file():
        raise SnapshotReadError(f"{path}: no such file")
    with tempfile.TemporaryDirectory(prefix="kubelite-restore-") as tmp:
        d = Path(tmp)
        os.chmod(d, 0o700)  # the snapshot holds every Secret
        member = ["--name", _NAME, "--initial-cluster", f"{_NAME}={_PEER}", "--initial-advertise-peer-urls", _PEER]
        p = subprocess.run([etcdctl, "snapshot", "restore", str(path.resolve()), "--data-dir", "member", *member],
                           cwd=d, capture_output=True, text=True, env=clean_env(),
                           timeout=300)
        if p.returncode != 0:
            raise SnapshotReadError(f"{path}: not an etcd snapshot etcd can restore "
                                    f"(etcdctl snapshot restore: {_last_line(p.stderr)})")
        log = d / "etcd.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [etcd, "--data-dir", "member", *member, "--listen-peer-urls", _PEER,
                 "--listen-client-urls", _CLIENT, "--advertise-client-urls", _CLIENT,
                 "--log-level", "error", "--logger", "zap"],
                cwd=d, stdout=out, stderr=subprocess.STDOUT, env=clean_env())
        try:
            return await _read(d / "client:0", key_prefix, logical_root, proc, log)
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            with contextlib.suppress(OSError):
                log.unlink()
