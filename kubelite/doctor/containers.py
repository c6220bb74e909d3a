"""What a container's status says, in plain words: its waiting reason and message (image
pulls — ``pkg/kubelet/images``; config errors and back-off — ``pkg/kubelet/kuberuntime``),
its last termination (exit codes, OOM kills), the prober's Unhealthy/Killing events
(``pkg/kubelet/prober``) and its last log lines. Pure functions over
:class:`~kubelite.doctor.evidence.Evidence`; :mod:`kubelite.doctor.diagnose` puts them together."""

from __future__ import annotations

import re
from typing import Any

from kubelite.doctor.evidence import Evidence, event_time
from kubelite.doctor.report import Finding
from kubelite.kinds._printing import human_duration, parse_time

Obj = dict[str, Any]
RECENT = 600.0  # restarts and probe failures this recent still count
STARTING = 60.0  # a container may be created for this long before we call it stuck
_EXIT_CODES = {
    1: "a general error of the application",
    2: "a usage error (bad command-line arguments?)",
    126: "the command is not executable",
    127: "the command was not found in the image",
    128 + 9: "killed by SIGKILL",
    128 + 15: "stopped by SIGTERM",
    128 + 11: "a segmentation fault",
    128 + 6: "aborted (SIGABRT)",
}
_AUTH = re.compile(r"401 Unauthorized|403 Forbidden|\bunauthorized\b|authentication required|no basic auth "
                   r"credentials|insufficient_scope|authorization failed|denied", re.I)
_NOT_FOUND = re.compile(r"not found|manifest unknown|name unknown|does not exist|NotFound", re.I)
_UNREACHABLE = re.compile(r"no such host|connection refused|i/o timeout|network is unreachable|timed out|"
                          r"server gave HTTP response to HTTPS client|x509|tls:", re.I)


def _d(v: Any) -> Obj:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _last_line(text: str) -> str:
    lines = [ln.rstrip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _events(ev: Evidence, reason: str, container: str = "", starts: str = "") -> list[Obj]:
    out = []
    for e in ev.events:
        if e.get("reason") != reason or not str(e.get("message", "")).startswith(starts):
            continue
        fp = str(_d(e.get("involvedObject")).get("fieldPath", ""))
        if container and fp and not fp.endswith(f"{{{container}}}"):
            continue
        out.append(e)
    return out


def event_line(e: Obj, now: float) -> str:
    count = e.get("count") or _d(e.get("series")).get("count") or 1
    times = f" (x{count}, last {human_duration(now - event_time(e))} ago)" if count > 1 else \
        f" ({human_duration(now - event_time(e))} ago)"
    return f"event {e.get('reason')}: {str(e.get('message', '')).strip()}{times}"


def _spec_container(pod: Obj, name: str) -> Obj:
    spec = _d(pod.get("spec"))
    for c in _l(spec.get("containers")) + _l(spec.get("initContainers")):
        if _d(c).get("name") == name:
            return _d(c)
    return {}


def _probe_text(probe: Obj) -> str:
    if "httpGet" in probe:
        h = _d(probe["httpGet"])
        return f"httpGet {h.get('path', '/')} on port {h.get('port')}"
    if "tcpSocket" in probe:
        return f"tcpSocket on port {_d(probe['tcpSocket']).get('port')}"
    if "exec" in probe:
        return "exec " + " ".join(map(str, _l(_d(probe["exec"]).get("command"))))
    if "grpc" in probe:
        return f"grpc on port {_d(probe['grpc']).get('port')}"
    return "a probe"


def _references(pod: Obj, kind: str, obj_name: str) -> list[str]:
    """Where the pod spec names a ConfigMap/Secret."""
    spec = _d(pod.get("spec"))
    out = []
    ref_key, env_key, vol_key, vol_name = (("configMapRef", "configMapKeyRef", "configMap", "name") if
                                           kind == "configmap" else ("secretRef", "secretKeyRef", "secret",
                                                                     "secretName"))
    for c in _l(spec.get("containers")) + _l(spec.get("initContainers")):
        c = _d(c)
        for i, src in enumerate(_l(c.get("envFrom"))):
            if _d(_d(src).get(ref_key)).get("name") == obj_name:
                out.append(f'container "{c.get("name")}" envFrom[{i}].{ref_key}')
        for e in _l(c.get("env")):
            ref = _d(_d(_d(e).get("valueFrom")).get(env_key))
            if ref.get("name") == obj_name:
                out.append(f'container "{c.get("name")}" env {_d(e).get("name")} (key {ref.get("key")})')
    for v in _l(spec.get("volumes")):
        if _d(_d(v).get(vol_key)).get(vol_name) == obj_name:
            out.append(f'volume "{_d(v).get("name")}"')
    return out


# ------------------------------------------------------------------------------------------ images
def _image(ev: Evidence, cs: Obj, reason: str, message: str) -> Finding:
    name = cs.get("name", "")
    c = _spec_container(ev.pod, name)
    image = c.get("image") or cs.get("image", "")
    fails = [e for e in _events(ev, "Failed", name, "Failed to pull image")]
    detail = str(fails[-1].get("message", "")) if fails else message
    seen = (event_line(fails[-1], ev.now),) if fails else (f"state {reason}: {message}",)
    registry = image.split("/", 1)[0] if "/" in image and ("." in image.split("/", 1)[0] or ":" in
                                                           image.split("/", 1)[0]) else "docker.io"
    secrets = [s.get("name") for s in map(_d, _l(_d(ev.pod.get("spec")).get("imagePullSecrets")))]
    if reason == "ErrImageNeverPull":
        return Finding("ImageNeverPull", "error", name, f'the image "{image}" is not on the node and '
                       "imagePullPolicy is Never, so the kubelet may not pull it",
                       "put the image on the node (`kubelite images import FILE`) or set imagePullPolicy: "
                       "IfNotPresent; then re-create the pod", seen)
    if reason == "InvalidImageName":
        return Finding("InvalidImageName", "error", name, f'"{image}" is not a valid image reference',
                       "fix the image name ([registry/]repository[:tag|@digest]) and re-create the pod", seen)
    if _AUTH.search(detail):
        have = (f"the pod's imagePullSecrets ({', '.join(map(str, secrets))}) hold no valid credentials for it"
                if secrets else "the pod has no imagePullSecrets for it")
        return Finding("ImagePullUnauthorized", "error", name,
                       f'the registry {registry} refused to let the node pull "{image}" without valid credentials '
                       f"(authentication failed); {have}",
                       f"create a pull secret and name it in the pod: kubectl create secret docker-registry "
                       f"regcred --docker-server={registry} --docker-username=USER --docker-password=PASSWORD, "
                       "then spec.imagePullSecrets: [{name: regcred}] (or add it to the service account's "
                       "imagePullSecrets, or to <data-dir>/registries.yaml on the node); if the pod already has "
                       "one, check its user and password", seen)
    if _NOT_FOUND.search(detail):
        return Finding("ImageNotFound", "error", name,
                       f'the registry {registry} has no image "{image}": the repository or the tag does not exist',
                       "check the image name and tag for typos; push the image to the registry (or import it "
                       "onto the node with `kubelite images import FILE`), or point spec.containers[].image at "
                       "one that exists — the image field can be changed in place: kubectl set image pod/"
                       f"{_d(ev.pod.get('metadata')).get('name', '')} {name}=IMAGE", seen)
    if _UNREACHABLE.search(detail):
        return Finding("RegistryUnreachable", "error", name,
                       f'the node cannot reach the registry {registry} to pull "{image}"',
                       "check the registry's address and that it runs and is reachable from the node (DNS, "
                       "firewall); a plain-http registry needs an entry in <data-dir>/registries.yaml", seen)
    return Finding("ImagePullFailed", "error", name, f'the node cannot pull "{image}": {detail}',
                   "read the pull error above; fix the image reference, the registry or its credentials", seen)


# ------------------------------------------------------------------------------------------ config
def _config_error(ev: Evidence, cs: Obj, message: str) -> Finding:
    name = cs.get("name", "")
    ns = _d(ev.pod.get("metadata")).get("namespace", "default")
    seen = (f"state CreateContainerConfigError: {message}",)
    if message.startswith("MountVolume.SetUp failed"):
        return mount_finding(ev, message, seen, name)
    m = re.search(r'(configmap|secret) "([^"]+)" not found', message)
    if m:
        return _missing_object(ev, m.group(1), m.group(2), seen, name)
    m = re.search(r"couldn't find key (\S+) in (ConfigMap|Secret) (\S+)/(\S+)", message)
    if m:
        key, kind, _, obj = m.groups()
        what = "configmap" if kind == "ConfigMap" else "secret"
        return Finding("ConfigKeyNotFound", "error", name, f'the {kind} "{obj}" exists but has no key "{key}", '
                       "which the container's env asks for",
                       f"add the key: kubectl edit {what} {obj} -n {ns} (or re-create it with the key), fix the key "
                       "name in the pod, or mark the reference optional: true", seen)
    return Finding("CreateContainerConfigError", "error", name, f"the kubelet cannot build the container's "
                   f"configuration: {message}", "fix the pod spec as the message says and re-create the pod", seen)


def _missing_object(ev: Evidence, what: str, obj: str, seen: tuple[str, ...], container: str) -> Finding:
    ns = _d(ev.pod.get("metadata")).get("namespace", "default")
    kind = "ConfigMap" if what == "configmap" else "Secret"
    refs = _references(ev.pod, what, obj)
    where = f" (named by {'; '.join(refs)})" if refs else ""
    create = (f"kubectl create configmap {obj} -n {ns} --from-literal=KEY=VALUE (or --from-file=FILE)"
              if what == "configmap" else
              f"kubectl create secret generic {obj} -n {ns} --from-literal=KEY=VALUE (or --from-file=FILE)")
    return Finding(f"{kind}NotFound", "error", container,
                   f'the {kind} "{obj}" does not exist in namespace {ns}, and the pod needs it{where}',
                   f"create it: {create} — the kubelet retries and starts the container once it exists; or fix "
                   "the name in the pod, or mark the reference optional: true if the pod can run without it", seen)


def mount_finding(ev: Evidence, message: str, seen: tuple[str, ...], container: str = "") -> Finding:
    m = re.match(r'MountVolume\.\w+ failed for volume "([^"]+)" : (.*)', message, re.S)
    if not m:
        return Finding("VolumeMountFailed", "error", container, f"a volume cannot be mounted: {message}",
                       "kubectl describe pod shows which volume; fix its source or re-create the pod", seen)
    vol, why = m.group(1), m.group(2).strip()
    if "\nOutput:" in why:  # mount(8) failures: the tool's own words are the useful part
        why = f"{why.rsplit('Output:', 1)[1].strip()} ({why.splitlines()[0].strip()})"
    m2 = re.search(r'(configmap|secret) "([^"]+)" not found', why)
    if m2:
        return _missing_object(ev, m2.group(1), m2.group(2), seen, container)
    source = next((_d(v) for v in _l(_d(ev.pod.get("spec")).get("volumes")) if _d(v).get("name") == vol), {})
    kind = next((k for k in source if k != "name"), "")
    fix = f'make the volume "{vol}" mountable on the node, or change its source and re-create the pod'
    if kind == "hostPath":
        hp = _d(source.get("hostPath"))
        fix = (f"create {hp.get('path')} on the node (or correct the path), or drop hostPath.type "
               f"({hp.get('type') or 'none'}) so the check is skipped — better, avoid hostPath: use emptyDir or a "
               "PersistentVolumeClaim")
    elif kind == "nfs":
        nfs = _d(source.get("nfs"))
        fix = (f"check that the NFS server {nfs.get('server')} exports {nfs.get('path')} to this node and is "
               "reachable, and that the node can mount NFS")
    elif kind == "persistentVolumeClaim":
        fix = (f"check the claim: kubectl describe pvc {_d(source.get('persistentVolumeClaim')).get('claimName')}"
               " (bound? its volume reachable from this node?)")
    what = f"{kind} volume" if kind else "volume"
    return Finding("VolumeMountFailed", "error", container, f'the node cannot mount the {what} "{vol}": {why}',
                   fix, seen)


# ------------------------------------------------------------------------------------------ exits
def _exit_meaning(code: int, reason: str) -> str:
    if reason == "OOMKilled":
        return "killed for using more memory than its limit"
    if code in _EXIT_CODES:
        return _EXIT_CODES[code]
    if code > 128:
        return f"killed by signal {code - 128}"
    return "the application's own error code"


def _probe_failures(ev: Evidence, container: str, title: str) -> list[Obj]:
    return [e for e in _events(ev, "Unhealthy", container) if str(e.get("message", "")).startswith(title)
            and ev.now - event_time(e) < RECENT]


def _liveness(ev: Evidence, cs: Obj) -> Finding | None:
    """Restarts the kubelet made because the liveness (or startup) probe failed."""
    name = cs.get("name", "")
    kills = [e for e in _events(ev, "Killing", name)
             if re.search(r"failed (liveness|startup) probe", str(e.get("message", "")))
             and ev.now - event_time(e) < RECENT]
    if not kills:
        return None
    probe_kind = "startup" if "startup probe" in str(kills[-1].get("message")) else "liveness"
    title = "Startup" if probe_kind == "startup" else "Liveness"
    fails = _probe_failures(ev, name, title)
    spec = _d(_spec_container(ev.pod, name).get(f"{probe_kind}Probe"))
    output = str(fails[-1].get("message", "")).split(": ", 1)[-1].strip() if fails else ""
    restarts = cs.get("restartCount", 0)
    cause = (f"the kubelet killed and restarted the container {restarts} time{'' if restarts == 1 else 's'} "
             f"because its {probe_kind} probe ({_probe_text(spec)}) failed"
             + (f": {output}" if output else ""))
    settings = (f"initialDelaySeconds {spec.get('initialDelaySeconds', 0)}, periodSeconds "
                f"{spec.get('periodSeconds', 10)}, failureThreshold {spec.get('failureThreshold', 3)}")
    fix = ("check that the probe tests what the application really serves: run it by hand "
           + (f"(kubectl exec {_d(ev.pod.get('metadata')).get('name')} -c {name} -- "
              + " ".join(map(str, _l(_d(spec.get('exec')).get('command')))) + ")" if "exec" in spec else
              "(kubectl port-forward the pod and curl it)")
           + f". If the application is only slow to start, give it time ({settings}): raise "
           "initialDelaySeconds or failureThreshold, or add a startupProbe; if it really hangs, its log "
           f"before the restart shows why (kubectl logs {_d(ev.pod.get('metadata')).get('name')} -c {name} "
           "--previous)")
    seen = tuple(event_line(e, ev.now) for e in (fails[-1:] + kills[-1:]))
    return Finding("StartupProbeFailing" if probe_kind == "startup" else "LivenessProbeFailing",
                   "error" if "waiting" in _d(cs.get("state")) else "warning", name, cause, fix, seen)


def _oom(ev: Evidence, cs: Obj, term: Obj, current: bool) -> Finding:
    name = cs.get("name", "")
    limit = _d(_d(_spec_container(ev.pod, name).get("resources")).get("limits")).get("memory")
    when = parse_time(term.get("finishedAt"))
    ago = f" {human_duration(ev.now - when)} ago" if when else ""
    cause = (f"the container used more memory than its limit{f' ({limit})' if limit else ''} and the kernel "
             f"killed it (OOMKilled, exit code {term.get('exitCode', 137)}){ago}")
    if not limit:
        cause += "; it has no memory limit of its own, so the pod's or the node's memory ran out"
    fix = ("raise resources.limits.memory (and requests.memory) to what the container really needs at peak, then "
           f"re-create the pod; if its use keeps growing, it leaks memory: fix the application "
           f"(kubectl logs {_d(ev.pod.get('metadata')).get('name')} -c {name}"
           f"{'' if current else ' --previous'} shows what it did last)")
    seen = [f"{'state' if current else 'last state'} terminated: reason OOMKilled, exit code {term.get('exitCode')}"]
    return Finding("OOMKilled", "error" if "waiting" in _d(cs.get("state")) or current else "warning",
                   name, cause, fix, tuple(seen))


def _crashed(ev: Evidence, cs: Obj, term: Obj, waiting_msg: str, restart_policy: str) -> Finding:
    name = cs.get("name", "")
    pod_name = _d(ev.pod.get("metadata")).get("name", "")
    code = int(term.get("exitCode", 0) or 0)
    logs = ev.logs.get(name, {})
    line = _last_line(logs.get("previous", "")) or _last_line(logs.get("current", ""))
    started, finished = parse_time(term.get("startedAt")), parse_time(term.get("finishedAt"))
    ran = f" after running {human_duration(finished - started)}" if started and finished else ""
    restarts = cs.get("restartCount", 0)
    cause = (f"the container keeps exiting: it ended with exit code {code} ({_exit_meaning(code, '')}){ran}, "
             f"and the kubelet waits longer before each restart (restarted {restarts} "
             f"time{'' if restarts == 1 else 's'})")
    if line:
        cause += f'; its last log line was "{line}"'
    elif logs:
        cause += "; it wrote nothing to its log"
    if code == 0:
        fix = ("the main process finishes successfully, but restartPolicy Always starts it again: a server must "
               "keep running in the foreground (check command/args); for a task that ends, use restartPolicy "
               "OnFailure or Never (or a Job)")
    elif code in (126, 127):
        fix = (f"the command cannot be run ({_EXIT_CODES[code]}): check command/args against what the image "
               f"contains (kubectl logs {pod_name} -c {name} --previous)")
    else:
        fix = (f"read why the application stopped — kubectl logs {pod_name} -c {name} --previous — and fix its "
               "configuration or what it depends on (env, config files, services it connects to); the kubelet "
               "keeps retrying, with back-off up to 5 minutes")
    seen = [f"last state terminated: exit code {code}, reason {term.get('reason', 'Error')}"]
    if waiting_msg:
        seen.insert(0, f"state CrashLoopBackOff: {waiting_msg}")
    return Finding("CrashLoopBackOff", "error", name, cause, fix, tuple(seen))


def _exited(ev: Evidence, cs: Obj, term: Obj, restart_policy: str) -> Finding:
    name = cs.get("name", "")
    code = int(term.get("exitCode", 0) or 0)
    logs = ev.logs.get(name, {})
    line = _last_line(logs.get("current", ""))
    cause = (f"the container exited with code {code} ({_exit_meaning(code, term.get('reason', ''))}) and "
             f"restartPolicy {restart_policy} does not start it again")
    if line:
        cause += f'; its last log line was "{line}"'
    fix = (f"read its log (kubectl logs {_d(ev.pod.get('metadata')).get('name')} -c {name}) and fix the cause, "
           "then re-create the pod; use restartPolicy OnFailure (or a Job) to retry failures")
    seen = [f"state terminated: exit code {code}, reason {term.get('reason')}"] + \
        ([f"last log line: {line}"] if line else [])
    return Finding("ContainerFailed", "error", name, cause, fix, tuple(seen))


def _readiness(ev: Evidence, cs: Obj, probe: str) -> Finding | None:
    name = cs.get("name", "")
    spec = _d(_spec_container(ev.pod, name).get(f"{probe}Probe"))
    if not spec:
        return None
    title = probe.capitalize()
    fails = _probe_failures(ev, name, title)
    started = parse_time(_d(_d(cs.get("state")).get("running")).get("startedAt"))
    if not fails:
        delay = spec.get("initialDelaySeconds", 0) or 0
        up = ev.now - started if started else 0
        return Finding(f"{title}ProbePending", "info", name,
                       f"the container runs; its {probe} probe ({_probe_text(spec)}) has not passed yet "
                       f"(running {human_duration(up)}, initialDelaySeconds {delay})",
                       "nothing yet: it is marked ready when the probe passes", ())
    output = str(fails[-1].get("message", "")).split(": ", 1)[-1].strip()
    pod_name = _d(ev.pod.get("metadata")).get("name", "")
    if probe == "readiness":
        cause = (f"the container runs but fails its readiness probe ({_probe_text(spec)}): {output} — so the pod is "
                 "not Ready and Services send it no traffic (it is not restarted for this)")
    else:
        cause = (f"the container runs but has not passed its startup probe ({_probe_text(spec)}): {output}; "
                 "liveness and readiness checks wait for it, and failing it too often restarts the container")
    how = (f"kubectl exec {pod_name} -c {name} -- " + " ".join(map(str, _l(_d(spec.get("exec")).get("command"))))
           if "exec" in spec else f"kubectl port-forward pod/{pod_name} PORT, then curl it")
    fix = (f"make the probe and the application agree: run the check by hand ({how}) and see what it answers; "
           "fix the path/port/command in the probe, or what the application needs before it can serve "
           "(its log: kubectl logs " + f"{pod_name} -c {name}); if it is only slow, raise initialDelaySeconds")
    return Finding(f"{title}ProbeFailing", "error", name, cause, fix, (event_line(fails[-1], ev.now),))


def _waiting(ev: Evidence, cs: Obj, restart_policy: str) -> Finding | None:
    name = cs.get("name", "")
    w = _d(_d(cs.get("state")).get("waiting"))
    reason, message = str(w.get("reason", "")), str(w.get("message", "")).strip()
    last = _d(_d(cs.get("lastState")).get("terminated"))
    if reason in ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"):
        return _image(ev, cs, reason, message)
    if reason == "CreateContainerConfigError":
        return _config_error(ev, cs, message)
    if reason == "CrashLoopBackOff":
        live = _liveness(ev, cs)
        if live is not None and last.get("exitCode") in (137, 143, 0, None):
            return live
        if last.get("reason") == "OOMKilled":
            return _oom(ev, cs, last, current=False)
        return _crashed(ev, cs, last, message, restart_policy)
    if reason in ("CreateContainerError", "RunContainerError", "StartError"):
        if re.search(r"executable file not found|no such file or directory|not found in \$PATH", message):
            return Finding("CommandNotFound", "error", name, f"the container's command cannot be started: "
                           f"{message}", "fix command/args: the program must exist in the image (or give the "
                           "full path), then re-create the pod", (f"state {reason}: {message}",))
        return Finding(reason, "error", name, f"the runtime cannot create/start the container: {message}",
                       "read the error: fix the container's settings (command, securityContext, mounts) and "
                       "re-create the pod", (f"state {reason}: {message}",))
    if reason in ("ContainerCreating", "PodInitializing", ""):
        return None  # pod-level: sandbox and volume events
    return Finding(reason, "error", name, f"the container waits: {reason}" + (f": {message}" if message else ""),
                   "kubectl describe pod shows the events around it", (f"state {reason}: {message}",))


def container_findings(ev: Evidence, cs: Obj, restart_policy: str, init: bool) -> list[Finding]:
    state = _d(cs.get("state"))
    last = _d(_d(cs.get("lastState")).get("terminated"))
    out: list[Finding] = []
    if "waiting" in state:
        f = _waiting(ev, cs, restart_policy)
        return [f] if f else []
    if "terminated" in state:
        term = _d(state["terminated"])
        if term.get("reason") == "OOMKilled":
            return [_oom(ev, cs, term, current=True)]
        if int(term.get("exitCode", 0) or 0) != 0:
            return [_exited(ev, cs, term, restart_policy)]
        return []
    if "running" not in state:
        return []
    # running: recent restarts, then probes
    finished = parse_time(last.get("finishedAt"))
    recent = finished is not None and ev.now - finished < RECENT
    live = _liveness(ev, cs)
    if live is not None:
        out.append(live)
    elif recent and last.get("reason") == "OOMKilled":
        out.append(_oom(ev, cs, last, current=False))
    if not init and cs.get("started") is False:
        f = _readiness(ev, cs, "startup")
        if f:
            out.append(f)
    elif not init and not cs.get("ready"):
        f = _readiness(ev, cs, "readiness")
        if f:
            out.append(f)
    return out


