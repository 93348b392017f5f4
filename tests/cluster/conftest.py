"""Cluster fixtures for the master: CRDs installed once, a master per test scoped to the test's
namespace and to the test's own fake nodes (label mesoskube.io/test=<test id>)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from mesoskube.api.install import install_crds
from mesoskube.kube import Kube
from mesoskube.master.runner import Master
from mesoskube.settings import Settings


@pytest.fixture(scope="session")
def crds(kube: Kube) -> None:
    install_crds(kube)


StartMaster = Callable[..., Master]


@pytest.fixture
def master(request, kubeconfig: str, crds, namespace: str, test_id: str) -> Iterator[StartMaster]:
    """master(**settings) starts an in-process master for this test; stopped at teardown."""
    started: list[Master] = []
    installed = request.config.getoption("--installed-master")

    def start(**overrides) -> Master | None:
        if installed:
            return None
        base = {
            "namespace": namespace,
            "agentSelector": f"mesoskube.io/test={test_id}",
            "metricsPort": 0,
            "healthPort": 0,
            "allocationInterval": 0.5,
        }
        m = Master(Kube.connect(kubeconfig), Settings(**{**base, **overrides}))
        m.start_in_thread()
        started.append(m)
        return m

    yield start
    for m in started:
        m.stop()
