"""`make demo`: a local control plane with a few dozen fake nodes in three zones and a real kubelet
node, the master, and two Spark applications (coarse- and fine-grained, EMULATED workloads on kwok
nodes) sharing it by weighted DRF, with a live picture of frameworks, roles and tasks, then both
applications' summaries. A third framework runs one real command on the real node and prints its
output at the end.

The cluster stays up afterwards for `kubectl get mesos -A`; `make demo-down` removes it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml
from kubernetes.client import V1Namespace, V1ObjectMeta
from kubernetes.client.exceptions import ApiException

from mesoskube.api.install import install_crds
from mesoskube.cluster.local import LocalCluster, free_port
from mesoskube.cluster.nodes import add_nodes, wait_nodes_ready
from mesoskube.cluster.nodeshapes import parse_shape
from mesoskube.cluster.realnodes import REAL_LABEL
from mesoskube.frameworks.sdk import SchedulerDriver
from mesoskube.frameworks.sdk.hello_real import HelloReal
from mesoskube.kube import Kube
from mesoskube.master.runner import Master
from mesoskube.settings import Settings

# The test of the demo runs it on its own cluster with a fraction of the tasks; `make demo` uses these.
CLUSTER = os.environ.get("MESOSKUBE_DEMO_CLUSTER", "demo")
SCALE = float(os.environ.get("MESOSKUBE_DEMO_SCALE", "1"))
REAL_NODES = int(os.environ.get("MESOSKUBE_DEMO_REAL_NODES", "1"))
NAMESPACE = "spark"
NODES = 36
NODE_PREFIX = "demo-node"
SHAPES = [
    "cpu=8,memory=32Gi,label:zone=a",
    "cpu=16,memory=64Gi,label:zone=b",
    "cpu=4,memory=16Gi,gpu=1,label:zone=c",
]
ROLES = {"analytics": 1.0, "etl": 2.0}
WORKLOAD = {
    "stages": [{"tasks": 240, "seconds": 3.0}, {"tasks": 120, "seconds": 4.0}, {"tasks": 40, "seconds": 2.0}],
    "jitter": 0.2,
    "seed": 7,
}
APPS = [
    (
        "coarse-analytics",
        [
            "spark.mesos.coarse=true",
            "spark.cores.max=64",
            "spark.executor.cores=4",
            "spark.executor.memory=4g",
            "spark.mesos.role=analytics",
            "spark.mesos.constraints=type:kwok",  # the EMULATED workload runs on the kwok nodes only
        ],
    ),
    (
        "fine-etl",
        [
            "spark.mesos.coarse=false",
            "spark.executor.memory=2g",
            "spark.task.cpus=1",
            "spark.mesos.role=etl",
            "spark.mesos.constraints=type:kwok",
        ],
    ),
]


def is_outstanding(offer: dict) -> bool:
    phase = (offer.get("status") or {}).get("phase") or "Outstanding"
    return phase == "Outstanding" and not offer["spec"].get("answer")


def say(text: str) -> None:
    print(text, flush=True)


def picture(kube: Kube) -> str:
    fws = kube.list("frameworks", NAMESPACE)
    tasks = kube.list("tasks", NAMESPACE)
    offers = kube.list("offers", NAMESPACE)
    lines = [
        f"{'framework':<22}{'role':<11}{'state':<12}{'offers':>7}{'tasks':>7}{'cpus':>8}{'mem MB':>10}"
        f"{'share':>7}"
    ]
    for fw in fws:
        st = fw.get("status") or {}
        alloc = st.get("allocated") or {}
        lines.append(
            f"{fw['metadata']['name']:<22}{','.join(fw['spec'].get('roles', [])):<11}"
            f"{st.get('phase') or '-':<12}{st.get('offers', 0):>7}{st.get('tasks', 0):>7}"
            f"{alloc.get('cpus', 0):>8.1f}{alloc.get('mem', 0):>10.0f}{st.get('dominantShare') or 0:>7.3f}"
        )
    states = Counter((t.get("status") or {}).get("state", "TASK_STAGING") for t in tasks)
    lines.append(
        "tasks: "
        + ", ".join(f"{s.removeprefix('TASK_').lower()} {n}" for s, n in sorted(states.items()))
        + f"   outstanding offers: {sum(1 for o in offers if is_outstanding(o))}"
    )
    return "\n".join(lines)


def report_real_task(kube: Kube, hello: HelloReal, driver: SchedulerDriver, timeout: float = 120) -> bool:
    """Print what the real task printed; False when it did not finish."""
    driver.join(timeout)
    status = hello.final
    say(f"==== hello-real on {hello.launched_on or 'no real agent'} ====")
    if status is None:
        say(f"the real task did not end within {timeout:.0f}s")
        driver.stop()
        return False
    say(f"state {status.state.value}" + (f": {status.message}" if status.message else ""))
    with contextlib.suppress(ApiException):
        say("its output (kubectl logs):\n" + kube.core.read_namespaced_pod_log(hello.task_name, NAMESPACE))
    with contextlib.suppress(ApiException):  # now TEARDOWN: the framework left on failover
        kube.delete("frameworks", NAMESPACE, "hello-real")
    return status.state.value == "TASK_FINISHED"


def main() -> int:
    started = time.monotonic()
    cluster = LocalCluster(CLUSTER)
    cluster.up(real_nodes=REAL_NODES)
    kube = Kube.connect(str(cluster.kubeconfig))
    names = add_nodes(kube, NODES, [parse_shape(s) for s in SHAPES], prefix=NODE_PREFIX)  # idempotent
    wait_nodes_ready(kube, names)
    if REAL_NODES:
        wait_nodes_ready(kube, REAL_NODES, timeout=90, selector=f"{REAL_LABEL}=true")
    say(
        f"control plane up with {NODES} fake (kwok) nodes in zones a/b/c and {REAL_NODES} real "
        f"(kubelet) node(s) in {time.monotonic() - started:.1f}s"
    )
    say(f"kubeconfig: {cluster.kubeconfig}")
    install_crds(kube)
    for role, weight in ROLES.items():
        body = {
            "apiVersion": "mesoskube.io/v1alpha1",
            "kind": "MesosRole",
            "metadata": {"name": role},
            "spec": {"weight": weight},
        }
        try:
            kube.custom.create_cluster_custom_object("mesoskube.io", "v1alpha1", "mesosroles", body)
        except ApiException as e:
            if e.status != 409:
                raise
    try:
        kube.core.create_namespace(V1Namespace(metadata=V1ObjectMeta(name=NAMESPACE)))
    except ApiException as e:
        if e.status != 409:
            raise
    for name in [*(n for n, _ in APPS), "hello-real"]:  # a re-run starts from clean frameworks
        with contextlib.suppress(ApiException):
            kube.delete("frameworks", NAMESPACE, name)
    metrics_port, http_port = free_port(), free_port()
    master = Master(
        Kube.connect(str(cluster.kubeconfig), qps=100, burst=200),
        # Unauthenticated Mesos HTTP API: a local demo on loopback only.
        Settings(
            metricsPort=metrics_port, healthPort=0, httpPort=http_port, httpHost="127.0.0.1", httpAuth="none"
        ),
    )
    from prometheus_client import start_http_server

    start_http_server(metrics_port)
    master.start_in_thread()
    say(f"master running; metrics at http://127.0.0.1:{metrics_port}/metrics")
    say(f"Mesos HTTP API (unauthenticated, local): http://127.0.0.1:{http_port}/state, /api/v1/scheduler")
    say(f"watch it live:  kubectl --kubeconfig {cluster.kubeconfig} get mesos -A -w\n")

    workdir = Path(tempfile.mkdtemp(prefix="mesoskube-demo-"))
    workload = {
        **WORKLOAD,
        "stages": [{**st, "tasks": max(1, round(st["tasks"] * SCALE))} for st in WORKLOAD["stages"]],
    }
    (workdir / "workload.yaml").write_text(yaml.safe_dump(workload))
    procs = []
    for name, conf in APPS:
        argv = [
            sys.executable,
            "-m",
            "mesoskube.cli",
            "spark",
            "submit",
            "--name",
            name,
            "--namespace",
            NAMESPACE,
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--workload",
            str(workdir / "workload.yaml"),
            "--json-summary",
            str(workdir / f"{name}.json"),
            "--quiet",
        ]
        for c in conf:
            argv += ["--conf", c]
        out = open(workdir / f"{name}.log", "w")  # noqa: SIM115
        procs.append((name, subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT), out))
    say("two Spark applications submitted (EMULATED workload: stages of tasks with run times):")
    for name, conf in APPS:
        say(f"  {name}: {' '.join(conf)}")
    hello, hello_driver = HelloReal(), None
    if REAL_NODES:
        hello_driver = SchedulerDriver(
            hello, "hello-real", NAMESPACE, kube=Kube.connect(str(cluster.kubeconfig))
        )
        hello_driver.start()
        say("and one framework (hello-real) that runs a real command on a real node")
    try:
        while any(p.poll() is None for _, p, _ in procs):
            say(f"\n--- t={time.monotonic() - started:5.1f}s ---\n{picture(kube)}")
            time.sleep(3)
    finally:
        for _, p, out in procs:
            if p.poll() is None:
                p.terminate()
            out.close()
    say(f"\n--- final ---\n{picture(kube)}\n")
    failed = 0
    for name, p, _ in procs:
        say(f"==== {name} (exit {p.returncode}) ====")
        say((workdir / f"{name}.log").read_text()[-3000:])
        failed += p.returncode != 0
    if hello_driver is not None:
        failed += not report_real_task(kube, hello, hello_driver)
    master.stop()
    say(
        f"\nthe cluster is still up: kubectl --kubeconfig {cluster.kubeconfig} get mesos -A\n"
        + (
            "make demo-down removes it"
            if CLUSTER == "demo"
            else f"mesoskube cluster --name {CLUSTER} down removes it"
        )
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
