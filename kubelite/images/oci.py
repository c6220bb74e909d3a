"""A small, deterministic OCI image writer.

Builds single-layer images from a directory tree or from an explicit list of entries and
writes them as an OCI image-layout tar (``oci-layout``, ``index.json``, ``blobs/sha256/…``)
that ``ctr -n k8s.io images import`` accepts. Every index entry carries the annotations
``io.containerd.image.name`` (the full reference, which containerd uses as the image
name) and ``org.opencontainers.image.ref.name`` (the tag, as the OCI spec has it).

Determinism: tar entries are sorted, owned by 0:0 (unless told otherwise) with a fixed
mtime, gzip headers carry no timestamp or file name, and JSON is serialised with sorted
keys, so the same inputs give byte-identical archives and digests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"

#: fixed timestamp used for tar entries and the config's ``created`` (2024-01-01T00:00:00Z)
EPOCH = 1704067200
CREATED = "2024-01-01T00:00:00Z"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- entries


@dataclass(frozen=True)
class Entry:
    """One file-system entry of a layer. ``path`` is absolute inside the image."""

    path: str
    kind: str  # "file" | "dir" | "symlink" | "hardlink"
    mode: int = 0o644
    data: bytes | None = None  # for files given in memory
    source: Path | None = None  # for files read from the host
    target: str = ""  # for links
    uid: int = 0
    gid: int = 0

    @property
    def name(self) -> str:
        return _norm(self.path)


def _norm(path: str) -> str:
    p = PurePosixPath("/") / path
    parts = [x for x in p.parts[1:] if x not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"path escapes the image root: {path!r}")
    return "/".join(parts)


class LayerBuilder:
    """Collects entries and renders them into a deterministic tar(.gz) layer.

    Parent directories are added automatically (mode 0755). Adding the same path twice
    keeps the last entry.
    """

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}

    # -- adding
    def add_dir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> LayerBuilder:
        self._put(Entry(path, "dir", mode=mode, uid=uid, gid=gid))
        return self

    def add_file(self, path: str, data: bytes | str | None = None, *, source: str | Path | None = None,
                 mode: int = 0o644, uid: int = 0, gid: int = 0) -> LayerBuilder:
        if (data is None) == (source is None):
            raise ValueError("give exactly one of data or source")
        if isinstance(data, str):
            data = data.encode()
        self._put(Entry(path, "file", mode=mode, data=data, source=Path(source) if source else None,
                        uid=uid, gid=gid))
        return self

    def add_symlink(self, path: str, target: str) -> LayerBuilder:
        self._put(Entry(path, "symlink", mode=0o777, target=target))
        return self

    def add_hardlink(self, path: str, target: str) -> LayerBuilder:
        self._put(Entry(path, "hardlink", mode=0o644, target=_norm(target)))
        return self

    def add_tree(self, root: str | Path, prefix: str = "/", *, keep_owner: bool = False) -> LayerBuilder:
        """Add a host directory tree (files, dirs, symlinks) under ``prefix``."""
        root = Path(root)
        if not root.is_dir():
            raise NotADirectoryError(str(root))
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(root)
            for name in [*dirnames, *sorted(filenames)]:
                host = Path(dirpath) / name
                inside = str(PurePosixPath(prefix) / rel_dir.as_posix() / name)
                st = host.lstat()
                uid, gid = (st.st_uid, st.st_gid) if keep_owner else (0, 0)
                mode = stat.S_IMODE(st.st_mode)
                if stat.S_ISLNK(st.st_mode):
                    self.add_symlink(inside, os.readlink(host))
                elif stat.S_ISDIR(st.st_mode):
                    self.add_dir(inside, mode=mode, uid=uid, gid=gid)
                elif stat.S_ISREG(st.st_mode):
                    self.add_file(inside, source=host, mode=mode, uid=uid, gid=gid)
                # sockets, fifos, devices: not image content
        return self

    def add_entries(self, entries: Iterable[Entry]) -> LayerBuilder:
        for e in entries:
            self._put(e)
        return self

    def _put(self, entry: Entry) -> None:
        name = entry.name
        if not name:
            return  # the root itself
        parent = PurePosixPath(name).parent
        while str(parent) not in (".", "/", ""):
            existing = self._entries.get(str(parent))
            if existing is None:
                self._entries[str(parent)] = Entry(str(parent), "dir", mode=0o755)
            elif existing.kind != "dir":
                raise ValueError(f"{parent} is not a directory in the layer")
            parent = parent.parent
        self._entries[name] = entry

    @property
    def paths(self) -> list[str]:
        return sorted(self._entries)

    # -- rendering
    def tar_bytes(self) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(self._entries):
                e = self._entries[name]
                info = tarfile.TarInfo(name)
                info.mtime = EPOCH
                info.uid, info.gid = e.uid, e.gid
                info.uname = info.gname = ""
                info.mode = e.mode
                if e.kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif e.kind == "symlink":
                    info.type = tarfile.SYMTYPE
                    info.linkname = e.target
                    tar.addfile(info)
                elif e.kind == "hardlink":
                    info.type = tarfile.LNKTYPE
                    info.linkname = e.target
                    tar.addfile(info)
                else:
                    data = e.data if e.data is not None else Path(e.source).read_bytes()  # type: ignore[arg-type]
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    def build(self) -> Layer:
        return Layer.from_tar(self.tar_bytes())


@dataclass(frozen=True)
class Layer:
    """A gzip-compressed layer blob with its digests."""

    blob: bytes  # tar.gz
    digest: str  # of the compressed blob
    diff_id: str  # of the uncompressed tar

    @classmethod
    def from_tar(cls, tar: bytes) -> Layer:
        gz = gzip_deterministic(tar)
        return cls(blob=gz, digest=sha256_digest(gz), diff_id=sha256_digest(tar))

    @property
    def size(self) -> int:
        return len(self.blob)


def gzip_deterministic(data: bytes, level: int = 9) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=level, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def layer_from_rootfs(rootfs: str | Path) -> Layer:
    return LayerBuilder().add_tree(rootfs).build()


def layer_from_files(files: Iterable[Entry]) -> Layer:
    return LayerBuilder().add_entries(files).build()


# --------------------------------------------------------------------------- config


@dataclass
class ImageConfig:
    """The runtime part of an OCI image config (``config`` in the JSON)."""

    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[str] = field(default_factory=lambda: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    working_dir: str = ""
    exposed_ports: list[str] = field(default_factory=list)  # "8080/tcp"
    stop_signal: str | None = None
    user: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    volumes: list[str] = field(default_factory=list)
    architecture: str = "amd64"
    os: str = "linux"
    created: str = CREATED

    def runtime_config(self) -> dict:
        c: dict = {}
        if self.user:
            c["User"] = self.user
        if self.exposed_ports:
            c["ExposedPorts"] = {(p if "/" in p else f"{p}/tcp"): {} for p in self.exposed_ports}
        if self.env:
            c["Env"] = list(self.env)
        if self.entrypoint is not None:
            c["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            c["Cmd"] = list(self.cmd)
        if self.volumes:
            c["Volumes"] = {v: {} for v in self.volumes}
        if self.working_dir:
            c["WorkingDir"] = self.working_dir
        if self.labels:
            c["Labels"] = dict(self.labels)
        if self.stop_signal:
            c["StopSignal"] = self.stop_signal
        return c

    def to_json(self, layers: Sequence[Layer]) -> bytes:
        doc = {
            "created": self.created,
            "architecture": self.architecture,
            "os": self.os,
            "config": self.runtime_config(),
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
            "history": [{"created": self.created, "created_by": "kubelite.images.oci"} for _ in layers],
        }
        return _canonical_json(doc)


# --------------------------------------------------------------------------- references


def normalize_reference(ref: str) -> str:
    """Docker-style normalisation: ``busybox`` → ``docker.io/library/busybox:latest``."""
    name, digest = (ref.split("@", 1) + [""])[:2]
    slash = name.find("/")
    first = name[:slash] if slash >= 0 else ""
    if slash < 0 or not ("." in first or ":" in first or first == "localhost"):
        name = "docker.io/" + (name if slash >= 0 else "library/" + name)
    last = name.rsplit("/", 1)[-1]
    if ":" not in last and not digest:
        name += ":latest"
    return name + ("@" + digest if digest else "")


def reference_tag(ref: str) -> str:
    name = ref.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


# --------------------------------------------------------------------------- images and archives


@dataclass
class Image:
    reference: str
    config: ImageConfig
    layers: list[Layer]

    def config_blob(self) -> bytes:
        return self.config.to_json(self.layers)

    def manifest_blob(self) -> bytes:
        cfg = self.config_blob()
        doc = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": sha256_digest(cfg), "size": len(cfg)},
            "layers": [{"mediaType": MEDIA_LAYER_GZIP, "digest": la.digest, "size": la.size}
                       for la in self.layers],
        }
        return _canonical_json(doc)

    @property
    def manifest_digest(self) -> str:
        return sha256_digest(self.manifest_blob())


def build_archive(images: Sequence[Image]) -> bytes:
    """Render one or more images into a single OCI image-layout tar (shared blobs once)."""
    blobs: dict[str, bytes] = {}
    manifests = []
    for img in images:
        for layer in img.layers:
            blobs[layer.digest] = layer.blob
        cfg = img.config_blob()
        blobs[sha256_digest(cfg)] = cfg
        man = img.manifest_blob()
        digest = sha256_digest(man)
        blobs[digest] = man
        full = normalize_reference(img.reference)
        manifests.append({
            "mediaType": MEDIA_MANIFEST,
            "digest": digest,
            "size": len(man),
            "platform": {"architecture": img.config.architecture, "os": img.config.os},
            "annotations": {ANNOTATION_CONTAINERD_NAME: full, ANNOTATION_REF_NAME: reference_tag(full)},
        })
    index = _canonical_json({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": manifests})
    layout = _canonical_json({"imageLayoutVersion": "1.0.0"})

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, data: bytes | None, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.mtime = EPOCH
            info.uname = info.gname = ""
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), mode
                tar.addfile(info, io.BytesIO(data))

        add("blobs", None)
        add("blobs/sha256", None)
        for digest in sorted(blobs):
            add("blobs/sha256/" + digest.split(":", 1)[1], blobs[digest])
        add("index.json", index)
        add("oci-layout", layout)
    return buf.getvalue()


def write_archive(path: str | Path, images: Sequence[Image]) -> Path:
    """Write the archive atomically (temp file + rename); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = build_archive(images)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def write_image(path: str | Path, reference: str, config: ImageConfig, *, rootfs: str | Path | None = None,
                files: Iterable[Entry] | None = None, layer: Layer | None = None) -> Path:
    """Single-layer convenience: from a rootfs directory, a list of entries, or a ready layer."""
    if sum(x is not None for x in (rootfs, files, layer)) != 1:
        raise ValueError("give exactly one of rootfs, files, layer")
    if layer is None:
        layer = layer_from_rootfs(rootfs) if rootfs is not None else layer_from_files(files or [])
    return write_archive(path, [Image(reference, config, [layer])])


def read_archive(path_or_bytes: str | Path | bytes) -> dict:
    """Parse an OCI layout tar back (for tests and `images ls`-style introspection).

    Returns {"index": ..., "blobs": {digest: bytes}, "oci-layout": ...}.
    """
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    out: dict = {"blobs": {}}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for m in tar.getmembers():
            if not m.isfile():
                continue
            f = tar.extractfile(m)
            assert f is not None
            content = f.read()
            if m.name == "index.json":
                out["index"] = json.loads(content)
            elif m.name == "oci-layout":
                out["oci-layout"] = json.loads(content)
            elif m.name.startswith("blobs/sha256/"):
                out["blobs"]["sha256:" + m.name.rsplit("/", 1)[1]] = content
    return out
