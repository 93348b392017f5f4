"""A full recount of what tasks and offers hold, from every object in the cache, in the shape of
Holdings.state(): the oracle the incremental totals (master/holdings.py) must equal exactly."""

from __future__ import annotations

from collections import Counter, defaultdict

from mesoskube.api.models import DEFAULT_ROLE, OfferPhase, TaskState
from mesoskube.master.cache import Cache
from mesoskube.master.objects import framework_key, is_terminal, offer_phase, resources_of
from mesoskube.resources import Resources


def _milli(r: Resources) -> list[int]:
    return [round(r.cpus * 1000), round(r.mem * 1000), round(r.disk * 1000), round(r.gpus * 1000)]


def inside_its_offer(cache: Cache, t: dict) -> bool:
    """A task naming an outstanding Offer of its framework on its agent holds nothing of its own:
    the Offer holds for both until it goes."""
    spec = t["spec"]
    o = cache.offers.get(f"{t['metadata']['namespace']}/{spec['offer']}") if spec.get("offer") else None
    return (
        o is not None
        and offer_phase(o) == OfferPhase.OUTSTANDING.value
        and (o["spec"]["framework"], o["spec"]["agent"]) == (spec["framework"], spec["agent"])
    )


def recount(cache: Cache) -> dict:
    agents: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    ports: dict[str, list] = defaultdict(list)
    allocated: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0, 0]))
    outstanding: dict[str, int] = defaultdict(int)

    def hold(body: dict, on_agent: bool) -> None:
        r, spec = resources_of(body), body["spec"]
        fw = framework_key(body["metadata"]["namespace"], spec["framework"])
        acc = allocated[fw][spec.get("role") or DEFAULT_ROLE]
        for i, v in enumerate(_milli(r)):
            acc[i] += v
        if on_agent:
            for i, v in enumerate(_milli(r)):
                agents[spec["agent"]][i] += v
            ports[spec["agent"]].extend(r.ports)

    with cache.lock:
        for k, t in cache.tasks.items():
            if not is_terminal(t) and not inside_its_offer(cache, t):
                hold(t, on_agent=k not in cache.pods and not cache.pod_ended(k))
        for o in cache.offers.values():
            if offer_phase(o) == OfferPhase.OUTSTANDING.value:
                hold(o, on_agent=True)
                outstanding[framework_key(o["metadata"]["namespace"], o["spec"]["framework"])] += 1
    return {
        "agents": {a: tuple(m) for a, m in agents.items() if any(m)},
        "agent_ports": {a: sorted(p) for a, p in ports.items() if p},
        "allocated": {fw: {role: tuple(m) for role, m in roles.items()} for fw, roles in allocated.items()},
        "outstanding": dict(outstanding),
    }


def recount_tally(cache: Cache) -> dict:
    """The task counts of tally.py from every Task the cache holds, for comparing with its totals."""
    states: Counter[str] = Counter()
    live: Counter[str] = Counter()
    finished: dict[str, set[str]] = defaultdict(set)
    with cache.lock:
        for k, t in cache.tasks.items():
            fw = framework_key(t["metadata"]["namespace"], t["spec"]["framework"])
            states[(t.get("status") or {}).get("state") or TaskState.STAGING.value] += 1
            if is_terminal(t):
                finished[fw].add(k)
            else:
                live[fw] += 1
    return {"states": dict(states), "live": dict(live), "finished": dict(finished)}
