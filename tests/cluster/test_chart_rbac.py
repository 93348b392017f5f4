"""The master under exactly the chart's RBAC: a real ServiceAccount token (TokenRequest) from the
chart's ServiceAccount, ClusterRole and binding, rendered by `helm template` and applied to the real
API server. The master's cluster tests (and the contract's that involve the master) are re-run as
that identity, under the chart's admission policies; denied what it does not need."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client, utils
from kubernetes.client.exceptions import ApiException

from mesoskube.cluster.binaries import binary_path
from mesoskube.kube import Kube
from tests.cluster.conftest import masters
from tests.cluster.mesos import RawFramework, task
from tests.cluster.test_contract import (  # noqa: F401 - the contract, the master as the chart's identity
    test_a_forged_terminal_task_status_is_corrected_from_the_pod,
    test_a_framework_cannot_change_the_masters_labels_owner_references_or_finalizers,
    test_a_reused_task_name_is_a_task_error_the_framework_sees_and_launches_nothing,
    test_another_framework_cannot_accept_decline_or_kill_what_is_not_its_own,
    test_master_ignores_offers_and_tasks_it_did_not_make,
    test_tainted_agent_is_offered_only_to_a_framework_that_tolerates_it,
    test_task_pods_run_with_a_restricted_security_context,
    two_frameworks,
)
from tests.cluster.test_master import (  # noqa: F401 - re-collected here, run as the chart's identity
    test_accept_beyond_the_offer_is_task_error_and_launches_nothing,
    test_accept_launches_a_task_whose_pod_completes_and_resources_return,
    test_decline_filter_keeps_the_agent_away_for_refuse_seconds,
    test_declined_offers_are_deleted_in_bulk_and_their_agents_stay_filtered,
    test_kill_gives_task_killed,
    test_node_deleted_under_running_task_gives_task_lost_and_rescinds_offers,
)
from tests.cluster.test_pods_framework import (  # noqa: F401 - the in-process pods framework, same identity
    test_a_plain_pod_is_bound_through_an_offer_and_recorded_as_a_task,
    test_a_pod_that_fits_nowhere_stays_pending_with_an_event,
)
from tests.helpers import eventually, offer_requests
from tests.unit.rbac_from_code import master_grants

# Granted to every authenticated user (system:basic-user, system:discovery): not the chart's.
EVERYONE_GROUPS = {"authorization.k8s.io", "authentication.k8s.io"}

CHART = Path(__file__).resolve().parents[2] / "charts" / "mesoskube"
RELEASE_NS = "mesoskube-rbac-test"
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
# The master's cluster tests put Frameworks in namespaces of their own (t-<test id>): they run the
# chart's cluster-wide pod grant (rbac.taskNamespaces []), held by the master-pods policy.
CLUSTER_WIDE = ("--set-json", "rbac.taskNamespaces=[]")


def apply_identity(
    kube: Kube,
    kubeconfig: str,
    directory: Path,
    release: str,
    drop_verbs: frozenset[str] = frozenset(),
    helm_args: tuple[str, ...] = (),
) -> tuple[str, list[dict]]:
    """Apply the chart's ServiceAccount, ClusterRole and binding (rendered as `release`, minus
    `drop_verbs`); return a kubeconfig with a token of that ServiceAccount, and the objects."""
    rendered = subprocess.run(
        [
            str(binary_path("helm")),
            "template",
            release,
            str(CHART),
            "--namespace",
            RELEASE_NS,
            *helm_args,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    objects = [o for o in yaml.safe_load_all(rendered) if o and o.get("kind") in RBAC_KINDS | {"RoleBinding"}]
    assert {o["kind"] for o in objects} >= RBAC_KINDS
    for o in objects:
        if o["kind"] == "ClusterRole" and drop_verbs:
            rules = [{**r, "verbs": [v for v in r["verbs"] if v not in drop_verbs]} for r in o["rules"]]
            o["rules"] = [r for r in rules if r["verbs"]]
    try:
        kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=RELEASE_NS)))
    except ApiException as e:
        if e.status != 409:
            raise
    for obj in objects:
        try:
            utils.create_from_dict(kube.api, obj, namespace=RELEASE_NS)
        except utils.FailToCreateError as e:
            if any(getattr(x, "status", None) != 409 for x in e.api_exceptions):
                raise
    sa = next(o for o in objects if o["kind"] == "ServiceAccount")["metadata"]["name"]
    return token_kubeconfig(kube, kubeconfig, directory, sa, RELEASE_NS), objects


def token_kubeconfig(kube: Kube, kubeconfig: str, directory: Path, sa: str, namespace: str) -> str:
    """A kubeconfig like `kubeconfig` whose user is a fresh token of ServiceAccount namespace/sa."""
    token = kube.core.create_namespaced_service_account_token(
        sa,
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
        ),
    ).status.token
    base = yaml.safe_load(Path(kubeconfig).read_text())
    base["users"] = [{"name": "chart-sa", "user": {"token": token}}]
    for ctx in base["contexts"]:
        ctx["context"]["user"] = "chart-sa"
    path = directory / "kubeconfig"
    path.write_text(yaml.safe_dump(base))
    return str(path)


def remove_identity(kube: Kube, objects: list[dict]) -> None:
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        try:
            if kind == "ClusterRole":
                kube.rbac.delete_cluster_role(name)
            elif kind == "ClusterRoleBinding":
                kube.rbac.delete_cluster_role_binding(name)
            elif kind == "RoleBinding":
                kube.rbac.delete_namespaced_role_binding(name, obj["metadata"]["namespace"])
            else:
                kube.core.delete_namespaced_service_account(name, RELEASE_NS)
        except ApiException:
            pass


@pytest.fixture(scope="module")
def chart_identity(request, kube: Kube, kubeconfig: str, crds, tmp_path_factory) -> Iterator[str]:
    """A kubeconfig holding a token of the chart's ServiceAccount: the installed master's own when
    there is one (its release's policies trust only it), else one this module applies."""
    if request.config.getoption("--installed-master"):
        from mesoskube.cluster.install import NAMESPACE, RELEASE

        yield token_kubeconfig(kube, kubeconfig, tmp_path_factory.mktemp("chart-sa"), RELEASE, NAMESPACE)
        return
    path, objects = apply_identity(
        kube, kubeconfig, tmp_path_factory.mktemp("chart-sa"), "rbac", helm_args=CLUSTER_WIDE
    )
    yield path
    remove_identity(kube, objects)
    kube.core.delete_namespace(RELEASE_NS)


@pytest.fixture
def master(chart_identity: str, namespace: str, test_id: str, request) -> Iterator:
    """Overrides the default master fixture: same master, the chart's identity."""
    if request.config.getoption("--installed-master"):
        pytest.skip("the installed master already runs as the chart's ServiceAccount")
    with masters(chart_identity, namespace, test_id) as start:
        yield start


@pytest.mark.parametrize(
    "verb,call",
    [
        ("list secrets", lambda k: k.core.list_secret_for_all_namespaces()),
        ("list configmaps", lambda k: k.core.list_config_map_for_all_namespaces()),
        (
            "create namespaces",
            lambda k: k.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="nope"))),
        ),
        ("delete nodes", lambda k: k.core.delete_node("whatever")),
    ],
)
def test_chart_identity_is_denied_what_the_master_does_not_need(chart_identity, verb, call):
    with pytest.raises(ApiException) as err:
        call(Kube.connect(chart_identity))
    assert err.value.status == 403, f"{verb} was not forbidden"


def test_chart_identity_can_do_what_the_master_needs(chart_identity):
    k = Kube.connect(chart_identity)
    k.core.list_node()
    k.core.list_pod_for_all_namespaces(limit=1)
    k.list("frameworks")
    k.coordination.list_lease_for_all_namespaces(limit=1)


def test_without_deletecollection_declined_offers_are_deleted_one_by_one(
    kube, kubeconfig, crds, chart_identity, namespace, fake_nodes, test_id, tmp_path, request
):
    """An older role (or a Kubernetes without CRD field selectors) refuses the bulk delete: the
    master falls back to deleting declined offers one by one, and the filters still hold."""
    if request.config.getoption("--installed-master"):
        pytest.skip("runs its own master under a reduced role")
    path, objects = apply_identity(
        kube, kubeconfig, tmp_path, "rbac-nobulk", frozenset({"deletecollection"}), helm_args=CLUSTER_WIDE
    )
    try:
        fake_nodes(3, "cpu=2,memory=4Gi")
        with masters(path, namespace, test_id) as start:
            start()
            fw = RawFramework.subscribe(kube, namespace, "fw")
            deletes = offer_requests("delete")
            for o in fw.wait_offers(3):
                fw.decline(o, refuse_seconds=60)
            eventually(
                lambda: kube.list("offers", namespace) == [], timeout=10, what="declined offers deleted"
            )
            assert offer_requests("delete") - deletes == 3
            time.sleep(2)
            assert fw.offers() == []
    finally:
        remove_identity(kube, objects)


def _rules(k: Kube, namespace: str) -> set[tuple[str, str, str]]:
    """What `kubectl auth can-i --list -n NAMESPACE` shows for this identity (SelfSubjectRulesReview)."""
    review = client.AuthorizationV1Api(k.api).create_self_subject_rules_review(
        client.V1SelfSubjectRulesReview(spec=client.V1SelfSubjectRulesReviewSpec(namespace=namespace))
    )
    return {
        (g, r, v)
        for rule in review.status.resource_rules
        for g in rule.api_groups or [""]
        for r in rule.resources or []
        for v in rule.verbs
        if g not in EVERYONE_GROUPS
    }


def test_chart_identity_can_list_shows_exactly_the_verbs_the_code_calls(chart_identity, namespace):
    k = Kube.connect(chart_identity)
    code = master_grants()
    assert _rules(k, namespace) == {g for g in code if g[0] not in EVERYONE_GROUPS}
    # The review groups are hidden in the list (every user may review itself); the Mesos HTTP
    # API's TokenReview and SubjectAccessReview are asked one by one.
    auth = client.AuthorizationV1Api(k.api)
    for group, resource, verb in sorted(g for g in code if g[0] in EVERYONE_GROUPS):
        review = auth.create_self_subject_access_review(
            client.V1SelfSubjectAccessReview(
                spec=client.V1SelfSubjectAccessReviewSpec(
                    resource_attributes=client.V1ResourceAttributes(group=group, resource=resource, verb=verb)
                )
            )
        )
        assert review.status.allowed, (group, resource, verb)


def _pod(name: str, task_pod: bool = True) -> dict:
    meta: dict = {"name": name}
    if task_pod:
        meta["labels"] = {"mesoskube.io/task": name}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}  # fmt: skip


def test_chart_identity_creates_no_pod_in_kube_system_and_only_task_pods(chart_identity, namespace):
    """The cluster-wide pod grant is held by the master-pods admission policy."""
    k = Kube.connect(chart_identity)
    with pytest.raises(ApiException) as err:
        k.core.create_namespaced_pod("kube-system", _pod("evil"))
    assert err.value.status == 403 and "runs no pods in namespace kube-system" in err.value.body
    with pytest.raises(ApiException) as err:
        k.core.create_namespaced_pod(namespace, _pod("plain", task_pod=False))
    assert err.value.status == 403 and "only task pods" in err.value.body
    with pytest.raises(ApiException) as err:
        k.core.create_namespaced_pod(namespace, _pod("unowned"))
    assert err.value.status == 403 and "owned by its Task" in err.value.body


def test_with_task_namespaces_pods_are_granted_only_there_and_the_master_launches_there(
    kube, kubeconfig, crds, namespace, fake_nodes, test_id, tmp_path, request
):
    if request.config.getoption("--installed-master"):
        pytest.skip("runs its own master under the rendered identity")
    path, objects = apply_identity(
        kube, kubeconfig, tmp_path, "rbac-tasks", helm_args=("--set", f"rbac.taskNamespaces={{{namespace}}}")
    )
    try:
        k = Kube.connect(path)
        pods = {("", "pods", "create"), ("", "pods", "delete")}
        eventually(lambda: pods <= _rules(k, namespace), timeout=10, what="task pod grant in the namespace")
        assert not pods & _rules(k, "kube-system")
        assert not pods & _rules(k, "default")
        fake_nodes(1, "cpu=2,memory=4Gi")
        with masters(path, namespace, test_id) as start:
            start()
            fw = RawFramework.subscribe(kube, namespace, "fw")
            (offer,) = fw.wait_offers(1)
            fw.accept(offer, [task("t1", 1, 512, run_seconds=0.5)])
            fw.wait_task_state("t1", "TASK_FINISHED", timeout=30)
    finally:
        remove_identity(kube, objects)


def test_with_default_values_pods_are_granted_only_in_default_never_in_kube_system(
    kube, kubeconfig, crds, namespace, tmp_path
):
    """`kubectl auth can-i --list` for the chart's ServiceAccount with the default values."""
    path, objects = apply_identity(kube, kubeconfig, tmp_path, "rbac-default")
    try:
        k = Kube.connect(path)
        pods = {("", "pods", "create"), ("", "pods", "delete"), ("", "pods/binding", "create")}
        eventually(lambda: pods <= _rules(k, "default"), timeout=10, what="task pod grant in default")
        assert not pods & _rules(k, "kube-system")
        assert not pods & _rules(k, namespace)
        # Nothing else differs: the namespaced grant is only the task pods.
        assert _rules(k, "default") - pods == _rules(k, "kube-system")
    finally:
        remove_identity(kube, objects)


def test_a_framework_outside_the_task_namespaces_is_refused_naming_the_chart_value(kube, crds, namespace):
    """rbac.taskNamespaces also decides where Frameworks may be created: elsewhere every launch
    would fail on the pod grant, so the API server refuses the Framework and says what to change."""
    from tests.cluster.identity import _apply, helm_template

    rendered = helm_template(
        "--show-only", "templates/admission-policies.yaml", "--set", f"rbac.taskNamespaces={{{namespace}}}",
        release="rbac-ns",
    )  # fmt: skip
    policy = [o for o in rendered if o["metadata"]["name"].endswith("-task-namespaces")]
    assert {o["kind"] for o in policy} == {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
    other = f"{namespace}-other"
    kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other)))
    api = client.AdmissionregistrationV1Api(kube.api)
    fw = {"apiVersion": "mesoskube.io/v1alpha1", "kind": "Framework", "spec": {"roles": ["r"]}}

    def refused() -> str:
        try:
            kube.custom.create_namespaced_custom_object(
                "mesoskube.io",
                "v1alpha1",
                other,
                "frameworks",
                {**fw, "metadata": {"name": "fw"}},
                dry_run="All",
            )
        except ApiException as e:
            return e.body if e.status == 403 else ""
        return ""

    try:
        for o in policy:
            _apply(kube, o)
        message = eventually(refused, timeout=30, what="the task-namespaces policy in force")
        assert "metadata.namespace" in message and "rbac.taskNamespaces" in message
        assert f"only in namespaces {namespace}" in message and f"add {other} there" in message
        kube.create("frameworks", namespace, {**fw, "metadata": {"name": "fw"}})  # allowed where it launches
    finally:
        for o in policy:
            name = o["metadata"]["name"]
            with contextlib.suppress(ApiException):
                if o["kind"] == "ValidatingAdmissionPolicy":
                    api.delete_validating_admission_policy(name)
                else:
                    api.delete_validating_admission_policy_binding(name)
        # Policies leave force asynchronously: the next test's Frameworks must not meet this one.
        eventually(lambda: not refused(), timeout=30, what="the task-namespaces policy gone")
        kube.core.delete_namespace(other)
