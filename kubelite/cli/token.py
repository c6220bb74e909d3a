"""`kubelite token create | list | delete`: bootstrap tokens for joining nodes (as `kubeadm
token`). Talks to the running server with the admin kubeconfig (``DATA_DIR/kubeconfig.yaml``).

    kubelite token create [TOKEN] [--ttl 24h] [--description TEXT] [--usages signing,authentication]
                          [--groups system:bootstrappers:kubeadm:default-node-token] [--print-join-command]
    kubelite token list
    kubelite token delete TOKEN_OR_ID...
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import hashlib
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kubelite.api import errors
from kubelite.auth import bootstrap_tokens as bt

_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def parse_duration(s: str) -> dt.timedelta:
    """Go's time.ParseDuration ("24h", "1h30m", "0")."""
    s = s.strip()
    if s in ("0", "+0", "-0"):
        return dt.timedelta(0)
    sign = -1 if s.startswith("-") else 1
    body = s.lstrip("+-")
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(body):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not body or pos != len(body):
        raise ValueError(f'time: invalid duration "{s}"')
    return dt.timedelta(seconds=sign * total)


def ca_cert_hash(ca_pem: bytes) -> str:
    """kubeadm's public key pin: sha256 of the CA certificate's DER SubjectPublicKeyInfo."""
    cert = x509.load_pem_x509_certificate(ca_pem)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def short_human_duration(seconds: float) -> str:
    """duration.ShortHumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h"
    if s < 86400 * 365:
        return f"{s // 86400}d"
    return f"{s // (86400 * 365)}y"


def _kubeconfig(args: argparse.Namespace) -> Path:
    return Path(args.kubeconfig) if args.kubeconfig else Path(args.data_dir) / "kubeconfig.yaml"


def _cluster(kubeconfig: Path) -> tuple[str, bytes]:
    cfg = yaml.safe_load(kubeconfig.read_text())
    cluster = cfg["clusters"][0]["cluster"]
    return cluster["server"], base64.b64decode(cluster["certificate-authority-data"])


def join_command(server: str, token: str, ca_pem: bytes) -> str:
    return f"kubelite agent --server {server} --token {token} --ca-cert-hash {ca_cert_hash(ca_pem)}"


async def _with_client(kubeconfig: Path, fn: Any) -> Any:
    from kubelite.client.api import Client

    client = Client.from_kubeconfig(kubeconfig, user_agent="kubelite-token")
    try:
        return await fn(client)
    finally:
        await client.close()


def cmd_create(args: argparse.Namespace) -> int:
    kc = _kubeconfig(args)
    token = args.token or bt.generate_token()
    try:
        ttl = parse_duration(args.ttl)
        secret = bt.token_secret(token, ttl, args.description,
                                 tuple(u for u in args.usages.split(",") if u),
                                 tuple(g for g in args.groups.split(",") if g))
    except ValueError as exc:
        sys.stderr.write(f"kubelite token create: {exc}\n")
        return 1
    try:
        server, ca_pem = _cluster(kc)
        asyncio.run(_with_client(kc, lambda c: c.create("v1", "secrets", secret, namespace=bt.NAMESPACE)))
    except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError) as exc:
        sys.stderr.write(f"kubelite token create: cannot use the kubeconfig {kc}: {exc}\n")
        return 1
    except errors.StatusError as exc:
        sys.stderr.write(f"kubelite token create: {exc.message}\n")
        return 1
    cmd = join_command(args.server or server, token, ca_pem)
    if args.print_join_command:
        sys.stdout.write(cmd + "\n")
        return 0
    # the token, then the command that joins a node with it (add --data-dir and --node-name)
    sys.stdout.write(f"{token}\n{cmd}\n")
    return 0


def _tokens(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in items if s.get("type") == bt.SECRET_TYPE]


def cmd_list(args: argparse.Namespace) -> int:
    kc = _kubeconfig(args)
    try:
        lst = asyncio.run(_with_client(kc, lambda c: c.list("v1", "secrets", namespace=bt.NAMESPACE,
                                                            fieldSelector=f"type={bt.SECRET_TYPE}")))
    except OSError as exc:
        sys.stderr.write(f"kubelite token list: cannot use the kubeconfig {kc}: {exc}\n")
        return 1
    except errors.StatusError as exc:
        sys.stderr.write(f"kubelite token list: {exc.message}\n")
        return 1
    rows = [["TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA GROUPS"]]
    now = dt.datetime.now(dt.UTC)
    for s in _tokens(lst.get("items") or []):
        tid, tsecret = bt.secret_data(s, bt.TOKEN_ID_KEY), bt.secret_data(s, bt.TOKEN_SECRET_KEY)
        if not tid or not tsecret:
            continue
        exp = bt.parse_rfc3339(bt.secret_data(s, bt.EXPIRATION_KEY))
        ttl = short_human_duration((exp - now).total_seconds()) if exp else "<forever>"
        expires = bt.rfc3339(exp) if exp else "<never>"
        usages = sorted(k[len(bt.USAGE_PREFIX):] for k in (s.get("data") or {})
                        if k.startswith(bt.USAGE_PREFIX) and bt.secret_data(s, k) == "true")
        rows.append([f"{tid}.{tsecret}", ttl, expires, ",".join(usages) or "<none>",
                     bt.secret_data(s, bt.DESCRIPTION_KEY) or "<none>",
                     bt.secret_data(s, bt.EXTRA_GROUPS_KEY)])
    if len(rows) == 1:
        return 0
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        sys.stdout.write("".join(c.ljust(max(widths[i], 10) + 3) for i, c in enumerate(r[:-1])) + r[-1] + "\n")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    kc = _kubeconfig(args)
    rc = 0
    for t in args.tokens:
        tid = t.split(".", 1)[0]
        if not bt.TOKEN_ID_RE.match(tid):
            sys.stderr.write(f"kubelite token delete: given token didn't match pattern {bt.TOKEN_ID_RE.pattern}\n")
            rc = 1
            continue
        try:
            asyncio.run(_with_client(kc, lambda c, tid=tid: c.delete("v1", "secrets", bt.secret_name(tid),
                                                                      namespace=bt.NAMESPACE)))
            sys.stdout.write(f'bootstrap token "{tid}" deleted\n')
        except errors.StatusError as exc:
            sys.stderr.write(f"kubelite token delete: {exc.message}\n")
            rc = 1
    return rc


def register_token_cli(sub: Any, default_data_dir: str) -> None:
    t = sub.add_parser("token", help="bootstrap tokens for joining nodes")
    ts = t.add_subparsers(dest="token_cmd", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", default=default_data_dir, help="kubelite's data dir (default: $KUBELITE_DATA_DIR or /var/lib/kubelite)")
        p.add_argument("--kubeconfig", default="", help="admin kubeconfig (default: DATA_DIR/kubeconfig.yaml)")

    c = ts.add_parser("create", help="create a bootstrap token and print it")
    common(c)
    c.add_argument("token", nargs="?", default="", help="the token to create (default: a random one)")
    c.add_argument("--ttl", default="24h", help="time before the token expires (0: never)")
    c.add_argument("--description", default="", help="a human friendly description of how this token is used")
    c.add_argument("--usages", default="signing,authentication",
                   help="the ways this token can be used, comma-separated: signing, authentication")
    c.add_argument("--groups", default=bt.DEFAULT_NODE_TOKEN_GROUP, help="extra groups (comma-separated)")
    c.add_argument("--server", default="", help="API address for the join command (default: the kubeconfig's)")
    c.add_argument("--print-join-command", action="store_true", help="print only the agent's join command")
    c.set_defaults(func=cmd_create)
    ls = ts.add_parser("list", help="list bootstrap tokens")
    common(ls)
    ls.set_defaults(func=cmd_list)
    d = ts.add_parser("delete", help="delete bootstrap tokens")
    common(d)
    d.add_argument("tokens", nargs="+", metavar="TOKEN_OR_ID", help="tokens (<id>.<secret>) or token ids")
    d.set_defaults(func=cmd_delete)


__all__ = ["ca_cert_hash", "join_command", "parse_duration", "register_token_cli"]
