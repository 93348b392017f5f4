"""Cluster fixtures for the master: CRDs installed once, a master per test scoped to the test's
namespace and to the test's own fake nodes (label mesoskube.io/test=<test id>)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from kubernetes.client.exceptions import ApiException

from mesoskube.api.crdgen import crd_objects
from mesoskube.kube import Kube
from mesoskube.master.runner import Master
from mesoskube.settings import Settings


def install_crds(kube: Kube) -> None:
    for crd in crd_objects():
        name = crd["metadata"]["name"]
        try:
            kube.apiext.create_custom_resource_definition(crd)
        except ApiException as e:
            if e.status != 409:
                raise
            current = kube.apiext.read_custom_resource_definition(name)
            crd["metadata"]["resourceVersion"] = current.metadata.resource_version
            kube.apiext.replace_custom_resource_definition(name, crd)
    deadline = time.monotonic() + 30
    for crd in crd_objects():
        while True:
            got = kube.apiext.read_custom_resource_definition(crd["metadata"]["name"])
            if any(c.type == "Established" and c.status == "True" for c in got.status.conditions or []):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {crd['metadata']['name']} not Established")
            time.sleep(0.1)


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
