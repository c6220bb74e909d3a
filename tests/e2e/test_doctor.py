"""`kubelite doctor` end to end: `kubelite server` as users run it (API, scheduler, agent),
two real registries (Debian's docker-registry: one open, one with htpasswd auth), and one
pod per failure the agent produces today, all created at once. Each test waits for its pod
to reach the state, runs `kubelite doctor POD` and checks that it names the cause and the fix.

``KUBELITE_RECORD_DOCTOR=DIR`` also writes each pod's evidence (pod, events, nodes, logs) to
``DIR/<pod>.json``: that is how tests/unit/doctor_fixtures/ were recorded.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import ROOT, wait_until
from tests.e2e.test_agent_support import BUSYBOX, full_cluster, get_pod

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not all(shutil.which(b) for b in ("docker-registry", "htpasswd")),
                       reason="docker-registry and apache2-utils (htpasswd) are needed (make setup)"),
]
NODE = "kl-e2e-doctor"
TAINT = {"key": "kubelite.io/doctor", "value": "e2e", "effect": "NoSchedule"}
TOLERATE = [{"key": TAINT["key"], "operator": "Exists", "effect": "NoSchedule"}]
SLEEP = ["sleep", "3600"]
RECORD = os.environ.get("KUBELITE_RECORD_DOCTOR", "")
_recorded: dict[str, dict] = {}


def _pod(name: str, containers: list[dict], scheduled: bool = False, **spec) -> dict:
    """A pod bound to the node (nodeName), or left to the scheduler (``scheduled``)."""
    base: dict = {"terminationGracePeriodSeconds": 1, "containers": containers}
    if not scheduled:
        base["nodeName"] = NODE
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {**base, **spec}}


def _box(name: str = "main", command: list[str] | None = None, **extra) -> dict:
    return {"name": name, "image": BUSYBOX, "command": command or SLEEP, **extra}


def _manifests(open_reg: str, auth_reg: str) -> list[dict]:
    return [
        _pod("dr-cpu", [_box(resources={"requests": {"cpu": "64"}})], scheduled=True, tolerations=TOLERATE),
        _pod("dr-selector", [_box()], scheduled=True, tolerations=TOLERATE, nodeSelector={"disktype": "ssd"}),
        _pod("dr-taint", [_box()], scheduled=True),
        _pod("dr-image-missing", [_box(image=f"{open_reg}/doctor/kuard:no-such-tag")]),
        _pod("dr-image-auth", [_box(image=f"{auth_reg}/doctor/private:v1")]),
        _pod("dr-crash", [_box(command=["sh", "-c", "echo starting >&2; echo 'error: cannot connect to the "
                                                    "database at db:5432' >&2; exit 3"])]),
        _pod("dr-oom", [_box(command=["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
                             resources={"limits": {"memory": "20Mi"}})]),
        _pod("dr-readiness", [_box(readinessProbe={"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1})]),
        _pod("dr-liveness", [_box(livenessProbe={"exec": {"command": ["cat", "/tmp/healthy"]}, "periodSeconds": 1,
                                                 "failureThreshold": 1})]),
        _pod("dr-configmap", [_box(envFrom=[{"configMapRef": {"name": "dr-missing-config"}}])]),
        _pod("dr-secret", [_box(volumeMounts=[{"name": "creds", "mountPath": "/creds"}])],
             volumes=[{"name": "creds", "secret": {"secretName": "dr-missing-secret"}}]),
        _pod("dr-hostpath", [_box(volumeMounts=[{"name": "data", "mountPath": "/data"}])],
             volumes=[{"name": "data", "hostPath": {"path": "/nonexistent/kubelite-doctor", "type": "Directory"}}]),
        _pod("dr-healthy", [_box()]),
    ]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from tests.e2e.test_registry import Registry

    regs: list[Registry] = []
    with full_cluster(tmp_path_factory.mktemp("doctor") / "data", NODE) as (server, view):
        try:
            regs.append(Registry().start())
            regs.append(Registry(auth=True).start())
            server.kubectl("taint", "nodes", NODE, f"{TAINT['key']}={TAINT['value']}:{TAINT['effect']}")
            docs = _manifests(regs[0].host, regs[1].host)
            server.kubectl("create", "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))
            yield server
            if RECORD:
                out = Path(RECORD)
                out.mkdir(parents=True, exist_ok=True)
                (out / "e2e-recorded.json").write_text(json.dumps(_recorded, indent=1, sort_keys=True) + "\n")
        finally:
            for r in regs:
                r.stop()


def _slim(ev: dict) -> dict:
    """A recording small enough to keep: no managedFields, no node image lists, and of the
    other pods only what the scheduler counts."""
    def meta(o: dict) -> dict:
        o = json.loads(json.dumps(o))
        o.get("metadata", {}).pop("managedFields", None)
        return o

    ev = dict(ev, pod=meta(ev["pod"]), events=[meta(e) for e in ev["events"]])
    nodes = [meta(n) for n in ev.get("nodes") or []]
    for n in nodes:
        n.get("status", {}).pop("images", None)
    ev["nodes"] = nodes if ev.get("nodes") is not None else None
    if ev["pod"].get("spec", {}).get("nodeName"):
        ev["nodePods"] = None
    elif ev.get("nodePods") is not None:
        ev["nodePods"] = [{"metadata": {k: p["metadata"][k] for k in ("name", "namespace", "uid")},
                           "spec": {"nodeName": p["spec"]["nodeName"],
                                    "containers": [{"name": c["name"], "resources": c.get("resources") or {}}
                                                   for c in p["spec"]["containers"]]},
                           "status": {"phase": p.get("status", {}).get("phase")}} for p in ev["nodePods"]]
    return ev


def _record(server, name: str) -> None:
    """Keep the evidence doctor saw for ``name`` (written at the end of the module)."""
    from kubelite.client.api import Client
    from kubelite.doctor.collect import gather

    async def run() -> dict:
        async with Client.from_kubeconfig(server.kubeconfig) as c:
            return _slim((await gather(c, "default", name))[0].to_dict())

    _recorded[name] = asyncio.run(run())


def doctor(server, *args: str) -> str:
    p = subprocess.run([sys.executable, "-m", "kubelite", "doctor", "--kubeconfig", str(server.kubeconfig), *args],
                       capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout


def _waiting(pod: dict) -> str:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        w = (cs.get("state") or {}).get("waiting")
        if w:
            return w.get("reason", "")
    return ""


def _last_terminated(pod: dict) -> dict:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        t = (cs.get("lastState") or {}).get("terminated")
        if t:
            return t
    return {}


def _wait(server, name: str, pred, timeout: float = 60) -> dict:
    return wait_until(lambda: (lambda p: p if p and pred(p) else None)(get_pod(server, name)), timeout, 0.3, name)


def _unschedulable(p: dict) -> bool:
    return any(c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable"
               for c in (p.get("status") or {}).get("conditions") or [])


def _running_unready(p: dict) -> bool:
    cs = ((p.get("status") or {}).get("containerStatuses") or [{}])[0]
    return "running" in (cs.get("state") or {}) and not cs.get("ready")


WAITS = {
    "dr-cpu": _unschedulable,
    "dr-selector": _unschedulable,
    "dr-taint": _unschedulable,
    "dr-image-missing": lambda p: _waiting(p) == "ImagePullBackOff",
    "dr-image-auth": lambda p: _waiting(p) == "ImagePullBackOff",
    "dr-crash": lambda p: _waiting(p) == "CrashLoopBackOff" and _last_terminated(p).get("exitCode") == 3,
    "dr-oom": lambda p: _last_terminated(p).get("reason") == "OOMKilled",
    "dr-readiness": _running_unready,
    "dr-liveness": lambda p: any(cs.get("restartCount", 0) >= 1 for cs in p["status"].get("containerStatuses") or []),
    "dr-configmap": lambda p: _waiting(p) == "CreateContainerConfigError",
    # a volume that cannot be mounted holds the whole pod before any container (FailedMount)
    "dr-secret": lambda p: _waiting(p) == "ContainerCreating",
    "dr-hostpath": lambda p: _waiting(p) == "ContainerCreating",
    "dr-healthy": lambda p: (p.get("status") or {}).get("phase") == "Running" and all(
        cs.get("ready") for cs in p["status"].get("containerStatuses") or []),
}


# name: (what doctor must say: the reason, words of the cause, words of the fix)
EXPECT = {
    "dr-cpu": ["error InsufficientResources", "requests 64 CPU", "2 CPU allocatable",
               "lower resources.requests.cpu"],
    "dr-selector": ["error NodeSelectorMismatch", "nodeSelector asks for disktype=ssd",
                    f"kubectl label nodes {NODE} disktype=ssd"],
    "dr-taint": ["error UntoleratedTaint", "kubelite.io/doctor=e2e:NoSchedule", "spec.tolerations",
                 f"kubectl taint nodes {NODE} kubelite.io/doctor=e2e:NoSchedule-"],
    "dr-image-missing": ['error ImageNotFound container "main"', "no-such-tag", "does not exist",
                         "check the image name and tag"],
    "dr-image-auth": ['error ImagePullUnauthorized container "main"', "401 Unauthorized", "without valid credentials",
                      "kubectl create secret docker-registry", "imagePullSecrets"],
    "dr-crash": ['error CrashLoopBackOff container "main"', "exit code 3",
                 '"error: cannot connect to the database at db:5432"', "kubectl logs dr-crash -c main --previous"],
    "dr-oom": ['OOMKilled container "main"', "more memory than its limit (20Mi)", "raise resources.limits.memory"],
    "dr-readiness": ['error ReadinessProbeFailing container "main"', "exec cat /tmp/ready",
                     "Services send it no traffic", "kubectl exec dr-readiness -c main -- cat /tmp/ready"],
    "dr-liveness": ['LivenessProbeFailing container "main"', "because its liveness probe (exec cat /tmp/healthy) failed",
                    "kubectl exec dr-liveness -c main -- cat /tmp/healthy", "startupProbe"],
    "dr-configmap": ['error ConfigMapNotFound container "main"', 'ConfigMap "dr-missing-config" does not exist',
                     "envFrom[0].configMapRef", "kubectl create configmap dr-missing-config -n default"],
    "dr-secret": ["error SecretNotFound", 'Secret "dr-missing-secret" does not exist',
                  'volume "creds"', "kubectl create secret generic dr-missing-secret -n default"],
    "dr-hostpath": ["error VolumeMountFailed", 'hostPath volume "data"', "/nonexistent/kubelite-doctor is not a "
                    "directory", "create /nonexistent/kubelite-doctor on the node"],
    "dr-healthy": ["Running and Ready: nothing to fix."],
}


@pytest.mark.parametrize("name", sorted(WAITS))
def test_doctor_names_cause_and_fix(cluster, name):
    _wait(cluster, name, WAITS[name], 60)
    out = doctor(cluster, name)
    if RECORD:
        _record(cluster, name)
    flat = " ".join(out.split())  # the text is wrapped at 100 columns
    for words in EXPECT[name]:
        assert words in flat, f"{words!r} not in:\n{out}"


def test_doctor_without_a_name_lists_what_needs_attention(cluster):
    for name, pred in WAITS.items():
        _wait(cluster, name, pred, 60)
    out = doctor(cluster)
    shown = {ln.split()[0].removeprefix("pod/") for ln in out.splitlines() if ln.startswith("pod/")}
    assert shown == set(WAITS) - {"dr-healthy"}
    doc = json.loads(doctor(cluster, "--all", "-o", "json"))
    by = {d["name"]: d for d in doc["items"]}
    assert by["dr-healthy"]["healthy"] is True and by["dr-healthy"]["findings"] == []
    assert [f["reason"] for f in by["dr-taint"]["findings"]] == ["UntoleratedTaint"]


def test_the_fix_works_for_a_missing_configmap(cluster):
    _wait(cluster, "dr-configmap", WAITS["dr-configmap"], 60)
    cluster.kubectl("create", "configmap", "dr-missing-config", "--from-literal=GREETING=hello")
    _wait(cluster, "dr-configmap", WAITS["dr-healthy"], 60)
    assert "Running and Ready: nothing to fix." in doctor(cluster, "dr-configmap")


def test_doctor_on_a_missing_pod_is_kubectls_not_found(cluster):
    p = subprocess.run([sys.executable, "-m", "kubelite", "doctor", "--kubeconfig", str(cluster.kubeconfig), "nope"],
                       capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert p.returncode == 1 and p.stderr == 'Error from server (NotFound): pods "nope" not found\n'
