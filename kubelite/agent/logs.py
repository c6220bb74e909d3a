"""Container log files in the CRI format, read the way the kubelet reads them.

A CRI log line is ``<RFC3339Nano timestamp> <stdout|stderr> <P|F> <content>\\n``; ``P`` marks a
partial line (the runtime split a long line, the rest follows in the next record), ``F`` a
full one whose newline the record itself dropped.  Mirrors ``pkg/kubelet/kuberuntime/logs``:
``tailLines`` counts raw file lines, ``sinceTime`` skips older records, ``limitBytes`` cuts
the output, ``timestamps`` prefixes the first chunk of every line, ``follow`` waits for new
data and for the runtime to reopen the file after a rotation.

:class:`LogRotator` is the kubelet's container log manager: ``<n>.log`` over the size limit
is renamed to ``<n>.log.<timestamp>``, older rotated files are gzipped, only ``max_files``
files are kept and the runtime is asked to reopen the log (CRI ``ReopenContainerLog``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gzip
import logging
import os
import re
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

STDOUT = "stdout"
STDERR = "stderr"
POLL_INTERVAL = 0.1            # how often follow looks for new data (the kubelet uses inotify)
STATE_CHECK_PERIOD = 5.0       # how often follow asks whether the container still runs
_TAIL_BLOCK = 4096


class LogFormatError(ValueError):
    pass


@dataclass
class Timestamp:
    """An RFC3339Nano instant that keeps its nanoseconds and its zone for re-formatting."""

    when: dt.datetime   # aware, microsecond precision
    nanos: int          # 0..999_999_999

    @property
    def ns(self) -> int:
        """Nanoseconds since the epoch (for comparisons)."""
        base = self.when.replace(microsecond=0)
        return int(base.timestamp()) * 1_000_000_000 + self.nanos

    def format(self) -> str:
        """Go's time.RFC3339Nano: fractional seconds without trailing zeros, Z for UTC."""
        s = self.when.strftime("%Y-%m-%dT%H:%M:%S")
        if self.nanos:
            s += "." + f"{self.nanos:09d}".rstrip("0")
        off = self.when.utcoffset() or dt.timedelta(0)
        if off == dt.timedelta(0):
            return s + "Z"
        total = int(off.total_seconds())
        sign = "+" if total >= 0 else "-"
        total = abs(total)
        return f"{s}{sign}{total // 3600:02d}:{total % 3600 // 60:02d}"


_TS_RE = re.compile(rb"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$")


def parse_timestamp(raw: bytes | str) -> Timestamp:
    if isinstance(raw, str):
        raw = raw.encode()
    m = _TS_RE.match(raw)
    if not m:
        raise LogFormatError(f"invalid timestamp {raw!r}")
    y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
    frac = m.group(7) or b""
    nanos = int(frac.ljust(9, b"0")) if frac else 0
    z = m.group(8)
    if z in (b"Z", b"z"):
        tz = dt.UTC
    else:
        sign = 1 if z[:1] == b"+" else -1
        tz = dt.timezone(sign * dt.timedelta(hours=int(z[1:3]), minutes=int(z[4:6])))
    try:
        when = dt.datetime(y, mo, d, h, mi, s, nanos // 1000, tzinfo=tz)
    except ValueError as exc:
        raise LogFormatError(str(exc)) from exc
    return Timestamp(when, nanos)


@dataclass
class LogMessage:
    timestamp: Timestamp
    stream: str
    log: bytes  # content, with "\n" appended for full lines


def parse_cri_line(line: bytes) -> LogMessage:
    """Parse one record (with or without its trailing newline)."""
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        raise LogFormatError(f"invalid CRI log line {line!r}")
    ts = parse_timestamp(parts[0])
    stream = parts[1].decode("ascii", "replace")
    if stream not in (STDOUT, STDERR):
        raise LogFormatError(f"unexpected stream type {stream!r}")
    content = parts[3] if len(parts) == 4 else b""
    if content.endswith(b"\n"):
        content = content[:-1]
    tags = parts[2].split(b":")
    if tags[0] == b"F":
        content += b"\n"
    elif tags[0] != b"P":
        raise LogFormatError(f"unexpected tag {parts[2]!r}")
    return LogMessage(ts, stream, content)


def format_cri_line(ts: dt.datetime, stream: str, content: bytes, partial: bool = False) -> bytes:
    """One record as a runtime writes it (for tests and tools)."""
    stamp = Timestamp(ts, ts.microsecond * 1000).format()
    return b"%s %s %s %s\n" % (stamp.encode(), stream.encode(), b"P" if partial else b"F", content)


@dataclass
class LogOptions:
    """What a /containerLogs request asks for (already validated)."""

    tail: int = -1                       # -1: all lines
    since_ns: int | None = None          # skip records older than this (epoch nanoseconds)
    timestamps: bool = False
    limit_bytes: int | None = None
    follow: bool = False
    stdout: bool = True
    stderr: bool = True

    @classmethod
    def from_query(cls, q, now: dt.datetime | None = None) -> LogOptions:
        """From the kubelet's query parameters; ValueError with the kubelet-style text on bad input."""
        o = cls()
        o.follow = _qbool(q.get("follow"))
        o.timestamps = _qbool(q.get("timestamps"))
        if q.get("tailLines") not in (None, ""):
            o.tail = _qint(q["tailLines"], "tailLines")
            if o.tail < 0:
                raise ValueError("tailLines: Invalid value: must be greater than or equal to 0")
        if q.get("limitBytes") not in (None, ""):
            o.limit_bytes = _qint(q["limitBytes"], "limitBytes")
            if o.limit_bytes < 1:
                raise ValueError("limitBytes: Invalid value: must be greater than 0")
        if q.get("sinceSeconds") not in (None, "") and q.get("sinceTime") not in (None, ""):
            raise ValueError("at most one of `sinceTime` or `sinceSeconds` may be specified")
        if q.get("sinceSeconds") not in (None, ""):
            secs = _qint(q["sinceSeconds"], "sinceSeconds")
            if secs < 1:
                raise ValueError("sinceSeconds: Invalid value: must be greater than 0")
            now = now or dt.datetime.now(dt.UTC)
            o.since_ns = int(now.timestamp() * 1e9) - secs * 1_000_000_000
        elif q.get("sinceTime") not in (None, ""):
            try:
                o.since_ns = parse_timestamp(q["sinceTime"]).ns
            except LogFormatError as exc:
                raise ValueError(f"sinceTime: invalid value {q['sinceTime']!r}") from exc
        stream = q.get("stream") or "All"
        if stream == "Stdout":
            o.stderr = False
        elif stream == "Stderr":
            o.stdout = False
        return o


def _qbool(v: str | None) -> bool:
    return (v or "").lower() in ("true", "1", "t", "yes")


def _qint(v: str, name: str) -> int:
    try:
        return int(v)
    except ValueError as exc:
        raise ValueError(f"{name}: invalid value {v!r}") from exc


def tail_start(f, n: int) -> int:
    """Offset of the n-th raw line counted from the end (kubelet tail.FindTailLineStartIndex)."""
    if n < 0:
        return 0
    size = f.seek(0, os.SEEK_END)
    pos = size
    count = 0
    while pos > 0:
        step = min(_TAIL_BLOCK, pos)
        pos -= step
        f.seek(pos)
        block = f.read(step)
        end = len(block)
        while True:
            i = block.rfind(b"\n", 0, end)
            if i < 0:
                break
            count += 1
            if count == n + 1:  # the newline that ends the line before the n last ones
                return pos + i + 1
            end = i
    return 0


Writer = Callable[[str, bytes], Awaitable[None]]


class LimitReached(Exception):
    pass


class _LogWriter:
    def __init__(self, opts: LogOptions, write: Writer) -> None:
        self.opts = opts
        self.write_fn = write
        self.remain = opts.limit_bytes if opts.limit_bytes is not None else None

    async def write(self, msg: LogMessage, add_prefix: bool) -> None:
        if self.opts.since_ns is not None and msg.timestamp.ns < self.opts.since_ns:
            return
        line = msg.log
        if self.opts.timestamps and add_prefix:
            line = msg.timestamp.format().encode() + b" " + line
        if (msg.stream == STDOUT and not self.opts.stdout) or (msg.stream == STDERR and not self.opts.stderr):
            return
        if self.remain is not None and len(line) > self.remain:
            line = line[: self.remain]
        await self.write_fn(msg.stream, line)
        if self.remain is not None:
            self.remain -= len(line)
            if self.remain <= 0:
                raise LimitReached


async def read_logs(path: Path | str, opts: LogOptions, write: Writer,
                    is_running: Callable[[], Awaitable[bool]] | None = None,
                    poll_interval: float = POLL_INTERVAL,
                    state_check_period: float = STATE_CHECK_PERIOD) -> None:
    """Stream the log file at ``path`` to ``write(stream, data)``.

    With ``opts.follow`` keep going until ``is_running()`` says the container stopped and the
    file has no more data; a rotation (the path now names a new file) switches to the new
    file once the old one is drained.
    """
    path = Path(os.path.realpath(path))
    f = open(path, "rb")  # noqa: SIM115 - replaced on rotation, closed in finally
    try:
        f.seek(tail_start(f, opts.tail))
        limited = opts.tail >= 0 and not opts.follow
        remaining = opts.tail
        writer = _LogWriter(opts, write)
        is_new_line = True
        pending = b""
        loop = asyncio.get_running_loop()
        last_state_check = loop.time()
        running = True
        while True:
            if limited and remaining == 0:
                return
            chunk = f.readline()
            if not chunk.endswith(b"\n"):
                if not opts.follow:
                    if not chunk and not pending:
                        return
                    chunk = pending + chunk  # an incomplete last line is still written
                    pending = b""
                    if not chunk:
                        return
                else:
                    pending += chunk
                    # at EOF: wait for more data, a rotation, or the container's end
                    if not running:
                        return
                    rotated = _rotated(f, path)
                    if rotated is not None:
                        if pending:
                            log.debug("dropping incomplete line before rotation in %s", path)
                        f.close()
                        f = rotated
                        pending = b""
                        continue
                    await asyncio.sleep(poll_interval)
                    if is_running is not None and loop.time() - last_state_check >= state_check_period:
                        last_state_check = loop.time()
                        running = await is_running()
                    continue
            else:
                chunk = pending + chunk
                pending = b""
            try:
                msg = parse_cri_line(chunk)
            except LogFormatError as exc:
                log.debug("skipping unparsable log line in %s: %s", path, exc)
                continue
            try:
                await writer.write(msg, is_new_line)
            except LimitReached:
                return
            if limited:
                remaining -= 1
            is_new_line = msg.log.endswith(b"\n") if msg.log else True
    finally:
        f.close()


def _rotated(f, path: Path):
    """A new file at ``path`` (after rotation) once the old one is fully read, else None."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    cur = os.fstat(f.fileno())
    if (st.st_ino, st.st_dev) == (cur.st_ino, cur.st_dev):
        return None
    if f.tell() < cur.st_size:
        return None  # the old file still has data (written before the runtime reopened)
    try:
        return open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        return None


# --------------------------------------------------------------------------- rotation

DEFAULT_MAX_SIZE = 10 * 1024 * 1024
DEFAULT_MAX_FILES = 5
_ROTATED_RE = re.compile(r"\.log\.(\d{8}-\d{6}(?:\.\d+)?)(\.gz)?$")


def rotation_stamp(now: dt.datetime | None = None) -> str:
    """The kubelet's rotated-file suffix format: 20060102-150405."""
    now = now or dt.datetime.now(dt.UTC)
    return now.strftime("%Y%m%d-%H%M%S")


class LogRotator:
    """Size-based rotation of container logs (kubelet ContainerLogManager semantics).

    ``containers`` yields (container_id, log_path) for the running containers; ``reopen`` asks
    the runtime to reopen a container's log (CRI ReopenContainerLog).  Call :meth:`rotate_all`
    periodically (the kubelet does it every 10 s).
    """

    def __init__(self, containers: Callable[[], Awaitable[list[tuple[str, str]]]],
                 reopen: Callable[[str], Awaitable[None]], max_size: int = DEFAULT_MAX_SIZE,
                 max_files: int = DEFAULT_MAX_FILES) -> None:
        if max_files < 2:
            raise ValueError("max_files must be at least 2")
        self.containers = containers
        self.reopen = reopen
        self.max_size = max_size
        self.max_files = max_files

    async def rotate_all(self) -> None:
        for cid, path in await self.containers():
            try:
                await self.rotate_if_needed(cid, Path(path))
            except Exception:  # one container's failure must not stop the others
                log.exception("rotating log of container %s failed", cid)

    async def rotate_if_needed(self, cid: str, path: Path) -> bool:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return False
        if size < self.max_size:
            return False
        await asyncio.to_thread(self._clean, path)
        rotated = path.with_name(f"{path.name}.{rotation_stamp()}")
        n = 0
        while rotated.exists() or Path(str(rotated) + ".gz").exists():
            n += 1
            rotated = path.with_name(f"{path.name}.{rotation_stamp()}.{n}")
        os.rename(path, rotated)
        try:
            await self.reopen(cid)
        except Exception:
            # the runtime keeps writing to the renamed file: put it back (kubelet does the same)
            with contextlib.suppress(OSError):
                os.rename(rotated, path)
            raise
        await asyncio.to_thread(self._compress_old, path)
        return True

    def _rotated_files(self, path: Path) -> list[Path]:
        out = [p for p in path.parent.glob(path.name + ".*") if _ROTATED_RE.search(p.name)
               and not p.name.endswith(".tmp")]
        return sorted(out, key=lambda p: p.name)

    def _clean(self, path: Path) -> None:
        """Keep at most max_files - 2 rotated files before a new rotation adds one."""
        files = self._rotated_files(path)
        excess = len(files) - (self.max_files - 2)
        for p in files[: max(0, excess)]:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def _compress_old(self, path: Path) -> None:
        """Gzip every rotated file except the newest (a reader may still drain it)."""
        files = [p for p in self._rotated_files(path) if not p.name.endswith(".gz")]
        for p in files[:-1]:
            tmp = p.with_name(p.name + ".gz.tmp")
            with open(p, "rb") as src, gzip.open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(tmp, p.with_name(p.name + ".gz"))
            p.unlink()
