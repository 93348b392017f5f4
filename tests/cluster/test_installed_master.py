"""The master installed by Helm from the locally built image, running as a pod on a real node under
the chart's ServiceAccount, RBAC and securityContext: it offers kwok and real agents and launches
on both."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mesoskube.cluster.install import NAMESPACE, RELEASE, install_master, uninstall_master
from mesoskube.cluster.realnodes import REAL_LABEL
from tests.cluster.mesos import RawFramework, task


@pytest.fixture
def installed(request, local_cluster, kube, crds, test_id) -> Iterator[str]:
    if request.config.getoption("--installed-master"):
        pytest.skip("a session-wide installed master already serves the tests")
    # Only this test's nodes, so the in-process masters of other tests never share agents with it.
    pod = install_master(
        local_cluster,
        {"operator.agentSelector": f"mesoskube.io/test={test_id}"},
        json_values={"rbac.taskNamespaces": []},  # the test's Framework is in a namespace of its own
    )
    try:
        yield pod
    finally:
        uninstall_master(local_cluster)


def test_the_helm_installed_master_runs_on_a_real_node_and_launches(
    kube, namespace, fake_nodes, real_nodes, installed
):
    pod = kube.core.read_namespaced_pod(installed, NAMESPACE)
    node = kube.core.read_node(pod.spec.node_name)
    assert node.metadata.labels.get(REAL_LABEL) == "true"
    assert pod.spec.service_account_name == RELEASE
    assert pod.spec.containers[0].image.startswith("mesoskube.local/mesoskube:")
    assert pod.spec.security_context.run_as_non_root is True
    (fake,) = fake_nodes(1, "cpu=4,memory=8Gi")
    fw = RawFramework.subscribe(kube, namespace, "fw")
    offers = {o["spec"]["agent"]: o for o in fw.wait_offers(len(real_nodes) + 1, timeout=60)}
    assert set(offers) == {fake, *real_nodes}
    fw.accept(offers[fake], [task("emulated", 1, 256, run_seconds=0.5)])
    fw.accept(
        offers[real_nodes[0]],
        [{**task("real", 0.1, 64), "container": {"command": ["sh", "-c", "echo launched by the pod"]}}],
    )
    fw.wait_task_state("emulated", "TASK_FINISHED", timeout=60)
    fw.wait_task_state("real", "TASK_FINISHED", timeout=90)
    assert "launched by the pod" in kube.core.read_namespaced_pod_log("real", namespace)
    logs = kube.core.read_namespaced_pod_log(installed, NAMESPACE)
    assert "Traceback" not in logs, logs[-3000:]
