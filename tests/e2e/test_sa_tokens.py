"""Projected service-account tokens end to end: `kubelite server` with its in-process agent
(a ``system:node:<name>`` identity) projects kube-api-access into a real container; the token
authenticates as the pod's service account until the pod is deleted; an agent that restarts
under running pods keeps their projected volumes fresh (new tokens, labels). NodeRestriction
limits the tokens a node may request (an API-only server and a node's client certificate)."""

from __future__ import annotations

import json
import subprocess
import sys

import jwt
import pytest

from tests.e2e.harness import ROOT, ServerProcess, raw_request, wait_until
from tests.e2e.test_agent_support import BUSYBOX, full_cluster, leftovers

NODE = "kl-e2e-satokens"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with full_cluster(tmp_path_factory.mktemp("satokens") / "data", NODE, "satok") as c:
        yield c


def _pod(name: str, **spec) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"containers": [{"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"]}],
                                "terminationGracePeriodSeconds": 1, **spec}})


def _whoami(server: ServerProcess, token: str) -> tuple[int, dict]:
    body = b'{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}'
    status, _, out = raw_request(server, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", body,
                                 {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}, auth=False)
    return status, json.loads(out)


def test_projected_token_authenticates_until_pod_deleted(cluster):
    server, node = cluster
    server.kubectl("apply", "-f", "-", input=_pod("tok"))
    server.kubectl("wait", "--for=condition=Ready", "pod/tok", "--timeout=60s")
    pod = json.loads(server.kubectl("get", "pod", "tok", "-o", "json").stdout)
    uid = pod["metadata"]["uid"]
    vol = next(v for v in pod["spec"]["volumes"] if v["name"].startswith("kube-api-access-"))
    assert pod["spec"]["containers"][0]["volumeMounts"] == [
        {"mountPath": SA_DIR, "name": vol["name"], "readOnly": True}]

    token = server.kubectl("exec", "tok", "--", "cat", f"{SA_DIR}/token").stdout
    assert token.count(".") == 2
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "system:serviceaccount:default:default"
    assert claims["exp"] - claims["iat"] == 3607
    assert claims["aud"] == ["https://kubernetes.default.svc.cluster.local"]
    assert claims["kubernetes.io"]["pod"] == {"name": "tok", "uid": uid}
    assert claims["kubernetes.io"]["node"]["name"] == NODE
    assert server.kubectl("exec", "tok", "--", "cat", f"{SA_DIR}/namespace").stdout == "default"
    ca = server.kubectl("exec", "tok", "--", "cat", f"{SA_DIR}/ca.crt").stdout
    assert ca == (server.data_dir / "tls" / "ca.crt").read_text()
    listing = server.kubectl("exec", "tok", "--", "ls", "-la", SA_DIR).stdout
    assert "..data -> ..20" in listing and "token -> ..data/token" in listing, listing
    # the files are read-only inside the container
    assert server.kubectl("exec", "tok", "--", "sh", "-c", f"echo x > {SA_DIR}/token", check=False).returncode != 0

    # the in-process agent asked for the token with its node identity
    audit = (server.data_dir / "audit" / "audit.log").read_text().splitlines()
    reqs = [json.loads(ln) for ln in audit if '"serviceaccounts"' in ln and '"token"' in ln]
    assert any(e["user"]["username"] == f"system:node:{NODE}" and e["responseStatus"]["code"] == 201
               and e["objectRef"].get("subresource") == "token" for e in reqs), reqs[-3:]

    status, review = _whoami(server, token)
    assert status == 201, review
    info = review["status"]["userInfo"]
    assert info["username"] == "system:serviceaccount:default:default"
    assert info["extra"]["authentication.kubernetes.io/pod-name"] == ["tok"]
    assert info["extra"]["authentication.kubernetes.io/pod-uid"] == [uid]
    status, _, out = raw_request(server, "GET", "/api/v1/namespaces/default/secrets", None,
                                 {"Authorization": f"Bearer {token}"}, auth=False)
    assert status == 403
    assert json.loads(out)["message"] == ('secrets is forbidden: User "system:serviceaccount:default:default" '
                                          'cannot list resource "secrets" in API group "" in the namespace "default"')

    server.kubectl("delete", "pod", "tok", "--timeout=60s")
    assert _whoami(server, token)[0] == 401
    wait_until(lambda: not leftovers(node, uid), 30, 0.1, "nothing left on the host")


def test_custom_service_account_and_opt_out(cluster):
    server, node = cluster
    server.kubectl("create", "namespace", "satok")
    server.kubectl("-n", "satok", "create", "serviceaccount", "robot")
    wait_until(lambda: server.kubectl("-n", "satok", "get", "cm", "kube-root-ca.crt", check=False).returncode == 0,
               10, 0.1, "kube-root-ca.crt in the new namespace")
    server.kubectl("-n", "satok", "apply", "-f", "-", input=_pod("robo", serviceAccountName="robot"))
    server.kubectl("-n", "satok", "apply", "-f", "-", input=_pod("quiet", automountServiceAccountToken=False))
    server.kubectl("-n", "satok", "wait", "--for=condition=Ready", "pod/robo", "pod/quiet", "--timeout=60s")
    token = server.kubectl("-n", "satok", "exec", "robo", "--", "cat", f"{SA_DIR}/token").stdout
    status, review = _whoami(server, token)
    assert status == 201 and review["status"]["userInfo"]["username"] == "system:serviceaccount:satok:robot"
    assert server.kubectl("-n", "satok", "exec", "robo", "--", "cat", f"{SA_DIR}/namespace").stdout == "satok"
    quiet = json.loads(server.kubectl("-n", "satok", "get", "pod", "quiet", "-o", "json").stdout)
    assert not quiet["spec"].get("volumes") and not quiet["spec"]["containers"][0].get("volumeMounts")
    assert server.kubectl("-n", "satok", "exec", "quiet", "--", "ls", SA_DIR, check=False).returncode != 0
    # the service account's own opt-out
    server.kubectl("-n", "satok", "patch", "serviceaccount", "robot", "-p", '{"automountServiceAccountToken":false}')
    server.kubectl("-n", "satok", "apply", "-f", "-", input=_pod("robo2", serviceAccountName="robot"))
    robo2 = json.loads(server.kubectl("-n", "satok", "get", "pod", "robo2", "-o", "json").stdout)
    assert not robo2["spec"].get("volumes")
    server.kubectl("-n", "satok", "delete", "pods", "--all", "--timeout=60s")
    assert _whoami(server, token)[0] == 401
    server.kubectl("delete", "namespace", "satok", "--timeout=60s")


def test_root_ca_configmap_published_and_restored(cluster):
    server, _ = cluster
    ca = (server.data_dir / "tls" / "ca.crt").read_text()
    out = json.loads(server.kubectl("get", "configmaps", "-A", "--field-selector", "metadata.name=kube-root-ca.crt",
                                    "-o", "json").stdout)
    namespaces = {i["metadata"]["namespace"] for i in out["items"]}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= namespaces
    cm = next(i for i in out["items"] if i["metadata"]["namespace"] == "default")
    assert cm["data"] == {"ca.crt": ca}
    assert cm["metadata"]["annotations"]["kubernetes.io/description"].startswith(
        "Contains a CA bundle that can be used to verify the kube-apiserver")
    server.kubectl("-n", "kube-public", "delete", "configmap", "kube-root-ca.crt")

    def data(ns: str) -> dict:
        p = server.kubectl("-n", ns, "get", "configmap", "kube-root-ca.crt", "-o", "json", check=False)
        return json.loads(p.stdout).get("data", {}) if p.returncode == 0 else {}

    wait_until(lambda: data("kube-public") == {"ca.crt": ca}, 10, 0.1, "recreated")
    server.kubectl("-n", "kube-public", "patch", "configmap", "kube-root-ca.crt", "-p", '{"data":{"ca.crt":"junk"}}')
    wait_until(lambda: data("kube-public") == {"ca.crt": ca}, 10, 0.1, "restored")


def test_agent_restart_adopts_projected_volumes(cluster):
    """kill -9 of the server (and its agent) under a running pod: the new agent re-projects the
    pod's projected volumes at its first sync of the pod (a new token, as the kubelet's token
    manager starts empty) and keeps them fresh afterwards; label changes reach downwardAPI files."""
    server, node = cluster
    vol = {"name": "short", "projected": {"sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 600}},
        {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}]}}
    spec = json.loads(_pod("adopt"))
    spec["metadata"]["labels"] = {"app": "adopt"}
    spec["spec"]["volumes"] = [vol]
    spec["spec"]["containers"][0]["volumeMounts"] = [{"name": "short", "mountPath": "/short"}]
    server.kubectl("apply", "-f", "-", input=json.dumps(spec))
    server.kubectl("wait", "--for=condition=Ready", "pod/adopt", "--timeout=60s")
    pod = json.loads(server.kubectl("get", "pod", "adopt", "-o", "json").stdout)
    uid, cid = pod["metadata"]["uid"], pod["status"]["containerStatuses"][0]["containerID"]
    host = server.data_dir / "pods" / uid / "volumes" / "kubernetes.io~projected" / "short"

    def cat(name: str) -> str:
        return server.kubectl("exec", "adopt", "--", "cat", f"/short/{name}").stdout

    first = cat("token")
    assert first == (host / "token").read_text()
    assert jwt.decode(first, options={"verify_signature": False})["exp"] - \
        jwt.decode(first, options={"verify_signature": False})["iat"] == 600
    assert cat("labels") == 'app="adopt"'

    server.kill9()
    server.start()
    wait_until(lambda: (host / "token").read_text() != first, 30, 0.2, "the adopted pod's token re-requested")
    second = cat("token")
    claims = jwt.decode(second, options={"verify_signature": False})
    assert claims["kubernetes.io"]["pod"] == {"name": "adopt", "uid": uid}
    assert _whoami(server, second)[0] == 201
    after = json.loads(server.kubectl("get", "pod", "adopt", "-o", "json").stdout)
    assert after["status"]["containerStatuses"][0]["containerID"] == cid  # the same container, not a new one

    server.kubectl("label", "pod", "adopt", "color=blue")
    wait_until(lambda: cat("labels") == 'app="adopt"\ncolor="blue"', 20, 0.2, "labels file updated")
    assert cat("token") == second  # the cached token stays

    server.kubectl("delete", "pod", "adopt", "--timeout=60s")
    wait_until(lambda: not leftovers(node, uid), 30, 0.1, "nothing left on the host")


# --------------------------------------------------------------------------- NodeRestriction


@pytest.fixture(scope="module")
def api_only(tmp_path_factory):
    base = tmp_path_factory.mktemp("satokens-nr")
    server = ServerProcess(base / "data").start()  # --disable-agent: the pods only need a spec.nodeName
    try:
        yield server
    finally:
        server.stop()


def _node_kubectl(server: ServerProcess, node: str):
    out = server.data_dir.parent / f"{node}.kubeconfig"
    subprocess.run([sys.executable, "-m", "kubelite", "kubeconfig", "create", "--user", f"system:node:{node}",
                    "--group", "system:nodes", "--data-dir", str(server.data_dir), "--output", str(out)],
                   check=True, cwd=ROOT, capture_output=True)
    import yaml

    cfg = yaml.safe_load(out.read_text())
    cfg["clusters"][0]["cluster"]["server"] = server.url
    out.write_text(yaml.safe_dump(cfg))
    return lambda *a: server.kubectl(*a, check=False, env={"KUBECONFIG": str(out)})


def test_node_may_request_tokens_only_for_its_pods(api_only):
    server = api_only
    wait_until(lambda: server.kubectl("get", "sa", "default", check=False).returncode == 0, 10, 0.1, "default SA")
    uids = {}
    for name, node in (("on-n1", "n1"), ("on-n2", "n2")):
        server.kubectl("apply", "-f", "-", input=_pod(name, nodeName=node))
        uids[name] = json.loads(server.kubectl("get", "pod", name, "-o", "json").stdout)["metadata"]["uid"]
    n1 = _node_kubectl(server, "n1")

    def token(*extra: str, pod: str = "on-n1", uid: str | None = None):
        return n1("create", "token", "default", "--bound-object-kind=Pod", f"--bound-object-name={pod}",
                  f"--bound-object-uid={uid or uids[pod]}", *extra)

    def forbidden(p, msg: str) -> None:
        assert p.returncode != 0
        assert f'serviceaccounts "default" is forbidden: {msg}' in p.stderr, p.stderr

    p = token()
    assert p.returncode == 0, p.stderr
    claims = jwt.decode(p.stdout.strip(), options={"verify_signature": False})
    assert claims["kubernetes.io"]["pod"] == {"name": "on-n1", "uid": uids["on-n1"]}
    assert claims["kubernetes.io"]["node"]["name"] == "n1"
    forbidden(token(pod="on-n2"), "node requested token bound to a pod scheduled on a different node")
    forbidden(n1("create", "token", "default"), "node requested token not bound to a pod")
    forbidden(token(uid="0f0f0f0f-0000-0000-0000-000000000000"),
              "the UID in the bound object reference (0f0f0f0f-0000-0000-0000-000000000000) does not match the "
              "UID in record. The object might have been deleted and then recreated")
    forbidden(token("--audience=elsewhere"), 'audience "elsewhere" not found in pod spec volume, system:node:n1 is '
                                             "not authorized to request tokens for this audience")
    # anyone else (here the admin) is not restricted
    assert server.kubectl("create", "token", "default").returncode == 0
    assert server.kubectl("create", "token", "default", "--bound-object-kind=Pod", "--bound-object-name=on-n2",
                          f"--bound-object-uid={uids['on-n2']}").returncode == 0
    server.kubectl("delete", "pod", "on-n1", "on-n2", "--grace-period=0", "--force", check=False)
