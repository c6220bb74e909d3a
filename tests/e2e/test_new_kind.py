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
    reg.add(throwaway_kind.PRIORITYCLASS)  # the one registry line
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
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: high}
value: 1000
description: for the test
"""


def test_discovery_openapi_and_tables(srv):
    rows = srv.kubectl("api-resources", "--api-group=scheduling.k8s.io").stdout.splitlines()
    assert rows[1].split() == ["priorityclasses", "pc", "scheduling.k8s.io/v1", "false", "PriorityClass"]
    explain = srv.kubectl("explain", "priorityclass.value").stdout
    assert "FIELD: value <integer>" in explain and "actual priority that pods receive" in explain
    assert srv.kubectl("apply", "-f", "-", input=MANIFEST).stdout.strip() == "priorityclass.scheduling.k8s.io/high created"
    table = srv.kubectl("get", "pc").stdout.splitlines()
    assert table[0].split() == ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"]
    assert table[1].split()[:3] == ["high", "1000", "false"] and table[1].split()[-1] == "PreemptLowerPriority"
    bad = srv.kubectl("apply", "-f", "-", check=False, input=MANIFEST.replace("high", "huge").replace(
        "1000", "2000000000"))
    assert bad.returncode != 0 and ('The PriorityClass "huge" is invalid: value: Forbidden: maximum allowed value '
                                    'of a user defined priority is 1000000000') in bad.stderr


def test_crud_and_watch_with_the_official_client(srv):
    from kubernetes import client, config, watch

    cfg = client.Configuration()
    config.load_kube_config(config_file=str(srv.kubeconfig), client_configuration=cfg)
    api = client.SchedulingV1Api(client.ApiClient(cfg))
    seen: list[tuple[str, str]] = []
    rv = api.list_priority_class().metadata.resource_version

    def watch_events() -> None:
        w = watch.Watch()
        for ev in w.stream(api.list_priority_class, resource_version=rv, timeout_seconds=20):
            seen.append((ev["type"], ev["object"].metadata.name))
            if ev["type"] == "DELETED":
                w.stop()

    t = threading.Thread(target=watch_events, daemon=True)
    t.start()
    api.create_priority_class(client.V1PriorityClass(metadata=client.V1ObjectMeta(name="w1"), value=7))
    api.patch_priority_class("w1", {"description": "patched"})
    assert api.read_priority_class("w1").description == "patched"
    api.delete_priority_class("w1")
    t.join(25)
    assert seen == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]


def test_protobuf_body(srv):
    body = protobuf.encode({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                            "metadata": {"name": "proto"}, "value": 42})
    status, _, raw = raw_request(srv, "POST", "/apis/scheduling.k8s.io/v1/priorityclasses", body,
                                 {"Content-Type": "application/vnd.kubernetes.protobuf", "Accept": "application/json"})
    assert status == 201, raw
    assert json.loads(raw)["value"] == 42


def test_rbac(srv, tmp_path):
    kc = tmp_path / "alice.yaml"
    subprocess.run([sys.executable, "-m", "kubelite", "kubeconfig", "create", "--user", "alice", "--data-dir",
                    str(srv.data_dir), "--output", str(kc)], check=True, cwd=ROOT)
    env = {"KUBECONFIG": str(kc)}
    denied = srv.kubectl("get", "pc", env=env, check=False)
    assert ('priorityclasses.scheduling.k8s.io is forbidden: User "alice" cannot list resource "priorityclasses" in '
            'API group "scheduling.k8s.io" at the cluster scope') in denied.stderr
    srv.kubectl("create", "clusterrole", "pc-reader", "--verb=get,list", "--resource=priorityclasses")
    srv.kubectl("create", "clusterrolebinding", "alice-pc", "--clusterrole=pc-reader", "--user=alice")
    wait_until(lambda: srv.kubectl("get", "pc", env=env, check=False).returncode == 0, 10, 0.1, "RBAC applied")
    no = srv.kubectl("delete", "pc", "high", env=env, check=False)
    assert 'cannot delete resource "priorityclasses"' in no.stderr
