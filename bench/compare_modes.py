"""Spark coarse- vs fine-grained mode on mesoskube, same EMULATED workload, same cluster.

    python -m bench.compare_modes            # or: make compare-modes

Brings up the local control plane (cluster `compare-modes`: etcd, kube-apiserver,
controller-manager, kwok), creates fake nodes, runs the master in this process, then runs the same
emulated Spark application (stages of timed tasks; nothing executes on kwok nodes) in coarse mode,
waits for its teardown, and runs it in fine mode. Writes bench/results/compare-modes.json
(makespan, launch latency p50/p95/p99, idle cores held, utilisation, per mode; machine and
versions) and bench/results/compare-modes.png (cores held and busy over time, both modes).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from mesoskube.api.install import install_crds
from mesoskube.api.models import TERMINAL_TASK_STATES
from mesoskube.cluster.binaries import versions as binary_versions
from mesoskube.cluster.local import LocalCluster
from mesoskube.cluster.nodes import add_nodes, remove_nodes, wait_nodes_ready
from mesoskube.cluster.nodeshapes import NodeShape, parse_shape
from mesoskube.frameworks.sdk import DriverStatus, SchedulerDriver
from mesoskube.frameworks.sdk.example import Sleepers
from mesoskube.frameworks.spark import EmulatedWorkload, SparkApplication, SparkConf
from mesoskube.frameworks.spark.app import AppSummary
from mesoskube.kube import Kube

CLUSTER = "compare-modes"
BENCH_LABEL = "mesoskube.io/bench"
RESULTS = Path(__file__).resolve().parent / "results"

# The default workload: three stages, as a scan -> aggregate -> write job; 448 task-seconds.
DEFAULT_WORKLOAD = {
    "name": "emulated-etl",
    "seed": 42,
    "jitter": 0.25,
    "stages": [
        {"tasks": 96, "seconds": 2.0},
        {"tasks": 32, "seconds": 5.0},
        {"tasks": 96, "seconds": 1.0},
    ],
}
DEFAULT_COARSE = {"spark.executor.cores": "4"}
DEFAULT_FINE: dict[str, str] = {}


def log(msg: str) -> None:
    print(f"[compare-modes {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def wait_drained(kube: Kube, namespace: str, timeout: float = 120) -> float:
    """Until the previous run's teardown finished: Framework gone, every Task terminal, no pod
    holding resources. (Terminal Tasks and completed Pods linger until the garbage collector
    deletes them -- up to ~30 s on a fresh cluster -- but hold nothing.)"""
    t0 = time.monotonic()
    while True:
        left = (
            len(kube.list("frameworks", namespace))
            + sum(1 for t in kube.list("tasks", namespace) if not _terminal(t))
            + sum(
                1
                for pod in kube.core.list_namespaced_pod(namespace).items
                if pod.status.phase not in ("Succeeded", "Failed")
            )
        )
        if not left:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{left} objects of the previous run still in {namespace} after {timeout}s")
        time.sleep(0.5)


def _terminal(task: dict) -> bool:
    return (task.get("status") or {}).get("state") in {s.value for s in TERMINAL_TASK_STATES}


def warm_up(kube: Kube, namespace: str) -> float:
    """One tiny framework first, so neither measured mode pays for a cold API server and master."""
    t0 = time.monotonic()
    sched = Sleepers(tasks=1, seconds=0.2, cpus=0.1, mem=32)
    driver = SchedulerDriver(sched, "warm-up", namespace, kube=kube)
    driver.start()
    if driver.join(60) is DriverStatus.RUNNING:
        driver.stop()
        raise TimeoutError("the warm-up framework did not finish in 60s")
    return time.monotonic() - t0


def run_mode(
    kube: Kube, namespace: str, mode: str, conf: dict[str, str], workload: EmulatedWorkload, timeout: float
) -> AppSummary:
    pairs = {"spark.app.name": f"{workload.name or 'emulated'}-{mode}", **conf}
    pairs["spark.mesos.coarse"] = "true" if mode == "coarse" else "false"
    app = SparkApplication(SparkConf.parse(pairs), workload, framework_name=f"spark-{mode}")
    log(f"{mode}: submitting {workload.total_tasks} emulated tasks in {len(workload.stages)} stages")
    app.start(kube, namespace)
    last = 0.0
    deadline = time.monotonic() + timeout
    while not app.wait(1.0):
        if time.monotonic() > deadline:
            app.failure = f"timed out after {timeout}s"
            break
        if time.monotonic() - last >= 5:
            p = app.progress()
            log(
                f"{mode}: {p.elapsed:5.1f}s stage {p.stage}/{p.stages} tasks {p.tasks_done}/{p.tasks_total} "
                f"executors {p.executors} cores held {p.cores_held:g} busy {p.cores_busy:g}"
            )
            last = time.monotonic()
    if app.driver is not None and app.driver.status.value == "DRIVER_RUNNING":
        app.driver.stop()
    if app.driver is not None:
        app.driver.join(30)
    summary = app.summary(sample_step=0.25)
    log(f"{mode}: {'ok' if summary.ok else 'FAILED ' + str(summary.error)} in {summary.makespan_s:.1f}s")
    return summary


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    return info


def package_versions() -> dict[str, str]:
    out = {}
    for pkg in ("mesoskube", "kubernetes", "kopf", "pydantic", "matplotlib"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    out.update({f"bin:{k}": v for k, v in binary_versions().items()})
    return out


def compare(coarse: AppSummary, fine: AppSummary) -> dict[str, Any]:
    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a and b else None

    return {
        "makespan_fine_over_coarse": ratio(fine.makespan_s, coarse.makespan_s),
        "launch_p50_fine_over_coarse": ratio(fine.launch_latency_s["p50"], coarse.launch_latency_s["p50"]),
        "launch_p95_fine_over_coarse": ratio(fine.launch_latency_s["p95"], coarse.launch_latency_s["p95"]),
        "mean_idle_cores_fine_minus_coarse": round(
            fine.mean_idle_cores_held - coarse.mean_idle_cores_held, 3
        ),
        "utilisation_fine_minus_coarse": (
            round(fine.utilisation - coarse.utilisation, 4)
            if fine.utilisation is not None and coarse.utilisation is not None
            else None
        ),
    }


def plot(runs: dict[str, AppSummary], cluster_cores: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    colours = {"coarse": "tab:blue", "fine": "tab:orange"}
    for mode, s in runs.items():
        ts = [p[0] for p in s.timeline]
        ax.step(
            ts, [p[1] for p in s.timeline], where="post", color=colours[mode], lw=2, label=f"{mode}: held"
        )
        ax.step(
            ts,
            [p[2] for p in s.timeline],
            where="post",
            color=colours[mode],
            lw=1,
            ls="--",
            label=f"{mode}: busy",
        )
    ax.axhline(cluster_cores, color="grey", lw=0.8, ls=":", label="cluster cores")
    ax.set_xlabel("seconds since submission")
    ax.set_ylabel("cores")
    ax.set_title("Emulated Spark workload on mesoskube: cores held vs busy, coarse vs fine mode")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_table(runs: dict[str, AppSummary]) -> None:
    rows = [
        ("makespan (s)", lambda s: f"{s.makespan_s:.2f}"),
        ("tasks done", lambda s: f"{s.tasks_done}/{s.tasks_total}"),
        ("launch latency p50 (s)", lambda s: _fmt(s.launch_latency_s["p50"])),
        ("launch latency p95 (s)", lambda s: _fmt(s.launch_latency_s["p95"])),
        ("launch latency p99 (s)", lambda s: _fmt(s.launch_latency_s["p99"])),
        ("mean cores held", lambda s: f"{s.mean_cores_held:.2f}"),
        ("peak cores held", lambda s: f"{s.peak_cores_held:g}"),
        ("mean idle cores held", lambda s: f"{s.mean_idle_cores_held:.2f}"),
        ("utilisation of held cores", lambda s: "-" if s.utilisation is None else f"{s.utilisation:.1%}"),
        ("idle: launching (mean cores)", lambda s: _per_s(s, "launching")),
        ("idle: fine executors (mean)", lambda s: _per_s(s, "fine_executors")),
        ("idle: free slots (mean)", lambda s: _per_s(s, "free_slots")),
        ("tasks seen only finished", lambda s: str(s.finished_without_running)),
        ("executors launched", lambda s: str(s.executors_launched)),
        ("offers seen / accepted", lambda s: f"{s.offers_seen} / {s.accepts}"),
        (
            "driver API writes",
            lambda s: str(s.driver.get("answers", 0) + s.driver.get("revives", 0) + s.driver.get("kills", 0)),
        ),
    ]
    modes = list(runs)
    w = max(len(r[0]) for r in rows)
    print(f"\n  {'':<{w}}  " + "  ".join(f"{m:>12}" for m in modes))
    for name, f in rows:
        print(f"  {name:<{w}}  " + "  ".join(f"{f(runs[m]):>12}" for m in modes))


def _per_s(s: AppSummary, cause: str) -> str:
    return f"{s.idle_by_cause_core_s[cause] / max(s.makespan_s, 1e-9):.2f}"


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compare_modes", description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=4)
    p.add_argument("--node-shape", default="cpu=8,memory=32Gi")
    p.add_argument("--workload", help="workload file (default: a built-in 3-stage emulated job)")
    p.add_argument("--coarse-conf", action="append", default=[], metavar="K=V")
    p.add_argument("--fine-conf", action="append", default=[], metavar="K=V")
    p.add_argument("--allocation-interval", type=float, default=1.0, help="master allocation interval (s)")
    p.add_argument("--timeout", type=float, default=600, help="per mode")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--keep-cluster", action="store_true", help="leave the control plane running")
    p.add_argument("--cluster", default=CLUSTER, help="local control plane to use (default %(default)s)")
    args = p.parse_args(argv)

    workload = (
        EmulatedWorkload.load(args.workload)
        if args.workload
        else EmulatedWorkload.model_validate(DEFAULT_WORKLOAD)
    )
    confs = {
        "coarse": {**DEFAULT_COARSE, **dict(c.split("=", 1) for c in args.coarse_conf)},
        "fine": {**DEFAULT_FINE, **dict(c.split("=", 1) for c in args.fine_conf)},
    }
    for mode, conf in confs.items():
        SparkConf.parse({**conf, "spark.mesos.coarse": str(mode == "coarse").lower()})  # fail early
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    cluster = LocalCluster(args.cluster)
    log(f"starting the local control plane ({args.cluster})")
    fresh = cluster.up()
    from mesoskube.master.runner import Master
    from mesoskube.settings import Settings

    kube = Kube.connect(str(cluster.kubeconfig))
    run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    namespace = f"compare-modes-{run_id}"
    shape = parse_shape(args.node_shape)
    shape = NodeShape(capacity=shape.capacity, labels={**shape.labels, BENCH_LABEL: run_id})
    nodes: list[str] = []
    master = None
    try:
        install_crds(kube)
        kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        nodes = add_nodes(kube, args.nodes, [shape], prefix=f"cmp-{run_id}")
        wait_nodes_ready(kube, nodes)
        settings = Settings(
            namespace=namespace,
            agentSelector=f"{BENCH_LABEL}={run_id}",
            metricsPort=0,
            healthPort=0,
            httpPort=0,
            allocationInterval=args.allocation_interval,
        )
        master = Master(Kube.connect(str(cluster.kubeconfig)), settings)
        master.start_in_thread()
        log(
            f"master running in-process; {len(nodes)} fake nodes ({args.node_shape}) in namespace {namespace}"
        )
        warm = warm_up(kube, namespace)
        log(f"warm-up framework done in {warm:.1f}s")
        runs: dict[str, AppSummary] = {}
        drain: dict[str, float] = {}
        for mode in ("coarse", "fine"):
            drain[mode] = round(wait_drained(kube, namespace), 2)
            runs[mode] = run_mode(kube, namespace, mode, confs[mode], workload, args.timeout)
        cluster_cores = float(shape.capacity.get("cpu", "0")) * args.nodes
        result = {
            "benchmark": "compare-modes",
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "emulated": "the workload is emulated: no Spark code runs; kwok fake nodes complete "
            "task pods after runSeconds, coarse executors run tasks as in-process timers",
            "machine": machine_info(),
            "versions": package_versions(),
            "cluster": {"nodes": args.nodes, "node_shape": args.node_shape, "cores": cluster_cores},
            "master": {"in_process": True, **settings.model_dump(mode="json")},
            "workload": workload.model_dump(mode="json")
            | {"tasks": workload.total_tasks, "task_seconds": round(workload.serial_seconds(), 3)},
            "conf": confs,
            "warm_up_s": round(warm, 2),
            "drain_before_run_s": drain,
            "runs": {m: s.to_dict() for m, s in runs.items()},
            "comparison": compare(runs["coarse"], runs["fine"]),
        }
        (out / "compare-modes.json").write_text(json.dumps(result, indent=2) + "\n")
        plot(runs, cluster_cores, out / "compare-modes.png")
        print_table(runs)
        print(f"\n  wrote {out / 'compare-modes.json'} and {out / 'compare-modes.png'}")
        return 0 if all(s.ok for s in runs.values()) else 1
    finally:
        if master is not None:
            master.stop()
        with contextlib.suppress(ApiException):
            kube.core.delete_namespace(namespace)
        remove_nodes(kube, nodes)
        if fresh and not args.keep_cluster:
            log("stopping the local control plane")
            cluster.down()


if __name__ == "__main__":
    sys.exit(main())
