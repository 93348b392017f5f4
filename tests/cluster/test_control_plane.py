"""The local control plane is real: kwok drives pods on fake nodes, the garbage collector runs."""

from __future__ import annotations

from kubernetes import client

from mesoskube.kube import Kube
from tests.helpers import eventually

TOLERATE_FAKE = [client.V1Toleration(key="kwok.x-k8s.io/node", operator="Exists", effect="NoSchedule")]


def pod_phase(kube: Kube, namespace: str, name: str) -> str:
    return kube.core.read_namespaced_pod(name, namespace).status.phase or ""


def test_bound_pod_runs_then_completes_after_its_run_duration(kube, namespace, fake_nodes):
    (node,) = fake_nodes(1, "cpu=4,memory=8Gi")
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="sleeper", annotations={"mesoskube.io/run-duration": "2s"}),
        spec=client.V1PodSpec(
            node_name=node,
            tolerations=TOLERATE_FAKE,
            containers=[client.V1Container(name="main", image="registry.k8s.io/pause:3.10")],
        ),
    )
    kube.core.create_namespaced_pod(namespace, pod)
    eventually(lambda: pod_phase(kube, namespace, "sleeper") == "Running", timeout=10, what="pod Running")
    # Still running before its run time is up.
    assert pod_phase(kube, namespace, "sleeper") == "Running"
    eventually(lambda: pod_phase(kube, namespace, "sleeper") == "Succeeded", timeout=15, what="pod Succeeded")
    status = kube.core.read_namespaced_pod("sleeper", namespace).status
    assert status.container_statuses[0].state.terminated.exit_code == 0


def test_pod_with_exit_code_annotation_fails(kube, namespace, fake_nodes):
    (node,) = fake_nodes(1)
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(
            name="crasher", annotations={"mesoskube.io/run-duration": "0s", "mesoskube.io/exit-code": "1"}
        ),
        spec=client.V1PodSpec(
            node_name=node, tolerations=TOLERATE_FAKE, containers=[client.V1Container(name="main", image="x")]
        ),
    )
    kube.core.create_namespaced_pod(namespace, pod)
    eventually(lambda: pod_phase(kube, namespace, "crasher") == "Failed", timeout=15, what="pod Failed")


def test_deleting_an_owner_deletes_its_dependents(kube, namespace):
    owner = kube.core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    ref = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
    kube.core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="dependent", owner_references=[ref]))
    )
    kube.core.delete_namespaced_config_map("owner", namespace)

    def dependent_gone() -> bool:
        names = [c.metadata.name for c in kube.core.list_namespaced_config_map(namespace).items]
        return "dependent" not in names

    eventually(dependent_gone, timeout=30, what="garbage collector to delete the dependent")


def test_fake_nodes_report_their_shape(kube, fake_nodes):
    (node,) = fake_nodes(1, "cpu=16,memory=64Gi,gpu=2,label:zone=b")
    got = kube.core.read_node(node)
    assert got.status.allocatable["cpu"] == "16"
    assert got.status.allocatable["nvidia.com/gpu"] == "2"
    assert got.metadata.labels["zone"] == "b"
