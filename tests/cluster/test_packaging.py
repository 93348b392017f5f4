"""Helm install into the real API server, and the metrics endpoint moving while the master works."""

from __future__ import annotations

import subprocess
from pathlib import Path

from kubernetes import client
from prometheus_client import start_http_server

from mesoskube.cluster.binaries import binary_path
from mesoskube.cluster.local import free_port
from tests.cluster.mesos import RawFramework, task
from tests.helpers import eventually, scrape

CHART = Path(__file__).resolve().parents[2] / "charts" / "mesoskube"


def test_helm_install_succeeds_and_the_crds_are_served(kube, kubeconfig, test_id):
    ns = f"helm-{test_id}"
    helm = [str(binary_path("helm")), "--kubeconfig", kubeconfig]
    subprocess.run(
        [
            *helm,
            "install",
            "mk",
            str(CHART),
            "--namespace",
            ns,
            "--create-namespace",
            "--set-string",
            "operator.agentSelector=mesoskube.io/none=none",
            # Other tests' Frameworks live in namespaces of their own: no task-namespaces policy.
            "--set-json",
            "rbac.taskNamespaces=[]",
            "--timeout",
            "60s",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    try:
        status = subprocess.run(
            [*helm, "status", "mk", "--namespace", ns], check=True, capture_output=True, text=True
        ).stdout
        assert "STATUS: deployed" in status
        (d,) = (
            client.AppsV1Api(kube.api)
            .list_namespaced_deployment(ns, label_selector="app.kubernetes.io/instance=mk")
            .items
        )
        assert d.spec.template.spec.security_context.run_as_non_root is True
        for plural in ("frameworks", "offers", "tasks"):
            assert kube.list(plural, ns) == []  # served: a LIST answers
        kube.custom.list_cluster_custom_object("mesoskube.io", "v1alpha1", "mesosroles")
    finally:
        subprocess.run([*helm, "uninstall", "mk", "--namespace", ns], capture_output=True)
        kube.core.delete_namespace(ns)


def _metrics_endpoint(request, kube) -> int | str:
    """This process's registry (the in-process master's), or the installed leader pod's endpoint."""
    if not request.config.getoption("--installed-master"):
        port = free_port()
        start_http_server(port, addr="127.0.0.1")
        return port
    from mesoskube.cluster.install import NAMESPACE

    lease = kube.coordination.read_namespaced_lease("mesoskube-master", NAMESPACE)
    # A holder identity is "<hostname>-<pid>-<tag>", and a pod's hostname is its name.
    pod = kube.core.read_namespaced_pod(lease.spec.holder_identity.rsplit("-", 2)[0], NAMESPACE)
    return f"{pod.status.pod_ip}:8080"


def test_metrics_endpoint_moves_while_the_master_works(request, kube, namespace, fake_nodes, master):
    port = _metrics_endpoint(request, kube)
    fake_nodes(2, "cpu=4,memory=8Gi")
    master()
    before = scrape(port)
    fw = RawFramework.subscribe(kube, namespace, "fw")
    offer = fw.wait_offers(1)[0]
    fw.accept(offer, [task("m1", 1, 512, run_seconds=0.5)])
    fw.wait_task_state("m1", "TASK_FINISHED", timeout=20)
    after = eventually(
        lambda: (
            (s := scrape(port))
            and s.get("mesoskube_allocation_runs_total", 0) > before.get("mesoskube_allocation_runs_total", 0)
            and s
        ),
        timeout=10,
    )
    for name in (
        'mesoskube_offers_total{event="sent"}',
        'mesoskube_offers_total{event="accepted"}',
        "mesoskube_allocation_duration_seconds_count",
        "mesoskube_task_launch_seconds_count",
        "mesoskube_offer_decision_seconds_count",
    ):
        assert after.get(name, 0) > before.get(name, 0), f"{name} did not move"
    assert any(k.startswith("mesoskube_api_requests_total") for k in after)
