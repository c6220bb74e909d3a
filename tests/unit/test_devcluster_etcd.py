"""`kubelite dev cluster up --etcd`: the flag, and `down` stopping the recorded etcd after the
server and removing its directory (without namespaces: plain child processes stand in)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from kubelite.cli.main import build_parser
from kubelite.devcluster.cluster import DevCluster
from kubelite.devcluster.testhost import Network, Proc


def test_up_takes_etcd() -> None:
    assert build_parser().parse_args(["dev", "cluster", "up", "--etcd"]).etcd
    assert not build_parser().parse_args(["dev", "cluster", "up"]).etcd


def test_down_stops_etcd_after_the_server(tmp_path: Path) -> None:
    server = subprocess.Popen(["sleep", "60"])
    etcd = subprocess.Popen(["sleep", "60"])
    (tmp_path / "etcd" / "member").mkdir(parents=True)
    (tmp_path / "state.json").write_text(json.dumps({
        "name": "kldev", "network": Network().to_json(), "kubeconfig": str(tmp_path / "kubeconfig.yaml"),
        "created": {}, "hosts": [], "server": {"proc": Proc.of(server.pid).to_json()},
        "etcd": {"proc": Proc.of(etcd.pid).to_json(), "url": "https://127.0.0.1:1"}}))
    try:
        done = DevCluster(tmp_path).down()
        assert [p.wait(5) for p in (server, etcd)] == [-15, -15]
    finally:
        for p in (server, etcd):
            p.kill()
            p.wait()
    assert done[:2] == ["stopped the server", "stopped etcd"]
    assert not tmp_path.exists()
