"""Framework liveness by the master's observed time (client-go's rule), paused while the master's own
view of the API server is unhealthy. Pure: a fake monotonic clock is just the numbers passed in."""

from __future__ import annotations

from mesoskube.master.liveness import LeaseLiveness, Liveness

K = "ns/fw"


def lease(renew: str, rv: str, duration: float = 10.0) -> dict[str, tuple[str, str, float]]:
    return {K: (renew, rv, duration)}


def polled(lv: LeaseLiveness, start: float, end: float, leases: dict, step: float = 1.0) -> None:
    t = start
    while t <= end:
        lv.observe(leases, t)
        t += step


def test_a_lease_that_keeps_changing_is_alive_whatever_its_renew_time_says():
    lv = LeaseLiveness()
    # The framework's clock is an hour behind the master's: renewTime is in the "past", but it changes.
    for i in range(60):
        lv.observe(lease(f"1970-01-01T00:00:{i:02d}Z", str(i)), 1000.0 + i)
        assert lv.state(K, 1000.0 + i) is Liveness.ALIVE


def test_a_lease_that_stops_changing_lapses_after_its_duration_on_the_masters_clock():
    lv = LeaseLiveness()
    polled(lv, 0.0, 10.0, lease("t0", "1", 10.0))  # seen first at 0, unchanged since
    assert lv.state(K, 10.0) is Liveness.ALIVE
    lv.observe(lease("t0", "1", 10.0), 10.5)
    assert lv.state(K, 10.5) is Liveness.LAPSED


def test_a_renew_time_far_in_the_future_does_not_keep_a_dead_framework_alive():
    lv = LeaseLiveness()
    polled(lv, 0.0, 12.0, lease("2999-01-01T00:00:00Z", "1", 10.0))
    assert lv.state(K, 12.0) is Liveness.LAPSED


def test_a_resource_version_change_alone_counts_as_a_renewal():
    lv = LeaseLiveness()
    polled(lv, 0.0, 8.0, lease("t0", "1", 10.0))
    polled(lv, 9.0, 15.0, lease("t0", "2", 10.0))
    assert lv.state(K, 15.0) is Liveness.ALIVE


def test_an_api_server_outage_is_never_the_frameworks_fault():
    """40 s without the API server: failed polls pause liveness, and after recovery the framework has a
    whole lease duration, from the master's recovery, to renew."""
    lv = LeaseLiveness()
    polled(lv, 0.0, 5.0, lease("t0", "1", 10.0))
    for t in range(6, 46):
        lv.poll_failed(float(t))
        assert lv.state(K, float(t)) is Liveness.UNKNOWN
    # Back at 46: the Lease still shows the renewal from before the outage.
    lv.observe(lease("t0", "1", 10.0), 46.0)
    assert lv.state(K, 46.0) is Liveness.ALIVE
    assert lv.state(K, 56.0) is Liveness.ALIVE
    # The framework renews at 50: alive for good.
    polled(lv, 50.0, 58.0, lease("t1", "2", 10.0))
    assert lv.state(K, 58.0) is Liveness.ALIVE


def test_after_an_outage_a_framework_that_never_renews_lapses_one_duration_after_recovery():
    lv = LeaseLiveness()
    polled(lv, 0.0, 5.0, lease("t0", "1", 10.0))
    lv.poll_failed(6.0)
    polled(lv, 46.0, 56.0, lease("t0", "1", 10.0))
    assert lv.state(K, 56.0) is Liveness.ALIVE
    lv.observe(lease("t0", "1", 10.0), 56.5)
    assert lv.state(K, 56.5) is Liveness.LAPSED


def test_a_long_gap_between_polls_counts_as_an_outage():
    """A stalled master (a long engine step) saw no renewals: that is not the framework's fault."""
    lv = LeaseLiveness(max_poll_gap=5.0)
    lv.observe(lease("t0", "1", 10.0), 0.0)
    assert lv.state(K, 30.0) is Liveness.UNKNOWN  # no poll for 30 s: the master cannot judge
    lv.observe(lease("t0", "1", 10.0), 30.0)
    assert lv.state(K, 30.0) is Liveness.ALIVE
    polled(lv, 31.0, 40.5, lease("t0", "1", 10.0), step=0.5)
    assert lv.state(K, 40.5) is Liveness.LAPSED


def test_before_the_first_poll_and_after_a_failed_one_nothing_is_judged():
    lv = LeaseLiveness()
    assert lv.state(K, 0.0) is Liveness.NO_LEASE
    lv.observe(lease("t0", "1"), 0.0)
    lv.poll_failed(100.0)
    assert lv.state(K, 100.0) is Liveness.UNKNOWN


def test_observe_reports_appeared_changed_and_removed_leases_only():
    lv = LeaseLiveness()
    assert lv.observe(lease("t0", "1"), 0.0) == {K}
    assert lv.observe(lease("t0", "1"), 1.0) == set()
    assert lv.observe(lease("t1", "2"), 2.0) == {K}
    assert lv.observe({}, 3.0) == {K}
    assert lv.state(K, 3.0) is Liveness.NO_LEASE


# ---- the engine's framework lifecycle on top of it: a fake API (no I/O) and a fake monotonic clock


class FakeKube:
    """Records the lifecycle's writes; Lease LISTs answer from `leases` or raise while `down`."""

    def __init__(self) -> None:
        self.leases: list = []
        self.down = False
        self.status_patches: list[tuple[str, dict]] = []
        self.coordination = self
        self.core = self

    def list_lease_for_all_namespaces(self, **_):
        from kubernetes.client import V1LeaseList

        if self.down:
            raise ConnectionResetError("connection reset by peer")
        return V1LeaseList(items=list(self.leases))

    def patch_status(self, plural: str, ns: str, name: str, body: dict) -> dict:
        self.status_patches.append((f"{ns}/{name}", body["status"]))
        fw = dict(FRAMEWORK)
        fw["status"] = {**FRAMEWORK["status"], **body["status"]}
        return fw

    def create_namespaced_event(self, *_a, **_k):
        return None


FRAMEWORK = {
    "apiVersion": "mesoskube.io/v1alpha1",
    "kind": "Framework",
    "metadata": {"name": "fw", "namespace": "ns", "uid": "fu", "resourceVersion": "1", "finalizers": []},
    "spec": {"roles": ["*"], "failoverTimeoutSeconds": 0},
    "status": {"phase": "Subscribed"},
}


def framework_lease(rv: int, renew_second: int):
    from datetime import UTC, datetime

    from kubernetes.client import V1Lease, V1LeaseSpec, V1ObjectMeta

    return V1Lease(
        metadata=V1ObjectMeta(name="fw", namespace="ns", resource_version=str(rv)),
        spec=V1LeaseSpec(
            # The master's wall clock in these tests is 1e9 + the fake monotonic one.
            lease_duration_seconds=10,
            renew_time=datetime.fromtimestamp(1e9 + renew_second, tz=UTC),
        ),
    )


def lifecycle_engine(kube: FakeKube, clock: list[float]):
    from mesoskube.master.cache import Cache
    from mesoskube.master.engine import Engine
    from mesoskube.settings import Settings

    cache = Cache()
    cache.upsert("frameworks", FRAMEWORK)
    engine = Engine(kube=kube, settings=Settings(), cache=cache, clock=lambda: 1e9 + clock[0])  # type: ignore[arg-type]
    engine.monotonic = lambda: clock[0]
    return engine


def run_lifecycle(engine, clock: list[float], kube: FakeKube, until: float, renewing: bool) -> None:
    while clock[0] < until:
        clock[0] += 1.0
        if renewing:
            kube.leases = [framework_lease(int(clock[0]), int(clock[0]))]
        engine.poll_leases(force=True)
        engine.reconcile_frameworks(engine.clock())


def phases(kube: FakeKube) -> list[str]:
    return [p["phase"] for _, p in kube.status_patches if "phase" in p]


def test_lifecycle_a_40s_api_outage_does_not_tear_down_a_framework_with_failover_timeout_0():
    kube, clock = FakeKube(), [0.0]
    engine = lifecycle_engine(kube, clock)
    run_lifecycle(engine, clock, kube, 5.0, renewing=True)
    kube.down = True
    run_lifecycle(engine, clock, kube, 45.0, renewing=False)
    kube.down = False
    run_lifecycle(engine, clock, kube, 47.0, renewing=False)  # the framework's SDK is still retrying
    run_lifecycle(engine, clock, kube, 60.0, renewing=True)
    assert phases(kube) == []
    engine.pool.shutdown()


def test_lifecycle_a_framework_whose_lease_stops_changing_is_disconnected_then_torn_down():
    kube, clock = FakeKube(), [0.0]
    engine = lifecycle_engine(kube, clock)
    run_lifecycle(engine, clock, kube, 5.0, renewing=True)
    run_lifecycle(engine, clock, kube, 15.0, renewing=False)
    assert phases(kube) == []  # 10 s lease, last change seen at 5
    run_lifecycle(engine, clock, kube, 17.0, renewing=False)
    assert phases(kube)[:1] == ["Disconnected"]
    assert "TornDown" in phases(kube)
    engine.pool.shutdown()
