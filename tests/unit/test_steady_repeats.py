"""bench/steady_repeats.py's table: every sample kept, mesoskube's and kube-scheduler's side by side."""

from bench.steady_repeats import markdown


def test_each_sample_is_a_row_with_both_schedulers() -> None:
    run = {
        "mesoskube": {"running": 1458, "latency_p50_s": 0.12, "latency_p90_s": 0.3, "latency_p99_s": 0.68,
                      "latency_max_s": 1.2},
        "kube_scheduler": {"create_sent_to_running": {"n": 1458, "p50": 0.2, "p99": 0.9}},
        "load_avg": [3.5, 3.0, 2.0],
    }  # fmt: skip
    out = {"date": "d", "nodes": 1000, "rate_per_s": 24.3, "duration_s": 60, "client_qps": 50,
           "runs": [run, run]}  # fmt: skip
    rows = [line for line in markdown(out).splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
    row = "| 0.12 | 0.30 | 0.68 | 1.20 | 1458 | 0.20 | 0.90 | 3.5 |"
    assert rows == [f"| 1 | 1458 {row}", f"| 2 | 1458 {row}"]
