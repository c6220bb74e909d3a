"""Services end to end: ClusterIPs from --service-cidr, the kubernetes Service, upstream's 422
texts for bad input with nothing left allocated, `kubectl create service` / `kubectl expose`,
and EndpointSlices that follow a pod's readiness (real server, agent, containerd, kubectl and
the official Python client)."""

from __future__ import annotations

import ipaddress
import json
import time

import pytest

from tests.e2e.harness import wait_until
from tests.e2e.test_agent_support import KUARD, http_get, node_env, pod_manifest

pytestmark = pytest.mark.e2e
node = pytest.fixture(scope="module")(node_env)
SERVICE_CIDR = ipaddress.ip_network("10.43.0.0/16")


def _svc(name: str, **spec) -> str:
    body = {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}], **spec}
    return json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": body})


def _rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines()]


def test_kubernetes_service_and_its_endpoints(server):
    rows = _rows(server.kubectl("get", "svc", "kubernetes").stdout)
    assert rows[0] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert rows[1][:5] == ["kubernetes", "ClusterIP", "10.43.0.1", "<none>", "443/TCP"]
    sl = json.loads(server.kubectl("get", "endpointslice", "kubernetes", "-o", "json").stdout)
    assert sl["addressType"] == "IPv4" and sl["ports"] == [{"name": "https", "port": server.port, "protocol": "TCP"}]
    assert sl["metadata"]["labels"]["kubernetes.io/service-name"] == "kubernetes"
    ep = json.loads(server.kubectl("get", "endpoints", "kubernetes", "-o", "json").stdout)
    assert [a["ip"] for a in ep["subsets"][0]["addresses"]] == sl["endpoints"][0]["addresses"]
    assert ep["subsets"][0]["ports"] == [{"name": "https", "port": server.port, "protocol": "TCP"}]


def test_create_service_allocates_from_the_range_and_delete_releases(server):
    try:
        assert server.kubectl("create", "service", "clusterip", "web", "--tcp=80:8080").stdout == \
            "service/web created\n"
        svc = json.loads(server.kubectl("get", "svc", "web", "-o", "json").stdout)
        ip = svc["spec"]["clusterIP"]
        assert ipaddress.ip_address(ip) in SERVICE_CIDR and svc["spec"]["clusterIPs"] == [ip]
        assert svc["spec"]["ports"] == [{"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080}]
        assert svc["spec"]["sessionAffinity"] == "None" and svc["spec"]["internalTrafficPolicy"] == "Cluster"
        # the slice carries the Service's labels too: one `get` shows both tables
        def both():
            out = _rows(server.kubectl("get", "svc,endpointslices", "-l", "app=web").stdout)
            return out if len(out) == 5 else None
        rows = wait_until(both, 10, 0.1, "the service and its slice")
        assert rows[0] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
        assert rows[1][:5] == ["service/web", "ClusterIP", ip, "<none>", "80/TCP"]
        assert rows[2] == [] and rows[3] == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
        assert rows[4][0].startswith("endpointslice.discovery.k8s.io/web-") and rows[4][1:4] == [
            "IPv4", "<unset>", "<unset>"]
        # no pod is selected: one placeholder slice, labelled for its Service
        def slice_rows():
            out = _rows(server.kubectl("get", "endpointslices", "-l", "kubernetes.io/service-name=web").stdout)
            return out if len(out) == 2 else None
        head, row = wait_until(slice_rows, 10, 0.1, "the placeholder slice")
        assert head == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
        assert row[0].startswith("web-") and row[1:4] == ["IPv4", "<unset>", "<unset>"]
        server.kubectl("delete", "svc", "web")
        # the address is free again: a Service may ask for it
        assert server.kubectl("create", "-f", "-", input=_svc("web", clusterIP=ip)).returncode == 0
        assert json.loads(server.kubectl("get", "svc", "web", "-o", "json").stdout)["spec"]["clusterIP"] == ip
        # the controllers' objects go with the Service
        server.kubectl("delete", "svc", "web")
        wait_until(lambda: not server.kubectl("get", "endpointslices", "-l", "kubernetes.io/service-name=web",
                                              "-o", "name").stdout.strip(), 20, 0.1, "slices gone")
    finally:
        server.kubectl("delete", "svc", "web", "--ignore-not-found")


def test_headless_and_external_name(server):
    try:
        server.kubectl("create", "service", "clusterip", "hl", "--clusterip=None")
        server.kubectl("create", "service", "externalname", "ext", "--external-name", "example.com")
        rows = {r[0]: r for r in _rows(server.kubectl("get", "svc", "hl", "ext").stdout)[1:]}
        assert rows["hl"][1:5] == ["ClusterIP", "None", "<none>", "<none>"]
        assert rows["ext"][1:5] == ["ExternalName", "<none>", "example.com", "<none>"]
        hl = json.loads(server.kubectl("get", "svc", "hl", "-o", "json").stdout)["spec"]
        assert hl["clusterIPs"] == ["None"] and hl["ipFamilies"] == ["IPv4"] and hl["ipFamilyPolicy"] == "SingleStack"
        labels = wait_until(lambda: json.loads(server.kubectl(
            "get", "endpointslices", "-l", "kubernetes.io/service-name=hl", "-o", "json").stdout)["items"], 10, 0.1,
            "the headless slice")[0]["metadata"]["labels"]
        assert labels["service.kubernetes.io/headless"] == ""
        ext = json.loads(server.kubectl("get", "svc", "ext", "-o", "json").stdout)["spec"]
        assert "clusterIP" not in ext and "ipFamilies" not in ext
    finally:
        server.kubectl("delete", "svc", "hl", "ext", "--ignore-not-found")


def test_bad_input_answers_upstream_texts_and_leaks_nothing(server):
    def refused(body: str) -> str:
        p = server.kubectl("create", "-f", "-", input=body, check=False)
        assert p.returncode != 0, p.stdout
        return p.stderr.strip()

    try:
        err = refused(_svc("dup", clusterIP="10.43.7.7", ports=[{"port": 80}, {"port": 80}]))
        assert 'The Service "dup" is invalid: ' in err
        assert "spec.ports[0].name: Required value" in err and "spec.ports[1].name: Required value" in err
        assert ('spec.ports[1]: Duplicate value: core.ServicePort{Name:"", Protocol:"TCP", AppProtocol:(*string)(nil), '
                'Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}') in err
        err = refused(_svc("named", ports=[{"name": "http", "port": 80}, {"name": "http", "port": 81}]))
        assert err == 'The Service "named" is invalid: spec.ports[1].name: Duplicate value: "http"'
        assert refused(_svc("out", clusterIP="10.99.0.1")) == (
            'The Service "out" is invalid: spec.clusterIPs: Invalid value: []string{"10.99.0.1"}: failed to '
            'allocate IP 10.99.0.1: the provided IP (10.99.0.1) is not in the valid range. The range of valid IPs '
            'is 10.43.0.0/16')
        assert refused(_svc("taken", clusterIP="10.43.0.1")) == (
            'The Service "taken" is invalid: spec.clusterIPs: Invalid value: []string{"10.43.0.1"}: failed to '
            'allocate IP 10.43.0.1: provided IP is already allocated')
        err = refused(_svc("sel", selector={"bad key!": "x"}))
        assert err.startswith('The Service "sel" is invalid: spec.selector: Invalid value: "bad key!": name part '
                              "must consist of alphanumeric characters")
        assert refused(_svc("np", type="NodePort", ports=[{"port": 80, "nodePort": 80}])) == (
            'The Service "np" is invalid: spec.ports[0].nodePort: Invalid value: 80: provided port is not in the '
            'valid range. The range of valid ports is 30000-32767')
        # the refused creates held nothing: their address and port are free
        server.kubectl("create", "-f", "-", input=_svc("dup", clusterIP="10.43.7.7", type="NodePort",
                                                        ports=[{"port": 80, "nodePort": 30080}]))
        assert refused(_svc("np2", type="NodePort", ports=[{"port": 80, "nodePort": 30080}])) == (
            'The Service "np2" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already '
            'allocated')
        p = server.kubectl("patch", "svc", "dup", "-p", '{"spec":{"clusterIP":"10.43.8.8"}}', check=False)
        assert p.returncode != 0 and p.stderr.strip() == (
            'The Service "dup" is invalid: spec.clusterIPs[0]: Invalid value: []string{"10.43.8.8"}: may not change '
            'once set')
        rows = _rows(server.kubectl("get", "svc", "dup").stdout)
        assert rows[1][:5] == ["dup", "NodePort", "10.43.7.7", "<none>", "80:30080/TCP"]
    finally:
        server.kubectl("delete", "svc", "dup", "np", "np2", "named", "--ignore-not-found")


def _api(server):
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(config_file=str(server.kubeconfig), client_configuration=cfg)
    return client.ApiClient(cfg)


def test_expose_pod_and_slice_follows_readiness(node):
    from kubernetes import client

    server, agent = node
    probe = {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1, "failureThreshold": 1}
    manifest = pod_manifest("kuard", agent.node_name, [
        {"name": "kuard", "image": KUARD, "ports": [{"containerPort": 8080, "name": "http"}],
         "readinessProbe": probe}])
    manifest["metadata"]["labels"] = {"app": "kuard"}
    api = _api(server)
    core, disc = client.CoreV1Api(api), client.DiscoveryV1Api(api)
    try:
        server.kubectl("create", "-f", "-", input=json.dumps(manifest))
        assert server.kubectl("expose", "pod", "kuard", "--port", "80", "--target-port", "8080").stdout == \
            "service/kuard exposed\n"
        svc = core.read_namespaced_service("kuard", "default")
        assert ipaddress.ip_address(svc.spec.cluster_ip) in SERVICE_CIDR and svc.spec.selector == {"app": "kuard"}

        def endpoint():
            items = disc.list_namespaced_endpoint_slice("default", label_selector="kubernetes.io/service-name=kuard").items
            eps = [e for s in items for e in s.endpoints or []]
            return (items, eps[0]) if len(items) == 1 and len(eps) == 1 else None

        def pod_ready() -> bool:
            pod = core.read_namespaced_pod("kuard", "default")
            return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])

        items, ep = wait_until(lambda: (r := endpoint()) and r[1].conditions.ready and r, 60, 0.1, "a ready endpoint")
        pod = core.read_namespaced_pod("kuard", "default")
        sl = items[0]
        assert ep.addresses == [pod.status.pod_ip] and ep.node_name == agent.node_name and ep.zone is None
        assert ep.target_ref.kind == "Pod" and ep.target_ref.name == "kuard" and ep.target_ref.uid == pod.metadata.uid
        assert ep.conditions.serving is True and ep.conditions.terminating is False
        assert [(p.name, p.port, p.protocol) for p in sl.ports] == [("", 8080, "TCP")]
        assert sl.metadata.labels["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
        assert sl.metadata.owner_references[0].kind == "Service" and sl.metadata.owner_references[0].controller
        desc = server.kubectl("describe", "svc", "kuard").stdout
        assert f"Endpoints:                {pod.status.pod_ip}:8080" in desc
        rows = _rows(server.kubectl("get", "endpointslices", "-l", "kubernetes.io/service-name=kuard").stdout)
        assert rows[1][1:4] == ["IPv4", "8080", pod.status.pod_ip]

        # the pod fails readiness: its endpoint turns not-ready within a second or so of the pod
        http_get(f"http://{pod.status.pod_ip}:8080/ready/api/fail?n=4")
        wait_until(lambda: not pod_ready(), 15, 0.05, "pod unready")
        seen = time.monotonic()
        wait_until(lambda: (r := endpoint()) and r[1].conditions.ready is False and r, 5, 0.05, "endpoint unready")
        assert time.monotonic() - seen < 2.0
        assert endpoint()[1].conditions.serving is False
        legacy = core.read_namespaced_endpoints("kuard", "default")
        assert [a.ip for a in legacy.subsets[0].not_ready_addresses] == [pod.status.pod_ip]
        assert legacy.subsets[0].addresses is None
        # and ready again
        wait_until(pod_ready, 20, 0.05, "pod ready again")
        seen = time.monotonic()
        wait_until(lambda: (r := endpoint()) and r[1].conditions.ready and r, 5, 0.05, "endpoint ready again")
        assert time.monotonic() - seen < 2.0
    finally:
        server.kubectl("delete", "svc", "kuard", "--ignore-not-found")
        server.kubectl("delete", "pod", "kuard", "--ignore-not-found", "--grace-period=1", "--wait=true",
                       "--timeout=60s", check=False)
        api.close()


def test_service_environment_variables_follow_enable_service_links(node):
    """The kubelet's service links: a pod sees {SVC}_SERVICE_HOST/_PORT and Docker link variables
    for the Services of its namespace that existed when its container started, and the
    kubernetes Service's always; enableServiceLinks: false leaves only the latter."""
    server, agent = node
    pods = {"links": None, "nolinks": False}
    try:
        server.kubectl("create", "service", "clusterip", "env-web", "--tcp=8081:8080")
        ip = json.loads(server.kubectl("get", "svc", "env-web", "-o", "json").stdout)["spec"]["clusterIP"]
        for name, links in pods.items():
            extra = {} if links is None else {"enableServiceLinks": links}
            manifest = pod_manifest(name, agent.node_name, [{"name": "kuard", "image": KUARD}], **extra)
            server.kubectl("create", "-f", "-", input=json.dumps(manifest))
        envs = {}
        for name in pods:
            server.kubectl("wait", "--for=condition=Ready", f"pod/{name}", "--timeout=90s")
            pip = json.loads(server.kubectl("get", "pod", name, "-o", "json").stdout)["status"]["podIP"]
            code, body = wait_until(lambda pip=pip: http_get(f"http://{pip}:8080/env/api"), 20, 0.2, "kuard's env api")
            envs[name] = json.loads(body)["env"]
        env = envs["links"]
        assert env["ENV_WEB_SERVICE_HOST"] == ip and env["ENV_WEB_SERVICE_PORT"] == "8081"
        assert env["ENV_WEB_SERVICE_PORT_8081_8080"] == "8081"
        assert env["ENV_WEB_PORT"] == f"tcp://{ip}:8081"
        assert env["ENV_WEB_PORT_8081_TCP_ADDR"] == ip and env["ENV_WEB_PORT_8081_TCP_PROTO"] == "tcp"
        assert env["KUBERNETES_SERVICE_HOST"] == "10.43.0.1" and env["KUBERNETES_PORT"] == "tcp://10.43.0.1:443"
        assert "ENV_WEB_SERVICE_HOST" not in envs["nolinks"]
        assert envs["nolinks"]["KUBERNETES_SERVICE_HOST"] == "10.43.0.1"
    finally:
        server.kubectl("delete", "svc", "env-web", "--ignore-not-found")
        server.kubectl("delete", "pod", *pods, "--ignore-not-found", "--grace-period=1", "--wait=true",
                       "--timeout=60s", check=False)
