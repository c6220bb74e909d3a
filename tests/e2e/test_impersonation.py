"""`kubectl --as`, `--as-group`, `--as-uid` and `auth can-i --as` against kubelite, as against
Kubernetes: the server acts as the impersonated user once the `impersonate` checks pass,
and the audit log records both users."""

from __future__ import annotations

import json

import pytest

from tests.e2e.harness import wait_until
from tests.e2e.test_authz import mint


@pytest.fixture(scope="module")
def setup(server):
    server.kubectl("create", "namespace", "imp")
    server.kubectl("-n", "imp", "create", "rolebinding", "bob-view", "--clusterrole=view", "--user=bob")
    server.kubectl("-n", "imp", "create", "configmap", "cm1", "--from-literal=a=b")
    yield
    server.kubectl("delete", "namespace", "imp", "--wait=false", check=False)


def test_admin_acts_as_bob(server, setup):
    p = server.kubectl("-n", "imp", "get", "configmaps", "--as=bob", "-o", "name")
    assert "configmap/cm1" in p.stdout
    p = server.kubectl("-n", "default", "get", "pods", "--as=bob", check=False)
    assert p.returncode != 0
    assert ('Error from server (Forbidden): pods is forbidden: User "bob" cannot list resource "pods" in API '
            'group "" in the namespace "default"') in p.stderr
    p = server.kubectl("-n", "imp", "delete", "configmap", "cm1", "--as=bob", check=False)
    assert 'User "bob" cannot delete resource "configmaps"' in p.stderr


def test_auth_can_i_as(server, setup):
    assert server.kubectl("auth", "can-i", "get", "secrets", "--as=bob", check=False).stdout.strip() == "no"
    assert server.kubectl("auth", "can-i", "list", "configmaps", "-n", "imp", "--as=bob").stdout.strip() == "yes"
    assert server.kubectl("auth", "can-i", "get", "secrets", "--as=bob", "--as-group=system:masters").stdout.strip() \
        == "yes"
    who = json.loads(server.kubectl("auth", "whoami", "--as=bob", "--as-group=qa", "-o", "json").stdout)
    assert who["status"]["userInfo"]["username"] == "bob"
    assert who["status"]["userInfo"]["groups"] == ["qa", "system:authenticated"]


def test_unprivileged_users_may_not_impersonate(server, setup):
    carol = mint(server, "carol")
    p = carol("-n", "imp", "get", "configmaps", "--as=bob")
    assert p.returncode != 0
    assert ('Error from server (Forbidden): configmaps is forbidden: User "carol" cannot '
            'impersonate-on:user-info:list resource "configmaps" in API group "" in the namespace "imp"') in p.stderr
    server.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "impersonate-bob"},
        "rules": [{"apiGroups": [""], "resources": ["users"], "resourceNames": ["bob"], "verbs": ["impersonate"]}]}))
    server.kubectl("create", "clusterrolebinding", "carol-as-bob", "--clusterrole=impersonate-bob", "--user=carol")
    try:
        wait_until(lambda: carol("-n", "imp", "get", "configmaps", "--as=bob", "-o", "name").returncode == 0,
                   what="carol may impersonate bob")
        # the groups are not allowed: the answer is the first mode's refusal, as upstream
        p = carol("-n", "imp", "get", "configmaps", "--as=bob", "--as-group=devs")
        assert p.returncode != 0 and 'User "carol" cannot impersonate-on:user-info:list' in p.stderr
    finally:
        server.kubectl("delete", "clusterrolebinding", "carol-as-bob", check=False)
        server.kubectl("delete", "clusterrole", "impersonate-bob", check=False)


def test_audit_records_both_users(server, setup):
    server.kubectl("-n", "imp", "create", "configmap", "cm-audit", "--as=bob", "--as-group=system:masters")
    log = server.data_dir / "audit" / "audit.log"

    def event():
        for line in reversed(log.read_text().splitlines()):
            ev = json.loads(line)
            ref = ev.get("objectRef") or {}
            if ev.get("verb") == "create" and ref.get("namespace") == "imp" and ev.get("impersonatedUser"):
                return ev
        return None

    ev = wait_until(event, what="audit event")
    assert ev["user"]["username"] == "kubelite-admin"
    assert ev["impersonatedUser"] == {"username": "bob", "groups": ["system:masters", "system:authenticated"]}
    assert "authenticationMetadata" not in ev  # the legacy mode allowed it: system:masters is refused by user-info
