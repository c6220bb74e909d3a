"""`kubelite images import|ls|rm`: images in the containerd of a data dir.

The lead wires this in from kubelite/cli/main.py::

    from kubelite.cli.images import register_images_cli
    register_images_cli(sub, default_data_dir=default_dir)
    ...
    if args.cmd == "images":
        return args.func(args)

The commands talk to ``<data_dir>``'s containerd socket, so kubelite (or at least its
containerd) must be running for that data dir.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from kubelite.config import DEFAULT_DATA_DIR


def register_images_cli(subparsers: argparse._SubParsersAction, default_data_dir: str | None = None) -> None:
    default_dir = default_data_dir or os.environ.get("KUBELITE_DATA_DIR", str(DEFAULT_DATA_DIR))
    p = subparsers.add_parser("images", help="list, import and remove images in kubelite's containerd")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])
    isub = p.add_subparsers(dest="icmd", required=True)

    imp = isub.add_parser("import", help="import OCI image-layout or docker-save tars (ctr images import)")
    imp.add_argument("files", nargs="+", metavar="FILE", help="image tar files")
    imp.add_argument("--data-dir", default=default_dir, help="kubelite's data dir (default: $KUBELITE_DATA_DIR or /var/lib/kubelite)")
    imp.set_defaults(func=cmd_images_import)

    ls = isub.add_parser("ls", aliases=["list"], help="list images")
    ls.add_argument("--data-dir", default=default_dir, help="kubelite's data dir (default: $KUBELITE_DATA_DIR or /var/lib/kubelite)")
    ls.add_argument("-q", "--quiet", action="store_true", help="only image ids")
    ls.set_defaults(func=cmd_images_ls)

    rm = isub.add_parser("rm", aliases=["rmi"], help="remove images (all tags of each image)")
    rm.add_argument("refs", nargs="+", metavar="REF", help="image references or ids")
    rm.add_argument("--data-dir", default=default_dir, help="kubelite's data dir (default: $KUBELITE_DATA_DIR or /var/lib/kubelite)")
    rm.set_defaults(func=cmd_images_rm)

    off = isub.add_parser("ensure-offline", help="import kubelite's offline images (pause, busybox, kuard) if missing")
    off.add_argument("--data-dir", default=default_dir, help="kubelite's data dir (default: $KUBELITE_DATA_DIR or /var/lib/kubelite)")
    off.add_argument("--build-dir", help="where the image tars are (default: the source tree's build/images)")
    off.set_defaults(func=cmd_images_ensure_offline)


async def _with_images(data_dir: str, fn):
    from kubelite.agent import cri as cri_mod
    from kubelite.agent.containerd import socket_path_for
    from kubelite.agent.images import ImageManager

    sock = socket_path_for(Path(data_dir).resolve())
    if not sock.exists():
        raise SystemExit(f"kubelite images: no containerd socket at {sock}: is kubelite running "
                         f"with --data-dir {data_dir}?")
    client = await cri_mod.connect(sock)
    try:
        return await fn(ImageManager(client))
    finally:
        await client.close()


def _run(data_dir: str, fn) -> int:
    from kubelite.agent.cri import grpc
    from kubelite.agent.images import ImageError

    try:
        return asyncio.run(_with_images(data_dir, fn))
    except ImageError as e:
        print(f"kubelite images: {e.message}", file=sys.stderr)
        return 1
    except grpc.aio.AioRpcError as e:
        print(f"kubelite images: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1


def cmd_images_import(args: argparse.Namespace) -> int:
    async def go(images) -> int:
        for f in args.files:
            for name in await images.import_archive(f):
                print(f"imported {name}")
        return 0

    return _run(args.data_dir, go)


def _size(size: int) -> str:
    n = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000
    return str(n)


def cmd_images_ls(args: argparse.Namespace) -> int:
    async def go(images) -> int:
        rows = []
        for img in await images.list():
            short = img.id.split(":", 1)[-1][:13]
            tags = list(img.repo_tags) or ["<none>:<none>"]
            for t in tags:
                repo, _, tag = t.rpartition(":")
                rows.append((repo, tag, short, _size(img.size)))
        rows.sort()
        if args.quiet:
            for short in dict.fromkeys(r[2] for r in rows):
                print(short)
            return 0
        headers = ("IMAGE", "TAG", "IMAGE ID", "SIZE")
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
        for r in [headers, *rows]:
            print("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        return 0

    return _run(args.data_dir, go)


def cmd_images_rm(args: argparse.Namespace) -> int:
    async def go(images) -> int:
        rc = 0
        for ref in args.refs:
            if await images.remove(ref):
                print(f"Deleted: {ref}")
            else:
                print(f"kubelite images: no such image: {ref}", file=sys.stderr)
                rc = 1
        return rc

    return _run(args.data_dir, go)


def cmd_images_ensure_offline(args: argparse.Namespace) -> int:
    async def go(images) -> int:
        for ref in await images.ensure_offline_images(args.build_dir):
            print(f"imported {ref}")
        return 0

    return _run(args.data_dir, go)
