"""`make bench-scale`: issue 14's figures, in one run on one kwok cluster.

    BENCH_SCALE_SIZES=1000,5000 BENCH_SCALE_MAX=10000 BENCH_CLUSTER=bench-scale python -m bench.scale

1. Pure (no API server): the allocation cycle (engine snapshot + allocator) at 5,000 and 50,000
   synthetic agents x 50 frameworks, and an event-triggered cycle (one agent freed) at 5,000.
   `python -m bench.scale --cycle-only` runs this part alone (no cluster).
2. For each size in BENCH_SCALE_SIZES, on the same cluster: kube-scheduler (the release's binary,
   restarted with the client QPS) against mesoskube (`bench.run`'s burst: one framework accepting
   2,000 one-cpu tasks as offers come), every client at QPS 50, then every client at QPS 10,000
   ("unthrottled": the API server on these cores is the shared limit). Per run: throughput, the
   per-pod latency distribution (a 2,000-task burst against the pod start-up SLO, p99 <= 5 s),
   writes and API requests per task by kind, CPU seconds per 1,000 pods of kube-scheduler and of the
   master, the time the master's requests waited for its rate limiter, master RSS. The master's
   CPU is sampled with py-spy in the unthrottled run at 1,000 nodes (else the first size).
3. At the same size: a steady load, tasks arriving at half the measured QPS-50 capacity, accept
   -> Running p50/p99.
4. Then nodes are added up to each size in BENCH_SCALE_MAX, a QPS-50 burst per size, until nodes
   stop becoming Ready.
Results: bench/results/scale.json and bench/results/SCALE.md (before/after against REPORT.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from bench.cpu import process_cpu_s, processor
from bench.run import (
    BY_NAME,
    RESULTS,
    SHAPE,
    STAMPS,
    RunningWatcher,
    bench_kube_scheduler,
    bench_mesoskube,
    delete_namespace,
    ensure_namespace,
    free_port,
    log,
    offer_events,
    pct,
    rss_mb,
    scrape,
    write_stamps,
    writes_by_kind,
)
from bench.synthetic import time_cycle, time_event_cycle
from mesoskube.api.install import install_crds
from mesoskube.api.models import TaskInfo
from mesoskube.cluster.binaries import versions
from mesoskube.cluster.local import LocalCluster
from mesoskube.cluster.nodes import add_nodes, wait_nodes_ready
from mesoskube.cluster.nodeshapes import parse_shape
from mesoskube.kube import Kube
from mesoskube.master.builders import task_manifest

UNTHROTTLED = 10000.0
BORING = (" threading.py", " thread.py", " base_events.py", " runners.py")
PODS = int(os.environ.get("BENCH_PODS", "2000"))
BEFORE_CODE = os.environ.get("BENCH_BEFORE_CODE")  # an `operator/` tree of the code before the change


def restart_scheduler(cluster: LocalCluster, qps: float) -> int:
    cluster.stop_component("kube-scheduler")
    state = cluster.state()
    cluster._start_scheduler(state, qps)
    time.sleep(2)  # its informers sync before the first pod (a cold start is not what we time)
    return cluster.state()["pids"]["kube-scheduler"]


def profile_summary(raw: Path, top: int = 15) -> dict:
    """py-spy's raw (collapsed) stacks -> the hottest frames by own samples and by inclusive samples."""
    own: Counter = Counter()
    incl: Counter = Counter()
    total = 0
    if not raw.exists():
        return {"samples": 0}
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        k = int(n)
        total += k
        frames = [
            f.split(" (")[0] + " " + f.split("(")[-1].split(":")[0].rsplit("/", 1)[-1].rstrip(")")
            for f in stack.split(";")[1:]
        ]  # first frame is the thread
        if frames:
            own[frames[-1]] += k
        for f in set(frames):
            if not f.endswith(BORING):  # every thread's and the event loop's own frames
                incl[f] += k
    return {
        "samples": total,
        "own": [(f, n / total) for f, n in own.most_common(top)] if total else [],
        "inclusive": [(f, n / total) for f, n in incl.most_common(top)] if total else [],
    }


def steady_load(
    kubeconfig: str, kube: Kube, qps: float, size: int, rate: float, duration: float, warmup: float = 5.0
) -> dict:
    """Tasks arrive at `rate` per second for `duration` s; every 0.25 s the framework accepts the
    tasks that arrived on one outstanding offer (refuseSeconds 0: the rest is offered again).
    Per task: accept sent -> pod Running. The latency percentiles leave out the tasks accepted in
    the first `warmup` seconds: each run starts a fresh master, whose first launches wait for its
    start-up work (kube-scheduler, the peer, has been running); `latency_all_*` keeps them."""
    ns = f"bench-steady-{size}"
    ensure_namespace(kube, ns)
    port = free_port()
    STAMPS.mkdir(parents=True, exist_ok=True)
    trace_file = STAMPS / f"trace-steady-{size}.log"  # the master's stamps (MESOSKUBE_TRACE)
    trace_file.unlink(missing_ok=True)
    log_file = open(RESULTS / f"master-steady-{size}.log", "w")  # noqa: SIM115
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
            str(qps),
            "--kube-api-burst",
            str(int(qps * 2)),
            "--metrics-port",
            str(port),
            "--health-port",
            "0",
            "--http-port",
            "0",
            "--agent-selector",
            "type=kwok",
            "--pods-framework",
            "false",
            "--log-level",
            "WARNING",
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "MESOSKUBE_TRACE": str(trace_file)},
    )
    fwk = Kube.connect(kubeconfig, qps=qps, burst=int(qps * 2))
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
        watcher = RunningWatcher(kube, ns, label_selector="mesoskube.io/task")
        fw_uid = fwk.create(
            "frameworks",
            ns,
            {
                "apiVersion": "mesoskube.io/v1alpha1",
                "kind": "Framework",
                "metadata": {"name": "steady"},
                "spec": {"roles": ["steady"]},
            },
        )["metadata"]["uid"]
        offers: dict[str, float] = {}  # outstanding offer name -> cpus
        agents: dict[str, tuple[str, str]] = {}  # offer name -> (agent, role): accepts by name
        lock = threading.Lock()
        stop = threading.Event()

        def watch_offers() -> None:
            w = watch.Watch()
            while not stop.is_set():
                with contextlib.suppress(Exception):
                    for ev in offer_events(w, fwk, ns, "steady"):
                        o = ev["object"]
                        name = o["metadata"]["name"]
                        phase = (o.get("status") or {}).get("phase", "Outstanding")
                        with lock:
                            if ev["type"] == "DELETED" or o["spec"].get("answer") or phase != "Outstanding":
                                offers.pop(name, None)
                            else:
                                offers[name] = float(o["spec"]["resources"].get("cpus", 0))
                                agents[name] = (o["spec"]["agent"], o["spec"].get("role") or "steady")
                        if stop.is_set():
                            break

        threading.Thread(target=watch_offers, daemon=True).start()
        while True:  # the first offers
            with lock:
                if offers:
                    break
            time.sleep(0.05)
        accepted_at: dict[str, float] = {}
        answer_sent: dict[str, tuple[float, float, str]] = {}  # task -> (PATCH sent, answered, offer)
        waits: list[float] = []  # arrival -> accept sent (the framework's own queue)
        creates = ThreadPoolExecutor(8)
        t0 = time.monotonic()
        arrived = n = 0
        while time.monotonic() - t0 < duration:
            now = time.monotonic()
            arrived = int(rate * (now - t0))
            due = arrived - n
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
                    sent = time.monotonic()
                    if BY_NAME:  # the framework creates the Tasks, then answers with their names
                        agent, role = agents.get(pick, ("", "steady"))
                        manifests = [
                            task_manifest(TaskInfo.model_validate(t), "steady", fw_uid, role, agent, pick)
                            for t in ans.pop("tasks")
                        ]
                        # Side by side, as the SDK's driver creates an accept's Tasks.
                        with contextlib.suppress(ApiException):
                            list(creates.map(lambda m: fwk.create("tasks", ns, m), manifests))
                        ans["taskNames"] = names
                    patch_sent = time.monotonic()
                    try:
                        fwk.patch("offers", ns, pick, {"spec": {"answer": ans}})
                    except ApiException:
                        continue
                    answered = time.monotonic()
                    for i, t in enumerate(names):
                        accepted_at[t] = sent
                        answer_sent[t] = (patch_sent, answered, pick)
                        waits.append(sent - (t0 + (n + i + 1) / rate))
                    n += k
            time.sleep(0.25)
        watcher.wait(n, timeout=60)
        stop.set()
        creates.shutdown(wait=False)
        watcher.close()
        after = scrape(port)
        lat_all = [watcher.running[t] - accepted_at[t] for t in watcher.running if t in accepted_at]
        lat = [
            watcher.running[t] - accepted_at[t]
            for t in watcher.running
            if t in accepted_at and accepted_at[t] - t0 >= warmup
        ]
        from bench.stages import stage_rows, tail_rows  # here: bench.stages imports bench.run

        wall = time.time() - time.monotonic()  # the stamps' clock
        stamps_file = write_stamps(
            STAMPS / f"stamps-steady-{size}.json", trace_file, ns, accepted_at, answer_sent, watcher
        )
        result = {
            "stages": stage_rows(stamps_file),
            # Where the slowest 1% waited (their median per stage): what p99 is made of.
            "tail_stages": tail_rows(stamps_file, 99, since=t0 + warmup + wall),
            "warmup_s": warmup,
            "latency_all_p50_s": pct(lat_all, 50),
            "latency_all_p99_s": pct(lat_all, 99),
            "accept": "by name" if BY_NAME else "inline tasks",
            "rate_per_s": rate,
            "duration_s": duration,
            "accepted": n,
            "running": len(lat_all),
            "measured": len(lat),  # accepted after the warm-up
            "latency_p50_s": pct(lat, 50),
            "latency_p90_s": pct(lat, 90),
            "latency_p99_s": pct(lat, 99),
            "latency_max_s": max(lat) if lat else float("nan"),
            "framework_queue_p50_s": pct(waits, 50),
            "latency_definition": "accept start (its first Task create, or the accept PATCH) -> task pod "
            "observed Running, tasks accepted after the warm-up",
            "client_qps": qps,
            "writes_by_kind_per_task": {
                k: v / max(1, len(lat)) for k, v in writes_by_kind(before, after).items()
            },
            "master_rss_mb": rss_mb(master.pid),
        }
        log(
            f"steady {rate:.1f}/s at {size} nodes: p50 {result['latency_p50_s']:.2f}s "
            f"p99 {result['latency_p99_s']:.2f}s"
        )
        with contextlib.suppress(ApiException):
            fwk.delete("frameworks", ns, "steady")
        deadline = time.monotonic() + 300
        while fwk.list("frameworks", ns) and time.monotonic() < deadline:
            time.sleep(0.2)
        return result
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(master.pid, 15)
        with contextlib.suppress(subprocess.TimeoutExpired):
            master.wait(20)
        log_file.close()
        delete_namespace(kube, ns)


def grow(kube: Kube, have: int, n: int) -> float:
    t0 = time.monotonic()
    add_nodes(kube, n - have, [parse_shape(SHAPE)], start=have, prefix="bench-node")
    wait_nodes_ready(kube, n, timeout=max(180, n / 10))
    return time.monotonic() - t0


def run_pair(
    cluster: LocalCluster,
    kube: Kube,
    qps: float,
    n: int,
    profile: Path | None,
    tag: str,
    before: bool = False,
) -> dict:
    pid = restart_scheduler(cluster, qps)
    api_pid = cluster.state()["pids"]["kube-apiserver"]
    a0 = process_cpu_s(api_pid)
    processes = cluster.state()["pids"]
    ks = bench_kube_scheduler(
        kube, str(cluster.kubeconfig), qps, PODS, n, scheduler_pid=pid, processes=processes
    )
    a1 = process_cpu_s(api_pid)
    ks["apiserver_cpu_s_per_1000"] = (a1 - a0) / max(1, ks["placed"]) * 1000
    mk = bench_mesoskube(
        kube, str(cluster.kubeconfig), qps, PODS, n, profile_to=profile, tag=tag, processes=processes
    )
    a2 = process_cpu_s(api_pid)
    mk["apiserver_cpu_s_incl_teardown_per_1000"] = (a2 - a1) / max(1, mk["placed"]) * 1000
    if profile is not None:
        mk["profile"] = profile_summary(profile)
    out = {
        "client_qps": qps,
        "kube_scheduler": ks,
        "mesoskube": mk,
        "ratio": mk["throughput_pods_per_s"] / ks["throughput_pods_per_s"],
        "load_avg": os.getloadavg(),
    }
    if before and BEFORE_CODE:
        # The same burst through an older master (its operator/ tree), right after on the same
        # cluster against the same kube-scheduler run: a before/after pair under the same load.
        old = bench_mesoskube(
            kube,
            str(cluster.kubeconfig),
            qps,
            PODS,
            n,
            tag=tag + "-before",
            master_env={"PYTHONPATH": BEFORE_CODE},
        )
        out["mesoskube_before"] = old
        out["ratio_before"] = old["throughput_pods_per_s"] / ks["throughput_pods_per_s"]
    return out


def before_after_only(name: str, n: int, qps: float) -> int:
    """`python -m bench.scale --before-after N`: on the running cluster `name` (N nodes), the new
    master's burst and then BENCH_BEFORE_CODE's, back to back; bench/results/scale-before-after.json."""
    cluster = LocalCluster(name)
    started = not cluster.is_running()
    if started:  # a cluster of its own, N nodes, removed at the end
        cluster.up(with_scheduler=False)
    kube = Kube.connect(str(cluster.kubeconfig))
    kc = str(cluster.kubeconfig)
    if started:
        install_crds(kube)
        grow(kube, 0, n)
    load0 = os.getloadavg()
    new = bench_mesoskube(kube, kc, qps, PODS, n, tag="-ba-new")
    old = bench_mesoskube(kube, kc, qps, PODS, n, tag="-ba-old", master_env={"PYTHONPATH": BEFORE_CODE or ""})
    out = {"nodes": n, "client_qps": qps, "after": new, "before": old, "load_avg": [load0, os.getloadavg()]}
    (RESULTS / "scale-before-after.json").write_text(json.dumps(out, indent=2))
    if started and not os.environ.get("BENCH_KEEP_CLUSTER"):
        cluster.down()
    log(f"before {old['throughput_pods_per_s']:.1f} tasks/s, after {new['throughput_pods_per_s']:.1f}")
    return 0


def pure_cycles() -> dict:
    """Part 1: the allocation cycle without an API server (bench/synthetic.py says what each
    figure is), each the median of several cycles."""
    cycle: dict = {"load_avg_start": os.getloadavg()}
    for agents in (5000, 50000):
        t = time_cycle(agents, 50)
        cycle[f"sweep_{agents}x50"] = t
        log(
            f"cycle {agents}x50: snapshot {t['snapshot_s'] * 1000:.0f} ms "
            f"+ allocator {t['allocator_s'] * 1000:.0f} ms ({t['offers']} offers)"
        )
    # The allocator offering every free agent (no offer cap): 50,000 decisions, its hot loop at full.
    t = time_cycle(50000, 50, repeats=3, maxOffersPerFramework=0)
    cycle["sweep_50000x50_nocap"] = t
    log(f"cycle 50000x50, no offer cap: allocator {t['allocator_s'] * 1000:.0f} ms ({t['offers']} offers)")
    t = time_event_cycle(5000, 50)
    cycle["event_5000x50"] = t
    log(f"event-triggered cycle 5000x50: {(t['snapshot_s'] + t['allocator_s']) * 1000:.1f} ms")
    cycle["load_avg_end"] = os.getloadavg()
    return cycle


def cycle_only() -> int:
    """`python -m bench.scale --cycle-only`: part 1 alone, no cluster; its figures replace the
    "cycle" section of bench/results/scale.json (BENCH_CYCLE_KEY names another section, e.g.
    "cycle_before" for the code before a change run with PYTHONPATH) and SCALE.md is rewritten."""
    path = RESULTS / os.environ.get("BENCH_SCALE_OUT", "scale.json")
    data = json.loads(path.read_text())
    key = os.environ.get("BENCH_CYCLE_KEY", "cycle")
    data[key] = pure_cycles()
    data[key]["code"] = os.environ.get("BENCH_CYCLE_CODE", "this tree")
    path.write_text(json.dumps(data, indent=2, default=str))
    from bench.scale_report import write_report

    write_report(data)
    log(f"wrote {path} ({key}) and SCALE.md")
    return 0


def main() -> int:
    if "--steady-only" in sys.argv:  # the steady-load latency alone, with its stages (bench/latency.py)
        from bench.latency import main as latency_main

        return latency_main(sys.argv[1:])
    if "--cycle-only" in sys.argv:
        return cycle_only()
    if "--before-after" in sys.argv:
        n = int(sys.argv[sys.argv.index("--before-after") + 1])
        return before_after_only(os.environ.get("BENCH_CLUSTER", "bench-scale"), n, 50.0)
    sizes = [int(x) for x in os.environ.get("BENCH_SCALE_SIZES", "1000,5000").split(",") if x]
    bigger = [int(x) for x in os.environ.get("BENCH_SCALE_MAX", "10000").split(",") if x]
    name = os.environ.get("BENCH_CLUSTER", "bench-scale")
    out = RESULTS / os.environ.get("BENCH_SCALE_OUT", "scale.json")
    data: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores ({processor()})",
        "versions": versions(),
        "pods": PODS,
        "load_avg_start": os.getloadavg(),
        "cycle": {},
        "sizes": [],
        "larger": [],
    }

    def save() -> None:
        out.write_text(json.dumps(data, indent=2, default=str))

    if not os.environ.get("BENCH_SKIP_PURE"):
        data["cycle"] = pure_cycles()
        save()
    cluster = LocalCluster(name)
    cluster.down()
    cluster.up(with_scheduler=True, scheduler_qps=50)
    kube = Kube.connect(str(cluster.kubeconfig))
    install_crds(kube)
    have = 0
    # The steady load and the profile at 1,000 nodes (issue 14), else at the first size.
    steady_at = 1000 if 1000 in sizes else sizes[0]
    try:
        for n in sizes:
            try:
                ready_s = grow(kube, have, n)
            except TimeoutError as e:
                data["larger"].append({"nodes": n, "stopped": str(e)})
                log(f"stopped at {n}: {e}")
                break
            entry: dict = {"nodes": n, "nodes_ready_s": ready_s}
            have = n
            data["sizes"].append(entry)
            for mode, qps in (("qps50", 50.0), ("unthrottled", UNTHROTTLED)):
                prof = (
                    RESULTS / f"profile-master-{n}-{mode}.txt"
                    if n == steady_at and mode == "unthrottled"
                    else None
                )
                entry[mode] = run_pair(cluster, kube, qps, n, prof, f"-{mode}", before=n == steady_at)
                save()
            if n == steady_at:
                rate = entry["qps50"]["mesoskube"]["throughput_pods_per_s"] / 2
                entry["steady"] = steady_load(str(cluster.kubeconfig), kube, 50.0, n, rate, 60.0)
                save()
        for n in bigger if not data["larger"] else []:
            entry = {"nodes": n}
            data["larger"].append(entry)
            try:
                entry["nodes_ready_s"] = grow(kube, have, n)
            except TimeoutError as e:
                entry["stopped"] = str(e)
                log(f"stopped at {n}: {e}")
                break
            have = n
            entry["qps50"] = run_pair(cluster, kube, 50.0, n, None, "-qps50")
            save()
    finally:
        data["load_avg_end"] = os.getloadavg()
        save()
        if not os.environ.get("BENCH_KEEP_CLUSTER"):
            cluster.down()
    try:
        from bench.scale_report import write_report
    except ImportError:
        return 0
    write_report(data)
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
