"""`make demo` itself (python -m mesoskube.demo) on the session's cluster, with a quarter of its
tasks: both Spark applications finish, the master's metrics endpoint moves while they run, and the
real task's output is printed. The Spark workload is EMULATED on kwok nodes, as in the demo; the
hello-real task runs for real on a kubelet node."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from kubernetes.client.exceptions import ApiException

from mesoskube import demo
from tests.conftest import TEST_CLUSTER
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
def demo_cluster(request, kube) -> Iterator[str]:
    """The session's own local cluster: only one cluster per machine can have real nodes, and the
    demo needs one. The demo's nodes and namespace are removed afterwards."""
    if request.config.getoption("--existing-cluster") or request.config.getoption("--installed-master"):
        pytest.skip("the demo runs its own master on a local control plane")
    yield TEST_CLUSTER
    for node in kube.core.list_node().items:
        if node.metadata.name.startswith(f"{demo.NODE_PREFIX}-"):
            kube.core.delete_node(node.metadata.name)
    with contextlib.suppress(ApiException):
        kube.core.delete_namespace(demo.NAMESPACE)
    for role in demo.ROLES:  # cluster-scoped: other tests list roles
        with contextlib.suppress(ApiException):
            kube.custom.delete_cluster_custom_object("mesoskube.io", "v1alpha1", "mesosroles", role)


def test_make_demo_finishes_both_apps_and_its_metrics_move(request, demo_cluster):
    env = {
        "MESOSKUBE_DEMO_CLUSTER": demo_cluster,
        "MESOSKUBE_DEMO_SCALE": "0.25",
        "MESOSKUBE_DEMO_REAL_NODES": str(request.config.getoption("--real-nodes")),
    }
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
    # The real task's own output, read back with `kubectl logs`.
    assert re.search(r"^==== hello-real on real-\d+ ====$", out, re.M), out[-4000:]
    assert "state TASK_FINISHED" in out and "in a real container" in out, out[-4000:]
