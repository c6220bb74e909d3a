"""Reading manifests as ``kubectl -f`` does, offline: files, directories (``-R``), ``-`` for
stdin; multi-document YAML, JSON, and ``List`` kinds; then the pod specs inside them (Pods,
PodTemplates, and the templates of the workload kinds even where the server does not serve
those kinds yet).

Errors carry kubectl's own wording (``k8s.io/cli-runtime/pkg/resource/visitor.go`` and the
unstructured JSON scheme of apimachinery), checked against kubectl 1.37::

    the path "x.yaml" does not exist
    error parsing x.yaml: error converting YAML to JSON: yaml: line 5: ...
    unable to decode "x.yaml": Object 'Kind' is missing in '{"apiVersion":"v1",...}'
    error reading [dir]: recognized file extensions are [.json .yaml .yml]
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

Obj = dict[str, Any]
EXTENSIONS = (".json", ".yaml", ".yml")
STDIN = "STDIN"

# where the pod spec sits in each kind that carries one
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
# restartPolicy values each workload's validation accepts (apps and batch validation)
WORKLOAD_RESTART_POLICIES: dict[str, tuple[str, ...]] = {
    "Deployment": ("Always",), "ReplicaSet": ("Always",), "ReplicationController": ("Always",),
    "DaemonSet": ("Always",), "StatefulSet": ("Always",),
    "Job": ("OnFailure", "Never"), "CronJob": ("OnFailure", "Never"),
}


class ManifestError(Exception):
    """Input that cannot be read; ``str()`` is kubectl's message (without ``error: ``)."""


@dataclass(frozen=True)
class Document:
    source: str  # the file as given (or STDIN)
    index: int  # position of the object in its source, counting List items
    obj: Obj


@dataclass(frozen=True)
class PodSubject:
    """A pod spec to review: a Pod's own, or a workload's template."""

    source: str
    index: int
    api_version: str
    kind: str
    name: str
    namespace: str
    path: str  # where the spec sits: "spec", "spec.template.spec", …
    spec: Obj
    metadata: Obj  # the Pod's metadata, or the template's
    annotations: dict[str, str]  # the object's and its template's

    @property
    def object_ref(self) -> str:
        return f"{self.kind}/{self.name}"


# ------------------------------------------------------------------------------------------ reading
def _go_type(v: Any) -> str:
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    return "object"


def _compact(obj: Any) -> str:
    """sigs.k8s.io/yaml's YAML→JSON: map keys sorted, no spaces."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


def _yaml_error(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"yaml: line {mark.line + 1}: {problem}"
    return f"yaml: {problem}"


def parse(text: str, source: str) -> list[Document]:
    """The objects of one source, Lists expanded; empty documents are skipped."""
    raw: list[Any]
    if text.lstrip().startswith("{"):
        dec = json.JSONDecoder()
        raw, pos, n = [], 0, len(text)
        while True:
            while pos < n and text[pos].isspace():
                pos += 1
            if pos >= n:
                break
            try:
                obj, pos = dec.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                msg = "unexpected EOF" if exc.pos >= len(text.rstrip()) else exc.msg
                raise ManifestError(f"error parsing {source}: {msg}") from None
            raw.append(obj)
    else:
        try:
            raw = [d for d in yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
                   if d is not None]
        except yaml.YAMLError as exc:
            raise ManifestError(f"error parsing {source}: error converting YAML to JSON: {_yaml_error(exc)}") \
                from None
    out: list[Document] = []
    for obj in raw:
        for item in _expand(obj, source):
            out.append(Document(source, len(out), item))
    return out


def _expand(obj: Any, source: str) -> Iterator[Obj]:
    if not isinstance(obj, dict):
        raise ManifestError(f'unable to decode "{source}": json: cannot unmarshal {_go_type(obj)} '
                            "into Go value of type unstructured.detector")
    if not obj.get("kind"):
        raise ManifestError(f"unable to decode \"{source}\": Object 'Kind' is missing in '{_compact(obj)}'")
    if not obj.get("apiVersion"):
        raise ManifestError(f"unable to decode \"{source}\": Object 'apiVersion' is missing in '{_compact(obj)}'")
    if str(obj["kind"]).endswith("List") and isinstance(obj.get("items"), list):
        for item in obj["items"]:
            yield from _expand(item, source)
        return
    yield obj


def _files(path: str, recursive: bool) -> list[Path]:
    p = Path(path)
    if not p.exists():
        raise ManifestError(f'the path "{path}" does not exist')
    if not p.is_dir():
        return [p]
    found: list[Path] = []
    for root, dirs, names in os.walk(p):
        dirs.sort()
        found += [Path(root) / n for n in sorted(names) if n.endswith(EXTENSIONS)]
        if not recursive:
            break
    if not found:
        raise ManifestError(f"error reading [{path}]: recognized file extensions are [{' '.join(EXTENSIONS)}]")
    return found


def read(paths: Iterable[str], recursive: bool = False, stdin: IO[str] | None = None) -> list[Document]:
    """Every object of every source, in order; raises :class:`ManifestError`."""
    docs: list[Document] = []
    for path in paths:
        if path == "-":
            if stdin is None:
                raise ManifestError("no stdin to read")
            docs += parse(stdin.read(), STDIN)
            continue
        for f in _files(path, recursive):
            try:
                text = f.read_text(encoding="utf-8")
            except PermissionError:
                raise ManifestError(f"open {f}: permission denied") from None
            except UnicodeDecodeError as exc:
                raise ManifestError(f"error parsing {f}: {exc}") from None
            except OSError as exc:
                raise ManifestError(f"open {f}: {exc.strerror or exc}") from None
            docs += parse(text, str(f))
    if not docs:
        raise ManifestError("no objects passed to advise")
    return docs


# ------------------------------------------------------------------------------------------ pods
def _dig(obj: Any, path: tuple[str, ...]) -> Any:
    for k in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(k)
    return obj


def pod_subjects(docs: Iterable[Document]) -> tuple[list[PodSubject], list[Document]]:
    """(pod specs to review, objects that carry none)."""
    subjects: list[PodSubject] = []
    others: list[Document] = []
    for d in docs:
        kind = str(d.obj.get("kind"))
        path = POD_SPEC_PATHS.get(kind)
        if path is None:
            others.append(d)
            continue
        raw_meta = d.obj.get("metadata")
        meta: Obj = raw_meta if isinstance(raw_meta, dict) else {}
        spec = _dig(d.obj, path)
        pod_meta = meta if kind == "Pod" else _dig(d.obj, (*path[:-1], "metadata"))
        annotations: dict[str, str] = {}
        for m in (meta, pod_meta):
            if isinstance(m, dict) and isinstance(m.get("annotations"), dict):
                annotations.update({str(k): str(v) for k, v in m["annotations"].items()})
        subjects.append(PodSubject(
            source=d.source, index=d.index, api_version=str(d.obj.get("apiVersion")), kind=kind,
            name=str(meta.get("name") or meta.get("generateName") or "<unnamed>"),
            namespace=str(meta.get("namespace") or ""), path=".".join(path),
            spec=spec if isinstance(spec, dict) else {},
            metadata=pod_meta if isinstance(pod_meta, dict) else {}, annotations=annotations))
    return subjects, others
