"""The kube-dns Service and its endpoints (over the real stores): created at --cluster-dns with
k3s's ports, leading to the node's pod-network gateway once node IPAM gave the node a CIDR,
put back when changed, and left alone (no rewrite) when already right."""

from __future__ import annotations

import asyncio
import copy

from kubelite.dns.service import KubeDNSService


def test_kube_dns_service_and_endpoints(tmp_path):
    from kubelite.apiserver.registry import DeleteOptions, ListOptions, WriteOptions
    from kubelite.apiserver.stores import Stores
    from kubelite.kinds.registry import default_registry
    from kubelite.kinds.service_rest import configure
    from kubelite.store.sqlite import SQLiteStore

    async def main():
        store = SQLiteStore(str(tmp_path / "db"))
        await store.start()
        try:
            stores = Stores.build(default_registry(), store)
            configure(stores, "10.43.0.0/16", "30000-32767")
            opts = WriteOptions()
            await stores.get("", "namespaces").create("", {"apiVersion": "v1", "kind": "Namespace",
                                                           "metadata": {"name": "kube-system"}}, opts)
            nodes = stores.get("", "nodes")
            await nodes.create("", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}, opts)
            r = KubeDNSService(stores, "10.43.0.10", "n1")
            assert await r.reconcile() is False  # no pod CIDR yet: the Service only
            svc = await stores.get("", "services").get("kube-system", "kube-dns")
            assert svc["spec"]["clusterIP"] == "10.43.0.10" and "selector" not in svc["spec"]
            assert [(p["name"], p["port"], p["protocol"]) for p in svc["spec"]["ports"]] == [
                ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")]
            assert svc["metadata"]["labels"]["kubernetes.io/name"] == "CoreDNS"

            node = await nodes.get("", "n1")
            node.setdefault("spec", {})["podCIDR"] = "10.244.3.0/24"
            await nodes.update("", "n1", node, opts)
            assert await r.reconcile() is True
            sl = await stores.get("discovery.k8s.io", "endpointslices").get("kube-system", "kube-dns-n1")
            assert sl["endpoints"][0]["addresses"] == ["10.244.3.1"] and sl["endpoints"][0]["nodeName"] == "n1"
            assert sl["metadata"]["labels"]["kubernetes.io/service-name"] == "kube-dns"
            assert {p["name"]: (p["port"], p["protocol"]) for p in sl["ports"]} == {
                "dns": (53, "UDP"), "dns-tcp": (53, "TCP"), "metrics": (9153, "TCP")}
            ep = await stores.get("", "endpoints").get("kube-system", "kube-dns")
            assert ep["subsets"][0]["addresses"][0]["ip"] == "10.244.3.1"

            # an unchanged pass writes nothing
            rvs = [sl["metadata"]["resourceVersion"], ep["metadata"]["resourceVersion"], svc["metadata"][
                "resourceVersion"]]
            await r.reconcile()
            now = [(await stores.get(g, p).get("kube-system", n))["metadata"]["resourceVersion"]
                   for g, p, n in (("discovery.k8s.io", "endpointslices", "kube-dns-n1"), ("", "endpoints", "kube-dns"),
                                   ("", "services", "kube-dns"))]
            assert now == rvs

            # changed or deleted: put back
            bad = copy.deepcopy(sl)
            bad["endpoints"][0]["addresses"] = ["10.9.9.9"]
            await stores.get("discovery.k8s.io", "endpointslices").update("kube-system", "kube-dns-n1", bad, opts)
            await stores.get("", "endpoints").delete("kube-system", "kube-dns", DeleteOptions())
            await r.reconcile()
            sl = await stores.get("discovery.k8s.io", "endpointslices").get("kube-system", "kube-dns-n1")
            assert sl["endpoints"][0]["addresses"] == ["10.244.3.1"]
            assert (await stores.get("", "endpoints").get("kube-system", "kube-dns"))["subsets"]

            # a second server's node: both are endpoints; a deleted Node's slice goes; a stopping server's too
            await nodes.create("", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"},
                                    "spec": {"podCIDR": "10.244.4.0/24"}}, opts)
            r2 = KubeDNSService(stores, "10.43.0.10", "n2")
            await r2.reconcile()
            ep = await stores.get("", "endpoints").get("kube-system", "kube-dns")
            assert [a["ip"] for a in ep["subsets"][0]["addresses"]] == ["10.244.3.1", "10.244.4.1"]
            await nodes.delete("", "n2", DeleteOptions())
            await r.reconcile()
            ep = await stores.get("", "endpoints").get("kube-system", "kube-dns")
            assert [a["ip"] for a in ep["subsets"][0]["addresses"]] == ["10.244.3.1"]
            await r.remove()
            ep = await stores.get("", "endpoints").get("kube-system", "kube-dns")
            assert ep.get("subsets", []) == []
            items, _, _, _ = await stores.get("discovery.k8s.io", "endpointslices").list("kube-system", ListOptions())
            assert items == []
        finally:
            await store.close()

    asyncio.run(main())
