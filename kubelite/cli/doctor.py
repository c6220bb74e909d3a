"""``kubelite doctor [POD] [-n NS | -A] [--all] [-o text|json]``: why pods are not Running and
Ready, in plain words, and what to change (see :mod:`kubelite.doctor`). Talks to the server
with the admin kubeconfig of ``--data-dir`` (as ``kubelite kubectl``) or ``--kubeconfig``.

Without POD it looks at every pod of the namespace that is not Running and Ready (or
restarted in the last 10 minutes); ``--all`` shows the healthy ones too. Exit code 0 once it
has diagnosed; 1 when it cannot (the pod does not exist, the server cannot be reached).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from kubelite.api import errors

API_VERSION = "doctor.kubelite.io/v1"


def _kubeconfig(args: argparse.Namespace) -> Path:
    return Path(args.kubeconfig) if args.kubeconfig else Path(args.data_dir) / "kubeconfig.yaml"


def _context_namespace(kc: Path) -> str:
    try:
        cfg = yaml.safe_load(kc.read_text()) or {}
        cur = cfg.get("current-context")
        for c in cfg.get("contexts") or []:
            if c.get("name") == cur:
                return str((c.get("context") or {}).get("namespace") or "default")
    except (OSError, yaml.YAMLError, AttributeError):
        pass
    return "default"


async def _run(kc: Path, namespace: str, name: str, include_healthy: bool) -> list[Any]:
    from kubelite.client.api import Client
    from kubelite.doctor import diagnose
    from kubelite.doctor.collect import gather

    async with Client.from_kubeconfig(kc, user_agent="kubelite-doctor") as client:
        return [diagnose(ev) for ev in await gather(client, namespace, name, include_healthy)]


def cmd_doctor(args: argparse.Namespace) -> int:
    kc = _kubeconfig(args)
    if not kc.is_file():
        sys.stderr.write(f"error: cannot read the kubeconfig {kc}: no such file (start `kubelite server`, or "
                         "give --data-dir / --kubeconfig)\n")
        return 1
    namespace = "" if args.all_namespaces else (args.namespace or _context_namespace(kc))
    if args.all_namespaces and args.pod:
        sys.stderr.write("error: a resource cannot be retrieved by name across all namespaces\n")
        return 1
    try:
        found = asyncio.run(_run(kc, namespace, args.pod or "", args.all or bool(args.pod)))
    except errors.StatusError as exc:
        sys.stderr.write(f"Error from server ({exc.reason or 'Unknown'}): {exc.message}\n")
        return 1
    except (OSError, TimeoutError) as exc:
        sys.stderr.write(f"error: cannot reach the API server: {exc}\n")
        return 1
    if args.output == "json":
        doc = {"apiVersion": API_VERSION, "kind": "DoctorReport", "items": [d.to_dict() for d in found]}
        sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        return 0
    if not found:
        where = "any namespace" if args.all_namespaces else f"namespace {namespace}"
        sys.stdout.write(f"No pods in {where} need attention: every pod is Running and Ready (or Completed).\n")
        return 0
    sys.stdout.write("\n".join(d.text() for d in found))
    return 0


def register_doctor_cli(sub: Any, default_data_dir: str) -> None:
    p = sub.add_parser("doctor", help="explain why pods are not Running/Ready and what to change",
                       description="Explain, in plain words, why a pod is not Running and Ready — from its "
                                   "status, events, its node, the scheduler's message, image pulls, probes, OOM "
                                   "kills and the last log lines — and what to change.")
    p.add_argument("pod", nargs="?", default="", help="the pod (default: every pod that needs attention)")
    p.add_argument("-n", "--namespace", default="", help="the namespace (default: the kubeconfig's, or default)")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="look at pods in every namespace")
    p.add_argument("--all", action="store_true", help="show healthy pods too")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text", help="output format (default: text)")
    p.add_argument("--data-dir", default=default_data_dir, help="kubelite's data dir (default: $KUBELITE_DATA_DIR or /var/lib/kubelite)")
    p.add_argument("--kubeconfig", default="", help="kubeconfig to use (default: DATA_DIR/kubeconfig.yaml)")
    p.set_defaults(func=cmd_doctor)


__all__ = ["register_doctor_cli"]
