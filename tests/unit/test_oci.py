from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile

import pytest

from kubelite.images import oci
from kubelite.images.oci import Entry, Image, ImageConfig, LayerBuilder


def _layer_members(blob: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob)), mode="r:") as tar:
        return {m.name: m for m in tar.getmembers()}


def _layer_file(blob: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob)), mode="r:") as tar:
        f = tar.extractfile(name)
        assert f is not None
        return f.read()


def _sample_layer() -> oci.Layer:
    return (LayerBuilder()
            .add_file("/bin/tool", b"#!/bin/sh\necho hi\n", mode=0o755)
            .add_symlink("/usr/bin/tool", "/bin/tool")
            .add_dir("/tmp", mode=0o1777)
            .add_file("etc/passwd", "root:x:0:0::/root:/bin/sh\n")
            .build())


def test_layer_is_deterministic_and_digests_match():
    a, b = _sample_layer(), _sample_layer()
    assert a.blob == b.blob and a.digest == b.digest
    assert a.digest == "sha256:" + hashlib.sha256(a.blob).hexdigest()
    assert a.diff_id == "sha256:" + hashlib.sha256(gzip.decompress(a.blob)).hexdigest()
    # gzip header: no mtime, no file name
    assert a.blob[4:8] == b"\0\0\0\0" and not (a.blob[3] & 0x08)


def test_layer_entries_parents_modes_and_owners():
    layer = _sample_layer()
    members = _layer_members(layer.blob)
    assert list(members) == sorted(members)
    assert {"bin", "bin/tool", "usr", "usr/bin", "usr/bin/tool", "tmp", "etc", "etc/passwd"} == set(members)
    assert members["usr"].isdir() and members["usr"].mode == 0o755  # implied parent
    assert members["tmp"].mode == 0o1777
    assert members["bin/tool"].mode == 0o755 and members["etc/passwd"].mode == 0o644
    assert members["usr/bin/tool"].issym() and members["usr/bin/tool"].linkname == "/bin/tool"
    assert all(m.uid == 0 and m.gid == 0 and m.mtime == oci.EPOCH for m in members.values())
    assert _layer_file(layer.blob, "bin/tool") == b"#!/bin/sh\necho hi\n"


def test_layer_rejects_escapes_and_file_over_dir():
    with pytest.raises(ValueError):
        LayerBuilder().add_file("/../etc/passwd", b"x")
    lb = LayerBuilder().add_file("/a", b"x")
    with pytest.raises(ValueError):
        lb.add_file("/a/b", b"y")
    with pytest.raises(ValueError):
        LayerBuilder().add_file("/a")  # neither data nor source


def test_add_tree_from_rootfs(tmp_path):
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "app").write_bytes(b"\x7fELF")
    os.chmod(root / "bin" / "app", 0o750)
    (root / "etc").mkdir()
    (root / "etc" / "conf").write_text("k=v\n")
    os.symlink("app", root / "bin" / "alias")
    (root / "empty").mkdir()
    layer = oci.layer_from_rootfs(root)
    members = _layer_members(layer.blob)
    assert set(members) == {"bin", "bin/app", "bin/alias", "etc", "etc/conf", "empty"}
    assert members["bin/app"].mode == 0o750
    assert members["bin/alias"].linkname == "app"
    assert _layer_file(layer.blob, "etc/conf") == b"k=v\n"
    assert oci.layer_from_rootfs(root).digest == layer.digest


def test_layer_from_files_list():
    layer = oci.layer_from_files([Entry("/x/y", "file", data=b"1"), Entry("/l", "symlink", target="/x/y")])
    assert set(_layer_members(layer.blob)) == {"x", "x/y", "l"}


def test_config_fields():
    cfg = ImageConfig(entrypoint=["/kuard"], cmd=["--port", "8080"], env=["A=1"], working_dir="/srv",
                      exposed_ports=["8080/tcp", "9090"], stop_signal="SIGTERM", user="65534:65534",
                      labels={"color": "blue"})
    layer = _sample_layer()
    doc = json.loads(cfg.to_json([layer]))
    c = doc["config"]
    assert c["Entrypoint"] == ["/kuard"] and c["Cmd"] == ["--port", "8080"]
    assert c["Env"] == ["A=1"] and c["WorkingDir"] == "/srv" and c["User"] == "65534:65534"
    assert c["ExposedPorts"] == {"8080/tcp": {}, "9090/tcp": {}}
    assert c["StopSignal"] == "SIGTERM" and c["Labels"] == {"color": "blue"}
    assert doc["architecture"] == "amd64" and doc["os"] == "linux"
    assert doc["rootfs"] == {"type": "layers", "diff_ids": [layer.diff_id]}
    bare = json.loads(ImageConfig(env=[]).to_json([layer]))["config"]
    assert bare == {}


@pytest.mark.parametrize("ref,full,tag", [
    ("busybox", "docker.io/library/busybox:latest", "latest"),
    ("library/busybox:1.36", "docker.io/library/busybox:1.36", "1.36"),
    ("kubelite.local/pause:3.10", "kubelite.local/pause:3.10", "3.10"),
    ("localhost:5000/app", "localhost:5000/app:latest", "latest"),
    ("127.0.0.1:5000/a/b:v1", "127.0.0.1:5000/a/b:v1", "v1"),
    ("quay.io/x/y@sha256:" + "a" * 64, "quay.io/x/y@sha256:" + "a" * 64, "latest"),
])
def test_reference_normalisation(ref, full, tag):
    assert oci.normalize_reference(ref) == full
    assert oci.reference_tag(full) == tag


def test_archive_layout_index_and_blobs(tmp_path):
    layer = _sample_layer()
    imgs = [Image("kubelite.local/app:blue", ImageConfig(entrypoint=["/bin/tool"], labels={"c": "blue"}), [layer]),
            Image("kubelite.local/app:green", ImageConfig(entrypoint=["/bin/tool"], labels={"c": "green"}), [layer])]
    path = oci.write_archive(tmp_path / "out" / "app.tar", imgs)
    data = path.read_bytes()
    assert data == oci.build_archive(imgs)  # deterministic
    assert not (tmp_path / "out" / "app.tar.tmp").exists()
    with tarfile.open(path) as tar:
        names = tar.getnames()
    assert names[:2] == ["blobs", "blobs/sha256"] and names[-2:] == ["index.json", "oci-layout"]

    parsed = oci.read_archive(path)
    assert parsed["oci-layout"] == {"imageLayoutVersion": "1.0.0"}
    index = parsed["index"]
    assert index["schemaVersion"] == 2 and index["mediaType"] == oci.MEDIA_INDEX
    assert [m["annotations"] for m in index["manifests"]] == [
        {"io.containerd.image.name": "kubelite.local/app:blue", "org.opencontainers.image.ref.name": "blue"},
        {"io.containerd.image.name": "kubelite.local/app:green", "org.opencontainers.image.ref.name": "green"},
    ]
    blobs = parsed["blobs"]
    # every blob is stored under its digest; the shared layer once
    for digest, content in blobs.items():
        assert digest == "sha256:" + hashlib.sha256(content).hexdigest()
    assert len(blobs) == 1 + 2 + 2  # layer, two configs, two manifests
    for entry in index["manifests"]:
        man = json.loads(blobs[entry["digest"]])
        assert entry["size"] == len(blobs[entry["digest"]])
        assert man["mediaType"] == oci.MEDIA_MANIFEST and man["schemaVersion"] == 2
        assert man["layers"] == [{"mediaType": oci.MEDIA_LAYER_GZIP, "digest": layer.digest, "size": layer.size}]
        cfg = json.loads(blobs[man["config"]["digest"]])
        assert man["config"]["size"] == len(blobs[man["config"]["digest"]])
        assert cfg["rootfs"]["diff_ids"] == [layer.diff_id]
    assert index["manifests"][0]["digest"] != index["manifests"][1]["digest"]


def test_write_image_single_layer_helpers(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    (root / "hello").write_text("hi")
    a = oci.write_image(tmp_path / "a.tar", "kubelite.local/hello:1", ImageConfig(cmd=["/hello"]), rootfs=root)
    b = oci.write_image(tmp_path / "b.tar", "kubelite.local/hello:1", ImageConfig(cmd=["/hello"]),
                        files=[Entry("/hello", "file", data=b"hi", mode=0o644)])
    assert a.read_bytes() == b.read_bytes()
    with pytest.raises(ValueError):
        oci.write_image(tmp_path / "c.tar", "x", ImageConfig(), rootfs=root, files=[])


@pytest.mark.skipif(not shutil.which("busybox"), reason="busybox-static not installed")
def test_busybox_applets_cover_what_the_images_promise():
    from pathlib import Path

    from kubelite.images.build import busybox_applets

    applets = {p.rsplit("/", 1)[-1] for p in busybox_applets(Path(shutil.which("busybox")))}
    for name in ("sh", "ash", "ls", "cat", "sleep", "wget", "tar", "httpd", "hostname",
                 "ip", "ps", "top", "dd", "yes", "date"):
        assert name in applets, name


@pytest.mark.skipif(not shutil.which("busybox") or not shutil.which("gcc"), reason="busybox-static/gcc missing")
def test_busybox_image_content(tmp_path):
    from kubelite.images.build import busybox_image, compile_ipctools

    img = busybox_image(compile_ipctools(tmp_path / "work"))
    members = _layer_members(img.layers[0].blob)
    assert members["bin/busybox"].isfile() and members["bin/busybox"].mode == 0o755
    assert members["bin/sh"].linkname == "/bin/busybox"
    assert members["usr/bin/ipcs"].linkname == "/usr/bin/ipctools"
    assert members["tmp"].mode == 0o1777
    assert b"nobody:x:65534" in _layer_file(img.layers[0].blob, "etc/passwd")
    assert img.config.cmd == ["sh"]
