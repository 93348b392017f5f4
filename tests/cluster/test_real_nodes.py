"""Tasks on real kubelet nodes: commands run, exit codes, OOM, kill, Pod Security, Services and DNS,
and a node whose kubelet dies. Nothing here is emulated: the pods run in containerd + runc."""

from __future__ import annotations

import subprocess

import pytest
from kubernetes import client

from mesoskube import TASK_IMAGE
from mesoskube.api.models import TERMINAL_TASK_STATES
from mesoskube.cluster.images import TASK_BASE
from mesoskube.cluster.local import free_port
from mesoskube.master import LABEL_TASK
from tests.cluster.mesos import RawFramework, task
from tests.cluster.test_mesos_clients import Scheduler, check_run
from tests.helpers import eventually

SMALL = {"cpus": 0.1, "mem": 64}


def sh(name: str, script: str, **extra) -> dict:
    return {
        **task(name, SMALL["cpus"], SMALL["mem"]),
        "container": {"command": ["sh", "-c", script]},
        **extra,
    }


def offers_on(fw: RawFramework, agents: list[str]) -> dict[str, dict]:
    offers = fw.wait_offers(len(agents), timeout=30)
    return {o["spec"]["agent"]: o for o in offers if o["spec"]["agent"] in agents}


def logs(kube, namespace: str, pod: str) -> str:
    return kube.core.read_namespaced_pod_log(pod, namespace)


def test_real_agents_are_offered_with_their_attribute(kube, namespace, real_nodes, master):
    master()
    fw = RawFramework.subscribe(kube, namespace, "fw")
    by_agent = offers_on(fw, real_nodes)
    assert sorted(by_agent) == real_nodes
    for offer in by_agent.values():
        assert offer["spec"]["attributes"]["mesoskube.io/real"] == "true"
        assert offer["spec"]["resources"]["cpus"] > 0


def test_command_output_is_in_the_logs_and_exit_codes_map_to_states(kube, namespace, real_nodes, master):
    master()
    fw = RawFramework.subscribe(kube, namespace, "fw")
    offer = offers_on(fw, real_nodes)[real_nodes[0]]
    fw.accept(
        offer,
        [
            sh("ok", "echo hello from $(hostname); exit 0"),
            sh("bad", "echo about to fail >&2; exit 3"),
        ],
    )
    ok = fw.wait_task_state("ok", "TASK_FINISHED", timeout=60)
    assert ok["spec"]["agent"] == real_nodes[0]
    assert "hello from ok" in logs(kube, namespace, "ok")
    bad = fw.wait_task_state("bad", "TASK_FAILED", timeout=60)
    assert bad["status"]["reason"] == "REASON_COMMAND_EXECUTOR_FAILED"
    assert "exit code 3" in bad["status"]["message"]
    assert "about to fail" in logs(kube, namespace, "bad")


def test_a_task_over_its_memory_is_oom_killed_and_says_so(kube, namespace, real_nodes, master):
    master()
    fw = RawFramework.subscribe(kube, namespace, "fw")
    offer = offers_on(fw, real_nodes)[real_nodes[0]]
    # dd allocates its whole block: 256 MiB against a 64 MiB limit.
    fw.accept(offer, [sh("hog", "dd if=/dev/zero of=/dev/null bs=256M count=1")])
    hog = fw.wait_task_state("hog", "TASK_FAILED", timeout=60)
    assert hog["status"]["reason"] == "REASON_CONTAINER_LIMITATION_MEMORY"
    assert "OOM-killed" in hog["status"]["message"]


def test_exec_works_and_kill_stops_a_sleeping_task(kube, kubeconfig, namespace, real_nodes, master):
    master()
    fw = RawFramework.subscribe(kube, namespace, "fw")
    offer = offers_on(fw, real_nodes)[real_nodes[0]]
    fw.accept(offer, [sh("sleeper", "trap 'echo got TERM; exit 143' TERM; sleep 600 & wait")])
    fw.wait_task_state("sleeper", "TASK_RUNNING", timeout=60)
    # kubectl exec reaches the container through the API server and the kubelet's authorised API.
    inside = subprocess.run(
        [
            "kubectl",
            "--kubeconfig",
            kubeconfig,
            "-n",
            namespace,
            "exec",
            "sleeper",
            "--",
            "sh",
            "-c",
            "echo in-$0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert inside.returncode == 0 and inside.stdout.strip() == "in-sh", inside.stderr
    kube.patch("tasks", namespace, "sleeper", {"spec": {"kill": True}})
    # terminationGracePeriodSeconds is 5: the process is gone well before a forced kill would matter.
    fw.wait_task_state("sleeper", "TASK_KILLED", timeout=30)
    eventually(
        lambda: not kube.core.list_namespaced_pod(namespace, label_selector=f"{LABEL_TASK}=sleeper").items,
        timeout=30,
        what="the killed task's pod gone",
    )


def test_task_pods_run_in_a_namespace_that_enforces_restricted(kube, namespace, real_nodes, master):
    kube.core.patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    master()
    fw = RawFramework.subscribe(kube, namespace, "fw")
    offer = offers_on(fw, real_nodes)[real_nodes[0]]
    fw.accept(offer, [sh("confined", "id -u; cat /proc/self/status | grep CapEff")])
    fw.wait_task_state("confined", "TASK_FINISHED", timeout=60)
    out = logs(kube, namespace, "confined")
    assert out.splitlines()[0] == "65532"
    assert "CapEff:\t0000000000000000" in out


def test_a_task_reaches_another_through_a_service_by_ip_and_by_dns_name(kube, namespace, real_nodes, master):
    master()
    fw = RawFramework.subscribe(kube, namespace, "fw")
    offers = offers_on(fw, real_nodes)
    server_node, client_node = real_nodes[0], real_nodes[-1]
    fw.accept(
        offers[server_node],
        [
            sh(
                "web",
                "mkdir -p /tmp/www && echo hello-through-a-service > /tmp/www/index.html && "
                "exec httpd -f -p 8080 -h /tmp/www",
                labels={"app": "web"},
            )
        ],
    )
    fw.wait_task_state("web", "TASK_RUNNING", timeout=60)
    svc = kube.core.create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1ServiceSpec(
                selector={"app": "web"}, ports=[client.V1ServicePort(port=80, target_port=8080)]
            ),
        ),
    )
    ip = svc.spec.cluster_ip
    if client_node == server_node:
        more = fw.wait_offers(1, timeout=30, agent=client_node)[0]
    else:
        more = offers[client_node]
    # A new Service is reachable once every node's proxy rules and CoreDNS have it, which can be
    # after the client starts: like any client of a fresh Service, it tries again for a while.
    fw.accept(
        more,
        [
            sh(
                "client",
                'again() { for i in $(seq 30); do "$@" && return 0; sleep 1; done; return 1; }; '
                f"again wget -qO- http://{ip}/index.html && "
                f"again wget -qO- http://web.{namespace}.svc.cluster.local/index.html && "
                "again nslookup kubernetes.default.svc.cluster.local",
            )
        ],
    )

    def ended() -> dict | None:
        return fw.task("client") if fw.task_state("client") in TERMINAL_TASK_STATES else None

    done = eventually(ended, timeout=120, what="task client ended")
    out = logs(kube, namespace, "client")
    assert done["status"]["state"] == "TASK_FINISHED", (done["status"], out)
    assert out.count("hello-through-a-service") == 2, out
    assert "10.0.0.1" in out, out  # the in-cluster `kubernetes` Service, resolved by CoreDNS
    assert done["spec"]["agent"] == client_node


@pytest.mark.timeout(420)
def test_a_node_whose_kubelet_dies_loses_its_tasks_and_gets_nothing_until_it_is_back(
    kube, namespace, real_nodes, own_master, local_cluster
):
    from mesoskube.cluster.kubelets import RealNodes

    own_master(agentUnreachableTimeout=5)
    fw = RawFramework.subscribe(kube, namespace, "fw")
    victim = real_nodes[-1]
    offer = offers_on(fw, real_nodes)[victim]
    fw.accept(offer, [sh("doomed", "sleep 600")])
    fw.wait_task_state("doomed", "TASK_RUNNING", timeout=60)
    nodes = RealNodes(local_cluster)
    state = local_cluster.state()
    (spec,) = [s for s in nodes.specs(state) if s.name == victim]
    nodes.stop_kubelet(spec)
    try:
        # The node-lifecycle controller marks it NotReady after its grace period (40 s); then the
        # master's agent timeout makes the task lost (the framework is not partition-aware).
        lost = fw.wait_task_state("doomed", "TASK_LOST", timeout=150)
        assert lost["status"]["reason"] in ("REASON_AGENT_UNREACHABLE", "REASON_AGENT_REMOVED")
        assert all(o["spec"]["agent"] != victim for o in fw.offers())
    finally:
        nodes.start_kubelet(local_cluster.state(), spec)
    eventually(
        lambda: any(o["spec"]["agent"] == victim for o in fw.offers()),
        timeout=120,
        what=f"{victim} offered again once its kubelet is back",
    )


def test_a_second_cluster_cannot_take_the_real_nodes_host(real_nodes):
    from mesoskube.cluster.hostchanges import HostBusy
    from mesoskube.cluster.local import LocalCluster

    other = LocalCluster("pytest-second")
    try:
        with pytest.raises(HostBusy, match="only one cluster at a time can have real nodes"):
            other.up(real_nodes=1)
    finally:
        other.down()


@pytest.mark.timeout(240)
def test_an_unmodified_pymesos_scheduler_runs_its_command_tasks_on_real_nodes(
    kube, namespace, real_nodes, own_master
):
    """The Mesos HTTP API's must-show on real nodes: pymesos's example-style scheduler, its tasks'
    commands run in containerd (the task-base image: no registry to pull busybox from)."""
    port = free_port()
    own_master(httpPort=port, httpHost="127.0.0.1", httpAuth="none", httpDefaultImage=TASK_BASE)
    sched = Scheduler("pymesos", "pymesos_scheduler.py", f"127.0.0.1:{port}", 2, 2.0)
    try:
        # TASK_FINISHED here is the command's own exit status in a real container.
        check_run(kube, namespace, real_nodes, sched, 2, TASK_BASE)
    finally:
        sched.kill()


def _real_pod(name: str, script: str) -> dict:
    """A pod naming mesoskube's scheduler, as a user writes it, runnable under Pod Security restricted."""
    return {
        "metadata": {"name": name},
        "spec": {
            "schedulerName": "mesoskube",
            "restartPolicy": "Never",
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "main",
                    "image": TASK_IMAGE,
                    "command": ["sh", "-c", script],
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            ],
        },
    }


def test_a_plain_pod_and_a_jobs_pods_naming_mesoskube_run_on_real_nodes_through_offers(
    kube, namespace, real_nodes, master
):
    """The pods framework on its own: nothing but the pods, and their commands really run."""
    master(podsFramework=True)
    kube.core.create_namespaced_pod(namespace, _real_pod("hello", "echo hello from $HOSTNAME"))
    template = {"spec": _real_pod("unused", "echo part of a job")["spec"]}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "batch"},
        "spec": {"parallelism": 2, "completions": 2, "backoffLimit": 0, "template": template},
    }
    client.BatchV1Api(kube.api).create_namespaced_job(namespace, job)

    # Each pod is a Task bound through an offer. A finished app's Framework is torn down after
    # its grace period, taking its Tasks along: record them as they go by.
    seen: dict[str, dict] = {}

    def all_finished() -> bool:
        for t in kube.list("tasks", namespace):
            seen[t["metadata"]["name"]] = t
        return len(seen) == 3 and all(
            (t.get("status") or {}).get("state") == "TASK_FINISHED" for t in seen.values()
        )

    eventually(all_finished, timeout=180, interval=0.2, what="3 tasks TASK_FINISHED")
    pods = {p.metadata.name: p for p in kube.core.list_namespaced_pod(namespace).items}
    assert set(pods) == set(seen)
    for name, p in pods.items():
        assert p.status.phase == "Succeeded", f"{name}: {p.status.phase}"
        assert p.spec.node_name in real_nodes, f"{name} on {p.spec.node_name}"
        assert (
            seen[name]["spec"]["agent"] == p.spec.node_name
            and seen[name]["spec"]["pod"]["uid"] == p.metadata.uid
        )
        assert ("hello from hello" if name == "hello" else "part of a job") in logs(kube, namespace, name)
    eventually(
        lambda: (
            (client.BatchV1Api(kube.api).read_namespaced_job_status("batch", namespace).status.succeeded or 0)
            == 2
        ),
        timeout=30,
        what="job batch complete",
    )
