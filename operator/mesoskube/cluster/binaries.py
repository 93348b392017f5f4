"""Where the Go-built binaries live: a per-user cache keyed by version, shared by every clone."""

from __future__ import annotations

import os
import shutil
from functools import cache
from pathlib import Path

VERSIONS_FILE = Path(__file__).with_name("versions.env")

# binary name -> the versions.env key pinning it
_VERSION_KEY = {
    "etcd": "ETCD_VERSION",
    "kube-apiserver": "KUBERNETES_VERSION",
    "kube-controller-manager": "KUBERNETES_VERSION",
    "kube-scheduler": "KUBERNETES_VERSION",
    "kubelet": "KUBERNETES_VERSION",
    "kube-proxy": "KUBERNETES_VERSION",
    "coredns": "COREDNS_VERSION",
    "kwok": "KWOK_VERSION",
    "helm": "HELM_VERSION",
    "actionlint": "ACTIONLINT_VERSION",
}


@cache
def versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in VERSIONS_FILE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def cache_dir() -> Path:
    if env := os.environ.get("MESOSKUBE_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mesoskube"


class MissingBinary(RuntimeError):
    pass


def binary_path(name: str) -> Path:
    """The cached binary for `name` at its pinned version; raises MissingBinary with the fix."""
    version = versions()[_VERSION_KEY[name]]
    path = cache_dir() / "bin" / f"{name}-{version}"
    if path.is_file() and os.access(path, os.X_OK):
        return path
    raise MissingBinary(
        f"{name} {version} is not built yet (looked for {path}). Run `make binaries` "
        "(hack/build-binaries.sh) to build it from Go modules."
    )


def kubectl_path() -> str:
    found = shutil.which("kubectl")
    if not found:
        raise MissingBinary(
            "kubectl is not on PATH; install it (Debian package kubernetes-client) or use the image's."
        )
    return found
