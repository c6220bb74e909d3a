"""Build kubelite's offline images (no registry reachable): pause, busybox, kuard.

    python -m kubelite.images.build OUTDIR      # e.g. build/images

Writes one OCI image-layout tar per reference into OUTDIR (see ``IMAGES``). The output
is deterministic for given host binaries (Debian's catatonit and busybox-static, and the
kuard stand-in compiled here from examples/kuard/kuard.c with ``gcc -static -O2``, and
ipcs/ipcmk/ipcrm from examples/kuard/ipctools.c, which busybox-static lacks).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from kubelite.images.oci import Image, ImageConfig, Layer, LayerBuilder, write_archive

REPO = Path(__file__).resolve().parents[2]
KUARD_SOURCE = REPO / "examples" / "kuard" / "kuard.c"
#: ipcs/ipcmk/ipcrm (busybox-static has no System V IPC applets)
IPCTOOLS_SOURCE = REPO / "examples" / "kuard" / "ipctools.c"

PAUSE = "kubelite.local/pause:3.10"
BUSYBOX = "kubelite.local/busybox:latest"
KUARD = "kubelite.local/kuard-amd64"
KUARD_COLORS = ("blue", "green", "purple")

#: reference -> archive file name in the output directory
IMAGES: dict[str, str] = {
    PAUSE: "pause-3.10.tar",
    BUSYBOX: "busybox-latest.tar",
    **{f"{KUARD}:{c}": f"kuard-amd64-{c}.tar" for c in KUARD_COLORS},
}

CATATONIT_CANDIDATES = ("/usr/bin/catatonit", "/usr/libexec/catatonit/catatonit")
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnobody:x:65534:\n"


class BuildError(RuntimeError):
    pass


def _find(candidates: tuple[str, ...], package: str) -> Path:
    for c in candidates:
        if Path(c).is_file():
            return Path(c)
    raise BuildError(f"none of {', '.join(candidates)} exists: install the Debian package {package}")


def busybox_applets(busybox: Path) -> list[str]:
    """Install paths (bin/sh, usr/bin/wget, sbin/ip, …) of every applet of this busybox."""
    out = subprocess.run([str(busybox), "--list-full"], check=True, capture_output=True, text=True).stdout
    return sorted({line.strip() for line in out.splitlines() if line.strip()})


def add_busybox(layer: LayerBuilder, busybox: Path, ipctools: Path | None = None) -> LayerBuilder:
    layer.add_file("/bin/busybox", source=busybox, mode=0o755)
    for rel in busybox_applets(busybox):
        if rel == "bin/busybox":
            continue
        layer.add_symlink("/" + rel, "/bin/busybox")
    if ipctools is not None:
        layer.add_file("/usr/bin/ipctools", source=ipctools, mode=0o755)
        for tool in ("ipcs", "ipcmk", "ipcrm"):
            layer.add_symlink(f"/usr/bin/{tool}", "/usr/bin/ipctools")
    for d in ("/bin", "/sbin", "/usr/bin", "/usr/sbin", "/etc", "/var", "/home", "/proc", "/sys", "/dev"):
        layer.add_dir(d)
    layer.add_dir("/root", mode=0o700)
    layer.add_dir("/tmp", mode=0o1777)
    layer.add_dir("/var/tmp", mode=0o1777)
    layer.add_file("/etc/passwd", PASSWD)
    layer.add_file("/etc/group", GROUP)
    return layer


def compile_static(source: Path, work: Path, name: str | None = None) -> Path:
    """``gcc -static -O2`` a one-file C program into ``work``; reused while the source is unchanged."""
    if not source.is_file():
        raise BuildError(f"source not found: {source}")
    name = name or source.stem
    work.mkdir(parents=True, exist_ok=True)
    binary = work / name
    stamp = work / f"{name}.src-sha256"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    if binary.is_file() and stamp.is_file() and stamp.read_text() == digest:
        return binary
    gcc = shutil.which("gcc") or "gcc"
    tmp = work / f"{name}.tmp"
    cmd = [gcc, "-static", "-O2", "-pthread", "-o", str(tmp), str(source)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise BuildError(f"{' '.join(cmd)} failed:\n{res.stderr}")
    tmp.replace(binary)
    stamp.write_text(digest)
    return binary


def pause_image() -> Image:
    catatonit = _find(CATATONIT_CANDIDATES, "catatonit")
    layer = LayerBuilder().add_file("/pause", source=catatonit, mode=0o755).build()
    return Image(PAUSE, ImageConfig(entrypoint=["/pause", "-P"], env=[],
                                    labels={"org.kubelite.image": "pause"}), [layer])


def compile_kuard(work: Path, source: Path = KUARD_SOURCE) -> Path:
    return compile_static(source, work, "kuard")


def compile_ipctools(work: Path, source: Path = IPCTOOLS_SOURCE) -> Path:
    return compile_static(source, work, "ipctools")


def busybox_image(ipctools: Path | None = None) -> Image:
    layer = add_busybox(LayerBuilder(), _find(BUSYBOX_CANDIDATES, "busybox-static"), ipctools).build()
    return Image(BUSYBOX, ImageConfig(cmd=["sh"], labels={"org.kubelite.image": "busybox"}), [layer])


def kuard_layer(kuard_binary: Path, ipctools: Path | None = None) -> Layer:
    layer = add_busybox(LayerBuilder(), _find(BUSYBOX_CANDIDATES, "busybox-static"), ipctools)
    layer.add_file("/kuard", source=kuard_binary, mode=0o755)
    return layer.build()


def kuard_images(kuard_binary: Path, ipctools: Path | None = None) -> list[Image]:
    layer = kuard_layer(kuard_binary, ipctools)
    images = []
    for color in KUARD_COLORS:
        cfg = ImageConfig(
            entrypoint=["/kuard"],
            env=["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", f"KUARD_COLOR={color}"],
            exposed_ports=["8080/tcp"],
            stop_signal="SIGTERM",
            labels={"org.kubelite.image": "kuard", "org.kubelite.kuard.color": color},
        )
        images.append(Image(f"{KUARD}:{color}", cfg, [layer]))
    return images


def build_all(outdir: str | Path, *, work: str | Path | None = None, only_missing: bool = False) -> dict[str, Path]:
    """Build every image into ``outdir``; returns {reference: archive path}."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {ref: outdir / name for ref, name in IMAGES.items()}
    if only_missing and all(p.is_file() for p in paths.values()):
        return paths
    work_dir = Path(work) if work else outdir.parent / "kuard"
    ipctools = compile_ipctools(work_dir)
    images: list[Image] = [pause_image(), busybox_image(ipctools), *kuard_images(compile_kuard(work_dir), ipctools)]
    for img in images:
        target = paths[img.reference]
        if only_missing and target.is_file():
            continue
        write_archive(target, [img])
    return paths


def ensure_built(outdir: str | Path) -> dict[str, Path]:
    """Build only what is missing (tests and fresh data dirs)."""
    return build_all(outdir, only_missing=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kubelite.images.build", description=__doc__.splitlines()[0])
    ap.add_argument("outdir", help="directory for the image tars (e.g. build/images)")
    ap.add_argument("--work", help="directory for the compiled kuard/ipctools binaries (default OUTDIR/../kuard)")
    ap.add_argument("--missing-only", action="store_true", help="keep tars that already exist")
    args = ap.parse_args(argv)
    try:
        paths = build_all(args.outdir, work=args.work, only_missing=args.missing_only)
    except (BuildError, subprocess.CalledProcessError, OSError) as e:
        print(f"kubelite images: {e}", file=sys.stderr)
        return 1
    for ref, p in paths.items():
        print(f"{ref}\t{p}\t{p.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
