"""Who had the machine's cores during a burst: CPU seconds per process over a window, and the
machine's busy time from /proc/stat.

A burst's throughput on these 2 cores can be limited by a client's QPS (counted in writes per task)
or by the cores themselves, shared by every component. The second is only shown by measuring all of
them in the same window: if the machine was busy for nearly all of its 2 x wall seconds, the cores
were the limit, and the per-process split says whose requests cost them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds a process (all its threads) has used so far; NaN once it is gone."""
    if not pid:
        return float("nan")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / TICK


def processor() -> str:
    """The CPU's model name and bogomips (/proc/cpuinfo): runs on different machines of one kind
    differ in CPU per request (2026-12-07: the same kube-scheduler burst cost the API server 9.4
    CPU s per 1,000 pods at 19:12 and 12.8 on another machine at 23:37), so a report names its CPU."""
    model = mips = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not model:
                    model = value.strip()
                elif key.strip() == "bogomips" and not mips:
                    mips = value.strip()
    except OSError:
        return "unknown CPU"
    return f"{model or 'unknown CPU'}{f', bogomips {mips}' if mips else ''}"


def machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of all cores since boot; idle and iowait are not busy."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest time is already in user.
    total = sum(values[:8])
    return (total - values[3] - values[4]) / TICK, total / TICK


@dataclass
class CpuWindow:
    """Start it before a burst and `stop()` it once the burst is done; `pids` names the processes."""

    pids: dict[str, int | None]
    _start: dict[str, float] = field(default_factory=dict)
    _machine: tuple[float, float] = (0.0, 0.0)
    _wall: float = 0.0

    def __post_init__(self) -> None:
        self._start = {name: process_cpu_s(pid) for name, pid in self.pids.items()}
        self._machine = machine_cpu_s()
        self._wall = time.monotonic()

    def stop(self, tasks: int) -> dict:
        busy1, total1 = machine_cpu_s()
        busy = busy1 - self._machine[0]
        total = total1 - self._machine[1]
        per_process = {name: process_cpu_s(pid) - self._start[name] for name, pid in self.pids.items()}
        return {
            "wall_s": time.monotonic() - self._wall,
            "cores": os.cpu_count(),
            "machine_busy_s": busy,
            # Both sums of /proc/stat ticks turned into seconds: on a machine busy the whole window
            # their float quotient came out at 1.000000000000063 (a unit test beside a Go build).
            "machine_busy_fraction": min(1.0, busy / total) if total else float("nan"),
            "process_cpu_s": per_process,
            # Whatever ran besides the named processes (the kernel's own threads, other users).
            "other_cpu_s": busy - sum(v for v in per_process.values() if v == v),
            "tasks": tasks,
        }


def table(rows: list[tuple[str, dict]]) -> list[str]:
    """Markdown: one row per burst, the machine's busy share and each process's CPU seconds per
    1,000 tasks."""
    names: list[str] = []
    for _, cpu in rows:
        names += [n for n in cpu["process_cpu_s"] if n not in names]
    lines = [
        "| burst | wall s | machine busy | " + " | ".join(names) + " | other |",
        "|---|---|---|" + "---|" * (len(names) + 1),
    ]
    for label, cpu in rows:
        per = 1000 / max(1, cpu["tasks"])
        seconds = [cpu["process_cpu_s"].get(n, float("nan")) for n in names]
        cells = ["-" if s != s else f"{s * per:.1f}" for s in seconds]  # NaN: not running in that burst
        busy = f"{cpu['machine_busy_fraction'] * 100:.0f}% of {cpu['cores']} cores"
        other = f"{cpu['other_cpu_s'] * per:.1f}"
        lines.append(f"| {label} | {cpu['wall_s']:.1f} | {busy} | {' | '.join(cells)} | {other} |")
    return lines


def section(rows: list[tuple[str, dict]]) -> list[str]:
    """REPORT.md's and SCALE.md's "Who had the cores": the explanation, then `table(rows)`."""
    if not rows:
        return []
    return [
        "",
        "## Who had the cores",
        "",
        "CPU seconds per 1,000 tasks of every process on the machine, from each burst's first create "
        "(or accept) until its last pod was Running, read from /proc; 'machine busy' is the share of "
        "the cores' time that was not idle over the same window. Near 100%, the cores were the "
        "limit, not a client's QPS. The bench driver is the pod creator in kube-scheduler's bursts and "
        "the framework in mesoskube's, each with the watches that time the burst.",
        "",
        *table(rows),
    ]
