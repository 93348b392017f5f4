"""A small `make chaos` (bench/chaos.py): two master replicas as subprocesses with leader election,
the leader SIGKILLed once and stopped gracefully once, kwok nodes deleted, while a framework on the
SDK launches tasks. Nothing may be launched twice, orphaned, lost silently or left stuck, and the
framework must hear of every task's end. (The kube-apiserver and etcd restarts run in `make chaos`
only: they would take the session's control plane away from nothing but this test, for little.)"""

from __future__ import annotations

import pytest

from bench.chaos import DEFECTS, Chaos, Config


def test_a_small_chaos_run_launches_nothing_twice_and_loses_nothing(
    request, kube, kubeconfig, crds, tmp_path
):
    if request.config.getoption("--installed-master"):
        pytest.skip("runs its own master replicas")
    cfg = Config(
        runs=1,
        tasks=150,
        nodes=4,
        concurrency=24,
        leader_kills=1,
        graceful_stops=1,
        apiserver_restarts=0,
        etcd_restarts=0,
        node_deletions=1,
        nodes_per_deletion=1,
        event_gap=(2.0, 4.0),
        run_timeout=240,
    )
    result = Chaos(cfg, None, kube, kubeconfig, run=0, logs=tmp_path).run()
    assert result.completed, f"only {result.tasks_finished} of {cfg.tasks} tasks finished: {result.events}"
    defects = {d: getattr(result, d) for d in DEFECTS}
    assert defects == dict.fromkeys(DEFECTS, 0), f"{defects}; examples {result.details}; {result.events}"
    assert not result.framework_torn_down
    assert [v for v in result.failover_kill_to_lease + result.failover_graceful_to_lease if v is None] == []
