"""Real Spark 4 on real nodes: coarse mode vs the fine-grained equivalent, same application.

    python -m bench.compare_modes_real [--cluster NAME]     # `make compare-modes` runs it second

Spark 4 has no fine-grained backend. The equivalent (`mesoskube spark submit --fine-equivalent`):
1-task executors under dynamic allocation, none kept idle for more than 2 s. Coarse: executors of
`--coarse-cores` cores, as many as `--cores` allow, held for the application's life. Both run
the same PySpark application (bench/spark_apps/modes.py): jobs of sleeping tasks with the driver
idle between them (`--plan`), the driver here (client mode), executors in pods on the real nodes,
each bound through an offer by the pods framework.

Measured, per mode: makespan (submit -> last task end), executor start latency (executor pod
created -> bound through an offer / container running / its first task), Spark cores held (the
executor Tasks of the application's Framework, polled every 0.25 s: what the master counts as
allocated to it) and busy (the tasks' own start and end times), idle = held - busy, and the
cores held while the driver ran no job. Writes bench/results/compare-modes-real.json and .png.
Everything is real: nothing emulated; each real node reports the whole machine as its capacity.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from bench.compare_modes import machine_info, package_versions
from mesoskube.api.install import install_crds
from mesoskube.api.models import TERMINAL_TASK_STATES
from mesoskube.cluster.local import LocalCluster
from mesoskube.cluster.nodes import wait_nodes_ready
from mesoskube.cluster.realnodes import REAL_LABEL
from mesoskube.frameworks.spark.app import CoreTimeline, percentile
from mesoskube.kube import Kube

RESULTS = Path(__file__).resolve().parent / "results"
APP = Path(__file__).resolve().parent / "spark_apps" / "modes.py"
IMAGE = "mesoskube.local/spark:4.3.0"
TERMINAL = {s.value for s in TERMINAL_TASK_STATES}
DEFAULT_PLAN = "8x3,20;8x3,0"  # 8 tasks of 3 s, 20 s without a job, 8 tasks of 3 s


def log(msg: str) -> None:
    print(f"[compare-modes-real {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def conf_for(mode: str, cores: int, coarse_cores: int, cpu_per_core: float) -> dict[str, str]:
    from mesoskube.cluster.realnodes import host_ip

    common = {
        "spark.cores.max": str(cores),
        "spark.kubernetes.container.image": IMAGE,
        "spark.kubernetes.container.image.pullPolicy": "Never",
        "spark.executor.memory": "512m",
        "spark.mesos.executor.memoryOverhead": "256",
        "spark.mesos.constraints": f"{REAL_LABEL}:true",
        "spark.driver.host": host_ip(),
        "spark.ui.enabled": "false",
        "spark.shuffle.readHostLocalDisk": "false",
    }
    if mode == "coarse":
        return {
            **common,
            "spark.mesos.coarse": "true",
            "spark.executor.cores": str(coarse_cores),
            "spark.kubernetes.executor.request.cores": f"{cpu_per_core * coarse_cores:g}",
        }
    return {**common, "spark.kubernetes.executor.request.cores": f"{cpu_per_core:g}"}


class Poller(threading.Thread):
    """The application's executor Tasks and pods every `every` seconds (wall clock)."""

    def __init__(self, kube: Kube, namespace: str, every: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.kube, self.namespace, self.every = kube, namespace, every
        self.samples: list[tuple[float, int, float]] = []  # (t, executor Tasks held, cpus held)
        self.pods: dict[str, dict[str, Any]] = {}  # executor pod -> first times seen
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.every):
            with contextlib.suppress(ApiException, OSError):
                self.poll()

    def poll(self) -> None:
        now = time.time()
        held = [
            t
            for t in self.kube.list("tasks", self.namespace)
            if (t.get("status") or {}).get("state") not in TERMINAL
            and (t["spec"].get("labels") or {}).get("spark-role", "executor") != "driver"
        ]
        cpus = sum(float(t["spec"]["resources"].get("cpus", 0)) for t in held)
        self.samples.append((now, len(held), round(cpus, 3)))
        for pod in self.kube.core.list_namespaced_pod(
            self.namespace, label_selector="spark-role=executor"
        ).items:
            seen = self.pods.setdefault(
                pod.metadata.name, {"created": pod.metadata.creation_timestamp.timestamp()}
            )
            if pod.spec.node_name and "bound" not in seen:
                seen["bound"] = now
                seen["node"] = pod.spec.node_name
            for cs in pod.status.container_statuses or []:
                if cs.state.running and "running" not in seen:
                    seen["running"] = cs.state.running.started_at.timestamp()


def run_mode(
    kube: Kube, kubeconfig: str, namespace: str, mode: str, conf: dict[str, str], plan: str, workdir: Path
) -> dict[str, Any]:
    result = workdir / f"{mode}.json"
    argv = [sys.executable, "-m", "mesoskube.cli", "spark", "submit", "--kubeconfig", kubeconfig,
            "--namespace", namespace, "--name", f"modes-{mode}"]  # fmt: skip
    if mode == "fine-equivalent":
        argv.append("--fine-equivalent")
    for k, v in conf.items():
        argv += ["--conf", f"{k}={v}"]
    argv += [str(APP), str(result), plan]
    poller = Poller(kube, namespace)
    submitted = time.time()
    env = {**os.environ, "KUBECONFIG": kubeconfig, "MODES_SUBMITTED_AT": str(submitted)}
    poller.start()
    log(f"{mode}: submitting ({plan})")
    with (workdir / f"{mode}.log").open("w") as out:
        code = subprocess.call(argv, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=900)
    # Until the executors are gone (a released executor's Task ends a moment after its pod).
    deadline = time.time() + 60
    while time.time() < deadline and poller.samples and poller.samples[-1][1]:
        time.sleep(0.5)
    poller.stopping.set()
    poller.join()
    if code != 0 or not result.exists():
        tail = (workdir / f"{mode}.log").read_text()[-3000:]
        raise RuntimeError(f"{mode}: submit exited {code}:\n{tail}")
    app = json.loads(result.read_text())
    executor_cores = int(conf.get("spark.executor.cores", "1"))
    return measure(mode, app, poller.samples, poller.pods, executor_cores, submitted)


def measure(
    mode: str,
    app: dict[str, Any],
    samples: list[tuple[float, int, float]],
    pods: dict[str, dict[str, Any]],
    executor_cores: int,
    submitted: float,
) -> dict[str, Any]:
    """Pure: the app's task intervals and the polled executor Tasks and pods -> the figures."""
    intervals = [(iv[1], iv[2], iv[3]) for job in app["jobs"] for iv in job["intervals"]]
    end = max(e for _, _, e in intervals)
    # Busy: +1 core at each task start, -1 at its end; held: the polled executor Tasks.
    held = CoreTimeline()
    for t, n, _ in samples:
        held.record(t, n * executor_cores, 0)
    events = sorted([(s, 1) for _, s, _ in intervals] + [(e, -1) for _, _, e in intervals])
    busy = CoreTimeline()
    level = 0
    for t, d in events:
        level += d
        busy.record(t, level, 0)
    held_s, _, _ = held.integrate(submitted, end)
    busy_s, _, _ = busy.integrate(submitted, end)
    span = end - submitted
    gaps = [(a["end"], b["start"]) for a, b in zip(app["jobs"], app["jobs"][1:], strict=False)]
    gap_held = sum(held.integrate(a, b)[0] for a, b in gaps)
    gap_len = sum(b - a for a, b in gaps)
    first_task: dict[str, float] = {}
    for pod, start, _ in intervals:
        first_task[pod] = min(start, first_task.get(pod, start))
    lat: dict[str, list[float]] = {"bound": [], "running": [], "first_task": []}
    for name, seen in pods.items():
        for key in ("bound", "running"):
            if key in seen:
                lat[key].append(max(0.0, seen[key] - seen["created"]))
        if name in first_task:
            lat["first_task"].append(max(0.0, first_task[name] - seen["created"]))

    def stats(xs: list[float]) -> dict[str, float | None]:
        r = lambda x: None if x is None else round(x, 2)  # noqa: E731
        return {"n": len(xs), "p50": r(percentile(xs, 50)), "max": r(max(xs) if xs else None)}

    step = 0.5
    n = int(span / step) + 1
    timeline = [
        (round(i * step, 2), held.value_at(submitted + i * step)[0], busy.value_at(submitted + i * step)[0])
        for i in range(n + 1)
    ]
    return {
        "mode": mode,
        "app_id": app["app_id"],
        "makespan_s": round(span, 2),
        "driver_start_s": round(app["context"] - submitted, 2),
        "tasks": len(intervals),
        "executors_launched": len(pods),
        "executor_start_latency_s": {k: stats(v) for k, v in lat.items()},
        "mean_cores_held": round(held_s / span, 3),
        "peak_cores_held": held.peak_held(),
        "mean_cores_busy": round(busy_s / span, 3),
        "mean_idle_cores_held": round(max(0.0, held_s - busy_s) / span, 3),
        "utilisation": round(busy_s / held_s, 4) if held_s else None,
        "cores_held_between_jobs_mean": round(gap_held / gap_len, 3) if gap_len else None,
        "between_jobs_s": round(gap_len, 2),
        "peak_cpus_requested": max((c for _, _, c in samples), default=0.0),
        "executor_pods": pods,
        "timeline": timeline,
    }


def plot(runs: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    colours = {"coarse": "tab:blue", "fine-equivalent": "tab:orange"}
    for mode, r in runs.items():
        ts = [p[0] for p in r["timeline"]]
        ax.step(
            ts, [p[1] for p in r["timeline"]], where="post", color=colours[mode], lw=2, label=f"{mode}: held"
        )
        ax.step(ts, [p[2] for p in r["timeline"]], where="post", color=colours[mode], lw=1, ls="--",
                label=f"{mode}: busy")  # fmt: skip
    ax.set_xlabel("seconds since submit")
    ax.set_ylabel("Spark cores (executor slots)")
    ax.set_title("Real Spark 4 through offers: coarse vs the fine-grained equivalent (dynamic allocation)")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_table(runs: dict[str, dict[str, Any]]) -> None:
    def lat(r: dict, k: str) -> str:
        s = r["executor_start_latency_s"][k]
        return "-" if s["p50"] is None else f"{s['p50']:.1f} / {s['max']:.1f}"

    rows = [
        ("makespan (s)", lambda r: f"{r['makespan_s']:.1f}"),
        ("executors launched", lambda r: str(r["executors_launched"])),
        ("executor created -> bound p50/max (s)", lambda r: lat(r, "bound")),
        ("executor created -> running p50/max (s)", lambda r: lat(r, "running")),
        ("executor created -> first task p50/max (s)", lambda r: lat(r, "first_task")),
        ("mean cores held", lambda r: f"{r['mean_cores_held']:.2f}"),
        ("mean idle cores held", lambda r: f"{r['mean_idle_cores_held']:.2f}"),
        (
            "utilisation of held cores",
            lambda r: "-" if r["utilisation"] is None else f"{r['utilisation']:.1%}",
        ),
        ("cores held between jobs (mean)", lambda r: str(r["cores_held_between_jobs_mean"])),
    ]
    w = max(len(n) for n, _ in rows)
    print(f"\n  {'':<{w}}  " + "  ".join(f"{m:>16}" for m in runs))
    for name, f in rows:
        print(f"  {name:<{w}}  " + "  ".join(f"{f(r):>16}" for r in runs.values()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.compare_modes_real", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--cluster", default="compare-modes", help="local control plane to use (started with 2 real nodes)"
    )
    p.add_argument("--plan", default=DEFAULT_PLAN, help="jobs: TASKSxSECONDS,GAP;... (default %(default)s)")
    p.add_argument("--cores", type=int, default=4, help="spark.cores.max of both modes")
    p.add_argument("--coarse-cores", type=int, default=2, help="coarse mode's spark.executor.cores")
    p.add_argument(
        "--cpu-per-core", type=float, default=0.25, help="cpus each executor pod requests per Spark core"
    )
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--keep-cluster", action="store_true")
    args = p.parse_args(argv)

    from mesoskube.cluster import images, kubelets
    from mesoskube.master.runner import Master
    from mesoskube.settings import Settings

    cluster = LocalCluster(args.cluster)
    log(f"starting the local control plane ({args.cluster}) with 2 real nodes")
    fresh = cluster.up(real_nodes=2)
    kubeconfig = str(cluster.kubeconfig)
    kube = Kube.connect(kubeconfig)
    wait_nodes_ready(kube, 2, timeout=120, selector=f"{REAL_LABEL}=true")
    t0 = time.monotonic()
    kubelets.ensure_images(cluster, [images.build_spark()])
    log(f"spark image on the real nodes in {time.monotonic() - t0:.1f}s")
    install_crds(kube)
    run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"compare-modes-real-{run_id}"
    workdir.mkdir(parents=True)
    runs: dict[str, dict[str, Any]] = {}
    confs: dict[str, dict[str, str]] = {}
    namespaces = []
    try:
        for mode in ("coarse", "fine-equivalent"):
            ns = f"cmp-real-{run_id}-{'fine' if mode != 'coarse' else 'coarse'}"
            namespaces.append(ns)
            kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
            settings = Settings(namespace=ns, agentSelector=f"{REAL_LABEL}=true", metricsPort=0, healthPort=0,
                                httpPort=0, allocationInterval=0.5, podsFramework=True)  # fmt: skip
            master = Master(Kube.connect(kubeconfig), settings)
            master.start_in_thread()
            try:
                confs[mode] = conf_for(mode, args.cores, args.coarse_cores, args.cpu_per_core)
                runs[mode] = run_mode(kube, kubeconfig, ns, mode, confs[mode], args.plan, workdir)
                log(f"{mode}: makespan {runs[mode]['makespan_s']}s")
            finally:
                if master.pods is not None:
                    master.pods.stop()
                master.stop()
        emulated = RESULTS / "compare-modes.json"
        result = {
            "benchmark": "compare-modes-real",
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "real": "real Spark 4 (pyspark 4.3.0), driver on this machine, executors in pods on 2 real "
            "kubelet nodes that share this machine; task work is time.sleep",
            "machine": machine_info(),
            "versions": package_versions(),
            "plan": args.plan,
            "conf": confs,
            "runs": runs,
            "emulated_run": str(emulated.relative_to(RESULTS.parent.parent)) if emulated.exists() else None,
        }
        (out / "compare-modes-real.json").write_text(json.dumps(result, indent=2) + "\n")
        plot(runs, out / "compare-modes-real.png")
        print_table(runs)
        print(f"\n  wrote {out / 'compare-modes-real.json'} and {out / 'compare-modes-real.png'}")
        return 0
    finally:
        for ns in namespaces:
            with contextlib.suppress(ApiException):
                kube.core.delete_namespace(ns)
        if fresh and not args.keep_cluster:
            log("stopping the local control plane")
            cluster.down()


if __name__ == "__main__":
    sys.exit(main())
