"""The master's reflectors for nodes and pods (reflector.py): one LIST, a WATCH resumed from the last
version seen (bookmarks included), a LIST again after 410 Gone that replaces the cache (what it
lacks is delivered DELETED), and failures backed off with jitter. A scripted source in place of the
API server, the master's real handlers and cache (enginerig), no threads and no waits."""

from __future__ import annotations

import random
import threading

import pytest

from mesoskube import metrics
from mesoskube.master.reflector import BACKOFF_FIRST, BACKOFF_MAX, Reflector
from mesoskube.master.writer import ApiError
from tests.unit.enginerig import Rig, node_body


def node(name: str, rv: int) -> dict:
    body = node_body(name)
    body["metadata"]["resourceVersion"] = str(rv)
    return body


class Stream:
    def __init__(self, events: list[dict], on_event=None) -> None:
        self.events, self.closed, self.on_event = events, False, on_event

    def __iter__(self):
        for e in self.events:
            if self.closed:  # as a shut-down socket: the read fails
                raise ConnectionResetError("shut down")
            yield e
            if self.on_event:
                self.on_event()

    def close(self) -> None:
        self.closed = True


class Source:
    """Answers LISTs and WATCHes from scripts; an exception in a script is raised by that call."""

    def __init__(self, lists: list, watches: list) -> None:
        self.lists, self.watches = lists, watches
        self.watched_from: list[str] = []
        self.listed = 0

    def list_kind(self, kind: str):
        self.listed += 1
        got = self.lists.pop(0)
        if isinstance(got, Exception):
            raise got
        return got

    def watch_kind(self, kind: str, resource_version: str, timeout_seconds: int):
        assert 300 <= timeout_seconds <= 600  # the server ends it, spread as client-go spreads them
        self.watched_from.append(resource_version)
        got = self.watches.pop(0)
        if isinstance(got, Exception):
            raise got
        return got


class Waits(threading.Event):
    """A stop flag whose timed waits return at once and are recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        return self.is_set()


def reflector(rig: Rig, source: Source, kind: str = "nodes") -> Reflector:
    return Reflector(
        kind, source, rig.handlers.reflected, rig.engine.ghosts.settle, stopping=Waits(), rng=random.Random(7)
    )


def test_one_list_then_a_watch_resumed_from_the_last_version_bookmarks_included() -> None:
    rig = Rig()
    n1 = node("n1", 11)
    n1["status"]["allocatable"]["cpu"] = "16"
    stream = Stream(
        [
            {"type": "MODIFIED", "object": n1},
            {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}},
        ]
    )
    source = Source(lists=[("10", [node("n1", 9), node("n2", 10)])], watches=[stream, Stream([])])
    r = reflector(rig, source)
    r.step()
    assert r.synced.is_set() and set(rig.cache.nodes) == {"n1", "n2"}
    r.step()  # the watch, until the server ends it
    assert rig.cache.nodes["n1"].allocatable.cpus == 16 and stream.closed
    r.step()
    assert source.watched_from == ["10", "15"] and source.listed == 1


@pytest.mark.parametrize(
    "gone",
    [
        Stream([{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}]),
        ApiError(410, "Gone"),  # the WATCH request itself refused
    ],
)
def test_after_410_gone_a_new_list_replaces_the_cache_and_what_went_meanwhile_is_deleted(gone) -> None:
    rig = Rig()
    ghosts = metrics.relist_ghosts.labels(kind="nodes")
    before = ghosts._value.get()
    source = Source(lists=[("10", [node("n1", 9), node("n2", 10)]), ("40", [node("n2", 10)])], watches=[gone])
    r = reflector(rig, source)
    r.step()
    r.step()  # 410: nothing resumes from version 10
    assert r.resource_version == "" and r.failures == 0
    r.step()
    # n1 was deleted while the watch was away: no DELETED came, the new LIST lacks it.
    assert set(rig.cache.nodes) == {"n2"} and ghosts._value.get() == before + 1
    assert r.resource_version == "40" and source.listed == 2


def test_a_relist_keeps_an_object_newer_than_the_list() -> None:
    """What a newer event showed (here: created after the LIST's snapshot) is not a ghost."""
    rig = Rig()
    gone = Stream([{"type": "ERROR", "object": {"code": 410}}])
    source = Source(lists=[("10", [node("n2", 10)]), ("40", [node("n2", 10)])], watches=[gone])
    r = reflector(rig, source)
    r.step()
    r.step()
    rig.handlers.reflected("nodes", "ADDED", node("n3", 50))  # between the 410 and the new LIST
    r.step()
    assert set(rig.cache.nodes) == {"n2", "n3"} and r.lists == 2 and r.ghosts == 0


def test_failures_back_off_exponentially_with_jitter_capped_and_reset_by_a_success() -> None:
    rig = Rig()
    reset = ConnectionResetError("reset by peer")
    source = Source(lists=[reset, reset, reset, reset, reset, ("10", [])], watches=[])
    r = reflector(rig, source)
    for _ in range(5):
        r.step()
    waits = r.stopping.waits
    bases = [BACKOFF_FIRST * 2**i for i in range(5)]
    assert all(min(b, BACKOFF_MAX) <= w <= 2 * min(b, BACKOFF_MAX) for w, b in zip(waits, bases, strict=True))
    assert waits[4] <= 2 * BACKOFF_MAX and r.failures == 5 and not r.synced.is_set()
    r.step()
    assert r.failures == 0 and r.synced.is_set()


def test_stop_closes_the_open_watch_and_ends_the_loop() -> None:
    rig = Rig()
    r = None

    def stop_now() -> None:
        r.stop()

    stream = Stream(
        [{"type": "ADDED", "object": node("n9", 11)}, {"type": "ADDED", "object": node("n8", 12)}], stop_now
    )
    source = Source(lists=[("10", [])], watches=[stream])
    r = reflector(rig, source)
    r.run()  # returns: stopped during the watch
    assert stream.closed and set(rig.cache.nodes) == {"n9"}


def test_the_seed_lists_neither_nodes_nor_pods_when_reflectors_fill_them() -> None:
    """One LIST per kind at start: the reflectors' (issue 11); the seed lists only the rest."""
    rig = Rig()
    rig.node("n1")
    rig.engine.seed()
    assert {"list:nodes", "list:pods"} <= {c[0] for c in rig.api.calls}  # without reflectors: seeded
    rig = Rig()
    rig.node("n1")
    rig.engine.reflected = frozenset({"nodes", "pods"})
    rig.engine.seed()
    assert not {"list:nodes", "list:pods"} & {c[0] for c in rig.api.calls}
