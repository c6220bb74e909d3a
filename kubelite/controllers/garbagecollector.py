"""The garbage collector (pkg/controller/garbagecollector): a graph of owners and dependents
built from every kind's ``metadata.ownerReferences`` (by uid), and the three cascades —

- Background: a dependent whose owners are all gone (deleted, or never there: checked by
  looking the owner up and comparing uids) is deleted;
- Foreground: an owner deleted with ``foregroundDeletion`` has its dependents deleted first and
  loses the finalizer once no dependent with ``blockOwnerDeletion`` is left;
- Orphan: an owner deleted with ``orphan`` has its ownerReferences removed from its dependents,
  then loses the finalizer.

A namespaced dependent's namespaced owner is looked up in the dependent's namespace (a
cross-namespace owner reads as absent, as upstream); a cluster-scoped dependent's namespaced
owner cannot be resolved and keeps the dependent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubelite.api import errors
from kubelite.api.meta import FINALIZER_DELETE_DEPENDENTS, FINALIZER_ORPHAN_DEPENDENTS
from kubelite.apiserver.registry import DeleteOptions, ResourceStore, WriteOptions
from kubelite.apiserver.stores import Stores
from kubelite.controllers.base import WorkQueue, informer
from kubelite.kinds.base import Kind, Obj

log = logging.getLogger("kubelite.controllers.garbagecollector")

FIELD_MANAGER = "generic-garbage-collector"


@dataclass
class _Node:
    """What the graph keeps of one object."""
    kind: Kind
    namespace: str
    name: str
    uid: str
    owner_refs: list[dict[str, Any]]
    deleting: bool
    finalizers: tuple[str, ...]

    def owner_uids(self) -> set[str]:
        return {r.get("uid", "") for r in self.owner_refs}

    def blocks(self, owner_uid: str) -> bool:
        return any(r.get("uid") == owner_uid and r.get("blockOwnerDeletion") for r in self.owner_refs)

    @property
    def deleting_dependents(self) -> bool:
        return self.deleting and FINALIZER_DELETE_DEPENDENTS in self.finalizers

    @property
    def orphaning(self) -> bool:
        return self.deleting and FINALIZER_ORPHAN_DEPENDENTS in self.finalizers


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _node(kind: Kind, obj: Obj) -> _Node:
    """What the graph keeps of ``obj``; tolerant of any shape the API let through."""
    meta: dict[str, Any] = obj["metadata"] if isinstance(obj.get("metadata"), dict) else {}
    return _Node(kind, str(meta.get("namespace") or "") if kind.namespaced else "", str(meta.get("name") or ""),
                 str(meta.get("uid") or ""),
                 [r for r in _list(meta.get("ownerReferences")) if isinstance(r, dict)],
                 bool(meta.get("deletionTimestamp")),
                 tuple(f for f in _list(meta.get("finalizers")) if isinstance(f, str)))


class _Unresolvable(Exception):
    """An owner reference that names no served kind, or a namespaced owner of a cluster-scoped
    object: it neither keeps nor releases the dependent."""


class GarbageCollector:
    def __init__(self, stores: Stores) -> None:
        # every kind that is listed and watched, except events (upstream's DefaultIgnoredResources)
        self.stores = {k: s for k, s in stores.items()
                       if "list" in k.verbs and "watch" in k.verbs and k.plural != "events"}
        self.nodes: dict[str, _Node] = {}
        self.dependents: dict[str, set[str]] = {}  # owner uid → dependent uids (owner may be gone)
        self.attempt_to_delete = WorkQueue("garbage-collector-delete", self._attempt_to_delete)
        self.attempt_to_orphan = WorkQueue("garbage-collector-orphan", self._attempt_to_orphan)
        self.opts = WriteOptions(field_manager=FIELD_MANAGER)
        # a re-list reports what vanished while the watch was down as DELETED: the graph forgets it
        self.informers = []
        for kind, store in self.stores.items():
            inf = informer(store)
            inf.add_handler(self._handler(kind))
            self.informers.append(inf)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for inf in self.informers:
                tg.create_task(inf.run())
            # like upstream, act only once the graph holds every kind
            for inf in self.informers:
                await inf.wait_synced()
            tg.create_task(self.attempt_to_delete.run())
            tg.create_task(self.attempt_to_orphan.run())

    # ------------------------------------------------------------------ the graph
    def _handler(self, kind: Kind) -> Callable[[str, Obj | None, Obj | None], None]:
        def on_event(etype: str, old: Obj | None, new: Obj | None) -> None:
            if new is not None:
                self._observe(kind, new)
            elif old is not None:
                self._forget(_node(kind, old).uid)
        return on_event

    def _observe(self, kind: Kind, obj: Obj) -> None:
        node = _node(kind, obj)
        if not node.uid:
            return
        old = self.nodes.get(node.uid)
        self.nodes[node.uid] = node
        before = old.owner_uids() if old else set()
        now = node.owner_uids()
        for owner in before - now:
            self._unlink(owner, node.uid)
        for owner in now - before:
            self.dependents.setdefault(owner, set()).add(node.uid)
        # a dependent whose owner is not (or no longer) in the graph, is not what the reference
        # says (another name, kind or namespace), or is deleting its dependents, needs a look
        for r in node.owner_refs:
            o = self.nodes.get(r.get("uid", ""))
            if o is None or o.deleting_dependents or not _matches(r, o, node):
                self.attempt_to_delete.add(node.uid)
                break
        if node.orphaning:
            self.attempt_to_orphan.add(node.uid)
        elif node.deleting_dependents:
            self.attempt_to_delete.add(node.uid)
            for dep in self.dependents.get(node.uid, ()):
                self.attempt_to_delete.add(dep)

    def _forget(self, uid: str) -> None:
        node = self.nodes.pop(uid, None)
        if node is None:
            return
        for owner in node.owner_uids():
            self._unlink(owner, uid)
        # the dependents keep pointing at the gone owner until they are collected or released
        for dep in self.dependents.get(uid, ()):
            self.attempt_to_delete.add(dep)

    def _unlink(self, owner: str, dependent: str) -> None:
        deps = self.dependents.get(owner)
        if deps is not None:
            deps.discard(dependent)
            if not deps and owner not in self.nodes:
                del self.dependents[owner]
        o = self.nodes.get(owner)
        if o is not None and o.deleting_dependents:
            self.attempt_to_delete.add(owner)  # one dependent fewer may unblock it

    # ------------------------------------------------------------------ lookups
    def _store_for_ref(self, ref: dict[str, Any]) -> ResourceStore | None:
        api_version = ref.get("apiVersion")
        if not isinstance(api_version, str):
            return None
        group = api_version.rpartition("/")[0]
        return next((s for k, s in self.stores.items() if k.group == group and k.kind == ref.get("kind")), None)

    async def _latest(self, node: _Node) -> Obj | None:
        """The object as stored now, or None when it is gone or another object took its name."""
        try:
            obj = await self.stores[node.kind].get(node.namespace, node.name)
        except errors.StatusError as exc:
            if exc.code == 404:
                return None
            raise
        return obj if obj["metadata"].get("uid") == node.uid else None

    async def _owner(self, dependent: _Node, ref: dict[str, Any]) -> Obj | None:
        """The owner a reference names, or None when it is absent (not found, or another uid)."""
        store = self._store_for_ref(ref)
        if store is None:
            raise _Unresolvable(f"no served kind {ref.get('kind')} in {ref.get('apiVersion')}")
        if store.kind.namespaced and not dependent.namespace:
            raise _Unresolvable("a cluster-scoped object cannot have a namespaced owner")
        try:
            owner = await store.get(dependent.namespace if store.kind.namespaced else "", str(ref.get("name") or ""))
        except errors.StatusError as exc:
            if exc.code == 404:
                return None
            raise
        return owner if owner["metadata"].get("uid") == ref.get("uid") else None

    # ------------------------------------------------------------------ attempt to delete
    async def _attempt_to_delete(self, uid: str) -> bool:
        """Returns True when the item needs another look later."""
        node = self.nodes.get(uid)
        if node is None:
            return False
        latest = await self._latest(node)
        if latest is None:
            return False  # its DELETED event follows
        item = _node(node.kind, latest)
        if item.deleting and not item.deleting_dependents:
            return False  # on its way out; its dependents get a look when it is gone
        if item.deleting_dependents:
            return await self._process_deleting_dependents(item)
        if not item.owner_refs:
            return False
        solid, dangling, waiting = [], [], []
        try:
            for ref in item.owner_refs:
                owner = await self._owner(item, ref)
                if owner is None:
                    dangling.append(ref)
                elif (owner["metadata"].get("deletionTimestamp")
                      and FINALIZER_DELETE_DEPENDENTS in _list(owner["metadata"].get("finalizers"))):
                    waiting.append(ref)
                else:
                    solid.append(ref)
        except _Unresolvable as exc:
            log.info("garbage collector: %s %s/%s: %s", item.kind.kind, item.namespace, item.name, exc)
            return False
        if solid:
            if dangling or waiting:
                gone = {r.get("uid") for r in dangling + waiting}
                await self._patch(item, lambda meta: _drop_owner_refs(meta, gone))
            return False
        if waiting and self.dependents.get(uid):
            if any(d in self.nodes and self.nodes[d].deleting_dependents for d in self.dependents[uid]):
                # a possible cycle: stop blocking the owners, then go in the foreground
                await self._patch(item, _unblock_owner_refs)
            return await self._delete(item, latest, "Foreground")
        if FINALIZER_ORPHAN_DEPENDENTS in item.finalizers:
            policy = "Orphan"
        elif FINALIZER_DELETE_DEPENDENTS in item.finalizers:
            policy = "Foreground"
        else:
            policy = "Background"
        return await self._delete(item, latest, policy)

    async def _process_deleting_dependents(self, item: _Node) -> bool:
        blocking = [d for d in self.dependents.get(item.uid, ()) if d in self.nodes and self.nodes[d].blocks(item.uid)]
        if not blocking:
            await self._remove_finalizer(item, FINALIZER_DELETE_DEPENDENTS)
            return False
        for dep in blocking:
            if not self.nodes[dep].deleting_dependents:
                self.attempt_to_delete.add(dep)
        return False

    async def _delete(self, item: _Node, latest: Obj, policy: str) -> bool:
        store = self.stores[item.kind]
        pre = {"uid": item.uid, "resourceVersion": latest["metadata"].get("resourceVersion", "")}
        log.info("garbage collector: deleting %s %s/%s (propagation %s)", item.kind.kind, item.namespace,
                 item.name, policy)
        try:
            await store.delete(item.namespace, item.name, DeleteOptions(preconditions=pre, propagation_policy=policy))
        except errors.StatusError as exc:
            if exc.code == 404:
                return False
            if exc.code != 409:
                raise
            # changed since it was judged: delete anyway only if its owners did not change
            now = await self._latest(item)
            if now is None:
                return False
            if (now["metadata"].get("ownerReferences") or []) != (latest["metadata"].get("ownerReferences") or []):
                self.attempt_to_delete.add(item.uid)
                return False
            try:
                await store.delete(item.namespace, item.name,
                                   DeleteOptions(preconditions={"uid": item.uid}, propagation_policy=policy))
            except errors.StatusError as exc2:
                if exc2.code == 404:
                    return False
                raise
        return False

    # ------------------------------------------------------------------ attempt to orphan
    async def _attempt_to_orphan(self, uid: str) -> bool:
        node = self.nodes.get(uid)
        if node is None:
            return False
        latest = await self._latest(node)
        if latest is None:
            return False
        owner = _node(node.kind, latest)
        if not owner.orphaning:
            return False
        for dep in list(self.dependents.get(uid, ())):
            d = self.nodes.get(dep)
            if d is not None:
                await self._patch(d, lambda meta: _drop_owner_refs(meta, {uid}))
        await self._remove_finalizer(owner, FINALIZER_ORPHAN_DEPENDENTS)
        return False

    # ------------------------------------------------------------------ writes
    async def _patch(self, node: _Node, change: Callable[[dict[str, Any]], None]) -> None:
        """Changes the object's metadata if it is still the same object (uid); when it is gone
        or was replaced, its own events tell the rest."""

        def apply(cur: Obj) -> Obj:
            meta = cur.setdefault("metadata", {})
            if meta.get("uid") != node.uid:
                raise errors.conflict(node.kind.plural, node.name, "Precondition failed: UID mismatch",
                                      node.kind.group)
            change(meta)
            return cur

        try:
            await self.stores[node.kind].patch(node.namespace, node.name, apply, self.opts)
        except errors.StatusError as exc:
            if exc.code not in (404, 409):
                raise

    async def _remove_finalizer(self, node: _Node, finalizer: str) -> None:
        log.info("garbage collector: removing finalizer %s from %s %s/%s", finalizer, node.kind.kind,
                 node.namespace, node.name)

        def drop(meta: dict[str, Any]) -> None:
            rest = [f for f in _list(meta.get("finalizers")) if f != finalizer]
            if rest:
                meta["finalizers"] = rest
            else:
                meta.pop("finalizers", None)

        await self._patch(node, drop)


def _matches(ref: dict[str, Any], owner: _Node, dependent: _Node) -> bool:
    return (ref.get("name") == owner.name and ref.get("kind") == owner.kind.kind
            and str(ref.get("apiVersion") or "").rpartition("/")[0] == owner.kind.group
            and owner.namespace in ("", dependent.namespace))


def _drop_owner_refs(meta: dict[str, Any], uids: set[Any]) -> None:
    refs = [r for r in _list(meta.get("ownerReferences")) if isinstance(r, dict) and r.get("uid") not in uids]
    if refs:
        meta["ownerReferences"] = refs
    else:
        meta.pop("ownerReferences", None)


def _unblock_owner_refs(meta: dict[str, Any]) -> None:
    for ref in _list(meta.get("ownerReferences")):
        if isinstance(ref, dict) and ref.get("blockOwnerDeletion"):
            ref["blockOwnerDeletion"] = False
