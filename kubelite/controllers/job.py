"""The Job controller (pkg/controller/job/job_controller.go): runs a Job's pods to
``spec.completions`` successes with at most ``spec.parallelism`` at once.

It creates pods from the template (owned by the Job, with the ``batch.kubernetes.io/job-tracking``
finalizer; Indexed Jobs give each pod its completion index as annotation, label, hostname and
``JOB_COMPLETION_INDEX``), in slow-start batches, waiting on expectations. Finished pods are
counted as upstream does: their UIDs go to ``status.uncountedTerminatedPods`` first, then their
finalizers are removed, then they move into ``status.succeeded``/``failed``. A Job that reaches
its completions gets ``SuccessCriteriaMet`` then ``Complete``; one past ``backoffLimit``,
``activeDeadlineSeconds`` or a ``FailJob`` podFailurePolicy rule gets ``FailureTarget``, its
active pods deleted, then ``Failed`` once none is left terminating. Failed pods are replaced
after the exponential back-off (10 s doubling to 6 min); ``suspend`` deletes the active pods
(``Suspended``); a pod whose Job is gone or finished loses the tracking finalizer. Events:
SuccessfulCreate, FailedCreate, SuccessfulDelete, Completed, BackoffLimitExceeded,
DeadlineExceeded, PodFailurePolicy, Suspended, Resumed.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubelite.api import errors
from kubelite.api.selectors import LabelSelector, SelectorError, label_selector_from_object
from kubelite.apiserver.registry import DeleteOptions, WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.client.events import NORMAL, WARNING, EventRecorder
from kubelite.controllers import controller_utils as cu
from kubelite.controllers.base import WorkQueue, informer
from kubelite.controllers.events import recorder as store_recorder
from kubelite.kinds._printing import parse_time
from kubelite.kinds.batch import (
    COMPLETION_INDEX,
    INDEX_FAILURE_COUNT,
    INDEX_IGNORED_FAILURE_COUNT,
    JOB_CONTROLLER_NAME,
    JOB_TRACKING_FINALIZER,
)

log = logging.getLogger("kubelite.controllers.job")
Obj = dict[str, Any]

COMPONENT = "job-controller"
MAX_UNCOUNTED_PODS = 500
MAX_POD_CREATE_DELETE_PER_SYNC = 500
DEFAULT_POD_FAILURE_BACKOFF = 10.0
MAX_POD_FAILURE_BACKOFF = 360.0
COMPLETION_INDEX_ENV = "JOB_COMPLETION_INDEX"
NAMESPACE_TERMINATING_CAUSE = "NamespaceTerminating"


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(int(t), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------------------- pure helpers
def selector_of(job: Obj) -> LabelSelector:
    try:
        return label_selector_from_object(_d(job.get("spec")).get("selector"))
    except (SelectorError, ValueError):
        return LabelSelector.match_nothing()


def phase(pod: Obj) -> str:
    return str(_d(pod.get("status")).get("phase") or "")


def has_finalizer(pod: Obj) -> bool:
    return JOB_TRACKING_FINALIZER in _l(cu.meta(pod).get("finalizers"))


def find_condition(status: Obj, ctype: str) -> dict[str, Any] | None:
    for c in _l(status.get("conditions")):
        if isinstance(c, dict) and c.get("type") == ctype:
            return c
    return None


def condition_true(status: Obj, ctype: str) -> bool:
    c = find_condition(status, ctype)
    return c is not None and c.get("status") == "True"


def is_finished(job: Obj) -> bool:
    """IsJobFinished: a Complete or Failed condition that is True."""
    st = _d(job.get("status"))
    return condition_true(st, "Complete") or condition_true(st, "Failed")


def finished_condition(job: Obj) -> dict[str, Any] | None:
    st = _d(job.get("status"))
    for ctype in ("Complete", "Failed"):
        c = find_condition(st, ctype)
        if c is not None and c.get("status") == "True":
            return c
    return None


def new_condition(ctype: str, status: str, reason: str, message: str, now: float) -> dict[str, Any]:
    ts = rfc3339(now)
    return {"type": ctype, "status": status, "lastProbeTime": ts, "lastTransitionTime": ts, "reason": reason,
            "message": message}


def ensure_condition(conds: list[dict[str, Any]], ctype: str, status: str, reason: str, message: str,
                     now: float) -> bool:
    """ensureJobConditionStatus: set or add (never add a False one); whether anything changed."""
    for i, c in enumerate(conds):
        if c.get("type") == ctype:
            if c.get("status") != status or c.get("reason") != reason or c.get("message") != message:
                conds[i] = new_condition(ctype, status, reason, message, now)
                return True
            return False
    if status != "False":
        conds.append(new_condition(ctype, status, reason, message, now))
        return True
    return False


def is_indexed(job: Obj) -> bool:
    return _d(job.get("spec")).get("completionMode") == "Indexed"


def completion_index(pod: Obj) -> int:
    """getCompletionIndex: the annotation's value, or -1."""
    raw = _d(cu.meta(pod).get("annotations")).get(COMPLETION_INDEX)
    if not isinstance(raw, str) or not raw.isdigit():
        return -1
    return int(raw)


def per_index(job: Obj) -> bool:
    """hasBackoffLimitPerIndex."""
    return _d(job.get("spec")).get("backoffLimitPerIndex") is not None


def _count_annotation(pod: Obj, key: str) -> int:
    raw = _d(cu.meta(pod).get("annotations")).get(key)
    return int(raw) if isinstance(raw, str) and raw.isdigit() else 0


def index_failure_count(pod: Obj) -> int:
    return _count_annotation(pod, INDEX_FAILURE_COUNT)


def index_absolute_failure_count(pod: Obj) -> int:
    """getIndexAbsoluteFailureCount: the failures that counted and those the policy ignored."""
    return _count_annotation(pod, INDEX_FAILURE_COUNT) + _count_annotation(pod, INDEX_IGNORED_FAILURE_COUNT)


def is_index_failed(job: Obj, pod: Obj) -> bool:
    """isIndexFailed: a FailIndex rule matched, or the index used up backoffLimitPerIndex."""
    if not is_pod_failed(pod, job):
        return False
    policy = _d(job.get("spec")).get("podFailurePolicy")
    counted = True
    if policy is not None:
        _, counted, action = match_pod_failure_policy(policy, pod)
        if action == "FailIndex":
            return True
    return counted and index_failure_count(pod) >= _int(_d(job.get("spec")).get("backoffLimitPerIndex"))


def new_index_failure_counts(job: Obj, replaced: Obj | None) -> tuple[int, int]:
    """getNewIndexFailureCounts: what the replacement of a failed pod carries."""
    if replaced is None:
        return 0, 0
    failures, ignored = index_failure_count(replaced), _count_annotation(replaced, INDEX_IGNORED_FAILURE_COUNT)
    policy = _d(job.get("spec")).get("podFailurePolicy")
    if policy is not None and not match_pod_failure_policy(policy, replaced)[1]:
        return failures, ignored + 1
    return failures + 1, ignored


def only_replace_failed(job: Obj) -> bool:
    spec = _d(job.get("spec"))
    return spec.get("podReplacementPolicy") == "Failed" or spec.get("podFailurePolicy") is not None


def is_pod_failed(pod: Obj, job: Obj) -> bool:
    """isPodFailed: Failed, or (unless only failed pods are replaced) deleted before succeeding."""
    if phase(pod) == "Failed":
        return True
    if only_replace_failed(job):
        return False
    return bool(cu.meta(pod).get("deletionTimestamp")) and phase(pod) != "Succeeded"


def finished_time(pod: Obj, now: float) -> float:
    """getFinishedTime: the latest container finish, else the deletion time, else now."""
    latest: float | None = None
    st = _d(pod.get("status"))
    for cs in _l(st.get("containerStatuses")) + _l(st.get("initContainerStatuses")):
        t = parse_time(_d(_d(_d(cs).get("state")).get("terminated")).get("finishedAt"))
        if t is not None and (latest is None or t > latest):
            latest = t
    if latest is not None:
        return latest
    t = parse_time(cu.meta(pod).get("deletionTimestamp"))
    return t if t is not None else now


def format_indexes(ix: set[int]) -> str:
    """orderedIntervals.String: "1,3-5,7"."""
    out: list[str] = []
    vals = sorted(ix)
    i = 0
    while i < len(vals):
        j = i
        while j + 1 < len(vals) and vals[j + 1] == vals[j] + 1:
            j += 1
        out.append(str(vals[i]) if i == j else f"{vals[i]}-{vals[j]}")
        i = j + 1
    return ",".join(out)


def parse_indexes(s: str, completions: int) -> set[int]:
    """parseIndexesFromString: what it cannot read, or beyond completions, is skipped."""
    out: set[int] = set()
    for part in (s or "").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi) if hi else int(lo)
        except ValueError:
            continue
        out.update(range(max(a, 0), min(b, completions - 1) + 1))
    return out


def match_success_policy(policy: Any, completions: int, succeeded: set[int]) -> str | None:
    """matchSuccessPolicy: "Matched rules at index N" for the first rule the succeeded indexes meet."""
    if not isinstance(policy, dict) or not succeeded:
        return None
    for i, rule in enumerate(_l(policy.get("rules"))):
        rule = _d(rule)
        count = rule.get("succeededCount")
        if isinstance(rule.get("succeededIndexes"), str):
            required = parse_indexes(rule["succeededIndexes"], completions)
            if not required:
                continue
            have = len(required & succeeded)
            if (have >= count) if isinstance(count, int) else (have == len(required)):
                return f"Matched rules at index {i}"
        elif isinstance(count, int) and len(succeeded) >= count:
            return f"Matched rules at index {i}"
    return None


def _match_exit_codes(st: dict[str, Any], req: dict[str, Any]) -> dict[str, Any] | None:
    values = _l(req.get("values"))
    op = req.get("operator")
    for statuses in (_l(st.get("containerStatuses")), _l(st.get("initContainerStatuses"))):
        for cs in statuses:
            term = _d(_d(_d(cs).get("state")).get("terminated"))
            if not term:
                continue
            name = req.get("containerName")
            code = _int(term.get("exitCode"))
            if (name is None or name == _d(cs).get("name")) and code != 0 and \
                    ((op == "In" and code in values) or (op == "NotIn" and code not in values)):
                return _d(cs)
    return None


def match_pod_failure_policy(policy: Any, pod: Obj) -> tuple[str | None, bool, str | None]:
    """matchPodFailurePolicy: (message for FailJob, whether the failure counts, the action)."""
    if not isinstance(policy, dict):
        return None, True, None
    st = _d(pod.get("status"))
    m = cu.meta(pod)
    for i, rule in enumerate(_l(policy.get("rules"))):
        rule = _d(rule)
        action = rule.get("action")
        msg: str | None = None
        if isinstance(rule.get("onExitCodes"), dict):
            cs = _match_exit_codes(st, rule["onExitCodes"])
            if cs is None:
                continue
            code = _int(_d(_d(cs.get("state")).get("terminated")).get("exitCode"))
            msg = (f"Container {cs.get('name')} for pod {m.get('namespace')}/{m.get('name')} failed with exit code "
                   f"{code} matching {action} rule at index {i}")
        elif rule.get("onPodConditions") is not None:
            patterns = [_d(p) for p in _l(rule.get("onPodConditions"))]
            cond = next((c for c in _l(st.get("conditions")) for p in patterns
                         if _d(c).get("type") == p.get("type") and _d(c).get("status") == p.get("status")), None)
            if cond is None:
                continue
            msg = (f"Pod {m.get('namespace')}/{m.get('name')} has condition {_d(cond).get('type')} matching {action} "
                   f"rule at index {i}")
        else:
            continue
        if action == "Ignore":
            return None, False, action
        if action == "FailJob":
            return msg, True, action
        return None, True, action
    return None, True, None


@dataclass
class BackoffRecord:
    """backoffRecord: failures since the last success and when the last one finished."""

    failures: int = 0
    last_failure: float | None = None

    def remaining(self, now: float) -> float:
        if self.failures == 0 or self.last_failure is None:
            return 0.0
        backoff = DEFAULT_POD_FAILURE_BACKOFF
        for _ in range(1, self.failures):
            backoff *= 2
            if backoff >= MAX_POD_FAILURE_BACKOFF:
                backoff = MAX_POD_FAILURE_BACKOFF
                break
        elapsed = now - self.last_failure
        return 0.0 if backoff < elapsed else backoff - elapsed


def new_backoff_record(old: BackoffRecord | None, succeeded: list[Obj], failed: list[Obj], now: float) -> BackoffRecord:
    """backoffStore.newBackoffRecord."""
    rec = BackoffRecord(old.failures, old.last_failure) if old else BackoffRecord()
    s_times = sorted(finished_time(p, now) for p in succeeded)
    f_times = sorted(finished_time(p, now) for p in failed)
    if not s_times:
        if f_times:
            rec.failures += len(f_times)
            rec.last_failure = f_times[-1]
        return rec
    rec = BackoffRecord()
    for t in reversed(f_times):
        if t <= s_times[-1]:
            break
        if rec.last_failure is None:
            rec.last_failure = t
        rec.failures += 1
    return rec


def past_backoff_limit_on_failure(job: Obj, pods: list[Obj]) -> bool:
    """pastBackoffLimitOnFailure: container restarts of running pods (restartPolicy OnFailure)."""
    spec = _d(job.get("spec"))
    if _d(_d(spec.get("template")).get("spec")).get("restartPolicy") != "OnFailure":
        return False
    total = 0
    for p in pods:
        if phase(p) in ("Running", "Pending"):
            st = _d(p.get("status"))
            total += sum(_int(_d(c).get("restartCount")) for c in
                         _l(st.get("initContainerStatuses")) + _l(st.get("containerStatuses")))
    limit = _int(spec.get("backoffLimit"))
    return total > 0 if limit == 0 else total >= limit


@dataclass
class _Ctx:
    """syncJobCtx."""

    job: Obj
    pods: list[Obj]
    active: list[Obj]
    ready: int
    terminating: int
    uncounted_succeeded: set[str]
    uncounted_failed: set[str]
    expected_rm: set[str]
    succeeded: int = 0
    failed: int = 0
    finished: dict[str, Any] | None = None
    succeeded_indexes: set[int] = field(default_factory=set)
    prev_succeeded_indexes: set[int] = field(default_factory=set)
    backoff: BackoffRecord = field(default_factory=BackoffRecord)
    failed_indexes: set[int] | None = None
    delayed: dict[int, Obj] = field(default_factory=dict)  # podsWithDelayedDeletionPerIndex


def remaining_for_failures(failures: int, last_failure: float | None, now: float) -> float:
    """getRemainingTimeForFailuresCount."""
    return BackoffRecord(failures, last_failure).remaining(now)


def pod_from_template(job: Obj, index: int = -1, replaced: Obj | None = None) -> Obj:
    """What CreatePodsWithGenerateName posts: the template's metadata and spec, the tracking
    finalizer, the Job as controller; an Indexed Job's index as annotation, label, hostname
    and JOB_COMPLETION_INDEX."""
    spec = _d(job.get("spec"))
    template = copy.deepcopy(_d(spec.get("template")))
    tmeta = _d(template.get("metadata"))
    m = cu.meta(job)
    name = str(m.get("name") or "")
    pod_meta: Obj = {"generateName": f"{name}-", "namespace": m.get("namespace", ""),
                     "ownerReferences": [cu.new_controller_ref(job, "batch/v1", "Job")]}
    for k in ("labels", "annotations", "finalizers"):
        if tmeta.get(k):
            pod_meta[k] = tmeta[k]
    finalizers = list(_l(pod_meta.get("finalizers")))
    if JOB_TRACKING_FINALIZER not in finalizers:
        finalizers.append(JOB_TRACKING_FINALIZER)
    pod_meta["finalizers"] = finalizers
    pod_spec = _d(template.get("spec"))
    if index >= 0:
        for c in _l(pod_spec.get("initContainers")) + _l(pod_spec.get("containers")):
            env = c.setdefault("env", [])
            if not any(_d(e).get("name") == COMPLETION_INDEX_ENV for e in env):
                env.append({"name": COMPLETION_INDEX_ENV, "valueFrom": {"fieldRef": {
                    "fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}})
        pod_meta.setdefault("annotations", {})[COMPLETION_INDEX] = str(index)
        pod_meta.setdefault("labels", {})[COMPLETION_INDEX] = str(index)
        pod_spec["hostname"] = f"{name}-{index}"
        pod_meta["generateName"] = f"{name}-{index}-"
        if per_index(job):
            failures, ignored = new_index_failure_counts(job, replaced)
            pod_meta["annotations"][INDEX_FAILURE_COUNT] = str(failures)
            if ignored > 0:
                pod_meta["annotations"][INDEX_IGNORED_FAILURE_COUNT] = str(ignored)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": pod_spec}


def error_text(exc: BaseException) -> str:
    return exc.message if isinstance(exc, errors.StatusError) else str(exc)


# ----------------------------------------------------------------------------- the controller
class JobController:
    def __init__(self, stores: Stores, recorder: EventRecorder | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.jobs = stores.get("batch", "jobs")
        self.pods = stores.get("", "pods")
        self.recorder = recorder or store_recorder(stores, COMPONENT)
        self.clock = clock
        self.opts = WriteOptions(field_manager=COMPONENT)
        self.job_informer = informer(self.jobs)
        self.pod_informer = informer(self.pods)
        self.pod_informer.add_index(cu.CONTROLLER_UID_INDEX, cu.controller_uid_index)
        self.expectations = cu.Expectations()
        self.finalizer_expectations: dict[str, set[str]] = {}
        self.backoff: dict[str, BackoffRecord] = {}
        self.queue = WorkQueue(COMPONENT, self.sync)
        self.orphan_queue = WorkQueue(COMPONENT + "-orphan-pods", self.sync_orphan_pod)
        self.job_informer.add_handler(self._on_job)
        self.pod_informer.add_handler(self._on_pod)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.job_informer.run())
            tg.create_task(self.pod_informer.run())
            await self.job_informer.wait_synced()
            await self.pod_informer.wait_synced()
            for job in self.job_informer.list():
                self.queue.add(cu.key_of(job))
            for pod in self.pod_informer.list():
                self._maybe_orphan(pod)
            tg.create_task(self.orphan_queue.run())
            await self.queue.run()

    # ------------------------------------------------------------------ handlers
    def _enqueue_after(self, key: str, delay: float) -> None:
        asyncio.get_running_loop().call_later(max(delay, 0.0), self.queue.add, key)

    def _on_job(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        if obj is None:
            return
        key = cu.key_of(obj)
        if etype == "DELETED":
            self.expectations.delete(key)
            self.finalizer_expectations.pop(key, None)
            self.backoff.pop(key, None)
            # its pods lose their tracking finalizer
            for p in self.pod_informer.by_index(cu.CONTROLLER_UID_INDEX, str(cu.meta(obj).get("uid"))):
                self._maybe_orphan(p)
        self.queue.add(key)

    def _owner(self, pod: Obj) -> Obj | None:
        ref = cu.controller_ref(pod)
        if ref is None or ref.get("kind") != "Job" or ref.get("apiVersion") != "batch/v1":
            return None
        job = self.job_informer.get(cu.meta(pod).get("namespace", ""), ref.get("name", ""))
        if job is None or cu.meta(job).get("uid") != ref.get("uid"):
            return None
        return job

    def _enqueue_matching(self, pod: Obj) -> None:
        labels = _d(cu.meta(pod).get("labels"))
        if not labels:
            return
        for job in self.job_informer.list(cu.meta(pod).get("namespace", "")):
            sel = selector_of(job)
            if not sel.empty() and sel.matches(labels):
                self.queue.add(cu.key_of(job))

    def _maybe_orphan(self, pod: Obj) -> None:
        if not has_finalizer(pod):
            return
        job = self._owner(pod)
        if job is None or is_finished(job):
            self.orphan_queue.add(cu.key_of(pod))

    def _finalizer_removal_observed(self, key: str, pod: Obj) -> None:
        uids = self.finalizer_expectations.get(key)
        if uids is not None:
            uids.discard(str(cu.meta(pod).get("uid")))

    def _on_pod(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        pod = new if new is not None else old
        if pod is None:
            return
        if new is not None and old is not None and cu.meta(new).get("resourceVersion") == \
                cu.meta(old).get("resourceVersion"):
            return  # a resync
        job = self._owner(pod)
        if job is None:
            if etype != "DELETED":
                self._maybe_orphan(pod)
                if cu.controller_ref(pod) is None and not cu.meta(pod).get("deletionTimestamp"):
                    self._enqueue_matching(pod)  # getPodJobs: a Job may adopt it
            elif old is not None:  # a pod whose owner changed: the old owner hears of it too
                ref = cu.controller_ref(old)
                if ref is not None:
                    self.queue.add(f"{cu.meta(old).get('namespace', '')}/{ref.get('name', '')}")
            return
        key = cu.key_of(job)
        pkey = cu.key_of(pod)
        if etype == "ADDED":
            if cu.meta(pod).get("deletionTimestamp"):
                self.expectations.deletion_observed(key, pkey)
            else:
                self.expectations.creation_observed(key)
        elif etype == "DELETED":
            self.expectations.deletion_observed(key, pkey)
            self._finalizer_removal_observed(key, pod)
        else:
            if cu.meta(pod).get("deletionTimestamp") and old is not None and \
                    not cu.meta(old).get("deletionTimestamp"):
                self.expectations.deletion_observed(key, pkey)
            if not has_finalizer(pod):
                self._finalizer_removal_observed(key, pod)
            if is_finished(job):
                self._maybe_orphan(pod)
        self.queue.add(key)

    # ------------------------------------------------------------------ orphan pods
    async def sync_orphan_pod(self, key: str) -> bool:
        """syncOrphanPod: a pod whose Job is gone, another's, or finished loses the finalizer."""
        ns, name = cu.split_key(key)
        pod = self.pod_informer.get(ns, name)
        if pod is None or not has_finalizer(pod):
            return False
        ref = cu.controller_ref(pod)
        if ref is not None:
            if ref.get("kind") != "Job" or ref.get("apiVersion") != "batch/v1":
                return False
            job = self._owner(pod)
            if job is not None and not is_finished(job):
                return False
        await self._remove_finalizer(pod)
        return False

    async def _remove_finalizer(self, pod: Obj) -> None:
        m = cu.meta(pod)
        uid = m.get("uid")

        def change(cur: Obj) -> Obj:
            cm = cur.setdefault("metadata", {})
            if cm.get("uid") != uid:
                raise errors.not_found("pods", m.get("name", ""))
            fins = [x for x in _l(cm.get("finalizers")) if x != JOB_TRACKING_FINALIZER]
            if fins:
                cm["finalizers"] = fins
            else:
                cm.pop("finalizers", None)
            return cur

        try:
            await self.pods.patch(m.get("namespace", ""), m.get("name", ""), change, self.opts)
        except errors.StatusError as exc:
            if exc.code != 404:
                raise

    # ------------------------------------------------------------------ sync
    async def sync(self, key: str) -> bool:
        async def once() -> bool:
            await self._sync(key)
            return False

        return await cu.retry_on_conflict(once, "job", key, self._enqueue_after)

    def _get_new_finished(self, ctx: _Ctx) -> tuple[list[Obj], list[Obj]]:
        """getNewFinishedPods: finished pods still carrying the finalizer, not yet uncounted."""
        job = ctx.job
        completions = _int(_d(job.get("spec")).get("completions"))

        def valid(p: Obj, uncounted: set[str]) -> bool:
            uid = str(cu.meta(p).get("uid"))
            if not has_finalizer(p) or uid in uncounted or uid in ctx.expected_rm:
                return False
            if is_indexed(job):
                ix = completion_index(p)
                if ix < 0 or ix >= completions:
                    return False
            return True

        succeeded = [p for p in ctx.pods if valid(p, ctx.uncounted_succeeded) and phase(p) == "Succeeded"]
        failed = [p for p in ctx.pods if valid(p, ctx.uncounted_failed) and is_pod_failed(p, job)]
        return succeeded, failed

    async def _sync(self, key: str) -> None:
        ns, name = cu.split_key(key)
        shared = self.job_informer.get(ns, name)
        if shared is None:
            self.expectations.delete(key)
            self.finalizer_expectations.pop(key, None)
            self.backoff.pop(key, None)
            return
        managed_by = _d(shared.get("spec")).get("managedBy")
        if managed_by is not None and managed_by != JOB_CONTROLLER_NAME:
            return  # another controller's
        job = copy.deepcopy(shared)
        if is_finished(job):
            self.backoff.pop(key, None)
            return
        spec = job.setdefault("spec", {})
        status = job.setdefault("status", {})
        now = self.clock()
        uncounted = status.get("uncountedTerminatedPods")
        if not isinstance(uncounted, dict):
            status["uncountedTerminatedPods"] = uncounted = {}
        satisfied = self.expectations.satisfied(key)
        pods = await self._pods_for_job(job)
        active = [p for p in pods if cu.is_pod_active(p)]
        ctx = _Ctx(job=job, pods=pods, active=active, ready=sum(1 for p in active if cu.is_pod_ready(p)),
                   terminating=sum(1 for p in pods if cu.is_pod_terminating(p)),
                   uncounted_succeeded=set(map(str, _l(uncounted.get("succeeded")))),
                   uncounted_failed=set(map(str, _l(uncounted.get("failed")))),
                   expected_rm=set(self.finalizer_expectations.get(key, set())))
        n_active = len(active)
        new_succeeded, new_failed = self._get_new_finished(ctx)
        policy = spec.get("podFailurePolicy")
        counted_failed = sum(1 for p in new_failed if match_pod_failure_policy(policy, p)[1])
        ctx.succeeded = _int(status.get("succeeded")) + len(new_succeeded) + len(ctx.uncounted_succeeded)
        ctx.failed = _int(status.get("failed")) + counted_failed + len(ctx.uncounted_failed)
        suspended = spec.get("suspend") is True
        if status.get("startTime") is None and not suspended:
            status["startTime"] = rfc3339(now)
        ctx.backoff = new_backoff_record(self.backoff.get(key), new_succeeded, new_failed, now)

        manage_err: BaseException | None = None
        backoff_limit = _int(spec.get("backoffLimit"))
        ctx.finished = find_condition(status, "SuccessCriteriaMet") if condition_true(
            status, "SuccessCriteriaMet") else None
        if ctx.finished is None:
            target = find_condition(status, "FailureTarget")
            if target is not None and target.get("status") == "True":
                ctx.finished = new_condition("Failed", "True", str(target.get("reason") or ""),
                                             str(target.get("message") or ""), now)
            elif policy is not None:
                for p in pods:
                    if is_pod_failed(p, job):
                        msg = match_pod_failure_policy(policy, p)[0]
                        if msg is not None:
                            ctx.finished = new_condition("FailureTarget", "True", "PodFailurePolicy", msg, now)
                            break
        if ctx.finished is None:
            start = parse_time(status.get("startTime"))
            deadline = spec.get("activeDeadlineSeconds")
            if ctx.failed > backoff_limit or past_backoff_limit_on_failure(job, pods):
                ctx.finished = new_condition("FailureTarget", "True", "BackoffLimitExceeded",
                                             "Job has reached the specified backoff limit", now)
            elif isinstance(deadline, int) and start is not None and not suspended and now - start >= deadline:
                ctx.finished = new_condition("FailureTarget", "True", "DeadlineExceeded",
                                             "Job was active longer than specified deadline", now)
            elif isinstance(deadline, int) and start is not None and not suspended:
                self._enqueue_after(key, deadline - (now - start))
        completions = spec.get("completions")
        if is_indexed(job) and isinstance(completions, int):
            ctx.prev_succeeded_indexes = parse_indexes(str(status.get("completedIndexes") or ""), completions)
            ctx.succeeded_indexes = ctx.prev_succeeded_indexes | {
                completion_index(p) for p in pods if phase(p) == "Succeeded" and has_finalizer(p)
                and 0 <= completion_index(p) < completions}
            ctx.succeeded = len(ctx.succeeded_indexes)
            if per_index(job):
                self._per_index(ctx, completions, now)
            if ctx.finished is None:
                msg = match_success_policy(spec.get("successPolicy"), completions, ctx.succeeded_indexes)
                if msg is not None:
                    ctx.finished = new_condition("SuccessCriteriaMet", "True", "SuccessPolicy", msg, now)

        suspend_changed = False
        if ctx.finished is not None:
            deleted_ready, deleted, manage_err = await self._delete_active(job, ctx.active)
            if deleted != n_active or not satisfied:
                ctx.finished = None  # pods may still be arriving or losing finalizers
            n_active -= deleted
            ctx.terminating += deleted
            ctx.ready -= deleted_ready
        else:
            manage_called = False
            if satisfied and not cu.meta(job).get("deletionTimestamp"):
                n_active, manage_err = await self._manage(job, ctx, key, now)
                manage_called = True
            if completions is None:
                complete = ctx.succeeded > 0 and n_active == 0
            else:
                complete = ctx.succeeded >= _int(completions) and n_active == 0
            if complete:
                ctx.finished = new_condition("SuccessCriteriaMet", "True", "CompletionsReached",
                                             "Reached expected number of succeeded pods", now)
            elif manage_called:
                conds = status.setdefault("conditions", [])
                if suspended:
                    if ensure_condition(conds, "Suspended", "True", "JobSuspended", "Job suspended", now):
                        suspend_changed = True
                        self.recorder.emit(job, NORMAL, "Suspended", "Job suspended")
                elif ensure_condition(conds, "Suspended", "False", "JobResumed", "Job resumed", now):
                    suspend_changed = True
                    self.recorder.emit(job, NORMAL, "Resumed", "Job resumed")
                    status["startTime"] = rfc3339(now)  # the deadline counts from the resumption
                if not conds:
                    status.pop("conditions", None)

        needs_update = suspend_changed or n_active != _int(status.get("active")) or \
            status.get("ready") != ctx.ready or status.get("terminating") != ctx.terminating
        status["active"] = n_active
        status["ready"] = ctx.ready
        status["terminating"] = ctx.terminating
        await self._track_status(key, ctx, needs_update, now)
        if manage_err is not None:
            raise manage_err
        remaining = 0.0 if per_index(job) else ctx.backoff.remaining(self.clock())
        if remaining > 0 and not is_finished(ctx.job):
            self._enqueue_after(key, remaining)

    def _per_index(self, ctx: _Ctx, completions: int, now: float) -> None:
        """calculateFailedIndexes, the failure conditions they lead to, and
        getPodsWithDelayedDeletionPerIndex (the last failed pod of an index keeps its finalizer
        until its replacement carries the failure count on)."""
        job = ctx.job
        status = job["status"]
        failed = parse_indexes(str(status.get("failedIndexes") or ""), completions)
        for p in ctx.pods:
            ix = completion_index(p)
            if phase(p) == "Failed" and has_finalizer(p) and 0 <= ix < completions and is_index_failed(job, p):
                failed.add(ix)
        ctx.failed_indexes = failed
        spec = _d(job.get("spec"))
        if ctx.finished is None:
            mfi = spec.get("maxFailedIndexes")
            if isinstance(mfi, int) and len(failed) > mfi:
                ctx.finished = new_condition("FailureTarget", "True", "MaxFailedIndexesExceeded",
                                             "Job has exceeded the specified maximal number of failed indexes", now)
            elif failed and len(failed) + len(ctx.succeeded_indexes) >= completions:
                ctx.finished = new_condition("FailureTarget", "True", "FailedIndexes", "Job has failed indexes", now)
        active_ix = {completion_index(p) for p in ctx.active}
        delayed: dict[int, Obj] = {}
        for p in ctx.pods:
            uid = str(cu.meta(p).get("uid"))
            ix = completion_index(p)
            if not has_finalizer(p) or uid in ctx.expected_rm or not is_pod_failed(p, job) or not 0 <= ix < completions:
                continue
            if ix in ctx.succeeded_indexes or ix in failed or ix in active_ix:
                continue
            last = delayed.get(ix)
            if last is None or (index_absolute_failure_count(last) <= index_absolute_failure_count(p)
                                and finished_time(p, now) >= finished_time(last, now)):
                delayed[ix] = p
        ctx.delayed = delayed

    async def _pods_for_job(self, job: Obj) -> list[Obj]:
        """getPodsForJob: the Job's pods, adopting orphans its selector matches."""
        m = cu.meta(job)
        sel = selector_of(job)
        pods = [p for p in self.pod_informer.list(m.get("namespace", ""))
                if (cu.controller_ref(p) or {}).get("uid") == m.get("uid") or sel.matches(_d(cu.meta(p).get("labels")))]

        async def can_adopt() -> None:
            fresh = await self.jobs.get(m.get("namespace", ""), m.get("name", ""))
            fm = cu.meta(fresh)
            if fm.get("uid") != m.get("uid"):
                raise errors.conflict("jobs", m.get("name", ""), f"original Job {m.get('namespace')}/{m.get('name')} "
                                      f"is gone: got uid {fm.get('uid')}, wanted {m.get('uid')}", "batch")
            if fm.get("deletionTimestamp"):
                raise errors.conflict("jobs", m.get("name", ""), f"{m.get('namespace')}/{m.get('name')} has just "
                                      "been deleted", "batch")

        mgr = cu.RefManager(self.pods, job, "batch/v1", "Job", sel, can_adopt, COMPONENT, (JOB_TRACKING_FINALIZER,))
        return await mgr.claim(pods)

    async def _delete_active(self, job: Obj, pods: list[Obj]) -> tuple[int, int, BaseException | None]:
        """deleteActivePods: DELETE each (the finalizers stay until they are counted)."""
        results = await asyncio.gather(*(self._delete_pod(job, p) for p in pods))
        errs = [e for e in results if e is not None]
        deleted_ready = sum(1 for p, e in zip(pods, results, strict=True) if e is None and cu.is_pod_ready(p))
        return deleted_ready, len(pods) - len(errs), errs[0] if errs else None

    async def _delete_pod(self, job: Obj, pod: Obj) -> BaseException | None:
        m = cu.meta(pod)
        try:
            await self.pods.delete(m.get("namespace", ""), m.get("name", ""), DeleteOptions())
        except errors.StatusError as exc:
            if exc.code == 404:
                return None
            self.recorder.emit(job, WARNING, "FailedDelete", f"Error deleting: {exc.message}")
            return exc
        self.recorder.emit(job, NORMAL, "SuccessfulDelete", f"Deleted pod: {m.get('name', '')}")
        return None

    def _for_removal(self, job: Obj, active: list[Obj], at_least: int) -> list[Obj]:
        """activePodsForRemoval: duplicated or invalid indexes first, then ActivePods order."""
        rm: list[Obj] = []
        left = active
        if is_indexed(job):
            completions = _int(_d(job.get("spec")).get("completions"))
            seen: set[int] = set()
            left = []
            for p in sorted(active, key=completion_index):
                ix = completion_index(p)
                if ix < 0 or ix >= completions or ix in seen:
                    rm.append(p)
                else:
                    seen.add(ix)
                    left.append(p)
        if len(rm) < at_least:
            rm += cu.pods_to_delete(left, [], at_least - len(rm), self.clock())
        return rm

    async def _delete_job_pods(self, job: Obj, key: str, pods: list[Obj]) -> tuple[int, int, BaseException | None]:
        """deleteJobPods: remove the finalizer (these pods are not counted), then DELETE."""
        self.expectations.expect_deletions(key, [cu.key_of(p) for p in pods])

        async def one(p: Obj) -> BaseException | None:
            try:
                if has_finalizer(p):
                    await self._remove_finalizer(p)
            except errors.StatusError as exc:
                self.expectations.deletion_observed(key, cu.key_of(p))
                return exc
            err = await self._delete_pod(job, p)
            if err is not None:
                self.expectations.deletion_observed(key, cu.key_of(p))
            return err

        results = await asyncio.gather(*(one(p) for p in pods))
        errs = [e for e in results if e is not None]
        ready = sum(1 for p, e in zip(pods, results, strict=True) if e is None and cu.is_pod_ready(p))
        return ready, len(pods) - len(errs), errs[0] if errs else None

    async def _manage(self, job: Obj, ctx: _Ctx, key: str, now: float) -> tuple[int, BaseException | None]:
        """manageJob: the active pods the Job wants, and the error of creating or deleting."""
        spec = _d(job.get("spec"))
        active = len(ctx.active)
        parallelism = _int(spec.get("parallelism"))
        if spec.get("suspend") is True:
            victims = self._for_removal(job, ctx.active, active)
            ready, removed, err = await self._delete_job_pods(job, key, victims)
            ctx.terminating += removed
            ctx.ready -= ready
            return active - removed, err
        completions = spec.get("completions")
        if completions is None:
            want = active if ctx.succeeded > 0 else parallelism
        else:
            want = max(0, min(_int(completions) - ctx.succeeded, parallelism))
        victims = self._for_removal(job, ctx.active, max(0, active - want))[:MAX_POD_CREATE_DELETE_PER_SYNC]
        if victims:
            ready, removed, err = await self._delete_job_pods(job, key, victims)
            ctx.terminating += removed
            ctx.ready -= ready
            return active - removed, err
        terminating = ctx.terminating if only_replace_failed(job) else 0
        diff = want - terminating - active
        if diff <= 0:
            return active, None
        if not per_index(job) and ctx.backoff.remaining(now) > 0:
            return active, None  # sync re-queues the Job when the back-off is over
        diff = min(diff, MAX_POD_CREATE_DELETE_PER_SYNC)
        indexes: list[int] = []
        if is_indexed(job):
            indexes = self._first_pending_indexes(ctx, diff, _int(completions))
            if per_index(job):
                indexes, wait = self._indexes_past_backoff(ctx, indexes, now)
                if wait > 0:
                    self._enqueue_after(key, wait)
            diff = len(indexes)
            if diff == 0:
                return active, None
        self.expectations.expect_creations(key, diff)
        pending = list(indexes)

        async def create() -> None:
            index = pending.pop(0) if pending else -1
            await self._create_pod(job, index, ctx.delayed.get(index))

        ok, err = await cu.slow_start_batch(diff, cu.SLOW_START_INITIAL_BATCH, create)
        for _ in range(diff - ok):
            self.expectations.creation_observed(key)
        return active + ok, err

    def _first_pending_indexes(self, ctx: _Ctx, count: int, completions: int) -> list[int]:
        """firstPendingIndexes: neither succeeded, failed, active nor (when only failed pods are
        replaced) terminating."""
        taken = ctx.succeeded_indexes | {completion_index(p) for p in ctx.active} | (ctx.failed_indexes or set())
        if only_replace_failed(ctx.job):
            taken |= {completion_index(p) for p in ctx.pods if cu.is_pod_terminating(p)}
        return [i for i in range(completions) if i not in taken][:count]

    def _indexes_past_backoff(self, ctx: _Ctx, indexes: list[int], now: float) -> tuple[list[int], float]:
        """getPodCreationInfoForIndependentIndexes: the indexes whose own back-off is over, or
        the shortest wait when none is."""
        ready: list[int] = []
        waits: list[float] = []
        for ix in indexes:
            last = ctx.delayed.get(ix)
            wait = 0.0 if last is None else remaining_for_failures(index_absolute_failure_count(last) + 1,
                                                                     finished_time(last, now), now)
            if wait == 0:
                ready.append(ix)
            else:
                waits.append(wait)
        return (ready, 0.0) if ready else ([], min(waits, default=0.0))

    async def _create_pod(self, job: Obj, index: int, replaced: Obj | None = None) -> None:
        pod = pod_from_template(job, index, replaced)
        try:
            created = await self.pods.create(pod["metadata"]["namespace"], pod, self.opts)
        except errors.StatusError as exc:
            causes = (exc.details or {}).get("causes") or []
            if any(_d(c).get("reason") == NAMESPACE_TERMINATING_CAUSE for c in causes):
                return
            self.recorder.emit(job, WARNING, "FailedCreate", f"Error creating: {exc.message}")
            raise
        self.recorder.emit(job, NORMAL, "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")

    # ------------------------------------------------------------------ status and finalizers
    async def _track_status(self, key: str, ctx: _Ctx, needs_flush: bool, now: float) -> None:
        """trackJobStatusAndRemoveFinalizers."""
        job = ctx.job
        status = job["status"]
        uncounted = status["uncountedTerminatedPods"]
        indexed = is_indexed(job)
        completions = _int(_d(job.get("spec")).get("completions"))
        pods = sorted(ctx.pods, key=completion_index) if indexed else ctx.pods
        with_finalizer = {str(cu.meta(p).get("uid")) for p in pods
                          if has_finalizer(p) and str(cu.meta(p).get("uid")) not in ctx.expected_rm}
        if _clean_uncounted(status, with_finalizer):
            needs_flush = True
        to_remove: list[Obj] = []
        new_indexes: list[int] = []
        reached_max = False
        policy = _d(job.get("spec")).get("podFailurePolicy")
        job_finishing = ctx.finished is not None and ctx.finished.get("type") != "SuccessCriteriaMet"
        for pod in pods:
            uid = str(cu.meta(pod).get("uid"))
            if not has_finalizer(pod) or uid in ctx.expected_rm:
                continue
            failed = is_pod_failed(pod, job)
            can_remove = bool(cu.meta(job).get("deletionTimestamp")) or ctx.finished is not None or \
                phase(pod) == "Succeeded" or failed
            if can_remove and failed and not cu.meta(job).get("deletionTimestamp") and ctx.finished is None and \
                    phase(pod) != "Succeeded":
                held = ctx.delayed.get(completion_index(pod))
                if held is not None and cu.meta(held).get("uid") == cu.meta(pod).get("uid"):
                    can_remove = False  # its replacement is to carry the index's failure count
            if not can_remove:
                continue
            to_remove.append(pod)
            if phase(pod) == "Succeeded" and uid not in ctx.uncounted_failed:
                if indexed:
                    ix = completion_index(pod)
                    if 0 <= ix < completions and ix not in ctx.prev_succeeded_indexes:
                        new_indexes.append(ix)
                        needs_flush = True
                elif uid not in ctx.uncounted_succeeded:
                    uncounted.setdefault("succeeded", []).append(uid)
                    ctx.uncounted_succeeded.add(uid)
                    needs_flush = True
            elif failed or job_finishing:
                ix = completion_index(pod)
                if uid not in ctx.uncounted_failed and (not indexed or 0 <= ix < completions):
                    if policy is None or match_pod_failure_policy(policy, pod)[1]:
                        uncounted.setdefault("failed", []).append(uid)
                        ctx.uncounted_failed.add(uid)
                        needs_flush = True
            if len(new_indexes) + len(_l(uncounted.get("succeeded"))) + len(_l(uncounted.get("failed"))) >= \
                    MAX_UNCOUNTED_PODS:
                reached_max = True
                break
        if indexed:
            ctx.succeeded_indexes = ctx.succeeded_indexes | set(new_indexes)
            text = format_indexes(ctx.succeeded_indexes)
            if text != (status.get("completedIndexes") or ""):
                needs_flush = True
            status["succeeded"] = len(ctx.succeeded_indexes)
            status["completedIndexes"] = text
            if ctx.failed_indexes is not None:
                ftext = format_indexes(ctx.failed_indexes)
                if status.get("failedIndexes") != ftext:
                    status["failedIndexes"] = ftext
                    needs_flush = True
        conds = status.setdefault("conditions", [])
        if ctx.finished is not None and ctx.finished.get("type") == "FailureTarget":
            conds.append(ctx.finished)
            needs_flush = True
            ctx.finished = new_condition("Failed", "True", str(ctx.finished["reason"]), str(ctx.finished["message"]),
                                         now)
        if ctx.finished is not None and ctx.finished.get("type") == "SuccessCriteriaMet":
            if not condition_true(status, "SuccessCriteriaMet"):
                conds.append(ctx.finished)
                needs_flush = True
            ctx.finished = new_condition("Complete", "True", str(ctx.finished.get("reason") or ""),
                                         str(ctx.finished.get("message") or ""), now)
        if not conds:
            status.pop("conditions", None)
        needs_flush = await self._flush_and_remove(key, ctx, to_remove, with_finalizer, needs_flush)
        finished = not reached_max and self._enact_finished(ctx, now)
        if finished or needs_flush:
            ctx.job = await self._update_status(ctx.job)
            if finished and ctx.finished is not None:
                self._record_finished(ctx.job, ctx.finished)

    async def _flush_and_remove(self, key: str, ctx: _Ctx, to_remove: list[Obj], with_finalizer: set[str],
                                needs_flush: bool) -> bool:
        """flushUncountedAndRemoveFinalizers: write the uncounted UIDs, remove the finalizers,
        then count the pods whose finalizer is gone."""
        if needs_flush:
            ctx.job = await self._update_status(ctx.job)
            self.backoff[key] = ctx.backoff
            needs_flush = False
        rm_err: BaseException | None = None
        if to_remove:
            expected = self.finalizer_expectations.setdefault(key, set())
            expected.update(str(cu.meta(p).get("uid")) for p in to_remove)

            async def one(p: Obj) -> BaseException | None:
                try:
                    await self._remove_finalizer(p)
                except errors.StatusError as exc:
                    expected.discard(str(cu.meta(p).get("uid")))
                    return exc
                return None

            results = await asyncio.gather(*(one(p) for p in to_remove))
            for p, e in zip(to_remove, results, strict=True):
                if e is None:
                    with_finalizer.discard(str(cu.meta(p).get("uid")))
            rm_err = next((e for e in results if e is not None), None)
        if _clean_uncounted(ctx.job["status"], with_finalizer):
            needs_flush = True
        if rm_err is not None:
            if needs_flush:
                ctx.job = await self._update_status(ctx.job)
            raise rm_err
        return needs_flush

    def _enact_finished(self, ctx: _Ctx, now: float) -> bool:
        """enactJobFinished: the terminal condition once every pod is counted and none terminates."""
        if ctx.finished is None:
            return False
        status = ctx.job["status"]
        uncounted = _d(status.get("uncountedTerminatedPods"))
        if _l(uncounted.get("succeeded")) or _l(uncounted.get("failed")):
            return False
        if ctx.terminating > 0:
            return False
        cond = ctx.finished
        conds = status.setdefault("conditions", [])
        ensure_condition(conds, str(cond["type"]), str(cond["status"]), str(cond.get("reason") or ""),
                         str(cond.get("message") or ""), now)
        if cond["type"] == "Complete":
            status["completionTime"] = next(c["lastTransitionTime"] for c in conds if c.get("type") == "Complete")
        return True

    def _record_finished(self, job: Obj, cond: dict[str, Any]) -> None:
        spec, status = _d(job.get("spec")), _d(job.get("status"))
        if cond.get("type") == "Complete":
            if isinstance(spec.get("completions"), int) and _int(status.get("succeeded")) > spec["completions"]:
                self.recorder.emit(job, WARNING, "TooManySucceededPods",
                                   "Too many succeeded pods running after completion count reached")
            self.recorder.emit(job, NORMAL, "Completed", "Job completed")
        else:
            self.recorder.emit(job, WARNING, str(cond.get("reason") or ""), str(cond.get("message") or ""))

    async def _update_status(self, job: Obj) -> Obj:
        m = cu.meta(job)
        body = copy.deepcopy(job)
        st = body.setdefault("status", {})
        for k in ("active", "succeeded", "failed"):  # omitempty int32s
            if not st.get(k):
                st.pop(k, None)
        if not st.get("completedIndexes"):
            st.pop("completedIndexes", None)
        try:
            out, _ = await self.jobs.update(m.get("namespace", ""), m.get("name", ""), body, self.opts, "status")
        except errors.StatusError as exc:
            if exc.code == 404:
                return job
            raise
        return out


def _clean_uncounted(status: Obj, with_finalizer: set[str]) -> bool:
    """cleanUncountedPodsWithoutFinalizers: uncounted pods whose finalizer is gone are counted."""
    uncounted = status["uncountedTerminatedPods"]
    changed = False
    for which in ("succeeded", "failed"):
        cur = [str(u) for u in _l(uncounted.get(which))]
        keep = [u for u in cur if u in with_finalizer]
        if len(keep) != len(cur):
            changed = True
            status[which] = _int(status.get(which)) + len(cur) - len(keep)
        if keep:
            uncounted[which] = keep
        else:
            uncounted.pop(which, None)
    return changed


__all__ = ["BackoffRecord", "JobController", "format_indexes", "is_finished", "match_pod_failure_policy",
           "new_backoff_record", "parse_indexes", "pod_from_template"]
