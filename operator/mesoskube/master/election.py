"""Leader election of master replicas on a coordination.k8s.io Lease.

The Lease record and the acquire-or-renew decision are the kubernetes client's
(`kubernetes.leaderelection`: LeaseLock and LeaderElection.try_acquire_or_renew, client-go's rule:
a standby takes over only once the holder's record has not changed for a lease duration *as
observed by the standby's own clock*; updates are optimistic, so two candidates cannot both win).
Its loop is not used: it cannot be stopped, never releases the Lease, allows no retry period under
1 s and uses the process-wide default client. This loop adds those, and client-go's renew deadline:
a leader that has not renewed for `renew_deadline` stops leading (the runner then exits, as
kube-scheduler does), which is before any standby can take over (`lease_duration` > `renew_deadline`).

`release()` (on SIGTERM, after the engine has stopped writing) empties the holder and sets a 1 s
duration, as client-go's ReleaseOnCancel does. A standby watches the Lease and tries again as soon
as it sees it released, rather than at its next retry: a graceful handover takes one round trip.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubernetes import client, watch
from kubernetes.leaderelection.leaderelection import LeaderElection
from kubernetes.leaderelection.leaderelectionrecord import LeaderElectionRecord
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

from mesoskube.kube import Kube
from mesoskube.mesosapi.leader import annotate

log = logging.getLogger("mesoskube.master.election")
WATCHDOG_PERIOD = 0.1


class _TimedLeases:
    """The three Lease calls LeaseLock makes, on our client, each with a request timeout: a hung
    request must not outlive the renew deadline."""

    def __init__(
        self,
        kube: Kube,
        timeout: float,
        identity: str = "",
        annotations: Callable[[], dict[str, str]] | None = None,
    ) -> None:
        # Our own client, without urllib3's 3 retries per call: one try is bounded by `timeout`.
        cfg = copy.copy(kube.api.configuration)
        cfg.retries = False
        self.api, self.timeout = client.CoordinationV1Api(client.ApiClient(cfg)), timeout
        self.identity, self.annotations = identity, annotations

    def _annotate(self, body: Any) -> Any:
        """What the holder advertises (its Mesos HTTP address) rides on its own writes of the Lease:
        no extra request, and gone with the release."""
        if self.annotations is None:
            return body
        meta = body.metadata
        if isinstance(meta, dict):  # LeaseLock.create passes {"name": ...}
            meta = body.metadata = client.V1ObjectMeta(**meta)
        holder = body.spec.holder_identity if body.spec is not None else None
        meta.annotations = annotate(meta.annotations, holder, self.identity, self.annotations()) or None
        return body

    def watch_lease(
        self, name: str, namespace: str, on_event: Callable[[Any], None], stopped: threading.Event
    ) -> None:
        """Every event of the one Lease, until `stopped`; reconnects (with backoff) when the watch
        ends or fails. Only a hint to try early: the acquire decision never depends on it."""
        backoff = 0.2
        while not stopped.is_set():
            w = watch.Watch()
            self._watch = w
            try:
                for event in w.stream(
                    self.api.list_namespaced_lease,
                    namespace,
                    field_selector=f"metadata.name={name}",
                    timeout_seconds=60,
                    _request_timeout=90,
                ):
                    backoff = 0.2
                    if stopped.is_set():
                        return
                    on_event(event["object"] if event["type"] != "DELETED" else None)
            except Exception as e:
                if stopped.is_set():
                    return
                log.debug("watching lease %s/%s: %s; again in %.1fs", namespace, name, e, backoff)
                stopped.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def stop_watch(self) -> None:
        w = getattr(self, "_watch", None)
        if w is not None:
            w.stop()

    def read_namespaced_lease(self, name: str, namespace: str) -> Any:
        return self.api.read_namespaced_lease(name, namespace, _request_timeout=self.timeout)

    def create_namespaced_lease(self, namespace: str, body: Any) -> Any:
        return self.api.create_namespaced_lease(
            namespace, self._annotate(body), _request_timeout=self.timeout
        )

    def replace_namespaced_lease(self, name: str, namespace: str, body: Any) -> Any:
        return self.api.replace_namespaced_lease(
            name, namespace, self._annotate(body), _request_timeout=self.timeout
        )


@dataclass
class _Config:
    """What LeaderElection.try_acquire_or_renew reads from its config (its own Config class exits
    the process on a retry period under 1 s)."""

    lock: LeaseLock
    lease_duration: int


class LeaderElector:
    def __init__(
        self,
        kube: Kube,
        name: str,
        namespace: str,
        identity: str,
        lease_duration: int,
        renew_deadline: float,
        retry_period: float,
        on_started: Callable[[], None],
        on_lost: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
        annotations: Callable[[], dict[str, str]] | None = None,
    ) -> None:
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError(
                f"leader election needs leaseDuration ({lease_duration}) > renewDeadline ({renew_deadline})"
                f" > retryPeriod ({retry_period}) > 0"
            )
        self.name, self.namespace, self.identity = name, namespace, identity
        self.renew_deadline, self.retry_period = renew_deadline, retry_period
        self.on_started, self.on_lost, self.clock = on_started, on_lost, clock
        self.lock = LeaseLock(name, namespace, identity)
        # A slow answer may still be a renewal in time: the watchdog, not the timeout, keeps the deadline.
        self.lock.api_instance = _TimedLeases(kube, renew_deadline, identity, annotations)
        self.election = LeaderElection(_Config(self.lock, int(lease_duration)))
        self.leading = threading.Event()
        self.stopped = threading.Event()
        self.heartbeat = clock()  # last turn of the loop (liveness)
        self.last_renew = 0.0
        self._release_lock = threading.Lock()
        self._lost_lock = threading.Lock()
        self.last_error = ""
        self._wake = threading.Event()  # try now, not at the next retry (a released Lease, stop())

    def _watchdog(self) -> None:
        """The renew deadline, kept even while a renewal hangs in a request: leadership ends at most
        renew_deadline + WATCHDOG_PERIOD after the last successful renewal was *sent*."""
        while not self.stopped.wait(WATCHDOG_PERIOD):
            if self.leading.is_set() and self.clock() - self.last_renew > self.renew_deadline:
                self._lose()
                return

    def _lose(self) -> None:
        with self._lost_lock:
            if not self.leading.is_set():
                return
            self.leading.clear()
        log.error(
            "lease %s/%s not renewed for %.1fs: leadership lost",
            self.namespace,
            self.name,
            self.clock() - self.last_renew,
        )
        self.stopped.set()
        self.on_lost()

    def lease_seen(self, lease: Any) -> None:
        """A watch event of the Lease (None: deleted). A standby that sees it free tries at once."""
        if self.leading.is_set():
            return
        holder = getattr(getattr(lease, "spec", None), "holder_identity", None) if lease is not None else None
        if not holder:
            self._wake.set()

    def _try(self) -> bool:
        try:
            self.last_error = ""
            return bool(self.election.try_acquire_or_renew())
        except Exception as e:  # a transport error: LeaseLock only catches ApiException
            self.last_error = f"{type(e).__name__}: {str(e)[:120]}"
            return False

    def run(self) -> None:
        """Until stop(): acquire, then renew; calls on_started once on acquiring, on_lost if the
        renew deadline passes (and then returns: a master that lost the Lease does not try again)."""
        log.info("candidate %s for lease %s/%s", self.identity, self.namespace, self.name)
        watchdog = threading.Thread(target=self._watchdog, name="mesoskube-election-watchdog", daemon=True)
        watchdog.start()
        api = self.lock.api_instance
        if hasattr(api, "watch_lease"):
            threading.Thread(
                target=api.watch_lease,
                args=(self.name, self.namespace, self.lease_seen, self.stopped),
                name="mesoskube-election-watch",
                daemon=True,
            ).start()
        while not self.stopped.is_set():
            self._wake.clear()  # a release seen from here on makes the wait below end at once
            sent = self.clock()  # a renewal counts from when it was sent: the conservative end
            self.heartbeat = sent
            with self._release_lock:
                if self.stopped.is_set():
                    break
                ok = self._try()
            if self.leading.is_set():
                took = self.clock() - sent
                if not ok or took > self.renew_deadline / 2:
                    # Rare on a healthy API server; the way to tell a tight renewDeadline from an outage.
                    log.warning(
                        "lease renewal %s after %.2fs%s",
                        "succeeded" if ok else "failed",
                        took,
                        f" ({self.last_error})" if self.last_error else "",
                    )
                if ok:
                    self.last_renew = sent
                elif self.clock() - self.last_renew > self.renew_deadline:
                    self._lose()
                    return
            elif ok and not self.stopped.is_set():
                self.last_renew = sent
                self.leading.set()
                log.info("%s is the leader (lease %s/%s)", self.identity, self.namespace, self.name)
                self.on_started()
            # Tries start a retry period apart, however long one took: after a slow acquire or
            # renewal (an API server recovering) the next goes at once, not a full period later,
            # when the renew deadline (counted from `sent`) may already have passed.
            self._wake.wait(max(0.0, sent + self.retry_period - self.clock()))
        stop_watch = getattr(api, "stop_watch", None)
        if stop_watch is not None:
            stop_watch()

    def stop(self) -> None:
        self.stopped.set()
        self._wake.set()

    def release(self) -> bool:
        """Give the Lease up (only if we hold it); a standby watching it acquires it at once."""
        self.stop()
        with self._release_lock:
            if not self.leading.is_set():
                return False
            self.leading.clear()
            try:
                found, record = self.lock.get(self.name, self.namespace)
                if not found or record.holder_identity != self.identity:
                    return False
                now = str(datetime.now())
                released = self.lock.update(
                    self.name, self.namespace, LeaderElectionRecord("", "1", now, now)
                )
            except Exception as e:
                log.warning("releasing lease %s/%s failed: %s", self.namespace, self.name, e)
                return False
            if released:
                log.info("released lease %s/%s", self.namespace, self.name)
            return bool(released)
