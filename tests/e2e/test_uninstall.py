"""`kubelite uninstall` refuses while pods run, then leaves nothing of kubelite on the host."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.e2e.harness import ServerProcess, wait_until
from tests.e2e.test_agent_support import node_ready

KUBELITE = str(Path(sys.executable).parent / "kubelite")


def _uninstall(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([KUBELITE, "uninstall", *args], capture_output=True, text=True, timeout=60)


def test_uninstall_after_the_last_pod(tmp_path):
    server = ServerProcess(tmp_path / "data", extra=["--node-name", "kl-e2e-uninstall"]).start()
    try:
        wait_until(lambda: node_ready(server, "kl-e2e-uninstall"), 60, 0.1, "node Ready")
        server.kubectl("run", "kuard", "--image=kubelite.local/kuard-amd64:blue", "--port=8080")
        ready = server.kubectl("wait", "--for=condition=Ready", "pod/kuard", "--timeout=45s", check=False)
        if ready.returncode != 0:
            described = server.kubectl("describe", "pod", "kuard", check=False).stdout
            log_tail = server.log_path.read_text(errors="replace")[-4000:]
            raise AssertionError(f"pod kuard not Ready in 45 s:\n{described}\n--- server log ---\n{log_tail}")
        refused = _uninstall("--data-dir", str(server.data_dir))
        assert refused.returncode == 1 and "pods still run on this host" in refused.stderr
        server.kubectl("delete", "pod", "kuard")
    finally:
        server.stop()
    done = _uninstall("--data-dir", str(server.data_dir), "--purge")
    assert done.returncode == 0, done.stderr
    assert not server.data_dir.exists()
    assert subprocess.run(["ip", "link", "show", "kubelite0"], capture_output=True).returncode != 0
    assert not any(Path("/sys/fs/cgroup").glob("*/kubepods"))
    assert not Path("/run/containerd").exists() and not Path("/var/lib/cni").exists()
