"""A node dies under a Deployment (issue 12, with the multi-node work): on a dev cluster of three
nodes, the agent of a node that runs some of the Deployment's pods is killed -9. Its Node goes
Unknown and gets the unreachable taints, its pods go not ready and are evicted after their
tolerationSeconds (short here, with a short node-monitor grace period and node Leases renewed
every 2 s), replacements run on the
other two nodes, and the Deployment reports all its replicas ready and available again. The
node's agent starts again: the taints go, the evicted pods are confirmed gone, nothing moves back.
Then the node is cut off without its agent restarting (SIGSTOP, SIGCONT): the pod that stayed
there, marked not ready by the node lifecycle controller, is made Ready again by its agent.

The evicted pods stay Terminating, as upstream's do: their node is not there to confirm."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

from tests.e2e.harness import ROOT, free_port, wait_until
from tests.e2e.test_devcluster import BUSYBOX, before, host_state, kubectl_for, mounts

__all__ = ["before"]  # the fixture

NAME = "klfo"
SUBNET = "198.19.244.0/24"  # neither the default subnet nor another dev cluster test's
GRACE = 8  # --node-monitor-grace-period: 4 renewals of the agents' 8 s Leases (upstream: 50 s, 10 s renewals)
LEASE = 8  # the agents' --node-lease-duration-seconds
TOLERATION = 2  # the pods' tolerationSeconds for not-ready / unreachable
REPLICAS = 3


def deployment() -> dict:
    tolerations = [{"key": f"node.kubernetes.io/{k}", "operator": "Exists", "effect": "NoExecute",
                    "tolerationSeconds": TOLERATION} for k in ("not-ready", "unreachable")]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            # a grace period (not 0, which deletes at once): evicted pods wait on their node, Terminating
            "spec": {"terminationGracePeriodSeconds": 1, "tolerations": tolerations,
                     "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                                    "whenUnsatisfiable": "ScheduleAnyway",
                                                    "labelSelector": {"matchLabels": {"app": "web"}}}],
                     "containers": [{"name": "c", "image": BUSYBOX, "imagePullPolicy": "Never",
                                     "command": ["sleep", "3600"],
                                     "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}}]}}}}


def _ready(obj: dict) -> str:
    return next((c["status"] for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), "")


def test_a_dead_nodes_deployment_pods_are_replaced_on_the_other_nodes(tmp_path: Path, before):
    from kubelite.devcluster.cluster import ClusterSpec, DevCluster, _join_args

    data, kc = tmp_path / "dev", tmp_path / "kc.yaml"
    kubectl = kubectl_for(kc, tmp_path)
    cluster = DevCluster(data)
    try:
        cluster.up(ClusterSpec(data_dir=data, nodes=3, name=NAME, subnet=SUBNET, port=free_port(), kubeconfig=kc,
                               server_args=["--node-monitor-grace-period", str(GRACE),
                                            "--node-monitor-period", "1"],
                               agent_args=["--node-lease-duration-seconds", str(LEASE)]))
        names = [f"{NAME}-{i}" for i in (1, 2, 3)]

        def pods() -> list[dict]:
            return json.loads(kubectl("get", "pods", "-l", "app=web", "-o", "json").stdout)["items"]

        def deploy_status() -> dict:
            return json.loads(kubectl("get", "deployment", "web", "-o", "json").stdout).get("status") or {}

        def all_ready(st: dict) -> bool:
            return all(st.get(k) == REPLICAS for k in ("replicas", "updatedReplicas", "readyReplicas",
                                                         "availableReplicas")) and not st.get("unavailableReplicas")

        kubectl("apply", "-f", "-", input=json.dumps(deployment()))
        wait_until(lambda: all_ready(deploy_status()), 90, 0.5, f"{REPLICAS} replicas available")
        placed = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods()}
        assert len(placed) == REPLICAS, placed
        # the victim: the node with the most of them (spread, so likely one each)
        victim = max(names, key=lambda n: list(placed.values()).count(n))
        doomed = {p for p, n in placed.items() if n == victim}
        assert doomed

        # and a pod there that tolerates the node's problems for ever: it stays, not ready meanwhile
        kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "steady"},
            "spec": {"nodeName": victim, "terminationGracePeriodSeconds": 1,
                     "tolerations": [{"key": f"node.kubernetes.io/{k}", "operator": "Exists", "effect": "NoExecute"}
                                     for k in ("not-ready", "unreachable")],
                     "containers": [{"name": "c", "image": BUSYBOX, "imagePullPolicy": "Never",
                                     "command": ["sleep", "3600"],
                                     "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}}]}}))

        def steady() -> dict:
            return json.loads(kubectl("get", "pod", "steady", "-o", "json").stdout)

        wait_until(lambda: _ready(steady()) == "True", 60, 0.3, "steady Ready")
        host = next(h for h in cluster.hosts() if h.name == victim)
        agent = host.procs["agent"]
        assert agent.signal(signal.SIGKILL) and agent.wait_gone(10)  # by its PID: no more status, no Lease renewals
        killed = time.monotonic()

        def node() -> dict:
            return json.loads(kubectl("get", "node", victim, "-o", "json").stdout)

        wait_until(lambda: _ready(node()) == "Unknown", GRACE + 20, 0.3, f"{victim} Unknown")
        wait_until(lambda: {("node.kubernetes.io/unreachable", "NoExecute"), ("node.kubernetes.io/unreachable",
                                                                              "NoSchedule")}
                   <= {(t["key"], t["effect"]) for t in node()["spec"].get("taints") or []}, 20, 0.3,
                   "unreachable taints")

        # evicted after their tolerationSeconds: Terminating (their node cannot confirm), replaced
        def replaced() -> dict[str, str] | None:
            items = pods()
            gone = {p["metadata"]["name"] for p in items if p["metadata"].get("deletionTimestamp")}
            live = {p["metadata"]["name"]: p["spec"].get("nodeName", "") for p in items
                    if not p["metadata"].get("deletionTimestamp") and p["status"].get("phase") == "Running"
                    and _ready(p) == "True"}
            return live if doomed <= gone and len(live) == REPLICAS else None

        try:
            live = wait_until(replaced, 90, 0.5, "the dead node's pods evicted and replaced")
        except AssertionError as exc:
            rows = [(p["metadata"]["name"], p["spec"].get("nodeName"), p["status"].get("phase"), _ready(p),
                     p["metadata"].get("deletionTimestamp")) for p in pods()]
            raise AssertionError(f"{exc}; pods: {rows}; {kubectl('get', 'events').stdout[-3000:]}") from None
        print(f"failover: {REPLICAS} replicas Ready again {time.monotonic() - killed:.1f}s after the agent's kill")
        assert victim not in live.values() and set(live.values()) <= set(names) - {victim}
        assert not doomed & set(live)
        for p in pods():
            if p["metadata"]["name"] in doomed:
                target = next(c for c in p["status"]["conditions"] if c["type"] == "DisruptionTarget")
                assert target["reason"] == "DeletionByTaintManager", target
        # the Deployment and its ReplicaSet count the replacements, not the Terminating pods
        st = wait_until(lambda: s if all_ready(s := deploy_status()) else None, 30, 0.5,
                        "the Deployment's status back to all replicas available")
        assert next(c for c in st["conditions"] if c["type"] == "Available")["status"] == "True"
        rs = json.loads(kubectl("get", "rs", "-l", "app=web", "-o", "json").stdout)["items"]
        assert len(rs) == 1
        assert rs[0]["status"].get("readyReplicas") == REPLICAS == rs[0]["status"].get("availableReplicas")
        assert rs[0]["status"].get("terminatingReplicas") == len(doomed)
        out = kubectl("rollout", "status", "deployment/web", "--timeout=20s").stdout
        assert 'deployment "web" successfully rolled out' in out

        # the node comes back: taints gone, its evicted pods confirmed gone, the replicas stay as they are
        assert _ready(steady()) == "False" and not steady()["metadata"].get("deletionTimestamp")
        join = _join_args(Path(cluster.state["server"]["data_dir"]) / "kubeconfig.yaml", cluster.state["server"]["url"])
        agent = host.popen("agent", [sys.executable, "-m", "kubelite", "agent", "--data-dir", str(host.data_dir),
                             "--node-name", victim, "--node-ip", host.address, "--node-lease-duration-seconds",
                             str(LEASE), *join], cwd=ROOT)
        cluster._save_host(host)  # `down` stops the new agent
        wait_until(lambda: _ready(node()) == "True" and not any(
            t["key"] == "node.kubernetes.io/unreachable" for t in node()["spec"].get("taints") or []), 90, 0.5,
            f"{victim} Ready and untainted")
        wait_until(lambda: {p["metadata"]["name"] for p in pods()} == set(live), 60, 0.5,
                   "the evicted pods gone for good")
        wait_until(lambda: all_ready(deploy_status()), 30, 0.5, "all replicas available")
        rs_status = json.loads(kubectl("get", "rs", "-l", "app=web", "-o", "json").stdout)["items"][0]["status"]
        assert rs_status.get("terminatingReplicas", 0) == 0 and rs_status["availableReplicas"] == REPLICAS
        assert {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods()} == live  # nothing moved back
        wait_until(lambda: _ready(steady()) == "True", 30, 0.3, "steady Ready again")

        # the node is cut off a while without its agent restarting (its process stopped, then
        # continued): the lifecycle controller marks its pods not ready; the agent, back, finds
        # the API saying other than it wrote and writes its pods' readiness again (needsReconcile)
        # (nsenter, the agent's parent, stops itself when its child stops: it is continued too,
        # or it would never reap the agent and the test host's PID namespace would never go)
        nsenter = int(Path(f"/proc/{agent.pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        assert agent.signal(signal.SIGSTOP)
        try:
            wait_until(lambda: _ready(node()) == "Unknown", GRACE + 20, 0.3, f"{victim} Unknown again")
            wait_until(lambda: _ready(steady()) == "False", 20, 0.3, "steady marked not ready")
        finally:
            agent.signal(signal.SIGCONT)
            with contextlib.suppress(ProcessLookupError):
                os.kill(nsenter, signal.SIGCONT)
        wait_until(lambda: _ready(node()) == "True", 30, 0.3, f"{victim} Ready again")
        wait_until(lambda: _ready(steady()) == "True", 30, 0.3, "steady Ready again, from the same agent")
    finally:
        cluster.down()
    after = host_state()
    for what in before:
        assert after[what] == before[what], what
    assert [m for m in mounts() if str(data) in m] == []
