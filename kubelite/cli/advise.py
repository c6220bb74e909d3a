"""``kubelite advise -f MANIFEST [-f …] [-R] [-o text|json] [--strict]``: the Pods chapter's
design review of manifests, offline (see :mod:`kubelite.advise`).

Exit codes: 0 — reviewed (findings or not, unless ``--strict``); 1 — ``--strict`` and at
least one finding; 2 — the input cannot be read (kubectl's message on stderr).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def cmd_advise(args: argparse.Namespace) -> int:
    from kubelite.advise import ManifestError, advise, load

    if not args.filename:
        sys.stderr.write("error: must specify one of -f and -k\n")
        return 2
    try:
        report = advise(load(args.filename, recursive=args.recursive, stdin=sys.stdin))
    except ManifestError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    sys.stdout.write(report.to_json() if args.output == "json" else report.to_text())
    return 1 if args.strict and report.findings else 0


def register_advise_cli(sub: Any) -> None:
    p = sub.add_parser("advise", help="review Pod manifests the way the Pods chapter teaches (offline)",
                       description="Review the pod specs in manifests (Pods and the templates of Deployments, "
                                   "ReplicaSets, DaemonSets, StatefulSets, Jobs, CronJobs): do the containers "
                                   "need to share a machine, requests and limits, probes, image tags, hostPath, "
                                   "restartPolicy.")
    p.add_argument("-f", "--filename", action="append", default=[], metavar="FILE",
                   help="a manifest file, a directory of them, or - for stdin (repeatable)")
    p.add_argument("-R", "--recursive", action="store_true", help="walk directories given with -f recursively")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text", help="output format (default: text)")
    p.add_argument("--strict", action="store_true", help="exit 1 when there is any finding")
    p.set_defaults(func=cmd_advise)


__all__ = ["register_advise_cli"]
