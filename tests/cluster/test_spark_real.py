"""Real Spark 4 (pyspark from PyPI) on real kubelet nodes, its executor pods placed through offers
by the pods framework: `mesoskube spark submit APP --conf spark.mesos.*` in client mode (the driver
runs here, on the host; executors in pods on real-0/real-1). Nothing is emulated."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from kubernetes.client.exceptions import ApiException

from mesoskube.frameworks.sdk import ContainerInfo, ResourceQuantities, Scheduler, TaskInfo
from mesoskube.kube import Kube
from tests.helpers import eventually

APPS = Path(__file__).parent / "spark_apps"
IMAGE = "mesoskube.local/spark:4.3.0"
FRAMEWORK_LABEL = "mesoskube.io/framework"
TERMINAL = {
    "TASK_FINISHED",
    "TASK_FAILED",
    "TASK_KILLED",
    "TASK_LOST",
    "TASK_ERROR",
    "TASK_DROPPED",
    "TASK_GONE",
}


@pytest.fixture(scope="module")
def spark_image(kubeconfig: str) -> str:
    """The Spark image on every real node (built by `make images`, imported once per tarball)."""
    from mesoskube.cluster import images, kubelets
    from mesoskube.cluster.local import LocalCluster
    from tests.conftest import TEST_CLUSTER

    if importlib.util.find_spec("pyspark") is None:
        pytest.fail("real Spark needs the pinned pyspark in this venv: pip install -e '.[spark]' (make venv)")
    t0 = time.monotonic()
    kubelets.ensure_images(LocalCluster(TEST_CLUSTER), [images.build_spark()])
    print(f"\nspark image on the real nodes in {time.monotonic() - t0:.1f}s")
    return IMAGE


def base_conf(namespace: str) -> list[str]:
    from mesoskube.cluster.realnodes import host_ip

    conf = {
        "spark.mesos.coarse": "true",
        "spark.kubernetes.container.image": IMAGE,
        "spark.kubernetes.container.image.pullPolicy": "Never",
        # Small executors: CI has 2 cores. Spark counts 1 core per executor; the pod requests 0.25.
        "spark.executor.cores": "1",
        "spark.kubernetes.executor.request.cores": "0.25",
        "spark.executor.memory": "512m",
        "spark.mesos.executor.memoryOverhead": "256",
        # The driver runs on this machine; executors (pod network) reach it at the host's address.
        "spark.driver.host": host_ip(),
        "spark.shuffle.readHostLocalDisk": "false",
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "4",
    }
    return [f"--conf={k}={v}" for k, v in conf.items()]


def submit(kubeconfig: str, namespace: str, app: Path, args: list[str], extra: dict[str, str], log: Path):
    argv = [
        sys.executable, "-m", "mesoskube.cli", "spark", "submit", "--kubeconfig", kubeconfig,
        "--namespace", namespace, *base_conf(namespace),
        *(f"--conf={k}={v}" for k, v in extra.items()), str(app), *args,
    ]  # fmt: skip
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    # A session of its own: killing it (killpg) also stops the spark-submit JVM it started.
    return subprocess.Popen(
        argv, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, text=True, start_new_session=True
    )


def stop_group(proc: subprocess.Popen, timeout: float = 60) -> None:
    """Wait for `proc`, then kill its whole process group (the driver JVM too) if it is still there."""
    import signal

    try:
        proc.wait(max(timeout, 0.1))
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def tail(path: Path, n: int = 40) -> str:
    return "\n".join(path.read_text().splitlines()[-n:]) if path.exists() else ""


def executor_tasks(kube: Kube, namespace: str, framework: str) -> list[dict]:
    return kube.list("tasks", namespace, label_selector=f"{FRAMEWORK_LABEL}={framework}")


@pytest.mark.timeout(300)
def test_client_mode_word_count_and_pi_with_executors_placed_through_offers(
    kube, kubeconfig, namespace, real_nodes, master, spark_image, tmp_path
):
    """Word count checked exactly and pi within tolerance; the executors are Tasks on the agent the
    constraint allows (real-1 only), as many as spark.cores.max / spark.executor.cores."""
    master(podsFramework=True)
    words = ["mesos", "offer", "spark", "kube", "drf"]
    want: Counter[str] = Counter()
    lines = []
    for i in range(500):
        line = [words[(i * 7 + j) % len(words)] for j in range(i % 6 + 1)]
        want.update(line)
        lines.append(" ".join(line))
    data = tmp_path / "words.txt"
    data.write_text("\n".join(lines) + "\n")
    result, release, log = tmp_path / "result.json", tmp_path / "release", tmp_path / "submit.log"
    target = real_nodes[-1]
    t0 = time.monotonic()
    proc = submit(
        kubeconfig,
        namespace,
        APPS / "wordcount_pi.py",
        [str(data), str(result), str(release)],
        {
            "spark.cores.max": "2",
            "spark.mesos.constraints": f"kubernetes.io/hostname:{target}",
            "spark.app.name": "wordcount-pi",
        },
        log,
    )
    try:
        eventually(
            lambda: result.exists() or proc.poll() is not None,
            timeout=240,
            interval=0.5,
            what="the application's result",
        )
        assert result.exists(), f"submit exited {proc.returncode} without a result:\n{tail(log)}"
        print(f"\nresult after {time.monotonic() - t0:.1f}s")
        out = json.loads(result.read_text())
        assert out["counts"] == dict(want)
        assert abs(out["pi"] - 3.14159) < 0.02, out["pi"]
        framework = out["app_id"]  # the executors' spark-app-selector, the Framework's name
        tasks = executor_tasks(kube, namespace, framework)
        pods = {p.metadata.name: p for p in kube.core.list_namespaced_pod(
            namespace, label_selector=f"spark-app-selector={framework}").items}  # fmt: skip
        assert sorted(out["executor_pods"]) == sorted(pods), (out["executor_pods"], sorted(pods))
        # spark.cores.max=2 / spark.executor.cores=1: two executors, never more.
        assert len(tasks) == 2 == len(pods), [t["metadata"]["name"] for t in tasks]
        for t in tasks:
            pod = pods[t["metadata"]["name"]]
            assert t["spec"]["agent"] == pod.spec.node_name == target  # the constraint held
            assert t["spec"]["resources"]["cpus"] == 0.25
            assert t["status"]["state"] == "TASK_RUNNING"
        fw = kube.get("frameworks", namespace, framework)
        assert fw["spec"]["roles"] == ["*"]
        for name, pod in sorted(pods.items()):
            created = pod.metadata.creation_timestamp
            bound = next(c.last_transition_time for c in pod.status.conditions if c.type == "PodScheduled")
            started = pod.status.container_statuses[0].state.running.started_at
            print(
                f"{name}: bound through an offer {(bound - created).total_seconds():.0f}s "
                f"and running {(started - created).total_seconds():.0f}s after Spark created it"
            )
    finally:
        release.touch()
        try:
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
        print(tail(log, 15))
    assert proc.returncode == 0, tail(log)
    print(f"submit to exit {time.monotonic() - t0:.1f}s")


@pytest.mark.timeout(180)
def test_an_unsatisfiable_constraint_leaves_a_real_app_waiting_with_a_message(
    kube, kubeconfig, namespace, real_nodes, master, spark_image, tmp_path
):
    master(podsFramework=True)
    log = tmp_path / "submit.log"
    proc = submit(
        kubeconfig,
        namespace,
        APPS / "wordcount_pi.py",
        ["/dev/null", str(tmp_path / "r.json"), str(tmp_path / "release")],
        {"spark.cores.max": "1", "spark.mesos.constraints": "zone:nowhere"},
        log,
    )
    try:

        def waiting_message() -> tuple[str, list[str]] | None:
            for fw in kube.list("frameworks", namespace):
                name = fw["metadata"]["name"]
                events = kube.core.list_namespaced_event(
                    namespace, field_selector=f"involvedObject.name={name}"
                ).items
                msgs = [e.message for e in events if e.reason == "PodUnschedulable"]
                if msgs:
                    return name, msgs
            assert proc.poll() is None, f"submit exited {proc.returncode}:\n{tail(log)}"
            return None

        name, msgs = eventually(waiting_message, timeout=120, interval=0.5, what="PodUnschedulable")
        assert "didn't match Pod's node affinity/selector" in msgs[0], msgs

        # The pods framework judges the pod against the agents it knows as soon as it has
        # created the Framework; the master's subscription (status.phase) can come after that.
        def phase() -> str | None:
            return (kube.get("frameworks", namespace, name).get("status") or {}).get("phase")

        eventually(lambda: phase() == "Subscribed", timeout=30, what=f"framework {name} subscribed")
        assert not executor_tasks(kube, namespace, name)
        described = subprocess.run(
            ["kubectl", "--kubeconfig", kubeconfig, "-n", namespace, "describe", "framework", name],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert "didn't match Pod's node affinity/selector" in described.stdout, described.stdout
        assert proc.poll() is None, "the driver waits for executors; it did not crash"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.timeout(240)
def test_plain_spark_submit_naming_mesoskube_as_scheduler_is_placed_through_offers(
    kube, kubeconfig, namespace, real_nodes, master, spark_image, tmp_path
):
    """No `mesoskube spark submit`: pyspark's own spark-submit with spark.kubernetes.* keys only
    (the README's example); the executor pods still become Tasks of the application's Framework."""
    from mesoskube.cluster.realnodes import host_ip
    from mesoskube.frameworks.spark.submit import find_spark_submit, master_url

    master(podsFramework=True)
    data = tmp_path / "words.txt"
    data.write_text("a b a\n")
    result, release, log = tmp_path / "result.json", tmp_path / "release", tmp_path / "submit.log"
    conf = {
        "spark.kubernetes.scheduler.name": "mesoskube",
        "spark.kubernetes.namespace": namespace,
        "spark.kubernetes.container.image": IMAGE,
        "spark.kubernetes.container.image.pullPolicy": "Never",
        "spark.executor.instances": "1",
        "spark.executor.cores": "1",
        "spark.kubernetes.executor.request.cores": "0.25",
        "spark.executor.memory": "512m",
        "spark.driver.host": host_ip(),
        "spark.ui.enabled": "false",
    }
    argv = [find_spark_submit(), "--master", master_url(kubeconfig), "--deploy-mode", "client"]
    for k, v in conf.items():
        argv += ["--conf", f"{k}={v}"]
    argv += [str(APPS / "wordcount_pi.py"), str(data), str(result), str(release)]
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    proc = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, text=True)
    try:
        eventually(lambda: result.exists() or proc.poll() is not None, timeout=180, interval=0.5)
        assert result.exists(), f"spark-submit exited {proc.returncode}:\n{tail(log)}"
        out = json.loads(result.read_text())
        assert out["counts"] == {"a": 2, "b": 1}
        assert abs(out["pi"] - 3.14159) < 0.02
        (t,) = executor_tasks(kube, namespace, out["app_id"])
        assert t["spec"]["agent"] in real_nodes and t["status"]["state"] == "TASK_RUNNING"
    finally:
        release.touch()
        try:
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, tail(log)


@pytest.mark.timeout(300)
def test_dynamic_allocation_grows_executors_through_offers_and_releases_them_when_idle(
    kube, kubeconfig, namespace, real_nodes, master, spark_image, tmp_path
):
    """spark.dynamicAllocation.enabled with shuffle tracking: queued tasks add executors (each bound
    through an offer, up to spark.cores.max / spark.executor.cores = 3), idle ones are released
    after spark.dynamicAllocation.executorIdleTimeout; the running Task count over time is printed."""
    master(podsFramework=True)
    done, release, log = tmp_path / "done", tmp_path / "release", tmp_path / "submit.log"
    proc = submit(
        kubeconfig,
        namespace,
        APPS / "dynamic.py",
        [str(done), str(release)],
        {
            "spark.cores.max": "3",
            "spark.dynamicAllocation.enabled": "true",
            "spark.dynamicAllocation.minExecutors": "0",
            "spark.dynamicAllocation.initialExecutors": "1",
            "spark.dynamicAllocation.schedulerBacklogTimeout": "1s",
            "spark.dynamicAllocation.sustainedSchedulerBacklogTimeout": "1s",
            "spark.dynamicAllocation.executorIdleTimeout": "5s",
        },
        log,
    )
    t0 = time.monotonic()
    counts: list[tuple[float, int]] = []

    def running() -> int:
        n = sum(
            1 for t in kube.list("tasks", namespace) if (t.get("status") or {}).get("state") == "TASK_RUNNING"
        )
        if not counts or counts[-1][1] != n:
            counts.append((time.monotonic() - t0, n))
        return n

    try:
        peak = eventually(
            lambda: (running() >= 2 and running()) or (proc.poll() is not None and -1),
            timeout=180,
            interval=0.5,
            what="executors added while tasks queue",
        )
        assert peak > 0, f"submit exited {proc.returncode}:\n{tail(log)}"
        eventually(lambda: done.exists() or proc.poll() is not None, timeout=120, interval=0.5)
        assert done.read_text() == str(sum(range(16)))
        assert max(n for _, n in counts) <= 3  # spark.cores.max
        eventually(lambda: running() == 0, timeout=60, interval=0.5, what="idle executors released")
    finally:
        print("\nrunning executor Tasks over time: " + ", ".join(f"{t:.0f}s:{n}" for t, n in counts))
        release.touch()
        try:
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, tail(log)


@pytest.mark.timeout(240)
def test_cluster_deploy_mode_places_the_driver_pod_through_offers_and_submit_returns(
    kube, kubeconfig, namespace, real_nodes, master, spark_image
):
    """Plain spark-submit --deploy-mode cluster: the driver pod is itself bound through an offer (a
    Task of the application's Framework, as Mesos's cluster dispatcher placed drivers), submit
    returns while the driver runs, and the driver's executors are placed the same way."""
    import shutil
    import tempfile

    from mesoskube.frameworks.spark.submit import find_spark_submit, master_url

    master(podsFramework=True)
    # The driver creates its executor pods as this ServiceAccount.
    kube.core.create_namespaced_service_account(namespace, {"metadata": {"name": "spark"}})
    rules = [{"apiGroups": [""], "resources": ["pods", "services", "configmaps", "persistentvolumeclaims"],
              "verbs": ["*"]}]  # fmt: skip
    rbac = client_rbac(kube)
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "spark-driver"}, "rules": rules})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "spark-driver"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "spark-driver"},
            "subjects": [{"kind": "ServiceAccount", "name": "spark", "namespace": namespace}],
        },
    )
    # The real nodes share this machine: the app and its data reach the driver pod by hostPath
    # (uid 185 must read and write there, hence a world-writable directory of its own).
    shared = Path(tempfile.mkdtemp(prefix="mesoskube-spark-"))
    shared.chmod(0o777)
    try:
        (shared / "words.txt").write_text("x y x\n")
        conf = {
            "spark.kubernetes.scheduler.name": "mesoskube",
            "spark.kubernetes.namespace": namespace,
            "spark.kubernetes.authenticate.driver.serviceAccountName": "spark",
            "spark.kubernetes.container.image": IMAGE,
            "spark.kubernetes.container.image.pullPolicy": "Never",
            "spark.kubernetes.submission.waitAppCompletion": "false",
            "spark.executor.instances": "1",
            "spark.executor.cores": "1",
            "spark.kubernetes.executor.request.cores": "0.25",
            "spark.kubernetes.driver.request.cores": "0.25",
            "spark.executor.memory": "512m",
            "spark.driver.memory": "512m",
            "spark.ui.enabled": "false",
            "spark.kubernetes.driver.volumes.hostPath.apps.mount.path": "/apps",
            "spark.kubernetes.driver.volumes.hostPath.apps.options.path": str(APPS),
            "spark.kubernetes.driver.volumes.hostPath.shared.mount.path": "/shared",
            "spark.kubernetes.driver.volumes.hostPath.shared.options.path": str(shared),
        }
        argv = [find_spark_submit(), "--master", master_url(kubeconfig), "--deploy-mode", "cluster"]
        for k, v in conf.items():
            argv += ["--conf", f"{k}={v}"]
        argv += [
            "local:///apps/wordcount_pi.py",
            "/shared/words.txt",
            "/shared/result.json",
            "/shared/release",
        ]
        env = {**os.environ, "KUBECONFIG": kubeconfig}
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        result = shared / "result.json"
        assert not result.exists(), "submit returned at once, before the driver's result"
        eventually(result.exists, timeout=180, interval=0.5, what="the driver's result")
        out = json.loads(result.read_text())
        assert out["counts"] == {"x": 2, "y": 1}
        assert abs(out["pi"] - 3.14159) < 0.02
        tasks = {t["metadata"]["name"]: t for t in executor_tasks(kube, namespace, out["app_id"])}
        pods = kube.core.list_namespaced_pod(namespace, label_selector=f"spark-app-selector={out['app_id']}")
        roles = {p.metadata.labels["spark-role"]: p for p in pods.items}
        assert set(roles) == {"driver", "executor"}, sorted(roles)
        for pod in roles.values():
            assert tasks[pod.metadata.name]["spec"]["agent"] == pod.spec.node_name in real_nodes
        (shared / "release").touch()
        eventually(
            lambda: (
                kube.core.read_namespaced_pod(roles["driver"].metadata.name, namespace).status.phase
                == "Succeeded"
            ),
            timeout=90,
            what="the driver pod Succeeded",
        )
    finally:
        (shared / "release").touch()
        shutil.rmtree(shared, ignore_errors=True)


def client_rbac(kube: Kube):
    from kubernetes import client

    return client.RbacAuthorizationV1Api(kube.api)


def driver_rbac(kube: Kube, namespace: str) -> None:
    """A ServiceAccount `spark` that may create the driver's executor pods, services and configmaps."""
    kube.core.create_namespaced_service_account(namespace, {"metadata": {"name": "spark"}})
    rules = [{"apiGroups": [""], "resources": ["pods", "services", "configmaps", "persistentvolumeclaims"],
              "verbs": ["*"]}]  # fmt: skip
    rbac = client_rbac(kube)
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "spark-driver"}, "rules": rules})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "spark-driver"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "spark-driver"},
            "subjects": [{"kind": "ServiceAccount", "name": "spark", "namespace": namespace}],
        },
    )


def spark_cli(kubeconfig: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "mesoskube.cli", "spark", *args, "--kubeconfig", kubeconfig]
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.mark.timeout(420)
def test_mesoskube_submit_cluster_mode_returns_and_status_and_kill_follow_the_driver(
    kube, kubeconfig, namespace, real_nodes, master, spark_image
):
    """`mesoskube spark submit --deploy-mode cluster` returns while the driver pod (placed through an
    offer, a Task of the application's Framework) runs and prints its submission id;
    `spark status ID` names the driver's Mesos state, agent and executors; `spark kill ID` deletes
    the running driver's pod and its executors go with it. (The driver's answer in cluster mode is
    checked by the plain spark-submit test above.)"""
    import shutil
    import tempfile

    from mesoskube.frameworks.spark import submissions
    from mesoskube.frameworks.spark.submissions import parse_submission_id

    master(podsFramework=True)
    driver_rbac(kube, namespace)
    shared = Path(tempfile.mkdtemp(prefix="mesoskube-spark-"))
    shared.chmod(0o777)  # uid 185 (the image's spark user) writes the result here
    try:
        (shared / "words.txt").write_text("p q p p\n")
        conf = {
            "spark.mesos.coarse": "true",
            "spark.mesos.role": "batch",
            "spark.cores.max": "1",
            "spark.executor.cores": "1",
            "spark.kubernetes.executor.request.cores": "0.25",
            "spark.kubernetes.driver.request.cores": "0.25",
            "spark.executor.memory": "512m",
            "spark.mesos.executor.memoryOverhead": "256",
            "spark.driver.memory": "512m",
            "spark.kubernetes.authenticate.driver.serviceAccountName": "spark",
            "spark.kubernetes.container.image": IMAGE,
            "spark.kubernetes.container.image.pullPolicy": "Never",
            "spark.ui.enabled": "false",
            "spark.kubernetes.driver.volumes.hostPath.apps.mount.path": "/apps",
            "spark.kubernetes.driver.volumes.hostPath.apps.options.path": str(APPS),
            "spark.kubernetes.driver.volumes.hostPath.shared.mount.path": "/shared",
            "spark.kubernetes.driver.volumes.hostPath.shared.options.path": str(shared),
        }
        t0 = time.monotonic()
        done = spark_cli(
            kubeconfig, "submit", "--deploy-mode", "cluster", "--namespace", namespace,
            "--name", "wc-cluster",
            *(f"--conf={k}={v}" for k, v in conf.items()),
            "local:///apps/wordcount_pi.py", "/shared/words.txt", "/shared/result.json", "/shared/release",
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        print(f"\nsubmit returned in {time.monotonic() - t0:.1f}s")
        (sid,) = [ln.split()[1] for ln in done.stdout.splitlines() if ln.startswith("submitted ")]
        assert sid.startswith(f"{namespace}:wc-cluster-") and sid.endswith("-driver"), sid
        driver_pod = sid.split(":", 1)[1]
        assert not (shared / "result.json").exists(), "submit returned at once, before the driver's result"

        def status(ref: str = sid) -> list[dict]:  # what `spark status --json` prints, in-process
            return [r.to_dict() for r in submissions.status(kube, parse_submission_id(ref, "default"))]

        running = eventually(
            lambda: (
                (s := status()[0])["state"] == "TASK_RUNNING"
                and "TASK_RUNNING" in s["executors"].values()
                and s
            ),
            timeout=180,
            interval=1,
            what="the driver and an executor TASK_RUNNING",
        )
        print(
            "status: "
            + json.dumps({k: running[k] for k in ("state", "node", "framework", "role", "executors")})
        )
        assert running["node"] in real_nodes and running["task_agent"] == running["node"]
        assert running["framework"] == running["app_id"] and running["role"] == "batch"
        shown = spark_cli(kubeconfig, "status", sid)  # the command itself, once
        assert shown.returncode == 0, shown.stderr
        assert f"submission {sid}" in shown.stdout and "driver      TASK_RUNNING" in shown.stdout, (
            shown.stdout
        )
        assert "executors   1 TASK_RUNNING on real-" in shown.stdout, shown.stdout
        # Spark's glob form finds the same driver.
        assert [r["pod"] for r in status(f"{namespace}:wc-cluster-*")] == [driver_pod]

        killed = spark_cli(kubeconfig, "kill", sid, "--grace-period", "0")
        assert killed.returncode == 0 and f"deleted driver pod {sid}" in killed.stdout, killed.stderr
        selector = f"spark-app-selector={running['app_id']}"
        eventually(
            lambda: not kube.core.list_namespaced_pod(namespace, label_selector=selector).items,
            timeout=90,
            interval=0.5,
            what="the driver and executor pods gone",
        )
        gone = spark_cli(kubeconfig, "status", sid)
        assert gone.returncode == 1 and f"no driver pod matches {sid}" in gone.stderr
        print(f"killed and gone {time.monotonic() - t0:.1f}s after submit")
    finally:
        (shared / "release").touch()
        shutil.rmtree(shared, ignore_errors=True)


class SlotHolder(Scheduler):
    """A non-Spark framework that fills every agent with tasks of `cpus` each, as a busy cluster is
    when the applications arrive; the test then ends them one at a time."""

    def __init__(self, cpus: float, slots: int) -> None:
        self.cpus, self.slots = cpus, slots
        self.launched: list[str] = []
        self.running: set[str] = set()

    def resource_offers(self, driver, offers) -> None:
        for o in offers:
            n = min(int((o.resources.cpus + 1e-6) // self.cpus), self.slots - len(self.launched))
            if n <= 0:
                driver.decline(o.id, refuse_seconds=600)
                continue
            tasks = []
            for _ in range(n):
                name = f"hold-{len(self.launched)}"
                self.launched.append(name)
                tasks.append(
                    TaskInfo(
                        name=name,
                        resources=ResourceQuantities(cpus=self.cpus, mem=32),
                        container=ContainerInfo(
                            command=["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
                        ),
                    )
                )
            driver.accept(o.id, tasks, filters={"refuseSeconds": 600})
        if len(self.launched) >= self.slots:
            driver.suppress()

    def status_update(self, driver, status) -> None:
        if status.state.value == "TASK_RUNNING":
            self.running.add(status.task_id)
        elif status.is_terminal:
            self.running.discard(status.task_id)


def free_cpus(kube: Kube, node: str) -> float:
    from kubernetes.utils import parse_quantity

    def parse_cpu(q: str) -> float:
        return float(parse_quantity(q))

    alloc = parse_cpu(kube.core.read_node(node).status.allocatable["cpu"])
    pods = kube.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
    used = sum(
        parse_cpu((c.resources.requests or {}).get("cpu", "0"))
        for p in pods
        if p.status.phase not in ("Succeeded", "Failed")
        for c in p.spec.containers
    )
    return alloc - used


@pytest.mark.timeout(420)
def test_two_real_apps_in_roles_weighted_1_and_2_converge_to_held_cores_1_to_2(
    kube, kubeconfig, namespace, real_nodes, master, spark_image, test_id, tmp_path
):
    """Two real Spark applications, in roles weighted 1 and 2, each asking for more executors than
    the cluster has slots. A non-Spark framework holds every slot when they arrive and lets go of
    one at a time, as a busy cluster frees up; weighted DRF offers each freed slot to the app with
    the lower weighted share, so the held cores end 1:2 (2 and 4 of 6 slots) and stay so while both
    run. Mesos never takes back what a framework holds: fairness is in who gets what frees. Slots
    are sized from the real nodes' free cpus (each reports the whole machine). The answers are
    checked elsewhere: here the drivers are stopped once measured (six executor JVMs starting at
    once on a 2-core machine take minutes before a job runs)."""
    from mesoskube.frameworks.sdk import SchedulerDriver

    master(podsFramework=True)
    roles = {"light": (f"light-{test_id}", 1.0), "heavy": (f"heavy-{test_id}", 2.0)}
    for name, weight in roles.values():
        kube.custom.create_cluster_custom_object(
            "mesoskube.io", "v1alpha1", "mesosroles",
            {"apiVersion": "mesoskube.io/v1alpha1", "kind": "MesosRole", "metadata": {"name": name},
             "spec": {"weight": weight}},
        )  # fmt: skip
    # Three slots per node: an executor pod of a third of the least free node's cpus, in millicores,
    # so what is left beside three slots is below min_allocatable's 0.01 cpus.
    millis = int(min(free_cpus(kube, n) for n in real_nodes) * 1000) // 3
    size = millis / 1000
    assert size >= 0.1, f"the real nodes have too few free cpus for three slots each ({size})"
    slots = 3 * len(real_nodes)
    holder = SlotHolder(size, slots)
    holder_driver = SchedulerDriver(holder, "slot-holder", namespace, kube=kube)
    holder_driver.start()
    procs: dict[str, subprocess.Popen] = {}
    samples: list[tuple[float, float, float]] = []
    try:
        eventually(lambda: len(holder.running) == slots, timeout=90, what=f"{slots} slots held")
        for key, (role, _) in roles.items():
            data = tmp_path / f"{key}.txt"
            data.write_text(f"{key} a {key}\n")
            procs[key] = submit(
                kubeconfig, namespace, APPS / "wordcount_pi.py",
                [str(data), str(tmp_path / f"{key}.json"), str(tmp_path / "release")],
                {
                    "spark.app.name": f"drf-{key}",
                    "spark.mesos.role": role,
                    "spark.cores.max": str(slots + 2),  # more executors than the cluster has slots
                    "spark.kubernetes.executor.request.cores": f"{millis}m",
                    "spark.scheduler.minRegisteredResourcesRatio": "0",
                },
                tmp_path / f"{key}.log",
            )  # fmt: skip
        t0 = time.monotonic()

        def apps() -> dict[str, str]:
            by_role = {role: key for key, (role, _) in roles.items()}
            return {
                by_role[fw["spec"]["roles"][0]]: fw["metadata"]["name"]
                for fw in kube.list("frameworks", namespace)
                if fw["spec"]["roles"][0] in by_role
            }

        def held() -> dict[str, float]:
            out = {}
            for key, fw in apps().items():
                out[key] = sum(
                    t["spec"]["resources"]["cpus"]
                    for t in executor_tasks(kube, namespace, fw)
                    if (t.get("status") or {}).get("state") not in TERMINAL
                )
            samples.append((time.monotonic() - t0, out.get("light", 0.0), out.get("heavy", 0.0)))
            return out

        def pending(key: str) -> int:
            fw = apps().get(key)
            if fw is None:
                return 0
            pods = kube.core.list_namespaced_pod(namespace, label_selector=f"spark-app-selector={fw}").items
            return sum(1 for p in pods if p.status.phase == "Pending" and not p.spec.node_name)

        for key, proc in procs.items():
            eventually(
                lambda k=key, p=proc: pending(k) >= 3 or (p.poll() is not None and -1),
                timeout=150,
                interval=0.5,
                what=f"{key}'s executor pods waiting for offers",
            )
            assert procs[key].poll() is None, tail(tmp_path / f"{key}.log")
        assert sum(held().values()) == 0, "every slot was held by the holder"

        def answered() -> bool:
            """No offer to either app outstanding: each declined what is left beside the slots
            (memory) with spark.mesos.rejectOfferDuration (120 s), a filter that lapses when the
            agent has more to offer. Then a freed slot goes by weighted DRF alone, not to whichever
            app was not holding an offer of that agent at that moment."""
            for o in kube.list("offers", namespace):
                phase = (o.get("status") or {}).get("phase") or "Outstanding"
                if phase == "Outstanding" and not o["spec"].get("answer") and o["spec"]["role"] != "*":
                    return False
            return True

        for i, name in enumerate(list(holder.launched)):
            eventually(answered, timeout=60, interval=0.3, what="the apps' offers answered")
            holder_driver.kill_task(name)
            eventually(
                lambda n=i + 1: round(sum(held().values()) / size) >= n,
                timeout=60,
                interval=0.3,
                what=f"slot {i + 1} of {slots} given to an application",
            )
        final = held()
        for _ in range(10):  # while both run: the shares hold (nothing is taken back, nothing freed)
            now = held()
            assert now == final, (final, now)
        ratio = final["heavy"] / final["light"]
        print(
            f"\nslot {size:g} cpus; held cpus light:heavy = {final['light']:g}:{final['heavy']:g} "
            f"(ratio {ratio:.2f})"
        )
        assert abs(ratio - 2) / 2 <= 0.15, (final, samples)
        for key, proc in procs.items():
            assert proc.poll() is None, f"{key} ended while measured:\n{tail(tmp_path / f'{key}.log')}"
    finally:
        shown, last = [], None
        for t, light, heavy in samples:
            if (light, heavy) != last:
                shown.append(f"{t:.0f}s {light:g}:{heavy:g}")
                last = (light, heavy)
        print("held cpus light:heavy over time: " + ", ".join(shown))
        (tmp_path / "release").touch()
        for proc in procs.values():  # measured: the drivers go (their executors with them)
            stop_group(proc, timeout=0)
        holder_driver.stop()
        for name, _ in roles.values():
            with contextlib.suppress(ApiException):
                kube.custom.delete_cluster_custom_object("mesoskube.io", "v1alpha1", "mesosroles", name)
