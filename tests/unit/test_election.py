"""The elector's renew deadline holds even while a renewal hangs inside a request (a watchdog, on a
fake clock): a leader must stop before any standby may take over. The Lease logic itself is the
kubernetes client's, tested against the API server in tests/cluster/test_election.py."""

from __future__ import annotations

import threading

import pytest
from kubernetes import client

from mesoskube.kube import Kube
from mesoskube.master.election import LeaderElector


def elector(clock: list[float], on_started, on_lost) -> LeaderElector:
    kube = Kube(client.ApiClient(client.Configuration(host="https://127.0.0.1:1")))  # never called
    return LeaderElector(
        kube, "lease", "ns", "me", 3, 2.0, 0.5, on_started=on_started, on_lost=on_lost, clock=lambda: clock[0]
    )


def test_a_renewal_hanging_in_a_request_still_ends_leadership_at_the_deadline():
    clock = [0.0]
    started, lost, hanging, release = (
        threading.Event(),
        threading.Event(),
        threading.Event(),
        threading.Event(),
    )
    el = elector(clock, started.set, lost.set)
    calls = []

    def try_acquire_or_renew() -> bool:
        calls.append(clock[0])
        if len(calls) == 1:
            return True  # acquired at t=0
        hanging.set()
        release.wait(10)  # the renewal hangs in its request
        return False

    el.election.try_acquire_or_renew = try_acquire_or_renew
    threading.Thread(target=el.run, daemon=True).start()
    assert started.wait(5) and el.leading.is_set()
    assert hanging.wait(5)
    clock[0] = 2.2  # past renewDeadline (2 s) since the renewal at t=0 was sent
    assert lost.wait(5), "leadership not given up while the renewal hung"
    assert not el.leading.is_set() and el.stopped.is_set()
    release.set()


def test_a_release_without_leadership_writes_nothing():
    el = elector([0.0], lambda: None, lambda: None)
    el.lock.get = lambda *_: pytest.fail("read the Lease")  # type: ignore[method-assign]
    assert el.release() is False


def test_timings_that_would_let_two_lead_are_refused():
    with pytest.raises(ValueError, match="leaseDuration"):
        LeaderElector(
            Kube(client.ApiClient(client.Configuration(host="https://127.0.0.1:1"))),
            "lease", "ns", "me", 2, 2.0, 0.5, on_started=lambda: None, on_lost=lambda: None,
        )  # fmt: skip


def test_a_standby_that_sees_the_lease_released_tries_at_once_not_at_its_next_retry():
    # A retry period far beyond any wait here: only the release it saw can bring the second try.
    kube = Kube(client.ApiClient(client.Configuration(host="https://127.0.0.1:1")))  # never called
    started = threading.Event()
    el = LeaderElector(
        kube, "lease", "ns", "me", 3000, 2000.0, 1000.0, on_started=started.set, on_lost=lambda: None
    )
    el.lock.api_instance = object()  # no watch of its own: the test plays the Lease's events
    tried = threading.Event()
    tries = []

    def try_acquire_or_renew() -> bool:
        tries.append(1)
        tried.set()
        return len(tries) > 1  # held by another at first; free on the try after the release

    el.election.try_acquire_or_renew = try_acquire_or_renew
    threading.Thread(target=el.run, daemon=True).start()
    try:
        assert tried.wait(5)
        el.lease_seen(client.V1Lease(spec=client.V1LeaseSpec(holder_identity="other")))
        assert not el._wake.is_set(), "a Lease held by another is no reason to try early"
        el.lease_seen(client.V1Lease(spec=client.V1LeaseSpec(holder_identity=None)))  # released
        assert started.wait(5), "the standby did not try again on seeing the Lease released"
        assert el.leading.is_set() and len(tries) == 2
        el._wake.clear()
        el.lease_seen(client.V1Lease(spec=client.V1LeaseSpec(holder_identity=None)))
        assert not el._wake.is_set(), "a leader's renewals are not hurried by the watch"
    finally:
        el.stop()


def test_after_a_slow_acquire_the_next_renewal_goes_at_once_not_a_retry_period_later():
    # The acquire takes 1,500 s of a 2,000 s renew deadline on the fake clock; the retry period is
    # 1,000 s: waiting it out would pass the deadline (and no real test waits that long).
    clock = [0.0]
    kube = Kube(client.ApiClient(client.Configuration(host="https://127.0.0.1:1")))  # never called
    el = LeaderElector(
        kube, "lease", "ns", "me", 3000, 2000.0, 1000.0,
        on_started=lambda: None, on_lost=lambda: None, clock=lambda: clock[0],
    )  # fmt: skip
    renewed = threading.Event()
    tries = []

    def try_acquire_or_renew() -> bool:
        tries.append(clock[0])
        if len(tries) == 1:
            clock[0] += 1500.0  # a slow acquire
        else:
            renewed.set()
        return True

    el.election.try_acquire_or_renew = try_acquire_or_renew
    threading.Thread(target=el.run, daemon=True).start()
    try:
        assert renewed.wait(5), "the renewal waited a retry period after a slow acquire"
        assert el.leading.is_set() and tries[:2] == [0.0, 1500.0]
    finally:
        el.stop()
