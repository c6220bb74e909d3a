#!/usr/bin/env python3
"""Extract the Go struct layout of the served API types into ``kubelite/api/gotypes.json``.

kube-apiserver decodes every request body into Go structs (k8s.io/api, k8s.io/apimachinery)
and encodes the struct back; the OpenAPI schemas do not say what Go needs for that: the Go
type names its decode errors print (``v1.RestartPolicy``, ``[]v1.Container``), the field
order of each struct and the ``omitempty`` / ``omitzero`` / pointer-ness of each field. This
script reads them from the upstream sources (facts, not code) so that
``kubelite/api/decode.py`` can mirror Go's decoding.

    python3 scripts/gen_gotypes.py --api DIR --apimachinery DIR > kubelite/api/gotypes.json

DIR is a checkout (or a bare mirror, read with ``git show HEAD:…``) of github.com/kubernetes/api
and github.com/kubernetes/apimachinery at the release whose schemas kubelite ships.

Output: ``{"structs": {model name: [go name, [[json, type chain, flags], …]]}}`` with fields
in Go declaration order (embedded structs flattened), ``type chain`` the reflect string of
the field type without its pointer, then of its element type (slices, maps) and so on;
``flags``: 1 omitempty, 2 pointer, 4 omitzero.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

API_PACKAGES = ["core/v1", "apps/v1", "batch/v1", "rbac/v1", "coordination/v1", "certificates/v1", "events/v1",
                "authorization/v1", "authentication/v1", "policy/v1"]
MACHINERY_PACKAGES = ["pkg/apis/meta/v1", "pkg/api/resource", "pkg/util/intstr", "pkg/runtime", "pkg/types"]
BUILTINS = {"string", "bool", "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32",
            "uint64", "float32", "float64", "byte", "rune", "any", "error", "uintptr"}
F_OMITEMPTY, F_POINTER, F_OMITZERO = 1, 2, 4


class Source:
    """A checkout or a bare git mirror."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bare = not (root / ".git").exists() and (root / "HEAD").exists()

    def files(self, pkg: str) -> list[tuple[str, str]]:
        if self.bare:
            names = subprocess.run(["git", "-C", str(self.root), "ls-tree", "--name-only", "HEAD", pkg + "/"],
                                   check=True, capture_output=True, text=True).stdout.split()
            return [(n, subprocess.run(["git", "-C", str(self.root), "show", f"HEAD:{n}"], check=True,
                                       capture_output=True, text=True).stdout)
                    for n in names if _wanted(n)]
        return [(str(p), p.read_text()) for p in sorted((self.root / pkg).glob("*.go")) if _wanted(p.name)]


def _wanted(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base.endswith(".go") and not base.endswith("_test.go") and not base.startswith("zz_generated") \
        and "generated" not in base and "fuzz" not in base


def strip_comments(src: str) -> str:
    out: list[str] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c == "/" and src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif c == "/" and src.startswith("/*", i):
            j = src.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c in "`\"'":
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if c != "`" and src[j] == "\\" else 1
            out.append(src[i:j + 1])
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


_IMPORT_RE = re.compile(r'^\s*(?:(\w+|\.)\s+)?"([^"]+)"\s*$')


def imports(src: str) -> dict[str, str]:
    """alias → Go package path."""
    out: dict[str, str] = {}
    lines: list[str] = []
    for m in re.finditer(r"^import\s*\((.*?)^\)", src, re.S | re.M):
        lines += m.group(1).splitlines()
    lines += [m.group(1) for m in re.finditer(r"^import\s+(.+)$", src, re.M) if "(" not in m.group(1)]
    for line in lines:
        m = _IMPORT_RE.match(line)
        if m:
            out[m.group(1) or m.group(2).rsplit("/", 1)[-1]] = m.group(2)
    return out


def _blocks(src: str) -> list[tuple[str, str]]:
    """(name, rhs) of every type declaration; struct bodies kept whole."""
    decls: list[tuple[str, str]] = []
    for m in re.finditer(r"^type\s*\((.*?)^\)", src, re.S | re.M):
        for line in m.group(1).splitlines():
            parts = line.split(None, 1)
            if len(parts) == 2 and not parts[1].startswith("struct") and not parts[1].startswith("interface"):
                decls.append((parts[0], parts[1].strip()))
    for m in re.finditer(r"^type\s+(\w+)(\[[^\]]*\])?\s+(.*)$", src, re.M):
        name, rhs = m.group(1), m.group(3).strip()
        if rhs.startswith("struct"):
            start = src.index("{", m.start())
            depth, j = 0, start
            while True:
                if src[j] == "{":
                    depth += 1
                elif src[j] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            decls.append((name, "struct" + src[start:j + 1]))
        elif not rhs.startswith("interface") and not rhs.startswith("="):
            decls.append((name, rhs))
    return decls


def _qualify(texpr: str, pkgname: str, aliases: dict[str, str], local: set[str]) -> str:
    """A Go type expression with every named type as ``<package path>.Name`` (``pkgname`` is
    the path of the declaring package); :func:`display` turns it into reflect's form."""
    texpr = texpr.strip()
    if texpr.startswith("*"):
        return "*" + _qualify(texpr[1:], pkgname, aliases, local)
    if texpr.startswith("[]"):
        return "[]" + _qualify(texpr[2:], pkgname, aliases, local)
    if texpr.startswith("map["):
        depth, j = 0, 3
        while True:
            if texpr[j] == "[":
                depth += 1
            elif texpr[j] == "]":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        return f"map[{_qualify(texpr[4:j], pkgname, aliases, local)}]{_qualify(texpr[j + 1:], pkgname, aliases, local)}"
    if texpr in ("interface{}", "any"):
        return "interface {}"
    if texpr == "byte":
        return "uint8"
    if "." in texpr:
        alias, name = texpr.split(".", 1)
        return f"<{aliases.get(alias, alias)}>.{name}"
    if texpr in BUILTINS:
        return texpr
    return f"<{pkgname}>.{texpr}"


def display(t: str) -> str:
    """``[]<k8s.io/api/core/v1>.Container`` → ``[]v1.Container`` (reflect.Type.String())."""
    return re.sub(r"<([^>]*)>", lambda m: m.group(1).rsplit("/", 1)[-1], t)


def _tag_json(tag: str) -> tuple[str | None, set[str]]:
    m = re.search(r'json:"([^"]*)"', tag)
    if not m:
        return None, set()
    parts = m.group(1).split(",")
    return parts[0], set(parts[1:])


class Universe:
    def __init__(self) -> None:
        # reflect string ("v1.PodSpec") → (package path, Go name, kind, payload)
        self.types: dict[str, tuple[str, str, str, object]] = {}

    def add_package(self, path: str, files: list[tuple[str, str]]) -> None:
        pkgname = path
        decls: list[tuple[str, str, dict[str, str]]] = []
        for _, text in files:
            src = strip_comments(text)
            aliases = imports(src)
            decls += [(n, rhs, aliases) for n, rhs in _blocks(src)]
        local = {n for n, _, _ in decls}
        for name, rhs, aliases in decls:
            key = f"<{path}>.{name}"
            if rhs.startswith("struct"):
                fields = []
                for line in rhs[rhs.index("{") + 1:-1].splitlines():
                    line = line.strip()
                    if not line:
                        continue
                    tag = ""
                    if "`" in line:
                        tag = line[line.index("`") + 1:line.rindex("`")]
                        line = line[:line.index("`")].strip()
                    parts = line.split(None, 1)
                    if len(parts) == 1:  # embedded
                        fields.append((None, _qualify(parts[0], pkgname, aliases, local), tag))
                    else:
                        fields.append((parts[0], _qualify(parts[1], pkgname, aliases, local), tag))
                self.types.setdefault(key, (path, name, "struct", fields))
            else:
                self.types.setdefault(key, (path, name, "named", _qualify(rhs, pkgname, aliases, local)))

    def underlying(self, t: str) -> str:
        seen = 0
        while t in self.types and self.types[t][2] == "named" and seen < 8:
            t = str(self.types[t][3])
            seen += 1
        return t

    def chain(self, t: str) -> list[str]:
        """The type, then its element type, … (pointers stripped), as reflect prints them."""
        out: list[str] = []
        while True:
            t = t.lstrip("*")
            out.append(display(t))
            u = self.underlying(t)
            if u.startswith("[]") and u != "[]uint8":
                t = u[2:]
            elif u.startswith("map["):
                depth, j = 0, 3
                while True:
                    if u[j] == "[":
                        depth += 1
                    elif u[j] == "]":
                        depth -= 1
                        if depth == 0:
                            break
                    j += 1
                t = u[j + 1:]
            else:
                return out

    def flat_fields(self, key: str) -> list[list[object]]:
        path, _, kind, fields = self.types[key]
        out: list[list[object]] = []
        for fname, ftype, tag in fields:  # type: ignore[union-attr]
            jname, opts = _tag_json(tag)
            if jname == "-":
                continue
            inline = fname is None and (jname in (None, "") or "inline" in opts)
            if inline:
                base = ftype.lstrip("*")
                if base in self.types and self.types[base][2] == "struct":
                    out += self.flat_fields(base)
                continue
            if fname is not None and not fname[0].isupper():
                continue  # unexported
            flags = (F_OMITEMPTY if "omitempty" in opts else 0) | (F_POINTER if ftype.startswith("*") else 0) | \
                (F_OMITZERO if "omitzero" in opts else 0)
            out.append([jname or fname, self.chain(ftype), flags])
        return out


def model_name(pkg_path: str, name: str) -> str:
    """k8s.io/api/core/v1 + Pod → io.k8s.api.core.v1.Pod (the OpenAPI definition name)."""
    host, rest = pkg_path.split("/", 1)
    return ".".join(reversed(host.split("."))) + "." + rest.replace("/", ".") + "." + name


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--api", type=Path, required=True)
    ap.add_argument("--apimachinery", type=Path, required=True)
    args = ap.parse_args()
    u = Universe()
    for root, prefix, pkgs in ((args.api, "k8s.io/api", API_PACKAGES),
                               (args.apimachinery, "k8s.io/apimachinery", MACHINERY_PACKAGES)):
        src = Source(root)
        for pkg in pkgs:
            u.add_package(f"{prefix}/{pkg}", src.files(pkg))
    structs: dict[str, list[object]] = {}
    for key, (path, name, kind, _) in sorted(u.types.items()):
        if kind == "struct" and name[0].isupper():
            structs[model_name(path, name)] = [name, u.flat_fields(key)]
    json.dump({"structs": structs}, sys.stdout, separators=(",", ":"), sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
