"""Start a real `kubelite server` in a temporary data dir and drive it with the real kubectl."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = str(Path(sys.executable).parent / "kubectl")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, data_dir: Path, port: int | None = None, extra: list[str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.extra = extra or ["--disable-agent", "--disable-scheduler"]
        self.proc: subprocess.Popen | None = None
        self.stopped = False  # by the test (stop, kill9), not by a crash
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig.yaml"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.log = open(self.log_path, "ab")
        self.stopped = False
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kubelite", "server", "--data-dir", str(self.data_dir),
             "--bind-address", "127.0.0.1", "--port", str(self.port), *self.extra],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", context=ctx, timeout=1) as r:
                    if r.read() == b"ok" and self.kubeconfig.exists():
                        return
            except Exception as exc:  # not up yet
                last = exc
            time.sleep(0.05)
        raise TimeoutError(f"server not ready: {last}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def died(self) -> int | None:
        """The exit status of a server that ended without the test stopping it (a crash), else None."""
        if self.proc is None or self.stopped:
            return None
        return self.proc.poll()

    def kill9(self) -> None:
        assert self.proc is not None
        self.stopped = True
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, env: dict | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:
        e = dict(os.environ)
        e["KUBECONFIG"] = str(self.kubeconfig)
        e.pop("KUBERNETES_SERVICE_HOST", None)
        e["HOME"] = str(self.data_dir.parent)  # kubectl's discovery cache stays in the test's temp dir
        if env:
            e.update(env)
        p = subprocess.run([KUBECTL, *args], input=input, capture_output=True, text=True, env=e, timeout=timeout)
        if check and p.returncode != 0:
            died = self.died()
            gone = f"\n(the server has exited, status {died}; its log: {self.log_path})" if died is not None else ""
            raise AssertionError(f"kubectl {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}{gone}")
        return p


def wait_until(fn, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last={last!r}")


def admin_ssl_context(kubeconfig: Path) -> ssl.SSLContext:
    """An SSL context carrying the admin client certificate of a kubeconfig."""
    import base64
    import tempfile

    import yaml

    cfg = yaml.safe_load(kubeconfig.read_text())
    user = cfg["users"][0]["user"]
    ca = base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    ctx = ssl.create_default_context(cadata=ca)
    with tempfile.TemporaryDirectory() as d:
        cert, key = Path(d) / "c.pem", Path(d) / "k.pem"
        cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
        key.write_bytes(base64.b64decode(user["client-key-data"]))
        ctx.load_cert_chain(cert, key)
    return ctx


def raw_request(server: ServerProcess, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None, auth: bool = True, timeout: float = 10) -> tuple[int, dict, bytes]:
    """One HTTPS request; returns (status, headers, body) without raising on 4xx/5xx."""
    import http.client

    if auth:
        ctx = admin_ssl_context(server.kubeconfig)
    else:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=ctx, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------- the host's network
# CNI's portmap and bridge plugins leave shared state behind when the last pod goes (the
# CNI-HOSTPORT-* chains, the bridge). The e2e session removes what appeared while it ran.

def nat_chains() -> set[str]:
    import subprocess

    res = subprocess.run(["iptables", "-w", "-t", "nat", "-S"], capture_output=True, text=True)
    return {line.split()[1] for line in res.stdout.splitlines() if line.startswith("-N ")}


def delete_nat_chain(chain: str) -> None:
    import shlex
    import subprocess

    rules = subprocess.run(["iptables", "-w", "-t", "nat", "-S"], capture_output=True, text=True).stdout
    for rule in rules.splitlines():
        parts = shlex.split(rule)
        if parts[:1] == ["-A"] and "-j" in parts and parts[parts.index("-j") + 1] == chain:
            subprocess.run(["iptables", "-w", "-t", "nat", "-D", *parts[1:]], capture_output=True)
    subprocess.run(["iptables", "-w", "-t", "nat", "-F", chain], capture_output=True)
    subprocess.run(["iptables", "-w", "-t", "nat", "-X", chain], capture_output=True)


def links() -> set[str]:
    import subprocess

    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {ln.split(":")[1].strip().split("@")[0] for ln in out.splitlines() if ":" in ln}


def restore_host_network(chains_before: set[str], links_before: set[str]) -> None:
    import subprocess

    for chain in sorted(nat_chains() - chains_before):
        if chain.startswith("CNI-"):
            delete_nat_chain(chain)
    for link in sorted(links() - links_before):
        if link.startswith("kubelite"):
            ports = subprocess.run(["ip", "-o", "link", "show", "master", link], capture_output=True,
                                   text=True).stdout.strip()
            if not ports:
                subprocess.run(["ip", "link", "del", link], capture_output=True)
