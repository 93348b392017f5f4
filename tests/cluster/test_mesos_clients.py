"""Unmodified third-party Mesos clients from PyPI against mesoskube's Mesos HTTP API (kwok fake nodes:
pods run nothing; they complete after their `mesoskube.io/run-duration`, an emulated run time)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

from mesoskube.cluster.local import free_port
from mesoskube.cluster.pki import Pki
from tests.cluster import mesosclients
from tests.helpers import eventually, wait_torn_down


class Scheduler:
    """A client scheduler script in its own venv; its JSON event lines collected as they come."""

    def __init__(
        self, client: str, script: str, master: str, tasks: int, seconds: float, env: dict | None = None
    ) -> None:
        py = mesosclients.python(client)
        self.proc = subprocess.Popen(
            [py, str(mesosclients.SCRIPTS / script), master, str(tasks), str(seconds)],
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: list[dict] = []
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.events.append(json.loads(line))

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["event"] == kind]

    def wait(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(
                f"scheduler did not finish; events {self.events}; stderr {self.tail()}"
            ) from None
        self._reader.join(5)
        return rc

    def tail(self) -> str:
        return "".join(self.stderr[-30:])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _http_master(own_master) -> str:
    port = free_port()
    own_master(httpPort=port, httpHost="127.0.0.1", httpAuth="none")
    return f"127.0.0.1:{port}"


def check_run(kube, namespace, nodes, sched: Scheduler, n: int, image: str) -> None:
    # While they run, every task is a pod bound to one of the offered Kubernetes nodes.
    pods = eventually(
        lambda: (p := kube.core.list_namespaced_pod(namespace).items) and len(p) == n and p,
        timeout=20,
        what=f"{n} pods",
    )
    for pod in pods:
        assert pod.spec.node_name in nodes
        c = pod.spec.containers[0]
        assert c.image == image
        assert c.command[:2] == ["/bin/sh", "-c"] and "sleep" in c.command[2]
        assert c.resources.requests["cpu"] == "500m"
    assert sched.wait(60) == 0, sched.tail()
    assert len(sched.of("registered")) == 1
    first = sched.of("first_offers")[0]
    # From the script's start (the client's SUBSCRIBE) to its first OFFERS event.
    assert first["t"] < 2.0, f"first OFFERS after {first['t']}s"
    launched = [t for e in sched.of("launch") for t in e["tasks"]]
    assert len(launched) == n
    updates = sched.of("update")
    for task_id in launched:
        states = [u["state"] for u in updates if u["task_id"] == task_id]
        assert "TASK_RUNNING" in states and states[-1] == "TASK_FINISHED", (task_id, states)
    assert all(u["has_uuid"] for u in updates)  # reliable updates, each acknowledged by the client
    assert sched.of("teardown") and sched.of("exit")
    wait_torn_down(kube, namespace)


@pytest.mark.timeout(240)
def test_pymesos_example_scheduler_runs_tasks_as_pods(kube, namespace, fake_nodes, own_master):
    nodes = fake_nodes(2, "cpu=2,memory=4Gi")
    master = _http_master(own_master)
    sched = Scheduler("pymesos", "pymesos_scheduler.py", master, 6, 3.0)
    try:
        check_run(kube, namespace, nodes, sched, 6, "busybox:1.36")
    finally:
        sched.kill()


@pytest.mark.timeout(240)
def test_mesoshttp_example_scheduler_runs_tasks_as_pods(kube, namespace, fake_nodes, own_master):
    nodes = fake_nodes(2, "cpu=2,memory=4Gi")
    master = _http_master(own_master)
    sched = Scheduler("mesoshttp", "mesoshttp_scheduler.py", f"http://{master}", 4, 3.0)
    try:
        check_run(kube, namespace, nodes, sched, 4, "busybox:1.36")
    finally:
        sched.kill()


@pytest.mark.timeout(240)
def test_mesos_cli_lists_agents_frameworks_and_tasks(kube, namespace, fake_nodes, own_master, tmp_path: Path):
    nodes = fake_nodes(2, "cpu=2,memory=4Gi")
    master = _http_master(own_master)
    sched = Scheduler("pymesos", "pymesos_scheduler.py", master, 2, 60.0)
    try:
        eventually(
            lambda: len([u for u in sched.of("update") if u["state"] == "TASK_RUNNING"]) == 2,
            timeout=30,
            what="2 tasks running",
        )
        config = tmp_path / "config.toml"
        config.write_text(f'[master]\naddress = "{master}"\n')
        py = mesosclients.python("mesos-cli")

        def cli(*args: str) -> str:
            out = subprocess.run(
                [py, "-m", "avmesos.cli.mesos-cli", *args],
                env={"MESOS_CLI_CONFIG": str(config), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert out.returncode == 0, out.stdout + out.stderr
            return out.stdout

        agents = cli("agent", "list")
        for n in nodes:
            assert n in agents
        frameworks = cli("framework", "list")
        assert "pymesos example" in frameworks
        tasks = cli("task", "list")
        launched = [t for e in sched.of("launch") for t in e["tasks"]]
        for t in launched:
            assert t in tasks
        assert tasks.count("TASK_RUNNING") == 2
    finally:
        sched.kill()


@pytest.mark.timeout(240)
def test_pymesos_pointed_at_a_standby_follows_its_307_to_the_leader(kube, namespace, fake_nodes, own_master):
    nodes = fake_nodes(2, "cpu=2,memory=4Gi")
    ports = {name: free_port() for name in ("a", "b")}

    def replica(name: str):
        return own_master(
            httpPort=ports[name],
            httpHost="127.0.0.1",
            httpAuth="none",
            leaderElect=True,
            leaseNamespace=namespace,
            identity=f"replica-{name}",
        )

    a = replica("a")
    eventually(lambda: a.http is not None and a.http.active, timeout=15, what="replica-a serving")
    b = replica("b")
    assert not b.leading and b.http is not None and not b.http.active
    # The client knows only the standby's address (as behind a Service that picked it).
    sched = Scheduler("pymesos", "pymesos_scheduler.py", f"127.0.0.1:{ports['b']}", 4, 3.0)
    try:
        check_run(kube, namespace, nodes, sched, 4, "busybox:1.36")
        assert f"Try to redirect to new master: 127.0.0.1:{ports['a']}" in "".join(sched.stderr)
    finally:
        sched.kill()


def _serving_cert(local_cluster) -> tuple[Path, Path, Path]:
    """A serving certificate for 127.0.0.1 signed by the local cluster's CA, and that CA."""
    pki = Pki(local_cluster.dir / "pki")
    cert, key = pki.issue("mesos-http-test", "mesoskube-mesos-http", ips=("127.0.0.1",), dns=("localhost",))
    return cert, key, pki.ca_cert


@pytest.mark.timeout(240)
def test_mesoshttp_and_the_mesos_cli_over_tls_verifying_the_cluster_ca(
    kube, namespace, fake_nodes, own_master, local_cluster, tmp_path: Path
):
    nodes = fake_nodes(2, "cpu=2,memory=4Gi")
    cert, key, ca = _serving_cert(local_cluster)
    port = free_port()
    own_master(
        httpPort=port,
        httpHost="127.0.0.1",
        httpAuth="none",
        httpTlsCertFile=str(cert),
        httpTlsKeyFile=str(key),
    )
    master = f"https://127.0.0.1:{port}"
    # mesoshttp (requests) verifies the certificate: against the cluster's CA, given as requests' bundle.
    sched = Scheduler(
        "mesoshttp", "mesoshttp_scheduler.py", master, 2, 3.0, env={"REQUESTS_CA_BUNDLE": str(ca)}
    )
    try:
        check_run(kube, namespace, nodes, sched, 2, "busybox:1.36")
    finally:
        sched.kill()

    config = tmp_path / "config.toml"
    config.write_text(f'[master]\naddress = "{master}"\nssl_verify = true\n')
    py = mesosclients.python("mesos-cli")

    def cli(*args: str, trust: Path | None) -> subprocess.CompletedProcess:
        env = {"MESOS_CLI_CONFIG": str(config), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
        if trust is not None:
            env["SSL_CERT_FILE"] = str(trust)  # OpenSSL's default trust store: the cluster's CA only
        return subprocess.run(
            [py, "-m", "avmesos.cli.mesos-cli", *args], env=env, capture_output=True, text=True, timeout=60
        )

    out = cli("agent", "list", trust=ca)
    assert out.returncode == 0, out.stdout + out.stderr
    for n in nodes:
        assert n in out.stdout
    # Verification is real: trusting another CA, the same call fails on the certificate.
    other = Pki(tmp_path / "other-pki")
    other.ensure_ca()
    refused = cli("agent", "list", trust=other.ca_cert)
    assert refused.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in refused.stdout + refused.stderr
