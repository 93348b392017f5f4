"""Spark (emulated workload) against the real master: coarse and fine placement, constraints, and
weighted DRF between two applications. kwok fake nodes run nothing; run times are emulated."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest
from kubernetes.client.exceptions import ApiException

from mesoskube.frameworks.sdk.watch import ListWatch
from mesoskube.frameworks.spark import EmulatedWorkload, SparkApplication, SparkConf
from mesoskube.kube import Kube
from mesoskube.master.objects import is_terminal
from tests.helpers import eventually, wait_torn_down


def spark_app(conf: dict[str, str], stages: list[dict], name: str, **wl) -> SparkApplication:
    workload = EmulatedWorkload.model_validate({"stages": stages, **wl})
    return SparkApplication(SparkConf.parse(conf), workload, framework_name=name)


class TaskLog:
    """The last state of every Task the namespace ever had, from a watch started before the app.

    An application's end is a TEARDOWN: its Framework is deleted and the garbage collector deletes
    its Tasks, so a list after the end races the collector. A DELETED event carries the object's
    last state, which is what the tests look at."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self._last: dict[str, dict] = {}
        self._deleted: set[str] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        args = ("mesoskube.io", "v1alpha1", namespace, "tasks")
        self._watch = ListWatch(
            "task-log", kube.custom.list_namespaced_custom_object, args, self._on, self._stopped
        )

    def _on(self, kind: str, obj) -> None:
        with self._lock:
            for item in obj if kind == "SYNC" else [obj]:
                self._last[item["metadata"]["name"]] = item
                if kind == "DELETED":
                    self._deleted.add(item["metadata"]["name"])

    def of(self, framework: str, role: str) -> list[dict]:
        with self._lock:
            items = list(self._last.values())
        return [
            t
            for t in items
            if t["spec"]["framework"] == framework and t["spec"]["labels"].get("spark-role") == role
        ]

    def settled(self, framework: str, role: str, count: int) -> list[dict]:
        """The role's Tasks once `count` of them were seen, each terminal or deleted (the watch may
        trail the app by a few events)."""

        def probe() -> list[dict]:
            found = self.of(framework, role)
            done = [t for t in found if is_terminal(t) or t["metadata"]["name"] in self._deleted]
            return found if len(found) >= count and len(done) == len(found) else []

        return eventually(probe, timeout=15, what=f"{count} terminal {role} Tasks of {framework}")


@pytest.fixture
def task_log(kube: Kube, namespace: str) -> Iterator[TaskLog]:
    log = TaskLog(kube, namespace)
    log._watch.start()
    eventually(lambda: log._watch.lists, what="the Task watch's first list")
    yield log
    log._stopped.set()
    log._watch.stop()


def states_before_end(app: SparkApplication, task_id: str) -> list[str]:
    assert app.ended_at is not None
    return [state for t, tid, state in app.history if tid == task_id and t < app.ended_at]


def test_coarse_app_gets_exactly_three_executors_and_keeps_them_until_it_ends(
    kube, namespace, fake_nodes, master, task_log
):
    fake_nodes(4, "cpu=8,memory=32Gi")
    master()
    app = spark_app(
        {"spark.cores.max": "12", "spark.executor.cores": "4"},
        [{"tasks": 12, "seconds": 1.0}, {"tasks": 24, "seconds": 0.5}],
        "coarse3",
    )
    app.start(kube, namespace)
    assert app.wait(60), app.failure
    s = app.summary()
    assert s.ok, s.error
    executors = task_log.settled("coarse3", "executor", 3)
    assert len(executors) == 3 and s.executors_launched == 3 and s.peak_executors == 3
    assert all(t["spec"]["resources"]["cpus"] == 4 for t in executors)
    assert all(t["spec"]["resources"]["mem"] == 1408 for t in executors)  # 1g + 384 MiB overhead
    for t in executors:
        states = states_before_end(app, t["metadata"]["name"])
        assert "TASK_RUNNING" in states, states
        assert not set(states) & {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST", "TASK_ERROR"}
    # cores.max reached: the other offers were declined for rejectOfferDurationForReachedMaxCores.
    assert s.declines.get("reached spark.cores.max", 0) >= 1
    assert s.peak_cores_held == 12 and s.tasks_done == 36
    # The end is a TEARDOWN: the Framework goes away and the master kills the executors.
    wait_torn_down(kube, namespace)


def test_constraints_place_executors_only_on_matching_agents_and_decline_the_rest(
    kube, namespace, fake_nodes, master, task_log
):
    zone_a = fake_nodes(2, "cpu=4,memory=16Gi,label:zone=a")
    zone_b = fake_nodes(2, "cpu=4,memory=16Gi,label:zone=b")
    master()
    app = spark_app(
        {"spark.executor.cores": "2", "spark.mesos.constraints": "zone:a"},
        [{"tasks": 16, "seconds": 1.0}, {"tasks": 8, "seconds": 1.0}],
        "zoned",
    )
    app.start(kube, namespace)
    assert app.wait(60), app.failure
    s = app.summary()
    assert s.ok, s.error
    executors = task_log.settled("zoned", "executor", 4)
    assert len(executors) == 4
    assert {t["spec"]["agent"] for t in executors} == set(zone_a)
    # Each zone=b agent was offered once, declined for rejectOfferDuration (120 s), not again.
    assert s.declines.get("unmet constraints") == 2
    assert all(app.offers_by_agent[n] == 1 for n in zone_b), dict(app.offers_by_agent)
    wait_torn_down(kube, namespace)


def test_fine_app_executor_holds_its_agent_while_task_tasks_come_and_go(
    kube, namespace, fake_nodes, master, task_log
):
    nodes = fake_nodes(2, "cpu=4,memory=16Gi")
    master()
    app = spark_app(
        {"spark.mesos.coarse": "false", "spark.executor.memory": "2g"},
        [{"tasks": 6, "seconds": 1.5}, {"tasks": 6, "seconds": 1.0}],
        "finegrained",
    )
    app.start(kube, namespace)
    assert app.wait(90), app.failure
    s = app.summary()
    assert s.ok, s.error
    executors = task_log.settled("finegrained", "executor", 2)
    tasks = task_log.settled("finegrained", "task", 12)
    # One executor per agent, holding mesosExecutor.cores and executor memory + overhead.
    assert sorted(t["spec"]["agent"] for t in executors) == sorted(nodes)
    for t in executors:
        res = t["spec"]["resources"]
        assert (res["cpus"], res["mem"]) == (1, 2048 + 384)
        assert "runSeconds" not in t["spec"]
    by_agent = {t["spec"]["agent"]: t["metadata"]["name"] for t in executors}
    # One Task per emulated Spark task, on its agent's executor, with spark.task.cpus and no memory.
    assert len(tasks) == 12
    for t in tasks:
        assert t["spec"]["executor"] == by_agent[t["spec"]["agent"]]
        assert (t["spec"]["resources"]["cpus"], t["spec"]["resources"].get("mem", 0)) == (1, 0)
        assert t["status"]["state"] == "TASK_FINISHED"
    # The executors stayed up while the task Tasks finished around them.
    for name in by_agent.values():
        states = states_before_end(app, name)
        assert "TASK_RUNNING" in states and not any(st in states for st in ("TASK_KILLED", "TASK_FAILED"))
        running_at = next(t for t, tid, st in app.history if tid == name and st == "TASK_RUNNING")
        finished_after = [
            t
            for t, tid, st in app.history
            if st == "TASK_FINISHED" and tid != name and running_at < t < app.ended_at
        ]
        assert len(finished_after) >= 2
    assert s.mean_idle_cores_held > 0  # the executors' cores are held even between tasks
    wait_torn_down(kube, namespace)


def test_two_apps_in_weighted_roles_share_by_drf(kube, namespace, fake_nodes, master):
    fake_nodes(6, "cpu=4,memory=16Gi")
    roles = {"light": 1, "heavy": 2}
    for name, weight in roles.items():
        kube.custom.create_cluster_custom_object(
            "mesoskube.io",
            "v1alpha1",
            "mesosroles",
            {
                "apiVersion": "mesoskube.io/v1alpha1",
                "kind": "MesosRole",
                "metadata": {"name": f"{namespace}-{name}"},
                "spec": {"weight": weight},
            },
        )
    try:
        master()
        # Far more demand than the window runs: the window starts once both apps have done 20
        # tasks, and the framework that subscribed first holds the whole cluster until its tasks
        # end (as in Mesos, whose allocator offers a framework everything at its registration).
        # With 200 tasks each, the heavy app once ran out before the light one had done its 20.
        stages = [{"tasks": 600, "seconds": 1.0}]
        apps = {
            name: spark_app(
                {"spark.mesos.coarse": "false", "spark.mesos.role": f"{namespace}-{name}"},
                stages,
                name,
                jitter=0.3,
                seed=i,
            )
            for i, name in enumerate(roles)
        }
        for app in apps.values():
            app.start(kube, namespace)
        # Let the shares settle, then compare cores held over a window while both are busy. The
        # window is an amount of work, not a time (it was 8 s, which on a loaded machine held
        # too few allocations to measure): six rounds of the cluster's 24 cores, however long
        # the machine takes to run them.
        eventually(
            lambda: all(a.run_state.done_tasks >= 20 for a in apps.values()),
            timeout=60,
            what="both apps busy",
        )
        done0 = {n: a.run_state.done_tasks for n, a in apps.items()}
        t0 = max(a.clock() for a in apps.values())
        eventually(
            lambda: sum(a.run_state.done_tasks - done0[n] for n, a in apps.items()) >= 6 * 24,
            timeout=180,
            interval=0.2,
            what="six rounds of the cluster's cores run",
        )
        t1 = apps["heavy"].clock()
        assert all(a.run_state.done_tasks < 600 for a in apps.values()), (
            "an app ran out of work in the window"
        )
        held = {n: a.timeline.integrate(t0, t1)[0] / (t1 - t0) for n, a in apps.items()}
        ratio = held["heavy"] / held["light"]
        assert 1.4 <= ratio <= 2.6, f"cores held heavy:light = {ratio:.2f} ({held})"
        for app in apps.values():
            app.driver.stop()
        wait_torn_down(kube, namespace)
    finally:
        for name in roles:
            with contextlib.suppress(ApiException):
                kube.custom.delete_cluster_custom_object(
                    "mesoskube.io", "v1alpha1", "mesosroles", f"{namespace}-{name}"
                )
