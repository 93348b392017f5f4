"""kopf handlers: translate watch events into cache updates and work-queue keys; no API calls and
no decisions here. Allocation requests name the agents whose resources changed (candidates);
a node's heartbeat, which changes nothing the master reads, requests nothing.

`Handlers` is plain code (the engine's unit tests feed it events); `register` wires it to kopf.

One listing at start, kopf's own (no LIST of our own to seed the cache): every kind also has a kopf
index handler, and kopf holds every event handler back until each indexed kind's first listing has
been through its index handlers (its documented promise that indexes are complete before handlers
run). So the index handlers fill the cache from that listing, and the first event handler call
after it, for the API server's "default" Namespace, which always exists, says the cache is synced.
The event handler that kopf then calls for the same raw event skips what the index handler already
delivered.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kopf

from mesoskube import API_GROUP
from mesoskube.master import trace
from mesoskube.master.cache import Cache, key_of, resource_version
from mesoskube.master.engine import Engine
from mesoskube.master.objects import is_task_pod

NAMESPACED_CRDS = frozenset({"frameworks", "offers", "tasks"})
# A Namespace the API server creates and never lets go: its listing event is the first event handler
# call kopf lets through, whatever else the cluster holds (`register`).
ALWAYS_THERE = "default"


@dataclass
class Handlers:
    cache: Cache
    engine: Engine
    # Per kind, the keys kopf's watch has shown (any event but a deletion): a listing event for one
    # of them means kopf is listing that kind again, after a 410 (relist.py).
    shown: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    # Set once every kind's first listing is in the cache: the engine may start from it.
    synced: threading.Event = field(default_factory=threading.Event)
    # (kind, key) -> the version an index handler delivered, until kopf's event handler call for
    # the same raw event comes (each object's events pass kopf's handlers one at a time, in order).
    delivered: dict[tuple[str, str], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.engine.ghosts.deliver = lambda kind, body: self.event(kind, "DELETED", body)

    def _note(self, kind: str, event_type: str, body: dict) -> None:
        key = key_of(body)
        shown = self.shown[kind]
        if event_type == "DELETED":
            shown.discard(key)
        elif event_type or key not in shown:  # a watch event, or the first listing's
            shown.add(key)
        else:
            self.engine.relisted(kind)

    def indexed(self, kind: str, body: dict) -> None:
        """An object kopf shows its index handlers before the cache is synced: one of the first
        listing, or (rarely) a change that came while another kind was still listing."""
        key = key_of(body)
        self.delivered[(kind, key)] = resource_version(body)
        self.event(kind, "MODIFIED" if key in self.shown[kind] else "", body)

    def watched(self, kind: str, event_type: str, body: dict) -> None:
        """An event handler call: skipped when the index handler has delivered this raw event."""
        if self.delivered and self.delivered.pop((kind, key_of(body)), None) == resource_version(body):
            return
        self.event(kind, event_type, body)

    def node(self, event_type: str, body: dict) -> None:
        name = body["metadata"]["name"]
        if event_type == "DELETED":
            self.cache.delete_node(name, resource_version(body))
            self.engine.agent_removed(name)
        elif self.cache.upsert_node(body):
            self.engine.request_allocation([name])

    def pod(self, event_type: str, body: dict) -> None:
        key = key_of(body)
        ours = is_task_pod(body, self.engine.settings.schedulerName)
        if event_type == "DELETED":
            freed = self.cache.delete_pod(key, ours=ours, rv=resource_version(body))
        else:
            freed = self.cache.upsert_pod(body, ours=ours)
        if ours:
            self.engine.mark_task(key)
        if freed:
            self.engine.request_allocation([freed])

    def role(self, event_type: str, body: dict) -> None:
        if event_type == "DELETED":
            self.cache.delete("roles", body["metadata"]["name"], resource_version(body))
        else:
            self.cache.upsert("roles", body)
        self.engine.request_allocation()

    def mirrored(self, store: str, event_type: str, body: dict) -> None:
        """Frameworks, Offers, Tasks: keep the cache in step; a deletion frees resources on its agent."""
        key = key_of(body)
        if event_type == "DELETED":
            if store == "offers":
                self.engine.offer_deleted(key, body)
            elif store == "tasks":
                self.engine.task_deleted(key)
            self.cache.delete(store, key, resource_version(body))
            agent = (body.get("spec") or {}).get("agent")
            self.engine.request_allocation([agent] if agent else None)
            return
        self.cache.upsert(store, body)
        if store == "frameworks":
            self.engine.mark_framework(key)
        elif store == "tasks":
            self.engine.mark_task(key)
        elif body["spec"].get("answer"):
            trace.mark("answer-seen", key)
            self.engine.mark_answered(key)

    def event(self, kind: str, event_type: str, body: dict) -> None:
        """`event_type` "" is a listing event (kopf's type None)."""
        # kopf watches every namespace (runner.py): a master confined to one namespace still sees
        # every pod on its agents, and reads only that namespace's Frameworks, Offers and Tasks.
        ns = self.engine.settings.namespace
        if ns and kind in NAMESPACED_CRDS and body["metadata"].get("namespace") != ns:
            return
        self._note(kind, event_type, body)
        if kind == "nodes":
            self.node(event_type, body)
        elif kind == "pods":
            self.pod(event_type, body)
        elif kind == "mesosroles":
            self.role(event_type, body)
        else:
            self.mirrored(kind, event_type, body)


def register(
    registry: kopf.OperatorRegistry,
    cache: Cache,
    engine: Engine,
    connection: Callable[[], kopf.ConnectionInfo],
) -> Handlers:
    handlers = Handlers(cache, engine)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection()  # again after every 401: a rotated token is read anew

    # Handlers are coroutines: kopf runs plain functions in a thread pool, and these only touch
    # the cache and the queues.
    def on(kind: str):
        async def handler(event: dict, **_: Any) -> None:
            handlers.watched(kind, event.get("type") or "", event["object"])

        return handler

    def index(kind: str):
        async def handler(body: kopf.Body, **_: Any) -> None:
            handlers.indexed(kind, dict(body))  # a shallow copy: the nested parts are the raw event's
            # None: kopf keeps nothing in the index; the cache is the index

        return handler

    def unsynced(**_: Any) -> bool:
        return not handlers.synced.is_set()

    for kind in ("nodes", "pods"):
        kopf.on.event(kind, registry=registry, id=kind)(on(kind))
        kopf.index(kind, registry=registry, id=f"first-listing-{kind}", when=unsynced)(index(kind))
    for kind in ("frameworks", "offers", "tasks", "mesosroles"):
        kopf.on.event(API_GROUP, kind, registry=registry, id=f"mirror-{kind}")(on(kind))
        kopf.index(API_GROUP, kind, registry=registry, id=f"first-listing-{kind}", when=unsynced)(index(kind))

    @kopf.on.event("namespaces", registry=registry, id="synced", when=lambda name, **_: name == ALWAYS_THERE)
    async def synced(**_: Any) -> None:
        handlers.synced.set()

    return handlers
