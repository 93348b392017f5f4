"""Restart safety: the master SIGKILLed mid-workload and started again launches nothing twice and
loses nothing (all state lives in the API server)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from kubernetes.client.exceptions import ApiException

from tests.cluster.mesos import RawFramework, task
from tests.helpers import eventually

TOTAL_TASKS = 60


def start_master(kubeconfig: str, namespace: str, test_id: str, log) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mesoskube.cli",
            "master",
            "run",
            "--kubeconfig",
            kubeconfig,
            "--namespace",
            namespace,
            "--agent-selector",
            f"mesoskube.io/test={test_id}",
            "--metrics-port",
            "0",
            "--health-port",
            "0",
            "--http-port",
            "0",
            "--allocation-interval",
            "0.5",
            "--log-level",
            "WARNING",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_master_killed_mid_workload_launches_nothing_twice_and_loses_nothing(
    kube, kubeconfig, crds, namespace, fake_nodes, test_id, tmp_path, request
):
    if request.config.getoption("--installed-master"):
        import pytest

        pytest.skip("needs to SIGKILL its own master")
    fake_nodes(4, "cpu=4,memory=8Gi")
    log = open(tmp_path / "master.log", "ab")  # noqa: SIM115
    master = start_master(kubeconfig, namespace, test_id, log)
    try:
        fw = RawFramework.subscribe(kube, namespace, "fw")
        accepted: list[str] = []
        done = threading.Event()

        def framework() -> None:
            while not done.is_set():
                for offer in fw.offers():
                    res = offer["spec"]["resources"]
                    room = int(min(res.get("cpus", 0), res.get("mem", 0) // 512))
                    names = [
                        f"t{len(accepted) + i:03d}" for i in range(min(room, TOTAL_TASKS - len(accepted)))
                    ]
                    try:
                        if names:
                            fw.accept(
                                offer, [task(n, 1, 512, run_seconds=1.5) for n in names], refuse_seconds=0
                            )
                            accepted.extend(names)
                        else:
                            fw.decline(offer, refuse_seconds=0.5)
                    except ApiException:
                        pass  # offer gone or answered meanwhile: nothing was accepted
                if len(accepted) >= TOTAL_TASKS:
                    done.set()
                time.sleep(0.05)

        thread = threading.Thread(target=framework, daemon=True)
        thread.start()
        eventually(lambda: len(accepted) >= 20, timeout=30, what="20 tasks accepted")
        os.killpg(master.pid, signal.SIGKILL)
        master.wait(10)
        time.sleep(1.5)  # answers pile up while no master runs
        master = start_master(kubeconfig, namespace, test_id, log)
        assert done.wait(90), f"only {len(accepted)} tasks accepted"
        thread.join(5)

        def all_finished():
            tasks = fw.tasks()
            states = [(t.get("status") or {}).get("state") for t in tasks]
            return len(tasks) >= TOTAL_TASKS and all(s == "TASK_FINISHED" for s in states) and tasks

        tasks = eventually(all_finished, timeout=90, what="every accepted task FINISHED")
        task_names = sorted(t["metadata"]["name"] for t in tasks)
        assert task_names == sorted(accepted), "tasks differ from what the framework accepted"
        pods = kube.core.list_namespaced_pod(namespace, label_selector="mesoskube.io/task").items
        pod_names = [p.metadata.name for p in pods]
        assert sorted(pod_names) == task_names, "pods and tasks do not correspond one to one"
        assert len(set(pod_names)) == len(pod_names)
        assert master.poll() is None, "the restarted master exited"
    finally:
        os.killpg(master.pid, signal.SIGKILL)
        master.wait(10)
        log.close()
