"""Registry settings: ``<data_dir>/registries.yaml`` (k3s-like) → containerd ``hosts.toml`` files.

The file is optional. Its format follows k3s::

    mirrors:
      docker.io:
        endpoint: ["http://127.0.0.1:5000"]
      "*":                               # every registry (containerd's ``_default`` dir)
        endpoint: ["https://mirror.example"]
    configs:
      "127.0.0.1:5000":
        tls: {insecure_skip_verify: true, ca_file: ..., cert_file: ..., key_file: ...}
        auth: {username: u, password: p}  # or auth: base64(u:p), identity_token: ...

``write_hosts_toml(data_dir)`` (called before containerd starts) writes one
``<data_dir>/containerd/certs.d/<host>/hosts.toml`` per mirrored or configured registry
host: ``server`` is the upstream (``https://registry-1.docker.io`` for docker.io), each
mirror endpoint is a ``[host."<endpoint>"]`` with ``capabilities = ["pull", "resolve"]``
and the TLS settings of its ``configs`` entry. A plain ``http://`` endpoint is spoken to
over plain http. Files it wrote before and that are no longer configured are removed;
files it did not write are left alone. containerd reads ``certs.d`` on every pull, so
rewriting it needs no restart.

Registries on the loopback (``localhost:<port>``, ``127.0.0.1:<port>``, ``[::1]:<port>``)
need no file at all: containerd 1.6 (remotes/docker/config ConfigureHosts) uses
``http://`` with TLS verification off for a loopback host that has no ``hosts.toml``;
it does not try https first (the https-then-http fallback is containerd ≥ 1.7).

Credentials of ``configs.<host>.auth`` are not written into containerd's config (its CRI
``registry.configs`` are deprecated beside ``config_path``); the agent passes them as the
CRI ``AuthConfig`` of a pull when no imagePullSecret of the pod matches
(``configured_auth``, used by ``kubelite.agent.pullsecrets.auth_for``).
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

log = logging.getLogger(__name__)

REGISTRIES_FILE = "registries.yaml"
MARKER = "# Written by kubelite (kubelite/agent/registries.py) from registries.yaml; regenerated on start."
DOCKER_HUB = "docker.io"
DOCKER_HUB_UPSTREAM = "https://registry-1.docker.io"
DEFAULT_DIR = "_default"  # containerd's directory for "every other host"


class RegistriesError(ValueError):
    pass


@dataclass
class Mirror:
    endpoints: list[str] = field(default_factory=list)


@dataclass
class HostSettings:
    username: str = ""
    password: str = ""
    identity_token: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    insecure_skip_verify: bool = False

    @property
    def has_auth(self) -> bool:
        return bool(self.username or self.password or self.identity_token)


@dataclass
class Registries:
    mirrors: dict[str, Mirror] = field(default_factory=dict)
    configs: dict[str, HostSettings] = field(default_factory=dict)


# ---------------------------------------------------------------------- hosts and URLs
def is_loopback(host: str) -> bool:
    """``localhost[:port]``, ``127.x.x.x[:port]``, ``[::1][:port]`` (containerd's IsLocalhost)."""
    h = host
    if h.startswith("["):
        h = h[1:].split("]", 1)[0]
    elif h.count(":") == 1:
        h = h.split(":", 1)[0]
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def default_endpoint(host: str) -> str:
    """Where containerd pulls ``host`` from without configuration."""
    if host == DOCKER_HUB:
        return DOCKER_HUB_UPSTREAM
    return f"http://{host}" if is_loopback(host) else f"https://{host}"


def _normalize_endpoint(endpoint: str, host: str) -> str:
    e = endpoint.strip().rstrip("/")
    if "://" not in e:
        e = ("http://" if is_loopback(e.split("/", 1)[0]) else "https://") + e
    u = urlsplit(e)
    if u.scheme not in ("http", "https") or not u.netloc:
        raise RegistriesError(f"mirrors.{host}: endpoint {endpoint!r} is not an http(s) URL")
    return e


def _endpoint_host(endpoint: str) -> str:
    return urlsplit(endpoint).netloc


def _host_dir_name(host: str) -> str:
    if host == "*":
        return DEFAULT_DIR
    if not host or "/" in host or host in (".", "..") or any(c.isspace() for c in host):
        raise RegistriesError(f"invalid registry host {host!r}")
    return host


# ---------------------------------------------------------------------- parsing
def _str(v: Any, where: str) -> str:
    if v is None:
        return ""
    if not isinstance(v, str | int | float):
        raise RegistriesError(f"{where}: expected a string")
    return str(v)


def parse(doc: Any) -> Registries:
    """A registries.yaml document → Registries (RegistriesError when malformed)."""
    if doc is None:
        return Registries()
    if not isinstance(doc, dict):
        raise RegistriesError("registries.yaml: expected a mapping with mirrors and configs")
    unknown = set(doc) - {"mirrors", "configs"}
    if unknown:
        log.warning("registries.yaml: ignoring unknown keys %s", ", ".join(sorted(map(str, unknown))))
    reg = Registries()
    for host, m in (doc.get("mirrors") or {}).items():
        host = str(host)
        _host_dir_name(host)
        if m is None:
            m = {}
        if not isinstance(m, dict):
            raise RegistriesError(f"mirrors.{host}: expected a mapping with endpoint")
        eps = m.get("endpoint") or []
        if isinstance(eps, str):
            eps = [eps]
        if not isinstance(eps, list):
            raise RegistriesError(f"mirrors.{host}.endpoint: expected a list of URLs")
        if m.get("rewrite"):
            log.warning("registries.yaml: mirrors.%s.rewrite is not supported (ignored)", host)
        reg.mirrors[host] = Mirror([_normalize_endpoint(_str(e, f"mirrors.{host}.endpoint"), host) for e in eps])
    for host, c in (doc.get("configs") or {}).items():
        host = str(host)
        _host_dir_name(host)
        if c is None:
            c = {}
        if not isinstance(c, dict):
            raise RegistriesError(f"configs.{host}: expected a mapping with auth and/or tls")
        auth = c.get("auth") or {}
        tls = c.get("tls") or {}
        if not isinstance(auth, dict) or not isinstance(tls, dict):
            raise RegistriesError(f"configs.{host}: auth and tls must be mappings")
        s = HostSettings(
            username=_str(auth.get("username"), f"configs.{host}.auth.username"),
            password=_str(auth.get("password"), f"configs.{host}.auth.password"),
            identity_token=_str(auth.get("identity_token") or auth.get("identitytoken"),
                                f"configs.{host}.auth.identity_token"),
            ca_file=_str(tls.get("ca_file"), f"configs.{host}.tls.ca_file"),
            cert_file=_str(tls.get("cert_file"), f"configs.{host}.tls.cert_file"),
            key_file=_str(tls.get("key_file"), f"configs.{host}.tls.key_file"),
            insecure_skip_verify=bool(tls.get("insecure_skip_verify", False)),
        )
        if auth.get("auth") and not s.username:
            try:
                user, _, pw = base64.b64decode(str(auth["auth"]), validate=False).decode().partition(":")
            except (ValueError, UnicodeDecodeError) as e:
                raise RegistriesError(f"configs.{host}.auth.auth: not base64 of user:password") from e
            s.username, s.password = user, pw
        if bool(s.cert_file) != bool(s.key_file):
            raise RegistriesError(f"configs.{host}.tls: cert_file and key_file go together")
        reg.configs[host] = s
    return reg


def load(data_dir: str | Path) -> Registries:
    """``<data_dir>/registries.yaml``, or empty settings when there is none."""
    path = Path(data_dir) / REGISTRIES_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Registries()
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise RegistriesError(f"{path}: {e}") from e
    try:
        return parse(doc)
    except RegistriesError as e:
        raise RegistriesError(f"{path}: {e}") from e


# ---------------------------------------------------------------------- rendering
def _q(value: str) -> str:
    s = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def _tls_lines(s: HostSettings | None, endpoint: str) -> list[str]:
    if s is None:
        return []
    lines = []
    if urlsplit(endpoint).scheme == "https":
        if s.ca_file:
            lines.append(f"ca = {_q(s.ca_file)}")
        if s.cert_file:
            lines.append(f"client = [[{_q(s.cert_file)}, {_q(s.key_file)}]]")
    if s.insecure_skip_verify:
        lines.append("skip_verify = true")
    return lines


def render(reg: Registries) -> dict[str, str]:
    """{certs.d directory name: hosts.toml text}."""
    out: dict[str, str] = {}
    hosts = list(reg.mirrors) + [h for h in reg.configs if h not in reg.mirrors]
    for host in hosts:
        mirror = reg.mirrors.get(host)
        lines = [MARKER]
        if host != "*":
            upstream = default_endpoint(host)
            lines.append(f"server = {_q(upstream)}")
            own = reg.configs.get(host)
            if own is not None:
                lines += _tls_lines(own, upstream)
        else:
            upstream = ""
        for ep in (mirror.endpoints if mirror else []):
            if ep == upstream:
                continue
            lines.append("")
            lines.append(f"[host.{_q(ep)}]")
            lines.append('  capabilities = ["pull", "resolve"]')
            lines += ["  " + ln for ln in _tls_lines(reg.configs.get(_endpoint_host(ep)), ep)]
        out[_host_dir_name(host)] = "\n".join(lines) + "\n"
    # an endpoint host with TLS settings of its own that no mirror list mentions is done above
    # (configs-only hosts); an endpoint host that is only reached through a mirror gets its
    # settings inline in the mirror's file, which is where containerd looks for them.
    return out


def write_hosts_toml(data_dir: str | Path, reg: Registries | None = None) -> list[Path]:
    """Render ``reg`` (by default ``<data_dir>/registries.yaml``) into
    ``<data_dir>/containerd/certs.d/*/hosts.toml``.

    Returns the files written. Raises RegistriesError for a malformed registries.yaml
    (nothing is changed then). Removes hosts.toml files an earlier call wrote that are no
    longer configured.
    """
    data_dir = Path(data_dir)
    if reg is None:
        reg = load(data_dir)
    certs = data_dir / "containerd" / "certs.d"
    certs.mkdir(parents=True, exist_ok=True)
    files = render(reg)
    written: list[Path] = []
    for name, text in files.items():
        d = certs / name
        d.mkdir(parents=True, exist_ok=True)
        path = d / "hosts.toml"
        if path.exists() and not path.read_text().startswith(MARKER):
            log.warning("%s was not written by kubelite: replacing it with registries.yaml's settings", path)
        tmp = path.with_suffix(".toml.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        written.append(path)
    for d in certs.iterdir() if certs.is_dir() else []:
        if d.name in files or not d.is_dir():
            continue
        path = d / "hosts.toml"
        with contextlib.suppress(OSError):
            if path.read_text().startswith(MARKER):
                path.unlink()
                if not any(d.iterdir()):
                    shutil.rmtree(d, ignore_errors=True)
    if written:
        log.info("registry settings: %s", ", ".join(sorted(files)))
    return written


# ---------------------------------------------------------------------- credentials
def configured_auth(host: str, reg: Registries) -> dict[str, str] | None:
    """The registries.yaml credentials for pulling from registry ``host``.

    Tries the mirror endpoints of ``host`` (or of ``*``) in order, then ``host`` itself; the
    result carries ``server_address`` so containerd hands it only to that endpoint.
    """
    if not reg.configs:
        return None
    mirror = reg.mirrors.get(host) or reg.mirrors.get("*")
    candidates = [(_endpoint_host(ep), ep) for ep in (mirror.endpoints if mirror else [])]
    candidates.append((host, default_endpoint(host)))
    if host == DOCKER_HUB:
        candidates.append(("registry-1.docker.io", DOCKER_HUB_UPSTREAM))
        candidates.append(("index.docker.io", "https://index.docker.io"))
    for h, url in candidates:
        s = reg.configs.get(h)
        if s is not None and s.has_auth:
            u = urlsplit(url)
            auth = {"server_address": f"{u.scheme}://{u.netloc}"}
            if s.identity_token:
                auth["identity_token"] = s.identity_token
            if s.username or s.password:
                auth["username"], auth["password"] = s.username, s.password
            return auth
    return None
