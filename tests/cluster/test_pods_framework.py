"""The pods framework on kwok nodes: pods naming mesoskube's scheduler are bound through offers,
each application one Framework, each pod a Task mirroring it; constraints are honoured and a pod
that fits nowhere stays Pending with an Event saying why."""

from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from mesoskube.kube import Kube
from tests.cluster.mesos import RawFramework, task
from tests.helpers import eventually

TOLERATE_KWOK = [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}]


def pod_body(name: str, cpu: str = "500m", memory: str = "256Mi", run: str | None = None, **extra) -> dict:
    annotations = dict(extra.pop("annotations", {}))
    if run:
        annotations["mesoskube.io/run-duration"] = run
    spec = {
        "schedulerName": "mesoskube",
        "tolerations": TOLERATE_KWOK,
        "restartPolicy": "Never",
        "containers": [
            {"name": "main", "image": "busybox", "resources": {"requests": {"cpu": cpu, "memory": memory}}}
        ],
        **extra,
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": spec,
    }


def read_pod(kube: Kube, namespace: str, name: str) -> dict:
    return kube.api.sanitize_for_serialization(kube.core.read_namespaced_pod(name, namespace))


def wait_bound(kube: Kube, namespace: str, name: str, timeout: float = 20) -> str:
    return eventually(
        lambda: read_pod(kube, namespace, name)["spec"].get("nodeName"),
        timeout=timeout,
        what=f"pod {name} bound",
    )


def wait_task(kube: Kube, namespace: str, name: str, state: str, timeout: float = 20) -> dict:
    def probe():
        try:
            t = kube.get("tasks", namespace, name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return t if (t.get("status") or {}).get("state") == state else None

    return eventually(probe, timeout=timeout, what=f"task {name} {state}")


def pod_events(kube: Kube, namespace: str, name: str, reason: str = "FailedScheduling") -> list[str]:
    events = kube.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
    return [e.message for e in events if e.reason == reason]


def test_a_plain_pod_is_bound_through_an_offer_and_recorded_as_a_task(kube, namespace, fake_nodes, master):
    nodes = fake_nodes(2, "cpu=4,memory=8Gi")
    master(podsFramework=True)
    kube.core.create_namespaced_pod(namespace, pod_body("web", run="3s"))
    node = wait_bound(kube, namespace, "web")
    assert node in nodes
    pod = read_pod(kube, namespace, "web")
    running = wait_task(kube, namespace, "web", "TASK_RUNNING")
    assert running["spec"]["pod"] == {"name": "web", "uid": pod["metadata"]["uid"]}
    assert running["spec"]["agent"] == node
    assert {k: v for k, v in running["spec"]["resources"].items() if v} == {"cpus": 0.5, "mem": 256}
    assert running["status"]["podName"] == "web"
    # The application is a Framework of its own (what `kubectl get mesos` lists), subscribed.
    fw = kube.get("frameworks", namespace, "web")
    assert fw["status"]["phase"] == "Subscribed" and fw["spec"]["roles"] == ["*"]
    assert fw["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mesoskube-pods"
    # The pod was bound (its owner is still nobody's: the master adopted it, it did not create it).
    assert not pod["metadata"].get("ownerReferences")
    finished = wait_task(kube, namespace, "web", "TASK_FINISHED")
    assert finished["status"]["reason"] == "REASON_COMMAND_EXECUTOR_COMPLETED"
    # No live pod left: the framework is torn down (after its 10 s grace), the pod stays Completed.
    eventually(lambda: not kube.list("frameworks", namespace), timeout=40, what="framework torn down")
    assert read_pod(kube, namespace, "web")["status"]["phase"] == "Succeeded"


def test_a_jobs_pods_form_one_framework_and_the_job_completes(kube, namespace, fake_nodes, master):
    nodes = fake_nodes(2, "cpu=2,memory=4Gi")
    # The namespace's default role (no pod names one).
    kube.core.patch_namespace(namespace, {"metadata": {"labels": {"mesoskube.io/role": "batch"}}})
    master(podsFramework=True)
    template = pod_body(
        "unused", cpu="1", memory="512Mi", run="2s", annotations={"mesoskube.io/framework": "etl"}
    )
    template = {"metadata": {"annotations": template["metadata"]["annotations"]}, "spec": template["spec"]}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "etl"},
        "spec": {"parallelism": 4, "completions": 4, "backoffLimit": 0, "template": template},
    }
    client.BatchV1Api(kube.api).create_namespaced_job(namespace, job)

    def done():
        status = client.BatchV1Api(kube.api).read_namespaced_job_status("etl", namespace).status
        return (status.succeeded or 0) == 4

    eventually(done, timeout=60, what="job etl: 4 pods succeeded")
    fw = kube.get("frameworks", namespace, "etl")
    tasks = kube.list("tasks", namespace, label_selector="mesoskube.io/framework=etl")
    pods = {
        p.metadata.name: p
        for p in kube.core.list_namespaced_pod(
            namespace, label_selector="batch.kubernetes.io/job-name=etl"
        ).items
    }
    assert fw["metadata"]["name"] == "etl" and fw["spec"]["roles"] == ["batch"]
    assert len(pods) == 4 and {t["metadata"]["name"] for t in tasks} == set(pods)
    for t in tasks:
        p = pods[t["metadata"]["name"]]
        assert t["spec"]["agent"] == p.spec.node_name and p.spec.node_name in nodes
        assert t["spec"]["pod"]["uid"] == p.metadata.uid
    eventually(
        lambda: all(
            (t.get("status") or {}).get("state") == "TASK_FINISHED" for t in kube.list("tasks", namespace)
        ),
        timeout=15,
        what="every task finished",
    )


def test_a_pod_that_fits_nowhere_stays_pending_with_an_event(kube, namespace, fake_nodes, master):
    fake_nodes(2, "cpu=4,memory=8Gi")
    master(podsFramework=True)
    kube.core.create_namespaced_pod(namespace, pod_body("huge", cpu="64"))
    untolerated = pod_body("untolerated")
    untolerated["spec"].pop("tolerations")
    kube.core.create_namespaced_pod(namespace, untolerated)
    kube.core.create_namespaced_pod(namespace, pod_body("small"))
    wait_bound(kube, namespace, "small")
    huge = eventually(
        lambda: pod_events(kube, namespace, "huge"), timeout=20, what="FailedScheduling on huge"
    )
    assert "0/2 agents fit: 2 Insufficient cpu. No agent can ever run this pod." in huge
    msgs = eventually(
        lambda: pod_events(kube, namespace, "untolerated"), timeout=20, what="FailedScheduling on untolerated"
    )
    assert any("untolerated taint {kwok.x-k8s.io/node: fake}" in m for m in msgs)
    for name in ("huge", "untolerated"):
        p = read_pod(kube, namespace, name)
        assert p["status"]["phase"] == "Pending" and not p["spec"].get("nodeName")
    # And on their Frameworks, for `kubectl describe framework`.
    fw_events = eventually(
        lambda: pod_events(kube, namespace, "huge", reason="PodUnschedulable"),
        timeout=10,
        what="on framework huge",
    )
    assert any("pod huge: 0/2 agents fit: 2 Insufficient cpu." in m for m in fw_events)
    # The framework holds no task for them.
    assert {t["metadata"]["name"] for t in kube.list("tasks", namespace)} == {"small"}


def test_node_selector_and_required_affinity_are_honoured(kube, namespace, fake_nodes, master):
    zone_a = fake_nodes(2, "cpu=8,memory=16Gi,label:zone=a")
    zone_b = fake_nodes(1, "cpu=8,memory=16Gi,label:zone=b")
    master(podsFramework=True)
    group = {"mesoskube.io/framework": "placed"}
    for i in range(3):
        kube.core.create_namespaced_pod(
            namespace, pod_body(f"sel-{i}", nodeSelector={"zone": "b"}, annotations=group)
        )
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                ]
            }
        }
    }
    for i in range(3):
        kube.core.create_namespaced_pod(namespace, pod_body(f"aff-{i}", affinity=affinity, annotations=group))
    for i in range(3):
        assert wait_bound(kube, namespace, f"sel-{i}") in zone_b
        assert wait_bound(kube, namespace, f"aff-{i}") in zone_a
    tasks = kube.list("tasks", namespace, label_selector="mesoskube.io/framework=placed")
    assert len(tasks) == 6


def test_the_master_refuses_an_adoption_naming_what_is_wrong(kube, namespace, fake_nodes, own_master):
    """The master's side alone (a raw framework, no pods framework): all or none, TASK_ERROR."""
    fake_nodes(1, "cpu=4,memory=8Gi")
    own_master()  # without the pods framework (the installed master runs it)
    other = pod_body("other-sched")
    other["spec"]["schedulerName"] = "someone-else"
    kube.core.create_namespaced_pod(namespace, other)
    kube.core.create_namespaced_pod(namespace, pod_body("mine", cpu="1"))
    uid = {n: read_pod(kube, namespace, n)["metadata"]["uid"] for n in ("other-sched", "mine")}
    fw = RawFramework.subscribe(kube, namespace, "raw")
    (offer,) = fw.wait_offers(1)
    fw.accept(
        offer,
        [
            task("mine", 1, 256, pod={"name": "mine", "uid": uid["mine"]}),
            task("other-sched", 0.5, 256, pod={"name": "other-sched", "uid": uid["other-sched"]}),
        ],
    )
    for name in ("mine", "other-sched"):
        t = fw.wait_task_state(name, "TASK_ERROR", timeout=15)
        assert (
            "pod other-sched not found among the pods with schedulerName mesoskube" in t["status"]["message"]
        )
    assert not read_pod(kube, namespace, "mine")["spec"].get("nodeName")
    # A task adopting a pod takes its name: the API server refuses anything else.
    (again,) = fw.wait_offers(1, timeout=15)
    with pytest.raises(ApiException) as refused:
        fw.accept(again, [task("renamed", 1, 256, pod={"name": "mine", "uid": uid["mine"]})])
    assert refused.value.status == 422 and "takes the pod's name" in refused.value.body


def test_pods_shaped_as_spark_creates_them_from_the_translated_confs_are_one_framework(
    kube, namespace, fake_nodes, master
):
    """No Spark runs here (kwok nodes): the executor pods are built as Spark 4's Kubernetes backend
    builds them from `spark submit`'s translated confs (labels, annotations, the pod template), to
    check what the pods framework does with them: one Framework per application in its role,
    executors only on agents meeting spark.mesos.constraints, spark.cores.max / executor.cores of them."""
    from mesoskube.frameworks.spark.k8s import translate

    fake_nodes(2, "cpu=8,memory=16Gi,label:zone=a")
    zone_b = fake_nodes(2, "cpu=8,memory=16Gi,label:zone=b")
    master(podsFramework=True)
    sub = translate(
        {
            "spark.kubernetes.container.image": "spark-py:4.3.0",
            "spark.cores.max": "12",
            "spark.executor.cores": "2",
            "spark.executor.memory": "1g",
            "spark.mesos.constraints": "zone:b",
            "spark.mesos.role": "analytics",
        },
        namespace,
    )
    conf = sub.conf
    label_prefix, annotation_prefix = (
        "spark.kubernetes.executor.label.",
        "spark.kubernetes.executor.annotation.",
    )
    labels = {k.removeprefix(label_prefix): v for k, v in conf.items() if k.startswith(label_prefix)}
    annotations = {
        k.removeprefix(annotation_prefix): v for k, v in conf.items() if k.startswith(annotation_prefix)
    }
    memory_mb = int(conf["spark.executor.memory"][:-1]) + int(conf["spark.executor.memoryOverhead"][:-1])
    executors = int(conf["spark.executor.instances"])
    for i in range(1, executors + 1):
        body = pod_body(f"wc-0a1b-exec-{i}", cpu=conf["spark.executor.cores"], memory=f"{memory_mb}Mi")
        body["metadata"]["labels"] = {
            **labels,
            "spark-app-selector": "spark-0a1b2c3d",
            "spark-role": "executor",
            "spark-exec-id": str(i),
        }
        body["metadata"]["annotations"] = annotations
        body["spec"]["schedulerName"] = conf["spark.kubernetes.scheduler.name"]
        body["spec"].update(sub.executor_template["spec"])
        kube.core.create_namespaced_pod(namespace, body)
    for i in range(1, executors + 1):
        assert wait_bound(kube, namespace, f"wc-0a1b-exec-{i}") in zone_b
    fw = kube.get("frameworks", namespace, "spark-0a1b2c3d")
    assert fw["spec"]["roles"] == ["analytics"]
    tasks = kube.list("tasks", namespace, label_selector="mesoskube.io/framework=spark-0a1b2c3d")
    assert len(tasks) == executors == 6
    assert sum(t["spec"]["resources"]["cpus"] for t in tasks) == 12  # spark.cores.max
    assert {t["spec"]["resources"]["mem"] for t in tasks} == {1024 + 384}


def test_declines_refuse_the_agents_and_a_new_pod_revives_them(kube, namespace, fake_nodes, own_master):
    """Offers nothing fits are declined for the pods' refuse time (here 300 s); a pod arriving
    later revives the framework, so it is placed at once rather than after the refusal."""
    fake_nodes(2, "cpu=4,memory=8Gi")
    m = own_master(podsFramework=True)
    group = {"mesoskube.io/framework": "grp", "mesoskube.io/refuse-seconds": "300"}
    kube.core.create_namespaced_pod(namespace, pod_body("big", cpu="6", annotations=group))

    def declines() -> int:
        app = next(iter(m.pods.apps.values()), None)
        return app.driver.stats.declines if app else 0

    eventually(lambda: declines() >= 2, timeout=20, what="both agents' offers declined")
    # Both agents are refused for 300 s now; only a revive brings them back.
    kube.core.create_namespaced_pod(namespace, pod_body("fits", cpu="1", annotations=group))
    wait_bound(kube, namespace, "fits", timeout=15)
    assert not read_pod(kube, namespace, "big")["spec"].get("nodeName")


def test_an_unsatisfiable_constraint_leaves_the_app_waiting_with_a_message_on_its_framework(
    kube, namespace, fake_nodes, master
):
    """spark.mesos.constraints no agent meets (executor pods shaped from the translation, as above):
    the executors stay Pending, and the Framework's Events (kubectl describe framework) say why."""
    from mesoskube.frameworks.spark.k8s import translate

    fake_nodes(2, "cpu=8,memory=16Gi,label:zone=a")
    master(podsFramework=True)
    sub = translate(
        {
            "spark.kubernetes.container.image": "x",
            "spark.executor.cores": "1",
            "spark.mesos.constraints": "zone:c",
        },
        namespace,
    )
    body = pod_body("wc-9f-exec-1", cpu="1")
    body["metadata"]["labels"] = {"spark-app-selector": "spark-9f9f", "spark-role": "executor"}
    body["spec"].update(sub.executor_template["spec"])
    kube.core.create_namespaced_pod(namespace, body)
    msgs = eventually(
        lambda: pod_events(kube, namespace, "spark-9f9f", reason="PodUnschedulable"),
        timeout=20,
        what="PodUnschedulable on framework spark-9f9f",
    )
    assert "pod wc-9f-exec-1: 0/2 agents fit: 2 node(s) didn't match Pod's node affinity/selector." in msgs[0]
    eventually(
        lambda: (
            (kube.get("frameworks", namespace, "spark-9f9f").get("status") or {}).get("phase") == "Subscribed"
        ),
        timeout=10,
        what="framework spark-9f9f subscribed (waiting, not failed)",
    )
    assert not read_pod(kube, namespace, "wc-9f-exec-1")["spec"].get("nodeName")
