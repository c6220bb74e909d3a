"""Components survive faults: a `kubelite server` run in process over a store whose watches
can be broken on demand, with every component made to crash once at its start. Each crash is
logged with its traceback and the component restarted; every watch that breaks is listed
again; a stored object of the wrong shape stops nothing; and afterwards a namespace deletion
and a garbage-collector cascade still complete."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from kubelite.api import errors
from kubelite.client.api import Client
from kubelite.client.informer import Informer
from kubelite.config import ServerConfig
from kubelite.launcher.server import Server
from kubelite.launcher.supervisor import COMPONENT, Supervisor
from kubelite.store.base import Event, StoreError
from kubelite.store.sqlite import SQLiteStore
from tests.e2e.harness import free_port


class FaultyStore(SQLiteStore):
    """SQLite, and ``break_watches()`` ends every open watch with a store error."""

    _broken: asyncio.Event | None = None
    # no synchronous feed for the API server's watch cache: it follows this store's watch, which
    # break_watches() breaks too (the cache then ends every watch it serves, and reloads)
    subscribe = None  # type: ignore[assignment]

    def break_watches(self) -> None:
        old, self._broken = self._broken, asyncio.Event()
        if old is not None:
            old.set()

    def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        if self._broken is None:
            self._broken = asyncio.Event()
        return self._guarded(super().watch(prefix, from_revision), self._broken)

    @staticmethod
    async def _guarded(inner: AsyncIterator[Event], broken: asyncio.Event) -> AsyncIterator[Event]:
        it = inner.__aiter__()
        brk = asyncio.ensure_future(broken.wait())
        nxt: asyncio.Future[Event] | None = None
        try:
            while True:
                nxt = asyncio.ensure_future(it.__anext__())
                await asyncio.wait({nxt, brk}, return_when=asyncio.FIRST_COMPLETED)
                if not nxt.done():
                    raise StoreError("injected watch failure")
                try:
                    ev = nxt.result()
                except StopAsyncIteration:
                    return
                nxt = None
                yield ev
        finally:
            for f in (nxt, brk):
                if f is not None and not f.done():
                    f.cancel()
                if f is not None:
                    with contextlib.suppress(BaseException):
                        await f
            with contextlib.suppress(BaseException):
                await it.aclose()  # type: ignore[attr-defined]


def _crash_once(cls: Any, monkeypatch: pytest.MonkeyPatch, method: str = "run") -> None:
    """The first run of every instance of ``cls`` in each supervised component raises (an
    informer is shared by the components that watch one resource: each of them sees it crash);
    later runs are the real one. ``method``: the coroutine the component runs."""
    real = getattr(cls, method)
    crashed: set[tuple[int, str]] = set()

    async def run(self: Any, *args: Any, **kwargs: Any) -> None:
        key = (id(self), COMPONENT.get())
        if key not in crashed:
            crashed.add(key)
            await asyncio.sleep(0)
            raise RuntimeError(f"injected crash of {type(self).__name__}")
        await real(self, *args, **kwargs)

    monkeypatch.setattr(cls, method, run)


async def _eventually(check, timeout: float = 30.0, what: str = "condition") -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = None
    while loop.time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last={last!r}")


async def _gone(c: Client, plural: str, name: str, ns: str = "") -> bool:
    try:
        await c.get("v1", plural, name, namespace=ns)
    except errors.StatusError as exc:
        return exc.code == 404
    return False


@pytest.fixture
async def faulty_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    from kubelite.apiserver.metrics import APIMetrics
    from kubelite.auth.aggregation import AggregationController
    from kubelite.controllers.bootstrapsigner import TokenCleaner
    from kubelite.controllers.csr import CSRCleaner
    from kubelite.controllers.kubernetesservice import KubernetesService
    from kubelite.metricsserver.scraper import MetricsServer
    from kubelite.tls.reload import ServingCertReloader

    # every informer (the security informers are components; every controller runs its own)
    # and the components without one crash at their first start
    for cls in (Informer, AggregationController, TokenCleaner, CSRCleaner, ServingCertReloader, KubernetesService,
                MetricsServer):
        _crash_once(cls, monkeypatch)
    _crash_once(APIMetrics, monkeypatch, "run_object_counter")
    caplog.set_level(logging.INFO)
    cfg = ServerConfig(data_dir=tmp_path / "data", bind_address="127.0.0.1", port=free_port(), disable_agent=True,
                       disable_scheduler=True)
    store = FaultyStore(str(cfg.db_path), compact_interval=0)
    server = Server(cfg, store=store, supervisor=Supervisor(initial_backoff=0.05, max_backoff=0.2))
    await server.start()
    client = Client.from_kubeconfig(cfg.kubeconfig_path)
    try:
        yield server, store, client
    finally:
        await client.close()
        await server.stop()


async def test_components_restart_and_reconcile_after_faults(faulty_server, caplog):
    server, store, c = faulty_server
    sup = server.supervisor

    # every component crashed once, was logged with its traceback, and runs again
    assert set(sup.components) >= {"namespace-controller", "root-ca-publisher", "csr-approver", "csr-signer",
                                   "csr-cleaner", "kubernetes-service", "cluster-info-publisher", "token-cleaner", "garbage-collector",
                                   "resourcequota-controller", "clusterrole-aggregation", "serving-cert-reloader",
                                   "informer/pods"}
    try:
        await _eventually(lambda: _all(sup, lambda comp: comp.restarts >= 1 and comp.healthy), what="restarts")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: not restarted: {_not_restarted(sup)}") from None
    crashed = {r.getMessage().split()[1] for r in caplog.get_records("setup") + caplog.records
               if "crashed; restarting" in r.getMessage() and r.exc_info is not None}
    assert crashed >= set(sup.components)
    status, body = await _readyz(c)
    assert status == 200 and "[+]component/garbage-collector ok" in body

    # a stored object of a shape the API would refuse (written behind its back) stops nothing
    await store.create("/registry/core/configmaps/default/poison",
                       orjson.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                                     "metadata": {"name": "poison", "namespace": "default", "uid": "p-1",
                                                  "finalizers": 5, "ownerReferences": "abc"}}))

    # every watch breaks: each informer lists again and goes on
    store.break_watches()
    await _eventually(lambda: _relisted(caplog), what="informers listing again")

    # afterwards: a namespace's deletion completes, and a GC cascade
    await c.create("v1", "namespaces", {"metadata": {"name": "doomed"}})
    await c.create("v1", "configmaps", {"metadata": {"name": "inside"}}, namespace="doomed")
    owner = await c.create("v1", "configmaps", {"metadata": {"name": "owner"}}, namespace="default")
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    await c.create("v1", "configmaps", {"metadata": {"name": "dependent", "ownerReferences": [ref]}},
                   namespace="default")
    await c.delete("v1", "namespaces", "doomed")
    await c.delete("v1", "configmaps", "owner", namespace="default")
    await _eventually(lambda: _gone(c, "configmaps", "dependent", "default"), what="dependent collected")
    await _eventually(lambda: _gone(c, "namespaces", "doomed"), what="namespace deleted")
    # the namespace controller still gives new namespaces their default service account
    await c.create("v1", "namespaces", {"metadata": {"name": "fresh"}})
    await _eventually(lambda: _exists(c, "serviceaccounts", "default", "fresh"), what="default SA")


def _not_restarted(sup: Supervisor) -> list[str]:
    """The components that have not yet crashed, restarted and become healthy again."""
    return sorted(n for n, comp in sup.components.items() if not (comp.restarts >= 1 and comp.healthy))


async def _all(sup: Supervisor, pred) -> bool:
    return all(pred(comp) for comp in sup.components.values())


async def _exists(c: Client, plural: str, name: str, ns: str) -> bool:
    return not await _gone(c, plural, name, ns)


async def _relisted(caplog) -> bool:
    msgs = [r.getMessage() for r in caplog.records if r.name == "kubelite.informer"]
    names = {m.split()[1].rstrip(":") for m in msgs if "listing again" in m and "injected watch failure" in m}
    # the security informers, the namespace controller's and the garbage collector's among them
    return {"pods", "clusterroles.rbac.authorization.k8s.io", "namespaces", "configmaps"} <= names


async def _readyz(c: Client) -> tuple[int, str]:
    async with c._session.get(c.server + "/readyz?verbose") as resp:
        return resp.status, await resp.text()
