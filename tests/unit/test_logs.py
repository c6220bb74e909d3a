"""CRI log files read like the kubelet reads them: partial lines, tail, since, limitBytes, rotation."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
from pathlib import Path

import pytest

from kubelite.agent import logs

T0 = dt.datetime(2016, 10, 6, 0, 17, 9, 669794, tzinfo=dt.UTC)


def _write(path: Path, records: list[tuple[int, str, str, bool]]) -> None:
    with open(path, "ab") as f:
        for sec, stream, text, partial in records:
            f.write(logs.format_cri_line(T0 + dt.timedelta(seconds=sec), stream, text.encode(), partial))


async def _read(path: Path, **kw) -> bytes:
    out: list[bytes] = []

    async def write(stream: str, data: bytes) -> None:
        out.append(data)

    await logs.read_logs(path, logs.LogOptions(**kw), write)
    return b"".join(out)


def test_parse_cri_line_full_and_partial():
    m = logs.parse_cri_line(b"2016-10-06T00:17:09.669794202Z stdout F log line\n")
    assert (m.stream, m.log) == ("stdout", b"log line\n")
    assert m.timestamp.format() == "2016-10-06T00:17:09.669794202Z"
    m = logs.parse_cri_line(b"2016-10-06T00:17:09.669794200+02:00 stderr P part")
    assert (m.stream, m.log) == ("stderr", b"part")
    assert m.timestamp.format() == "2016-10-06T00:17:09.6697942+02:00"
    m = logs.parse_cri_line(b"2016-10-06T00:17:09Z stdout F \n")
    assert m.log == b"\n" and m.timestamp.format() == "2016-10-06T00:17:09Z"
    with pytest.raises(logs.LogFormatError):
        logs.parse_cri_line(b"garbage")
    with pytest.raises(logs.LogFormatError):
        logs.parse_cri_line(b"2016-10-06T00:17:09Z stdin F x")


async def test_partial_lines_joined_and_timestamps(tmp_path):
    p = tmp_path / "0.log"
    _write(p, [(0, "stdout", "hel", True), (1, "stdout", "lo", False), (2, "stderr", "err", False)])
    assert await _read(p) == b"hello\nerr\n"
    ts = await _read(p, timestamps=True)
    # the prefix goes on the first chunk of a line only
    assert ts == (b"2016-10-06T00:17:09.669794Z hello\n"
                  b"2016-10-06T00:17:11.669794Z err\n")


async def test_tail_since_limit(tmp_path):
    p = tmp_path / "0.log"
    _write(p, [(i, "stdout", f"line {i}", False) for i in range(10)])
    assert await _read(p, tail=2) == b"line 8\nline 9\n"
    assert await _read(p, tail=0) == b""
    assert await _read(p, tail=100) == b"".join(b"line %d\n" % i for i in range(10))
    since = logs.parse_timestamp("2016-10-06T00:17:16.669794Z").ns
    assert await _read(p, since_ns=since) == b"line 7\nline 8\nline 9\n"
    assert await _read(p, limit_bytes=9) == b"line 0\nli"
    assert await _read(p, stderr=False) == await _read(p)
    assert await _read(p, stdout=False) == b""


def test_tail_start_matches_kubelet_for_large_files(tmp_path):
    p = tmp_path / "big.log"
    p.write_bytes(b"".join(b"x" * 1000 + b"%d\n" % i for i in range(50)))
    with open(p, "rb") as f:
        start = logs.tail_start(f, 3)
        f.seek(start)
        assert f.read().splitlines() == [b"x" * 1000 + b"%d" % i for i in (47, 48, 49)]


def test_options_from_query():
    now = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    o = logs.LogOptions.from_query({"tailLines": "3", "timestamps": "true", "sinceSeconds": "10"}, now)
    assert o.tail == 3 and o.timestamps and o.since_ns == int(now.timestamp() * 1e9) - 10 * 10**9
    with pytest.raises(ValueError, match="at most one"):
        logs.LogOptions.from_query({"sinceSeconds": "1", "sinceTime": "2020-01-01T00:00:00Z"})
    with pytest.raises(ValueError):
        logs.LogOptions.from_query({"limitBytes": "0"})


async def test_follow_sees_new_data_and_rotation(tmp_path):
    p = tmp_path / "0.log"
    _write(p, [(0, "stdout", "one", False)])
    out: list[bytes] = []
    running = True

    async def write(stream: str, data: bytes) -> None:
        out.append(data)

    async def is_running() -> bool:
        return running

    task = asyncio.create_task(logs.read_logs(p, logs.LogOptions(follow=True), write, is_running,
                                              poll_interval=0.01, state_check_period=0.05))
    await _until(lambda: b"".join(out) == b"one\n")
    _write(p, [(1, "stdout", "two", False)])
    await _until(lambda: b"".join(out) == b"one\ntwo\n")
    # rotation: rename, the runtime reopens a fresh file
    p.rename(tmp_path / "0.log.20200101-000000")
    _write(p, [(2, "stdout", "three", False)])
    await _until(lambda: b"".join(out) == b"one\ntwo\nthree\n")
    running = False
    await asyncio.wait_for(task, 2)


async def test_rotator_renames_compresses_and_keeps_max_files(tmp_path, monkeypatch):
    d = tmp_path / "c"
    d.mkdir()
    p = d / "0.log"
    reopened: list[str] = []

    async def containers():
        return [("cid", str(p))]

    async def reopen(cid: str) -> None:
        reopened.append(cid)
        p.touch()

    stamps = iter(f"20200101-00000{i}" for i in range(10))
    monkeypatch.setattr(logs, "rotation_stamp", lambda now=None: next(stamps))
    rot = logs.LogRotator(containers, reopen, max_size=100, max_files=3)
    for _ in range(4):
        _write(p, [(j, "stdout", "x" * 30, False) for j in range(5)])
        await rot.rotate_all()
    assert reopened == ["cid"] * 4
    names = sorted(x.name for x in d.iterdir())
    # max_files=3: the live file + at most 2 rotated (older ones gzipped)
    assert names == ["0.log", "0.log.20200101-000002.gz", "0.log.20200101-000003"]
    assert b"xxxx" in gzip.decompress((d / "0.log.20200101-000002.gz").read_bytes())
    # below the limit: nothing happens
    await rot.rotate_all()
    assert reopened == ["cid"] * 4


# --------------------------------------------------------------------------- API server checks (pods/log)


def _pod(containers=("a", "b"), statuses=None, init=()):
    return {"metadata": {"name": "x"}, "spec": {"containers": [{"name": c} for c in containers],
                                                "initContainers": [{"name": c} for c in init]},
            "status": {"containerStatuses": statuses or []}}


def test_validate_container_messages():
    from kubelite.api.errors import StatusError
    from kubelite.apiserver import streams

    assert streams._validate_container(_pod(("only",)), "") == "only"
    with pytest.raises(StatusError) as exc:
        streams._validate_container(_pod(), "")
    assert exc.value.code == 400
    assert exc.value.message == "a container name must be specified for pod x, choose one of: [a b]"
    with pytest.raises(StatusError) as exc:
        streams._validate_container(_pod(init=("i",)), "")
    assert exc.value.message.endswith("choose one of: [i a b]")
    with pytest.raises(StatusError) as exc:
        streams._validate_container(_pod(), "zz")
    assert exc.value.message == "container zz is not valid for pod x"


def test_log_status_checks_like_the_kubelet():
    from kubelite.api.errors import StatusError
    from kubelite.apiserver import streams

    def msg(pod, c="a", previous=False):
        with pytest.raises(StatusError) as exc:
            streams._check_log_status(pod, c, previous)
        assert exc.value.code == 400
        return exc.value.message

    assert msg(_pod()) == 'container "a" in pod "x" is waiting to start: ContainerCreating'
    assert msg(_pod(init=("i",))) == 'container "a" in pod "x" is waiting to start: PodInitializing'
    waiting = [{"name": "a", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]
    assert msg(_pod(statuses=waiting)) == ('container "a" in pod "x" is waiting to start: trying and failing '
                                           "to pull image")
    running = [{"name": "a", "state": {"running": {}}, "lastState": {}}]
    streams._check_log_status(_pod(statuses=running), "a", False)
    assert msg(_pod(statuses=running), previous=True) == 'previous terminated container "a" in pod "x" not found'
    restarted = [{"name": "a", "state": {"running": {}},
                  "lastState": {"terminated": {"containerID": "containerd://1", "exitCode": 1}}}]
    streams._check_log_status(_pod(statuses=restarted), "a", True)
    assert msg(_pod(statuses=running), c="b") == 'container "b" in pod "x" is not available'


def test_log_options_validation():
    from kubelite.api.errors import StatusError
    from kubelite.apiserver import streams

    with pytest.raises(StatusError) as exc:
        streams._validate_log_options("x", {"tailLines": "-1", "limitBytes": "0"})
    assert exc.value.code == 422 and "tailLines" in exc.value.message and "limitBytes" in exc.value.message
    with pytest.raises(StatusError) as exc:
        streams._validate_log_options("x", {"sinceSeconds": "5", "sinceTime": "2020-01-01T00:00:00Z"})
    assert "at most one of `sinceTime` or `sinceSeconds` may be specified" in exc.value.message
    streams._validate_log_options("x", {"tailLines": "0", "sinceSeconds": "5"})


async def _until(cond, timeout: float = 5.0) -> None:
    """Poll ``cond`` with a deadline (the follower runs in the background)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "condition not reached before the deadline"
        await asyncio.sleep(0.01)
