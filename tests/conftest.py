"""Test layer: a real API server for cluster tests, a fresh namespace per test, fake-node helpers.

By default the session starts the local control plane (cluster name `pytest`) once. With
--existing-cluster the suite uses $KUBECONFIG instead (kind in CI) and runs kwok against it.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from mesoskube.cluster.local import LocalCluster, free_port, kwok_argv
from mesoskube.cluster.nodes import add_nodes, remove_nodes, wait_nodes_ready
from mesoskube.cluster.nodeshapes import NodeShape, parse_shape
from mesoskube.cluster.realnodes import REAL_LABEL
from mesoskube.kube import Kube

# Parallel runs on one machine (two clones, a developer and CI) pick different names.
TEST_CLUSTER = os.environ.get("MESOSKUBE_TEST_CLUSTER", "pytest")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--existing-cluster",
        action="store_true",
        help="use the cluster in $KUBECONFIG instead of starting the local control plane",
    )
    parser.addoption("--keep-cluster", action="store_true", help="leave the local control plane running")
    parser.addoption(
        "--real-nodes",
        type=int,
        default=int(os.environ.get("MESOSKUBE_TEST_REAL_NODES", "2")),
        help="real kubelet nodes in the local control plane (default 2; 0 runs without, and the "
        "real-node tests fail, since they cannot be shown on fake nodes)",
    )
    parser.addoption(
        "--installed-master",
        action="store_true",
        help="a master is already running in the cluster (Helm); do not start one per test",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def kubeconfig(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.config.getoption("--existing-cluster"):
        path = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
        kwok = _run_kwok(path, tmp_path_factory.mktemp("kwok"))
        try:
            yield path
        finally:
            kwok.terminate()
            kwok.wait(10)
        return
    cluster = LocalCluster(TEST_CLUSTER)
    real = request.config.getoption("--real-nodes")
    cluster.up(real_nodes=real)
    if real:
        wait_nodes_ready(
            Kube.connect(str(cluster.kubeconfig)), real, timeout=90, selector=f"{REAL_LABEL}=true"
        )
    try:
        yield str(cluster.kubeconfig)
    finally:
        if not request.config.getoption("--keep-cluster"):
            cluster.down()


def _run_kwok(kubeconfig: str, workdir: Path) -> subprocess.Popen:
    log = open(workdir / "kwok.log", "ab")  # noqa: SIM115
    return subprocess.Popen(
        kwok_argv(kubeconfig, free_port()),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture(scope="session")
def kube(kubeconfig: str) -> Kube:
    return Kube.connect(kubeconfig)


@pytest.fixture
def test_id(request: pytest.FixtureRequest) -> str:
    """Short unique id for this test: names its namespace, nodes and master's agent selector."""
    return f"{request.node.name[:20].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}"


@pytest.fixture
def namespace(kube: Kube, test_id: str) -> Iterator[str]:
    name = f"t-{test_id}"
    kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        try:
            kube.core.delete_namespace(name)
        except ApiException as e:
            if e.status != 404:
                raise


FakeNodes = Callable[..., list[str]]


@pytest.fixture
def fake_nodes(kube: Kube, test_id: str) -> Iterator[FakeNodes]:
    """fake_nodes(count, *shapes) -> node names; nodes carry label mesoskube.io/test=<test id>."""
    created: list[str] = []

    def make(count: int, *shapes: str | NodeShape, wait: bool = True) -> list[str]:
        parsed = [s if isinstance(s, NodeShape) else parse_shape(s) for s in shapes] or [parse_shape("")]
        parsed = [
            NodeShape(capacity=s.capacity, labels={**s.labels, "mesoskube.io/test": test_id}) for s in parsed
        ]
        names = add_nodes(kube, count, parsed, start=len(created), prefix=f"n-{test_id}")
        created.extend(names)
        if wait:
            wait_nodes_ready(kube, names, timeout=60)
        return names

    yield make
    remove_nodes(kube, created)


@pytest.fixture
def real_nodes(request: pytest.FixtureRequest, kube: Kube, test_id: str) -> Iterator[list[str]]:
    """The cluster's real (kubelet) nodes, labelled mesoskube.io/test=<test id> for this test's master."""
    nodes = sorted(n.metadata.name for n in kube.core.list_node(label_selector=f"{REAL_LABEL}=true").items)
    if not nodes:
        if request.config.getoption("--existing-cluster"):
            pytest.skip("the existing cluster has no nodes labelled mesoskube.io/real=true")
        pytest.fail("no real nodes in the local control plane (started with --real-nodes 0?)")
    for n in nodes:
        kube.core.patch_node(n, {"metadata": {"labels": {"mesoskube.io/test": test_id}}})
    try:
        yield nodes
    finally:
        for n in nodes:
            kube.core.patch_node(n, {"metadata": {"labels": {"mesoskube.io/test": None}}})


@pytest.fixture(scope="session")
def local_cluster(request: pytest.FixtureRequest, kubeconfig: str) -> LocalCluster:
    """The local control plane itself (for tests that stop and start its processes)."""
    if request.config.getoption("--existing-cluster"):
        pytest.skip("needs the local control plane, not an existing cluster")
    return LocalCluster(TEST_CLUSTER)
