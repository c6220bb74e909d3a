"""The scheduling queue (pkg/scheduler/backend/queue/scheduling_queue.go's PriorityQueue):
an active queue ordered by priority then arrival, and the pods that failed, each waiting for
its back-off (1 s doubling to 10 s per attempt) and for a cluster event that may help
(``move_all`` / ``pod_placed``), or at the latest ``max_unschedulable`` seconds (upstream's
podMaxInUnschedulablePodsDuration, 5 minutes) before it is tried again.

    q = SchedulingQueue()
    q.push("uid-1", priority=0)
    uid = q.pop()                      # "uid-1"
    q.failed("uid-1", now, moved=False)    # unschedulable: waits for an event (or 5 min)
    q.move_all()                       # a node was added: due once its back-off passed
    q.flush(now + 1, wants)            # back in the active queue
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Container
from dataclasses import dataclass

INITIAL_BACKOFF = 1.0  # podInitialBackoffSeconds
MAX_BACKOFF = 10.0  # podMaxBackoffSeconds
MAX_UNSCHEDULABLE_SECONDS = 300.0  # podMaxInUnschedulablePodsDuration


@dataclass
class Waiting:
    attempts: int
    last_attempt: float
    retry_at: float  # when it goes back to the active queue without any cluster event
    moved: bool = False  # a cluster event arrived: retry once the backoff has passed
    on_pods: bool = False  # other pods' placement may help (pod affinity, topology spreading)

    @property
    def backoff_until(self) -> float:
        return self.last_attempt + backoff(self.attempts)

    def due(self) -> float:
        return min(self.retry_at, self.backoff_until) if self.moved else self.retry_at


def backoff(attempts: int) -> float:
    """calculateBackoffDuration: 1 s for the first failure, doubling, at most 10 s."""
    return min(INITIAL_BACKOFF * 2 ** max(attempts - 1, 0), MAX_BACKOFF)


class SchedulingQueue:
    def __init__(self, max_unschedulable: float = MAX_UNSCHEDULABLE_SECONDS) -> None:
        self.max_unschedulable = max_unschedulable
        self._heap: list[tuple[int, int, str]] = []  # (-priority, seq, uid)
        self._active: dict[str, int] = {}  # uid -> seq of its live heap entry
        self.waiting: dict[str, Waiting] = {}
        self.attempts: dict[str, int] = {}
        self._seq = itertools.count()
        # flush walks the waiting pods only when one may be due: after a change, or at the
        # earliest due time it computed (a burst of thousands of unschedulable pods is not
        # walked once per scheduling cycle)
        self._dirty = False
        self._next_due: float | None = None

    def __len__(self) -> int:
        return len(self._active)

    def is_active(self, uid: str) -> bool:
        return uid in self._active

    def push(self, uid: str, priority: int = 0) -> None:
        """Add (or re-add) a pod to the active queue."""
        seq = next(self._seq)
        self._active[uid] = seq
        heapq.heappush(self._heap, (-priority, seq, uid))

    def pop(self) -> str | None:
        """The highest-priority, earliest pod of the active queue (None: empty)."""
        while self._heap:
            _, seq, uid = heapq.heappop(self._heap)
            if self._active.get(uid) == seq:
                del self._active[uid]
                return uid
        return None

    def forget(self, uid: str) -> None:
        """The pod no longer wants scheduling (bound, deleted, gated)."""
        self._active.pop(uid, None)
        self.waiting.pop(uid, None)

    def done(self, uid: str) -> None:
        """The pod was scheduled or is gone: its attempts start over."""
        self.forget(uid)
        self.attempts.pop(uid, None)

    def failed(self, uid: str, now: float, *, moved: bool = False, on_pods: bool = False) -> Waiting:
        """A failed attempt: ``moved`` (an error, not a verdict about the cluster) waits only
        for the back-off; otherwise for a cluster event too."""
        attempts = self.attempts.get(uid, 0) + 1
        self.attempts[uid] = attempts
        self._active.pop(uid, None)
        w = self.waiting[uid] = Waiting(attempts, now, now + self.max_unschedulable, moved=moved, on_pods=on_pods)
        self._dirty = True
        return w

    def move_all(self) -> bool:
        """MoveAllToActiveOrBackoffQueue: a cluster event that may help every waiting pod."""
        for w in self.waiting.values():
            w.moved = True
        self._dirty = True
        return bool(self.waiting)

    def move(self, uid: str) -> bool:
        """An event that may help one waiting pod (its own update)."""
        w = self.waiting.get(uid)
        if w is None:
            return False
        w.moved = True
        self._dirty = True
        return True

    def activate(self, uid: str, now: float) -> None:
        """Activate: the waiting pod is due now (after its back-off)."""
        w = self.waiting.get(uid)
        if w is not None:
            w.moved, w.retry_at = True, now
            self._dirty = True

    def pod_placed(self) -> bool:
        """A pod was placed on a node: only pods waiting on other pods' placement may fit now."""
        moved = False
        for w in self.waiting.values():
            if w.on_pods and not w.moved:
                w.moved = moved = True
        self._dirty = self._dirty or moved
        return moved

    def flush(self, now: float, requeue: Callable[[str], int | None],
              hold: Container[str] = ()) -> float | None:
        """Move the waiting pods that are due back to the active queue; ``requeue(uid)`` gives
        the pod's priority, or None when it no longer wants scheduling. Pods in ``hold`` stay
        (PreEnqueue). Returns when the next waiting pod is due (None: none waits)."""
        if not self._dirty and (self._next_due is None or now < self._next_due):
            return self._next_due
        self._dirty = False
        nxt: float | None = None
        for uid, w in list(self.waiting.items()):
            if uid in hold:
                self._dirty = True  # held pods are looked at again at the next flush
                continue
            due = w.due()
            if due <= now:
                del self.waiting[uid]
                prio = requeue(uid)
                if prio is not None:
                    self.push(uid, prio)
            elif nxt is None or due < nxt:
                nxt = due
        self._next_due = nxt
        return nxt


__all__ = ["INITIAL_BACKOFF", "MAX_BACKOFF", "MAX_UNSCHEDULABLE_SECONDS", "SchedulingQueue", "Waiting", "backoff"]
