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
from dataclasses import dataclass
from pathlib import Path

import yaml

from mesoskube.cluster.binaries import binary_path, cache_dir, versions

STAGES_FILE = Path(__file__).with_name("stages") / "pod-stages.yaml"
ADMIN_TOKEN_USER = "mesoskube-admin"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kwok", "kube-scheduler")


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
        """component -> 'running' | 'exited' | 'off'."""
        pids = self.state().get("pids", {})
        return {
            c: ("running" if _alive(pid) else "exited") if (pid := pids.get(c)) else "off" for c in COMPONENTS
        }

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

    def up(self, with_scheduler: bool = False, scheduler_qps: float = 50.0) -> bool:
        """Start everything; returns False when the cluster was already running (no-op)."""
        if self.is_running():
            if with_scheduler and self.component_status()["kube-scheduler"] != "running":
                self._start_scheduler(self.state(), scheduler_qps)
            return False
        if self.state():
            self.down()
        for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kwok"):
            binary_path(name)  # fail before starting anything
        d = self.dir
        (d / "logs").mkdir(parents=True, exist_ok=True)
        (d / "pki").mkdir(exist_ok=True)
        ports = {k: free_port() for k in ("etcd", "etcd-peer", "apiserver", "kwok")}
        token = os.urandom(16).hex()
        state: dict = {"ports": ports, "pids": {}, "versions": versions(), "token": token}
        self._save(state)
        self._write_pki(token)
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
                "--cert-dir",
                str(pki),
                "--secure-port",
                str(ports["apiserver"]),
                "--bind-address",
                "127.0.0.1",
                "--advertise-address",
                "127.0.0.1",
                "--service-cluster-ip-range",
                "10.0.0.0/24",
                "--allow-privileged=true",
                # TaintNodesByCondition would taint new nodes not-ready until a node-lifecycle
                # controller (not run here) lifts it; kwok reports the real Ready condition.
                "--disable-admission-plugins",
                "ServiceAccount,TaintNodesByCondition",
                "--authorization-mode",
                "RBAC",
                "--token-auth-file",
                str(pki / "tokens.csv"),
                "--service-account-issuer",
                "https://kubernetes.default.svc.cluster.local",
                "--service-account-key-file",
                str(pki / "sa.pub"),
                "--service-account-signing-key-file",
                str(pki / "sa.key"),
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
                "garbagecollector,namespace,serviceaccount,deployment,replicaset",
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
        if with_scheduler:
            self._start_scheduler(state, scheduler_qps)
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

    def _start(self, state: dict, name: str, argv: list[str]) -> None:
        log = open(self.dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.close()
        state["pids"][name] = proc.pid
        state.setdefault("argv", {})[name] = argv  # for restart_component
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
        ctx = ssl.create_default_context(cafile=str(self.dir / "pki" / "apiserver.crt"))
        return ctx

    def _apiserver_ready(self) -> bool:
        st = self.state()
        port = st["ports"]["apiserver"]
        crt = self.dir / "pki" / "apiserver.crt"
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

    def _write_pki(self, token: str) -> None:
        pki = self.dir / "pki"
        (pki / "tokens.csv").write_text(f'{token},{ADMIN_TOKEN_USER},{ADMIN_TOKEN_USER},"system:masters"\n')
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
                        # kube-apiserver's self-signed serving certificate, generated in --cert-dir.
                        "certificate-authority": str(self.dir / "pki" / "apiserver.crt"),
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

    def restart_component(self, name: str, sig: int = signal.SIGTERM, timeout: float = 60) -> float:
        """Stop one component (SIGTERM, or SIGKILL for a crash) and start it again with the same
        command line and data; returns when it serves again. For chaos tests. Returns the seconds
        it was away."""
        state = self.state()
        argv = state.get("argv", {}).get(name)
        if not argv:
            raise ClusterError(f"{name}: no recorded command line (cluster started before restarts existed)")
        began = time.monotonic()
        self.stop_component(name, sig)
        self._start(state, name, argv)
        ready = {
            "etcd": lambda: _http_ok(f"http://127.0.0.1:{state['ports']['etcd']}/health"),
            "kube-apiserver": self._apiserver_ready,
        }.get(name)
        if ready is not None:
            self._wait(ready, name, timeout)
        return time.monotonic() - began

    def down(self) -> None:
        for name in reversed(COMPONENTS):
            self.stop_component(name)
        shutil.rmtree(self.dir, ignore_errors=True)


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
        "40",
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
