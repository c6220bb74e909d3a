"""Services: the ClusterIP/NodePort allocators over a real store, the Service store's
allocation around create/update/delete (nothing leaks on a failed write), validation texts,
and the EndpointSlice / Endpoints computation."""

from __future__ import annotations

import asyncio
import copy

import pytest

from kubelite.api import errors
from kubelite.controllers.endpoints import desired_subsets
from kubelite.controllers.endpointslice import desired_slices, find_port, slice_labels
from kubelite.kinds.service_alloc import AllocationError, Bitmap, IPRange, NodePorts, PortRange, ServiceIPs
from kubelite.kinds.services import validate_service


def run(coro):
    return asyncio.run(coro)


async def _store(tmp_path):
    from kubelite.store.sqlite import SQLiteStore

    s = SQLiteStore(str(tmp_path / "db"))
    await s.start()
    return s


def test_ip_range_bounds_and_texts():
    r = IPRange.parse("10.43.0.0/16")
    assert r.first() == "10.43.0.1" and r.size == 65534
    assert r.offset("10.43.0.1") == 0 and r.address(r.offset("10.43.255.254")) == "10.43.255.254"
    for bad in ("10.43.0.0", "10.43.255.255", "10.44.0.1", "nonsense"):
        with pytest.raises(AllocationError) as exc:
            r.offset(bad)
        assert str(exc.value) == (f"the provided IP ({bad}) is not in the valid range. The range of valid IPs is "
                                  "10.43.0.0/16")
    with pytest.raises(ValueError):
        IPRange.parse("10.0.0.0/8")
    with pytest.raises(AllocationError, match="provided port is not in the valid range. The range of valid ports "
                                              "is 30000-32767"):
        PortRange.parse("30000-32767").offset(8080)


def test_bitmap_prefers_the_dynamic_band_then_fills_the_static_one():
    import random

    bm = Bitmap(20)
    rng = random.Random(1)
    got = [bm.next_free(16, rng) for _ in range(1)]
    assert got[0] is not None and got[0] >= 16
    for i in range(16, 20):
        bm.set(i)
    i = bm.next_free(16, rng)
    assert i is not None and i < 16
    for j in range(16):
        bm.set(j)
    assert bm.next_free(16, rng) is None
    assert Bitmap.decode(20, bm.encode()).bits == bm.bits


def test_ip_allocator_is_shared_through_the_store(tmp_path):
    async def main():
        store = await _store(tmp_path)
        a = ServiceIPs(store, "10.43.0.0/28")  # 14 addresses, all in the static band
        b = ServiceIPs(store, "10.43.0.0/28")  # a second server on the same datastore
        assert await a.allocate("10.43.0.1") == "10.43.0.1"
        with pytest.raises(AllocationError, match="^provided IP is already allocated$"):
            await b.allocate("10.43.0.1")
        got = set(await asyncio.gather(*(x.allocate("") for x in [a, b] * 6 + [a])))
        assert len(got) == 13 and "10.43.0.1" not in got
        with pytest.raises(AllocationError, match="range is full"):
            await b.allocate("")
        await a.release(["10.43.0.1"])
        assert await b.allocate("10.43.0.1") == "10.43.0.1"
        await a.release(["10.43.0.1"])
        assert await a.allocate("", dry_run=True) == "10.43.0.1"  # a dry run takes nothing
        assert "10.43.0.1" not in await a.allocated()
        await store.close()

    run(main())


def test_node_ports(tmp_path):
    async def main():
        store = await _store(tmp_path)
        p = NodePorts(store, "30000-30009")
        assert await p.allocate([30000], 2) and len(await p.allocated()) == 3
        taken = await p.allocated()
        free = next(x for x in range(30001, 30010) if x not in taken)  # the two random ones may be anywhere
        with pytest.raises(AllocationError) as exc:
            await p.allocate([free, 30000], 0)
        assert exc.value.index == 1 and str(exc.value) == "provided port is already allocated"
        assert free not in await p.allocated()  # a failed allocation changes nothing
        await store.close()

    run(main())


SVC = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
       "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}


def test_service_store_allocates_releases_and_never_leaks(tmp_path):
    from kubelite.apiserver.registry import DeleteOptions, WriteOptions
    from kubelite.apiserver.stores import Stores
    from kubelite.kinds.registry import default_registry
    from kubelite.kinds.service_rest import configure

    async def main():
        store = await _store(tmp_path)
        stores = Stores.build(default_registry(), store)
        svcs = configure(stores, "10.43.0.0/24", "30000-30100")
        opts = WriteOptions()
        made = await svcs.create("default", copy.deepcopy(SVC), opts)
        spec = made["spec"]
        assert spec["clusterIPs"] == [spec["clusterIP"]] and spec["ipFamilies"] == ["IPv4"]
        assert spec["ipFamilyPolicy"] == "SingleStack" and spec["ports"][0]["protocol"] == "TCP"
        assert await svcs.ips.allocated() == [spec["clusterIP"]]
        # a create that fails after allocating (the name is taken) gives its IP back
        with pytest.raises(errors.StatusError) as exc:
            await svcs.create("default", copy.deepcopy(SVC), opts)
        assert exc.value.code == 409 and await svcs.ips.allocated() == [spec["clusterIP"]]
        # so does one that fails validation after allocating
        bad = copy.deepcopy(SVC)
        bad["metadata"]["name"] = "bad"
        bad["spec"]["type"] = "NodePort"
        bad["spec"]["ports"].append({"port": 80})
        with pytest.raises(errors.StatusError) as exc:
            await svcs.create("default", bad, opts)
        assert exc.value.code == 422 and "spec.ports[1]: Duplicate value" in exc.value.message
        assert await svcs.ips.allocated() == [spec["clusterIP"]] and await svcs.node_ports.allocated() == []
        # a type change allocates node ports; changing back releases them
        def to(t):
            def mutate(o):
                o["spec"]["type"] = t
                return o
            return mutate

        np, _ = await svcs.patch("default", "web", to("NodePort"), opts)
        port = np["spec"]["ports"][0]["nodePort"]
        assert await svcs.node_ports.allocated() == [port]
        back, _ = await svcs.patch("default", "web", to("ClusterIP"), opts)
        assert "nodePort" not in back["spec"]["ports"][0] and await svcs.node_ports.allocated() == []
        await svcs.delete("default", "web", DeleteOptions())
        assert await svcs.ips.allocated() == []
        again = copy.deepcopy(SVC)
        again["spec"]["clusterIP"] = spec["clusterIP"]
        assert (await svcs.create("default", again, opts))["spec"]["clusterIP"] == spec["clusterIP"]
        # the repair at start-up frees what no Service holds
        await svcs.ips.allocate("10.43.0.77")
        await svcs.repair()
        assert await svcs.ips.allocated() == [spec["clusterIP"]]
        await store.close()

    run(main())


def test_validation_texts():
    svc = copy.deepcopy(SVC)
    svc["spec"].update({"type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
                        "selector": {"app": "web", "bad key!": "x"},
                        "ports": [{"name": "a", "port": 80, "protocol": "TCP", "targetPort": 80},
                                  {"name": "a", "port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 30001}]})
    msgs = [str(e) for e in validate_service(svc)]
    assert 'spec.ports[1].name: Duplicate value: "a"' in msgs
    assert ("spec.ports[1]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), "
            "Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}") in msgs
    assert "spec.ports[1].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'" in msgs
    assert any(m.startswith('spec.selector: Invalid value: "bad key!"') for m in msgs)
    svc["spec"] = {"type": "Bogus", "ports": [], "sessionAffinity": "None"}
    msgs = [str(e) for e in validate_service(svc)]
    assert "spec.ports: Required value" in msgs
    assert ('spec.type: Unsupported value: "Bogus": supported values: "ClusterIP", "ExternalName", '
            '"LoadBalancer", "NodePort"') in msgs


def _pod(name, ip, ready=True, labels=None, deleting=False, ports=None, phase="Running"):
    meta = {"name": name, "namespace": "default", "uid": f"uid-{name}", "labels": labels or {"app": "web"}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta,
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": ports or [
                {"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}] if ip else [],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


SLICE_SVC = {"metadata": {"name": "web", "namespace": "default", "uid": "svc-uid", "labels": {"tier": "fe"}},
             "spec": {"selector": {"app": "web"}, "ipFamilies": ["IPv4"], "clusterIP": "10.43.0.9",
                      "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}]}}


def test_slices_from_pods():
    pods = [_pod("b", "10.244.0.3", ready=False), _pod("a", "10.244.0.2"), _pod("c", "10.244.0.4", deleting=True),
            _pod("x", "10.244.0.5", labels={"app": "other"}), _pod("nip", ""),
            _pod("done", "10.244.0.6", phase="Succeeded")]
    (ports, eps), = desired_slices(SLICE_SVC, pods)
    assert ports == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert [e["addresses"] for e in eps] == [["10.244.0.2"], ["10.244.0.3"], ["10.244.0.4"]]
    assert [e["conditions"] for e in eps] == [
        {"ready": True, "serving": True, "terminating": False},
        {"ready": False, "serving": False, "terminating": False},
        {"ready": False, "serving": True, "terminating": True}]
    assert eps[0]["targetRef"] == {"kind": "Pod", "namespace": "default", "name": "a", "uid": "uid-a"}
    assert eps[0]["nodeName"] == "n1" and "zone" not in eps[0]
    labels = slice_labels(SLICE_SVC)
    assert labels == {"tier": "fe", "kubernetes.io/service-name": "web",
                      "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}


def test_slices_split_by_ports_and_size():
    pods = [_pod(f"p{i:03}", f"10.244.1.{i}") for i in range(1, 151)]
    pods.append(_pod("other", "10.244.2.1", ports=[{"name": "http", "containerPort": 9090}]))
    pods.append(_pod("noport", "10.244.2.2", ports=[{"name": "metrics", "containerPort": 9100}]))
    slices = desired_slices(SLICE_SVC, pods)
    assert sorted(len(e) for _, e in slices) == [1, 1, 50, 100]
    assert {p[0]["port"] if p else None for p, _ in slices} == {8080, 9090, None}
    assert desired_slices({**SLICE_SVC, "spec": {**SLICE_SVC["spec"], "selector": {"app": "none"}}}, pods) == \
        [([], [])]
    assert find_port(pods[0], {"targetPort": 1234}) == 1234
    assert find_port(pods[0], {"targetPort": "http", "protocol": "UDP"}) is None


def test_legacy_endpoints_subsets():
    pods = [_pod("a", "10.244.0.2"), _pod("b", "10.244.0.3", ready=False), _pod("c", "10.244.0.4", deleting=True)]
    (subset,) = desired_subsets(SLICE_SVC, pods)
    assert [a["ip"] for a in subset["addresses"]] == ["10.244.0.2"]
    assert [a["ip"] for a in subset["notReadyAddresses"]] == ["10.244.0.3"]
    assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert desired_subsets(SLICE_SVC, []) == []
    (subset,) = desired_subsets(SLICE_SVC, pods, capacity=1)  # over capacity: ready addresses first
    assert [a["ip"] for a in subset["addresses"]] == ["10.244.0.2"] and "notReadyAddresses" not in subset


def test_controller_keeps_one_slice_through_a_burst_of_pod_changes(tmp_path):
    from kubelite.apiserver.registry import ListOptions, WriteOptions
    from kubelite.apiserver.stores import Stores
    from kubelite.controllers.endpointslice import EndpointSliceController
    from kubelite.kinds.registry import default_registry
    from kubelite.kinds.service_rest import configure

    async def main():
        store = await _store(tmp_path)
        stores = Stores.build(default_registry(), store)
        configure(stores, "10.43.0.0/24", "30000-30100")
        opts = WriteOptions()
        pods, slices = stores.get("", "pods"), stores.get("discovery.k8s.io", "endpointslices")
        await stores.get("", "services").create("default", copy.deepcopy(SVC), opts)
        c = EndpointSliceController(stores)
        task = asyncio.create_task(c.run())

        async def slice_state():
            items, _, _, _ = await slices.list("default", ListOptions())
            return [s for s in items if s["metadata"]["labels"].get("kubernetes.io/service-name") == "web"]

        async def wait(pred, what):
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while loop.time() < deadline:
                got = await slice_state()
                if pred(got):
                    return got
                await asyncio.sleep(0.02)
            raise AssertionError(f"timed out: {what}: {got}")

        await wait(lambda s: len(s) == 1 and not s[0].get("endpoints"), "placeholder")
        for i in range(5):
            p = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{i}", "labels": {"app": "web"}},
                 "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x"}]}}
            await pods.create("default", p, opts)

            def st(o, i=i):
                o["status"] = {"phase": "Running", "podIP": f"10.244.0.{i + 2}", "podIPs": [{"ip": f"10.244.0.{i + 2}"}],
                               "conditions": [{"type": "Ready", "status": "True"}]}
                return o

            await pods.patch("default", f"p{i}", st, opts, "status")
        got = await wait(lambda s: len(s) == 1 and len(s[0].get("endpoints") or []) == 5, "five endpoints")
        assert [e["addresses"][0] for e in got[0]["endpoints"]] == [f"10.244.0.{i + 2}" for i in range(5)]
        assert got[0]["ports"] == [{"name": "", "port": 8080, "protocol": "TCP"}]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await store.close()

    run(main())


def test_updates_allocate_what_the_new_type_needs_and_release_the_rest(tmp_path):
    from kubelite.apiserver.registry import WriteOptions
    from kubelite.apiserver.stores import Stores
    from kubelite.kinds.registry import default_registry
    from kubelite.kinds.service_rest import configure

    async def main():
        store = await _store(tmp_path)
        stores = Stores.build(default_registry(), store)
        svcs = configure(stores, "10.43.0.0/24", "30000-30100")
        opts = WriteOptions()
        ext = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"},
               "spec": {"type": "ExternalName", "externalName": "example.com"}}
        made = await svcs.create("default", ext, opts)
        assert "clusterIP" not in made["spec"] and await svcs.ips.allocated() == []
        np = copy.deepcopy(SVC)
        np["metadata"]["name"] = "np"
        np["spec"].update({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30050}]})
        await svcs.create("default", np, opts)
        held_ips = await svcs.ips.allocated()

        def set_spec(**kw):
            def mutate(o):
                o["spec"].update(kw)
                return o
            return mutate

        # to NodePort asking for a taken port: refused, and the ClusterIP it was given goes back
        with pytest.raises(errors.StatusError) as exc:
            await svcs.patch("default", "ext", set_spec(type="NodePort", externalName=None,
                                                         ports=[{"port": 80, "nodePort": 30050}]), opts)
        assert exc.value.message == ('Service "ext" is invalid: spec.ports[0].nodePort: Invalid value: 30050: '
                                     'provided port is already allocated')
        assert await svcs.ips.allocated() == held_ips and await svcs.node_ports.allocated() == [30050]
        out, _ = await svcs.patch("default", "ext", set_spec(type="ClusterIP", externalName=None,
                                                              ports=[{"port": 80}]), opts)
        ip = out["spec"]["clusterIP"]
        assert out["spec"]["clusterIPs"] == [ip] and ip in await svcs.ips.allocated()
        # a PUT that leaves out the allocated values keeps them (patchAllocatedValues)
        put = copy.deepcopy(np)
        put["spec"]["ports"] = [{"port": 80}]
        out, _ = await svcs.update("default", "np", put, opts)
        assert out["spec"]["ports"][0]["nodePort"] == 30050 and out["spec"]["clusterIP"] == held_ips[0]
        # to ExternalName: the address and the port are released
        await svcs.patch("default", "np", set_spec(type="ExternalName", externalName="a.example"), opts)
        assert await svcs.ips.allocated() == [ip] and await svcs.node_ports.allocated() == []
        await store.close()

    run(main())
