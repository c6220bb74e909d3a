"""Adding a kind is one module and one registry line: a server whose registry has the
throw-away kind of ``throwaway_kind.py`` serves it in discovery, OpenAPI, CRUD, watch, Tables,
protobuf request bodies and RBAC, driven by the real kubectl and the official client."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from kubelite.api import protobuf
from tests.e2e.harness import ROOT, ServerProcess, raw_request, wait_until

_LAUNCH = """
import sys
from kubelite.cli import main as cli
from kubelite.kinds import registry
from tests.e2e import throwaway_kind

default = registry.default_registry
def with_throwaway():
    reg = default()
    reg.add(throwaway_kind.INGRESSCLASS)  # the one registry line
    return reg
registry.default_registry = with_throwaway
import kubelite.launcher.server as launcher
launcher.default_registry = with_throwaway
sys.exit(cli.main(sys.argv[1:]))
"""


class ThrowawayServer(ServerProcess):
    def start(self, timeout: float = 30.0) -> ThrowawayServer:
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCH, "server", "--data-dir", str(self.data_dir), "--bind-address",
             "127.0.0.1", "--port", str(self.port), *self.extra], stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.wait_ready(timeout)
        return self


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = ThrowawayServer(tmp_path_factory.mktemp("newkind") / "data").start()
    yield s
    s.stop()


MANIFEST = """
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: edge}
spec: {controller: example.com/edge, parameters: {apiGroup: example.com, kind: Params, name: p1}}
"""


def test_discovery_openapi_and_tables(srv):
    rows = srv.kubectl("api-resources", "--api-group=networking.k8s.io").stdout.splitlines()
    assert rows[1].split() == ["ingressclasses", "networking.k8s.io/v1", "false", "IngressClass"]
    explain = srv.kubectl("explain", "ingressclass.spec.controller").stdout
    assert "FIELD: controller <string>" in explain and "controller refers to the name of the controller" in explain
    assert srv.kubectl("apply", "-f", "-", input=MANIFEST).stdout.strip() == "ingressclass.networking.k8s.io/edge created"
    table = srv.kubectl("get", "ingressclasses").stdout.splitlines()
    assert table[0].split() == ["NAME", "CONTROLLER", "PARAMETERS", "AGE"]
    assert table[1].split()[:3] == ["edge", "example.com/edge", "Params/p1"]
    bad = srv.kubectl("apply", "-f", "-", check=False, input=MANIFEST.replace("edge", "bad").replace(
        "example.com/bad", "nodomain"))
    assert bad.returncode != 0 and ('The IngressClass "bad" is invalid: spec.controller: Invalid value: "nodomain": '
                                    'must be a domain-prefixed path') in bad.stderr


def test_crud_and_watch_with_the_official_client(srv):
    from kubernetes import client, config, watch

    cfg = client.Configuration()
    config.load_kube_config(config_file=str(srv.kubeconfig), client_configuration=cfg)
    api = client.NetworkingV1Api(client.ApiClient(cfg))
    seen: list[tuple[str, str]] = []
    rv = api.list_ingress_class().metadata.resource_version

    def watch_events() -> None:
        w = watch.Watch()
        for ev in w.stream(api.list_ingress_class, resource_version=rv, timeout_seconds=20):
            seen.append((ev["type"], ev["object"].metadata.name))
            if ev["type"] == "DELETED":
                w.stop()

    t = threading.Thread(target=watch_events, daemon=True)
    t.start()
    api.create_ingress_class(client.V1IngressClass(metadata=client.V1ObjectMeta(name="w1"),
                                                   spec=client.V1IngressClassSpec(controller="example.com/w")))
    api.patch_ingress_class("w1", {"metadata": {"labels": {"patched": "yes"}}})
    assert api.read_ingress_class("w1").metadata.labels == {"patched": "yes"}
    api.delete_ingress_class("w1")
    t.join(25)
    assert seen == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]


def test_protobuf_body(srv):
    body = protobuf.encode({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                            "metadata": {"name": "proto"}, "spec": {"controller": "example.com/proto"}})
    status, _, raw = raw_request(srv, "POST", "/apis/networking.k8s.io/v1/ingressclasses", body,
                                 {"Content-Type": "application/vnd.kubernetes.protobuf", "Accept": "application/json"})
    assert status == 201, raw
    assert json.loads(raw)["spec"]["controller"] == "example.com/proto"


def test_rbac(srv, tmp_path):
    kc = tmp_path / "alice.yaml"
    subprocess.run([sys.executable, "-m", "kubelite", "kubeconfig", "create", "--user", "alice", "--data-dir",
                    str(srv.data_dir), "--output", str(kc)], check=True, cwd=ROOT)
    env = {"KUBECONFIG": str(kc)}
    denied = srv.kubectl("get", "ingressclasses", env=env, check=False)
    assert ('ingressclasses.networking.k8s.io is forbidden: User "alice" cannot list resource "ingressclasses" in '
            'API group "networking.k8s.io" at the cluster scope') in denied.stderr
    srv.kubectl("create", "clusterrole", "ic-reader", "--verb=get,list", "--resource=ingressclasses")
    srv.kubectl("create", "clusterrolebinding", "alice-ic", "--clusterrole=ic-reader", "--user=alice")
    wait_until(lambda: srv.kubectl("get", "ingressclasses", env=env, check=False).returncode == 0, 10, 0.1,
               "RBAC applied")
    no = srv.kubectl("delete", "ingressclass", "edge", env=env, check=False)
    assert 'cannot delete resource "ingressclasses"' in no.stderr
