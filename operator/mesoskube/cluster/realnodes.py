"""Real nodes: a kubelet with its own containerd per node, next to the kwok fake nodes.

Each real node gets its own containerd (socket, root, state), kubelet root, cgroup root, pod CIDR
and CNI bridge, kubelet API and healthz ports, so two or more run side by side on one machine. They
share the machine's network namespace, so one kube-proxy per cluster programs Services for all of
them, and CoreDNS runs as a process behind the `kube-dns` Service (10.0.0.10).
The functions that render configuration are pure; `RealNodes` starts and stops the processes.
See ../shared/reference/real-node.md for why each non-default setting is there.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

REAL_LABEL = "mesoskube.io/real"
POD_CIDR_BASE = ipaddress.ip_network("10.244.0.0/16")
SERVICE_CIDR = "10.0.0.0/24"
CLUSTER_DNS_IP = "10.0.0.10"
CLUSTER_DOMAIN = "cluster.local"
CNI_BIN_DIR = "/usr/lib/cni"
PAUSE_IMAGE = "mesoskube.local/pause:1"


@dataclass(frozen=True)
class RealNodeSpec:
    cluster: str
    index: int
    dir: Path  # everything of this node lives below it
    host_ip: str
    kubelet_port: int
    healthz_port: int

    @property
    def name(self) -> str:
        return f"real-{self.index}"

    @property
    def pod_cidr(self) -> str:
        return str(list(POD_CIDR_BASE.subnets(new_prefix=24))[self.index])

    @property
    def bridge(self) -> str:
        # Linux limits interface names to 15 characters; the hash keeps clusters apart.
        return f"mk{hashlib.sha1(self.cluster.encode()).hexdigest()[:6]}-{self.index}"

    @property
    def socket(self) -> Path:
        return self.dir / "containerd.sock"

    @property
    def cgroup_root(self) -> str:
        return f"/mesoskube-{self.cluster}-{self.name}"

    @property
    def network_name(self) -> str:
        return f"mesoskube-{self.cluster}-{self.name}"


def containerd_config(spec: RealNodeSpec) -> str:
    d = spec.dir / "containerd"
    cri = {
        "sandbox_image": PAUSE_IMAGE,
        # The machines' capability bounding set lacks CAP_SYS_RESOURCE: runc cannot set a negative
        # oom_score_adj, and without this every sandbox fails with "can't get final child's PID".
        "restrict_oom_score_adj": True,
        "netns_mounts_under_state_dir": True,
        "stream_server_address": "127.0.0.1",
        "stream_server_port": "0",
        "enable_unprivileged_ports": True,
        "containerd": {
            "snapshotter": "overlayfs",
            "default_runtime_name": "runc",
            "runtimes": {
                "runc": {
                    "runtime_type": "io.containerd.runc.v2",
                    "options": {"SystemdCgroup": False},
                }
            },
        },
        "cni": {"bin_dir": CNI_BIN_DIR, "conf_dir": str(spec.dir / "cni" / "net.d")},
    }
    lines = [
        "version = 2",
        f'root = "{d / "root"}"',
        f'state = "{d / "state"}"',
        'disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",'
        ' "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]',
        "[grpc]",
        f'  address = "{spec.socket}"',
        "[ttrpc]",
        f'  address = "{spec.socket}.ttrpc"',
        '[plugins."io.containerd.internal.v1.opt"]',
        f'  path = "{d / "opt"}"',
    ]
    lines += _toml_table('plugins."io.containerd.grpc.v1.cri"', cri)
    return "\n".join(lines) + "\n"


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    return json.dumps(str(v))


def _toml_table(name: str, table: dict) -> list[str]:
    scalars = [f"  {k} = {_toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    out = [f"[{name}]", *scalars]
    for k, v in table.items():
        if isinstance(v, dict):
            out += _toml_table(f"{name}.{k}", v)
    return out


def cni_config(spec: RealNodeSpec) -> dict:
    return {
        "cniVersion": "1.0.0",
        "name": spec.network_name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": spec.bridge,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": spec.pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(spec.dir / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(spec: RealNodeSpec, client_ca: Path) -> dict:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": spec.host_ip,
        "port": spec.kubelet_port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": spec.healthz_port,
        # The API server's client certificate is checked against the cluster CA; every other caller
        # is authenticated and authorised by webhook (TokenReview, SubjectAccessReview).
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(client_ca)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{spec.socket}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": spec.cgroup_root,
        "failCgroupV1": False,  # these machines run cgroup v1 (hybrid); 1.35 turns this into an error
        "failSwapOn": False,
        "oomScoreAdj": 0,  # no CAP_SYS_RESOURCE: a negative score cannot be set
        "podCIDR": spec.pod_cidr,
        "clusterDNS": [CLUSTER_DNS_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        "podLogsDir": str(spec.dir / "pod-logs"),
        "volumePluginDir": str(spec.dir / "volume-plugins"),
        "serializeImagePulls": False,
        # Images are imported, never pulled: garbage collecting them would break pullPolicy Never.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "2%", "imagefs.available": "2%"},
        "nodeStatusUpdateFrequency": "10s",
        "nodeStatusReportFrequency": "1m",
        "registerNode": True,
        "maxPods": 110,
        "protectKernelDefaults": False,
        "resolvConf": "/etc/resolv.conf",
        "shutdownGracePeriod": "0s",
    }


def kubelet_argv(binary: Path, spec: RealNodeSpec, kubeconfig: Path, config: Path) -> list[str]:
    return [
        str(binary),
        "--config",
        str(config),
        "--kubeconfig",
        str(kubeconfig),
        "--root-dir",
        str(spec.dir / "kubelet"),
        "--cert-dir",
        str(spec.dir / "kubelet" / "pki"),
        "--hostname-override",
        spec.name,
        "--node-ip",
        spec.host_ip,
        "--node-labels",
        f"{REAL_LABEL}=true,mesoskube.io/agent=true,type=real",
        "--v",
        "1",
    ]


def kube_proxy_config(kubeconfig: Path, node_name: str, metrics_port: int, healthz_port: int) -> dict:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "clusterCIDR": str(POD_CIDR_BASE),
        "hostnameOverride": node_name,
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        # Leave the host's conntrack sysctls alone (0 = do not change them).
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "iptables": {"localhostNodePorts": False},
    }


def corefile(kubeconfig: Path, port: int, host_ip: str) -> str:
    return (
        f".:{port} {{\n"
        f"    bind {host_ip}\n"
        "    errors\n"
        "    health 127.0.0.1:0\n"
        f"    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{\n"
        f"        kubeconfig {kubeconfig}\n"
        "        pods insecure\n"
        "        fallthrough in-addr.arpa ip6.arpa\n"
        "    }\n"
        "    forward . /etc/resolv.conf\n"
        "    cache 30\n"
        "    loop\n"
        "}\n"
    )


def dns_objects(host_ip: str, port: int) -> list[dict]:
    """The kube-dns Service and an EndpointSlice pointing at CoreDNS on the host."""
    ports = [("dns", "UDP"), ("dns-tcp", "TCP")]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
        "spec": {
            "clusterIP": CLUSTER_DNS_IP,
            "ports": [{"name": n, "port": 53, "protocol": p, "targetPort": port} for n, p in ports],
        },
    }
    endpoints = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kube-dns-host",
            "namespace": "kube-system",
            "labels": {
                "kubernetes.io/service-name": "kube-dns",
                "endpointslice.kubernetes.io/managed-by": "mesoskube-cluster",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [host_ip], "conditions": {"ready": True}}],
        "ports": [{"name": n, "port": port, "protocol": p} for n, p in ports],
    }
    return [service, endpoints]


def host_ip() -> str:
    """The machine's first global IPv4 address (kubelet refuses a loopback node IP)."""
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True, check=True
    ).stdout
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            return parts[parts.index("inet") + 1].split("/")[0]
    raise RuntimeError("no global IPv4 address on this machine: real nodes need one for their node IP")


# ---------------------------------------------------------------------------------------- teardown


def cgroup_dirs(cgroup_root: str) -> list[Path]:
    base = Path("/sys/fs/cgroup")
    if (base / "cgroup.controllers").exists():  # pure cgroup v2
        return [base / cgroup_root.lstrip("/")]
    return [p / cgroup_root.lstrip("/") for p in sorted(base.iterdir()) if p.is_dir()]


def make_cgroup_root(cgroup_root: str) -> None:
    for d in cgroup_dirs(cgroup_root):
        # A hierarchy that refuses new groups (read-only) is not one kubelet uses.
        with contextlib.suppress(OSError):
            d.mkdir(parents=True, exist_ok=True)


def remove_cgroup_root(cgroup_root: str) -> list[str]:
    problems = []
    for top in cgroup_dirs(cgroup_root):
        if not top.exists():
            continue
        for d in [*sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)), top]:
            for attempt in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    _kill_cgroup(d)
                    time.sleep(0.05 * (attempt + 1))
            else:
                problems.append(f"cgroup {d} still busy")
    return problems


def _kill_cgroup(d: Path) -> None:
    try:
        pids = [int(p) for p in (d / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def mounts_under(prefix: Path) -> list[str]:
    """Mount points below `prefix`, deepest first (from /proc/self/mountinfo)."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == str(prefix) or point.startswith(str(prefix) + "/"):
                found.append(point)
    return sorted(set(found), key=lambda p: -p.count("/"))


def unmount_all(prefix: Path) -> list[str]:
    problems = []
    for point in mounts_under(prefix):
        r = subprocess.run(["umount", point], capture_output=True, text=True)
        if r.returncode:
            r = subprocess.run(["umount", "-l", point], capture_output=True, text=True)
            if r.returncode:
                problems.append(f"umount {point}: {r.stderr.strip()}")
    return problems


def processes_with_arg(arg: str) -> list[int]:
    """PIDs whose command line names `arg` (containerd shims carry their containerd's socket path)."""
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if arg.encode() in cmd:
            pids.append(int(p.name))
    return pids


def write_yaml(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
