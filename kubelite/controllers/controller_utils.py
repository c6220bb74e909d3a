"""What the workload controllers share (upstream pkg/controller/controller_utils.go and
controller_ref_manager.go): expectations, controller references and their adoption and
release, pod readiness and availability, the ranking that picks which pods go first, and
slow-start batches. Pure functions except :class:`RefManager`, which patches through a store.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cmp_to_key
from typing import Any

from kubelite.api import errors
from kubelite.api.selectors import LabelSelector
from kubelite.apiserver.registry import ResourceStore, WriteOptions
from kubelite.kinds._printing import parse_time
from kubelite.kinds.podutil import is_terminal

Obj = dict[str, Any]

CONFLICT_RETRY = 0.1  # seconds before a sync whose write lost a race runs again
_log = logging.getLogger("kubelite.controllers")


async def retry_on_conflict(sync: Callable[[], Awaitable[bool]], what: str, key: str,
                            enqueue_after: Callable[[str, float], None]) -> bool:
    """Run a controller's sync; a write that lost a race (409 Conflict) means the cache was
    behind: sync ``key`` again shortly, once the informer has caught up, as a rate-limited
    requeue does. Other errors go to the caller (the work queue's back-off)."""
    try:
        return await sync()
    except errors.StatusError as exc:
        if exc.code != 409:
            raise
        _log.debug("%s %s: %s; syncing again", what, key, exc.message)
        enqueue_after(key, CONFLICT_RETRY)
        return False


EXPECTATIONS_TIMEOUT = 300.0  # ExpectationsTimeout: 5 minutes
SLOW_START_INITIAL_BATCH = 1  # SlowStartInitialBatchSize
CONTROLLER_UID_INDEX = "apps/controller-uid"


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def meta(obj: Obj) -> dict[str, Any]:
    return _d(obj.get("metadata"))


def key_of(obj: Obj) -> str:
    m = meta(obj)
    return f"{m.get('namespace', '')}/{m.get('name', '')}"


def split_key(key: str) -> tuple[str, str]:
    ns, _, name = key.partition("/")
    return ns, name


# ----------------------------------------------------------------------------- expectations
@dataclass
class _Expectation:
    add: int
    delete: int
    at: float
    delete_keys: set[str] = field(default_factory=set)


class Expectations:
    """UIDTrackingControllerExpectations: how many creations and which deletions a controller
    still waits to see in its informer before it trusts the cache enough to act again."""

    def __init__(self, timeout: float = EXPECTATIONS_TIMEOUT, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self.clock = clock
        self._by_key: dict[str, _Expectation] = {}

    def expect_creations(self, key: str, n: int) -> None:
        self._by_key[key] = _Expectation(n, 0, self.clock())

    def expect_deletions(self, key: str, pod_keys: list[str]) -> None:
        self._by_key[key] = _Expectation(0, len(pod_keys), self.clock(), set(pod_keys))

    def expect(self, key: str, adds: int, pod_keys: list[str]) -> None:
        """SetExpectations with both creations and deletions (the DaemonSet controller's)."""
        self._by_key[key] = _Expectation(adds, len(pod_keys), self.clock(), set(pod_keys))

    def creation_observed(self, key: str) -> None:
        e = self._by_key.get(key)
        if e is not None:
            e.add -= 1

    def deletion_observed(self, key: str, pod_key: str) -> None:
        e = self._by_key.get(key)
        if e is not None and pod_key in e.delete_keys:
            e.delete_keys.discard(pod_key)
            e.delete -= 1

    def satisfied(self, key: str) -> bool:
        e = self._by_key.get(key)
        if e is None:
            return True  # never set (a new controller, or one that just started)
        if e.add <= 0 and e.delete <= 0:
            return True
        return self.clock() - e.at > self.timeout  # stale: sync anyway

    def delete(self, key: str) -> None:
        self._by_key.pop(key, None)


# ----------------------------------------------------------------------------- controller refs
def controller_ref(obj: Obj) -> dict[str, Any] | None:
    """metav1.GetControllerOf."""
    for r in _l(meta(obj).get("ownerReferences")):
        if isinstance(r, dict) and r.get("controller") is True:
            return r
    return None


def new_controller_ref(owner: Obj, api_version: str, kind: str) -> dict[str, Any]:
    """metav1.NewControllerRef."""
    m = meta(owner)
    return {"apiVersion": api_version, "kind": kind, "name": m.get("name", ""), "uid": m.get("uid", ""),
            "controller": True, "blockOwnerDeletion": True}


def pod_from_template(template: Any, owner: Obj, api_version: str, kind: str) -> Obj:
    """GetPodFromTemplate: the template's labels, annotations, finalizers and spec, a name
    generated from the owner's, and the owner as controller."""
    tmeta = _d(_d(template).get("metadata"))
    m = meta(owner)
    pod_meta: Obj = {"generateName": f"{m.get('name', '')}-", "namespace": m.get("namespace", ""),
                     "ownerReferences": [new_controller_ref(owner, api_version, kind)]}
    for k in ("labels", "annotations", "finalizers"):
        if tmeta.get(k):
            pod_meta[k] = copy.deepcopy(tmeta[k])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta,
            "spec": copy.deepcopy(_d(_d(template).get("spec")))}


def controller_uid_index(obj: Obj) -> list[str]:
    ref = controller_ref(obj)
    return [str(ref.get("uid"))] if ref and ref.get("uid") else []


class RefManager:
    """BaseControllerRefManager.ClaimObject for one controller over one store of dependents:
    keep what it owns and still selects, adopt matching orphans, release what stopped matching."""

    def __init__(self, store: ResourceStore, owner: Obj, owner_api_version: str, owner_kind: str,
                 selector: LabelSelector, can_adopt: Callable[[], Awaitable[None]], field_manager: str,
                 finalizers: tuple[str, ...] = ()) -> None:
        self.finalizers = finalizers  # added on adoption and removed on release (a Job's tracking finalizer)
        self.store = store
        self.owner = owner
        self.ref = new_controller_ref(owner, owner_api_version, owner_kind)
        self.selector = selector
        self.can_adopt = can_adopt
        self.opts = WriteOptions(field_manager=field_manager)
        self._adoptable: bool | None = None

    async def claim(self, objs: list[Obj]) -> list[Obj]:
        out = []
        for obj in objs:
            claimed = await self._claim_one(obj)
            if claimed is not None:
                out.append(claimed)
        return out

    async def _claim_one(self, obj: Obj) -> Obj | None:
        owner_uid = meta(self.owner).get("uid")
        owner_deleting = bool(meta(self.owner).get("deletionTimestamp"))
        ref = controller_ref(obj)
        matches = self.selector.matches(_d(meta(obj).get("labels")))
        if ref is not None:
            if ref.get("uid") != owner_uid:
                return None
            if matches:
                return obj
            if not owner_deleting:
                await self._patch_refs(obj, adopt=False)
            return None
        if owner_deleting or not matches or meta(obj).get("deletionTimestamp"):
            return None
        if meta(obj).get("namespace") != meta(self.owner).get("namespace"):
            return None
        if self._adoptable is None:
            try:
                await self.can_adopt()
                self._adoptable = True
            except errors.StatusError:
                self._adoptable = False
        if not self._adoptable:
            return None
        return await self._patch_refs(obj, adopt=True)

    async def _patch_refs(self, obj: Obj, adopt: bool) -> Obj | None:
        m = meta(obj)
        uid = m.get("uid")
        owner_uid = self.ref["uid"]

        def change(cur: Obj) -> Obj:
            cm = cur.setdefault("metadata", {})
            if cm.get("uid") != uid:  # the patch carries the dependent's uid as precondition
                raise errors.conflict(self.store.kind.plural, cm.get("name", ""),
                                      f"Precondition failed: UID in precondition: {uid}, UID in object meta: "
                                      f"{cm.get('uid', '')}", self.store.kind.group)
            refs = [r for r in _l(cm.get("ownerReferences")) if _d(r).get("uid") != owner_uid]
            if adopt:
                refs.append(dict(self.ref))
            if refs:
                cm["ownerReferences"] = refs
            else:
                cm.pop("ownerReferences", None)
            if self.finalizers:
                fins = [f for f in _l(cm.get("finalizers")) if f not in self.finalizers]
                if adopt:
                    fins += list(self.finalizers)
                if fins:
                    cm["finalizers"] = fins
                else:
                    cm.pop("finalizers", None)
            return cur

        try:
            out, _ = await self.store.patch(m.get("namespace", ""), m.get("name", ""), change, self.opts)
        except errors.StatusError as exc:
            if exc.code in (404, 409):
                return None  # gone or replaced: nothing to claim
            raise
        return out if adopt else None


# ----------------------------------------------------------------------------- pods
def ready_condition(pod: Obj) -> dict[str, Any] | None:
    for c in _l(_d(pod.get("status")).get("conditions")):
        if isinstance(c, dict) and c.get("type") == "Ready":
            return c
    return None


def is_pod_ready(pod: Obj) -> bool:
    c = ready_condition(pod)
    return c is not None and c.get("status") == "True"


def is_pod_available(pod: Obj, min_ready_seconds: int, now: float) -> bool:
    """podutil.IsPodAvailable: ready for at least minReadySeconds."""
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    c = ready_condition(pod) or {}
    t = parse_time(c.get("lastTransitionTime"))
    return t is not None and t + min_ready_seconds <= now


def is_pod_active(pod: Obj) -> bool:
    """IsPodActive: not finished and not being deleted."""
    return not is_terminal(pod) and not meta(pod).get("deletionTimestamp")


def is_pod_terminating(pod: Obj) -> bool:
    """FilterTerminatingPods: being deleted, not yet finished."""
    return not is_terminal(pod) and bool(meta(pod).get("deletionTimestamp"))


_PHASE_ORDINAL = {"Pending": 0, "Unknown": 1, "Running": 2}


def _deletion_cost(pod: Obj) -> int:
    raw = _d(meta(pod).get("annotations")).get("controller.kubernetes.io/pod-deletion-cost")
    try:
        return int(raw) if raw is not None else 0
    except ValueError:
        return 0


def _max_restarts(pod: Obj) -> int:
    status = _d(pod.get("status"))
    counts = [int(_d(c).get("restartCount") or 0) for c in _l(status.get("containerStatuses"))]
    return max(counts, default=0)


def _log_rank(t: float, now: float) -> int:
    d = (now - t) * 1e9  # Go compares durations in nanoseconds
    return int(math.log2(d)) if d > 0 else -1


def _time_less(ti: float | None, tj: float | None, uid_i: str, uid_j: str, now: float) -> bool | None:
    """Newer first, in logarithmic buckets (LogarithmicScaleDown); None when equal."""
    if ti == tj:
        return None
    if ti is None or tj is None:  # afterOrZero: a zero time is "after" everything
        return ti is None
    diff = _log_rank(ti, now) - _log_rank(tj, now)
    if diff == 0:
        return uid_i < uid_j
    return diff < 0


def rank_less(pi: Obj, pj: Obj, rank_i: int, rank_j: int, now: float) -> bool:
    """ActivePodsWithRanks.Less: whether ``pi`` should be deleted before ``pj``."""
    ni, nj = _d(pi.get("spec")).get("nodeName") or "", _d(pj.get("spec")).get("nodeName") or ""
    if ni != nj and (not ni or not nj):  # 1. unassigned first
        return not ni
    phi = _PHASE_ORDINAL.get(_d(pi.get("status")).get("phase") or "", 0)
    phj = _PHASE_ORDINAL.get(_d(pj.get("status")).get("phase") or "", 0)
    if phi != phj:  # 2. Pending < Unknown < Running
        return phi < phj
    ri, rj = is_pod_ready(pi), is_pod_ready(pj)
    if ri != rj:  # 3. not ready first
        return not ri
    ci, cj = _deletion_cost(pi), _deletion_cost(pj)
    if ci != cj:  # 4. lower pod-deletion-cost first
        return ci < cj
    if rank_i != rank_j:  # 5. doubled up on a node first
        return rank_i > rank_j
    ui, uj = str(meta(pi).get("uid") or ""), str(meta(pj).get("uid") or "")
    if ri and rj:  # 6. ready for a shorter time first
        less = _time_less(parse_time((ready_condition(pi) or {}).get("lastTransitionTime")),
                          parse_time((ready_condition(pj) or {}).get("lastTransitionTime")), ui, uj, now)
        if less is not None:
            return less
    mi, mj = _max_restarts(pi), _max_restarts(pj)
    if mi != mj:  # 7. more restarts first
        return mi > mj
    less = _time_less(parse_time(meta(pi).get("creationTimestamp")), parse_time(meta(pj).get("creationTimestamp")),
                      ui, uj, now)  # 8. newer first
    return bool(less)


def pods_to_delete(pods: list[Obj], related: list[Obj], n: int, now: float | None = None) -> list[Obj]:
    """getPodsToDelete: the ``n`` pods to go, ranked by ActivePodsWithRanks where the rank of a
    pod is how many active related pods share its node."""
    if n >= len(pods):
        return list(pods)
    on_node: dict[str, int] = {}
    for p in related:
        if is_pod_active(p):
            node = _d(p.get("spec")).get("nodeName") or ""
            on_node[node] = on_node.get(node, 0) + 1
    ranks = {id(p): on_node.get(_d(p.get("spec")).get("nodeName") or "", 0) for p in pods}
    t = time.time() if now is None else now

    def cmp(a: Obj, b: Obj) -> int:
        if rank_less(a, b, ranks[id(a)], ranks[id(b)], t):
            return -1
        if rank_less(b, a, ranks[id(b)], ranks[id(a)], t):
            return 1
        return 0

    return sorted(pods, key=cmp_to_key(cmp))[:n]


async def slow_start_batch(count: int, initial: int, fn: Callable[[], Awaitable[None]]) -> tuple[int, BaseException | None]:
    """slowStartBatch: call ``fn`` ``count`` times in batches of 1, 2, 4, … run concurrently,
    stopping after the first batch with a failure. Returns (successes, first error)."""
    remaining, successes = count, 0
    batch = min(remaining, initial)
    while batch > 0:
        results = await asyncio.gather(*(fn() for _ in range(batch)), return_exceptions=True)
        errs = [r for r in results if isinstance(r, BaseException)]
        successes += batch - len(errs)
        if errs:
            return successes, errs[0]
        remaining -= batch
        batch = min(2 * batch, remaining)
    return successes, None


__all__ = ["CONTROLLER_UID_INDEX", "Expectations", "RefManager", "controller_ref", "controller_uid_index",
           "is_pod_active", "is_pod_available", "is_pod_ready", "is_pod_terminating", "key_of", "new_controller_ref",
           "pod_from_template", "pods_to_delete", "rank_less", "slow_start_batch", "split_key"]
