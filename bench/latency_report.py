"""bench/results/latency.json -> bench/results/latency.md (steady-load latency, by stage)."""

from __future__ import annotations

from bench.run import RESULTS

# Which master each run measured (the runs of this branch's work on issue 14, in order).
CODE = {
    "before": "124ff28 (main's engine, with the trace)",
    "after": "d423ca8 (pipelined answers and tasks, an accept's writes side by side)",
    "after2": "37e5af8 (+ no racing pod create from the Task's own work)",
    "after3-profile": "37e5af8, under py-spy",
    "after4": "406be68 (+ taken-agent check once a second), under py-spy",
    "after5": "6bb9b78 (+ framework Lease LIST off the loop)",
    "after6": "6bb9b78",
    "after7": "6bb9b78 (entry rebuilt from its stamps: lost to a race between two runs' writes)",
    "after8": "6bb9b78",
    "after9": "f9df324 (+ an accept in flight counted once; cluster-wide step parts every 0.2 s)",
    "after10": "f9df324",
}


def code_of(run: dict) -> str:
    label = run["label"]
    if label in CODE:
        return CODE[label]
    if label.startswith("before"):
        return CODE["before"]
    return run.get("commit") or "this branch"


def _median(xs: list[float]) -> float:
    xs = sorted(x for x in xs if x == x)
    if not xs:
        return float("nan")
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def _f(x: float) -> str:
    return "-" if x != x else f"{x:.2f}"  # NaN: no sample


def write_latency_report(data: dict) -> None:
    runs = data["runs"]
    lines = [
        "# Steady-load latency, accept -> Running (issue 14)",
        "",
        "`python -m bench.scale --steady-only --sizes N [--rate R] [--label L] [--code DIR]"
        " [--with-plain-pods] [--profile]` (bench/latency.py), on one kwok cluster kept up between"
        " runs. Tasks arrive at a fixed rate; every 0.25 s the framework accepts what arrived on one"
        " outstanding offer (refuseSeconds 0); client QPS 50 (burst 100) for the master and the"
        " framework. Stages are wall-clock stamps: the bench's (accept PATCH, its own watch of pods)"
        " and the master's trace (MESOSKUBE_TRACE, master/trace.py). The 2 cores are shared with"
        " other sessions (chaos, failover and unit benchmarks, other clusters): absolute figures are"
        " noisy; compare runs next to each other, with their load averages.",
        "",
        "## Runs",
        "",
        "| run | master | date | tasks Running | tasks per accept | p50 s | p90 s | p99 s | max s "
        "| master CPU (cores) | engine steps (p50 / p99 ms) | load avg 1 min start / end |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        m = run["mesoskube"]
        lat = m["latency"]
        steps = m.get("steps") or {}
        st = steps.get("seconds") or {}
        step_cell = f"{st['p50'] * 1000:.0f} / {st['p99'] * 1000:.0f}" if steps.get("count") else "-"
        lines.append(
            f"| {run['label']} | {code_of(run)} | {run['date']} | {m['running']}/{m['accepted']} "
            f"| {m['tasks_per_accept']:.2f} | {_f(lat['p50'])} | {_f(lat['p90'])} | {_f(lat['p99'])} "
            f"| {_f(lat['max'])} | {_f(m['master_cpu_share_of_one_core'])} | {step_cell} "
            f"| {m['load_avg'][0][0]:.1f} / {m['load_avg'][1][0]:.1f} |"
        )
    lines += [
        "",
        f"All at {runs[0]['mesoskube']['nodes']} nodes, {runs[0]['mesoskube']['rate_per_s']:.2f} tasks/s"
        f" for {runs[0]['mesoskube']['duration_s']:.0f} s."
        if runs
        else "",
        "",
        "## Where the time goes: each stage's p50 / p99 (s), per run",
        "",
        "| stage | " + " | ".join(r["label"] for r in runs) + " |",
        "|---|" + "---|" * len(runs),
    ]
    names = list(runs[0]["mesoskube"]["stages"]) if runs else []
    for name in names:
        cells = []
        for r in runs:
            s = r["mesoskube"]["stages"].get(name) or {"p50": float("nan"), "p99": float("nan")}
            cells.append(f"{_f(s['p50'])} / {_f(s['p99'])}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    cells = [f"{_f(r['mesoskube']['latency']['p50'])} / {_f(r['mesoskube']['latency']['p99'])}" for r in runs]
    lines.append("| **accept -> Running** | " + " | ".join(f"**{c}**" for c in cells) + " |")
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(code_of(r).split(" ")[0].rstrip(","), []).append(r)
    if len(groups) > 1:
        lines += [
            "",
            "## By master: the median over its runs of each stage's p50 / p99 (s)",
            "",
            "| stage | " + " | ".join(f"{c} ({len(g)} runs)" for c, g in groups.items()) + " |",
            "|---|" + "---|" * len(groups),
        ]
        for name in [*names, None]:
            cells = []
            for g in groups.values():
                stats = [r["mesoskube"]["stages"].get(name) if name else r["mesoskube"]["latency"] for r in g]
                stats = [x for x in stats if x]
                cells.append(
                    f"{_f(_median([x['p50'] for x in stats]))} / {_f(_median([x['p99'] for x in stats]))}"
                )
            lines.append(f"| {name or '**accept -> Running**'} | " + " | ".join(cells) + " |")
    for run in runs:
        for key in ("kube_scheduler", "direct_to_kwok"):
            p = run.get(key)
            if not p:
                continue
            lines += [
                "",
                f"Plain pods at the same rate after run `{run['label']}`, {p['mode']} "
                f"({p['running']}/{p['pods']} Running, load {p['load_avg'][0][0]:.1f}):",
                "",
                "| stage | p50 s | p90 s | p99 s | max s |",
                "|---|---|---|---|---|",
            ]
            for name, s in (
                ("pod create request", p["create_request"]),
                ("created -> bench sees it bound", p["created_to_bound_seen"]),
                ("bench sees it bound -> sees it Running (kwok)", p["bound_seen_to_running_seen"]),
                ("**create sent -> Running**", p["create_sent_to_running"]),
            ):
                cells = " | ".join(_f(s[q]) for q in ("p50", "p90", "p99", "max"))
                lines.append(f"| {name} | {cells} |")
    (RESULTS / "latency.md").write_text("\n".join(lines) + "\n")
