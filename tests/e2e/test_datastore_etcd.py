"""Backups and migration on etcd (issue 9, "Done when": snapshot save/restore round-trips a
cluster on etcd; `migrate` moves 1,000 objects from SQLite to etcd).

One real single-member TLS etcd (Debian etcd-server) serves both tests, each under its own key
prefix. Restore writes the snapshot's keys back into the running etcd with the servers stopped
and compacts, so resourceVersions move forward and a watch from before the restore is 410
Gone; migrate copies a stopped SQLite cluster's keys into etcd byte for byte (names, uids,
creationTimestamps), renumbering resourceVersions."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.etcd import EtcdCluster
from tests.e2e.harness import ServerProcess

KUBELITE = [sys.executable, "-m", "kubelite"]
# restore waits for the leader leases of stopped servers to expire (kube-controller-manager keeps
# its lease at shutdown): short ones keep that wait short
SHORT_LEASES = ["--leader-elect-lease-duration", "3s", "--leader-elect-renew-deadline", "2s",
                "--leader-elect-retry-period", "1s"]


def _kubelite(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*KUBELITE, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def etcd(tmp_path_factory):
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"), 1, tls=True).start()
    yield cluster
    cluster.stop()


def tls_flags(cluster: EtcdCluster) -> list[str]:
    tls = cluster.client_tls
    assert tls is not None
    return ["--datastore-cafile", str(tls.ca_file), "--datastore-certfile", str(tls.cert_file),
            "--datastore-keyfile", str(tls.key_file)]


def core_api(srv: ServerProcess):
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(config_file=str(srv.kubeconfig), client_configuration=cfg)
    cfg.retries = False
    return client.CoreV1Api(client.ApiClient(cfg))


def cm(name: str, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def watch_from(core, namespace: str, rv: str) -> tuple[int, dict | None]:
    """HTTP status and first event of a watch of ConfigMaps from ``rv``."""
    from kubernetes.client.rest import ApiException

    try:
        resp = core.list_namespaced_config_map(namespace, watch=True, resource_version=rv, timeout_seconds=10,
                                               allow_watch_bookmarks=False, _preload_content=False)
    except ApiException as exc:
        return exc.status, json.loads(exc.body) if exc.body else None
    try:
        for line in resp:
            if line.strip():
                return resp.status, json.loads(line)
        return resp.status, None
    finally:
        resp.release_conn()


def test_etcd_snapshot_restore_round_trip(etcd, tmp_path: Path) -> None:
    flags = ["--disable-agent", "--disable-scheduler", "--datastore-endpoint", etcd.endpoints, *tls_flags(etcd),
             "--datastore-prefix", "/kl-restore", *SHORT_LEASES]
    srv = ServerProcess(tmp_path / "data", extra=flags)
    try:
        srv.start(timeout=90)
        core = core_api(srv)
        core.create_namespace({"metadata": {"name": "snap"}})
        for i in range(20):
            core.create_namespaced_config_map("snap", cm(f"before-{i}", i=str(i)))
        core.create_namespaced_config_map("snap", cm("keep", v="1"))
        core.create_namespaced_secret("snap", {"metadata": {"name": "s1"}, "stringData": {"password": "hunter2"}})
        saved_uid = core.read_namespaced_config_map("keep", "snap").metadata.uid
        snap = tmp_path / "etcd.snap"
        saved = _kubelite("datastore", "snapshot", "save", str(snap), "--data-dir", str(srv.data_dir))
        assert saved.returncode == 0, saved.stderr
        assert snap.stat().st_mode & 0o077 == 0

        # after the snapshot: a delete, an update, a create
        core.delete_namespaced_config_map("before-0", "snap")
        core.patch_namespaced_config_map("keep", "snap", {"data": {"v": "2"}})
        core.create_namespaced_config_map("snap", cm("after"))
        core.delete_namespaced_secret("s1", "snap")
        rv_before = core.list_namespaced_config_map("snap").metadata.resource_version

        refused = _kubelite("datastore", "snapshot", "restore", str(snap), "--data-dir", str(srv.data_dir))
        assert refused.returncode == 1 and "stop it first" in refused.stderr, refused.stderr
        # from the data dir of another, stopped server of the cluster: the running one is seen
        # through the leader Lease it holds in etcd
        token = (srv.data_dir / "server-token").read_text().strip()
        other = ServerProcess(tmp_path / "other", extra=[*flags, "--token", token])
        other.start(timeout=90)
        other.stop()
        held = _kubelite("datastore", "snapshot", "restore", str(snap), "--data-dir", str(other.data_dir))
        assert held.returncode == 1 and "a server of this cluster is running" in held.stderr, held.stderr
        assert "renewed the leader lease kube-system/kube-controller-manager" in held.stderr, held.stderr
        srv.stop()
        bogus = tmp_path / "bogus.snap"
        bogus.write_bytes(b"not a snapshot")
        bad = _kubelite("datastore", "snapshot", "restore", str(bogus), "--data-dir", str(srv.data_dir))
        assert bad.returncode == 1 and "not an etcd snapshot" in bad.stderr, bad.stderr

        t0 = time.monotonic()
        done = _kubelite("datastore", "snapshot", "restore", str(snap), "--data-dir", str(srv.data_dir))
        took = time.monotonic() - t0
        assert done.returncode == 0, done.stderr
        # before-0 and s1 put back, keep put back to v=1, after deleted (and whatever the
        # controllers and the leader election changed since the snapshot)
        m = re.search(r"(\d+) keys written, (\d+) deleted, (\d+) unchanged", done.stdout)
        assert m and int(m[1]) >= 3 and int(m[2]) >= 1 and int(m[3]) > 20, done.stdout
        assert took < 20, took
        print(f"\nrestore: {took:.1f} s with interpreter start")

        srv.start(timeout=90)
        core = core_api(srv)
        listed = core.list_namespaced_config_map("snap")
        names = {i.metadata.name for i in listed.items}
        assert {f"before-{i}" for i in range(20)} | {"keep"} <= names and "after" not in names
        keep = core.read_namespaced_config_map("keep", "snap")
        assert keep.data == {"v": "1"} and keep.metadata.uid == saved_uid
        assert core.read_namespaced_secret("s1", "snap").data == {"password": "aHVudGVyMg=="}
        # resourceVersions went forward, and what a client saw before the restore is gone
        assert int(listed.metadata.resource_version) > int(rv_before)
        assert int(keep.metadata.resource_version) > int(rv_before)
        status, first = watch_from(core, "snap", rv_before)
        assert status == 410 or (first and first["type"] == "ERROR" and first["object"]["code"] == 410), first
        # a watch from the new list works, and the restored cluster takes writes
        core.create_namespaced_config_map("snap", cm("after-restore"))
        status, first = watch_from(core, "snap", listed.metadata.resource_version)
        assert status == 200 and first and first["type"] == "ADDED", first
        assert first["object"]["metadata"]["name"] == "after-restore"
    finally:
        srv.stop()


def _objects(n: int) -> dict:
    items = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mig"}}]
    items += [{**cm(f"cm-{i:04d}", i=str(i)), "metadata": {"name": f"cm-{i:04d}", "namespace": "mig"}}
              for i in range(n)]
    items += [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"secret-{i}", "namespace": "mig"},
               "stringData": {"token": f"t{i}"}} for i in range(3)]
    items += [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot", "namespace": "mig"}},
              {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": "reader", "namespace": "mig"},
               "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]},
              {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "robot-reads", "namespace": "mig"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
               "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": "mig"}]}]
    return {"apiVersion": "v1", "kind": "List", "items": items}


def _identity(srv: ServerProcess) -> dict[str, tuple[str, str]]:
    out = srv.kubectl("get", "configmaps,secrets,serviceaccounts,roles,rolebindings", "-n", "mig", "-o", "json",
                      timeout=120).stdout
    return {f"{i['kind']}/{i['metadata']['name']}": (i["metadata"]["uid"], i["metadata"]["creationTimestamp"])
            for i in json.loads(out)["items"]}


def test_migrate_1000_objects_from_sqlite_to_etcd(etcd, tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "data")
    try:
        srv.start()
        srv.kubectl("create", "-f", "-", input=json.dumps(_objects(1000)), timeout=300)
        before = _identity(srv)
        assert sum(1 for k in before if k.startswith("ConfigMap/cm-")) == 1000
        ns_uid = json.loads(srv.kubectl("get", "ns", "mig", "-o", "json").stdout)["metadata"]["uid"]
        rv_sqlite = core_api(srv).list_namespaced_config_map("mig", limit=1).metadata.resource_version
        copy = tmp_path / "copy.db"
        assert _kubelite("datastore", "snapshot", "save", str(copy), "--data-dir", str(srv.data_dir)).returncode == 0

        to = ["--to", etcd.endpoints, *tls_flags(etcd)]
        refused = _kubelite("datastore", "migrate", *to, "--data-dir", str(srv.data_dir))
        assert refused.returncode == 1 and "stop it first" in refused.stderr, refused.stderr
        srv.stop()

        t0 = time.monotonic()
        done = _kubelite("datastore", "migrate", *to, "--data-dir", str(srv.data_dir))
        took = time.monotonic() - t0
        assert done.returncode == 0, done.stderr
        counts = dict(line.split() for line in done.stdout.splitlines() if line.startswith("  "))
        assert int(counts["configmaps"]) >= 1000 and int(counts["secrets"]) >= 3
        assert counts["namespaces"] and counts["roles.rbac.authorization.k8s.io"]
        assert took < 15, f"migrate took {took:.1f} s"
        print(f"\nmigrate: {next(ln for ln in done.stdout.splitlines() if ln.startswith('Migrated'))} "
              f"({took:.1f} s with interpreter start)")
        again = _kubelite("datastore", "migrate", *to, "--data-dir", str(srv.data_dir))
        assert again.returncode == 1 and "already stores its objects in etcd" in again.stderr
        # another SQLite cluster into the same (now used) prefix is refused, nothing written
        other = tmp_path / "other"
        assert _kubelite("datastore", "snapshot", "restore", str(copy), "--data-dir", str(other)).returncode == 0
        taken = _kubelite("datastore", "migrate", *to, "--data-dir", str(other))
        assert taken.returncode == 1 and "already holds" in taken.stderr and "--force" in taken.stderr, taken.stderr
        # the SQLite server cannot come back on the migrated data dir by mistake
        sqlite_again = _kubelite("server", "--data-dir", str(srv.data_dir), "--bind-address", "127.0.0.1",
                                 "--port", "0", "--disable-agent", "--disable-scheduler")
        assert sqlite_again.returncode == 1 and "stores its objects in etcd" in sqlite_again.stderr

        srv.extra = ["--disable-agent", "--disable-scheduler", "--datastore-endpoint", etcd.endpoints,
                     *tls_flags(etcd)]
        srv.start(timeout=90)
        assert _identity(srv) == before  # same names, uids and creationTimestamps
        assert json.loads(srv.kubectl("get", "ns", "mig", "-o", "json").stdout)["metadata"]["uid"] == ns_uid
        core = core_api(srv)
        listed = core.list_namespaced_config_map("mig")
        assert sum(1 for i in listed.items if i.metadata.name.startswith("cm-")) == 1000
        assert core.read_namespaced_secret("secret-2", "mig").data == {"token": "dDI="}
        assert core.read_namespaced_config_map("cm-0999", "mig").data == {"i": "999"}
        # a client re-watching from a SQLite-era resourceVersion re-lists (410), never waits silently
        assert int(listed.metadata.resource_version) > int(rv_sqlite)
        status, first = watch_from(core, "mig", rv_sqlite)
        assert status == 410 or (first and first["type"] == "ERROR" and first["object"]["code"] == 410), first
        # list + watch from the list's resourceVersion (an etcd revision now)
        core.create_namespaced_config_map("mig", cm("after-migration"))
        status, first = watch_from(core, "mig", listed.metadata.resource_version)
        assert status == 200 and first and first["type"] == "ADDED", first
        assert first["object"]["metadata"]["name"] == "after-migration"
        core.patch_namespaced_config_map("cm-0000", "mig", {"data": {"i": "changed"}})  # updates work too
    finally:
        srv.stop()


def test_etcd_restore_onto_a_rebuilt_etcd(tmp_path: Path) -> None:
    """Disaster recovery: the etcd is lost and rebuilt empty at the same address; the snapshot
    brings the cluster back, and etcd's revision is moved past the snapshot's so that clients'
    old resourceVersions are 410 Gone rather than a silent wait."""
    import shutil

    etcd = EtcdCluster(tmp_path / "etcd", 1, tls=True).start()
    flags = ["--disable-agent", "--disable-scheduler", "--datastore-endpoint", etcd.endpoints, *tls_flags(etcd)]
    srv = ServerProcess(tmp_path / "data", extra=flags)
    try:
        srv.start(timeout=90)
        core = core_api(srv)
        for i in range(30):
            core.create_namespaced_config_map("default", cm(f"c{i}"))
        uid = core.read_namespaced_config_map("c7", "default").metadata.uid
        rv_seen = core.list_namespaced_config_map("default").metadata.resource_version
        snap = tmp_path / "etcd.snap"
        assert _kubelite("datastore", "snapshot", "save", str(snap), "--data-dir", str(srv.data_dir)).returncode == 0
        srv.stop()

        member = etcd.members[0]  # lost: a new, empty member at the same address
        member.stop()
        shutil.rmtree(member.data_dir)
        etcd.start()
        done = _kubelite("datastore", "snapshot", "restore", str(snap), "--data-dir", str(srv.data_dir))
        assert done.returncode == 0, done.stderr
        assert "Moving etcd's revision from" in done.stdout, done.stdout

        srv.start(timeout=90)
        core = core_api(srv)
        listed = core.list_namespaced_config_map("default")
        assert {f"c{i}" for i in range(30)} <= {i.metadata.name for i in listed.items}
        assert core.read_namespaced_config_map("c7", "default").metadata.uid == uid
        assert int(listed.metadata.resource_version) > int(rv_seen)
        status, first = watch_from(core, "default", rv_seen)
        assert status == 410 or (first and first["type"] == "ERROR" and first["object"]["code"] == 410), first
    finally:
        srv.stop()
        etcd.stop()
