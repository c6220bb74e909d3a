"""SPDY/3.1 frames and the session, both directions."""

from __future__ import annotations

import asyncio
import zlib

import pytest

from kubelite.net import spdy


def test_dictionary_is_the_spdy3_one():
    assert len(spdy.DICTIONARY) == 1423
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.DICTIONARY.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")
    # a compressed block names the dictionary by its Adler-32 (FDICT set in the zlib header)
    block = spdy.HeaderCompressor().compress({"a": ["b"]})
    assert block[1] & 0x20 and int.from_bytes(block[2:6], "big") == zlib.adler32(spdy.DICTIONARY)


def test_frames_roundtrip():
    comp = spdy.HeaderCompressor()
    wire = (spdy.encode_syn_stream(comp, 1, {"streamType": ["error"], "port": ["8080"], "requestID": ["0"]})
            + spdy.encode_syn_reply(comp, 1, {}, fin=False)
            + spdy.encode_data(1, b"hello", fin=True)
            + spdy.encode_rst_stream(3, spdy.RST_CANCEL)
            + spdy.encode_ping(7) + spdy.encode_window_update(1, 1000) + spdy.encode_settings([(0, 7, 65536)])
            + spdy.encode_goaway(5))
    parser = spdy.FrameParser()
    frames = []
    for i in range(0, len(wire), 3):  # arbitrary split points
        frames += parser.feed(wire[i:i + 3])
    types = [f.type for f in frames]
    assert types == [spdy.SYN_STREAM, spdy.SYN_REPLY, 0, spdy.RST_STREAM, spdy.PING, spdy.WINDOW_UPDATE,
                     spdy.SETTINGS, spdy.GOAWAY]
    syn = frames[0]
    assert syn.stream_id == 1 and syn.headers == {"streamtype": ["error"], "port": ["8080"], "requestid": ["0"]}
    assert frames[2].data == b"hello" and frames[2].fin
    assert frames[3].status == spdy.RST_CANCEL and frames[4].ping_id == 7 and frames[5].delta == 1000
    assert frames[6].settings == [(0, 7, 65536)] and frames[7].stream_id == 5


def test_data_frame_layout():
    assert spdy.encode_data(3, b"ab", fin=True) == b"\x00\x00\x00\x03\x01\x00\x00\x02ab"
    assert spdy.encode_ping(1)[:4] == b"\x80\x03\x00\x06"


def test_bad_version_rejected():
    with pytest.raises(spdy.SpdyProtocolError):
        spdy.FrameParser().feed(b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01")


async def test_session_pair_streams_and_half_close():
    a_to_b: asyncio.Queue[bytes] = asyncio.Queue()
    b_to_a: asyncio.Queue[bytes] = asyncio.Queue()
    accepted: list[spdy.SpdyStream] = []

    async def on_stream(st: spdy.SpdyStream) -> None:
        accepted.append(st)
        data = await st.read()
        await st.write(data.upper())
        assert await st.read() == b""  # client half-closed
        await st.close()

    client = spdy.SpdySession(a_to_b.put, client=True)
    server = spdy.SpdySession(b_to_a.put, client=False, on_stream=on_stream)

    async def pump(q: asyncio.Queue[bytes], dst: spdy.SpdySession) -> None:
        while True:
            await dst.feed(await q.get())

    pumps = [asyncio.create_task(pump(a_to_b, server)), asyncio.create_task(pump(b_to_a, client))]
    try:
        st = await client.open_stream({"streamtype": "data", "port": "80"}, timeout=2)
        assert st.id == 1
        await st.write(b"ping")
        assert await asyncio.wait_for(st.read(), 2) == b"PING"
        await st.close()
        assert await asyncio.wait_for(st.read(), 2) == b""
        assert accepted[0].header("port") == "80"
        st2 = await client.open_stream({"streamtype": "error"}, timeout=2)
        assert st2.id == 3
    finally:
        for p in pumps:
            p.cancel()
        client.close()
        server.close()
        await server.wait_tasks()
