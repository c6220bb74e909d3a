"""Logs, exec, attach, cp and port-forward end to end: real kubectl and the official Python client
→ kubelite API server → the agent's HTTPS endpoint → containerd's stream server.

The agent endpoint (AgentServer) and containerd run in this test process (a background event
loop), pods are run with raw CRI calls using the kubelet's labels and log layout, and the API
objects (Node, Pods with matching uids and reported statuses) are created through the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.e2e.harness import (
    KUBECTL,
    ROOT,
    ServerProcess,
    delete_nat_chain,
    free_port,
    nat_chains,
    wait_until,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (containerd, runc, CNI)"),
    pytest.mark.skipif(not shutil.which("containerd") or not shutil.which("runc") or not shutil.which("ctr"),
                       reason="containerd/runc not installed (make setup installs them)"),
]

BUILD_DIR = ROOT / "build" / "images"
KUARD = "kubelite.local/kuard-amd64:blue"
BUSYBOX = "kubelite.local/busybox:latest"

class Loop:
    """An event loop in a thread: the agent must keep serving while kubectl blocks the test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 120):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def _pod_manifest(name: str, containers: list[dict], node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "containers": containers}}


def _running(name: str, cid: str, image: str, restarts: int = 0, last: dict | None = None) -> dict:
    st = {"name": name, "image": image, "imageID": "", "ready": True, "restartCount": restarts,
          "started": True, "containerID": f"containerd://{cid}",
          "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}, "lastState": {}}
    if last:
        st["lastState"] = {"terminated": last}
    return st


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from tests.e2e import test_runtime as rt

    base = tmp_path_factory.mktemp("streams")
    data_dir = (base / "agent").resolve()
    data_dir.mkdir()
    bridge = f"kubelite-s{os.getpid() % 100000}"
    cidr = rt._free_pod_cidr()
    nat_before = nat_chains()
    rt._write_cni_config(data_dir / "cni" / "net.d", data_dir / "cni" / "ipam", bridge, cidr)

    server = ServerProcess(base / "server")
    server.start()
    loop = Loop()
    state: dict = {"server": server, "loop": loop, "data_dir": data_dir, "sandboxes": []}
    try:
        loop.run(_start_agent(state))
        yield state
    finally:
        with contextlib.suppress(Exception):
            loop.run(_stop_agent(state), timeout=60)
        loop.close()
        server.stop()
        if rt._link_exists(bridge):
            subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        for chain in nat_chains() - nat_before:
            delete_nat_chain(chain)
        for mp in sorted(rt._mounts_under(data_dir), key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True)


async def _start_agent(state: dict) -> None:
    from kubelite.agent import cri as cri_mod
    from kubelite.agent.containerd import Containerd
    from kubelite.agent.images import ImageManager
    from kubelite.agent.server import AgentServer
    from kubelite.images import build as image_build
    from kubelite.tls import pki as pki_mod

    await asyncio.to_thread(image_build.ensure_built, BUILD_DIR)
    cd = Containerd(state["data_dir"])
    await cd.start(timeout=30)
    state["containerd"] = cd
    client = await cri_mod.connect(cd.socket_path)
    state["cri"] = client
    deadline = time.monotonic() + 15
    while not (await client.network_ready())[0]:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    images = ImageManager(client)
    await images.ensure_offline_images(BUILD_DIR)
    state["refs"] = {KUARD: await images.ensure_image(KUARD, "Never"),
                     BUSYBOX: await images.ensure_image(BUSYBOX, "Never")}
    pki = pki_mod.load_pki(state["server"].data_dir)
    state["pki"] = pki
    agent = AgentServer(client, state["data_dir"], pki, port=0, bind="127.0.0.1")
    await agent.start()
    state["agent"] = agent


async def _stop_agent(state: dict) -> None:
    from kubelite.agent.cri import pb

    client = state.get("cri")
    if "agent" in state:
        await state["agent"].stop()
    if client is not None:
        for sid in state["sandboxes"]:
            with contextlib.suppress(Exception):
                resp = await client.runtime.ListContainers(pb.ListContainersRequest(
                    filter=pb.ContainerFilter(pod_sandbox_id=sid)))
                for c in resp.containers:
                    await client.runtime.StopContainer(pb.StopContainerRequest(container_id=c.id, timeout=1))
                    await client.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=c.id))
            with contextlib.suppress(Exception):
                await client.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid))
                await client.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
        await client.close()
    if "containerd" in state:
        await state["containerd"].stop()


async def _run_pod(state: dict, name: str, uid: str, containers: list[tuple[str, str, list[str], int, bool]]
                   ) -> dict[str, str]:
    """Run a sandbox and containers (name, image, command, attempt, wait_exit) with kubelet labels."""
    from kubelite.agent.cri import pb

    client = state["cri"]
    log_dir = state["data_dir"] / "pods" / f"default_{name}_{uid}"
    log_dir.mkdir(parents=True, exist_ok=True)
    labels = {"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": "default",
              "io.kubernetes.pod.uid": uid}
    cfg = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace="default", attempt=0), hostname=name,
        log_directory=str(log_dir), labels=labels,
        linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD))))
    sid = (await client.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg))).pod_sandbox_id
    state["sandboxes"].append(sid)
    ids: dict[str, str] = {}
    for cname, image, command, attempt, wait_exit in containers:
        (log_dir / cname).mkdir(exist_ok=True)
        ccfg = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=cname, attempt=attempt), image=pb.ImageSpec(image=state["refs"][image]),
            command=command, log_path=f"{cname}/{attempt}.log", stdin=True,
            labels={**labels, "io.kubernetes.container.name": cname})
        cid = (await client.runtime.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=sid, config=ccfg, sandbox_config=cfg))).container_id
        await client.runtime.StartContainer(pb.StartContainerRequest(container_id=cid))
        if wait_exit:
            for _ in range(100):
                st = await client.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=cid))
                if st.status.state == pb.CONTAINER_EXITED:
                    break
                await asyncio.sleep(0.05)
        ids[f"{cname}/{attempt}"] = cid
    return ids


def _kubectl_json(server: ServerProcess, *args: str, input: str | None = None) -> dict:
    return json.loads(server.kubectl(*args, "-o", "json", input=input).stdout)


@pytest.fixture(scope="module")
def pods(env):
    server: ServerProcess = env["server"]
    agent = env["agent"]
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}}
    server.kubectl("create", "-f", "-", input=json.dumps(node))
    server.kubectl("patch", "node", "node-1", "--subresource=status", "--type=merge", "-p", json.dumps({
        "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                                 {"type": "Hostname", "address": "node-1"}],
                   "daemonEndpoints": {"kubeletEndpoint": {"Port": agent.port}}}}))
    loop: Loop = env["loop"]
    out = {}
    # kuard: one container, running
    kuard = _kubectl_json(server, "create", "-f", "-", input=json.dumps(_pod_manifest(
        "kuard", [{"name": "kuard", "image": KUARD}], "node-1")))
    ids = loop.run(_run_pod(env, "kuard", kuard["metadata"]["uid"], [
        ("kuard", KUARD, [], 0, False)]))
    server.kubectl("patch", "pod", "kuard", "--subresource=status", "--type=merge", "-p", json.dumps({"status": {
        "phase": "Running", "containerStatuses": [_running("kuard", ids["kuard/0"], KUARD)]}}))
    out["kuard"] = ids
    # duo: two containers; "a" restarted once (attempt 0 exited), "b" prints a line a second
    duo = _kubectl_json(server, "create", "-f", "-", input=json.dumps(_pod_manifest("duo", [
        {"name": "a", "image": BUSYBOX}, {"name": "b", "image": BUSYBOX}], "node-1")))
    ids = loop.run(_run_pod(env, "duo", duo["metadata"]["uid"], [
        ("a", BUSYBOX, ["sh", "-c", "echo first run; echo oops >&2"], 0, True),
        ("a", BUSYBOX, ["sh", "-c", "echo second run; exec sleep 3600"], 1, False),
        ("b", BUSYBOX, ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.5; done"], 0, False),
    ]))
    server.kubectl("patch", "pod", "duo", "--subresource=status", "--type=merge", "-p", json.dumps({"status": {
        "phase": "Running", "containerStatuses": [
            _running("a", ids["a/1"], BUSYBOX, 1, {"exitCode": 0, "reason": "Completed",
                                                  "containerID": f"containerd://{ids['a/0']}"}),
            _running("b", ids["b/0"], BUSYBOX)]}}))
    out["duo"] = ids
    # pending: bound but not started
    server.kubectl("create", "-f", "-", input=json.dumps(_pod_manifest(
        "pending", [{"name": "c", "image": BUSYBOX}], "node-1")))
    server.kubectl("patch", "pod", "pending", "--subresource=status", "--type=merge", "-p", json.dumps({"status": {
        "phase": "Pending", "containerStatuses": [{
            "name": "c", "image": BUSYBOX, "imageID": "", "ready": False, "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}}}]}}))
    # kuard must answer before the port-forward tests
    wait_until(lambda: "serving on" in server.kubectl("logs", "kuard", check=False).stdout, 20,
               what="kuard serving")
    return out


# --------------------------------------------------------------------------- logs


def test_logs_basic_tail_timestamps(env, pods):
    s: ServerProcess = env["server"]
    wait_until(lambda: s.kubectl("logs", "duo", "-c", "b").stdout.count("tick") >= 3, 10, what="ticks")
    lines = s.kubectl("logs", "duo", "-c", "b").stdout.splitlines()
    assert lines[:3] == ["tick 0", "tick 1", "tick 2"]
    tail = s.kubectl("logs", "duo", "-c", "b", "--tail=1").stdout.splitlines()
    assert len(tail) == 1 and tail[0].startswith("tick ")
    ts = s.kubectl("logs", "duo", "-c", "b", "--tail=2", "--timestamps").stdout.splitlines()
    assert len(ts) == 2
    stamp, text = ts[0].split(" ", 1)
    assert text.startswith("tick ") and stamp.endswith("Z")
    dt.datetime.fromisoformat(stamp.rstrip("Z")[:26])
    assert s.kubectl("logs", "duo", "-c", "b", "--limit-bytes=5").stdout == "tick "
    since = s.kubectl("logs", "duo", "-c", "b", "--since=1s").stdout.splitlines()
    assert 0 < len(since) <= 4


def test_logs_previous_and_errors(env, pods):
    s: ServerProcess = env["server"]
    assert s.kubectl("logs", "duo", "-c", "a").stdout == "second run\n"
    # stdout and stderr are separate pipes: their records may interleave either way
    assert sorted(s.kubectl("logs", "duo", "-c", "a", "--previous").stdout.splitlines()) == ["first run", "oops"]
    p = s.kubectl("logs", "kuard", "--previous", check=False)
    assert p.returncode != 0
    assert 'previous terminated container "kuard" in pod "kuard" not found' in p.stderr
    p = s.kubectl("logs", "pending", check=False)
    assert p.returncode != 0
    assert ('Error from server (BadRequest): container "c" in pod "pending" is waiting to start: '
            "ContainerCreating") in p.stderr
    p = s.kubectl("logs", "nope", check=False)
    assert 'pods "nope" not found' in p.stderr
    p = s.kubectl("logs", "duo", "-c", "zzz", check=False)
    assert "container zzz is not valid for pod duo" in p.stderr
    # the raw API without a container on a two-container pod
    from tests.e2e.harness import raw_request

    code, _, body = raw_request(s, "GET", "/api/v1/namespaces/default/pods/duo/log")
    st = json.loads(body)
    assert code == 400 and st["reason"] == "BadRequest"
    assert st["message"] == "a container name must be specified for pod duo, choose one of: [a b]"
    code, _, body = raw_request(s, "GET", "/api/v1/namespaces/default/pods/kuard/log?tailLines=-1")
    assert code == 422 and "tailLines" in json.loads(body)["message"]


def test_logs_follow_sees_new_lines(env, pods):
    s: ServerProcess = env["server"]
    e = dict(os.environ, KUBECONFIG=str(s.kubeconfig), HOME=str(s.data_dir.parent))
    proc = subprocess.Popen([KUBECTL, "logs", "-f", "duo", "-c", "b", "--tail=1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=e)
    try:
        first = proc.stdout.readline()
        second = proc.stdout.readline()  # printed only after the follow saw new data
        assert first.startswith("tick ") and second.startswith("tick ")
        assert int(second.split()[1]) == int(first.split()[1]) + 1
    finally:
        proc.terminate()
        proc.wait(5)


# --------------------------------------------------------------------------- exec / cp


def test_exec_stdout_stdin_and_exit_codes(env, pods):
    s: ServerProcess = env["server"]
    out = s.kubectl("exec", "kuard", "--", "date", "-u", "+%Y")
    assert out.stdout.strip() == str(dt.datetime.now(dt.UTC).year)
    out = s.kubectl("exec", "-i", "kuard", "--", "cat", input="hello from stdin\n", timeout=30)
    assert out.stdout == "hello from stdin\n"
    p = s.kubectl("exec", "kuard", "--", "sh", "-c", "echo to-err >&2; exit 3", check=False)
    assert p.returncode == 3 and "to-err" in p.stderr
    p = s.kubectl("exec", "duo", "-c", "b", "--", "sh", "-c", "echo $HOSTNAME")
    assert p.stdout.strip() == "duo"
    p = s.kubectl("exec", "kuard", "--", "/no/such/binary", check=False)
    assert p.returncode != 0
    p = s.kubectl("exec", "pending", "--", "true", check=False)
    assert p.returncode == 1 and 'unable to upgrade connection: container not found ("c")' in p.stderr
    p = s.kubectl("exec", "nope", "--", "true", check=False)
    assert p.returncode == 1 and 'Error from server (NotFound): pods "nope" not found' in p.stderr


def test_kubectl_cp_both_directions(env, pods, tmp_path):
    s: ServerProcess = env["server"]
    src = tmp_path / "up.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    s.kubectl("cp", str(src), "default/kuard:/tmp/up.bin", timeout=60)
    assert s.kubectl("exec", "kuard", "--", "wc", "-c", "/tmp/up.bin").stdout.split()[0] == str(src.stat().st_size)
    dst = tmp_path / "down.bin"
    s.kubectl("cp", "default/kuard:/tmp/up.bin", str(dst), timeout=60)
    assert dst.read_bytes() == src.read_bytes()


def test_attach_reads_output(env, pods):
    s: ServerProcess = env["server"]
    e = dict(os.environ, KUBECONFIG=str(s.kubeconfig), HOME=str(s.data_dir.parent))
    proc = subprocess.Popen([KUBECTL, "attach", "duo", "-c", "b"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=e)
    try:
        line = proc.stdout.readline()
        assert line.startswith("tick ")
    finally:
        proc.terminate()
        proc.wait(5)


# --------------------------------------------------------------------------- port-forward


def _http_get(port: int, path: str = "/healthy") -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:  # noqa: S310
        return r.status, r.read()


def test_kubectl_port_forward(env, pods):
    s: ServerProcess = env["server"]
    local = free_port()
    e = dict(os.environ, KUBECONFIG=str(s.kubeconfig), HOME=str(s.data_dir.parent))
    proc = subprocess.Popen([KUBECTL, "port-forward", "pod/kuard", f"{local}:8080"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=e)
    try:
        line = proc.stdout.readline()
        assert "Forwarding from" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        assert _http_get(local) == (200, b"ok")
        for _ in range(3):  # several connections over the one tunnel
            status, body = _http_get(local, "/env/api")
            assert status == 200 and json.loads(body)["env"]["HOSTNAME"] == "kuard"
        # a large body (the kuard binary through its file server), several at once
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            bodies = list(ex.map(lambda _: _http_get(local, "/fs/kuard"), range(4)))
        sizes = {len(b) for st, b in bodies if st == 200}
        assert len(sizes) == 1 and sizes.pop() > 500_000, [(st, len(b)) for st, b in bodies]
    finally:
        proc.terminate()
        proc.wait(5)


# --------------------------------------------------------------------------- Python client


def test_python_client_exec_and_portforward(env, pods):
    from kubernetes import client, config
    from kubernetes.stream import portforward, stream

    s: ServerProcess = env["server"]
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(s.kubeconfig), client_configuration=cfg)
    with client.ApiClient(cfg) as api:
        core = client.CoreV1Api(api)
        out = stream(core.connect_get_namespaced_pod_exec, "kuard", "default", command=["echo", "hi there"],
                     stderr=True, stdin=False, stdout=True, tty=False)
        assert out == "hi there\n"
        resp = stream(core.connect_get_namespaced_pod_exec, "kuard", "default", command=["sh", "-c", "exit 4"],
                      stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
        resp.run_forever(timeout=10)
        assert resp.returncode == 4
        pf = portforward(core.connect_get_namespaced_pod_portforward, "kuard", "default", ports="8080")
        sock = pf.socket(8080)
        sock.setblocking(True)
        sock.sendall(b"GET /healthy HTTP/1.0\r\nHost: kuard\r\n\r\n")
        data = b""
        sock.settimeout(10)
        while chunk := sock.recv(4096):
            data += chunk
        sock.close()
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"ok"), data
        assert pf.error(8080) is None


# --------------------------------------------------------------------------- agent endpoint security


def test_agent_refuses_other_clients(env, pods):
    from kubelite.tls import pki as pki_mod

    pki = env["pki"]
    port = env["agent"].port
    # no client certificate (as the kubelet, the handshake lets bearer tokens in for /metrics
    # and /stats): the API server's paths answer 403
    ctx = pki_mod.client_ssl_context(pki)
    req = urllib.request.Request(f"https://127.0.0.1:{port}/healthz")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, context=ctx, timeout=5)  # noqa: S310
    assert exc.value.code == 403
    # a cluster certificate that is not the API server's: 403
    ctx = pki_mod.client_ssl_context(pki, pki.admin_cert, pki.admin_key)
    req = urllib.request.Request(f"https://127.0.0.1:{port}/containerLogs/default/kuard/kuard")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, context=ctx, timeout=5)  # noqa: S310
    assert exc.value.code == 403
    # the API server's kubelet-client certificate works
    ctx = pki_mod.kubelet_client_ssl_context(pki)
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=ctx, timeout=5) as r:  # noqa: S310
        assert r.read() == b"ok"



# --------------------------------------------------------------------------- rotation, raw protocols


def _line_reader(proc: subprocess.Popen):
    import queue

    q: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            q.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lambda timeout=10: q.get(timeout=timeout)


def test_log_rotation_while_following(env, pods):
    from kubelite.agent import logs

    s: ServerProcess = env["server"]
    agent = env["agent"]
    b_id = pods["duo"]["b/0"]

    async def only_b():
        return [(cid, path) for cid, path in await agent._running_logs() if cid == b_id]

    rotator = logs.LogRotator(only_b, agent._reopen_log, max_size=1, max_files=3)
    e = dict(os.environ, KUBECONFIG=str(s.kubeconfig), HOME=str(s.data_dir.parent))
    proc = subprocess.Popen([KUBECTL, "logs", "-f", "duo", "-c", "b", "--tail=1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=e)
    try:
        next_line = _line_reader(proc)
        n = int(next_line().split()[1])
        env["loop"].run(rotator.rotate_all())
        b_dir = next(env["data_dir"].glob("pods/default_duo_*/b"))
        assert [p.name for p in b_dir.iterdir() if p.name.startswith("0.log.")], list(b_dir.iterdir())
        for _ in range(4):  # the follow keeps going across the rotation, without gaps or repeats
            m = int(next_line().split()[1])
            assert m == n + 1
            n = m
        assert (b_dir / "0.log").stat().st_size > 0  # containerd reopened the log
        assert f"tick {n}" in s.kubectl("logs", "duo", "-c", "b").stdout
    finally:
        proc.terminate()
        proc.wait(5)


def test_raw_websocket_v4_and_v5(env, pods):
    import aiohttp

    from tests.e2e.harness import admin_ssl_context

    s: ServerProcess = env["server"]
    ctx = admin_ssl_context(s.kubeconfig)
    url = (f"{s.url}/api/v1/namespaces/default/pods/kuard/exec?command=cat&stdin=true&stdout=true"
           f"&stderr=true")

    async def session(proto: str) -> tuple[str, bytes, bytes]:
        async with aiohttp.ClientSession() as http, http.ws_connect(url, protocols=[proto], ssl=ctx) as ws:
            await ws.send_bytes(b"\x00hello\n")
            out = b""
            while not out.endswith(b"hello\n"):
                msg = await asyncio.wait_for(ws.receive(), 10)
                if msg.type == aiohttp.WSMsgType.BINARY and msg.data[:1] == b"\x01":
                    out += msg.data[1:]
            status = b""
            if proto.startswith("v5"):
                await ws.send_bytes(b"\xff\x00")  # close stdin: cat ends
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.BINARY and msg.data[:1] == b"\x03":
                        status += msg.data[1:]
            return ws.protocol or "", out, status

    async def both():
        return await session("v4.channel.k8s.io"), await session("v5.channel.k8s.io")

    v4, v5 = asyncio.run(both())
    assert v4[:2] == ("v4.channel.k8s.io", b"hello\n")
    assert v5[:2] == ("v5.channel.k8s.io", b"hello\n")
    assert json.loads(v5[2])["status"] == "Success"


def test_port_forward_to_closed_port_reports_error(env, pods):
    s: ServerProcess = env["server"]
    local = free_port()
    e = dict(os.environ, KUBECONFIG=str(s.kubeconfig), HOME=str(s.data_dir.parent))
    proc = subprocess.Popen([KUBECTL, "port-forward", "pod/kuard", f"{local}:9"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=e)
    try:
        assert "Forwarding from" in proc.stdout.readline()
        with contextlib.suppress(OSError):
            _http_get(local)
        proc.terminate()
        _, err = proc.communicate(timeout=10)
        assert "an error occurred forwarding" in err.lower() and "connect: connection refused" in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_raw_websocket_tty_resize(env, pods):
    import aiohttp

    from tests.e2e.harness import admin_ssl_context

    s: ServerProcess = env["server"]
    ctx = admin_ssl_context(s.kubeconfig)
    url = (f"{s.url}/api/v1/namespaces/default/pods/kuard/exec?command=sh&command=-c"
           f"&command=sleep+0.5%3B+stty+size&stdin=true&stdout=true&tty=true")

    async def run() -> tuple[bytes, bytes]:
        out, status = b"", b""
        async with aiohttp.ClientSession() as http, \
                http.ws_connect(url, protocols=["v5.channel.k8s.io"], ssl=ctx) as ws:
            await ws.send_bytes(b"\x04" + json.dumps({"Width": 100, "Height": 40}).encode())
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY and msg.data[:1] == b"\x01":
                    out += msg.data[1:]
                elif msg.type == aiohttp.WSMsgType.BINARY and msg.data[:1] == b"\x03":
                    status += msg.data[1:]
        return out, status

    out, status = asyncio.run(asyncio.wait_for(run(), 20))
    assert out.strip() == b"40 100"
    assert json.loads(status)["status"] == "Success"


def test_python_client_multi_port_forward(env, pods):
    from kubernetes import client, config
    from kubernetes.stream import portforward

    s: ServerProcess = env["server"]
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(s.kubeconfig), client_configuration=cfg)
    with client.ApiClient(cfg) as api:
        core = client.CoreV1Api(api)
        pf = portforward(core.connect_get_namespaced_pod_portforward, "kuard", "default", ports="8080,9")
        sock = pf.socket(8080)
        sock.setblocking(True)
        sock.settimeout(10)
        sock.sendall(b"GET /ready HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        sock.close()
        assert data.endswith(b"ok"), data
        # port 9 is closed in the pod: its error channel says so
        bad = pf.socket(9)
        bad.settimeout(10)
        with contextlib.suppress(OSError):
            bad.sendall(b"x")
            bad.recv(10)
        wait_until(lambda: pf.error(9) is not None, 10, what="port 9 error")
        assert "connection refused" in pf.error(9)


# --------------------------------------------------------------------------- interactive exec, text frames


def test_python_client_interactive_exec(env, pods):
    """The official client's interactive session: str input goes out as text frames (v5)."""
    from kubernetes import client, config
    from kubernetes.stream import stream

    s: ServerProcess = env["server"]
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(s.kubeconfig), client_configuration=cfg)
    with client.ApiClient(cfg) as api:
        core = client.CoreV1Api(api)
        resp = stream(core.connect_get_namespaced_pod_exec, "duo", "default", container="a", command=["/bin/sh"],
                      stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False)
        try:
            assert resp.subprotocol == "v5.channel.k8s.io"
            resp.write_stdin("echo test string 1\n")
            assert resp.readline_stdout(timeout=10) == "test string 1"
            resp.write_stdin("echo test string 2 >&2\n")
            assert resp.readline_stderr(timeout=10) == "test string 2"
            resp.write_stdin(b"echo binary frame\n")
            assert resp.readline_stdout(timeout=10) == "binary frame"
            resp.write_stdin("exit\n")
            resp.run_forever(timeout=10)
            assert resp.returncode == 0
        finally:
            resp.close()
        # cat ends when stdin is closed (v5 close of channel 0)
        cat = stream(core.connect_get_namespaced_pod_exec, "duo", "default", container="a", command=["cat"],
                     stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False)
        try:
            cat.write_stdin("meow\n")
            assert cat.readline_stdout(timeout=10) == "meow"
            cat.close_channel(0)
            cat.run_forever(timeout=10)
            assert cat.returncode == 0
        finally:
            cat.close()


def test_kubernetes_asyncio_interactive_exec(env, pods):
    """kubernetes_asyncio speaks v4: text and binary frames both reach the command."""
    import aiohttp
    from kubernetes_asyncio import client as aclient
    from kubernetes_asyncio import config as aconfig
    from kubernetes_asyncio.stream import WsApiClient

    s: ServerProcess = env["server"]

    async def session() -> tuple[bytes, bytes, dict]:
        cfg = aclient.Configuration()
        await aconfig.load_kube_config(config_file=str(s.kubeconfig), client_configuration=cfg)
        async with WsApiClient(configuration=cfg) as api:
            core = aclient.CoreV1Api(api_client=api)
            connect = await core.connect_get_namespaced_pod_exec("duo", "default", container="a",
                                                                 command=["/bin/sh"], stderr=True, stdin=True,
                                                                 stdout=True, tty=False, _preload_content=False)
            out, err, status = b"", b"", b""
            async with connect as ws:
                await ws.send_str("\x00echo test string 1\n")
                await ws.send_bytes(b"\x00echo test string 2 >&2\n")
                while not (out.endswith(b"test string 1\n") and err.endswith(b"test string 2\n")):
                    msg = await asyncio.wait_for(ws.receive(), 10)
                    assert msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT), msg
                    data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
                    if data[:1] == b"\x01":
                        out += data[1:]
                    elif data[:1] == b"\x02":
                        err += data[1:]
                await ws.send_str("\x00exit 0\n")
                async for msg in ws:
                    data = msg.data if isinstance(msg.data, bytes) else str(msg.data).encode()
                    if data[:1] == b"\x03":
                        status += data[1:]
            return out, err, json.loads(status)

    out, err, status = asyncio.run(session())
    assert (out, err) == (b"test string 1\n", b"test string 2\n")
    assert status["status"] == "Success"


def test_raw_websocket_text_frames_v4_and_v5(env, pods):
    import aiohttp

    from tests.e2e.harness import admin_ssl_context

    s: ServerProcess = env["server"]
    ctx = admin_ssl_context(s.kubeconfig)
    url = f"{s.url}/api/v1/namespaces/default/pods/kuard/exec?command=cat&stdin=true&stdout=true&stderr=true"

    async def session(proto: str) -> bytes:
        async with aiohttp.ClientSession() as http, http.ws_connect(url, protocols=[proto], ssl=ctx) as ws:
            await ws.send_str("\x00text frame\n")
            out = b""
            while not out.endswith(b"text frame\n"):
                msg = await asyncio.wait_for(ws.receive(), 10)
                if msg.type == aiohttp.WSMsgType.BINARY and msg.data[:1] == b"\x01":
                    out += msg.data[1:]
            return out

    async def both():
        return await session("v4.channel.k8s.io"), await session("v5.channel.k8s.io")

    assert asyncio.run(both()) == (b"text frame\n", b"text frame\n")
