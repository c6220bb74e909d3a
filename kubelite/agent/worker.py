"""One worker per pod (pod_workers.go): a serial loop with an explicit lifecycle
syncing → terminating → terminated. Pods never block each other; one pod's steps never
race each other. Workers wake on API updates, on runtime changes (the agent's relist,
like PLEG) and on their own timers (back-off expiry, periodic resync)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from kubelite.agent import crispec
from kubelite.agent.crispec import PodRuntime
from kubelite.agent.runtime import RuntimeManager
from kubelite.agent.status import TERMINAL, StatusManager, generate_status
from kubelite.api import errors

log = logging.getLogger("kubelite.agent.worker")
Obj = dict[str, Any]
RESYNC_INTERVAL = 10.0


class PodWorker:
    def __init__(self, owner: PodWorkers, pod: Obj) -> None:
        self.owner = owner
        self.uid: str = pod["metadata"]["uid"]
        self.pod: Obj = pod
        self.removed = False  # gone from the API (DELETED event or missing on relist)
        self.state = "syncing"
        self.waiting: dict[str, tuple[str, str]] = {}
        self._wake = asyncio.Event()
        self._wake.set()
        self.task: asyncio.Task[None] | None = None
        self.terminal_done = False

    def update(self, pod: Obj | None) -> None:
        if pod is None:
            self.removed = True
        else:
            self.pod = pod
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        next_wake = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(next_wake, 0.01) if next_wake else RESYNC_INTERVAL)
            self._wake.clear()
            try:
                if self.removed or self.pod["metadata"].get("deletionTimestamp"):
                    await self._terminate()
                    return
                next_wake = await self._sync()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sync of pod %s failed", _name(self.pod))
                next_wake = 2.0

    async def _runtime(self) -> PodRuntime:
        got = await crispec.list_pod_runtime(self.owner.runtime.rt, self.uid)
        return got.get(self.uid, PodRuntime(self.uid))

    async def _sync(self) -> float:
        rm: RuntimeManager = self.owner.runtime
        pod = self.pod
        api_phase = (pod.get("status") or {}).get("phase")
        pr = await self._runtime()
        if api_phase in TERMINAL or self.terminal_done:
            # a finished pod keeps its status; make sure nothing runs and the IP is released
            self.owner.probes_remove(self.uid)
            if pr.running() or any(s.ready for s in pr.sandboxes):
                await rm.kill_pod(pod, pr, events=False)
            return RESYNC_INTERVAL
        if self.owner.first_sync_at.get(self.uid) is None:
            self.owner.first_sync_at[self.uid] = time.monotonic()
        res = await rm.sync_pod(pod, pr)
        for name in list(self.waiting):
            if name not in res.waiting:
                del self.waiting[name]
        self.waiting.update(res.waiting)
        if res.changed:
            pr = await self._runtime()
        if self.owner.prober is not None:  # probe workers follow the running containers
            self.owner.prober.sync_pod(pod, pr)
        status = generate_status(pod, pr, self.waiting, self.owner.host_ip, ready_fn=self.owner.ready_fn,
                                 started_fn=self.owner.started_fn)
        self.owner.status.set_status(pod, status)
        if status["phase"] in TERMINAL:
            self.terminal_done = True
            self.owner.probes_remove(self.uid)
            await rm.kill_pod(pod, pr, events=False)
            return RESYNC_INTERVAL
        wake = res.next_wake if res.next_wake is not None else RESYNC_INTERVAL
        return min(wake, RESYNC_INTERVAL)

    async def _terminate(self) -> None:
        """Kill with the grace period, tear everything down, then confirm the deletion."""
        self.state = "terminating"
        rm: RuntimeManager = self.owner.runtime
        pod = self.pod
        if self.owner.prober is not None:
            self.owner.prober.stop_liveness_and_startup(pod)
        pr = await self._runtime()
        started = time.monotonic()
        await rm.kill_pod(pod, pr)
        pr = await self._runtime()
        if not self.removed:
            # the final status: every container terminated, the phase terminal
            api_phase = (pod.get("status") or {}).get("phase")
            if api_phase not in TERMINAL:
                status = generate_status(pod, pr, {}, self.owner.host_ip, pod_is_terminal=True,
                                         ready_fn=self.owner.ready_fn, started_fn=self.owner.started_fn)
                self.owner.status.set_status(pod, status)
                await self.owner.status.flush(5)
        self.owner.probes_remove(self.uid)
        await rm.remove_pod(self.uid, pod, pr)
        self.state = "terminated"
        log.info("pod %s terminated in %.1fs", _name(pod), time.monotonic() - started)
        if not self.removed:
            await self.owner.confirm_deletion(pod)
        self.owner.status.forget(self.uid)


def _name(pod: Obj) -> str:
    m = pod["metadata"]
    return f"{m.get('namespace', '')}/{m['name']}"


class PodWorkers:
    def __init__(self, runtime: RuntimeManager, status: StatusManager, client: Any, host_ip: str,
                 ready_fn: Any = None, prober: Any = None) -> None:
        self.runtime = runtime
        self.status = status
        self.client = client
        self.host_ip = host_ip
        # the prober (agent/prober.py ProbeManager): probe workers per running container;
        # its cached results decide containerStatuses[].ready and .started
        self.prober = prober
        self.ready_fn = ready_fn if ready_fn is not None or prober is None else prober.is_ready
        self.started_fn = prober.is_started if prober is not None else None
        self.workers: dict[str, PodWorker] = {}
        self.first_sync_at: dict[str, float] = {}

    def update_pod(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        w = self.workers.get(uid)
        if w is None:
            w = PodWorker(self, pod)
            self.workers[uid] = w
            w.task = asyncio.create_task(self._run(w), name=f"pod-worker-{_name(pod)}")
        else:
            w.update(pod)

    def remove_pod(self, uid: str) -> None:
        w = self.workers.get(uid)
        if w is not None:
            w.update(None)

    def wake(self, uid: str) -> None:
        w = self.workers.get(uid)
        if w is not None:
            w.wake()

    def known(self) -> set[str]:
        return set(self.workers)

    def probes_remove(self, uid: str) -> None:
        if self.prober is not None:
            self.prober.remove_pod(uid)

    async def _run(self, w: PodWorker) -> None:
        try:
            await w.run()
        finally:
            if self.workers.get(w.uid) is w:
                del self.workers[w.uid]
            self.first_sync_at.pop(w.uid, None)

    async def confirm_deletion(self, pod: Obj) -> None:
        m = pod["metadata"]
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                "preconditions": {"uid": m["uid"]}}
        path = f"/api/v1/namespaces/{m.get('namespace', '')}/pods/{m['name']}"
        try:
            await self.client.request("DELETE", path, body, params={"gracePeriodSeconds": 0})
        except errors.StatusError as exc:
            if exc.code not in (404, 409):
                log.warning("could not confirm deletion of %s: %s", _name(pod), exc)

    async def stop(self) -> None:
        tasks = [w.task for w in self.workers.values() if w.task is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        if self.prober is not None:
            await self.prober.stop()
