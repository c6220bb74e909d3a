"""Shared pieces of the agent e2e tests: a real server (``--disable-agent``) plus the node
agent as its own process (so it can be SIGKILLed), with its own containerd in a temp dir."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.e2e.harness import ROOT, ServerProcess, free_port, wait_until

CTR = "/usr/bin/ctr"
LAUNCH = ("import argparse,sys\n"
          "from kubelite.cli.agent import register_agent_cli\n"
          "p=argparse.ArgumentParser(); s=p.add_subparsers(); register_agent_cli(s)\n"
          "a=p.parse_args(sys.argv[1:]); sys.exit(a.func(a))")
BUSYBOX = "kubelite.local/busybox:latest"
KUARD = "kubelite.local/kuard-amd64:blue"


class AgentProcess:
    def __init__(self, data_dir: Path, server: ServerProcess, node_name: str) -> None:
        self.data_dir = Path(data_dir)
        self.server = server
        self.node_name = node_name
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir.parent / f"agent-{node_name}.log"

    @property
    def socket(self) -> str:
        return str(self.data_dir / "containerd" / "containerd.sock")

    def start(self, timeout: float = 60) -> AgentProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            # its own endpoint port: the in-process agent of a full server on this host has 10250
            [sys.executable, "-c", LAUNCH, "agent", "--data-dir", str(self.data_dir),
             "--kubeconfig", str(self.server.kubeconfig), "--node-name", self.node_name,
             "--kubelet-port", str(free_port())],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited: {self.log_path.read_text()[-3000:]}")
            p = self.server.kubectl("get", "node", self.node_name, "-o", "json", check=False)
            if p.returncode != 0:
                return False
            conds = json.loads(p.stdout).get("status", {}).get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

        wait_until(ready, timeout, 0.2, "node Ready")
        return self

    def stop(self, timeout: float = 30) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    # ---------------------------------------------------------------- looking at the node
    def ctr(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        p = subprocess.run([CTR, "-a", self.socket, "-n", "k8s.io", *args], capture_output=True, text=True,
                           timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)}: {p.stderr}")
        return p

    def exec(self, container_id: str, *cmd: str) -> str:
        p = self.ctr("task", "exec", "--exec-id", "t" + uuid.uuid4().hex[:8], container_id, *cmd)
        return p.stdout

    def containers_of(self, uid: str) -> list[str]:
        out = self.ctr("containers", "ls", "-q", f"labels.\"io.kubernetes.pod.uid\"=={uid}").stdout.split()
        return out


def pod_manifest(name: str, node: str, containers: list[dict], **spec: object) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 2, "containers": containers, **spec}}


def create(server: ServerProcess, manifest: dict) -> dict:
    p = server.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(manifest))
    return json.loads(p.stdout)


def get_pod(server: ServerProcess, name: str) -> dict | None:
    p = server.kubectl("get", "pod", name, "-o", "json", check=False)
    if p.returncode != 0:
        return None
    return json.loads(p.stdout)


def wait_pod(server: ServerProcess, name: str, pred, timeout: float = 60, what: str = "") -> dict:
    def check():
        pod = get_pod(server, name)
        return pod if pod is not None and pred(pod) else None
    return wait_until(check, timeout, 0.2, what or f"pod {name}")


def phase(pod: dict) -> str:
    return pod.get("status", {}).get("phase", "")


def cstatus(pod: dict, name: str | None = None) -> dict:
    for s in pod.get("status", {}).get("containerStatuses") or []:
        if name is None or s["name"] == name:
            return s
    return {}


def cid(pod: dict, name: str | None = None) -> str:
    return cstatus(pod, name).get("containerID", "").removeprefix("containerd://")


def running(pod: dict) -> bool:
    return phase(pod) == "Running" and all("running" in s["state"] for s in pod["status"]["containerStatuses"])


def delete(server: ServerProcess, name: str, timeout: float = 60) -> float:
    t0 = time.monotonic()
    server.kubectl("delete", "pod", name, "--wait=true", f"--timeout={int(timeout)}s")
    return time.monotonic() - t0


def http_get(url: str, timeout: float = 3) -> tuple[int, str]:
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode(errors="replace")


def leftovers(agent: AgentProcess, uid: str) -> list[str]:
    """Everything of pod ``uid`` still on the host."""
    found = []
    found += [f"container {c}" for c in agent.containers_of(uid)]
    for base in Path("/sys/fs/cgroup").iterdir():
        for parent in ("kubepods", "kubepods/burstable", "kubepods/besteffort"):
            d = base / parent / f"pod{uid}"
            if d.exists():
                found.append(f"cgroup {d}")
    for line in Path("/proc/self/mounts").read_text().splitlines():
        if uid in line:
            found.append(f"mount {line.split()[1]}")
    for d in (agent.data_dir / "pods").glob(f"*{uid}*"):
        found.append(f"dir {d}")
    return found


def bridge_ports() -> list[str]:
    p = subprocess.run(["ip", "-o", "link", "show", "master", "kubelite0"], capture_output=True, text=True)
    return [ln.split(":")[1].strip().split("@")[0] for ln in p.stdout.splitlines() if ln.strip()]


def netns_of(agent: AgentProcess) -> list[str]:
    d = agent.data_dir / "containerd" / "state" / "io.containerd.grpc.v1.cri" / "netns"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def node_env(tmp_path_factory):
    """(server, agent) for one test module; the node is emptied and everything removed at the end."""
    base = tmp_path_factory.mktemp("agent")
    server = ServerProcess(base / "srv").start()
    name = "kl-e2e-agent"
    agent = AgentProcess(base / "node", server, name)
    try:
        agent.start()
        yield server, agent
    finally:
        with contextlib.suppress(Exception):
            server.kubectl("delete", "pods", "--all", "--grace-period=1", "--wait=true", "--timeout=60s", check=False)
        with contextlib.suppress(Exception):
            wait_until(lambda: not agent.ctr("containers", "ls", "-q", check=False).stdout.strip(), 30, 0.2,
                       "no containers")
        agent.stop()
        server.stop()
        _unmount_under(agent.data_dir)
        if not bridge_ports():  # the bridge plugin made it; nothing else uses it now
            subprocess.run(["ip", "link", "del", "kubelite0"], capture_output=True)


def _unmount_under(d: Path) -> None:
    prefix = str(d) + "/"
    mps = [ln.split()[1] for ln in Path("/proc/self/mounts").read_text().splitlines()
           if ln.split()[1].startswith(prefix)]
    for mp in sorted(mps, key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)


def node_ready(server: ServerProcess, node: str) -> bool:
    p = server.kubectl("get", "node", node, "-o", "json", check=False)
    return p.returncode == 0 and any(c["type"] == "Ready" and c["status"] == "True"
                                     for c in json.loads(p.stdout).get("status", {}).get("conditions", []))


@contextlib.contextmanager
def full_cluster(data_dir: Path, node: str, *cleanup_namespaces: str, extra: tuple[str, ...] = ()):
    """`kubelite server` as users run it (API + scheduler + agent) with the node Ready; yields
    (server, AgentProcess view of its node); at the end pods go, the server stops, the host is left clean."""
    server = ServerProcess(data_dir, extra=["--node-name", node, *extra]).start()
    view = AgentProcess(server.data_dir, server, node)  # to look at the host; the server runs the agent
    try:
        wait_until(lambda: node_ready(server, node), 60, 0.1, "node Ready")
        yield server, view
    finally:
        # a server that died during the test (a crash) is started again, so its agent removes the
        # pods it left running (later tests would find them on this host), and the test still fails
        died = server.died()
        if died is not None:
            with contextlib.suppress(Exception):
                server.start()
        with contextlib.suppress(Exception):
            server.kubectl("delete", "pods", "--all", "-A", "--grace-period=1", "--timeout=60s", check=False)
        for ns in cleanup_namespaces:
            with contextlib.suppress(Exception):
                server.kubectl("delete", "ns", ns, "--timeout=60s", check=False)
        server.stop()
        _unmount_under(server.data_dir)
        if not bridge_ports():
            subprocess.run(["ip", "link", "del", "kubelite0"], capture_output=True)
        if died is not None:
            raise AssertionError(f"kubelite server died during the test (exit status {died}); its log: {server.log_path}")
