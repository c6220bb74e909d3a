"""The TTL-after-finished controller (pkg/controller/ttlafterfinished): deletes a finished Job
``spec.ttlSecondsAfterFinished`` seconds after its Complete or Failed condition, with
foreground propagation (its pods go first) and the Job's UID as precondition, re-checking the
live object before it does."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from kubelite.api import errors
from kubelite.apiserver.registry import DeleteOptions
from kubelite.apiserver.stores import Stores
from kubelite.controllers import controller_utils as cu
from kubelite.controllers.base import WorkQueue, informer
from kubelite.controllers.job import finished_condition
from kubelite.kinds._printing import parse_time

log = logging.getLogger("kubelite.controllers.ttlafterfinished")
Obj = dict[str, Any]
COMPONENT = "ttl-after-finished-controller"


def expire_at(job: Obj) -> float | None:
    """When the Job is due for deletion, or None when it has no TTL or has not finished."""
    m = cu.meta(job)
    ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
    if not isinstance(ttl, int) or isinstance(ttl, bool) or m.get("deletionTimestamp"):
        return None
    cond = finished_condition(job)
    if cond is None:
        return None
    t = parse_time(cond.get("lastTransitionTime"))
    return None if t is None else t + ttl


class TTLAfterFinishedController:
    def __init__(self, stores: Stores, clock: Callable[[], float] = time.time) -> None:
        self.jobs = stores.get("batch", "jobs")
        self.clock = clock
        self.job_informer = informer(self.jobs)
        self.queue = WorkQueue(COMPONENT, self.sync)
        self.job_informer.add_handler(self._on_job)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.job_informer.run())
            await self.job_informer.wait_synced()
            await self.queue.run()

    def _on_job(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        if new is not None and etype != "DELETED" and expire_at(new) is not None:
            self.queue.add(cu.key_of(new))

    async def sync(self, key: str) -> bool:
        ns, name = cu.split_key(key)
        job = self.job_informer.get(ns, name)
        if job is None:
            return False
        due = expire_at(job)
        if due is None:
            return False
        now = self.clock()
        if now < due:
            asyncio.get_running_loop().call_later(due - now, self.queue.add, key)
            return False
        try:  # the cache may be stale: decide on the live object
            fresh = await self.jobs.get(ns, name)
        except errors.StatusError as exc:
            if exc.code == 404:
                return False
            raise
        due = expire_at(fresh)
        if due is None or self.clock() < due:
            return False
        try:
            await self.jobs.delete(ns, name, DeleteOptions(propagation_policy="Foreground",
                                                           preconditions={"uid": cu.meta(fresh).get("uid")}))
        except errors.StatusError as exc:
            if exc.code not in (404, 409):
                raise
        return False


__all__ = ["TTLAfterFinishedController", "expire_at"]
