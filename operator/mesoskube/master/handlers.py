"""kopf handlers: translate watch events into cache updates and engine signals; no API calls here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kopf

from mesoskube import API_GROUP
from mesoskube.master.cache import Cache, key_of
from mesoskube.master.engine import Engine
from mesoskube.master.objects import is_task_pod


def register(
    registry: kopf.OperatorRegistry,
    cache: Cache,
    engine: Engine,
    connection: Callable[[], kopf.ConnectionInfo],
) -> None:
    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection()  # again after every 401: a rotated token is read anew

    @kopf.on.event("nodes", registry=registry)
    async def node_event(event: dict, **_: Any) -> None:
        body = event["object"]
        if event.get("type") == "DELETED":
            cache.delete_node(body["metadata"]["name"])
            engine.agent_removed(body["metadata"]["name"])
        else:
            cache.upsert_node(body)
        engine.request_allocation()

    @kopf.on.event("pods", registry=registry)
    async def pod_event(event: dict, **_: Any) -> None:
        body = event["object"]
        key = key_of(body)
        ours = is_task_pod(body, engine.settings.schedulerName)
        if event.get("type") == "DELETED":
            cache.delete_pod(key, ours=ours)
        else:
            cache.upsert_pod(body, ours=ours)
        if ours:
            engine.mark_task(key)

    def mirror(
        store: str, changed: Callable[[str, dict], None], deleted: Callable[[str, dict], None] | None = None
    ) -> Callable:
        """A handler keeping `store` in step with the watch; a deletion frees resources, so it asks
        for an allocation (after `deleted`, if given); any other event calls `changed`."""

        async def handler(event: dict, **_: Any) -> None:
            body = event["object"]
            key = key_of(body)
            if event.get("type") == "DELETED":
                if deleted is not None:
                    deleted(key, body)
                cache.delete(store, key)
                engine.request_allocation()
            else:
                cache.upsert(store, body)
                changed(key, body)

        return handler

    def offer_changed(key: str, body: dict) -> None:
        if body["spec"].get("answer"):
            engine.mark_answered(key)

    kopf.on.event(API_GROUP, "frameworks", registry=registry, id="mirror-frameworks")(
        mirror("frameworks", lambda key, _: engine.mark_framework(key))
    )
    kopf.on.event(API_GROUP, "offers", registry=registry, id="mirror-offers")(
        mirror("offers", offer_changed, engine.offer_deleted)
    )
    kopf.on.event(API_GROUP, "tasks", registry=registry, id="mirror-tasks")(
        mirror("tasks", lambda key, _: engine.mark_task(key))
    )

    @kopf.on.event(API_GROUP, "mesosroles", registry=registry)
    async def role_event(event: dict, **_: Any) -> None:
        body = event["object"]
        if event.get("type") == "DELETED":
            cache.delete("roles", body["metadata"]["name"])
        else:
            cache.upsert("roles", body)
        engine.request_allocation()
