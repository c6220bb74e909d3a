"""Pulling from real registries: Debian's ``docker-registry`` (distribution 2.8) on 127.0.0.1,
images pushed with ``skopeo``, pulled by the agent's containerd over CRI. No fakes.

Two registries run for the module: an open one and one with htpasswd (bcrypt) basic auth.
Covered: a pull from a loopback registry with no registries.yaml (containerd speaks plain
http to loopback hosts), the Pulling/Pulled events, ``imagePullPolicy: Always`` pulling
again, a missing tag (ErrImagePull → ImagePullBackOff), the auth registry without
credentials (401) and with an imagePullSecret (pod's own, and the service account's), and
``<data_dir>/registries.yaml`` (a docker.io mirror and configured credentials) after an
agent restart. Pull times are printed (``-s``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.harness import ROOT, free_port, wait_until
from tests.e2e.test_agent_support import cstatus, delete, node_env, phase, pod_manifest, running, wait_pod

ARCHIVE = ROOT / "build" / "images" / "busybox-latest.tar"
USER, PASSWORD = "puller", "s3cret-pw"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not all(shutil.which(b) for b in ("docker-registry", "skopeo", "htpasswd")),
                       reason="docker-registry, skopeo and apache2-utils (htpasswd) are needed (make setup)"),
]
node = pytest.fixture(scope="module")(node_env)


class Registry:
    """``docker-registry serve`` on 127.0.0.1:<free port>, storage in a temp dir."""

    def __init__(self, auth: bool = False) -> None:
        self.auth = auth
        self.dir = Path(tempfile.mkdtemp(prefix="kl-registry-"))
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Registry:
        cfg = {"version": 0.1, "log": {"level": "warn"},
               "storage": {"filesystem": {"rootdirectory": str(self.dir / "data")}, "delete": {"enabled": True}},
               "http": {"addr": self.host, "secret": "kubelite-test"}}
        if self.auth:
            p = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], capture_output=True, text=True, check=True)
            (self.dir / "htpasswd").write_text(p.stdout)
            cfg["auth"] = {"htpasswd": {"realm": "kubelite-test", "path": str(self.dir / "htpasswd")}}
        (self.dir / "config.yml").write_text(json.dumps(cfg))  # JSON is YAML
        self.log = open(self.dir / "registry.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.dir / "config.yml")],
                                     stdout=self.log, stderr=subprocess.STDOUT)

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {(self.dir / 'registry.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1)
                return True
            except urllib.error.HTTPError as e:
                return e.code == 401
            except OSError:
                return False

        wait_until(up, 20, 0.1, f"registry on {self.host}")
        return self

    def push(self, tag: str, archive: Path = ARCHIVE, repo: str = "test/busybox") -> str:
        ref = f"{self.host}/{repo}:{tag}"
        cmd = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci-archive:{archive}", f"docker://{ref}"]
        if self.auth:
            cmd[3:3] = ["--dest-creds", f"{USER}:{PASSWORD}"]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        return ref

    def requests(self, needle: str) -> int:
        """How many access-log lines mention ``needle`` (e.g. a manifest path)."""
        self.log.flush()
        return sum(needle in ln for ln in (self.dir / "registry.log").read_text(errors="replace").splitlines())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(Exception):
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _fresh_archive(path: Path) -> Path:
    """busybox plus a random file in one layer: blobs no node has, so a pull downloads and unpacks."""
    import secrets

    from kubelite.images import build as image_build
    from kubelite.images.oci import Image, ImageConfig, LayerBuilder, write_archive

    busybox = image_build._find(image_build.BUSYBOX_CANDIDATES, "busybox-static")
    layer = image_build.add_busybox(LayerBuilder(), busybox).add_file("/nonce", data=secrets.token_hex(16)).build()
    return write_archive(path, [Image("kubelite.test/fresh:v1", ImageConfig(cmd=["sh"]), [layer])])


@pytest.fixture(scope="module")
def regs():
    if not ARCHIVE.is_file():
        from kubelite.images import build as image_build

        image_build.ensure_built(ARCHIVE.parent)
    started: list[Registry] = []
    try:
        open_reg = Registry().start()
        started.append(open_reg)
        auth_reg = Registry(auth=True).start()
        started.append(auth_reg)
        t0 = time.monotonic()
        for tag in ("v1", "v2"):
            open_reg.push(tag)
        open_reg.push("v1", _fresh_archive(open_reg.dir / "fresh.tar"), repo="test/fresh")
        for tag in ("v1", "v2", "v3"):
            auth_reg.push(tag)
        print(f"[timing] 6 skopeo pushes: {time.monotonic() - t0:.2f}s")
        yield open_reg, auth_reg
    finally:
        for r in started:
            r.stop()


def _events(server, name: str) -> list[tuple[str, str, str]]:
    p = server.kubectl("get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json")
    items = sorted(json.loads(p.stdout)["items"],
                   key=lambda e: (e.get("firstTimestamp") or e.get("eventTime") or "", e["metadata"]["name"]))
    return [(e["type"], e["reason"], e["message"]) for e in items]


def _waiting(pod: dict) -> tuple[str, str]:
    w = cstatus(pod).get("state", {}).get("waiting") or {}
    return w.get("reason", ""), w.get("message", "")


def _sleeper(name: str, node_name: str, image: str, spec: dict | None = None, **container) -> dict:
    return pod_manifest(name, node_name, [{"name": "c", "image": image, "command": ["sleep", "3600"], **container}],
                        **(spec or {}))


def _pulled_seconds(msg: str) -> float:
    # 'Successfully pulled image "x" in 1.234s (1.234s including waiting). Image size: N bytes.'
    took = msg.split(" in ", 1)[1].split(" ", 1)[0]
    return float(took[:-2]) / 1000 if took.endswith("ms") else float(took.rstrip("s"))


def _create(server, manifest: dict) -> None:
    server.kubectl("create", "-f", "-", input=json.dumps(manifest))


def _rmi(agent, ref: str) -> None:
    agent.ctr("images", "rm", ref, check=False)


def _restart_agent(agent, written) -> None:
    """Restart the agent process; ``written()`` tells when the new one has rendered registries.yaml
    (the Node may still look Ready from before, so AgentProcess.start alone can return early)."""
    def starts() -> int:
        return agent.log_path.read_text(errors="replace").count(f"agent for node {agent.node_name} started")

    before = starts()
    agent.stop()
    agent.start()
    wait_until(written, 30, 0.1, "registries.yaml rendered")
    # wait for the end of Agent.start: a SIGTERM during start-up would leave its containerd behind
    wait_until(lambda: starts() > before, 60, 0.1, "agent started")


# ---------------------------------------------------------------------------------- tests


def test_pull_from_loopback_registry_without_config(node, regs):
    server, agent = node
    open_reg, _ = regs
    image = f"{open_reg.host}/test/fresh:v1"
    # nothing configured: containerd 1.6 uses plain http for loopback registries by itself
    assert not (agent.data_dir / "registries.yaml").exists()
    assert not (agent.data_dir / "containerd" / "certs.d" / open_reg.host).exists()
    t0 = time.monotonic()
    _create(server, _sleeper("reg-pull", agent.node_name, image))
    pod = wait_pod(server, "reg-pull", running, 120, "reg-pull Running")
    print(f"[timing] create -> Running with a registry pull: {time.monotonic() - t0:.2f}s")
    st = cstatus(pod)
    assert st["image"] == image and ("@sha256:" in st["imageID"] or st["imageID"].startswith("sha256:")), st
    ev = [(t, r, m) for t, r, m in _events(server, "reg-pull") if r in ("Pulling", "Pulled")]
    assert ev[0] == ("Normal", "Pulling", f'Pulling image "{image}"'), ev
    assert ev[1][:2] == ("Normal", "Pulled"), ev
    msg = ev[1][2]
    assert msg.startswith(f'Successfully pulled image "{image}" in ') and "including waiting). Image size: " in msg
    assert msg.endswith(" bytes."), msg
    print(f"[timing] pull of {image}: {_pulled_seconds(msg):.3f}s ({msg})")
    assert open_reg.requests("/v2/test/fresh/manifests/v1") >= 1 and open_reg.requests("/v2/test/fresh/blobs/") >= 2
    assert agent.ctr("images", "ls", "-q").stdout.split().count(image) == 1
    delete(server, "reg-pull")
    _rmi(agent, image)


def test_pull_policy_always_pulls_again(node, regs):
    server, agent = node
    open_reg, _ = regs
    image = f"{open_reg.host}/test/busybox:v1"
    if not agent.ctr("images", "ls", "-q", f"name=={image}").stdout.strip():
        agent.ctr("images", "pull", "--plain-http", image, timeout=60)
    # IfNotPresent: no pull
    before = open_reg.requests("/v2/test/busybox/manifests/v1")
    _create(server, _sleeper("reg-present", agent.node_name, image, imagePullPolicy="IfNotPresent"))
    wait_pod(server, "reg-present", running, 120, "reg-present Running")
    assert ("Normal", "Pulled", f'Container image "{image}" already present on machine') in _events(
        server, "reg-present")
    assert open_reg.requests("/v2/test/busybox/manifests/v1") == before
    # Always: pulls again (the registry sees the manifest request), even though it is present
    _create(server, _sleeper("reg-always", agent.node_name, image, imagePullPolicy="Always"))
    wait_pod(server, "reg-always", running, 120, "reg-always Running")
    ev = _events(server, "reg-always")
    reasons = [r for _, r, _ in ev]
    assert "Pulling" in reasons and reasons.index("Pulling") < reasons.index("Pulled"), ev
    pulled = [m for _, r, m in ev if r == "Pulled"]
    assert pulled and pulled[0].startswith(f'Successfully pulled image "{image}" in '), ev
    print(f"[timing] Always re-pull (layers present): {_pulled_seconds(pulled[0]):.3f}s")
    assert open_reg.requests("/v2/test/busybox/manifests/v1") > before
    delete(server, "reg-present")
    delete(server, "reg-always")


def test_missing_tag_err_image_pull_then_backoff(node, regs):
    server, agent = node
    open_reg, _ = regs
    image = f"{open_reg.host}/test/busybox:no-such-tag"
    _create(server, _sleeper("reg-missing", agent.node_name, image))
    pod = wait_pod(server, "reg-missing", lambda p: _waiting(p)[0] in ("ErrImagePull", "ImagePullBackOff"), 30)
    assert phase(pod) == "Pending"
    reason, message = _waiting(pod)
    if reason == "ErrImagePull":
        assert "not found" in message, message
    wait_pod(server, "reg-missing", lambda p: _waiting(p)[0] == "ImagePullBackOff", 40, "ImagePullBackOff")
    ev = _events(server, "reg-missing")
    failed = [m for t, r, m in ev if (t, r) == ("Warning", "Failed")]
    assert any(m.startswith(f'Failed to pull image "{image}": ') and "not found" in m for m in failed), ev
    assert "Error: ErrImagePull" in failed, ev
    print(f"[message] {failed[0]}")
    assert any(r == "BackOff" for _, r, _ in ev) or "Error: ImagePullBackOff" in failed, ev
    delete(server, "reg-missing")


def test_auth_registry_without_credentials_is_401(node, regs):
    server, agent = node
    _, auth_reg = regs
    image = f"{auth_reg.host}/test/busybox:v1"
    _rmi(agent, image)
    _create(server, _sleeper("reg-noauth", agent.node_name, image))
    pod = wait_pod(server, "reg-noauth", lambda p: _waiting(p)[0] in ("ErrImagePull", "ImagePullBackOff"), 30)
    failed = [m for t, r, m in _events(server, "reg-noauth") if (t, r) == ("Warning", "Failed")]
    assert any("401 Unauthorized" in m for m in failed), failed
    print(f"[message] {failed[0]}")
    assert "401 Unauthorized" in _waiting(pod)[1], _waiting(pod)
    delete(server, "reg-noauth")


def test_auth_registry_with_image_pull_secret(node, regs):
    server, agent = node
    _, auth_reg = regs
    image = f"{auth_reg.host}/test/busybox:v1"
    _rmi(agent, image)
    server.kubectl("create", "secret", "docker-registry", "regcred", f"--docker-server={auth_reg.host}",
                   f"--docker-username={USER}", f"--docker-password={PASSWORD}")
    try:
        secret = json.loads(server.kubectl("get", "secret", "regcred", "-o", "json").stdout)
        assert secret["type"] == "kubernetes.io/dockerconfigjson"
        _create(server, _sleeper("reg-secret", agent.node_name, image, {"imagePullSecrets": [{"name": "regcred"}]}))
        wait_pod(server, "reg-secret", running, 120, "reg-secret Running")
        pulled = [m for _, r, m in _events(server, "reg-secret") if r == "Pulled"]
        assert pulled and pulled[0].startswith(f'Successfully pulled image "{image}" in '), pulled
        print(f"[timing] authenticated pull: {_pulled_seconds(pulled[0]):.3f}s")
        delete(server, "reg-secret")
    finally:
        server.kubectl("delete", "secret", "regcred", "--ignore-not-found", check=False)


def test_auth_registry_with_service_account_pull_secret(node, regs):
    server, agent = node
    _, auth_reg = regs
    image = f"{auth_reg.host}/test/busybox:v2"
    _rmi(agent, image)
    # the legacy .dockercfg form, with a path-qualified key (keyring prefix match)
    cfg = {f"{auth_reg.host}/test": {"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}}
    _create(server, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sacred"},
                     "type": "kubernetes.io/dockercfg",
                     "data": {".dockercfg": base64.b64encode(json.dumps(cfg).encode()).decode()}})
    _create(server, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "puller"},
                     "imagePullSecrets": [{"name": "sacred"}]})
    try:
        _create(server, _sleeper("reg-sa", agent.node_name, image, {"serviceAccountName": "puller"}))
        wait_pod(server, "reg-sa", running, 120, "reg-sa Running")
        delete(server, "reg-sa")
    finally:
        server.kubectl("delete", "serviceaccount", "puller", "--ignore-not-found", check=False)
        server.kubectl("delete", "secret", "sacred", "--ignore-not-found", check=False)


def test_registries_yaml_mirror_and_credentials(node, regs):
    """registries.yaml, read at agent start: docker.io mirrored to the open registry (so the
    Hub name ``test/busybox:v2`` comes from it) and credentials for the auth registry."""
    server, agent = node
    open_reg, auth_reg = regs
    conf = {"mirrors": {"docker.io": {"endpoint": [f"http://{open_reg.host}"]}},
            "configs": {open_reg.host: {"tls": {"insecure_skip_verify": True}},
                        auth_reg.host: {"auth": {"username": USER, "password": PASSWORD}}}}
    (agent.data_dir / "registries.yaml").write_text(json.dumps(conf))
    try:
        hosts_toml = agent.data_dir / "containerd" / "certs.d" / "docker.io" / "hosts.toml"
        _restart_agent(agent, lambda: hosts_toml.exists())
        hosts = hosts_toml.read_text()
        assert 'server = "https://registry-1.docker.io"' in hosts
        assert f'[host."http://{open_reg.host}"]' in hosts and 'capabilities = ["pull", "resolve"]' in hosts
        hub_image = "test/busybox:v2"
        _rmi(agent, f"docker.io/{hub_image}")
        _create(server, _sleeper("reg-mirror", agent.node_name, hub_image))
        wait_pod(server, "reg-mirror", running, 120, "reg-mirror Running")
        assert open_reg.requests("/v2/test/busybox/manifests/v2") >= 1
        auth_image = f"{auth_reg.host}/test/busybox:v3"
        _rmi(agent, auth_image)
        _create(server, _sleeper("reg-conf-auth", agent.node_name, auth_image))
        wait_pod(server, "reg-conf-auth", running, 120, "reg-conf-auth Running")
        delete(server, "reg-mirror")
        delete(server, "reg-conf-auth")
    finally:
        (agent.data_dir / "registries.yaml").unlink(missing_ok=True)
    # without registries.yaml the files kubelite wrote go away on the next start
    _restart_agent(agent, lambda: not (agent.data_dir / "containerd" / "certs.d" / "docker.io").exists())
