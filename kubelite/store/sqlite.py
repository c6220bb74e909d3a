"""SQLite implementation of the store interface, after kine's design.

Layout
------
``kine`` is an append-only log: its ``INTEGER PRIMARY KEY AUTOINCREMENT`` row id *is* the global
revision. Every create, update and delete appends one row (``created``/``deleted`` flags,
``create_revision``, ``prev_revision`` = the row it supersedes, ``value``; a delete row carries the
deleted value). Instead of kine's ``old_value`` column, the previous value of an event is read
through ``prev_revision`` (compaction never removes a row that is superseded above the compacted
revision, so the join always finds it for any event a watcher can still ask for).

``current`` (name -> id of the live row) is a materialized view of the latest revision, so GET,
LIST and COUNT at the latest revision are a primary-key range scan over live keys only, never a
scan over history. Reads at older revisions use the ``(name, id)`` index on the log.

``meta`` persists the compacted revision. The current revision is ``sqlite_sequence`` for the
log (AUTOINCREMENT never reuses or lowers ids, even after the newest rows were compacted away).

Writes
------
One writer thread owns the only writing connection. Callers enqueue operations; the writer drains
whatever is queued (group commit), applies each operation inside one ``BEGIN IMMEDIATE``
transaction, commits, and then hands the whole batch back to the event loop in a single
``call_soon_threadsafe``: the events are appended to the in-memory ring, broadcast to watchers (in
revision order) and only then are the callers' futures resolved.

Durability: WAL with ``synchronous=NORMAL``. A commit appends the transaction's frames to the WAL
file with write(2) before COMMIT returns, so once a caller has been answered the data is in the
kernel's page cache and survives the process being killed (SIGKILL, OOM, crash) - only an OS crash
or power loss can lose the last few transactions, and even then the database is never corrupted
(the WAL is synced before each checkpoint). ``synchronous="FULL"`` fsyncs the WAL on every commit
(one fsync per group-committed batch) for power-loss durability.

Watch
-----
Watchers are registered synchronously on the event loop, where the broadcaster also runs, so the
hand-over from history to live events is gap- and duplicate-free: at registration the watcher
copies the matching events of the in-memory ring (revisions ``(ring_floor, published]``) into its
queue and receives every later event from the broadcaster; only revisions
``(from_revision, ring_floor]`` are read from the database (paged, each page in one read
transaction that also checks the compacted revision). Each watcher has a bounded queue; a
watcher that falls too far behind is terminated with :class:`WatchOverflowError` so writers never
wait on readers.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import concurrent.futures
import contextlib
import logging
import queue
import sqlite3
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from kubelite.store.base import (
    KV,
    CompactedError,
    ConflictError,
    Event,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    ListResult,
    StoreClosedError,
    StoreError,
    WatchOverflowError,
)

__all__ = ["SQLiteStore", "StoreClosedError", "WatchOverflowError"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS kine_name_id ON kine (name, id);
CREATE TABLE IF NOT EXISTS current (
    name TEXT PRIMARY KEY,
    id INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (key, value) VALUES ('compacted', 0);
"""

_MAX_BATCH = 512  # writes per group-committed transaction
_COMPACT_CHUNK = 5000  # revisions per compaction transaction (writes interleave between chunks)
_REPLAY_PAGE = 1000  # rows per watch-replay read
_RING_SIZE = 10_000  # recent events kept in memory for watch starts
_WATCH_QUEUE = 10_000  # undelivered live events per watcher before it is terminated
_INLINE_LIST_LIMIT = 500  # latest-revision lists up to this limit run on the event loop thread
_CHECKPOINT_POLL = 0.05  # seconds between background WAL checkpoints while writes happen
_WAL_LIMIT = 64 << 20  # a WAL file larger than this is truncated when it restarts

_GET_LATEST = (
    "SELECT k.id, k.create_revision, k.value FROM current AS c CROSS JOIN kine AS k ON k.id = c.id "
    "WHERE c.name = ?"
)
_GET_AT = (
    "SELECT id, create_revision, value, deleted FROM kine WHERE name = ? AND id <= ? ORDER BY id DESC LIMIT 1"
)
_INSERT = (
    "INSERT INTO kine (id, name, created, deleted, create_revision, prev_revision, value) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_SET_CURRENT = (
    "INSERT INTO current (name, id) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET id = excluded.id"
)
_DEL_CURRENT = "DELETE FROM current WHERE name = ?"
_SEQ = "SELECT seq FROM sqlite_sequence WHERE name = 'kine'"
_COMPACTED = "SELECT value FROM meta WHERE key = 'compacted'"


def _prefix_end(prefix: str) -> str | None:
    """Smallest string greater than every string starting with ``prefix`` (None: unbounded).

    SQLite compares TEXT with memcmp on UTF-8, which orders like Python compares code points."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:  # surrogates cannot be encoded; skip the block
                nxt = 0xE000
            return prefix[:-1] + chr(nxt)
        prefix = prefix[:-1]
    return None


def _cond(col: str, prefix: str, start_key: str = "") -> tuple[str, tuple[str, ...]]:
    """SQL condition on column ``col`` selecting keys under ``prefix`` from ``start_key`` on."""
    lo = max(prefix, start_key)
    hi = _prefix_end(prefix)
    if hi is None:
        return f"{col} >= ?", (lo,)
    return f"{col} >= ? AND {col} < ?", (lo, hi)


class _WriteOp:
    __slots__ = ("kind", "key", "value", "expected", "future")

    def __init__(self, kind: str, key: str, value: bytes, expected: int, future: asyncio.Future[Any]) -> None:
        self.kind = kind
        self.key = key
        self.value = value
        self.expected = expected
        self.future = future


class _CompactJob:
    __slots__ = ("target", "future")

    def __init__(self, target: int, future: asyncio.Future[Any]) -> None:
        self.target = target
        self.future = future


_STOP = object()


class SQLiteStore:
    """Revisioned key-value store on one SQLite file (see the module docstring)."""

    def __init__(
        self,
        path: str,
        *,
        compact_interval: float = 300.0,
        compact_keep: int = 1000,
        synchronous: str = "NORMAL",
    ) -> None:
        if synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError("synchronous must be NORMAL, FULL or EXTRA")
        self.path = path
        self.compact_interval = compact_interval
        self.compact_keep = compact_keep
        self._synchronous = synchronous.upper()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._closing = False
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._rconn: sqlite3.Connection | None = None  # reads on the event loop thread
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._pool_conns: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        self._compactor: asyncio.Task[None] | None = None
        self._ckpt_stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        self._writer_failed = False
        self._wal_dirty = False  # writer -> checkpointer: something was committed
        self._wal_catch_up = False  # checkpointer -> writer: checkpoint the remainder
        # Revisions. _committed_rev is written by the writer thread right after COMMIT;
        # _pub_rev by the event loop once the batch has been published to watchers.
        self._committed_rev = 0
        self._pub_rev = 0
        self._compacted = 0
        # Watch machinery (event loop thread only).
        self._ring: collections.deque[Event] = collections.deque()
        self._ring_floor = 0  # the ring holds every event with revision in (_ring_floor, _pub_rev]
        self._watchers: weakref.WeakSet[_Watcher] = weakref.WeakSet()
        # in-process listeners (the API server's watch cache): called with each published batch
        self._listeners: list[Callable[[builtins.list[Event]], None]] = []

    # ------------------------------------------------------------------ lifecycle

    def _connect(self, *, readonly: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, cached_statements=256
        )
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA mmap_size = 268435456")
        conn.execute("PRAGMA cache_size = -32000")
        if readonly:
            conn.execute("PRAGMA query_only = 1")
        return conn

    async def start(self) -> None:
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        ready: concurrent.futures.Future[tuple[int, int]] = concurrent.futures.Future()
        self._writer = threading.Thread(
            target=self._writer_main, args=(ready,), name="kubelite-sqlite-writer", daemon=True
        )
        self._writer.start()
        rev, compacted = await asyncio.wrap_future(ready)
        self._committed_rev = self._pub_rev = self._ring_floor = rev
        self._compacted = compacted
        self._rconn = self._connect(readonly=True)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="kubelite-sqlite-read"
        )
        self._ckpt_stop = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpointer_main, name="kubelite-sqlite-checkpointer", daemon=True
        )
        self._checkpointer.start()
        self._started = True
        self._closing = False
        if self.compact_interval > 0:
            self._compactor = asyncio.create_task(self._compact_loop(), name="kubelite-sqlite-compactor")

    async def close(self) -> None:
        if not self._started or self._closing:
            return
        self._closing = True
        if self._compactor is not None:
            self._compactor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._compactor
            self._compactor = None
        # Writes queued before this point are still committed (the sentinel is behind them).
        self._ckpt_stop.set()
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.join)
            self._checkpointer = None
        self._queue.put(_STOP)
        writer = self._writer
        if writer is not None:
            await asyncio.to_thread(writer.join)
        # Resolve anything the writer handed back but the loop has not processed yet.
        await asyncio.sleep(0)
        for w in list(self._watchers):
            w._finish()
        self._watchers = weakref.WeakSet()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        with self._pool_lock:
            for conn in self._pool_conns:
                conn.close()
            self._pool_conns.clear()
        if self._rconn is not None:
            self._rconn.close()
            self._rconn = None
        self._ring.clear()
        self._started = False

    async def __aenter__(self) -> SQLiteStore:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _check_open(self) -> None:
        if not self._started or self._closing:
            raise StoreClosedError("store is not open")

    # ------------------------------------------------------------------ revisions

    async def current_revision(self) -> int:
        return self._committed_rev

    async def compacted_revision(self) -> int:
        return self._compacted

    # ------------------------------------------------------------------ reads

    def _pool_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect(readonly=True)
            self._local.conn = conn
            with self._pool_lock:
                self._pool_conns.append(conn)
        return conn

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        self._check_open()
        assert self._loop is not None and self._pool is not None

        def run() -> T:
            return fn(self._pool_conn(), *args)

        return await self._loop.run_in_executor(self._pool, run)

    def _inline(self, fn: Callable[..., T], *args: Any) -> T:
        self._check_open()
        assert self._rconn is not None
        return fn(self._rconn, *args)

    @staticmethod
    def _check_rev(conn: sqlite3.Connection, revision: int) -> int:
        """Inside a read transaction: validate ``revision`` against the snapshot; returns the
        snapshot's current revision."""
        current = conn.execute(_SEQ).fetchone()
        current_rev = current[0] if current else 0
        compacted = conn.execute(_COMPACTED).fetchone()[0]
        if revision < compacted:
            raise CompactedError(revision, compacted)
        if revision > current_rev:
            raise FutureRevisionError(revision, current_rev)
        return current_rev

    @staticmethod
    def _r_get(conn: sqlite3.Connection, key: str, revision: int) -> KV | None:
        if revision <= 0:
            row = conn.execute(_GET_LATEST, (key,)).fetchone()
            return None if row is None else KV(key, row[2], row[1], row[0])
        conn.execute("BEGIN")
        try:
            SQLiteStore._check_rev(conn, revision)
            row = conn.execute(_GET_AT, (key, revision)).fetchone()
        finally:
            conn.execute("COMMIT")
        if row is None or row[3]:
            return None
        return KV(key, row[2], row[1], row[0])

    @staticmethod
    def _r_list(
        conn: sqlite3.Connection, prefix: str, revision: int, limit: int, start_key: str
    ) -> ListResult:
        sql_limit = limit + 1 if limit > 0 else -1
        conn.execute("BEGIN")
        try:
            if revision <= 0:
                row = conn.execute(_SEQ).fetchone()
                at = row[0] if row else 0
                cond, params = _cond("c.name", prefix, start_key)
                rows = conn.execute(
                    "SELECT c.name, k.create_revision, k.id, k.value FROM current AS c "
                    f"CROSS JOIN kine AS k ON k.id = c.id WHERE {cond} ORDER BY c.name LIMIT ?",
                    (*params, sql_limit),
                ).fetchall()
            else:
                SQLiteStore._check_rev(conn, revision)
                at = revision
                cond, params = _cond("k.name", prefix, start_key)
                rows = conn.execute(
                    "SELECT k.name, k.create_revision, k.id, k.value FROM kine AS k "
                    f"WHERE {cond} AND k.id <= ? AND k.deleted = 0 AND k.id = "
                    "(SELECT MAX(m.id) FROM kine AS m WHERE m.name = k.name AND m.id <= ?) "
                    "ORDER BY k.name LIMIT ?",
                    (*params, revision, revision, sql_limit),
                ).fetchall()
        finally:
            conn.execute("COMMIT")
        more = limit > 0 and len(rows) > limit
        if more:
            del rows[limit:]
        return ListResult([KV(r[0], r[3], r[1], r[2]) for r in rows], at, more)

    @staticmethod
    def _r_count(conn: sqlite3.Connection, prefix: str) -> int:
        cond, params = _cond("name", prefix)
        return conn.execute(f"SELECT COUNT(*) FROM current WHERE {cond}", params).fetchone()[0]

    async def get(self, key: str, revision: int = 0) -> KV | None:
        # A point read is a few microseconds: cheaper inline than a thread hop.
        return self._inline(self._r_get, key, revision)

    async def list(self, prefix: str, revision: int = 0, limit: int = 0, start_key: str = "") -> ListResult:
        if revision <= 0 and 0 < limit <= _INLINE_LIST_LIMIT:
            return self._inline(self._r_list, prefix, revision, limit, start_key)
        if revision <= 0 and limit == 0:
            # most unlimited lists are small (admission's LimitRanges and quotas, a namespace's
            # pods): answer them inline; only a list that turns out large goes to a reader thread
            probe = self._inline(self._r_list, prefix, revision, _INLINE_LIST_LIMIT, start_key)
            if not probe.more:
                return probe
        # Large or historical lists run in a reader thread so the event loop is not blocked
        # (sqlite3 releases the GIL while stepping).
        return await self._in_thread(self._r_list, prefix, revision, limit, start_key)

    async def count(self, prefix: str) -> int:
        return await self._in_thread(self._r_count, prefix)

    # ------------------------------------------------------------------ writes

    def _submit(self, kind: str, key: str, value: bytes, expected: int) -> asyncio.Future[Any]:
        self._check_open()
        if self._writer_failed:
            raise StoreError("store writer crashed")
        assert self._loop is not None
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put(_WriteOp(kind, key, value, expected, fut))
        return fut

    async def create(self, key: str, value: bytes) -> KV:
        return await self._submit("create", key, bytes(value), 0)

    async def update(self, key: str, value: bytes, expected_revision: int) -> KV:
        return await self._submit("update", key, bytes(value), expected_revision)

    async def delete(self, key: str, expected_revision: int = 0) -> KV:
        return await self._submit("delete", key, b"", expected_revision)

    async def compact(self, revision: int) -> None:
        self._check_open()
        assert self._loop is not None
        if revision > self._committed_rev:
            raise FutureRevisionError(revision, self._committed_rev)
        if revision <= self._compacted:
            return
        fut: asyncio.Future[None] = self._loop.create_future()
        self._queue.put(_CompactJob(revision, fut))
        await fut

    async def _compact_loop(self) -> None:
        while True:
            await asyncio.sleep(self.compact_interval)
            target = self._committed_rev - self.compact_keep
            if target <= self._compacted:
                continue
            try:
                await self.compact(target)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background compaction to revision %d failed", target)

    # ------------------------------------------------------------------ writer thread

    def _writer_main(self, ready: concurrent.futures.Future[tuple[int, int]]) -> None:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=True, cached_statements=256
            )
            conn.execute("PRAGMA busy_timeout = 10000")
            # auto_vacuum only takes effect on a new, empty database: pages freed by compaction
            # are then handed back to the file system by incremental_vacuum.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"cannot enable WAL journal mode on {self.path} (got {mode})")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA cache_size = -64000")
            # Checkpoints (copying the WAL back into the database file, with an fsync) run in
            # the checkpointer thread, off the write path: an automatic checkpoint inside COMMIT
            # was the main source of write-latency spikes (see _checkpointer_main).
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            conn.execute(f"PRAGMA journal_size_limit = {_WAL_LIMIT}")
            conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
            row = conn.execute(_SEQ).fetchone()
            rev = row[0] if row else 0
            compacted = conn.execute(_COMPACTED).fetchone()[0]
        except BaseException as e:  # noqa: BLE001 - hand every failure to start()
            ready.set_exception(e)
            return
        ready.set_result((rev, compacted))
        try:
            self._writer_loop(conn, rev, compacted)
        except BaseException:
            log.critical("SQLite writer thread crashed; the store refuses further writes", exc_info=True)
            self._writer_failed = True
            while True:  # nobody will answer what is queued: fail it
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, _WriteOp | _CompactJob):
                    self._hand_back(self._fail_future, item.future, StoreError("store writer crashed"))
            raise
        finally:
            with contextlib.suppress(Exception):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()

    def _writer_loop(self, conn: sqlite3.Connection, rev: int, compacted: int) -> None:
        q = self._queue
        jobs: collections.deque[_CompactJob] = collections.deque()
        stopping = False
        while not stopping:
            item: Any
            if jobs:
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    item = None
            else:
                item = q.get()
            ops: list[_WriteOp] = []
            while item is not None:
                if item is _STOP:
                    stopping = True
                elif isinstance(item, _CompactJob):
                    jobs.append(item)
                else:
                    ops.append(item)
                if len(ops) >= _MAX_BATCH or stopping:
                    break
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    item = None
            if ops:
                if self._wal_catch_up:
                    self._wal_catch_up = False
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                rev = self._write_batch(conn, ops, rev)
                self._wal_dirty = True
            if jobs and not stopping:
                compacted = self._compact_step(conn, jobs, compacted)
        err = StoreClosedError("store closed during compaction")
        for job in jobs:
            self._hand_back(self._fail_future, job.future, err)
        # Writes enqueued after the stop sentinel (a race with close()) are refused.
        while True:
            try:
                item = q.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _WriteOp | _CompactJob):
                self._hand_back(self._fail_future, item.future, StoreClosedError("store closed"))

    def _hand_back(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # event loop already closed
            loop.call_soon_threadsafe(fn, *args)

    @staticmethod
    def _fail_future(fut: asyncio.Future[Any], exc: BaseException) -> None:
        if not fut.done():
            fut.set_exception(exc)

    def _write_batch(self, conn: sqlite3.Connection, ops: builtins.list[_WriteOp], rev: int) -> int:
        results: list[Any] = []
        events: list[Event] = []
        start_rev = rev
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in ops:
                row = conn.execute(_GET_LATEST, (op.key,)).fetchone()
                kind = op.kind
                if kind == "create":
                    if row is not None:
                        results.append(KeyExistsError(op.key))
                        continue
                    rev += 1
                    conn.execute(_INSERT, (rev, op.key, 1, 0, rev, 0, op.value))
                    conn.execute(_SET_CURRENT, (op.key, rev))
                    kv = KV(op.key, op.value, rev, rev)
                    events.append(Event("PUT", kv, None))
                    results.append(kv)
                    continue
                if row is None:
                    results.append(KeyNotFoundError(op.key))
                    continue
                prev = KV(op.key, row[2], row[1], row[0])
                if op.expected and op.expected != prev.mod_revision:
                    results.append(ConflictError(prev))
                    continue
                rev += 1
                if kind == "update":
                    conn.execute(
                        _INSERT, (rev, op.key, 0, 0, prev.create_revision, prev.mod_revision, op.value)
                    )
                    conn.execute(_SET_CURRENT, (op.key, rev))
                    kv = KV(op.key, op.value, prev.create_revision, rev)
                    events.append(Event("PUT", kv, prev))
                else:
                    conn.execute(
                        _INSERT, (rev, op.key, 0, 1, prev.create_revision, prev.mod_revision, prev.value)
                    )
                    conn.execute(_DEL_CURRENT, (op.key,))
                    kv = KV(op.key, prev.value, prev.create_revision, rev)
                    events.append(Event("DELETE", kv, prev))
                results.append(kv)
            conn.execute("COMMIT")
        except Exception as e:  # an I/O-level failure: nothing of the batch was committed
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")
            err = StoreError(f"write failed: {e}")
            err.__cause__ = e
            for op in ops:
                self._hand_back(self._fail_future, op.future, err)
            return start_rev
        self._committed_rev = rev
        self._hand_back(self._publish, ops, results, events)
        return rev

    def _compact_step(
        self, conn: sqlite3.Connection, jobs: collections.deque[_CompactJob], compacted: int
    ) -> int:
        """Compact one chunk of revisions toward the first job's target (write batches run in
        between chunks, so a large compaction never stalls writers for long)."""
        job = jobs[0]
        if job.target <= compacted:
            jobs.popleft()
            self._hand_back(self._resolve_future, job.future, None)
            return compacted
        lo = compacted
        hi = min(job.target, lo + _COMPACT_CHUNK)
        try:
            conn.execute("BEGIN IMMEDIATE")
            # Rows superseded by a row at or below hi (old versions, and tombstoned values).
            conn.execute(
                "DELETE FROM kine WHERE id IN "
                "(SELECT prev_revision FROM kine WHERE id > ? AND id <= ? AND prev_revision > 0)",
                (lo, hi),
            )
            # Deletion records at or below hi: nobody can ask for them any more.
            conn.execute("DELETE FROM kine WHERE id > ? AND id <= ? AND deleted = 1", (lo, hi))
            conn.execute("UPDATE meta SET value = ? WHERE key = 'compacted'", (hi,))
            conn.execute("COMMIT")
        except Exception as e:
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")
            jobs.popleft()
            self._hand_back(self._fail_future, job.future, StoreError(f"compaction failed: {e}"))
            return compacted
        self._compacted = hi
        if hi >= job.target:
            jobs.popleft()
            try:
                # (executescript: the sqlite3 module steps a PRAGMA only once, freeing one page)
                conn.executescript("PRAGMA incremental_vacuum")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except Exception:
                log.exception("post-compaction vacuum/checkpoint failed")
            self._hand_back(self._resolve_future, job.future, None)
        return hi

    def _checkpointer_main(self) -> None:
        """Keep the WAL small without making writers do the checkpoint work.

        The bulk of each checkpoint (copying pages back into the database file and fsyncing it)
        runs here, concurrently with the writer (PASSIVE never takes the write lock). Under a
        continuous write load such a checkpoint can never catch up with the frames appended
        meanwhile, and SQLite only rewinds the WAL once it is completely backfilled; so after each
        checkpoint the writer is asked to checkpoint the small remainder itself, between two
        batches, after which its next transaction starts the WAL over from the beginning."""
        conn = self._connect(readonly=False)
        try:
            while not self._ckpt_stop.wait(_CHECKPOINT_POLL):
                if not self._wal_dirty:
                    continue
                self._wal_dirty = False
                try:
                    busy, log_frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error:
                    log.exception("WAL checkpoint failed")
                    continue
                if not busy and log_frames > 0:
                    self._wal_catch_up = True
        finally:
            conn.close()

    @staticmethod
    def _resolve_future(fut: asyncio.Future[Any], value: Any) -> None:
        if not fut.done():
            fut.set_result(value)

    # ------------------------------------------------------------------ publish (event loop)

    def _publish(self, ops: builtins.list[_WriteOp], results: builtins.list[Any], events: builtins.list[Event]) -> None:
        if events:
            ring = self._ring
            for ev in events:
                if len(ring) >= _RING_SIZE:
                    self._ring_floor = ring.popleft().kv.mod_revision
                ring.append(ev)
            self._pub_rev = events[-1].kv.mod_revision
            for listener in self._listeners:
                try:
                    listener(events)
                except Exception:  # a listener's bug must not keep the writes' callers waiting
                    log.exception("store listener failed")
            for w in list(self._watchers):
                w._offer(events)
        for op, res in zip(ops, results, strict=True):
            fut = op.future
            if fut.done():
                continue
            if isinstance(res, BaseException):
                fut.set_exception(res)
            else:
                fut.set_result(res)

    # ------------------------------------------------------------------ watch

    def subscribe(self, listener: Callable[[builtins.list[Event]], None]) -> Callable[[], None]:
        """Call ``listener`` with every batch of events as it is published (on the event loop,
        before the writes' callers and the watchers hear of it), until the returned function is
        called. For an in-process cache that must never lag nor overflow as a watcher may."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    def watch(self, prefix: str, from_revision: int) -> _Watcher:
        """See :meth:`kubelite.store.base.Store.watch`. The watcher is registered right away, so
        with ``from_revision=0`` no event committed after this call is missed.

        Cancelling a pending ``__anext__`` closes the watcher (like an async generator). To wait
        with a timeout without ending the watch, use :meth:`_Watcher.next_event`."""
        self._check_open()
        return _Watcher(self, prefix, from_revision)

    @staticmethod
    def _r_replay(conn: sqlite3.Connection, prefix: str, after: int, upto: int, limit: int) -> builtins.list[Event]:
        cond, params = _cond("k.name", prefix)
        conn.execute("BEGIN")
        try:
            compacted = conn.execute(_COMPACTED).fetchone()[0]
            if after < compacted:
                raise CompactedError(after, compacted)
            rows = conn.execute(
                "SELECT k.id, k.name, k.created, k.deleted, k.create_revision, k.value, "
                "p.id, p.create_revision, p.value "
                "FROM kine AS k LEFT JOIN kine AS p ON p.id = k.prev_revision "
                f"WHERE k.id > ? AND k.id <= ? AND {cond} ORDER BY k.id LIMIT ?",
                (after, upto, *params, limit),
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        events = []
        for rid, name, created, deleted, crev, value, pid, pcrev, pvalue in rows:
            prev = None if created or pid is None else KV(name, pvalue, pcrev, pid)
            kv = KV(name, value, crev, rid)
            events.append(Event("DELETE" if deleted else "PUT", kv, prev))
        return events

    async def _replay_page(self, prefix: str, after: int, upto: int) -> tuple[builtins.list[Event], int]:
        """Events in (after, upto] under prefix, at most one page; returns (events, new after)."""
        events = await self._in_thread(self._r_replay, prefix, after, upto, _REPLAY_PAGE)
        if len(events) < _REPLAY_PAGE:
            return events, upto
        return events, events[-1].kv.mod_revision


class _Watcher:
    """Async iterator of events for one watch (created by :meth:`SQLiteStore.watch`)."""

    def __init__(self, store: SQLiteStore, prefix: str, from_revision: int) -> None:
        self._store = store
        self._prefix = prefix
        self._queue: collections.deque[Event] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._done = False
        self._replay_after = 0
        self._replay_upto = 0
        self._replay_buf: collections.deque[Event] = collections.deque()
        if from_revision > 0 and from_revision < store._compacted:
            self._error = CompactedError(from_revision, store._compacted)
            return
        if from_revision <= 0:
            from_revision = store._pub_rev
        self._min_rev = from_revision
        if from_revision < store._ring_floor:
            # History older than the ring comes from the database, the rest from the ring.
            self._replay_after = from_revision
            self._replay_upto = store._ring_floor
        after = max(from_revision, store._ring_floor)
        for ev in store._ring:
            if ev.kv.mod_revision > after and ev.kv.key.startswith(prefix):
                self._queue.append(ev)
        self._limit = len(self._queue) + _WATCH_QUEUE
        self._min_rev = max(from_revision, store._pub_rev)
        store._watchers.add(self)

    # called by the store on the event loop thread, once per committed batch
    def _offer(self, events: builtins.list[Event]) -> None:
        if self._done:
            return
        prefix = self._prefix
        min_rev = self._min_rev
        q = self._queue
        added = False
        for ev in events:
            if ev.kv.mod_revision > min_rev and ev.kv.key.startswith(prefix):
                q.append(ev)
                added = True
        if not added:
            return
        if len(q) > self._limit:
            q.clear()
            self._replay_buf.clear()
            self._error = WatchOverflowError(self._prefix, _WATCH_QUEUE)
            self._store._watchers.discard(self)
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _finish(self) -> None:
        """End the watch (store closed / consumer gone): pending and later __anext__ stop."""
        self._done = True
        self._queue.clear()
        self._replay_buf.clear()
        self._store._watchers.discard(self)
        self._wake()

    @property
    def closed(self) -> bool:
        return self._done

    def __aiter__(self) -> _Watcher:
        return self

    async def aclose(self) -> None:
        self._finish()

    async def __aenter__(self) -> _Watcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._finish()

    def _take(self) -> Event | None:
        if self._error is not None:
            err, self._error = self._error, None
            self._finish()
            raise err
        if self._done:
            raise StopAsyncIteration
        if self._replay_buf:
            return self._replay_buf.popleft()
        if self._replay_after < self._replay_upto:
            return None  # a replay page must be loaded first
        if self._queue:
            return self._queue.popleft()
        return None

    async def _fill(self) -> None:
        """Load the next replay page, or wait for a live event."""
        if self._replay_after < self._replay_upto:
            events, self._replay_after = await self._store._replay_page(
                self._prefix, self._replay_after, self._replay_upto
            )
            self._replay_buf.extend(events)
            return
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def __anext__(self) -> Event:
        try:
            while True:
                ev = self._take()
                if ev is not None:
                    return ev
                await self._fill()
        except BaseException:
            # error, end of watch, or cancellation of the consumer: unregister
            self._finish()
            raise

    async def next_event(self, timeout: float | None = None) -> Event | None:
        """Like ``__anext__`` but returns None after ``timeout`` seconds without an event,
        leaving the watch open (for bookmark/heartbeat loops). Raises StopAsyncIteration at the
        end of the watch."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            while True:
                ev = self._take()
                if ev is not None:
                    return ev
                if self._replay_after < self._replay_upto:
                    await self._fill()
                    continue
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return None
                self._waiter = waiter = loop.create_future()
                try:
                    await asyncio.wait((waiter,), timeout=remaining)
                finally:
                    self._waiter = None
                    if not waiter.done():
                        waiter.cancel()
        except BaseException:
            self._finish()
            raise
