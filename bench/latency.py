"""Steady-load latency, accept -> Running, with where the time goes (issue 14).

    python -m bench.scale --steady-only --sizes 1000 [--rate 6.45] [--duration 60] [--label after]
        [--code /tmp/before/operator] [--master-args "..."] [--with-plain-pods]

On the running cluster BENCH_CLUSTER (started, with kube-scheduler, and grown to the size if it is
not running): tasks arrive at a fixed rate; every 0.25 s the framework accepts what arrived on one
outstanding offer (refuseSeconds 0). Per task, wall-clock stamps (comparable across processes on
this machine): the accept PATCH sent and answered (bench), the master's watch delivering the
answer, its processing starting, the Task created, the pod create sent and answered (the master's
MESOSKUBE_TRACE file, master/trace.py), and the pod first seen and first seen Running by the
bench's own watch. The same rate of plain pods then goes through kube-scheduler (create -> bound
-> Running) and, bound by the bench itself (spec.nodeName set, as the master's pods are), straight
to kwok: kwok's own share of the Running stage, measured the same way.
Results: bench/results/latency.json (runs appended by label) and bench/results/latency.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from bench.cpu import process_cpu_s
from bench.run import (
    RESULTS,
    TOLERATION,
    delete_namespace,
    ensure_namespace,
    free_port,
    log,
    pct,
    rss_mb,
    scrape,
    writes_by_kind,
)
from mesoskube.kube import Kube
from mesoskube.master import LABEL_FRAMEWORK

OUT = RESULTS / "latency.json"
CADENCE = 0.25


class RawWatch:
    """Watch a list call as raw JSON (no model building: the bench's own CPU stays small), and hand
    every event to `on(type, object, wall_time)` stamped as it is read."""

    def __init__(self, list_fn, *args, on, **kw) -> None:
        self.list_fn, self.args, self.kw, self.on = list_fn, args, kw, on
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        rv = None
        while not self.stop.is_set():
            kw = dict(self.kw, watch=True, timeout_seconds=20, _preload_content=False)
            if rv:
                kw["resource_version"] = rv
            try:
                resp = self.list_fn(*self.args, **kw)
                for line in iter_resp_lines(resp):
                    now = time.time()
                    ev = json.loads(line)
                    obj = ev["object"]
                    if ev["type"] == "ERROR":
                        rv = None
                        break
                    rv = obj["metadata"].get("resourceVersion") or rv
                    self.on(ev["type"], obj, now)
                    if self.stop.is_set():
                        break
            except Exception:  # a dropped watch: resume
                time.sleep(0.2)

    def close(self) -> None:
        self.stop.set()


class PodStamps:
    """Per pod name: first seen, first seen bound (spec.nodeName), first seen Running."""

    def __init__(self, kube: Kube, ns: str, selector: str | None = None) -> None:
        self.seen: dict[str, float] = {}
        self.bound: dict[str, float] = {}
        self.running: dict[str, float] = {}
        kw = {"label_selector": selector} if selector else {}
        self.w = RawWatch(kube.core.list_namespaced_pod, ns, on=self._on, **kw)

    def _on(self, _type: str, pod: dict, now: float) -> None:
        name = pod["metadata"]["name"]
        self.seen.setdefault(name, now)
        if pod["spec"].get("nodeName"):
            self.bound.setdefault(name, now)
        if (pod.get("status") or {}).get("phase") == "Running":
            self.running.setdefault(name, now)

    def wait(self, names, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(n in self.running for n in names):
                return True
            time.sleep(0.1)
        return False

    def close(self) -> None:
        self.w.close()


def wait_namespace_gone(kube: Kube, ns: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = kube.core.read_namespace(ns)
        except ApiException:
            return
        if got.status.phase != "Terminating":
            return
        time.sleep(1)


def read_trace(path: Path) -> dict[str, dict[str, float]]:
    """The master's trace: stage -> key -> first time."""
    out: dict[str, dict[str, float]] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3:
            out.setdefault(parts[1], {}).setdefault(parts[2], float(parts[0]))
    return out


def _steps(trace: dict[str, dict[str, float]]) -> dict:
    """The engine's steps during the run (the trace's "step" lines: key = the step's seconds)."""
    d = [float(k.split("@")[0]) for k in trace.get("step", {})]
    return {"count": len(d), "seconds": summary(d), "total_s": sum(d)}


def summary(xs: list[float]) -> dict:
    return {
        "n": len(xs),
        "p50": pct(xs, 50),
        "p90": pct(xs, 90),
        "p99": pct(xs, 99),
        "max": max(xs) if xs else float("nan"),
    }


# The stages of one task, in order: (name, from stamp, to stamp).
STAGES = [
    ("accept PATCH (bench)", "accept_sent", "accept_returned"),
    ("master watch delivers the answer", "accept_returned", "answer_seen"),
    ("answer waits for the engine", "answer_seen", "answer_start"),
    ("Task create(s) of the accept", "answer_start", "task_created"),
    ("Task created -> pod create sent", "task_created", "pod_sent"),
    ("pod create request", "pod_sent", "pod_created"),
    ("pod created -> bench sees the pod", "pod_created", "pod_seen"),
    ("bench sees the pod -> sees it Running (kwok)", "pod_seen", "running"),
]


def master_steady(
    kubeconfig: str,
    kube: Kube,
    qps: float,
    size: int,
    rate: float,
    duration: float,
    label: str,
    extra_args: tuple[str, ...] = (),
    code: str | None = None,
    profile: bool = False,
) -> dict:
    ns = f"bench-steady-{size}"
    wait_namespace_gone(kube, ns)  # the last run's, if it is still being deleted
    ensure_namespace(kube, ns)
    port = free_port()
    trace_path = RESULTS / f"trace-steady-{size}-{label}.txt"
    trace_path.unlink(missing_ok=True)
    log_file = open(RESULTS / f"master-steady-{size}-{label}.log", "w")  # noqa: SIM115
    master = subprocess.Popen(
        [
            sys.executable, "-m", "mesoskube.cli", "master", "run",
            "--kubeconfig", kubeconfig,
            "--kube-api-qps", str(qps), "--kube-api-burst", str(int(qps * 2)),
            "--metrics-port", str(port), "--health-port", "0", "--http-port", "0",
            "--agent-selector", "type=kwok", "--pods-framework", "false",
            "--log-level", "WARNING", *extra_args,
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "MESOSKUBE_TRACE": str(trace_path), **({"PYTHONPATH": code} if code else {})},
    )  # fmt: skip
    fwk = Kube.connect(kubeconfig, qps=qps, burst=int(qps * 2))
    pods = tasks_w = offers_w = None
    try:
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(OSError):
                if scrape(port).get("mesoskube_agents", 0) >= size:
                    break
            if time.monotonic() > deadline or master.poll() is not None:
                raise RuntimeError("master did not start")
            time.sleep(0.3)
        before = scrape(port)
        pods = PodStamps(kube, ns, "mesoskube.io/task")
        task_seen: dict[str, float] = {}
        tasks_w = RawWatch(
            kube.custom.list_namespaced_custom_object, "mesoskube.io", "v1alpha1", ns, "tasks",
            on=lambda _t, o, now: task_seen.setdefault(o["metadata"]["name"], now),
        )  # fmt: skip
        offers: dict[str, float] = {}  # outstanding offer name -> cpus
        offer_gone: dict[str, float] = {}
        lock = threading.Lock()

        def on_offer(typ: str, o: dict, now: float) -> None:
            name = o["metadata"]["name"]
            phase = (o.get("status") or {}).get("phase", "Outstanding")
            with lock:
                if typ == "DELETED":
                    offer_gone.setdefault(name, now)
                if typ == "DELETED" or o["spec"].get("answer") or phase != "Outstanding":
                    offers.pop(name, None)
                else:
                    offers[name] = float(o["spec"]["resources"].get("cpus", 0))

        offers_w = RawWatch(
            fwk.custom.list_namespaced_custom_object, "mesoskube.io", "v1alpha1", ns, "offers",
            label_selector=f"{LABEL_FRAMEWORK}=steady", on=on_offer,
        )  # fmt: skip
        fwk.create(
            "frameworks",
            ns,
            {
                "apiVersion": "mesoskube.io/v1alpha1",
                "kind": "Framework",
                "metadata": {"name": "steady"},
                "spec": {"roles": ["steady"]},
            },
        )
        while True:  # the first offers
            with lock:
                if offers:
                    break
            time.sleep(0.05)
        stamps: dict[str, dict] = {}  # task -> its stamps
        arrival_wait: list[float] = []
        spy = None
        if profile:  # the master's busy samples during the load (py-spy, raw collapsed stacks)
            spy = subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(master.pid),
                 "--rate", "50", "--format", "raw", "--nonblocking",
                 "--output", str(RESULTS / f"profile-steady-{size}-{label}.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        cpu0 = {"master": process_cpu_s(master.pid)}
        load0 = os.getloadavg()
        t0 = time.time()
        n = 0
        while time.time() - t0 < duration:
            due = int(rate * (time.time() - t0)) - n
            if due > 0:
                with lock:
                    pick = next((k for k, c in offers.items() if c >= due), None) or (
                        max(offers, key=offers.get) if offers else None
                    )
                    cpus = offers.pop(pick, 0) if pick else 0
                k = int(min(due, cpus))
                if k > 0:
                    names = [f"s{n + i:05d}" for i in range(k)]
                    ans = {
                        "type": "Accept",
                        "filters": {"refuseSeconds": 0},
                        "tasks": [{"name": t, "resources": {"cpus": 1, "mem": 1024}} for t in names],
                    }
                    sent = time.time()
                    try:
                        fwk.patch("offers", ns, pick, {"spec": {"answer": ans}})
                    except ApiException:
                        continue
                    returned = time.time()
                    for i, t in enumerate(names):
                        stamps[t] = {"offer": pick, "accept_sent": sent, "accept_returned": returned}
                        arrival_wait.append(sent - (t0 + (n + i + 1) / rate))
                    n += k
            time.sleep(CADENCE)
        pods.wait(list(stamps), timeout=90)
        cpu1 = {"master": process_cpu_s(master.pid)}
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its samples on SIGINT
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.wait(30)
        load1 = os.getloadavg()
        time.sleep(1)  # the trace's last lines
        after = scrape(port)
        trace = read_trace(trace_path)
        for t, s in stamps.items():
            okey, tkey = f"{ns}/{s['offer']}", f"{ns}/{t}"
            for stage, key, field in (
                ("answer-seen", okey, "answer_seen"),
                ("answer-start", okey, "answer_start"),
                ("answer-done", okey, "answer_done"),
                ("task-created", tkey, "task_created"),
                ("pod-sent", tkey, "pod_sent"),
                ("pod-created", tkey, "pod_created"),
            ):
                if key in trace.get(stage, {}):
                    s[field] = trace[stage][key]
            for field, src in (
                ("task_seen", task_seen),
                ("pod_seen", pods.seen),
                ("running", pods.running),
                ("offer_gone_seen", offer_gone),
            ):
                key = s["offer"] if field == "offer_gone_seen" else t
                if key in src:
                    s[field] = src[key]
        lat = [s["running"] - s["accept_sent"] for s in stamps.values() if "running" in s]
        stages = {}
        for name, a, b in STAGES:
            stages[name] = summary([s[b] - s[a] for s in stamps.values() if a in s and b in s])
        result = {
            "label": label,
            "nodes": size,
            "rate_per_s": rate,
            "duration_s": duration,
            "cadence_s": CADENCE,
            "accepted": n,
            "running": len(lat),
            "latency": summary(lat),
            "latency_definition": "accept PATCH sent -> task pod observed Running (bench's watch)",
            "stages": stages,
            "arrival_to_accept": summary(arrival_wait),
            "tasks_per_accept": n / max(1, len({s["offer"] for s in stamps.values()})),
            "client_qps": qps,
            "writes_by_kind_per_task": {
                k: v / max(1, len(lat)) for k, v in writes_by_kind(before, after).items()
            },
            "master_cpu_share_of_one_core": (cpu1["master"] - cpu0["master"]) / max(1e-9, duration),
            "master_rss_mb": rss_mb(master.pid),
            "load_avg": [load0, load1],
            "master_args": list(extra_args),
            "master_code": code or "this worktree",
            "steps": _steps(trace),
        }
        (RESULTS / f"stamps-steady-{size}-{label}.json").write_text(json.dumps(stamps))
        log(
            f"steady [{label}] {rate:.2f}/s at {size} nodes: p50 {result['latency']['p50']:.2f}s "
            f"p99 {result['latency']['p99']:.2f}s (load {load0[0]:.1f})"
        )
        with contextlib.suppress(ApiException):
            fwk.delete("frameworks", ns, "steady")
        deadline = time.monotonic() + 300
        while fwk.list("frameworks", ns) and time.monotonic() < deadline:
            time.sleep(0.2)
        return result
    finally:
        for w in (pods, tasks_w, offers_w):
            if w is not None:
                w.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(master.pid, 15)
        with contextlib.suppress(subprocess.TimeoutExpired):
            master.wait(20)
        log_file.close()
        delete_namespace(kube, ns)


def plain_pods_steady(kube: Kube, size: int, rate: float, duration: float, bind: bool) -> dict:
    """Pods created at `rate`: through kube-scheduler (bind=False: create -> bound -> Running) or
    with spec.nodeName set by the bench (bind=True: straight to kwok, like the master's pods)."""
    ns = f"bench-steady-{'direct' if bind else 'ks'}-{size}"
    wait_namespace_gone(kube, ns)
    ensure_namespace(kube, ns)
    pods = PodStamps(kube, ns)
    created: dict[str, tuple[float, float]] = {}
    t0 = time.time()
    n = 0
    load0 = os.getloadavg()
    try:
        while time.time() - t0 < duration:
            due = int(rate * (time.time() - t0)) - n
            for _ in range(max(0, due)):
                name = f"p{n:05d}"
                spec = {
                    "tolerations": [TOLERATION],
                    "nodeSelector": {"type": "kwok"},
                    "containers": [
                        {
                            "name": "c",
                            "image": "registry.k8s.io/pause:3.10",
                            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
                        }
                    ],
                }
                if bind:
                    spec["nodeName"] = f"bench-node-{n % size:05d}"
                sent = time.time()
                kube.core.create_namespaced_pod(
                    ns, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec},
                    _preload_content=False,
                )  # fmt: skip
                created[name] = (sent, time.time())
                n += 1
            time.sleep(CADENCE)
        pods.wait(list(created), timeout=90)
        load1 = os.getloadavg()

        def stage(a, b):
            return summary([b[k] - a(k) for k in created if k in b and (a(k) is not None)])

        result = {
            "mode": "bound by the bench (nodeName set)" if bind else "kube-scheduler",
            "nodes": size,
            "rate_per_s": rate,
            "pods": n,
            "running": len(pods.running),
            "create_sent_to_running": stage(lambda k: created[k][0], pods.running),
            "create_request": summary([b - a for a, b in created.values()]),
            "created_to_bound_seen": stage(lambda k: created[k][1], pods.bound),
            "bound_seen_to_running_seen": stage(lambda k: pods.bound.get(k), pods.running),
            "load_avg": [load0, load1],
        }
        total = result["create_sent_to_running"]
        log(
            f"plain pods [{result['mode']}] {rate:.2f}/s: create -> Running p50 "
            f"{total['p50']:.2f}s p99 {total['p99']:.2f}s"
        )
        return result
    finally:
        pods.close()
        delete_namespace(kube, ns)


def main(argv: list[str]) -> int:
    from bench.scale import grow, restart_scheduler
    from mesoskube.api.install import install_crds
    from mesoskube.cluster.local import LocalCluster

    def arg(flag: str, default: str) -> str:
        return argv[argv.index(flag) + 1] if flag in argv else default

    size = int(arg("--sizes", "1000").split(",")[0])
    duration = float(arg("--duration", "60"))
    label = arg("--label", "run")
    qps = float(arg("--qps", "50"))
    extra = tuple(arg("--master-args", "").split())
    code = arg("--code", "") or None  # an `operator/` tree of other code (a before), on PYTHONPATH
    rate = float(arg("--rate", "0")) or _half_capacity(size)
    name = os.environ.get("BENCH_CLUSTER", "bench-scale")
    cluster = LocalCluster(name)
    if not cluster.is_running():
        cluster.up(with_scheduler=True, scheduler_qps=qps)
        kube = Kube.connect(str(cluster.kubeconfig))
        install_crds(kube)
        grow(kube, 0, size)
    kube = Kube.connect(str(cluster.kubeconfig))
    run: dict = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "label": label}
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        head = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
        run["commit"] = f"--code {code}" if code else head
    run["mesoskube"] = master_steady(
        str(cluster.kubeconfig), kube, qps, size, rate, duration, label, extra, code, "--profile" in argv
    )
    # Read again now: another run may have ended (and written) while this one ran.
    prev = json.loads(OUT.read_text()) if OUT.exists() else {"runs": []}
    prev["runs"].append(run)
    OUT.write_text(json.dumps(prev, indent=2))
    if "--with-plain-pods" in argv:
        restart_scheduler(cluster, qps)
        run["kube_scheduler"] = plain_pods_steady(kube, size, rate, duration, bind=False)
        run["direct_to_kwok"] = plain_pods_steady(kube, size, rate, duration, bind=True)
        OUT.write_text(json.dumps(prev, indent=2))
    write_report(prev)
    return 0


def _half_capacity(size: int) -> float:
    """Half the tasks/s measured at client QPS 50 by the last `make bench-scale` (scale.json)."""
    with contextlib.suppress(OSError, KeyError, ValueError, StopIteration):
        data = json.loads((RESULTS / "scale.json").read_text())
        entry = next(e for e in data["sizes"] if e["nodes"] == size)
        return entry["qps50"]["mesoskube"]["throughput_pods_per_s"] / 2
    return 6.45


def write_report(data: dict) -> None:
    from bench.latency_report import write_latency_report

    write_latency_report(data)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
