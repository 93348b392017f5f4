"""Where a burst's accept -> Running goes, per task and stage (issue 14).

    BENCH_STAMPS=/tmp/stamps BENCH_ACCEPT=by-name BENCH_SIZES=1000 python -m bench.run
    python -m bench.stages /tmp/stamps/stamps-1000.json

Reads the bench's stamps (bench/run.py, BENCH_STAMPS) and the master's trace (MESOSKUBE_TRACE)
of one burst, all on the wall clock, and prints each stage's p50 / p90 / max, and the throughput
of each stage (tasks through it per second over the burst): the slowest stage is the pipeline's limit.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from bench.latency import read_trace, summary

# (name, from stamp, to stamp): stamps named by the bench, or "trace:<stage>" by the master, keyed
# by the task ("task") or by its offer ("offer").
STAGES = [
    ("framework creates the accept's Tasks", "accept-start", "answer-sent"),
    ("answer PATCH", "answer-sent", "answer-stored"),
    ("master's watch delivers the answer", "answer-stored", "offer:answer-seen"),
    ("answer waits for the engine", "offer:answer-seen", "offer:answer-start"),
    ("engine checks the answer -> pod create sent", "offer:answer-start", "task:pod-sent"),
    ("pod create request (launch client)", "task:pod-sent", "task:pod-created"),
    ("pod created -> bench sees it bound", "task:pod-created", "pod-bound-seen"),
    ("bench sees it bound -> Running (kwok)", "pod-bound-seen", "running-seen"),
    # What the framework sees: the master's status patch (after the pod runs, on its status client).
    ("Running -> TASK_RUNNING written (master)", "running-seen", "task:status-TASK_RUNNING"),
]


def stamps_of(path: Path) -> dict[str, dict[str, float]]:
    data = json.loads(path.read_text())
    trace = read_trace(Path(data["trace"]))
    ns = next(iter(data["tasks"].values()))["offer"].split("/")[0] if data["tasks"] else ""
    out = {}
    for task, st in data["tasks"].items():
        row = {k: v for k, v in st.items() if isinstance(v, float)}
        for stage, keys in trace.items():
            if f"{ns}/{task}" in keys:
                row[f"task:{stage}"] = keys[f"{ns}/{task}"]
            if st["offer"] in keys:
                row[f"offer:{stage}"] = keys[st["offer"]]
        out[task] = row
    return out


def stage_rows(path: Path) -> list[dict]:
    """Per stage: its name, p50 / p90 / max seconds, when its last task passed it (seconds from
    the first accept) and its rate (tasks through it per second from the first accept)."""
    rows = stamps_of(path)
    if not rows:
        return []
    t0 = min(r["accept-start"] for r in rows.values())
    out = []
    for name, a, b in [*STAGES, ("accept start -> Running", "accept-start", "running-seen")]:
        d = [r[b] - r[a] for r in rows.values() if a in r and b in r and not math.isnan(r[b] - r[a])]
        ends = sorted(r[b] - t0 for r in rows.values() if b in r and not math.isnan(r[b]))
        s = summary(d)
        last = ends[-1] if ends else float("nan")
        out.append(
            {
                "stage": name,
                "p50_s": s["p50"],
                "p90_s": s["p90"],
                "max_s": s["max"],
                "done_by_s": last,
                "tasks_per_s": len(ends) / last if ends and last > 0 else float("nan"),
            }
        )
    return out


def tail_rows(path: Path, percentile: float = 99, since: float = float("-inf")) -> list[dict]:
    """The slowest tasks (accept start -> Running at or above the percentile) of those accepted at
    or after `since` (wall clock): per stage, the median seconds they spent in it. Where a tail
    waited, not where the typical task did."""
    rows = {t: r for t, r in stamps_of(path).items() if r.get("accept-start", since) >= since}
    total = {t: r["running-seen"] - r["accept-start"] for t, r in rows.items() if "running-seen" in r}
    total = {t: d for t, d in total.items() if not math.isnan(d)}
    if not total:
        return []
    cut = summary(list(total.values()))[f"p{percentile:g}"] if percentile in (50, 90, 99) else None
    if cut is None:
        raise ValueError(f"percentile {percentile}: 50, 90 or 99")
    slow = [rows[t] for t, d in total.items() if d >= cut]
    out = []
    for name, a, b in STAGES:
        d = [r[b] - r[a] for r in slow if a in r and b in r and not math.isnan(r[b] - r[a])]
        out.append({"stage": name, "tasks": len(slow), "median_s": summary(d)["p50"] if d else float("nan")})
    return out


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| stage | p50 s | p90 s | max s | last task by, s | tasks/s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['stage']} | {r['p50_s']:.3f} | {r['p90_s']:.3f} | {r['max_s']:.3f} | "
            f"{r['done_by_s']:.1f} | {r['tasks_per_s']:.1f} |"
        )
    return lines


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(f"{arg}:")
        print("\n".join(table(stage_rows(Path(arg)))))
