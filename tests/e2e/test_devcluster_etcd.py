"""`kubelite dev cluster up --nodes 3 --etcd` / `down` (issue 9 part 9): the dev cluster's server
stores its objects in a single-member TLS etcd that `up` starts and `down` stops, and the host is
left as it was found."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.e2e.etcd import require_etcd
from tests.e2e.harness import KUBECTL, free_port, links, wait_until
from tests.e2e.test_devcluster import kubelite, kubepods, mounts, netns, processes_mentioning

NAME = "kletcd"
SUBNET = "198.19.247.0/24"  # neither the default subnet nor test_devcluster's


def test_dev_cluster_on_its_own_etcd(tmp_path: Path) -> None:
    require_etcd()
    before = {"links": links(), "mounts": mounts(), "netns": netns(), "kubepods": kubepods()}
    data = tmp_path / "dev"
    kc = tmp_path / "kc.yaml"

    def kubectl(*args: str) -> str:
        p = subprocess.run([KUBECTL, "--kubeconfig", str(kc), *args], capture_output=True, text=True, timeout=60,
                           env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
        assert p.returncode == 0, f"kubectl {' '.join(args)}: {p.stderr}"
        return p.stdout

    up = kubelite("dev", "cluster", "up", "--nodes", "3", "--etcd", "--data-dir", str(data), "--kubeconfig", str(kc),
                  "--name", NAME, "--subnet", SUBNET, "--port", str(free_port()))
    pids: list[int] = []
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        state = json.loads((data / "state.json").read_text())
        etcd_url = state["etcd"]["url"]
        assert f"objects in etcd at {etcd_url}" in up.stdout and etcd_url.startswith("https://127.0.0.1:")
        pids = [state["etcd"]["proc"][0], state["server"]["proc"][0]]
        nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
        assert sorted(n["metadata"]["name"] for n in nodes) == [f"{NAME}-{i}" for i in (1, 2, 3)]
        assert all(any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
                   for n in nodes)
        kubectl("create", "configmap", "on-etcd", "--from-literal=k=v")

        # the objects are in that etcd, which takes only TLS clients with a certificate
        pki = data / "etcd" / "pki"
        etcdctl = ["etcdctl", "--endpoints", etcd_url, "--cacert", str(pki / "ca.crt"), "--cert",
                   str(pki / "client.crt"), "--key", str(pki / "client.key")]
        env = dict(os.environ, ETCDCTL_API="3")
        keys = subprocess.run([*etcdctl, "get", "--prefix", "--keys-only", "/registry/core/"], capture_output=True,
                              text=True, env=env, timeout=30)
        assert keys.returncode == 0, keys.stderr
        got = set(keys.stdout.split())
        assert {f"/registry/core/nodes/{NAME}-{i}" for i in (1, 2, 3)} <= got
        assert "/registry/core/configmaps/default/on-etcd" in got
        anonymous = subprocess.run(["etcdctl", "--endpoints", etcd_url, "--cacert", str(pki / "ca.crt"),
                                    "--command-timeout", "3s", "get", "/registry/core/", "--prefix", "--keys-only"],
                                   capture_output=True, text=True, env=env, timeout=30)
        assert anonymous.returncode != 0
    finally:
        down = kubelite("dev", "cluster", "down", "--data-dir", str(data))
    assert down.returncode == 0, down.stdout + down.stderr
    assert "stopped etcd" in down.stdout
    assert links() == before["links"] and mounts() == before["mounts"] and netns() == before["netns"]
    assert kubepods() == before["kubepods"]
    wait_until(lambda: not [p for p in pids if Path(f"/proc/{p}").exists()], 10, 0.1, "etcd and server gone")
    assert processes_mentioning(str(data)) == []
    assert not data.exists() and not kc.exists()
