"""Which datastore a data dir's server uses, recorded beside the database (``db/datastore``).

A server on etcd writes the endpoints there; a SQLite server writes nothing. Commands that only
make sense for the embedded SQLite datastore (`kubelite datastore snapshot save|restore`) read
it and refuse on an etcd data dir, and a server refuses to start on a data dir whose recorded
datastore differs from the one it was given, rather than silently serving an empty cluster.
"""

from __future__ import annotations

from pathlib import Path

MARKER = "datastore"


class DatastoreMismatch(Exception):
    pass


def marker_path(db_path: Path) -> Path:
    return db_path.parent / MARKER


def recorded_endpoint(db_path: Path) -> str:
    """The etcd endpoints this data dir's server was last started with ("" = SQLite)."""
    try:
        return marker_path(db_path).read_text().strip()
    except FileNotFoundError:
        return ""


def check_and_record(db_path: Path, endpoint: str) -> None:
    """Refuse a change of datastore under an existing data dir; record an etcd one."""
    recorded = recorded_endpoint(db_path)
    if endpoint:
        if not recorded and db_path.exists():
            raise DatastoreMismatch(
                f"{db_path.parent.parent} holds an embedded SQLite datastore ({db_path}); starting it on etcd "
                "would leave its objects behind. Use a new --data-dir for an etcd server")
        marker_path(db_path).write_text(endpoint + "\n")
    elif recorded:
        raise DatastoreMismatch(
            f"the server of {db_path.parent.parent} stores its objects in etcd ({recorded}); start it with "
            f"--datastore-endpoint {recorded} (and the --datastore-*file flags), or use another --data-dir "
            "for an embedded SQLite server")


def refuse_if_etcd(db_path: Path, what: str) -> str | None:
    """The message to refuse an SQLite-only command with on an etcd data dir (None: SQLite)."""
    recorded = recorded_endpoint(db_path)
    if not recorded:
        return None
    return (f"{what} works on the embedded SQLite datastore, and the server of {db_path.parent.parent} "
            f"stores its objects in etcd ({recorded}); back etcd up with its own tools, e.g. "
            "`ETCDCTL_API=3 etcdctl --endpoints ... snapshot save FILE`")
