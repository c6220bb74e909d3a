from kubelite.apiserver.authorizer import Attributes, forbidden_message
from kubelite.auth.rbac import compact_rules, compact_string, covers, rule_allows


class U:
    name = "alice"
    groups = ("system:authenticated",)


def attrs(**kw):
    return Attributes(user=U(), **kw)


def test_rule_matching():
    r = {"apiGroups": [""], "resources": ["pods", "*/status"], "verbs": ["get"]}
    assert rule_allows(attrs(verb="get", resource="pods"), r)
    assert rule_allows(attrs(verb="get", resource="nodes", subresource="status"), r)
    assert not rule_allows(attrs(verb="get", resource="pods", subresource="log"), r)
    assert not rule_allows(attrs(verb="list", resource="pods"), r)
    named = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["a"]}
    assert rule_allows(attrs(verb="get", resource="secrets", name="a"), named)
    assert not rule_allows(attrs(verb="get", resource="secrets", name="b"), named)
    url = {"nonResourceURLs": ["/healthz", "/apis/*"], "verbs": ["get"]}
    assert rule_allows(attrs(verb="get", resource_request=False, path="/apis/apps/v1"), url)
    assert not rule_allows(attrs(verb="get", resource_request=False, path="/metrics"), url)


def test_covers_and_messages():
    owner = [{"apiGroups": [""], "resources": ["pods", "*/status"], "verbs": ["*"]}]
    ok, missing = covers(owner, [{"apiGroups": [""], "resources": ["pods", "nodes/status"], "verbs": ["get"]}])
    assert ok and not missing
    ok, missing = covers(owner, [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]}])
    assert not ok
    assert [compact_string(r) for r in compact_rules(missing)] == [
        '{APIGroups:[""], Resources:["nodes"], Verbs:["get" "list"]}']


def test_forbidden_message():
    assert forbidden_message(attrs(verb="create", resource="pods", namespace="default")) == \
        'User "alice" cannot create resource "pods" in API group "" in the namespace "default"'
    assert forbidden_message(attrs(verb="list", resource="nodes")) == \
        'User "alice" cannot list resource "nodes" in API group "" at the cluster scope'
    assert forbidden_message(attrs(verb="get", resource_request=False, path="/metrics")) == \
        'User "alice" cannot get path "/metrics"'
