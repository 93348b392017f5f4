"""`make demo` itself (python -m mesoskube.demo) on a cluster of its own, with a quarter of its
tasks: both Spark applications finish and the master's metrics endpoint moves while they run.
Nodes are kwok fake nodes and the Spark workload is EMULATED, as in the demo."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading

import pytest

from mesoskube.cluster.local import LocalCluster
from tests.helpers import eventually, scrape

MOVING = (
    "mesoskube_allocation_runs_total",
    'mesoskube_offers_total{event="sent"}',
    'mesoskube_offers_total{event="accepted"}',
    'mesoskube_offers_total{event="declined"}',
    "mesoskube_allocation_duration_seconds_count",
    "mesoskube_offer_decision_seconds_count",
    "mesoskube_task_launch_seconds_count",
)


@pytest.fixture
def demo_cluster(request) -> str:
    if request.config.getoption("--existing-cluster") or request.config.getoption("--installed-master"):
        pytest.skip("the demo brings up its own local control plane")
    name = "pytest-demo"
    yield name
    LocalCluster(name).down()


def test_make_demo_finishes_both_apps_and_its_metrics_move(demo_cluster):
    env = {"MESOSKUBE_DEMO_CLUSTER": demo_cluster, "MESOSKUBE_DEMO_SCALE": "0.25"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mesoskube.demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **env},
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:

        def metrics_port() -> int | None:
            found = [m for line in lines if (m := re.search(r"metrics at http://127.0.0.1:(\d+)/", line))]
            return int(found[0].group(1)) if found else None

        port = eventually(metrics_port, timeout=120, what="the demo's master to start")
        before = scrape(port)

        def moved() -> dict | None:
            now = scrape(port)
            return now if all(now.get(k, 0) > before.get(k, 0) for k in MOVING) else None

        after = eventually(moved, timeout=60, interval=0.5, what="every demo metric to move")
        assert proc.poll() is None, "the demo ended before its metrics were seen moving"
        assert any(k.startswith("mesoskube_api_requests_total") and v > 0 for k, v in after.items())
        assert proc.wait(timeout=180) == 0, "".join(lines[-60:])
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(5)
    out = "".join(lines)
    assert len(re.findall(r"^  result +ok$", out, re.M)) == 2, out[-4000:]
    assert "coarse mode" in out and "fine mode" in out
