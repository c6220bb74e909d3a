"""`kubelite datastore snapshot save|restore` on the embedded SQLite store: an online,
consistent snapshot taken while the server serves; restore refused under a running server
and for a file that is not a snapshot; a restored cluster holds exactly the snapshot's objects."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import ServerProcess

KUBELITE = str(Path(sys.executable).parent / "kubelite")


def _kubelite(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([KUBELITE, *args], capture_output=True, text=True, timeout=60)


def _configmaps(srv: ServerProcess) -> set[str]:
    out = srv.kubectl("get", "configmaps", "-n", "snap", "-o", "json").stdout
    return {i["metadata"]["name"] for i in json.loads(out)["items"]}


@pytest.fixture
def srv(tmp_path):
    s = ServerProcess(tmp_path / "data").start()
    yield s
    s.stop()


def test_snapshot_round_trip(srv, tmp_path):
    srv.kubectl("create", "namespace", "snap")
    for i in range(50):
        srv.kubectl("create", "configmap", f"before-{i}", "-n", "snap", f"--from-literal=i={i}")
    srv.kubectl("create", "secret", "generic", "s1", "-n", "snap", "--from-literal=password=hunter2")
    snap = tmp_path / "backup.db"
    saved = _kubelite("datastore", "snapshot", "save", str(snap), "--data-dir", str(srv.data_dir))
    assert saved.returncode == 0, saved.stderr
    assert saved.stdout.startswith(f"Snapshot saved at {snap} (revision ")
    assert snap.stat().st_mode & 0o077 == 0  # it holds every Secret
    srv.kubectl("create", "configmap", "after", "-n", "snap")
    srv.kubectl("delete", "configmap", "before-0", "-n", "snap")

    # a second server on the same data dir, and a restore under the running one, are refused
    second = subprocess.run([sys.executable, "-m", "kubelite", "server", "--data-dir", str(srv.data_dir),
                             "--bind-address", "127.0.0.1", "--port", "0", "--disable-agent", "--disable-scheduler"],
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 1 and "a kubelite server is using" in second.stderr, second.stderr
    refused = _kubelite("datastore", "snapshot", "restore", str(snap), "--data-dir", str(srv.data_dir))
    assert refused.returncode == 1 and "stop it first" in refused.stderr
    assert "after" in _configmaps(srv)  # nothing changed

    # not a snapshot: refused, the datastore untouched
    bogus = tmp_path / "bogus.db"
    bogus.write_text("not a database")
    srv.stop()
    bad = _kubelite("datastore", "snapshot", "restore", str(bogus), "--data-dir", str(srv.data_dir))
    assert bad.returncode == 1 and "not a kubelite snapshot" in bad.stderr, bad.stderr

    done = _kubelite("datastore", "snapshot", "restore", str(snap), "--data-dir", str(srv.data_dir))
    assert done.returncode == 0, done.stderr
    srv.start()
    names = _configmaps(srv)
    assert {f"before-{i}" for i in range(50)} <= names and "after" not in names
    secret = json.loads(srv.kubectl("get", "secret", "s1", "-n", "snap", "-o", "json").stdout)
    assert secret["data"]["password"] == "aHVudGVyMg=="
    srv.kubectl("create", "configmap", "after-restore", "-n", "snap")  # the restored store takes writes


def test_snapshot_of_a_missing_datastore_is_refused(tmp_path):
    p = _kubelite("datastore", "snapshot", "save", str(tmp_path / "x.db"), "--data-dir", str(tmp_path / "none"))
    assert p.returncode == 1 and "no datastore at" in p.stderr
    assert not (tmp_path / "x.db").exists()
