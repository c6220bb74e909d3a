"""Snapshots of the embedded SQLite datastore (`kubelite datastore snapshot save|restore`).

``save`` copies the live database with SQLite's online backup API: a consistent image of one
committed revision, taken while the server keeps serving (WAL readers do not block the
writer). The copy is checked (``PRAGMA integrity_check``) and written as one self-contained
file (rollback journal, no WAL beside it) before it replaces FILE.

``restore`` puts a snapshot in place of a data dir's database. It refuses while a server
holds the data dir's lock (:func:`hold_data_dir`), and the snapshot is checked first, so a
bad file changes nothing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sqlite3
from pathlib import Path
from typing import IO

from kubelite.store.sqlite import _SEQ

LOCK_NAME = "server.lock"
REQUIRED_TABLES = {"kine", "current", "meta"}


class SnapshotError(Exception):
    pass


class DataDirInUse(SnapshotError):
    """Another process (a running server) holds the data dir's lock."""


def lock_path(db_path: Path) -> Path:
    return db_path.parent / LOCK_NAME


def hold_data_dir(db_path: Path) -> IO[bytes]:
    """Take the data dir's exclusive lock (held for the life of the returned file; the
    kernel drops it when the process ends, kill -9 included). Raises SnapshotError when
    another process holds it."""
    db_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    f = open(lock_path(db_path), "ab")  # noqa: SIM115 - held open on purpose
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        f.close()
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise DataDirInUse(f"a kubelite server is using {db_path.parent.parent}; stop it first") from None
        raise
    return f


def _check(path: Path) -> None:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise SnapshotError(f"{path}: not a kubelite snapshot: {exc}") from None
    try:
        ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise SnapshotError(f"{path}: not a kubelite snapshot: {exc}") from None
    finally:
        conn.close()
    if ok != "ok":
        raise SnapshotError(f"{path}: integrity check failed: {ok}")
    if not REQUIRED_TABLES <= tables:
        raise SnapshotError(f"{path}: not a kubelite snapshot (tables {sorted(tables)})")


def revision(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute(_SEQ).fetchone()  # the store's own revision query
        return int(row[0]) if row else 0
    finally:
        conn.close()


def _copy(src_path: Path, tmp: Path) -> None:
    """SQLite's online backup of ``src_path`` into a new file ``tmp``, made 0600 before any
    data is in it (the datastore holds every Secret)."""
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    src = sqlite3.connect(src_path)
    dst = sqlite3.connect(tmp)
    try:
        src.execute("PRAGMA busy_timeout = 10000")
        src.backup(dst)
        dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, no WAL beside it
    finally:
        dst.close()
        src.close()


def save(db_path: Path, out: Path) -> int:
    """Write a consistent snapshot of the database at ``db_path`` to ``out``; returns its revision."""
    if not db_path.exists():
        raise SnapshotError(f"no datastore at {db_path}")
    tmp = out.with_name(out.name + ".part")
    _copy(db_path, tmp)
    try:
        _check(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return revision(out)


def restore(snapshot: Path, db_path: Path) -> int:
    """Replace the database at ``db_path`` with ``snapshot``; returns its revision."""
    if not snapshot.is_file():
        raise SnapshotError(f"{snapshot}: no such file")
    _check(snapshot)
    lock = hold_data_dir(db_path)
    try:
        tmp = db_path.with_name(db_path.name + ".restore")
        _copy(snapshot, tmp)
        for suffix in ("-wal", "-shm"):  # the old database's WAL must not be replayed onto the new one
            with contextlib.suppress(FileNotFoundError):
                os.unlink(str(db_path) + suffix)
        os.replace(tmp, db_path)
    finally:
        lock.close()
    return revision(db_path)
