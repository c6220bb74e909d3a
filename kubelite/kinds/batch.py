"""batch/v1 Job and CronJob (pkg/registry/batch/job, pkg/registry/batch/cronjob,
pkg/apis/batch/validation, pkg/apis/batch/v1/defaults.go, pkg/printers/internalversion).

Their controllers are kubelite/controllers/job.py, cronjob.py and ttlafterfinished.py.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from kubelite.api import field as f
from kubelite.api.field import FieldError, Path
from kubelite.api.meta import is_dns1123_label, is_qualified_name, name_is_dns_subdomain
from kubelite.api.selectors import SelectorError, label_selector_from_object, validate_label_selector
from kubelite.kinds import _cron
from kubelite.kinds import _gorepr as go
from kubelite.kinds._printing import (
    GoJSON,
    age,
    age_column,
    doc,
    get,
    human_duration,
    meta,
    name_column,
    parse_time,
)
from kubelite.kinds.apps import (
    WorkloadStrategy,
    default_template,
    format_selector,
    validate_pod_template_spec,
)
from kubelite.kinds.base import STATUS, Column, Kind, Obj

JOB_DEF = "io.k8s.api.batch.v1.Job"
CRONJOB_DEF = "io.k8s.api.batch.v1.CronJob"
MAX_INT32 = 2**31 - 1

# labels, annotations and the finalizer the Job controller and the apiserver share (batch/v1 types.go)
LEGACY_CONTROLLER_UID = "controller-uid"
LEGACY_JOB_NAME = "job-name"
CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
JOB_NAME = "batch.kubernetes.io/job-name"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
INDEX_FAILURE_COUNT = "batch.kubernetes.io/job-index-failure-count"
INDEX_IGNORED_FAILURE_COUNT = "batch.kubernetes.io/job-index-ignored-failure-count"
JOB_TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
CRONJOB_SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
JOB_CONTROLLER_NAME = "kubernetes.io/job-controller"

MAX_PARALLELISM_INDEXED = 100000
MAX_FAILED_INDEXES = 100_000
COMPLETIONS_SOFT_LIMIT = 100_000
HIGH_COMPLETIONS_LIMIT = 10_000
MAX_POD_FAILURE_POLICY_RULES = 20
MAX_ON_EXIT_CODES_VALUES = 255
MAX_ON_POD_CONDITIONS_PATTERNS = 20
MAX_MANAGED_BY_LENGTH = 63
POD_FAILURE_POLICY_ACTIONS = ["Count", "FailIndex", "FailJob", "Ignore"]
ON_EXIT_CODES_OPERATORS = ["In", "NotIn"]
CONDITION_STATUSES = ["False", "True", "Unknown"]


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _nonneg(value: Any, path: Path) -> list[FieldError]:
    n = _int(value)
    if n is not None and n < 0:
        return [f.invalid(path, n, "must be greater than or equal to 0")]
    return []


# ----------------------------------------------------------------------------- defaults
def default_job_spec(spec: dict[str, Any]) -> None:
    """The JobSpec part of SetDefaults_Job."""
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    if spec.get("parallelism") is None:
        spec["parallelism"] = 1
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = MAX_INT32 if spec.get("backoffLimitPerIndex") is not None else 6
    if spec.get("completionMode") is None:
        spec["completionMode"] = "NonIndexed"
    if spec.get("suspend") is None:
        spec["suspend"] = False
    if spec.get("podReplacementPolicy") is None:
        spec["podReplacementPolicy"] = "Failed" if spec.get("podFailurePolicy") is not None else "TerminatingOrFailed"
    if spec.get("manualSelector") is None:
        spec["manualSelector"] = False


def _default_pod_failure_policy(spec: dict[str, Any]) -> None:
    """SetDefaults_PodFailurePolicyOnPodConditionsPattern: a pattern's status is True."""
    for rule in _l(_d(spec.get("podFailurePolicy")).get("rules")):
        for pattern in _l(_d(rule).get("onPodConditions")):
            if isinstance(pattern, dict) and not pattern.get("status"):
                pattern["status"] = "True"


def default_job(obj: Obj) -> None:
    """SetDefaults_Job (batch/v1) and the pod template's defaults."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        obj["spec"] = spec = {}
    default_job_spec(spec)
    _default_pod_failure_policy(spec)
    labels = _d(_d(spec.get("template")).get("metadata")).get("labels")
    m = obj.setdefault("metadata", {})
    if isinstance(labels, dict) and labels and not m.get("labels"):
        m["labels"] = dict(labels)
    if "template" in spec:
        default_template(spec["template"])


def default_cronjob(obj: Obj) -> None:
    """SetDefaults_CronJob; the job template gets only the per-type defaults (its pod template's)."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        obj["spec"] = spec = {}
    if not spec.get("concurrencyPolicy"):
        spec["concurrencyPolicy"] = "Allow"
    if spec.get("suspend") is None:
        spec["suspend"] = False
    if spec.get("successfulJobsHistoryLimit") is None:
        spec["successfulJobsHistoryLimit"] = 3
    if spec.get("failedJobsHistoryLimit") is None:
        spec["failedJobsHistoryLimit"] = 1
    jt = _d(spec.get("jobTemplate"))
    jspec = jt.get("spec")
    if isinstance(jspec, dict):
        _default_pod_failure_policy(jspec)
        if "template" in jspec:
            default_template(jspec["template"])


def generate_selector(job: Obj) -> None:
    """generateSelector (the job strategy's PrepareForCreate, unless manualSelector): the
    job-name and controller-uid labels, legacy and prefixed, on the template, and a selector on
    the prefixed controller-uid."""
    m = meta(job)
    spec = job.setdefault("spec", {})
    if _d(spec).get("manualSelector") is True:
        return
    template = spec.setdefault("template", {})
    if not isinstance(template, dict):
        return
    tmeta = template.setdefault("metadata", {})
    labels = tmeta.get("labels")
    if not isinstance(labels, dict):
        tmeta["labels"] = labels = {}
    for key in (LEGACY_JOB_NAME, JOB_NAME):
        labels.setdefault(key, m.get("name", ""))
    for key in (LEGACY_CONTROLLER_UID, CONTROLLER_UID):
        labels.setdefault(key, m.get("uid", ""))
    sel = spec.get("selector")
    if not isinstance(sel, dict):
        spec["selector"] = sel = {}
    ml = sel.get("matchLabels")
    if not isinstance(ml, dict):
        sel["matchLabels"] = ml = {}
    ml.setdefault(CONTROLLER_UID, m.get("uid", ""))


# ----------------------------------------------------------------------------- validation
def _has_label(template: dict[str, Any], path: Path, key: str, expected: str) -> list[FieldError]:
    """ValidateHasLabel."""
    labels = _d(_d(template.get("metadata")).get("labels"))
    p = path.child("labels").key(key)
    if key not in labels:
        return [f.required(p, expected)]
    if labels[key] != expected:
        return [f.invalid(p, go.GoValue(go.string_map(labels)), f"must be '{expected}'")]
    return []


def validate_generated_selector(job: Obj, prefixed: bool = True) -> list[FieldError]:
    """validateGeneratedSelector."""
    spec = _d(job.get("spec"))
    if spec.get("manualSelector") is True or spec.get("selector") is None:
        return []
    m = meta(job)
    uid, name = str(m.get("uid") or ""), str(m.get("name") or "")
    errs: list[FieldError] = []
    if not uid:
        errs.append(f.required(Path("metadata", "uid")))
    template = _d(spec.get("template"))
    tpath = Path("spec", "template", "metadata")
    errs += _has_label(template, tpath, LEGACY_CONTROLLER_UID, uid)
    errs += _has_label(template, tpath, LEGACY_JOB_NAME, name)
    expected = {LEGACY_CONTROLLER_UID: uid, LEGACY_JOB_NAME: name}
    if prefixed:
        errs += _has_label(template, tpath, CONTROLLER_UID, uid)
        errs += _has_label(template, tpath, JOB_NAME, name)
        expected.update({CONTROLLER_UID: uid, JOB_NAME: name})
    sel = spec.get("selector")
    try:
        parsed = label_selector_from_object(sel) if isinstance(sel, dict) else None
    except (SelectorError, ValueError):
        parsed = None
    if parsed is not None and not parsed.matches(expected):
        errs.append(f.invalid(Path("spec", "selector"), go.label_selector(sel), "`selector` not auto-generated"))
    return errs


def _validate_on_exit_codes(req: dict[str, Any], path: Path, containers: set[str]) -> list[FieldError]:
    errs: list[FieldError] = []
    op = req.get("operator") or ""
    if not op:
        errs.append(f.required(path.child("operator"), "valid values: " + _go_list(ON_EXIT_CODES_OPERATORS)))
    elif op not in ON_EXIT_CODES_OPERATORS:
        errs.append(f.not_supported(path.child("operator"), op, ON_EXIT_CODES_OPERATORS))
    name = req.get("containerName")
    if name is not None and name not in containers:
        errs.append(f.invalid(path.child("containerName"), name,
                              "must be one of the container or initContainer names in the pod template"))
    values = _l(req.get("values"))
    vpath = path.child("values")
    if not values:
        errs.append(f.invalid(vpath, GoJSON(values), "at least one value is required"))
    elif len(values) > MAX_ON_EXIT_CODES_VALUES:
        errs.append(f.too_many(vpath, len(values), MAX_ON_EXIT_CODES_VALUES))
    seen: set[Any] = set()
    ordered = True
    for j, v in enumerate(values):
        if op == "In" and v == 0:
            errs.append(f.invalid(vpath.index(j), v, "must not be 0 for the In operator"))
        if v in seen:
            errs.append(f.duplicate(vpath.index(j), v))
        else:
            seen.add(v)
        if j > 0 and isinstance(v, int) and isinstance(values[j - 1], int) and values[j - 1] > v:
            ordered = False
    if not ordered:
        errs.append(f.invalid(vpath, GoJSON(values), "must be ordered"))
    return errs


def _go_list(values: list[str]) -> str:
    """%q of a []string."""
    return "[" + " ".join(f.go_quote(v) for v in values) + "]"


def _validate_pod_failure_policy(spec: dict[str, Any], path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    rules = _l(_d(spec.get("podFailurePolicy")).get("rules"))
    rpath = path.child("rules")
    if len(rules) > MAX_POD_FAILURE_POLICY_RULES:
        errs.append(f.too_many(rpath, len(rules), MAX_POD_FAILURE_POLICY_RULES))
    tspec = _d(_d(spec.get("template")).get("spec"))
    containers = {str(_d(c).get("name")) for c in _l(tspec.get("containers")) + _l(tspec.get("initContainers"))}
    for i, rule in enumerate(rules):
        rule = _d(rule)
        p = rpath.index(i)
        action = rule.get("action") or ""
        if not action:
            errs.append(f.required(p.child("action"), "valid values: " + _go_list(POD_FAILURE_POLICY_ACTIONS)))
        elif action == "FailIndex":
            if spec.get("backoffLimitPerIndex") is None:
                errs.append(f.invalid(p.child("action"), action, "requires the backoffLimitPerIndex to be set"))
        elif action not in POD_FAILURE_POLICY_ACTIONS:
            errs.append(f.not_supported(p.child("action"), action, POD_FAILURE_POLICY_ACTIONS))
        on_exit = rule.get("onExitCodes")
        on_conds = _l(rule.get("onPodConditions"))
        if isinstance(on_exit, dict):
            errs += _validate_on_exit_codes(on_exit, p.child("onExitCodes"), containers)
        if on_conds:
            cpath = p.child("onPodConditions")
            if len(on_conds) > MAX_ON_POD_CONDITIONS_PATTERNS:
                errs.append(f.too_many(cpath, len(on_conds), MAX_ON_POD_CONDITIONS_PATTERNS))
            for j, pattern in enumerate(on_conds):
                pattern = _d(pattern)
                pp = cpath.index(j)
                ctype = str(pattern.get("type") or "")
                errs.extend(f.invalid(pp.child("type"), ctype, m) for m in is_qualified_name(ctype))
                st = pattern.get("status") or ""
                if not st:
                    errs.append(f.required(pp.child("status"), "valid values: " + _go_list(CONDITION_STATUSES)))
                elif st not in CONDITION_STATUSES:
                    errs.append(f.not_supported(pp.child("status"), st, CONDITION_STATUSES))
        if on_exit is not None and on_conds:
            errs.append(f.invalid(p, f.OMIT, "specifying both OnExitCodes and OnPodConditions is not supported"))
        if on_exit is None and not on_conds:
            errs.append(f.invalid(p, f.OMIT, "specifying one of OnExitCodes and OnPodConditions is required"))
    return errs


def _validate_job_spec_fields(spec: dict[str, Any], path: Path) -> list[FieldError]:
    """validateJobSpec: everything but the selector."""
    errs: list[FieldError] = []
    for name in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished",
                 "backoffLimitPerIndex", "maxFailedIndexes"):
        if spec.get(name) is not None:
            errs += _nonneg(spec.get(name), path.child(name))
    if spec.get("maxFailedIndexes") is not None and spec.get("backoffLimitPerIndex") is None:
        errs.append(f.required(path.child("backoffLimitPerIndex"), "when maxFailedIndexes is specified"))
    managed = spec.get("managedBy")
    if isinstance(managed, str):
        errs += _domain_prefixed_path(path.child("managedBy"), managed)
        if len(managed) > MAX_MANAGED_BY_LENGTH:
            errs.append(f.FieldError(f.TOO_LONG, str(path.child("managedBy")), managed,
                                     f"may not be more than {MAX_MANAGED_BY_LENGTH} bytes"))
    mode = spec.get("completionMode")
    indexed = mode == "Indexed"
    if mode is not None:
        if mode not in ("NonIndexed", "Indexed"):
            errs.append(f.not_supported(path.child("completionMode"), mode, ["NonIndexed", "Indexed"]))
        if indexed:
            if spec.get("completions") is None:
                errs.append(f.required(path.child("completions"), "when completion mode is Indexed"))
            par = _int(spec.get("parallelism"))
            if par is not None and par > MAX_PARALLELISM_INDEXED:
                errs.append(f.invalid(path.child("parallelism"), par, f"must be less than or equal to "
                                      f"{MAX_PARALLELISM_INDEXED} when completion mode is Indexed"))
            completions, mfi = _int(spec.get("completions")), _int(spec.get("maxFailedIndexes"))
            mpath = path.child("maxFailedIndexes")
            if completions is not None and mfi is not None and mfi > completions:
                errs.append(f.invalid(mpath, mfi, "must be less than or equal to completions"))
            if mfi is not None and mfi > MAX_FAILED_INDEXES:
                errs.append(f.invalid(mpath, mfi, f"must be less than or equal to {MAX_FAILED_INDEXES}"))
            if completions is not None and completions > COMPLETIONS_SOFT_LIMIT and \
                    spec.get("backoffLimitPerIndex") is not None:
                high = f"when completions are above {COMPLETIONS_SOFT_LIMIT} and used with backoff limit per index"
                if mfi is None:
                    errs.append(f.required(mpath, f"must be specified when completions is above "
                                                  f"{COMPLETIONS_SOFT_LIMIT}"))
                if par is not None and par > HIGH_COMPLETIONS_LIMIT:
                    errs.append(f.invalid(path.child("parallelism"), par,
                                          f"must be less than or equal to {HIGH_COMPLETIONS_LIMIT} {high}"))
                if mfi is not None and mfi > HIGH_COMPLETIONS_LIMIT:
                    errs.append(f.invalid(mpath, mfi, f"must be less than or equal to {HIGH_COMPLETIONS_LIMIT} {high}"))
    if not indexed:
        for name in ("backoffLimitPerIndex", "maxFailedIndexes"):
            if spec.get(name) is not None:
                errs.append(f.invalid(path.child(name), spec.get(name), "requires indexed completion mode"))
    # what kubelite's Job controller does not do is refused, never accepted and ignored (scheduling is
    # alpha: upstream drops it while its WorkloadWithJob gate is off)
    if spec.get("scheduling") is not None:
        errs.append(f.forbidden(path.child("scheduling"), "not supported by this cluster's job controller"))
    if spec.get("successPolicy") is not None:
        if not indexed:
            errs.append(f.invalid(path.child("successPolicy"), _go_success_policy(spec["successPolicy"]),
                                  "requires indexed completion mode"))
        else:
            errs += _validate_success_policy(spec, path.child("successPolicy"))
    if spec.get("podFailurePolicy") is not None:
        errs += _validate_pod_failure_policy(spec, path.child("podFailurePolicy"))
    rp = spec.get("podReplacementPolicy")
    if rp is not None:
        if spec.get("podFailurePolicy") is not None:
            if rp != "Failed":
                errs.append(f.not_supported(path.child("podReplacementPolicy"), rp, ["Failed"]))
        elif rp not in ("Failed", "TerminatingOrFailed"):
            errs.append(f.not_supported(path.child("podReplacementPolicy"), rp, ["Failed", "TerminatingOrFailed"]))
    template = spec.get("template")
    tpath = path.child("template")
    errs += validate_pod_template_spec(_d(template), tpath)
    restart = _d(_d(template).get("spec")).get("restartPolicy") or ""
    rpath = tpath.child("spec", "restartPolicy")
    if restart in ("Always", ""):
        errs.append(f.required(rpath, 'valid values: "OnFailure", "Never"'))
    elif restart not in ("OnFailure", "Never"):
        errs.append(f.not_supported(rpath, restart, ["OnFailure", "Never"]))
    elif spec.get("podFailurePolicy") is not None and restart != "Never":
        errs.append(f.invalid(rpath, restart, 'only "Never" is supported when podFailurePolicy is specified'))
    return errs


def validate_indexes_format(text: str, completions: int) -> int:
    """validateIndexesFormat: how many indexes "1,3-5" holds; ValueError with upstream's text."""
    if not text:
        return 0
    last: int | None = None
    total = 0
    for interval in text.split(","):
        limits = interval.split("-")
        if len(limits) > 2:
            raise ValueError(f"the fragment {f.go_quote(interval)} violates the requirement that an index interval "
                             "can have at most two parts separated by '-'")
        bounds: list[int] = []
        for part in limits:
            if not re.fullmatch(r"[+-]?[0-9]+", part):
                raise ValueError(f"cannot convert string to integer for index: {f.go_quote(part)}")
            x = int(part)
            if x >= completions:
                raise ValueError(f"too large index: {f.go_quote(part)}")
            if last is not None and last >= x:
                raise ValueError(f"non-increasing order, previous: {last}, current: {x}")
            bounds.append(x)
            last = x
        total += 1 if len(bounds) == 1 else bounds[1] - bounds[0] + 1
    return total


def _go_success_policy(policy: Any) -> go.GoValue:
    """%#v of a batch.SuccessPolicy (set pointers print as an address in Go)."""
    rules = _d(policy).get("rules")
    if not isinstance(rules, list):
        return go.GoValue("batch.SuccessPolicy{Rules:[]batch.SuccessPolicyRule(nil)}")

    def ptr(v: Any, t: str) -> str:
        return f"(*{t})(nil)" if v is None else f"(*{t})(0xc000000000)"

    items = [f"batch.SuccessPolicyRule{{SucceededIndexes:{ptr(_d(r).get('succeededIndexes'), 'string')}, "
             f"SucceededCount:{ptr(_d(r).get('succeededCount'), 'int32')}}}" for r in rules]
    return go.GoValue("batch.SuccessPolicy{Rules:[]batch.SuccessPolicyRule{" + ", ".join(items) + "}}")


MAX_SUCCESS_POLICY_RULES = 20
MAX_SUCCEEDED_INDEXES_LENGTH = 64 * 1024


def _validate_success_policy(spec: dict[str, Any], path: Path) -> list[FieldError]:
    """validateSuccessPolicy (an Indexed Job's)."""
    errs: list[FieldError] = []
    rules = _l(_d(spec.get("successPolicy")).get("rules"))
    rpath = path.child("rules")
    if not rules:
        errs.append(f.required(rpath, "at least one rules must be specified when the successPolicy is specified"))
    if len(rules) > MAX_SUCCESS_POLICY_RULES:
        errs.append(f.too_many(rpath, len(rules), MAX_SUCCESS_POLICY_RULES))
    completions = _int(spec.get("completions")) or 0
    for i, rule in enumerate(rules):
        rule = _d(rule)
        p = rpath.index(i)
        count, indexes = rule.get("succeededCount"), rule.get("succeededIndexes")
        if count is None and indexes is None:
            errs.append(f.required(p, "at least one of succeededCount or succeededIndexes must be specified"))
        total = 0
        if isinstance(indexes, str):
            ipath = p.child("succeededIndexes")
            if len(indexes) > MAX_SUCCEEDED_INDEXES_LENGTH:
                errs.append(f.FieldError(f.TOO_LONG, str(ipath), indexes,
                                         f"may not be more than {MAX_SUCCEEDED_INDEXES_LENGTH} bytes"))
            try:
                total = validate_indexes_format(indexes, completions)
            except ValueError as exc:
                errs.append(f.invalid(ipath, indexes, f"error parsing succeededIndexes: {exc}"))
        n = _int(count)
        if n is not None:
            cpath = p.child("succeededCount")
            errs += _nonneg(n, cpath)
            if n > completions:
                errs.append(f.invalid(cpath, n, f"must be less than or equal to {completions} (the number of "
                                                "specified completions)"))
            if indexes is not None and n > total:
                errs.append(f.invalid(cpath, n, f"must be less than or equal to {total} (the number of indexes in "
                                                "the specified succeededIndexes field)"))
    return errs


_DOMAIN_PREFIXED = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _domain_prefixed_path(path: Path, value: str) -> list[FieldError]:
    """IsDomainPrefixedPath."""
    if not value:
        return [f.required(path, "")]
    segments = value.split("/", 1)
    if len(segments) != 2 or not segments[0]:
        return [f.invalid(path, value, "must be a domain-prefixed path (such as \"acme.io/foo\")")]
    host = segments[0]
    if len(host) > 253 or not _DOMAIN_PREFIXED.match(host):
        return [f.invalid(path, host, "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                          "characters, '-' or '.', and must start and end with an alphanumeric character (e.g. "
                          "'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]"
                          "([-a-z0-9]*[a-z0-9])?)*')")]
    return []


def validate_job_spec(spec: dict[str, Any], path: Path) -> list[FieldError]:
    """ValidateJobSpec."""
    errs = _validate_job_spec_fields(spec, path)
    sel = spec.get("selector")
    if sel is None:
        errs.append(f.required(path.child("selector"), ""))
    elif isinstance(sel, dict):
        errs += validate_label_selector(sel, path.child("selector"))
    try:
        parsed = label_selector_from_object(sel) if isinstance(sel, dict) else None
    except (SelectorError, ValueError):
        parsed = None
    labels = _d(_d(spec.get("template")).get("metadata")).get("labels")
    if parsed is not None and not parsed.matches(_d(labels)):
        errs.append(f.invalid(path.child("template", "metadata", "labels"), go.GoValue(go.string_map(labels)),
                              "`selector` does not match template `labels`"))
    return errs


def validate_job(job: Obj, prefixed: bool = True) -> list[FieldError]:
    """ValidateJob (object metadata is validated generically)."""
    spec = _d(job.get("spec"))
    errs = validate_generated_selector(job, prefixed)
    errs += validate_job_spec(spec, Path("spec"))
    completions = _int(spec.get("completions"))
    if spec.get("completionMode") == "Indexed" and completions is not None and completions > 0:
        name = str(meta(job).get("name") or "")
        longest = f"{name}-{completions - 1}"
        if is_dns1123_label(longest):
            errs.append(f.invalid(Path("metadata", "name"), name,
                                  f"will not able to create pod with invalid DNS label: {longest}"))
    return errs


def _immutable(new: Any, old: Any, path: Path, shown: Any = None) -> list[FieldError]:
    if new != old:
        return [f.invalid(path, shown if shown is not None else (GoJSON(new) if isinstance(new, dict | list)
                                                                  else new), "field is immutable")]
    return []


_SCHEDULING_DIRECTIVES = ("nodeSelector", "tolerations", "schedulingGates")


def _template_update(new_spec: dict[str, Any], old_spec: dict[str, Any], old_status: dict[str, Any],
                     path: Path) -> list[FieldError]:
    """validatePodTemplateUpdate: immutable, except the scheduling directives (node affinity,
    node selector, tolerations, scheduling gates, the template's labels and annotations) of a
    suspended Job that never started."""
    new_t, old_t = _d(new_spec.get("template")), copy.deepcopy(_d(old_spec.get("template")))
    if old_spec.get("suspend") is True and old_status.get("startTime") is None:
        nts, ots = _d(new_t.get("spec")), old_t.setdefault("spec", {})
        for k in _SCHEDULING_DIRECTIVES:
            ots.pop(k, None)
            if k in nts:
                ots[k] = nts[k]
        na = _d(nts.get("affinity")).get("nodeAffinity")
        oa = dict(_d(ots.get("affinity")))
        oa.pop("nodeAffinity", None)
        if na is not None:
            oa["nodeAffinity"] = na
        if oa or "affinity" in nts:
            ots["affinity"] = oa
        else:
            ots.pop("affinity", None)
        om = old_t.setdefault("metadata", {})
        for k in ("labels", "annotations"):
            om.pop(k, None)
            if k in _d(new_t.get("metadata")):
                om[k] = new_t["metadata"][k]
        if not om:
            old_t.pop("metadata", None)
    return _immutable(new_t, old_t, path.child("template"))


def validate_job_update(new: Obj, old: Obj) -> list[FieldError]:
    """ValidateJob + ValidateJobUpdate."""
    ot = _d(_d(_d(old.get("spec")).get("template")).get("metadata")).get("labels")
    prefixed = isinstance(ot, dict) and JOB_NAME in ot and CONTROLLER_UID in ot
    errs = validate_job(new, prefixed)
    ns, os_ = _d(new.get("spec")), _d(old.get("spec"))
    path = Path("spec")
    # validateCompletions (ElasticIndexedJob): an Indexed Job scales completions with parallelism
    if ns.get("completionMode") == "Indexed":
        if ns.get("completions") != os_.get("completions") and ns.get("completions") is not None and \
                ns.get("completions") != ns.get("parallelism"):
            errs.append(f.invalid(path.child("completions"), ns.get("completions"),
                                  "can only be modified in tandem with spec.parallelism"))
    else:
        errs += _immutable(ns.get("completions"), os_.get("completions"), path.child("completions"))
    if _norm_selector(ns.get("selector")) != _norm_selector(os_.get("selector")):
        errs.append(f.invalid(path.child("selector"), go.label_selector(ns.get("selector")), "field is immutable"))
    errs += _template_update(ns, os_, _d(old.get("status")), path)
    for name in ("completionMode", "podFailurePolicy", "backoffLimitPerIndex", "managedBy", "successPolicy"):
        errs += _immutable(ns.get(name), os_.get(name), path.child(name))
    return errs


def _norm_selector(sel: Any) -> Any:
    if not isinstance(sel, dict):
        return sel
    return {"matchLabels": _d(sel.get("matchLabels")) or None, "matchExpressions": _l(sel.get("matchExpressions")) or None}


def _cond_true(status: dict[str, Any], ctype: str) -> bool:
    return any(_d(c).get("type") == ctype and _d(c).get("status") == "True" for c in _l(status.get("conditions")))


def validate_job_status(new: Obj, old: Obj) -> list[FieldError]:
    """validateJobStatus and ValidateJobStatusUpdate: counters, uncounted pods, and the
    terminal-condition rules every writer of a Job's status keeps."""
    st, ost = _d(new.get("status")), _d(old.get("status"))
    path = Path("status")
    errs: list[FieldError] = []
    for name in ("active", "succeeded", "failed", "ready", "terminating"):
        if st.get(name) is not None:
            errs += _nonneg(st.get(name), path.child(name))
    seen: set[str] = set()
    uncounted = _d(st.get("uncountedTerminatedPods"))
    for which in ("succeeded", "failed"):
        for i, uid in enumerate(_l(uncounted.get(which))):
            p = path.child("uncountedTerminatedPods", which).index(i)
            if not uid:
                errs.append(f.invalid(p, uid, "must not be empty"))
            elif uid in seen:
                errs.append(f.duplicate(p, uid))
            else:
                seen.add(uid)
    complete, failed = _cond_true(st, "Complete"), _cond_true(st, "Failed")
    conds = path.child("conditions")
    if complete and failed:
        errs.append(f.invalid(conds, f.OMIT, "cannot set Complete=True and Failed=true conditions"))
    if _cond_true(st, "SuccessCriteriaMet") and failed:
        errs.append(f.invalid(conds, f.OMIT, "cannot set SuccessCriteriaMet=True and Failed=true conditions"))
    for ctype in ("Failed", "Complete", "FailureTarget"):
        if _cond_true(ost, ctype) and not _cond_true(st, ctype):
            errs.append(f.invalid(conds, f.OMIT, f"cannot disable the terminal {ctype}=True condition"))
    for name in ("failed", "succeeded"):
        if (_int(st.get(name)) or 0) < (_int(ost.get(name)) or 0):
            errs.append(f.invalid(path.child(name), _int(st.get(name)) or 0, f"cannot decrease the {name} counter"))
    return errs


# ----------------------------------------------------------------------------- cronjobs
_TZ_PART = re.compile(r"^[A-Za-z.\-_0-9+]{1,14}$")


def validate_time_zone(tz: Any, path: Path) -> list[FieldError]:
    """validateTimeZone."""
    if tz is None:
        return []
    if not isinstance(tz, str) or not tz:
        return [f.invalid(path, tz, "timeZone must be nil or non-empty string")]
    for part in tz.split("/"):
        if part in (".", "..") or part.startswith("-") or not _TZ_PART.match(part):
            return [f.invalid(path, tz, f"unknown time zone {tz}")]
    errs: list[FieldError] = []
    if tz.lower() == "local":
        errs.append(f.invalid(path, tz, "timeZone must be an explicit time zone as defined in "
                                        "https://www.iana.org/time-zones"))
    try:
        _cron.load_location(tz)
    except _cron.CronError as exc:
        errs.append(f.invalid(path, tz, str(exc)))
    return errs


def validate_schedule(schedule: str, allow_tz: bool, tz: Any, path: Path) -> list[FieldError]:
    """validateScheduleFormat."""
    errs: list[FieldError] = []
    try:
        _cron.parse_standard(schedule)
    except _cron.CronError as exc:
        errs.append(f.invalid(path, schedule, str(exc)))
    if allow_tz and "TZ" in schedule and tz is not None:
        errs.append(f.invalid(path, schedule, "cannot use both timeZone field and TZ or CRON_TZ in schedule"))
    elif not allow_tz and "TZ" in schedule:
        errs.append(f.invalid(path, schedule, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"))
    return errs


def validate_job_template_spec(jt: dict[str, Any], path: Path) -> list[FieldError]:
    """ValidateJobTemplateSpec."""
    spec = _d(jt.get("spec"))
    errs = _validate_job_spec_fields(spec, path.child("spec"))
    if spec.get("selector") is not None:
        errs.append(f.invalid(path.child("spec", "selector"), go.label_selector(spec.get("selector")),
                              "`selector` will be auto-generated"))
    if spec.get("manualSelector") is True:
        errs.append(f.not_supported(path.child("spec", "manualSelector"), True, ["nil", "false"]))
    return errs


def validate_cronjob_spec(spec: dict[str, Any], old_spec: dict[str, Any] | None, path: Path) -> list[FieldError]:
    """validateCronJobSpec."""
    errs: list[FieldError] = []
    schedule = spec.get("schedule") or ""
    if not schedule:
        errs.append(f.required(path.child("schedule"), ""))
    else:
        allow_tz = old_spec is not None and "TZ" in str(old_spec.get("schedule") or "")
        errs += validate_schedule(str(schedule), allow_tz, spec.get("timeZone"), path.child("schedule"))
    if spec.get("startingDeadlineSeconds") is not None:
        errs += _nonneg(spec.get("startingDeadlineSeconds"), path.child("startingDeadlineSeconds"))
    if old_spec is None or old_spec.get("timeZone") != spec.get("timeZone"):
        errs += validate_time_zone(spec.get("timeZone"), path.child("timeZone"))
    policy = spec.get("concurrencyPolicy") or ""
    if not policy:
        errs.append(f.required(path.child("concurrencyPolicy"), ""))
    elif policy not in ("Allow", "Forbid", "Replace"):
        errs.append(f.not_supported(path.child("concurrencyPolicy"), policy, ["Allow", "Forbid", "Replace"]))
    errs += validate_job_template_spec(_d(spec.get("jobTemplate")), path.child("jobTemplate"))
    for name in ("successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        if spec.get(name) is not None:
            errs += _nonneg(spec.get(name), path.child(name))
    return errs


def validate_cronjob_create(obj: Obj) -> list[FieldError]:
    """ValidateCronJobCreate: a Job's name is the CronJob's plus 11 characters."""
    errs = validate_cronjob_spec(_d(obj.get("spec")), None, Path("spec"))
    name = str(meta(obj).get("name") or "")
    if len(name) > 63 - 11:
        errs.append(f.invalid(Path("metadata", "name"), name, "must be no more than 52 characters"))
    return errs


# ----------------------------------------------------------------------------- printing
def job_condition(obj: Obj, ctype: str) -> bool:
    """hasJobCondition (printers): a condition of that type with status True."""
    return _cond_true(_d(obj.get("status")), ctype)


def job_status_text(obj: Obj) -> str:
    if job_condition(obj, "Complete"):
        return "Complete"
    if job_condition(obj, "Failed"):
        return "Failed"
    if meta(obj).get("deletionTimestamp"):
        return "Terminating"
    if job_condition(obj, "Suspended"):
        return "Suspended"
    if job_condition(obj, "FailureTarget"):
        return "FailureTarget"
    return "Running"


def job_completions_text(obj: Obj) -> str:
    spec, status = _d(obj.get("spec")), _d(obj.get("status"))
    succeeded = _int(status.get("succeeded")) or 0
    completions = _int(spec.get("completions"))
    if completions is not None:
        return f"{succeeded}/{completions}"
    parallelism = _int(spec.get("parallelism")) or 0
    return f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"


def job_duration_text(obj: Obj, now: float | None = None) -> str:
    import time

    status = _d(obj.get("status"))
    start = parse_time(status.get("startTime"))
    if start is None:
        return ""
    end = parse_time(status.get("completionTime"))
    return human_duration((end if end is not None else (time.time() if now is None else now)) - start)


def _wide_columns(definition: str) -> tuple[Column, ...]:
    return (
        Column("Containers", "string", "", "Names of each container in the template.", 1),
        Column("Images", "string", "", "Images referenced by each container in the template.", 1),
        Column("Selector", "string", "", doc(definition, "selector"), 1),
    )


def _wide_cells(job_spec: dict[str, Any]) -> list[Any]:
    cs = [c for c in _l(get(job_spec, "template", "spec", "containers")) if isinstance(c, dict)]
    return [",".join(str(c.get("name") or "") for c in cs), ",".join(str(c.get("image") or "") for c in cs),
            format_selector(job_spec.get("selector"))]


# ----------------------------------------------------------------------------- strategies
class JobStrategy(WorkloadStrategy):
    # jobStatusStrategy keeps only spec: the controller may touch labels and annotations too
    status_metadata = ("labels", "annotations")
    default_gc_policy = "Orphan"  # DefaultGarbageCollectionPolicy: OrphanDependents for batch/v1

    def default(self, obj: Obj) -> None:
        default_job(obj)

    def prepare_for_create(self, obj: Obj) -> None:
        generate_selector(obj)
        super().prepare_for_create(obj)

    def validate(self, obj: Obj) -> list[FieldError]:
        return validate_job(obj)

    def warnings_on_create(self, obj: Obj) -> list[str]:
        return _name_warnings(obj)

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return validate_job_update(new, old)

    def validate_status_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return validate_job_status(new, old)

    def field_labels(self, obj: Obj) -> dict[str, str]:
        """JobToSelectableFields."""
        return {"status.successful": str(_int(_d(obj.get("status")).get("succeeded")) or 0)}

    columns = (
        name_column(),
        Column("Status", "string", "", "Status of the job."),
        Column("Completions", "string", "", doc(JOB_DEF + "Status", "succeeded")),
        Column("Duration", "string", "", "Time required to complete the job."),
        age_column(),
        *_wide_columns(JOB_DEF + "Spec"),
    )

    def row(self, obj: Obj) -> list[Any]:
        return [meta(obj).get("name", ""), job_status_text(obj), job_completions_text(obj), job_duration_text(obj),
                age(get(obj, "metadata", "creationTimestamp")), *_wide_cells(_d(obj.get("spec")))]


def _name_warnings(obj: Obj) -> list[str]:
    """The Job and CronJob strategies' WarningsOnCreate for a name that is no DNS label."""
    msgs = is_dns1123_label(str(meta(obj).get("name") or ""))
    if msgs:
        return ["metadata.name: this is used in Pod names and hostnames, which can result in surprising "
                f"behavior; a DNS label is recommended: [{' '.join(msgs)}]"]
    return []


def _bool_text(v: Any) -> str:
    """printBoolPtr."""
    if v is None:
        return "<unset>"
    return "True" if v is True else "False"


class CronJobStrategy(WorkloadStrategy):
    status_metadata = ()
    template_path = ("spec", "jobTemplate", "spec", "template")
    default_gc_policy = "Orphan"  # as the Job's, for batch/v1

    def default(self, obj: Obj) -> None:
        default_cronjob(obj)

    def validate(self, obj: Obj) -> list[FieldError]:
        return validate_cronjob_create(obj)

    def warnings_on_create(self, obj: Obj) -> list[str]:
        return _name_warnings(obj)

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return validate_cronjob_spec(_d(new.get("spec")), _d(old.get("spec")), Path("spec"))

    columns = (
        name_column(),
        Column("Schedule", "string", "", doc(CRONJOB_DEF + "Spec", "schedule")),
        Column("Timezone", "string", "", doc(CRONJOB_DEF + "Spec", "timeZone")),
        Column("Suspend", "boolean", "", doc(CRONJOB_DEF + "Spec", "suspend")),
        Column("Active", "integer", "", doc(CRONJOB_DEF + "Status", "active")),
        Column("Last Schedule", "string", "", doc(CRONJOB_DEF + "Status", "lastScheduleTime")),
        age_column(),
        *_wide_columns(JOB_DEF + "Spec"),
    )

    def row(self, obj: Obj) -> list[Any]:
        spec, status = _d(obj.get("spec")), _d(obj.get("status"))
        last = status.get("lastScheduleTime")
        tz = spec.get("timeZone")
        return [meta(obj).get("name", ""), spec.get("schedule") or "", tz if isinstance(tz, str) else "<none>",
                _bool_text(spec.get("suspend")), len(_l(status.get("active"))), age(last) if last else "<none>",
                age(get(obj, "metadata", "creationTimestamp")), *_wide_cells(_d(get(spec, "jobTemplate", "spec")))]


JOB = Kind(
    group="batch",
    version="v1",
    kind="Job",
    plural="jobs",
    namespaced=True,
    strategy=JobStrategy(),
    categories=("all",),
    subresources=(STATUS,),
    schema_ref=JOB_DEF,
    name_validator=name_is_dns_subdomain,
)

CRONJOB = Kind(
    group="batch",
    version="v1",
    kind="CronJob",
    plural="cronjobs",
    namespaced=True,
    strategy=CronJobStrategy(),
    short_names=("cj",),
    categories=("all",),
    subresources=(STATUS,),
    schema_ref=CRONJOB_DEF,
    name_validator=name_is_dns_subdomain,
)
