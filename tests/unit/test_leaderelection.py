"""The leader election state machine (kubelite/client/leaderelection.py), as client-go's: one
holder at a time, takeover only after the lease went unrenewed for its duration as observed
locally, leaseTransitions counted, a leader that cannot renew stops leading. A fake clock
drives time; the Lease lives in an in-memory API with resourceVersion preconditions."""

from __future__ import annotations

import asyncio
import copy
import heapq
import itertools
import re
from datetime import UTC, datetime, timedelta

import pytest

from kubelite.api import errors
from kubelite.client import leaderelection as le
from kubelite.client.leaderelection import LeaderElector, LeaseLock

MICRO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


class FakeClock(le.Clock):
    def __init__(self) -> None:
        self.t = 1000.0
        self.wall0 = datetime(2026, 1, 1, tzinfo=UTC)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self.wall0 + timedelta(seconds=self.t)

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.t + seconds, next(self._seq), fut))
        await fut

    async def advance(self, seconds: float) -> None:
        target = self.t + seconds
        while True:
            await _settle()
            if not self._sleepers or self._sleepers[0][0] > target:
                break
            when, _, fut = heapq.heappop(self._sleepers)
            self.t = max(self.t, when)
            if not fut.done():
                fut.set_result(None)
        self.t = target
        await _settle()


async def _settle() -> None:
    for _ in range(30):
        await asyncio.sleep(0)


class MemLeases:
    """Leases with resourceVersions; ``down`` makes every call of one view fail."""

    def __init__(self) -> None:
        self.objs: dict[tuple[str, str], dict] = {}
        self.rv = 0
        self.writes = 0

    def view(self) -> View:
        return View(self)


class View:
    def __init__(self, mem: MemLeases) -> None:
        self.mem = mem
        self.down = False
        self.hang = False
        self.deaf = False

    def _check(self) -> None:
        if self.down:
            raise ConnectionRefusedError("connection refused")

    async def _check_or_hang(self) -> None:
        if self.hang:
            await asyncio.Event().wait()  # a request to a server that stopped answering
        if self.deaf:  # a request whose cancellation is swallowed (an HTTP client's own timeout
            try:       # meeting the caller's): it goes on for 1.2 s more
                await asyncio.sleep(1.2)
            except asyncio.CancelledError:
                await asyncio.sleep(1.2)
            raise TimeoutError()
        self._check()

    async def get(self, namespace: str, name: str) -> dict:
        await self._check_or_hang()
        obj = self.mem.objs.get((namespace, name))
        if obj is None:
            raise errors.StatusError(404, "NotFound", f'leases.coordination.k8s.io "{name}" not found')
        return copy.deepcopy(obj)

    async def create(self, namespace: str, obj: dict) -> dict:
        await self._check_or_hang()
        key = (namespace, obj["metadata"]["name"])
        if key in self.mem.objs:
            raise errors.StatusError(409, "AlreadyExists", "already exists")
        self.mem.rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.mem.rv)
        self.mem.objs[key] = obj
        self.mem.writes += 1
        return copy.deepcopy(obj)

    async def update(self, namespace: str, obj: dict) -> dict:
        await self._check_or_hang()
        key = (namespace, obj["metadata"]["name"])
        cur = self.mem.objs.get(key)
        if cur is None:
            raise errors.StatusError(404, "NotFound", "not found")
        if obj["metadata"].get("resourceVersion") != cur["metadata"]["resourceVersion"]:
            raise errors.StatusError(409, "Conflict", "the object has been modified; please apply your changes "
                                                      "to the latest version and try again")
        self.mem.rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.mem.rv)
        self.mem.objs[key] = obj
        self.mem.writes += 1
        return copy.deepcopy(obj)


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str, str]] = []

    def emit(self, involved: dict, type_: str, reason: str, message: str) -> None:
        self.seen.append((involved["kind"], involved["metadata"]["name"], reason, message))


class Candidate:
    """An elector whose term runs a stand-in for the component's work."""

    def __init__(self, mem: MemLeases, clock: FakeClock, name: str, events: Events, **kw) -> None:
        self.api = mem.view()
        self.lock = LeaseLock(self.api, "kube-system", "kube-scheduler", f"host_{name}", events)
        self.elector = LeaderElector(self.lock, clock=clock, **kw)
        self.working = False
        self.work_started: list[float] = []
        self.work_stopped: list[float] = []
        self.clock = clock
        self.task: asyncio.Task[None] | None = None

    async def _work(self) -> None:
        self.working = True
        self.work_started.append(self.clock.t)
        try:
            await asyncio.Event().wait()
        finally:
            self.working = False
            self.work_stopped.append(self.clock.t)

    async def _forever(self) -> None:
        while True:  # back to candidate after each term
            await self.elector.run(self._work)

    def start(self) -> Candidate:
        self.task = asyncio.create_task(self._forever())
        return self

    async def kill(self) -> None:
        """kill -9: the process is gone, nothing is released."""
        assert self.task is not None
        self.elector.release_on_cancel = False
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def spec(mem: MemLeases) -> dict:
    return mem.objs[("kube-system", "kube-scheduler")]["spec"]


async def test_first_candidate_creates_the_lease_with_upstream_fields():
    mem, clock, events = MemLeases(), FakeClock(), Events()
    a = Candidate(mem, clock, "a", events).start()
    await clock.advance(0)
    assert a.working and a.elector.is_leader()
    s = spec(mem)
    assert s["holderIdentity"] == "host_a" and s["leaseDurationSeconds"] == 15 and s["leaseTransitions"] == 0
    assert MICRO.match(s["acquireTime"]) and s["acquireTime"] == s["renewTime"]
    assert events.seen == [("Lease", "kube-scheduler", "LeaderElection", "host_a became leader")]
    first = s["acquireTime"]
    await clock.advance(5)  # renewed every retry period: renewTime moves, acquireTime stays
    s = spec(mem)
    assert s["acquireTime"] == first and s["renewTime"] > first and s["leaseTransitions"] == 0
    await a.kill()


async def test_exactly_one_leader_while_the_holder_renews():
    mem, clock, events = MemLeases(), FakeClock(), Events()
    a = Candidate(mem, clock, "a", events).start()
    await clock.advance(0)
    b = Candidate(mem, clock, "b", events).start()
    for _ in range(60):
        await clock.advance(1)
        assert a.working and not b.working
    assert spec(mem)["holderIdentity"] == "host_a" and b.elector.get_leader() == "host_a"
    await a.kill()
    await b.kill()


async def test_candidate_takes_over_a_dead_leaders_lease_after_its_duration():
    mem, clock, events = MemLeases(), FakeClock(), Events()
    a = Candidate(mem, clock, "a", events).start()
    await clock.advance(0)
    b = Candidate(mem, clock, "b", events).start()
    await clock.advance(10)
    last_renew = clock.t - 2  # (a renews every 2 s)
    await a.kill()
    killed = clock.t
    while not b.working:
        await clock.advance(0.1)
        assert clock.t - killed < 30, "no takeover"
    took = clock.t - killed
    # not before the lease (15 s, counted from when b saw the last renewal) ran out; then within
    # one jittered retry period (2 s * 2.2) of it
    assert clock.t - last_renew >= 15
    assert took <= 2 + 15 + 2 * 2.2 + 0.2, took
    s = spec(mem)
    assert s["holderIdentity"] == "host_b" and s["leaseTransitions"] == 1
    assert s["acquireTime"] == s["renewTime"]
    assert events.seen[-1] == ("Lease", "kube-scheduler", "LeaderElection", "host_b became leader")
    await b.kill()


async def test_leader_that_cannot_renew_stops_its_work_before_anyone_can_take_over():
    mem, clock, events = MemLeases(), FakeClock(), Events()
    a = Candidate(mem, clock, "a", events).start()
    await clock.advance(0)
    b = Candidate(mem, clock, "b", events).start()
    await clock.advance(4)
    a.api.down = True  # a is cut off from the API (b is not)
    cut = clock.t
    while a.working:
        await clock.advance(0.1)
        assert not b.working, "two leaders at once"
        assert clock.t - cut < 20
    stopped = clock.t - cut
    assert 10 <= stopped <= 12.2, stopped  # the renew deadline (plus the retry it was sleeping)
    assert ("Lease", "kube-scheduler", "LeaderElection", "host_a stopped leading") in events.seen
    while not b.working:
        await clock.advance(0.1)
        assert clock.t - cut < 30
    assert a.work_stopped[-1] < b.work_started[-1]
    assert spec(mem)["holderIdentity"] == "host_b" and spec(mem)["leaseTransitions"] == 1
    # a is a candidate again: when b goes, a takes the lease back
    a.api.down = False
    await b.kill()
    while not a.working:
        await clock.advance(0.5)
        assert clock.t - cut < 80
    assert len(a.work_started) == 2 and spec(mem)["leaseTransitions"] == 2
    await a.kill()


async def test_release_on_cancel_hands_over_without_waiting_for_expiry():
    mem, clock, events = MemLeases(), FakeClock(), Events()
    a = Candidate(mem, clock, "a", events, release_on_cancel=True).start()
    await clock.advance(0)
    b = Candidate(mem, clock, "b", events).start()
    await clock.advance(6)
    assert a.task is not None
    a.task.cancel()  # a graceful stop
    await asyncio.gather(a.task, return_exceptions=True)
    s = spec(mem)
    assert s["holderIdentity"] == "" and s["leaseDurationSeconds"] == 1 and s["leaseTransitions"] == 0
    stopped = clock.t
    while not b.working:
        await clock.advance(0.1)
    assert clock.t - stopped <= 1 + 2 * 2.2 + 0.2
    # taking over a released lease is a transition too (client-go counts any new holder)
    assert spec(mem)["holderIdentity"] == "host_b" and spec(mem)["leaseTransitions"] == 1
    await b.kill()


async def test_racing_candidates_on_a_free_lease_elect_one():
    mem, clock, events = MemLeases(), FakeClock(), Events()
    cands = [Candidate(mem, clock, n, events) for n in "abcd"]
    for c in cands:
        c.start()
    for _ in range(20):
        await clock.advance(1)
        assert sum(c.working for c in cands) == 1
    assert [e for e in events.seen if e[3].endswith("became leader")] == [
        ("Lease", "kube-scheduler", "LeaderElection", f"{spec(mem)['holderIdentity']} became leader")]
    for c in cands:
        await c.kill()


async def test_lease_edited_by_someone_else_is_observed():
    """A stale resourceVersion is a 409: the leader falls back to reading, and a holder
    written by someone else is respected."""
    mem, clock, events = MemLeases(), FakeClock(), Events()
    a = Candidate(mem, clock, "a", events).start()
    await clock.advance(0)
    obj = mem.objs[("kube-system", "kube-scheduler")]
    obj["spec"]["holderIdentity"] = "intruder"
    mem.rv += 1
    obj["metadata"]["resourceVersion"] = str(mem.rv)
    while a.working:
        await clock.advance(0.5)
        assert clock.t < 1100
    assert a.elector.get_leader() == "intruder"
    await a.kill()


def test_timing_is_checked_as_newleaderelector():
    with pytest.raises(ValueError, match="leaseDuration must be greater than renewDeadline"):
        le.check_timing(10, 10, 2)
    with pytest.raises(ValueError, match=r"renewDeadline must be greater than retryPeriod\*JitterFactor"):
        le.check_timing(15, 2.4, 2)
    le.check_timing(15, 10, 2)
    with pytest.raises(ValueError, match="Lock identity is empty"):
        LeaseLock(MemLeases().view(), "kube-system", "x", "")


def test_record_round_trips_through_the_lease_spec():
    t = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    r = le.LeaderElectionRecord("h_1", 15, t, t + timedelta(seconds=2), 3)
    s = le.spec_from_record(r)
    assert s == {"holderIdentity": "h_1", "leaseDurationSeconds": 15, "acquireTime": "2026-03-04T05:06:07.891011Z",
                 "renewTime": "2026-03-04T05:06:09.891011Z", "leaseTransitions": 3}
    assert le.record_from_spec(s) == r
    assert le.record_from_spec({}) == le.LeaderElectionRecord()
    ident = le.new_identity()
    host, _, uid = ident.rpartition("_")
    assert host and len(uid) == 36


async def test_leader_group_runs_its_components_only_while_leading():
    """The launcher's form of "a component that loses its lease exits": the controllers are
    supervised while the server leads and stopped when it loses the lease, then it campaigns again."""
    from kubelite.launcher.leaders import LeaderGroup
    from kubelite.launcher.supervisor import Supervisor

    mem, clock, events = MemLeases(), FakeClock(), Events()
    running: set[str] = set()

    def controller(name: str):
        async def run() -> None:
            running.add(name)
            try:
                await asyncio.Event().wait()
            finally:
                running.discard(name)
        return run

    sup = Supervisor()
    api = mem.view()
    elector = LeaderElector(LeaseLock(api, "kube-system", "kube-controller-manager", "host_a", events), clock=clock)
    group = LeaderGroup(sup, elector, [("garbage-collector", controller("gc")), ("podgc", controller("podgc"))])
    sup.add("kube-controller-manager", group.run)
    await clock.advance(0)
    assert running == {"gc", "podgc"} and set(sup.components) == {"kube-controller-manager", "garbage-collector",
                                                                   "podgc"}
    api.down = True
    await clock.advance(13)
    assert running == set() and set(sup.components) == {"kube-controller-manager"}
    api.down = False
    await clock.advance(20)  # its own lease: it renews it as soon as the API answers again
    assert running == {"gc", "podgc"}
    await sup.stop()
    assert running == set() and not sup.components


def test_election_runs_on_etcd_and_not_on_sqlite_unless_asked():
    from kubelite.cli.main import build_parser
    from kubelite.config import ServerConfig

    assert ServerConfig().election is None  # SQLite: one server per data dir, as k3s
    assert ServerConfig(datastore_endpoint="https://a:2379").election == le.Election(15, 10, 2)
    assert ServerConfig(leader_elect=True).election == le.Election(15, 10, 2)
    assert ServerConfig(datastore_endpoint="https://a:2379", leader_elect=False).election is None
    p = build_parser()
    a = p.parse_args(["server", "--leader-elect=false", "--leader-elect-lease-duration", "1m30s",
                      "--leader-elect-renew-deadline", "20s", "--leader-elect-retry-period", "500ms"])
    assert (a.leader_elect, a.leader_elect_lease_duration, a.leader_elect_renew_deadline,
            a.leader_elect_retry_period) == (False, 90.0, 20.0, 0.5)
    assert p.parse_args(["server", "--leader-elect"]).leader_elect is True
    assert p.parse_args(["server"]).leader_elect is None
    with pytest.raises(SystemExit):
        p.parse_args(["server", "--leader-elect-retry-period", "soon"])


@pytest.mark.parametrize("failure", ["hang", "deaf"])
async def test_leader_whose_api_hangs_stops_within_the_renew_deadline(failure):
    """Real time, short timings: requests that never answer are bounded by the renew deadline,
    and neither the "stopped leading" Event nor the release delays stopping the work."""
    mem, events = MemLeases(), Events()
    clock = le.Clock()
    a = Candidate(mem, clock, "a", events, lease_duration=1.5, renew_deadline=1.0, retry_period=0.2,
                  release_on_cancel=True)
    a.clock = _RealTime()  # (the work's timestamps)
    a.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while not a.working:
        assert loop.time() < deadline
        await asyncio.sleep(0.01)
    setattr(a.api, failure, True)
    hung = loop.time()
    while a.working:
        assert loop.time() - hung < 1.0 + 0.2 + 0.3, "still working past the renew deadline"
        await asyncio.sleep(0.01)
    assert ("Lease", "kube-scheduler", "LeaderElection", "host_a stopped leading") in events.seen
    await a.kill()
    if a.elector._abandoned:  # the deaf requests it gave up on end by themselves
        await asyncio.wait(set(a.elector._abandoned), timeout=5)


class _RealTime:
    @property
    def t(self) -> float:
        return asyncio.get_running_loop().time()
