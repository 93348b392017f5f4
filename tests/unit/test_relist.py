"""Ghosts after a re-list (relist.py): what was deleted while a watch was away is swept out by one
LIST once the re-list has gone quiet, and the master reacts as to a DELETED event; the first
listing sweeps nothing. Fake API and clock, no threads."""

from __future__ import annotations

import copy

from mesoskube.master.cache import Cache
from mesoskube.master.relist import RELIST_QUIET
from tests.unit.enginerig import Rig, node_body, task_info


def relist(rig: Rig, kind: str, *keys: str) -> None:
    """kopf listing `kind` again: a listing event (type None) for each object still there."""
    for key in keys:
        rig.handlers.event(kind, "", rig.api.get(kind, key) or rig.cache.__dict__[kind][key])


def shown_by_watch(rig: Rig, kind: str) -> None:
    """What kopf's watch showed of every object the cache holds (the rig's watch skips objects the
    master wrote itself, whose versions it already holds)."""
    for body in list(getattr(rig.cache, kind).values()):
        rig.handlers.event(kind, "MODIFIED", body)


def rig_with_two_offers() -> tuple[Rig, str, str]:
    """Offers on n1 and n2, both shown by the watch."""
    rig = Rig()
    rig.node("n1")
    rig.node("n2")
    rig.framework()
    rig.step()
    rig.watch()
    o1, o2 = rig.offer_on("n1"), rig.offer_on("n2")
    shown_by_watch(rig, "offers")
    return rig, o1, o2


def deleted_unseen(rig: Rig, offer: str) -> None:
    """Deleted while the master's watch was away: no DELETED event will ever come for it."""
    ns, _, name = offer.partition("/")
    del rig.api.objects["offers"][(ns, name)]


def lists(rig: Rig, kind: str) -> int:
    return rig.api.calls.count((f"list:{kind}",))


def test_an_offer_deleted_while_the_watch_was_away_is_swept_and_its_agent_offered_again() -> None:
    rig, o1, o2 = rig_with_two_offers()
    deleted_unseen(rig, o1)
    relist(rig, "offers", o2)  # the re-list after the 410 shows only what is left
    rig.step(watch=False)
    assert o1 in rig.cache.offers and lists(rig, "offers") == 0  # not while the re-list may go on
    rig.step(advance=RELIST_QUIET, watch=False)
    assert lists(rig, "offers") == 1
    assert o1 not in rig.cache.offers and o2 in rig.cache.offers
    rig.step(advance=1.0)  # the allocation cycle: n1 is free again
    assert {o["spec"]["agent"] for o in rig.offers().values()} == {"n1", "n2"}
    rig.step(advance=RELIST_QUIET * 2)
    assert lists(rig, "offers") == 1  # one sweep per re-list


def test_the_first_listing_sweeps_nothing() -> None:
    """kopf's first listing shows objects the handlers have not seen from it (the seed LISTed them):
    no sign of a re-list, no extra LIST."""
    rig = Rig()
    rig.node("n1")
    rig.framework()
    rig.step()
    for kind in ("frameworks", "offers"):
        for key, body in list(getattr(rig.cache, kind).items()):
            if key not in rig.handlers.shown[kind]:
                rig.handlers.event(kind, "", body)
    rig.handlers.shown.clear()  # as if every event so far were the first listing's
    for body in list(rig.cache.offers.values()):
        rig.handlers.event("offers", "", body)
    rig.step(advance=RELIST_QUIET * 2)
    assert lists(rig, "offers") == 0 and lists(rig, "frameworks") == 0


def test_a_node_deleted_while_the_watch_was_away_is_removed_and_its_tasks_lost() -> None:
    rig, o1, _o2 = rig_with_two_offers()
    rig.accept(o1, task_info("t1"))
    rig.settle()
    rig.run_pod("ns/t1")
    rig.settle()
    assert rig.state("ns/t1") == "TASK_RUNNING"
    rig.handlers.event("nodes", "MODIFIED", node_body("n2"))  # both shown by the watch
    rig.handlers.event("nodes", "MODIFIED", node_body("n1"))
    rig.api.objects["nodes"][("", "n2")] = node_body("n2")  # n1 is gone from the API
    rig.handlers.event("nodes", "", node_body("n2"))
    rig.step(advance=RELIST_QUIET)
    assert "n1" not in rig.cache.nodes and "n2" in rig.cache.nodes
    rig.settle()
    assert rig.state("ns/t1") == "TASK_LOST"


def test_a_failed_sweep_list_is_tried_again() -> None:
    from mesoskube.master.writer import ApiError

    rig, o1, o2 = rig_with_two_offers()
    deleted_unseen(rig, o1)
    relist(rig, "offers", o2)
    rig.api.fail("list:offers", ApiError(503, "Unavailable"))
    rig.step(advance=RELIST_QUIET, watch=False)
    assert o1 in rig.cache.offers
    rig.step(advance=RELIST_QUIET, watch=False)
    assert o1 not in rig.cache.offers


def offer(name: str, rv: int) -> dict:
    return {
        "metadata": {"namespace": "ns", "name": name, "uid": f"u-{name}", "resourceVersion": str(rv)},
        "spec": {"framework": "fw", "agent": "n1", "resources": {"cpus": 1}},
        "status": {"phase": "Outstanding"},
    }


def test_ghosts_are_what_the_list_lacks_and_no_newer_event_touched() -> None:
    cache = Cache()
    for name, rv in (("old", 10), ("kept", 11), ("newer", 30)):
        cache.upsert("offers", offer(name, rv))
    cache.assume("offers", offer("assumed", 0))
    ghosts = cache.ghosts("offers", "20", {"ns/kept": "11"})
    # "newer" was written after the LIST's snapshot; "assumed" is still being created by the master.
    assert [g["metadata"]["name"] for g in ghosts] == ["old"]
    assert cache.ghosts("offers", "", {}) == []  # no list version: nothing can be judged


def test_versions_of_objects_no_longer_held_and_gone_from_the_api_are_dropped() -> None:
    cache = Cache()
    cache.upsert("offers", offer("answered", 10))
    cache.pop("offers", "ns/answered")  # the master ended it; its version stays against stale events
    assert cache.ghosts("offers", "20", {}) == []
    assert "offers:ns/answered" not in cache._versions


def test_make_chaos_counts_the_sweeps_from_what_a_replica_logs(caplog) -> None:
    """bench/chaos.py reads the replicas' logs: its pattern must match what the sweep logs."""
    from bench.chaos import relist_sweeps

    rig, o1, o2 = rig_with_two_offers()
    deleted_unseen(rig, o1)
    relist(rig, "offers", o2)
    with caplog.at_level("INFO", logger="mesoskube.master"):
        rig.step(advance=RELIST_QUIET, watch=False)
        relist(rig, "offers", o2)
        rig.step(advance=RELIST_QUIET, watch=False)
    assert relist_sweeps([caplog.text]) == ({"offers": 2}, {"offers": 1})


def test_a_ghost_is_not_deleted_when_a_newer_object_of_its_name_came_meanwhile() -> None:
    """The sweep decides on the cache, then delivers: an object recreated under the ghost's name
    and shown by the watch in between must stay."""
    rig, o1, o2 = rig_with_two_offers()
    deleted_unseen(rig, o1)
    relist(rig, "offers", o2)
    ghosts = rig.cache.ghosts
    newer = copy.deepcopy(rig.cache.offers[o1])

    def racing(kind, list_rv, listed):
        found = ghosts(kind, list_rv, listed)
        newer["metadata"]["resourceVersion"] = str(int(list_rv) + 5)
        newer["metadata"]["uid"] = "recreated"
        rig.handlers.event("offers", "ADDED", newer)  # kopf's thread, between decision and delivery
        return found

    rig.cache.ghosts = racing
    rig.step(advance=RELIST_QUIET, watch=False)
    assert rig.cache.offers[o1]["metadata"]["uid"] == "recreated"


def test_an_event_older_than_a_ghosts_deletion_does_not_bring_it_back() -> None:
    """kopf's stream can lag the sweep's LIST: an event it still carries for the ghost is older
    than the deletion the LIST saw."""
    rig, o1, o2 = rig_with_two_offers()
    stale = copy.deepcopy(rig.cache.offers[o1])
    deleted_unseen(rig, o1)
    relist(rig, "offers", o2)
    rig.step(advance=RELIST_QUIET, watch=False)
    assert o1 not in rig.cache.offers
    rig.handlers.event("offers", "MODIFIED", stale)
    assert o1 not in rig.cache.offers


def test_a_failing_sweep_is_logged_and_tried_again(caplog) -> None:
    rig, o1, o2 = rig_with_two_offers()
    deleted_unseen(rig, o1)
    relist(rig, "offers", o2)
    ghosts = rig.cache.ghosts
    calls: list[int] = []

    def once_broken(*args):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("broken")
        return ghosts(*args)

    rig.cache.ghosts = once_broken
    with caplog.at_level("WARNING", logger="mesoskube.master"):
        rig.step(advance=RELIST_QUIET, watch=False)
    assert "the sweep of offers after its re-list failed" in caplog.text and o1 in rig.cache.offers
    rig.step(advance=RELIST_QUIET, watch=False)
    assert o1 not in rig.cache.offers


def seeded(api_objects: dict[str, list[dict]]) -> Rig:
    """A master seeded from the emulated API (its start-up LIST)."""
    rig = Rig()
    for plural, bodies in api_objects.items():
        for body in bodies:
            rig.api.objects[plural][(body["metadata"].get("namespace", ""), body["metadata"]["name"])] = body
    return rig


def test_an_object_deleted_between_the_seed_and_kopfs_first_listing_is_swept_after_it() -> None:
    """The seed LIST and kopf's first listing are two snapshots: an Offer deleted between them is
    in the seed, not in kopf's listing, and no DELETED ever comes. One sweep per kind after the
    first listing has gone quiet removes it."""
    rig = seeded({"offers": [offer("gone", 10), offer("kept", 11)]})
    rig.engine.seed()
    assert "ns/gone" in rig.cache.offers
    del rig.api.objects["offers"][("ns", "gone")]
    rig.clock.advance(RELIST_QUIET / 2)
    rig.handlers.event("offers", "", rig.api.get("offers", "ns/kept"))  # kopf's first listing, later
    rig.step(advance=RELIST_QUIET * 0.75, watch=False)
    assert "ns/gone" in rig.cache.offers  # its listing has not been quiet long enough
    rig.step(advance=RELIST_QUIET, watch=False)
    assert "ns/gone" not in rig.cache.offers and "ns/kept" in rig.cache.offers


def test_a_deletion_seen_before_the_seeds_older_copy_keeps_it_out() -> None:
    """kopf starts before the seed: its DELETED can come while the seed still pages through a
    LIST taken earlier, whose copy must not bring the object back (a tombstone)."""
    rig = seeded({"offers": [offer("x", 10)]})
    gone = offer("x", 12)
    rig.handlers.event("offers", "DELETED", gone)
    rig.engine.seed()  # its LIST (taken before the deletion) still holds x at version 10
    assert "ns/x" not in rig.cache.offers
