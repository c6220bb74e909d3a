"""Keeps ResourceQuota ``status.hard`` / ``status.used`` current (a small resync loop, as
the quota controller's periodic full resync)."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import Any

from kubelite.admission._resources import fmt
from kubelite.admission.resourcequota import _store, namespace_usage
from kubelite.api import errors
from kubelite.apiserver.registry import ListOptions, WriteOptions

log = logging.getLogger(__name__)
INTERVAL = 1.0


async def sync_once(server: Any) -> None:
    qstore = _store(server, "resourcequotas")
    if qstore is None:
        return
    quotas, _, _, _ = await qstore.list("", ListOptions())
    usage: dict[str, dict[str, Decimal]] = {}
    for quota in quotas:
        ns = quota["metadata"]["namespace"]
        if ns not in usage:
            usage[ns] = await namespace_usage(server, ns)
        hard = dict((quota.get("spec") or {}).get("hard") or {})
        used = {r: fmt(usage[ns].get(r, Decimal(0)), r) for r in hard}
        want = {"hard": hard, "used": used}
        if quota.get("status") == want:
            continue
        quota["status"] = want
        try:
            await qstore.update(ns, quota["metadata"]["name"], quota, WriteOptions(field_manager="resourcequota-controller"),
                                "status")
        except errors.StatusError as exc:
            if exc.code not in (404, 409):
                log.warning("quota %s/%s: %s", ns, quota["metadata"]["name"], exc.message)


async def run(server: Any) -> None:
    while True:
        try:
            await sync_once(server)
        except Exception:
            log.exception("resource quota sync failed")
        await asyncio.sleep(INTERVAL)
