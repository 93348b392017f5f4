"""What real nodes change on the host, written down before they change it, and undone on `down`.

kubelet sets sysctls (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops), the CNI bridge
turns on IP forwarding, kubelet, kube-proxy and the CNI plugins add iptables chains, and a few fixed
directories appear (/var/log/containers, /var/lib/cni, /run/containerd for shim sockets). The journal
is a JSON file in the cluster's directory, written before each change, so a `down` after a crash of
whoever ran `up` still finds it. Only one cluster per machine may run real nodes: iptables chains and
/var/log/containers are machine-wide, so a second one would undo the first one's state.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

SYSCTLS = (
    "vm.overcommit_memory",
    "kernel.panic",
    "kernel.panic_on_oops",
    "net.ipv4.ip_forward",
    "net.bridge.bridge-nf-call-iptables",
)
# Directories kubelet, containerd and the CNI plugins create at fixed paths whatever their flags say.
FIXED_DIRS = ("/var/log/containers", "/var/lib/cni", "/run/containerd", "/var/lib/kubelet")
IPTABLES = ("iptables", "ip6tables")
OWNER_FILE = Path("/run/mesoskube/real-nodes.owner")


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def read_sysctl(key: str) -> str | None:
    try:
        return _sysctl_path(key).read_text().strip()
    except OSError:
        return None


def write_sysctl(key: str, value: str) -> None:
    with contextlib.suppress(OSError):
        _sysctl_path(key).write_text(value)


class HostBusy(RuntimeError):
    pass


def claim_host(cluster_dir: Path) -> None:
    """Refuse when another cluster's real nodes hold the machine; else take it."""
    if OWNER_FILE.exists():
        owner = OWNER_FILE.read_text().strip()
        if owner != str(cluster_dir) and Path(owner, "host-changes.json").exists():
            raise HostBusy(
                f"real nodes of another cluster are running on this machine ({owner}); iptables chains "
                "and /var/log/containers are machine-wide, so only one cluster at a time can have real "
                f"nodes. Stop it first (`mesoskube cluster --name {Path(owner).name} down`) or use "
                "--real-nodes 0."
            )
    OWNER_FILE.parent.mkdir(parents=True, exist_ok=True)
    OWNER_FILE.write_text(str(cluster_dir))


def release_host(cluster_dir: Path) -> None:
    if OWNER_FILE.exists() and OWNER_FILE.read_text().strip() == str(cluster_dir):
        OWNER_FILE.unlink()


@dataclass
class HostChanges:
    """The journal; `record()` before changing the host, `undo()` to put everything back."""

    path: Path
    sysctls: dict[str, str | None] = field(default_factory=dict)
    created_dirs: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    iptables_saved: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> HostChanges:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls(path)
        return cls(path, **data)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "sysctls": self.sysctls,
            "created_dirs": self.created_dirs,
            "links": self.links,
            "iptables_saved": self.iptables_saved,
        }
        self.path.write_text(json.dumps(data, indent=2))

    def record(self, links: list[str]) -> None:
        """Snapshot what is there now; only the first snapshot counts (a re-run keeps the original)."""
        for key in SYSCTLS:
            self.sysctls.setdefault(key, read_sysctl(key))
        for d in FIXED_DIRS:
            if not os.path.exists(d) and d not in self.created_dirs:
                self.created_dirs.append(d)
        for tool in IPTABLES:
            if tool not in self.iptables_saved and shutil.which(f"{tool}-save"):
                out = subprocess.run([f"{tool}-save"], capture_output=True, text=True)
                if out.returncode == 0:
                    self.iptables_saved[tool] = out.stdout
        self.links = sorted(set(self.links) | set(links))
        self.save()

    def undo(self) -> list[str]:
        """Put the host back; returns what could not be undone (for the caller to report)."""
        problems: list[str] = []
        for link in self.links:
            if Path("/sys/class/net", link).exists():
                r = subprocess.run(["ip", "link", "delete", link], capture_output=True, text=True)
                if r.returncode:
                    problems.append(f"ip link delete {link}: {r.stderr.strip()}")
        for tool, saved in self.iptables_saved.items():
            problems += _restore_iptables(tool, saved)
        for key, value in self.sysctls.items():
            if value is not None and read_sysctl(key) != value:
                write_sysctl(key, value)
                if read_sysctl(key) != value:
                    problems.append(f"sysctl {key} stays {read_sysctl(key)} (was {value})")
        for d in self.created_dirs:
            shutil.rmtree(d, ignore_errors=True)
        self.path.unlink(missing_ok=True)
        return problems


def _tables(dump: str) -> set[str]:
    return {line[1:].strip() for line in dump.splitlines() if line.startswith("*")}


def _restore_iptables(tool: str, saved: str) -> list[str]:
    """Restore each table as it was; tables that did not exist are flushed and their chains removed."""
    now = subprocess.run([f"{tool}-save"], capture_output=True, text=True)
    if now.returncode:
        return [f"{tool}-save failed: {now.stderr.strip()}"]
    if now.stdout == saved:
        return []
    problems = []
    new_tables = sorted(_tables(now.stdout) - _tables(saved))
    for table in new_tables:
        for flag in ("-F", "-X"):
            subprocess.run([tool, "-t", table, flag], capture_output=True)
    r = subprocess.run([f"{tool}-restore"], input=saved, capture_output=True, text=True)
    if r.returncode:
        problems.append(f"{tool}-restore: {r.stderr.strip()}")
    # iptables-nft keeps an emptied table with its base chains; nft can remove it. (The legacy
    # backend's tables belong to kernel modules and cannot be removed: they stay, empty.)
    if new_tables and _nft_backed(tool) and shutil.which("nft"):
        family = NFT_FAMILY[tool]
        for table in new_tables:
            d = subprocess.run(["nft", "delete", "table", family, table], capture_output=True, text=True)
            if d.returncode:
                problems.append(f"nft delete table {family} {table}: {d.stderr.strip()}")
    return problems


NFT_FAMILY = {"iptables": "ip", "ip6tables": "ip6"}


def _nft_backed(tool: str) -> bool:
    version = subprocess.run([tool, "--version"], capture_output=True, text=True)
    return "nf_tables" in version.stdout
