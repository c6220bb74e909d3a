"""Servers sharing one etcd share one cluster identity, as k3s's servers do.

The first server on an etcd (under its key prefix) writes its cluster CA and service-account
key pair into the datastore, encrypted with the cluster token (``--token``, or one it makes and
keeps in ``DIR/server-token``); a server started later on the same etcd with that token takes
them before creating its PKI, so every server issues and accepts the same certificates and
service-account tokens and one admin kubeconfig works on all of them (k3s's bootstrap data,
pkg/bootstrap and pkg/cluster/storage.go, which encrypts with a key derived from the token).

Only the CA and the SA keys are shared: each server still issues its own serving certificate
(its own SANs) and admin client certificate from the shared CA.
"""

from __future__ import annotations

import json
import os
import secrets
from base64 import b64decode, b64encode
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from kubelite.store.base import KeyExistsError, Store
from kubelite.tls.pki import PKI, atomic_write

BOOTSTRAP_KEY = "/registry/kubelite.io/bootstrap/cluster"  # under no resource's prefix
TOKEN_FILE = "server-token"
SHARED = ("ca_cert", "ca_key", "sa_key", "sa_pub")
_ITERATIONS = 200_000


class BootstrapError(Exception):
    pass


def _key(token: str, salt: bytes) -> bytes:
    return PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=_ITERATIONS).derive(
        token.encode())


def seal(token: str, files: dict[str, bytes]) -> bytes:
    salt, nonce = os.urandom(16), os.urandom(12)
    plain = json.dumps({k: b64encode(v).decode() for k, v in files.items()}).encode()
    sealed = AESGCM(_key(token, salt)).encrypt(nonce, plain, BOOTSTRAP_KEY.encode())
    return json.dumps({"v": 1, "salt": b64encode(salt).decode(), "nonce": b64encode(nonce).decode(),
                       "data": b64encode(sealed).decode()}).encode()


def unseal(token: str, blob: bytes) -> dict[str, bytes]:
    try:
        doc = json.loads(blob)
        salt, nonce, data = (b64decode(doc[k]) for k in ("salt", "nonce", "data"))
    except (ValueError, KeyError, TypeError) as exc:
        raise BootstrapError(f"the cluster bootstrap data in the datastore is unreadable: {exc}") from None
    try:
        plain = AESGCM(_key(token, salt)).decrypt(nonce, data, BOOTSTRAP_KEY.encode())
    except InvalidTag:
        raise BootstrapError("the --token does not match the one this cluster's first server was started "
                             "with (see its DIR/server-token)") from None
    return {k: b64decode(v) for k, v in json.loads(plain).items()}


def server_token(data_dir: Path, given: str) -> str:
    """The cluster token: the flag's, else the one this data dir keeps (made on first start)."""
    path = Path(data_dir) / TOKEN_FILE
    if given:
        if not path.exists():
            atomic_write(path, (given + "\n").encode(), 0o600)
        return given
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_hex(16)
    atomic_write(path, (token + "\n").encode(), 0o600)
    return token


async def join(store: Store, pki: PKI, token: str) -> bool:
    """Before the PKI is made: take the cluster's CA and SA keys from the datastore when they are
    there (True). Refuses a data dir that already has a different CA."""
    kv = await store.get(BOOTSTRAP_KEY)
    if kv is None:
        return False
    files = unseal(token, kv.value)
    paths = {name: getattr(pki, name) for name in SHARED}
    if paths["ca_cert"].exists() and paths["ca_cert"].read_bytes() != files["ca_cert"]:
        raise BootstrapError(f"{pki.dir} holds another cluster's CA than the one in the datastore; "
                             "start this server on a new --data-dir to join the cluster")
    pki.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name, path in paths.items():
        if not path.exists() or path.read_bytes() != files[name]:
            atomic_write(path, files[name], 0o644 if name in ("ca_cert", "sa_pub") else 0o600)
    return True


async def publish(store: Store, pki: PKI, token: str) -> None:
    """After the first server made its PKI: put the shared part in the datastore."""
    files = {name: getattr(pki, name).read_bytes() for name in SHARED}
    try:
        await store.create(BOOTSTRAP_KEY, seal(token, files))
    except KeyExistsError:
        # another first server won the race: this one's CA is not the cluster's
        raise BootstrapError("another server published the cluster's bootstrap data at the same time; "
                             "restart this one on a new --data-dir to join it") from None
