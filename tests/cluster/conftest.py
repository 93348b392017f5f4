"""Cluster fixtures for the master: CRDs installed once, a master per test scoped to the test's
namespace and to the test's own fake nodes (label mesoskube.io/test=<test id>)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import pytest
from kubernetes.client.exceptions import ApiException

from mesoskube.api.install import install_crds
from mesoskube.kube import Kube
from mesoskube.master.runner import Master
from mesoskube.settings import Settings
from tests.cluster.identity import install_admission_policies


@pytest.fixture(scope="session")
def crds(request: pytest.FixtureRequest, kube: Kube) -> None:
    """The CRDs and the chart's admission policies (the framework contract the API server enforces).
    A Helm-installed master comes with its own policies, which trust it (ours would not)."""
    install_crds(kube)
    if not request.config.getoption("--installed-master"):
        install_admission_policies(kube)
    elif not request.config.getoption("--existing-cluster"):
        # The local control plane: install the chart with the locally built image, once per session.
        from mesoskube.cluster.install import SHORT_TOKEN_SECONDS, install_master
        from mesoskube.cluster.local import LocalCluster
        from tests.conftest import TEST_CLUSTER

        # As the in-process masters run (conftest's `masters`): only nodes a test claims with the
        # mesoskube.io/test label (its fake nodes, and real nodes while a test holds them), the same
        # allocation interval; and on short-lived tokens, which test_token_rotation's last test
        # checks the master outlived. Tests put their Frameworks in namespaces of their own: the
        # cluster-wide pod grant (rbac.taskNamespaces []), held by the master-pods policy.
        install_master(
            LocalCluster(TEST_CLUSTER),
            {"operator.agentSelector": "mesoskube.io/test"},
            json_values={
                "operator.allocationInterval": 0.5,
                "serviceAccount.tokenExpirationSeconds": SHORT_TOKEN_SECONDS,
                "rbac.taskNamespaces": [],
            },
        )


StartMaster = Callable[..., Master]


@contextlib.contextmanager
def masters(kubeconfig: str, namespace: str, test_id: str) -> Iterator[StartMaster]:
    """start(**settings) runs an in-process master confined to the test's namespace and nodes;
    on exit every framework is torn down while the master still runs, then the masters stop."""
    started: list[Master] = []

    def start(**overrides) -> Master:
        base = {
            "namespace": namespace,
            "agentSelector": f"mesoskube.io/test={test_id}",
            "metricsPort": 0,
            "healthPort": 0,
            "httpPort": 0,  # tests that speak Mesos HTTP pick a free port
            "allocationInterval": 0.5,
            # The pods framework's watches cost every test's master; its tests turn it on.
            "podsFramework": False,
        }
        m = Master(Kube.connect(kubeconfig), Settings(**{**base, **overrides}))
        m.start_in_thread()
        started.append(m)
        return m

    try:
        yield start
    finally:
        for m in started:
            if m.pods is not None:  # first, or it would subscribe its pods' frameworks again
                m.pods.stop()
        if started:
            teardown_frameworks(started[0].kube, namespace)
        for m in started:
            m.stop()


@pytest.fixture
def master(request, kubeconfig: str, crds, namespace: str, test_id: str) -> Iterator[StartMaster]:
    if request.config.getoption("--installed-master"):
        yield lambda **_: None  # the Helm-installed master serves the test
        return
    with masters(kubeconfig, namespace, test_id) as start:
        yield start


@pytest.fixture
def own_master(request, master) -> StartMaster:
    """`master` for a test that starts it with its own settings or reads its in-process metrics:
    skipped against a Helm-installed master."""
    if request.config.getoption("--installed-master"):
        pytest.skip("needs an in-process master with its own settings")
    return master


def teardown_frameworks(kube: Kube, namespace: str, timeout: float = 20) -> None:
    """TEARDOWN every framework while the master still runs, so no finalizer or task outlives it."""
    for fw in kube.list("frameworks", namespace):
        with contextlib.suppress(ApiException):
            kube.delete("frameworks", namespace, fw["metadata"]["name"])
    deadline = time.monotonic() + timeout
    while kube.list("frameworks", namespace) and time.monotonic() < deadline:
        time.sleep(0.1)
