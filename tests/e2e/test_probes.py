"""Probes end to end (real server, containerd, runc): the chapter's liveness check restarts
kuard, readiness takes a pod in and out of service, a startup probe gates liveness, exec and
tcpSocket probes; events and ``kubectl describe`` as upstream shows them.

Every wait follows a ``kubectl get -w`` stream of the pod (so short-lived states such as a
readiness flip are seen) or polls with a deadline."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time

import pytest

from tests.e2e.harness import KUBECTL, wait_until
from tests.e2e.test_agent_support import (
    BUSYBOX,
    KUARD,
    cid,
    create,
    cstatus,
    http_get,
    node_env,
    pod_manifest,
)

pytestmark = pytest.mark.e2e
node = pytest.fixture(scope="module")(node_env)


class PodWatch:
    """``kubectl get pod NAME -w -o json`` in the background: every version of the pod."""

    def __init__(self, server, name: str) -> None:
        import os

        env = dict(os.environ, KUBECONFIG=str(server.kubeconfig), HOME=str(server.data_dir.parent))
        env.pop("KUBERNETES_SERVICE_HOST", None)
        self.proc = subprocess.Popen([KUBECTL, "get", "pod", name, "-w", "-o", "json"], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env, text=True)
        self.seen: list[dict] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        dec = json.JSONDecoder()
        buf = ""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            buf += line
            while True:
                buf = buf.lstrip()
                if not buf:
                    break
                try:
                    obj, end = dec.raw_decode(buf)
                except ValueError:
                    break
                buf = buf[end:]
                with self._cond:
                    self.seen.append(obj)
                    self._cond.notify_all()

    def wait(self, pred, timeout: float, what: str, since: int = 0) -> tuple[int, dict]:
        """The first version from index ``since`` on that satisfies ``pred``: (index, pod)."""
        deadline = time.monotonic() + timeout
        i = since
        with self._cond:
            while True:
                while i < len(self.seen):
                    if pred(self.seen[i]):
                        return i, self.seen[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    last = self.seen[-1].get("status") if self.seen else None
                    raise AssertionError(f"timed out waiting for {what}; last status={json.dumps(last)[:1500]}")
                self._cond.wait(left)

    def close(self) -> None:
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._thread.join(5)


@contextlib.contextmanager
def watching(server, manifest: dict):
    """Create the pod, watch it, and delete it (without waiting: the node fixture waits) at the end."""
    create(server, manifest)
    w = PodWatch(server, manifest["metadata"]["name"])
    try:
        yield w
    finally:
        w.close()
        server.kubectl("delete", "pod", manifest["metadata"]["name"], "--wait=false", check=False)


def _events(server, name: str) -> list[dict]:
    p = server.kubectl("get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json")
    return json.loads(p.stdout)["items"]


def _wait_event(server, name: str, reason: str, message_start: str, timeout: float = 15) -> dict:
    def find():
        for e in _events(server, name):
            if e["reason"] == reason and e["message"].startswith(message_start):
                return e
        return None
    return wait_until(find, timeout, 0.2, f"event {reason} {message_start!r}")


def _running(pod: dict, name: str | None = None) -> bool:
    return "running" in cstatus(pod, name).get("state", {})


def _ready(pod: dict, name: str | None = None) -> bool:
    return _running(pod, name) and cstatus(pod, name).get("ready") is True


def _cond(pod: dict, ctype: str) -> str:
    return next((c["status"] for c in pod.get("status", {}).get("conditions") or [] if c["type"] == ctype), "")


def _ready_column(server, name: str) -> str:
    return server.kubectl("get", "pod", name, "--no-headers").stdout.split()[1]


# --------------------------------------------------------------------------- the chapter
def test_liveness_http_restarts_kuard(node):
    """kuard-pod-health.yaml with short timings: /healthy fails twice → killed and restarted."""
    server, agent = node
    probe = {"httpGet": {"path": "/healthy", "port": 8080}, "initialDelaySeconds": 1, "timeoutSeconds": 1,
             "periodSeconds": 1, "failureThreshold": 2}
    manifest = pod_manifest("kuard-health", agent.node_name, [
        {"name": "kuard", "image": KUARD, "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
         "livenessProbe": probe}])
    with watching(server, manifest) as w:
        i, pod = w.wait(lambda p: _ready(p) and cstatus(p)["started"], 30, "kuard running")
        first = cid(pod)
        ip = pod["status"]["podIP"]
        code, body = http_get(f"http://{ip}:8080/healthy/api/fail?n=2")
        assert code == 200 and '"failNext":2' in body.replace(" ", "")
        t0 = time.monotonic()
        i, pod = w.wait(lambda p: cstatus(p).get("restartCount") == 1 and _running(p), 20, "restarted", i)
        print(f"liveness failure -> restarted in {time.monotonic() - t0:.2f}s")
        cs = cstatus(pod)
        assert cid(pod) != first and cs["ready"] and cs["started"]
        last = cs["lastState"]["terminated"]
        assert last["containerID"] == f"containerd://{first}"
        assert last["reason"] == ("Completed" if last["exitCode"] == 0 else "Error")  # as the runtime reports
        unhealthy = _wait_event(server, "kuard-health", "Unhealthy", "Liveness probe failed")
        assert unhealthy["type"] == "Warning"
        assert unhealthy["message"] == "Liveness probe failed: HTTP probe failed with statuscode: 500"
        assert unhealthy["count"] == 2  # the two failures, deduplicated
        assert unhealthy["involvedObject"]["fieldPath"] == "spec.containers{kuard}"
        killing = _wait_event(server, "kuard-health", "Killing", "Container kuard failed liveness probe")
        assert killing["type"] == "Normal"
        assert killing["message"] == "Container kuard failed liveness probe, will be restarted"
        out = server.kubectl("describe", "pod", "kuard-health").stdout
        assert "Liveness:       http-get http://:8080/healthy delay=1s timeout=1s period=1s successThreshold=1 " \
               "failureThreshold=2" in out
        assert "Restart Count:  1" in out
        assert "Liveness probe failed: HTTP probe failed with statuscode: 500" in out
        assert "Container kuard failed liveness probe, will be restarted" in out
        # the new container is healthy: it stays
        i, pod = w.wait(lambda p: True, 1, "any", len(w.seen) - 1)
        assert cstatus(pod)["restartCount"] == 1


def test_readiness_http_takes_kuard_in_and_out_of_service(node):
    server, agent = node
    probe = {"httpGet": {"path": "/ready", "port": "http"}, "initialDelaySeconds": 2, "periodSeconds": 1,
             "failureThreshold": 1}
    manifest = pod_manifest("kuard-ready", agent.node_name, [
        {"name": "kuard", "image": KUARD, "ports": [{"containerPort": 8080, "name": "http"}],
         "readinessProbe": probe}])
    with watching(server, manifest) as w:
        # running but not ready until the first probe succeeds (initialDelaySeconds 2)
        i, pod = w.wait(lambda p: _running(p), 30, "running")
        assert cstatus(pod)["ready"] is False and _cond(pod, "Ready") == "False"
        assert _ready_column(server, "kuard-ready") == "0/1"
        started = time.time()
        i, pod = w.wait(lambda p: _ready(p), 15, "ready", i)
        assert time.time() - started >= 0.5
        assert _cond(pod, "Ready") == "True" and _cond(pod, "ContainersReady") == "True"
        assert _ready_column(server, "kuard-ready") == "1/1"
        http_get(f"http://{pod['status']['podIP']}:8080/ready/api/fail?n=4")
        i, pod = w.wait(lambda p: not _ready(p), 10, "unready", i)
        assert _cond(pod, "Ready") == "False" and _running(pod)
        conds = {c["type"]: c for c in pod["status"]["conditions"]}
        assert conds["Ready"]["reason"] == "ContainersNotReady"
        assert conds["Ready"]["message"] == "containers with unready status: [kuard]"
        i, pod = w.wait(lambda p: _ready(p), 15, "ready again", i)
        assert cstatus(pod)["restartCount"] == 0  # readiness never restarts
        assert _ready_column(server, "kuard-ready") == "1/1"
        ev = _wait_event(server, "kuard-ready", "Unhealthy", "Readiness probe failed")
        assert ev["message"] == "Readiness probe failed: HTTP probe failed with statuscode: 500"


def test_startup_probe_gates_liveness(node):
    server, agent = node
    gate = {"exec": {"command": ["cat", "/tmp/started"]}, "periodSeconds": 1}
    manifest = pod_manifest("slow-start", agent.node_name, [
        {"name": "slow", "image": BUSYBOX, "command": ["sh", "-c", "sleep 3; touch /tmp/started; exec sleep 3600"],
         "startupProbe": {**gate, "failureThreshold": 10},
         # without the gate this would kill the container before /tmp/started exists
         "livenessProbe": {**gate, "failureThreshold": 1}},
        {"name": "never", "image": BUSYBOX, "command": ["sleep", "3600"],
         "startupProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 2}},
    ])
    with watching(server, manifest) as w:
        i, pod = w.wait(lambda p: _running(p, "slow"), 30, "slow running")
        cs = cstatus(pod, "slow")
        assert cs["started"] is False and cs["ready"] is False
        i, pod = w.wait(lambda p: cstatus(p, "slow").get("started") is True, 15, "slow started", i)
        assert cstatus(pod, "slow")["ready"] is True and cstatus(pod, "slow")["restartCount"] == 0
        ev = _wait_event(server, "slow-start", "Unhealthy", "Startup probe failed: cat: can't open '/tmp/started'")
        assert ev["involvedObject"]["fieldPath"] == "spec.containers{slow}"
        # the container that never starts is killed and restarted
        i, pod = w.wait(lambda p: cstatus(p, "never").get("restartCount", 0) >= 1, 20, "never restarted")
        last = cstatus(pod, "never")["lastState"]["terminated"]
        assert last["exitCode"] == 137 and last["reason"] == "Error"  # sleep as PID 1 ignores SIGTERM
        killing = _wait_event(server, "slow-start", "Killing", "Container never failed startup probe")
        assert killing["message"] == "Container never failed startup probe, will be restarted"
        assert cstatus(w.seen[-1], "slow")["restartCount"] == 0
        assert not [e for e in _events(server, "slow-start") if e["message"].startswith("Liveness probe")]


def test_exec_probes(node):
    server, agent = node
    manifest = pod_manifest("exec-probe", agent.node_name, [
        {"name": "app", "image": BUSYBOX, "command": ["sh", "-c", "touch /tmp/healthy; exec sleep 3600"],
         "env": [{"name": "HEALTH_FILE", "value": "/tmp/healthy"}],
         "livenessProbe": {"exec": {"command": ["cat", "$(HEALTH_FILE)"]}, "periodSeconds": 1,
                           "failureThreshold": 1},
         "readinessProbe": {"exec": {"command": ["sleep", "3"]}, "timeoutSeconds": 1, "periodSeconds": 2}},
    ])
    with watching(server, manifest) as w:
        i, pod = w.wait(lambda p: _running(p), 30, "running")
        ev = _wait_event(server, "exec-probe", "Unhealthy", "Readiness probe failed")
        assert ev["message"] == 'Readiness probe failed: command "sleep 3" timed out'
        assert not _ready(w.seen[-1])
        agent.exec(cid(pod), "rm", "/tmp/healthy")
        i, pod = w.wait(lambda p: cstatus(p).get("restartCount") == 1 and _running(p), 20, "restarted", i)
        ev = _wait_event(server, "exec-probe", "Unhealthy", "Liveness probe failed")
        assert ev["message"] == "Liveness probe failed: cat: can't open '/tmp/healthy': No such file or directory\n"
        _wait_event(server, "exec-probe", "Killing", "Container app failed liveness probe, will be restarted")
        assert cstatus(pod)["lastState"]["terminated"]["exitCode"] == 137


def test_tcp_socket_probes(node):
    server, agent = node
    manifest = pod_manifest("tcp-probe", agent.node_name, [
        {"name": "kuard", "image": KUARD, "ports": [{"containerPort": 8080, "name": "http"}],
         "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1},
         "livenessProbe": {"tcpSocket": {"port": 8081}, "initialDelaySeconds": 2, "periodSeconds": 1,
                           "failureThreshold": 2}},
    ])
    with watching(server, manifest) as w:
        i, pod = w.wait(lambda p: _ready(p), 30, "ready")  # :8080 accepts
        ip = pod["status"]["podIP"]
        i, pod = w.wait(lambda p: cstatus(p).get("restartCount", 0) >= 1, 20, "restarted", i)  # :8081 refuses
        ev = _wait_event(server, "tcp-probe", "Unhealthy", "Liveness probe failed")
        assert ev["message"] == f"Liveness probe failed: dial tcp {ip}:8081: connect: connection refused"
        _wait_event(server, "tcp-probe", "Killing", "Container kuard failed liveness probe, will be restarted")
