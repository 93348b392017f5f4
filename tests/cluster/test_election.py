"""Master replicas with leader election on a real API server: one leader writes, a standby with a
warm cache writes nothing and takes over when the leader releases the Lease (graceful, < 1 s) or
stops renewing it (a crash: after the lease duration, by the standby's own clock)."""

from __future__ import annotations

import threading
import time

import pytest

from mesoskube.kube import Kube
from mesoskube.master.runner import Master
from mesoskube.settings import Settings
from tests.cluster.mesos import RawFramework
from tests.helpers import eventually

LEASE = "mesoskube-master"


@pytest.fixture(autouse=True)
def _own_masters(request):
    if request.config.getoption("--installed-master"):
        pytest.skip("runs its own master replicas")


class WriteRecorder:
    """Wraps a replica's ApiClient and records every request that is not a read."""

    def __init__(self, kube: Kube) -> None:
        self.writes: list[tuple[str, str]] = []
        inner = kube.api.call_api

        def call_api(method, url, *a, **k):
            if method.upper() not in ("GET", "HEAD"):
                self.writes.append((method, url))
            return inner(method, url, *a, **k)

        kube.api.call_api = call_api


def replica(
    kubeconfig: str, namespace: str, test_id: str, identity: str, **election: float
) -> tuple[Master, WriteRecorder]:
    kube = Kube.connect(kubeconfig)
    recorder = WriteRecorder(kube)
    settings = Settings(
        namespace=namespace,
        agentSelector=f"mesoskube.io/test={test_id}",
        metricsPort=0,
        healthPort=0,
        httpPort=0,  # two replicas in one process: no two listeners on one port
        podsFramework=False,  # as in conftest's masters
        allocationInterval=0.5,
        leaderElect=True,
        leaseNamespace=namespace,
        identity=identity,
        **election,
    )
    return Master(kube, settings).start_in_thread(), recorder


def holder(kube: Kube, namespace: str) -> str | None:
    return kube.coordination.read_namespaced_lease(LEASE, namespace).spec.holder_identity or None


def test_a_standby_writes_nothing_then_takes_over_within_a_second_when_the_leader_releases(
    kube, kubeconfig, crds, namespace, fake_nodes, test_id
):
    fake_nodes(2, "cpu=4,memory=8Gi")
    a, _ = replica(kubeconfig, namespace, test_id, "replica-a")
    b = None
    try:
        eventually(lambda: a.leading, timeout=15, what="replica-a leading")
        b, b_writes = replica(kubeconfig, namespace, test_id, "replica-b")
        assert b.engine.ready.is_set() and not b.leading and b.readiness().ok  # a synced standby
        fw = RawFramework.subscribe(kube, namespace, "fw")
        first = fw.wait_offers(2)
        # The standby's cache follows the leader's writes through its own watches.
        eventually(lambda: len(b.cache.offers) >= 2, timeout=10, what="offers in the standby's cache")
        assert b_writes.writes == [], "a standby wrote"
        assert holder(kube, namespace) == "replica-a"

        took_over = threading.Event()
        watcher = threading.Thread(target=lambda: b.elector.leading.wait(10) and took_over.set(), daemon=True)
        watcher.start()
        began = time.monotonic()
        a.stop()
        assert took_over.wait(10), "replica-b never took over"
        handover = time.monotonic() - began
        assert holder(kube, namespace) == "replica-b"
        assert handover < 1.0, f"graceful handover took {handover:.2f}s"
        # The new leader works: the old offers are answered, new ones come from replica-b.
        for o in first:
            fw.decline(o, refuse_seconds=0)
        eventually(
            lambda: any(
                o["metadata"]["name"] not in {f["metadata"]["name"] for f in first} for o in fw.offers()
            ),
            timeout=15,
            what="a new offer from replica-b",
        )
        assert b_writes.writes, "the new leader wrote nothing"
    finally:
        if b is not None:
            from tests.cluster.conftest import teardown_frameworks

            teardown_frameworks(kube, namespace)
            b.stop()
        a.stop()


def test_a_leader_that_stops_renewing_is_replaced_after_the_lease_duration(
    kube, kubeconfig, crds, namespace, fake_nodes, test_id
):
    fake_nodes(1, "cpu=4,memory=8Gi")
    a, _ = replica(kubeconfig, namespace, test_id, "replica-a")
    b = None
    try:
        eventually(lambda: a.leading, timeout=15, what="replica-a leading")
        b, _ = replica(kubeconfig, namespace, test_id, "replica-b")
        # A crash, as the Lease sees it: renewals stop, nothing is released.
        a.elector.stop()
        a.engine.stop()
        stopped = time.monotonic()
        eventually(lambda: b.leading, timeout=20, what="replica-b leading")
        waited = time.monotonic() - stopped
        assert holder(kube, namespace) == "replica-b"
        # Not before the Lease could have lapsed by b's clock (leaseDuration 3 s, minus one retry).
        assert waited >= b.settings.leaseDuration - b.settings.retryPeriod, f"took over after {waited:.2f}s"
        fw = RawFramework.subscribe(kube, namespace, "fw")
        fw.wait_offers(1)
    finally:
        if b is not None:
            from tests.cluster.conftest import teardown_frameworks

            teardown_frameworks(kube, namespace)
            b.stop()
        a.stop()


def test_a_standby_sees_the_release_on_its_watch_rather_than_at_its_next_retry(
    kube, kubeconfig, crds, namespace, fake_nodes, test_id
):
    """Released right after the standby's first try, with a 25 s retry period: only its watch of
    the Lease can make the handover quick."""
    fake_nodes(1, "cpu=4,memory=8Gi")
    slow = {"leaseDuration": 60, "renewDeadline": 40.0, "retryPeriod": 25.0}
    a, _ = replica(kubeconfig, namespace, test_id, "replica-a", **slow)
    b = None
    try:
        eventually(lambda: a.leading, timeout=15, what="replica-a leading")
        b, _ = replica(kubeconfig, namespace, test_id, "replica-b", **slow)
        eventually(lambda: b.elector.election.observed_record is not None, timeout=10, what="b's first try")
        assert not b.leading
        began = time.monotonic()
        a.stop()
        assert b.elector.leading.wait(10), "replica-b did not take over well within its retry period"
        handover = time.monotonic() - began
        assert holder(kube, namespace) == "replica-b"
        assert handover < 3.0, f"handover took {handover:.2f}s: the release was seen at a retry, not watched"
    finally:
        if b is not None:
            b.stop()
        a.stop()
