"""``python -m kubelite.scheduler --kubeconfig PATH``: run the scheduler on its own."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from pathlib import Path

from kubelite.scheduler.scheduler import run_scheduler


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="kubelite.scheduler")
    ap.add_argument("--kubeconfig", required=True, type=Path)
    ap.add_argument("--scheduler-name", default="default-scheduler")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_scheduler(args.kubeconfig, args.scheduler_name))


if __name__ == "__main__":
    main()
