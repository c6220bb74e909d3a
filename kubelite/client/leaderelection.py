"""Leader election through a coordination.k8s.io/v1 Lease, as client-go's tools/leaderelection
(``leaderelection.go``, ``resourcelock/leaselock.go``) runs it for kube-scheduler and
kube-controller-manager.

A :class:`LeaderElector` campaigns for the Lease its :class:`LeaseLock` names: it reads the
Lease, and takes it (create, or an update conditioned on the resourceVersion it read, so two
candidates can never both succeed) when nobody holds it or the holder has not renewed it for
``leaseDurationSeconds`` *as observed locally* (client-go compares with the time it last saw the
record change, never with the holder's clock). The leader renews every ``retry_period``; a
renewal that has not succeeded within ``renew_deadline`` loses the lease, and the leader stops its
work before its lease can have expired for anyone else (renew deadline < lease duration).

    elector = LeaderElector(LeaseLock(api, "kube-system", "kube-scheduler", identity, recorder))
    await elector.run(lead)   # one term: campaign, run lead() while renewing; returns when lost

Holder identities are ``<hostname>_<uuid>`` (:func:`new_identity`). Taking the lease from another
holder increments ``leaseTransitions``; becoming leader records the Event ``LeaderElection``
"<identity> became leader" about the Lease, losing it "<identity> stopped leading".
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from kubelite.api import errors
from kubelite.api.gotime import RFC3339_MICRO, TimeError, format_micro, parse

log = logging.getLogger("kubelite.leaderelection")
Obj = dict[str, Any]

# client-go's defaults (componentbaseconfig/v1alpha1 RecommendedDefaultLeaderElectionConfiguration)
LEASE_DURATION = 15.0
RENEW_DEADLINE = 10.0
RETRY_PERIOD = 2.0
JITTER_FACTOR = 1.2  # leaderelection.JitterFactor: candidates retry every retry_period * [1, 2.2)


def new_identity() -> str:
    """kube-scheduler's and kube-controller-manager's lock identity: ``<hostname>_<uuid>`` (the
    uuid keeps two processes on one host apart)."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


@dataclass(frozen=True)
class Election:
    """The --leader-elect-lease-duration / -renew-deadline / -retry-period flags (seconds;
    component-base's LeaderElectionConfiguration)."""

    lease_duration: float = LEASE_DURATION
    renew_deadline: float = RENEW_DEADLINE
    retry_period: float = RETRY_PERIOD


class Clock:
    """Wall time for the record's MicroTimes, a monotonic clock for expiry, and sleeping."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass(frozen=True)
class LeaderElectionRecord:
    """resourcelock.LeaderElectionRecord: what the Lease's spec holds."""

    holder_identity: str = ""
    lease_duration_seconds: int = 0
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    leader_transitions: int = 0
    strategy: str = ""
    preferred_holder: str = ""


def _micro(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse(value, RFC3339_MICRO)
    except TimeError:
        return None


def record_from_spec(spec: Any) -> LeaderElectionRecord:
    """LeaseSpecToLeaderElectionRecord (absent fields are zero values)."""
    spec = spec if isinstance(spec, dict) else {}

    def num(key: str) -> int:
        v = spec.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) else 0

    def text(key: str) -> str:
        v = spec.get(key)
        return v if isinstance(v, str) else ""

    return LeaderElectionRecord(text("holderIdentity"), num("leaseDurationSeconds"), _micro(spec.get("acquireTime")),
                                _micro(spec.get("renewTime")), num("leaseTransitions"), text("strategy"),
                                text("preferredHolder"))


def spec_from_record(r: LeaderElectionRecord) -> Obj:
    """LeaderElectionRecordToLeaseSpec: every field written (holderIdentity "" once released)."""
    spec: Obj = {"holderIdentity": r.holder_identity, "leaseDurationSeconds": r.lease_duration_seconds,
                 "acquireTime": format_micro(r.acquire_time) if r.acquire_time else None,
                 "renewTime": format_micro(r.renew_time) if r.renew_time else None,
                 "leaseTransitions": r.leader_transitions}
    if r.strategy:
        spec["strategy"] = r.strategy
    if r.preferred_holder:
        spec["preferredHolder"] = r.preferred_holder
    return spec


class LeaseAPI(Protocol):
    """The three Lease calls the lock makes: over HTTP (:class:`ClientLeases`) or, in process, over
    the API server's store (``kubelite.launcher.leaders.StoreLeases``). Failures raise
    :class:`~kubelite.api.errors.StatusError` (404 when absent, 409 on a stale resourceVersion)."""

    async def get(self, namespace: str, name: str) -> Obj: ...

    async def create(self, namespace: str, obj: Obj) -> Obj: ...

    async def update(self, namespace: str, obj: Obj) -> Obj: ...


class ClientLeases:
    """:class:`LeaseAPI` through the API client (``kubelite.client.api.Client``)."""

    def __init__(self, client: Any, timeout: float = RENEW_DEADLINE) -> None:
        self.client = client
        self.timeout = timeout

    async def get(self, namespace: str, name: str) -> Obj:
        from kubelite.client.api import resource_path

        out: Obj = await self.client.request("GET", resource_path("coordination.k8s.io/v1", "leases", namespace, name),
                                             timeout=self.timeout)
        return out

    async def create(self, namespace: str, obj: Obj) -> Obj:
        from kubelite.client.api import resource_path

        out: Obj = await self.client.request("POST", resource_path("coordination.k8s.io/v1", "leases", namespace),
                                             obj, timeout=self.timeout)
        return out

    async def update(self, namespace: str, obj: Obj) -> Obj:
        from kubelite.client.api import resource_path

        path = resource_path("coordination.k8s.io/v1", "leases", namespace, obj["metadata"]["name"])
        out: Obj = await self.client.request("PUT", path, obj, timeout=self.timeout)
        return out


class EventSink(Protocol):
    """``kubelite.client.events.EventRecorder``: ``emit`` writes in the background (as client-go's
    broadcaster), so an unreachable API never delays stopping the leader's work."""

    def emit(self, involved: Obj, type_: str, reason: str, message: str) -> None: ...


class LeaseLock:
    """resourcelock.LeaseLock: the Lease ``namespace/name`` as the election's lock. It keeps the
    Lease it last read or wrote; :meth:`update` replaces that object's spec and writes it with its
    resourceVersion (optimistic concurrency)."""

    def __init__(self, api: LeaseAPI, namespace: str, name: str, identity: str,
                 recorder: EventSink | None = None) -> None:
        if not identity:
            raise ValueError("Lock identity is empty")
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.recorder = recorder
        self.lease: Obj | None = None

    def describe(self) -> str:
        return f"{self.namespace}/{self.name}"

    async def get(self) -> LeaderElectionRecord:
        self.lease = await self.api.get(self.namespace, self.name)
        return record_from_spec(self.lease.get("spec"))

    async def create(self, record: LeaderElectionRecord) -> None:
        self.lease = await self.api.create(self.namespace, {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace}, "spec": spec_from_record(record)})

    async def update(self, record: LeaderElectionRecord) -> None:
        if self.lease is None:
            raise RuntimeError("lease not initialized, call get or create first")
        lease = copy.deepcopy(self.lease)
        lease.setdefault("apiVersion", "coordination.k8s.io/v1")
        lease.setdefault("kind", "Lease")
        lease["spec"] = spec_from_record(record)
        self.lease = await self.api.update(self.namespace, lease)

    def record_event(self, what: str) -> None:
        if self.recorder is None or self.lease is None:
            return
        subject = dict(self.lease, apiVersion="coordination.k8s.io/v1", kind="Lease")
        self.recorder.emit(subject, "Normal", "LeaderElection", f"{self.identity} {what}")


class LeaderElector:
    """client-go's LeaderElector. ``release_on_cancel`` gives the lease up when a term ends
    (kube-scheduler sets it; kube-controller-manager does not), so a successor need not wait for
    it to expire. ``on_new_leader`` is told each holder identity as it is first observed."""

    def __init__(self, lock: LeaseLock, lease_duration: float = LEASE_DURATION, renew_deadline: float = RENEW_DEADLINE,
                 retry_period: float = RETRY_PERIOD, *, release_on_cancel: bool = False, clock: Clock | None = None,
                 on_new_leader: Callable[[str], None] | None = None) -> None:
        check_timing(lease_duration, renew_deadline, retry_period)
        self.lock = lock
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.release_on_cancel = release_on_cancel
        self.clock = clock or Clock()
        self.on_new_leader = on_new_leader
        self.observed_record = LeaderElectionRecord()
        self.observed_time = 0.0
        self.reported_leader = ""
        self.terms = 0  # times this elector became leader
        self._abandoned: set[asyncio.Future[bool]] = set()  # attempts given up on, being cancelled

    # ------------------------------------------------------------------ state
    def get_leader(self) -> str:
        return self.observed_record.holder_identity

    def is_leader(self) -> bool:
        return self.observed_record.holder_identity == self.lock.identity

    def _lease_valid(self, now: float) -> bool:
        return self.observed_time + self.observed_record.lease_duration_seconds > now

    def _observe(self, record: LeaderElectionRecord) -> None:
        self.observed_record = record
        self.observed_time = self.clock.monotonic()

    def _report_transition(self) -> None:
        if self.observed_record.holder_identity == self.reported_leader:
            return
        self.reported_leader = self.observed_record.holder_identity
        if self.on_new_leader is not None:
            self.on_new_leader(self.reported_leader)

    # ------------------------------------------------------------------ one attempt
    async def try_acquire_or_renew(self) -> bool:
        """tryAcquireOrRenew: True when this elector holds the lease afterwards."""
        now = self.clock.now()
        mine = LeaderElectionRecord(self.lock.identity, int(self.lease_duration), now, now)
        desc = self.lock.describe()
        # 1. the leader's fast path: update what it observed last, without reading first
        if self.is_leader() and self._lease_valid(self.clock.monotonic()):
            mine = replace(mine, acquire_time=self.observed_record.acquire_time,
                           leader_transitions=self.observed_record.leader_transitions)
            try:
                await self.lock.update(mine)
            except Exception as exc:  # any failure: the slow path decides
                log.error("Failed to update lock optimistically: %s, falling back to slow path", _text(exc))
            else:
                self._observe(mine)
                return True
        # 2. obtain or create the record
        try:
            old = await self.lock.get()
        except errors.StatusError as exc:
            if exc.code != 404:
                log.error("error retrieving resource lock %s: %s", desc, _text(exc))
                return False
            try:
                await self.lock.create(mine)
            except Exception as cexc:
                log.error("error initially creating leader election record: %s", _text(cexc))
                return False
            self._observe(mine)
            return True
        except Exception as exc:  # the API or the store is unreachable: not this time
            log.error("error retrieving resource lock %s: %s", desc, _text(exc))
            return False
        # 3. record obtained: check the identity and the time
        if old != self.observed_record:
            self._observe(old)
        if old.holder_identity and self._lease_valid(self.clock.monotonic()) and not self.is_leader():
            log.debug("lock is held by %s and has not yet expired", old.holder_identity)
            return False
        # 4. take it (or renew it): keep acquireTime while leading, count a transition on takeover
        if self.is_leader():
            mine = replace(mine, acquire_time=old.acquire_time, leader_transitions=old.leader_transitions)
        else:
            mine = replace(mine, leader_transitions=old.leader_transitions + 1)
        try:
            await self.lock.update(mine)
        except Exception as exc:  # 409: someone else wrote first
            log.error("Failed to update lock: %s", _text(exc))
            return False
        self._observe(mine)
        return True

    async def _attempt(self, timeout: float) -> bool:
        """tryAcquireOrRenew bounded by ``timeout`` whatever the request does. Not wait_for: it
        waits for the cancelled call to finish, and a cancellation that meets an HTTP client's
        own timeout can be swallowed, so the call may run on well past the renew deadline."""
        task = asyncio.ensure_future(self.try_acquire_or_renew())
        try:
            done, _ = await asyncio.wait({task}, timeout=max(timeout, 0.0))
        finally:
            if not task.done():
                task.cancel()  # (a late write that lands renews the lease for us: still safe)
                self._abandoned.add(task)
                task.add_done_callback(self._abandoned.discard)
        return task.result() if task in done else False

    # ------------------------------------------------------------------ the loops
    async def acquire(self) -> None:
        """Retry (jittered) until this elector holds the lease; returns then (or is cancelled)."""
        desc = self.lock.describe()
        log.info("attempting to acquire leader lease %s... (as %s)", desc, self.lock.identity)
        while True:
            ok = await self._attempt(self.renew_deadline)
            self._report_transition()
            if ok:
                self.terms += 1
                self.lock.record_event("became leader")
                log.info("successfully acquired lease %s", desc)
                return
            log.debug("failed to acquire lease %s", desc)
            await self.clock.sleep(self.retry_period * (1 + random.random() * JITTER_FACTOR))

    async def renew(self) -> None:
        """Renew every retry period; returns when a renewal did not succeed within the renew
        deadline (the lease is lost)."""
        desc = self.lock.describe()
        try:
            while True:
                deadline = self.clock.monotonic() + self.renew_deadline
                renewed = False
                while True:  # wait.PollUntilContextTimeout(retry, renewDeadline, immediate)
                    remaining = deadline - self.clock.monotonic()
                    if remaining <= 0:
                        break
                    if await self._attempt(remaining):
                        renewed = True
                        break
                    if self.clock.monotonic() + self.retry_period >= deadline:
                        await self.clock.sleep(max(0.0, deadline - self.clock.monotonic()))
                        break
                    await self.clock.sleep(self.retry_period)
                self._report_transition()
                if not renewed:
                    log.info("failed to renew lease %s: timed out waiting for the condition", desc)
                    return
                log.debug("successfully renewed lease %s", desc)
                await self.clock.sleep(self.retry_period)
        finally:
            self.lock.record_event("stopped leading")

    async def release(self) -> bool:
        """Give the lease up if held: holderIdentity "", leaseDurationSeconds 1."""
        try:
            old = await asyncio.wait_for(self.lock.get(), self.renew_deadline)
        except errors.StatusError as exc:
            if exc.code == 404:
                log.info("lease lock not found: %s", self.lock.describe())
            else:
                log.error("error retrieving resource lock %s: %s", self.lock.describe(), _text(exc))
            return False
        except Exception as exc:
            log.error("error retrieving resource lock %s: %s", self.lock.describe(), _text(exc))
            return False
        self._observe(old)
        if not self.is_leader():
            return True
        now = self.clock.now()
        released = LeaderElectionRecord("", 1, now, now, self.observed_record.leader_transitions)
        try:
            await asyncio.wait_for(self.lock.update(released), self.renew_deadline)
        except Exception as exc:
            log.error("Failed to release lease %s: %s", self.lock.describe(), _text(exc))
            return False
        self._observe(released)
        return True

    async def run(self, lead: Callable[[], Awaitable[None]]) -> None:
        """One term (LeaderElector.Run): campaign; once leader, run ``lead()`` while renewing.
        Returns when the lease is lost or ``lead()`` returns; ``lead()`` is cancelled first (the
        in-process form of upstream's exit), and with ``release_on_cancel`` the lease is given up.
        An exception of ``lead()`` propagates after that."""
        await self.acquire()
        work = asyncio.create_task(_run(lead), name=f"leading/{self.lock.name}")
        renewing = asyncio.create_task(self.renew(), name=f"renewing/{self.lock.name}")
        try:
            await asyncio.wait({work, renewing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (work, renewing):
                t.cancel()
            for t in (work, renewing):
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(_settled(t))
            if self.release_on_cancel:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.release())
        failure = work.exception() if work.done() and not work.cancelled() else None
        if failure is not None:
            raise failure


async def _run(lead: Callable[[], Awaitable[None]]) -> None:
    await lead()


async def _settled(task: asyncio.Task[None]) -> None:
    with contextlib.suppress(BaseException):
        await task


def check_timing(lease_duration: float, renew_deadline: float, retry_period: float) -> None:
    """NewLeaderElector's checks (ValueError with its messages)."""
    if lease_duration <= renew_deadline:
        raise ValueError("leaseDuration must be greater than renewDeadline")
    if renew_deadline <= JITTER_FACTOR * retry_period:
        raise ValueError("renewDeadline must be greater than retryPeriod*JitterFactor")
    if lease_duration <= 0:
        raise ValueError("leaseDuration must be greater than zero")
    if renew_deadline <= 0:
        raise ValueError("renewDeadline must be greater than zero")
    if retry_period <= 0:
        raise ValueError("retryPeriod must be greater than zero")


def _text(exc: BaseException) -> str:
    if isinstance(exc, errors.StatusError):
        return exc.message or exc.reason
    return str(exc) or type(exc).__name__


__all__ = ["JITTER_FACTOR", "LEASE_DURATION", "RENEW_DEADLINE", "RETRY_PERIOD", "ClientLeases", "Clock", "Election",
           "LeaderElectionRecord", "LeaderElector", "LeaseAPI", "LeaseLock", "check_timing", "new_identity",
           "record_from_spec", "spec_from_record"]
