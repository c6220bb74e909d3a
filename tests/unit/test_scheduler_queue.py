"""The scheduler's queue with back-off and its incrementally kept node-info snapshot."""

from __future__ import annotations

from typing import Any

from kubelite.scheduler import Scheduler
from kubelite.scheduler.cache import Snapshot, num_feasible_nodes_to_find
from kubelite.scheduler.plugins import PodInfo
from kubelite.scheduler.queue import SchedulingQueue, backoff


def _prio(p: int) -> Any:
    return lambda uid: p


def test_active_queue_is_priority_then_arrival_order():
    q = SchedulingQueue()
    q.push("a", 0)
    q.push("b", 10)
    q.push("c", 0)
    q.push("a", 0)  # re-added: its old place is gone
    assert [q.pop(), q.pop(), q.pop(), q.pop()] == ["b", "c", "a", None]


def test_backoff_doubles_to_ten_seconds():
    assert [backoff(n) for n in (1, 2, 3, 4, 5, 6)] == [1, 2, 4, 8, 10, 10]


def test_unschedulable_pod_waits_for_an_event_then_its_backoff():
    q = SchedulingQueue(max_unschedulable=300)
    q.push("p")
    assert q.pop() == "p"
    q.failed("p", now=100.0)
    assert q.flush(150.0, _prio(0)) == 400.0  # nothing happened: only the 5-minute flush
    assert q.pop() is None
    assert q.move_all()  # a node was added
    assert q.flush(100.5, _prio(0)) == 101.0  # but the 1 s back-off has not passed
    assert q.flush(101.0, _prio(0)) is None
    assert q.pop() == "p"
    q.failed("p", now=200.0, moved=True)  # an error: back-off only, now 2 s
    assert q.flush(201.0, _prio(0)) == 202.0
    q.flush(202.0, _prio(0))
    assert q.pop() == "p"


def test_unschedulable_pods_are_flushed_after_the_maximum_wait():
    q = SchedulingQueue(max_unschedulable=300)
    q.failed("p", now=0.0)
    assert q.flush(299.0, _prio(0)) == 300.0
    q.flush(300.0, _prio(0))
    assert q.pop() == "p"


def test_only_pods_waiting_on_pods_move_when_a_pod_is_placed():
    q = SchedulingQueue()
    q.failed("big", now=0.0)
    q.failed("affine", now=0.0, on_pods=True)
    assert q.pod_placed()
    assert not q.waiting["big"].moved and q.waiting["affine"].moved
    q.flush(5.0, _prio(0))
    assert q.pop() == "affine" and q.pop() is None


def test_held_and_unwanted_pods_are_not_requeued():
    q = SchedulingQueue()
    q.failed("held", now=0.0, moved=True)
    q.failed("gone", now=0.0, moved=True)
    q.flush(5.0, lambda uid: None if uid == "gone" else 0, hold={"held"})
    assert q.pop() is None and "held" in q.waiting and "gone" not in q.waiting
    q.flush(5.0, _prio(0))
    assert q.pop() == "held"


def test_attempts_count_until_done():
    q = SchedulingQueue()
    for i in range(3):
        q.failed("p", now=float(i))
    assert q.waiting["p"].attempts == 3
    q.done("p")
    assert "p" not in q.attempts and "p" not in q.waiting


def test_activate_makes_a_waiting_pod_due():
    q = SchedulingQueue()
    q.failed("p", now=0.0)
    assert q.flush(0.5, _prio(0)) == 300.0
    q.activate("p", 0.5)  # its preemption failed: try again now
    assert q.flush(0.5, _prio(0)) is None
    assert q.pop() == "p"


# ------------------------------------------------------------------------------------ snapshot
def _node(name: str, cpu: str = "4") -> dict:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}, "spec": {},
            "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def _pod(uid: str, node: str = "", anti: bool = False, cpu: str = "1") -> dict:
    spec: dict = {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu}}}]}
    if node:
        spec["nodeName"] = node
    if anti:
        spec["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "a"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    return {"metadata": {"name": uid, "namespace": "ns", "uid": uid, "labels": {"app": "a"}}, "spec": spec,
            "status": {"phase": "Pending"}}


def test_snapshot_tracks_live_nodes_in_order():
    s = Snapshot()
    for n in ("n1", "n2", "n3"):
        s.set_node(n, _node(n))
    first = s.node_list()
    assert [ni.name for ni in first] == ["n1", "n2", "n3"]
    s.set_node("n2", _node("n2", cpu="8"))  # an update: the list is not rebuilt
    assert s.node_list() is first
    s.set_node("n2", None)
    assert [ni.name for ni in s.node_list()] == ["n1", "n3"] and "n2" not in s.live
    # a pod bound to a node not seen yet is counted on a placeholder, not a live node
    info = PodInfo.of(_pod("u1", "n9"))
    info.uid = "u1"
    s.add_pod("n9", info)
    assert "n9" in s.infos and "n9" not in s.live
    s.set_node("n9", _node("n9"))
    assert s.live["n9"].requested["cpu"] == 1000


def test_snapshot_keeps_the_affinity_lists():
    s = Snapshot()
    s.set_node("n1", _node("n1"))
    s.set_node("n2", _node("n2"))
    info = PodInfo.of(_pod("u1", "n1", anti=True))
    info.uid = "u1"
    s.add_pod("n1", info)
    assert [ni.name for ni in s.with_required_anti()] == ["n1"]
    assert [ni.name for ni in s.with_affinity()] == ["n1"]
    s.remove_pod("n1", "u1")
    assert s.with_required_anti() == [] and s.with_affinity() == []


def test_num_feasible_nodes_to_find_is_upstreams():
    assert num_feasible_nodes_to_find(50) == 50
    assert num_feasible_nodes_to_find(100) == 100  # 50%, but at least 100
    assert num_feasible_nodes_to_find(1000) == 420
    assert num_feasible_nodes_to_find(5000) == 500
    assert num_feasible_nodes_to_find(10000) == 500  # 5% at least
    assert num_feasible_nodes_to_find(5000, percentage=100) == 5000


async def test_scheduler_updates_its_snapshot_from_events_and_rotates_the_start():
    class NoClient:
        async def request(self, *a: Any, **kw: Any) -> dict:
            return {}

        async def create(self, *a: Any, **kw: Any) -> dict:
            return {}

        async def patch(self, *a: Any, **kw: Any) -> dict:
            return {}

    s = Scheduler(NoClient(), seed=1)  # type: ignore[arg-type]
    for i in range(300):
        s._on_node("ADDED", _node(f"n{i}"))
    assert len(s.snapshot.node_list()) == 300
    s._on_pod("ADDED", _pod("bound", "n5"))
    assert s.snapshot.live["n5"].requested["cpu"] == 1000
    pending = _pod("p1")
    s.pods["p1"] = pending
    assert s.schedule_one("p1", pending) is not None
    # 300 nodes: 50 - 300/125 = 48% -> 144 nodes are enough; the next cycle starts after them
    assert s.snapshot.next_start == 144
    s._on_node("DELETED", _node("n0"))
    assert "n0" not in s.snapshot.live and len(s.snapshot.node_list()) == 299
    s._on_pod("DELETED", _pod("bound", "n5"))
    assert s.snapshot.live["n5"].requested["cpu"] == 0
    for t in list(s._tasks):
        t.cancel()
