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


# ---- the engine's framework lifecycle on top of it: the emulated API (fakeapi.py, no I/O) and a
# fake monotonic clock; the master's wall clock is 1e9 + the monotonic one.


def lifecycle_engine(clock: list[float]):
    from mesoskube.master.cache import Cache
    from mesoskube.master.engine import Engine
    from mesoskube.master.writer import ApiError
    from mesoskube.settings import Settings
    from tests.unit.fakeapi import FakeApi

    api = FakeApi()
    api.create(
        "frameworks",
        "ns",
        {"metadata": {"name": "fw"}, "spec": {"roles": ["*"], "failoverTimeoutSeconds": 0}},
    )
    api.patch_status("frameworks", "ns", "fw", {"status": {"phase": "Subscribed", "frameworkId": "uid-fw"}})
    cache = Cache()
    cache.upsert("frameworks", api.get("frameworks", K))
    engine = Engine(
        writer=api,
        settings=Settings(),
        cache=cache,
        clock=lambda: 1e9 + clock[0],
        monotonic=lambda: clock[0],
        workers=0,
    )
    return engine, api, ApiError


def run_lifecycle(engine, api, clock: list[float], until: float, renewing: bool, seen: list[str]) -> None:
    while clock[0] < until:
        clock[0] += 1.0
        if renewing:
            n = int(clock[0])
            api.leases = {K: {"renew": f"t{n}", "version": str(n), "duration": 10.0}}
        engine.poll_leases(force=True)
        engine.reconcile_frameworks(engine.clock())
        phase = api.get("frameworks", K)["status"]["phase"]
        if phase != (seen[-1] if seen else "Subscribed"):
            seen.append(phase)


def test_lifecycle_a_40s_api_outage_does_not_tear_down_a_framework_with_failover_timeout_0():
    clock, seen = [0.0], []
    engine, api, ApiError = lifecycle_engine(clock)
    run_lifecycle(engine, api, clock, 5.0, renewing=True, seen=seen)
    api.fail("list:leases", ApiError(0, "ConnectionResetError: connection reset by peer"), times=1000)
    run_lifecycle(engine, api, clock, 45.0, renewing=False, seen=seen)
    api.failures["list:leases"].clear()
    run_lifecycle(
        engine, api, clock, 47.0, renewing=False, seen=seen
    )  # the framework's SDK is still retrying
    run_lifecycle(engine, api, clock, 60.0, renewing=True, seen=seen)
    assert seen == []


def test_lifecycle_a_framework_whose_lease_stops_changing_is_disconnected_then_torn_down():
    clock, seen = [0.0], []
    engine, api, _ = lifecycle_engine(clock)
    run_lifecycle(engine, api, clock, 5.0, renewing=True, seen=seen)
    run_lifecycle(engine, api, clock, 15.0, renewing=False, seen=seen)
    assert seen == []  # 10 s lease, last change seen at 5
    run_lifecycle(engine, api, clock, 17.0, renewing=False, seen=seen)
    assert seen[:1] == ["Disconnected"]
    assert "TornDown" in seen
