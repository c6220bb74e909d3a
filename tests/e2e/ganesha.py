"""A real userspace NFS server for the tests: nfs-ganesha (Debian `nfs-ganesha` +
`nfs-ganesha-vfs`) exporting a temporary directory as ``/exports`` over NFSv4 on a loopback
address of its own.

A pod's ``nfs`` volume names no port (NFS's 2049 it is), so each server gets a random
address in 127.0.0.0/8 and listens on its port 2049 there: no clash with another test's
server, nothing outside the loopback range. NFSv4 needs no rpcbind; NLM, RQUOTA and the
grace period are off, its recovery directory, log and PID file live in the test's temp dir.
The server is stopped by its PID. For nodes in test hosts (a dev cluster) the server listens on an
address they reach instead: this host's on the cluster's link.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

NFS_PORT = 2049
GANESHA = "ganesha.nfsd"

CONFIG = """\
NFS_CORE_PARAM {{
  Protocols = 4;
  NFS_Port = {port};
  Bind_addr = {addr};
  Enable_NLM = false;
  Enable_RQUOTA = false;
}}
NFSV4 {{
  Graceless = true;
  RecoveryBackend = fs;
  RecoveryRoot = {recovery};
}}
EXPORT {{
  Export_Id = 1;
  Path = {export};
  Pseudo = /exports;
  Access_Type = RW;
  Squash = No_Root_Squash;
  Protocols = 4;
  Transports = TCP;
  SecType = sys;
  FSAL {{ Name = VFS; }}
}}
"""


@dataclass
class Ganesha:
    addr: str
    export_dir: Path
    proc: subprocess.Popen
    log: Path

    @property
    def path(self) -> str:
        return "/exports"


def _port_free(addr: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((addr, port))
        except OSError:
            return False
    return True


def loopback_address(rng: random.Random | None = None) -> str:
    """A random 127.x.y.z (not 127.0.0.0/16) whose port 2049 nobody listens on."""
    rng = rng or random.Random()
    for _ in range(50):
        addr = f"127.{rng.randint(16, 250)}.{rng.randint(0, 255)}.{rng.randint(2, 250)}"
        if _port_free(addr, NFS_PORT):
            return addr
    raise RuntimeError("no free loopback address for an NFS server")


def _listening(addr: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((addr, port)) == 0


@contextlib.contextmanager
def ganesha_server(work: Path, timeout: float = 30.0, addr: str = "") -> Iterator[Ganesha]:
    """``addr``: listen there (a test host's address, or this host's on a dev cluster's link:
    one that the nodes reach); default a free loopback address of its own."""
    if shutil.which(GANESHA) is None:
        raise RuntimeError("nfs-ganesha is not installed (make setup-test installs nfs-ganesha, nfs-ganesha-vfs)")
    work.mkdir(parents=True, exist_ok=True)
    export, recovery = work / "export", work / "recovery"
    export.mkdir()
    recovery.mkdir()
    export.chmod(0o777)  # writable by every pod user, like a chmod 777 export directory
    addr = addr or loopback_address()
    if not _port_free(addr, NFS_PORT):
        raise RuntimeError(f"port {NFS_PORT} of {addr} is taken")
    conf = work / "ganesha.conf"
    conf.write_text(CONFIG.format(port=NFS_PORT, addr=addr, recovery=recovery, export=export))
    log = work / "ganesha.log"
    proc = subprocess.Popen([GANESHA, "-F", "-f", str(conf), "-L", str(log), "-p", str(work / "ganesha.pid"),
                             "-N", "NIV_EVENT"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not _listening(addr, NFS_PORT):
            if proc.poll() is not None:
                raise RuntimeError(f"ganesha.nfsd exited with {proc.returncode}: {log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"ganesha.nfsd not listening on {addr}:{NFS_PORT}")
            time.sleep(0.05)
        yield Ganesha(addr, export, proc, log)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(work, ignore_errors=True)

