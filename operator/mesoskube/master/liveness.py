"""Framework liveness from heartbeat Leases, judged by the master's own clock (client-go's rule).

A Lease is alive while the master keeps seeing it change (its renewTime or resourceVersion): the
master notes *when it observed* each change on its own monotonic clock and never compares the
framework's clock (the renewTime's value) with its own, so skewed clocks cannot disconnect anyone.

Time only counts while the master's own view of the API server is healthy. While its Lease polls
fail nothing lapses (the verdict is UNKNOWN), and after an outage, or any gap longer than a Lease,
every framework gets a full lease duration from the master's recovery before it can lapse: a
framework cannot renew through an API server that does not answer, so an outage is never its fault.

Pure: times come in as arguments; lifecycle.py feeds it polls and asks for verdicts.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Liveness(enum.Enum):
    ALIVE = "alive"
    LAPSED = "lapsed"
    UNKNOWN = "unknown"  # the master cannot tell: its own view of the API server is not healthy
    NO_LEASE = "no-lease"  # never had a Lease (a framework driven by kubectl): treated as connected


@dataclass(slots=True)
class _Observed:
    version: tuple[str, str]  # (renewTime as written, resourceVersion)
    duration: float
    at: float  # master monotonic time when this version was first seen


@dataclass
class LeaseLiveness:
    # A poll gap longer than this (a stalled master, a long step) counts as an outage too.
    max_poll_gap: float = 10.0
    _seen: dict[str, _Observed] = field(default_factory=dict)
    _healthy_since: float | None = None  # None: the API view is not (yet) healthy
    _last_poll: float | None = None

    def observe(self, leases: dict[str, tuple[str, str, float]], now: float) -> set[str]:
        """A successful poll at `now` (monotonic): key -> (renewTime, resourceVersion, duration s).
        Returns the keys whose Lease appeared, changed or went away."""
        if self._healthy_since is None or self._stale(now):
            self._healthy_since = now
        self._last_poll = now
        changed = set(self._seen) - set(leases)
        for key in changed:
            del self._seen[key]
        for key, (renew, version, duration) in leases.items():
            seen = self._seen.get(key)
            if seen is None or seen.version != (renew, version):
                self._seen[key] = _Observed((renew, version), duration, now)
                changed.add(key)
            else:
                seen.duration = duration
        return changed

    def poll_failed(self, now: float) -> None:
        """The master could not read Leases: from now until a poll succeeds again nothing lapses."""
        self._healthy_since = None

    def state(self, key: str, now: float) -> Liveness:
        seen = self._seen.get(key)
        if seen is None:
            return Liveness.NO_LEASE
        if self._healthy_since is None or self._stale(now):
            return Liveness.UNKNOWN
        # The framework's renewals count from when the master could last see them arrive.
        since = max(seen.at, self._healthy_since)
        return Liveness.LAPSED if now - since > seen.duration else Liveness.ALIVE

    def _stale(self, now: float) -> bool:
        return self._last_poll is None or now - self._last_poll > self.max_poll_gap

    @property
    def healthy(self) -> bool:
        return self._healthy_since is not None
