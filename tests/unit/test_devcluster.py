"""The dev cluster's pieces that need no namespaces: addresses, names, recorded processes, state."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kubelite.cli.main import build_parser
from kubelite.devcluster import testhost
from kubelite.devcluster.cluster import ClusterSpec, DevCluster, node_name
from kubelite.devcluster.testhost import DEFAULT_SUBNET, Network, Proc, TestHost


def test_network_addresses():
    net = Network()
    assert net.subnet == DEFAULT_SUBNET == "198.19.250.0/24"
    assert net.gateway == "198.19.250.1"
    assert [net.address(i) for i in (1, 2, 3)] == ["198.19.250.2", "198.19.250.3", "198.19.250.4"]
    small = Network("10.9.8.0/29", "x-br")
    assert small.address(5) == "10.9.8.6"
    with pytest.raises(testhost.TestHostError, match="no address for test host 6"):
        small.address(6)  # .7 is the broadcast address


@pytest.mark.parametrize("subnet", ["198.19.250.1/24", "fd00::/64", "10.0.0.0/30"])
def test_network_refuses_bad_subnets(subnet):
    with pytest.raises(ValueError):
        Network(subnet)


def test_network_refuses_long_bridge_names():
    with pytest.raises(ValueError, match="longer than 15"):
        Network(DEFAULT_SUBNET, "a-very-long-bridge")


def test_overlapping_routes(monkeypatch):
    table = ("default via 10.0.0.1 dev eth0\n"
             "10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.5\n"
             "local 198.19.250.7 dev dummy0 table local proto kernel scope host src 198.19.250.7\n"
             "broadcast 10.0.0.255 dev eth0 table local proto kernel scope link src 10.0.0.5\n"
             "198.19.0.0/16 via 10.0.0.9 dev eth0\n")
    monkeypatch.setattr(testhost, "_ip", lambda *a, check=True: subprocess.CompletedProcess(a, 0, table, ""))
    assert Network().overlapping_routes() == ["local 198.19.250.7 dev dummy0 table local proto kernel scope host "
                                              "src 198.19.250.7", "198.19.0.0/16 via 10.0.0.9 dev eth0"]
    assert Network("172.31.250.0/24").overlapping_routes() == []


def test_proc_names_one_process():
    me = Proc.of(os.getpid())
    assert me.alive()
    assert not Proc(me.pid, me.start + 1).alive()  # the same PID, another process
    assert not Proc(me.pid, me.start + 1).signal(0)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    p = Proc.of(child.pid)
    p.stop(5)
    child.wait(5)
    assert not p.alive() and Proc.from_json(p.to_json()) == p


def test_proc_of_a_gone_process():
    child = subprocess.Popen(["true"])
    child.wait()
    with pytest.raises(testhost.TestHostError):
        Proc.of(child.pid)


def test_test_host_state_round_trip(tmp_path):
    h = TestHost("kldev-2", "198.19.250.3", 24, "kldev-v2", tmp_path / "n2", holder=Proc(10, 20),
                 unshare=Proc(9, 19), procs={"agent": Proc(30, 40)})
    assert TestHost.from_json(h.to_json()) == h
    with pytest.raises(testhost.TestHostError, match="not running"):
        h.run(["true"])  # PID 10 is not that process


def test_cluster_spec_and_names():
    assert node_name("kldev", 3) == "kldev-3"
    for bad in ("", "Kl", "toolongname", "1abc", "a-b"):
        with pytest.raises(ValueError):
            ClusterSpec(name=bad)
    with pytest.raises(ValueError):
        ClusterSpec(nodes=0)


def test_down_without_a_cluster(tmp_path):
    c = DevCluster(tmp_path / "none")
    assert not c.load() and c.down() == []


def test_up_refuses_a_recorded_cluster(tmp_path):
    (tmp_path / "state.json").write_text('{"hosts": []}')
    from kubelite.devcluster.cluster import ClusterError

    with pytest.raises(ClusterError, match="dev cluster down"):
        DevCluster(tmp_path).up(ClusterSpec(data_dir=tmp_path))


def test_cli_flags():
    args = build_parser().parse_args(["dev", "cluster", "up", "--nodes", "2", "--data-dir", "/tmp/x",
                                      "--kubeconfig", "/tmp/kc", "--subnet", "10.1.2.0/24", "--port", "7443",
                                      "--subnet", "10.1.3.0/24", "--flannel-backend", "vxlan"])
    assert (args.nodes, args.data_dir, args.kubeconfig, args.subnet, args.port, args.flannel_backend) == (
        2, "/tmp/x", "/tmp/kc", ["10.1.2.0/24", "10.1.3.0/24"], 7443, "vxlan")
    args = build_parser().parse_args(["dev", "cluster", "exec", "--data-dir", "/tmp/x", "kldev-1", "--", "ip", "a"])
    assert (args.node, args.command) == ("kldev-1", ["ip", "a"])
    args = build_parser().parse_args(["server", "--tls-san", "198.19.250.1", "--tls-san", "api.example",
                                      "--disable-scheduler"])
    assert args.tls_san == ["198.19.250.1", "api.example"] and args.disable_scheduler


def test_server_tls_san_in_serving_cert(tmp_path):
    from cryptography import x509

    from kubelite.tls import pki

    p = pki.ensure_pki(tmp_path, extra_sans=["198.19.250.1", "api.example"])
    sans = pki.cert_sans(x509.load_pem_x509_certificate(p.server_cert.read_bytes()))
    assert {"198.19.250.1", "api.example"} <= sans


def test_up_refuses_to_overwrite_a_kubeconfig(tmp_path):
    from kubelite.devcluster.cluster import ClusterError

    kc = tmp_path / "config"
    kc.write_text("mine")
    with pytest.raises(ClusterError, match="exists; remove it"):
        DevCluster(tmp_path / "d").up(ClusterSpec(data_dir=tmp_path / "d", kubeconfig=kc))
    assert kc.read_text() == "mine" and not (tmp_path / "d").exists()


def test_down_stops_recorded_processes_and_removes_only_its_files(tmp_path):
    """down from a state file, without namespaces: recorded processes (here plain children)
    are stopped by PID, the cluster's files go, a file of the user's in the data dir stays."""
    import json

    holder = subprocess.Popen(["sleep", "60"])
    agent = subprocess.Popen(["sleep", "60"])
    server = subprocess.Popen(["sleep", "60"])
    (tmp_path / "nodes" / "kldev-1" / "pods" / "some-uid").mkdir(parents=True)
    (tmp_path / "server").mkdir()
    (tmp_path / "mine.txt").write_text("keep")
    host = TestHost("kldev-1", "198.19.250.2", 24, "kltestnone-v1", tmp_path / "nodes" / "kldev-1",
                    holder=Proc.of(holder.pid), procs={"agent": Proc.of(agent.pid)})
    (tmp_path / "state.json").write_text(json.dumps({
        "name": "kldev", "network": Network().to_json(), "kubeconfig": str(tmp_path / "kubeconfig.yaml"),
        "created": {}, "hosts": [host.to_json()], "server": {"proc": Proc.of(server.pid).to_json()}}))
    try:
        done = DevCluster(tmp_path).down()
        assert [p.wait(5) for p in (agent, server)] == [-15, -15]  # SIGTERM by recorded PID
        assert holder.wait(5) == -9  # the holder: SIGKILL, its PID namespace goes with it
    finally:
        for p in (holder, agent, server):
            p.kill()
            p.wait()
    assert done[:2] == ["stopped test host kldev-1", "stopped the server"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
    assert DevCluster(tmp_path).down() == []  # nothing recorded any more
