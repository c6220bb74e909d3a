"""The scheduler's node-info snapshot (pkg/scheduler/backend/cache: Cache + Snapshot), kept
incrementally from watch events instead of being rebuilt per scheduling cycle.

Every node the scheduler knows has a :class:`NodeInfo` (pods bound to a node not seen yet
get a placeholder, so their usage is counted the moment it appears). The snapshot keeps, in
step with each change rather than recomputed per pod:

- ``live``: the NodeInfos that have a Node object, in the order nodes appeared (the node
  list a cycle walks, starting where the previous cycle stopped, as upstream's
  nextStartNodeIndex);
- ``with_affinity`` / ``with_required_anti``: the nodes holding pods with (anti-)affinity
  terms (upstream's havePodsWithAffinityNodeInfoList and
  havePodsWithRequiredAntiAffinityNodeInfoList), so that a pod without terms of its own
  visits only those nodes for the symmetric checks.

The scheduler runs on one event loop and a cycle never awaits, so a cycle sees a consistent
state without copying it: the snapshot *is* the cache at the cycle's start.
"""

from __future__ import annotations

from kubelite.scheduler.plugins import NodeInfo, PodInfo

MIN_FEASIBLE_NODES_TO_FIND = 100  # minFeasibleNodesToFind
MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND = 5  # minFeasibleNodesPercentageToFind
DEFAULT_PERCENTAGE_OF_NODES_TO_SCORE = 50


def num_feasible_nodes_to_find(num_all_nodes: int, percentage: int = 0) -> int:
    """numFeasibleNodesToFind: every node below 100; else an adaptive share (50% minus 1% per
    125 nodes, at least 5%) of at least 100 nodes — 420 of 1,000, 500 of 5,000."""
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND:
        return num_all_nodes
    pct = percentage
    if pct <= 0:
        pct = max(DEFAULT_PERCENTAGE_OF_NODES_TO_SCORE - num_all_nodes // 125, MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND)
    return max(num_all_nodes * pct // 100, MIN_FEASIBLE_NODES_TO_FIND)


class Snapshot:
    def __init__(self) -> None:
        self.infos: dict[str, NodeInfo] = {}  # every name, placeholders included
        self.live: dict[str, NodeInfo] = {}  # those with a Node, in order of appearance
        self._order: list[NodeInfo] | None = None
        self._affinity: set[str] = set()
        self._required_anti: set[str] = set()
        self.next_start = 0  # nextStartNodeIndex
        self.generation = 0  # bumped on every change (tests and debugging)

    def node_info(self, name: str) -> NodeInfo:
        ni = self.infos.get(name)
        if ni is None:
            ni = self.infos[name] = NodeInfo(name)
        return ni

    def set_node(self, name: str, node: dict | None) -> NodeInfo:
        ni = self.node_info(name)
        ni.set_node(node)
        self.generation += 1
        if node is None:
            if self.live.pop(name, None) is not None:
                self._order = None
        elif name not in self.live:
            self.live[name] = ni
            self._order = None
        return ni

    def add_pod(self, name: str, pod: PodInfo) -> None:
        ni = self.node_info(name)
        ni.add_pod(pod)
        self.generation += 1
        self._track(ni)

    def remove_pod(self, name: str, uid: str) -> None:
        ni = self.infos.get(name)
        if ni is None:
            return
        ni.remove_pod(uid)
        self.generation += 1
        self._track(ni)

    def _track(self, ni: NodeInfo) -> None:
        for names, present in ((self._affinity, bool(ni.with_affinity)),
                               (self._required_anti, bool(ni.with_required_anti))):
            if present:
                names.add(ni.name)
            else:
                names.discard(ni.name)

    def node_list(self) -> list[NodeInfo]:
        """The live nodes in a stable order (rebuilt only when a node comes or goes)."""
        if self._order is None:
            self._order = list(self.live.values())
        return self._order

    def with_affinity(self) -> list[NodeInfo]:
        return [self.live[n] for n in self._affinity if n in self.live]

    def with_required_anti(self) -> list[NodeInfo]:
        return [self.live[n] for n in self._required_anti if n in self.live]


__all__ = ["Snapshot", "num_feasible_nodes_to_find"]
