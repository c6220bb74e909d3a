"""Jobs and CronJobs as a user drives them — `kubectl create job|cronjob`, `kubectl wait
--for=condition=complete`, `kubectl create job --from=cronjob/…`, `kubectl delete job` taking its
pods along — and the 422s of bad specs, against `kubelite server` with its scheduler, agent,
containerd and runc, pods running the offline busybox image."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time

import pytest

from tests.e2e.harness import ServerProcess, raw_request, wait_until
from tests.e2e.test_agent_support import BUSYBOX, full_cluster

NODE = "kl-e2e-jobs"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with full_cluster(tmp_path_factory.mktemp("jobs") / "data", NODE) as (server, _node):
        try:
            yield server
        finally:  # owners first: their controllers would replace the pods
            server.kubectl("delete", "cronjobs,jobs", "--all", "--cascade=foreground", "--timeout=90s", check=False,
                           timeout=120)


def _json(server: ServerProcess, *args: str) -> dict:
    return json.loads(server.kubectl("get", *args, "-o", "json").stdout)


def _job(name: str, command: str, **spec) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": {
        "template": {"spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "containers": [{
            "name": "work", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", command]}]}},
        **spec}}


class _PodWatch(threading.Thread):
    """Watches the pods of one Job and records the most that were active (created, not yet
    finished) and Running at the same moment."""

    def __init__(self, kubeconfig, selector: str) -> None:
        super().__init__(daemon=True)
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
        self.api = client.ApiClient(cfg)
        self.core = client.CoreV1Api(self.api)
        self.selector = selector
        self.stop = threading.Event()
        self.phases: dict[str, str] = {}
        self.max_active = self.max_running = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        from kubernetes import watch

        w = watch.Watch()
        try:
            while not self.stop.is_set():
                for ev in w.stream(self.core.list_namespaced_pod, "default", label_selector=self.selector,
                                   timeout_seconds=5):
                    pod = ev["object"]
                    name = pod.metadata.name
                    if ev["type"] == "DELETED":
                        self.phases.pop(name, None)
                    else:
                        self.phases[name] = pod.status.phase or "Pending"
                    active = [p for p in self.phases.values() if p not in ("Succeeded", "Failed")]
                    self.max_active = max(self.max_active, len(active))
                    self.max_running = max(self.max_running, sum(1 for p in active if p == "Running"))
                    if self.stop.is_set():
                        break
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            w.stop()
            self.api.close()


def test_completions_5_parallelism_2_never_runs_more_than_2(cluster):
    server = cluster
    watcher = _PodWatch(server.kubeconfig, "batch.kubernetes.io/job-name=five")
    watcher.start()
    try:
        out = server.kubectl("apply", "-f", "-", input=json.dumps(_job("five", "sleep 2", completions=5,
                                                                        parallelism=2))).stdout
        assert out.strip() == "job.batch/five created"
        p = server.kubectl("wait", "--for=condition=complete", "job/five", "--timeout=180s", timeout=200)
        assert p.stdout.strip() == "job.batch/five condition met"
        wait_until(lambda: sum(1 for ph in watcher.phases.values() if ph == "Succeeded") == 5, 20, 0.1,
                   "the watch to see 5 succeeded pods")
    finally:
        watcher.stop.set()
        watcher.join(15)
    assert watcher.error is None, watcher.error
    assert watcher.max_active == 2 and watcher.max_running == 2, (watcher.max_active, watcher.max_running)

    job = _json(server, "job", "five")
    st = job["status"]
    assert (st["succeeded"], st["ready"], st["terminating"], st["uncountedTerminatedPods"]) == (5, 0, 0, {})
    assert "active" not in st and "failed" not in st
    conds = [(c["type"], c["status"], c["reason"]) for c in st["conditions"]]
    assert conds == [("SuccessCriteriaMet", "True", "CompletionsReached"), ("Complete", "True", "CompletionsReached")]
    assert st["completionTime"] >= st["startTime"]
    sel = job["spec"]["selector"]["matchLabels"]
    assert sel == {"batch.kubernetes.io/controller-uid": job["metadata"]["uid"]}
    rows = server.kubectl("get", "jobs", "five").stdout.splitlines()
    assert rows[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert rows[1].split()[:3] == ["five", "Complete", "5/5"]
    pods = _json(server, "pods", "-l", "job-name=five")["items"]
    assert len(pods) == 5 and all(p["status"]["phase"] == "Succeeded" for p in pods)
    assert all("finalizers" not in p["metadata"] for p in pods)  # counted: the tracking finalizer is gone
    assert {p["metadata"]["ownerReferences"][0]["name"] for p in pods} == {"five"}
    events = _json(server, "events", "--field-selector", "involvedObject.name=five")["items"]
    reasons = [e["reason"] for e in events]
    assert reasons.count("SuccessfulCreate") == 5 and "Completed" in reasons, reasons
    assert {e["source"]["component"] for e in events} == {"job-controller"}


def test_kubectl_create_job_wait_logs_and_delete_takes_its_pods(cluster):
    server = cluster
    out = server.kubectl("create", "job", "hello", f"--image={BUSYBOX}", "--", "sh", "-c", "echo hello from a job")
    assert out.stdout.strip() == "job.batch/hello created"
    server.kubectl("wait", "--for=condition=complete", "job/hello", "--timeout=120s", timeout=150)
    assert server.kubectl("logs", "job/hello").stdout.strip() == "hello from a job"
    (pod,) = _json(server, "pods", "-l", "job-name=hello")["items"]
    assert pod["metadata"]["labels"]["batch.kubernetes.io/job-name"] == "hello"
    assert server.kubectl("delete", "job", "hello").stdout.strip() == 'job.batch "hello" deleted from default namespace'
    wait_until(lambda: not _json(server, "pods", "-l", "job-name=hello")["items"], 60, 0.3,
               "the garbage collector to delete the Job's pod")


def test_indexed_job_pods_know_their_index(cluster):
    server = cluster
    manifest = _job("idx", 'echo "index=$JOB_COMPLETION_INDEX host=$(hostname)"', completions=2, parallelism=2,
                    completionMode="Indexed")
    server.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    server.kubectl("wait", "--for=condition=complete", "job/idx", "--timeout=120s", timeout=150)
    pods = _json(server, "pods", "-l", "job-name=idx")["items"]
    logs = {server.kubectl("logs", p["metadata"]["name"]).stdout.strip() for p in pods}
    assert logs == {"index=0 host=idx-0", "index=1 host=idx-1"}
    assert _json(server, "job", "idx")["status"]["completedIndexes"] == "0-1"
    server.kubectl("delete", "job", "idx")


def test_failing_job_stops_at_its_backoff_limit(cluster):
    server = cluster
    server.kubectl("apply", "-f", "-", input=json.dumps(_job("fails", "exit 3", backoffLimit=1)))
    start = time.monotonic()
    p = server.kubectl("wait", "--for=condition=failed", "job/fails", "--timeout=120s", timeout=150)
    assert p.stdout.strip() == "job.batch/fails condition met"
    assert time.monotonic() - start >= 10  # the second pod came after the 10 s back-off
    st = _json(server, "job", "fails")["status"]
    failed = next(c for c in st["conditions"] if c["type"] == "Failed")
    assert (failed["status"], failed["reason"], failed["message"]) == (
        "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    assert [c["type"] for c in st["conditions"]] == ["FailureTarget", "Failed"]
    assert st["failed"] == 2 and "completionTime" not in st
    assert server.kubectl("get", "job", "fails").stdout.splitlines()[1].split()[:3] == ["fails", "Failed", "0/1"]
    events = _json(server, "events", "--field-selector", "involvedObject.name=fails,reason=BackoffLimitExceeded")
    assert [(e["type"], e["message"]) for e in events["items"]] == [
        ("Warning", "Job has reached the specified backoff limit")]
    server.kubectl("delete", "job", "fails")


def test_cronjob_creates_jobs_and_a_manual_run(cluster):
    server = cluster
    out = server.kubectl("create", "cronjob", "tick", f"--image={BUSYBOX}", "--schedule=*/1 * * * *", "--", "sh",
                         "-c", "echo tick")
    assert out.stdout.strip() == "cronjob.batch/tick created"
    rows = server.kubectl("get", "cronjobs").stdout.splitlines()
    assert rows[0].split() == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"]
    assert rows[1].split()[:8] == ["tick", "*/1", "*", "*", "*", "*", "<none>", "False"]
    cj = _json(server, "cronjob", "tick")
    assert (cj["spec"]["concurrencyPolicy"], cj["spec"]["successfulJobsHistoryLimit"],
            cj["spec"]["failedJobsHistoryLimit"], cj["spec"]["suspend"]) == ("Allow", 3, 1, False)

    def scheduled_jobs() -> list[dict]:
        return [j for j in _json(server, "jobs")["items"]
                if (j["metadata"].get("ownerReferences") or [{}])[0].get("name") == "tick"
                and "cronjob.kubernetes.io/instantiate" not in (j["metadata"].get("annotations") or {})]

    first = wait_until(scheduled_jobs, 75, 0.5, "the first scheduled Job (within a minute)")[0]
    m = re.fullmatch(r"tick-(\d+)", first["metadata"]["name"])
    assert m, first["metadata"]["name"]
    stamp = first["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
    assert time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(m.group(1)) * 60)) == stamp
    ref = first["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["controller"], ref["blockOwnerDeletion"]) == ("CronJob", True, True)
    cj = wait_until(lambda: (lambda c: c if c["status"].get("lastScheduleTime") else None)(
        _json(server, "cronjob", "tick")), 20, 0.3, "lastScheduleTime")
    assert cj["status"]["lastScheduleTime"] == stamp
    server.kubectl("wait", "--for=condition=complete", f"job/{first['metadata']['name']}", "--timeout=90s",
                   timeout=120)
    wait_until(lambda: _json(server, "cronjob", "tick")["status"].get("lastSuccessfulTime"), 30, 0.3,
               "lastSuccessfulTime")

    out = server.kubectl("create", "job", "tick-manual", "--from=cronjob/tick")
    assert out.stdout.strip() == "job.batch/tick-manual created"
    manual = _json(server, "job", "tick-manual")
    assert manual["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    server.kubectl("wait", "--for=condition=complete", "job/tick-manual", "--timeout=90s", timeout=120)
    assert server.kubectl("logs", "job/tick-manual").stdout.strip() == "tick"

    events = _json(server, "events", "--field-selector", "involvedObject.kind=CronJob,involvedObject.name=tick")
    msgs = {e["message"] for e in events["items"] if e["reason"] == "SuccessfulCreate"}
    assert f"Created job {first['metadata']['name']}" in msgs
    # kubectl made the CronJob the manual Job's controller too: the garbage collector takes both
    server.kubectl("delete", "cronjob", "tick")
    wait_until(lambda: not [j for j in _json(server, "jobs")["items"] if j["metadata"]["name"].startswith("tick-")],
               60, 0.3, "the CronJob's Jobs collected")


def test_bad_jobs_and_cronjobs_get_upstreams_422(cluster):
    server = cluster
    bad = _job("bad", "true", parallelism=-1, completionMode="Sometimes")
    bad["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    p = server.kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert p.returncode != 0
    assert p.stderr.strip() == (
        'The Job "bad" is invalid: \n'
        "* spec.parallelism: Invalid value: -1: must be greater than or equal to 0\n"
        '* spec.completionMode: Unsupported value: "Sometimes": supported values: "NonIndexed", "Indexed"\n'
        '* spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"')
    p = server.kubectl("create", "cronjob", "bad", f"--image={BUSYBOX}", "--schedule=61 * * * *", check=False)
    assert p.stderr.strip() == ('error: failed to create cronjob: CronJob.batch "bad" is invalid: spec.schedule: '
                                'Invalid value: "61 * * * *": end of range (61) above maximum (59): 61')
    body = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "bad"}, "spec": {
        "schedule": "hello", "concurrencyPolicy": "Sometimes", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": BUSYBOX}]}}}}}}
    code, _, raw = raw_request(server, "POST", "/apis/batch/v1/namespaces/default/cronjobs",
                               json.dumps(body).encode(), {"Content-Type": "application/json"})
    status = json.loads(raw)
    assert code == 422 and status["reason"] == "Invalid"
    assert status["details"]["causes"] == [
        {"reason": "FieldValueInvalid", "message": 'Invalid value: "hello": expected exactly 5 fields, found 1: [hello]',
         "field": "spec.schedule"},
        {"reason": "FieldValueNotSupported", "message": 'Unsupported value: "Sometimes": supported values: "Allow", '
                                                        '"Forbid", "Replace"', "field": "spec.concurrencyPolicy"}]
    with contextlib.suppress(Exception):
        server.kubectl("delete", "job,cronjob", "bad", check=False)


@pytest.fixture
def batch_api(cluster):
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=cfg)
    with client.ApiClient(cfg) as c:
        yield client.BatchV1Api(c), client.CoreV1Api(c)


def test_python_client_job_with_a_ttl_and_an_orphaning_delete(cluster, batch_api):
    from kubernetes import client, watch

    batch_v1, core = batch_api
    job = client.V1Job(metadata=client.V1ObjectMeta(name="ttl"), spec=client.V1JobSpec(
        ttl_seconds_after_finished=2, template=client.V1PodTemplateSpec(spec=client.V1PodSpec(
            restart_policy="Never", termination_grace_period_seconds=1, containers=[client.V1Container(
                name="c", image=BUSYBOX, image_pull_policy="IfNotPresent", command=["true"])]))))
    created = batch_v1.create_namespaced_job("default", job)
    assert created.spec.backoff_limit == 6 and created.spec.completion_mode == "NonIndexed"
    events = []
    w = watch.Watch()
    for ev in w.stream(batch_v1.list_namespaced_job, "default", field_selector="metadata.name=ttl",
                       timeout_seconds=90):
        events.append(ev["type"])
        if ev["type"] == "DELETED":
            w.stop()
            break
    assert events[-1] == "DELETED", events  # completed, then collected 2 s after its Complete condition
    wait_until(lambda: not core.list_namespaced_pod("default", label_selector="job-name=ttl").items, 60, 0.3,
               "the TTL'd Job's pod collected with it (foreground)")

    # batch/v1's default propagation is Orphan: a client that sends none leaves the pods, without owner
    batch_v1.create_namespaced_job("default", client.V1Job(metadata=client.V1ObjectMeta(name="orphans"),
                                                           spec=client.V1JobSpec(
        template=client.V1PodTemplateSpec(spec=client.V1PodSpec(
            restart_policy="Never", termination_grace_period_seconds=1, containers=[client.V1Container(
                name="c", image=BUSYBOX, image_pull_policy="IfNotPresent", command=["sleep", "300"])])))))
    pod = wait_until(lambda: next(iter(core.list_namespaced_pod("default", label_selector="job-name=orphans").items),
                                  None), 30, 0.2, "the orphans Job's pod")
    batch_v1.delete_namespaced_job("orphans", "default")

    def orphaned():
        p = core.read_namespaced_pod(pod.metadata.name, "default")
        return p if not p.metadata.owner_references and not p.metadata.finalizers else None

    left = wait_until(orphaned, 60, 0.3, "the pod orphaned and its tracking finalizer removed")
    assert left.metadata.deletion_timestamp is None
    with pytest.raises(client.ApiException) as gone:
        batch_v1.read_namespaced_job("orphans", "default")
    assert gone.value.status == 404
    core.delete_namespaced_pod(pod.metadata.name, "default", grace_period_seconds=0)
    wait_until(lambda: not core.list_namespaced_pod("default", label_selector="job-name=orphans").items, 60, 0.3,
               "the orphaned pod deleted")
