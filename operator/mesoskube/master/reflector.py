"""A reflector per built-in kind (nodes, pods), as client-go's: one LIST, then a WATCH from the
LIST's resourceVersion, resumed from the last version seen when it ends or breaks; after a 410
Gone (that version compacted, or a kube-apiserver restarted with a fresh watch cache) a LIST
again, which replaces what the cache holds: what it lacks is delivered as DELETED
(GhostSweep.settle), so no ghost outlives a re-list.

Nodes and pods are where the numbers are (10,000 Nodes; two or three pod events per task in a
burst, on top of kubelets' status patches), so they do not go through kopf: its start listed them
a second time after the master's own LIST, its per-event machinery cost about a third of the
master's CPU in a 2,000-task burst (py-spy), and its handlers never see where a listing ends.

The Kubernetes client's SharedInformer (kubernetes.informer, client 37) was the first choice and
does not fit: over raw dicts its Watch records no resourceVersion (so every reconnect replays from
the first LIST), over the client's models it pays their deserialization (about 10 ms per pod,
measured for creates), it retries a broken watch at once without a backoff, and it has no signal
for "listed". Its wire pieces are reused (kube.py: the client's line reader, its socket shutdown).

Each reflector runs on a thread of its own and delivers into the handlers under the cache's lock
(handlers.py); nothing here decides anything.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from mesoskube import metrics
from mesoskube.master.cache import key_of

log = logging.getLogger("mesoskube.master")

# client-go's reflector: a watch asks the server to end it after 5-10 minutes (spread, so that
# many clients do not reconnect together); failures back off from 0.8 s, with jitter. Capped at 5 s,
# not client-go's 30 s: this is one master, not thousands of kubelets, and its view of the agents is
# what it offers (a kube-apiserver restarted after 12 s is seen again within about 5 s).
WATCH_TIMEOUT = (300, 600)
BACKOFF_FIRST, BACKOFF_MAX = 0.8, 5.0
REMIND_EVERY = 12


class Stream(Protocol):
    def __iter__(self): ...
    def close(self) -> None: ...


class Source(Protocol):
    """What a reflector reads (KubeWriter, on a client of its own; a fake in unit tests)."""

    def list_kind(self, kind: str) -> tuple[str, list[dict]]: ...
    def watch_kind(self, kind: str, resource_version: str, timeout_seconds: int) -> Stream: ...


class Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


def _gone(status: object) -> bool:
    return isinstance(status, dict) and (
        status.get("code") == 410 or status.get("reason") in ("Expired", "Gone")
    )


@dataclass
class Reflector:
    kind: str
    source: Source
    # (kind, event type, body) into the handlers; "" is a listing event.
    deliver: Callable[[str, str, dict], None]
    # After a listing: deliver as DELETED what the cache holds that the listing lacks (relist.py).
    settle: Callable[[str, str, dict[str, str]], int]
    stopping: threading.Event = field(default_factory=threading.Event)
    rng: random.Random = field(default_factory=random.Random)
    synced: threading.Event = field(default_factory=threading.Event)  # set after the first LIST
    resource_version: str = ""  # where the next WATCH resumes; "" lists first
    failures: int = 0  # in a row; the backoff grows with them
    lists: int = 0  # LISTs done: 1 after the start, one more per re-list
    ghosts: int = 0  # objects its re-lists found deleted meanwhile
    _stream: Stream | None = None

    def run(self) -> None:
        while not self.stopping.is_set():
            self.step()

    def step(self) -> None:
        """One LIST (when there is no version to resume from) or one WATCH, until it ends; a
        failure is logged once per outage and waited out."""
        try:
            if not self.resource_version:
                self.list()
            else:
                self.watch()
        except Gone:
            log.info("watch of %s: version %s is gone; listing again", self.kind, self.resource_version)
            self.resource_version = ""
        except Exception as e:
            if self.stopping.is_set():
                return
            if getattr(e, "status", None) == 410:  # the WATCH request itself refused: too old
                log.info("watch of %s: version %s is gone; listing again", self.kind, self.resource_version)
                self.resource_version = ""
                return
            self.failures += 1
            metrics.watch_failures.labels(kind=self.kind).inc()
            delay = self.backoff()
            # One line when an outage starts, then one a minute or so while it lasts (issue 11:
            # not one per try); a master that cannot list at all (RBAC) keeps saying why.
            log.log(
                logging.WARNING if self.failures % REMIND_EVERY == 1 else logging.DEBUG,
                "%s of %s failed (%s); retrying in %.1fs",
                "LIST" if not self.resource_version else "WATCH",
                self.kind,
                _short(e),
                delay,
            )
            self.stopping.wait(delay)

    def backoff(self) -> float:
        """Exponential in the failures in a row, capped, with up to 100% jitter (client-go's)."""
        base = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self.failures - 1))
        return base * (1 + self.rng.random())

    def _recovered(self) -> None:
        if self.failures:
            log.info("%s watched again after %d failed tries", self.kind, self.failures)
            self.failures = 0

    def list(self) -> None:
        list_rv, items = self.source.list_kind(self.kind)
        metrics.watch_lists.labels(kind=self.kind).inc()
        self.lists += 1
        self._recovered()
        listed = {}
        for body in items:
            listed[key_of(body)] = (body.get("metadata") or {}).get("resourceVersion", "")
            self.deliver(self.kind, "", body)
        if self.lists > 1:  # the first LIST has nothing before it to replace
            self.ghosts += self.settle(self.kind, list_rv, listed)
        self.resource_version = list_rv
        self.synced.set()

    def watch(self) -> None:
        timeout = self.rng.randint(*WATCH_TIMEOUT)
        stream = self.source.watch_kind(self.kind, self.resource_version, timeout)
        self._stream = stream
        try:
            if self.stopping.is_set():
                return
            self._recovered()
            for event in stream:
                self.event(event.get("type") or "", event.get("object") or {})
                if self.stopping.is_set():
                    return
        finally:
            self._stream = None
            stream.close()

    def event(self, event_type: str, body: dict) -> None:
        if event_type == "ERROR":
            if _gone(body):
                raise Gone()
            raise RuntimeError(f"the watch sent an error: {body.get('message') or body}")
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if event_type in ("ADDED", "MODIFIED", "DELETED"):
            self.deliver(self.kind, event_type, body)
        if rv:  # bookmarks too: they carry nothing else
            self.resource_version = rv

    def stop(self) -> None:
        self.stopping.set()
        stream = self._stream
        if stream is not None:
            stream.close()


def _short(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text[:160]}"


def start(reflectors: Iterable[Reflector]) -> list[threading.Thread]:
    threads = []
    for r in reflectors:
        t = threading.Thread(target=r.run, name=f"mesoskube-watch-{r.kind}", daemon=True)
        t.start()
        threads.append(t)
    return threads
