"""Container images built offline, for real nodes: no registry is reachable from these machines.

- `pause`: the pod sandbox, a static C program (images/pause/pause.c), one file in one layer.
- `task-base`: what test and demo tasks run in: Debian's static busybox (a shell and coreutils).
- `mesoskube`: the master, from the repository's Dockerfile (the one definition; Docker builds the
  same file on kind CI), built here by buildah on a Python base made by mmdebstrap from Debian's
  packages.
- `spark`: JRE 17 + python3 + pyspark at a pinned version (images/spark/Dockerfile), on a base
  made the same way.

Each image is a tarball in the per-user cache, named by a hash of its inputs, so it is rebuilt only
when they change; `mesoskube cluster up --real-nodes N` imports what is built into every node's
containerd. Layers are written with fixed timestamps and owners, so the same inputs give the same
digests (pause and task-base; the buildah images depend on pip's and apt's answers of the day).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mesoskube.cluster.binaries import cache_dir

REPO = Path(__file__).resolve().parents[3]
IMAGES_SRC = REPO / "images"
EPOCH = 1_700_000_000  # fixed mtime of every file in the layers we write ourselves
NONROOT = "65532:65532"
PAUSE = "mesoskube.local/pause:1"
TASK_BASE = "mesoskube.local/task-base:1"
# Tagged with the hash of its inputs, so a rebuilt image is a new tag and `helm upgrade` rolls it out.
OPERATOR_REPOSITORY = "mesoskube.local/mesoskube"
SPARK = "mesoskube.local/spark:4.3.0"
PYSPARK_VERSION = "4.3.0"
DEBIAN_SUITE = "bookworm"
PYTHON_BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
SPARK_BASE_PACKAGES = (*PYTHON_BASE_PACKAGES, "openjdk-17-jre-headless", "procps", "tini", "bash")


def images_dir() -> Path:
    return cache_dir() / "images"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _inputs_hash(*parts: bytes | str | Path) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, Path):
            files = (
                sorted(f for f in p.rglob("*") if f.is_file() and "__pycache__" not in f.parts)
                if p.is_dir()
                else [p]
            )
            for f in files:
                h.update(str(f.relative_to(REPO) if f.is_relative_to(REPO) else f).encode())
                h.update(f.read_bytes())
        else:
            h.update(p.encode() if isinstance(p, str) else p)
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- OCI layout, by hand


def _layer(files: dict[str, tuple[bytes, int]], links: dict[str, str], dirs: tuple[str, ...]) -> bytes:
    """A reproducible layer tar: path -> (content, mode); symlinks; directories."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755, EPOCH
            tar.addfile(info)
        for path in sorted(files):
            data, mode = files[path]
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), mode, EPOCH
            tar.addfile(info, io.BytesIO(data))
        for path in sorted(links):
            info = tarfile.TarInfo(path)
            info.type, info.linkname, info.mtime = tarfile.SYMTYPE, links[path], EPOCH
            tar.addfile(info)
    return buf.getvalue()


def oci_archive(name: str, layer: bytes, config: dict) -> bytes:
    """An OCI image layout as one tar, with the annotations `ctr images import` reads for the name."""
    compressed = gzip.compress(layer, mtime=0)
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
        "created": "2023-11-14T22:13:20Z",
    }
    config_blob = json.dumps(image_config, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": _digest(config_blob),
            "size": len(config_blob),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": _digest(compressed),
                "size": len(compressed),
            }
        ],
    }
    manifest_blob = json.dumps(manifest, sort_keys=True).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": _digest(manifest_blob),
                "size": len(manifest_blob),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1],
                },
            }
        ],
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        entries = {
            "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
            "index.json": json.dumps(index, sort_keys=True).encode(),
        }
        for blob in (config_blob, manifest_blob, compressed):
            entries[f"blobs/sha256/{_digest(blob).split(':')[1]}"] = blob
        for path, data in entries.items():
            info = tarfile.TarInfo(path)
            info.size, info.mtime = len(data), EPOCH
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


# ------------------------------------------------------------------------------------ the images


@dataclass(frozen=True)
class Built:
    name: str
    path: Path


def _target(short: str, key: str) -> Path:
    return images_dir() / f"{short}-{key}.tar"


def _clean_old(short: str, keep: Path) -> None:
    for old in images_dir().glob(f"{short}-*.tar"):
        if old != keep:
            old.unlink(missing_ok=True)


def build_pause() -> Built:
    src = IMAGES_SRC / "pause" / "pause.c"
    target = _target("pause", _inputs_hash(src))
    if not target.exists():
        with tempfile.TemporaryDirectory() as tmp:
            binary = Path(tmp) / "pause"
            subprocess.run(["gcc", "-static", "-O2", "-s", "-o", str(binary), str(src)], check=True)
            layer = _layer({"pause": (binary.read_bytes(), 0o755)}, {}, ())
        config = {"Entrypoint": ["/pause"], "User": "65535:65535"}
        _write(target, oci_archive(PAUSE, layer, config))
        _clean_old("pause", target)
    return Built(PAUSE, target)


def _busybox() -> Path:
    """Debian's static busybox, fetched as a package (apt-get download) into the image cache."""
    d = images_dir() / "src"
    d.mkdir(parents=True, exist_ok=True)
    found = sorted(d.glob("busybox-static_*.deb"))
    if not found:
        subprocess.run(["apt-get", "download", "busybox-static"], cwd=d, check=True, capture_output=True)
        found = sorted(d.glob("busybox-static_*.deb"))
    return found[-1]


def build_task_base() -> Built:
    deb = _busybox()
    target = _target("task-base", _inputs_hash(deb.name, NONROOT))
    if not target.exists():
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
            busybox = Path(tmp) / "bin" / "busybox"
            applets = subprocess.run(
                [str(busybox), "--list-full"], capture_output=True, text=True, check=True
            )
            links = {a: "/bin/busybox" for a in applets.stdout.split() if a != "bin/busybox"}
            files = {
                "bin/busybox": (busybox.read_bytes(), 0o755),
                "etc/passwd": (
                    b"root:x:0:0:root:/root:/bin/sh\ntask:x:65532:65532:task:/tmp:/bin/sh\n",
                    0o644,
                ),
                "etc/group": (b"root:x:0:\ntask:x:65532:\n", 0o644),
            }
            layer = _layer(files, links, ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "tmp", "root"))
        config = {
            "User": NONROOT,
            "Env": ["PATH=/bin:/sbin:/usr/bin:/usr/sbin"],
            "Cmd": ["sh"],
            "WorkingDir": "/tmp",
        }
        _write(target, oci_archive(TASK_BASE, layer, config))
        _clean_old("task-base", target)
    return Built(TASK_BASE, target)


def _write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.rename(target)


# ------------------------------------------------------------- buildah images on a Debian base


def _buildah(*args: str, capture: bool = False) -> subprocess.CompletedProcess:
    store = images_dir() / "buildah"
    env = {**os.environ, "STORAGE_DRIVER": "vfs", "BUILDAH_ISOLATION": "chroot"}
    argv = ["buildah", "--root", str(store / "root"), "--runroot", str(store / "run"), *args]
    r = subprocess.run(argv, env=env, text=True, capture_output=capture)
    if r.returncode:
        detail = "\n".join(((r.stdout or "") + (r.stderr or "")).splitlines()[-25:])
        raise ImageBuildError(f"buildah {args[0]} failed (exit {r.returncode}):\n{detail}")
    return r


class ImageBuildError(RuntimeError):
    pass


def _debian_base(short: str, packages: tuple[str, ...]) -> str:
    """A base image from Debian's packages (mmdebstrap), in buildah's store; returns its name."""
    key = _inputs_hash(DEBIAN_SUITE, *packages)
    name = f"localhost/mesoskube-{short}:{key}"
    if _has_image(name):
        return name
    with tempfile.TemporaryDirectory(dir=images_dir()) as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)}
        subprocess.run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=minbase",
                f"--include={','.join(packages)}",
                DEBIAN_SUITE,
                str(rootfs),
            ],
            check=True,
            env=env,
        )
        ctr = _buildah("from", "scratch", capture=True).stdout.strip()
        _buildah("add", ctr, str(rootfs), "/")
        _buildah("config", "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", ctr)
        _buildah("commit", "--rm", ctr, name, capture=True)
    return name


def _has_image(name: str) -> bool:
    try:
        out = _buildah("images", "--format", "{{.Name}}:{{.Tag}}", capture=True).stdout.split()
    except ImageBuildError:
        return False
    return name in out


def _bud(name: str, context: Path, dockerfile: Path, build_args: dict[str, str]) -> None:
    args = ["bud", "--layers=false", "-f", str(dockerfile), "-t", name]
    for k, v in build_args.items():
        args += ["--build-arg", f"{k}={v}"]
    ca = Path("/etc/ssl/certs/ca-certificates.crt")
    if ca.exists():
        # Reaching PyPI here may go through a TLS-intercepting proxy whose CA only the host trusts.
        args += ["--build-arg", "PIP_CERT=/run/host-ca.crt", "-v", f"{ca}:/run/host-ca.crt:ro"]
    _buildah(*args, str(context), capture=True)


def _export(name: str, target: Path) -> None:
    tmp = target.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    _buildah("push", name, f"docker-archive:{tmp}:{name}", capture=True)
    tmp.rename(target)


def build_operator() -> Built:
    inputs = [REPO / p for p in ("Dockerfile", "pyproject.toml", "README.md", "operator", "frameworks")]
    key = _inputs_hash(*PYTHON_BASE_PACKAGES, *inputs)
    target, name = _target("mesoskube", key), f"{OPERATOR_REPOSITORY}:{key}"
    if not target.exists():
        base = _debian_base("python", PYTHON_BASE_PACKAGES)
        _bud(name, REPO, REPO / "Dockerfile", {"PYTHON_IMAGE": base})
        _export(name, target)
        _clean_old("mesoskube", target)
    return Built(name, target)


def build_spark() -> Built:
    src = IMAGES_SRC / "spark"
    target = _target("spark", _inputs_hash(*SPARK_BASE_PACKAGES, PYSPARK_VERSION, src))
    if not target.exists():
        base = _debian_base("spark-base", SPARK_BASE_PACKAGES)
        _bud(SPARK, src, src / "Dockerfile", {"BASE_IMAGE": base, "PYSPARK_VERSION": PYSPARK_VERSION})
        _export(SPARK, target)
        _clean_old("spark", target)
    return Built(SPARK, target)


BUILDERS = {
    "pause": build_pause,
    "task-base": build_task_base,
    "mesoskube": build_operator,
    "spark": build_spark,
}
NODE_ESSENTIALS = ("pause", "task-base")


def node_images() -> list[Path]:
    """What every real node imports when it starts (built here when missing); the large images
    (the master's, Spark's) are imported by whoever needs them (`import_images`), once per node."""
    return [BUILDERS[short]().path for short in NODE_ESSENTIALS]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mesoskube images", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "names", nargs="*", default=list(BUILDERS), help=f"which ({', '.join(BUILDERS)}); default all"
    )
    args = p.parse_args(argv)
    for short in args.names:
        if short not in BUILDERS:
            print(f"error: unknown image {short!r}; known: {', '.join(BUILDERS)}", file=sys.stderr)
            return 2
        if shutil.which("buildah") is None and short in ("mesoskube", "spark"):
            print("error: buildah is not installed (make deps installs it)", file=sys.stderr)
            return 1
        try:
            built = BUILDERS[short]()
        except (ImageBuildError, subprocess.CalledProcessError) as e:
            print(f"error: building image {short} failed: {e}", file=sys.stderr)
            return 1
        print(f"{built.name}\t{built.path}\t{built.path.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
