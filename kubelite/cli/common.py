"""What every `kubelite` sub-command shares: ``--version`` and ``--log-level``.

``--log-level`` is accepted before the sub-command (``kubelite --log-level debug server``)
and after it (``kubelite server --log-level debug``); the value configures the root logger
once, before the sub-command runs, so every component logs at that level.
"""

from __future__ import annotations

import argparse
import logging
from importlib import metadata

LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_LEVEL_HELP = "how much to log: debug, info, warning or error (default: info)"


def version_string() -> str:
    """``kubelite v0.1.0 (Kubernetes v1.37.0 compatible)``: the installed package's version and
    the Kubernetes release whose API kubelite serves."""
    from kubelite.api.schema import K8S_VERSION

    try:
        ours = metadata.version("kubelite")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        ours = "0.0.0+unknown"
    return f"kubelite v{ours} (Kubernetes v{K8S_VERSION} compatible)"


def _subparsers(p: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    out = []
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases share a parser
                out.append(child)
                out.extend(_subparsers(child))
    return out


def add_global_flags(p: argparse.ArgumentParser) -> None:
    """``--version`` on the top parser; ``--log-level`` there and on every sub-command (call
    after all sub-commands are registered)."""
    p.add_argument("--version", action="version", version=version_string(),
                   help="print kubelite's version and the Kubernetes version it is compatible with, then exit")
    p.add_argument("--log-level", choices=list(LOG_LEVELS), default="info",
                   metavar="LEVEL", help=LOG_LEVEL_HELP)
    for child in _subparsers(p):
        if "--log-level" not in child._option_string_actions:
            child.add_argument("--log-level", choices=list(LOG_LEVELS), default=argparse.SUPPRESS,
                               metavar="LEVEL", help=LOG_LEVEL_HELP)


def take_log_level(argv: list[str]) -> tuple[str, list[str]]:
    """Leading ``--log-level LEVEL`` / ``--log-level=LEVEL`` options, for the command lines that
    bypass argparse (``kubelite kubectl …``); returns (level, the rest)."""
    level = "info"
    while argv:
        if argv[0] == "--log-level" and len(argv) > 1:
            level, argv = argv[1], argv[2:]
        elif argv[0].startswith("--log-level="):
            level, argv = argv[0].split("=", 1)[1], argv[1:]
        else:
            break
    return level, argv


def check_log_level(level: str) -> None:
    if level not in LOG_LEVELS:
        raise SystemExit(f"kubelite: error: argument --log-level: invalid choice: {level!r} "
                         f"(choose from {', '.join(LOG_LEVELS)})")


def setup_logging(level: str) -> None:
    logging.basicConfig(level=LOG_LEVELS[level], format=LOG_FORMAT, force=True)


def split_list(value: str) -> tuple[str, ...]:
    """A comma-separated flag value (pflag's StringSlice)."""
    return tuple(x.strip() for x in value.split(",") if x.strip())
