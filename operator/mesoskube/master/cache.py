"""The master's in-memory view of the cluster, fed by watch events, read by the engine.

Handlers only upsert/delete raw objects here (no I/O). Per-node pod usage and what tasks and offers
hold (holdings.py) are kept incrementally, so a snapshot re-walks no pod, task or offer; the agents
whose free resources changed are reported to the allocation cycle (`subscribe_agents`).
"""

from __future__ import annotations

import copy
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache

from kubernetes.utils import parse_quantity

from mesoskube.master.holdings import Holdings
from mesoskube.master.taints import marked_for_deletion, node_taints
from mesoskube.master.tally import TaskTally
from mesoskube.resources import Resources, normalize_ranges

MB = 2**20


def key_of(body: dict) -> str:
    meta = body["metadata"]
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]


def _qty(value: object) -> float:
    return _parsed(str(value))


@lru_cache(maxsize=4096)
def _parsed(quantity: str) -> float:
    # Every pod event and node heartbeat carries the same few strings ("1", "1Gi", "110");
    # parse_quantity goes through Decimal: 3% of the master's CPU in a burst, uncached.
    return float(parse_quantity(quantity))


def quantities_to_resources(q: dict | None) -> Resources:
    q = q or {}
    return Resources(
        cpus=_qty(q.get("cpu", 0)),
        mem=_qty(q.get("memory", 0)) / MB,
        disk=_qty(q.get("ephemeral-storage", 0)) / MB,
        gpus=_qty(q.get("nvidia.com/gpu", 0)),
    )


@dataclass(frozen=True, slots=True)
class NodeInfo:
    name: str
    allocatable: Resources
    labels: dict[str, str]
    ready: bool
    unschedulable: bool
    deleting: bool
    taints: tuple = ()

    @property
    def offerable(self) -> bool:
        return self.ready and not self.unschedulable and not self.deleting


def node_info(body: dict) -> NodeInfo:
    status = body.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    return NodeInfo(
        name=body["metadata"]["name"],
        allocatable=quantities_to_resources(status.get("allocatable")),
        labels=dict(body["metadata"].get("labels") or {}),
        ready=ready,
        unschedulable=bool((body.get("spec") or {}).get("unschedulable")),
        deleting=bool(body["metadata"].get("deletionTimestamp")) or marked_for_deletion(body),
        taints=node_taints(body),
    )


@dataclass(frozen=True, slots=True)
class PodUsage:
    node: str
    requests: Resources


def pod_usage(body: dict) -> PodUsage | None:
    """What a pod holds on its node; None when it holds nothing (unbound or terminal)."""
    spec = body.get("spec") or {}
    node = spec.get("nodeName")
    phase = (body.get("status") or {}).get("phase")
    if not node or phase in ("Succeeded", "Failed"):
        return None
    return PodUsage(node=node, requests=pod_requests(spec))


def pod_requests(spec: dict) -> Resources:
    """What a pod spec requests, as kube-scheduler counts it: containers summed, the largest init
    container if larger, plus the pod overhead; host ports as ranges."""
    total = Resources()
    ports: list[tuple[int, int]] = []
    for c in spec.get("containers") or []:
        total = total + quantities_to_resources((c.get("resources") or {}).get("requests"))
        ports.extend((p["hostPort"], p["hostPort"]) for p in c.get("ports") or [] if p.get("hostPort"))
    for c in spec.get("initContainers") or []:
        init = quantities_to_resources((c.get("resources") or {}).get("requests"))
        total = Resources(
            cpus=max(total.cpus, init.cpus),
            mem=max(total.mem, init.mem),
            disk=max(total.disk, init.disk),
            gpus=max(total.gpus, init.gpus),
            ports=total.ports,
        )
    if spec.get("overhead"):
        total = total + quantities_to_resources(spec["overhead"])
    return Resources(total.cpus, total.mem, total.disk, total.gpus, normalize_ranges(ports))


# How a watched kind's versions are keyed in Cache._versions.
_PREFIX = {"nodes": "node", "pods": "pod", "mesosroles": "roles"}
TOMBSTONE_SECONDS = 120.0


def resource_version(body: dict) -> int:
    try:
        return int((body.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def _stub(key: str) -> dict:
    ns, _, name = key.rpartition("/")
    return {"metadata": {"namespace": ns, "name": name}, "spec": {}}


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def format_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Cache:
    """Everything the master knows, guarded by one lock (handlers and the engine run on different threads)."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    nodes: dict[str, NodeInfo] = field(default_factory=dict)
    pods: dict[str, PodUsage] = field(default_factory=dict)
    pod_bodies: dict[str, dict] = field(default_factory=dict)  # only our task pods
    # Our task pods the watch has shown, added or deleted, kept with the pod under one lock: a
    # pod just created but not shown yet is not missing; one shown and gone is.
    pods_seen: set[str] = field(default_factory=set)
    node_usage: dict[str, Resources] = field(default_factory=lambda: defaultdict(Resources))
    frameworks: dict[str, dict] = field(default_factory=dict)
    offers: dict[str, dict] = field(default_factory=dict)
    tasks: dict[str, dict] = field(default_factory=dict)
    roles: dict[str, dict] = field(default_factory=dict)
    # Objects the master wrote (or is writing) that the watch has not shown yet, kube-scheduler's
    # assume/forget: an assumed Task holds its name and resources from before its create is sent;
    # `forget` drops it if the create failed; the watch's copy replaces it.
    assumed: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    _versions: dict[str, int] = field(default_factory=dict)
    # Tombstones: the resourceVersion at which an object was seen deleted (by its DELETED event, a
    # rollback, or a re-list sweep), kept TOMBSTONE_SECONDS. An event no newer than that comes from
    # a source that lags (the seed LIST against kopf's watch, kopf's stream against the sweep's LIST,
    # a create's ADDED after its rollback) and must not bring the object back.
    _gone: OrderedDict[str, tuple[int, float]] = field(default_factory=OrderedDict)
    # What non-terminal tasks and outstanding offers hold, per agent and per framework and role.
    holdings: Holdings = field(default_factory=Holdings)
    tally: TaskTally = field(default_factory=TaskTally)  # the tasks counted, for status (tally.py)

    def subscribe_agents(self) -> set[str]:
        """A set that collects the names of agents whose node, pods' usage or held resources
        changed; empty it under `lock` after reading them."""
        with self.lock:
            return self.holdings.subscribe()

    def _claim(self, store: str, key: str) -> None:
        if store == "tasks":
            # A Task whose pod ended (or went) holds nothing, whether or not its status says so yet:
            # what ended while nobody led is offered at once by a new leader.
            task = self.tasks.get(key)
            self.holdings.set("tasks", key, task, has_pod=key in self.pods or self.pod_ended(key))
            self.tally.set(key, task)
        elif store == "offers":
            self.holdings.set("offers", key, self.offers.get(key))

    def _fresh(self, kind: str, body: dict) -> bool:
        """Drop events older than what we hold (the seed LIST and kopf's watch may interleave), or
        than the object's deletion (tombstones)."""
        meta = body.get("metadata") or {}
        rv = resource_version(body)
        k = f"{kind}:{meta.get('name') if kind == 'node' else key_of(body)}"
        if rv and self._versions.get(k, 0) > rv:
            return False
        if (gone := self._gone.get(k)) is not None:
            if rv <= gone[0]:
                return False
            del self._gone[k]
        self._versions[k] = rv
        return True

    def bury(self, vkey: str, rv: int) -> None:
        """Remember that the object `vkey` ("kind:key") was gone at `rv` (call with the lock held)."""
        if not rv:
            return
        now = time.monotonic()
        if (old := self._gone.get(vkey)) is None or old[0] < rv:
            self._gone[vkey] = (rv, now)
            self._gone.move_to_end(vkey)
        while self._gone:
            first = next(iter(self._gone))
            if now - self._gone[first][1] <= TOMBSTONE_SECONDS:
                break
            del self._gone[first]

    # ---- nodes and pods
    def upsert_node(self, body: dict) -> bool:
        """True when what the master reads of the node changed (not on a mere heartbeat)."""
        with self.lock:
            if not self._fresh("node", body):
                return False
            info = node_info(body)
            old = self.nodes.get(info.name)
            if old == info:
                return False
            self.nodes[info.name] = info
            self.holdings.touch(info.name)
            return True

    def delete_node(self, name: str, rv: int = 0) -> None:
        with self.lock:
            self.nodes.pop(name, None)
            self._versions.pop(f"node:{name}", None)
            self.bury(f"node:{name}", rv)
            self.holdings.touch(name)

    def upsert_pod(self, body: dict, ours: bool) -> str | None:
        """The node whose usage went down (a pod finished or moved), if any."""
        key = key_of(body)
        with self.lock:
            if not self._fresh("pod", body):
                return None
            old = self.pods.get(key)
            self._drop_pod_usage(key)
            usage = pod_usage(body)
            if usage is not None:
                self.pods[key] = usage
                self.node_usage[usage.node] = self.node_usage[usage.node] + usage.requests
                self.holdings.touch(usage.node)
            if ours:  # before the claim: pod_ended reads them
                self.pod_bodies[key] = body
                self.pods_seen.add(key)
            if ours or (old is None) != (usage is None):
                self._claim("tasks", key)  # its task holds on its agent until its pod shows or ends
            return old.node if old is not None and (usage is None or usage.node != old.node) else None

    def delete_pod(self, key: str, ours: bool = False, rv: int = 0) -> str | None:
        """The node the pod held resources on, if any."""
        with self.lock:
            old = self.pods.get(key)
            self._drop_pod_usage(key)
            self.pod_bodies.pop(key, None)
            self._versions.pop(f"pod:{key}", None)
            self.bury(f"pod:{key}", rv)
            if ours:  # before the claim: pod_ended reads them
                self.pods_seen.add(key)
            if old is not None or ours:
                self._claim("tasks", key)
            return old.node if old is not None else None

    def pod_ended(self, key: str) -> bool:
        """Our task pod was shown and has ended (Succeeded, Failed) or gone: it holds nothing on its
        node any more, whether or not its Task says so yet. Call with the lock held."""
        if key not in self.pods_seen:
            return False
        body = self.pod_bodies.get(key)
        return body is None or (body.get("status") or {}).get("phase") in ("Succeeded", "Failed")

    def pod_of(self, key: str) -> tuple[dict | None, bool]:
        """(our pod for task `key` or None, whether the watch has ever shown it), read together."""
        with self.lock:
            return self.pod_bodies.get(key), key in self.pods_seen

    def _drop_pod_usage(self, key: str) -> None:
        old = self.pods.pop(key, None)
        if old is not None:
            left = self.node_usage[old.node] - old.requests
            self.node_usage[old.node] = left
            if left.is_empty():
                del self.node_usage[old.node]
            self.holdings.touch(old.node)

    # ---- our custom resources
    def upsert(self, store: str, body: dict) -> None:
        with self.lock:
            if self._fresh(store, body):
                key = key_of(body)
                getattr(self, store)[key] = body
                self.assumed[store].discard(key)
                self._claim(store, key)

    def delete(self, store: str, key: str, rv: int = 0) -> None:
        with self.lock:
            getattr(self, store).pop(key, None)
            self._versions.pop(f"{store}:{key}", None)
            self.bury(f"{store}:{key}", rv)
            self.assumed[store].discard(key)
            self._claim(store, key)

    def pop(self, store: str, key: str) -> None:
        """Drop an object the master just ended (an answered offer, a closed one deleted) before the
        watch says so; unlike `delete` its resourceVersion stays, so an older event is still dropped."""
        with self.lock:
            getattr(self, store).pop(key, None)
            self._claim(store, key)

    def assume(self, store: str, body: dict) -> bool:
        """Hold `body` (not yet written) under its key; False if the key is taken."""
        key = key_of(body)
        with self.lock:
            objects = getattr(self, store)
            if key in objects:
                return False
            objects[key] = body
            self.assumed[store].add(key)
            self._claim(store, key)
            return True

    def ghosts(self, kind: str, list_rv: str, listed: Mapping[str, str]) -> list[dict]:
        """What the cache holds of `kind` (a watch's plural) that a LIST at `list_rv` no longer has and
        no event newer than that LIST touched: deleted while the watch was away, which a re-list
        never reports. As DELETED event bodies (with the version held), for the handlers; objects
        the master is creating (assumed) are not ghosts. Versions of objects it no longer holds
        are dropped too. Deliver each only while `still_ghost` (the cache may move on meanwhile)."""
        try:
            at = int(list_rv)
        except ValueError:
            return []
        prefix = _PREFIX.get(kind, kind)
        with self.lock:
            held = self._held(kind)
            gone = []
            for vkey in [v for v in self._versions if v.startswith(prefix + ":")]:
                key = vkey[len(prefix) + 1 :]
                if key in listed or key in held or self._versions[vkey] > at:
                    continue
                del self._versions[vkey]  # an object the cache no longer holds, gone from the API
            for key, body in held.items():
                version = self._versions.get(f"{prefix}:{key}", 0)
                if key not in listed and version <= at:
                    ghost = copy.deepcopy(body)
                    ghost["metadata"]["resourceVersion"] = str(version)
                    gone.append(ghost)
            return gone

    def still_ghost(self, kind: str, key: str, list_rv: str) -> bool:
        """Whether `key` is still held as the ghost `ghosts` found: no newer version came meanwhile.
        Call with the lock held, and deliver its DELETED under it."""
        if kind == "nodes":
            held = key in self.nodes
        elif kind == "pods":
            held = key in self.pods or key in self.pod_bodies
        else:
            name = "roles" if kind == "mesosroles" else kind
            held = key in getattr(self, name) and key not in self.assumed[name]
        return held and self._versions.get(f"{_PREFIX.get(kind, kind)}:{key}", 0) <= int(list_rv)

    def bury_ghost(self, kind: str, key: str, list_rv: str) -> None:
        """After a ghost's DELETED: events up to the LIST's version are older than its deletion."""
        self.bury(f"{_PREFIX.get(kind, kind)}:{key}", int(list_rv))

    def _held(self, kind: str) -> dict[str, dict]:
        if kind == "nodes":
            return {k: {"metadata": {"name": k}} for k in self.nodes}
        if kind == "pods":
            held = {k: _stub(k) for k in self.pods}
            held.update(self.pod_bodies)
            return held
        name = "roles" if kind == "mesosroles" else kind
        return {k: b for k, b in getattr(self, name).items() if k not in self.assumed[name]}

    def is_assumed(self, store: str, key: str) -> bool:
        with self.lock:
            return key in self.assumed[store]

    def forget(self, store: str, key: str) -> None:
        """Drop an assumed object whose write failed (a real one the watch showed stays)."""
        with self.lock:
            if key in self.assumed[store]:
                self.assumed[store].discard(key)
                getattr(self, store).pop(key, None)
                self._claim(store, key)
