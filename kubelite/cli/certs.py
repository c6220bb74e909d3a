"""`kubelite certs rotate --data-dir DIR`: re-issue the API server's serving certificate, the
admin client certificate and the components' kubeconfigs (``DIR/kubeconfigs/*.yaml``) from the
existing cluster CA, and rewrite ``DIR/kubeconfig.yaml``.

A running server picks the new serving certificate up without a restart: its
:class:`kubelite.tls.reload.ServingCertReloader` watches the certificate files and loads the new pair into the
live ``SSLContext`` (``load_cert_chain`` on the same object), so every new TLS handshake
presents it; connections already open keep the old one until they close. Credentials that
are already in use (the in-process agent's and scheduler's client certificates) stay valid:
the CA does not change, and the components get freshly minted kubeconfigs at their next start.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from kubelite.tls import pki as pkimod
from kubelite.tls.reload import RELOAD_INTERVAL

log = logging.getLogger("kubelite.certs")


def _subject(cert: x509.Certificate) -> tuple[str, list[str]]:
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return (str(cn[0].value) if cn else ""), [str(o.value) for o in orgs]


def _server_url(kubeconfig: Path, default: str = "https://127.0.0.1:6443") -> str:
    try:
        return yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError):
        return default


def _kubeconfig_user(path: Path) -> tuple[str, list[str], str] | None:
    """(user, groups, server) of a kubeconfig with an embedded client certificate."""
    import base64

    try:
        cfg = yaml.safe_load(path.read_text())
        pem = base64.b64decode(cfg["users"][0]["user"]["client-certificate-data"])
        server = cfg["clusters"][0]["cluster"]["server"]
    except (OSError, KeyError, IndexError, TypeError, ValueError, yaml.YAMLError):
        return None
    user, groups = _subject(x509.load_pem_x509_certificate(pem))
    return (user, groups, server) if user else None


def rotate(data_dir: Path) -> dict[str, Any]:
    """Re-issue the leaf certificates of ``data_dir`` from its CA; returns what was done
    (old and new serving-certificate serials, the files rewritten)."""
    from kubelite.tls.kubeconfig import mint_user_kubeconfig, write_admin_kubeconfig

    data_dir = Path(data_dir)
    pki = pkimod.load_pki(data_dir)
    done: dict[str, Any] = {"files": []}
    with pkimod._locked(pki.dir):
        ca, ca_key = pkimod._load_cert(pki.ca_cert), pkimod._load_key(pki.ca_key)
        if not pkimod._valid_for(ca, pkimod.RENEW_BEFORE):
            raise RuntimeError(f"the cluster CA in {pki.dir} expires within "
                               f"{pkimod.RENEW_BEFORE.days} days; CA rotation is not supported")
        sans: set[str] = set(pkimod.server_sans())
        with contextlib.suppress(OSError, ValueError):
            old = pkimod._load_cert(pki.server_cert)
            done["old_serial"] = old.serial_number
            sans = pkimod.cert_sans(old) or sans  # keep the names the server is reached by
        cert, key = pkimod._issue(ca, ca_key, cn=pkimod.SERVER_CN, server=True,
                                  sans=sorted(sans, key=pkimod._san_sort), days=pkimod.SERVER_DAYS)
        pkimod._write_pair(pki.server_cert, pki.server_key, cert, key)
        done["new_serial"] = cert.serial_number
        done["files"] += [str(pki.server_cert), str(pki.server_key)]
        cert, key = pkimod._issue(ca, ca_key, cn=pkimod.ADMIN_USER, orgs=pkimod.ADMIN_GROUPS,
                                  days=pkimod.CLIENT_DAYS)
        pkimod._write_pair(pki.admin_cert, pki.admin_key, cert, key)
        done["files"] += [str(pki.admin_cert), str(pki.admin_key)]
    pki = pkimod.PKI.at(data_dir)
    admin_kc = data_dir / "kubeconfig.yaml"
    write_admin_kubeconfig(data_dir, _server_url(admin_kc), pki)
    done["files"].append(str(admin_kc))
    kcdir = data_dir / "kubeconfigs"
    for path in sorted(kcdir.glob("*.yaml")) if kcdir.is_dir() else []:
        who = _kubeconfig_user(path)
        if who is None:
            log.warning("%s: no embedded client certificate; left alone", path)
            continue
        user, groups, server = who
        mint_user_kubeconfig(data_dir, user, groups, server, out=path)
        done["files"].append(str(path))
    return done


# --------------------------------------------------------------------------- CLI


def cmd_rotate(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    try:
        done = rotate(data_dir)
    except (FileNotFoundError, RuntimeError) as exc:
        sys.stderr.write(f"kubelite certs rotate: {exc}\n")
        return 1
    sys.stdout.write(f"serving certificate re-issued (serial {done['new_serial']:x}); "
                     f"a running server loads it within {RELOAD_INTERVAL:g}s\n")
    for f in done["files"]:
        sys.stdout.write(f"  wrote {f}\n")
    return 0


def register_certs_cli(sub: Any, default_data_dir: str) -> None:
    c = sub.add_parser("certs", help="TLS certificates")
    cs = c.add_subparsers(dest="certs_cmd", required=True)
    r = cs.add_parser("rotate", help="re-issue the serving, admin and component certificates from the cluster CA")
    r.add_argument("--data-dir", default=default_data_dir, help="kubelite's data dir (default: $KUBELITE_DATA_DIR or /var/lib/kubelite)")
    r.set_defaults(func=cmd_rotate)


__all__ = ["register_certs_cli", "rotate"]
