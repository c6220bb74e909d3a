"""Choosing the datastore: `kubelite server --datastore-endpoint` flags, the data dir's record of
its datastore, and SQLite-only commands refusing on an etcd data dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubelite.cli.main import main
from kubelite.config import ServerConfig
from kubelite.launcher.server import make_store
from kubelite.store.datastore import DatastoreMismatch, check_and_record, recorded
from kubelite.store.etcd import EtcdStore, parse_endpoints
from kubelite.store.sqlite import SQLiteStore


def test_parse_endpoints() -> None:
    assert parse_endpoints("https://h1:2379, https://h2:2380,http://[::1]:1") == [
        ("https", "h1:2379"), ("https", "h2:2380"), ("http", "[::1]:1")]
    assert parse_endpoints("127.0.0.1:2379") == [("http", "127.0.0.1:2379")]
    assert parse_endpoints("https://h") == [("https", "h:2379")]
    for bad in ("", "sqlite:///var/lib/db", "mysql://u@h/db", "https://"):
        with pytest.raises(ValueError):
            parse_endpoints(bad)


def test_make_store_follows_the_flags(tmp_path: Path) -> None:
    assert isinstance(make_store(ServerConfig(data_dir=tmp_path)), SQLiteStore)
    s = make_store(ServerConfig(data_dir=tmp_path, datastore_endpoint="https://a:2379,https://b:2379",
                                datastore_prefix="/c2"))
    assert isinstance(s, EtcdStore) and s.key_prefix == "/c2" and len(s.endpoints) == 2


def test_etcd_key_mapping() -> None:
    s = EtcdStore("http://127.0.0.1:1", key_prefix="/registry")
    assert s._ekey("/registry/core/pods/ns/a") == b"/registry/core/pods/ns/a"
    assert s._lkey(b"/registry/core/pods/ns/a") == "/registry/core/pods/ns/a"
    assert s._eprefix("") == s._eprefix("/registry") == b"/registry/"  # never /registryX
    other = EtcdStore("http://127.0.0.1:1", key_prefix="/kl2/")
    assert other._ekey("/registry/core/pods/ns/a") == b"/kl2/core/pods/ns/a"
    assert s._resource_prefix("/registry/core/pods/ns/a") == "/registry/core/pods/"
    assert s._resource_prefix("/registry/core/pods/") == "/registry/core/pods/"
    assert s._resource_prefix("/registry/core/") == "/registry/core/"
    with pytest.raises(ValueError):
        s._ekey("/elsewhere/a")


def test_data_dir_refuses_a_change_of_datastore(tmp_path: Path) -> None:
    db = tmp_path / "db" / "state.db"
    db.parent.mkdir(parents=True)
    check_and_record(db, "")  # fresh, SQLite
    check_and_record(db, "https://e:2379")  # fresh, now etcd: recorded
    check_and_record(db, "https://e:2379")
    with pytest.raises(DatastoreMismatch, match="--datastore-endpoint https://e:2379"):
        check_and_record(db, "")
    other = tmp_path / "o" / "db" / "state.db"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"")  # an SQLite database is there
    with pytest.raises(DatastoreMismatch, match="SQLite"):
        check_and_record(other, "https://e:2379")


def test_data_dir_refuses_another_etcd_prefix_than_its_objects(tmp_path: Path) -> None:
    db = tmp_path / "db" / "state.db"
    db.parent.mkdir(parents=True)
    check_and_record(db, "https://e:2379", {"prefix": "/c2"})  # e.g. after `datastore migrate --datastore-prefix /c2`
    check_and_record(db, "https://e:2379", {"prefix": "/c2/"})
    with pytest.raises(DatastoreMismatch, match="under /c2/, not /registry/: start the server with --datastore-prefix /c2"):
        check_and_record(db, "https://e:2379")
    with pytest.raises(DatastoreMismatch, match="--datastore-prefix /c2"):
        check_and_record(db, "")


def test_snapshot_restore_on_an_etcd_data_dir_refuses_a_file_etcd_cannot_restore(
        tmp_path: Path, capsys, restore_logging) -> None:
    db = ServerConfig(data_dir=tmp_path).db_path
    db.parent.mkdir(parents=True)
    check_and_record(db, "https://e:2379", {"cafile": "/ca.crt"})
    assert recorded(db) == {"endpoint": "https://e:2379", "cafile": "/ca.crt"}
    (tmp_path / "snap.db").write_bytes(b"whatever")
    assert main(["datastore", "snapshot", "restore", str(tmp_path / "snap.db"), "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "etcd https://e:2379 under /registry/" in err
    assert "not an etcd snapshot etcd can restore" in err or "needs etcd's own tools" in err  # etcd never asked
    assert not db.exists()


@pytest.mark.parametrize("argv, message", [
    (["--datastore-endpoint", "sqlite:///x.db"], "invalid etcd endpoint"),
    (["--datastore-endpoint", "https://127.0.0.1:1", "--datastore-cafile", "/nonexistent/ca.crt"], "no such file"),
    (["--datastore-cafile", "/etc/hostname"], "need --datastore-endpoint"),
])
def test_server_refuses_bad_datastore_flags(argv, message, tmp_path: Path, capsys, restore_logging) -> None:
    assert main(["server", "--disable-agent", "--data-dir", str(tmp_path), *argv]) == 1
    assert message in capsys.readouterr().err


def test_bootstrap_data_is_sealed_with_the_token(tmp_path: Path) -> None:
    from kubelite.launcher.bootstrap import BootstrapError, seal, server_token, unseal

    files = {"ca_cert": b"CERT", "ca_key": b"KEY", "sa_key": b"SA", "sa_pub": b"PUB"}
    blob = seal("s3cret", files)
    assert b"KEY" not in blob and b"S0VZ" not in blob  # neither plain nor base64
    assert unseal("s3cret", blob) == files
    with pytest.raises(BootstrapError, match="--token does not match"):
        unseal("other", blob)
    made = server_token(tmp_path, "")
    assert len(made) == 32 and server_token(tmp_path, "") == made
    assert (tmp_path / "server-token").stat().st_mode & 0o777 == 0o600
    assert server_token(tmp_path / "b", "given") == "given" == server_token(tmp_path / "b", "")
