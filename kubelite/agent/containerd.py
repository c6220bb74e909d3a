"""containerd, supervised: kubelite runs its own containerd as a child process.

Everything lives under ``<data_dir>/containerd/`` (config.toml, root/, state/, certs.d/,
the gRPC socket) and ``<data_dir>/logs/containerd.log``; it never touches a system
containerd (``/run/containerd/containerd.sock``). If ``<data_dir>`` is so long that the
socket path would not fit (containerd refuses one over 104 bytes, "unix socket path too
long (> 104)", and adds ``.ttrpc`` for its second socket), the sockets go to ``/run/kubelite/<sha256(data_dir)[:16]>/`` instead (logged,
and visible as ``Containerd.socket_path``).

containerd runs in its own session/process group, so a Ctrl-C to kubelite does not reach
it; on ``stop()`` it gets SIGTERM, then SIGKILL after a timeout. Shims are containerd's
own daemons (own process groups) and keep running when containerd stops, so pods survive
a kubelite restart. If containerd dies while supervised it is restarted with exponential
backoff. A containerd left running by a previous kubelite that was killed (pid file
``<data_dir>/containerd/containerd.pid``) is terminated before a new one starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import signal
import time
from pathlib import Path

log = logging.getLogger(__name__)

SANDBOX_IMAGE = "kubelite.local/pause:3.10"
CNI_BIN_DIR = "/usr/lib/cni"
# containerd refuses socket paths over 104 bytes (its portable limit; sun_path has 108 here)
# and also listens on "<address>.ttrpc"
_MAX_SOCKET_PATH = 104 - len(".ttrpc")
_RUN_DIR = Path("/run/kubelite")


class ContainerdError(RuntimeError):
    pass


def _toml_str(value: str | Path) -> str:
    s = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def socket_path_for(data_dir: Path) -> Path:
    """The containerd gRPC socket for a data dir (short fallback under /run/kubelite)."""
    preferred = data_dir / "containerd" / "containerd.sock"
    if len(str(preferred).encode()) <= _MAX_SOCKET_PATH:
        return preferred
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    return _RUN_DIR / digest / "containerd.sock"


def render_config(data_dir: Path, socket_path: Path, *, sandbox_image: str = SANDBOX_IMAGE,
                  cni_bin_dir: str = CNI_BIN_DIR, log_level: str = "info", cgroup_driver: str = "cgroupfs") -> str:
    """containerd's config. The runc runtime's cgroup driver must be the agent's (the
    kubelet's ``--cgroup-driver`` and containerd's ``SystemdCgroup`` always agree):
    ``cgroupfs`` makes the ``cgroup_parent`` a path, the same on cgroup v1 and v2 (containerd
    1.6's CRI needs nothing else for v2: runc converts the shares to ``cpu.weight`` and the
    CRI ``unified`` map is passed through to it)."""
    if cgroup_driver not in ("cgroupfs", "systemd"):
        raise ValueError(f"unknown cgroup driver {cgroup_driver!r}")
    base = data_dir / "containerd"
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""# Written by kubelite (kubelite/agent/containerd.py); regenerated on every start.
version = 2
root = {_toml_str(base / "root")}
state = {_toml_str(base / "state")}
oom_score = 0
disabled_plugins = [
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = {_toml_str(socket_path)}
  uid = 0
  gid = 0

[ttrpc]
  address = {_toml_str(str(socket_path) + ".ttrpc")}

[debug]
  address = ""
  level = {_toml_str(log_level)}

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = {_toml_str(base / "opt")}

[{cri}]
  sandbox_image = {_toml_str(sandbox_image)}
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  disable_hugetlb_controller = true
  tolerate_missing_hugetlb_controller = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_tls_streaming = false
  max_container_log_line_size = 16384

  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    discard_unpacked_layers = false

    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = {"true" if cgroup_driver == "systemd" else "false"}

  [{cri}.cni]
    bin_dir = {_toml_str(cni_bin_dir)}
    conf_dir = {_toml_str(data_dir / "cni" / "net.d")}
    max_conf_num = 1

  [{cri}.registry]
    config_path = {_toml_str(base / "certs.d")}
"""


class Containerd:
    """A supervised containerd child process with its own config, root, state and socket."""

    def __init__(self, data_dir: str | Path, *, binary: str | None = None, sandbox_image: str = SANDBOX_IMAGE,
                 stop_timeout: float = 10.0, restart: bool = True, log_level: str = "info",
                 max_backoff: float = 30.0, cgroup_driver: str = "cgroupfs") -> None:
        self.data_dir = Path(data_dir).resolve()
        self.base_dir = self.data_dir / "containerd"
        self.config_path = self.base_dir / "config.toml"
        self.pid_path = self.base_dir / "containerd.pid"
        self.log_path = self.data_dir / "logs" / "containerd.log"
        self.cni_conf_dir = self.data_dir / "cni" / "net.d"
        self.certs_dir = self.base_dir / "certs.d"
        self.socket_path = socket_path_for(self.data_dir)
        self.binary = binary or shutil.which("containerd") or "/usr/bin/containerd"
        self.sandbox_image = sandbox_image
        self.stop_timeout = stop_timeout
        self.restart = restart
        self.log_level = log_level
        self.max_backoff = max_backoff
        self.cgroup_driver = cgroup_driver
        self.restarts = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task | None = None
        self._stopping = False
        self._ready = asyncio.Event()
        self._spawned = asyncio.Event()

    # ------------------------------------------------------------------ properties
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self._proc.returncode is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def address(self) -> str:
        return f"unix://{self.socket_path}"

    # ------------------------------------------------------------------ lifecycle
    def write_config(self) -> Path:
        for d in (self.base_dir, self.base_dir / "root", self.base_dir / "state", self.base_dir / "opt",
                  self.certs_dir, self.cni_conf_dir, self.log_path.parent, self.socket_path.parent):
            d.mkdir(parents=True, exist_ok=True)
        if self.socket_path.parent != self.base_dir:
            os.chmod(self.socket_path.parent, 0o700)
            log.info("data dir path too long for a unix socket: containerd socket is %s", self.socket_path)
        text = render_config(self.data_dir, self.socket_path, sandbox_image=self.sandbox_image,
                             log_level=self.log_level, cgroup_driver=self.cgroup_driver)
        tmp = self.config_path.with_suffix(".toml.tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)
        return self.config_path

    async def start(self, *, wait: bool = True, timeout: float = 30.0) -> None:
        """Write the config, start containerd and (by default) wait until CRI is ready."""
        if self._supervisor and not self._supervisor.done():
            if wait:
                await self.wait_ready(timeout)
            return
        if not Path(self.binary).exists():
            raise ContainerdError(f"containerd binary not found ({self.binary}): install Debian's containerd")
        self.write_config()
        await self._kill_stale()
        self._stopping = False
        self._ready.clear()
        self._spawned.clear()
        self._supervisor = asyncio.create_task(self._supervise(), name="containerd-supervisor")
        await self._spawned.wait()
        if self._supervisor.done():
            self._supervisor.result()  # raises the spawn error
        if wait:
            await self.wait_ready(timeout)

    async def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM containerd, SIGKILL after ``timeout``; shims keep running. Returns its exit code."""
        self._stopping = True
        timeout = self.stop_timeout if timeout is None else timeout
        proc = self._proc
        rc = None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                rc = await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                log.warning("containerd (pid %s) did not stop in %.0fs: SIGKILL", proc.pid, timeout)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                rc = await proc.wait()
        elif proc is not None:
            rc = proc.returncode
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._supervisor
            self._supervisor = None
        self._ready.clear()
        with contextlib.suppress(FileNotFoundError):
            self.pid_path.unlink()
        if self.socket_path.parent != self.base_dir:  # the /run/kubelite/<hash> fallback
            for p in (self.socket_path, Path(str(self.socket_path) + ".ttrpc")):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            with contextlib.suppress(OSError):
                self.socket_path.parent.rmdir()
            with contextlib.suppress(OSError):  # /run/kubelite, only if nothing else uses it
                self.socket_path.parent.parent.rmdir()
        return rc

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until CRI ``Status`` reports RuntimeReady (raises TimeoutError / ContainerdError)."""
        from kubelite.agent import cri as cri_mod

        deadline = time.monotonic() + timeout
        last_error: str = "socket not there yet"
        while True:
            if self._supervisor is not None and self._supervisor.done():
                exc = self._supervisor.exception() if not self._supervisor.cancelled() else None
                raise ContainerdError(f"containerd supervisor ended: {exc or 'stopped'}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"containerd not ready after {timeout:.0f}s ({last_error}); "
                                   f"see {self.log_path}")
            if self.running and self.socket_path.exists():
                try:
                    client = await cri_mod.connect(self.socket_path)
                    try:
                        ready, why = await client.runtime_ready(timeout=min(2.0, max(0.2, remaining)))
                    finally:
                        await client.close()
                    if ready:
                        self._ready.set()
                        return
                    last_error = why
                except Exception as e:  # grpc errors while starting up
                    details = e.details() if hasattr(e, "details") else str(e)
                    last_error = f"{type(e).__name__}: {details}"
            await asyncio.sleep(min(0.05, max(0.0, remaining)))

    # ------------------------------------------------------------------ internals
    async def _spawn(self) -> asyncio.subprocess.Process:
        env = dict(os.environ)
        path = env.get("PATH", "")
        for extra in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
            if extra not in path.split(":"):
                path = f"{path}:{extra}" if path else extra
        env["PATH"] = path
        # a stale socket file from a crash makes containerd fail with "address already in use"
        for p in (self.socket_path, Path(str(self.socket_path) + ".ttrpc")):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        logf = open(self.log_path, "ab", buffering=0)  # noqa: SIM115 - handed to the child
        try:
            logf.write(f"--- kubelite: starting containerd ({time.strftime('%Y-%m-%dT%H:%M:%S%z')})\n".encode())
            proc = await asyncio.create_subprocess_exec(
                self.binary, "--config", str(self.config_path),
                stdin=asyncio.subprocess.DEVNULL, stdout=logf, stderr=logf,
                env=env, start_new_session=True, cwd=str(self.base_dir),
            )
        finally:
            logf.close()
        self.pid_path.write_text(f"{proc.pid}\n")
        log.info("containerd started (pid %d, socket %s, log %s)", proc.pid, self.socket_path, self.log_path)
        return proc

    async def _supervise(self) -> None:
        backoff = 1.0
        first = True
        while not self._stopping:
            try:
                self._proc = await self._spawn()
            except Exception:
                if first:
                    self._spawned.set()
                    raise
                log.exception("could not restart containerd; retrying in %.0fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            if first:
                self._spawned.set()
                first = False
            started = time.monotonic()
            rc = await self._proc.wait()
            self._ready.clear()
            if self._stopping:
                return
            if not self.restart:
                log.error("containerd exited with %s (not restarting); see %s", rc, self.log_path)
                return
            if time.monotonic() - started > 60:
                backoff = 1.0
            self.restarts += 1
            log.error("containerd exited with %s; restarting in %.0fs (restart #%d, see %s)",
                      rc, backoff, self.restarts, self.log_path)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    async def _kill_stale(self) -> None:
        """Terminate a containerd left behind (pid file) by a kubelite that was killed."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return
        if self._proc is not None and self._proc.pid == pid:
            return
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return
        if not cmdline or not cmdline[0].endswith(b"containerd") or str(self.config_path).encode() not in cmdline:
            return
        log.warning("terminating a containerd left running by a previous kubelite (pid %d)", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists() and not _is_zombie(pid):
            await asyncio.sleep(0.05)
        if Path(f"/proc/{pid}").exists() and not _is_zombie(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"
