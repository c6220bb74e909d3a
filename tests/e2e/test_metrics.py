"""Metrics end to end (a full `kubelite server`: API server, scheduler, agent with containerd):
the API server's and the agent's Prometheus endpoints behind RBAC and the kubelet's
authorization, as a scraper with a ServiceAccount token sees them; the agent's resource
metrics and stats; metrics.k8s.io and `kubectl top`.

Every wait polls with a deadline."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import wait_until
from tests.e2e.test_agent_support import BUSYBOX, full_cluster

pytestmark = pytest.mark.e2e
NODE = "kl-e2e-metrics"
NS = "metrics-e2e"
# apiserver_request_duration_seconds' upstream buckets
REQUEST_BUCKETS = [0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30,
                   45, 60]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with full_cluster(tmp_path_factory.mktemp("metrics") / "data", NODE, NS) as (server, view):
        server.kubectl("create", "namespace", NS)
        for sa in ("scraper", "nobody"):
            server.kubectl("create", "serviceaccount", sa, "-n", NS)
        # upstream's default roles: /metrics for system:monitoring, the kubelet's API for kubelet-api-admin
        server.kubectl("create", "clusterrolebinding", "e2e-scraper-monitoring", "--clusterrole=system:monitoring",
                       f"--serviceaccount={NS}:scraper")
        server.kubectl("create", "clusterrolebinding", "e2e-scraper-kubelet", "--clusterrole=system:kubelet-api-admin",
                       f"--serviceaccount={NS}:scraper")
        tokens = {sa: server.kubectl("create", "token", sa, "-n", NS).stdout.strip() for sa in ("scraper", "nobody")}
        try:
            yield {"server": server, "view": view, "tokens": tokens}
        finally:
            for crb in ("e2e-scraper-monitoring", "e2e-scraper-kubelet"):
                server.kubectl("delete", "clusterrolebinding", crb, "--ignore-not-found", check=False)


def _ca_context(server) -> ssl.SSLContext:
    cfg = yaml.safe_load(server.kubeconfig.read_text())
    ca = base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    return ssl.create_default_context(cadata=ca)


def fetch(server, url: str, token: str | None) -> tuple[int, str]:
    """GET with a bearer token (or no credential); (status, body) without raising."""
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, context=_ca_context(server), timeout=15) as r:  # noqa: S310
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def agent_url(server, path: str) -> str:
    node = json.loads(server.kubectl("get", "node", NODE, "-o", "json").stdout)
    port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    return f"https://127.0.0.1:{port}{path}"


def sample(fams: dict, family: str, name: str, **labels: str) -> float | None:
    for s in fams[family].samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


@pytest.fixture(scope="module")
def busy(cluster):
    """A pod in a busy loop under a 0.5 CPU limit, with a readiness probe (scheduled by the scheduler)."""
    server = cluster["server"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "busy", "namespace": NS, "labels": {"app": "busy"}},
           "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
               "name": "spin", "image": BUSYBOX, "command": ["sh", "-c", "while :; do :; done"],
               "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
               "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}}]}}
    server.kubectl("create", "-f", "-", input=json.dumps(pod))

    def ready() -> bool:
        p = json.loads(server.kubectl("get", "pod", "busy", "-n", NS, "-o", "json").stdout)
        return any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))

    wait_until(ready, 90, 0.2, "busy pod Ready")
    return pod


# --------------------------------------------------------------------------- the API server's /metrics


def test_apiserver_metrics_need_authorization(cluster):
    server, tokens = cluster["server"], cluster["tokens"]
    assert fetch(server, f"{server.url}/metrics", None)[0] == 401
    status, body = fetch(server, f"{server.url}/metrics", tokens["nobody"])
    assert status == 403, body
    assert json.loads(body)["message"] == \
        'forbidden: User "system:serviceaccount:metrics-e2e:nobody" cannot get path "/metrics"'
    status, body = fetch(server, f"{server.url}/metrics", tokens["scraper"])
    assert status == 200, body
    fams = families(body)
    # upstream's names, types and labels
    assert fams["apiserver_request"].type == "counter"
    req = fams["apiserver_request"].samples[0]
    assert set(req.labels) == {"verb", "dry_run", "group", "version", "resource", "subresource", "scope",
                               "component", "code"}
    hist = fams["apiserver_request_duration_seconds"]
    assert hist.type == "histogram"
    bounds = sorted({float(s.labels["le"]) for s in hist.samples if s.name.endswith("_bucket")} - {float("inf")})
    assert bounds == REQUEST_BUCKETS
    assert fams["etcd_request_duration_seconds"].type == "histogram"
    assert {"operation", "group", "resource"} <= set(fams["etcd_request_duration_seconds"].samples[0].labels)
    assert sample(fams, "apiserver_storage_objects", "apiserver_storage_objects", resource="namespaces") >= 4
    assert {s.labels["request_kind"] for s in fams["apiserver_current_inflight_requests"].samples} == \
        {"readOnly", "mutating"}
    # the agent and the scheduler of this process watch pods: long-running requests in progress
    assert sample(fams, "apiserver_longrunning_requests", "apiserver_longrunning_requests",
                  verb="WATCH", resource="pods") >= 1


def test_request_counter_moves_with_traffic(cluster):
    server, token = cluster["server"], cluster["tokens"]["scraper"]
    labels = {"verb": "LIST", "resource": "configmaps", "scope": "namespace", "code": "200", "group": "",
              "version": "v1", "component": "apiserver"}

    def count() -> float:
        fams = families(fetch(server, f"{server.url}/metrics", token)[1])
        return sample(fams, "apiserver_request", "apiserver_request_total", **labels) or 0.0

    before = count()
    for _ in range(3):
        server.kubectl("get", "configmaps", "-n", NS)
    assert count() >= before + 3
    # a request for a missing object is counted with its code
    server.kubectl("get", "configmap", "no-such", "-n", NS, check=False)
    fams = families(fetch(server, f"{server.url}/metrics", token)[1])
    assert sample(fams, "apiserver_request", "apiserver_request_total", verb="GET", resource="configmaps",
                  scope="resource", code="404") >= 1


def test_scheduler_metrics(cluster, busy):
    server, token = cluster["server"], cluster["tokens"]["scraper"]
    fams = families(fetch(server, f"{server.url}/metrics", token)[1])
    assert sample(fams, "scheduler_schedule_attempts", "scheduler_schedule_attempts_total", result="scheduled",
                  profile="default-scheduler") >= 1
    assert sample(fams, "scheduler_scheduling_attempt_duration_seconds",
                  "scheduler_scheduling_attempt_duration_seconds_count", result="scheduled",
                  profile="default-scheduler") >= 1


# --------------------------------------------------------------------------- the agent's /metrics


def test_agent_metrics_need_authorization(cluster):
    server, tokens = cluster["server"], cluster["tokens"]
    url = agent_url(server, "/metrics")
    assert fetch(server, url, None)[0] == 401
    status, body = fetch(server, url, tokens["nobody"])
    assert status == 403
    assert body == "Forbidden (user=system:serviceaccount:metrics-e2e:nobody, verb=get, resource=nodes, " \
                   "subresource=metrics)"
    assert fetch(server, agent_url(server, "/stats/summary"), tokens["nobody"])[0] == 403
    assert fetch(server, url, "not-a-token")[0] == 401


def test_agent_metrics(cluster, busy):
    server, token = cluster["server"], cluster["tokens"]["scraper"]
    status, body = fetch(server, agent_url(server, "/metrics"), token)
    assert status == 200, body
    fams = families(body)
    assert sample(fams, "kubelet_running_pods", "kubelet_running_pods") >= 1
    assert sample(fams, "kubelet_running_containers", "kubelet_running_containers", container_state="running") >= 1
    assert sample(fams, "kubelet_pod_start_duration_seconds", "kubelet_pod_start_duration_seconds_count") >= 1
    assert sample(fams, "kubelet_runtime_operations_duration_seconds",
                  "kubelet_runtime_operations_duration_seconds_count", operation_type="create_container") >= 1
    assert sample(fams, "kubelet_runtime_operations", "kubelet_runtime_operations_total",
                  operation_type="list_containers") >= 1
    # probe results are on /metrics/probes, as the kubelet serves them
    assert "prober_probe" not in fams
    status, body = fetch(server, agent_url(server, "/metrics/probes"), token)
    assert status == 200, body
    assert sample(families(body), "prober_probe", "prober_probe_total", probe_type="Readiness", result="successful",
                  container="spin", pod="busy", namespace=NS) >= 1
    # the same through the API server's node proxy (the admin's credentials)
    raw = server.kubectl("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/metrics").stdout
    assert "kubelet_running_pods" in families(raw)


def test_agent_cadvisor_metrics(cluster, busy):
    server, token = cluster["server"], cluster["tokens"]["scraper"]
    status, body = fetch(server, agent_url(server, "/metrics/cadvisor"), token)
    assert status == 200, body
    fams = families(body)
    cpu = sample(fams, "container_cpu_usage_seconds", "container_cpu_usage_seconds_total", container="spin",
                 pod="busy", namespace=NS)
    assert cpu is not None and cpu > 0
    ws = sample(fams, "container_memory_working_set_bytes", "container_memory_working_set_bytes", container="spin",
                pod="busy", namespace=NS)
    assert ws is not None and 0 < ws < 64 * 2 ** 20


# --------------------------------------------------------------------------- resource metrics and stats


def test_stats_summary(cluster, busy):
    server, token = cluster["server"], cluster["tokens"]["scraper"]

    def summary() -> dict:
        status, body = fetch(server, agent_url(server, "/stats/summary"), token)
        assert status == 200, body
        return json.loads(body)

    s = summary()
    assert s["node"]["nodeName"] == NODE
    assert s["node"]["cpu"]["usageCoreNanoSeconds"] > 0 and s["node"]["memory"]["workingSetBytes"] > 0

    def spin() -> dict | None:
        for p in summary()["pods"]:
            if p["podRef"]["name"] == "busy" and p["podRef"]["namespace"] == NS:
                c = next(c for c in p["containers"] if c["name"] == "spin")
                return c if "usageNanoCores" in c["cpu"] else None
        return None

    # the rate needs the sampler's earlier reading: wait until there is one
    c = wait_until(spin, 60, 1.0, "usageNanoCores of the busy container")
    assert 350e6 <= c["cpu"]["usageNanoCores"] <= 600e6, c
    assert c["cpu"]["usageCoreNanoSeconds"] > 0 and 0 < c["memory"]["workingSetBytes"] < 64 * 2 ** 20


def test_metrics_resource(cluster, busy):
    server, token = cluster["server"], cluster["tokens"]["scraper"]
    status, body = fetch(server, agent_url(server, "/metrics/resource"), token)
    assert status == 200, body
    fams = families(body)
    node_cpu = [s for s in fams["node_cpu_usage_seconds"].samples if s.name == "node_cpu_usage_seconds_total"]
    assert node_cpu and node_cpu[0].value > 0 and node_cpu[0].timestamp is not None
    assert sample(fams, "node_memory_working_set_bytes", "node_memory_working_set_bytes") > 0
    labels = {"container": "spin", "pod": "busy", "namespace": NS}
    assert sample(fams, "container_cpu_usage_seconds", "container_cpu_usage_seconds_total", **labels) > 0
    assert sample(fams, "container_memory_working_set_bytes", "container_memory_working_set_bytes", **labels) > 0
    assert sample(fams, "container_start_time_seconds", "container_start_time_seconds", **labels) > 0
    assert sample(fams, "pod_cpu_usage_seconds", "pod_cpu_usage_seconds_total", pod="busy", namespace=NS) > 0
    assert sample(fams, "pod_memory_working_set_bytes", "pod_memory_working_set_bytes", pod="busy", namespace=NS) > 0
    assert sample(fams, "scrape_error", "scrape_error") == 0


def _millicores(cell: str) -> float:
    assert cell.endswith("m"), cell
    return float(cell[:-1])


def test_kubectl_top(cluster, busy):
    server = cluster["server"]

    def top_pod() -> list[str] | None:
        p = server.kubectl("top", "pod", "busy", "-n", NS, check=False)
        return p.stdout.splitlines() if p.returncode == 0 else None

    # metrics-server needs two scrapes of the container (15 s apart): wait with a deadline
    lines = wait_until(top_pod, 90, 1.0, "kubectl top pod busy")
    assert lines[0].split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    name, cpu, mem = lines[1].split()
    print("kubectl top pod busy:", lines)
    assert name == "busy" and 350 <= _millicores(cpu) <= 600, lines  # a busy loop under a 0.5 CPU limit
    assert mem.endswith("Mi")

    lines = server.kubectl("top", "pods", "-n", NS, "--containers").stdout.splitlines()
    assert lines[0].split() == ["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
    pod, container, cpu, mem = lines[1].split()
    assert (pod, container) == ("busy", "spin") and 350 <= _millicores(cpu) <= 600 and mem.endswith("Mi")

    # label selectors pick pods as upstream's metrics-server does
    assert "busy" in server.kubectl("top", "pods", "-n", NS, "-l", "app=busy").stdout
    p = server.kubectl("top", "pods", "-n", NS, "-l", "app=none", check=False)
    assert "busy" not in p.stdout

    lines = wait_until(lambda: (p := server.kubectl("top", "nodes", check=False)).returncode == 0
                       and p.stdout.splitlines(), 60, 1.0, "kubectl top nodes")
    assert lines[0].split() == ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    row = next(ln.split() for ln in lines[1:] if ln.split()[0] == NODE)
    assert row[1].endswith("m") and row[2].endswith("%") and row[3].endswith("Mi") and row[4].endswith("%")

    # the objects themselves: metrics-server's PodMetrics
    pm = json.loads(server.kubectl("get", "--raw", f"/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods/busy").stdout)
    assert pm["kind"] == "PodMetrics" and pm["metadata"]["labels"] == {"app": "busy"}
    assert pm["window"].endswith("s") and pm["containers"][0]["name"] == "spin"
    missing = server.kubectl("get", "--raw", f"/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods/nope", check=False)
    assert f'pods "{NS}/nope" not found' in missing.stderr  # metrics-server names it namespace/name


def test_metrics_api_rbac(cluster):
    server = cluster["server"]
    who = f"--as=system:serviceaccount:{NS}:nobody"
    assert server.kubectl("auth", "can-i", "list", "pods.metrics.k8s.io", "-n", NS, who,
                          check=False).stdout.strip() == "no"
    server.kubectl("create", "rolebinding", "nobody-view", "--clusterrole=view", f"--serviceaccount={NS}:nobody",
                   "-n", NS)
    # view aggregates system:aggregated-metrics-reader (as metrics-server's manifest makes it)
    wait_until(lambda: server.kubectl("auth", "can-i", "list", "pods.metrics.k8s.io", "-n", NS, who,
                                      check=False).stdout.strip() == "yes", 30, 0.2, "view can read pod metrics")
