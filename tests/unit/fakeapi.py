"""An in-memory stand-in for the API the master writes to (EMULATED: no API server behind it).

It keeps objects by (plural, namespace, name), answers 409 on a create of an existing name and 404
on a missing one, and lets a test inject failures (`fail(op, exc, times)`). It feeds nothing back
on its own: a test moves what the API "stored" into the master's cache with `sync_cache`, playing
the watch, so the order of events is the test's to choose. The engine's unit tests drive the
master through it with a fake clock: no threads, no sleeps, no I/O.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from mesoskube.master.cache import Cache, format_time, key_of
from mesoskube.master.writer import ApiError


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeApi:
    clock: FakeClock = field(default_factory=FakeClock)
    objects: dict[str, dict[tuple[str, str], dict]] = field(default_factory=lambda: defaultdict(dict))
    calls: list[tuple] = field(default_factory=list)
    failures: dict[str, list[BaseException]] = field(default_factory=lambda: defaultdict(list))
    leases: dict[str, dict] = field(default_factory=dict)
    tombstones: dict[tuple[str, str], dict] = field(default_factory=dict)  # last state of deleted objects
    _rv: itertools.count = field(default_factory=lambda: itertools.count(100))

    # ---- failure injection and inspection
    def fail(self, op: str, exc: BaseException, times: int = 1) -> None:
        """The next `times` calls of `op` ("create:tasks", "create:pods", "delete:offers", ...) raise."""
        self.failures[op].extend([exc] * times)

    def get(self, plural: str, key: str, name: str | None = None) -> dict | None:
        """A test's look at what is stored (`key` "ns/name": the object or None); with `name`, the
        writer's read (`key` the namespace: a copy, or 404)."""
        if name is not None:
            self._check(f"get:{plural}")
            return copy.deepcopy(self._existing(plural, key, name))
        ns, _, name = key.rpartition("/")
        return self.objects[plural].get((ns, name))

    def names(self, plural: str) -> set[str]:
        return {name for _, name in self.objects[plural]}

    def _check(self, op: str) -> None:
        self.calls.append((op,))
        if self.failures.get(op):
            raise self.failures[op].pop(0)

    def _stamp(self, body: dict, ns: str) -> dict:
        json.dumps(body)  # what the client must serialise: a stray Python object fails here as there
        body = copy.deepcopy(body)
        meta = body.setdefault("metadata", {})
        if not meta.get("name"):
            meta["name"] = meta.get("generateName", "obj-") + str(next(self._rv))
        if ns:
            meta["namespace"] = ns
        meta.setdefault("uid", f"uid-{meta['name']}")
        meta.setdefault("generation", 1)
        meta.setdefault("creationTimestamp", format_time(self.clock()))
        meta["resourceVersion"] = str(next(self._rv))
        return body

    # ---- the writer's surface
    def create(self, plural: str, namespace: str, body: dict) -> dict:
        self._check(f"create:{plural}")
        obj = self._stamp(body, namespace)
        k = (namespace, obj["metadata"]["name"])
        if k in self.objects[plural]:
            raise ApiError(409, "AlreadyExists")
        self.objects[plural][k] = obj
        return copy.deepcopy(obj)

    def _existing(self, plural: str, namespace: str, name: str) -> dict:
        obj = self.objects[plural].get((namespace, name))
        if obj is None:
            raise ApiError(404, "NotFound")
        return obj

    def patch(self, plural: str, namespace: str, name: str, body: dict) -> dict:
        self._check(f"patch:{plural}")
        obj = self._existing(plural, namespace, name)
        if "spec" in body:
            obj["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
        for part in ("spec", "metadata"):
            if part in body:
                obj.setdefault(part, {}).update(
                    {k: v for k, v in body[part].items() if k != "resourceVersion"}
                )
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        return copy.deepcopy(obj)

    def patch_status(self, plural: str, namespace: str, name: str, body: dict) -> dict:
        self._check(f"status:{plural}")
        obj = self._existing(plural, namespace, name)
        status = obj.setdefault("status", {})
        for k, v in body.get("status", {}).items():
            if v is None:
                status.pop(k, None)
            else:
                status[k] = v
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        return copy.deepcopy(obj)

    def delete(self, plural: str, namespace: str, name: str) -> None:
        self._check(f"delete:{plural}")
        gone = self.objects[plural].pop((namespace, name), None)
        if gone is None:
            raise ApiError(404, "NotFound")
        self.tombstones[(plural, key_of(gone))] = gone

    def delete_collection(self, plural: str, namespace: str, field_selector: str) -> None:
        """As the API server with a CRD's selectable fields: `a.b=v` and `a.b!=v` terms, all must
        hold; a field the object lacks is the empty string."""
        self._check(f"deletecollection:{plural}")

        def value(o: dict, path: str) -> str:
            for part in path.split("."):
                o = o.get(part) if isinstance(o, dict) else None  # type: ignore[assignment]
            return "" if o is None else str(o)

        terms = [
            [*t.split("!=", 1), "!="] if "!=" in t else [*t.split("=", 1), "="]
            for t in field_selector.split(",")
        ]
        for k, o in list(self.objects[plural].items()):
            if k[0] == namespace and all((value(o, f) == v) == (op == "=") for f, v, op in terms):
                self.tombstones[(plural, key_of(o))] = self.objects[plural].pop(k)

    def create_pod(self, namespace: str, body: dict) -> dict:
        return self.create("pods", namespace, body)

    def delete_pod(self, namespace: str, name: str) -> None:
        self.delete("pods", namespace, name)

    def bind_pod(self, namespace: str, binding: dict) -> None:
        """As the API server's pods/binding: 404 for a missing pod, 409 for a replaced (uid) or
        bound one; else the pod gets its nodeName."""
        self._check("bind:pods")
        name = binding["metadata"]["name"]
        pod = self._existing("pods", namespace, name)
        uid = binding["metadata"].get("uid")
        if (uid and pod["metadata"].get("uid") != uid) or pod.get("spec", {}).get("nodeName"):
            raise ApiError(409, "Conflict")
        pod.setdefault("spec", {})["nodeName"] = binding["target"]["name"]
        pod["metadata"]["resourceVersion"] = str(next(self._rv))

    def create_event(self, namespace: str, body: dict) -> None:
        self.calls.append(("event", body["reason"], body["message"]))

    def patch_role_status(self, name: str, body: dict) -> dict:
        return self.patch_status("mesosroles", "", name, body)

    def list_framework_leases(self, namespace: str | None) -> dict[str, dict]:
        self._check("list:leases")
        return dict(self.leases)

    # The seed's reads (Engine.seed)
    def list_nodes(self) -> list[dict]:
        self._check("list:nodes")
        return [copy.deepcopy(o) for o in self.objects["nodes"].values()]

    def list_pods(self) -> list[dict]:
        self._check("list:pods")
        return [copy.deepcopy(o) for o in self.objects["pods"].values()]

    def list(self, plural: str, namespace: str | None) -> list[dict]:
        return [
            copy.deepcopy(o)
            for (ns, _), o in self.objects[plural].items()
            if not namespace or ns == namespace
        ]

    def list_roles(self) -> list[dict]:
        return [copy.deepcopy(o) for o in self.objects["roles"].values()]

    def list_versions(self, kind: str, namespace: str | None) -> tuple[str, dict[str, str]]:
        """A LIST's resourceVersion and each object's; kinds as the watch names them."""
        self._check(f"list:{kind}")
        plural = "roles" if kind == "mesosroles" else kind
        listed = {
            key_of(o): o["metadata"]["resourceVersion"]
            for (ns, _), o in self.objects[plural].items()
            if not namespace or ns in ("", namespace)
        }
        return str(next(self._rv)), listed

    def events(self) -> list[tuple[str, str]]:
        return [(c[1], c[2]) for c in self.calls if c[0] == "event"]

    # ---- playing the watch
    def sync_cache(self, cache: Cache, on_event: Callable[[str, str, dict, bool], None]) -> None:
        """Show the cache what this API holds (the watch catching up): `on_event(plural, key, body,
        deleted)` for every object that changed or went, in the order kinds are listed here; the
        callback updates the cache as the master's handlers do."""
        for plural in ("frameworks", "offers", "tasks", "pods"):
            stored = {key_of(o): o for o in self.objects[plural].values()}
            held = dict(cache.pod_bodies) if plural == "pods" else dict(getattr(cache, plural))
            # Every deletion is shown, even of objects the master already dropped from its cache.
            gone = (set(held) | {k for p, k in self.tombstones if p == plural}) - set(stored)
            for key in sorted(gone):
                if plural != "pods" and cache.is_assumed(plural, key):
                    continue
                last = self.tombstones.pop((plural, key), None) or held[key]  # a DELETED event's body
                on_event(plural, key, copy.deepcopy(last), True)
            for key, obj in stored.items():
                current = held.get(key)
                rv = obj["metadata"]["resourceVersion"]
                if current is not None and (current.get("metadata") or {}).get("resourceVersion") == rv:
                    continue
                on_event(plural, key, copy.deepcopy(obj), False)

    def set_pod_phase(self, key: str, phase: str, ready: bool = True) -> None:
        pod = self.get("pods", key)
        assert pod is not None, f"no pod {key}"
        pod["status"] = {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        }
        pod["metadata"]["resourceVersion"] = str(next(self._rv))
