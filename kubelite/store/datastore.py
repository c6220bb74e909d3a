"""Which datastore a data dir's server uses, recorded beside the database (``db/datastore``).

A server on etcd (or `kubelite datastore migrate`) writes the endpoints, TLS files and key prefix
there; a SQLite server writes nothing. `kubelite datastore snapshot save|restore` read it to work
on the right datastore, and a server refuses to start on a data dir whose recorded datastore
differs from the one it was given, rather than silently serving an empty cluster.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MARKER = "datastore"


class DatastoreMismatch(Exception):
    pass


def marker_path(db_path: Path) -> Path:
    return db_path.parent / MARKER


def recorded(db_path: Path) -> dict[str, Any]:
    """What this data dir's etcd server was last started with: endpoint, TLS files and prefix ({} = SQLite)."""
    try:
        text = marker_path(db_path).read_text()
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        data = {"endpoint": text.strip()}
    return data if isinstance(data, dict) else {}


def recorded_endpoint(db_path: Path) -> str:
    """The etcd endpoints this data dir's server was last started with ("" = SQLite)."""
    return str(recorded(db_path).get("endpoint") or "")


def check(db_path: Path, endpoint: str, prefix: str = "/registry") -> None:
    """Refuse a change of datastore under an existing data dir (before the store starts), and an
    etcd key prefix other than the one its objects are under (an empty cluster served instead)."""
    rec_prefix = str(recorded(db_path).get("prefix") or "").rstrip("/")
    if endpoint and rec_prefix and rec_prefix != prefix.rstrip("/"):
        raise DatastoreMismatch(
            f"the objects of {db_path.parent.parent} are in etcd under {rec_prefix}/, not {prefix.rstrip('/')}/: "
            f"start the server with --datastore-prefix {rec_prefix}, or use another --data-dir")
    ep = recorded_endpoint(db_path)
    if endpoint and not ep and db_path.exists():
        raise DatastoreMismatch(
            f"{db_path.parent.parent} holds an embedded SQLite datastore ({db_path}); starting it on etcd "
            "would leave its objects behind. Use a new --data-dir for an etcd server")
    if not endpoint and ep:
        raise DatastoreMismatch(
            f"the server of {db_path.parent.parent} stores its objects in etcd ({ep}); start it with "
            f"--datastore-endpoint {ep} (and the --datastore-*file flags"
            f"{f', --datastore-prefix {rec_prefix}' if rec_prefix not in ('', '/registry') else ''}), or use another --data-dir "
            "for an embedded SQLite server")


def record(db_path: Path, endpoint: str, tls_files: dict[str, str] | None = None) -> None:
    """Once the etcd store has started: remember its endpoint (and TLS files) for this data dir."""
    tmp = marker_path(db_path).with_suffix(".tmp")
    tmp.write_text(json.dumps({"endpoint": endpoint, **(tls_files or {})}, indent=1) + "\n")
    os.replace(tmp, marker_path(db_path))


def check_and_record(db_path: Path, endpoint: str, tls_files: dict[str, str] | None = None) -> None:
    check(db_path, endpoint, (tls_files or {}).get("prefix") or "/registry")
    if endpoint:
        record(db_path, endpoint, tls_files)
