"""Two `kubelite server`s on a 3-member TLS etcd elect one scheduler and one controller manager
through the Leases kube-system/kube-scheduler and kube-system/kube-controller-manager (issue 9,
"Done when": kill -9 the server holding the scheduler lease: the other schedules new pods within
15 s and running pods are untouched).

The node is a joined `kubelite agent --server URL1,URL2`: its client-side load balancer moves it
to the surviving server. The election runs with short timings (lease 6 s, renew deadline 4 s,
retry 1 s): with upstream's 15 s / 10 s / 2 s a candidate takes over 15 to 25 s after the
holder's last renewal (it counts the lease from when it saw that renewal, and retries every
2-4.4 s), more than the 15 s asked for."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.e2e.etcd import EtcdCluster, etcd_flags
from tests.e2e.harness import ROOT, ServerProcess, free_port, wait_until

ELECTION = ["--leader-elect-lease-duration", "6s", "--leader-elect-renew-deadline", "4s",
            "--leader-elect-retry-period", "1s"]
NODE = "kl-e2e-leader"
IDENTITY = re.compile(r"^[^_]+_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = tmp_path_factory.mktemp("leaders")
    etcd = EtcdCluster(base / "etcd", 3, tls=True).start()
    servers: list[ServerProcess] = []
    agent: subprocess.Popen | None = None
    node_dir = base / "node"
    try:
        one = ServerProcess(base / "s1", extra=[*etcd_flags(etcd), *ELECTION]).start(timeout=90)
        servers.append(one)
        token = (one.data_dir / "server-token").read_text().strip()
        two = ServerProcess(base / "s2", extra=[*etcd_flags(etcd), *ELECTION, "--token", token]).start(timeout=90)
        servers.append(two)
        out = subprocess.run([sys.executable, "-m", "kubelite", "token", "create", "--data-dir", str(one.data_dir)],
                             capture_output=True, text=True, cwd=ROOT, timeout=60, check=True).stdout.splitlines()
        join, pin = out[0], out[1].split("--ca-cert-hash ")[1]
        log = open(base / "agent.log", "ab")
        agent = subprocess.Popen(
            [sys.executable, "-m", "kubelite", "agent", "--server", f"{one.url},{two.url}", "--token", join,
             "--ca-cert-hash", pin, "--lb-server-port", str(free_port()), "--data-dir", str(node_dir),
             "--node-name", NODE], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)

        def ready() -> bool:
            assert agent is not None
            if agent.poll() is not None:
                raise AssertionError("agent exited: " + (base / "agent.log").read_text()[-3000:])
            p = one.kubectl("get", "node", NODE, "-o", "json", check=False)
            conds = json.loads(p.stdout).get("status", {}).get("conditions", []) if p.returncode == 0 else []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

        wait_until(ready, 90, 0.3, "joined node Ready")
        yield one, two, etcd
    finally:
        alive = [s for s in servers if s.proc is not None and s.proc.poll() is None]
        if alive:
            with contextlib.suppress(Exception):
                alive[0].kubectl("delete", "pods", "--all", "-A", "--grace-period=1", "--timeout=60s", check=False)
        if agent is not None and agent.poll() is None:
            # the agent leaves containers running when it stops: let it remove them first
            sock = str(node_dir / "containerd" / "containerd.sock")
            with contextlib.suppress(Exception):
                wait_until(lambda: not subprocess.run(
                    ["/usr/bin/ctr", "-a", sock, "-n", "k8s.io", "containers", "ls", "-q"],
                    capture_output=True, text=True, timeout=30).stdout.strip(), 60, 0.3, "no containers on the node")
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(30)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        for s in servers:
            s.stop()
        etcd.stop()
        from tests.e2e.test_agent_support import _unmount_under, bridge_ports

        _unmount_under(node_dir)
        with contextlib.suppress(OSError):
            shutil.rmtree(node_dir)
        if not bridge_ports():
            subprocess.run(["ip", "link", "del", "kubelite0"], capture_output=True)


def lease(server: ServerProcess, name: str) -> dict:
    return json.loads(server.kubectl("get", "lease", "-n", "kube-system", name, "-o", "json").stdout)


def holder_of(server: ServerProcess, name: str) -> str:
    """The identity this server's log says it campaigned as, if it acquired lease ``name``."""
    text = server.log_path.read_text(errors="replace")
    m = re.search(rf"attempting to acquire leader lease kube-system/{name}\.\.\. \(as (\S+)\)", text)
    acquired = f"successfully acquired lease kube-system/{name}" in text
    return m.group(1) if m and acquired else ""


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                {"name": "c", "image": "kubelite.local/busybox:latest", "command": ["sleep", "3600"]}]}}


def get_pod(server: ServerProcess, name: str) -> dict:
    return json.loads(server.kubectl("get", "pod", name, "-o", "json").stdout)


def running(p: dict) -> bool:
    st = p.get("status") or {}
    return st.get("phase") == "Running" and all("running" in c["state"] for c in st.get("containerStatuses") or [])


def test_each_lease_has_one_holder(cluster) -> None:
    one, two, _ = cluster
    for name in ("kube-scheduler", "kube-controller-manager"):
        spec = wait_until(lambda n=name: lease(two, n).get("spec", {}).get("holderIdentity"), 30, 0.2, name)
        held = lease(two, name)["spec"]
        assert IDENTITY.match(held["holderIdentity"]), held
        assert held["leaseDurationSeconds"] == 6 and held["leaseTransitions"] == 0
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$", held["renewTime"])
        holders = [s for s in (one, two) if holder_of(s, name)]
        assert len(holders) == 1 and holder_of(holders[0], name) == spec, (name, [holder_of(s, name) for s in
                                                                                   (one, two)])
    # kubectl's view, from either server
    out = one.kubectl("get", "lease", "-n", "kube-system").stdout.splitlines()
    assert out[0].split() == ["NAME", "HOLDER", "AGE"]
    rows = {ln.split()[0]: ln.split()[1] for ln in out[1:]}
    assert rows["kube-scheduler"] == lease(one, "kube-scheduler")["spec"]["holderIdentity"]
    assert rows["kube-controller-manager"] == lease(one, "kube-controller-manager")["spec"]["holderIdentity"]
    # the Events upstream records, about the Lease, from each component
    def seen() -> set:
        events = json.loads(one.kubectl("get", "events", "-n", "kube-system", "-o", "json").stdout)["items"]
        return {(e["involvedObject"]["kind"], e["involvedObject"]["name"], e["source"].get("component"),
                 e["message"]) for e in events if e["reason"] == "LeaderElection"}

    want = {("Lease", name, source, f"{lease(one, name)['spec']['holderIdentity']} became leader")
            for name, source in (("kube-scheduler", "default-scheduler"),
                                 ("kube-controller-manager", "kube-controller-manager"))}
    wait_until(lambda: want <= seen(), 10, 0.2, f"LeaderElection events {want}")
    # the controllers run only where kube-controller-manager's lease is held
    kcm_leader = next(s for s in (one, two) if holder_of(s, "kube-controller-manager"))
    for s in (one, two):
        verbose = s.kubectl("get", "--raw", "/readyz?verbose").stdout
        assert ("[+]component/garbage-collector ok" in verbose) == (s is kcm_leader), verbose


def test_kill9_of_the_scheduler_leader_hands_scheduling_over_within_15s(cluster) -> None:
    one, two, _ = cluster
    leader = next(s for s in (one, two) if holder_of(s, "kube-scheduler"))
    other = two if leader is one else one
    before_lease = lease(other, "kube-scheduler")["spec"]
    other.kubectl("create", "-f", "-", input=json.dumps(pod("le-before")))
    first = wait_until(lambda: (p := get_pod(other, "le-before")) and running(p) and p, 60, 0.2, "le-before Running")
    assert first["spec"]["nodeName"] == NODE
    ids = {c["name"]: c["containerID"] for c in first["status"]["containerStatuses"]}

    leader.kill9()
    killed = time.monotonic()
    other.kubectl("create", "-f", "-", input=json.dumps(pod("le-after")))
    bound = wait_until(lambda: get_pod(other, "le-after")["spec"].get("nodeName"), 15, 0.1,
                       "le-after bound by the surviving scheduler")
    took = time.monotonic() - killed
    assert bound == NODE
    now = lease(other, "kube-scheduler")["spec"]
    assert now["holderIdentity"] == holder_of(other, "kube-scheduler") != before_lease["holderIdentity"]
    assert now["leaseTransitions"] == before_lease["leaseTransitions"] + 1
    assert now["acquireTime"] > before_lease["renewTime"]
    scheduled = [e for e in json.loads(other.kubectl("get", "events", "-o", "json").stdout)["items"]
                 if e["involvedObject"]["name"] == "le-after" and e["reason"] == "Scheduled"]
    assert scheduled and scheduled[0]["message"] == f"Successfully assigned default/le-after to {NODE}"
    # the node follows through its load balancer: the new pod runs, the old one was left alone
    wait_until(lambda: running(get_pod(other, "le-after")), 60, 0.2, "le-after Running")
    still = get_pod(other, "le-before")
    assert running(still)
    assert {c["name"]: c["containerID"] for c in still["status"]["containerStatuses"]} == ids
    assert all(c["restartCount"] == 0 for c in still["status"]["containerStatuses"])
    # the controller manager's lease moves too when its holder was the killed server
    if holder_of(leader, "kube-controller-manager"):
        wait_until(lambda: holder_of(other, "kube-controller-manager"), 30, 0.2, "controller manager taken over")
    print(f"scheduling resumed {took:.1f}s after kill -9 of the scheduler's leader")


def log_count(server: ServerProcess, text: str) -> int:
    return server.log_path.read_text(errors="replace").count(text)


def verbose_readyz(server: ServerProcess) -> str:
    from tests.e2e.test_etcd_cluster import readyz

    return readyz(server)


def test_a_leader_cut_off_from_etcd_stops_leading_and_leads_again(cluster) -> None:
    """etcd loses its quorum: the surviving server cannot renew within the renew deadline, so it
    stops the scheduler and the controllers (upstream they exit); with the quorum back it
    campaigns, wins and runs them again."""
    one, two, etcd = cluster
    alive = next(s for s in (one, two) if s.proc is not None and s.proc.poll() is None)
    for name in ("kube-scheduler", "kube-controller-manager"):
        wait_until(lambda n=name: holder_of(alive, n), 30, 0.2, f"{name} held by the surviving server")
    wait_until(lambda: "[+]component/garbage-collector ok" in verbose_readyz(alive), 30, 0.2, "controllers")
    acquired = log_count(alive, "successfully acquired lease kube-system/kube-scheduler")
    failed = [log_count(alive, f"failed to renew lease kube-system/{n}") for n in ("kube-scheduler",
                                                                                   "kube-controller-manager")]
    down = etcd.members[1:]
    for m in down:
        m.kill9()
    cut = time.monotonic()
    wait_until(lambda: [log_count(alive, f"failed to renew lease kube-system/{n}") for n in (
        "kube-scheduler", "kube-controller-manager")] > failed and all(
        log_count(alive, f"failed to renew lease kube-system/{n}") > f for n, f in zip(
            ("kube-scheduler", "kube-controller-manager"), failed, strict=True)), 30, 0.2, "both leases lost")
    lost = time.monotonic() - cut
    wait_until(lambda: "component/garbage-collector" not in verbose_readyz(alive), 1.5, 0.05,
               "the controllers stopped at once")
    initial = ",".join(f"{m.name}={m.peer_url}" for m in etcd.members)
    for m in down:
        m.start(initial, f"kubelite-test-{etcd.members[0].client_port}")
    wait_until(etcd.healthy, 30, 0.2, "etcd quorum back")
    wait_until(lambda: log_count(alive, "successfully acquired lease kube-system/kube-scheduler") > acquired, 30,
               0.2, "scheduler lease won again")
    wait_until(lambda: "[+]component/garbage-collector ok" in verbose_readyz(alive), 30, 0.2, "controllers again")
    alive.kubectl("create", "-f", "-", input=json.dumps(pod("le-again")))
    assert wait_until(lambda: get_pod(alive, "le-again")["spec"].get("nodeName"), 30, 0.2, "le-again bound") == NODE
    print(f"leases lost {lost:.1f}s after etcd lost its quorum (renew deadline 4s)")
