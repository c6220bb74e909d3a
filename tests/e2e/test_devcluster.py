"""`kubelite dev cluster up --nodes 3` / `down`: three nodes, each in a test host of its own
(network, mount, PID and UTS namespaces) joined to the server by a veth pair, as a user
runs them — and a host left as it was found."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import KUBECTL, ROOT, free_port, links, wait_until

NAME = "kle2e"
SUBNET = "198.19.249.0/24"  # not the default one: a user's dev cluster may be up
BUSYBOX = "kubelite.local/busybox:latest"
# busybox httpd with a CGI script that answers the client's address (what the server sees)
WEB = ("mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' "
       "> /www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && exec httpd -f -p 8080 -h /www")


def kubelite(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubelite", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


def mounts() -> set[str]:
    return set(Path("/proc/mounts").read_text().splitlines())


def iptables() -> list[str]:
    """iptables-save without comments and packet counters."""
    out = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    return [re.sub(r" \[\d+:\d+\]$", "", ln) for ln in out.splitlines() if not ln.startswith("#")]


def netns() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def kubepods() -> set[str]:
    return {str(p) for p in Path("/sys/fs/cgroup").glob("*/kubepods")}


def processes_mentioning(text: str) -> list[str]:
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd:
                found.append(f"{p.name}: {cmd}")
    return found


def node_routes(data: Path, node: str) -> dict[str, str]:
    out = kubelite("dev", "cluster", "exec", "--data-dir", str(data), node, "--", "ip", "-j", "route", "show",
                   "proto", "76")
    assert out.returncode == 0, out.stderr
    return {r["dst"]: r["gateway"] for r in json.loads(out.stdout or "[]")}


def check_pod_network(kubectl, data: Path, cidrs: dict[str, str], ips: dict[str, str]) -> None:
    """host-gw: each node routes the others' pod CIDRs via their InternalIPs; a pod on node 1
    reaches a pod on node 3 by IP, and is seen there by its own pod IP (no NAT)."""
    names = sorted(cidrs)
    for n in names:
        want = {cidrs[o]: ips[o] for o in names if o != n}
        wait_until(lambda n=n, want=want: node_routes(data, n) == want, 30, 0.3, f"host-gw routes on {n}")
    server_cmd = WEB
    kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"nodeName": names[2], "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "c", "image": BUSYBOX, "imagePullPolicy": "Never",
                                 "command": ["sh", "-c", server_cmd],
                                 "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}}))

    def ready_ip() -> str:
        pod = json.loads(kubectl("get", "pod", "web", "-o", "json").stdout)
        ok = any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))
        return pod["status"].get("podIP", "") if ok else ""

    web_ip = wait_until(ready_ip, 60, 0.3, "web pod Ready")
    # the client pod succeeds only if the answer is its own pod IP: reached across nodes, not NATed
    client_cmd = (f'seen=$(wget -q -O - http://{web_ip}:8080/cgi-bin/ip); echo "seen=$seen me=$MY_IP"; '
                  '[ "$seen" = "$MY_IP" ] || [ "$seen" = "[::ffff:$MY_IP]" ]')  # httpd: IPv4-mapped
    kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
        "spec": {"nodeName": names[0], "restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "c", "image": BUSYBOX, "imagePullPolicy": "Never",
                                 "command": ["sh", "-c", client_cmd],
                                 "env": [{"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}]}}))

    def finished() -> str:
        phase = json.loads(kubectl("get", "pod", "client", "-o", "json").stdout).get("status", {}).get("phase", "")
        return phase if phase in ("Succeeded", "Failed") else ""

    phase = wait_until(finished, 60, 0.3, "client pod done")
    logs = "\n".join(p.read_text() for p in (data / "nodes" / names[0]).rglob("*.log") if "client" in str(p))
    assert phase == "Succeeded", logs
    # the agent's endpoint on each test host serves kubectl logs and exec
    assert re.fullmatch(r"seen=\S+ me=[0-9.]+\n", kubectl("logs", "client").stdout)
    assert kubectl("exec", "web", "--", "hostname").stdout.strip() == "web"
    # a node that goes takes its route with it
    kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Node",
                                                    "metadata": {"name": "kle2e-gone"}}))
    kubectl("patch", "node", "kle2e-gone", "--subresource=status", "--type=merge", "-p", json.dumps(
        {"status": {"addresses": [{"type": "InternalIP", "address": str(ipaddress.ip_network(SUBNET)[50])}]}}))
    gone_cidr = wait_until(lambda: json.loads(kubectl("get", "node", "kle2e-gone", "-o", "json").stdout)["spec"].get(
        "podCIDR"), 15, 0.2, "podCIDR of kle2e-gone")
    wait_until(lambda: gone_cidr in node_routes(data, names[0]), 30, 0.3, "route to the new node")
    kubectl("delete", "node", "kle2e-gone")
    wait_until(lambda: gone_cidr not in node_routes(data, names[0]), 30, 0.3, "route removed with its node")
    kubectl("delete", "pod", "web", "client", "--wait=false")


def check_all_pairs(kubectl, names: list[str]) -> None:
    """2 pods per node: from inside each, HTTP to every other pod's IP succeeds (30/30 pairs on
    3 nodes, same and different nodes), and each server sees the client's own pod IP."""
    pods = [f"pair-{i}" for i in range(2 * len(names))]
    for i, pod in enumerate(pods):
        kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod},
            "spec": {"nodeName": names[i % len(names)], "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "c", "image": BUSYBOX, "imagePullPolicy": "Never",
                                     "command": ["sh", "-c", WEB],
                                     "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}}))

    def all_ready() -> dict[str, str]:
        items = json.loads(kubectl("get", "pods", "-o", "json").stdout)["items"]
        got = {p["metadata"]["name"]: p["status"].get("podIP", "") for p in items
               if p["metadata"]["name"] in pods and any(c["type"] == "Ready" and c["status"] == "True"
                                                        for c in p["status"].get("conditions", []))}
        return got if len(got) == len(pods) else {}

    pod_ips = wait_until(all_ready, 60, 0.3, f"{len(pods)} pods Ready")
    ok = 0
    for pod in pods:
        others = " ".join(ip for p, ip in pod_ips.items() if p != pod)
        out = kubectl("exec", pod, "--", "sh", "-c",
                      f"for ip in {others}; do echo \"$ip $(wget -q -O - http://$ip:8080/cgi-bin/ip)\"; done").stdout
        for line in out.splitlines():
            target, _, seen = line.partition(" ")
            assert seen in (pod_ips[pod], f"[::ffff:{pod_ips[pod]}]"), f"{pod} -> {target}: {seen!r}"
            ok += 1
    assert ok == len(pods) * (len(pods) - 1)
    kubectl("delete", "pod", *pods, "--wait=false")


def kubectl_for(kc: Path, home: Path):
    """kubectl with the dev cluster's kubeconfig, raising on failure unless check=False."""

    def kubectl(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        p = subprocess.run([KUBECTL, "--kubeconfig", str(kc), *args], capture_output=True, text=True, timeout=60,
                           input=input, env={"HOME": str(home), "PATH": "/usr/bin:/bin"})
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {p.stderr}")
        return p

    return kubectl


def routes() -> list[str]:
    return subprocess.run(["ip", "route", "show", "table", "all"], capture_output=True, text=True).stdout.splitlines()


def host_state() -> dict:
    """What a dev cluster must leave as it found it in the root namespace. (Mounts under pytest's
    temp dirs are left out: other sessions' unit tests mount there meanwhile; a test checks that
    none is under its own data dir.)"""
    return {"links": links(), "routes": routes(), "mounts": {m for m in mounts() if "/tmp/pytest-of-" not in m},
            "iptables": iptables(), "netns": netns(), "kubepods": kubepods(), "cni": Path("/var/lib/cni").exists()}


@pytest.fixture
def before():
    return host_state()


def test_dev_cluster_up_pod_down(tmp_path, before):
    data = tmp_path / "dev"
    kc = tmp_path / "kc.yaml"
    port = free_port()
    kubectl = kubectl_for(kc, tmp_path)
    up = kubelite("dev", "cluster", "up", "--nodes", "3", "--data-dir", str(data), "--kubeconfig", str(kc),
                  "--name", NAME, "--subnet", SUBNET, "--port", str(port))
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"kubeconfig: {kc}" in up.stdout and f"--kubeconfig {kc} get nodes" in up.stdout
        assert kc.stat().st_mode & 0o777 == 0o600
        state = json.loads((data / "state.json").read_text())

        # three Ready nodes, each with its own pod CIDR and its test-host address as InternalIP
        nodes = json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"]
        names = [f"{NAME}-{i}" for i in (1, 2, 3)]
        assert sorted(n["metadata"]["name"] for n in nodes) == names
        for n in nodes:
            assert any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
        cidrs = {n["metadata"]["name"]: n["spec"]["podCIDR"] for n in nodes}
        ips = {n["metadata"]["name"]: next(a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP")
               for n in nodes}
        assert len(set(cidrs.values())) == 3
        assert ips == {f"{NAME}-{i}": str(ipaddress.ip_network(SUBNET).network_address + 1 + i) for i in (1, 2, 3)}
        table = kubectl("get", "nodes").stdout.splitlines()
        assert [ln.split()[:2] for ln in table[1:]] == [[n, "Ready"] for n in names]

        # the API server answers on the bridge address, under a certificate that names it
        gateway = str(ipaddress.ip_network(SUBNET).network_address + 1)
        assert state["server"]["url"] == f"https://{gateway}:{port}"
        assert kubectl("get", "--raw", "/readyz").stdout == "ok"

        # inside a test host: its own hostname, address and mounts
        ex = kubelite("dev", "cluster", "exec", "--data-dir", str(data), f"{NAME}-2", "--", "sh", "-c",
                      "hostname; ip -4 -o addr show dev eth0; ip route; grep ' /run ' /proc/mounts")
        assert ex.returncode == 0, ex.stderr
        lines = ex.stdout.splitlines()
        assert lines[0] == f"{NAME}-2" and f"inet {ips[NAME + '-2']}/24" in lines[1]
        assert not any(ln.startswith("default") for ln in lines)  # the subnet is its only way out
        assert any(" /run tmpfs " in ln for ln in lines)

        # a pod pinned to a test-host node (nodeSelector, through the scheduler) runs there
        kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pinned"},
            "spec": {"nodeSelector": {"kubernetes.io/hostname": f"{NAME}-2"}, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "c", "image": BUSYBOX, "imagePullPolicy": "Never",
                                     "command": ["sleep", "3600"]}]}}))

        def running() -> dict | None:
            pod = json.loads(kubectl("get", "pod", "pinned", "-o", "json").stdout)
            return pod if pod.get("status", {}).get("phase") == "Running" else None

        pod = wait_until(running, 60, 0.3, "pod Running")
        assert pod["spec"]["nodeName"] == f"{NAME}-2" and pod["status"]["hostIP"] == ips[f"{NAME}-2"]
        assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network(cidrs[f"{NAME}-2"])
        # the pod's network is inside its node: the root namespace has no pod bridge
        assert "kubelite0" not in links() - before["links"]

        check_pod_network(kubectl, data, cidrs, ips)
        check_all_pairs(kubectl, sorted(cidrs))

        pids = [state["server"]["proc"][0]]
        for h in state["hosts"]:
            pids += [h["holder"][0], h["unshare"][0], *(p[0] for p in h["procs"].values())]
    finally:
        down = kubelite("dev", "cluster", "down", "--data-dir", str(data))
    assert down.returncode == 0, down.stdout + down.stderr

    # the host as it was: links, routes, mounts, iptables, named netns, cgroups, processes, files
    after = host_state()
    for what in before:
        assert after[what] == before[what], what
    # (the recorded processes were re-parented when `up` exited: their reaper may take a moment)
    wait_until(lambda: not [p for p in pids if Path(f"/proc/{p}").exists()], 10, 0.1, "recorded processes gone")
    assert processes_mentioning(str(data)) == []
    assert [m for m in mounts() if str(data) in m] == []
    assert not kc.exists() and not data.exists()
    again = kubelite("dev", "cluster", "down", "--data-dir", str(data))
    assert again.returncode == 0 and "no dev cluster recorded" in again.stdout
