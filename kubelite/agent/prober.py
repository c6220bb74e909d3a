"""Probes as independent loops (pkg/kubelet/prober: prober_manager.go, worker.go, prober.go,
results/results_manager.go).

One :class:`ProbeWorker` per (pod, container, probe type) and container ID: the pod worker
calls :meth:`ProbeManager.sync_pod` after every sync, which starts workers for containers
that run (by container ID) and stops those whose container stopped or was replaced. Each
worker probes on its own period, counts consecutive results against its thresholds and
writes the outcome to the results cache; a change wakes the pod worker (the results
channel), which then

* kills and restarts a container whose liveness (or startup) result is ``failure``
  (:meth:`ProbeManager.kill_reason`, used by the runtime's SyncPod), and
* reports ``containerStatuses[].ready`` / ``started`` from the cached results
  (:meth:`ProbeManager.is_ready`, :meth:`ProbeManager.is_started`, used by generate_status).

Initial results are upstream's: liveness ``success``, readiness ``failure`` (a container
with a readiness probe is not ready until a probe succeeds), startup ``unknown`` (liveness
and readiness wait until the startup probe has succeeded). A liveness/startup failure puts
the worker on hold until its container is replaced. One deliberate difference in timing:
upstream's ticker starts when the pod is added, so its first probe comes at the first tick
after ``initialDelaySeconds``; here the worker wakes exactly when the delay ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from kubelite.agent import probes
from kubelite.agent.crispec import ContainerState, PodRuntime, format_pod
from kubelite.agent.probes import FAILURE, SUCCESS, UNKNOWN, WARNING, ProbeError
from kubelite.kinds.podutil import PROBE_DEFAULTS, is_terminal

log = logging.getLogger("kubelite.agent.prober")
Obj = dict[str, Any]

LIVENESS = "liveness"
READINESS = "readiness"
STARTUP = "startup"
FIELDS = {LIVENESS: "livenessProbe", READINESS: "readinessProbe", STARTUP: "startupProbe"}
TITLES = {LIVENESS: "Liveness", READINESS: "Readiness", STARTUP: "Startup"}  # probeType.String()
INITIAL = {LIVENESS: SUCCESS, READINESS: FAILURE, STARTUP: UNKNOWN}
MAX_PROBE_RETRIES = 3
DEFAULTS = {**PROBE_DEFAULTS, "initialDelaySeconds": 0}

EventFn = Callable[..., None]  # (pod, type, reason, message, container_name, init)


def probe_setting(spec: Obj, key: str) -> int:
    v = spec.get(key)
    return int(v) if v else DEFAULTS[key]


# --------------------------------------------------------------------------- results
class Results:
    """results.Manager for the three probe types: (type, container ID) -> result; a change
    calls ``on_change(pod_uid)`` (upstream sends an Update on its channel)."""

    def __init__(self, on_change: Callable[[str], None] | None = None) -> None:
        self._results: dict[tuple[str, str], str] = {}
        self.on_change = on_change

    def get(self, kind: str, container_id: str) -> str | None:
        return self._results.get((kind, container_id))

    def set(self, kind: str, container_id: str, result: str, pod_uid: str) -> bool:
        key = (kind, container_id)
        if self._results.get(key) == result:
            return False
        self._results[key] = result
        if self.on_change is not None:
            self.on_change(pod_uid)
        return True

    def remove(self, kind: str, container_id: str) -> None:
        self._results.pop((kind, container_id), None)

    def __len__(self) -> int:
        return len(self._results)


# --------------------------------------------------------------------------- prober.go
class Prober:
    """Runs one probe of a container (with upstream's retries on errors) and records the
    ``Unhealthy`` / ``ProbeWarning`` events; answers a results.Result or raises ProbeError."""

    def __init__(self, runtime: Any, event: EventFn) -> None:
        self.runtime = runtime  # the CRI RuntimeService stub (ExecSync)
        self.event = event

    async def probe(self, kind: str, pod: Obj, container: Obj, container_id: str, pod_ip: str,
                    init: bool = False) -> str:
        spec = container.get(FIELDS[kind])
        if spec is None:
            return SUCCESS
        title = TITLES[kind]
        name = container.get("name", "")
        err: ProbeError | None = None
        result, output = UNKNOWN, ""
        for _ in range(MAX_PROBE_RETRIES):
            try:
                result, output = await self.run_probe(spec, pod, container, container_id, pod_ip)
                err = None
                break
            except ProbeError as exc:
                err = exc
        if err is not None:
            log.debug("%s probe of %s:%s errored: %s", title, format_pod(pod), name, err)
            self.event(pod, "Warning", "Unhealthy",
                       f"{title} probe errored and resulted in {err.result} state: {err}", name, init)
            raise err
        if result == SUCCESS:
            return SUCCESS
        if result == WARNING:
            self.event(pod, "Warning", "ProbeWarning", f"{title} probe warning: {output}", name, init)
            return SUCCESS
        if result == FAILURE:
            log.debug("%s probe of %s:%s failed: %s", title, format_pod(pod), name, output)
            self.event(pod, "Warning", "Unhealthy", f"{title} probe failed: {output}", name, init)
            return FAILURE
        return FAILURE

    async def run_probe(self, spec: Obj, pod: Obj, container: Obj, container_id: str,
                        pod_ip: str) -> tuple[str, str]:
        timeout = float(probe_setting(spec, "timeoutSeconds"))
        if spec.get("exec") is not None:
            cmd = probes.exec_command(list(spec["exec"].get("command") or []), container)
            return await probes.exec_probe(self.runtime, container_id, cmd, timeout)
        if spec.get("httpGet") is not None:
            url, headers = probes.http_get_request(spec["httpGet"], container, pod_ip)
            return await probes.http_probe(url, headers, timeout)
        if spec.get("tcpSocket") is not None:
            port = probes.resolve_container_port(spec["tcpSocket"].get("port"), container)
            host = spec["tcpSocket"].get("host") or pod_ip
            return await probes.tcp_probe(host, port, timeout)
        if spec.get("grpc") is not None:
            g = spec["grpc"]
            return await probes.grpc_probe(pod_ip, g.get("service") or "", int(g.get("port") or 0), timeout)
        raise ProbeError(f"missing probe handler for {format_pod(pod)}:{container.get('name', '')}")


# --------------------------------------------------------------------------- worker.go
class ProbeWorker:
    """One probe of one container (by ID): its own period, thresholds and cached result."""

    def __init__(self, mgr: ProbeManager, kind: str, pod: Obj, container: Obj, state: ContainerState,
                 pod_ip: str, init: bool = False) -> None:
        self.mgr = mgr
        self.kind = kind
        self.pod = pod
        self.container = container
        self.spec: Obj = container[FIELDS[kind]]
        self.container_id = state.id
        self.started_at = state.started_at or mgr.clock()
        self.pod_ip = pod_ip
        self.init = init
        self.uid: str = pod["metadata"]["uid"]
        self.period = float(probe_setting(self.spec, "periodSeconds"))
        self.initial_delay = int(self.spec.get("initialDelaySeconds") or 0)
        self.last_result: str | None = None
        self.result_run = 0
        self.on_hold = False
        self.probes = 0  # how many probes ran (for tests and logs)
        self._stop = asyncio.Event()
        self._trigger = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        mgr.results.set(kind, self.container_id, INITIAL[kind], self.uid)

    def start(self) -> None:
        name = f"probe-{self.kind}-{self.pod['metadata'].get('name', '')}-{self.container.get('name', '')}"
        self.task = asyncio.create_task(self.run(), name=name)

    def stop(self) -> None:
        """Stop probing; the result goes away with the worker."""
        self._stop.set()
        self.mgr.results.remove(self.kind, self.container_id)

    def trigger(self) -> None:
        """manualTriggerCh: probe now rather than at the next tick."""
        self._trigger.set()

    async def _wait(self, delay: float) -> str:
        """Sleep until a tick, a manual trigger or stop: answers ``tick``/``trigger``/``stop``."""
        if self._stop.is_set():
            return "stop"
        if self._trigger.is_set():
            self._trigger.clear()
            return "trigger"
        stop = asyncio.ensure_future(self._stop.wait())
        trig = asyncio.ensure_future(self._trigger.wait())
        try:
            done, _ = await asyncio.wait({stop, trig}, timeout=max(delay, 0))
        finally:
            stop.cancel()
            trig.cancel()
        if self._stop.is_set():
            return "stop"
        if trig in done:
            self._trigger.clear()
            return "trigger"
        return "tick"

    def _delay_remaining(self) -> float:
        return self.started_at + self.initial_delay - self.mgr.clock()

    async def run(self) -> None:
        mgr = self.mgr
        try:
            # after an agent (re)start, spread the workers over one period (worker.go run)
            if mgr.jitter and self.period > mgr.monotonic() - mgr.started:
                if await self._wait(random.random() * self.period) == "stop":
                    return
            next_tick = mgr.monotonic() + self.period
            while await self.do_probe():
                delay = next_tick - mgr.monotonic()
                rem = self._delay_remaining()
                rebase = False
                if self.last_result is None and 0 < rem < delay:
                    delay, rebase = rem + 0.01, True  # wake when initialDelaySeconds is over
                why = await self._wait(delay)
                if why == "stop":
                    break
                now = mgr.monotonic()
                if rebase and why == "tick":
                    next_tick = now + self.period
                while next_tick <= now:
                    next_tick += self.period
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s probe worker of %s:%s failed", self.kind, format_pod(self.pod),
                          self.container.get("name"))
        finally:
            mgr._worker_done(self)

    async def do_probe(self) -> bool:
        """One round (doProbe); answers whether the worker keeps going."""
        if self._stop.is_set():
            return False
        if self.on_hold:
            return True  # until a new container replaces this one
        if self.pod["metadata"].get("deletionTimestamp") and self.kind in (LIVENESS, STARTUP):
            # graceful shutdown: a last success for a quiet termination, then stop
            self.mgr.results.set(self.kind, self.container_id, SUCCESS, self.uid)
            return False
        if int(self.mgr.clock() - self.started_at) < self.initial_delay:
            return True
        started = self.mgr.container_started(self.uid, self.container.get("name", ""), self.container_id)
        if started and self.kind == STARTUP:
            return True  # the startup probe is done once the container has started
        if not started and self.kind != STARTUP:
            return True  # the others wait for the startup probe
        self.probes += 1
        try:
            result = await self.mgr.prober.probe(self.kind, self.pod, self.container, self.container_id,
                                                 self.pod_ip, self.init)
        except ProbeError:
            return True  # prober error: the result is thrown away
        if self.mgr.on_result is not None:
            self.mgr.on_result(self.kind, result, self.pod, self.container.get("name", ""))
        if self._stop.is_set():
            return False
        if self.last_result == result:
            self.result_run += 1
        else:
            self.last_result = result
            self.result_run = 1
        if (result == FAILURE and self.result_run < probe_setting(self.spec, "failureThreshold")) or \
                (result == SUCCESS and self.result_run < probe_setting(self.spec, "successThreshold")):
            return True  # below the threshold: the cached result stays
        self.mgr.results.set(self.kind, self.container_id, result, self.uid)
        if self.kind == STARTUP and result == SUCCESS:
            self.mgr._startup_done(self.uid, self.container.get("name", ""))
        if self.kind in (LIVENESS, STARTUP) and result == FAILURE:
            # the container will be restarted: stop probing until there is a new one
            self.on_hold = True
            self.result_run = 0
        return True


# --------------------------------------------------------------------------- prober_manager.go
class ProbeManager:
    def __init__(self, runtime: Any, event: EventFn, on_change: Callable[[str], None] | None = None,
                 host_ip: str = "", *, jitter: bool = True, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.results = Results(on_change)
        self.prober = Prober(runtime, event)
        # (probe type, result, pod, container name) after every probe run: prober_probe_total
        self.on_result: Callable[[str, str, Obj, str], None] | None = None
        self.host_ip = host_ip
        self.jitter = jitter
        self.clock = clock
        self.monotonic = monotonic
        self.started = monotonic()
        self.workers: dict[tuple[str, str, str], ProbeWorker] = {}  # (pod uid, container, type)

    # ---------------------------------------------------------------- lifecycle
    def sync_pod(self, pod: Obj, pr: PodRuntime) -> None:
        """Workers for the running containers' probes; stop those whose container is gone,
        stopped or replaced (a new container ID starts from the initial results)."""
        uid = pod["metadata"]["uid"]
        spec = pod.get("spec") or {}
        if is_terminal(pod):
            self.remove_pod(uid)
            return
        pod_ip = self._pod_ip(pod, pr)
        wanted: dict[tuple[str, str, str], tuple[Obj, ContainerState, bool]] = {}
        groups = [(False, spec.get("containers") or []),
                  (True, [c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"])]
        for init, containers in groups:
            for ct in containers:
                kinds = [k for k in (STARTUP, LIVENESS, READINESS) if ct.get(FIELDS[k])]
                if not kinds:
                    continue
                cur = next((c for c in pr.containers if c.name == ct.get("name") and c.is_init == init), None)
                if cur is None or cur.state != "running":
                    continue
                for k in kinds:
                    wanted[(uid, ct["name"], k)] = (ct, cur, init)
        for key, w in list(self.workers.items()):
            if key[0] != uid:
                continue
            want = wanted.get(key)
            if want is None or want[1].id != w.container_id:
                self._stop_worker(key)
            else:
                w.pod = pod
                w.pod_ip = pod_ip or w.pod_ip
        for key, (ct, cur, init) in wanted.items():
            if key not in self.workers:
                w = ProbeWorker(self, key[2], pod, ct, cur, pod_ip, init)
                self.workers[key] = w
                w.start()

    def stop_liveness_and_startup(self, pod: Obj) -> None:
        """StopLivenessAndStartup: the pod is terminating; readiness keeps probing."""
        uid = pod["metadata"]["uid"]
        for key in [k for k in self.workers if k[0] == uid and k[2] in (LIVENESS, STARTUP)]:
            self._stop_worker(key)
        for key, w in self.workers.items():
            if key[0] == uid:
                w.pod = pod

    def remove_pod(self, uid: str) -> None:
        for key in [k for k in self.workers if k[0] == uid]:
            self._stop_worker(key)

    async def stop(self) -> None:
        tasks = [w.task for w in self.workers.values() if w.task is not None]
        for key in list(self.workers):
            self._stop_worker(key)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t

    def _stop_worker(self, key: tuple[str, str, str]) -> None:
        w = self.workers.pop(key, None)
        if w is not None:
            w.stop()

    def _worker_done(self, w: ProbeWorker) -> None:
        key = (w.uid, w.container.get("name", ""), w.kind)
        if self.workers.get(key) is w:
            # the worker ended on its own (pod deleted: liveness/startup): its result goes too
            del self.workers[key]
            self.results.remove(w.kind, w.container_id)

    def _startup_done(self, uid: str, name: str) -> None:
        for k in (READINESS, LIVENESS):
            w = self.workers.get((uid, name, k))
            if w is not None:
                w.trigger()

    def _pod_ip(self, pod: Obj, pr: PodRuntime) -> str:
        if (pod.get("spec") or {}).get("hostNetwork"):
            return self.host_ip
        sb = pr.latest_sandbox()
        if sb is not None and sb.ips:
            return sb.ips[0]
        return (pod.get("status") or {}).get("podIP") or ""

    # ---------------------------------------------------------------- what the others ask
    def container_started(self, uid: str, name: str, container_id: str) -> bool:
        r = self.results.get(STARTUP, container_id)
        if r is not None:
            return r == SUCCESS
        return (uid, name, STARTUP) not in self.workers  # a startup probe that has not run yet

    def _worker_for(self, kind: str, container_id: str) -> ProbeWorker | None:
        for (_, _, k), w in self.workers.items():
            if k == kind and w.container_id == container_id:
                return w
        return None

    def is_started(self, c: ContainerState) -> bool:
        """containerStatuses[].started (isContainerStarted)."""
        if c.state != "running":
            return False
        r = self.results.get(STARTUP, c.id)
        if r is not None:
            return r == SUCCESS
        return self._worker_for(STARTUP, c.id) is None

    def is_ready(self, c: ContainerState) -> bool:
        """containerStatuses[].ready (UpdatePodStatus): started, running, and the readiness
        probe's cached result a success — or no readiness probe at all. A readiness probe
        that has no success yet is triggered at once, as upstream does."""
        if not self.is_started(c):
            return False
        if self.results.get(READINESS, c.id) == SUCCESS:
            return True
        w = self._worker_for(READINESS, c.id)
        if w is None:
            return True
        w.trigger()
        return False

    def kill_reason(self, container_id: str) -> str | None:
        """``liveness`` or ``startup`` when that probe failed the container (computePodActions)."""
        if self.results.get(LIVENESS, container_id) == FAILURE:
            return LIVENESS
        if self.results.get(STARTUP, container_id) == FAILURE:
            return STARTUP
        return None
