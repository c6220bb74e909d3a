from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import ServerProcess


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("kubelite")
    srv = ServerProcess(base / "data").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def api_client(server):
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(config_file=str(server.kubeconfig), client_configuration=cfg)
    with client.ApiClient(cfg) as c:
        yield c


@pytest.fixture
def core(api_client):
    from kubernetes import client

    return client.CoreV1Api(api_client)


@pytest.fixture(scope="session", autouse=True)
def _host_network_left_as_found():
    from kubelite.cli import uninstall
    from tests.e2e.harness import links, nat_chains, restore_host_network

    chains, before = nat_chains(), links()
    had_runtime_state = any(d.exists() for d in uninstall.RUNTIME_DIRS) or any(
        Path("/sys/fs/cgroup").glob("*/kubepods"))
    yield
    restore_host_network(chains, before)
    if not had_runtime_state and not uninstall.pods_left():
        uninstall.remove_cgroup_roots()
        uninstall.remove_runtime_dirs()



@pytest.fixture(scope="module", autouse=True)
def _module_leaves_no_pods(request):
    """Every module removes the pods it ran: after its servers stopped, no pod cgroup made
    during the module is left on the host (they would make `kubelite uninstall` refuse)."""
    from kubelite.cli import uninstall
    from tests.e2e.harness import wait_until

    before = set(uninstall.pods_left())
    yield

    def gone() -> bool:
        return not set(uninstall.pods_left()) - before

    try:
        wait_until(gone, 30, 0.2, "pod cgroups removed")
    except Exception:
        left = sorted(set(uninstall.pods_left()) - before)
        pytest.fail(f"{request.module.__name__} left {len(left)} pod cgroups, e.g. {left[:3]}")
