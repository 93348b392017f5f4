"""A master engine over the emulated API of fakeapi.py, with a fake clock and no threads.

`Rig.step()` runs one engine step and then plays the watch: every object the API changed goes
through the master's real handlers (handlers.Handlers) into its cache and work queues.
"""

from __future__ import annotations

from typing import Any

from mesoskube.master.cache import Cache
from mesoskube.master.engine import Engine
from mesoskube.master.handlers import Handlers
from mesoskube.master.objects import is_task_pod
from mesoskube.settings import Settings
from tests.unit.fakeapi import FakeApi, FakeClock
from tests.unit.reference.recount import recount, recount_tally
from tests.unit.reference.snapshot import full_snapshot


def node_body(
    name: str, cpus: int = 8, mem: str = "32Gi", ready: bool = True, labels: dict | None = None
) -> dict:
    return {
        "metadata": {"name": name, "uid": f"u-{name}", "resourceVersion": "1", "labels": labels or {}},
        "spec": {},
        "status": {
            "allocatable": {"cpu": str(cpus), "memory": mem},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


class Rig:
    def __init__(
        self, api: FakeApi | None = None, work_pool: Any = None, answer_pool: Any = None, **settings: Any
    ) -> None:
        """`api`: another rig's, for a second master replica over the same emulated API;
        `work_pool`: an executor the pipelined queues hand their keys to (else work runs inline);
        `answer_pool`: the answers' own (default: the work pool)."""
        self.api = api or FakeApi(clock=FakeClock())
        self.clock = self.api.clock
        self.cache = Cache()
        settings.setdefault("allocationInterval", 1.0)
        self.settings = Settings(**settings)
        self.engine = Engine(
            writer=self.api,
            settings=self.settings,
            cache=self.cache,
            clock=self.clock,
            monotonic=self.clock,
            workers=0,
            work_pool=work_pool,
            answer_pool=answer_pool,
        )
        self.handlers = Handlers(self.cache, self.engine)
        self._node_rv = 1

    # ---- the cluster
    def node(self, name: str, **kw: Any) -> None:
        self._node_rv += 1
        body = node_body(name, **kw)
        body["metadata"]["resourceVersion"] = str(self._node_rv)
        self.handlers.event("nodes", "MODIFIED", body)

    def framework(self, name: str = "fw", ns: str = "ns", **spec: Any) -> str:
        body = {"metadata": {"name": name}, "spec": {"roles": ["*"], **spec}}
        self.api.create("frameworks", ns, body)
        self.watch()
        self.step()  # the master subscribes it
        return f"{ns}/{name}"

    def offers(self, framework: str = "fw") -> dict[str, dict]:
        return {
            k: o
            for k, o in self.cache.offers.items()
            if o["spec"]["framework"] == framework
            and (o.get("status") or {}).get("phase") in (None, "Outstanding")
        }

    def offer_on(self, agent: str, framework: str = "fw") -> str:
        [key] = [k for k, o in self.offers(framework).items() if o["spec"]["agent"] == agent]
        return key

    def answer(self, offer_key: str, answer: dict) -> None:
        ns, _, name = offer_key.partition("/")
        self.api.patch("offers", ns, name, {"spec": {"answer": answer}})

    def accept(self, offer_key: str, *tasks: dict, **extra: Any) -> None:
        self.answer(offer_key, {"type": "Accept", "tasks": list(tasks), **extra})

    def task(self, key: str) -> dict | None:
        return self.api.get("tasks", key)

    def state(self, key: str) -> str | None:
        t = self.task(key)
        return ((t or {}).get("status") or {}).get("state")

    def run_pod(self, key: str, phase: str = "Running") -> None:
        self.api.set_pod_phase(key, phase)

    # ---- time and the watch
    def watch(self) -> None:
        def on_event(plural: str, key: str, body: dict, deleted: bool) -> None:
            if plural == "pods":
                assert is_task_pod(body, self.settings.schedulerName)  # the master watches only these
            self.handlers.event(plural, "DELETED" if deleted else "MODIFIED", body)

        self.api.sync_cache(self.cache, on_event)
        self.check_holdings()

    def check_holdings(self) -> None:
        """Every engine test also checks the incremental totals against a full recount, and the
        kept agent views against a snapshot rebuilt from every task and offer."""
        assert self.cache.holdings.state() == recount(self.cache)
        tally = self.cache.tally
        assert {"states": dict(tally.states), "live": dict(tally.live), "finished": tally.finished} == (
            recount_tally(self.cache)
        )
        a = self.engine.allocation
        view = a.cache_view()
        full = full_snapshot(self.cache, a.agent_matches, a.port_ranges, {}, 0.0)
        assert sorted(view.agents, key=lambda x: x.name) == sorted(full.agents, key=lambda x: x.name)
        assert view.frameworks == full.frameworks

    def step(self, advance: float = 0.0, watch: bool = True) -> None:
        self.clock.advance(advance)
        self.engine.step()
        if watch:
            self.watch()

    def settle(self, steps: int = 3, advance: float = 0.0) -> None:
        for _ in range(steps):
            self.step(advance)


def task_info(name: str, cpus: float = 1, ports: str | None = None, **extra: Any) -> dict:
    resources: dict = {"cpus": cpus}
    if ports:
        resources["ports"] = ports
    return {"name": name, "resources": resources, **extra}
