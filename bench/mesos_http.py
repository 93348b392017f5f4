"""`make bench-mesos-http`: one workload through the CR path and through the Mesos HTTP API.

    BENCH_HTTP_NODES=1000 BENCH_HTTP_TASKS=500 python -m bench.mesos_http

On a local control plane (cluster `bench-http`) with N kwok nodes of 32 cpus, the master runs as its
own process (client QPS 50, burst 100) with `--http-port`. Then, one after the other:
  - CR path: the SDK (`SchedulerDriver`, its own process's client at QPS 50) launches T tasks;
  - HTTP path: unmodified pymesos (`tests/cluster/mesos_clients/pymesos_scheduler.py`) launches T
    tasks through `POST /api/v1/scheduler`; its writes are made by the master's driver for it, under
    the master's own client QPS.
Tasks are 0.5 cpu / 64 MB with an emulated run time of an hour (placement only). Measured: start ->
first offers, first launch -> last TASK_RUNNING (tasks/s), accept -> TASK_RUNNING p50/p99.
Results: bench/results/mesos-http.json and a table on stdout.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

from bench.cpu import processor
from bench.run import RESULTS, SHAPE, ensure_namespace, log, pct, scrape
from mesoskube.api.install import install_crds
from mesoskube.api.models import TaskState
from mesoskube.cluster.local import LocalCluster, free_port
from mesoskube.cluster.nodes import add_nodes, wait_nodes_ready
from mesoskube.cluster.nodeshapes import parse_shape
from mesoskube.frameworks.sdk import (
    Offer,
    ResourceQuantities,
    Scheduler,
    SchedulerDriver,
    TaskInfo,
    TaskStatus,
)
from mesoskube.kube import Kube
from tests.cluster import mesosclients

RUN_SECONDS = 3600.0
NAMESPACE = "bench-http"


def summary(start: float, first_offer: float, launched: dict[str, float], running: dict[str, float]) -> dict:
    lat = [running[t] - launched[t] for t in running if t in launched]
    span = max(running.values()) - min(launched.values()) if running and launched else 0.0
    return {
        "tasks_running": len(running),
        "first_offer_s": round(first_offer - start, 3),
        "tasks_per_s": round(len(running) / span, 1) if span else None,
        "accept_to_running_p50_s": round(pct(lat, 50), 3) if lat else None,
        "accept_to_running_p99_s": round(pct(lat, 99), 3) if lat else None,
    }


class Launcher(Scheduler):
    def __init__(self, total: int) -> None:
        self.total, self.launched_n = total, 0
        self.first_offer = 0.0
        self.launched: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.done = threading.Event()

    def resource_offers(self, driver: SchedulerDriver, offers: list[Offer]) -> None:
        self.first_offer = self.first_offer or time.monotonic()
        need = ResourceQuantities(cpus=0.5, mem=64)
        for offer in offers:
            free, tasks = offer.resources, []
            while self.launched_n < self.total and free.contains(need.to_resources()):
                self.launched_n += 1
                tasks.append(TaskInfo(name=f"cr-{self.launched_n}", resources=need, runSeconds=RUN_SECONDS))
                free = free - need.to_resources()
            if tasks:
                now = time.monotonic()
                for t in tasks:
                    self.launched[t.name] = now
                driver.accept(offer.id, tasks, filters={"refuseSeconds": 1})
            else:
                driver.decline(offer.id, refuse_seconds=60)

    def status_update(self, driver: SchedulerDriver, status: TaskStatus) -> None:
        if status.state is TaskState.RUNNING and status.task_id not in self.running:
            self.running[status.task_id] = time.monotonic()
            if len(self.running) >= self.total:
                self.done.set()


def cr_path(kubeconfig: str, tasks: int, timeout: float) -> dict:
    sched = Launcher(tasks)
    driver = SchedulerDriver(sched, "cr-path", NAMESPACE, kube=Kube.connect(kubeconfig, qps=50, burst=100))
    start = time.monotonic()
    driver.start()
    sched.done.wait(timeout)
    out = summary(start, sched.first_offer, sched.launched, sched.running)
    driver.stop()
    return out


def http_path(master: str, tasks: int, timeout: float) -> dict:
    py = mesosclients.python("pymesos")
    script = mesosclients.SCRIPTS / "pymesos_scheduler.py"
    proc = subprocess.Popen(
        [py, str(script), master, str(tasks), str(RUN_SECONDS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    launched: dict[str, float] = {}
    running: dict[str, float] = {}
    first = 0.0
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    for line in proc.stdout:
        e = json.loads(line)
        if e["event"] == "first_offers":
            first = e["t"]
        elif e["event"] == "launch":
            launched.update({t: e["t"] for t in e["tasks"]})
        elif e["event"] == "update" and e["state"] == "TASK_RUNNING":
            running.setdefault(e["task_id"], e["t"])
        if len(running) >= tasks or time.monotonic() > deadline:
            break
    proc.terminate()  # no TEARDOWN: the master tears it down after pymesos's failover timeout (0 here)
    proc.wait(10)
    return summary(0.0, first, launched, running)


def main() -> int:
    nodes = int(os.environ.get("BENCH_HTTP_NODES", "1000"))
    tasks = int(os.environ.get("BENCH_HTTP_TASKS", "500"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    cluster = LocalCluster("bench-http")
    cluster.down()
    cluster.up()
    kubeconfig = str(cluster.kubeconfig)
    kube = Kube.connect(kubeconfig)
    install_crds(kube)
    ensure_namespace(kube, NAMESPACE)
    mesosclients.client_venv("pymesos")
    add_nodes(kube, nodes, [parse_shape(SHAPE)], prefix="http-node")
    wait_nodes_ready(kube, nodes, timeout=max(120, nodes / 10))
    metrics, http = free_port(), free_port()
    master_log = open(RESULTS / "master-mesos-http.log", "w")  # noqa: SIM115
    master = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mesoskube.cli",
            "master",
            "run",
            "--kubeconfig",
            kubeconfig,
            "--kube-api-qps",
            "50",
            "--kube-api-burst",
            "100",
            "--metrics-port",
            str(metrics),
            "--health-port",
            "0",
            "--http-port",
            str(http),
            "--http-host",
            "127.0.0.1",
            "--http-auth",
            "none",
            "--namespace",
            NAMESPACE,
            "--log-level",
            "WARNING",
        ],
        stdout=master_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    data: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores ({processor()})",
        "nodes": nodes,
        "tasks": tasks,
        "qps": 50,
    }
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if scrape(metrics).get("mesoskube_agents", 0) >= nodes:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or master.poll() is not None:
                raise RuntimeError(f"master did not start; see {master_log.name}")
            time.sleep(0.5)
        log(f"{nodes} nodes, master ready; CR path: {tasks} tasks")
        data["cr_path"] = cr_path(kubeconfig, tasks, timeout=600)
        log(f"CR path: {data['cr_path']}")
        deadline = time.monotonic() + 300
        while kube.core.list_namespaced_pod(NAMESPACE).items and time.monotonic() < deadline:
            time.sleep(1)  # the CR framework's teardown frees the agents: its pods go first
        log(f"HTTP path (pymesos): {tasks} tasks")
        data["http_path"] = http_path(f"127.0.0.1:{http}", tasks, timeout=600)
        log(f"HTTP path: {data['http_path']}")
    finally:
        (RESULTS / "mesos-http.json").write_text(json.dumps(data, indent=2) + "\n")
        master.terminate()
        master.wait(30)
        if not os.environ.get("BENCH_KEEP_CLUSTER"):
            cluster.down()
    print(
        f"| path ({nodes} nodes, {tasks} tasks) | start -> first offers | tasks/s "
        "| accept -> RUNNING p50 / p99 |"
    )
    for key, name in (("cr_path", "CR (SDK)"), ("http_path", "HTTP (pymesos)")):
        r = data.get(key) or {}
        print(
            f"| {name} | {r.get('first_offer_s')} s | {r.get('tasks_per_s')} | "
            f"{r.get('accept_to_running_p50_s')} / {r.get('accept_to_running_p99_s')} s |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
