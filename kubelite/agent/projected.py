"""Projected volumes (pkg/volume/projected) and the kubelet's service-account token manager
(pkg/kubelet/token).

A projected volume is a per-pod tmpfs at ``<data_dir>/pods/<uid>/volumes/kubernetes.io~projected/<name>``
filled from ``serviceAccountToken`` (a TokenRequest bound to the pod), ``configMap``, ``secret``
and ``downwardAPI`` sources. Files are written like the kubelet's AtomicWriter: the payload goes
into a fresh ``..<timestamp>`` directory, the ``..data`` symlink is swapped to it with one
rename, and each visible name is a symlink ``name -> ..data/name``; a reader sees the old
payload or the new one, never a mix. Tokens are re-requested at 80% of their lifetime (or after
24h), with up to 10 s of jitter, as the kubelet does.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import logging
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from kubelite.api import errors
from kubelite.kinds.podutil import DEFAULT_SERVICE_ACCOUNT

log = logging.getLogger("kubelite.agent.projected")
Obj = dict[str, Any]

PLUGIN_DIR = "kubernetes.io~projected"
DEFAULT_MODE = 0o644  # 420, ProjectedVolumeSourceDefaultMode
DEFAULT_TOKEN_EXPIRATION = 3600
MAX_TTL = 24 * 3600.0
MAX_JITTER = 10.0
DATA_DIR_NAME = "..data"
DATA_DIR_TMP_NAME = "..data_tmp"


class ProjectionError(Exception):
    """A source that cannot be projected (the message ends up in a FailedMount event)."""


# --------------------------------------------------------------------------- AtomicWriter


def _validate_path(p: str) -> None:
    if not p or p.startswith("/") or ".." in Path(p).parts or p.startswith(".."):
        raise ProjectionError(f"invalid path {p!r}: must be relative and may not contain '..'")


def _current_payload(target: Path) -> dict[str, tuple[bytes, int]] | None:
    data = target / DATA_DIR_NAME
    if not data.is_symlink():
        return None
    out: dict[str, tuple[bytes, int]] = {}
    base = target / os.readlink(data)
    for root, _dirs, files in os.walk(base):
        for fn in files:
            p = Path(root) / fn
            out[str(p.relative_to(base))] = (p.read_bytes(), os.stat(p).st_mode & 0o7777)
    return out


def atomic_write(target: Path, payload: dict[str, tuple[bytes, int]]) -> bool:
    """Make ``target`` hold exactly ``payload`` ({relative path: (content, mode)}) with the
    AtomicWriter layout; returns False when nothing changed."""
    for p in payload:
        _validate_path(p)
    if _current_payload(target) == payload:
        return False
    old_ts = os.readlink(target / DATA_DIR_NAME) if (target / DATA_DIR_NAME).is_symlink() else None
    stamp = dt.datetime.now(dt.UTC).strftime("..%Y_%m_%d_%H_%M_%S.")
    ts_dir = Path(tempfile.mkdtemp(prefix=stamp, dir=target))
    os.chmod(ts_dir, 0o755)
    for rel, (content, mode) in payload.items():
        dest = ts_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        with open(dest, "wb") as f:
            f.write(content)
        os.chmod(dest, mode)
    tmp_link = target / DATA_DIR_TMP_NAME
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp_link)
    os.symlink(ts_dir.name, tmp_link)
    os.rename(tmp_link, target / DATA_DIR_NAME)  # the swap: one rename
    visible = {Path(p).parts[0] for p in payload}
    for name in visible:
        link = target / name
        if not link.is_symlink():
            os.symlink(f"{DATA_DIR_NAME}/{name}", link)
    for entry in target.iterdir():
        if entry.name.startswith(".."):
            continue
        if entry.name not in visible and entry.is_symlink():
            os.unlink(entry)
    if old_ts and old_ts != ts_dir.name:
        shutil.rmtree(target / old_ts, ignore_errors=True)
    return True


# --------------------------------------------------------------------------- token manager


def _parse_time(s: str) -> float:
    return dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()


class TokenManager:
    """Caches TokenRequests per (namespace, service account, audiences, lifetime, bound pod) and
    asks for a new one at 80% of the lifetime or after 24h (pkg/kubelet/token/token_manager.go)."""

    def __init__(self, client: Any, clock: Any = time.time) -> None:
        self.client = client
        self.clock = clock
        self.cache: dict[tuple, Obj] = {}

    def requires_refresh(self, tr: Obj) -> bool:
        exp_s = (tr.get("spec") or {}).get("expirationSeconds")
        if not exp_s:
            return False
        now = self.clock()
        exp = _parse_time(tr["status"]["expirationTimestamp"])
        iat = exp - exp_s
        jitter = random.random() * MAX_JITTER
        if now > iat + MAX_TTL - jitter:
            return True
        return now > exp - exp_s * 20 // 100 - jitter

    def refresh_at(self, tr: Obj) -> float:
        """When the token must be re-requested at the latest (without jitter)."""
        exp_s = (tr.get("spec") or {}).get("expirationSeconds") or 0
        exp = _parse_time(tr["status"]["expirationTimestamp"])
        return min(exp - exp_s * 20 // 100, exp - exp_s + MAX_TTL)

    async def get_token(self, namespace: str, sa: str, audiences: list[str], exp_s: int, pod: Obj) -> Obj:
        meta = pod["metadata"]
        key = (namespace, sa, tuple(audiences), exp_s, meta.get("name", ""), meta.get("uid", ""))
        cur = self.cache.get(key)
        if cur is not None and not self.requires_refresh(cur):
            return cur
        if self.client is None:
            raise ProjectionError("no API client to request service account tokens with")
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": audiences, "expirationSeconds": exp_s,
                         "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta.get("name", ""),
                                            "uid": meta.get("uid", "")}}}
        path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{sa}/token"
        try:
            tr = await self.client.request("POST", path, body)
        except errors.StatusError as exc:
            if cur is not None and self.clock() < _parse_time(cur["status"]["expirationTimestamp"]):
                log.warning("refreshing token for %s/%s failed (keeping the current one): %s", namespace, sa,
                            exc.message)
                return cur
            raise ProjectionError(f"failed to fetch token: {exc.message}") from exc
        self.cache[key] = tr
        return tr

    def forget_pod(self, uid: str) -> None:
        for k in [k for k in self.cache if k[5] == uid]:
            del self.cache[k]


# --------------------------------------------------------------------------- sources


def _format_map(m: dict[str, str]) -> str:
    """fieldpath.FormatMap: sorted ``key="value"`` lines (Go %q quoting)."""
    return "\n".join(f"{k}={json.dumps(str(v), ensure_ascii=False)}" for k, v in sorted(m.items()))


def downward_value(pod: Obj, item: Obj) -> str:
    from kubelite.agent.podenv import _field_path_value, _resource_value

    meta = pod.get("metadata") or {}
    if item.get("fieldRef"):
        fp = item["fieldRef"].get("fieldPath", "")
        if fp == "metadata.labels":
            return _format_map(meta.get("labels") or {})
        if fp == "metadata.annotations":
            return _format_map(meta.get("annotations") or {})
        try:
            return _field_path_value(pod, fp, "", [])
        except Exception as exc:
            raise ProjectionError(str(exc)) from exc
    if item.get("resourceFieldRef"):
        ref = item["resourceFieldRef"]
        cname = ref.get("containerName", "")
        spec = pod.get("spec") or {}
        for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            if c.get("name") == cname:
                return _resource_value(c, ref, {})
        raise ProjectionError(f"container {cname!r} not found for resourceFieldRef")
    raise ProjectionError(f"downwardAPI item {item.get('path', '')!r} has neither fieldRef nor resourceFieldRef")


def _key_files(kind: str, name: str, data: dict[str, bytes], src: Obj, mode: int) -> dict[str, tuple[bytes, int]]:
    items = src.get("items")
    out: dict[str, tuple[bytes, int]] = {}
    if not items:
        for k, v in data.items():
            out[k] = (v, mode)
        return out
    for it in items:
        key = it.get("key", "")
        if key not in data:
            if src.get("optional"):
                continue
            raise ProjectionError(f"{kind} references non-existent {kind} key: {key}" if kind == "secret"
                                  else f"configmap references non-existent config key: {key}")
        out[it.get("path") or key] = (data[key], it.get("mode") if it.get("mode") is not None else mode)
    return out


async def projected_payload(pod: Obj, volume: Obj, fetch: Any, tokens: TokenManager) -> tuple[
        dict[str, tuple[bytes, int]], float | None]:
    """The files of a projected volume and the time its token (if any) must be refreshed."""
    meta = pod["metadata"]
    ns = meta.get("namespace", "default")
    proj = volume.get("projected") or {}
    mode = proj.get("defaultMode")
    mode = DEFAULT_MODE if mode is None else mode
    out: dict[str, tuple[bytes, int]] = {}
    refresh: float | None = None
    for src in proj.get("sources") or []:
        if src.get("secret") is not None or src.get("configMap") is not None:
            is_secret = src.get("secret") is not None
            s = src.get("secret") if is_secret else src.get("configMap")
            kind = "secret" if is_secret else "configmap"
            obj = await fetch("secrets" if is_secret else "configmaps", ns, s.get("name", ""))
            if obj is None:
                if s.get("optional"):
                    continue
                raise ProjectionError(f"{kind} \"{s.get('name', '')}\" not found")
            if is_secret:
                data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
            else:
                data = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
                data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
            out.update(_key_files(kind, s.get("name", ""), data, s, mode))
        elif src.get("downwardAPI") is not None:
            for it in src["downwardAPI"].get("items") or []:
                m = it.get("mode")
                out[it.get("path", "")] = (downward_value(pod, it).encode(), mode if m is None else m)
        elif src.get("serviceAccountToken") is not None:
            t = src["serviceAccountToken"]
            sa = (pod.get("spec") or {}).get("serviceAccountName") or DEFAULT_SERVICE_ACCOUNT
            aud = [t["audience"]] if t.get("audience") else []
            exp_s = t.get("expirationSeconds") or DEFAULT_TOKEN_EXPIRATION
            tr = await tokens.get_token(ns, sa, aud, exp_s, pod)
            out[t.get("path", "")] = (tr["status"]["token"].encode(), mode)
            at = tokens.refresh_at(tr)
            refresh = at if refresh is None else min(refresh, at)
        # clusterTrustBundle / podCertificate sources are not served by kubelite
    for p in out:
        _validate_path(p)
    return out, refresh


__all__ = ["PLUGIN_DIR", "ProjectionError", "TokenManager", "atomic_write", "downward_value", "projected_payload"]
