"""bench/results/SCALE.md from scale.json (`python -m bench.scale_report` re-renders it), with
before/after tables against the recorded `make bench` run (bench.json, REPORT.md) and, when present,
this benchmark's run before the launch-path change (scale-before.json)."""

from __future__ import annotations

import json
import sys

from bench.cpu import section as cpu_section_lines
from bench.run import RESULTS

LAUNCH_KINDS = ("create tasks", "create pods", "create offers", "delete offers", "deletecollection offers")
STATUS_KINDS = ("patch tasks", "create events", "patch frameworks", "patch offers", "patch mesosroles")


def _f(x, fmt=".2f") -> str:
    return "-" if x is None or x != x else format(x, fmt)


def _split(mk: dict) -> tuple[float, float, float]:
    """(launch client, status client, other) writes per task of a run's mesoskube figures; its
    "offers_client" says where its master sent the Offer writes (bench.run.offers_client; runs
    before 2026-12-07 have none: the launch client)."""
    w = mk.get("writes_by_kind_per_task") or {}
    offers_client = mk.get("offers_client", "launch")
    offers = {k for k in w if k.endswith("offers") and not k.startswith("patch")}
    launch_kinds = set(LAUNCH_KINDS) - (offers if offers_client == "status" else set())
    status_kinds = set(STATUS_KINDS) | (offers if offers_client == "status" else set())
    launch = sum(v for k, v in w.items() if k in launch_kinds)
    status = sum(v for k, v in w.items() if k in status_kinds)
    return launch, status, sum(w.values()) - launch - status


def _load(name: str) -> dict | None:
    p = RESULTS / name
    return json.loads(p.read_text()) if p.exists() else None


def throughput_rows(entries: list[dict]) -> list[str]:
    rows = []
    for e in entries:
        for mode in ("qps50", "unthrottled"):
            r = e.get(mode)
            if not r:
                continue
            ks, mk = r["kube_scheduler"], r["mesoskube"]
            launch, status, other = _split(mk)
            slo = "yes" if mk["latency_p99_s"] <= 5 else "no"
            rows.append(
                f"| {e['nodes']} | {r['client_qps']:g} | {ks['throughput_pods_per_s']:.1f} "
                f"| {mk['throughput_pods_per_s']:.1f} | **{r['ratio']:.2f}** "
                f"| {_f(ks['latency_p50_s'])} / {_f(ks['latency_p99_s'])} "
                f"| {_f(mk['latency_p50_s'])} / {_f(mk['latency_p99_s'])} ({slo}) "
                f"| {launch:.2f} / {status:.2f} / {other:.2f} "
                f"| {_f(mk.get('master_cpu_s_per_1000'), '.1f')} "
                f"| {_f(ks.get('scheduler_cpu_s_per_1000'), '.1f')} "
                f"| {_f(ks.get('apiserver_cpu_s_per_1000'), '.1f')} "
                f"| {_f(mk.get('throttle_wait_s'), '.0f')} | {mk['master_rss_mb']:.0f} "
                f"| {' '.join(f'{x:.1f}' for x in r['load_avg'])} |"
            )
    return rows


THROUGHPUT_HEAD = [
    "| nodes | client QPS | kube-scheduler pods/s | mesoskube tasks/s | ratio | ks p50 / p99 s "
    "| mk p50 / p99 s (p99 <= 5 s?) | master writes/task: launch / status / other client "
    "| master CPU s per 1,000 | kube-scheduler CPU s per 1,000 | apiserver CPU s per 1,000 pods (ks run) "
    "| master rate-limiter wait s | master RSS MB | load avg 1/5/15 min |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]


def same_run_before_after(data: dict) -> list[str]:
    """The pre-change master (BENCH_BEFORE_CODE) right after the new one, same cluster and load."""
    rows = []
    for e in data["sizes"]:
        for mode in ("qps50", "unthrottled"):
            r = e.get(mode) or {}
            old, new = r.get("mesoskube_before"), r.get("mesoskube")
            if not old or not new:
                continue
            lo, ln = _split(old), _split(new)
            rows.append(
                f"| {e['nodes']} | {r['client_qps']:g} | {r['kube_scheduler']['throughput_pods_per_s']:.1f} "
                f"| {old['throughput_pods_per_s']:.1f} | {new['throughput_pods_per_s']:.1f} "
                f"| {r['ratio_before']:.2f} | **{r['ratio']:.2f}** "
                f"| {lo[0] + lo[1]:.2f} | {ln[0]:.2f} + {ln[1]:.2f} "
                f"| {old['master_cpu_s_per_1000']:.1f} | {new['master_cpu_s_per_1000']:.1f} "
                f"| {old['throttle_wait_s']:.0f} | {new['throttle_wait_s']:.0f} "
                f"| {old['latency_p50_s']:.1f} / {old['latency_p99_s']:.1f} "
                f"| {new['latency_p50_s']:.1f} / {new['latency_p99_s']:.1f} |"
            )
    if not rows:
        return []
    return [
        "",
        "## Before / after the launch-path change, in this run",
        "",
        "Before: the master at commit 9d68e64 (one client for everything; the engine's step waiting for"
        " Task status patches; pods answered as V1Pod models), run right after the new one against the"
        " same kube-scheduler baseline.",
        "",
        "| nodes | client QPS | kube-scheduler pods/s | mk tasks/s before | after | ratio before | after "
        "| master writes/task before (one client) | after (launch + status client) "
        "| master CPU s/1,000 before | after | rate-limiter wait s before | after "
        "| mk p50 / p99 s before | after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def separate_before_after() -> list[str]:
    ba = _load("scale-before-after.json")
    if not ba:
        return []
    rows = []
    for label, mk in (("before (commit 9d68e64)", ba["before"]), ("after", ba["after"])):
        launch, status, _ = _split(mk)
        rows.append(
            f"| {label} | {mk['throughput_pods_per_s']:.1f} "
            f"| {mk['latency_p50_s']:.1f} / {mk['latency_p99_s']:.1f} "
            f"| {launch:.2f} / {status:.2f} | {mk['master_cpu_s_per_1000']:.1f} "
            f"| {mk['throttle_wait_s']:.0f} | {mk['master_rss_mb']:.0f} |"
        )
    return [
        "",
        f"## Before / after the launch-path change, back to back ({ba['nodes']} nodes, "
        f"QPS {ba['client_qps']:g})",
        "",
        "`python -m bench.scale --before-after N` on a cluster of its own: the changed master's 2,000-task"
        " burst (status client, plain-JSON pod creates, status patches off the step, which is now off by"
        " default), then the master of commit 9d68e64 (one client for everything, status patches in the"
        " engine's step, pods read back as V1Pod models), same framework, same nodes. Load average "
        f"{' '.join(f'{x:.1f}' for x in ba['load_avg'][0])} at the start, "
        f"{' '.join(f'{x:.1f}' for x in ba['load_avg'][1])} at the end.",
        "",
        "| master | tasks/s | accept -> Running p50 / p99 s | writes/task: launch / status "
        "(before: all on one client) | CPU s per 1,000 | rate-limiter wait s | RSS MB |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]


def before_after(data: dict) -> list[str]:
    lines = separate_before_after() + same_run_before_after(data)
    report = _load("bench.json")  # what REPORT.md shows
    if report:
        old = {s["nodes"]: s for s in report["sizes"]}
        # Compare like with like: REPORT.md's burst with the same kind of accept as this run's.
        by_name = any(
            str((e.get("qps50") or {}).get("mesoskube", {}).get("accept", "")).startswith("by name")
            for e in data["sizes"]
        )
        key = "mesoskube_by_name" if by_name else "mesoskube"
        lines += [
            "",
            "## Before / after against REPORT.md (`make bench`, client QPS 50)",
            "",
            f"Before: REPORT.md's run ({report['date']}, its {'by-name' if by_name else 'inline'} "
            "burst, against its own kube-scheduler run). After: this run, QPS 50.",
            "",
            "| nodes | tasks/s before | after | ratio before | after | writes/task before | after "
            "| mk p50 s before | after | mk p99 s before | after | master RSS MB before | after |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for e in data["sizes"] + data.get("larger", []):
            was, r = old.get(e["nodes"]), e.get("qps50")
            if not was or not r or not was.get(key):
                continue
            wm, wk, mk = was[key], was["kube_scheduler"], r["mesoskube"]
            lines.append(
                f"| {e['nodes']} | {wm['throughput_pods_per_s']:.1f} | {mk['throughput_pods_per_s']:.1f} "
                f"| {wm['throughput_pods_per_s'] / wk['throughput_pods_per_s']:.2f} | {r['ratio']:.2f} "
                f"| {wm['api_writes_per_task']:.2f} | {mk['api_writes_per_task']:.2f} "
                f"| {wm['latency_p50_s']:.1f} | {mk['latency_p50_s']:.1f} "
                f"| {wm['latency_p99_s']:.1f} | {mk['latency_p99_s']:.1f} "
                f"| {wm['master_rss_mb']:.0f} | {mk['master_rss_mb']:.0f} |"
            )
    prev = _load("scale-before.json")
    if prev:
        old = {e["nodes"]: e for e in prev["sizes"]}
        lines += [
            "",
            "## Before / after the launch-path change (this benchmark, both runs this session)",
            "",
            f"Before: `scale-before.json` ({prev['date']}, load average at start "
            f"{' '.join(f'{x:.1f}' for x in prev['load_avg_start'])}), the code before the change. "
            "After: this run.",
            "",
            "| nodes | client QPS | ratio before | after | tasks/s before | after "
            "| launch-client writes/task before | after | master CPU s/1,000 before | after "
            "| rate-limiter wait s before | after | mk p99 s before | after |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for e in data["sizes"]:
            was = old.get(e["nodes"])
            for mode in ("qps50", "unthrottled"):
                if not was or not was.get(mode) or not e.get(mode):
                    continue
                a, b = was[mode], e[mode]
                am, bm = a["mesoskube"], b["mesoskube"]
                la, lb = (
                    _split(a["mesoskube"])[0],
                    _split(b["mesoskube"])[0],
                )
                lines.append(
                    f"| {e['nodes']} | {b['client_qps']:g} | {a['ratio']:.2f} | {b['ratio']:.2f} "
                    f"| {am['throughput_pods_per_s']:.1f} | {bm['throughput_pods_per_s']:.1f} "
                    f"| {la:.2f} | {lb:.2f} "
                    f"| {am['master_cpu_s_per_1000']:.1f} | {bm['master_cpu_s_per_1000']:.1f} "
                    f"| {am['throttle_wait_s']:.0f} | {bm['throttle_wait_s']:.0f} "
                    f"| {am['latency_p99_s']:.1f} | {bm['latency_p99_s']:.1f} |"
                )
    return lines


def writes_table(data: dict) -> list[str]:
    kinds = sorted(
        {
            k
            for e in data["sizes"]
            for m in ("qps50", "unthrottled")
            if e.get(m)
            for k in e[m]["mesoskube"].get("writes_by_kind_per_task", {})
        }
    )
    if not kinds:
        return []
    lines = [
        "",
        "## The master's writes per launched task, by kind",
        "",
        "Counted until every Task shows TASK_RUNNING. `patch tasks` is the Task status (the bench never"
        " kills), on the status client with Events (and the Offer writes, in runs since 2026-12-07);"
        " the rest is the launch client.",
        "",
        "| nodes | client QPS | " + " | ".join(kinds) + " |",
        "|---|---|" + "---|" * len(kinds),
    ]
    for e in data["sizes"]:
        for m in ("qps50", "unthrottled"):
            if not e.get(m):
                continue
            w = e[m]["mesoskube"]["writes_by_kind_per_task"]
            lines.append(
                f"| {e['nodes']} | {e[m]['client_qps']:g} | "
                + " | ".join(f"{w.get(k, 0):.3f}" for k in kinds)
                + " |"
            )
    return lines


def profile_lines(data: dict) -> list[str]:
    for e in data["sizes"]:
        prof = (e.get("unthrottled") or {}).get("mesoskube", {}).get("profile")
        if not prof or not prof.get("samples"):
            continue
        lines = [
            "",
            f"## Master CPU profile ({e['nodes']} nodes, unthrottled burst; py-spy, "
            f"{prof['samples']} samples of threads not idle)",
            "",
            "| share of samples (own) | frame | | share (inclusive) | frame |",
            "|---|---|---|---|---|",
        ]
        for (fo, so), (fi, si) in zip(prof["own"], prof["inclusive"], strict=False):
            lines.append(f"| {so * 100:.1f} % | `{fo}` | | {si * 100:.1f} % | `{fi}` |")
        return lines
    return []


def limits(data: dict) -> list[str]:
    """What bounds mesoskube in this run, from the run's own figures."""
    out = ["", "## What limits mesoskube here (measured)", ""]
    for e in data["sizes"] + data.get("larger", []):
        for mode in ("qps50", "unthrottled"):
            r = e.get(mode)
            if not r:
                continue
            mk, ks = r["mesoskube"], r["kube_scheduler"]
            launch, status, _ = _split(mk)
            q = r["client_qps"]
            ceiling = f"{q / launch:.1f} tasks/s" if q < 1000 and launch else "none: no client limit"
            busy = mk["throttle_wait_s"] / max(1e-9, mk["seconds"])
            cpu_share = mk["master_cpu_s_per_1000"] * mk["placed"] / 1000 / max(1e-9, mk["seconds"])
            out.append(
                f"- {e['nodes']} nodes, QPS {q:g}: {launch:.2f} launch-client writes per task (ceiling at "
                f"this QPS {ceiling}; measured {mk['throughput_pods_per_s']:.1f}), {status:.2f} on "
                f"the status client; requests waited {mk['throttle_wait_s']:.0f} s for the rate limiters in "
                f"{mk['seconds']:.0f} s (on average {busy:.1f} threads waiting); the master used "
                f"{mk['master_cpu_s_per_1000']:.1f} CPU s per 1,000 tasks ({cpu_share * 100:.0f} % of one "
                f"core during the burst) against kube-scheduler's {ks['scheduler_cpu_s_per_1000']:.1f}."
            )
    for e in data["sizes"]:
        prof = (e.get("unthrottled") or {}).get("mesoskube", {}).get("profile")
        if prof and prof.get("samples"):
            inc = dict(prof["inclusive"])
            kopf = inc.get("Master._start_kopf.<locals>.<lambda> runner.py", 0)
            writes = inc.get("_translate.<locals>.wrapped writer.py", 0)
            out.append(
                f"- Profile ({e['nodes']} nodes, unthrottled): kopf's watch processing (the event loop "
                f"feeding the cache) {kopf * 100:.0f} % of the master's busy samples, the writer's requests "
                f"{writes * 100:.0f} % (mostly waiting in socket reads: the API server on the shared cores)."
            )
    return out


CYCLE_ROWS = [
    ("sweep_5000x50", "", "sweep 5,000 agents x 50 frameworks, nothing changed since the last cycle"),
    (
        "sweep_5000x50",
        "changed_",
        "sweep 5,000 x 50 after the last sweep's offers (each offered agent changed)",
    ),
    ("sweep_5000x50", "rebuilt_", "sweep 5,000 x 50, every agent changed (as the first cycle)"),
    ("sweep_50000x50", "", "sweep 50,000 x 50, nothing changed since the last cycle"),
    ("sweep_50000x50", "changed_", "sweep 50,000 x 50 after the last sweep's offers"),
    ("sweep_50000x50", "rebuilt_", "sweep 50,000 x 50, every agent changed"),
    ("sweep_50000x50_nocap", "", "sweep 50,000 x 50 without an offer cap (every free agent offered)"),
    ("event_5000x50", "", "event-triggered at 5,000 x 50: one offer deleted, one candidate agent"),
]


def _cycle_cell(t: dict | None, prefix: str, cpu: bool = False) -> str:
    if not t or f"{prefix}snapshot_s" not in t:
        return "-"
    kind = "_cpu_s" if cpu else "_s"
    snap, alloc = t.get(f"{prefix}snapshot{kind}"), t.get(f"{prefix}allocator{kind}")
    if snap is None or alloc is None:
        return "-"
    return f"{snap * 1000:.1f} + {alloc * 1000:.1f} = **{(snap + alloc) * 1000:.1f}**"


def cycle_lines(after: dict, before: dict) -> list[str]:
    """The pure cycle's table: before (the code before the change, run right after with
    PYTHONPATH) and after, wall ms with the process's CPU ms beside (the machine is shared)."""
    if not after:
        return []
    out = ["", "## Allocation cycle, pure (no API server)", ""]
    if not any(isinstance(v, dict) and "changed_snapshot_s" in v for v in after.values()):
        out += ["| cycle | snapshot ms | allocator ms | total ms |", "|---|---|---|---|"]
        for k, t in after.items():
            if isinstance(t, dict) and "snapshot_s" in t:
                total = (t["snapshot_s"] + t["allocator_s"]) * 1000
                out.append(
                    f"| {k} | {t['snapshot_s'] * 1000:.1f} | {t['allocator_s'] * 1000:.1f} | {total:.1f} |"
                )
        return out

    def load(c: dict) -> str:
        a, b = c.get("load_avg_start"), c.get("load_avg_end")
        return f"{a[0]:.1f} -> {b[0]:.1f}" if a and b else "?"

    out += [
        "snapshot + allocator, ms: wall time, median of several cycles (the CPU time of the benchmark's own "
        "process beside it: on a shared machine the wall time also holds the waits for a core). "
        + (
            f"Before: {before.get('code', 'the code before')}, load average {load(before)}; after: "
            f"{after.get('code', 'this tree')}, load average {load(after)}; run back to back."
            if before
            else f"This tree, load average {load(after)} (no before run: BENCH_BEFORE_CODE unset)."
        ),
        "",
        "| cycle | before, wall | after, wall | after, CPU | offers (after) |",
        "|---|---|---|---|---|",
    ]
    for key, prefix, label in CYCLE_ROWS:
        t = after.get(key)
        if not t:
            continue
        out.append(
            f"| {label} | {_cycle_cell(before.get(key), prefix)} | {_cycle_cell(t, prefix)} "
            f"| {_cycle_cell(t, prefix, cpu=True)} | {t.get('offers', '-')} |"
        )
    out += [
        "",
        "Synthetic cache (bench/synthetic.py): 4 running tasks per agent, offers outstanding on half the "
        "agents, maxOffersPerFramework 256 (at 50,000 agents every framework already holds 500 offers, so "
        "no offer can be made: the no-cap row shows the allocator offering all 50,000). Before the change "
        "every snapshot re-walked every task and offer, so its three sweep rows cost alike; after, a "
        "snapshot rebuilds only the agents the cache reported changed. Figures published before this "
        "change (same benchmark, the no-change sweep and an event cycle that changed nothing): "
        "5,000 x 50: 662.9 ms, 50,000 x 50: 6561.3 ms, event 5,000 x 50: 105.9 ms.",
    ]
    if before and not (before.get("sweep_5000x50") or {}).get("counts_passed_over"):
        out[-1] += (
            " The before run's allocator counted no pass-overs (the engine always has it count; the after"
            " run does): the before figures are, if anything, on the low side."
        )
    return out


def cpu_lines(data: dict) -> list[str]:
    """Who had the cores in each burst: every process's CPU per 1,000 tasks (bench/cpu.py)."""
    rows = []
    for e in data["sizes"] + data.get("larger", []):
        for mode in ("qps50", "unthrottled"):
            run = e.get(mode) or {}
            q = f"QPS {run.get('client_qps', 0):g}"
            for key, label in (("kube_scheduler", "kube-scheduler"), ("mesoskube", "mesoskube")):
                cpu = (run.get(key) or {}).get("cpu")
                if cpu:
                    rows.append((f"{e['nodes']} nodes, {q}, {label}", cpu))
    return cpu_section_lines(rows)


def write_report(data: dict) -> str:
    c = data.get("cycle", {})
    lines = [
        "# Issue 14: launch throughput, latency and scale (`make bench-scale`)",
        "",
        f"Run {data['date']} on {data['machine']}; Kubernetes {data['versions']['KUBERNETES_VERSION']} "
        f"(kube-apiserver, kube-scheduler), kwok {data['versions']['KWOK_VERSION']}. Load average "
        f"(1/5/15 min) at start {' '.join(f'{x:.1f}' for x in data['load_avg_start'])}, at end "
        f"{' '.join(f'{x:.1f}' for x in data.get('load_avg_end', ()))} (a load above the core count "
        "before the run means something else shared the cores: absolute figures are then noisy; the "
        "ratios come from back-to-back runs on the same cluster).",
        "",
        f"Every client at the same QPS (burst 2 x QPS): the pod creator and kube-scheduler (its config's "
        "clientConnection) in the baseline; the master's launch client, its status/Events client and the "
        "framework for mesoskube. 'Unthrottled' is QPS 10,000 for all. Each run is a burst of "
        f"{data['pods']} one-cpu pods or tasks on kwok nodes of 32 cpus; kube-scheduler's latency runs "
        "from the pod create request, mesoskube's from the framework's accept (both to the pod observed "
        "Running). The Kubernetes pod start-up SLO is p99 <= 5 s.",
        "",
        "## Throughput and burst latency",
        "",
        *THROUGHPUT_HEAD,
        *throughput_rows(data["sizes"] + data.get("larger", [])),
    ]
    lines += cpu_lines(data)
    st = next((e["steady"] for e in data["sizes"] if e.get("steady")), None)
    if st:
        n = next(e["nodes"] for e in data["sizes"] if e.get("steady"))
        lines += [
            "",
            f"## Steady load at {n} nodes",
            "",
            f"Tasks arrive at {st['rate_per_s']:.1f}/s (half the QPS-50 capacity measured above) for "
            f"{st['duration_s']:.0f} s; every 0.25 s the framework accepts what arrived on one outstanding "
            f"offer. Client QPS {st['client_qps']:g}."
            + (
                f" Percentiles leave out the tasks accepted in the first {st['warmup_s']:g} s (a fresh "
                f"master's start-up; with them, p99 {st['latency_all_p99_s']:.2f} s)."
                if "warmup_s" in st
                else ""
            ),
            "",
            "| tasks | accept -> Running p50 s | p90 s | p99 s | max s | arrival -> accept p50 s |",
            "|---|---|---|---|---|---|",
            f"| {st['running']} | {st['latency_p50_s']:.2f} | {st['latency_p90_s']:.2f} "
            f"| {st['latency_p99_s']:.2f} | {st['latency_max_s']:.2f} | {st['framework_queue_p50_s']:.2f} |",
            "",
            "Where the time goes, stage by stage, with before/after pairs on one cluster: latency.md"
            " (`python -m bench.scale --steady-only --sizes N`).",
        ]
    lines += cycle_lines(c, data.get("cycle_before") or {})
    sizes = [e for e in data["sizes"] + data.get("larger", []) if e.get("qps50")]
    if len(sizes) >= 2:
        a, b = sizes[0], sizes[-1]
        ra, rb = a["qps50"]["mesoskube"]["master_rss_idle_mb"], b["qps50"]["mesoskube"]["master_rss_idle_mb"]
        per = (rb - ra) / ((b["nodes"] - a["nodes"]) / 1000)
        lines += [
            "",
            "## Master memory",
            "",
            "| nodes | master RSS idle MB (agents cached, before the burst) | after the burst MB |",
            "|---|---|---|",
            *(
                f"| {e['nodes']} | {e['qps50']['mesoskube']['master_rss_idle_mb']:.0f} "
                f"| {e['qps50']['mesoskube']['master_rss_mb']:.0f} |"
                for e in sizes
            ),
            "",
            f"Master RSS per 1,000 nodes (slope between {a['nodes']} and {b['nodes']} nodes, idle): "
            f"{per:.1f} MB.",
        ]
    larger = data.get("larger", [])
    if larger:
        reached = max((e["nodes"] for e in sizes), default=0)
        lines += ["", f"## Largest kwok cluster reached: {reached} nodes", ""]
        for e in larger:
            if e.get("stopped"):
                lines.append(f"- {e['nodes']} nodes: stopped: {e['stopped']}")
            elif e.get("nodes_ready_s") is not None:
                lines.append(f"- {e['nodes']} nodes Ready {e['nodes_ready_s']:.0f} s after being added.")
    lines += limits(data)
    lines += writes_table(data)
    lines += profile_lines(data)
    lines += before_after(data)
    lines.append("")
    text = "\n".join(lines)
    (RESULTS / "SCALE.md").write_text(text)
    return text


if __name__ == "__main__":
    name = sys.argv[1] if len(sys.argv) > 1 else "scale.json"
    write_report(json.loads((RESULTS / name).read_text()))
