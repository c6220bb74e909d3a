"""What pods advertise beyond themselves, used as users use it: `kubectl debug` (ephemeral
containers), the Eviction API, and the node proxy."""

from __future__ import annotations

import json

import pytest

from tests.e2e.harness import wait_until
from tests.e2e.test_agent_support import BUSYBOX, KUARD, full_cluster, get_pod

NODE = "kl-e2e-subres"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with full_cluster(tmp_path_factory.mktemp("subres") / "data", NODE) as c:
        yield c


def _running(server, name: str) -> dict:
    return wait_until(lambda: (p := get_pod(server, name)) is not None and (p.get("status") or {}).get("phase")
                      == "Running" and all(c.get("ready") for c in p["status"].get("containerStatuses") or [])
                      and p, 90, 0.2, f"{name} Running")


def _in_terminal(server, *args: str, script: list[tuple[str, str]], timeout: float = 90) -> str:
    """Run kubectl on a pseudo-terminal, as a user at a shell: for each (send, expect) write
    ``send`` once ``expect`` showed up; returns everything kubectl printed."""
    import os
    import pty
    import select
    import subprocess
    import time

    from tests.e2e.harness import KUBECTL

    leader, follower = pty.openpty()
    env = dict(os.environ, KUBECONFIG=str(server.kubeconfig), HOME=str(server.data_dir.parent), TERM="dumb")
    proc = subprocess.Popen([KUBECTL, *args], stdin=follower, stdout=follower, stderr=follower, env=env,
                            close_fds=True)
    os.close(follower)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        for expect, send in script:
            while expect.encode() not in out:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{expect!r} not seen; kubectl printed {out.decode(errors='replace')!r}")
                ready, _, _ = select.select([leader], [], [], 0.5)
                if ready:
                    try:
                        out += os.read(leader, 65536)
                    except OSError:  # kubectl exited and closed the terminal
                        break
            os.write(leader, send.encode())
        # what kubectl prints after the last input, until it exits and the terminal closes
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    return out.decode(errors="replace")


def test_kubectl_debug_runs_a_shell_beside_kuard(cluster):
    server, _ = cluster
    server.kubectl("run", "kuard", f"--image={KUARD}")
    _running(server, "kuard")
    # kubectl adds the ephemeral container, waits for it to run and attaches to its shell
    out = _in_terminal(server, "debug", "-it", "kuard", f"--image={BUSYBOX}", "--target=kuard", "--", "sh",
                       script=[("If you don't see a command prompt", "\n"),
                               ("#", "echo debug-$((40+2)); tr '\\0' ' ' < /proc/1/cmdline; echo\n"),
                               ("debug-42", "exit\n")])
    assert "debug-42" in out
    assert "/kuard" in out.split("debug-42", 1)[1]  # --target: the debugger sees kuard's processes
    pod = get_pod(server, "kuard")
    assert pod is not None
    ec = pod["spec"]["ephemeralContainers"]
    assert len(ec) == 1 and ec[0]["image"] == BUSYBOX and ec[0]["targetContainerName"] == "kuard"
    statuses = {s["name"]: s for s in pod["status"].get("ephemeralContainerStatuses") or []}
    assert ec[0]["name"] in statuses
    # the app container kept running: nothing was restarted
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    # an existing ephemeral container cannot be changed
    patch = {"spec": {"ephemeralContainers": [{**ec[0], "image": KUARD}]}}
    bad = server.kubectl("patch", "pod", "kuard", "--subresource=ephemeralcontainers", "--type=strategic",
                         "-p", json.dumps(patch), check=False)
    assert bad.returncode != 0
    assert f'existing ephemeral containers "{ec[0]["name"]}" may not be changed' in bad.stderr


def test_eviction_deletes_gracefully(cluster):
    from kubernetes import client, config

    server, _ = cluster
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(server.kubeconfig), client_configuration=cfg)
    server.kubectl("run", "evictee", f"--image={BUSYBOX}", "--", "sleep", "3600")
    _running(server, "evictee")
    core = client.CoreV1Api(client.ApiClient(cfg))
    body = client.V1Eviction(metadata=client.V1ObjectMeta(name="evictee", namespace="default"),
                             delete_options=client.V1DeleteOptions(grace_period_seconds=2))
    core.create_namespaced_pod_eviction("evictee", "default", body)
    pod = get_pod(server, "evictee")
    assert pod is None or pod["metadata"].get("deletionTimestamp")  # graceful: Terminating first
    if pod is not None:
        assert pod["metadata"]["deletionGracePeriodSeconds"] == 2
    wait_until(lambda: get_pod(server, "evictee") is None, 60, 0.2, "evicted pod gone")
    # a name that does not match the URL is the client's mistake
    bad = client.V1Eviction(metadata=client.V1ObjectMeta(name="other"))
    with pytest.raises(client.ApiException) as ei:
        core.create_namespaced_pod_eviction("kuard", "default", bad)
    assert ei.value.status == 400 and "name in URL does not match name in Eviction object" in ei.value.body


def test_node_proxy_reaches_the_agent(cluster):
    server, _ = cluster
    assert server.kubectl("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/healthz").stdout == "ok"
    missing = server.kubectl("get", "--raw", "/api/v1/nodes/no-such-node/proxy/healthz", check=False)
    assert missing.returncode != 0 and 'nodes "no-such-node" not found' in missing.stderr
