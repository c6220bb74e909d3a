"""Unit tests of the prober: the probe kinds against local servers and a fake CRI, the
worker's thresholds and gating, the manager's per-container-ID lifecycle, and what the
status and the runtime read from the results."""

from __future__ import annotations

import asyncio
import socket

import grpc
import pytest
from aiohttp import web

from kubelite.agent import probes
from kubelite.agent.crispec import ContainerState, PodRuntime, SandboxState
from kubelite.agent.prober import FAILURE, SUCCESS, UNKNOWN, ProbeManager, Prober
from kubelite.agent.probes import ProbeError
from kubelite.agent.status import generate_status


# --------------------------------------------------------------------------- request building
def test_http_get_request_defaults_like_upstream():
    c = {"name": "kuard", "ports": [{"name": "http", "containerPort": 8080}]}
    url, headers = probes.http_get_request({"path": "/healthy?x=1", "port": "http", "scheme": "HTTP"}, c, "10.0.0.5")
    assert url == "http://10.0.0.5:8080/healthy?x=1"
    assert headers == [("User-Agent", "kube-probe/1.37"), ("Accept", "*/*")]
    url, headers = probes.http_get_request(
        {"path": "ready", "port": 8443, "scheme": "HTTPS", "host": "fd00::1",
         "httpHeaders": [{"name": "x-custom", "value": "a"}, {"name": "accept", "value": ""},
                         {"name": "user-agent", "value": "mine"}]}, c, "10.0.0.5")
    assert url == "https://[fd00::1]:8443/ready"
    assert headers == [("X-Custom", "a"), ("User-Agent", "mine")]


def test_resolve_container_port_errors_are_upstreams():
    c = {"ports": [{"name": "web", "containerPort": 80}]}
    assert probes.resolve_container_port("web", c) == 80
    assert probes.resolve_container_port("8080", c) == 8080
    assert probes.resolve_container_port(9000, c) == 9000
    with pytest.raises(ProbeError, match=r'^strconv.Atoi: parsing "http": invalid syntax$'):
        probes.resolve_container_port("http", c)
    with pytest.raises(ProbeError, match=r"^invalid port number: 70000$"):
        probes.resolve_container_port(70000, c)


def test_exec_command_expands_only_static_env():
    c = {"env": [{"name": "F", "value": "/tmp/ok"}, {"name": "R", "valueFrom": {"fieldRef": {}}}]}
    assert probes.exec_command(["cat", "$(F)", "$(R)", "$(NOPE)", "$$(F)"], c) == ["cat", "/tmp/ok", "", "$(NOPE)",
                                                                                   "$(F)"]


# --------------------------------------------------------------------------- HTTP
@pytest.fixture
async def http_server():
    seen: list = []

    async def ok(req):
        seen.append(req)
        return web.Response(text="ok")

    async def fail(req):
        return web.Response(status=500, text="secret body")

    async def redirect_same(req):
        raise web.HTTPFound("/ok")

    async def redirect_other(req):
        raise web.HTTPFound(f"http://localhost:{req.url.port}/ok", text="moved")

    async def loop(req):
        raise web.HTTPFound("/loop")

    async def slow(req):
        await asyncio.sleep(1.5)
        return web.Response(text="late")

    app = web.Application()
    for path, h in (("/ok", ok), ("/fail", fail), ("/same", redirect_same), ("/other", redirect_other),
                    ("/loop", loop), ("/slow", slow)):
        app.router.add_get(path, h)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield port, seen
    await runner.cleanup()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def test_http_probe_results_and_messages(http_server):
    port, seen = http_server
    c = {"name": "c"}

    async def run(path, **extra):
        url, headers = probes.http_get_request({"path": path, "port": port, **extra}, c, "127.0.0.1")
        return await probes.http_probe(url, headers, 1.0)

    assert await run("/ok") == (probes.SUCCESS, "ok")
    req = seen[-1]
    assert req.headers["User-Agent"] == "kube-probe/1.37" and req.headers["Accept"] == "*/*"
    assert "Accept-Encoding" not in req.headers and req.headers["Connection"] == "close"
    assert await run("/fail") == (probes.FAILURE, "HTTP probe failed with statuscode: 500")
    # a redirect to the same host is followed; one to another host ends the probe (a warning)
    assert await run("/same") == (probes.SUCCESS, "ok")
    result, out = await run("/other")
    assert result == probes.WARNING and out == "Probe terminated redirects, Response body: moved"
    assert await run("/loop") == (probes.FAILURE,
                                  f'Get "http://127.0.0.1:{port}/loop": stopped after 10 redirects')
    assert await run("/slow") == (probes.FAILURE, f'Get "http://127.0.0.1:{port}/slow": context deadline '
                                                  "exceeded (Client.Timeout exceeded while awaiting headers)")
    await run("/ok", host="127.0.0.1", httpHeaders=[{"name": "Host", "value": "example.test"},
                                                    {"name": "X-Probe", "value": "1"}])
    assert seen[-1].headers["Host"] == "example.test" and seen[-1].headers["X-Probe"] == "1"
    closed = _closed_port()
    url, headers = probes.http_get_request({"path": "/healthy", "port": closed}, c, "127.0.0.1")
    assert await probes.http_probe(url, headers, 1.0) == (
        probes.FAILURE, f'Get "http://127.0.0.1:{closed}/healthy": dial tcp 127.0.0.1:{closed}: connect: '
                        "connection refused")


# --------------------------------------------------------------------------- TCP
async def test_tcp_probe():
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        assert await probes.tcp_probe("127.0.0.1", port, 1.0) == (probes.SUCCESS, "")
    finally:
        server.close()
        await server.wait_closed()
    closed = _closed_port()
    assert await probes.tcp_probe("127.0.0.1", closed, 1.0) == (
        probes.FAILURE, f"dial tcp 127.0.0.1:{closed}: connect: connection refused")


# --------------------------------------------------------------------------- exec
class FakeRuntime:
    def __init__(self, answer):
        self.answer = answer
        self.requests: list = []

    async def ExecSync(self, req, timeout=None):  # noqa: N802 (the CRI method name)
        self.requests.append((req, timeout))
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


def _rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


async def test_exec_probe_over_execsync():
    from cri_api.v1 import api_pb2 as cri

    rt = FakeRuntime(cri.ExecSyncResponse(stdout=b"fine\n", exit_code=0))
    assert await probes.exec_probe(rt, "cid", ["cat", "/tmp/healthy"], 1.0) == (probes.SUCCESS, "fine\n")
    req, deadline = rt.requests[0]
    assert req.container_id == "cid" and list(req.cmd) == ["cat", "/tmp/healthy"] and req.timeout == 1
    assert deadline > 1
    rt.answer = cri.ExecSyncResponse(stdout=b"", stderr=b"cat: can't open '/tmp/healthy': No such file or directory\n",
                                     exit_code=1)
    assert await probes.exec_probe(rt, "cid", ["cat", "/tmp/healthy"], 1.0) == (
        probes.FAILURE, "cat: can't open '/tmp/healthy': No such file or directory\n")
    rt.answer = _rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "timeout 1s exceeded: context deadline exceeded")
    assert await probes.exec_probe(rt, "cid", ["sleep", "5"], 1.0) == (probes.FAILURE,
                                                                        'command "sleep 5" timed out')
    rt.answer = _rpc_error(grpc.StatusCode.NOT_FOUND, "container not found")
    with pytest.raises(ProbeError, match=r"^rpc error: code = NotFound desc = container not found$"):
        await probes.exec_probe(rt, "cid", ["true"], 1.0)


# --------------------------------------------------------------------------- gRPC
async def test_grpc_probe():
    state = {"svc": 1}

    def check(request: bytes, context) -> bytes:
        return b"\x08" + bytes([state["svc"]]) if state["svc"] else b""

    handler = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
        "Check": grpc.unary_unary_rpc_method_handler(check, request_deserializer=lambda b: b,
                                                     response_serializer=lambda b: b)})
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        assert await probes.grpc_probe("127.0.0.1", "", port, 2.0) == (probes.SUCCESS, "service is serving")
        state["svc"] = 2
        assert await probes.grpc_probe("127.0.0.1", "db", port, 2.0) == (
            probes.FAILURE, 'service unhealthy (responded with "NOT_SERVING")')
    finally:
        await server.stop(None)
    empty = grpc.aio.server()
    port2 = empty.add_insecure_port("127.0.0.1:0")
    await empty.start()
    try:
        result, out = await probes.grpc_probe("127.0.0.1", "", port2, 2.0)
        assert result == probes.FAILURE and out.startswith(
            "error: this server does not implement the grpc health protocol (grpc.health.v1.Health)")
    finally:
        await empty.stop(None)
    assert probes._decode_health_status(b"\x08\x01") == 1 and probes._encode_health_request("a") == b"\x0a\x01a"


# --------------------------------------------------------------------------- prober.go: events
async def test_prober_records_upstream_events():
    events: list = []
    pr = Prober(None, lambda pod, t, r, m, name, init=False: events.append((t, r, m, name)))
    answers: list = []

    async def fake_run(spec, pod, container, cid, ip):
        a = answers.pop(0)
        if isinstance(a, ProbeError):
            raise a
        return a

    pr.run_probe = fake_run
    h = {"httpGet": {"port": 8080}}
    pod = _pod(livenessProbe=h, readinessProbe=h, startupProbe=h)
    ct = pod["spec"]["containers"][0]
    answers[:] = [(probes.FAILURE, "HTTP probe failed with statuscode: 500")]
    assert await pr.probe("liveness", pod, ct, "cid", "10.0.0.1") == FAILURE
    answers[:] = [(probes.WARNING, "Probe terminated redirects, Response body: x")]
    assert await pr.probe("readiness", pod, ct, "cid", "10.0.0.1") == SUCCESS
    answers[:] = [ProbeError("boom")] * 2 + [(probes.SUCCESS, "")]  # errors are retried (3 tries)
    assert await pr.probe("startup", pod, ct, "cid", "10.0.0.1") == SUCCESS
    answers[:] = [ProbeError('strconv.Atoi: parsing "http": invalid syntax')] * 3
    with pytest.raises(ProbeError):
        await pr.probe("readiness", pod, ct, "cid", "10.0.0.1")
    assert events == [
        ("Warning", "Unhealthy", "Liveness probe failed: HTTP probe failed with statuscode: 500", "kuard"),
        ("Warning", "ProbeWarning", "Readiness probe warning: Probe terminated redirects, Response body: x", "kuard"),
        ("Warning", "Unhealthy", 'Readiness probe errored and resulted in unknown state: strconv.Atoi: parsing '
                                 '"http": invalid syntax', "kuard"),
    ]


# --------------------------------------------------------------------------- worker.go / manager
def _pod(**probes_) -> dict:
    return {"metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"restartPolicy": "Always", "containers": [{"name": "kuard", "image": "x", **probes_}]},
            "status": {"phase": "Running"}}


def _runtime(cid: str = "c1", state: str = "running", started_at: float = 1000.0) -> PodRuntime:
    return PodRuntime("u1", sandboxes=[SandboxState("s1", True, 0, 0.0, ips=["10.0.0.9"])],
                      containers=[ContainerState(cid, "kuard", state, 0, "s1", 0.0, started_at=started_at)])


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _manager(clock: Clock) -> tuple[ProbeManager, list, list]:
    wakes: list = []
    events: list = []
    mgr = ProbeManager(None, lambda *a, **k: events.append(a), on_change=wakes.append, jitter=False, clock=clock,
                       monotonic=clock)
    return mgr, wakes, events


def _script(mgr: ProbeManager, answers: list) -> list:
    calls: list = []

    async def probe(kind, pod, container, cid, ip, init=False):
        calls.append((kind, cid, ip))
        return answers.pop(0)

    mgr.prober.probe = probe
    return calls


async def test_liveness_threshold_hold_and_kill_reason():
    clock = Clock()
    mgr, wakes, _ = _manager(clock)
    pod = _pod(livenessProbe={"httpGet": {"port": 8080}, "initialDelaySeconds": 5, "periodSeconds": 1,
                              "failureThreshold": 2})
    mgr.sync_pod(pod, _runtime())
    w = mgr.workers[("u1", "kuard", "liveness")]
    calls = _script(mgr, [FAILURE, SUCCESS, FAILURE, FAILURE, SUCCESS])
    assert mgr.results.get("liveness", "c1") == SUCCESS and wakes == ["u1"]  # initial value
    clock.t = 1004.9
    assert await w.do_probe() and calls == []  # initialDelaySeconds (whole seconds, like upstream)
    clock.t = 1005.0
    for _ in range(3):
        assert await w.do_probe()
    assert mgr.kill_reason("c1") is None  # F, S, F: never two failures in a row
    assert await w.do_probe()
    assert mgr.results.get("liveness", "c1") == FAILURE and mgr.kill_reason("c1") == "liveness"
    assert w.on_hold and wakes == ["u1", "u1"]
    assert await w.do_probe() and len(calls) == 4  # on hold: no more probes for this container
    assert calls[0] == ("liveness", "c1", "10.0.0.9")
    # the restarted container (a new ID) gets a fresh worker; the old result goes
    mgr.sync_pod(pod, _runtime("c2", started_at=1010.0))
    assert mgr.results.get("liveness", "c1") is None and mgr.results.get("liveness", "c2") == SUCCESS
    assert mgr.workers[("u1", "kuard", "liveness")].container_id == "c2" and w._stop.is_set()
    await mgr.stop()
    assert len(mgr.results) == 0 and not mgr.workers


async def test_readiness_default_false_and_success_threshold():
    clock = Clock()
    mgr, _, _ = _manager(clock)
    pod = _pod(readinessProbe={"exec": {"command": ["true"]}, "successThreshold": 2, "failureThreshold": 1})
    pr = _runtime()
    mgr.sync_pod(pod, pr)
    c = pr.containers[0]
    w = mgr.workers[("u1", "kuard", "readiness")]
    _script(mgr, [SUCCESS, SUCCESS, FAILURE, SUCCESS])
    assert mgr.is_started(c) and not mgr.is_ready(c)  # not ready until a probe succeeds
    assert w._trigger.is_set()  # ... and asking triggers one at once
    await w.do_probe()
    assert not mgr.is_ready(c)  # one success of two
    await w.do_probe()
    assert mgr.is_ready(c)
    await w.do_probe()
    assert not mgr.is_ready(c) and mgr.kill_reason(c.id) is None  # readiness never kills
    status = generate_status(pod, pr, {}, "192.168.1.1", ready_fn=mgr.is_ready, started_fn=mgr.is_started)
    cs = status["containerStatuses"][0]
    assert cs["ready"] is False and cs["started"] is True
    conds = {x["type"]: x for x in status["conditions"]}
    assert conds["Ready"]["status"] == "False" and conds["ContainersReady"]["reason"] == "ContainersNotReady"
    assert conds["Ready"]["message"] == "containers with unready status: [kuard]"
    await mgr.stop()


async def test_startup_gates_liveness_and_readiness():
    clock = Clock()
    mgr, _, _ = _manager(clock)
    pod = _pod(startupProbe={"exec": {"command": ["true"]}, "failureThreshold": 3},
               livenessProbe={"exec": {"command": ["true"]}, "failureThreshold": 1},
               readinessProbe={"exec": {"command": ["true"]}})
    pr = _runtime()
    mgr.sync_pod(pod, pr)
    c = pr.containers[0]
    live = mgr.workers[("u1", "kuard", "liveness")]
    ready = mgr.workers[("u1", "kuard", "readiness")]
    start = mgr.workers[("u1", "kuard", "startup")]
    calls = _script(mgr, [FAILURE, SUCCESS, SUCCESS, SUCCESS])
    assert mgr.results.get("startup", "c1") == UNKNOWN and not mgr.is_started(c) and not mgr.is_ready(c)
    await live.do_probe()
    await ready.do_probe()
    assert calls == []  # gated until the container has started
    await start.do_probe()
    assert not mgr.is_started(c)
    await start.do_probe()
    assert mgr.is_started(c) and live._trigger.is_set() and ready._trigger.is_set()
    await start.do_probe()
    assert [k for k, _, _ in calls] == ["startup", "startup"]  # done once started
    await live.do_probe()
    await ready.do_probe()
    assert [k for k, _, _ in calls] == ["startup", "startup", "liveness", "readiness"] and mgr.is_ready(c)
    await mgr.stop()


async def test_startup_failure_kills_and_deletion_quiets_liveness():
    clock = Clock()
    mgr, _, _ = _manager(clock)
    pod = _pod(startupProbe={"exec": {"command": ["false"]}, "failureThreshold": 1},
               livenessProbe={"exec": {"command": ["true"]}})
    mgr.sync_pod(pod, _runtime())
    _script(mgr, [FAILURE])
    await mgr.workers[("u1", "kuard", "startup")].do_probe()
    assert mgr.kill_reason("c1") == "startup"
    # terminating: liveness and startup stop; readiness would go on
    pod2 = _pod(livenessProbe={"exec": {"command": ["true"]}}, readinessProbe={"exec": {"command": ["true"]}})
    pod2["metadata"]["uid"] = "u2"
    pr2 = _runtime("d1")
    pr2.uid = "u2"
    mgr.sync_pod(pod2, pr2)
    pod2["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    mgr.stop_liveness_and_startup(pod2)
    assert set(k for k in mgr.workers if k[0] == "u2") == {("u2", "kuard", "readiness")}
    assert mgr.results.get("liveness", "d1") is None and mgr.kill_reason("d1") is None
    mgr.remove_pod("u2")
    assert not [k for k in mgr.workers if k[0] == "u2"]
    await mgr.stop()


async def test_workers_follow_running_containers_and_stop_with_the_pod():
    clock = Clock()
    mgr, _, _ = _manager(clock)
    pod = _pod(readinessProbe={"tcpSocket": {"port": 8080}})
    mgr.sync_pod(pod, PodRuntime("u1"))
    assert not mgr.workers  # nothing runs yet
    mgr.sync_pod(pod, _runtime())
    assert mgr.workers[("u1", "kuard", "readiness")].pod_ip == "10.0.0.9"
    mgr.sync_pod(pod, _runtime(state="exited"))
    assert not mgr.workers and mgr.results.get("readiness", "c1") is None
    pod["spec"]["hostNetwork"] = True
    mgr.host_ip = "192.168.1.1"
    mgr.sync_pod(pod, _runtime("c3"))
    assert mgr.workers[("u1", "kuard", "readiness")].pod_ip == "192.168.1.1"
    pod["status"]["phase"] = "Succeeded"
    mgr.sync_pod(pod, _runtime("c3"))
    assert not mgr.workers
    await mgr.stop()


async def test_worker_loop_waits_for_initial_delay_then_ticks():
    """The real loop (wall clock): initialDelaySeconds 1, period 1 → the first probe ≈1 s
    after the start, the next one a period later."""
    import time

    mgr = ProbeManager(None, lambda *a, **k: None, jitter=False)
    pod = _pod(livenessProbe={"exec": {"command": ["true"]}, "initialDelaySeconds": 1, "periodSeconds": 1})
    times: list[float] = []
    t0 = time.time()

    async def probe(kind, pod, container, cid, ip, init=False):
        times.append(time.time() - t0)
        return SUCCESS

    mgr.prober.probe = probe
    mgr.sync_pod(pod, _runtime(started_at=t0))
    deadline = time.monotonic() + 5
    while len(times) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await mgr.stop()
    assert len(times) >= 2
    assert 0.95 <= times[0] < 1.5 and 0.8 <= times[1] - times[0] < 1.3
