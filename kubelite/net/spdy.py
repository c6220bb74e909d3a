"""SPDY/3.1 framing and a small asyncio session, as used by Kubernetes streams.

Kubernetes uses SPDY only as a stream multiplexer (``moby/spdystream``): SYN_STREAM with
headers such as ``streamtype``/``port``/``requestid`` opens a stream, SYN_REPLY accepts it,
DATA carries bytes, a FIN flag half-closes, RST_STREAM aborts, PING is echoed, GOAWAY
ends the session.  No flow control is enforced (spdystream does not either).  Header
blocks are zlib-compressed with the SPDY/3 dictionary, one compression context per
direction for the whole session.

The session is transport-agnostic: feed it received bytes with :meth:`SpdySession.feed`
(TCP reads, or WebSocket binary messages for ``SPDY/3.1+portforward.k8s.io``) and give it
an async ``send`` for outgoing bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

VERSION = 3

SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02

RST_PROTOCOL_ERROR = 1
RST_INVALID_STREAM = 2
RST_REFUSED_STREAM = 3
RST_CANCEL = 5
RST_STREAM_ALREADY_CLOSED = 9

MAX_FRAME = 0xFFFFFF
DATA_CHUNK = 32 * 1024


def _dictionary() -> bytes:
    words = (
        "options head post put delete trace accept accept-charset accept-encoding accept-language "
        "accept-ranges age allow authorization cache-control connection content-base content-encoding "
        "content-language content-length content-location content-md5 content-range content-type date "
        "etag expect expires from host if-match if-modified-since if-none-match if-range "
        "if-unmodified-since last-modified location max-forwards pragma proxy-authenticate "
        "proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
        "user-agent vary via warning www-authenticate method get status"
    ).split() + ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"]
    out = b"".join(struct.pack(">I", len(w)) + w.encode() for w in words)
    out += (
        b"100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
        b"203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
        b"401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
        b"503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, "
        b"Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/xml,"
        b"application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch"
        b"charset=utf-8charset=iso-8859-1,utf-,*,enq=0."
    )
    return out


DICTIONARY = _dictionary()
assert len(DICTIONARY) == 1423, len(DICTIONARY)


class SpdyProtocolError(Exception):
    pass


Headers = dict[str, list[str]]


@dataclass
class Frame:
    type: int                 # 0 for DATA, else the control frame type
    flags: int = 0
    stream_id: int = 0
    data: bytes = b""         # DATA payload
    headers: Headers = field(default_factory=dict)
    status: int = 0           # RST_STREAM / GOAWAY status
    ping_id: int = 0
    delta: int = 0            # WINDOW_UPDATE
    associated: int = 0
    priority: int = 0
    settings: list[tuple[int, int, int]] = field(default_factory=list)

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


class HeaderCompressor:
    def __init__(self) -> None:
        self._z = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY,
                                   zdict=DICTIONARY)

    def compress(self, headers: Headers) -> bytes:
        raw = [struct.pack(">I", len(headers))]
        for name, values in headers.items():
            n = name.lower().encode()
            v = b"\x00".join(x.encode() for x in values)
            raw += [struct.pack(">I", len(n)), n, struct.pack(">I", len(v)), v]
        return self._z.compress(b"".join(raw)) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    def __init__(self) -> None:
        self._z = zlib.decompressobj(zdict=DICTIONARY)

    def decompress(self, block: bytes) -> Headers:
        try:
            raw = self._z.decompress(block)
        except zlib.error as exc:
            raise SpdyProtocolError(f"header decompression failed: {exc}") from exc
        try:
            (n,) = struct.unpack_from(">I", raw, 0)
            off = 4
            out: Headers = {}
            for _ in range(n):
                (ln,) = struct.unpack_from(">I", raw, off)
                name = raw[off + 4: off + 4 + ln].decode().lower()
                off += 4 + ln
                (lv,) = struct.unpack_from(">I", raw, off)
                value = raw[off + 4: off + 4 + lv].decode()
                off += 4 + lv
                out.setdefault(name, []).extend(value.split("\x00"))
            return out
        except (struct.error, UnicodeDecodeError) as exc:
            raise SpdyProtocolError("malformed header block") from exc


def _control(ftype: int, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME:
        raise SpdyProtocolError("frame too large")
    return struct.pack(">HHI", 0x8000 | VERSION, ftype, (flags << 24) | len(payload)) + payload


def encode_data(stream_id: int, data: bytes, fin: bool = False) -> bytes:
    if len(data) > MAX_FRAME:
        raise SpdyProtocolError("frame too large")
    return struct.pack(">II", stream_id & 0x7FFFFFFF, ((FLAG_FIN if fin else 0) << 24) | len(data)) + data


def encode_syn_stream(comp: HeaderCompressor, stream_id: int, headers: Headers, fin: bool = False,
                      priority: int = 0, associated: int = 0) -> bytes:
    payload = struct.pack(">IIBB", stream_id, associated, (priority & 7) << 5, 0) + comp.compress(headers)
    return _control(SYN_STREAM, FLAG_FIN if fin else 0, payload)


def encode_syn_reply(comp: HeaderCompressor, stream_id: int, headers: Headers, fin: bool = False) -> bytes:
    return _control(SYN_REPLY, FLAG_FIN if fin else 0, struct.pack(">I", stream_id) + comp.compress(headers))


def encode_rst_stream(stream_id: int, status: int) -> bytes:
    return _control(RST_STREAM, 0, struct.pack(">II", stream_id, status))


def encode_ping(ping_id: int) -> bytes:
    return _control(PING, 0, struct.pack(">I", ping_id))


def encode_goaway(last_stream_id: int, status: int = 0) -> bytes:
    return _control(GOAWAY, 0, struct.pack(">II", last_stream_id, status))


def encode_window_update(stream_id: int, delta: int) -> bytes:
    return _control(WINDOW_UPDATE, 0, struct.pack(">II", stream_id, delta))


def encode_settings(entries: list[tuple[int, int, int]]) -> bytes:
    payload = struct.pack(">I", len(entries)) + b"".join(
        struct.pack(">I", (flags << 24) | sid) + struct.pack(">I", value) for flags, sid, value in entries)
    return _control(SETTINGS, 0, payload)


class FrameParser:
    """Incremental parser: feed bytes, get whole frames."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._dec = HeaderDecompressor()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        out: list[Frame] = []
        while len(self._buf) >= 8:
            w1, w2 = struct.unpack_from(">II", self._buf, 0)
            length = w2 & 0xFFFFFF
            if len(self._buf) < 8 + length:
                break
            flags = w2 >> 24
            payload = bytes(self._buf[8: 8 + length])
            del self._buf[: 8 + length]
            if w1 & 0x80000000:
                version = (w1 >> 16) & 0x7FFF
                if version != VERSION:
                    raise SpdyProtocolError(f"unsupported SPDY version {version}")
                out.append(self._control(w1 & 0xFFFF, flags, payload))
            else:
                out.append(Frame(0, flags, w1 & 0x7FFFFFFF, data=payload))
        return out

    def _control(self, ftype: int, flags: int, p: bytes) -> Frame:
        try:
            if ftype == SYN_STREAM:
                sid, assoc = struct.unpack_from(">II", p, 0)
                return Frame(ftype, flags, sid & 0x7FFFFFFF, associated=assoc & 0x7FFFFFFF, priority=p[8] >> 5,
                             headers=self._dec.decompress(p[10:]))
            if ftype in (SYN_REPLY, HEADERS):
                (sid,) = struct.unpack_from(">I", p, 0)
                return Frame(ftype, flags, sid & 0x7FFFFFFF, headers=self._dec.decompress(p[4:]))
            if ftype == RST_STREAM:
                sid, status = struct.unpack_from(">II", p, 0)
                return Frame(ftype, flags, sid & 0x7FFFFFFF, status=status)
            if ftype == PING:
                return Frame(ftype, flags, ping_id=struct.unpack_from(">I", p, 0)[0])
            if ftype == GOAWAY:
                sid, status = struct.unpack_from(">II", p, 0) if len(p) >= 8 else (*struct.unpack_from(">I", p, 0), 0)
                return Frame(ftype, flags, sid & 0x7FFFFFFF, status=status)
            if ftype == WINDOW_UPDATE:
                sid, delta = struct.unpack_from(">II", p, 0)
                return Frame(ftype, flags, sid & 0x7FFFFFFF, delta=delta & 0x7FFFFFFF)
            if ftype == SETTINGS:
                (n,) = struct.unpack_from(">I", p, 0)
                entries = []
                for i in range(n):
                    a, v = struct.unpack_from(">II", p, 4 + 8 * i)
                    entries.append((a >> 24, a & 0xFFFFFF, v))
                return Frame(ftype, flags, settings=entries)
        except struct.error as exc:
            raise SpdyProtocolError(f"malformed control frame type {ftype}") from exc
        return Frame(ftype, flags)  # unknown control frames are ignored


# --------------------------------------------------------------------------- session


class SpdyStream:
    def __init__(self, session: SpdySession, stream_id: int, headers: Headers) -> None:
        self.session = session
        self.id = stream_id
        self.headers = headers
        self.reply_headers: Headers = {}
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.replied = asyncio.Event()
        self.remote_closed = False
        self.local_closed = False
        self.reset = False

    def header(self, name: str, default: str = "") -> str:
        v = self.headers.get(name.lower())
        return v[0] if v else default

    async def read(self) -> bytes:
        """The next chunk of data; b"" once the peer half-closed, reset, or the session ended."""
        if self.remote_closed and self._queue.empty():
            return b""
        chunk = await self._queue.get()
        if chunk is None:
            self._queue.put_nowait(None)  # keep answering EOF
            return b""
        return chunk

    async def write(self, data: bytes) -> None:
        if self.local_closed or self.reset:
            raise ConnectionResetError("stream closed")
        for i in range(0, len(data), DATA_CHUNK):
            await self.session._send(encode_data(self.id, data[i: i + DATA_CHUNK]))

    async def close(self) -> None:
        """Half-close: DATA with FIN."""
        if self.local_closed or self.reset:
            return
        self.local_closed = True
        with contextlib.suppress(ConnectionError):
            await self.session._send(encode_data(self.id, b"", fin=True))

    async def abort(self, status: int = RST_CANCEL) -> None:
        if self.reset:
            return
        self.reset = True
        self._eof()
        with contextlib.suppress(ConnectionError):
            await self.session._send(encode_rst_stream(self.id, status))

    def _deliver(self, data: bytes) -> None:
        if data and not self.remote_closed:
            self._queue.put_nowait(data)

    def _eof(self) -> None:
        if not self.remote_closed:
            self.remote_closed = True
            self._queue.put_nowait(None)


class SpdySession:
    """One SPDY connection over any byte transport.

    ``on_stream(stream)`` is called (as a task owned by the session) for each stream the peer
    opens, after the SYN_REPLY went out.  ``client`` picks odd (client) or even stream ids.
    """

    def __init__(self, send: Callable[[bytes], Awaitable[None]], *, client: bool,
                 on_stream: Callable[[SpdyStream], Awaitable[None]] | None = None) -> None:
        self._raw_send = send
        self._lock = asyncio.Lock()
        self._parser = FrameParser()
        self._comp = HeaderCompressor()
        self.streams: dict[int, SpdyStream] = {}
        self._next_id = 1 if client else 2
        self.on_stream = on_stream
        self.closed = asyncio.Event()
        self._tasks: set[asyncio.Future[None]] = set()
        self.last_remote_id = 0

    async def _send(self, data: bytes) -> None:
        if self.closed.is_set():
            raise ConnectionResetError("SPDY session closed")
        async with self._lock:
            await self._raw_send(data)

    async def open_stream(self, headers: dict[str, str], timeout: float = 30.0) -> SpdyStream:
        """SYN_STREAM and wait for the SYN_REPLY (as spdystream's CreateStream does)."""
        async with self._lock:
            sid = self._next_id
            self._next_id += 2
            st = SpdyStream(self, sid, {k.lower(): [v] for k, v in headers.items()})
            self.streams[sid] = st
            await self._raw_send(encode_syn_stream(self._comp, sid, st.headers))
        waiter = asyncio.ensure_future(st.replied.wait())
        closer = asyncio.ensure_future(self.closed.wait())
        try:
            done, _ = await asyncio.wait({waiter, closer}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            closer.cancel()
        if not st.replied.is_set():
            raise ConnectionError("SPDY stream not accepted" if self.closed.is_set() or st.reset
                                  else "timed out waiting for SPDY stream reply")
        return st

    async def feed(self, data: bytes) -> None:
        for fr in self._parser.feed(data):
            await self._handle(fr)

    async def _handle(self, fr: Frame) -> None:
        if fr.type == 0:
            st = self.streams.get(fr.stream_id)
            if st is None:
                return
            st._deliver(fr.data)
            if fr.fin:
                st._eof()
        elif fr.type == SYN_STREAM:
            self.last_remote_id = max(self.last_remote_id, fr.stream_id)
            st = SpdyStream(self, fr.stream_id, fr.headers)
            self.streams[fr.stream_id] = st
            async with self._lock:
                await self._raw_send(encode_syn_reply(self._comp, fr.stream_id, {}))
            st.replied.set()
            if fr.fin:
                st._eof()
            if self.on_stream is not None:
                t: asyncio.Future[None] = asyncio.ensure_future(self.on_stream(st))
                self._tasks.add(t)
                t.add_done_callback(self._tasks.discard)
        elif fr.type == SYN_REPLY:
            st = self.streams.get(fr.stream_id)
            if st is not None:
                st.reply_headers = fr.headers
                st.replied.set()
                if fr.fin:
                    st._eof()
        elif fr.type == RST_STREAM:
            st = self.streams.get(fr.stream_id)
            if st is not None:
                st.reset = True
                st._eof()
        elif fr.type == PING:
            # echo pings the peer started (ids of the other parity); ignore our own echoes
            with contextlib.suppress(ConnectionError):
                await self._send(encode_ping(fr.ping_id))
        elif fr.type == GOAWAY:
            self.close()
        elif fr.type == HEADERS:
            st = self.streams.get(fr.stream_id)
            if st is not None and fr.fin:
                st._eof()

    def remove(self, st: SpdyStream) -> None:
        self.streams.pop(st.id, None)

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for st in list(self.streams.values()):
            st._eof()
        for t in list(self._tasks):
            t.cancel()

    async def goaway(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._send(encode_goaway(self.last_remote_id))
        self.close()

    async def wait_tasks(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


# --------------------------------------------------------------------------- SPDY over TCP (client)


class SpdyUpgradeError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"upgrade failed with HTTP {status}: {body}")
        self.status = status
        self.body = body


async def connect_upgrade(url: str, protocols: list[str], timeout: float = 10.0,
                          on_stream: Callable[[SpdyStream], Awaitable[None]] | None = None,
                          ) -> tuple[SpdySession, str, asyncio.Task]:
    """HTTP/1.1 ``Upgrade: SPDY/3.1`` to a plain-http stream server (containerd's).

    Returns the session, the negotiated ``X-Stream-Protocol-Version`` and the reader task
    (cancel it to drop the connection).
    """
    from urllib.parse import urlsplit

    u = urlsplit(url)
    if u.scheme not in ("http", ""):
        raise ValueError(f"unsupported stream URL scheme {u.scheme!r}")
    host = u.hostname or "127.0.0.1"
    port = u.port or 80
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    path = u.path + (f"?{u.query}" if u.query else "")
    lines = [f"POST {path} HTTP/1.1", f"Host: {u.netloc}", "Connection: Upgrade", "Upgrade: SPDY/3.1",
             "Content-Length: 0", "User-Agent: kubelite-agent"]
    lines += [f"X-Stream-Protocol-Version: {p}" for p in protocols]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as exc:
        writer.close()
        raise ConnectionError(f"no upgrade response from {host}:{port}") from exc
    status_line, *hdr_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    hdrs = {}
    for h in hdr_lines:
        if ":" in h:
            k, v = h.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
    if status != 101:
        body = b""
        with contextlib.suppress(Exception):
            n = int(hdrs.get("content-length", "0") or 0)
            body = await asyncio.wait_for(reader.readexactly(n) if n else reader.read(4096), 2)
        writer.close()
        raise SpdyUpgradeError(status, body.decode("utf-8", "replace").strip())

    async def send(data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    session = SpdySession(send, client=True, on_stream=on_stream)

    async def pump() -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await session.feed(data)
        except (ConnectionError, SpdyProtocolError):
            pass
        finally:
            session.close()
            writer.close()

    task = asyncio.create_task(pump(), name="spdy-reader")
    return session, hdrs.get("x-stream-protocol-version", ""), task
