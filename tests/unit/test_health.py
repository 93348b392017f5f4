"""Agent health by the master's own clock (pure)."""

from __future__ import annotations

from mesoskube.master.cache import node_info
from mesoskube.master.health import AgentHealth
from tests.unit.enginerig import node_body


def test_notready_past_the_timeout_is_unreachable_and_ready_again_is_reachable_at_once() -> None:
    h = AgentHealth(timeout=60)
    down, up = node_info(node_body("n1", ready=False)), node_info(node_body("n1"))
    assert h.observe([down], 100) == set()
    assert h.observe([down], 159) == set() and not h.is_unreachable("n1")
    assert h.observe([down], 160) == {"n1"} and h.is_unreachable("n1")
    assert h.observe([down], 200) == set(), "reported once"
    assert h.observe([up], 201) == {"n1"} and not h.is_unreachable("n1")
    assert h.unready_since == {}


def test_a_flapping_node_starts_its_clock_again_and_a_deleted_one_is_forgotten() -> None:
    h = AgentHealth(timeout=60)
    down, up = node_info(node_body("n1", ready=False)), node_info(node_body("n1"))
    h.observe([down], 0)
    h.observe([up], 50)
    h.observe([down], 55)
    assert h.observe([down], 110) == set()
    assert h.observe([down], 115) == {"n1"}
    h.forget("n1")
    assert h.unready_since == {} and h.unreachable == set()
