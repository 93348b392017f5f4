"""`make bench-steady`: the steady-load latency at 1,000 kwok nodes, repeated, next to the peer.

    BENCH_STEADY_RATE=24.3 BENCH_STEADY_SAMPLES=3 python -m bench.steady_repeats

On a cluster of its own (BENCH_CLUSTER, default bench-steady), one 1,000-node kwok cluster for all
samples: per sample, tasks arrive at the rate for 60 s through a mesoskube framework
(`bench.scale.steady_load`: accept -> pod Running; `make bench-steady` accepts by name, the SDK's
default, unless BENCH_ACCEPT=inline), then the same rate of plain pods through kube-scheduler
(`bench.latency.plain_pods_steady`: create sent -> Running). One sample of a tail percentile is not
a result: this repeats both and keeps each sample. The rate defaults to half the QPS-50 capacity of
the last `make bench-scale` at 1,000 nodes (scale.json). Results: bench/results/steady-repeats.json
and .md (BENCH_STEADY_OUT to rename).
"""

from __future__ import annotations

import json
import os
import time

from bench.latency import _half_capacity, plain_pods_steady
from bench.run import RESULTS, SHAPE, log
from bench.scale import steady_load
from mesoskube.api.install import install_crds
from mesoskube.cluster.local import LocalCluster
from mesoskube.cluster.nodes import add_nodes, wait_nodes_ready
from mesoskube.cluster.nodeshapes import parse_shape
from mesoskube.kube import Kube

NODES = 1000
DURATION = 60.0
QPS = 50.0


def markdown(out: dict) -> str:
    """One row per sample: mesoskube's accept -> Running and kube-scheduler's create -> Running."""
    lines = [
        f"# Steady load at {out['nodes']} kwok nodes, repeated (`make bench-steady`)",
        "",
        f"Run {out['date']}: {out['rate_per_s']:.1f} tasks/s for {out['duration_s']:.0f} s per sample, "
        f"client QPS {out['client_qps']:g}; mesoskube from the framework's first Task create of an accept "
        "(or its accept PATCH, inline) to the pod seen Running, kube-scheduler from the pod create "
        "sent to the pod seen Running, the same rate right after on the same cluster. Each sample "
        "starts a fresh master; its percentiles leave out the tasks accepted in the first "
        f"{out['runs'][0]['mesoskube'].get('warmup_s', 0) if out['runs'] else 0:g} s (its start-up), "
        "the column 'warm-up included' keeps them.",
        "",
        "| sample | mesoskube tasks | p50 s | p90 s | p99 s | max s | p99 s, warm-up included "
        "| kube-scheduler pods | p50 s | p99 s | load avg after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(out["runs"], 1):
        mk, ks = r["mesoskube"], r["kube_scheduler"]["create_sent_to_running"]
        lines.append(
            f"| {i} | {mk['running']} | {mk['latency_p50_s']:.2f} | {mk['latency_p90_s']:.2f} "
            f"| {mk['latency_p99_s']:.2f} | {mk['latency_max_s']:.2f} "
            f"| {mk.get('latency_all_p99_s', mk['latency_p99_s']):.2f} | {ks['n']} | {ks['p50']:.2f} "
            f"| {ks['p99']:.2f} | {r['load_avg'][0]:.1f} |"
        )
    tails = [r["mesoskube"].get("tail_stages") or [] for r in out["runs"]]
    if any(tails):
        lines += [
            "",
            "Where mesoskube's slowest 1% waited (tasks at or above the sample's p99), the median "
            "seconds per stage (bench/stages.py; the master's stamps from MESOSKUBE_TRACE):",
            "",
            "| stage | " + " | ".join(f"sample {i}" for i in range(1, len(tails) + 1)) + " |",
            "|---|" + "---|" * len(tails),
        ]
        names = [row["stage"] for row in next(t for t in tails if t)]
        for name in names:
            cells = []
            for tail in tails:
                v = next((row["median_s"] for row in tail if row["stage"] == name), float("nan"))
                cells.append("-" if v != v else f"{v:.2f}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    rate = float(os.environ.get("BENCH_STEADY_RATE", "0")) or _half_capacity(NODES)
    samples = int(os.environ.get("BENCH_STEADY_SAMPLES", "3"))
    path = RESULTS / os.environ.get("BENCH_STEADY_OUT", "steady-repeats.json")
    cluster = LocalCluster(os.environ.get("BENCH_CLUSTER", "bench-steady"))
    cluster.down()
    cluster.up(with_scheduler=True, scheduler_qps=QPS)
    out: dict = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "nodes": NODES,
        "rate_per_s": rate,
        "duration_s": DURATION,
        "client_qps": QPS,
        "runs": [],
    }
    try:
        kube = Kube.connect(str(cluster.kubeconfig))
        install_crds(kube)
        add_nodes(kube, NODES, [parse_shape(SHAPE)], start=0, prefix="bench-node")
        wait_nodes_ready(kube, NODES, timeout=300)
        for _ in range(samples):
            mk = steady_load(str(cluster.kubeconfig), kube, QPS, NODES, rate, DURATION)
            ks = plain_pods_steady(kube, NODES, rate, DURATION, bind=False)
            out["runs"].append({"mesoskube": mk, "kube_scheduler": ks, "load_avg": os.getloadavg()})
            path.write_text(json.dumps(out, indent=2))
            path.with_suffix(".md").write_text(markdown(out))
    finally:
        cluster.down()
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
