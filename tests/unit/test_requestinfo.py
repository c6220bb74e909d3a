from kubelite.apiserver.requestinfo import request_info


def test_resource_paths():
    i = request_info("GET", "/api/v1/namespaces/default/pods/p1/log")
    assert (i.is_resource_request, i.verb, i.namespace, i.resource, i.name, i.subresource) == \
        (True, "get", "default", "pods", "p1", "log")
    i = request_info("GET", "/apis/apps/v1/deployments", {"watch": "true"})
    assert (i.verb, i.api_group, i.resource, i.namespace) == ("watch", "apps", "deployments", "")
    assert request_info("DELETE", "/api/v1/namespaces/ns/pods").verb == "deletecollection"
    i = request_info("GET", "/api/v1/namespaces/ns1")
    assert (i.resource, i.name, i.namespace) == ("namespaces", "ns1", "ns1")
    i = request_info("PUT", "/api/v1/namespaces/ns1/finalize")
    assert (i.resource, i.name, i.subresource, i.verb) == ("namespaces", "ns1", "finalize", "update")
    i = request_info("GET", "/api/v1/watch/namespaces/ns/pods/x")
    assert (i.verb, i.resource, i.name) == ("watch", "pods", "x")
    i = request_info("GET", "/api/v1/namespaces/ns/pods", {"fieldSelector": "metadata.name=x"})
    assert (i.verb, i.name) == ("list", "x")


def test_non_resource_paths():
    for p in ("/healthz", "/api", "/api/v1", "/apis/apps", "/apis/apps/v1", "/version"):
        i = request_info("GET", p)
        assert not i.is_resource_request and i.verb == "get" and i.path == p
    assert request_info("POST", "/metrics").verb == "post"
