"""Registry credentials for a pull: the pod's imagePullSecrets, as the kubelet's keyring does.

``auth_for(client, pod, image)`` reads the secrets named in ``pod.spec.imagePullSecrets``
(types ``kubernetes.io/dockerconfigjson`` with ``.dockerconfigjson`` =
``{"auths": {key: {...}}}``, and the legacy ``kubernetes.io/dockercfg`` with ``.dockercfg``
= ``{key: {...}}``; an entry has ``auth`` = base64(``user:password``) or
``username``/``password``) and returns the CRI ``AuthConfig`` of the best match for
``image``, or the ``registries.yaml`` credentials (``kubelite.agent.registries``) when no
secret matches, or None.

Matching is pkg/credentialprovider's BasicDockerKeyring: a key may carry a scheme and a
path (``https://quay.io/coreos``; ``/v1/`` and ``/v2/`` mean the bare host); the image
(normalized: ``busybox`` → ``docker.io/library/busybox``, tag and digest dropped) matches a
key when the ports are equal, the host has as many dot-separated parts as the key's and
each part matches its glob (``*.example.com``), and the image path starts with the key's
path. Keys are tried most specific first (reverse-sorted). ``index.docker.io`` (the
docker CLI's ``https://index.docker.io/v1/``) stands for Docker Hub images.

Only the pod's own list is used, as by the kubelet: the ServiceAccount admission plugin has
copied the service account's ``imagePullSecrets`` into the pod when it had none (and the
node authorizer lets a node read no service account). Missing secrets are logged and
skipped, as the kubelet does ("Unable to retrieve some image pull secrets").

``client`` is either the agent's ``fetch(kind, namespace, name) -> obj | None`` or a
``kubelite.client`` Client (``get(api_version, plural, name, namespace=)``).
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kubelite.agent import registries
from kubelite.agent.cri import pb

log = logging.getLogger(__name__)

DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
DOCKER_CFG = "kubernetes.io/dockercfg"
DEFAULT_REGISTRY_HOST = "index.docker.io"
Obj = dict[str, Any]


@dataclass(frozen=True)
class Credential:
    key: str
    username: str = ""
    password: str = ""
    identity_token: str = ""
    registry_token: str = ""

    def auth_config(self) -> pb.AuthConfig:
        return pb.AuthConfig(username=self.username, password=self.password,
                             identity_token=self.identity_token, registry_token=self.registry_token)


# ---------------------------------------------------------------------- image names
def normalize_image(image: str) -> str:
    """``[host/]path[:tag][@digest]`` → ``host/path`` (docker.io/library/… for Hub names)."""
    name = image.split("@", 1)[0]
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > last_slash:
        name = name[:colon]
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    else:
        host, path = "docker.io", name
    if host in ("docker.io", "index.docker.io"):
        host = "docker.io"
        if "/" not in path:
            path = f"library/{path}"
    return f"{host}/{path}"


def _is_default_registry_match(image: str) -> bool:
    parts = image.split("/", 1)
    if not parts[0]:
        return False
    if len(parts) == 1 or parts[0] in ("docker.io", "index.docker.io"):
        return True
    return not any(c in parts[0] for c in ".:")


# ---------------------------------------------------------------------- keyring
def _key_for(location: str) -> str | None:
    value = location if location.startswith(("http://", "https://")) else "https://" + location
    try:
        u = urlsplit(value)
    except ValueError:
        return None
    if not u.netloc:
        return None
    path = u.path
    if path.startswith(("/v2/", "/v1/")):
        path = path[3:]
    return u.netloc + path if path and path != "/" else u.netloc


def _split(schemeless: str) -> tuple[list[str], str, str]:
    u = urlsplit("https://" + schemeless)
    netloc = u.netloc
    host, port = netloc, ""
    if netloc.startswith("["):
        h, _, rest = netloc[1:].partition("]")
        host, port = h, rest.removeprefix(":")
    elif netloc.count(":") == 1:
        host, port = netloc.split(":", 1)
    return host.split("."), port, u.path


def urls_match(glob: str, target: str) -> bool:
    """credentialprovider.URLsMatchStr: glob host parts, equal ports, path prefix."""
    gparts, gport, gpath = _split(glob)
    tparts, tport, tpath = _split(target)
    if gport != tport or len(gparts) != len(tparts) or not tpath.startswith(gpath):
        return False
    return all(fnmatch.fnmatchcase(t, g) for g, t in zip(gparts, tparts, strict=True))


class Keyring:
    def __init__(self) -> None:
        self.creds: dict[str, list[Credential]] = {}

    def add(self, config: Obj) -> None:
        """Add a docker config (``{location: {auth | username/password, ...}}``)."""
        for loc, ident in config.items():
            if not isinstance(ident, dict):
                continue
            key = _key_for(str(loc))
            if key is None:
                log.warning("image pull secret: unusable registry key %r", loc)
                continue
            user = str(ident.get("username") or "")
            pw = str(ident.get("password") or "")
            if ident.get("auth"):
                try:
                    user, sep, pw = base64.b64decode(str(ident["auth"])).decode().partition(":")
                except (binascii.Error, ValueError, UnicodeDecodeError):
                    log.warning("image pull secret: auth of %r is not base64(user:password)", loc)
                    continue
                if not sep:
                    log.warning("image pull secret: auth of %r has no ':'", loc)
                    continue
            self.creds.setdefault(key, []).append(Credential(
                key, user, pw, str(ident.get("identitytoken") or ident.get("identity_token") or ""),
                str(ident.get("registrytoken") or ident.get("registry_token") or "")))

    @property
    def index(self) -> list[str]:
        return sorted(self.creds, reverse=True)

    def lookup(self, image: str) -> list[Credential]:
        """Credentials for ``image`` (any form; normalized here), most specific key first."""
        target = normalize_image(image)
        found: list[Credential] = []
        for key in self.index:
            if urls_match(key, target):
                found += self.creds[key]
        if found:
            return found
        if _is_default_registry_match(target):
            return list(self.creds.get(DEFAULT_REGISTRY_HOST, []))
        return []


def docker_config_of(secret: Obj) -> Obj | None:
    """The docker config (location → entry) of a pull secret, or None if it is not one."""
    data = secret.get("data") or {}
    stype = secret.get("type") or ""
    for want, field, nested in ((DOCKER_CONFIG_JSON, ".dockerconfigjson", True), (DOCKER_CFG, ".dockercfg", False)):
        raw = data.get(field)
        if stype != want or not raw:
            continue
        try:
            doc = json.loads(base64.b64decode(raw))
        except (binascii.Error, ValueError):
            log.warning("image pull secret %s: %s is not valid base64 JSON", _name(secret), field)
            return None
        if nested:
            doc = doc.get("auths") if isinstance(doc, dict) else None
        return doc if isinstance(doc, dict) else None
    return None


def _name(obj: Obj) -> str:
    m = obj.get("metadata") or {}
    return f"{m.get('namespace', '')}/{m.get('name', '')}"


# ---------------------------------------------------------------------- reading secrets
Fetch = Callable[[str, str, str], Awaitable[Obj | None]]


def _fetcher(client: Any) -> Fetch:
    if not callable(client):  # a Client
        async def fetch(kind: str, ns: str, name: str) -> Obj | None:
            try:
                return await client.get("v1", kind, name, namespace=ns)
            except Exception as e:
                if getattr(e, "code", None) == 404:
                    return None
                raise
        return fetch
    return client  # already fetch(kind, ns, name)


async def _get(fetch: Fetch, kind: str, ns: str, name: str) -> Obj | None:
    try:
        return await fetch(kind, ns, name)
    except Exception as e:  # forbidden, API down: pull without these credentials
        log.warning("image pull secrets: cannot read %s %s/%s: %s", kind, ns, name, e)
        return None


def pull_secret_names(pod: Obj) -> list[str]:
    spec = pod.get("spec") or {}
    names = [str(s["name"]) for s in spec.get("imagePullSecrets") or [] if isinstance(s, dict) and s.get("name")]
    return list(dict.fromkeys(names))


async def keyring_for(client: Any, pod: Obj) -> Keyring:
    fetch = _fetcher(client)
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    ring = Keyring()
    missing = []
    for name in pull_secret_names(pod):
        secret = await _get(fetch, "secrets", ns, name)
        if secret is None:
            missing.append(name)
            continue
        cfg = docker_config_of(secret)
        if cfg:
            ring.add(cfg)
    if missing:
        log.warning("Unable to retrieve some image pull secrets (%s) of pod %s/%s; attempting to pull the "
                    "image may not succeed.", ", ".join(missing), ns, (pod.get("metadata") or {}).get("name"))
    return ring


async def auths_for(client: Any, pod: Obj, image: str,
                    configured: registries.Registries | None = None) -> list[pb.AuthConfig]:
    """Every matching AuthConfig in the kubelet's order (secrets, then registries.yaml)."""
    ring = await keyring_for(client, pod)
    out = [c.auth_config() for c in ring.lookup(image)]
    if not out:
        host = normalize_image(image).split("/", 1)[0]
        conf = registries.configured_auth(host, configured) if configured is not None else None
        if conf:
            out.append(pb.AuthConfig(**conf))
    return out


async def auth_for(client: Any, pod: Obj, image: str,
                   configured: registries.Registries | None = None) -> pb.AuthConfig | None:
    """The AuthConfig for pulling ``image`` for ``pod``, or None (pull anonymously). Never raises
    for unreadable secrets (they are logged and skipped)."""
    try:
        auths = await auths_for(client, pod, image, configured)
    except Exception:
        log.exception("image pull credentials for %s", image)
        return None
    return auths[0] if auths else None
