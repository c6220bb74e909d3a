"""Metrics and resource usage without a server: the API server's label values and middleware,
the storage meter, the in-flight watermark, cgroup usage over fake cgroupfs trees, the agent's
Summary API and resource metrics, its authorizer, TokenReview, and metrics-server's storage
(points, rates, windows, restarts)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import MultiDict
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kubelite.agent.auth import NodeAuth, subresource_for
from kubelite.agent.cgroups import manager_for
from kubelite.agent.crispec import ContainerState, PodRuntime, SandboxState
from kubelite.agent.metrics import AgentMetrics, operation_type
from kubelite.agent.stats import StatsProvider
from kubelite.api import errors
from kubelite.apiserver.inflight import long_running
from kubelite.apiserver.metrics import REQUEST_BUCKETS, APIMetrics, clean_scope, dry_run_label, reported_verb
from kubelite.apiserver.requestinfo import REQUEST_INFO, request_info
from kubelite.auth.reviews import ReviewStore
from kubelite.kinds.authorization import TOKENREVIEW
from kubelite.kinds.registry import default_registry
from kubelite.metricsserver.storage import NS, MetricsPoint, NodeStorage, PodStorage, decode_batch
from tests.unit.test_cgroups import v1_tree, v2_tree


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams: dict, family: str, sample_name: str, /, **labels: str) -> float | None:
    for s in fams[family].samples:
        if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


# --------------------------------------------------------------------------- API server label values


@pytest.mark.parametrize("method,path,query,ctype,verb,scope", [
    ("GET", "/api/v1/namespaces/default/pods", {}, "", "LIST", "namespace"),
    ("GET", "/api/v1/pods", {}, "", "LIST", "cluster"),
    ("GET", "/api/v1/namespaces/default/pods/p", {}, "", "GET", "resource"),
    ("GET", "/api/v1/namespaces/default/pods", {"watch": "true"}, "", "WATCH", "namespace"),
    ("GET", "/api/v1/watch/namespaces/default/pods", {}, "", "WATCH", "namespace"),
    ("GET", "/api/v1/namespaces/default/pods", {"watch": "false"}, "", "LIST", "namespace"),
    ("POST", "/api/v1/namespaces/default/pods", {}, "application/json", "POST", "resource"),
    ("PATCH", "/api/v1/namespaces/default/pods/p", {}, "application/apply-patch+yaml", "APPLY", "resource"),
    ("PATCH", "/api/v1/namespaces/default/pods/p", {}, "application/merge-patch+json", "PATCH", "resource"),
    ("DELETE", "/api/v1/namespaces/default/pods", {}, "", "DELETE", "namespace"),
    ("PUT", "/api/v1/nodes/n", {}, "application/json", "PUT", "resource"),
])
def test_verb_and_scope_are_upstreams(method, path, query, ctype, verb, scope):
    q = MultiDict(query)
    info = request_info(method, path, q)
    assert clean_scope(info) == scope
    assert reported_verb(method, info, scope, q, ctype) == verb


def test_dry_run_label():
    assert dry_run_label(MultiDict()) == ""
    assert dry_run_label(MultiDict([("dryRun", "All"), ("dryRun", "All")])) == "All"
    assert dry_run_label(MultiDict([("dryRun", "bogus")])) == "invalid"


async def _served(metrics: APIMetrics, handler) -> TestClient:
    @web.middleware
    async def info(request, handler):
        request[REQUEST_INFO] = request_info(request.method, request.path, request.query)
        return await handler(request)

    app = web.Application(middlewares=[metrics.received(), info,
                                       metrics.instrument(default_registry(), long_running)])
    app.router.add_route("*", "/{rest:.*}", handler)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_requests_counted_and_timed_for_served_resources_only():
    metrics = APIMetrics()

    async def handler(request):
        if request.path.endswith("/missing"):
            raise errors.not_found("configmaps", "missing")
        return web.json_response({}, status=201 if request.method == "POST" else 200)

    client = await _served(metrics, handler)
    try:
        for path in ("/api/v1/namespaces/d/configmaps", "/api/v1/namespaces/d/configmaps",
                     "/api/v1/namespaces/d/configmaps/missing", "/api/v1/namespaces/d/widgets",
                     "/apis/nope.io/v1/things", "/healthz"):
            await client.get(path)
        await client.post("/api/v1/namespaces/d/configmaps?dryRun=All", json={})
    finally:
        await client.close()
    fams = families(generate_latest(metrics.registry).decode())
    base = {"group": "", "version": "v1", "resource": "configmaps", "subresource": "", "component": "apiserver"}
    assert value(fams, "apiserver_request", "apiserver_request_total", verb="LIST", scope="namespace", code="200",
                 dry_run="", **base) == 2
    assert value(fams, "apiserver_request", "apiserver_request_total", verb="GET", scope="resource", code="404",
                 **base) == 1
    assert value(fams, "apiserver_request", "apiserver_request_total", verb="POST", scope="resource", code="201",
                 dry_run="All", **base) == 1
    # an unserved resource or another non-resource path mints no series; /healthz is counted as upstream does
    assert {s.labels["resource"] for s in fams["apiserver_request"].samples} == {"configmaps", ""}
    assert value(fams, "apiserver_request", "apiserver_request_total", verb="GET", resource="", subresource="/healthz",
                 scope="", component="", code="200") == 1
    assert {s.labels["subresource"] for s in fams["apiserver_request"].samples if not s.labels["resource"]} == \
        {"/healthz"}
    hist = fams["apiserver_request_duration_seconds"]
    bounds = sorted({float(s.labels["le"]) for s in hist.samples if s.name.endswith("_bucket")} - {float("inf")})
    assert bounds == list(REQUEST_BUCKETS)
    assert not any(s.name.endswith("_created") for f in fams.values() for s in f.samples)


async def test_long_running_requests_gauge():
    metrics = APIMetrics()
    entered, release = asyncio.Event(), asyncio.Event()

    async def handler(request):
        entered.set()
        await release.wait()
        return web.Response(text="")

    client = await _served(metrics, handler)
    try:
        task = asyncio.ensure_future(client.get("/api/v1/namespaces/d/pods?watch=1"))
        await asyncio.wait_for(entered.wait(), 5)
        fams = families(generate_latest(metrics.registry).decode())
        assert value(fams, "apiserver_longrunning_requests", "apiserver_longrunning_requests", verb="WATCH",
                     resource="pods", scope="namespace") == 1
        release.set()
        await task
        fams = families(generate_latest(metrics.registry).decode())
        assert value(fams, "apiserver_longrunning_requests", "apiserver_longrunning_requests", verb="WATCH",
                     resource="pods") == 0
        assert value(fams, "apiserver_request", "apiserver_request_total", verb="WATCH", code="200") == 1
    finally:
        await client.close()


def test_inflight_watermark_reports_the_last_seconds_peak():
    metrics = APIMetrics()
    w = metrics.inflight
    for _ in range(3):
        w.enter("readOnly")
    for _ in range(3):
        w.leave("readOnly")
    fams = families(generate_latest(metrics.registry).decode())
    assert value(fams, "apiserver_current_inflight_requests", "apiserver_current_inflight_requests",
                 request_kind="readOnly") == 3
    assert value(fams, "apiserver_current_inflight_requests", "apiserver_current_inflight_requests",
                 request_kind="mutating") == 0
    w._since -= 2.5  # more than two windows later, with nothing in flight
    fams = families(generate_latest(metrics.registry).decode())
    assert value(fams, "apiserver_current_inflight_requests", "apiserver_current_inflight_requests",
                 request_kind="readOnly") == 0


async def test_metered_store_times_each_operation_and_counts_errors():
    metrics = APIMetrics()

    class Backend:
        async def get(self, key, revision=0):
            return None

        async def create(self, key, value):
            raise RuntimeError("boom")

        def watch(self, prefix, rev):
            return "the watch"

    store = metrics.metered(Backend(), "apps", "deployments")
    assert await store.get("k") is None
    with pytest.raises(RuntimeError):
        await store.create("k", b"")
    assert store.watch("p", 0) == "the watch"
    fams = families(generate_latest(metrics.registry).decode())
    labels = {"group": "apps", "resource": "deployments"}
    assert value(fams, "etcd_request_duration_seconds", "etcd_request_duration_seconds_count", operation="get",
                 **labels) == 1
    assert value(fams, "etcd_requests", "etcd_requests_total", operation="create", **labels) == 1
    assert value(fams, "etcd_request_errors", "etcd_request_errors_total", operation="create", **labels) == 1
    assert value(fams, "etcd_request_errors", "etcd_request_errors_total", operation="get", **labels) == 0


# --------------------------------------------------------------------------- TokenReview


async def test_token_review():
    users = {"good": SimpleNamespace(name="alice", groups=("dev", "system:authenticated"), uid="u1", extra={})}

    async def authenticate(token):
        return users.get(token)

    store = ReviewStore(TOKENREVIEW, None, authenticate)
    opts = SimpleNamespace(user=SimpleNamespace(name="system:node:n1"))
    out = await store.create("", {"metadata": {}, "spec": {"token": "good"}}, opts)
    assert out["status"] == {"authenticated": True, "user": {"username": "alice", "uid": "u1",
                                                            "groups": ["dev", "system:authenticated"]}}
    out = await store.create("", {"metadata": {}, "spec": {"token": "bad"}}, opts)
    assert out["status"] == {"user": {}}
    with pytest.raises(errors.StatusError) as exc:
        await store.create("", {"metadata": {}, "spec": {}}, opts)
    assert exc.value.code == 400


# --------------------------------------------------------------------------- the agent


def test_operation_types_are_the_kubelets():
    assert [operation_type(m) for m in ("RunPodSandbox", "ListPodSandbox", "PodSandboxStatus", "ListContainers",
                                        "ExecSync", "ImageFsInfo", "UpdateContainerResources", "Version")] == \
        ["run_podsandbox", "list_podsandbox", "podsandbox_status", "list_containers", "exec_sync", "image_fs_info",
         "update_container_resources", "version"]


async def test_agent_metrics():
    m = AgentMetrics("n1")

    class Stub:
        async def CreateContainer(self, req, timeout=None):
            return "ok"

        async def StopContainer(self, req, timeout=None):
            raise RuntimeError("nope")

    cri = SimpleNamespace(runtime=Stub(), image=Stub())
    m.instrument_cri(cri)
    assert await cri.runtime.CreateContainer(None) == "ok"
    with pytest.raises(RuntimeError):
        await cri.runtime.StopContainer(None)
    pr = PodRuntime("u1", [SandboxState("s1", True, 0, 1.0)],
                    [ContainerState("c1", "app", "running", 0, "s1", 1.0), ContainerState("c0", "app", "exited", 0,
                                                                                          "s1", 0.5)])
    m.watch_runtime(lambda: {"u1": pr, "u2": PodRuntime("u2", [SandboxState("s2", False, 0, 1.0)])})
    m.pod_seen("u1")
    m.pod_status("u1", "Pending", "Pending")
    m.pod_status("u1", "Pending", "Running")
    m.pod_status("u1", "Running", "Running")
    m.probe_result("readiness", "success", {"metadata": {"name": "p", "namespace": "d", "uid": "u1"}}, "app")
    m.probe_result("liveness", "failure", {"metadata": {"name": "p", "namespace": "d", "uid": "u1"}}, "app")
    fams = families(generate_latest(m.registry).decode())
    assert value(fams, "kubelet_runtime_operations", "kubelet_runtime_operations_total",
                 operation_type="create_container") == 1
    assert value(fams, "kubelet_runtime_operations_errors", "kubelet_runtime_operations_errors_total",
                 operation_type="stop_container") == 1
    assert value(fams, "kubelet_runtime_operations_duration_seconds",
                 "kubelet_runtime_operations_duration_seconds_count", operation_type="stop_container") == 1
    assert value(fams, "kubelet_running_pods", "kubelet_running_pods") == 1
    assert value(fams, "kubelet_running_containers", "kubelet_running_containers", container_state="running") == 1
    assert value(fams, "kubelet_running_containers", "kubelet_running_containers", container_state="exited") == 1
    assert value(fams, "kubelet_pod_start_duration_seconds", "kubelet_pod_start_duration_seconds_count") == 1
    assert "prober_probe" not in fams  # /metrics/probes
    probes = families(generate_latest(m.probe_registry).decode())
    assert value(probes, "prober_probe", "prober_probe_total", probe_type="Readiness", result="successful",
                 container="app", pod="p", namespace="d", pod_uid="u1") == 1
    assert value(probes, "prober_probe", "prober_probe_total", probe_type="Liveness", result="failed") == 1
    assert value(fams, "kubelet_node_name", "kubelet_node_name", node="n1") == 1


def _write(p: Path, text: str) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_cgroup_usage_v1(tmp_path):
    from kubelite.agent.cgroups import detect_layout

    root, mounts = v1_tree(tmp_path)
    (root / "cpuacct").rmdir()
    (root / "cpuacct").symlink_to(root / "cpu")  # cpu,cpuacct share a hierarchy on most hosts
    mgr = manager_for(detect_layout(root, mounts))
    _write(root / "cpu" / "kubepods" / "podu" / "cpuacct.usage", "2500000000\n")
    _write(root / "memory" / "kubepods" / "podu" / "memory.usage_in_bytes", "10485760\n")
    _write(root / "memory" / "kubepods" / "podu" / "memory.stat",
           "cache 100\ntotal_inactive_file 2097152\ntotal_rss 4194304\ntotal_pgfault 7\ntotal_pgmajfault 1\n")
    u = mgr.usage("kubepods/podu")
    assert (u.cpu_ns, u.memory_bytes, u.working_set_bytes, u.rss_bytes, u.page_faults, u.major_page_faults) == \
        (2500000000, 10485760, 8388608, 4194304, 7, 1)
    assert mgr.usage("kubepods/nothing") is None


def test_cgroup_usage_v2(tmp_path):
    from kubelite.agent.cgroups import detect_layout

    root, mounts = v2_tree(tmp_path)
    mgr = manager_for(detect_layout(root, mounts))
    d = root / "kubepods" / "podu" / "abc"
    _write(d / "cpu.stat", "usage_usec 1500000\nuser_usec 1000000\n")
    _write(d / "memory.current", "3145728\n")
    _write(d / "memory.stat", "anon 1048576\ninactive_file 1048576\npgfault 3\npgmajfault 0\n")
    u = mgr.usage("kubepods/podu/abc")
    assert (u.cpu_ns, u.memory_bytes, u.working_set_bytes, u.rss_bytes) == (1500000000, 3145728, 2097152, 1048576)
    # a missing figure is None, not 0
    _write(root / "kubepods" / "podv" / "cpu.stat", "")
    u = mgr.usage("kubepods/podv")
    assert u.cpu_ns is None and u.memory_bytes is None and u.working_set_bytes is None


class FakeCgroups:
    def __init__(self) -> None:
        self.cpu = {"": 100 * NS, "kubepods/podu": 4 * NS, "kubepods/podu/c1": 3 * NS}

    def usage(self, name):
        from kubelite.agent.cgroups import CgroupUsage

        if name not in self.cpu:
            return None
        return CgroupUsage(time.time(), self.cpu[name], 50 << 20, 40 << 20, 30 << 20)

    def pod_cgroup_names(self):
        return {"u1": "kubepods/podu"}


def _runtime() -> dict:
    sb = SandboxState("s1", True, 0, 1700000000.0, labels={"io.kubernetes.pod.name": "web",
                                                           "io.kubernetes.pod.namespace": "default"})
    return {"u1": PodRuntime("u1", [sb], [ContainerState("c1", "app", "running", 0, "s1", 1700000001.0,
                                                           started_at=1700000002.0, image="img")])}


async def test_summary_and_resource_metrics():
    cg = FakeCgroups()
    stats = StatsProvider("n1", cg, _runtime, memory_capacity=1 << 30, start_time=1700000000.0)
    s = await stats.summary()
    assert s["node"]["nodeName"] == "n1" and s["node"]["cpu"]["usageCoreNanoSeconds"] == 100 * NS
    assert "usageNanoCores" not in s["node"]["cpu"]  # no earlier reading yet: absent, not 0
    assert s["node"]["memory"]["availableBytes"] == (1 << 30) - (40 << 20)
    pod = s["pods"][0]
    assert pod["podRef"] == {"name": "web", "namespace": "default", "uid": "u1"}
    assert pod["containers"][0]["name"] == "app" and pod["containers"][0]["memory"]["workingSetBytes"] == 40 << 20
    # a reading two seconds earlier gives the rate
    sample = await stats.read()
    stats.remember(sample)
    for key in stats._newer:
        t, cpu = stats._newer[key]
        stats._newer[key] = (t - 2.0, cpu - NS)
    s = await stats.summary()
    assert s["pods"][0]["containers"][0]["cpu"]["usageNanoCores"] == pytest.approx(NS / 2, rel=0.01)

    fams = families(generate_latest(await stats.resource_registry()).decode())
    labels = {"container": "app", "pod": "web", "namespace": "default"}
    assert value(fams, "container_cpu_usage_seconds", "container_cpu_usage_seconds_total", **labels) == 3
    assert value(fams, "container_start_time_seconds", "container_start_time_seconds", **labels) == 1700000002.0
    assert value(fams, "pod_memory_working_set_bytes", "pod_memory_working_set_bytes", pod="web") == 40 << 20
    assert value(fams, "node_cpu_usage_seconds", "node_cpu_usage_seconds_total") == 100
    assert value(fams, "scrape_error", "scrape_error") == 0
    assert all(s.timestamp is not None for s in fams["container_cpu_usage_seconds"].samples)
    fams = families(generate_latest(await stats.cadvisor_registry()).decode())
    assert value(fams, "container_cpu_usage_seconds", "container_cpu_usage_seconds_total", container="app",
                 id="/kubepods/podu/c1", image="img", name="c1", namespace="default", pod="web") == 3
    assert value(fams, "container_memory_working_set_bytes", "container_memory_working_set_bytes", id="/") == 40 << 20


def test_agent_subresources():
    assert [subresource_for(p) for p in ("/metrics", "/metrics/cadvisor", "/metrics/resource", "/stats/summary",
                                         "/logs/x", "/containerLogs/a/b/c")] == \
        ["metrics", "metrics", "metrics", "stats", "log", "proxy"]


class FakeAPI:
    def __init__(self, users: dict, allowed: set) -> None:
        self.users, self.allowed, self.calls = users, allowed, []

    async def create(self, api_version, plural, obj):
        self.calls.append(plural)
        spec = obj["spec"]
        if plural == "tokenreviews":
            u = self.users.get(spec["token"])
            return {"status": {"authenticated": True, "user": {"username": u, "groups": ["g"]}} if u else {}}
        ra = spec["resourceAttributes"]
        return {"status": {"allowed": (spec["user"], ra["verb"], ra["resource"], ra["subresource"], ra["name"])
                           in self.allowed}}


def _request(headers: dict, path: str = "/metrics"):
    from aiohttp.test_utils import make_mocked_request

    return make_mocked_request("GET", path, headers=headers, transport=SimpleNamespace(get_extra_info=lambda k: None))


async def test_node_auth():
    api = FakeAPI({"t1": "scraper", "t2": "nobody"}, {("scraper", "get", "nodes", "metrics", "n1")})
    auth = NodeAuth(api, "n1")
    assert (await auth.check(_request({}))).status == 401
    assert (await auth.check(_request({"Authorization": "Bearer nope"}))).status == 401
    denied = await auth.check(_request({"Authorization": "Bearer t2"}))
    assert denied.status == 403
    assert denied.text == "Forbidden (user=nobody, verb=get, resource=nodes, subresource=metrics)"
    assert await auth.check(_request({"Authorization": "Bearer t1"})) is None
    assert (await auth.check(_request({"Authorization": "Bearer t1"}, "/stats/summary"))).status == 403
    calls = len(api.calls)
    assert await auth.check(_request({"Authorization": "Bearer t1"})) is None
    assert len(api.calls) == calls  # both answers came from the caches


# --------------------------------------------------------------------------- metrics-server's storage

RESOURCE = """# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total {node_cpu} {ts}
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 1073741824 {ts}
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{{container="app",namespace="default",pod="web"}} {cpu} {ts}
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{{container="app",namespace="default",pod="web"}} 2953216 {ts}
# TYPE container_start_time_seconds gauge
container_start_time_seconds{{container="app",namespace="default",pod="web"}} {start} {ts}
"""


def _batch(t: float, cpu: float, node_cpu: float = 100.0, start: float = 1000.0):
    return decode_batch(RESOURCE.format(ts=int(t * 1000), cpu=cpu, node_cpu=node_cpu, start=start), t, "n1")


def test_decode_batch():
    b = _batch(2000.0, 1.5)
    assert b.nodes["n1"] == MetricsPoint(0, 2000 * NS, 100 * NS, 1 << 30)
    assert b.pods[("default", "web")]["app"] == MetricsPoint(1000 * NS, 2000 * NS, int(1.5 * NS), 2953216)
    # a container without a working set: the whole pod is left out
    assert decode_batch(RESOURCE.format(ts=1, cpu=1, node_cpu=1, start=0).replace("2953216", "0"), 0, "n1").pods == {}


def test_usage_is_the_rate_between_two_scrapes():
    nodes, pods = NodeStorage(), PodStorage()
    for s in (nodes, pods):
        s.store(_batch(2000.0, 10.0, 100.0))
    assert nodes.usage("n1") is None and pods.usage("default", "web") is None  # one point: no rate yet
    for s in (nodes, pods):
        s.store(_batch(2015.0, 17.5, 115.0))
    u = nodes.usage("n1")
    assert (u.cpu, u.memory, u.window) == ("1", "1Gi", 15 * NS)
    containers, ts, window = pods.usage("default", "web")
    assert containers[0][0] == "app" and containers[0][1].cpu == "500m" and containers[0][1].memory == "2884Ki"
    assert (ts, window) == (2015 * NS, 15 * NS)
    # a restarted container (started after the last point) starts over
    pods.store(_batch(2030.0, 0.2, start=2025.0))
    assert pods.usage("default", "web") is None


def test_a_fresh_container_gets_a_first_point_at_its_start():
    pods = PodStorage()
    pods.store(_batch(2012.0, 6.0, start=2000.0))  # 12 s old: between 10 s and the resolution
    containers, _, window = pods.usage("default", "web")
    assert containers[0][1].cpu == "500m" and window == 12 * NS
