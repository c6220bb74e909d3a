"""Discovery documents: legacy, aggregated (apidiscovery.k8s.io/v2), Accept negotiation, /version."""

from __future__ import annotations

from kubelite.apiserver import discovery
from kubelite.kinds.base import SCALE, Kind, Strategy, Subresource
from kubelite.kinds.namespaces import NAMESPACE as _NS
from kubelite.kinds.pods import POD as _POD
from kubelite.kinds.serviceaccounts import SERVICEACCOUNT as _SA


def _subs(kind: Kind, *names: str) -> tuple[Subresource, ...]:
    """The real declarations of the named subresources (scale: the generic one)."""
    return tuple(SCALE if n == "scale" else next(s for s in kind.subresources if s.name == n) for n in names)


POD = Kind(group="", version="v1", kind="Pod", plural="pods", namespaced=True, strategy=_POD.strategy,
           short_names=("po",), categories=("all",),
           subresources=_subs(_POD, "status", "binding", "log", "exec", "eviction", "ephemeralcontainers"),
           schema_ref="io.k8s.api.core.v1.Pod")
NS = Kind(group="", version="v1", kind="Namespace", plural="namespaces", namespaced=False, strategy=_NS.strategy,
          short_names=("ns",), subresources=_subs(_NS, "status", "finalize"),
          verbs=("create", "delete", "get", "list", "patch", "update", "watch"))
SA = Kind(group="", version="v1", kind="ServiceAccount", plural="serviceaccounts", namespaced=True,
          strategy=Strategy(), short_names=("sa",), subresources=_subs(_SA, "token"))
LEASE = Kind(group="coordination.k8s.io", version="v1", kind="Lease", plural="leases", namespaced=True,
             strategy=Strategy())
DEPLOY = Kind(group="apps", version="v1", kind="Deployment", plural="deployments", namespaced=True,
              strategy=Strategy(), short_names=("deploy",), categories=("all",), subresources=_subs(_POD, "status", "scale"))
KINDS = [POD, NS, SA, LEASE, DEPLOY]

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def test_storage_version_hash_matches_upstream():
    assert discovery.storage_version_hash("", "v1", "Pod") == "xPOwRZ+Yhw8="
    assert discovery.storage_version_hash("apps", "v1", "Deployment") == "8aSe+NMegvE="


def test_api_versions():
    assert discovery.api_versions("10.0.0.1:6443") == {
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "10.0.0.1:6443"}]}


def test_api_group_list_order_and_shape():
    doc = discovery.api_group_list(KINDS)
    assert doc["kind"] == "APIGroupList" and doc["apiVersion"] == "v1"
    assert [g["name"] for g in doc["groups"]] == ["apps", "coordination.k8s.io"]
    assert doc["groups"][0] == {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                                "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}}
    assert discovery.api_group(KINDS, "apps") == {
        "kind": "APIGroup", "apiVersion": "v1", "name": "apps",
        "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
        "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}}
    assert discovery.api_group(KINDS, "nope") is None
    assert discovery.group_versions(KINDS) == {"apps": ["v1"], "coordination.k8s.io": ["v1"]}


def test_core_resource_list():
    doc = discovery.api_resource_list(KINDS, "", "v1")
    assert doc["kind"] == "APIResourceList" and "apiVersion" not in doc and doc["groupVersion"] == "v1"
    by = {r["name"]: r for r in doc["resources"]}
    assert [r["name"] for r in doc["resources"]] == sorted(by)
    assert by["pods"] == {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
                          "verbs": ALL_VERBS, "shortNames": ["po"], "categories": ["all"],
                          "storageVersionHash": "xPOwRZ+Yhw8="}
    assert by["pods/status"] == {"name": "pods/status", "singularName": "", "namespaced": True, "kind": "Pod",
                                 "verbs": ["get", "patch", "update"]}
    assert by["pods/binding"]["kind"] == "Binding" and by["pods/binding"]["verbs"] == ["create"]
    assert by["pods/log"]["verbs"] == ["get"]
    assert by["pods/exec"] == {"name": "pods/exec", "singularName": "", "namespaced": True,
                               "kind": "PodExecOptions", "verbs": ["create", "get"]}
    assert by["pods/eviction"] == {"name": "pods/eviction", "singularName": "", "namespaced": True,
                                   "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]}
    assert by["pods/ephemeralcontainers"]["verbs"] == ["get", "patch", "update"]
    assert by["serviceaccounts/token"]["group"] == "authentication.k8s.io"
    assert by["serviceaccounts/token"]["kind"] == "TokenRequest"
    assert by["namespaces/finalize"]["verbs"] == ["update"]
    assert by["namespaces"]["namespaced"] is False and "categories" not in by["namespaces"]


def test_group_resource_list():
    doc = discovery.api_resource_list(KINDS, "apps", "v1")
    assert doc["apiVersion"] == "v1" and doc["groupVersion"] == "apps/v1"
    by = {r["name"]: r for r in doc["resources"]}
    assert by["deployments/scale"] == {"name": "deployments/scale", "singularName": "", "namespaced": True,
                                       "group": "autoscaling", "version": "v1", "kind": "Scale",
                                       "verbs": ["get", "patch", "update"]}
    assert discovery.api_resource_list(KINDS, "apps", "v2") is None


def test_aggregated():
    legacy = discovery.aggregated(KINDS, legacy=True)
    assert legacy["kind"] == "APIGroupDiscoveryList" and legacy["apiVersion"] == "apidiscovery.k8s.io/v2"
    assert len(legacy["items"]) == 1
    v = legacy["items"][0]["versions"][0]
    assert v["version"] == "v1" and v["freshness"] == "Current"
    pods = next(r for r in v["resources"] if r["resource"] == "pods")
    assert pods["responseKind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert pods["scope"] == "Namespaced" and pods["singularResource"] == "pod"
    assert pods["shortNames"] == ["po"] and pods["categories"] == ["all"] and pods["verbs"] == ALL_VERBS
    subs = {s["subresource"]: s for s in pods["subresources"]}
    assert subs["status"] == {"subresource": "status", "responseKind": {"group": "", "version": "v1", "kind": "Pod"},
                              "verbs": ["get", "patch", "update"]}
    assert subs["eviction"]["responseKind"] == {"group": "policy", "version": "v1", "kind": "Eviction"}
    ns = next(r for r in v["resources"] if r["resource"] == "namespaces")
    assert ns["scope"] == "Cluster"

    named = discovery.aggregated(KINDS, legacy=False)
    assert [i["metadata"]["name"] for i in named["items"]] == ["apps", "coordination.k8s.io"]
    dep = named["items"][0]["versions"][0]["resources"][0]
    assert dep["resource"] == "deployments"
    assert {s["subresource"]: s["responseKind"]["kind"] for s in dep["subresources"]} == {"scale": "Scale",
                                                                                         "status": "Deployment"}


def test_negotiate_aggregated():
    kubectl = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
               "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json")
    assert discovery.negotiate_aggregated(kubectl)
    assert discovery.negotiate_aggregated(discovery.AGGREGATED_CONTENT_TYPE)
    assert not discovery.negotiate_aggregated("application/json")
    assert not discovery.negotiate_aggregated("")
    assert not discovery.negotiate_aggregated(None)
    assert not discovery.negotiate_aggregated("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList")
    assert not discovery.negotiate_aggregated(
        "application/json, application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
    assert discovery.negotiate_aggregated(
        "application/json;q=0.5, application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
    assert not discovery.negotiate_aggregated(
        "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")


def test_etag_stable():
    a = discovery.aggregated(KINDS, legacy=False)
    assert discovery.etag(a) == discovery.etag(discovery.aggregated(KINDS, legacy=False))
    assert discovery.etag(a).startswith('"') and discovery.etag(a).endswith('"')


def test_version_info():
    v = discovery.version_info()
    assert v["major"] == "1" and v["minor"] == "37"
    assert v["gitVersion"] == "v1.37.0+kubelite"
    assert v["platform"].startswith("linux/")
    assert {"gitCommit", "gitTreeState", "buildDate", "goVersion", "compiler"} <= set(v)
