"""Start and stop a cluster's real nodes (containerd + kubelet each), kube-proxy and CoreDNS.

The configuration comes from the pure renderers in realnodes.py; this module runs the processes
through the LocalCluster that owns them, so `cluster status` and `down` see them like the control
plane. Host changes are journalled (hostchanges.py) before the first process starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from kubernetes.client.exceptions import ApiException

from mesoskube.cluster import images as images_mod
from mesoskube.cluster.binaries import binary_path
from mesoskube.cluster.hostchanges import HostChanges, claim_host, release_host
from mesoskube.cluster.pki import Pki
from mesoskube.cluster.realnodes import (
    RealNodeSpec,
    cni_config,
    containerd_config,
    corefile,
    dns_objects,
    kube_proxy_config,
    kubelet_argv,
    kubelet_config,
    make_cgroup_root,
    processes_with_arg,
    remove_cgroup_root,
    unmount_all,
    write_yaml,
)
from mesoskube.kube import Kube

if TYPE_CHECKING:
    from mesoskube.cluster.local import LocalCluster

CTR = "ctr"
# Images are imported, never pulled: no registry is reachable from these machines. Sending any pull
# to a closed local port makes it fail at once with a clear error, and nothing leaves the machine.
NO_REGISTRY = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}


def node_kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path, user: str) -> Path:
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
        "current-context": "local",
    }
    return write_yaml(path, cfg)


class RealNodes:
    """The real nodes of one LocalCluster."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.root = cluster.dir / "real"
        self.journal = HostChanges.load(cluster.dir / "host-changes.json")

    # ------------------------------------------------------------------------------------- specs

    def specs(self, state: dict) -> list[RealNodeSpec]:
        real = state.get("real", {})
        return [
            RealNodeSpec(
                cluster=self.cluster.name,
                index=n["index"],
                dir=Path(n["dir"]),
                host_ip=real["host_ip"],
                kubelet_port=n["kubelet_port"],
                healthz_port=n["healthz_port"],
            )
            for n in real.get("nodes", [])
        ]

    def plan(self, state: dict, count: int, host_ip: str, free_port) -> list[RealNodeSpec]:
        nodes = [
            {
                "index": i,
                "dir": str(self.root / f"real-{i}"),
                "kubelet_port": free_port(),
                "healthz_port": free_port(),
            }
            for i in range(count)
        ]
        state["real"] = {
            "host_ip": host_ip,
            "nodes": nodes,
            "dns_port": free_port(),
            "proxy_ports": [free_port(), free_port()],
        }
        self.cluster._save(state)
        return self.specs(state)

    def claim(self, specs: list[RealNodeSpec]) -> None:
        """Before anything changes the host: one real-node cluster per machine, and the journal."""
        claim_host(self.cluster.dir)
        self.journal.record(links=[s.bridge for s in specs])

    # ------------------------------------------------------------------------------------- start

    def start(self, state: dict, server: str) -> None:
        specs = self.specs(state)
        pki = Pki(self.cluster.dir / "pki")
        ca = pki.ca_cert
        image_tars = images_mod.node_images()
        for spec in specs:
            self._start_containerd(state, spec)
        with ThreadPoolExecutor(max_workers=len(specs) or 1) as pool:
            list(pool.map(lambda s: import_images(s, image_tars), specs))
        state["real"]["server"] = server
        for spec in specs:
            user = f"system:node:{spec.name}"
            cert, key = pki.issue(f"node-{spec.name}", user, ("system:nodes",))
            node_kubeconfig(spec.dir / "kubelet.kubeconfig", server, ca, cert, key, user)
            write_yaml(spec.dir / "kubelet.yaml", kubelet_config(spec, pki.ca_cert))
            make_cgroup_root(spec.cgroup_root)
            self.start_kubelet(state, spec)
        self._start_dns(state, server, ca)
        self._start_kube_proxy(state, server, ca, pki, specs[0].name)

    def start_kubelet(self, state: dict, spec: RealNodeSpec) -> None:
        """Start (or, after stop_kubelet, restart) a node's kubelet; its containers kept running."""
        argv = kubelet_argv(
            binary_path("kubelet"), spec, spec.dir / "kubelet.kubeconfig", spec.dir / "kubelet.yaml"
        )
        self.cluster._start(state, f"kubelet/{spec.name}", argv)

    def _start_containerd(self, state: dict, spec: RealNodeSpec) -> None:
        for sub in ("containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs", "volume-plugins"):
            (spec.dir / sub).mkdir(parents=True, exist_ok=True)
        (spec.dir / "containerd.toml").write_text(containerd_config(spec))
        (spec.dir / "cni" / "net.d" / "10-mesoskube.conflist").write_text(json.dumps(cni_config(spec)))
        self.cluster._start(
            state,
            f"containerd/{spec.name}",
            ["containerd", "--config", str(spec.dir / "containerd.toml")],
            env=NO_REGISTRY,
        )
        self.cluster._wait(lambda: _ctr_ok(spec), f"containerd/{spec.name}", 30)

    def _start_dns(self, state: dict, server: str, ca: Path) -> None:
        real = state["real"]
        d = self.root / "coredns"
        d.mkdir(parents=True, exist_ok=True)
        (d / "Corefile").write_text(corefile(self.cluster.kubeconfig, real["dns_port"], real["host_ip"]))
        self.cluster._start(state, "coredns", [str(binary_path("coredns")), "-conf", str(d / "Corefile")])
        kube = Kube.connect(str(self.cluster.kubeconfig))
        for obj in dns_objects(real["host_ip"], real["dns_port"]):
            _apply(kube, obj)

    def _start_kube_proxy(self, state: dict, server: str, ca: Path, pki: Pki, node: str) -> None:
        cert, key = pki.issue("kube-proxy", "system:kube-proxy")
        kubeconfig = node_kubeconfig(self.root / "kube-proxy.kubeconfig", server, ca, cert, key, "kube-proxy")
        metrics, healthz = state["real"]["proxy_ports"]
        config = write_yaml(
            self.root / "kube-proxy.yaml", kube_proxy_config(kubeconfig, node, metrics, healthz)
        )
        self.cluster._start(state, "kube-proxy", [str(binary_path("kube-proxy")), "--config", str(config)])

    # ------------------------------------------------------------------------------------ status

    def health(self, state: dict) -> dict[str, str]:
        """node -> 'kubelet ok, containerd ok' style summary from the processes' own health checks."""
        out = {}
        pids = state.get("pids", {})
        for spec in self.specs(state):
            kubelet = _http_get(f"http://127.0.0.1:{spec.healthz_port}/healthz")
            containerd = "ok" if _ctr_ok(spec) else "down"
            alive = {c: self.cluster.alive(pids.get(f"{c}/{spec.name}")) for c in ("kubelet", "containerd")}
            out[spec.name] = (
                f"kubelet {'ok' if kubelet else ('not healthy' if alive['kubelet'] else 'down')}, "
                f"containerd {containerd if alive['containerd'] else 'down'}"
            )
        return out

    # -------------------------------------------------------------------------------------- stop

    def stop_kubelet(self, spec: RealNodeSpec, sig: int = signal.SIGTERM) -> None:
        self.cluster.stop_component(f"kubelet/{spec.name}", sig)

    def down(self, state: dict, api_up: bool) -> list[str]:
        """Stop every real-node process and undo the host changes; returns what could not be undone."""
        specs = self.specs(state)
        problems: list[str] = []
        if specs and api_up:
            _drain(self.cluster, specs)
        for spec in specs:
            self.stop_kubelet(spec)
        for spec in specs:
            _kill_tasks(spec)
            self.cluster.stop_component(f"containerd/{spec.name}")
            for pid in processes_with_arg(str(spec.socket)):  # the shims outlive containerd
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if "kube-proxy" in state.get("pids", {}):
            self.cluster.stop_component("kube-proxy")
            try:
                subprocess.run([str(binary_path("kube-proxy")), "--cleanup"], capture_output=True, timeout=30)
            except (OSError, subprocess.TimeoutExpired) as e:
                problems.append(f"kube-proxy --cleanup: {e}")
        self.cluster.stop_component("coredns")
        for spec in specs:
            problems += unmount_all(spec.dir)
            problems += remove_cgroup_root(spec.cgroup_root)
            _remove_log_links(spec.dir / "pod-logs")
        problems += self.journal.undo()
        release_host(self.cluster.dir)
        return problems


def import_images(spec: RealNodeSpec, tars: list[Path]) -> None:
    """Import image tarballs into a node's containerd; a tarball imported before is skipped (its
    name is the hash of the image's inputs, so a rebuilt image is a new tarball)."""
    done_file = spec.dir / "imported-images"
    done = set(done_file.read_text().split()) if done_file.exists() else set()
    for tar in tars:
        if tar.name in done:
            continue
        r = subprocess.run(
            [
                CTR,
                "--address",
                str(spec.socket),
                "-n",
                "k8s.io",
                "images",
                "import",
                "--all-platforms",
                str(tar),
            ],
            capture_output=True,
            text=True,
        )
        if r.returncode:
            raise RuntimeError(
                f"importing {tar.name} into {spec.name}'s containerd failed: {r.stderr.strip()}"
            )


def ensure_images(cluster: LocalCluster, built: list) -> None:
    """Every real node of `cluster` has these built images (images.Built), imported in parallel."""
    specs = RealNodes(cluster).specs(cluster.state())
    tars = [b.path for b in built]
    with ThreadPoolExecutor(max_workers=len(specs) or 1) as pool:
        list(pool.map(lambda s: import_images(s, tars), specs))


def _ctr_ok(spec: RealNodeSpec) -> bool:
    if not spec.socket.exists():
        return False
    r = subprocess.run(
        [CTR, "--address", str(spec.socket), "--timeout", "2s", "version"], capture_output=True, text=True
    )
    return r.returncode == 0


def _http_get(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def _apply(kube: Kube, obj: dict) -> None:
    api = kube.api
    if obj["kind"] == "Service":
        try:
            kube.core.create_namespaced_service(obj["metadata"]["namespace"], obj)
        except ApiException as e:
            if e.status != 409:
                raise
        return
    from kubernetes import client

    discovery = client.DiscoveryV1Api(api)
    try:
        discovery.create_namespaced_endpoint_slice(obj["metadata"]["namespace"], obj)
    except ApiException as e:
        if e.status != 409:
            raise
        discovery.replace_namespaced_endpoint_slice(
            obj["metadata"]["name"], obj["metadata"]["namespace"], obj
        )


def _drain(cluster: LocalCluster, specs: list[RealNodeSpec], timeout: float = 20) -> None:
    """Delete the pods on the real nodes and let kubelet tear their sandboxes down (CNI DEL, mounts)."""
    try:
        kube = Kube.connect(str(cluster.kubeconfig))
        names = {s.name for s in specs}
        pods = kube.core.list_pod_for_all_namespaces().items
        for p in pods:
            if p.spec.node_name in names:
                with contextlib.suppress(ApiException):
                    kube.core.delete_namespaced_pod(
                        p.metadata.name, p.metadata.namespace, grace_period_seconds=0
                    )
    except Exception:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_running_tasks(s) for s in specs):
        time.sleep(0.3)


def _running_tasks(spec: RealNodeSpec) -> list[str]:
    if not spec.socket.exists():
        return []
    r = subprocess.run(
        [CTR, "--address", str(spec.socket), "--timeout", "3s", "-n", "k8s.io", "tasks", "ls", "-q"],
        capture_output=True,
        text=True,
    )
    return r.stdout.split() if r.returncode == 0 else []


def _kill_tasks(spec: RealNodeSpec) -> None:
    ctr = [CTR, "--address", str(spec.socket), "--timeout", "5s", "-n", "k8s.io"]
    for task in _running_tasks(spec):
        subprocess.run([*ctr, "tasks", "kill", "-a", "-s", "SIGKILL", task], capture_output=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = _running_tasks(spec)
        if not left:
            break
        for task in left:
            subprocess.run([*ctr, "tasks", "delete", "-f", task], capture_output=True)
        time.sleep(0.2)


def _remove_log_links(pod_logs: Path) -> None:
    links = Path("/var/log/containers")
    if not links.is_dir():
        return
    for link in links.iterdir():
        try:
            if link.is_symlink() and os.readlink(link).startswith(str(pod_logs)):
                link.unlink()
        except OSError:
            pass
