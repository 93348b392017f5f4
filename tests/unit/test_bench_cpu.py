"""bench/cpu.py: the per-process CPU window that says who had the cores during a burst."""

import os

from bench.cpu import CpuWindow, process_cpu_s, table


def test_a_window_counts_this_process_and_the_machine_it_ran_on():
    window = CpuWindow({"me": os.getpid(), "gone": 2**22 + 1})
    start = process_cpu_s(os.getpid())
    while process_cpu_s(os.getpid()) - start < 0.2:  # burn CPU until the kernel has counted 0.2 s
        sum(i * i for i in range(10_000))
    cpu = window.stop(tasks=100)
    assert cpu["process_cpu_s"]["me"] >= 0.2
    assert cpu["process_cpu_s"]["gone"] != cpu["process_cpu_s"]["gone"]  # NaN: no such process
    # The machine was busy at least while this process ran, and never more than all its cores.
    assert cpu["machine_busy_s"] >= cpu["process_cpu_s"]["me"] - 0.02
    assert 0 < cpu["machine_busy_fraction"] <= 1


def test_the_table_shows_seconds_per_1000_tasks_and_a_dash_for_a_process_not_running():
    burst = {
        "wall_s": 10.0,
        "cores": 2,
        "machine_busy_fraction": 0.95,
        "process_cpu_s": {"kube-apiserver": 5.0, "master": float("nan")},
        "other_cpu_s": 0.5,
        "tasks": 500,
    }
    lines = table([("100 nodes, kube-scheduler", burst)])
    assert lines[0] == "| burst | wall s | machine busy | kube-apiserver | master | other |"
    assert lines[2] == "| 100 nodes, kube-scheduler | 10.0 | 95% of 2 cores | 10.0 | - | 1.0 |"
