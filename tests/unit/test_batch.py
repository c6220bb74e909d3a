"""batch/v1 Jobs and CronJobs: defaulting, validation messages, printing, the cron schedule
parser, and the Job, CronJob and TTL controllers over real stores (SQLite in a temp dir) driven
one sync at a time with the clock injected."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kubelite.apiserver.registry import ListOptions, WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.controllers import cronjob as cjc
from kubelite.controllers import job as jc
from kubelite.controllers.ttlafterfinished import TTLAfterFinishedController
from kubelite.kinds import _cron, batch
from kubelite.kinds.registry import default_registry
from kubelite.store.sqlite import SQLiteStore

W = WriteOptions(field_manager="test")
T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def _job(**spec) -> dict:
    return {"metadata": {"name": "pi", "namespace": "default"}, "spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Never"}}, **spec}}


def _errors(obj: dict, kind=batch.JOB) -> list[str]:
    obj = copy.deepcopy(obj)
    obj["metadata"].setdefault("uid", "u-1")
    kind.strategy.default(obj)
    kind.strategy.prepare_for_create(obj)
    return [str(e) for e in kind.strategy.validate(obj)]


# ----------------------------------------------------------------------------- the kinds
def test_job_defaults_and_generated_selector():
    j = _job()
    j["metadata"]["uid"] = "u-1"
    batch.JOB.strategy.default(j)
    batch.JOB.strategy.prepare_for_create(j)
    spec = j["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"], spec["completionMode"], spec["suspend"],
            spec["manualSelector"], spec["podReplacementPolicy"]) == (1, 1, 6, "NonIndexed", False, False,
                                                                       "TerminatingOrFailed")
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}}
    assert spec["template"]["metadata"]["labels"] == {"job-name": "pi", "batch.kubernetes.io/job-name": "pi",
                                                      "controller-uid": "u-1",
                                                      "batch.kubernetes.io/controller-uid": "u-1"}
    assert j["status"] == {} and batch.JOB.strategy.validate(j) == []
    only_par = _job(parallelism=3)
    batch.JOB.strategy.default(only_par)
    assert "completions" not in only_par["spec"] and only_par["spec"]["parallelism"] == 3


def test_job_validation_messages():
    assert _errors(_job(parallelism=-1, completions=-2, backoffLimit=-1, activeDeadlineSeconds=-5,
                        ttlSecondsAfterFinished=-1)) == [
        "spec.parallelism: Invalid value: -1: must be greater than or equal to 0",
        "spec.completions: Invalid value: -2: must be greater than or equal to 0",
        "spec.activeDeadlineSeconds: Invalid value: -5: must be greater than or equal to 0",
        "spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0",
        "spec.ttlSecondsAfterFinished: Invalid value: -1: must be greater than or equal to 0"]
    j = _job(completionMode="Sometimes")
    j["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    assert _errors(j) == ['spec.completionMode: Unsupported value: "Sometimes": supported values: "NonIndexed", '
                          '"Indexed"',
                          'spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"']
    assert _errors(_job(completionMode="Indexed", completions=None, parallelism=2)) == [
        "spec.completions: Required value: when completion mode is Indexed"]
    j = _job(manualSelector=True, selector={"matchLabels": {"app": "x"}})
    assert _errors(j) == ['spec.template.metadata.labels: Invalid value: map[string]string(nil): `selector` does not '
                          'match template `labels`']
    j = _job()
    j["spec"]["template"]["metadata"] = {"labels": {"batch.kubernetes.io/job-name": "other"}}
    assert _errors(j) == ['spec.template.metadata.labels[batch.kubernetes.io/job-name]: Invalid value: '
                          'map[string]string{"batch.kubernetes.io/controller-uid":"u-1", '
                          '"batch.kubernetes.io/job-name":"other", "controller-uid":"u-1", "job-name":"pi"}: must be '
                          "'pi'"]
    j = _job(podFailurePolicy={"rules": [{"action": "Boom", "onExitCodes": {"operator": "In", "values": [0, 2, 1]}}]})
    j["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    assert _errors(j) == [
        'spec.podFailurePolicy.rules[0].action: Unsupported value: "Boom": supported values: "Count", "FailIndex", '
        '"FailJob", "Ignore"',
        "spec.podFailurePolicy.rules[0].onExitCodes.values[0]: Invalid value: 0: must not be 0 for the In operator",
        "spec.podFailurePolicy.rules[0].onExitCodes.values: Invalid value: [0,2,1]: must be ordered",
        'spec.template.spec.restartPolicy: Invalid value: "OnFailure": only "Never" is supported when '
        "podFailurePolicy is specified"]
    assert _errors(_job(successPolicy={"rules": []})) == [
        "spec.successPolicy: Invalid value: batch.SuccessPolicy{Rules:[]batch.SuccessPolicyRule{}}: requires indexed "
        "completion mode"]
    assert _errors(_job(completionMode="Indexed", completions=4, parallelism=4, successPolicy={"rules": [
        {"succeededIndexes": "0-2,1", "succeededCount": 5}, {}]})) == [
        'spec.successPolicy.rules[0].succeededIndexes: Invalid value: "0-2,1": error parsing succeededIndexes: '
        "non-increasing order, previous: 2, current: 1",
        "spec.successPolicy.rules[0].succeededCount: Invalid value: 5: must be less than or equal to 4 (the number of "
        "specified completions)",
        "spec.successPolicy.rules[0].succeededCount: Invalid value: 5: must be less than or equal to 0 (the number of "
        "indexes in the specified succeededIndexes field)",
        "spec.successPolicy.rules[1]: Required value: at least one of succeededCount or succeededIndexes must be "
        "specified"]
    assert _errors(_job(backoffLimitPerIndex=1, maxFailedIndexes=3, completionMode="Indexed", completions=2)) == [
        "spec.maxFailedIndexes: Invalid value: 3: must be less than or equal to completions"]
    assert _errors(_job(maxFailedIndexes=1)) == [
        "spec.backoffLimitPerIndex: Required value: when maxFailedIndexes is specified",
        "spec.maxFailedIndexes: Invalid value: 1: requires indexed completion mode"]


def test_job_update_keeps_the_template_and_completions():
    old = _job()
    old["metadata"]["uid"] = "u-1"
    batch.JOB.strategy.default(old)
    batch.JOB.strategy.prepare_for_create(old)
    new = copy.deepcopy(old)
    new["spec"]["completions"] = 3
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "other"
    errs = [str(e) for e in batch.JOB.strategy.validate_update(new, old)]
    assert errs[0] == "spec.completions: Invalid value: 3: field is immutable"
    assert errs[1].startswith("spec.template: Invalid value: ") and errs[1].endswith(": field is immutable")
    new = copy.deepcopy(old)
    new["spec"]["parallelism"] = 4  # parallelism and suspend may change
    new["spec"]["suspend"] = True
    assert batch.JOB.strategy.validate_update(new, old) == []


def test_cronjob_defaults_and_schedule_messages():
    cj = {"metadata": {"name": "hello", "namespace": "default"}, "spec": {"schedule": "*/1 * * * *", "jobTemplate": {
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Never"}}}}}}
    assert _errors(cj, batch.CRONJOB) == []
    d = copy.deepcopy(cj)
    batch.CRONJOB.strategy.default(d)
    assert (d["spec"]["concurrencyPolicy"], d["spec"]["suspend"], d["spec"]["successfulJobsHistoryLimit"],
            d["spec"]["failedJobsHistoryLimit"]) == ("Allow", False, 3, 1)
    assert "backoffLimit" not in d["spec"]["jobTemplate"]["spec"]  # SetDefaults_Job is the Job's alone
    bad = copy.deepcopy(cj)
    bad["spec"].update(schedule="61 * * * *", concurrencyPolicy="Sometimes", timeZone="Mars/Base",
                       startingDeadlineSeconds=-1)
    bad["metadata"]["name"] = "x" * 53
    assert _errors(bad, batch.CRONJOB) == [
        'spec.schedule: Invalid value: "61 * * * *": end of range (61) above maximum (59): 61',
        "spec.startingDeadlineSeconds: Invalid value: -1: must be greater than or equal to 0",
        'spec.timeZone: Invalid value: "Mars/Base": unknown time zone Mars/Base',
        'spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: "Allow", "Forbid", "Replace"',
        f'metadata.name: Invalid value: "{"x" * 53}": must be no more than 52 characters']
    for schedule, msg in [("hello", "expected exactly 5 fields, found 1: [hello]"),
                          ("* * * * 7", "end of range (7) above maximum (6): 7"),
                          ("a * * * *", 'failed to parse int from a: strconv.Atoi: parsing "a": invalid syntax'),
                          ("@every 1x", 'failed to parse duration @every 1x: time: unknown unit "x" in duration "1x"'),
                          ("*/0 * * * *", "step of range should be a positive number: */0")]:
        c = copy.deepcopy(cj)
        c["spec"]["schedule"] = schedule
        assert _errors(c, batch.CRONJOB) == [f"spec.schedule: Invalid value: {_q(schedule)}: {msg}"]
    c = copy.deepcopy(cj)
    c["spec"]["schedule"] = "TZ=UTC * * * * *"
    assert _errors(c, batch.CRONJOB) == ['spec.schedule: Invalid value: "TZ=UTC * * * * *": cannot use TZ or CRON_TZ '
                                         "in schedule, use timeZone field instead"]
    c = copy.deepcopy(cj)
    c["spec"]["jobTemplate"]["spec"]["selector"] = {"matchLabels": {"a": "b"}}
    assert _errors(c, batch.CRONJOB) == [
        'spec.jobTemplate.spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"a":"b"}, '
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: `selector` will be auto-generated"]


def _parse(ts: str) -> float:
    from kubelite.kinds._printing import parse_time

    t = parse_time(ts)
    assert t is not None
    return t


def _q(s: str) -> str:
    return '"' + s + '"'


def test_schedules_next_times_follow_robfig():
    at = datetime(2027, 1, 15, 8, 0, 30, tzinfo=UTC)
    assert _cron.parse_standard("*/15 * * * *").next(at) == datetime(2027, 1, 15, 8, 15, tzinfo=UTC)
    assert _cron.parse_standard("5/20 * * * *").next(at) == datetime(2027, 1, 15, 8, 5, tzinfo=UTC)
    assert _cron.parse_standard("@hourly").next(at) == datetime(2027, 1, 15, 9, 0, tzinfo=UTC)
    assert _cron.parse_standard("@every 90s").next(at) == datetime(2027, 1, 15, 8, 2, 0, tzinfo=UTC)
    # day of month OR day of week when both are restricted: the 1st or any Monday
    assert _cron.parse_standard("0 0 1 * mon").next(at) == datetime(2027, 1, 18, 0, 0, tzinfo=UTC)
    berlin = _cron.parse_standard("TZ=Europe/Berlin 0 9 * * *").next(at)
    assert berlin is not None and berlin.astimezone(UTC) == datetime(2027, 1, 16, 8, 0, tzinfo=UTC)
    assert _cron.parse_standard("0 0 31 2 *").next(at) is None


def test_printing():
    j = _job(completions=5, parallelism=2)
    j["metadata"]["uid"] = "u-1"
    batch.JOB.strategy.default(j)
    j["status"] = {"succeeded": 2, "startTime": "2027-01-15T08:00:00Z"}
    assert [c.name for c in batch.JOB.strategy.columns] == ["Name", "Status", "Completions", "Duration", "Age",
                                                           "Containers", "Images", "Selector"]
    assert batch.job_status_text(j) == "Running" and batch.job_completions_text(j) == "2/5"
    assert batch.job_duration_text(j, now=T0 + 75) == "75s"
    j["status"].update(completionTime="2027-01-15T08:03:00Z", conditions=[{"type": "Complete", "status": "True"}])
    assert batch.job_status_text(j) == "Complete" and batch.job_duration_text(j) == "3m"
    assert batch.job_completions_text(_job(parallelism=3)) == "0/1 of 3"
    assert [c.name for c in batch.CRONJOB.strategy.columns][:7] == ["Name", "Schedule", "Timezone", "Suspend",
                                                                    "Active", "Last Schedule", "Age"]


# ----------------------------------------------------------------------------- controllers
class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


async def _sync_informers(*infs) -> None:
    for inf in infs:
        await inf._list()


@pytest.fixture
async def stores(tmp_path: Path):
    kv = SQLiteStore(str(tmp_path / "db"), compact_interval=0)
    await kv.start()
    try:
        yield Stores.build(default_registry(), kv)
    finally:
        await kv.close()


async def _finish(stores: Stores, pod: dict, phase: str, exit_code: int, at: float) -> None:
    p = await stores.get("", "pods").get("default", pod["metadata"]["name"])
    ts = jc.rfc3339(at)
    p["status"] = {"phase": phase, "containerStatuses": [{"name": "c", "state": {"terminated": {
        "exitCode": exit_code, "finishedAt": ts}}}]}
    await stores.get("", "pods").update("default", p["metadata"]["name"], p, W, "status")


async def _pods(stores: Stores) -> list[dict]:
    items, _, _, _ = await stores.get("", "pods").list("default", ListOptions())
    return items


async def _step(ctl: jc.JobController, name: str = "pi") -> dict:
    await _sync_informers(ctl.job_informer, ctl.pod_informer)
    ctl.expectations.delete(f"default/{name}")  # the informer saw everything: trust it
    await ctl.sync(f"default/{name}")
    await _sync_informers(ctl.job_informer, ctl.pod_informer)
    return await ctl.jobs.get("default", name)


async def test_job_runs_completions_with_parallelism_and_completes(stores):
    clock = Clock(T0)
    ctl = jc.JobController(stores, clock=clock)
    await stores.get("batch", "jobs").create("default", _job(completions=3, parallelism=2), W)
    job = await _step(ctl)
    pods = await _pods(stores)
    assert len(pods) == 2 and job["status"]["active"] == 2 and job["status"]["startTime"] == jc.rfc3339(T0)
    p0 = pods[0]
    assert p0["metadata"]["finalizers"] == ["batch.kubernetes.io/job-tracking"]
    assert p0["metadata"]["generateName"] == "pi-"
    assert p0["metadata"]["ownerReferences"][0]["kind"] == "Job"
    assert p0["metadata"]["labels"]["batch.kubernetes.io/job-name"] == "pi"
    for p in pods:
        clock.t += 1
        await _finish(stores, p, "Succeeded", 0, clock.t)
    job = await _step(ctl)  # both counted, one more created
    assert job["status"]["succeeded"] == 2 and job["status"]["uncountedTerminatedPods"] == {}
    pods = await _pods(stores)
    assert len(pods) == 3 and all("finalizers" not in p["metadata"] for p in pods if p["metadata"]["name"] in
                                  {x["metadata"]["name"] for x in (p0,)})
    last = next(p for p in pods if p.get("status", {}).get("phase") != "Succeeded")
    clock.t += 1
    await _finish(stores, last, "Succeeded", 0, clock.t)
    job = await _step(ctl)
    st = job["status"]
    assert st["succeeded"] == 3 and "active" not in st and st["ready"] == 0 and st["terminating"] == 0
    types = [(c["type"], c["status"], c["reason"], c["message"]) for c in st["conditions"]]
    assert types == [("SuccessCriteriaMet", "True", "CompletionsReached", "Reached expected number of succeeded pods"),
                     ("Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods")]
    assert st["completionTime"] == jc.rfc3339(clock.t)
    await ctl.recorder.flush()
    events, _, _, _ = await stores.get("", "events").list("default", ListOptions())
    reasons = [e["reason"] for e in events]
    assert reasons.count("SuccessfulCreate") == 3 and "Completed" in reasons


async def test_failing_job_backs_off_and_stops_at_the_backoff_limit(stores):
    clock = Clock(T0)
    ctl = jc.JobController(stores, clock=clock)
    await stores.get("batch", "jobs").create("default", _job(backoffLimit=1), W)
    await _step(ctl)
    (first,) = await _pods(stores)
    await _finish(stores, first, "Failed", 3, clock.t)
    job = await _step(ctl)
    assert job["status"]["failed"] == 1 and len(await _pods(stores)) == 1  # back-off: 10 s before the next
    assert ctl.backoff["default/pi"].remaining(clock.t) == 10.0
    clock.t += 10
    await _step(ctl)
    pods = await _pods(stores)
    assert len(pods) == 2
    second = next(p for p in pods if p["metadata"]["name"] != first["metadata"]["name"])
    await _finish(stores, second, "Failed", 3, clock.t)
    job = await _step(ctl)
    st = job["status"]
    assert st["failed"] == 2 and "completionTime" not in st
    conds = [(c["type"], c["status"], c["reason"], c["message"]) for c in st["conditions"]]
    assert conds == [("FailureTarget", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
                     ("Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit")]
    assert batch.job_status_text(job) == "Failed"
    await ctl.recorder.flush()
    events, _, _, _ = await stores.get("", "events").list("default", ListOptions())
    assert any(e["reason"] == "BackoffLimitExceeded" and e["type"] == "Warning" for e in events)


async def test_deadline_deletes_active_pods_then_fails(stores):
    clock = Clock(T0)
    ctl = jc.JobController(stores, clock=clock)
    await stores.get("batch", "jobs").create("default", _job(activeDeadlineSeconds=30), W)
    await _step(ctl)
    clock.t += 31
    job = await _step(ctl)
    # the active pod was deleted and counted as failed (its finalizer removed; unscheduled, it is
    # gone at once); the Job stays FailureTarget while this sync counted it terminating
    assert await _pods(stores) == [] and job["status"]["failed"] == 1
    assert [c["type"] for c in job["status"]["conditions"]] == ["FailureTarget"]
    job = await _step(ctl)
    conds = {c["type"]: c for c in job["status"]["conditions"]}
    assert conds["Failed"]["reason"] == "DeadlineExceeded"
    assert conds["Failed"]["message"] == "Job was active longer than specified deadline"
    assert job["status"]["failed"] == 1


async def test_indexed_job_gives_each_pod_its_index(stores):
    ctl = jc.JobController(stores, clock=Clock(T0))
    await stores.get("batch", "jobs").create("default", _job(completions=3, parallelism=3, completionMode="Indexed"), W)
    await _step(ctl)
    pods = sorted(await _pods(stores), key=lambda p: p["metadata"]["annotations"][batch.COMPLETION_INDEX])
    assert [p["metadata"]["annotations"][batch.COMPLETION_INDEX] for p in pods] == ["0", "1", "2"]
    assert [p["spec"]["hostname"] for p in pods] == ["pi-0", "pi-1", "pi-2"]
    assert pods[1]["metadata"]["labels"][batch.COMPLETION_INDEX] == "1"
    assert pods[1]["metadata"]["generateName"] == "pi-1-"
    assert {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
        "apiVersion": "v1", "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}} in \
        pods[0]["spec"]["containers"][0]["env"]
    await _finish(stores, pods[0], "Succeeded", 0, T0)
    await _finish(stores, pods[2], "Succeeded", 0, T0)
    job = await _step(ctl)
    assert job["status"]["completedIndexes"] == "0,2" and job["status"]["succeeded"] == 2


async def test_backoff_limit_per_index_fails_an_index_and_then_the_job(stores):
    clock = Clock(T0)
    ctl = jc.JobController(stores, clock=clock)
    await stores.get("batch", "jobs").create("default", _job(
        completions=2, parallelism=2, completionMode="Indexed", backoffLimitPerIndex=1), W)
    job = await _step(ctl)
    assert job["spec"]["backoffLimit"] == 2**31 - 1
    pods = {p["metadata"]["annotations"][batch.COMPLETION_INDEX]: p for p in await _pods(stores)}
    assert pods["0"]["metadata"]["annotations"][batch.INDEX_FAILURE_COUNT] == "0"
    await _finish(stores, pods["0"], "Failed", 1, clock.t)
    await _finish(stores, pods["1"], "Succeeded", 0, clock.t)
    job = await _step(ctl)  # index 0 waits out its own back-off; its failed pod keeps the finalizer
    assert job["status"]["failedIndexes"] == "" and job["status"]["completedIndexes"] == "1"
    held = await stores.get("", "pods").get("default", pods["0"]["metadata"]["name"])
    assert held["metadata"]["finalizers"] == ["batch.kubernetes.io/job-tracking"]
    clock.t += 10
    await _step(ctl)
    again = [p for p in await _pods(stores) if p["metadata"]["annotations"][batch.COMPLETION_INDEX] == "0"
             and p["metadata"]["name"] != pods["0"]["metadata"]["name"]]
    assert len(again) == 1 and again[0]["metadata"]["annotations"][batch.INDEX_FAILURE_COUNT] == "1"
    job = await _step(ctl)  # the replacement carries the count: the first failure is counted now
    assert job["status"]["failed"] == 1
    await _finish(stores, again[0], "Failed", 1, clock.t)
    job = await _step(ctl)
    st = job["status"]
    assert (st["failedIndexes"], st["completedIndexes"], st["failed"], st["succeeded"]) == ("0", "1", 2, 1)
    failed = next(c for c in st["conditions"] if c["type"] == "Failed")
    assert (failed["reason"], failed["message"]) == ("FailedIndexes", "Job has failed indexes")


async def test_success_policy_completes_an_indexed_job_early(stores):
    ctl = jc.JobController(stores, clock=Clock(T0))
    await stores.get("batch", "jobs").create("default", _job(
        completions=3, parallelism=3, completionMode="Indexed",
        successPolicy={"rules": [{"succeededIndexes": "0"}]}), W)
    await _step(ctl)
    pods = {p["metadata"]["annotations"][batch.COMPLETION_INDEX]: p for p in await _pods(stores)}
    await _finish(stores, pods["0"], "Succeeded", 0, T0)
    job = await _step(ctl)  # the rule is met: the other indexes' pods go
    met = next(c for c in job["status"]["conditions"] if c["type"] == "SuccessCriteriaMet")
    assert (met["reason"], met["message"]) == ("SuccessPolicy", "Matched rules at index 0")
    assert all(p["metadata"].get("deletionTimestamp") or p["metadata"]["name"] == pods["0"]["metadata"]["name"]
               for p in await _pods(stores))
    for p in await _pods(stores):
        await stores.get("", "pods").delete("default", p["metadata"]["name"], jc.DeleteOptions(grace_period_seconds=0))
    job = await _step(ctl)
    complete = next(c for c in job["status"]["conditions"] if c["type"] == "Complete")
    assert (complete["reason"], complete["message"]) == ("SuccessPolicy", "Matched rules at index 0")
    assert job["status"]["completedIndexes"] == "0"


async def test_suspend_deletes_pods_and_pod_failure_policy_fails_the_job(stores):
    ctl = jc.JobController(stores, clock=Clock(T0))
    jobs = stores.get("batch", "jobs")
    await jobs.create("default", _job(suspend=True), W)
    job = await _step(ctl)
    assert await _pods(stores) == [] and "startTime" not in job["status"]
    assert [(c["type"], c["reason"]) for c in job["status"]["conditions"]] == [("Suspended", "JobSuspended")]
    assert batch.job_status_text(job) == "Suspended"
    job["spec"]["suspend"] = False
    await jobs.update("default", "pi", job, W)
    job = await _step(ctl)
    assert [(c["type"], c["status"], c["reason"]) for c in job["status"]["conditions"]] == [
        ("Suspended", "False", "JobResumed")]
    assert len(await _pods(stores)) == 1

    pf = _job(podFailurePolicy={"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]})
    pf["metadata"]["name"] = "pf"
    await jobs.create("default", pf, W)
    await _step(ctl, "pf")
    pod = next(p for p in await _pods(stores) if p["metadata"]["name"].startswith("pf-"))
    await _finish(stores, pod, "Failed", 42, T0)
    job = await _step(ctl, "pf")
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "PodFailurePolicy"
    assert failed["message"] == (f"Container c for pod default/{pod['metadata']['name']} failed with exit code 42 "
                                 "matching FailJob rule at index 0")


async def test_orphaned_pods_lose_the_tracking_finalizer(stores):
    ctl = jc.JobController(stores, clock=Clock(T0))
    jobs = stores.get("batch", "jobs")
    await jobs.create("default", _job(), W)
    await _step(ctl)
    (pod,) = await _pods(stores)
    await jobs.delete("default", "pi", jc.DeleteOptions(propagation_policy="Background"))
    await _sync_informers(ctl.job_informer, ctl.pod_informer)
    await ctl.sync_orphan_pod(f"default/{pod['metadata']['name']}")
    assert "finalizers" not in (await stores.get("", "pods").get("default", pod["metadata"]["name"]))["metadata"]


async def test_ttl_after_finished_deletes_the_job(stores):
    clock = Clock(T0)
    jobs = stores.get("batch", "jobs")
    j = await jobs.create("default", _job(ttlSecondsAfterFinished=60), W)
    j["status"] = {"startTime": jc.rfc3339(T0), "completionTime": jc.rfc3339(T0), "conditions": [
        jc.new_condition("SuccessCriteriaMet", "True", "CompletionsReached", "m", T0),
        jc.new_condition("Complete", "True", "CompletionsReached", "m", T0)]}
    await jobs.update("default", "pi", j, W, "status")
    ttl = TTLAfterFinishedController(stores, clock=clock)
    await _sync_informers(ttl.job_informer)
    clock.t = T0 + 61
    await ttl.sync("default/pi")
    items, _, _, _ = await jobs.list("default", ListOptions())
    assert items == [] or items[0]["metadata"].get("deletionTimestamp")


def _cronjob(**spec) -> dict:
    return {"metadata": {"name": "hello", "namespace": "default"}, "spec": {"schedule": "*/1 * * * *", "jobTemplate": {
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}],
                                       "restartPolicy": "Never"}}}}, **spec}}


async def test_cronjob_creates_a_job_per_minute_within_its_policies(stores):
    cjs, jobs = stores.get("batch", "cronjobs"), stores.get("batch", "jobs")
    cj = await cjs.create("default", _cronjob(concurrencyPolicy="Forbid", successfulJobsHistoryLimit=1), W)
    created = _parse(cj["metadata"]["creationTimestamp"])
    base = (int(created) // 60 + 1) * 60 - 60  # the minute before the first scheduled time
    clock = Clock(created)
    ctl = cjc.CronJobController(stores, clock=clock)

    async def step() -> dict:
        await _sync_informers(ctl.cj_informer, ctl.job_informer)
        await ctl.sync("default/hello")
        return await cjs.get("default", "hello")

    cj = await step()
    items, _, _, _ = await jobs.list("default", ListOptions())
    assert items == [] and "lastScheduleTime" not in cj["status"]  # nothing is due at creation
    clock.t = base + 61
    cj = await step()
    items, _, _, _ = await jobs.list("default", ListOptions())
    expected = f"hello-{int(base + 60) // 60}"
    assert [j["metadata"]["name"] for j in items] == [expected]
    assert items[0]["metadata"]["annotations"][batch.CRONJOB_SCHEDULED_TIMESTAMP] == jc.rfc3339(base + 60)
    assert items[0]["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    assert cj["status"]["lastScheduleTime"] == jc.rfc3339(base + 60)
    assert [a["name"] for a in cj["status"]["active"]] == [expected]
    clock.t = base + 121  # Forbid: the first is still running
    cj = await step()
    items, _, _, _ = await jobs.list("default", ListOptions())
    assert len(items) == 1
    # the first finishes; the next minute starts another, and history keeps one success
    done = items[0]
    done["status"] = {"startTime": jc.rfc3339(base + 60), "completionTime": jc.rfc3339(base + 90), "conditions": [
        jc.new_condition("SuccessCriteriaMet", "True", "CompletionsReached", "m", base + 90),
        jc.new_condition("Complete", "True", "CompletionsReached", "m", base + 90)]}
    await jobs.update("default", expected, done, W, "status")
    clock.t = base + 181
    cj = await step()
    assert cj["status"]["lastSuccessfulTime"] == jc.rfc3339(base + 90)
    items, _, _, _ = await jobs.list("default", ListOptions())
    assert sorted(j["metadata"]["name"] for j in items) == sorted([expected, f"hello-{int(base + 180) // 60}"])
    await ctl.recorder.flush()
    events, _, _, _ = await stores.get("", "events").list("default", ListOptions())
    msgs = {e["reason"]: e["message"] for e in events}
    assert msgs["SuccessfulCreate"].startswith("Created job hello-")
    assert msgs["JobAlreadyActive"] == ("Not starting job because prior execution is running and concurrency "
                                        "policy is Forbid")
    assert msgs["SawCompletedJob"] == f"Saw completed job: {expected}, condition: Complete"


def test_missed_schedules_and_the_next_wake_up():
    cj = {"metadata": {"name": "hello", "creationTimestamp": jc.rfc3339(T0)}, "spec": {"schedule": "*/1 * * * *"},
          "status": {}}
    sched = _cron.parse_standard("*/1 * * * *")
    now = datetime.fromtimestamp(T0 + 3600 + 30, UTC)
    _, recent, missed = cjc.most_recent_schedule_time(cj, now, sched, True)
    assert recent == datetime.fromtimestamp(T0 + 3600, UTC) and missed == 60
    cj["spec"]["startingDeadlineSeconds"] = 10  # 08:59:30's window holds no scheduled time
    _, recent, _ = cjc.most_recent_schedule_time(cj, now, sched, True)
    assert recent is None
    assert abs(cjc.next_schedule_delay(cj, now, sched) - 30.1) < 1e-6


async def test_a_job_adopts_a_matching_orphan_with_the_tracking_finalizer(stores):
    ctl = jc.JobController(stores, clock=Clock(T0))
    await stores.get("batch", "jobs").create("default", _job(manualSelector=True, selector={
        "matchLabels": {"app": "batch"}}, template={"metadata": {"labels": {"app": "batch"}}, "spec": {
            "containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Never"}}), W)
    await stores.get("", "pods").create("default", {"metadata": {"name": "stray", "labels": {"app": "batch"}},
                                                     "spec": {"containers": [{"name": "c", "image": "busybox"}]}}, W)
    job = await _step(ctl)
    stray = await stores.get("", "pods").get("default", "stray")
    assert stray["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
    assert stray["metadata"]["finalizers"] == ["batch.kubernetes.io/job-tracking"]
    assert len(await _pods(stores)) == 1  # the adopted pod is the one the Job wanted


async def test_cronjob_replace_deletes_the_running_job_and_history_limits_apply(stores):
    cjs, jobs = stores.get("batch", "cronjobs"), stores.get("batch", "jobs")
    cj = await cjs.create("default", _cronjob(concurrencyPolicy="Replace", failedJobsHistoryLimit=0), W)
    created = _parse(cj["metadata"]["creationTimestamp"])
    base = (int(created) // 60) * 60
    clock = Clock(base + 61)
    ctl = cjc.CronJobController(stores, clock=clock)

    async def step() -> dict:
        await _sync_informers(ctl.cj_informer, ctl.job_informer)
        await ctl.sync("default/hello")
        return await cjs.get("default", "hello")

    await step()
    first = f"hello-{(base + 60) // 60}"
    assert [j["metadata"]["name"] for j in (await jobs.list("default", ListOptions()))[0]] == [first]
    clock.t = base + 121
    cj = await step()  # Replace: the running one goes, the new one comes
    names = {j["metadata"]["name"]: j for j in (await jobs.list("default", ListOptions()))[0]}
    second = f"hello-{(base + 120) // 60}"
    assert second in names and (first not in names or names[first]["metadata"].get("deletionTimestamp"))
    assert [a["name"] for a in cj["status"]["active"]] == [second]
    # a failed Job beyond failedJobsHistoryLimit 0 is deleted at once
    failed = names[second]
    failed["status"] = {"startTime": jc.rfc3339(base + 120), "conditions": [
        jc.new_condition("FailureTarget", "True", "BackoffLimitExceeded", "m", base + 130),
        jc.new_condition("Failed", "True", "BackoffLimitExceeded", "m", base + 130)]}
    await jobs.update("default", second, failed, W, "status")
    clock.t = base + 135
    cj = await step()
    left = {j["metadata"]["name"] for j in (await jobs.list("default", ListOptions()))[0]
            if not j["metadata"].get("deletionTimestamp")}
    assert second not in left and "active" not in cj["status"]
    await ctl.recorder.flush()
    events, _, _, _ = await stores.get("", "events").list("default", ListOptions())
    assert f"Deleted job {first}" in {e["message"] for e in events if e["reason"] == "SuccessfulDelete"}
