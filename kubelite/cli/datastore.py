"""`kubelite datastore snapshot save FILE` / `restore FILE` and `kubelite datastore migrate --to URLS`.

On the embedded SQLite datastore, save and restore are SQLite's (kubelite/store/snapshot.py). On a
data dir whose server runs on etcd, `save` takes etcd's own snapshot through its Maintenance API
(the whole etcd keyspace) and `restore` puts the snapshot's keys under the cluster's prefix back
into the *running* etcd cluster, with every kubelite server stopped: it writes the difference
(new and changed keys, deletes of keys the snapshot lacks) in transactions, then compacts
etcd's history to now (kubelite/store/transfer.py). That is deliberately not etcd's own
`etcdctl snapshot restore`, which rebuilds member data dirs offline and rolls every revision
back to the snapshot's (so resourceVersions would go backwards under clients, and it would also
roll back every other cluster sharing the etcd): here revisions only move forward and every
earlier resourceVersion is 410 Gone, so clients re-list. `migrate` copies every key of a stopped
SQLite cluster into an empty etcd prefix and switches the data dir to it."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubelite.config import ServerConfig

if TYPE_CHECKING:
    from kubelite.store.etcd import EtcdStore
    from kubelite.store.transfer import Report


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
          "`kubelite datastore snapshot restore` puts this cluster's keys back; `etcdctl snapshot restore` "
          "rebuilds whole etcd members from it)")
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


def _etcd_store(endpoint: str, cafile: str, certfile: str, keyfile: str, prefix: str) -> EtcdStore:
    from kubelite.store.etcd import EtcdStore, EtcdTLS

    return EtcdStore(endpoint, tls=EtcdTLS(cafile or None, certfile or None, keyfile or None), key_prefix=prefix,
                     compact_interval=0)


def _advancing(past: str) -> Callable[[int, int], None]:
    def say(frm: int, to: int) -> None:
        print(f"Moving etcd's revision from {frm} to {to}, past {past} (one write each, about "
              f"{max((to - frm) / 5000, 0.1):.1f} s) ...", flush=True)

    return say


def _txns(report: Report) -> str:
    return f"{report.transactions} transaction{'' if report.transactions == 1 else 's'}"


def _per_resource(report: Report) -> str:
    width = max((len(r) for r in report.counts), default=0)
    return "".join(f"  {r:<{width}}  {n:>7}\n" for r, n in sorted(report.counts.items()))


def _other_cluster(want: dict[str, bytes], data_dir: Path) -> str | None:
    """Why the snapshot is not this data dir's cluster's (None: it is, or nothing says). The
    snapshot's bootstrap data (the CA and SA keys its first server published, sealed with the
    cluster token) must open with this data dir's token and hold this data dir's CA; otherwise
    the restored cluster would refuse this server, or trust another CA."""
    from kubelite.launcher.bootstrap import BOOTSTRAP_KEY, TOKEN_FILE, BootstrapError, unseal
    from kubelite.tls.pki import PKI

    sealed = want.get(BOOTSTRAP_KEY)
    token_file = data_dir / TOKEN_FILE
    if sealed is None or not token_file.exists():
        return None
    try:
        files = unseal(token_file.read_text().strip(), sealed)
    except BootstrapError:
        return f"its cluster bootstrap data does not open with this data dir's token ({token_file})"
    ca = PKI.at(data_dir).ca_pem
    if ca and files.get("ca_cert") != ca:
        return f"its cluster CA is not this data dir's ({PKI.at(data_dir).ca_cert})"
    return None


LEADER_LEASES = ("kube-system/kube-controller-manager", "kube-system/kube-scheduler")  # see launcher/leaders.py


def held_lease(raw: bytes, now: dt.datetime) -> tuple[str, str, float] | None:
    """(holder, renewTime, seconds left) of a stored leader Lease that is still valid for
    client-go (renewTime + leaseDurationSeconds ahead), else None. A running server renews it
    every retry period; a stopped one leaves it to expire (kube-controller-manager does not
    release its lease at shutdown) or released it (holderIdentity "")."""
    import json

    from kubelite.client.leaderelection import record_from_spec

    try:
        spec = (json.loads(raw) or {}).get("spec") or {}
        rec = record_from_spec(spec)
    except (ValueError, AttributeError):
        return None
    if not rec.holder_identity or rec.renew_time is None:
        return None
    left = (rec.renew_time - now).total_seconds() + rec.lease_duration_seconds
    return (rec.holder_identity, str(spec.get("renewTime")), left) if left > 0 else None


async def _held_leases(store: EtcdStore) -> dict[str, tuple[str, str, float]]:
    held = {}
    for name in LEADER_LEASES:
        kv = await store.get(f"/registry/coordination.k8s.io/leases/{name}")
        lease = held_lease(kv.value, dt.datetime.now(dt.UTC)) if kv is not None else None
        if lease is not None:
            held[name] = lease
    return held


async def running_server(store: EtcdStore, say: Callable[[str], None] = print) -> str | None:
    """Why a server of the cluster is running (None: none is). Leases still valid are watched
    until they expire: one that is renewed meanwhile has a live holder."""
    import asyncio

    held = await _held_leases(store)
    if not held:
        return None
    wait = max(left for _, _, left in held.values())
    say(f"Waiting up to {max(wait, 1):.0f} s for the leader leases {', '.join(sorted(held))} to expire "
        "(a running server renews them) ...")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while loop.time() < deadline:
        await asyncio.sleep(0.5)
        now = await _held_leases(store)
        for name, (holder, renewed, _) in held.items():
            if name in now and now[name][:2] != (holder, renewed):
                return f"{now[name][0]} renewed the leader lease {name}"
    return None


def _restore_etcd(args: argparse.Namespace, snap: Path, db: Path, rec: dict[str, Any]) -> int:
    import asyncio

    from kubelite.store.base import StoreError
    from kubelite.store.etcdsnapshot import SnapshotReadError, read_snapshot
    from kubelite.store.snapshot import SnapshotError, hold_data_dir
    from kubelite.store.transfer import restore_keys

    prefix = (rec.get("prefix") or "/registry").rstrip("/")
    what = f"etcd {rec['endpoint']} under {prefix}/"
    prog = "kubelite datastore snapshot restore"

    async def run() -> tuple[Report, int] | None:
        want, snap_rev = await read_snapshot(snap, prefix)
        if not want:
            sys.stderr.write(f"{prog}: {snap} holds no key under {prefix}/: not a snapshot of this cluster "
                             "(nothing changed)\n")
            return None
        other = _other_cluster(want, db.parent.parent)
        if other is not None:
            sys.stderr.write(f"{prog}: {snap} is a snapshot of another cluster: {other} (nothing changed)\n")
            return None
        store = _etcd_store(rec["endpoint"], rec.get("cafile", ""), rec.get("certfile", ""),
                            rec.get("keyfile", ""), prefix)
        await store.start()
        try:
            running = await running_server(store)
            if running is not None:
                sys.stderr.write(f"{prog}: a server of this cluster is running ({running}); stop every server "
                                 "of the cluster first (nothing changed)\n")
                return None
            return await restore_keys(store, want, snap_rev, _advancing("the snapshot's revision")), snap_rev
        finally:
            await store.close()

    try:
        lock = hold_data_dir(db)
    except SnapshotError as exc:
        sys.stderr.write(f"{prog}: {exc} (and every other server of this cluster)\n")
        return 1
    try:
        done = asyncio.run(run())
    except (SnapshotReadError, StoreError, OSError, ValueError) as exc:
        sys.stderr.write(f"{prog}: {what}: {exc}\n")
        return 1
    finally:
        lock.close()
    if done is None:
        return 1
    report, snap_rev = done
    print(f"Restored {snap} (etcd revision {snap_rev}) into {what}: {report.written} keys written, "
          f"{report.deleted} deleted, {report.unchanged} unchanged, in {_txns(report)}.\n"
          f"{_per_resource(report)}"
          f"etcd's history is compacted at revision {report.revision}: clients re-list (a watch from an "
          "earlier resourceVersion is 410 Gone). Start the cluster's servers.")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from kubelite.store.datastore import recorded
    from kubelite.store.snapshot import SnapshotError, restore

    db = _db(args)
    rec = recorded(db)
    if rec.get("endpoint"):
        return _restore_etcd(args, Path(args.file).resolve(), db, rec)
    try:
        rev = restore(Path(args.file).resolve(), db)
    except (SnapshotError, OSError) as exc:
        sys.stderr.write(f"kubelite datastore snapshot restore: {exc}\n")
        return 1
    print(f"Restored {args.file} into {db.parent.parent} (revision {rev}); start kubelite server on it")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    import asyncio
    import time

    from kubelite.store import datastore
    from kubelite.store.base import StoreError
    from kubelite.store.etcd import parse_endpoints
    from kubelite.store.snapshot import SnapshotError, hold_data_dir
    from kubelite.store.sqlite import SQLiteStore
    from kubelite.store.transfer import TargetNotEmpty, copy_all

    prog = "kubelite datastore migrate"
    db = _db(args)
    data_dir = db.parent.parent
    prefix = args.datastore_prefix.rstrip("/")
    if not prefix.startswith("/"):
        sys.stderr.write(f"{prog}: --datastore-prefix {args.datastore_prefix!r}: must start with /\n")
        return 1
    try:
        parse_endpoints(args.to)
    except ValueError as exc:
        sys.stderr.write(f"{prog}: --to: {exc}\n")
        return 1
    files = {}
    for flag, key, path in (("--datastore-cafile", "cafile", args.datastore_cafile),
                            ("--datastore-certfile", "certfile", args.datastore_certfile),
                            ("--datastore-keyfile", "keyfile", args.datastore_keyfile)):
        if path and not Path(path).is_file():
            sys.stderr.write(f"{prog}: {flag} {path}: no such file\n")
            return 1
        files[key] = str(Path(path).resolve()) if path else ""
    if datastore.recorded_endpoint(db):
        sys.stderr.write(f"{prog}: the server of {data_dir} already stores its objects in etcd "
                         f"({datastore.recorded_endpoint(db)}); there is nothing to migrate\n")
        return 1
    if not db.exists():
        sys.stderr.write(f"{prog}: no datastore at {db}\n")
        return 1
    try:
        lock = hold_data_dir(db)  # no server may run on it meanwhile, nor start
    except SnapshotError as exc:
        sys.stderr.write(f"{prog}: {exc}\n")
        return 1
    target = f"etcd {args.to} under {prefix}/"

    async def run() -> Report:
        src = SQLiteStore(str(db), compact_interval=0)
        dst = _etcd_store(args.to, files["cafile"], files["certfile"], files["keyfile"], prefix)
        await dst.start()
        try:
            await src.start()
            try:
                return await copy_all(src, dst, force=args.force, on_advance=_advancing("every resourceVersion the SQLite datastore gave out"))
            finally:
                await src.close()
        finally:
            await dst.close()

    t0 = time.monotonic()
    try:
        try:
            report = asyncio.run(run())
        except TargetNotEmpty as exc:
            sys.stderr.write(f"{prog}: {target} already holds {exc.count} keys (another cluster's, or an earlier "
                             "migration's); nothing was copied. Pick another --datastore-prefix, or --force to "
                             "delete those keys and put this cluster's in their place\n")
            return 1
        except (StoreError, OSError, ValueError) as exc:
            sys.stderr.write(f"{prog}: {target}: {exc} (the SQLite datastore is unchanged; the data dir "
                             "still uses it)\n")
            return 1
        datastore.record(db, args.to, {**files, "prefix": prefix})
    finally:
        lock.close()
    elapsed = time.monotonic() - t0
    flags = f"--datastore-endpoint {args.to}" + "".join(
        f" --datastore-{k} {v}" for k, v in files.items() if v) + (
        f" --datastore-prefix {prefix}" if prefix != "/registry" else "")
    replaced = f" ({report.replaced} keys that were there deleted first: --force)" if report.replaced else ""
    print(f"Migrated {report.written} objects from {db} (revision {report.source_revision}) to {target} in "
          f"{_txns(report)}, {elapsed:.1f} s{replaced}:\n{_per_resource(report)}"
          f"resourceVersions are now etcd revisions (history compacted at {report.revision}: clients re-list). "
          f"{db} is left as it was, unused: {data_dir} now runs on etcd only.\n"
          f"Start the server with: kubelite server --data-dir {data_dir} {flags}")
    return 0


def register_datastore_cli(sub: Any, default_data_dir: str) -> None:
    d = sub.add_parser("datastore", help="the datastore: snapshots, migration to etcd")
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
    mig = ds.add_parser("migrate", help="copy every object of a stopped SQLite cluster into etcd and switch "
                                        "the data dir to it")
    mig.add_argument("--to", required=True, metavar="URLS",
                     help="the etcd cluster: comma-separated URLs (https://host:2379,...)")
    mig.add_argument("--datastore-cafile", default="", metavar="FILE", help="CA bundle that signed etcd's certificates")
    mig.add_argument("--datastore-certfile", default="", metavar="FILE", help="client certificate for etcd")
    mig.add_argument("--datastore-keyfile", default="", metavar="FILE", help="client certificate key for etcd")
    mig.add_argument("--datastore-prefix", default="/registry", metavar="PREFIX",
                     help="etcd key prefix for this cluster's objects (default /registry); it must be empty")
    mig.add_argument("--force", action="store_true",
                     help="delete whatever the prefix holds in etcd first (another cluster's objects!)")
    mig.add_argument("--data-dir", default=default_data_dir, help=help_dir)
    mig.set_defaults(func=cmd_migrate)
