"""The container runtime layer against the real thing: our own containerd + runc + CNI.

No fakes: kubelite's Containerd supervisor starts containerd on a temporary data dir, the
offline images (build/images, built if missing) are imported with ctr, and a kuard pod
runs through raw CRI calls on a private bridge (``kubelite-t<random>``, 10.244.x.0/24).
Everything is torn down and checked: no shims, no mounts under the data dir, no netns,
no bridge, no cgroups left behind. Timings are printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from kubelite.agent import cri as cri_mod
from kubelite.agent.containerd import Containerd, socket_path_for
from kubelite.agent.cri import pb
from kubelite.agent.images import ErrImageNeverPull, ErrImagePull, ImageManager
from kubelite.images import build as image_build
from tests.e2e.harness import delete_nat_chain, nat_chains

ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = ROOT / "build" / "images"
KUARD = "kubelite.local/kuard-amd64:blue"
CGROUP_ROOT = Path("/sys/fs/cgroup")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (containerd, runc, CNI)"),
    pytest.mark.skipif(not shutil.which("containerd") or not shutil.which("runc") or not shutil.which("ctr"),
                       reason="containerd/runc not installed (make setup installs them)"),
]

TIMINGS: dict[str, float] = {}


def _note(name: str, seconds: float) -> None:
    TIMINGS[name] = seconds
    print(f"[timing] {name}: {seconds * 1000:.0f} ms")


# ---------------------------------------------------------------- host inspection helpers


def _processes_mentioning(needle: str) -> list[tuple[int, str]]:
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (d / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if needle in cmd and state != "Z":
            found.append((int(d.name), cmd))
    return found


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for PID 1 to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def _mounts_under(prefix: Path) -> list[str]:
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mp = line.split()[4].replace("\\040", " ")
        if mp == str(prefix) or mp.startswith(str(prefix) + "/"):
            out.append(mp)
    return out


def _link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def _free_pod_cidr() -> str:
    """10.244.0.0/24 unless a route on the host already overlaps it (another test's bridge)."""
    routes = subprocess.run(["ip", "-4", "route", "show"], capture_output=True, text=True).stdout
    used = []
    for line in routes.splitlines():
        with contextlib.suppress(ValueError):
            used.append(ipaddress.ip_network(line.split()[0], strict=False))
    for third in [0, *range(200, 250)]:
        net = ipaddress.ip_network(f"10.244.{third}.0/24")
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return str(net)
    raise RuntimeError("no free 10.244.x.0/24")


def _write_cni_config(conf_dir: Path, ipam_dir: Path, bridge: str, cidr: str) -> None:
    conf_dir.mkdir(parents=True, exist_ok=True)
    conf = {
        "cniVersion": "1.0.0",
        "name": "kubelite-e2e",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(ipam_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
        ],
    }
    # loopback: containerd's CRI adds the `lo` network itself (go-cni WithLoNetwork → /usr/lib/cni/loopback)
    (conf_dir / "10-kubelite-e2e.conflist").write_text(json.dumps(conf, indent=2))


def _free_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


async def _http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    def get() -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - test URL
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    return await asyncio.to_thread(get)


async def _wait_http(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await _http_get(url, timeout=1.0)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def image_archives() -> dict[str, Path]:
    t = time.monotonic()
    paths = image_build.ensure_built(BUILD_DIR)
    _note("images built or found", time.monotonic() - t)
    return paths


@pytest.fixture
def runtime_env(tmp_path):
    """A data dir, bridge name, cgroup parent, pod CIDR; cleans host state afterwards."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    rnd = secrets.token_hex(3)[:5]
    env = {
        "data_dir": data_dir,
        "bridge": f"kubelite-t{rnd}",
        "cgroup_parent": f"/kubelite-e2e-{rnd}",
        "cidr": _free_pod_cidr(),
        "nat_chains_before": nat_chains(),
        "run_containerd_existed": Path("/run/containerd").exists(),
        "var_lib_cni_existed": Path("/var/lib/cni").exists(),
        "netns_before": set(os.listdir("/run/netns")) if Path("/run/netns").exists() else set(),
    }
    yield env
    # --- safety net: whatever the test left (it asserts cleanliness itself before this)
    sock = str(socket_path_for(data_dir.resolve()))
    for pid, _ in _processes_mentioning(sock):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for mp in sorted(_mounts_under(data_dir.resolve()), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)
    if _link_exists(env["bridge"]):
        subprocess.run(["ip", "link", "del", env["bridge"]], capture_output=True)
    for chain in nat_chains() - env["nat_chains_before"]:
        delete_nat_chain(chain)
    for ctrl in CGROUP_ROOT.iterdir():
        d = ctrl / env["cgroup_parent"].lstrip("/")
        if d.is_dir():
            for sub in sorted(d.glob("**/"), key=lambda p: len(str(p)), reverse=True):
                with contextlib.suppress(OSError):
                    sub.rmdir()
    # directories containerd/CNI created outside the data dir, only if they did not exist before
    if not env["run_containerd_existed"]:
        _rmdir_empty_tree(Path("/run/containerd"))
    if not env["var_lib_cni_existed"]:
        _rmdir_empty_tree(Path("/var/lib/cni"))


def _rmdir_empty_tree(root: Path) -> None:
    if not root.is_dir():
        return
    for d in sorted((p for p in root.glob("**/") if p.is_dir()), key=lambda p: len(str(p)), reverse=True):
        with contextlib.suppress(OSError):
            d.rmdir()


# ---------------------------------------------------------------- tests


def test_socket_path_fallback_for_long_data_dirs(tmp_path):
    short = socket_path_for(Path("/var/lib/kubelite"))
    assert short == Path("/var/lib/kubelite/containerd/containerd.sock")
    long_dir = Path("/tmp/" + "x" * 100 + "/data")
    sock = socket_path_for(long_dir)
    assert str(sock).startswith("/run/kubelite/") and len(str(sock)) + len(".ttrpc") <= 104
    # containerd's own limit is 104 bytes, not sun_path's 107: a path that fits only the latter moves too
    edge = Path("/tmp/" + "y" * (104 - len("/tmp/") - len("/containerd/containerd.sock.ttrpc") + 2))
    assert str(socket_path_for(edge)).startswith("/run/kubelite/")
    assert socket_path_for(long_dir) == sock  # stable


async def test_containerd_supervision(runtime_env):
    data_dir: Path = runtime_env["data_dir"]
    cd = Containerd(data_dir, stop_timeout=10)
    try:
        t = time.monotonic()
        await cd.start(timeout=30)
        _note("containerd start to CRI ready", time.monotonic() - t)
        assert cd.socket_path.is_socket()
        cfg = cd.config_path.read_text()
        for needle in ("restrict_oom_score_adj = true", 'sandbox_image = "kubelite.local/pause:3.10"',
                       "SystemdCgroup = false", "netns_mounts_under_state_dir = true", 'snapshotter = "overlayfs"'):
            assert needle in cfg
        client = await cri_mod.connect(cd.socket_path)
        try:
            v = await client.version()
            assert v.runtime_name == "containerd" and v.runtime_api_version == "v1"
            assert (await client.runtime_ready())[0]

            # containerd dies: the supervisor restarts it and the same channel works again
            first_pid = cd.pid
            assert first_pid
            os.kill(first_pid, signal.SIGKILL)
            deadline = time.monotonic() + 15
            while (cd.pid in (None, first_pid)) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert cd.pid not in (None, first_pid), "containerd was not restarted"
            t = time.monotonic()
            await cd.wait_ready(30)
            _note("containerd restart to CRI ready (after the 1 s backoff)", time.monotonic() - t)
            assert cd.restarts == 1
            t = time.monotonic()
            while True:  # the old channel reconnects by itself (≤ 1 s backoff)
                try:
                    await client.version(timeout=1)
                    break
                except cri_mod.grpc.aio.AioRpcError:
                    assert time.monotonic() - t < 5
                    await asyncio.sleep(0.05)
        finally:
            await client.close()
    finally:
        rc = await cd.stop()
    assert rc is not None
    assert not _processes_mentioning(str(cd.config_path))
    assert not cd.pid_path.exists()
    assert (data_dir / "logs" / "containerd.log").stat().st_size > 0


async def test_images_and_kuard_pod(runtime_env, image_archives):
    data_dir: Path = runtime_env["data_dir"].resolve()
    bridge, cgroup_parent, cidr = runtime_env["bridge"], runtime_env["cgroup_parent"], runtime_env["cidr"]
    _write_cni_config(data_dir / "cni" / "net.d", data_dir / "cni" / "ipam", bridge, cidr)
    cd = Containerd(data_dir)
    t = time.monotonic()
    await cd.start(timeout=30)
    _note("containerd start to CRI ready", time.monotonic() - t)
    client = await cri_mod.connect(cd.socket_path)
    sandbox_id = container_id = None
    shim_pids: list[int] = []
    try:
        # CNI is picked up from conf_dir
        deadline = time.monotonic() + 10
        while not (await client.network_ready())[0]:
            assert time.monotonic() < deadline, await client.network_ready()
            await asyncio.sleep(0.1)

        # ---------------------------------------------------------- images
        images = ImageManager(client)
        with pytest.raises(ErrImageNeverPull):
            await images.ensure_image(KUARD, "Never")
        t = time.monotonic()
        names = await images.import_archive(image_archives[KUARD])
        _note("import kuard archive (ctr images import)", time.monotonic() - t)
        assert names == [KUARD]
        t = time.monotonic()
        imported = await images.ensure_offline_images(BUILD_DIR)
        _note("ensure_offline_images (pause, busybox, kuard green/purple)", time.monotonic() - t)
        assert set(imported) == set(image_build.IMAGES) - {KUARD}
        assert await images.ensure_offline_images(BUILD_DIR) == []  # idempotent
        tags = {tag for img in await images.list() for tag in img.repo_tags}
        assert set(image_build.IMAGES) <= tags
        kuard_ref = await images.ensure_image(KUARD, "Never")
        assert kuard_ref.startswith("sha256:")
        assert await images.ensure_image(KUARD, "IfNotPresent") == kuard_ref
        assert await images.ensure_image(KUARD, "Always") == kuard_ref  # kubelite.local: local only
        assert await images.ensure_image("kubelite.local/busybox:latest", None)  # default policy
        green = await images.ensure_image("kubelite.local/kuard-amd64:green", "Never")
        assert green != kuard_ref  # same layer, different config
        with pytest.raises(ErrImagePull):  # nothing reachable: a real pull fails with ErrImagePull
            await images.ensure_image("127.0.0.1:1/nothing/here:1", "Always")
        st = await images.status(KUARD)
        assert st is not None and st.spec.image or st.id

        # ---------------------------------------------------------- pod sandbox
        pod_uid = secrets.token_hex(8)
        host_port = _free_tcp_port()
        log_dir = data_dir / "pods" / pod_uid
        log_dir.mkdir(parents=True)
        sandbox_config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name="kuard", uid=pod_uid, namespace="default", attempt=0),
            hostname="kuard",
            port_mappings=[pb.PortMapping(protocol=pb.TCP, container_port=8080, host_port=host_port)],
            log_directory=str(log_dir),
            labels={"io.kubernetes.pod.name": "kuard", "io.kubernetes.pod.namespace": "default",
                    "io.kubernetes.pod.uid": pod_uid},
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent=cgroup_parent,
                security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD)),
            ),
        )
        t0 = time.monotonic()
        resp = await client.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=sandbox_config))
        sandbox_id = resp.pod_sandbox_id
        t_sandbox = time.monotonic() - t0
        container_config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name="kuard", attempt=0),
            image=pb.ImageSpec(image=kuard_ref),
            args=["--port", "8080"],
            envs=[pb.KeyValue(key="KUBELITE_TEST", value="yes")],
            log_path="kuard/0.log",
            labels={"io.kubernetes.container.name": "kuard"},
            linux=pb.LinuxContainerConfig(resources=pb.LinuxContainerResources(
                memory_limit_in_bytes=256 * 1024 * 1024, cpu_period=100000, cpu_quota=100000)),
        )
        (log_dir / "kuard").mkdir()
        cresp = await client.runtime.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=sandbox_id, config=container_config, sandbox_config=sandbox_config))
        container_id = cresp.container_id
        await client.runtime.StartContainer(pb.StartContainerRequest(container_id=container_id))
        t_running = time.monotonic() - t0
        _note("RunPodSandbox", t_sandbox)
        _note("RunPodSandbox + CreateContainer + StartContainer", t_running)

        sb = await client.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id))
        pod_ip = sb.status.network.ip
        assert ipaddress.ip_address(pod_ip) in ipaddress.ip_network(cidr), pod_ip

        # ---------------------------------------------------------- talk to kuard from the host
        status, body = await _wait_http(f"http://{pod_ip}:8080/healthy")
        _note("RunPodSandbox to first HTTP 200 from kuard", time.monotonic() - t0)
        assert (status, body) == (200, b"ok")
        status, body = await _http_get(f"http://{pod_ip}:8080/env/api")
        assert status == 200
        env = json.loads(body)
        assert env["commandLine"] == ["/kuard", "--port", "8080"]
        assert env["env"]["KUBELITE_TEST"] == "yes" and env["env"]["KUARD_COLOR"] == "blue"
        assert env["env"]["HOSTNAME"] == "kuard"
        status, body = await _http_get(f"http://{pod_ip}:8080/")
        assert status == 200 and pod_ip.encode() in body and b"kuard" in body
        assert (await _http_get(f"http://{pod_ip}:8080/healthy/api/fail?n=1"))[0] == 200
        assert (await _http_get(f"http://{pod_ip}:8080/healthy"))[0] == 500
        assert (await _http_get(f"http://{pod_ip}:8080/healthy")) == (200, b"ok")

        # hostPort through the portmap plugin, from the host's loopback
        assert (await _wait_http(f"http://127.0.0.1:{host_port}/ready", timeout=5)) == (200, b"ok")

        # exec works (busybox inside kuard), loopback is up in the pod
        ex = await client.runtime.ExecSync(pb.ExecSyncRequest(
            container_id=container_id, cmd=["sh", "-c", "hostname; ip -4 addr show lo; date"], timeout=10))
        assert ex.exit_code == 0, ex.stderr
        assert b"kuard" in ex.stdout and b"127.0.0.1" in ex.stdout

        # a busybox sidecar shares the pod's IPC namespace (ipcmk/ipcs from the images' ipctools)
        (log_dir / "sidecar").mkdir()
        bb_ref = await images.ensure_image("kubelite.local/busybox:latest", "IfNotPresent")
        sresp = await client.runtime.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=sandbox_id, sandbox_config=sandbox_config, config=pb.ContainerConfig(
                metadata=pb.ContainerMetadata(name="sidecar", attempt=0), image=pb.ImageSpec(image=bb_ref),
                command=["sleep", "3600"], log_path="sidecar/0.log")))
        sidecar_id = sresp.container_id
        await client.runtime.StartContainer(pb.StartContainerRequest(container_id=sidecar_id))
        ex = await client.runtime.ExecSync(pb.ExecSyncRequest(container_id=container_id,
                                                              cmd=["ipcmk", "-M", "4096"], timeout=10))
        assert ex.exit_code == 0 and ex.stdout.startswith(b"Shared memory id: "), ex
        shm_id = ex.stdout.split()[-1]
        ex = await client.runtime.ExecSync(pb.ExecSyncRequest(container_id=sidecar_id, cmd=["ipcs", "-m"],
                                                              timeout=10))
        assert ex.exit_code == 0 and b"4096" in ex.stdout and shm_id in ex.stdout, ex
        await client.runtime.StopContainer(pb.StopContainerRequest(container_id=sidecar_id, timeout=1))
        await client.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=sidecar_id))

        # the container's cgroup sits under our cgroup_parent, with the memory limit
        mem_dir = CGROUP_ROOT / "memory" / cgroup_parent.lstrip("/") / container_id
        assert mem_dir.is_dir()
        assert int((mem_dir / "memory.limit_in_bytes").read_text()) == 256 * 1024 * 1024

        # ---------------------------------------------------------- containerd restarts; the pod does not
        shim_pids = [pid for pid, cmd in _processes_mentioning(str(cd.socket_path)) if "containerd-shim" in cmd]
        assert len(shim_pids) == 1, shim_pids
        await client.close()
        await cd.stop()
        assert all(_alive(p) for p in shim_pids), "shim died with containerd"
        assert (await _http_get(f"http://{pod_ip}:8080/healthy")) == (200, b"ok")
        await cd.start(timeout=30)
        client = await cri_mod.connect(cd.socket_path)
        cs = await client.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=container_id))
        assert cs.status.state == pb.CONTAINER_RUNNING

        # ---------------------------------------------------------- stop: SIGTERM → prompt exit 0
        t = time.monotonic()
        await client.runtime.StopContainer(pb.StopContainerRequest(container_id=container_id, timeout=10))
        stop_time = time.monotonic() - t
        _note("StopContainer (kuard exits on SIGTERM)", stop_time)
        cs = await client.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=container_id))
        assert cs.status.state == pb.CONTAINER_EXITED and cs.status.exit_code == 0, cs.status
        assert stop_time < 5
        assert (log_dir / "kuard" / "0.log").read_text().count("kuard: serving on") == 1
    finally:
        # ---------------------------------------------------------- tear everything down via CRI
        try:
            if not cd.running:
                await cd.start(timeout=30)
            with contextlib.suppress(Exception):
                await client.close()
            client = await cri_mod.connect(cd.socket_path)
            if container_id:
                with contextlib.suppress(Exception):
                    await client.runtime.StopContainer(pb.StopContainerRequest(container_id=container_id, timeout=5))
                    await client.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=container_id))
            if sandbox_id:
                await client.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sandbox_id))
                await client.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id))
            left = await client.runtime.ListPodSandbox(pb.ListPodSandboxRequest())
            assert not left.items
        finally:
            await client.close()
            await cd.stop()

    # ---------------------------------------------------------- nothing left behind
    assert not _processes_mentioning(str(cd.socket_path)), "shim or containerd still running"
    assert not any(_alive(p) for p in shim_pids)
    assert _mounts_under(data_dir) == []
    netns_dir = data_dir / "containerd" / "state" / "io.containerd.grpc.v1.cri" / "netns"
    assert not netns_dir.exists() or not os.listdir(netns_dir)
    now_netns = set(os.listdir("/run/netns")) if Path("/run/netns").exists() else set()
    assert now_netns <= runtime_env["netns_before"]
    assert not list((data_dir / "cni" / "ipam").glob("*/10.*")), "IP address not released"
    # the agent owns the pod-level cgroup (containerd leaves it): the container's is gone
    assert not (CGROUP_ROOT / "memory" / cgroup_parent.lstrip("/") / container_id).exists()
    print("[timings]", json.dumps({k: round(v, 3) for k, v in TIMINGS.items()}))


_CLI_DRIVER = (
    "import argparse, sys\n"
    "from kubelite.cli.images import register_images_cli\n"
    "p = argparse.ArgumentParser(prog='kubelite')\n"
    "register_images_cli(p.add_subparsers(dest='cmd', required=True))\n"
    "a = p.parse_args()\n"
    "sys.exit(a.func(a))\n"
)


async def test_images_cli(runtime_env, image_archives):
    """`kubelite images import|ls|rm` against the containerd of a data dir."""
    import sys

    data_dir: Path = runtime_env["data_dir"]
    cd = Containerd(data_dir)
    await cd.start(timeout=30)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", _CLI_DRIVER, "images", *args, "--data-dir", str(data_dir)],
                              capture_output=True, text=True, cwd=ROOT, timeout=120)

    try:
        r = await asyncio.to_thread(cli, "import", str(image_archives["kubelite.local/busybox:latest"]))
        assert r.returncode == 0 and "imported kubelite.local/busybox:latest" in r.stdout, r
        r = await asyncio.to_thread(cli, "ls")
        assert r.returncode == 0 and r.stdout.split("\n")[0].split() == ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"]
        assert "kubelite.local/busybox" in r.stdout and "latest" in r.stdout
        r = await asyncio.to_thread(cli, "rm", "kubelite.local/busybox:latest")
        assert r.returncode == 0, r
        r = await asyncio.to_thread(cli, "rm", "kubelite.local/busybox:latest")
        assert r.returncode == 1 and "no such image" in r.stderr
        r = await asyncio.to_thread(cli, "ls", "-q")
        assert r.returncode == 0 and r.stdout.strip() == ""
    finally:
        await cd.stop()


async def test_long_data_dir_and_stale_containerd(tmp_path):
    """A too-long data dir gets its socket under /run/kubelite; a containerd orphaned by a
    killed kubelite (pid file) is replaced by the next start."""
    import sys

    data_dir = (tmp_path / ("d" * 60) / ("e" * 40) / "data").resolve()
    data_dir.mkdir(parents=True)
    sock = socket_path_for(data_dir)
    assert str(sock).startswith("/run/kubelite/")
    script = ("import asyncio, sys\n"
              "from kubelite.agent.containerd import Containerd\n"
              "async def main():\n"
              "    await Containerd(sys.argv[1]).start()\n"
              "    print('ready', flush=True)\n"
              "    await asyncio.sleep(3600)\n"
              "asyncio.run(main())\n")
    orphan_parent = subprocess.Popen([sys.executable, "-c", script, str(data_dir)], stdout=subprocess.PIPE,
                                     cwd=ROOT)
    cd = None
    try:
        assert orphan_parent.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(orphan_parent.stdout.readline), 30)
        assert line.strip() == b"ready"
        stale_pid = int((data_dir / "containerd" / "containerd.pid").read_text())
        orphan_parent.kill()  # kubelite killed: its containerd (own session) keeps running
        orphan_parent.wait()
        assert _alive(stale_pid)
        cd = Containerd(data_dir)
        await cd.start(timeout=30)
        assert cd.pid != stale_pid and not _alive(stale_pid)
        assert cd.socket_path == sock and sock.is_socket()
    finally:
        if orphan_parent.poll() is None:
            orphan_parent.kill()
            orphan_parent.wait()
        if cd is not None:
            await cd.stop()
        for pid, _ in _processes_mentioning(str(data_dir)):
            os.kill(pid, signal.SIGKILL)
    assert not sock.parent.exists()
    with contextlib.suppress(OSError):
        sock.parent.parent.rmdir()
