"""bench/results/latency.json -> bench/results/latency.md (steady-load latency, by stage)."""

from __future__ import annotations

from bench.run import RESULTS


def _f(x: float) -> str:
    return "-" if x != x else f"{x:.2f}"  # NaN: no sample


def write_latency_report(data: dict) -> None:
    lines = [
        "# Steady-load latency, accept -> Running (issue 14)",
        "",
        "`python -m bench.scale --steady-only --sizes N [--rate R] [--label L] [--with-plain-pods]`"
        " (bench/latency.py). Tasks arrive at a fixed rate; every 0.25 s the framework accepts what"
        " arrived on one outstanding offer. Stages are wall-clock stamps: the bench's (accept PATCH,"
        " its own watch of pods) and the master's trace (MESOSKUBE_TRACE, master/trace.py). The 2"
        " cores are shared with other sessions (chaos and unit benchmarks): absolute figures are"
        " noisy, compare runs back to back; load averages are per run.",
        "",
        "## Runs",
        "",
        "| run | date | nodes | rate /s | tasks | tasks per accept | p50 s | p90 s | p99 s | max s "
        "| master CPU (share of a core) | client QPS | load avg 1 min start / end |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in data["runs"]:
        m = run["mesoskube"]
        lat = m["latency"]
        lines.append(
            f"| {run['label']} | {run['date']} | {m['nodes']} | {m['rate_per_s']:.2f} | {m['running']}"
            f"/{m['accepted']} | {m['tasks_per_accept']:.2f} | {_f(lat['p50'])} | {_f(lat['p90'])} "
            f"| {_f(lat['p99'])} | {_f(lat['max'])} | {m['master_cpu_share_of_one_core']:.2f} "
            f"| {m['client_qps']:.0f} | {m['load_avg'][0][0]:.1f} / {m['load_avg'][1][0]:.1f} |"
        )
    for run in data["runs"]:
        m = run["mesoskube"]
        lines += [
            "",
            f"## Stages of run `{run['label']}` ({run['date']}, {m['nodes']} nodes)",
            "",
            "| stage | p50 s | p90 s | p99 s | max s |",
            "|---|---|---|---|---|",
        ]
        for name, s in m["stages"].items():
            lines.append(f"| {name} | {_f(s['p50'])} | {_f(s['p90'])} | {_f(s['p99'])} | {_f(s['max'])} |")
        lat = m["latency"]
        lines.append(f"| **accept -> Running** | {_f(lat['p50'])} | {_f(lat['p90'])} | {_f(lat['p99'])} "
                     f"| {_f(lat['max'])} |")  # fmt: skip
        lines.append(f"\nMaster code: {m.get('master_code', 'this worktree')}")
        if m.get("master_args"):
            lines.append(f"\nMaster arguments: `{' '.join(m['master_args'])}`")
        for key in ("kube_scheduler", "direct_to_kwok"):
            p = run.get(key)
            if not p:
                continue
            lines += [
                "",
                f"Plain pods at the same rate, {p['mode']} ({p['running']}/{p['pods']} Running):",
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
