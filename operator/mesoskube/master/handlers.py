"""Watch handlers (kopf's for the custom resources, the reflectors' for nodes and pods): translate
watch events into cache updates and work-queue keys; no API calls and no decisions here. Allocation
requests name the agents whose resources changed (candidates); a node's heartbeat, which changes
nothing the master reads, requests nothing.

`Handlers` is plain code (the engine's unit tests feed it events); `register` wires it to kopf.
"""

from __future__ import annotations

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


@dataclass
class Handlers:
    cache: Cache
    engine: Engine
    # Per kind, the keys kopf's watch has shown (any event but a deletion): a listing event for one
    # of them means kopf is listing that kind again, after a 410 (relist.py).
    shown: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def __post_init__(self) -> None:
        self.engine.ghosts.deliver = lambda kind, body: self.event(kind, "DELETED", body)

    def _note(self, kind: str, event_type: str, body: dict) -> None:
        key = key_of(body)
        shown = self.shown[kind]
        if event_type == "DELETED":
            shown.discard(key)
        elif event_type:
            shown.add(key)
        elif key not in shown:  # the first listing: the sweep after the seed waits for its end
            shown.add(key)
            self.engine.ghosts.listing(kind)
        else:
            self.engine.relisted(kind)

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

    def reflected(self, kind: str, event_type: str, body: dict) -> None:
        """An event from a reflector (reflector.py: nodes, pods). It knows where its listings
        begin and end, so none of kopf's re-list guessing (`_note`) applies."""
        if kind == "nodes":
            self.node(event_type, body)
        else:
            self.pod(event_type, body)

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

    def on(kind: str):
        async def handler(event: dict, **_: Any) -> None:
            handlers.event(kind, event.get("type") or "", event["object"])

        return handler

    # Nodes and pods come from the master's reflectors (reflector.py), not from kopf.
    for kind in ("frameworks", "offers", "tasks", "mesosroles"):
        kopf.on.event(API_GROUP, kind, registry=registry, id=f"mirror-{kind}")(on(kind))
    # The master keeps no kopf diff-base (runner.NoDiffBase: it cost a deep copy per event), which
    # on.create/update/resume handlers and daemons would read.
    if registry._changing.get_all_handlers() or registry._spawning.get_all_handlers():
        raise RuntimeError("the master registers on-event handlers only: kopf keeps no diff-base for it")
    return handlers
