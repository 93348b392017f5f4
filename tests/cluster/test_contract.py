"""The framework contract, enforced by the real API server: CEL rules freeze what the master wrote,
a misspelt task field is an error naming it, Framework names fit label values, and the chart's
ValidatingAdmissionPolicies bind Offers and Tasks to their framework's principal (a real
ServiceAccount token per framework) and MesosRoles to the namespaces and principals they allow."""

from __future__ import annotations

import pytest
from kubernetes.client.exceptions import ApiException

from mesoskube.kube import Kube
from mesoskube.master import FINALIZER, LABEL_AGENT, LABEL_FRAMEWORK, LABEL_MASTER_MADE, LABEL_TASK_ID
from tests.cluster.identity import bind_framework_role, service_account, username
from tests.cluster.mesos import RawFramework, task
from tests.helpers import eventually


def refused(call, status: int | tuple[int, ...] = 422) -> str:
    """The API server's message for a refused request (fails if it was accepted)."""
    with pytest.raises(ApiException) as err:
        call()
    statuses = status if isinstance(status, tuple) else (status,)
    assert err.value.status in statuses, err.value.body
    return err.value.body


# ------------------------------------------------------------------ what the master wrote is frozen


@pytest.mark.parametrize(
    "patch,field",
    [
        ({"role": "gold"}, "spec.role"),
        ({"framework": "other"}, "spec.framework"),
        ({"resources": {"cpus": 64}}, "spec.resources"),
        ({"attributes": {"zone": "b"}}, "spec.attributes"),
        ({"expiresAt": "2099-01-01T00:00:00Z"}, "spec.expiresAt"),
    ],
)
def test_offer_spec_but_the_answer_is_frozen(kube, namespace, fake_nodes, master, patch, field):
    fake_nodes(1, "cpu=2,memory=4Gi,label:zone=a")
    master()
    fw = RawFramework.subscribe(kube, namespace, "fw")

    def refused_on_a_live_offer() -> tuple[dict, str] | None:
        # A new node may be rescinded once (the node-lifecycle controller's first pass can taint
        # it not-ready for a moment): then the patch meets a 404, and the next offer is used.
        (offer,) = fw.wait_offers(1)
        try:
            kube.patch("offers", namespace, offer["metadata"]["name"], {"spec": patch})
        except ApiException as e:
            if e.status == 404:
                return None
            assert e.status == 422, e.body
            return offer, e.body
        raise AssertionError(f"patching {field} of an Offer was accepted")

    offer, body = eventually(refused_on_a_live_offer, timeout=30, what="a refused patch of a live offer")
    name = offer["metadata"]["name"]
    assert f"{field} is set by the master and immutable" in body
    # The answer is the framework's, once. The master deletes declined offers in bulk, so the second
    # write may find the offer already gone (404): it cannot change the answer either way.
    fw.decline(offer, refuse_seconds=60)
    body = refused(
        lambda: kube.patch("offers", namespace, name, {"spec": {"answer": {"type": "Accept"}}}), (422, 404)
    )
    assert "spec.answer cannot change" in body or '"code":404' in body


def test_role_rewritten_on_an_offer_cannot_escape_the_role_quota(kube, namespace, fake_nodes, master):
    """The issue's exploit: a 1-cpu quota ended with 2 cpus running after spec.role was rewritten."""
    fake_nodes(2, "cpu=1,memory=2Gi")
    role = f"{namespace}-capped"
    kube.custom.create_cluster_custom_object(
        "mesoskube.io",
        "v1alpha1",
        "mesosroles",
        {"apiVersion": "mesoskube.io/v1alpha1", "kind": "MesosRole", "metadata": {"name": role},
         "spec": {"quota": {"cpus": 1}}},
    )  # fmt: skip
    try:
        master()
        fw = RawFramework.subscribe(kube, namespace, "fw", roles=(role,))
        (offer,) = fw.wait_offers(1)
        refused(lambda: kube.patch("offers", namespace, offer["metadata"]["name"], {"spec": {"role": "*"}}))
        fw.accept(offer, [task("t1", 1, 512, run_seconds=30)])
        t = fw.wait_task_state("t1", "TASK_RUNNING")
        body = refused(lambda: kube.patch("tasks", namespace, "t1", {"spec": {"role": "*"}}))
        assert "spec.role is set by the master and immutable" in body
        assert t["spec"]["role"] == role
    finally:
        kube.custom.delete_cluster_custom_object("mesoskube.io", "v1alpha1", "mesosroles", role)


@pytest.mark.parametrize(
    "patch,field",
    [
        ({"role": "gold"}, "spec.role"),
        ({"agent": "elsewhere"}, "spec.agent"),
        ({"resources": {"cpus": 2}}, "spec.resources"),
        ({"container": {"image": "evil:latest"}}, "spec.container"),
        ({"labels": {"x": "y"}}, "spec.labels"),
        ({"runSeconds": 1}, "spec.runSeconds"),
        ({"offer": "another"}, "spec.offer"),
    ],
)
def test_task_spec_but_kill_is_frozen(kube, namespace, fake_nodes, master, patch, field):
    fake_nodes(1, "cpu=2,memory=4Gi")
    master()
    fw = RawFramework.subscribe(kube, namespace, "fw")
    (offer,) = fw.wait_offers(1)
    fw.accept(offer, [task("t1", 1, 512, run_seconds=60)])
    fw.wait_task_state("t1", "TASK_RUNNING")
    body = refused(lambda: kube.patch("tasks", namespace, "t1", {"spec": patch}))
    assert f"{field} is set by the master and immutable" in body
    kube.patch("tasks", namespace, "t1", {"spec": {"kill": True}})
    fw.wait_task_state("t1", "TASK_KILLED")


def test_misspelt_task_field_in_an_accept_is_rejected_naming_it(kube, namespace, fake_nodes, master):
    """Not pruned and dropped (a plain merge patch, no fieldValidation=Strict): refused, named."""
    fake_nodes(1, "cpu=2,memory=4Gi")
    master()
    fw = RawFramework.subscribe(kube, namespace, "fw")
    (offer,) = fw.wait_offers(1)
    bad = {"type": "Accept", "tasks": [{"name": "t1", "resources": {"cpus": 1}, "runSecs": 5}]}
    body = refused(lambda: fw.answer(offer, bad), (400, 403, 422))
    assert "runSecs" in body and "runSeconds" in body
    assert kube.get("offers", namespace, offer["metadata"]["name"])["spec"].get("answer") is None
    assert fw.tasks() == []


def test_framework_name_longer_than_a_label_value_is_rejected(kube, namespace, crds):
    name = "f" * 64
    body = refused(
        lambda: kube.create(
            "frameworks",
            namespace,
            {"apiVersion": "mesoskube.io/v1alpha1", "kind": "Framework", "metadata": {"name": name}},
        )
    )
    assert "metadata.name" in body and "63" in body
    kube.create(
        "frameworks",
        namespace,
        {"apiVersion": "mesoskube.io/v1alpha1", "kind": "Framework", "metadata": {"name": name[:63]},
         "spec": {}},
    )  # fmt: skip
    kube.delete("frameworks", namespace, name[:63])


# ------------------------------------------------------------------ identity


def framework_as(kube: Kube, namespace: str, name: str, principal: str, **spec) -> None:
    kube.create(
        "frameworks",
        namespace,
        {
            "apiVersion": "mesoskube.io/v1alpha1",
            "kind": "Framework",
            "metadata": {"name": name},
            "spec": {"principal": principal, **spec},
        },
    )


@pytest.fixture
def two_frameworks(kube, kubeconfig, namespace, fake_nodes, master, tmp_path):
    """Frameworks a and b in one namespace, each created by its own ServiceAccount (real tokens),
    both bound to the chart's framework Role."""
    fake_nodes(1, "cpu=4,memory=8Gi")
    master()
    bind_framework_role(kube, namespace, "sa-a", "sa-b")
    a = service_account(kube, kubeconfig, namespace, "sa-a", tmp_path)
    b = service_account(kube, kubeconfig, namespace, "sa-b", tmp_path)
    framework_as(a, namespace, "a", username(namespace, "sa-a"))
    framework_as(b, namespace, "b", username(namespace, "sa-b"))
    fa, fb = RawFramework(a, namespace, "a"), RawFramework(b, namespace, "b")
    for f in (fa, fb):
        eventually(
            lambda f=f: f.status().get("phase") == "Subscribed", timeout=15, what=f"{f.name} subscribed"
        )
    return fa, fb


def test_another_framework_cannot_accept_decline_or_kill_what_is_not_its_own(kube, namespace, two_frameworks):
    fa, fb = two_frameworks
    offer = eventually(lambda: (fa.offers() or [None])[0], timeout=20, what="an offer to a")
    name = offer["metadata"]["name"]
    accept = {"type": "Accept", "tasks": [task("stolen", 1, 512, run_seconds=60)]}
    for answer in (accept, {"type": "Decline"}):
        body = refused(lambda answer=answer: fb.answer(offer, answer), 403)
        assert (
            f"framework a are answered, killed and deleted by its principal {username(namespace, 'sa-a')}"
            in body
        )
        assert username(namespace, "sa-b") in body
    refused(lambda: fb.kube.delete("offers", namespace, name), 403)
    # a itself may.
    fa.accept(offer, [task("t1", 1, 512, run_seconds=60)])
    fa.wait_task_state("t1", "TASK_RUNNING")
    refused(lambda: fb.kube.patch("tasks", namespace, "t1", {"spec": {"kill": True}}), 403)
    refused(lambda: fb.kube.delete("tasks", namespace, "t1"), 403)
    body = refused(lambda: fb.kube.delete("frameworks", namespace, "a"), 403)
    assert "framework a belongs to principal" in body
    refused(lambda: fb.kube.patch("frameworks", namespace, "a", {"spec": {"suppress": True}}), 403)
    assert fa.task_state("t1") == "TASK_RUNNING"
    assert kube.core.read_namespaced_pod("t1", namespace).spec.node_name
    fa.kube.patch("tasks", namespace, "t1", {"spec": {"kill": True}})
    fa.wait_task_state("t1", "TASK_KILLED")
    fa.kube.delete("frameworks", namespace, "a")


def test_a_framework_creates_its_own_tasks_and_the_master_launches_them_by_name(
    kube, namespace, two_frameworks
):
    """Issue 14, part A: the framework's identity creates the Tasks (the chart's framework Role),
    answers with their names, and the master checks them against the offer and creates the pods."""
    fa, _ = two_frameworks
    (offer,) = fa.wait_offers(1)
    fa.accept_by_name(offer, [task("n1", 1, 512, run_seconds=60), task("n2", 1, 512, run_seconds=60)])
    for name in ("n1", "n2"):
        t = fa.wait_task_state(name, "TASK_RUNNING")
        assert LABEL_MASTER_MADE not in t["metadata"]["labels"]
        assert kube.core.read_namespaced_pod(name, namespace).spec.node_name == offer["spec"]["agent"]
    name = offer["metadata"]["name"]
    eventually(lambda: name not in {o["metadata"]["name"] for o in kube.list("offers", namespace)},
               timeout=10, what="the accepted offer deleted")  # fmt: skip


def test_an_accept_by_name_asking_more_than_the_offer_launches_none_and_says_what_was_short(
    kube, namespace, two_frameworks
):
    fa, _ = two_frameworks
    (offer,) = fa.wait_offers(1)
    fa.accept_by_name(offer, [task("big1", 3, 512), task("big2", 3, 512)])  # the agent has 4 cpus
    for name in ("big1", "big2"):
        t = fa.wait_task_state(name, "TASK_ERROR")
        assert "cpus" in t["status"]["message"], t["status"]
    assert kube.core.list_namespaced_pod(namespace).items == []


def test_a_framework_cannot_create_tasks_for_another_or_unlike_the_masters(kube, namespace, two_frameworks):
    """The task-create policies: only a Framework's principal creates its Tasks, each naming its
    Offer, owned by the Framework alone, labelled with its name and never with the master's labels."""
    fa, fb = two_frameworks
    (offer,) = fa.wait_offers(1)
    good = fa.task_for(offer, task("x1", 1, 512))
    body = refused(lambda: fb.kube.create("tasks", namespace, good), 403)
    assert "are created by its principal" in body and username(namespace, "sa-b") in body
    no_offer = fa.task_for(offer, task("x2", 1, 512))
    del no_offer["spec"]["offer"]
    assert "spec.offer" in refused(lambda: fa.kube.create("tasks", namespace, no_offer), 403)
    forged = fa.task_for(offer, task("x3", 1, 512))
    forged["metadata"]["labels"][LABEL_MASTER_MADE] = "true"
    assert LABEL_MASTER_MADE in refused(lambda: fa.kube.create("tasks", namespace, forged), 403)
    foreign = fa.task_for(offer, task("x4", 1, 512))
    foreign["metadata"]["ownerReferences"][0]["uid"] = "not-the-frameworks-uid"
    assert "ownerReferences" in refused(lambda: fa.kube.create("tasks", namespace, foreign), 403)
    # Created, never named by an accept: declined, the Offer goes, and the Task is refused.
    fa.kube.create("tasks", namespace, good)
    fa.decline(offer)
    t = fa.wait_task_state("x1", "TASK_LOST")
    assert "not launched" in t["status"]["message"]
    assert kube.core.list_namespaced_pod(namespace).items == []


def test_the_sdk_under_the_chart_framework_role_launches_by_name(
    kube, kubeconfig, namespace, fake_nodes, master, tmp_path
):
    """SchedulerDriver(create_tasks=True) as a framework's own ServiceAccount (the chart's framework
    Role, the task-create policies): it creates the Tasks, answers by name, and hears them run."""
    from mesoskube.frameworks.sdk import Scheduler, SchedulerDriver, TaskInfo

    fake_nodes(1, "cpu=4,memory=8Gi")
    master()
    bind_framework_role(kube, namespace, "sa-sdk")
    identity = service_account(kube, kubeconfig, namespace, "sa-sdk", tmp_path)
    states: dict[str, str] = {}

    class Launcher(Scheduler):
        launched = False

        def resource_offers(self, driver, offers):
            for o in offers:
                if self.launched:
                    driver.decline(o.id, 60)
                    continue
                self.launched = True
                infos = [
                    TaskInfo(name=f"s{i}", resources={"cpus": 1, "mem": 256}, runSeconds=60) for i in range(3)
                ]
                driver.accept(o.id, infos)

        def status_update(self, driver, status):
            states[status.task_id] = status.state.value

    driver = SchedulerDriver(Launcher(), "sdk", namespace, kube=identity, create_tasks=True)
    driver.start()
    try:
        eventually(lambda: states == dict.fromkeys(("s0", "s1", "s2"), "TASK_RUNNING"), timeout=30,
                   what="three tasks RUNNING")  # fmt: skip
        assert driver.stats.task_creates == 3
        for t in kube.list("tasks", namespace):
            assert LABEL_MASTER_MADE not in t["metadata"]["labels"]
    finally:
        driver.stop()


def test_principal_must_be_the_creating_user_and_cannot_change(kube, kubeconfig, namespace, crds, tmp_path):
    bind_framework_role(kube, namespace, "sa-a")
    a = service_account(kube, kubeconfig, namespace, "sa-a", tmp_path)
    body = refused(lambda: framework_as(a, namespace, "x", "system:serviceaccount:kube-system:admin"), 403)
    assert f"spec.principal must be set to the creating user ({username(namespace, 'sa-a')})" in body
    body = refused(
        lambda: a.create(
            "frameworks",
            namespace,
            {"apiVersion": "mesoskube.io/v1alpha1", "kind": "Framework", "metadata": {"name": "y"}},
        ),
        403,
    )
    assert "spec.principal" in body
    framework_as(a, namespace, "z", username(namespace, "sa-a"))
    body = refused(lambda: a.patch("frameworks", namespace, "z", {"spec": {"principal": "someone-else"}}))
    assert "spec.principal is set by the framework's creator and immutable" in body


def test_only_the_master_creates_offers_and_a_forged_task_is_refused(
    kube, kubeconfig, namespace, fake_nodes, master, tmp_path
):
    """Even a namespace admin (edit rights on Offers and Tasks) cannot forge them: the issue's
    hand-made 64-cpu pre-answered Offer and a Task for a framework that does not exist."""
    (node,) = fake_nodes(1, "cpu=4,memory=8Gi")
    master()
    admin = service_account(kube, kubeconfig, namespace, "ns-admin", tmp_path)
    kube.rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "ns-admin"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "ns-admin", "namespace": namespace}],
        },
    )
    kube.rbac.create_cluster_role(
        {
            "metadata": {"name": f"{namespace}-mesos-edit"},
            "rules": [{"apiGroups": ["mesoskube.io"], "resources": ["*"], "verbs": ["*"]}],
        }
    )
    try:
        kube.rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": "ns-admin-mesos"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": f"{namespace}-mesos-edit"},
                "subjects": [{"kind": "ServiceAccount", "name": "ns-admin", "namespace": namespace}],
            },
        )  # fmt: skip
        framework_as(admin, namespace, "fw", username(namespace, "ns-admin"))
        offer = {
            "apiVersion": "mesoskube.io/v1alpha1",
            "kind": "Offer",
            "metadata": {"name": "forged"},
            "spec": {
                "framework": "fw",
                "agent": node,
                "resources": {"cpus": 64, "mem": 1024},
                "answer": {"type": "Accept", "tasks": [task("big", 32, 512)]},
            },
        }
        body = refused(lambda: admin.create("offers", namespace, offer), 403)
        assert "offers are created by the mesoskube master only" in body
        forged_task = {
            "apiVersion": "mesoskube.io/v1alpha1",
            "kind": "Task",
            "metadata": {"name": "ghost"},
            "spec": {"framework": "nobody", "agent": node, "resources": {"cpus": 1}},
        }
        # A framework may create Tasks of its own (accepts by name), but not this one: a Task for no
        # Framework of the namespace, unlabelled, naming no Offer.
        body = refused(lambda: admin.create("tasks", namespace, forged_task), 403)
        assert "metadata.labels: mesoskube.io/framework must be nobody" in body
        assert kube.core.list_namespaced_pod(namespace).items == []
    finally:
        kube.rbac.delete_cluster_role(f"{namespace}-mesos-edit")


def test_a_framework_identity_cannot_read_or_answer_offers_of_another_namespace(
    kube, kubeconfig, namespace, fake_nodes, master, tmp_path
):
    fake_nodes(1, "cpu=2,memory=4Gi")
    master()
    fw = RawFramework.subscribe(kube, namespace, "fw")
    (offer,) = fw.wait_offers(1)
    other = f"{namespace}-b"
    kube.core.create_namespace({"metadata": {"name": other}})
    try:
        bind_framework_role(kube, other, "sa")
        outsider = service_account(kube, kubeconfig, other, "sa", tmp_path)
        outsider.list("offers", other)  # its own namespace: allowed
        refused(lambda: outsider.list("offers", namespace), 403)
        refused(lambda: outsider.get("offers", namespace, offer["metadata"]["name"]), 403)
        refused(
            lambda: outsider.patch(
                "offers", namespace, offer["metadata"]["name"], {"spec": {"answer": {"type": "Decline"}}}
            ),
            403,
        )
        refused(lambda: outsider.list("tasks", namespace), 403)
    finally:
        kube.core.delete_namespace(other)


# ------------------------------------------------------------------ roles are authorised


def test_a_role_not_allowed_for_the_namespace_cannot_be_subscribed_to(
    kube, kubeconfig, namespace, crds, tmp_path
):
    gold, open_role = f"{namespace}-gold", f"{namespace}-open"
    roles = [
        {"metadata": {"name": gold}, "spec": {"allowedNamespaces": ["finance"]}},
        {"metadata": {"name": f"{namespace}-mine"}, "spec": {"allowedNamespaces": [namespace],
                                                             "allowedPrincipals": ["nobody"]}},
        {"metadata": {"name": open_role}, "spec": {}},
    ]  # fmt: skip
    for r in roles:
        kube.custom.create_cluster_custom_object(
            "mesoskube.io",
            "v1alpha1",
            "mesosroles",
            {"apiVersion": "mesoskube.io/v1alpha1", "kind": "MesosRole", **r},
        )
    try:
        bind_framework_role(kube, namespace, "sa")
        sa = service_account(kube, kubeconfig, namespace, "sa", tmp_path)
        me = username(namespace, "sa")
        body = refused(lambda: framework_as(sa, namespace, "f1", me, roles=[gold]), 403)
        assert f"spec.roles: role {gold} may not be used from namespace {namespace}" in body
        body = refused(lambda: framework_as(sa, namespace, "f2", me, roles=[f"{namespace}-mine"]), 403)
        assert f"role {namespace}-mine may not be used by {me}" in body
        framework_as(sa, namespace, "f3", me, roles=[open_role], capabilities=["MULTI_ROLE"])
        # A MULTI_ROLE framework cannot add a forbidden role later either.
        body = refused(
            lambda: sa.patch("frameworks", namespace, "f3", {"spec": {"roles": [open_role, gold]}}), 403
        )
        assert f"role {gold} may not be used" in body
        sa.delete("frameworks", namespace, "f3")
    finally:
        for r in roles:
            kube.custom.delete_cluster_custom_object(
                "mesoskube.io", "v1alpha1", "mesosroles", r["metadata"]["name"]
            )


# ------------------------------------------------------------------ agents and task pods


def test_tainted_agent_is_offered_only_to_a_framework_that_tolerates_it(kube, namespace, fake_nodes, master):
    plain_node, tainted = fake_nodes(2, "cpu=2,memory=4Gi")
    kube.core.patch_node(
        tainted, {"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}
    )
    master()
    plain = RawFramework.subscribe(kube, namespace, "plain")
    tolerant = RawFramework.subscribe(
        kube, namespace, "tolerant", tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu"}]
    )
    (offer,) = tolerant.wait_offers(1, agent=tainted)
    eventually(lambda: plain.offers(), timeout=15, what="an offer to plain")
    assert {o["spec"]["agent"] for o in plain.offers()} == {plain_node}
    tolerant.accept(offer, [task("t1", 1, 512, run_seconds=30)])
    tolerant.wait_task_state("t1", "TASK_RUNNING")
    pod = kube.core.read_namespaced_pod("t1", namespace)
    assert any(t.key == "dedicated" and t.value == "gpu" for t in pod.spec.tolerations)


def test_node_marked_for_deletion_by_the_autoscaler_is_not_offered(kube, namespace, fake_nodes, master):
    keep, doomed = fake_nodes(2, "cpu=2,memory=4Gi")
    master()
    fw = RawFramework.subscribe(kube, namespace, "fw")
    fw.wait_offers(2)
    kube.core.patch_node(
        doomed,
        {
            "spec": {
                "taints": [
                    {"key": "ToBeDeletedByClusterAutoscaler", "value": "1700000000", "effect": "NoSchedule"}
                ]
            }
        },
    )
    eventually(
        lambda: {o["spec"]["agent"] for o in fw.offers()} == {keep},
        timeout=15,
        what="doomed node's offer rescinded",
    )


def test_task_pods_run_with_a_restricted_security_context(kube, namespace, fake_nodes, master):
    fake_nodes(1, "cpu=2,memory=4Gi")
    master()
    fw = RawFramework.subscribe(kube, namespace, "fw")
    (offer,) = fw.wait_offers(1)
    fw.accept(offer, [task("t1", 1, 512, run_seconds=30)])
    fw.wait_task_state("t1", "TASK_RUNNING")
    spec = kube.core.read_namespaced_pod("t1", namespace).spec
    assert (
        spec.security_context.run_as_non_root
        and spec.security_context.seccomp_profile.type == "RuntimeDefault"
    )
    sc = spec.containers[0].security_context
    assert sc.allow_privilege_escalation is False and sc.capabilities.drop == ["ALL"] and sc.run_as_non_root


# ------------------------------------------------------------------ the master trusts only what it made


def test_master_ignores_offers_and_tasks_it_did_not_make(kube, namespace, fake_nodes, master):
    """Made by hand by someone the policies trust (an admin): the issue's 64-cpu pre-answered Offer
    on a 4-cpu node launched a 32-cpu pod, and a Task of a framework that does not exist got one."""
    (node,) = fake_nodes(1, "cpu=4,memory=8Gi")
    master()
    fw = RawFramework.subscribe(kube, namespace, "fw")
    fw.wait_offers(1)
    forged = {
        "apiVersion": "mesoskube.io/v1alpha1",
        "kind": "Offer",
        "metadata": {"name": "forged"},
        "spec": {
            "framework": "fw",
            "agent": node,
            "resources": {"cpus": 64, "mem": 1024},
            "answer": {"type": "Accept", "tasks": [task("big", 32, 512)]},
        },
    }
    kube.create("offers", namespace, forged)
    ghost = {
        "apiVersion": "mesoskube.io/v1alpha1",
        "kind": "Task",
        "metadata": {"name": "ghost"},
        "spec": {"framework": "nobody", "agent": node, "resources": {"cpus": 1}},
    }
    kube.create("tasks", namespace, ghost)
    offer = eventually(
        lambda: (
            (o := kube.get("offers", namespace, "forged")).get("status", {}).get("phase") == "Invalid" and o
        ),
        timeout=15,
        what="forged offer marked Invalid",
    )
    assert offer["status"]["reason"] == "REASON_NOT_FROM_MASTER"
    t = fw.wait_task_state("ghost", "TASK_ERROR", timeout=15)
    assert t["status"]["reason"] == "REASON_NOT_FROM_MASTER"
    assert "not made by the mesoskube master" in fw.wait_event("OfferIgnored", involved="forged")
    assert fw.task_state("big") is None
    assert kube.core.list_namespaced_pod(namespace).items == []


# ------------------------------------------------------------------ misspelt fields at any depth


@pytest.mark.parametrize(
    "answer,path,bad",
    [
        (
            {"type": "Accept", "tasks": [{"name": "t1", "resources": {"cpus": 1, "cpuz": 2}}]},
            "spec.answer.tasks[].resources",
            "cpuz",
        ),
        (
            {"type": "Accept", "tasks": [{"name": "t1", "resources": {"cpus": 1},
                                          "container": {"imag": "x"}}]},
            "spec.answer.tasks[].container",
            "imag",
        ),
        (
            {"type": "Accept", "tasks": [{"name": "t1", "resources": {"cpus": 1},
                                          "container": {"env": [{"name": "A", "valu": "1"}]}}]},
            "spec.answer.tasks[].container.env[]",
            "valu",
        ),
        ({"type": "Decline", "filters": {"refuseSecs": 5}}, "spec.answer.filters", "refuseSecs"),
        ({"type": "Decline", "filtres": {"refuseSeconds": 5}}, "spec.answer", "filtres"),
    ],
)  # fmt: skip
def test_misspelt_field_below_the_task_level_is_rejected_naming_it(
    kube, namespace, fake_nodes, master, answer, path, bad
):
    """Pruned silently before: the typo vanished and the answer went through without it."""
    fake_nodes(1, "cpu=2,memory=4Gi")
    master()
    fw = RawFramework.subscribe(kube, namespace, "fw")
    (offer,) = fw.wait_offers(1)
    body = refused(lambda: fw.answer(offer, answer), (400, 403, 422))
    assert f"{path}: unknown field(s) {bad}" in body, body
    assert kube.get("offers", namespace, offer["metadata"]["name"])["spec"].get("answer") is None
    # Free-form maps stay free-form: any label key is a label.
    fw.accept(offer, [task("t1", 1, 512, run_seconds=30, labels={"team.example.com/any-key": "v"})])
    fw.wait_task_state("t1", "TASK_RUNNING")


def test_misspelt_fields_of_frameworks_tasks_and_roles_are_rejected_naming_them(
    kube, namespace, fake_nodes, master
):
    fake_nodes(1, "cpu=2,memory=4Gi")
    master()
    body = refused(
        lambda: kube.create(
            "frameworks",
            namespace,
            {
                "apiVersion": "mesoskube.io/v1alpha1",
                "kind": "Framework",
                "metadata": {"name": "typo"},
                "spec": {"defaultFilters": {"refuseSecs": 1}},
            },
        ),
        (400, 403, 422),
    )
    assert "spec.defaultFilters: unknown field(s) refuseSecs" in body
    fw = RawFramework.subscribe(kube, namespace, "fw")
    body = refused(lambda: fw.patch_spec({"supress": True}), (400, 403, 422))
    assert "spec: unknown field(s) supress" in body
    (offer,) = fw.wait_offers(1)
    fw.accept(offer, [task("t1", 1, 512, run_seconds=60)])
    fw.wait_task_state("t1", "TASK_RUNNING")
    # The issue's silent no-op: `kil` was pruned and the task ran on.
    body = refused(lambda: kube.patch("tasks", namespace, "t1", {"spec": {"kil": True}}), (400, 403, 422))
    assert "spec: unknown field(s) kil" in body
    role = f"{namespace}-typo"
    body = refused(
        lambda: kube.custom.create_cluster_custom_object(
            "mesoskube.io",
            "v1alpha1",
            "mesosroles",
            {
                "apiVersion": "mesoskube.io/v1alpha1",
                "kind": "MesosRole",
                "metadata": {"name": role},
                "spec": {"quota": {"cpu": 1}},
            },
        ),
        (400, 403, 422),
    )
    assert "spec.quota: unknown field(s) cpu" in body


# ------------------------------------------------------------------ the master's metadata


def test_a_framework_cannot_change_the_masters_labels_owner_references_or_finalizers(
    kube, namespace, two_frameworks
):
    fa, _ = two_frameworks
    offer = eventually(lambda: (fa.offers() or [None])[0], timeout=20, what="an offer to a")
    name = offer["metadata"]["name"]
    body = refused(
        lambda: fa.kube.patch("offers", namespace, name, {"metadata": {"labels": {LABEL_FRAMEWORK: "b"}}}),
        403,
    )
    assert f"metadata.labels: {LABEL_FRAMEWORK} of offers are set by the mesoskube master" in body
    body = refused(
        lambda: fa.kube.patch("offers", namespace, name, {"metadata": {"finalizers": ["x.io/hold"]}}), 403
    )
    assert "metadata.finalizers of offers" in body
    body = refused(
        lambda: fa.kube.patch("offers", namespace, name, {"metadata": {"ownerReferences": []}}), 403
    )
    assert "metadata.ownerReferences of offers" in body
    fa.kube.patch("offers", namespace, name, {"metadata": {"labels": {"team": "x"}}})  # its own: fine
    fa.accept(offer, [task("t1", 1, 512, run_seconds=60)])
    fa.wait_task_state("t1", "TASK_RUNNING")
    body = refused(
        lambda: fa.kube.patch("tasks", namespace, "t1", {"metadata": {"labels": {LABEL_AGENT: None}}}), 403
    )
    assert f"metadata.labels: {LABEL_AGENT} of tasks" in body
    refused(lambda: fa.kube.patch("tasks", namespace, "t1", {"metadata": {"finalizers": ["x.io/hold"]}}), 403)
    fw = fa.kube.get("frameworks", namespace, "a")
    assert FINALIZER in fw["metadata"]["finalizers"]
    body = refused(lambda: fa.kube.patch("frameworks", namespace, "a", {"metadata": {"finalizers": []}}), 403)
    assert f"metadata.finalizers: {FINALIZER} is owned by the mesoskube master" in body
    # What is the framework's stays its own: kill, and delete (TEARDOWN through the finalizer).
    fa.kube.patch("tasks", namespace, "t1", {"spec": {"kill": True}})
    fa.wait_task_state("t1", "TASK_KILLED")
    fa.kube.delete("frameworks", namespace, "a")
    eventually(lambda: not [f for f in kube.list("frameworks", namespace) if f["metadata"]["name"] == "a"],
               timeout=20, what="framework a torn down")  # fmt: skip


# ------------------------------------------------------------------ refused launches and forged status


def test_a_reused_task_name_is_a_task_error_the_framework_sees_and_launches_nothing(
    kube, namespace, fake_nodes, master
):
    """Only a Framework Event before: the framework watching its own Tasks never learned of it."""
    fake_nodes(1, "cpu=4,memory=8Gi")
    master()
    a = RawFramework.subscribe(kube, namespace, "a", defaultFilters={"refuseSeconds": 0})
    b = RawFramework.subscribe(kube, namespace, "b", defaultFilters={"refuseSeconds": 0})
    (offer,) = a.wait_offers(1)
    a.accept(offer, [task("done", 0.5, 64, run_seconds=0.2), task("live", 0.5, 64, run_seconds=60)])
    a.wait_task_state("done", "TASK_FINISHED")
    a.wait_task_state("live", "TASK_RUNNING")
    pods = {p.metadata.name for p in kube.core.list_namespaced_pod(namespace).items}

    def refusal(fw: RawFramework, name: str) -> dict | None:
        return next((t for t in fw.tasks() if t["metadata"]["labels"].get(LABEL_TASK_ID) == name), None)

    (offer,) = a.wait_offers(1)
    a.accept(offer, [task("done", 0.5, 64, run_seconds=60)])  # its own finished task's name
    t = eventually(lambda: refusal(a, "done"), timeout=15, what="the refused launch as a Task of a")
    t = a.wait_task_state(t["metadata"]["name"], "TASK_ERROR")
    assert t["status"]["reason"] == "REASON_TASK_INVALID"
    assert (
        "task id done is already used by Task done of this framework (TASK_FINISHED)"
        in t["status"]["message"]
    )
    (offer,) = b.wait_offers(1)
    b.accept(offer, [task("live", 0.5, 64, run_seconds=60)])  # another framework's running task
    t = eventually(lambda: refusal(b, "live"), timeout=15, what="the refused launch as a Task of b")
    t = b.wait_task_state(t["metadata"]["name"], "TASK_ERROR")
    assert "already used by Task live of framework a (TASK_RUNNING)" in t["status"]["message"]
    assert a.task("done")["spec"]["framework"] == "a" and a.task_state("done") == "TASK_FINISHED"
    assert a.task_state("live") == "TASK_RUNNING"
    assert {p.metadata.name for p in kube.core.list_namespaced_pod(namespace).items} == pods


def test_a_forged_terminal_task_status_is_corrected_from_the_pod(kube, namespace, fake_nodes, master):
    """The issue: a forged TASK_FINISHED on a running Task was never corrected; the pod ran on unaccounted."""
    fake_nodes(1, "cpu=2,memory=4Gi")
    master()
    fw = RawFramework.subscribe(kube, namespace, "fw")
    (offer,) = fw.wait_offers(1)
    fw.accept(offer, [task("t1", 2, 512, run_seconds=120)])
    fw.wait_task_state("t1", "TASK_RUNNING")
    forged = {"state": "TASK_FINISHED", "reason": "forged", "finishedAt": "2026-01-01T00:00:00Z"}
    kube.patch_status("tasks", namespace, "t1", {"status": forged})
    t = fw.wait_task_state("t1", "TASK_RUNNING")
    assert "was not written by the master: corrected from the pod" in t["status"]["message"]
    assert "finishedAt" not in t["status"]
    assert "TASK_FINISHED was not written by the master" in fw.wait_event("StatusCorrected", involved="t1")
    assert kube.core.read_namespaced_pod("t1", namespace).metadata.deletion_timestamp is None
    # Accounted again: the framework holds the task's 2 cpus.
    eventually(
        lambda: (fw.status().get("allocated") or {}).get("cpus") == 2,
        timeout=15,
        what="2 cpus allocated to fw",
    )


# ------------------------------------------------------------------ the issue's smaller cases


def test_a_role_at_its_cpu_quota_holds_no_zero_cpu_offers_of_the_memory(kube, namespace, fake_nodes, master):
    """At its quota a role still held 0-cpu offers for all the memory of every agent."""
    fake_nodes(2, "cpu=2,memory=4Gi")
    capped = f"{namespace}-capped"
    kube.custom.create_cluster_custom_object(
        "mesoskube.io",
        "v1alpha1",
        "mesosroles",
        {"apiVersion": "mesoskube.io/v1alpha1", "kind": "MesosRole", "metadata": {"name": capped},
         "spec": {"quota": {"cpus": 2}}},
    )  # fmt: skip
    try:
        master()
        fw = RawFramework.subscribe(kube, namespace, "capped", roles=(capped,))
        (offer,) = fw.wait_offers(1)  # the quota's 2 cpus, on one agent
        # No filter: the agent's leftover (0 cpus, 3.5 GiB) may be offered again at once.
        fw.accept(offer, [task("t1", 2, 512, run_seconds=60)], refuse_seconds=0)
        fw.wait_task_state("t1", "TASK_RUNNING")
        # The open framework is offered the other agent (the allocation ran after the accept)...
        other = RawFramework.subscribe(kube, namespace, "open")
        free = other.wait_offers(1)[0]["spec"]["agent"]
        assert free != offer["spec"]["agent"] or len(other.wait_offers(2)) == 2
        # ...and the capped role holds nothing: no 0-cpu offer of either agent's memory.
        assert fw.offers() == []
    finally:
        kube.custom.delete_cluster_custom_object("mesoskube.io", "v1alpha1", "mesosroles", capped)


def test_an_offer_closed_by_hand_is_cleaned_up_after_the_retention(kube, namespace, fake_nodes, own_master):
    """A status written by hand (no closedAt of the master's) left the Offer behind forever."""
    fake_nodes(1, "cpu=2,memory=4Gi")
    own_master(offerRetention=1)
    fw = RawFramework.subscribe(kube, namespace, "fw")
    (offer,) = fw.wait_offers(1)
    name = offer["metadata"]["name"]
    kube.patch_status("offers", namespace, name, {"status": {"phase": "Rescinded", "reason": "by hand"}})

    def gone() -> bool:
        try:
            kube.get("offers", namespace, name)
        except ApiException as e:
            return e.status == 404
        return False

    eventually(gone, timeout=20, what="the hand-closed offer deleted")
