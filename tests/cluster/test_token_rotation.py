"""The master keeps working when its ServiceAccount token is rotated, as in a pod: the client's
in-cluster loader reads the token file, the file is replaced with a new token, and the old token is
then revoked, and the API server restarted so every watch reconnects. kopf's requests get 401 and
it logs in again; the login must read the client's current token, not the one the master started
with. Tokens here are real: TokenRequests bound to Secrets,
so deleting a Secret revokes its token at once."""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import subprocess

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.config.incluster_config import InClusterConfigLoader

from mesoskube.cluster.install import NAMESPACE, RELEASE, SHORT_TOKEN_SECONDS
from mesoskube.kube import CountingApiClient, Kube
from mesoskube.master.runner import Master
from mesoskube.settings import Settings
from tests.cluster.mesos import RawFramework, task
from tests.helpers import eventually

TOKEN_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token"
KUBECTL_EXEC = ["kubectl", "--kubeconfig"]
READ_TOKEN = ["cat", TOKEN_FILE]


def _bound_token(kube: Kube, namespace: str, sa: str, secret: str) -> str:
    created = kube.core.create_namespaced_secret(namespace, {"metadata": {"name": secret}})
    request = {
        "spec": {
            "audiences": [],
            "expirationSeconds": 3600,
            "boundObjectRef": {
                "kind": "Secret",
                "apiVersion": "v1",
                "name": secret,
                "uid": created.metadata.uid,
            },
        }
    }
    return kube.core.create_namespaced_service_account_token(sa, namespace, request).status.token


@pytest.mark.timeout(420)
def test_a_rotated_token_is_picked_up_after_the_old_one_is_revoked(
    request, kube, kubeconfig, namespace, fake_nodes, crds, test_id, tmp_path, local_cluster
):
    if request.config.getoption("--installed-master") or request.config.getoption("--existing-cluster"):
        pytest.skip("runs its own master with an in-cluster style configuration on the local cluster")
    # A fixed namespace: the tests' admission policies trust this ServiceAccount as a master.
    sa_ns = "mesoskube-rotation"
    with contextlib.suppress(ApiException):
        kube.core.create_namespace({"metadata": {"name": sa_ns}})
    with contextlib.suppress(ApiException):
        kube.core.create_namespaced_service_account(sa_ns, {"metadata": {"name": "master"}})
    # This test is about login, not RBAC (test_chart_rbac covers the chart's rules).
    client.RbacAuthorizationV1Api(kube.api).create_cluster_role_binding(
        {
            "metadata": {"name": f"rotation-{test_id}"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "master", "namespace": sa_ns}],
        }
    )
    try:
        token_file = tmp_path / "token"
        token_file.write_text(_bound_token(kube, sa_ns, "master", f"first-{test_id}"))
        server = kube.api.configuration.host.removeprefix("https://")
        host, port = server.rsplit(":", 1)
        cfg = client.Configuration()
        InClusterConfigLoader(
            token_filename=str(token_file),
            cert_filename=kube.api.configuration.ssl_ca_cert,
            environ={"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port},
        ).load_and_set(cfg)
        fake_nodes(1, "cpu=2,memory=4Gi")
        settings = Settings(
            namespace=namespace,
            agentSelector=f"mesoskube.io/test={test_id}",
            metricsPort=0,
            healthPort=0,
            httpPort=0,  # as in conftest's masters
            podsFramework=False,
        )
        master = Master(Kube(CountingApiClient(cfg)), settings).start_in_thread()
        try:
            before = RawFramework.subscribe(kube, namespace, "before")
            [offer] = before.wait_offers(1, timeout=30)
            # An outstanding offer holds the one agent's resources until it is answered or times
            # out: "before" refuses them, so "after" can be offered them once the token is rotated.
            before.decline(offer, refuse_seconds=3600)
            second = _bound_token(kube, sa_ns, "master", f"second-{test_id}")
            token_file.write_text(second)
            # The loader re-reads the file once its refresh period (a minute) has passed: wait until
            # the client's configuration carries the new token, as a kubelet-rotated pod's would.
            eventually(
                # The client stores the in-cluster token under "BearerToken" or "authorization",
                # depending on its version (connection_info reads both).
                lambda: (
                    cfg.get_api_key_with_prefix("BearerToken")
                    or cfg.get_api_key_with_prefix("authorization")
                    or ""
                ).endswith(second),
                timeout=90,
                interval=1,
                what="the client to read the rotated token",
            )
            kube.core.delete_namespaced_secret(f"first-{test_id}", sa_ns)  # the first token is now invalid
            # Open watches were authenticated when they began: an API server restart makes kopf
            # reconnect, and log in again on the 401 a stale token would get.
            local_cluster.restart_component("kube-apiserver")
            started = datetime.datetime.now()

            def subscribe_after() -> RawFramework | None:
                # Just after a restart the admission policies may not resolve their MesosRole
                # parameters yet ("failed to configure policy"): the API server is still starting.
                try:
                    return RawFramework.subscribe(kube, namespace, "after")
                except ApiException as e:
                    if "failed to configure policy" in (e.body or ""):
                        return None
                    raise

            after = eventually(subscribe_after, timeout=60, interval=1, what="the API server to admit again")
            after.wait_offers(1, timeout=90)
            print(f"offers again {(datetime.datetime.now() - started).total_seconds():.1f}s after revoking")
        finally:
            master.stop()
    finally:
        client.RbacAuthorizationV1Api(kube.api).delete_cluster_role_binding(f"rotation-{test_id}")


def _claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _pod_token(kubeconfig: str, pod: str) -> str:
    r = subprocess.run(
        [*KUBECTL_EXEC, kubeconfig, "-n", NAMESPACE, "exec", pod, "-c", "master", "--", *READ_TOKEN],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if r.returncode:
        events = subprocess.run(
            [*KUBECTL_EXEC, kubeconfig, "-n", NAMESPACE, "get", "events", "--sort-by=.lastTimestamp"],
            capture_output=True,
            text=True,
        ).stdout
        raise AssertionError(f"reading {pod}'s token failed: {r.stderr.strip()}\n{events[-3000:]}")
    return r.stdout.strip()


@pytest.mark.timeout(900)
def test_the_installed_masters_pod_works_on_after_the_kubelet_rotates_its_short_lived_token(
    request, kube, kubeconfig, namespace, fake_nodes, crds
):
    """Last in the e2e-installed session: the master's pod started with a 600 s token (the API
    server's minimum, not extended); once any token it started with has expired, the kubelet must
    have rotated the file and the master must have re-read it, or nothing would work."""
    if not request.config.getoption("--installed-master") or request.config.getoption("--existing-cluster"):
        pytest.skip(
            "needs the session's Helm-installed master with short-lived tokens (make test-e2e-installed)"
        )
    pods = kube.core.list_namespaced_pod(
        NAMESPACE, label_selector=f"app.kubernetes.io/instance={RELEASE}"
    ).items
    assert pods, f"no master pod in {NAMESPACE}"
    started = min(p.status.start_time for p in pods)
    first_expiry = started + datetime.timedelta(seconds=SHORT_TOKEN_SECONDS)
    # The event waited for: every token the pods started with is past its expiry.
    eventually(
        lambda: datetime.datetime.now(datetime.UTC) > first_expiry + datetime.timedelta(seconds=5),
        timeout=SHORT_TOKEN_SECONDS + 60,
        interval=5,
        what="the master pods' first tokens to expire",
    )
    # Re-read in-process: a replica whose process started before its current token (a replica may
    # also have been restarted meanwhile, e.g. on losing its Lease; that one read the file anew).
    reread = []
    for p in kube.core.list_namespaced_pod(
        NAMESPACE, label_selector=f"app.kubernetes.io/instance={RELEASE}"
    ).items:
        claims = _claims(_pod_token(kubeconfig, p.metadata.name))
        issued = datetime.datetime.fromtimestamp(claims["iat"], datetime.UTC)
        assert claims["exp"] - claims["iat"] == SHORT_TOKEN_SECONDS, claims
        assert issued > p.status.start_time, f"{p.metadata.name}: the kubelet never rotated its token"
        (container,) = p.status.container_statuses
        process_started = container.state.running.started_at
        last = container.last_state.terminated if container.last_state else None
        why = f" (last exit {last.exit_code} {last.reason} at {last.finished_at})" if last else ""
        probes = [
            f"{e.reason}: {e.message}"
            for e in kube.core.list_namespaced_event(
                NAMESPACE, field_selector=f"involvedObject.name={p.metadata.name}"
            ).items
            if e.reason in ("Unhealthy", "Killing")
        ]
        print(
            f"{p.metadata.name}: token issued {(issued - p.status.start_time).total_seconds():.0f}s after "
            f"the pod started; {container.restart_count} restart(s){why}, process started {process_started}"
            + "".join(f"\n  {line}" for line in probes[-5:])
        )
        if process_started < issued:
            reread.append(p.metadata.name)
    assert reread, "no master process outlived its token's rotation (each was restarted after it)"
    (agent,) = fake_nodes(1, "cpu=2,memory=4Gi")
    fw = RawFramework.subscribe(kube, namespace, "after-rotation")
    [offer] = fw.wait_offers(1, timeout=60, agent=agent)
    fw.accept(offer, [task("t", 0.5, 128, run_seconds=0.5)])
    fw.wait_task_state("t", "TASK_FINISHED", timeout=60)
