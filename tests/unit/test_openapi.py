"""OpenAPI v2/v3 documents, checked by shape and against the real kubectl (explain, --validate=strict)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from kubelite.api import fieldvalidation
from kubelite.apiserver import discovery, openapi
from kubelite.kinds.base import SCALE, Kind, Strategy, Subresource
from kubelite.kinds.namespaces import NAMESPACE as _NS
from kubelite.kinds.pods import POD as _POD


def _subs(kind: Kind, *names: str) -> tuple[Subresource, ...]:
    """The real declarations of the named subresources (scale: the generic one)."""
    return tuple(SCALE if n == "scale" else next(s for s in kind.subresources if s.name == n) for n in names)


POD = Kind(group="", version="v1", kind="Pod", plural="pods", namespaced=True, strategy=_POD.strategy,
           short_names=("po",), categories=("all",), subresources=_subs(_POD, "status", "log", "exec", "binding", "eviction"),
           schema_ref="io.k8s.api.core.v1.Pod")
NAMESPACE = Kind(group="", version="v1", kind="Namespace", plural="namespaces", namespaced=False,
                 strategy=_NS.strategy, short_names=("ns",), subresources=_subs(_NS, "status", "finalize"),
                 verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
                 schema_ref="io.k8s.api.core.v1.Namespace")
LEASE = Kind(group="coordination.k8s.io", version="v1", kind="Lease", plural="leases", namespaced=True,
             strategy=Strategy(), schema_ref="io.k8s.api.coordination.v1.Lease")
KINDS = [POD, NAMESPACE, LEASE]

S3 = "#/components/schemas/"
KUBECTL = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "kubectl"


# --------------------------------------------------------------------------- document shape
def test_v2_shape():
    doc = openapi.build_v2(KINDS)
    assert doc["swagger"] == "2.0"
    assert doc["info"] == {"title": "Kubernetes", "version": "v1.37.0"}
    defs = doc["definitions"]
    for name in ("io.k8s.api.core.v1.Pod", "io.k8s.api.core.v1.PodList", "io.k8s.api.coordination.v1.Lease",
                 openapi.STATUS, openapi.DELETE_OPTIONS, openapi.WATCH_EVENT, openapi.PATCH,
                 openapi.API_RESOURCE_LIST, "io.k8s.api.core.v1.Binding", "io.k8s.api.policy.v1.Eviction"):
        assert name in defs, name
    assert "io.k8s.api.apps.v1.Deployment" not in defs  # only what the served kinds reach
    assert defs[openapi.INT_OR_STRING]["type"] == "string"
    assert defs[openapi.INT_OR_STRING]["format"] == "int-or-string"
    assert defs[openapi.QUANTITY] == {"description": defs[openapi.QUANTITY]["description"], "type": "string"}
    pod = defs["io.k8s.api.core.v1.Pod"]
    assert pod["type"] == "object"
    assert pod["properties"]["spec"]["$ref"] == "#/definitions/io.k8s.api.core.v1.PodSpec"
    assert "description" in pod["properties"]["spec"]
    assert "enum" not in pod["properties"]["kind"]
    assert pod["x-kubernetes-group-version-kind"] == [{"group": "", "kind": "Pod", "version": "v1"}]
    containers = defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert containers["items"] == {"$ref": "#/definitions/io.k8s.api.core.v1.Container"}
    text = orjson.dumps(doc).decode()
    assert "#/$defs/" not in text and '"null"' not in text

    item = doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]
    patch = item["patch"]
    assert patch["operationId"] == "patchCoreV1NamespacedPod"
    assert patch["consumes"] == list(openapi.PATCH_TYPES)
    assert patch["x-kubernetes-action"] == "patch"
    assert patch["x-kubernetes-group-version-kind"] == {"group": "", "kind": "Pod", "version": "v1"}
    names = [p["name"] for p in patch["parameters"]]
    assert names == ["body", "dryRun", "fieldManager", "fieldValidation", "force"]
    assert [p["name"] for p in item["parameters"]] == ["name", "namespace", "pretty"]
    assert item["get"]["operationId"] == "readCoreV1NamespacedPod"
    paths = doc["paths"]
    assert paths["/api/v1/pods"]["get"]["operationId"] == "listCoreV1PodForAllNamespaces"
    assert paths["/api/v1/namespaces/{namespace}/pods"]["delete"]["operationId"] == \
        "deleteCoreV1CollectionNamespacedPod"
    assert paths["/api/v1/namespaces/{namespace}/pods/{name}/status"]["get"]["operationId"] == \
        "readCoreV1NamespacedPodStatus"
    assert paths["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"][
        "x-kubernetes-group-version-kind"] == {"group": "policy", "kind": "Eviction", "version": "v1"}
    assert paths["/api/v1/namespaces/{namespace}/pods/{name}/exec"]["get"]["operationId"] == \
        "connectCoreV1GetNamespacedPodExec"
    assert paths["/api/v1/watch/namespaces/{namespace}/pods"]["get"]["operationId"] == \
        "watchCoreV1NamespacedPodList"
    assert paths["/api/v1/watch/pods"]["get"]["operationId"] == "watchCoreV1PodListForAllNamespaces"
    assert paths["/api/v1/namespaces/{name}"]["get"]["operationId"] == "readCoreV1Namespace"
    assert paths["/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"]["post"]["operationId"] == \
        "createCoordinationV1NamespacedLease"
    assert paths["/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"]["post"]["tags"] == \
        ["coordination_v1"]


def test_v3_shape_and_index():
    idx = openapi.build_v3_index(KINDS)
    assert set(idx["paths"]) == {"api", "api/v1", "apis", "apis/coordination.k8s.io",
                                 "apis/coordination.k8s.io/v1", "version"}
    url = idx["paths"]["api/v1"]["serverRelativeURL"]
    data, h = openapi.v3_bytes(KINDS, "api/v1")
    assert url == f"/openapi/v3/api/v1?hash={h}"
    assert openapi.is_hash(h) and h == h.upper() and len(h) == 128
    assert openapi.build_v3_index(KINDS) == idx  # stable

    doc = openapi.build_v3(KINDS, "api/v1")
    assert orjson.loads(data) == doc
    assert doc["openapi"] == "3.0.0"
    schemas = doc["components"]["schemas"]
    assert "io.k8s.api.coordination.v1.Lease" not in schemas  # per group-version
    pod = schemas["io.k8s.api.core.v1.Pod"]
    assert pod["properties"]["metadata"] == {
        "allOf": [{"$ref": S3 + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}],
        "default": {}, "description": pod["properties"]["metadata"]["description"]}
    assert pod["properties"]["spec"]["default"] == {}
    container = schemas["io.k8s.api.core.v1.Container"]
    assert container["properties"]["name"]["default"] == ""
    assert "default" not in container["properties"]["image"]
    assert schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]["items"] == {
        "allOf": [{"$ref": S3 + "io.k8s.api.core.v1.Container"}], "default": {}}
    text = orjson.dumps(doc).decode()
    assert "#/definitions/" not in text and "#/$defs/" not in text

    # every PATCH of a GVK carries fieldValidation (kubectl's QueryParamVerifierV3 picks any of them)
    found = 0
    for item in doc["paths"].values():
        for method in ("patch", "put", "post"):
            op = item.get(method)
            if op is None or op.get("x-kubernetes-action") == "connect":
                continue
            found += 1
            assert "fieldValidation" in [p["name"] for p in op.get("parameters", [])], op["operationId"]
    assert found >= 6
    patch = doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]
    assert sorted(patch["requestBody"]["content"]) == sorted(openapi.PATCH_TYPES)
    assert patch["parameters"][2] == {"description": patch["parameters"][2]["description"], "in": "query",
                                      "name": "fieldValidation", "schema": {"type": "string", "uniqueItems": True}}
    lease = openapi.build_v3(KINDS, "apis/coordination.k8s.io/v1")
    assert "io.k8s.api.coordination.v1.Lease" in lease["components"]["schemas"]
    with pytest.raises(KeyError):
        openapi.build_v3(KINDS, "apis/apps/v1")
    assert openapi.v3_bytes(KINDS, "apis/nope/v1") is None
    assert set(openapi.v3_documents(KINDS)) == set(idx["paths"])


# --------------------------------------------------------------------------- the real kubectl
PATCHES: list[tuple[str, dict]] = []  # (content type, body) of the PATCH requests the test server saw


def _app(kinds: list[Kind]) -> web.Application:
    async def api(request: web.Request) -> web.Response:
        if discovery.negotiate_aggregated(request.headers.get("Accept", "")):
            return web.Response(body=orjson.dumps(discovery.aggregated(kinds, legacy=True)),
                                headers={"Content-Type": discovery.AGGREGATED_CONTENT_TYPE})
        return web.json_response(discovery.api_versions(request.host))

    async def apis(request: web.Request) -> web.Response:
        if discovery.negotiate_aggregated(request.headers.get("Accept", "")):
            return web.Response(body=orjson.dumps(discovery.aggregated(kinds, legacy=False)),
                                headers={"Content-Type": discovery.AGGREGATED_CONTENT_TYPE})
        return web.json_response(discovery.api_group_list(kinds))

    async def core_v1(request: web.Request) -> web.Response:
        return web.json_response(discovery.api_resource_list(kinds, "", "v1"))

    async def group_v(request: web.Request) -> web.Response:
        doc = discovery.api_resource_list(kinds, request.match_info["group"], request.match_info["version"])
        if doc is None:
            raise web.HTTPNotFound()
        return web.json_response(doc)

    async def version(request: web.Request) -> web.Response:
        return web.json_response(discovery.version_info())

    async def v2(request: web.Request) -> web.Response:
        if "protobuf" in request.headers.get("Accept", ""):
            raise web.HTTPNotAcceptable()
        data, h = openapi.v2_bytes(kinds)
        return web.Response(body=data, content_type="application/json", headers={"ETag": f'"{h}"'})

    async def v3_index(request: web.Request) -> web.Response:
        return web.json_response(openapi.build_v3_index(kinds))

    async def v3(request: web.Request) -> web.Response:
        got = openapi.v3_bytes(kinds, request.match_info["path"])
        if got is None:
            raise web.HTTPNotFound()
        data, h = got
        return web.Response(body=data, content_type="application/json", headers={"ETag": f'"{h}"'})

    async def create_pod(request: web.Request) -> web.Response:
        raw = await request.read()
        obj = orjson.loads(raw)
        mode = fieldvalidation.validate_mode(request.query.get("fieldValidation"))
        err, warnings = fieldvalidation.check(obj, raw, request.content_type, POD.schema_ref, mode)
        if err is not None:
            return web.json_response(err.status(), status=err.code)
        obj.setdefault("metadata", {})["namespace"] = request.match_info["ns"]
        if request.query.get("dryRun") != "All":
            store[obj["metadata"]["name"]] = obj
        resp = web.json_response(obj, status=201)
        for w in warnings:
            resp.headers.add("Warning", '299 - "' + w.replace('"', '\\"') + '"')
        return resp

    store: dict[str, dict] = {}
    patches = PATCHES
    patches.clear()

    async def get_pod(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in store:
            st = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": f'pods "{name}" not found', "reason": "NotFound",
                  "details": {"name": name, "kind": "pods"}, "code": 404}
            return web.json_response(st, status=404)
        return web.json_response(store[name])

    async def patch_pod(request: web.Request) -> web.Response:
        patches.append((request.content_type, orjson.loads(await request.read())))
        return web.json_response(store[request.match_info["name"]])

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}", get_pod)
    app.router.add_patch("/api/v1/namespaces/{ns}/pods/{name}", patch_pod)
    app.router.add_get("/api", api)
    app.router.add_get("/apis", apis)
    app.router.add_get("/api/v1", core_v1)
    app.router.add_get("/apis/{group}/{version}", group_v)
    app.router.add_get("/version", version)
    app.router.add_get("/openapi/v2", v2)
    app.router.add_get("/openapi/v3", v3_index)
    app.router.add_get("/openapi/v3/{path:.+}", v3)
    app.router.add_post("/api/v1/namespaces/{ns}/pods", create_pod)
    return app


@pytest.fixture
async def server():
    runner = web.AppRunner(_app(KINDS))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def _kubectl(server: str, tmp_path: Path, *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    env = dict(os.environ, HOME=str(tmp_path), KUBECONFIG=str(tmp_path / "none"))
    proc = await asyncio.create_subprocess_exec(
        str(KUBECTL), "--server", server, "--cache-dir", str(tmp_path / "cache"), *args,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    return proc.returncode or 0, out.decode(), err.decode()


needs_kubectl = pytest.mark.skipif(not (KUBECTL.exists() or shutil.which("kubectl")), reason="no kubectl")


@needs_kubectl
async def test_kubectl_explain(server, tmp_path):
    rc, out, err = await _kubectl(server, tmp_path, "explain", "pod.spec.containers")
    assert rc == 0, err
    assert "KIND:       Pod" in out
    assert "VERSION:    v1" in out
    assert "FIELD: containers <[]Container>" in out
    for field in ("image\t<string>", "name\t<string> -required-", "ports\t<[]ContainerPort>",
                  "resources\t<ResourceRequirements>"):
        assert field in out, field

    rc, out, err = await _kubectl(server, tmp_path, "explain", "pods", "--recursive")
    assert rc == 0, err
    assert "KIND:       Pod" in out and "containerPort\t<integer> -required-" in out

    rc, out, err = await _kubectl(server, tmp_path, "explain", "leases.spec")
    assert rc == 0, err
    assert "GROUP:      coordination.k8s.io" in out and "holderIdentity\t<string>" in out

    rc, out, err = await _kubectl(server, tmp_path, "explain", "po.spec.containers.ports.containerPort")
    assert rc == 0, err
    assert "FIELD: containerPort <integer>" in out


POD_YAML = b"""apiVersion: v1
kind: Pod
metadata:
  name: p1
spec:
  foo: bar
  containers:
  - name: c
    image: busybox
    bogus: 1
"""


@needs_kubectl
async def test_kubectl_server_side_field_validation(server, tmp_path):
    # --validate=strict (kubectl's default is also strict) needs fieldValidation in the v3 PATCH params
    rc, out, err = await _kubectl(server, tmp_path, "create", "-n", "default", "--validate=strict", "-f", "-",
                                  stdin=POD_YAML)
    assert rc != 0
    assert 'strict decoding error: unknown field "spec.containers[0].bogus", unknown field "spec.foo"' in err, err

    rc, out, err = await _kubectl(server, tmp_path, "create", "-n", "default", "--validate=warn", "-f", "-",
                                  stdin=POD_YAML)
    assert rc == 0, err
    assert 'Warning: unknown field "spec.containers[0].bogus"' in err
    assert 'Warning: unknown field "spec.foo"' in err
    assert "pod/p1 created" in out

    rc, out, err = await _kubectl(server, tmp_path, "create", "-n", "default", "--validate=false", "-f", "-",
                                  stdin=POD_YAML)
    assert rc == 0, err
    assert "Warning" not in err


@needs_kubectl
async def test_kubectl_apply_uses_openapi_merge_keys(server, tmp_path):
    """Client-side apply computes a strategic merge patch from the served schema (merge key "name")."""
    v1 = b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: a\n    image: one\n"
    rc, out, err = await _kubectl(server, tmp_path, "apply", "-n", "default", "-f", "-", stdin=v1)
    assert rc == 0, err
    assert "pod/web created" in out
    v2 = v1.replace(b"image: one", b"image: two")
    rc, out, err = await _kubectl(server, tmp_path, "apply", "-n", "default", "-f", "-", stdin=v2)
    assert rc == 0, err
    ct, patch = PATCHES[-1]
    assert ct == "application/strategic-merge-patch+json"
    assert patch["spec"]["$setElementOrder/containers"] == [{"name": "a"}]
    assert patch["spec"]["containers"] == [{"image": "two", "name": "a"}]
