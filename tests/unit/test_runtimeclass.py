"""RuntimeClass (node.k8s.io/v1): validation, the RuntimeClass admission plugin (overhead,
scheduling, unknown class) and the agent's handler lookup."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kubelite.admission.runtimeclass import RuntimeClassAdmission, merge_tolerations
from kubelite.api import errors
from kubelite.apiserver.admission import CREATE, Attributes
from kubelite.apiserver.registry import WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.kinds.registry import default_registry
from kubelite.kinds.runtimeclasses import RUNTIMECLASS
from kubelite.store.sqlite import SQLiteStore


def _rc(name: str, handler: str = "runc", **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": name}, "handler": handler,
            **extra}


def _pod(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


def test_validation() -> None:
    v = RUNTIMECLASS.strategy
    assert v.validate(_rc("ok")) == []
    errs = [str(e) for e in v.validate(_rc("bad", handler="Not_A_Label"))]
    assert any(e.startswith("handler: Invalid value: \"Not_A_Label\"") for e in errs), errs
    assert v.validate(_rc("empty", handler=""))
    assert [str(e) for e in v.validate_update(_rc("x", "other"), _rc("x"))] == [
        'handler: Invalid value: "other": field is immutable']
    assert v.validate(_rc("oh", overhead={"podFixed": {"cpu": "nope"}}))
    assert v.validate(_rc("sch", scheduling={"tolerations": [{"operator": "Bogus"}]}))


def test_merge_tolerations() -> None:
    a = {"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}
    exists_all = {"operator": "Exists"}
    assert merge_tolerations([a], [a]) == [a]
    assert merge_tolerations([a], [exists_all]) == [exists_all]
    b = {"key": "other", "operator": "Exists"}
    assert merge_tolerations([a], [b]) == [a, b]


def test_admission(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        backend = SQLiteStore(str(tmp_path / "db"))
        await backend.start()
        try:
            stores = Stores.build(default_registry(), backend)
            rcs = stores.get("node.k8s.io", "runtimeclasses")
            await rcs.create("", _rc("fat", overhead={"podFixed": {"cpu": "250m", "memory": "64Mi"}},
                                     scheduling={"nodeSelector": {"sandbox": "yes"},
                                                 "tolerations": [{"key": "sandbox", "operator": "Exists"}]}),
                             WriteOptions())
            await rcs.create("", _rc("plain"), WriteOptions())
            plugin = RuntimeClassAdmission(stores)
            kind = stores.get("", "pods").kind

            async def admit(pod: dict[str, Any]) -> dict[str, Any]:
                a = Attributes(CREATE, kind, "default", pod["metadata"]["name"], pod, None)
                await plugin.admit(a)
                await plugin.validate(a)
                return pod

            got = await admit(_pod("p1", runtimeClassName="fat", nodeSelector={"zone": "a"}))
            assert got["spec"]["overhead"] == {"cpu": "250m", "memory": "64Mi"}
            assert got["spec"]["nodeSelector"] == {"zone": "a", "sandbox": "yes"}
            assert got["spec"]["tolerations"] == [{"key": "sandbox", "operator": "Exists"}]
            # the same overhead, written differently, is fine; a different one is refused
            assert (await admit(_pod("p2", runtimeClassName="fat",
                                     overhead={"cpu": "0.25", "memory": "64Mi"})))["spec"]["overhead"]
            with pytest.raises(errors.StatusError) as ei:
                await admit(_pod("p3", runtimeClassName="fat", overhead={"cpu": "1"}))
            assert ei.value.code == 403 and "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined " \
                                              "Overhead" in str(ei.value)
            with pytest.raises(errors.StatusError) as ei:
                await admit(_pod("p4", runtimeClassName="fat", nodeSelector={"sandbox": "no"}))
            assert "conflict: runtimeClass.scheduling.nodeSelector[sandbox] = yes; " \
                   "pod.spec.nodeSelector[sandbox] = no" in str(ei.value)
            with pytest.raises(errors.StatusError) as ei:
                await admit(_pod("p5", runtimeClassName="missing"))
            assert ei.value.code == 403
            assert 'pods "p5" is forbidden: pod rejected: RuntimeClass "missing" not found' in str(ei.value)
            with pytest.raises(errors.StatusError) as ei:
                await admit(_pod("p6", overhead={"cpu": "1"}))
            assert "pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead" \
                in str(ei.value)
            plain = await admit(_pod("p7", runtimeClassName="plain"))
            assert "overhead" not in plain["spec"] and "nodeSelector" not in plain["spec"]
        finally:
            await backend.close()

    asyncio.run(main())


def test_agent_handler_lookup() -> None:
    from kubelite.agent.runtime import RuntimeManager

    rm = RuntimeManager.__new__(RuntimeManager)
    classes = {"gvisor": _rc("gvisor", "runsc")}

    async def fetch(name: str) -> dict[str, Any] | None:
        return classes.get(name)

    rm.fetch_runtime_class = fetch

    async def main() -> None:
        assert await rm._runtime_handler(_pod("a")) == ""
        assert await rm._runtime_handler(_pod("b", runtimeClassName="gvisor")) == "runsc"
        with pytest.raises(LookupError) as ei:
            await rm._runtime_handler(_pod("c", runtimeClassName="nope"))
        assert ei.value.args[0] == 'runtimeclass.node.k8s.io "nope" not found'

    asyncio.run(main())


def test_pod_cgroup_counts_the_overhead() -> None:
    from kubelite.agent.cgroups import QUOTA_PERIOD, pod_resource_config

    pod = _pod("g", overhead={"cpu": "250m", "memory": "64Mi"})
    pod["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1", "memory": "128Mi"},
                                                 "requests": {"cpu": "1", "memory": "128Mi"}}
    pod["metadata"]["uid"] = "u"
    cfg = pod_resource_config(pod)
    assert cfg.memory_limit == (128 + 64) * 1024 * 1024
    assert cfg.cpu_quota == 1250 * QUOTA_PERIOD // 1000
    assert cfg.cpu_shares == 1250 * 1024 // 1000


def test_admission_reads_the_informer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import contextlib

    from kubelite.apiserver.listwatch import store_informer

    async def main() -> None:
        backend = SQLiteStore(str(tmp_path / "db"))
        await backend.start()
        try:
            stores = Stores.build(default_registry(), backend)
            rcs = stores.get("node.k8s.io", "runtimeclasses")
            await rcs.create("", _rc("fat", overhead={"podFixed": {"cpu": "1"}}), WriteOptions())
            inf = store_informer(rcs)
            task = asyncio.create_task(inf.run())
            try:
                await inf.wait_synced(5)
                plugin = RuntimeClassAdmission(stores, inf)
                pod = _pod("p", runtimeClassName="fat")
                a = Attributes(CREATE, stores.get("", "pods").kind, "default", "p", pod, None)
                await plugin.admit(a)
                pod["spec"]["overhead"]["cpu"] = "2"  # the pod's copy, not the cached class
                assert inf.get("", "fat")["overhead"]["podFixed"] == {"cpu": "1"}
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        finally:
            await backend.close()

    asyncio.run(main())


def test_sandbox_error_string_is_gos() -> None:
    import grpc

    from kubelite.agent.runtime import rpc_error_string

    exc = grpc.aio.AioRpcError(grpc.StatusCode.UNKNOWN, grpc.aio.Metadata(), grpc.aio.Metadata(),
                               details='failed to get sandbox runtime: no runtime for "x" is configured')
    assert rpc_error_string(exc) == ('rpc error: code = Unknown desc = failed to get sandbox runtime: no runtime '
                                     'for "x" is configured')
    exc = grpc.aio.AioRpcError(grpc.StatusCode.NOT_FOUND, grpc.aio.Metadata(), grpc.aio.Metadata(), details="d")
    assert rpc_error_string(exc) == "rpc error: code = NotFound desc = d"
