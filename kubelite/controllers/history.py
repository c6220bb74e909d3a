"""ControllerRevisions: the history of DaemonSets and StatefulSets (upstream
pkg/controller/history/controller_history.go and the getPatch of both controllers).

A revision's ``data`` is the strategic merge patch that puts its pod template back
(``{"spec": {"template": {..., "$patch": "replace"}}}``), which is what `kubectl rollout undo`
applies and what `kubectl rollout history --revision` shows.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from kubelite.api import errors
from kubelite.apiserver.registry import DeleteOptions, ResourceStore, WriteOptions
from kubelite.controllers import controller_utils as cu
from kubelite.controllers.deploymentutil import compute_hash

Obj = dict[str, Any]
HASH_LABEL = "controller.kubernetes.io/hash"  # ControllerRevisionHashLabel
MAX_PREFIX = 223  # ControllerRevisionName keeps the parent's name at most this long


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def template_patch(owner: Obj) -> Obj:
    """getPatch: the owner's pod template as a replacing strategic merge patch."""
    template = copy.deepcopy(_d(_d(owner.get("spec")).get("template")))
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def template_of(revision: Obj) -> Obj:
    """The pod template a revision holds (ApplyRevision of a replacing template patch)."""
    template = copy.deepcopy(_d(_d(_d(revision.get("data")).get("spec")).get("template")))
    template.pop("$patch", None)
    return template


def hash_revision(data: Any, collision_count: int | None) -> str:
    """HashControllerRevision."""
    return compute_hash(data, collision_count)


def revision_name(prefix: str, h: str) -> str:
    """ControllerRevisionName."""
    return f"{prefix[:MAX_PREFIX]}-{h}"


def new_revision(owner: Obj, api_version: str, kind: str, labels: dict[str, str], data: Obj, revision: int,
                 collision_count: int | None, h: str | None = None, hash_label: str = HASH_LABEL) -> Obj:
    """NewControllerRevision: the template's labels plus the hash label, the owner's annotations.
    The DaemonSet controller names its revisions with its own hash (``h``) under its own label."""
    h = h if h is not None else hash_revision(data, collision_count)
    m = cu.meta(owner)
    rm: Obj = {"name": revision_name(str(m.get("name", "")), h), "namespace": m.get("namespace", ""),
               "labels": {**labels, hash_label: h},
               "ownerReferences": [cu.new_controller_ref(owner, api_version, kind)]}
    if m.get("annotations"):
        rm["annotations"] = dict(m["annotations"])
    return {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": rm, "data": data,
            "revision": revision}


def equal_revision(a: Obj, b: Obj) -> bool:
    """EqualRevision: the same data (hash labels compared first when both have one)."""
    ha, hb = _d(cu.meta(a).get("labels")).get(HASH_LABEL), _d(cu.meta(b).get("labels")).get(HASH_LABEL)
    if ha and hb and ha != hb and a.get("data") != b.get("data"):
        return False
    return bool(json.dumps(a.get("data"), sort_keys=True) == json.dumps(b.get("data"), sort_keys=True))


def by_revision(revisions: list[Obj]) -> list[Obj]:
    """SortControllerRevisions: by revision, then creation, then name."""
    return sorted(revisions, key=lambda r: (int(r.get("revision") or 0),
                                            str(cu.meta(r).get("creationTimestamp") or ""),
                                            str(cu.meta(r).get("name") or "")))


def next_revision(revisions: list[Obj]) -> int:
    return max((int(r.get("revision") or 0) for r in revisions), default=0) + 1


class Collision(Exception):
    """A revision of that name exists with other data: bump the collision count and retry."""


class History:
    """realHistory over the ControllerRevision store, writing as ``field_manager``."""

    def __init__(self, store: ResourceStore, field_manager: str) -> None:
        self.store = store
        self.opts = WriteOptions(field_manager=field_manager)

    async def create(self, revision: Obj) -> Obj:
        """CreateControllerRevision: an existing equal revision of this owner is the answer."""
        m = cu.meta(revision)
        try:
            return await self.store.create(m.get("namespace", ""), revision, self.opts)
        except errors.StatusError as exc:
            if exc.code != 409:
                raise
        existing = await self.store.get(m.get("namespace", ""), m.get("name", ""))
        owner_uid = (cu.controller_ref(revision) or {}).get("uid")
        if (cu.controller_ref(existing) or {}).get("uid") == owner_uid and equal_revision(existing, revision):
            return existing
        raise Collision(m.get("name", ""))

    async def update_revision(self, revision: Obj, number: int) -> Obj:
        """UpdateControllerRevision: a revision that comes back gets the next number."""
        if int(revision.get("revision") or 0) == number:
            return revision
        m = cu.meta(revision)

        def change(cur: Obj) -> Obj:
            cur["revision"] = number
            return cur

        out, _ = await self.store.patch(m.get("namespace", ""), m.get("name", ""), change, self.opts)
        return out

    async def delete(self, revision: Obj) -> None:
        m = cu.meta(revision)
        try:
            await self.store.delete(m.get("namespace", ""), m.get("name", ""), DeleteOptions())
        except errors.StatusError as exc:
            if exc.code != 404:
                raise

    async def truncate(self, revisions: list[Obj], live: set[str], limit: int) -> None:
        """truncateHistory / cleanupHistory: delete the oldest revisions that no pod and neither
        the current nor the update revision uses, beyond ``limit``."""
        unused = [r for r in by_revision(revisions) if cu.meta(r).get("name") not in live]
        for r in unused[:max(len(unused) - limit, 0)]:
            await self.delete(r)


__all__ = ["HASH_LABEL", "Collision", "History", "by_revision", "equal_revision", "hash_revision",
           "new_revision", "next_revision", "revision_name", "template_of", "template_patch"]
