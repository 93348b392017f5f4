"""The master's two client budgets: launches (Task and pod creates, spec patches, deletes) on one
client, what it tells frameworks (Offers, status patches, Events) on another (writer.py), and the
rate limiter that paces each and reports its wait."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mesoskube.kube import RateLimiter
from mesoskube.master.writer import KubeWriter


class RecordingKube:
    """Records which client a request went through; no API server (routing only)."""

    def __init__(self, name: str, calls: list) -> None:
        self.name, self.calls = name, calls
        self.core = SimpleNamespace(create_namespaced_event=self._event)
        self.custom = SimpleNamespace(
            patch_cluster_custom_object_status=lambda *a: calls.append((name, "role status")) or {}
        )

    def _event(self, ns, body, **kw):
        self.calls.append((self.name, "event"))
        return SimpleNamespace(read=lambda: b"{}", release_conn=lambda: None)  # a raw answer

    def create(self, plural, ns, body):
        self.calls.append((self.name, f"create {plural}"))
        return body

    def patch(self, plural, ns, name, body):
        self.calls.append((self.name, f"patch {plural}"))
        return body

    def patch_status(self, plural, ns, name, body):
        self.calls.append((self.name, f"status {plural}"))
        return body

    def delete(self, plural, ns, name):
        self.calls.append((self.name, f"delete {plural}"))

    def delete_collection(self, plural, ns, field_selector):
        self.calls.append((self.name, f"deletecollection {plural}"))


def test_launches_go_through_the_launch_client_and_messages_to_frameworks_through_the_other() -> None:
    calls: list = []
    w = KubeWriter(RecordingKube("launch", calls), RecordingKube("status", calls))
    w.create("tasks", "ns", {})
    w.patch("tasks", "ns", "t", {"spec": {"kill": True}})
    w.delete("tasks", "ns", "t")
    w.patch("frameworks", "ns", "f", {"metadata": {"finalizers": []}})
    w.create("offers", "ns", {})
    w.delete("offers", "ns", "o")
    w.delete_collection("offers", "ns", "status.phase=Declined")
    w.patch_status("tasks", "ns", "t", {"status": {"state": "TASK_RUNNING"}})
    w.create_event("ns", {})
    w.patch_role_status("r", {})
    assert calls == [
        ("launch", "create tasks"),
        ("launch", "patch tasks"),
        ("launch", "delete tasks"),
        ("launch", "patch frameworks"),
        ("status", "create offers"),
        ("status", "delete offers"),
        ("status", "deletecollection offers"),
        ("status", "status tasks"),
        ("status", "event"),
        ("status", "role status"),
    ]


def test_one_client_carries_everything_without_a_status_client() -> None:
    calls: list = []
    w = KubeWriter(RecordingKube("only", calls))
    w.create("tasks", "ns", {})
    w.patch_status("tasks", "ns", "t", {})
    w.create_event("ns", {})
    assert {c[0] for c in calls} == {"only"}


def test_rate_limiter_spends_the_burst_then_waits_one_token_period() -> None:
    now = [100.0]
    slept: list[float] = []
    lim = RateLimiter(qps=10, burst=2, clock=lambda: now[0], sleep=slept.append)
    assert lim.wait() == 0.0 and lim.wait() == 0.0  # the burst
    assert lim.wait() == 0.1 and slept == [0.1]  # one token at 10 QPS
    now[0] += 1.0  # tokens refill up to the burst, not beyond
    assert lim.wait() == 0.0 and lim.wait() == 0.0
    assert lim.wait() > 0


def test_rate_limiter_off_at_qps_zero() -> None:
    lim = RateLimiter(qps=0, burst=1, sleep=lambda s: (_ for _ in ()).throw(AssertionError("slept")))
    assert all(lim.wait() == 0.0 for _ in range(100))


class FailingKube:
    """Every create fails with `error` (no API server)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def create(self, *a, **kw):
        raise self.error


def test_what_the_writer_retries_a_policy_not_ready_and_a_transport_error_but_not_a_refusal() -> None:
    import pytest
    import urllib3
    from kubernetes.client.exceptions import ApiException

    from mesoskube.master.writer import ApiError

    not_ready = ApiException(status=422, reason="Unprocessable Entity")
    # What a restarted kube-apiserver answers for seconds, to the master's writes as to any other.
    not_ready.body = (
        "ValidatingAdmissionPolicy 'mesoskube-master-metadata' denied request: failed to configure "
        "policy: failed to find resource referenced by paramKind: 'mesoskube.io/v1alpha1, Kind=Framework'"
    )
    refused = ApiException(status=422, reason="Unprocessable Entity")
    refused.body = "spec.resources.cpus: Invalid value"
    dropped = urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError())
    # NamespaceLifecycle admission of a kube-apiserver just started (make chaos: 275 pod creates).
    starting = ApiException(status=403, reason="Forbidden")
    starting.body = (
        '{"kind":"Status","message":"pods \\"t1\\" is forbidden: not yet ready to handle request"}'
    )
    forbidden = ApiException(status=403, reason="Forbidden")
    forbidden.body = '{"kind":"Status","message":"pods is forbidden: User \\"x\\" cannot create resource"}'
    # A fresh namespace before the controller-manager made its `default` ServiceAccount (make chaos);
    # a ServiceAccount of another name that does not exist is the framework's error.
    no_default_sa = ApiException(status=403, reason="Forbidden")
    no_default_sa.body = (
        '{"message":"pods \\"t000001\\" is forbidden: error looking up service account '
        'chaos-c9-b69f3/default: serviceaccount \\"default\\" not found"}'
    )
    no_other_sa = ApiException(status=403, reason="Forbidden")
    no_other_sa.body = no_default_sa.body.replace("/default", "/spark").replace(
        '\\"default\\"', '\\"spark\\"'
    )
    cases = (
        (not_ready, True),
        (refused, False),
        (dropped, True),
        (starting, True),
        (forbidden, False),
        (no_default_sa, True),
        (no_other_sa, False),
    )
    for error, retriable in cases:
        with pytest.raises(ApiError) as raised:
            KubeWriter(FailingKube(error)).create("tasks", "ns", {})
        assert raised.value.retriable is retriable, (error, raised.value)
    with pytest.raises(ApiError) as raised:
        KubeWriter(FailingKube(forbidden)).create("tasks", "ns", {})
    assert raised.value.message == 'pods is forbidden: User "x" cannot create resource'  # the server's words


def test_a_deferrable_request_waits_behind_those_booked_ahead() -> None:
    """Task status patches and Events (deferrable) yield to Offer writes on the status client: an
    Offer write may book a token ahead, a status patch waits until the bucket holds one again."""
    now = [100.0]

    def sleep(s: float) -> None:
        now[0] += s

    lim = RateLimiter(qps=10, burst=1, clock=lambda: now[0], sleep=sleep)
    assert lim.wait() == 0.0  # the burst's token
    start = now[0]
    lim.tokens -= 2  # two Offer writes booked ahead (0.1 s and 0.2 s from now)
    assert lim.wait(deferrable=True) == pytest.approx(0.3)  # after both, then its own token
    assert now[0] - start == pytest.approx(0.3)


def test_a_deferred_request_books_after_max_defer_so_a_status_is_late_never_lost() -> None:
    now = [100.0]

    def sleep(s: float) -> None:
        now[0] += s

    lim = RateLimiter(qps=10, burst=1, clock=lambda: now[0], sleep=sleep, max_defer=0.5)
    lim.wait()
    lim.tokens -= 100  # booked far ahead (10 s of Offer writes)
    waited = lim.wait(deferrable=True)
    assert 0.5 <= waited <= 10.2  # deferred 0.5 s, then booked behind the debt like any other


def test_the_writer_defers_task_status_patches_and_events_but_not_offer_writes() -> None:
    from mesoskube import kube as kube_module
    from mesoskube.master.writer import KubeWriter

    seen: list[tuple[str, bool]] = []

    class Recording:
        def patch_status(self, plural, ns, name, body):
            seen.append((plural, getattr(kube_module._PRIORITY, "deferrable", False)))
            return body

        def create(self, plural, ns, body):
            seen.append((plural, getattr(kube_module._PRIORITY, "deferrable", False)))
            return body

    w = KubeWriter(Recording())  # type: ignore[arg-type]
    w.patch_status("tasks", "ns", "t", {})
    w.patch_status("offers", "ns", "o", {})
    w.create("offers", "ns", {})
    assert seen == [("tasks", True), ("offers", False), ("offers", False)]
