"""`kubelite datastore snapshot save FILE` / `restore FILE`: back up and restore the
embedded SQLite datastore (see kubelite/store/snapshot.py); on a data dir whose server runs on
etcd, `save` takes etcd's own snapshot through its Maintenance API and `restore` refuses
(etcd snapshots are restored with etcd's offline procedure)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kubelite.config import ServerConfig


def _db(args: argparse.Namespace) -> Path:
    return ServerConfig(data_dir=Path(args.data_dir).resolve()).db_path


def _save_etcd(args: argparse.Namespace, out: Path, rec: dict[str, Any]) -> int:
    import asyncio

    from kubelite.store.base import StoreError
    from kubelite.store.etcd import EtcdStore, EtcdTLS

    async def run() -> int:
        store = EtcdStore(rec["endpoint"], tls=EtcdTLS(rec.get("cafile") or None, rec.get("certfile") or None,
                                                      rec.get("keyfile") or None), compact_interval=0)
        await store.start()
        try:
            return await store.snapshot(out)
        finally:
            await store.close()

    try:
        rev = asyncio.run(run())
    except (StoreError, OSError, ValueError) as exc:
        sys.stderr.write(f"kubelite datastore snapshot save: etcd {rec['endpoint']}: {exc}\n")
        return 1
    print(f"etcd snapshot saved at {out} (revision {rev}; the whole etcd keyspace, in etcd's own format: "
          "restore it with `etcdctl snapshot restore`)")
    return 0


def cmd_save(args: argparse.Namespace) -> int:
    from kubelite.store.datastore import recorded
    from kubelite.store.snapshot import SnapshotError, save

    out = Path(args.file).resolve()
    rec = recorded(_db(args))
    if rec.get("endpoint"):
        return _save_etcd(args, out, rec)
    try:
        rev = save(_db(args), out)
    except (SnapshotError, OSError) as exc:
        sys.stderr.write(f"kubelite datastore snapshot save: {exc}\n")
        return 1
    print(f"Snapshot saved at {out} (revision {rev})")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from kubelite.store.datastore import refuse_restore_on_etcd
    from kubelite.store.snapshot import SnapshotError, restore

    db = _db(args)
    msg = refuse_restore_on_etcd(db)
    if msg is not None:
        sys.stderr.write(f"kubelite datastore snapshot restore: {msg}\n")
        return 1
    try:
        rev = restore(Path(args.file).resolve(), db)
    except (SnapshotError, OSError) as exc:
        sys.stderr.write(f"kubelite datastore snapshot restore: {exc}\n")
        return 1
    print(f"Restored {args.file} into {db.parent.parent} (revision {rev}); start kubelite server on it")
    return 0


def register_datastore_cli(sub: Any, default_data_dir: str) -> None:
    d = sub.add_parser("datastore", help="the embedded datastore: snapshots")
    ds = d.add_subparsers(dest="dcmd", required=True)
    snap = ds.add_parser("snapshot", help="save or restore a snapshot of the datastore")
    ss = snap.add_subparsers(dest="scmd", required=True)
    help_dir = "kubelite's data dir (default: $KUBELITE_DATA_DIR or /var/lib/kubelite)"
    save = ss.add_parser("save", help="write a consistent snapshot (the server may be running)")
    save.add_argument("file", help="the snapshot file to write")
    save.add_argument("--data-dir", default=default_data_dir, help=help_dir)
    save.set_defaults(func=cmd_save)
    rest = ss.add_parser("restore", help="replace the datastore with a snapshot (no server may be running)")
    rest.add_argument("file", help="the snapshot file to restore")
    rest.add_argument("--data-dir", default=default_data_dir, help=help_dir)
    rest.set_defaults(func=cmd_restore)
