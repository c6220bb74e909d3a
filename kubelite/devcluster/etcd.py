"""The dev cluster's own etcd (`kubelite dev cluster up --etcd`, issue 9 part 9).

One member of Debian's etcd-server under ``DATA_DIR/etcd/``. It serves clients over TLS with
client-certificate auth on 127.0.0.1 (a free port; the server runs in the root namespace, so
the nodes never talk to it). Its peer URL is a unix socket inside its 0700 directory, because a
single member has no peers and needs no port. Its CA, serving certificate and the server's
client certificate are made for it in ``etcd/pki/``. `up` starts it before the server and
`down` stops it (by its recorded PID and start time) after the server, and removes the
directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from kubelite.devcluster.testhost import Proc
from kubelite.store.etcdsnapshot import clean_env
from kubelite.tls import pki as pki_mod

NAME = "kldev-etcd"
_PEER = "unix://peer:0"  # etcd wants host:port: with cwd = the member's directory, the socket "peer:0"


class EtcdError(RuntimeError):
    pass


@dataclass(frozen=True)
class EtcdFiles:
    ca: Path
    cert: Path
    key: Path

    def server_args(self) -> list[str]:
        return ["--datastore-cafile", str(self.ca), "--datastore-certfile", str(self.cert),
                "--datastore-keyfile", str(self.key)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _certs(d: Path) -> tuple[Path, Path, Path, EtcdFiles]:
    """A CA of its own, etcd's serving certificate (127.0.0.1, localhost) and a client
    certificate for the kubelite server."""
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca, ca_key = pki_mod._make_ca()
    serving, serving_key = pki_mod._issue(ca, ca_key, cn=NAME, server=True, sans=["127.0.0.1", "localhost"])
    client, client_key = pki_mod._issue(ca, ca_key, cn="kubelite-server")
    paths = {}
    for name, cert, key in (("server", serving, serving_key), ("client", client, client_key)):
        pki_mod.atomic_write(d / f"{name}.crt", pki_mod.cert_pem(cert), 0o644)
        pki_mod.atomic_write(d / f"{name}.key", pki_mod.key_pem(key), 0o600)
        paths[name] = (d / f"{name}.crt", d / f"{name}.key")
    pki_mod.atomic_write(d / "ca.crt", pki_mod.cert_pem(ca), 0o644)
    return d / "ca.crt", *paths["server"], EtcdFiles(d / "ca.crt", *paths["client"])


def _healthy(url: str, files: EtcdFiles) -> bool:
    from kubelite.store.base import StoreError
    from kubelite.store.etcd import EtcdStore, EtcdTLS

    async def probe() -> None:
        store = EtcdStore(url, tls=EtcdTLS(str(files.ca), str(files.cert), str(files.key)), compact_interval=0,
                          request_timeout=1.0)
        await store.start()
        await store.close()

    try:
        asyncio.run(probe())
        return True
    except (StoreError, OSError):
        return False


def start(d: Path, timeout: float = 30.0) -> tuple[Proc, str, EtcdFiles]:
    """Start the member in ``d``; returns its process, client URL and the server's TLS files
    once it answers."""
    etcd = shutil.which("etcd")
    if etcd is None:
        raise EtcdError("--etcd needs etcd: apt-get install etcd-server")
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca, cert, key, files = _certs(d / "pki")
    url = f"https://127.0.0.1:{_free_port()}"
    log_path = d / "etcd.log"
    with open(log_path, "ab") as out:
        p = subprocess.Popen(
            [etcd, "--name", NAME, "--data-dir", "member", "--listen-client-urls", url, "--advertise-client-urls", url,
             "--listen-peer-urls", _PEER, "--initial-advertise-peer-urls", _PEER,
             "--initial-cluster", f"{NAME}={_PEER}", "--initial-cluster-state", "new",
             "--cert-file", str(cert), "--key-file", str(key), "--trusted-ca-file", str(ca), "--client-cert-auth",
             "--log-level", "warn", "--logger", "zap"],
            cwd=d, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env=clean_env())
    proc = Proc.of(p.pid)
    deadline = time.monotonic() + timeout
    while not _healthy(url, files):
        if p.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(Exception):
                proc.stop(5.0)
            tail = log_path.read_text(errors="replace")[-2000:]
            raise EtcdError(f"etcd at {url} did not start (log {log_path}):\n{tail}")
        time.sleep(0.2)
    p.returncode = 0  # it outlives this process; `down` stops it by its recorded PID
    return proc, url, files
