"""RBAC, the node authorizer and NodeRestriction, driven by the real kubectl with client
certificates minted by `kubelite kubeconfig create`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.e2e.harness import ROOT, ServerProcess, wait_until


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    base = tmp_path_factory.mktemp("authz")
    s = ServerProcess(base / "data").start()
    yield s
    s.stop()


def mint(srv: ServerProcess, user: str, *groups: str):
    out = srv.data_dir.parent / f"{user.replace(':', '_')}.kubeconfig"
    args = [sys.executable, "-m", "kubelite", "kubeconfig", "create", "--user", user, "--data-dir",
            str(srv.data_dir), "--output", str(out)]
    for g in groups:
        args += ["--group", g]
    subprocess.run(args, check=True, cwd=ROOT, capture_output=True)
    text = out.read_text()
    import yaml

    cfg = yaml.safe_load(text)
    cfg["clusters"][0]["cluster"]["server"] = srv.url
    out.write_text(yaml.safe_dump(cfg))

    def kubectl(*a: str, check: bool = False, input: str | None = None):
        return srv.kubectl(*a, check=check, input=input, env={"KUBECONFIG": str(out)})

    return kubectl


def can_i(k, *args: str) -> str:
    return k("auth", "can-i", *args).stdout.strip()


@pytest.fixture(scope="module")
def setup(srv):
    srv.kubectl("create", "namespace", "dev")
    srv.kubectl("create", "clusterrolebinding", "viewer", "--clusterrole=view", "--user=viewer")
    srv.kubectl("-n", "dev", "create", "rolebinding", "editor", "--clusterrole=edit", "--user=editor")
    srv.kubectl("create", "secret", "generic", "used", "--from-literal=password=s3cr3t-used")
    srv.kubectl("create", "secret", "generic", "unused", "--from-literal=password=s3cr3t-unused")
    srv.kubectl("apply", "-f", "-", input="""
apiVersion: v1
kind: Pod
metadata: {name: p1}
spec:
  nodeName: n1
  containers:
  - name: c
    image: busybox
    env: [{name: X, valueFrom: {secretKeyRef: {name: used, key: password}}}]
---
apiVersion: v1
kind: Node
metadata: {name: n2}
""")
    return srv


def test_default_roles_bootstrapped(setup):
    out = json.loads(setup.kubectl("get", "clusterroles", "-o", "json").stdout)
    names = {i["metadata"]["name"]: i for i in out["items"]}
    for n in ("cluster-admin", "admin", "edit", "view", "system:basic-user", "system:discovery",
              "system:public-info-viewer", "system:node", "system:kube-scheduler", "system:kube-controller-manager",
              "system:auth-delegator", "system:node-proxier"):
        assert n in names
        assert names[n]["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"] == "true"
        assert names[n]["metadata"]["labels"]["kubernetes.io/bootstrapping"] == "rbac-defaults"
    # aggregation: view's rules come from system:aggregate-to-view, edit includes view's
    view_resources = {r for rule in names["view"]["rules"] for r in rule.get("resources", [])}
    assert {"pods", "pods/log", "configmaps"} <= view_resources and "secrets" not in view_resources
    edit_resources = {r for rule in names["edit"]["rules"] for r in rule.get("resources", [])}
    assert {"pods/exec", "secrets", "pods/log"} <= edit_resources


def test_admin_can_do_anything(setup):
    assert can_i(setup.kubectl, "create", "pods") == "yes"
    assert can_i(setup.kubectl, "*", "*") == "yes"


def test_unbound_user_forbidden_with_upstream_message(setup):
    alice = mint(setup, "alice")
    r = alice("run", "x", "--image=busybox")
    assert r.returncode != 0
    assert ('pods is forbidden: User "alice" cannot create resource "pods" in API group "" in the namespace '
            '"default"') in r.stderr
    r = alice("get", "nodes")
    assert 'nodes is forbidden: User "alice" cannot list resource "nodes" in API group "" at the cluster scope' \
        in r.stderr
    assert can_i(alice, "create", "pods") == "no"
    # basic-user and public info stay available
    assert alice("auth", "whoami", "-o", "json").returncode == 0
    assert alice("get", "--raw", "/version").returncode == 0


def test_view_user(setup):
    viewer = mint(setup, "viewer")
    assert viewer("get", "pods").returncode == 0
    assert can_i(viewer, "get", "pods") == "yes"
    assert can_i(viewer, "get", "pods", "--subresource=log") == "yes"
    assert can_i(viewer, "create", "pods", "--subresource=exec") == "no"
    assert can_i(viewer, "create", "pods", "--subresource=portforward") == "no"
    assert can_i(viewer, "get", "secrets") == "no"
    assert can_i(viewer, "create", "pods") == "no"
    r = viewer("exec", "p1", "--", "ls")
    assert 'pods "p1" is forbidden: User "viewer" cannot create resource "pods/exec" in API group "" in the ' \
           'namespace "default"' in r.stderr
    r = viewer("create", "--raw", "/api/v1/namespaces/default/pods/p1/portforward", "-f", "-", input="{}")
    assert 'pods "p1" is forbidden: User "viewer" cannot create resource "pods/portforward"' in r.stderr
    r = viewer("get", "secret", "used")
    assert 'secrets "used" is forbidden: User "viewer" cannot get resource "secrets"' in r.stderr
    r = viewer("create", "configmap", "c", "--from-literal=a=b")
    assert r.returncode != 0 and "forbidden" in r.stderr
    r = viewer("get", "--raw", "/metrics")
    assert 'forbidden: User "viewer" cannot get path "/metrics"' in r.stderr


def test_edit_user_in_one_namespace(setup):
    editor = mint(setup, "editor")
    assert can_i(editor, "create", "pods", "-n", "dev") == "yes"
    assert can_i(editor, "create", "pods/exec", "-n", "dev") == "yes"
    assert can_i(editor, "get", "secrets", "-n", "dev") == "yes"
    assert can_i(editor, "create", "pods", "-n", "default") == "no"
    assert can_i(editor, "create", "roles", "-n", "dev") == "no"
    assert editor("-n", "dev", "create", "configmap", "c", "--from-literal=a=b").returncode == 0
    r = editor("-n", "default", "create", "configmap", "c", "--from-literal=a=b")
    assert 'configmaps is forbidden: User "editor" cannot create resource "configmaps" in API group "" in the ' \
           'namespace "default"' in r.stderr
    r = editor("get", "pods", "-n", "default")
    assert r.returncode != 0
    listing = editor("auth", "can-i", "--list", "-n", "dev").stdout
    assert "pods/exec" in listing


def test_escalation_prevented(setup):
    setup.kubectl("-n", "dev", "create", "rolebinding", "dev-admin", "--clusterrole=admin", "--user=nsadmin")
    nsadmin = mint(setup, "nsadmin")
    assert nsadmin("-n", "dev", "create", "role", "ok", "--verb=get", "--resource=secrets").returncode == 0
    r = nsadmin("-n", "dev", "create", "role", "r2", "--verb=get", "--resource=nodes")
    assert ('roles.rbac.authorization.k8s.io "r2" is forbidden: user "nsadmin" (groups=["system:authenticated"]) '
            'is attempting to grant RBAC permissions not currently held:\n'
            '{APIGroups:[""], Resources:["nodes"], Verbs:["get"]}') in r.stderr
    r = nsadmin("-n", "dev", "create", "rolebinding", "x", "--clusterrole=cluster-admin", "--user=bob")
    assert "is attempting to grant RBAC permissions not currently held" in r.stderr
    assert nsadmin("-n", "dev", "create", "rolebinding", "y", "--clusterrole=view", "--user=bob").returncode == 0
    # the bind verb allows binding what one does not hold
    setup.kubectl("create", "clusterrole", "binder", "--verb=bind", "--resource=clusterroles",
                  "--resource-name=cluster-admin")
    setup.kubectl("-n", "dev", "create", "rolebinding", "nsadmin-binder", "--clusterrole=binder", "--user=nsadmin")
    wait_until(lambda: nsadmin("-n", "dev", "create", "rolebinding", "z", "--clusterrole=cluster-admin",
                               "--user=bob").returncode == 0, 10, 0.2, "bind verb")


def test_node_authorizer_and_restriction(setup):
    node = mint(setup, "system:node:n1", "system:nodes")
    assert node("get", "secret", "used", "-o", "name").returncode == 0
    r = node("get", "secret", "unused")
    assert ('secrets "unused" is forbidden: User "system:node:n1" cannot get resource "secrets" in API group "" in '
            "the namespace \"default\": no relationship found between node 'n1' and this object") in r.stderr
    assert node("get", "pod", "p1", "-o", "name").returncode == 0
    assert node("get", "pods", "--field-selector", "spec.nodeName=n1", "-o", "name").stdout.strip() == "pod/p1"
    assert node("get", "pods").returncode != 0
    assert node("get", "nodes").returncode == 0
    assert can_i(node, "get", "secret/used") == "yes"
    assert can_i(node, "get", "secret/unused") == "no - no relationship found between node 'n1' and this object"
    r = node("label", "node", "n2", "a=b")
    assert 'nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2"' in r.stderr
    r = node("run", "x", "--image=busybox")
    assert ('pods "x" is forbidden: pod does not have "kubernetes.io/config.mirror" annotation, node "n1" can only '
            'create mirror pods') in r.stderr
    assert node("create", "-f", "-", input="apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n").returncode == 0
    assert node("label", "node", "n1", "a=b").returncode == 0
    lease = "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: %s, namespace: kube-node-lease}\n"
    assert node("create", "-f", "-", input=lease % "n1").returncode == 0
    r = node("create", "-f", "-", input=lease % "n2")
    assert "can only access node lease with the same name as the requesting node" in r.stderr
    # the node learns of a new pod's secret as soon as the pod is bound to it
    setup.kubectl("apply", "-f", "-", input="""
apiVersion: v1
kind: Pod
metadata: {name: p2}
spec:
  nodeName: n1
  volumes: [{name: s, secret: {secretName: unused}}]
  containers: [{name: c, image: busybox}]
""")
    wait_until(lambda: node("get", "secret", "unused").returncode == 0, 10, 0.1, "graph update")
