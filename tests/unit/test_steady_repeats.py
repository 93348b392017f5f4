"""bench/steady_repeats.py's table: every sample kept, mesoskube's and kube-scheduler's side by side."""

import json

from bench.stages import tail_rows
from bench.steady_repeats import markdown


def test_each_sample_is_a_row_with_both_schedulers() -> None:
    run = {
        "mesoskube": {"running": 1458, "latency_p50_s": 0.12, "latency_p90_s": 0.3, "latency_p99_s": 0.68,
                      "latency_max_s": 1.2, "latency_all_p99_s": 1.4, "warmup_s": 5.0},
        "kube_scheduler": {"create_sent_to_running": {"n": 1458, "p50": 0.2, "p99": 0.9}},
        "load_avg": [3.5, 3.0, 2.0],
    }  # fmt: skip
    out = {"date": "d", "nodes": 1000, "rate_per_s": 24.3, "duration_s": 60, "client_qps": 50,
           "runs": [run, run]}  # fmt: skip
    rows = [line for line in markdown(out).splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
    row = "| 0.12 | 0.30 | 0.68 | 1.20 | 1.40 | 1458 | 0.20 | 0.90 | 3.5 |"
    assert rows == [f"| 1 | 1458 {row}", f"| 2 | 1458 {row}"]


def test_the_tail_of_each_sample_is_broken_down_by_stage() -> None:
    kwok = "bench sees it bound -> Running (kwok)"
    tail = [
        {"stage": "answer PATCH", "tasks": 15, "median_s": 0.04},
        {"stage": kwok, "tasks": 15, "median_s": float("nan")},
    ]
    run = {
        "mesoskube": {"running": 10, "latency_p50_s": 0.1, "latency_p90_s": 0.2, "latency_p99_s": 0.9,
                      "latency_max_s": 1.0, "tail_stages": tail},
        "kube_scheduler": {"create_sent_to_running": {"n": 10, "p50": 0.05, "p99": 0.1}},
        "load_avg": [1.0, 1.0, 1.0],
    }  # fmt: skip
    out = {"date": "d", "nodes": 1000, "rate_per_s": 24.3, "duration_s": 60, "client_qps": 50, "runs": [run]}
    text = markdown(out)
    assert "| answer PATCH | 0.04 |" in text
    assert f"| {kwok} | - |" in text


def test_tail_rows_take_the_slowest_tasks_median_per_stage(tmp_path) -> None:
    trace = tmp_path / "trace.log"
    # The master's stamps for two tasks of one offer: the slow one's pod create answered late.
    trace.write_text(
        "\n".join(
            [
                "100.10 answer-seen ns/o1",
                "100.11 answer-start ns/o1",
                "100.20 pod-sent ns/fast",
                "100.25 pod-created ns/fast",
                "100.20 pod-sent ns/slow",
                "102.20 pod-created ns/slow",
            ]
        )
    )
    tasks = {
        name: {"offer": "ns/o1", "accept-start": 100.0, "answer-sent": 100.02, "answer-stored": 100.05,
               "pod-bound-seen": created + 0.01, "running-seen": created + 0.1}
        for name, created in (("fast", 100.25), ("slow", 102.20))
    }  # fmt: skip
    stamps = tmp_path / "stamps.json"
    stamps.write_text(json.dumps({"trace": str(trace), "tasks": tasks}))
    tail = {row["stage"]: row for row in tail_rows(stamps, 99)}
    assert tail["pod create request (launch client)"]["tasks"] == 1  # the slow task only
    assert abs(tail["pod create request (launch client)"]["median_s"] - 2.0) < 1e-6
