"""`kubelite advise`: the Pods chapter's design review over the chapter's manifests, the
WordPress + MySQL anti-pattern, the kuard + git-sync pod, workload templates, and kubectl's
errors for unreadable input. The JSON report of examples/ is pinned by a golden file
(regenerate with ``UPDATE_GOLDEN=1``)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubelite.advise import ManifestError, advise, load
from kubelite.advise.colocation import analyse, database_of
from kubelite.advise.manifests import parse
from kubelite.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
GOLDEN = Path(__file__).parent / "golden" / "advise-examples.json"


def _review(text: str, source: str = "t.yaml"):
    return advise(parse(text, source))


def _codes(report) -> list[tuple[str, str]]:
    return [(f.code, f.container) for f in report.findings]


def _pod(*containers: dict, **spec) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                       "spec": {"containers": list(containers), **spec}})


GOOD = {"resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
        "livenessProbe": {"tcpSocket": {"port": 1}}, "readinessProbe": {"tcpSocket": {"port": 1}}}


def _c(name: str, image: str = "kubelite.local/busybox:1.0", **extra) -> dict:
    return {"name": name, "image": image, **GOOD, **extra}


# --------------------------------------------------------------------------- the chapter's manifests
def _example(name: str):
    return advise(load([str(EXAMPLES / name)]))


def test_chapter_basic_pod_misses_requests_limits_and_probes():
    r = _example("kuard-pod.yaml")
    assert _codes(r) == [("KL010", "kuard"), ("KL011", "kuard"), ("KL020", "kuard"), ("KL021", "kuard")]
    by = {f.code: f for f in r.findings}
    assert by["KL010"].field == "spec.containers[0].resources.requests"
    assert "scheduler" in by["KL010"].why and "minimum a container is guaranteed" in by["KL010"].why
    assert "memory leak" in by["KL011"].why and "hard caps" in by["KL011"].why
    assert "process check" in by["KL020"].why and "/healthy" in by["KL020"].suggestion
    assert "not restarted" in by["KL021"].why and "load balancers" in by["KL021"].why


def test_chapter_steps_fix_what_they_add():
    assert "KL020" not in {c for c, _ in _codes(_example("kuard-pod-health.yaml"))}
    assert "KL010" not in {c for c, _ in _codes(_example("kuard-pod-resreq.yaml"))}
    reslim = {c for c, _ in _codes(_example("kuard-pod-reslim.yaml"))}
    assert not {"KL010", "KL011"} & reslim
    vol = _example("kuard-pod-vol.yaml")
    hp = [f for f in vol.findings if f.code == "KL040"]
    assert len(hp) == 1 and hp[0].container == "kuard" and "/var/lib/kuard" in hp[0].message
    assert "not rescheduled" in hp[0].why
    assert _example("kuard-pod-full.yaml").findings == []


def test_wordpress_mysql_is_the_anti_pattern():
    r = _example("wordpress-mysql-pod.yaml")
    (reviewed,) = r.reviewed
    assert reviewed.colocation.verdict == "separate-pods"
    assert reviewed.colocation.groups == (("wordpress",), ("mysql",))
    assert [(d.container, d.product) for d in reviewed.colocation.databases] == [("mysql", "MySQL")]
    (f,) = r.findings
    assert (f.code, f.severity, f.container, f.field) == ("KL001", "warning", "mysql", "spec.containers[1]")
    assert "127.0.0.1:3306" in f.message and "WORDPRESS_DB_HOST" in f.message
    assert "Will these containers work correctly if they land on different machines?" in f.why
    assert "anti-pattern" in f.why and "scal" in f.why and "network connection" in f.why
    assert "Service" in f.suggestion and "mysql:3306" in f.suggestion
    assert "separate Pods" in r.to_text()


def test_kuard_git_sync_is_approved_as_one_pod():
    r = _example("kuard-git-sync-pod.yaml")
    (reviewed,) = r.reviewed
    c = reviewed.colocation
    assert c.verdict == "one-pod" and c.groups == (("kuard", "git-sync"),)
    assert [(t.kind, t.containers, t.binding) for t in c.ties] == [("volume", ("kuard", "git-sync"), True)]
    assert r.findings == []
    text = r.to_text()
    assert "one Pod is right" in text and 'emptyDir volume "content"' in text


def test_golden_json_of_the_examples():
    p = subprocess.run([sys.executable, "-m", "kubelite", "advise", "-o", "json", "-f", "examples"], cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(p.stdout)
    assert p.stdout == GOLDEN.read_text()
    doc = json.loads(p.stdout)
    assert doc["apiVersion"] == "advise.kubelite.io/v1" and doc["kind"] == "AdviceReport"
    keys = {"code", "severity", "source", "index", "object", "namespace", "container", "field", "message", "why",
            "suggestion"}
    assert all(set(f) == keys for f in doc["findings"])
    assert doc["summary"]["findings"] == len(doc["findings"])
    # the same input in another order gives the same findings
    q = subprocess.run([sys.executable, "-m", "kubelite", "advise", "-o", "json",
                        *[a for f in sorted(os.listdir(EXAMPLES), reverse=True) if f.endswith(".yaml")
                          for a in ("-f", f"examples/{f}")]],
                       cwd=ROOT, capture_output=True, text=True)
    assert json.loads(q.stdout)["findings"] == doc["findings"]


# --------------------------------------------------------------------------- colocation
def test_localhost_to_another_containers_port_ties_them():
    spec = {"containers": [_c("app", ports=[{"containerPort": 8080}], env=[
        {"name": "UPSTREAM", "value": "http://localhost:9901/ready"}]), _c("proxy", ports=[{"containerPort": 9901}])]}
    c = analyse(spec)
    assert c.verdict == "one-pod"
    assert [(t.kind, t.containers) for t in c.ties] == [("localhost", ("app", "proxy"))]


def test_args_and_exec_probes_are_read_for_localhost():
    spec = {"containers": [
        _c("a", args=["--backend=127.0.0.1:7000"]),
        _c("b", ports=[{"containerPort": 7000}], livenessProbe={"exec": {"command": ["wget", "-q", "localhost:7000"]}}),
    ]}
    assert analyse(spec).verdict == "one-pod"
    # a container talking to its own port is not a tie
    own = {"containers": [_c("a", ports=[{"containerPort": 7000}], args=["localhost:7000"]), _c("b")]}
    assert analyse(own).verdict == "separate-pods"


def test_probe_on_another_containers_port_ties_them():
    spec = {"containers": [_c("web", ports=[{"containerPort": 80}]),
                           {**_c("watchdog"), "livenessProbe": {"httpGet": {"port": 80, "path": "/"}}}]}
    assert [t.kind for t in analyse(spec).ties] == ["probe"]


def test_share_process_namespace_and_shm_are_ties():
    assert analyse({"shareProcessNamespace": True, "containers": [_c("a"), _c("b")]}).verdict == "one-pod"
    shm = {"volumes": [{"name": "shm", "emptyDir": {"medium": "Memory"}}],
           "containers": [_c("a", volumeMounts=[{"name": "shm", "mountPath": "/dev/shm"}]),
                          _c("b", volumeMounts=[{"name": "shm", "mountPath": "/dev/shm"}])]}
    c = analyse(shm)
    assert c.verdict == "one-pod" and c.ties[0].kind == "ipc"


def test_ipc_named_in_two_containers_ties_them():
    spec = {"containers": [_c("producer", command=["sh", "-c", "ipcmk -Q && serve"]),
                           _c("consumer", args=["--queue=/dev/mqueue/jobs"]), _c("other")]}
    c = analyse(spec)
    assert c.groups == (("producer", "consumer"), ("other",))
    assert [t.kind for t in c.ties] == ["ipc"]


def test_config_volumes_do_not_tie():
    spec = {"volumes": [{"name": "cfg", "configMap": {"name": "x"}}, {"name": "pw", "secret": {"secretName": "y"}}],
            "containers": [_c("a", volumeMounts=[{"name": "cfg", "mountPath": "/c"}, {"name": "pw", "mountPath": "/p"}]),
                           _c("b", volumeMounts=[{"name": "cfg", "mountPath": "/c"}, {"name": "pw", "mountPath": "/p"}])]}
    c = analyse(spec)
    assert c.verdict == "separate-pods" and all(not t.binding for t in c.ties)
    r = _review(json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}))
    assert _codes(r) == [("KL002", "")]
    assert r.findings[0].severity == "info"


def test_database_with_a_shared_volume_is_one_pod():
    spec = {"volumes": [{"name": "sock", "emptyDir": {}}],
            "containers": [_c("app", volumeMounts=[{"name": "sock", "mountPath": "/run/mysqld"}]),
                           _c("db", "mariadb:11", volumeMounts=[{"name": "sock", "mountPath": "/run/mysqld"}])]}
    assert analyse(spec).verdict == "one-pod"


def test_database_detection():
    assert database_of({"name": "d", "image": "docker.io/library/postgres:16@sha256:" + "a" * 64}).product == \
        "PostgreSQL"
    assert database_of({"name": "d", "image": "mysql/mysql-server:8.0"}).port == 3306
    assert database_of({"name": "d", "image": "bitnami/redis"}).product == "Redis"
    assert database_of({"name": "d", "image": "mongo-express:1"}) is None
    assert database_of({"name": "d", "image": "prom/mysqld-exporter"}) is None
    assert database_of({"name": "d", "image": "my/thing:1", "ports": [{"containerPort": 27017}]}).product == "MongoDB"


def test_metrics_exporter_beside_its_database_is_an_adapter():
    spec = {"containers": [_c("db", "postgres:16"), _c("metrics", "quay.io/prometheuscommunity/postgres-exporter:v0.15",
                                                       env=[{"name": "DATA_SOURCE_URI", "value": "localhost:5432/x"}])]}
    c = analyse(spec)
    assert c.verdict == "one-pod" and c.ties[0].kind == "adapter"


def test_database_beside_app_without_localhost_is_flagged_too():
    r = _review(_pod(_c("web", "nginx:1.27", ports=[{"containerPort": 80}]), _c("cache", "redis:7")))
    assert _codes(r) == [("KL001", "cache")]
    assert "nothing ties them" in r.findings[0].message


def test_sidecar_init_containers_count():
    spec = {"volumes": [{"name": "v", "emptyDir": {}}],
            "initContainers": [{**_c("sync"), "restartPolicy": "Always",
                                "volumeMounts": [{"name": "v", "mountPath": "/v"}]},
                               {**_c("setup")}],
            "containers": [_c("web", volumeMounts=[{"name": "v", "mountPath": "/v"}])]}
    c = analyse(spec)
    assert c.containers == ("web", "sync") and c.verdict == "one-pod"


# --------------------------------------------------------------------------- other checks
def test_image_tags():
    r = _review(_pod(_c("a", "busybox"), _c("b", "busybox:latest"), _c("c", "busybox@sha256:" + "0" * 64),
                     _c("d", "localhost:5000/busybox"), _c("e", "localhost:5000/busybox:1.36"),
                     shareProcessNamespace=True))
    got = {f.container: f.message for f in r.findings if f.code == "KL030"}
    assert set(got) == {"a", "b", "d"}
    assert 'no tag (so ":latest")' in got["a"] and 'tag ":latest"' in got["b"]


def test_limits_alone_imply_requests_and_pod_level_resources_count():
    only_limits = {"name": "a", "image": "x:1", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                   "livenessProbe": {"tcpSocket": {"port": 1}}}
    assert _codes(_review(_pod(only_limits))) == []
    pod_level = {"name": "a", "image": "x:1", "livenessProbe": {"tcpSocket": {"port": 1}}}
    r = _review(_pod(pod_level, resources={"requests": {"cpu": "1", "memory": "1Gi"},
                                           "limits": {"cpu": "1", "memory": "1Gi"}}))
    assert _codes(r) == []
    partial = {"name": "a", "image": "x:1", "livenessProbe": {"tcpSocket": {"port": 1}},
               "resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "1"}}}
    r = _review(_pod(partial))
    assert [(f.code, f.message) for f in r.findings] == [
        ("KL010", 'container "a" sets no memory request'), ("KL011", 'container "a" has no memory limit')]


def test_restart_policy_never_on_a_server():
    r = _review(_pod(_c("web", ports=[{"containerPort": 80}]), restartPolicy="Never"))
    assert _codes(r) == [("KL050", "web")]
    # Never for work that finishes is fine, and probes are not asked of it
    job = {"name": "once", "image": "x:1", "resources": GOOD["resources"]}
    assert _codes(_review(_pod(job, restartPolicy="Never"))) == []


def test_workload_templates_are_reviewed():
    text = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  template:
    metadata:
      annotations: {advise.kubelite.io/ignore: "KL021"}
    spec:
      containers: [{name: web, image: "nginx", ports: [{containerPort: 80}]}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: job, image: "busybox:1.36"}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: db, image: "postgres:16"}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
"""
    r = _review(text, "w.yaml")
    assert [(x.subject.object_ref, x.subject.path) for x in r.reviewed] == [
        ("Deployment/web", "spec.template.spec"), ("CronJob/nightly", "spec.jobTemplate.spec.template.spec"),
        ("StatefulSet/db", "spec.template.spec")]
    assert [d.obj["kind"] for d in r.skipped] == ["Service"]
    got = {(f.object, f.code) for f in r.findings}
    assert ("Deployment/web", "KL021") not in got  # ignored by the template's annotation
    assert {("Deployment/web", "KL020"), ("Deployment/web", "KL030")} <= got
    cron = [f for f in r.findings if f.object == "CronJob/nightly"]
    assert {f.code for f in cron} == {"KL010", "KL011", "KL051"}  # no probes asked of a Job
    (bad,) = [f for f in cron if f.code == "KL051"]
    assert bad.message == ('CronJob: spec.jobTemplate.spec.template.spec.restartPolicy: Unsupported value: '
                           '"Always": supported values: "OnFailure", "Never"')
    (sts,) = [f for f in r.findings if f.object == "StatefulSet/db" and f.code == "KL051"]
    assert sts.severity == "error" and '"Never": supported values: "Always"' in sts.message
    assert r.reviewed[0].findings[0].namespace == "shop"


def test_lists_json_streams_and_no_containers():
    lst = {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}, "spec": {"containers": [_c("a", "x:1")]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "b"}, "spec": {}}]}
    r = _review(json.dumps(lst) + "\n" + _pod(_c("c", "x:1")), "l.json")
    assert [(x.subject.object_ref, x.subject.index) for x in r.reviewed] == [("Pod/a", 0), ("Pod/b", 1), ("Pod/p", 2)]
    assert _codes(r) == [("KL000", "")]


# --------------------------------------------------------------------------- unreadable input, CLI
@pytest.mark.parametrize("name, content, message", [
    ("bad.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  b: c: d\n",
     "error parsing {p}: error converting YAML to JSON: yaml: line 5: mapping values are not allowed in this context"),
    ("nokind.yaml", "apiVersion: v1\nmetadata:\n  name: a\n",
     "unable to decode \"{p}\": Object 'Kind' is missing in '{{\"apiVersion\":\"v1\",\"metadata\":{{\"name\":\"a\"}}}}'"),
    ("list.yaml", "- a\n- b\n",
     'unable to decode "{p}": json: cannot unmarshal array into Go value of type unstructured.detector'),
    ("bad.json", '{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"', "error parsing {p}: unexpected EOF"),
    ("empty.yaml", "---\n", "no objects passed to advise"),
])
def test_unreadable_input_has_kubectls_message(tmp_path, name, content, message):
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(ManifestError) as exc:
        load([str(p)])
    assert str(exc.value) == message.format(p=p)


def test_paths_and_directories(tmp_path):
    with pytest.raises(ManifestError, match=r'^the path "nope.yaml" does not exist$'):
        load(["nope.yaml"])
    (tmp_path / "README.md").write_text("x")
    with pytest.raises(ManifestError, match=r"^error reading \[.*\]: recognized file extensions are "
                                            r"\[\.json \.yaml \.yml\]$"):
        load([str(tmp_path)])
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "p.yml").write_text(_pod(_c("a", "x:1")))
    (tmp_path / "q.json").write_text(_pod(_c("b", "x:1")))
    assert [d.source for d in load([str(tmp_path)])] == [str(tmp_path / "q.json")]
    assert [d.source for d in load([str(tmp_path)], recursive=True)] == [str(tmp_path / "q.json"),
                                                                        str(sub / "p.yml")]
    assert [d.source for d in load(["-"], stdin=io.StringIO(_pod(_c("a", "x:1"))))] == ["STDIN"]


def test_cli_exit_codes(tmp_path, capsys):
    assert main(["advise", "-f", str(EXAMPLES / "kuard-pod-full.yaml"), "--strict"]) == 0
    assert main(["advise", "-f", str(EXAMPLES / "kuard-pod.yaml")]) == 0
    assert main(["advise", "-f", str(EXAMPLES / "kuard-pod.yaml"), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "warning KL020" in out and "4 findings (0 errors, 4 warnings, 0 info)" in out
    assert main(["advise", "-f", str(tmp_path / "missing.yaml")]) == 2
    assert capsys.readouterr().err == f'error: the path "{tmp_path / "missing.yaml"}" does not exist\n'
    assert main(["advise", "-o", "json", "-f", str(EXAMPLES / "kuard-git-sync-pod.yaml")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["objects"][0]["colocation"]["verdict"] == "one-pod" and doc["findings"] == []
