"""`kubelite dev cluster up | down`: a server and N nodes on this machine (the kind/k3d experience).

Layout under the cluster's data dir (default ``/var/lib/kubelite-dev``)::

    state.json          what was made, PIDs with start times: `down` undoes exactly that
    kubeconfig.yaml     the admin kubeconfig (or --kubeconfig FILE)
    server/             the server's data dir; logs/server.log
    etcd/               with --etcd: the server's single-member etcd (devcluster/etcd.py)
    nodes/<name>/       each node's data dir (containerd, pods, CNI), logs/{holder,agent}.log

The server runs in the root namespace with ``--disable-agent`` (its scheduler and controllers
still run, as k3s's do) and listens on the bridge address of the test hosts' subnet, which its
serving certificate names (``--tls-san``). Every node is alike: ``kubelite agent`` in a test
host of its own (:mod:`kubelite.devcluster.testhost`), joined with a bootstrap token as a
node on another machine would be, its InternalIP its test-host address (``--node-ip``).
With more than one subnet (``extra_subnets``) the nodes are spread over them in turn, each
subnet a bridge of its own and this host the router between them (each test host gets a
route to the other subnets via its bridge's address): nodes that share no subnet, as on
machines in different networks, where only the vxlan backend joins their pods.
Keeping pods out of the root namespace is what lets ``down`` leave the host as it found it:
no bridge ``kubelite0``, no CNI iptables rules, nothing under /run/containerd there, and a
kubelite installed on the host is not disturbed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import logging
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubelite.devcluster.testhost import (
    CNI_CACHE,
    DEFAULT_SUBNET,
    Network,
    Proc,
    TestHost,
    TestHostError,
    dump_json,
    link_exists,
)

log = logging.getLogger("kubelite.devcluster")

DEFAULT_DATA_DIR = Path("/var/lib/kubelite-dev")
DEFAULT_NAME = "kldev"
DEFAULT_PORT = 6443
STATE = "state.json"
_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")


class ClusterError(RuntimeError):
    pass


@dataclass
class ClusterSpec:
    data_dir: Path = DEFAULT_DATA_DIR
    nodes: int = 3
    name: str = DEFAULT_NAME  # prefix of the node, bridge and veth names
    subnet: str = ""
    port: int = DEFAULT_PORT
    kubeconfig: Path | None = None
    ready_timeout: float = 180.0
    server_args: list[str] = field(default_factory=list)
    agent_args: list[str] = field(default_factory=list)  # more arguments of every node's agent
    flannel_backend: str = "host-gw"  # the agents' --flannel-backend
    extra_subnets: list[str] = field(default_factory=list)  # more test-host subnets, routed by this host
    etcd: bool = False  # the server on a single-member etcd of the cluster's own (devcluster/etcd.py)

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"cluster name {self.name!r}: 1-8 lowercase letters and digits, a letter first")
        if not 1 <= self.nodes <= 50:
            raise ValueError("--nodes must be between 1 and 50")


def node_name(cluster: str, index: int) -> str:
    return f"{cluster}-{index}"


def _python() -> list[str]:
    return [sys.executable, "-m", "kubelite"]


def _source_root() -> str:
    """The directory kubelite is imported from (its build/images are the offline images)."""
    return str(Path(__file__).resolve().parents[2])


class DevCluster:
    """The state of one dev cluster: built by :meth:`up`, undone by :meth:`down`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.state: dict[str, Any] = {}

    @property
    def state_path(self) -> Path:
        return self.data_dir / STATE

    def load(self) -> bool:
        try:
            self.state = json.loads(self.state_path.read_text())
            return True
        except FileNotFoundError:
            return False

    def _save(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        dump_json(self.state_path, self.state)

    @property
    def network(self) -> Network:
        n = self.state["network"]
        return Network(n["subnet"], n["bridge"])

    def hosts(self) -> list[TestHost]:
        return [TestHost.from_json(h) for h in self.state.get("hosts", [])]

    def _save_host(self, host: TestHost) -> None:
        hosts = [h for h in self.state.setdefault("hosts", []) if h["name"] != host.name]
        self.state["hosts"] = [*hosts, host.to_json()]
        self._save()

    @property
    def kubeconfig(self) -> Path:
        return Path(self.state["kubeconfig"])

    # ------------------------------------------------------------------ up
    def up(self, spec: ClusterSpec) -> None:
        if self.load():
            raise ClusterError(f"a dev cluster is recorded in {self.state_path}; "
                               f"`kubelite dev cluster down --data-dir {self.data_dir}` first")
        net = Network(spec.subnet or DEFAULT_SUBNET, f"{spec.name}-br")
        extra = [Network(sub, f"{spec.name}-br{k}") for k, sub in enumerate(spec.extra_subnets, start=2)]
        kubeconfig = (spec.kubeconfig or self.data_dir / "kubeconfig.yaml").resolve()
        if kubeconfig.exists():  # never overwrite a user's kubeconfig (and `down` removes this one)
            raise ClusterError(f"{kubeconfig} exists; remove it or choose another --kubeconfig")
        self.state = {"name": spec.name, "network": net.to_json(), "kubeconfig": str(kubeconfig),
                      "created": {}, "hosts": [], "extra_networks": [n.to_json() for n in extra]}
        self._save()
        try:
            self._up(spec, net, extra, kubeconfig)
        except BaseException:
            log.error("dev cluster up failed; taking down what was made")
            with contextlib.suppress(Exception):
                self.down()
            raise

    def _up(self, spec: ClusterSpec, net: Network, extra: list[Network], kubeconfig: Path) -> None:
        from kubelite.agent.cgroups import ROOT_NAME, detect_layout

        created = self.state["created"]
        # what the host did not have before: `down` removes only these
        created["kubepods"] = [str(b / ROOT_NAME) for b in detect_layout().bases() if not (b / ROOT_NAME).exists()]
        if not CNI_CACHE.exists():
            CNI_CACHE.mkdir(parents=True)
            created["cni_cache"] = str(CNI_CACHE)
        self._save()
        net.create()
        created["bridge"] = net.bridge
        self._save()
        if extra and Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() != "1":
            raise ClusterError("nodes on several subnets need this host to route between them: "
                               "sysctl -w net.ipv4.ip_forward=1")
        for n in extra:
            n.create()
            created.setdefault("bridges", []).append(n.bridge)
            self._save()

        _check_port_free(net.gateway, spec.port)
        datastore: list[str] = []
        if spec.etcd:
            from kubelite.devcluster import etcd

            try:
                proc, etcd_url, files = etcd.start(self.data_dir / "etcd")
            except etcd.EtcdError as exc:
                raise ClusterError(str(exc)) from None
            self.state["etcd"] = {"proc": proc.to_json(), "url": etcd_url}
            self._save()
            datastore = ["--datastore-endpoint", etcd_url, *files.server_args()]
        server_dir = self.data_dir / "server"
        (server_dir / "logs").mkdir(parents=True, exist_ok=True)
        server_log = server_dir / "logs" / "server.log"
        url = f"https://{net.gateway}:{spec.port}"
        with open(server_log, "ab") as out:
            p = subprocess.Popen([*_python(), "server", "--data-dir", str(server_dir), "--bind-address", net.gateway,
                                  "--port", str(spec.port), "--disable-agent", "--tls-san", net.gateway,
                                  *datastore, *spec.server_args],
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True, cwd=_source_root())
        self.state["server"] = {"proc": Proc.of(p.pid).to_json(), "url": url, "data_dir": str(server_dir)}
        self._save()
        _wait_ready(url, server_dir / "kubeconfig.yaml", p, server_log, 60.0)
        p.returncode = 0  # it outlives this process

        admin = server_dir / "kubeconfig.yaml"
        kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        text = admin.read_text()
        fd = os.open(kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        self.state["kubeconfig_text"] = text
        self._save()

        join = _join_args(admin, url)
        names = []
        nets = [net, *extra]
        for i in range(1, spec.nodes + 1):
            name = node_name(spec.name, i)
            home = nets[(i - 1) % len(nets)]  # in turn: node 1 on the first subnet, node 2 on the next…
            host = TestHost(name, home.address((i - 1) // len(nets) + 1), home.network.prefixlen,
                            f"{spec.name}-v{i}", self.data_dir / "nodes" / name)
            self._save_host(host)
            host.create(home)
            for other in nets:
                if other is not home:
                    host.run(["ip", "route", "add", other.subnet, "via", home.gateway], check=True)
            self._save_host(host)
            # joined as a node on another machine is: no CA key, its certificates through CSRs
            host.popen("agent", [*_python(), "agent", "--data-dir", str(host.data_dir), "--node-name", name,
                                 "--node-ip", host.address, "--flannel-backend", spec.flannel_backend, *join,
                                 *spec.agent_args],
                                cwd=_source_root())
            self._save_host(host)
            names.append(name)
        self._wait_nodes_ready(names, spec.ready_timeout)

    def _wait_nodes_ready(self, names: list[str], timeout: float) -> None:
        from kubelite.client.api import Client

        async def ready() -> set[str]:
            client = Client.from_kubeconfig(self.kubeconfig, user_agent="kubelite-dev")
            try:
                items = (await client.list("v1", "nodes")).get("items") or []
            finally:
                await client.close()
            return {n["metadata"]["name"] for n in items
                    if any(c.get("type") == "Ready" and c.get("status") == "True"
                           for c in (n.get("status") or {}).get("conditions") or [])}

        def serving(name: str) -> bool:  # its endpoint's certificate (a kubelet-serving CSR) was issued
            return (self.data_dir / "nodes" / name / "pki" / "kubelet-server-current.pem").exists()

        deadline = time.monotonic() + timeout
        while True:
            got = asyncio.run(ready())
            if set(names) <= got and all(serving(n) for n in names):
                return
            for host in self.hosts():
                agent = host.procs.get("agent")
                if agent is not None and not agent.alive():
                    tail = (host.log_dir / "agent.log").read_text(errors="replace")[-3000:]
                    raise ClusterError(f"the agent of {host.name} exited:\n{tail}")
            if time.monotonic() > deadline:
                if not set(names) <= got:
                    raise ClusterError(f"nodes not Ready within {timeout:.0f}s: {sorted(set(names) - got)}")
                raise ClusterError(f"no serving certificate within {timeout:.0f}s for "
                                   f"{sorted(n for n in names if not serving(n))} (kubectl get csr)")
            time.sleep(0.5)

    # ------------------------------------------------------------------ down
    def down(self) -> list[str]:
        """Undo what the state records, in reverse; returns what was done. Idempotent: when a
        process will not die, the rest of the processes are still stopped, then ClusterError
        says which, and the state (with the files) stays for another `down`."""
        if not self.state and not self.load():
            return []
        done: list[str] = []
        failed: list[str] = []
        pod_uids: set[str] = set(self.state.get("pod_uids") or [])
        for host in reversed(self.hosts()):
            pods = host.data_dir / "pods"
            if pods.is_dir():
                pod_uids |= {p.name for p in pods.iterdir() if p.is_dir() and "_" not in p.name}
            self.state["pod_uids"] = sorted(pod_uids)
            try:
                host.destroy()
            except TestHostError as exc:
                failed.append(str(exc))
                continue
            self.state["hosts"] = [h for h in self.state["hosts"] if h["name"] != host.name]
            self._save()
            done.append(f"stopped test host {host.name}")
        server = self.state.get("server")
        if server:
            proc = Proc.from_json(server["proc"])
            proc.stop(30.0)
            if proc.alive():
                failed.append(f"the server (pid {proc.pid}) does not stop")
            else:
                done.append("stopped the server")
        etcd = self.state.get("etcd")
        if etcd and not failed:  # after the server, which writes to it until it stops
            proc = Proc.from_json(etcd["proc"])
            proc.stop(30.0)
            if proc.alive():
                failed.append(f"etcd (pid {proc.pid}) does not stop")
            else:
                done.append("stopped etcd")
        if failed:
            raise ClusterError("; ".join(failed) + f" (state kept in {self.state_path}: run down again)")
        created = self.state.get("created") or {}
        if created.get("bridge") and link_exists(created["bridge"]):
            self.network.delete()
            done.append(f"removed bridge {created['bridge']}")
        for n in self.state.get("extra_networks") or []:
            if n["bridge"] in (created.get("bridges") or []) and link_exists(n["bridge"]):
                Network(n["subnet"], n["bridge"]).delete()
                done.append(f"removed bridge {n['bridge']}")
        done += _remove_pod_cgroups(pod_uids)
        for root in created.get("kubepods") or []:
            done += _remove_cgroup_tree(Path(root))
        if created.get("cni_cache"):
            with contextlib.suppress(OSError):
                _rmdir_empty_tree(Path(created["cni_cache"]))
                done.append(f"removed {created['cni_cache']}")
        kc = Path(self.state.get("kubeconfig", ""))
        if self.state.get("kubeconfig_text") and kc.is_file() and not kc.is_relative_to(self.data_dir):
            if kc.read_text() == self.state["kubeconfig_text"]:  # only the file we wrote, unchanged
                kc.unlink()
                done.append(f"removed {kc}")
        # only what up made: the data dir may be one the user had before
        for sub in ("server", "nodes", "etcd"):
            shutil.rmtree(self.data_dir / sub, ignore_errors=True)
        for f in (self.data_dir / "kubeconfig.yaml", self.state_path):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
        with contextlib.suppress(OSError):
            self.data_dir.rmdir()
        done.append(f"removed the cluster's files under {self.data_dir}")
        self.state = {}
        return done


def _check_port_free(address: str, port: int) -> None:
    with socket.socket() as s:
        try:
            s.bind((address, port))
        except OSError as exc:
            raise ClusterError(f"cannot listen on {address}:{port} ({exc.strerror}): is another API server "
                               "there? choose another --port") from None


def _wait_ready(url: str, kubeconfig: Path, proc: subprocess.Popen[bytes], log_path: Path, timeout: float) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ClusterError(f"the server exited with {proc.returncode}:\n"
                               f"{log_path.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(f"{url}/readyz", context=ctx, timeout=1) as r:
                if r.read() == b"ok" and kubeconfig.exists():
                    return
        if time.monotonic() > deadline:
            raise ClusterError(f"the server at {url} was not ready within {timeout:.0f}s (log: {log_path})")
        time.sleep(0.1)


def _join_args(admin: Path, url: str) -> list[str]:
    """A bootstrap token for the nodes and the agent's join flags (what `kubelite token create
    --print-join-command` prints, less the command itself)."""
    import yaml

    from kubelite.agent.bootstrap import ca_pin
    from kubelite.auth import bootstrap_tokens as bt
    from kubelite.client.api import Client

    token = bt.generate_token()
    secret = bt.token_secret(token, dt.timedelta(hours=1), "kubelite dev cluster nodes",
                             ("signing", "authentication"), (bt.DEFAULT_NODE_TOKEN_GROUP,))

    async def create() -> None:
        client = Client.from_kubeconfig(admin, user_agent="kubelite-dev")
        try:
            await client.create("v1", "secrets", secret, namespace=bt.NAMESPACE)
        finally:
            await client.close()

    asyncio.run(create())
    cfg = yaml.safe_load(admin.read_text())
    ca_pem = base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"])
    return ["--server", url, "--token", token, "--ca-cert-hash", ca_pin(ca_pem)]


def _rmdir_empty_tree(top: Path) -> None:
    for d in sorted((Path(r) for r, _, _ in os.walk(top)), key=lambda p: len(p.parts), reverse=True):
        d.rmdir()


def _remove_pod_cgroups(uids: set[str]) -> list[str]:
    """The pod cgroups of the nodes' pods (the agent removes a pod's only when it deletes the
    pod; containerd never does). Their processes died with their test hosts."""
    if not uids:
        return []
    from kubelite.agent.cgroups import detect_layout, manager_for

    mgr = manager_for(detect_layout())
    names = mgr.pod_cgroup_names()
    gone = [uid for uid in uids if uid in names and mgr.remove(names[uid])]
    return [f"removed {len(gone)} pod cgroups"] if gone else []


def _remove_cgroup_tree(top: Path) -> list[str]:
    if not top.is_dir():
        return []
    try:
        _rmdir_empty_tree(top)  # cgroupfs: an empty cgroup's control files do not count
    except OSError as exc:
        return [f"left cgroup {top}: {exc}"]
    return [f"removed cgroup {top}"]


__all__ = ["ClusterError", "ClusterSpec", "DEFAULT_DATA_DIR", "DevCluster", "TestHostError", "node_name"]
