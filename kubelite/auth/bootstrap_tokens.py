"""Bootstrap tokens (plugin/pkg/auth/authenticator/token/bootstrap and
k8s.io/cluster-bootstrap): short-lived bearer tokens that let a new node join.

A token ``<id>.<secret>`` (``[a-z0-9]{6}.[a-z0-9]{16}``) is backed by the Secret
``bootstrap-token-<id>`` in ``kube-system``, of type ``bootstrap.kubernetes.io/token``, with
the keys ``token-id``, ``token-secret``, ``expiration`` (RFC 3339, optional),
``usage-bootstrap-authentication``, ``usage-bootstrap-signing``, ``auth-extra-groups`` and
``description``.  A valid token authenticates as ``system:bootstrap:<id>`` in the groups
``system:bootstrappers`` plus the secret's extra groups (each must match
``system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]``).

The launcher adds :class:`BootstrapTokenAuthenticator` to the API server's authenticator.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import logging
import re
import secrets as pysecrets
from typing import Any

from kubelite.api import errors
from kubelite.api.bootstraptoken import TOKEN_RE, parse_token
from kubelite.apiserver.auth import UserInfo

log = logging.getLogger(__name__)

NAMESPACE = "kube-system"
SECRET_PREFIX = "bootstrap-token-"
SECRET_TYPE = "bootstrap.kubernetes.io/token"
TOKEN_ID_KEY = "token-id"
TOKEN_SECRET_KEY = "token-secret"
EXPIRATION_KEY = "expiration"
DESCRIPTION_KEY = "description"
EXTRA_GROUPS_KEY = "auth-extra-groups"
USAGE_PREFIX = "usage-bootstrap-"
USAGE_AUTHENTICATION = "usage-bootstrap-authentication"
USAGE_SIGNING = "usage-bootstrap-signing"
KNOWN_USAGES = ("signing", "authentication")

USER_PREFIX = "system:bootstrap:"
GROUP = "system:bootstrappers"
# kubeadm's default extra group for node join tokens
DEFAULT_NODE_TOKEN_GROUP = "system:bootstrappers:kubeadm:default-node-token"

TOKEN_ID_RE = re.compile(r"^[a-z0-9]{6}$")
GROUP_RE = re.compile(r"^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def _random(n: int) -> str:
    return "".join(pysecrets.choice(_ALPHABET) for _ in range(n))


def generate_token() -> str:
    """A new random token ``<6>.<16>`` (bootstraputil.GenerateBootstrapToken)."""
    return f"{_random(6)}.{_random(16)}"


def secret_name(token_id: str) -> str:
    return SECRET_PREFIX + token_id


def validate_groups(groups: list[str]) -> str | None:
    """bootstraputil.ValidateBootstrapGroupName for each: the error message, or None."""
    for g in groups:
        if not GROUP_RE.match(g):
            return f"bootstrap group {g!r} is invalid (must match {GROUP_RE.pattern})"
    return None


def rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(s: str) -> dt.datetime | None:
    if not s:
        return None
    v = s.strip()
    if v.endswith(("Z", "z")):
        v = v[:-1] + "+00:00"
    try:
        t = dt.datetime.fromisoformat(v)
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


def token_secret(token: str, ttl: dt.timedelta | None = dt.timedelta(hours=24), description: str = "",
                 usages: tuple[str, ...] = ("signing", "authentication"),
                 groups: tuple[str, ...] = (DEFAULT_NODE_TOKEN_GROUP,), now: dt.datetime | None = None
                 ) -> dict[str, Any]:
    """The Secret that backs ``token`` (kubeadm's encoding: ``data`` base64, ttl None or 0 = never expires)."""
    parsed = parse_token(token)
    if parsed is None:
        raise ValueError(f"the bootstrap token {token!r} was not of the form {TOKEN_RE.pattern!r}")
    err = validate_groups(list(groups))
    if err:
        raise ValueError(err)
    for u in usages:
        if u not in KNOWN_USAGES:
            raise ValueError(f"invalid bootstrap token usage string: {u}, valid usage options: "
                             f"{', '.join(KNOWN_USAGES)}")
    tid, tsecret = parsed
    data: dict[str, str] = {TOKEN_ID_KEY: tid, TOKEN_SECRET_KEY: tsecret}
    if description:
        data[DESCRIPTION_KEY] = description
    if ttl is not None and ttl.total_seconds() > 0:
        data[EXPIRATION_KEY] = rfc3339((now or dt.datetime.now(dt.UTC)) + ttl)
    for u in usages:
        data[USAGE_PREFIX + u] = "true"
    if groups:
        data[EXTRA_GROUPS_KEY] = ",".join(groups)
    return {"apiVersion": "v1", "kind": "Secret", "type": SECRET_TYPE,
            "metadata": {"name": secret_name(tid), "namespace": NAMESPACE},
            "data": {k: base64.b64encode(v.encode()).decode("ascii") for k, v in data.items()}}


def secret_data(secret: dict[str, Any], key: str) -> str:
    raw = (secret.get("data") or {}).get(key)
    if not isinstance(raw, str):
        return ""
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return ""


def has_expired(secret: dict[str, Any], now: dt.datetime | None = None) -> bool:
    """bootstrapsecretutil.HasExpired: an unparsable expiration counts as expired."""
    exp = secret_data(secret, EXPIRATION_KEY)
    if not exp:
        return False
    t = parse_rfc3339(exp)
    if t is None:
        log.info("bootstrap token secret %s has an unparsable expiration %r; treated as expired",
                 (secret.get("metadata") or {}).get("name"), exp)
        return True
    return (now or dt.datetime.now(dt.UTC)) > t


def groups_of(secret: dict[str, Any]) -> list[str] | None:
    """bootstrapsecretutil.GetGroups: system:bootstrappers + the extra groups; None when one is invalid."""
    groups = [GROUP]
    extra = secret_data(secret, EXTRA_GROUPS_KEY)
    if not extra:
        return groups
    for g in extra.split(","):
        g = g.strip()
        if not g:
            continue
        if not GROUP_RE.match(g):
            return None
        if g not in groups:
            groups.append(g)
    return groups


def user_for(secret: dict[str, Any] | None, token_id: str, token_secret_value: str,
             now: dt.datetime | None = None) -> UserInfo | None:
    """The user a token authenticates as against its Secret (TokenAuthenticator.AuthenticateToken)."""
    if secret is None:
        return None
    name = (secret.get("metadata") or {}).get("name", "")
    if (secret.get("metadata") or {}).get("deletionTimestamp"):
        log.info("bootstrap secret %s is being deleted", name)
        return None
    if secret.get("type") != SECRET_TYPE:
        log.info("bootstrap secret %s has an unexpected type %r", name, secret.get("type"))
        return None
    stored = secret_data(secret, TOKEN_SECRET_KEY)
    if not hmac.compare_digest(stored.encode(), token_secret_value.encode()):
        log.info("bootstrap token %s: the secret does not match", token_id)
        return None
    if secret_data(secret, TOKEN_ID_KEY) != token_id:
        log.info("bootstrap secret %s: token-id does not match", name)
        return None
    if has_expired(secret, now):
        log.info("bootstrap token %s has expired", token_id)
        return None
    if secret_data(secret, USAGE_AUTHENTICATION) != "true":
        log.info("bootstrap token %s may not be used for authentication", token_id)
        return None
    groups = groups_of(secret)
    if groups is None:
        log.info("bootstrap secret %s has invalid auth-extra-groups", name)
        return None
    return UserInfo(USER_PREFIX + token_id, tuple(groups))


class BootstrapTokenAuthenticator:
    """A token hook for :class:`kubelite.apiserver.auth.Authenticator`; reads Secrets from
    ``secrets`` (the ResourceStore of v1 secrets, or anything with ``async get(ns, name)``)."""

    def __init__(self, secrets: Any) -> None:
        self.secrets = secrets

    async def __call__(self, token: str) -> UserInfo | None:
        parsed = parse_token(token)
        if parsed is None:
            return None
        tid, tsecret = parsed
        try:
            secret = await self.secrets.get(NAMESPACE, secret_name(tid))
        except errors.StatusError as exc:
            if exc.code != 404:
                raise
            log.info("no bootstrap token secret for token id %s", tid)
            return None
        return user_for(secret, tid, tsecret)


__all__ = ["BootstrapTokenAuthenticator", "GROUP", "NAMESPACE", "SECRET_TYPE", "USER_PREFIX", "generate_token",
           "groups_of", "has_expired", "parse_token", "secret_name", "token_secret", "user_for"]
