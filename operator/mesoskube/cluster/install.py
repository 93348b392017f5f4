"""Install the master into a local cluster with Helm, as a real pod on a real node.

The image is the one `make images` builds from the repository's Dockerfile, imported into every
real node's containerd (pullPolicy Never: no registry is involved). The chart is installed as it
ships, with only the image, the node selector and the values a caller adds.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from mesoskube.cluster.binaries import binary_path
from mesoskube.cluster.images import build_operator
from mesoskube.cluster.kubelets import RealNodes, ensure_images
from mesoskube.cluster.local import ClusterError, LocalCluster
from mesoskube.cluster.realnodes import REAL_LABEL
from mesoskube.kube import Kube

CHART = Path(__file__).resolve().parents[3] / "charts" / "mesoskube"
RELEASE = "mesoskube"
NAMESPACE = "mesoskube-system"
# The shortest ServiceAccount token the API server issues: the e2e-installed session's master runs
# on it, so its run outlives the token it started with and must survive the kubelet's rotation.
SHORT_TOKEN_SECONDS = 600


def helm(kubeconfig: Path) -> list[str]:
    return [str(binary_path("helm")), "--kubeconfig", str(kubeconfig)]


def install_master(
    cluster: LocalCluster,
    values: dict[str, str] | None = None,
    json_values: dict[str, object] | None = None,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    timeout: float = 180,
) -> str:
    """helm upgrade --install; returns the master pod's name once it is Ready. `values` are set as
    strings, `json_values` as JSON (numbers, lists: the chart's schema types them)."""
    state = cluster.state()
    nodes = RealNodes(cluster)
    specs = nodes.specs(state)
    if not specs:
        raise ClusterError(
            f"cluster {cluster.name!r} has no real nodes for the master's pod: "
            f"`mesoskube cluster --name {cluster.name} up --real-nodes 1`"
        )
    image = build_operator()
    ensure_images(cluster, [image])
    repository, tag = image.name.rsplit(":", 1)
    escaped_label = REAL_LABEL.replace(".", "\\.")  # helm --set splits keys on unescaped dots
    settings = {
        "image.repository": repository,
        "image.tag": tag,
        "image.pullPolicy": "Never",
        f"nodeSelector.{escaped_label}": "true",
        **(values or {}),
    }
    argv = [*helm(cluster.kubeconfig), "upgrade", "--install", release, str(CHART)]
    argv += ["--namespace", namespace, "--create-namespace", "--wait", "--timeout", f"{int(timeout)}s"]
    for key, value in settings.items():
        argv += ["--set-string", f"{key}={value}"]
    for key, value in (json_values or {}).items():
        argv += ["--set-json", f"{key}={json.dumps(value)}"]  # --set reads 0.5 as a string
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode:
        raise ClusterError(f"helm install failed: {r.stderr.strip()}\n{_pod_report(cluster, namespace)}")
    return _ready_pod(cluster, namespace, release, timeout)


def uninstall_master(cluster: LocalCluster, release: str = RELEASE, namespace: str = NAMESPACE) -> None:
    subprocess.run(
        [*helm(cluster.kubeconfig), "uninstall", release, "--namespace", namespace, "--wait"],
        capture_output=True,
        text=True,
    )


def _ready_pod(cluster: LocalCluster, namespace: str, release: str, timeout: float) -> str:
    kube = Kube.connect(str(cluster.kubeconfig))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = kube.core.list_namespaced_pod(
            namespace, label_selector=f"app.kubernetes.io/instance={release}"
        ).items
        for p in pods:
            ready = any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
            if ready and p.metadata.deletion_timestamp is None:
                return p.metadata.name
        time.sleep(0.5)
    report = _pod_report(cluster, namespace)
    raise ClusterError(f"the master's pod is not Ready after {timeout:.0f}s\n{report}")


def _pod_report(cluster: LocalCluster, namespace: str) -> str:
    kube = Kube.connect(str(cluster.kubeconfig))
    lines = []
    for p in kube.core.list_namespaced_pod(namespace).items:
        states = [f"{c.name}: {_container_state(c.state)}" for c in p.status.container_statuses or []]
        lines.append(f"pod {p.metadata.name} on {p.spec.node_name}: {p.status.phase} {states}")
    return "\n".join(lines) or f"no pods in {namespace}"


def _container_state(state) -> str:
    if state.waiting:
        return f"waiting ({state.waiting.reason})"
    return "running" if state.running else "terminated"
