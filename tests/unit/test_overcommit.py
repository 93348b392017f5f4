"""Offers of an agent taken by pods the master did not launch are rescinded (offers.py), checked at
most once per OVERCOMMIT_INTERVAL of the engine's clock: the check walks every agent with an offer
under the cache's lock, and the pipelined engine steps at every event."""

from __future__ import annotations

from mesoskube.master.offers import OVERCOMMIT_INTERVAL
from tests.unit.enginerig import Rig


def foreign_pod(node: str, cpus: int) -> dict:
    return {
        "metadata": {"name": "intruder", "namespace": "other", "uid": "u-intruder", "resourceVersion": "5"},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "resources": {"requests": {"cpu": str(cpus)}}}],
        },
        "status": {"phase": "Running"},
    }


def test_an_offer_on_an_agent_a_foreign_pod_took_is_rescinded_within_the_interval() -> None:
    rig = Rig()
    rig.node("n1", cpus=8)
    rig.framework()
    rig.step()  # allocation: one offer of 8 cpus; the housekeeping's check ran now
    offer = rig.offer_on("n1")
    checks = []
    original = rig.engine.offers.rescind_overcommitted
    rig.engine.offers.rescind_overcommitted = lambda nodes: (checks.append(1), original(nodes))
    rig.handlers.event("pods", "ADDED", foreign_pod("n1", 6))
    for _ in range(5):  # steps at every event: the check waits for its interval
        rig.step()
    assert checks == [] and rig.api.get("offers", offer).get("status", {}).get("phase") != "Rescinded"
    rig.step(advance=OVERCOMMIT_INTERVAL)
    assert checks == [1]
    o = rig.api.get("offers", offer)
    assert o["status"]["phase"] == "Rescinded" and o["status"]["reason"] == "REASON_RESOURCES_TAKEN"
