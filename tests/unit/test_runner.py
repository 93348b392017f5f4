"""A master replica started while the API server is away waits and seeds once it is back (it
used to run with a dead engine thread, and could still win the election); an engine thread that
ends unexpectedly gives leadership up. No API server: fakes for the two calls, no real waits."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from kubernetes import client

from mesoskube.kube import Kube
from mesoskube.master.runner import Master
from mesoskube.settings import Settings


class InstantEvent(threading.Event):
    """An Event whose timed waits return at once (and are counted): backoff without sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is not None:
            self.waits.append(timeout)
            return self.is_set()
        return super().wait()


class FlakyDiscovery:
    def __init__(self, failures: int) -> None:
        self.failures = failures

    def get_api_resources(self, group, version, **_):
        if self.failures:
            self.failures -= 1
            raise ConnectionRefusedError("connection refused")
        names = ["frameworks", "frameworks/status", "offers", "tasks", "mesosroles"]
        return SimpleNamespace(resources=[SimpleNamespace(name=n) for n in names])


def master(**settings) -> Master:
    kube = Kube(client.ApiClient(client.Configuration(host="https://127.0.0.1:1")))
    # No endpoints and no pods framework (they would listen and list): these tests are the engine's.
    m = Master(kube, Settings(metricsPort=0, healthPort=0, httpPort=0, podsFramework=False, **settings))
    m.engine.stopping = InstantEvent()
    return m


def test_the_seed_waits_for_the_api_server_and_is_retried_until_it_succeeds():
    m = master()
    m.kube.__dict__["custom"] = FlakyDiscovery(failures=2)
    attempts = []

    def seed():
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionResetError("reset while listing")
        m.engine.ready.set()

    m.engine.seed = seed
    for r in m.reflectors:  # their first LISTs done (the next test: the seed waits for them)
        r.synced.set()
    assert m._seed() is True
    assert len(attempts) == 2 and m.engine.ready.is_set()
    assert len(m.engine.stopping.waits) == 3  # two discovery failures, one failed seed
    assert m.engine.stopping.waits[1] > m.engine.stopping.waits[0]
    m.engine.pool.shutdown()


def test_the_seed_waits_for_the_reflectors_first_lists_of_nodes_and_pods():
    m = master()
    assert [r.kind for r in m.reflectors] == ["nodes", "pods"] and m.engine.reflected == {"nodes", "pods"}
    m.engine.seed = lambda: (_ for _ in ()).throw(AssertionError("seeded before nodes and pods were listed"))
    m.reflectors[0].synced.set()
    m.engine.stopping.set()  # pods never listed: the start gives up only when the master stops
    assert m._seed() is False
    m.engine.pool.shutdown()


def test_an_engine_thread_that_dies_gives_leadership_up():
    m = master(leaderElect=True, leaseNamespace="ns")
    m.engine.seed = lambda: (_ for _ in ()).throw(AssertionError("unreachable"))
    m._seed = lambda: True  # type: ignore[method-assign]
    m.elector.run = lambda: m.elector.leading.set()  # type: ignore[method-assign]  (won at once)

    def crash() -> None:
        raise RuntimeError("engine bug")

    m.engine.loop = crash
    m.engine.run_status = lambda: None
    t = threading.Thread(target=m._engine_main)
    t.start()
    t.join(5)
    assert m.lost.is_set() and m.elector.stopped.is_set() and m.engine.stopping.is_set()
    m.engine.pool.shutdown()


def test_the_http_api_and_pods_framework_start_only_once_the_replica_leads_and_stop_when_it_loses():
    m = master(leaderElect=True, leaseNamespace="ns")
    m._seed = lambda: True  # type: ignore[method-assign]
    standing = threading.Event()
    m.elector.run = standing.set  # type: ignore[method-assign]  (leading is set below, by hand)
    started: list[str] = []
    m.start_http = lambda: started.append("http")  # type: ignore[method-assign]
    m.start_pods_framework = lambda: started.append("pods")  # type: ignore[method-assign]
    looping = threading.Event()
    m.engine.loop = lambda: (looping.set(), m.engine.stopping.wait())
    m.engine.run_status = lambda: None
    t = threading.Thread(target=m._engine_main)
    t.start()
    assert standing.wait(5)
    assert not m._leader_services.is_set() and started == []  # a synced standby: neither runs
    m.elector.leading.set()
    assert looping.wait(5) and started == ["http", "pods"]
    stopped: list[str] = []
    m.pods = SimpleNamespace(stop=lambda: stopped.append("pods"))
    m.http = SimpleNamespace(stop=lambda: stopped.append("http"))
    m._leadership_lost()
    t.join(5)
    assert m.lost.is_set() and stopped == ["pods", "http"] and m.pods is None and m.http is None
    m.engine.pool.shutdown()


def test_a_master_confined_to_a_namespace_has_kopf_watch_every_namespace(monkeypatch):
    """The pods on its agents come from any namespace; kopf watched only the master's own, so the
    others' stayed as the start-up LIST saw them (Handlers drops other namespaces' custom resources)."""
    import asyncio

    import kopf

    seen: dict = {}

    async def operator(**kwargs):
        seen.update(kwargs)

    monkeypatch.setattr(kopf, "operator", operator)
    m = master(namespace="team-a")
    asyncio.run(m.operator())
    assert seen["clusterwide"] is True and not seen.get("namespaces")
    m.engine.pool.shutdown()
