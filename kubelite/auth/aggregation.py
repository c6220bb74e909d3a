"""The ClusterRole aggregation controller (pkg/controller/clusterroleaggregation): the rules
of a ClusterRole with an ``aggregationRule`` are the union of the rules of the
ClusterRoles its selectors match, in name order, without duplicates."""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

from kubelite.api import errors
from kubelite.api.selectors import SelectorError, label_selector_from_object
from kubelite.apiserver.registry import WriteOptions

log = logging.getLogger(__name__)


def aggregated_rules(role: dict[str, Any], all_roles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    agg = role.get("aggregationRule") or {}
    name = role["metadata"]["name"]
    rules: list[dict[str, Any]] = []
    for sel in agg.get("clusterRoleSelectors") or []:
        try:
            selector = label_selector_from_object(sel if isinstance(sel, dict) else {})
        except SelectorError:
            continue
        matched = sorted((r for r in all_roles if r["metadata"]["name"] != name
                          and selector.matches(r["metadata"].get("labels") or {})),
                         key=lambda r: r["metadata"]["name"])
        for r in matched:
            for rule in r.get("rules") or []:
                if rule not in rules:
                    rules.append(copy.deepcopy(rule))
    return rules


class AggregationController:
    def __init__(self, informer: Any, store: Any) -> None:
        self.informer = informer
        self.store = store
        self._wake = asyncio.Event()
        informer.add_handler(lambda *_: self._wake.set())

    async def sync_all(self) -> None:
        # aggregated roles may select other aggregated roles (admin <- edit <- view): compute to a
        # fixpoint on local copies, then write what changed
        roles = [copy.deepcopy(r) for r in self.informer.list()]
        stored = {r["metadata"]["name"]: r.get("rules") or [] for r in roles}
        for _ in range(8):
            changed = False
            for role in roles:
                if role.get("aggregationRule"):
                    want = aggregated_rules(role, roles)
                    if (role.get("rules") or []) != want:
                        role["rules"] = want
                        changed = True
            if not changed:
                break
        for role in roles:
            name = role["metadata"]["name"]
            if not role.get("aggregationRule") or stored[name] == (role.get("rules") or []):
                continue
            await self._write(name, role["rules"])

    async def _write(self, name: str, want: list[dict[str, Any]]) -> None:
        def mutate(cur: dict[str, Any]) -> dict[str, Any]:
            cur["rules"] = want
            return cur

        for _ in range(5):  # the read resourceVersion is a precondition: retry on conflicts
            try:
                await self.store.patch("", name, mutate, WriteOptions(field_manager="clusterrole-aggregation-controller"))
                return
            except errors.StatusError as exc:
                if exc.code == 409:
                    continue
                if exc.code != 404:
                    log.warning("aggregating clusterrole %s: %s", name, exc.message)
                return

    async def run(self) -> None:
        await self.informer.wait_synced(60)
        while True:
            self._wake.clear()
            try:
                await self.sync_all()
            except Exception:
                log.exception("clusterrole aggregation failed")
            await self._wake.wait()
            await asyncio.sleep(0.05)  # coalesce bursts of changes
