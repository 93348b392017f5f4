"""Start, inspect and stop a local control plane: etcd, kube-apiserver, kube-controller-manager,
kwok (fake nodes), and optionally kube-scheduler, as background processes on free loopback ports.

State (data, logs, certificates, kubeconfig, pids) lives in one directory per cluster name under
the per-user cache, so `up` on a running cluster is a no-op and any clone can find the cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from mesoskube.cluster.binaries import binary_path, cache_dir, versions
from mesoskube.cluster.pki import Pki

STAGES_FILE = Path(__file__).with_name("stages") / "pod-stages.yaml"
ADMIN_TOKEN_USER = "mesoskube-admin"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kwok", "kube-scheduler")
# The controllers a real pod needs besides garbage collection: ServiceAccount tokens and the root CA
# ConfigMap, EndpointSlices for Services, Jobs, and node lifecycle (a dead kubelet -> NotReady node,
# tainted, its pods evicted once their tolerations run out).
CONTROLLERS = ",".join(
    f"{c}-controller"
    for c in (
        "garbage-collector", "namespace", "serviceaccount", "serviceaccount-token",
        "root-ca-certificate-publisher", "deployment", "replicaset", "job", "endpointslice",
        "node-lifecycle", "taint-eviction",
    )
)  # fmt: skip
# How long a fake node may miss its heartbeats before it is NotReady, and kwok's node Lease. Large
# kwok clusters on a loaded machine may set both higher (bench-scale does: slower heartbeats, the
# same nodes): MESOSKUBE_NODE_GRACE_SECONDS.
NODE_GRACE_SECONDS = int(os.environ.get("MESOSKUBE_NODE_GRACE_SECONDS", "40"))
NODE_MONITOR_GRACE_PERIOD = f"{NODE_GRACE_SECONDS}s"
KUBERNETES_SERVICE_IP = "10.0.0.1"  # the first address of --service-cluster-ip-range


class ClusterError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class LocalCluster:
    name: str = "default"

    @property
    def dir(self) -> Path:
        return cache_dir() / "clusters" / self.name

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    def state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def _save(self, state: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(state, indent=2))

    # ------------------------------------------------------------------ status

    def component_status(self) -> dict[str, str]:
        """component -> 'running' | 'exited' | 'off' (real nodes' processes after the control plane)."""
        pids = self.state().get("pids", {})
        names = [*COMPONENTS, *(c for c in pids if c not in COMPONENTS)]
        return {c: ("running" if _alive(pid) else "exited") if (pid := pids.get(c)) else "off" for c in names}

    @staticmethod
    def alive(pid: int | None) -> bool:
        return bool(pid) and _alive(pid)

    def crashed(self) -> dict[str, str]:
        """Components that were started and are gone, with the tail of each log."""
        return {
            c: tail(self.dir / "logs" / f"{c}.log")
            for c, s in self.component_status().items()
            if s == "exited"
        }

    def is_running(self) -> bool:
        st = self.component_status()
        return all(st[c] == "running" for c in ("etcd", "kube-apiserver", "kube-controller-manager", "kwok"))

    # ------------------------------------------------------------------ up

    def up(self, with_scheduler: bool = False, scheduler_qps: float = 50.0, real_nodes: int = 0) -> bool:
        """Start everything; returns False when the cluster was already running (no-op).

        `real_nodes` kubelet nodes (each with its own containerd) join the kwok fake nodes, with
        kube-proxy and CoreDNS; they change the host, and `down` undoes it (see hostchanges.py).
        """
        from mesoskube.cluster.kubelets import RealNodes
        from mesoskube.cluster.realnodes import host_ip

        if self.is_running():
            if with_scheduler and self.component_status()["kube-scheduler"] != "running":
                self._start_scheduler(self.state(), scheduler_qps)
            have = len(self.state().get("real", {}).get("nodes", []))
            if real_nodes != have:
                raise ClusterError(
                    f"cluster {self.name!r} is running with {have} real node(s); to get {real_nodes}, "
                    f"stop it first (`mesoskube cluster --name {self.name} down`)"
                )
            return False
        if self.state():
            self.down()
        needed = ["etcd", "kube-apiserver", "kube-controller-manager", "kwok"]
        if real_nodes:
            needed += ["kubelet", "kube-proxy", "coredns"]
            for tool in ("containerd", "runc", "ctr", "iptables"):
                if shutil.which(tool) is None:
                    raise ClusterError(f"real nodes need {tool}: run `make deps` (Debian packages)")
        for name in needed:
            binary_path(name)  # fail before starting anything
        d = self.dir
        (d / "logs").mkdir(parents=True, exist_ok=True)
        (d / "pki").mkdir(exist_ok=True)
        ports = {k: free_port() for k in ("etcd", "etcd-peer", "apiserver", "kwok")}
        token = os.urandom(16).hex()
        state: dict = {"ports": ports, "pids": {}, "versions": versions(), "token": token}
        self._save(state)
        real = RealNodes(self)
        node_ip = host_ip() if real_nodes else "127.0.0.1"
        if real_nodes:
            real.claim(real.plan(state, real_nodes, node_ip, free_port))
        self._write_pki(token, node_ip)
        self._start(
            state,
            "etcd",
            [
                str(binary_path("etcd")),
                "--name",
                "mesoskube",
                "--data-dir",
                str(d / "etcd"),
                "--listen-client-urls",
                f"http://127.0.0.1:{ports['etcd']}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{ports['etcd']}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{ports['etcd-peer']}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{ports['etcd-peer']}",
                "--initial-cluster",
                f"mesoskube=http://127.0.0.1:{ports['etcd-peer']}",
                "--unsafe-no-fsync",
                "--quota-backend-bytes",
                str(8 * 2**30),
                "--log-level",
                "warn",
            ],
        )
        self._wait(lambda: _http_ok(f"http://127.0.0.1:{ports['etcd']}/health"), "etcd", 30)
        pki = d / "pki"
        self._start(
            state,
            "kube-apiserver",
            [
                str(binary_path("kube-apiserver")),
                "--etcd-servers",
                f"http://127.0.0.1:{ports['etcd']}",
                "--tls-cert-file",
                str(pki / "apiserver.crt"),
                "--tls-private-key-file",
                str(pki / "apiserver.key"),
                "--secure-port",
                str(ports["apiserver"]),
                # Pods reach the API server through the `kubernetes` Service, whose endpoint is the
                # advertised address: with real nodes that is the machine's own interface.
                "--bind-address",
                "0.0.0.0" if real_nodes else "127.0.0.1",
                "--advertise-address",
                node_ip,
                "--service-cluster-ip-range",
                "10.0.0.0/24",
                "--allow-privileged=true",
                # TaintNodesByCondition would taint every new fake node not-ready until the
                # node-lifecycle controller's next pass lifts it; kwok reports the Ready condition.
                "--disable-admission-plugins",
                "TaintNodesByCondition",
                "--enable-admission-plugins",
                "NodeRestriction",
                # Kubelets are system:node:<name>: the Node authorizer confines each to its node.
                "--authorization-mode",
                "Node,RBAC",
                "--token-auth-file",
                str(pki / "tokens.csv"),
                "--client-ca-file",
                str(pki / "ca.crt"),
                "--kubelet-client-certificate",
                str(pki / "apiserver-kubelet-client.crt"),
                "--kubelet-client-key",
                str(pki / "apiserver-kubelet-client.key"),
                # Node names are not resolvable here; the InternalIP is the machine's address.
                "--kubelet-preferred-address-types",
                "InternalIP,Hostname",
                "--service-account-issuer",
                "https://kubernetes.default.svc.cluster.local",
                "--service-account-key-file",
                str(pki / "sa.pub"),
                "--service-account-signing-key-file",
                str(pki / "sa.key"),
                # Pods' tokens expire when their spec says (not a year later, the default's legacy grace),
                # so a short-lived token really has to be rotated by the kubelet and re-read.
                "--service-account-extend-token-expiration=false",
                "--event-ttl",
                "1h",
                "--profiling=false",
                "--v",
                "1",
            ],
        )
        self._wait(self._apiserver_ready, "kube-apiserver", 60)
        self._write_kubeconfig(token, ports["apiserver"])
        self._start(
            state,
            "kube-controller-manager",
            [
                str(binary_path("kube-controller-manager")),
                "--kubeconfig",
                str(self.kubeconfig),
                "--authentication-kubeconfig",
                str(self.kubeconfig),
                "--authorization-kubeconfig",
                str(self.kubeconfig),
                "--controllers",
                CONTROLLERS,
                "--service-account-private-key-file",
                str(pki / "sa.key"),
                "--root-ca-file",
                str(pki / "ca.crt"),
                "--node-monitor-grace-period",
                NODE_MONITOR_GRACE_PERIOD,
                "--leader-elect=false",
                "--secure-port",
                "0",
                "--kube-api-qps",
                "200",
                "--kube-api-burst",
                "400",
                "--v",
                "1",
            ],
        )
        self._start(
            state,
            "kwok",
            kwok_argv(str(self.kubeconfig), ports["kwok"]),
        )
        # Real nodes run ordinary pods too (the Helm-installed master among them): they need the
        # default scheduler, which ignores the pods mesoskube binds itself.
        if with_scheduler or real_nodes:
            self._start_scheduler(state, scheduler_qps)
        if real_nodes:
            real.start(state, f"https://{node_ip}:{ports['apiserver']}")
        time.sleep(0.3)
        if bad := self.crashed():
            raise ClusterError(_crash_report(bad))
        return True

    def _start_scheduler(self, state: dict, qps: float) -> None:
        cfg = self.dir / "scheduler-config.yaml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kubescheduler.config.k8s.io/v1",
                    "kind": "KubeSchedulerConfiguration",
                    "clientConnection": {
                        "kubeconfig": str(self.kubeconfig),
                        "qps": qps,
                        "burst": int(qps * 2),
                    },
                    "leaderElection": {"leaderElect": False},
                }
            )
        )
        self._start(
            state,
            "kube-scheduler",
            [
                str(binary_path("kube-scheduler")),
                "--config",
                str(cfg),
                "--secure-port",
                "0",
                "--v",
                "1",
            ],
        )

    def _start(self, state: dict, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        logfile = self.dir / "logs" / f"{name}.log"
        logfile.parent.mkdir(parents=True, exist_ok=True)
        log = open(logfile, "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **env} if env else None,
        )
        log.close()
        state["pids"][name] = proc.pid
        state.setdefault("argv", {})[name] = argv  # for restart_component
        if env:
            state.setdefault("env", {})[name] = env
        else:
            state.get("env", {}).pop(name, None)
        self._save(state)

    def _wait(self, check, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if name in self.crashed():
                raise ClusterError(_crash_report({name: tail(self.dir / "logs" / f"{name}.log")}))
            time.sleep(0.1)
        raise ClusterError(
            f"{name} not ready after {timeout:.0f}s; log tail:\n" + tail(self.dir / "logs" / f"{name}.log")
        )

    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.dir / "pki" / "ca.crt"))
        return ctx

    def _apiserver_ready(self) -> bool:
        st = self.state()
        port = st["ports"]["apiserver"]
        crt = self.dir / "pki" / "ca.crt"
        if not crt.exists():
            return False
        req = urllib.request.Request(
            f"https://127.0.0.1:{port}/readyz", headers={"Authorization": f"Bearer {st['token']}"}
        )
        try:
            with urllib.request.urlopen(req, context=self._ssl(), timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False

    def _write_pki(self, token: str, node_ip: str) -> None:
        pki = self.dir / "pki"
        (pki / "tokens.csv").write_text(f'{token},{ADMIN_TOKEN_USER},{ADMIN_TOKEN_USER},"system:masters"\n')
        ca = Pki(pki)
        ca.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",))
        # One CA for every client: the admin's kubeconfig, kubelets, and pods (the kube-root-ca.crt
        # ConfigMap); the serving certificate names every address the API server is reached by.
        ca.issue(
            "apiserver",
            "kube-apiserver",
            ips=tuple(dict.fromkeys(("127.0.0.1", node_ip, KUBERNETES_SERVICE_IP))),
            dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local"),
        )  # fmt: skip
        subprocess.run(
            ["openssl", "genrsa", "-out", str(pki / "sa.key"), "2048"], check=True, capture_output=True
        )
        subprocess.run(
            ["openssl", "rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub")],
            check=True,
            capture_output=True,
        )

    def _write_kubeconfig(self, token: str, port: int) -> None:
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": self.name,
                    "cluster": {
                        "server": f"https://127.0.0.1:{port}",
                        "certificate-authority": str(self.dir / "pki" / "ca.crt"),
                    },
                }
            ],
            "users": [{"name": ADMIN_TOKEN_USER, "user": {"token": token}}],
            "contexts": [{"name": self.name, "context": {"cluster": self.name, "user": ADMIN_TOKEN_USER}}],
            "current-context": self.name,
        }
        self.kubeconfig.write_text(yaml.safe_dump(cfg))
        self.kubeconfig.chmod(0o600)

    # ------------------------------------------------------------------ down

    def stop_component(self, name: str, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        pid = self.state().get("pids", {}).get(name)
        if not pid or not _alive(pid):
            return
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)

    def restart_component(
        self,
        name: str,
        sig: int = signal.SIGTERM,
        timeout: float = 60,
        while_stopped: Callable[[], object] | None = None,
    ) -> float:
        """Stop one component (SIGTERM, or SIGKILL for a crash) and start it again with the same
        command line, environment and data; returns when it serves again. For chaos tests. Returns
        the seconds it was away. `while_stopped` runs in between (a change its clients must miss)."""
        state = self.state()
        argv = state.get("argv", {}).get(name)
        if not argv:
            raise ClusterError(f"{name}: no recorded command line (cluster started before restarts existed)")
        began = time.monotonic()
        self.stop_component(name, sig)
        if while_stopped is not None:
            while_stopped()
        self._start(state, name, argv, state.get("env", {}).get(name))
        ready = {
            "etcd": lambda: _http_ok(f"http://127.0.0.1:{state['ports']['etcd']}/health"),
            "kube-apiserver": self._apiserver_ready,
        }.get(name)
        if ready is not None:
            self._wait(ready, name, timeout)
        return time.monotonic() - began

    def down(self) -> list[str]:
        """Stop everything (real nodes first, undoing their host changes); returns what was left."""
        from mesoskube.cluster.kubelets import RealNodes

        state = self.state()
        problems = RealNodes(self).down(state, api_up=self.is_running()) if state.get("real") else []
        for name in reversed(COMPONENTS):
            self.stop_component(name)
        shutil.rmtree(self.dir, ignore_errors=True)
        return problems


def kwok_argv(kubeconfig: str, port: int) -> list[str]:
    """kwok against an API server: it manages only nodes annotated as fake, with mesoskube's pod stages."""
    return [
        str(binary_path("kwok")),
        "--kubeconfig",
        kubeconfig,
        "--manage-all-nodes=false",
        "--manage-nodes-with-annotation-selector",
        "kwok.x-k8s.io/node=fake",
        "--cidr",
        "10.16.0.1/12",
        "--node-ip",
        "10.15.0.1",
        "--node-lease-duration-seconds",
        str(NODE_GRACE_SECONDS),
        "--server-address",
        f"127.0.0.1:{port}",
        "-c",
        str(STAGES_FILE),
    ]


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _crash_report(crashed: dict[str, str]) -> str:
    return "\n".join(f"{name} exited; last lines of its log:\n{log}" for name, log in crashed.items())
