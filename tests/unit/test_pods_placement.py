"""The pods framework's pure parts: fit of a pod on an offer, grouping, roles, refuse times, and
the master's checks of an accept adopting pods."""

from __future__ import annotations

from collections import Counter

import pytest

from mesoskube.api.models import PodRef, ResourceQuantities, TaskInfo
from mesoskube.frameworks.pods.groups import (
    REFUSE_KEY,
    GroupError,
    framework_name,
    group_of,
    refuse_seconds,
    role_of,
)
from mesoskube.frameworks.pods.placement import (
    AFFINITY,
    MIN_TASK_CPUS,
    AgentView,
    fit_problem,
    pod_resources,
    summary,
)
from mesoskube.master.validation import check_adopted_pods
from mesoskube.resources import Resources

KWOK_TAINT = {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}
TOLERATE_KWOK = {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}


def pod(name="p", cpu="500m", memory="256Mi", ns="ns", labels=None, annotations=None, **spec) -> dict:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    return {
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": f"uid-{name}",
            "labels": labels or {},
            "annotations": annotations or {},
        },
        "spec": {
            "schedulerName": "mesoskube",
            "containers": [{"name": "c", "resources": {"requests": requests}}],
            **spec,
        },
        "status": {"phase": "Pending"},
    }


def agent(name="n1", labels=None, taints=(KWOK_TAINT,), cpus=8, mem=16384) -> AgentView:
    return AgentView(name, labels or {}, tuple(taints), Resources(cpus, mem))


BIG = Resources(cpus=8, mem=16384)


def test_requests_become_the_task_resources_and_best_effort_pods_get_a_minimum():
    assert pod_resources(pod(cpu="1500m", memory="1Gi")) == Resources(cpus=1.5, mem=1024)
    assert pod_resources(pod(cpu=None, memory=None)) == Resources(cpus=MIN_TASK_CPUS)


def test_an_untolerated_taint_is_named_and_a_toleration_admits():
    assert fit_problem(pod(), agent(), BIG) == "node(s) had untolerated taint {kwok.x-k8s.io/node: fake}"
    assert fit_problem(pod(tolerations=[TOLERATE_KWOK]), agent(), BIG) is None
    equal = {"key": "kwok.x-k8s.io/node", "operator": "Equal", "value": "other", "effect": "NoSchedule"}
    assert fit_problem(pod(tolerations=[equal]), agent(), BIG) is not None
    assert fit_problem(pod(tolerations=[{"operator": "Exists"}]), agent(), BIG) is None


def test_node_selector_and_required_affinity():
    zone_a = agent(labels={"zone": "a", "size": "8"})
    tol = [TOLERATE_KWOK]
    assert fit_problem(pod(nodeSelector={"zone": "a"}, tolerations=tol), zone_a, BIG) is None
    assert fit_problem(pod(nodeSelector={"zone": "b"}, tolerations=tol), zone_a, BIG) == AFFINITY

    def affinity(*terms):
        return {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}
        }

    def expr(key, op, *values):
        return {"key": key, "operator": op, "values": list(values)}

    cases = [
        ([{"matchExpressions": [expr("zone", "In", "a", "c")]}], True),
        ([{"matchExpressions": [expr("zone", "NotIn", "a")]}], False),
        ([{"matchExpressions": [expr("zone", "Exists"), expr("size", "Gt", "4")]}], True),
        ([{"matchExpressions": [expr("size", "Lt", "4")]}], False),
        ([{"matchExpressions": [expr("gpu", "DoesNotExist")]}], True),
        # terms are ORed
        (
            [
                {"matchExpressions": [expr("zone", "In", "b")]},
                {"matchExpressions": [expr("zone", "In", "a")]},
            ],
            True,
        ),
        ([{"matchFields": [expr("metadata.name", "In", "n1")]}], True),
        ([{"matchFields": [expr("metadata.name", "In", "n2")]}], False),
        ([], False),
    ]
    for terms, fits in cases:
        got = fit_problem(pod(affinity=affinity(*terms), tolerations=tol), zone_a, BIG)
        assert (got is None) == fits, (terms, got)


def test_requests_against_what_the_offer_still_holds():
    tol = [TOLERATE_KWOK]
    assert (
        fit_problem(pod(cpu="2", tolerations=tol), agent(), Resources(cpus=1, mem=4096)) == "Insufficient cpu"
    )
    assert (
        fit_problem(pod(memory="8Gi", tolerations=tol), agent(), Resources(4, 4096)) == "Insufficient memory"
    )
    ported = pod(tolerations=tol)
    ported["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": 31005}]
    assert fit_problem(ported, agent(), Resources(4, 4096, ports=((31000, 31010),))) is None
    assert fit_problem(ported, agent(), Resources(4, 4096, ports=((31000, 31004),))) is not None
    assert fit_problem(pod(tolerations=tol), None, BIG) == "agent not known yet"


def test_summary_reads_like_kube_scheduler():
    got = summary(Counter({"Insufficient cpu": 2, AFFINITY: 1}), 3, "offers")
    assert got == f"0/3 offers fit: 2 Insufficient cpu, 1 {AFFINITY}."


def test_groups_spark_app_then_framework_key_then_the_pod_itself():
    spark = pod("exec-1", labels={"spark-app-selector": "spark-0123abcd", "mesoskube.io/framework": "x"})
    assert group_of(spark).framework == "spark-0123abcd"
    assert group_of(pod("a", annotations={"mesoskube.io/framework": "etl"})).framework == "etl"
    assert group_of(pod("a", labels={"mesoskube.io/framework": "etl"})).framework == "etl"
    assert group_of(pod("lonely")).framework == "lonely"
    assert group_of(pod("lonely")).namespace == "ns"


def test_framework_names_are_dns_labels_and_altered_names_keep_a_hash():
    assert framework_name("etl") == "etl"
    odd = framework_name("My_App.v2")
    assert odd.startswith("my-app-v2-") and len(odd) <= 63
    assert framework_name("My_App.v2") != framework_name("my-app-v2")
    assert len(framework_name("a" * 100)) <= 63


def test_role_from_the_pod_else_the_namespace_else_star():
    ns = {"metadata": {"name": "ns", "labels": {"mesoskube.io/role": "batch"}}}
    assert role_of(pod(annotations={"mesoskube.io/role": "prod"}), ns) == "prod"
    assert role_of(pod(), ns) == "batch"
    assert role_of(pod(), {"metadata": {"name": "ns"}}) == "*"
    with pytest.raises(GroupError, match=r"mesoskube\.io/role=.no way. on pod p"):
        role_of(pod(annotations={"mesoskube.io/role": "no way"}), None)


def test_refuse_seconds_annotation():
    assert refuse_seconds(pod(annotations={REFUSE_KEY: "120"}), REFUSE_KEY) == 120.0
    assert refuse_seconds(pod(), REFUSE_KEY) is None
    with pytest.raises(GroupError, match="refuse-seconds='soon'"):
        refuse_seconds(pod(annotations={REFUSE_KEY: "soon"}), REFUSE_KEY)


def _adopting(name="p", uid="uid-p", cpus=0.5, mem=256.0) -> TaskInfo:
    return TaskInfo(
        name=name, resources=ResourceQuantities(cpus=cpus, mem=mem), pod=PodRef(name=name, uid=uid)
    )


def test_master_accepts_an_adoption_of_an_unbound_pod_naming_it():
    assert check_adopted_pods([_adopting()], {"p": pod()}, "mesoskube").ok


@pytest.mark.parametrize(
    ("task", "the_pod", "message"),
    [
        (_adopting(), None, "pod p not found among the pods with schedulerName mesoskube"),
        (_adopting(uid="other"), pod(), "has uid uid-p, not other (it was replaced)"),
        (_adopting(), pod(nodeName="n9"), "already bound to n9"),
        (
            _adopting(),
            pod(schedulerName="default-scheduler"),
            "schedulerName default-scheduler, not mesoskube",
        ),
        (_adopting(cpus=0.25), pod(), "cpus: pod requests 0.5, task holds 0.25"),
    ],
)
def test_master_refuses_adoptions_naming_what_is_wrong(task, the_pod, message):
    verdict = check_adopted_pods([task], {"p": the_pod}, "mesoskube")
    assert not verdict.ok
    assert message in verdict.message
