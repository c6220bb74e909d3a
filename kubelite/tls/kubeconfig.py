"""Kubeconfig files for kubelite users (client-certificate based)."""

from __future__ import annotations

from pathlib import Path

import yaml

from kubelite.tls.pki import (
    ADMIN_USER,
    PKI,
    atomic_write,
    issue_client_cert,
    kubeconfig_dict,
    load_pki,
    write_kubeconfig,
)

ADMIN_KUBECONFIG = "kubeconfig.yaml"


def write_admin_kubeconfig(data_dir: Path, server_url: str, pki: PKI) -> Path:
    """``<data_dir>/kubeconfig.yaml`` for the admin (CN kubelite-admin, O system:masters), mode 0600."""
    path = Path(data_dir) / ADMIN_KUBECONFIG
    write_kubeconfig(path, server_url, pki.ca_pem or pki.ca_cert.read_bytes(),
                     pki.admin_cert.read_bytes(), pki.admin_key.read_bytes(), ADMIN_USER)
    return path


def mint_user_kubeconfig(data_dir: Path, user: str, groups: list[str], server_url: str,
                         days: int = 365, out: Path | None = None) -> str:
    """Issue a client cert for ``user``/``groups`` from the cluster CA and return a kubeconfig
    (YAML text) for it; also written to ``out`` (mode 0600) when given.

    Uses the existing PKI of ``data_dir`` (never creates or re-issues server material)."""
    pki = load_pki(Path(data_dir))
    cert_pem, key_pem = issue_client_cert(pki, user, groups, days=days)
    ca_pem = pki.ca_pem or pki.ca_cert.read_bytes()
    text = yaml.safe_dump(kubeconfig_dict(server_url, ca_pem, cert_pem, key_pem, user), sort_keys=False)
    if out is not None:
        atomic_write(Path(out), text.encode(), 0o600)
    return text
