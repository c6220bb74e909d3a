"""The arithmetic of Deployments, as pure functions (pkg/controller/deployment/util/deployment_util.go):
surge and unavailability from ints or percentages, revisions and their annotations, which
ReplicaSet is new, proportional scaling, the pod-template hash, conditions and the status.
"""

from __future__ import annotations

import copy
import json
import math
import time
from typing import Any

from kubelite.api.meta import now_rfc3339
from kubelite.kinds._printing import parse_time
from kubelite.kinds.apps import (
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    POD_TEMPLATE_HASH,
    REVISION,
    REVISION_HISTORY,
    percent_value,
)

Obj = dict[str, Any]
MAX_REV_HISTORY_CHARS = 2000
MAX_INT32 = 2**31 - 1
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_SKIP_COPY = {LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS,
              "deprecated.deployment.rollback.to"}

# condition types and reasons (deployment_util.go)
PROGRESSING = "Progressing"
AVAILABLE = "Available"
REPLICA_FAILURE = "ReplicaFailure"
FOUND_NEW_RS = "FoundNewReplicaSet"
NEW_RS_CREATED = "NewReplicaSetCreated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
RS_UPDATED = "ReplicaSetUpdated"
TIMED_OUT = "ProgressDeadlineExceeded"
FAILED_RS_CREATE = "ReplicaSetCreateError"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def spec(obj: Obj) -> dict[str, Any]:
    return _d(obj.get("spec"))


def status(obj: Obj) -> dict[str, Any]:
    return _d(obj.get("status"))


def meta(obj: Obj) -> dict[str, Any]:
    return _d(obj.get("metadata"))


def replicas(obj: Obj | None) -> int:
    return _int(spec(obj).get("replicas")) if obj is not None else 0


# ----------------------------------------------------------------------------- surge / unavailable
def scaled_value(v: Any, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    p = percent_value(v)
    if p is not None:
        x = p * total / 100
        return math.ceil(x) if round_up else math.floor(x)
    if isinstance(v, str):
        raise ValueError(f"invalid value for IntOrString: invalid value {v!r}")
    return _int(v)


def resolve_fenceposts(d: Obj) -> tuple[int, int]:
    """ResolveFenceposts: (surge, unavailable), never both 0."""
    ru = _d(_d(spec(d).get("strategy")).get("rollingUpdate"))
    desired = replicas(d)
    surge = scaled_value(ru.get("maxSurge", 0), desired, True)
    unavailable = scaled_value(ru.get("maxUnavailable", 0), desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def is_rolling(d: Obj) -> bool:
    return _d(spec(d).get("strategy")).get("type") == "RollingUpdate"


def max_surge(d: Obj) -> int:
    if not is_rolling(d):
        return 0
    return resolve_fenceposts(d)[0]


def max_unavailable(d: Obj) -> int:
    if not is_rolling(d) or replicas(d) == 0:
        return 0
    return min(resolve_fenceposts(d)[1], replicas(d))


# ----------------------------------------------------------------------------- replica sets
def total_replicas(rss: list[Obj | None]) -> int:
    """GetReplicaCountForReplicaSets: the sum of spec.replicas."""
    return sum(replicas(rs) for rs in rss if rs is not None)


def actual_replicas(rss: list[Obj | None]) -> int:
    return sum(_int(status(rs).get("replicas")) for rs in rss if rs is not None)


def ready_replicas(rss: list[Obj | None]) -> int:
    return sum(_int(status(rs).get("readyReplicas")) for rs in rss if rs is not None)


def available_replicas(rss: list[Obj | None]) -> int:
    return sum(_int(status(rs).get("availableReplicas")) for rs in rss if rs is not None)


def terminating_replicas(rss: list[Obj | None]) -> int | None:
    """GetTerminatingReplicaCountForReplicaSets: None when a ReplicaSet does not report it."""
    total = 0
    for rs in rss:
        if rs is None:
            continue
        t = status(rs).get("terminatingReplicas")
        if t is None:
            return None
        total += _int(t)
    return total


def active(rss: list[Obj]) -> list[Obj]:
    """FilterActiveReplicaSets: those with replicas wanted."""
    return [rs for rs in rss if replicas(rs) > 0]


def created_key(rs: Obj) -> tuple[float, str]:
    return parse_time(meta(rs).get("creationTimestamp")) or 0.0, str(meta(rs).get("name") or "")


def by_creation(rss: list[Obj]) -> list[Obj]:
    """ReplicaSetsByCreationTimestamp: oldest first, then by name."""
    return sorted(rss, key=created_key)


def revision(rs: Obj) -> int:
    try:
        return int(_d(meta(rs).get("annotations")).get(REVISION) or 0)
    except ValueError:
        return 0


def max_revision(rss: list[Obj]) -> int:
    return max((revision(rs) for rs in rss), default=0)


def template_without_hash(template: Any) -> Any:
    t = copy.deepcopy(_d(template))
    labels = _d(t.get("metadata")).get("labels")
    if isinstance(labels, dict):
        labels.pop(POD_TEMPLATE_HASH, None)
        if not labels:
            del t["metadata"]["labels"]
    if isinstance(t.get("metadata"), dict) and not t["metadata"]:
        del t["metadata"]
    return t


def equal_ignore_hash(a: Any, b: Any) -> bool:
    """EqualIgnoreHash: templates equal but for the pod-template-hash label."""
    return bool(template_without_hash(a) == template_without_hash(b))


def find_new(d: Obj, rss: list[Obj]) -> Obj | None:
    """FindNewReplicaSet: the oldest ReplicaSet whose template is the Deployment's."""
    for rs in by_creation(rss):
        if equal_ignore_hash(spec(rs).get("template"), spec(d).get("template")):
            return rs
    return None


def find_old(d: Obj, rss: list[Obj]) -> list[Obj]:
    """FindOldReplicaSets (all of them, with or without pods)."""
    new = find_new(d, rss)
    new_uid = meta(new).get("uid") if new is not None else None
    return [rs for rs in rss if meta(rs).get("uid") != new_uid]


_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def safe_encode(s: str) -> str:
    """rand.SafeEncodeString: digits to consonants and digits that spell no words."""
    return "".join(_SAFE[b % len(_SAFE)] for b in s.encode())


def _fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def compute_hash(template: Any, collision_count: int | None) -> str:
    """controller.ComputeHash: FNV-32a of the template (here its canonical JSON; Go hashes its
    spew dump), salted with the collision count, safe-encoded."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count is not None:
        data += collision_count.to_bytes(4, "little")
    return safe_encode(str(_fnv32a(data)))


def set_replicas_annotations(rs: Obj, desired: int, max_replicas: int) -> bool:
    """SetReplicasAnnotations."""
    ann = rs.setdefault("metadata", {}).setdefault("annotations", {})
    changed = False
    for k, v in ((DESIRED_REPLICAS, str(desired)), (MAX_REPLICAS, str(max_replicas))):
        if ann.get(k) != v:
            ann[k] = v
            changed = True
    return changed


def _annotated_int(rs: Obj, key: str) -> int | None:
    v = _d(meta(rs).get("annotations")).get(key)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def desired_replicas_annotation(rs: Obj) -> int | None:
    return _annotated_int(rs, DESIRED_REPLICAS)


def copy_annotations_to_rs(d: Obj, rs: Obj) -> bool:
    """copyDeploymentAnnotationsToReplicaSet."""
    ann = rs.setdefault("metadata", {}).setdefault("annotations", {})
    changed = False
    for k, v in _d(meta(d).get("annotations")).items():
        if k in _SKIP_COPY or ann.get(k) == v:
            continue
        ann[k] = v
        changed = True
    return changed


def set_new_rs_annotations(d: Obj, rs: Obj, new_revision: int, exists: bool) -> bool:
    """SetNewReplicaSetAnnotations: the Deployment's annotations, the revision (keeping the
    earlier ones in revision-history when a ReplicaSet comes back), and for a new ReplicaSet the
    replica annotations."""
    changed = copy_annotations_to_rs(d, rs)
    ann = rs["metadata"]["annotations"]
    old = ann.get(REVISION)
    try:
        old_int = int(old) if old else 0
    except ValueError:
        return False
    if old_int < new_revision:
        ann[REVISION] = str(new_revision)
        changed = True
        if old is not None:
            history = ann.get(REVISION_HISTORY, "")
            olds = history.split(",")
            if not olds[0]:
                ann[REVISION_HISTORY] = old
            else:
                total = len(history) + len(old) + 1
                start = 0
                while total > MAX_REV_HISTORY_CHARS and start < len(olds):
                    total -= len(olds[start]) + 1
                    start += 1
                if total <= MAX_REV_HISTORY_CHARS:
                    ann[REVISION_HISTORY] = ",".join([*olds[start:], old])
    if not exists and set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)):
        changed = True
    return changed


def set_deployment_revision(d: Obj, rev: str) -> bool:
    ann = d.setdefault("metadata", {}).setdefault("annotations", {})
    if ann.get(REVISION) != rev:
        ann[REVISION] = rev
        return True
    return False


def new_rs_new_replicas(d: Obj, all_rss: list[Obj | None], new_rs: Obj) -> int:
    """NewRSNewReplicas: how far the new ReplicaSet may grow now."""
    if is_rolling(d):
        surge = scaled_value(_d(_d(spec(d).get("strategy")).get("rollingUpdate")).get("maxSurge", 0), replicas(d),
                             True)
        current = total_replicas(all_rss)
        max_total = replicas(d) + surge
        if current >= max_total:
            return replicas(new_rs)
        up = min(max_total - current, replicas(d) - replicas(new_rs))
        return replicas(new_rs) + up
    return replicas(d)


def is_saturated(d: Obj, rs: Obj | None) -> bool:
    """IsSaturated: the new ReplicaSet has all the Deployment's replicas, all available."""
    if rs is None:
        return False
    desired = desired_replicas_annotation(rs)
    if desired is None:
        return False
    return replicas(rs) == replicas(d) and desired == replicas(d) and \
        _int(status(rs).get("availableReplicas")) == replicas(d)


def find_active_or_latest(new_rs: Obj | None, old_rss: list[Obj]) -> Obj | None:
    """FindActiveOrLatest: the only ReplicaSet with replicas, or the newest one when none has."""
    if new_rs is None and not old_rss:
        return None
    everything = by_creation([*old_rss, *([new_rs] if new_rs is not None else [])])[::-1]
    act = active(everything)
    if len(act) == 0:
        if new_rs is not None:
            return new_rs
        return everything[0]
    if len(act) == 1:
        return act[0]
    return None


def rs_proportion(rs: Obj, d: Obj, to_add: int, added: int) -> int:
    """GetReplicaSetProportion."""
    if replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = _rs_fraction(rs, d)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def _rs_fraction(rs: Obj, d: Obj) -> int:
    if replicas(d) == 0:
        return -replicas(rs)
    deployment_max = replicas(d) + max_surge(d)
    annotated = _annotated_int(rs, MAX_REPLICAS)
    if annotated is None or annotated == 0:
        annotated = _int(status(d).get("replicas"))
    if annotated == 0:
        return 0
    size = replicas(rs) * deployment_max / annotated
    return _round_half_away(size) - replicas(rs)


def _round_half_away(x: float) -> int:
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def by_size(rss: list[Obj], newer_first: bool) -> list[Obj]:
    """ReplicaSetsBySizeNewer (newer_first) / ReplicaSetsBySizeOlder: larger first, ties by age."""
    def key(rs: Obj) -> tuple[int, float, str]:
        t, name = created_key(rs)
        return (-replicas(rs), -t if newer_first else t, name)

    return sorted(rss, key=key)


# ----------------------------------------------------------------------------- conditions, status
def has_progress_deadline(d: Obj) -> bool:
    pds = spec(d).get("progressDeadlineSeconds")
    return isinstance(pds, int) and not isinstance(pds, bool) and pds != MAX_INT32


def get_condition(st: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for c in st.get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == ctype:
            return c
    return None


def new_condition(ctype: str, cstatus: str, reason: str, message: str, now: str | None = None) -> dict[str, Any]:
    t = now or now_rfc3339()
    return {"type": ctype, "status": cstatus, "lastUpdateTime": t, "lastTransitionTime": t, "reason": reason,
            "message": message}


def set_condition(st: dict[str, Any], cond: dict[str, Any]) -> None:
    """SetDeploymentCondition: a condition with the same status and reason is left as it is."""
    cur = get_condition(st, cond["type"])
    if cur is not None and cur.get("status") == cond["status"] and cur.get("reason") == cond["reason"]:
        return
    if cur is not None and cur.get("status") == cond["status"]:
        cond = {**cond, "lastTransitionTime": cur.get("lastTransitionTime")}
    st["conditions"] = [c for c in st.get("conditions") or [] if _d(c).get("type") != cond["type"]] + [cond]


def remove_condition(st: dict[str, Any], ctype: str) -> None:
    conds = [c for c in st.get("conditions") or [] if _d(c).get("type") != ctype]
    if conds:
        st["conditions"] = conds
    else:
        st.pop("conditions", None)


def calculate_status(all_rss: list[Obj | None], new_rs: Obj | None, d: Obj) -> dict[str, Any]:
    """calculateStatus (sync.go)."""
    available = available_replicas(all_rss)
    total = total_replicas(all_rss)
    st: dict[str, Any] = {
        "observedGeneration": _int(meta(d).get("generation")),
        "replicas": actual_replicas(all_rss),
        "updatedReplicas": actual_replicas([new_rs]),
        "readyReplicas": ready_replicas(all_rss),
        "availableReplicas": available,
        "unavailableReplicas": max(total - available, 0),
    }
    term = terminating_replicas(all_rss)
    if term is not None:
        st["terminatingReplicas"] = term
    if status(d).get("collisionCount") is not None:
        st["collisionCount"] = status(d)["collisionCount"]
    conds = [copy.deepcopy(c) for c in status(d).get("conditions") or [] if isinstance(c, dict)]
    if conds:
        st["conditions"] = conds
    if available >= replicas(d) - max_unavailable(d):
        set_condition(st, new_condition(AVAILABLE, "True", MIN_AVAILABLE, "Deployment has minimum availability."))
    else:
        set_condition(st, new_condition(AVAILABLE, "False", MIN_UNAVAILABLE,
                                        "Deployment does not have minimum availability."))
    return omit_empty(st)


def omit_empty(st: dict[str, Any]) -> dict[str, Any]:
    """DeploymentStatus's counters are omitempty."""
    return {k: v for k, v in st.items() if not (isinstance(v, int) and v == 0 and k != "terminatingReplicas")}


def deployment_complete(d: Obj, st: dict[str, Any]) -> bool:
    n = replicas(d)
    return _int(st.get("updatedReplicas")) == n and _int(st.get("replicas")) == n and \
        _int(st.get("availableReplicas")) == n and _int(st.get("observedGeneration")) >= _int(meta(d).get("generation"))


def deployment_progressing(d: Obj, st: dict[str, Any]) -> bool:
    old = status(d)
    old_old = _int(old.get("replicas")) - _int(old.get("updatedReplicas"))
    new_old = _int(st.get("replicas")) - _int(st.get("updatedReplicas"))
    return (_int(st.get("updatedReplicas")) > _int(old.get("updatedReplicas")) or new_old < old_old
            or _int(st.get("readyReplicas")) > _int(old.get("readyReplicas"))
            or _int(st.get("availableReplicas")) > _int(old.get("availableReplicas")))


def deployment_timed_out(d: Obj, st: dict[str, Any], now: float | None = None) -> bool:
    if not has_progress_deadline(d):
        return False
    cond = get_condition(st, PROGRESSING)
    if cond is None or cond.get("reason") == NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == TIMED_OUT:
        return True
    since = parse_time(cond.get("lastUpdateTime"))
    if since is None:
        return False
    return since + _int(spec(d).get("progressDeadlineSeconds")) < (time.time() if now is None else now)

