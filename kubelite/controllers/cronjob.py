"""The CronJob controller (pkg/controller/cronjob/cronjob_controllerv2.go and utils.go): creates
a Job named ``<cronjob>-<scheduled time in minutes since the epoch>`` at each scheduled time,
as the concurrency policy allows (Allow; Forbid skips while one is active; Replace deletes the
active ones first), not later than ``startingDeadlineSeconds`` after it, and never twice for
one time. It keeps ``status.active``, ``lastScheduleTime`` and ``lastSuccessfulTime``, deletes
the oldest finished Jobs beyond the history limits, and sleeps until the next scheduled time.

Schedules are read by :mod:`kubelite.kinds._cron` (robfig/cron's ParseStandard; next times
from croniter). The clock is injected, so unit tests step through time. Events:
SuccessfulCreate, SuccessfulDelete, SawCompletedJob, MissingJob, UnexpectedJob,
JobAlreadyActive, MissSchedule, TooManyMissedTimes, UnparseableSchedule, InvalidSchedule,
UnknownTimeZone, FailedCreate, FailedDelete, FailedGet.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

from kubelite.api import errors
from kubelite.apiserver.registry import DeleteOptions, WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.client.events import NORMAL, WARNING, EventRecorder
from kubelite.controllers import controller_utils as cu
from kubelite.controllers.base import WorkQueue, informer
from kubelite.controllers.events import recorder as store_recorder
from kubelite.controllers.job import finished_condition, rfc3339
from kubelite.kinds import _cron
from kubelite.kinds._printing import parse_time
from kubelite.kinds.batch import CRONJOB_SCHEDULED_TIMESTAMP

log = logging.getLogger("kubelite.controllers.cronjob")
Obj = dict[str, Any]

COMPONENT = "cronjob-controller"
NEXT_SCHEDULE_DELTA = 0.1  # nextScheduleDelta: wake a little after the scheduled second
MANY_MISSED = 100


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def job_name(cronjob: Obj, scheduled: datetime) -> str:
    """getJobName: the name and the scheduled time in minutes."""
    return f"{cu.meta(cronjob).get('name', '')}-{int(scheduled.timestamp()) // 60}"


def format_schedule(cronjob: Obj) -> str:
    """formatSchedule: spec.timeZone as robfig's TZ= prefix."""
    spec = _d(cronjob.get("spec"))
    tz = spec.get("timeZone")
    schedule = str(spec.get("schedule") or "")
    if isinstance(tz, str) and "TZ" not in schedule:
        return f"TZ={tz} {schedule}"
    return schedule


def most_recent_schedule_time(cronjob: Obj, now: datetime, sched: _cron.Schedule, with_deadline: bool
                              ) -> tuple[datetime, datetime | None, int]:
    """mostRecentScheduleTime: (earliest time considered, the latest scheduled time not after
    now or None, how many were missed). Raises CronError for a schedule that never fires."""
    spec, status = _d(cronjob.get("spec")), _d(cronjob.get("status"))
    created = parse_time(cu.meta(cronjob).get("creationTimestamp")) or now.timestamp()
    last = parse_time(status.get("lastScheduleTime"))
    earliest = _dt(last if last is not None else created)
    deadline = spec.get("startingDeadlineSeconds")
    if with_deadline and isinstance(deadline, int):
        limit = now - timedelta(seconds=deadline)
        if limit > earliest:
            earliest = limit
    t1 = sched.next(earliest)
    t2 = sched.next(t1) if t1 is not None else None
    if t1 is None or t2 is None:
        raise _cron.CronError("time difference between two schedules is less than 1 second")
    if now < t1:
        return earliest, None, 0
    if now < t2:
        return earliest, t1, 0
    between = int(round((t2 - t1).total_seconds()))
    if between < 1:
        raise _cron.CronError("time difference between two schedules is less than 1 second")
    missed = int((now - t1).total_seconds()) // between + 1
    recent: datetime | None = None
    t: datetime | None = sched.next(t1 + timedelta(seconds=(missed - 2) * between))
    while t is not None and t <= now:
        recent = t
        t = sched.next(t)
    return earliest, recent, missed


def next_schedule_delay(cronjob: Obj, now: datetime, sched: _cron.Schedule) -> float:
    """nextScheduleTimeDuration: seconds until the next scheduled time (plus a small delta)."""
    try:
        earliest, recent, missed = most_recent_schedule_time(cronjob, now, sched, False)
        base = recent if recent is not None else (earliest if missed == 0 else now)
    except _cron.CronError:
        base = now
    nxt = sched.next(base)
    if nxt is None:
        return 3600.0
    return (nxt - now).total_seconds() + NEXT_SCHEDULE_DELTA


def job_from_template(cronjob: Obj, scheduled: datetime) -> Obj:
    """getJobFromTemplate2: the template's labels, annotations and spec, the scheduled time as
    an annotation (in the CronJob's time zone), the CronJob as controller."""
    spec = _d(cronjob.get("spec"))
    jt = _d(spec.get("jobTemplate"))
    jmeta = _d(jt.get("metadata"))
    tz = spec.get("timeZone")
    loc = _cron.load_location(tz if isinstance(tz, str) else "")
    local = scheduled.astimezone(loc) if loc is not None else scheduled.astimezone()
    stamp = local.isoformat().replace("+00:00", "Z") if local.utcoffset() == timedelta(0) else local.isoformat()
    annotations = dict(_d(jmeta.get("annotations")))
    annotations[CRONJOB_SCHEDULED_TIMESTAMP] = stamp
    m: Obj = {"name": job_name(cronjob, scheduled), "namespace": cu.meta(cronjob).get("namespace", ""),
              "annotations": annotations,
              "ownerReferences": [cu.new_controller_ref(cronjob, "batch/v1", "CronJob")]}
    if jmeta.get("labels"):
        m["labels"] = dict(jmeta["labels"])
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": m, "spec": copy.deepcopy(_d(jt.get("spec")))}


def job_ref(job: Obj) -> dict[str, Any]:
    """ref.GetReference."""
    m = cu.meta(job)
    return {"kind": "Job", "namespace": m.get("namespace", ""), "name": m.get("name", ""), "uid": m.get("uid", ""),
            "apiVersion": "batch/v1", "resourceVersion": m.get("resourceVersion", "")}


def _start_key(job: Obj) -> tuple[int, float, str]:
    """byJobStartTime: no start time last, then by name."""
    t = parse_time(_d(job.get("status")).get("startTime"))
    return (1, 0.0, cu.meta(job).get("name", "")) if t is None else (0, t, cu.meta(job).get("name", ""))


class CronJobController:
    def __init__(self, stores: Stores, recorder: EventRecorder | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.cronjobs = stores.get("batch", "cronjobs")
        self.jobs = stores.get("batch", "jobs")
        self.recorder = recorder or store_recorder(stores, COMPONENT)
        self.clock = clock
        self.opts = WriteOptions(field_manager=COMPONENT)
        self.cj_informer = informer(self.cronjobs)
        self.job_informer = informer(self.jobs)
        self.queue = WorkQueue(COMPONENT, self.sync)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.cj_informer.add_handler(self._on_cronjob)
        self.job_informer.add_handler(self._on_job)

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.cj_informer.run())
                tg.create_task(self.job_informer.run())
                await self.cj_informer.wait_synced()
                await self.job_informer.wait_synced()
                for cj in self.cj_informer.list():
                    self.queue.add(cu.key_of(cj))
                await self.queue.run()
        finally:
            for h in self._timers.values():
                h.cancel()

    def _enqueue_after(self, key: str, delay: float) -> None:
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        self._timers[key] = asyncio.get_running_loop().call_later(max(delay, 0.0), self.queue.add, key)

    def _on_cronjob(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        if obj is not None:
            if etype == "DELETED":
                h = self._timers.pop(cu.key_of(obj), None)
                if h is not None:
                    h.cancel()
            self.queue.add(cu.key_of(obj))

    def _on_job(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        for obj in (old, new):
            if obj is None:
                continue
            ref = cu.controller_ref(obj)
            if ref is not None and ref.get("kind") == "CronJob" and ref.get("apiVersion") == "batch/v1":
                self.queue.add(f"{cu.meta(obj).get('namespace', '')}/{ref.get('name', '')}")

    # ------------------------------------------------------------------ sync
    async def sync(self, key: str) -> bool:
        ns, name = cu.split_key(key)
        cronjob = self.cj_informer.get(ns, name)
        if cronjob is None:
            return False
        jobs = [j for j in self.job_informer.list(ns) if (cu.controller_ref(j) or {}).get("kind") == "CronJob"
                and (cu.controller_ref(j) or {}).get("name") == name]
        cj = copy.deepcopy(cronjob)
        cj.setdefault("status", {})
        changed = await self._cleanup_finished(cj, jobs)
        try:
            delay, synced = await self._sync_cronjob(cj, jobs)
        except errors.StatusError:
            if changed:
                await self._update_status(cj)
            raise
        if changed or synced:
            try:
                await self._update_status(cj)
            except errors.StatusError as exc:
                if exc.code != 409:
                    raise
                self._enqueue_after(key, 0.1)
                return False
        if delay is not None:
            self._enqueue_after(key, delay)
        return False

    async def _update_status(self, cj: Obj) -> None:
        m = cu.meta(cj)
        body = copy.deepcopy(cj)
        if not _l(body["status"].get("active")):
            body["status"].pop("active", None)
        try:
            await self.cronjobs.update(m.get("namespace", ""), m.get("name", ""), body, self.opts, "status")
        except errors.StatusError as exc:
            if exc.code != 404:
                raise

    async def _delete_job(self, cj: Obj, job: Obj) -> bool:
        """deleteJob: the Job (background propagation) and its place in the active list."""
        m = cu.meta(job)
        try:
            await self.jobs.delete(m.get("namespace", ""), m.get("name", ""),
                                   DeleteOptions(propagation_policy="Background"))
        except errors.StatusError as exc:
            self.recorder.emit(cj, WARNING, "FailedDelete", f"Deleted job: {exc.message}")
            return False
        _remove_active(cj, str(m.get("uid")))
        self.recorder.emit(cj, NORMAL, "SuccessfulDelete", f"Deleted job {m.get('name', '')}")
        return True

    async def _cleanup_finished(self, cj: Obj, jobs: list[Obj]) -> bool:
        """cleanupFinishedJobs: the oldest finished Jobs beyond each history limit go."""
        spec = _d(cj.get("spec"))
        changed = False
        for ctype, limit in (("Complete", spec.get("successfulJobsHistoryLimit")),
                             ("Failed", spec.get("failedJobsHistoryLimit"))):
            if not isinstance(limit, int):
                continue
            done = sorted((j for j in jobs if (finished_condition(j) or {}).get("type") == ctype), key=_start_key)
            for j in done[:max(0, len(done) - limit)]:
                if await self._delete_job(cj, j):
                    changed = True
        return changed

    async def _sync_cronjob(self, cj: Obj, jobs: list[Obj]) -> tuple[float | None, bool]:
        """syncCronJob: (seconds until the next sync, whether the status changed)."""
        status = cj["status"]
        spec = _d(cj.get("spec"))
        now = _dt(self.clock())
        changed = False
        children = set()
        for j in jobs:
            uid = str(cu.meta(j).get("uid"))
            children.add(uid)
            found = any(_d(a).get("uid") == uid for a in _l(status.get("active")))
            cond = finished_condition(j)
            if not found and cond is None:
                if cu.meta(j).get("deletionTimestamp"):
                    continue
                fresh = await self.cronjobs.get(cu.meta(cj).get("namespace", ""), cu.meta(cj).get("name", ""))
                if any(_d(a).get("uid") == uid for a in _l(_d(fresh.get("status")).get("active"))):
                    continue
                self.recorder.emit(cj, WARNING, "UnexpectedJob",
                                   f"Saw a job that the controller did not create or forgot: {cu.meta(j).get('name')}")
            elif found and cond is not None:
                _remove_active(cj, uid)
                self.recorder.emit(cj, NORMAL, "SawCompletedJob",
                                   f"Saw completed job: {cu.meta(j).get('name')}, condition: {cond.get('type')}")
                changed = True
            if cond is not None and cond.get("type") == "Complete":
                done = _d(j.get("status")).get("completionTime")
                last = parse_time(status.get("lastSuccessfulTime"))
                dt_done = parse_time(done)
                if done and (last is None or (dt_done is not None and dt_done > last)):
                    status["lastSuccessfulTime"] = done
                    changed = True
        for a in list(_l(status.get("active"))):
            a = _d(a)
            if a.get("uid") in children:
                continue
            try:
                await self.jobs.get(str(a.get("namespace") or ""), str(a.get("name") or ""))
            except errors.StatusError as exc:
                if exc.code != 404:
                    raise
                self.recorder.emit(cj, NORMAL, "MissingJob", f"Active job went missing: {a.get('name')}")
                _remove_active(cj, str(a.get("uid")))
                changed = True
        if cu.meta(cj).get("deletionTimestamp"):
            return None, changed
        tz = spec.get("timeZone")
        if isinstance(tz, str):
            try:
                _cron.load_location(tz)
            except _cron.CronError as exc:
                self.recorder.emit(cj, WARNING, "UnknownTimeZone", f"invalid timeZone: {f_quote(tz)}: {exc}")
                return None, changed
        if spec.get("suspend") is True:
            return None, changed
        try:
            sched = _cron.parse_standard(format_schedule(cj))
        except _cron.CronError as exc:
            self.recorder.emit(cj, WARNING, "UnparseableSchedule",
                               f"unparseable schedule: {f_quote(str(spec.get('schedule')))} : {exc}")
            return None, changed
        try:
            _, scheduled, missed = most_recent_schedule_time(cj, now, sched, True)
        except _cron.CronError as exc:
            self.recorder.emit(cj, WARNING, "InvalidSchedule", f"invalid schedule: {spec.get('schedule')} : {exc}")
            return None, changed
        if scheduled is not None and missed > MANY_MISSED:
            self.recorder.emit(cj, WARNING, "TooManyMissedTimes", "too many missed start times. Set or decrease "
                               ".spec.startingDeadlineSeconds or check clock skew")
        if scheduled is None:
            return next_schedule_delay(cj, now, sched), changed
        deadline = spec.get("startingDeadlineSeconds")
        if isinstance(deadline, int) and scheduled + timedelta(seconds=deadline) < now:
            self.recorder.emit(cj, WARNING, "MissSchedule", "Missed scheduled time to start a job: "
                               f"{format_datetime(scheduled.astimezone(UTC)).replace('-0000', '+0000')}")
            return next_schedule_delay(cj, now, sched), changed
        name = job_name(cj, scheduled)
        last = parse_time(status.get("lastScheduleTime"))
        if any(_d(a).get("name") == name for a in _l(status.get("active"))) or \
                (last is not None and int(last) == int(scheduled.timestamp())):
            return next_schedule_delay(cj, now, sched), changed
        policy = spec.get("concurrencyPolicy")
        if policy == "Forbid" and _l(status.get("active")):
            self.recorder.emit(cj, NORMAL, "JobAlreadyActive",
                               "Not starting job because prior execution is running and concurrency policy is Forbid")
            return next_schedule_delay(cj, now, sched), changed
        if policy == "Replace":
            for a in list(_l(status.get("active"))):
                a = _d(a)
                try:
                    job = await self.jobs.get(str(a.get("namespace") or ""), str(a.get("name") or ""))
                except errors.StatusError as exc:
                    self.recorder.emit(cj, WARNING, "FailedGet", f"Get job: {exc.message}")
                    raise
                if not await self._delete_job(cj, job):
                    raise RuntimeError(f"could not replace job {a.get('namespace')}/{a.get('name')}")
                changed = True
        req = job_from_template(cj, scheduled)
        try:
            created = await self.jobs.create(req["metadata"]["namespace"], req, self.opts)
            self.recorder.emit(cj, NORMAL, "SuccessfulCreate", f"Created job {created['metadata']['name']}")
        except errors.StatusError as exc:
            causes = (exc.details or {}).get("causes") or []
            if any(_d(c).get("reason") == "NamespaceTerminating" for c in causes):
                raise
            if exc.code != 409 or exc.reason != "AlreadyExists":
                self.recorder.emit(cj, WARNING, "FailedCreate", f"Error creating job: {exc.message}")
                raise
            created = await self.jobs.get(req["metadata"]["namespace"], req["metadata"]["name"])
            ref = cu.controller_ref(created)
            if ref is None or ref.get("uid") != cu.meta(cj).get("uid"):
                return None, changed
            if any(_d(a).get("uid") == cu.meta(created).get("uid") for a in _l(status.get("active"))):
                return None, changed
        status.setdefault("active", []).append(job_ref(created))
        status["lastScheduleTime"] = rfc3339(scheduled.timestamp())
        return next_schedule_delay(cj, now, sched), True


def _remove_active(cj: Obj, uid: str) -> None:
    status = cj["status"]
    status["active"] = [a for a in _l(status.get("active")) if _d(a).get("uid") != uid]


def f_quote(s: str) -> str:
    from kubelite.api.field import go_quote

    return go_quote(s)


__all__ = ["CronJobController", "format_schedule", "job_from_template", "job_name", "most_recent_schedule_time",
           "next_schedule_delay"]
