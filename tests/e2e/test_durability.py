"""Crash safety and history: kill -9 during a burst of creates; 410 below the compacted revision."""

from __future__ import annotations

import concurrent.futures
import sqlite3
import threading

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tests.e2e.harness import ServerProcess, wait_until


def _core(server: ServerProcess) -> client.CoreV1Api:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(server.kubeconfig), client_configuration=cfg)
    cfg.retries = 0
    return client.CoreV1Api(client.ApiClient(cfg))


def test_kill9_during_concurrent_creates_loses_no_acknowledged_write(tmp_path):
    srv = ServerProcess(tmp_path / "data").start()
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    try:
        core = _core(srv)

        def creator(worker: int) -> None:
            i = 0
            while not stop.is_set():
                name = f"cm-{worker}-{i}"
                try:
                    core.create_namespaced_config_map("default", {"metadata": {"name": name}, "data": {"i": str(i)}},
                                                      _request_timeout=5)
                except Exception:
                    return  # the server died under us
                with lock:
                    acked.append(name)
                i += 1

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futs = [pool.submit(creator, w) for w in range(8)]
            wait_until(lambda: len(acked) >= 200, timeout=60, what="200 acknowledged creates")
            srv.kill9()
            stop.set()
            for f in futs:
                f.result()
    finally:
        stop.set()
        if srv.proc and srv.proc.poll() is None:
            srv.kill9()
    db = srv.data_dir / "db" / "state.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    srv2 = ServerProcess(srv.data_dir).start()
    try:
        core = _core(srv2)
        names = {c.metadata.name for c in core.list_namespaced_config_map("default").items}
        missing = [n for n in acked if n not in names]
        assert not missing, f"{len(missing)} acknowledged creates lost, e.g. {missing[:5]}"
    finally:
        srv2.stop()


def test_watch_below_compacted_revision_gets_410(tmp_path):
    srv = ServerProcess(tmp_path / "data", extra=["--disable-agent", "--disable-scheduler", "--compact-interval", "0.2",
                                                  "--compact-keep", "5"]).start()
    try:
        core = _core(srv)
        first_rv = core.list_namespaced_config_map("default").metadata.resource_version
        for i in range(30):
            core.create_namespaced_config_map("default", {"metadata": {"name": f"c{i}"}})
            core.patch_namespaced_config_map(f"c{i}", "default", {"data": {"x": "y"}})

        def expired() -> bool:
            try:
                core.list_namespaced_config_map("default", resource_version=first_rv, resource_version_match="Exact")
            except ApiException as exc:
                return exc.status == 410
            return False

        wait_until(expired, timeout=20, what="compaction past the first revision")
        w = watch.Watch()
        with pytest.raises(ApiException) as exc:
            for _ in w.stream(core.list_namespaced_config_map, "default", resource_version=first_rv,
                              timeout_seconds=5):
                pass
        assert exc.value.status == 410
        # a watch from the current revision works and sees a new object
        rv = core.list_namespaced_config_map("default").metadata.resource_version
        seen: list[str] = []

        def consume() -> None:
            for ev in w.stream(core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=10):
                seen.append(ev["object"].metadata.name)
                w.stop()

        t = threading.Thread(target=consume)
        t.start()
        core.create_namespaced_config_map("default", {"metadata": {"name": "after"}})
        t.join(15)
        assert seen == ["after"]
    finally:
        srv.stop()
