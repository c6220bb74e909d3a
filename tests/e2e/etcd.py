"""Real etcd (Debian etcd-server 3.4) for the tests: single members and 3-member TLS clusters on
127.0.0.1 with free ports and temporary data dirs, stopped by PID and removed at teardown."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubelite.store.etcd import EtcdTLS
from kubelite.tls import pki as pki_mod
from tests.e2e.harness import free_port, wait_until

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def require_etcd() -> None:
    if not os.access(ETCD, os.X_OK):
        pytest.skip("etcd binary not installed (apt-get install etcd-server; make setup-test)")


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_etcd_certs(d: Path) -> tuple[Path, list[tuple[Path, Path]], tuple[Path, Path]]:
    """A CA (the project's own CA maker), one cert per member usable for serving and for peer
    client auth (SANs 127.0.0.1, localhost) and a client cert for kubelite."""
    d.mkdir(parents=True, exist_ok=True)
    ca, ca_key = pki_mod._make_ca()
    ca_path = d / "ca.crt"
    ca_path.write_bytes(pki_mod.cert_pem(ca))
    now = dt.datetime.now(dt.UTC)

    def leaf(name: str, eku: list[x509.ObjectIdentifier], sans: bool) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
             .issuer_name(ca.subject).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage(eku), critical=False))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        cp, kp = d / f"{name}.crt", d / f"{name}.key"
        cp.write_bytes(pki_mod.cert_pem(cert))
        kp.write_bytes(_pem_key(key))
        kp.chmod(0o600)
        return cp, kp

    both = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    members = [leaf(f"member{i}", both, True) for i in range(3)]
    client = leaf("kubelite-client", [ExtendedKeyUsageOID.CLIENT_AUTH], False)
    return ca_path, members, client


@dataclass
class EtcdMember:
    name: str
    data_dir: Path
    client_port: int
    peer_port: int
    scheme: str = "http"
    tls: tuple[Path, Path, Path] | None = None  # ca, cert, key
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    args: list[str] = field(default_factory=list)

    @property
    def client_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.peer_port}"

    def start(self, initial_cluster: str, token: str, state: str = "new") -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.args = [ETCD, "--name", self.name, "--data-dir", str(self.data_dir),
                     "--listen-client-urls", self.client_url, "--advertise-client-urls", self.client_url,
                     "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
                     "--initial-cluster", initial_cluster, "--initial-cluster-state", state,
                     "--initial-cluster-token", token,
                     "--heartbeat-interval", "50", "--election-timeout", "500", "--log-level", "warn",
                     "--logger", "zap"]
        if self.tls is not None:
            ca, cert, key = (str(p) for p in self.tls)
            self.args += ["--cert-file", cert, "--key-file", key, "--trusted-ca-file", ca, "--client-cert-auth",
                          "--peer-cert-file", cert, "--peer-key-file", key, "--peer-trusted-ca-file", ca,
                          "--peer-client-cert-auth"]
        self.log_path = self.data_dir.parent / f"{self.name}.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()


class EtcdCluster:
    """``size`` members on 127.0.0.1; ``tls=True`` for HTTPS with client and peer cert auth."""

    def __init__(self, base: Path, size: int = 1, tls: bool = False) -> None:
        require_etcd()
        self.base = Path(base)
        self.client_tls: EtcdTLS | None = None
        certs = None
        if tls:
            ca, members, (ccert, ckey) = make_etcd_certs(self.base / "pki")
            certs = (ca, members)
            self.client_tls = EtcdTLS(str(ca), str(ccert), str(ckey))
        self.members = [
            EtcdMember(f"m{i}", self.base / f"m{i}", free_port(), free_port(), "https" if tls else "http",
                       (certs[0], *certs[1][i]) if certs else None)
            for i in range(size)
        ]

    @property
    def endpoints(self) -> str:
        return ",".join(m.client_url for m in self.members)

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for m in self.members:
            m.start(initial, f"kubelite-test-{self.members[0].client_port}")
        wait_until(self.healthy, timeout, 0.1, "etcd cluster healthy")
        return self

    def healthy(self, members: list[EtcdMember] | None = None) -> bool:
        cmd = ["etcdctl", "--endpoints", ",".join(m.client_url for m in (members or self.members)),
               "--command-timeout", "2s", "endpoint", "health"]
        env = dict(os.environ, ETCDCTL_API="3")
        if self.client_tls is not None:
            cmd += ["--cacert", str(self.client_tls.ca_file), "--cert", str(self.client_tls.cert_file),
                    "--key", str(self.client_tls.key_file)]
        for m in members or self.members:
            if m.proc is not None and m.proc.poll() is not None:
                raise RuntimeError(f"etcd {m.name} exited: {m.log_path and m.log_path.read_text()[-2000:]}")
        return subprocess.run(cmd, capture_output=True, env=env, timeout=20).returncode == 0

    def stop(self) -> None:
        for m in self.members:
            m.stop()
        shutil.rmtree(self.base, ignore_errors=True)



def etcd_flags(cluster: EtcdCluster) -> list[str]:
    """`kubelite server` flags for a TLS cluster (and no node agent)."""
    tls = cluster.client_tls
    assert tls is not None
    return ["--disable-agent", "--datastore-endpoint", cluster.endpoints, "--datastore-cafile", str(tls.ca_file),
            "--datastore-certfile", str(tls.cert_file), "--datastore-keyfile", str(tls.key_file)]
