"""The user's session with the real kubectl 1.37, against a real kubelite server."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from tests.e2e.harness import KUBECTL, ROOT, wait_until

EXAMPLES = ROOT / "examples"
CHAPTER = ["kuard-pod.yaml", "kuard-pod-health.yaml", "kuard-pod-resreq.yaml", "kuard-pod-reslim.yaml",
           "kuard-pod-vol.yaml", "kuard-pod-full.yaml"]


@pytest.fixture
def ns(server):
    name = "t-" + uuid.uuid4().hex[:8]
    server.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Namespace",
                                                         "metadata": {"name": name}}))
    yield name
    server.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_four_namespaces(server):
    out = server.kubectl("get", "ns").stdout
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "AGE"]
    names = {ln.split()[0]: ln.split()[1] for ln in lines[1:]}
    for n in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert names.get(n) == "Active"


@pytest.mark.parametrize("manifest", CHAPTER)
def test_apply_chapter_manifest(server, ns, manifest):
    out = server.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / manifest)).stdout
    assert out.strip() == "pod/kuard created"
    lines = server.kubectl("get", "pods", "-n", ns).stdout.splitlines()
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    cells = lines[1].split()
    assert cells[:4] == ["kuard", "0/1", "Pending", "0"]
    pod = json.loads(server.kubectl("get", "pod", "kuard", "-n", ns, "-o", "json").stdout)
    c = pod["spec"]["containers"][0]
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert pod["spec"]["restartPolicy"] == "Always"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 30
    assert pod["status"]["phase"] == "Pending"
    expected_qos = {"kuard-pod-reslim.yaml": "Burstable", "kuard-pod-resreq.yaml": "Burstable",
                    "kuard-pod-full.yaml": "Burstable"}.get(manifest, "BestEffort")
    assert pod["status"]["qosClass"] == expected_qos
    out = server.kubectl("delete", "-n", ns, "-f", str(EXAMPLES / manifest)).stdout
    assert out.strip() == f'pod "kuard" deleted from {ns} namespace'


def test_output_formats(server, ns):
    server.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / "kuard-pod.yaml"))
    wide = server.kubectl("get", "pods", "-n", ns, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE",
                               "READINESS", "GATES"]
    assert wide[1].split()[-4:] == ["<none>", "<none>", "<none>", "<none>"]
    y = yaml.safe_load(server.kubectl("get", "pod", "kuard", "-n", ns, "-o", "yaml").stdout)
    assert y["kind"] == "Pod" and y["metadata"]["namespace"] == ns
    j = json.loads(server.kubectl("get", "pods", "-n", ns, "-o", "json").stdout)
    assert j["kind"] == "List" and j["items"][0]["metadata"]["name"] == "kuard"
    jp = server.kubectl("get", "pod", "kuard", "-n", ns, "-o", "jsonpath={.spec.containers[0].image}").stdout
    assert jp == "kubelite.local/kuard-amd64:blue"
    cc = server.kubectl("get", "pods", "-n", ns, "-o",
                        "custom-columns=NAME:.metadata.name,PORT:.spec.containers[0].ports[0].containerPort").stdout
    assert cc.splitlines() == ["NAME    PORT", "kuard   8080"]


def test_describe_shows_spec_and_events(server, ns):
    server.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / "kuard-pod-full.yaml"))
    out = server.kubectl("describe", "pod", "kuard", "-n", ns).stdout
    assert "Name:" in out and "kuard" in out
    assert f"Namespace:        {ns}" in out
    assert "Image:      kubelite.local/kuard-amd64:blue" in out
    assert "Liveness:     http-get http://:8080/healthy delay=5s timeout=1s period=10s successThreshold=1 failureThreshold=3" in out
    assert "Readiness:    http-get http://:8080/ready delay=30s timeout=1s period=10s successThreshold=1 failureThreshold=3" in out
    # the column width follows the widest label (the kube-api-access volume's TokenExpirationSeconds)
    assert any(ln.split() == ["QoS", "Class:", "Burstable"] for ln in out.splitlines())
    assert "Events:" in out


def test_label_annotate_patch_replace(server, ns):
    server.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / "kuard-pod.yaml"))
    assert server.kubectl("label", "pod", "kuard", "-n", ns, "app=web").stdout.strip() == "pod/kuard labeled"
    assert server.kubectl("annotate", "pod", "kuard", "-n", ns, "note=hi").stdout.strip() == "pod/kuard annotated"
    shown = server.kubectl("get", "pods", "-n", ns, "-l", "app=web", "--show-labels").stdout
    assert "app=web" in shown
    server.kubectl("patch", "pod", "kuard", "-n", ns, "-p", '{"metadata":{"labels":{"tier":"front"}}}')
    server.kubectl("patch", "pod", "kuard", "-n", ns, "--type=merge", "-p",
                   '{"spec":{"activeDeadlineSeconds":600}}')
    server.kubectl("patch", "pod", "kuard", "-n", ns, "--type=json", "-p",
                   '[{"op":"replace","path":"/spec/containers/0/image","value":"kubelite.local/kuard-amd64:green"}]')
    pod = json.loads(server.kubectl("get", "pod", "kuard", "-n", ns, "-o", "json").stdout)
    assert pod["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert pod["metadata"]["annotations"]["note"] == "hi"
    assert pod["spec"]["activeDeadlineSeconds"] == 600
    assert pod["spec"]["containers"][0]["image"] == "kubelite.local/kuard-amd64:green"
    pod["spec"]["containers"][0]["image"] = "kubelite.local/kuard-amd64:purple"
    out = server.kubectl("replace", "-f", "-", input=json.dumps(pod)).stdout
    assert out.strip() == "pod/kuard replaced"
    # a forbidden change prints Kubernetes' immutability message
    pod = json.loads(server.kubectl("get", "pod", "kuard", "-n", ns, "-o", "json").stdout)
    pod["spec"]["restartPolicy"] = "Never"
    p = server.kubectl("replace", "-f", "-", input=json.dumps(pod), check=False)
    assert p.returncode != 0
    assert 'The Pod "kuard" is invalid: spec: Forbidden: pod updates may not change fields other than' in p.stderr
    # a stale resourceVersion conflicts
    pod["spec"]["restartPolicy"] = "Always"
    pod["metadata"]["resourceVersion"] = "1"
    p = server.kubectl("replace", "-f", "-", input=json.dumps(pod), check=False)
    assert "the object has been modified; please apply your changes to the latest version" in p.stderr


def test_edit_with_scripted_editor(server, ns, tmp_path):
    server.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / "kuard-pod.yaml"))
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's#kuard-amd64:blue#kuard-amd64:green#' \"$1\"\n")
    editor.chmod(0o755)
    out = server.kubectl("edit", "pod", "kuard", "-n", ns, env={"EDITOR": str(editor)}).stdout
    assert out.strip() == "pod/kuard edited"
    img = server.kubectl("get", "pod", "kuard", "-n", ns, "-o", "jsonpath={.spec.containers[0].image}").stdout
    assert img == "kubelite.local/kuard-amd64:green"


def test_reapply_changed_manifest_and_server_side_apply(server, ns, tmp_path):
    server.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / "kuard-pod.yaml"))
    assert server.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / "kuard-pod.yaml")).stdout.strip() == \
        "pod/kuard unchanged"
    changed = (EXAMPLES / "kuard-pod.yaml").read_text().replace(":blue", ":green").replace(
        "  name: kuard\n", "  name: kuard\n  labels:\n    color: green\n", 1)
    f = tmp_path / "changed.yaml"
    f.write_text(changed)
    assert server.kubectl("apply", "-n", ns, "-f", str(f)).stdout.strip() == "pod/kuard configured"
    pod = json.loads(server.kubectl("get", "pod", "kuard", "-n", ns, "-o", "json").stdout)
    assert pod["spec"]["containers"][0]["image"].endswith(":green")
    assert pod["metadata"]["labels"] == {"color": "green"}
    # server-side apply of a second pod, then a change
    ssa = (EXAMPLES / "kuard-pod.yaml").read_text().replace("name: kuard\n", "name: kuard-ssa\n", 1)
    out = server.kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=ssa).stdout
    assert out.strip() == "pod/kuard-ssa serverside-applied"
    pod = json.loads(server.kubectl("get", "pod", "kuard-ssa", "-n", ns, "-o", "json", "--show-managed-fields").stdout)
    managers = {m["manager"]: m["operation"] for m in pod["metadata"]["managedFields"]}
    assert managers.get("kubectl") == "Apply"
    out = server.kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=ssa.replace(":blue", ":green")).stdout
    assert out.strip() == "pod/kuard-ssa serverside-applied"
    img = server.kubectl("get", "pod", "kuard-ssa", "-n", ns, "-o", "jsonpath={.spec.containers[0].image}").stdout
    assert img.endswith(":green")


def test_explain(server):
    out = server.kubectl("explain", "pod.spec.containers").stdout
    assert "KIND:       Pod" in out
    assert "FIELD: containers <[]Container>" in out
    assert "livenessProbe" in out and "image" in out


def test_get_watch_streams_a_change(server, ns):
    server.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / "kuard-pod.yaml"))
    env = dict(os.environ, KUBECONFIG=str(server.kubeconfig), HOME=str(server.data_dir.parent))
    w = subprocess.Popen([KUBECTL, "get", "pods", "-n", ns, "-w", "--output-watch-events"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert w.stdout is not None
        header = w.stdout.readline()
        assert header.split()[:3] == ["EVENT", "NAME", "READY"]
        first = w.stdout.readline()
        assert first.split()[:2] == ["ADDED", "kuard"]
        server.kubectl("label", "pod", "kuard", "-n", ns, "seen=yes")
        nxt = w.stdout.readline()
        assert nxt.split()[:2] == ["MODIFIED", "kuard"]
        server.kubectl("delete", "pod", "kuard", "-n", ns, "--wait=false")
        last = w.stdout.readline()
        assert last.split()[:2] == ["DELETED", "kuard"]
    finally:
        w.kill()
        w.wait()


def test_wait_for_delete(server, ns):
    """A bound pod stays Terminating until its node confirms; `wait --for=delete` sees it go."""
    pod = yaml.safe_load((EXAMPLES / "kuard-pod.yaml").read_text())
    pod["spec"]["nodeName"] = "node-a"
    server.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(pod))
    server.kubectl("delete", "pod", "kuard", "-n", ns, "--wait=false")
    status = server.kubectl("get", "pod", "kuard", "-n", ns, "--no-headers").stdout.split()[2]
    assert status == "Terminating"
    env = dict(os.environ, KUBECONFIG=str(server.kubeconfig), HOME=str(server.data_dir.parent))
    w = subprocess.Popen([KUBECTL, "wait", "--for=delete", "pod/kuard", "-n", ns, "--timeout=30s", "-v=6"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert w.stderr is not None
        for line in w.stderr:  # proceed once wait has found the pod and started to watch it
            if "watch=true" in line:
                break
        server.kubectl("delete", "pod", "kuard", "-n", ns, "--force", "--grace-period=0")
        out, err = w.communicate(timeout=40)
        assert w.returncode == 0, err
        assert out.strip() == "pod/kuard condition met"
    finally:
        if w.poll() is None:
            w.kill()


def test_delete_all_and_namespace_cascade(server):
    name = "cascade-" + uuid.uuid4().hex[:6]
    server.kubectl("create", "namespace", name)
    for i in range(3):
        server.kubectl("run", f"kuard-{i}", "--image=kubelite.local/kuard-amd64:blue", "-n", name)
    server.kubectl("create", "configmap", "cfg", "--from-literal=a=b", "-n", name)
    out = server.kubectl("delete", "pods", "--all", "-n", name).stdout
    assert sorted(out.splitlines()) == [f'pod "kuard-{i}" deleted from {name} namespace' for i in range(3)]
    server.kubectl("run", "kuard", "--image=kubelite.local/kuard-amd64:blue", "-n", name)
    out = server.kubectl("delete", "namespace", name).stdout  # waits until it is gone
    assert out.strip() == f'namespace "{name}" deleted'
    p = server.kubectl("get", "namespace", name, check=False)
    assert p.returncode != 0 and f'namespaces "{name}" not found' in p.stderr


def test_run_and_default_service_account(server, ns):
    out = server.kubectl("run", "kuard", "--image=kubelite.local/kuard-amd64:blue", "-n", ns).stdout
    assert out.strip() == "pod/kuard created"
    pod = json.loads(server.kubectl("get", "pod", "kuard", "-n", ns, "-o", "json").stdout)
    assert pod["metadata"]["labels"] == {"run": "kuard"}
    assert pod["spec"]["serviceAccountName"] == "default"
    wait_until(lambda: server.kubectl("get", "sa", "default", "-n", ns, check=False).returncode == 0,
               what="default service account")


def test_invalid_manifests_print_kubernetes_errors(server, ns):
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
           "spec": {"containers": [{"name": "c"}]}}
    p = server.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(bad), check=False)
    assert p.returncode != 0
    assert 'The Pod "x" is invalid: spec.containers[0].image: Required value' in p.stderr
    bad["spec"]["containers"][0]["image"] = "busybox"
    bad["spec"]["restartPolicy"] = "Sometimes"
    bad["spec"]["containers"].append({"name": "c", "image": "busybox"})
    p = server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(bad), check=False)
    assert 'The Pod "x" is invalid:' in p.stderr
    assert 'spec.containers[1].name: Duplicate value: "c"' in p.stderr
    assert 'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"' \
        in p.stderr
    unknown = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "y"},
               "spec": {"containers": [{"name": "c", "image": "busybox", "colour": "red"}]}}
    p = server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(unknown), check=False)
    assert p.returncode != 0
    assert 'unknown field "spec.containers[0].colour"' in p.stderr
    assert server.kubectl("get", "pods", "-n", ns, "-o", "name").stdout.strip() == ""


def test_kubelite_kubectl_uses_the_admin_kubeconfig(server):
    import sys

    kubelite = str(Path(sys.executable).parent / "kubelite")
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["HOME"] = str(server.data_dir.parent)
    p = subprocess.run([kubelite, "kubectl", "--data-dir", str(server.data_dir), "get", "ns", "-o", "name"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert {"namespace/default", "namespace/kube-system", "namespace/kube-public",
            "namespace/kube-node-lease"} <= set(p.stdout.split())


def test_a_list_file_is_validated_against_the_protobuf_openapi_document(server, ns, tmp_path):
    """kubectl validates a `kind: List` file client-side against /openapi/v2 in protobuf: a good
    List applies, an unknown field gets kubectl's own validation error and nothing is created;
    other clients still get JSON, and an unacceptable type a 406 Status."""
    import urllib.error
    import urllib.request

    from tests.e2e.harness import admin_ssl_context

    good = {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "l1", "namespace": ns}, "data": {"a": "1"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "l2", "namespace": ns}}]}
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(good))
    out = server.kubectl("apply", "-f", str(tmp_path / "good.yaml")).stdout
    assert out == "configmap/l1 created\nconfigmap/l2 created\n"
    bad = {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "l3", "namespace": ns}, "bogus": 1}]}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    p = server.kubectl("apply", "-f", str(tmp_path / "bad.yaml"), check=False)
    assert p.returncode == 1
    assert ('error validating data: ValidationError(ConfigMap): unknown field "bogus" in '
            'io.k8s.api.core.v1.ConfigMap') in p.stderr, p.stderr
    assert server.kubectl("get", "cm", "l3", "-n", ns, check=False).returncode != 0
    ctx = admin_ssl_context(server.kubeconfig)

    def get(accept: str) -> tuple[int, str, bytes]:
        req = urllib.request.Request(f"{server.url}/openapi/v2", headers={"Accept": accept})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=30) as r:  # noqa: S310
                return r.status, r.headers["Content-Type"], r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers["Content-Type"], exc.read()

    code, ctype, body = get("application/json")
    assert code == 200 and ctype.startswith("application/json") and json.loads(body)["swagger"] == "2.0"
    code, ctype, body = get("application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
    assert code == 200 and ctype == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    assert body[:5] == b"\x0a\x032.0"  # field 1 (swagger) = "2.0"
    code, _, body = get("application/xml")
    assert code == 406 and json.loads(body)["reason"] == "NotAcceptable"
