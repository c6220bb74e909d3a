"""What the Pods chapter teaches, as checks over one pod spec: whether the containers belong
in one Pod (:mod:`kubelite.advise.colocation`), requests and limits, liveness and readiness
probes, image tags, hostPath, restartPolicy. Each finding has a stable code; the texts carry
the chapter's reasoning (``why``) and what to do instead (``suggestion``).

Codes (never renumbered; new checks get new codes):

=======  ========  ===========================================================
KL000    error     no containers: not a pod spec
KL001    warning   a database shares the Pod with containers it is not tied to
KL002    info      containers share nothing that needs one machine
KL010    warning   no resource requests (cpu, memory)
KL011    warning   no resource limits (cpu, memory)
KL020    warning   no liveness probe
KL021    warning   a container that serves ports has no readiness probe
KL030    warning   image ``:latest`` or untagged
KL040    warning   hostPath volume
KL050    warning   restartPolicy Never on a long-running Pod
KL051    error     restartPolicy the workload kind does not accept
=======  ========  ===========================================================

A Pod (or template) annotated ``advise.kubelite.io/ignore: "KL002,KL020"`` skips those codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubelite.advise.colocation import Colocation, analyse, long_running
from kubelite.advise.manifests import WORKLOAD_RESTART_POLICIES, PodSubject
from kubelite.api import field

Obj = dict[str, Any]
IGNORE_ANNOTATION = "advise.kubelite.io/ignore"
SEVERITIES = ("error", "warning", "info")

WHY_QUESTION = ('The chapter\'s test for a Pod: "Will these containers work correctly if they land on '
                'different machines?" If the answer is no, a Pod is the correct grouping; if yes, multiple '
                "Pods are probably the correct solution.")
WHY_DATABASE = ('The chapter calls this an anti-pattern: people see Pods and think "Aha! A WordPress container '
                'and a MySQL database container should be in the same Pod." But the two are not truly symbiotic: '
                "they communicate over a network connection, so they work together just as well from different "
                "machines. And they should not be scaled as a unit: the front end is mostly stateless and scales "
                "out with more Pods as load grows, while a database is much harder to scale and rather gets more "
                "resources in its one Pod. Grouped in one Pod, both are forced into the same scaling strategy.")
WHY_REQUESTS = ("Requests are the minimum a container is guaranteed: the scheduler places Pods by the sum of "
                "their requests and never past a node's capacity, and idle CPU is shared in proportion to them. "
                "Without requests the scheduler may put the Pod on a node that is already full, and when memory "
                "runs out, containers using more than their request are the first to be killed.")
WHY_LIMITS = ("Limits are hard caps the kernel enforces. Without a memory limit a leak in this container can "
              "take memory its neighbours need — the chapter's example is a Git synchronizer with a memory leak "
              "that must not crash the web server beside it; with a limit, the leaking container alone is "
              "killed and restarted. A CPU limit keeps a busy container from taking more than its share.")
WHY_LIVENESS = ("Kubernetes' process check restarts a container only when its main process exits. A process "
                "that is deadlocked or stuck keeps running and keeps failing its users; a liveness probe "
                "(httpGet, tcpSocket or exec) lets the kubelet see that and restart it. The chapter's "
                "kuard-pod-health.yaml probes GET /healthy on 8080 every 10 s and restarts kuard after 3 failures.")
WHY_READINESS = ("Readiness is not liveness: a container that fails its readiness probe is not restarted but "
                 "taken out of the Services' load balancers until it passes again. Without one, requests reach "
                 "the container as soon as it starts, before it can serve them, and while it is overloaded. "
                 "The chapter's kuard-pod-full.yaml probes GET /ready on 8080 every 10 s.")
WHY_LATEST = ("A tag like :latest moves: Pods started at different times, or restarted on another machine, can "
              "run different code, and there is no version to roll back to. With :latest or no tag, "
              "imagePullPolicy defaults to Always, so every start pulls from the registry and fails while it is "
              "unreachable.")
WHY_HOSTPATH = ("A hostPath volume is the filesystem of whichever machine the Pod lands on. The data stays on "
                "that machine: a Pod is not rescheduled when its node fails, and its replacement on another "
                "node sees a different (or empty) directory. It also gives the container the node's own files.")
WHY_NEVER = ("With restartPolicy Never a container that exits — or that the kubelet kills because its liveness "
             "probe failed — is never started again; the Pod ends Failed or Succeeded. Always (the default) "
             "restarts it, OnFailure restarts it after a failure.")


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str
    source: str
    index: int
    object: str  # Kind/name
    namespace: str
    container: str
    field: str  # where in the object
    message: str
    why: str
    suggestion: str

    def sort_key(self) -> tuple[Any, ...]:
        return (self.source, self.index, self.object, self.code, self.container, self.field)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "source": self.source, "index": self.index,
                "object": self.object, "namespace": self.namespace, "container": self.container,
                "field": self.field, "message": self.message, "why": self.why, "suggestion": self.suggestion}


def _d(v: Any) -> Obj:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _names(ns: list[str]) -> str:
    q = [f'"{n}"' for n in ns]
    return q[0] if len(q) == 1 else ", ".join(q[:-1]) + " and " + q[-1]


def _image_tag(image: str) -> str | None:
    """The tag, "" for a digest reference, None when there is neither."""
    if "@" in image:
        return ""
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


class _Review:
    def __init__(self, subject: PodSubject) -> None:
        self.s = subject
        self.findings: list[Finding] = []
        self.ignored = {c.strip() for c in subject.annotations.get(IGNORE_ANNOTATION, "").split(",") if c.strip()}

    def add(self, code: str, severity: str, container: str, fld: str, message: str, why: str,
            suggestion: str) -> None:
        if code in self.ignored:
            return
        self.findings.append(Finding(code, severity, self.s.source, self.s.index, self.s.object_ref,
                                     self.s.namespace, container, fld, message, why, suggestion))


def _container_paths(spec: Obj, base: str) -> list[tuple[Obj, str, bool]]:
    """(container, its field path, long-running?) for init containers and containers."""
    out = []
    for i, c in enumerate(_l(spec.get("initContainers"))):
        c = _d(c)
        out.append((c, f"{base}.initContainers[{i}]", c.get("restartPolicy") == "Always"))
    for i, c in enumerate(_l(spec.get("containers"))):
        out.append((_d(c), f"{base}.containers[{i}]", True))
    return out


def review(subject: PodSubject) -> tuple[Colocation, list[Finding]]:
    """The colocation verdict and the findings for one pod spec."""
    r = _Review(subject)
    spec, base = subject.spec, subject.path
    if not _l(spec.get("containers")):
        r.add("KL000", "error", "", f"{base}.containers", "the pod spec has no containers",
              "A Pod is a group of containers; the API server rejects a Pod without any.",
              f"add at least one container under {base}.containers")
        return analyse(spec), r.findings
    colo = analyse(spec)
    _colocation(r, colo)
    pod_res = _d(spec.get("resources"))
    restart = spec.get("restartPolicy") or "Always"
    for c, path, running in _container_paths(spec, base):
        name = str(c.get("name", ""))
        _resources(r, c, path, name, pod_res)
        _image(r, c, path, name)
        if running and restart == "Always" and subject.kind not in ("Job", "CronJob"):
            _probes(r, c, path, name)
    _volumes(r, spec, base)
    _restart_policy(r, spec, base, restart)
    return colo, sorted(r.findings, key=Finding.sort_key)


# ------------------------------------------------------------------------------------------ checks
def _colocation(r: _Review, colo: Colocation) -> None:
    if colo.verdict != "separate-pods":
        return
    base = r.s.path
    group_of = {n: g for g in colo.groups for n in g}
    dbs = {d.container: d for d in colo.databases}
    soft = [t for t in colo.ties if not t.binding]
    for db in colo.databases:
        others = [n for n in colo.containers if n not in group_of[db.container]]
        if not others:
            continue
        net = [t for t in soft if t.kind == "network" and db.container in t.containers]
        if net:
            links = "; ".join(t.detail for t in net)
            tie = f"though only a network connection links them ({links}) — no shared volume, no shared processes"
            repoint = ", ".join(f"{t.where} = {db.container}:{db.port} instead of {t.address}" for t in net)
        else:
            tie = "though nothing ties them to one machine (no shared volume, no localhost traffic, no shared " \
                  "processes)"
            repoint = f"for example {db.container}:{db.port}"
        fld = next(p for c, p, _ in _container_paths(r.s.spec, base) if c.get("name") == db.container)
        r.add("KL001", "warning", db.container, fld,
              f'the {db.product} database "{db.container}" ({db.evidence}) shares the Pod with '
              f"{_names(others)}, {tie}",
              f"{WHY_DATABASE} {WHY_QUESTION}",
              f'Run "{db.container}" in a Pod of its own (a StatefulSet with a persistent volume for its data), '
              f"put a Service in front of it, and point {_names(others)} at the Service's name ({repoint}); "
              f"then scale {_names(others)} out with more Pods and give the database more resources, each on "
              "its own.")
    loose = [g for g in colo.groups if not any(n in dbs for n in g)]
    if len(loose) >= 2:
        split = " | ".join(" + ".join(g) for g in loose)
        r.add("KL002", "info", "", f"{base}.containers",
              f"{_names([n for g in loose for n in g])} share nothing that needs one machine ({split}): "
              "no shared volume, no localhost traffic between them, no shared process namespace",
              f"{WHY_QUESTION} Separate Pods are placed, restarted and scaled on their own.",
              "If they work on different machines, split them into separate Pods that talk over the network "
              "(a Service). If they do depend on each other in a way the manifest does not show (IPC, a file), "
              f'keep them together and say so: annotate the Pod with {IGNORE_ANNOTATION}: "KL002".')


def _resources(r: _Review, c: Obj, path: str, name: str, pod_res: Obj) -> None:
    res = _d(c.get("resources"))
    req, lim = _d(res.get("requests")), _d(res.get("limits"))
    pod_req, pod_lim = _d(pod_res.get("requests")), _d(pod_res.get("limits"))
    # limits without requests: the API server copies the limit into the request
    no_req = [k for k in ("cpu", "memory") if k not in req and k not in lim and k not in pod_req and k not in pod_lim]
    no_lim = [k for k in ("cpu", "memory") if k not in lim and k not in pod_lim]
    if no_req:
        what = " or ".join(no_req)
        r.add("KL010", "warning", name, f"{path}.resources.requests",
              f'container "{name}" sets no {what} request'
              + (" (the Pod is BestEffort)" if len(no_req) == 2 and not no_lim else ""),
              WHY_REQUESTS,
              f"Set resources.requests ({', '.join(no_req)}) to what the container needs under normal "
              'load — the chapter\'s kuard-pod-resreq.yaml asks for cpu: "500m", memory: "128Mi".')
    if no_lim:
        what = " or ".join(no_lim)
        r.add("KL011", "warning", name, f"{path}.resources.limits",
              f'container "{name}" has no {what} limit', WHY_LIMITS,
              f"Set resources.limits ({', '.join(no_lim)}) to the most the container may use — the "
              'chapter\'s kuard-pod-reslim.yaml caps kuard at cpu: "1000m", memory: "256Mi".')


def _probes(r: _Review, c: Obj, path: str, name: str) -> None:
    if "livenessProbe" not in c:
        r.add("KL020", "warning", name, f"{path}.livenessProbe",
              f'container "{name}" has no liveness probe', WHY_LIVENESS,
              "Add a livenessProbe that checks the application itself (httpGet of a health endpoint, "
              "tcpSocket, or exec), e.g. httpGet path /healthy port 8080, periodSeconds 10, failureThreshold 3.")
    if _l(c.get("ports")) and "readinessProbe" not in c:
        r.add("KL021", "warning", name, f"{path}.readinessProbe",
              f'container "{name}" serves ports but has no readiness probe', WHY_READINESS,
              "Add a readinessProbe that passes only when the container can serve requests, e.g. httpGet path "
              "/ready port 8080 — it may differ from the liveness check.")


def _image(r: _Review, c: Obj, path: str, name: str) -> None:
    image = str(c.get("image") or "")
    if not image:
        return
    tag = _image_tag(image)
    if tag is None or tag == "latest":
        what = 'has no tag (so ":latest")' if tag is None else 'uses the tag ":latest"'
        r.add("KL030", "warning", name, f"{path}.image", f'image "{image}" of container "{name}" {what}',
              WHY_LATEST,
              "Pin the image to a version tag that names one build (kuard-amd64:blue rather than :latest), "
              "or to a digest (image@sha256:…), and change it on purpose to roll out.")


def _volumes(r: _Review, spec: Obj, base: str) -> None:
    for i, v in enumerate(_l(spec.get("volumes"))):
        v = _d(v)
        if "hostPath" not in v:
            continue
        path = _d(v.get("hostPath")).get("path", "")
        users = sorted({str(c.get("name", "")) for c, _, _ in _container_paths(spec, base)
                        if any(_d(m).get("name") == v.get("name") for m in _l(c.get("volumeMounts")))})
        r.add("KL040", "warning", ",".join(users), f"{base}.volumes[{i}].hostPath",
              f'volume "{v.get("name", "")}" is the node\'s directory {path} (hostPath)', WHY_HOSTPATH,
              "For data that must outlive the Pod use remote storage that follows it to any machine (a "
              "PersistentVolumeClaim, or NFS as in the chapter's kuard-pod-full.yaml); for scratch space or "
              "files shared between the Pod's containers use emptyDir. Keep hostPath for agents that must see "
              "the node itself.")


def _restart_policy(r: _Review, spec: Obj, base: str, restart: str) -> None:
    kind = r.s.kind
    allowed = WORKLOAD_RESTART_POLICIES.get(kind)
    fld = f"{base}.restartPolicy"
    if allowed is not None:
        if restart not in allowed:
            err = field.not_supported(fld, restart, list(allowed))
            r.add("KL051", "error", "", fld, f"{kind}: {err}",
                  f"A {kind} runs its Pods " + ("until they finish: their containers must not be restarted "
                                                "forever." if kind in ("Job", "CronJob") else
                                                "forever: its containers must always be restarted."),
                  f"Set {fld} to " + " or ".join(allowed) + ".")
        return
    if kind != "Pod" or restart != "Never":
        return
    serving = [str(c.get("name", "")) for c in long_running(spec) if "livenessProbe" in c or _l(c.get("ports"))]
    if serving:
        r.add("KL050", "warning", ",".join(serving), fld,
              f"restartPolicy Never, but {_names(serving)} look long-running (ports or a liveness probe)",
              WHY_NEVER,
              "Leave restartPolicy at Always for servers; use Never or OnFailure for work that finishes "
              "(better, a Job).")
