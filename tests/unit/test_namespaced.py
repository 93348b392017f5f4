"""A master confined to one namespace (`namespace`): kopf watches every namespace (runner.py), the
handlers keep the pods of every namespace (they take its agents' resources) and only its own
namespace's Frameworks, Offers and Tasks. Fake API and clock, no threads."""

from __future__ import annotations

from tests.unit.enginerig import Rig
from tests.unit.test_overcommit import foreign_pod


def test_a_framework_of_another_namespace_is_neither_subscribed_nor_offered() -> None:
    rig = Rig(namespace="ns")
    rig.node("n1")
    rig.framework("other", ns="elsewhere")  # the API has it and the watch delivers it
    rig.framework("fw", ns="ns")
    rig.settle(advance=1.0)
    assert "elsewhere/other" not in rig.cache.frameworks
    assert not (rig.api.get("frameworks", "elsewhere/other").get("status") or {}).get("phase")
    assert rig.offers("fw") and not rig.offers("other")


def test_a_pod_of_another_namespace_on_an_agent_takes_its_resources() -> None:
    """The filter drops custom resources only: a pod from any namespace counts on its agent. (That
    kopf delivers such pods at all is test_runner's and the cluster test's.)"""
    rig = Rig(namespace="ns")
    rig.node("n1", cpus=8)
    rig.handlers.event("pods", "ADDED", foreign_pod("n1", 6))  # namespace "other", after the start
    rig.framework("fw", ns="ns")
    rig.settle(advance=1.0)
    [offer] = rig.offers("fw").values()
    assert offer["spec"]["resources"]["cpus"] == 2
