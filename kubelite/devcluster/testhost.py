"""Test hosts: several nodes on one machine, like kind's nodes without containers.

A test host is a set of namespaces held open by one small process, the *holder*
(``catatonit -P``, an init that only reaps), started by::

    unshare --net --mount --uts --pid --fork --kill-child --mount-proc --propagation private

- its own **network namespace**, joined to the root namespace by a veth pair whose root end
  is a port of one bridge (:class:`Network`, default ``kldev-br``); the host's end is
  ``eth0`` with an address of the test hosts' subnet, which is its only route: a test host
  (and its pods) reaches the other test hosts and the bridge address, nothing else;
- its own **mount namespace** (private propagation: nothing it mounts is seen outside) with
  a fresh ``/proc``, a tmpfs on ``/run`` (containerd's ``/run/containerd``, the shims'
  sockets, runc's state, the iptables lock) and its data dir's ``var-lib-cni`` bound on
  ``/var/lib/cni`` (the CNI results cache): what containerd, the runc shims and the CNI
  plugins write at fixed paths stays private to the host;
- its own **PID namespace**, whose init is the holder: everything started in the host
  (the agent, containerd, the shims, every container) dies when the holder is killed,
  so tearing a host down cannot leave a process behind;
- its own **UTS namespace** (the hostname is the node's name).

Commands run inside with ``nsenter --target HOLDER --net --mount --uts --pid``
(:meth:`TestHost.popen`, :meth:`TestHost.run`). No named netns is made (``ip netns``
stays as it was); to look inside a host use ``kubelite dev cluster exec NODE -- CMD``.

The subnet (default ``198.19.250.0/24``, in 198.18.0.0/15, which RFC 2544 reserves for
benchmarking and which hosts rarely route) is configurable; :meth:`Network.create` refuses
one that overlaps a route the host already has. Its first address is the bridge's (the API
server listens there), the next ones go to the hosts in order.

Every process is recorded with its start time (:class:`Proc`): a recorded PID is only
signalled while it still names the same process.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("kubelite.devcluster")

DEFAULT_SUBNET = "198.19.250.0/24"
HOST_IFACE = "eth0"
CNI_CACHE = Path("/var/lib/cni")  # the CNI plugins' results cache (libcni's default CacheDir)
_HOLDER_SCRIPT = ('hostname "$1" && mount -t tmpfs -o mode=0755,size=64m tmpfs /run && '
                  'mount --bind "$2" /var/lib/cni && exec catatonit -P')
IFNAMSIZ = 15


class TestHostError(RuntimeError):
    """A test host (or its network) could not be made or used."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise TestHostError(f"ip {' '.join(args)}: {p.stderr.strip()}")
    return p


def link_exists(name: str) -> bool:
    return _ip("link", "show", "dev", name, check=False).returncode == 0


# --------------------------------------------------------------------------- processes


def _start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (clock ticks since boot): with the PID, names one process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@dataclass(frozen=True)
class Proc:
    """A process by PID and start time, so that a recycled PID is never signalled."""

    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> Proc:
        start = _start_time(pid)
        if start is None:
            raise TestHostError(f"process {pid} is gone")
        return cls(pid, start)

    def alive(self) -> bool:
        if _start_time(self.pid) != self.start:
            return False
        try:  # a zombie is not alive
            return Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    def signal(self, sig: int) -> bool:
        if not self.alive():
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)
            return True
        return False

    def wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; returns when it is gone."""
        if self.signal(signal.SIGTERM) and self.wait_gone(timeout):
            return
        if self.signal(signal.SIGKILL):
            self.wait_gone(10.0)

    def to_json(self) -> list[int]:
        return [self.pid, self.start]

    @classmethod
    def from_json(cls, v: Sequence[int]) -> Proc:
        return cls(int(v[0]), int(v[1]))


def _wait_for(what: str, fn: Any, timeout: float, proc: subprocess.Popen[bytes] | None = None,
              log_path: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:] if log_path and log_path.exists() else ""
            raise TestHostError(f"{what}: the process exited with {proc.returncode}: {tail}")
        if time.monotonic() > deadline:
            raise TestHostError(f"timed out waiting for {what}")
        time.sleep(0.02)


# --------------------------------------------------------------------------- the network


@dataclass
class Network:
    """The test hosts' subnet and the bridge in the root namespace that joins them."""

    subnet: str = DEFAULT_SUBNET
    bridge: str = "kldev-br"

    def __post_init__(self) -> None:
        net = ipaddress.ip_network(self.subnet, strict=True)
        if net.version != 4 or net.prefixlen > 29:
            raise ValueError(f"test host subnet {self.subnet}: an IPv4 network of at least /29 is needed")
        if len(self.bridge) > IFNAMSIZ:
            raise ValueError(f"bridge name {self.bridge!r} is longer than {IFNAMSIZ} characters")

    @property
    def network(self) -> ipaddress.IPv4Network:
        net = ipaddress.ip_network(self.subnet)
        assert isinstance(net, ipaddress.IPv4Network)
        return net

    @property
    def gateway(self) -> str:
        """The bridge's address: the root namespace (and the API server) as the hosts see it."""
        return str(self.network.network_address + 1)

    def address(self, index: int) -> str:
        """The address of test host ``index`` (1-based): the bridge's, plus ``index``."""
        addr = self.network.network_address + 1 + index
        if addr >= self.network.broadcast_address:
            raise TestHostError(f"subnet {self.subnet} has no address for test host {index}")
        return str(addr)

    def overlapping_routes(self) -> list[str]:
        out = _ip("-4", "route", "show", "table", "all", check=False).stdout
        found = []
        for line in out.splitlines():
            words = line.split()
            if words[:1] and words[0] in ("local", "unicast", "unreachable", "blackhole", "prohibit", "throw"):
                words = words[1:]
            if not words or words[0] == "default" or line.startswith(("broadcast", "multicast")):
                continue
            try:
                dst = ipaddress.ip_network(words[0], strict=False)
            except ValueError:
                continue
            if dst.overlaps(self.network) and f"dev {self.bridge}" not in line:
                found.append(line.strip())
        return found

    def create(self) -> None:
        """The bridge with the gateway address, up. Refuses a subnet the host already routes."""
        clash = self.overlapping_routes()
        if clash:
            raise TestHostError(f"test host subnet {self.subnet} overlaps the host's routes ({clash[0]}); "
                                "choose another with --subnet")
        if link_exists(self.bridge):
            raise TestHostError(f"link {self.bridge} exists already: is a dev cluster up? (kubelite dev cluster down)")
        # a fixed MAC: a bridge left to choose takes its lowest port's, and when that port goes
        # the hosts' ARP entries for the gateway point nowhere (their FINs to the server are lost)
        mac = "02:" + ":".join(f"{b:02x}" for b in os.urandom(5))
        _ip("link", "add", self.bridge, "address", mac, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/{self.network.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def delete(self) -> None:
        if link_exists(self.bridge):
            _ip("link", "del", self.bridge, check=False)

    def to_json(self) -> dict[str, str]:
        return {"subnet": self.subnet, "bridge": self.bridge}


# --------------------------------------------------------------------------- one test host


@dataclass
class TestHost:
    """One node's namespaces; see the module docstring."""

    __test__ = False  # not a pytest class

    name: str  # the hostname (and the node's name)
    address: str
    prefixlen: int
    veth: str  # the root namespace's end of the veth pair
    data_dir: Path
    holder: Proc | None = None  # PID 1 of the host's PID namespace
    unshare: Proc | None = None
    procs: dict[str, Proc] = field(default_factory=dict)  # what was started inside, by role

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def create(self, network: Network, timeout: float = 10.0) -> None:
        """Start the holder, plug the veth into the bridge, address the host's end."""
        if len(self.veth) > IFNAMSIZ:
            raise TestHostError(f"veth name {self.veth!r} is longer than {IFNAMSIZ} characters")
        if not shutil.which("catatonit"):
            raise TestHostError("catatonit is not installed (Debian package catatonit; `make run` installs it)")
        cni_dir = self.data_dir / "var-lib-cni"
        cni_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / "holder.log"
        with open(log_path, "ab") as out:
            p = subprocess.Popen(["unshare", "--net", "--mount", "--uts", "--pid", "--fork", "--kill-child",
                                  "--mount-proc", "--propagation", "private", "--", "/bin/sh", "-c",
                                  _HOLDER_SCRIPT, "sh", self.name, str(cni_dir)],
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        self.unshare = Proc.of(p.pid)

        def holder_ready() -> int:
            for c in children(p.pid):
                with contextlib.suppress(OSError):
                    if Path(f"/proc/{c}/comm").read_text().strip() == "catatonit":
                        return c
            return 0

        self.holder = Proc.of(_wait_for(f"test host {self.name}", holder_ready, timeout, p, log_path))
        p.returncode = 0  # the holder outlives us: no ResourceWarning for an un-waited child
        _ip("link", "add", self.veth, "type", "veth", "peer", "name", HOST_IFACE, "netns", str(self.holder.pid))
        _ip("link", "set", self.veth, "master", network.bridge, "up")
        self.run(["ip", "link", "set", "lo", "up"], check=True)
        self.run(["ip", "addr", "add", f"{self.address}/{self.prefixlen}", "dev", HOST_IFACE], check=True)
        self.run(["ip", "link", "set", HOST_IFACE, "up"], check=True)

    def command(self, argv: Sequence[str], cwd: str | None = None) -> list[str]:
        """The command line that runs ``argv`` inside the host (nsenter by the holder's PID)."""
        if self.holder is None or not self.holder.alive():
            raise TestHostError(f"test host {self.name} is not running")
        return ["nsenter", f"--target={self.holder.pid}", "--net", "--mount", "--uts", "--pid",
                f"--wd={cwd or os.getcwd()}", "--", *argv]

    def run(self, argv: Sequence[str], *, check: bool = False, timeout: float = 60.0,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command inside the host and wait for it."""
        p = subprocess.run(self.command(argv), capture_output=True, text=True, timeout=timeout, input=input)
        if check and p.returncode != 0:
            raise TestHostError(f"{self.name}: {' '.join(argv)}: {p.stderr.strip()}")
        return p

    def popen(self, role: str, argv: Sequence[str], *, cwd: str | None = None,
              env: dict[str, str] | None = None) -> Proc:
        """Start a long-lived command inside the host (output to ``logs/<role>.log``); it is
        recorded under ``role`` and stopped by :meth:`destroy`. Returns it as seen from here
        (nsenter forks into the PID namespace: the recorded process is nsenter's child)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{role}.log"
        out: IO[bytes]
        with open(log_path, "ab") as out:
            p = subprocess.Popen(self.command(argv, cwd), stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True, env=env)
        child = _wait_for(f"{role} in {self.name}", lambda: (children(p.pid) or [0])[0], 10.0, p, log_path)
        p.returncode = 0  # outlives us (see create)
        self.procs[role] = proc = Proc.of(child)
        return proc

    def destroy(self, stop_timeout: float = 20.0) -> None:
        """Stop what runs inside (SIGTERM, so the agent stops containerd), then kill the holder:
        the kernel kills everything left in its PID namespace (shims, containers); the mount
        namespace, the network namespace and the veth pair go with the last process."""
        for role, proc in list(self.procs.items()):
            log.info("stopping %s of test host %s (pid %d)", role, self.name, proc.pid)
            proc.stop(stop_timeout)
        for ns_proc in (self.holder, self.unshare):
            if ns_proc is not None and ns_proc.signal(signal.SIGKILL) and not ns_proc.wait_gone(30.0):
                raise TestHostError(f"process {ns_proc.pid} of test host {self.name} does not die")
        # the veth pair goes with the network namespace, unless sockets that are still closing
        # keep that alive a while (the kernel's orphans, retransmitting a FIN): then unplug it
        with contextlib.suppress(TestHostError):
            _wait_for(f"veth {self.veth} to go", lambda: not link_exists(self.veth), 5.0)
        if link_exists(self.veth):
            log.info("test host %s: its network namespace is still closing; deleting %s", self.name, self.veth)
            _ip("link", "del", self.veth, check=False)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "prefixlen": self.prefixlen, "veth": self.veth,
                "data_dir": str(self.data_dir), "holder": self.holder.to_json() if self.holder else None,
                "unshare": self.unshare.to_json() if self.unshare else None,
                "procs": {k: v.to_json() for k, v in self.procs.items()}}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TestHost:
        return cls(name=d["name"], address=d["address"], prefixlen=int(d["prefixlen"]), veth=d["veth"],
                   data_dir=Path(d["data_dir"]),
                   holder=Proc.from_json(d["holder"]) if d.get("holder") else None,
                   unshare=Proc.from_json(d["unshare"]) if d.get("unshare") else None,
                   procs={k: Proc.from_json(v) for k, v in (d.get("procs") or {}).items()})


def dump_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)


__all__ = ["DEFAULT_SUBNET", "Network", "Proc", "TestHost", "TestHostError", "children", "dump_json",
           "link_exists"]
