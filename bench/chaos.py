"""`make chaos`: the master under failure, and what it lost or launched twice.

Each run: a fresh namespace and fresh kwok nodes; two `mesoskube master run` replicas as
subprocesses with leader election (a supervisor restarts any that exits, as a Deployment would);
one framework on the SDK launching `--tasks` short tasks (EMULATED: kwok completes each pod after
its runSeconds) while a chaos thread, at random moments, SIGKILLs the leader, stops it gracefully
(SIGTERM), restarts the kube-apiserver, restarts etcd, and deletes kwok nodes (replacing them).
Tasks that end LOST (their node was deleted) or never reached the API are launched again under new
names until `--tasks` have FINISHED.

After each run, from the API server and the framework's own records:
- tasks, pods; duplicate pods per task (a pod whose owner is not the Task of that name, or more than
  one pod per task); pods without a Task;
- accepted tasks never created: the SDK stored the accept, yet no Task appeared and no status came;
- tasks stuck non-terminal after their pods ended (or vanished);
- status updates the framework never got: a Task's terminal state the framework was never told;
- failover: SIGKILL -> a new holder of the master Lease -> the first new offer the framework sees,
  and the same from a graceful stop (SIGTERM).

Writes bench/results/chaos.json and chaos.md. Not part of `make test`; tests/cluster/test_chaos.py
runs a small version.

    python -m bench.chaos --runs 20 --tasks 1000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from mesoskube.api.install import install_crds
from mesoskube.api.models import TERMINAL_TASK_STATES, TaskState
from mesoskube.cluster.local import LocalCluster, free_port
from mesoskube.cluster.nodes import add_nodes, remove_nodes, wait_nodes_ready
from mesoskube.cluster.nodeshapes import NodeShape, parse_shape
from mesoskube.frameworks.sdk import (
    Offer,
    ResourceQuantities,
    Scheduler,
    SchedulerDriver,
    TaskInfo,
    TaskStatus,
)
from mesoskube.kube import Kube
from mesoskube.master import LABEL_TASK
from mesoskube.settings import Settings

log = logging.getLogger("chaos")
ROOT = Path(__file__).resolve().parent.parent
LEASE = "mesoskube-master"
TERMINAL = {s.value for s in TERMINAL_TASK_STATES}


@dataclass
class Config:
    runs: int = 20
    tasks: int = 1000
    nodes: int = 10
    node_shape: str = "cpu=8,memory=32Gi"
    concurrency: int = 48  # tasks in flight at most: free capacity stays, so failover shows as offers
    run_seconds: tuple[float, float] = (0.5, 2.0)
    leader_kills: int = 3
    graceful_stops: int = 1
    apiserver_restarts: int = 1
    etcd_restarts: int = 1
    node_deletions: int = 1  # events; each deletes `nodes_per_deletion` nodes and adds as many
    nodes_per_deletion: int = 2
    event_gap: tuple[float, float] = (3.0, 8.0)
    run_timeout: float = 900.0
    seed: int = 0
    cluster: str = "chaos"
    replicas: int = 2
    # The replicas' election timings (settings.py defaults unless given).
    lease_duration: int = Settings.model_fields["leaseDuration"].default
    renew_deadline: float = Settings.model_fields["renewDeadline"].default
    retry_period: float = Settings.model_fields["retryPeriod"].default
    replica_log_level: str = "WARNING"  # INFO shows each takeover's timings in the replicas' logs


# ---------------------------------------------------------------------------- master replicas


class Replicas:
    """`mesoskube master run` replicas with leader election, restarted when they exit."""

    def __init__(
        self, kubeconfig: str, namespace: str, selector: str, count: int, logdir: Path, cfg: Config
    ) -> None:
        self.kubeconfig, self.namespace, self.selector, self.cfg = kubeconfig, namespace, selector, cfg
        self.logdir = logdir
        self.procs: dict[str, subprocess.Popen] = {}
        self.health: dict[str, int] = {}
        # Lease identity of each replica's current process: a restarted process is a new candidate
        # (as a new pod is), or it would take its dead predecessor's Lease over at once.
        self.identity: dict[str, str] = {}
        self.starts = Counter()
        self.exits: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        for i in range(count):
            ident = f"replica-{i}"
            self.health[ident] = free_port()
            self._start(ident)
        self.supervisor = threading.Thread(target=self._supervise, daemon=True)
        self.supervisor.start()

    def _start(self, ident: str) -> None:
        self.starts[ident] += 1
        self.identity[ident] = f"{ident}-{self.starts[ident]}"
        log_file = open(self.logdir / f"{ident}.log", "ab")  # noqa: SIM115 - handed to the child
        argv = [
            sys.executable, "-m", "mesoskube.cli", "master", "run",
            "--kubeconfig", self.kubeconfig,
            "--namespace", self.namespace,
            "--agent-selector", self.selector,
            "--leader-elect", "true",
            "--lease-namespace", self.namespace,
            "--lease-name", LEASE,
            "--identity", self.identity[ident],
            "--lease-duration", str(self.cfg.lease_duration),
            "--renew-deadline", str(self.cfg.renew_deadline),
            "--retry-period", str(self.cfg.retry_period),
            "--metrics-port", "0",
            "--http-port", "0",  # the Mesos HTTP API and the pods framework are not under test here
            "--pods-framework", "false",
            "--health-port", str(self.health[ident]),
            "--allocation-interval", "0.5",
            "--max-completed-tasks-per-framework", "1000000",  # keep every Task for the count
            "--log-level", self.cfg.replica_log_level,
        ]  # fmt: skip
        self.procs[ident] = subprocess.Popen(
            argv, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        log_file.close()

    def _supervise(self) -> None:
        while not self.stopping.wait(0.2):
            with self.lock:
                for ident, p in list(self.procs.items()):
                    if p.poll() is not None and not self.stopping.is_set():
                        self.exits.append((ident, p.returncode))
                        self._start(ident)

    def ready(self, ident: str) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health[ident]}/readyz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def replica_of(self, identity: str | None) -> str | None:
        with self.lock:
            return next((r for r, i in self.identity.items() if i == identity), None)

    def signal(self, ident: str, sig: int) -> None:
        with self.lock:
            p = self.procs[ident]
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, sig)

    def stop(self) -> None:
        self.stopping.set()
        self.supervisor.join(5)
        for p in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)


def lease_holder(kube: Kube, namespace: str) -> str | None:
    try:
        lease = kube.coordination.read_namespaced_lease(LEASE, namespace, _request_timeout=2)
    except Exception:
        return None
    return lease.spec.holder_identity or None


# ---------------------------------------------------------------------------- the framework


class Workload(Scheduler):
    """Launches tasks until `total` FINISHED; anything else that ends a task launches a new one."""

    def __init__(self, total: int, concurrency: int, run_seconds: tuple[float, float], rng: random.Random):
        self.total, self.concurrency, self.run_seconds, self.rng = total, concurrency, run_seconds, rng
        self.lock = threading.Lock()
        self.seq = 0
        self.inflight: set[str] = set()
        self.accepted: dict[str, float] = {}  # stored accepts: task -> time
        self.not_stored: set[str] = set()  # the SDK said the answer never reached the API
        self.updates: dict[str, list[str]] = {}
        self.finished = 0
        self.ended = Counter()
        self.offer_seen: list[float] = []
        self.done = threading.Event()
        self.need = ResourceQuantities(cpus=1, mem=256)

    def resource_offers(self, driver: SchedulerDriver, offers: list[Offer]) -> None:
        now = time.monotonic()
        with self.lock:
            self.offer_seen.extend(now for _ in offers)
        for offer in offers:
            with self.lock:
                room = min(
                    self.concurrency - len(self.inflight),
                    self.total - self.finished - len(self.inflight),
                    int(min(offer.resources.cpus, offer.resources.mem // 256)),
                )
                names = []
                for _ in range(max(0, room)):
                    self.seq += 1
                    names.append(f"t{self.seq:06d}")
                self.inflight.update(names)
            if not names:
                driver.decline(offer.id, refuse_seconds=0.2)
                continue
            tasks = [
                TaskInfo(
                    name=n, resources=self.need, runSeconds=round(self.rng.uniform(*self.run_seconds), 2)
                )
                for n in names
            ]
            before = driver.stats.accepts
            driver.accept(offer.id, tasks, filters={"refuseSeconds": 0.2})
            if driver.stats.accepts > before:
                with self.lock:
                    for n in names:
                        self.accepted[n] = time.monotonic()

    def status_update(self, driver: SchedulerDriver, status: TaskStatus) -> None:
        with self.lock:
            self.updates.setdefault(status.task_id, []).append(status.state.value)
            if status.reason == "REASON_MASTER_DISCONNECTED":
                self.not_stored.add(status.task_id)
            if status.state.value in TERMINAL and status.task_id in self.inflight:
                self.inflight.discard(status.task_id)
                self.ended[status.state.value] += 1
                if status.state is TaskState.FINISHED:
                    self.finished += 1
                    if self.finished >= self.total:
                        self.done.set()


# ---------------------------------------------------------------------------- chaos


@dataclass
class RunResult:
    run: int
    tasks_finished: int = 0
    tasks: int = 0
    pods: int = 0
    duplicate_pods: int = 0
    pods_without_task: int = 0
    accepted_never_created: int = 0
    stuck_after_pod_ended: int = 0
    status_updates_missed: int = 0
    tasks_lost: int = 0  # ended TASK_LOST/DROPPED (node deleted, answer not stored): relaunched
    answers_not_stored: int = 0
    failover_kill_to_lease: list[float] = field(default_factory=list)
    failover_kill_to_offer: list[float] = field(default_factory=list)
    failover_graceful_to_lease: list[float] = field(default_factory=list)
    failover_graceful_to_offer: list[float] = field(default_factory=list)
    apiserver_down_s: list[float] = field(default_factory=list)
    etcd_down_s: list[float] = field(default_factory=list)
    nodes_deleted: int = 0
    events: list[str] = field(default_factory=list)
    replica_exits: list[list] = field(default_factory=list)
    task_states: dict[str, int] = field(default_factory=dict)  # Task objects by status.state at the end
    framework_ended: dict[str, int] = field(default_factory=dict)  # terminal states the framework counted
    # A Task ended as failed (ERROR, LOST, ...) while its pod ran anyway: the framework relaunches the
    # work, so it runs twice.
    ran_but_reported_failed: int = 0
    leadership_lost: int = 0  # renew deadline passed (the leader exited 1 and was restarted)
    # TASK_ERROR Tasks at the end, by reason and message (the five most common).
    task_errors: dict[str, int] = field(default_factory=dict)
    tasks_lost_by_reason: dict[str, int] = field(default_factory=dict)
    # Why replicas exited 1, from their logs; "unexplained" counts exits 1 with no known cause.
    exit_reasons: dict[str, int] = field(default_factory=dict)
    # Watches re-listed (after a 410) and what their sweep found deleted meanwhile, by kind (relist.py).
    relists: dict[str, int] = field(default_factory=dict)
    relist_ghosts: dict[str, int] = field(default_factory=dict)
    framework_torn_down: bool = False
    duration_s: float = 0.0
    completed: bool = False
    details: dict[str, list[str]] = field(default_factory=dict)


class Chaos:
    def __init__(
        self,
        cfg: Config,
        cluster: LocalCluster | None,
        kube: Kube,
        kubeconfig: str,
        run: int,
        logs: Path = ROOT / "bench" / "results" / "chaos-logs",
    ):
        """`cluster` None: an existing cluster, no kube-apiserver or etcd restarts."""
        self.cfg, self.cluster, self.kube, self.kubeconfig = cfg, cluster, kube, kubeconfig
        self.logs = logs
        self.rng = random.Random(cfg.seed * 1000 + run)
        self.run_id = f"c{run}-{uuid.uuid4().hex[:5]}"
        self.namespace = f"chaos-{self.run_id}"
        self.result = RunResult(run=run)
        self.node_seq = 0
        self.nodes: list[str] = []

    def add_nodes(self, count: int) -> list[str]:
        shape = parse_shape(self.cfg.node_shape)
        shape = NodeShape(capacity=shape.capacity, labels={**shape.labels, "mesoskube.io/chaos": self.run_id})
        names = add_nodes(self.kube, count, [shape], start=self.node_seq, prefix=f"n-{self.run_id}")
        self.node_seq += count
        self.nodes.extend(names)
        wait_nodes_ready(self.kube, names, timeout=120)
        return names

    def wait_api(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.kube.core.list_namespace(limit=1, _request_timeout=2)
                return
            except Exception:
                time.sleep(0.2)
        raise RuntimeError("the API server did not come back")

    def wait_standby_ready(self, replicas: Replicas, leader: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        others = [i for i in replicas.procs if i != leader]
        while time.monotonic() < deadline:
            if any(replicas.ready(i) for i in others):
                return
            time.sleep(0.1)

    def failover(self, replicas: Replicas, workload: Workload, sig: int) -> tuple[float | None, float | None]:
        holder = leader = None
        deadline = time.monotonic() + 60
        while leader is None and time.monotonic() < deadline:
            holder = lease_holder(self.kube, self.namespace)
            leader = replicas.replica_of(holder)
            if leader is None:
                time.sleep(0.1)
        if leader is None:
            return None, None
        self.wait_standby_ready(replicas, leader)
        t0 = time.monotonic()
        log.info("[%s] %s to %s (%s)", self.run_id, signal.Signals(sig).name, leader, holder)
        replicas.signal(leader, sig)
        old = holder
        to_lease = to_offer = None
        while time.monotonic() - t0 < 60 and to_lease is None:
            holder = lease_holder(self.kube, self.namespace)
            if holder and holder != old:
                to_lease = time.monotonic() - t0
            else:
                time.sleep(0.02)
        if to_lease is None:
            return None, None
        t_lease = t0 + to_lease
        while time.monotonic() - t0 < 60 and to_offer is None:
            with workload.lock:
                after = [t for t in workload.offer_seen if t >= t_lease]
            if after:
                to_offer = min(after) - t0
            else:
                time.sleep(0.02)
        return round(to_lease, 3), None if to_offer is None else round(to_offer, 3)

    def chaos_loop(self, replicas: Replicas, workload: Workload, stop: threading.Event) -> None:
        cfg = self.cfg
        events = (
            ["kill"] * cfg.leader_kills
            + ["graceful"] * cfg.graceful_stops
            + (["apiserver"] * cfg.apiserver_restarts + ["etcd"] * cfg.etcd_restarts if self.cluster else [])
            + ["nodes"] * cfg.node_deletions
        )
        self.rng.shuffle(events)
        r = self.result
        for ev in events:
            if stop.wait(self.rng.uniform(*cfg.event_gap)):
                r.events.append(f"skipped {ev} (workload done)")
                continue
            log.info("[%s] chaos: %s", self.run_id, ev)
            try:
                if ev in ("kill", "graceful"):
                    sig = signal.SIGKILL if ev == "kill" else signal.SIGTERM
                    to_lease, to_offer = self.failover(replicas, workload, sig)
                    (r.failover_kill_to_lease if ev == "kill" else r.failover_graceful_to_lease).append(
                        to_lease
                    )
                    (r.failover_kill_to_offer if ev == "kill" else r.failover_graceful_to_offer).append(
                        to_offer
                    )
                    r.events.append(f"{ev}: lease {to_lease}s, first offer {to_offer}s")
                elif ev == "apiserver":
                    r.apiserver_down_s.append(round(self.cluster.restart_component("kube-apiserver"), 2))
                    r.events.append(f"apiserver restarted ({r.apiserver_down_s[-1]}s)")
                elif ev == "etcd":
                    away = self.cluster.restart_component("etcd")
                    t = time.monotonic()
                    self.wait_api()
                    r.etcd_down_s.append(round(away + time.monotonic() - t, 2))
                    r.events.append(f"etcd restarted ({r.etcd_down_s[-1]}s until the API answered)")
                elif ev == "nodes":
                    victims = self.rng.sample(self.nodes, min(cfg.nodes_per_deletion, len(self.nodes) - 1))
                    remove_nodes(self.kube, victims)
                    for v in victims:
                        self.nodes.remove(v)
                    r.nodes_deleted += len(victims)
                    self.add_nodes(len(victims))
                    r.events.append(f"deleted nodes {', '.join(victims)} (and added as many)")
            except Exception as e:
                r.events.append(f"{ev} failed: {type(e).__name__}: {e}")
                log.exception("chaos event %s failed", ev)

    def run(self) -> RunResult:
        cfg, r = self.cfg, self.result
        began = time.monotonic()
        self.kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=self.namespace)))
        logdir = self.logs / self.run_id
        logdir.mkdir(parents=True, exist_ok=True)
        self.add_nodes(cfg.nodes)
        replicas = Replicas(
            self.kubeconfig, self.namespace, f"mesoskube.io/chaos={self.run_id}", cfg.replicas, logdir, cfg
        )
        workload = Workload(cfg.tasks, cfg.concurrency, cfg.run_seconds, self.rng)
        driver = SchedulerDriver(
            workload, "chaos", self.namespace, kube=Kube.connect(self.kubeconfig), failover_timeout=0
        )
        stop = threading.Event()
        try:
            driver.start()
            chaos = threading.Thread(target=self.chaos_loop, args=(replicas, workload, stop), daemon=True)
            chaos.start()
            r.completed = workload.done.wait(cfg.run_timeout)
            stop.set()
            chaos.join(180)
            self.settle(workload)
            self.count(workload, driver)
        finally:
            stop.set()
            r.replica_exits = [list(e) for e in replicas.exits]
            texts = [f.read_text(errors="replace") for f in logdir.glob("*.log")]
            r.exit_reasons = exit_reasons(texts, r.replica_exits)
            r.relists, r.relist_ghosts = relist_sweeps(texts)
            r.leadership_lost = r.exit_reasons.get("leadership lost", 0)
            try:
                driver.stop()
            except Exception:
                log.exception("driver stop failed")
            replicas.stop()
            try:
                remove_nodes(self.kube, self.nodes)
                self.kube.core.delete_namespace(self.namespace)
            except ApiException:
                pass
        r.duration_s = round(time.monotonic() - began, 1)
        return r

    def settle(self, workload: Workload, timeout: float = 60) -> None:
        """Give the system time to converge: every Task terminal, every status delivered."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            tasks = self.kube.list("tasks", self.namespace)
            open_tasks = [t for t in tasks if (t.get("status") or {}).get("state") not in TERMINAL]
            with workload.lock:
                missed = [
                    t for t in tasks
                    if (t.get("status") or {}).get("state") in TERMINAL
                    and t["status"]["state"] not in workload.updates.get(t["metadata"]["name"], [])
                ]  # fmt: skip
            if not open_tasks and not missed:
                return
            time.sleep(1)

    def count(self, workload: Workload, driver: SchedulerDriver) -> None:
        r = self.result
        tasks = {t["metadata"]["name"]: t for t in self.kube.list("tasks", self.namespace)}
        pods = self.kube.core.list_namespaced_pod(self.namespace, label_selector=LABEL_TASK).items
        r.tasks, r.pods = len(tasks), len(pods)
        r.task_states = dict(
            Counter((t.get("status") or {}).get("state") or "TASK_STAGING" for t in tasks.values())
        )
        r.tasks_finished = workload.finished
        per_task = Counter(p.metadata.labels[LABEL_TASK] for p in pods)
        dup = [n for n, c in per_task.items() if c > 1]
        wrong_owner = []
        orphans = []
        for p in pods:
            name = p.metadata.labels[LABEL_TASK]
            t = tasks.get(name)
            if t is None:
                orphans.append(p.metadata.name)
                continue
            owners = {o.uid for o in p.metadata.owner_references or []}
            if t["metadata"]["uid"] not in owners:
                wrong_owner.append(p.metadata.name)
        r.duplicate_pods = len(dup) + len(wrong_owner)
        r.pods_without_task = len(orphans)
        with workload.lock:
            accepted = dict(workload.accepted)
            updates = {k: list(v) for k, v in workload.updates.items()}
            r.answers_not_stored = len(workload.not_stored)
            r.tasks_lost = sum(workload.ended[s] for s in ("TASK_LOST", "TASK_DROPPED"))
            r.framework_ended = dict(workload.ended)
        never = [n for n in accepted if n not in tasks and not updates.get(n)]
        r.accepted_never_created = len(never)
        pod_phase = {p.metadata.name: p.status.phase for p in pods}
        stuck = [
            n for n, t in tasks.items()
            if (t.get("status") or {}).get("state") not in TERMINAL
            and pod_phase.get(n) in (None, "Succeeded", "Failed")
        ]  # fmt: skip
        r.stuck_after_pod_ended = len(stuck)
        ran = [
            n for n, t in tasks.items()
            if (t.get("status") or {}).get("state") in TERMINAL - {"TASK_FINISHED"}
            and pod_phase.get(n) in ("Running", "Succeeded")
        ]  # fmt: skip
        r.ran_but_reported_failed = len(ran)
        missed = [
            n for n, t in tasks.items()
            if (t.get("status") or {}).get("state") in TERMINAL
            and t["status"]["state"] not in updates.get(n, [])
        ]  # fmt: skip
        r.status_updates_missed = len(missed)
        fw = self.kube.get("frameworks", self.namespace, "chaos")
        r.framework_torn_down = (fw.get("status") or {}).get("phase") == "TornDown"
        # Launches the master refused (TASK_ERROR, no pod): the framework hears of them and launches
        # the work again, so no defect counter sees them; why they were refused, by reason.
        refused = Counter(
            f"{t['status'].get('reason')}: {refusal_kind(t['status'].get('message') or '')}"
            for t in tasks.values()
            if (t.get("status") or {}).get("state") == "TASK_ERROR"
        )
        r.task_errors = dict(refused.most_common(5))
        # Tasks the master ended TASK_LOST / TASK_DROPPED (the framework relaunches their work), by
        # reason and cause: an accept whose Offer went first, a node that went, ...
        lost = Counter(
            f"{t['status'].get('reason')}: {refusal_kind(t['status'].get('message') or '')}"
            for t in tasks.values()
            if (t.get("status") or {}).get("state") in ("TASK_LOST", "TASK_DROPPED")
        )
        r.tasks_lost_by_reason = dict(lost.most_common(5))
        r.details = {
            "duplicate_pods": (dup + wrong_owner)[:20],
            "pods_without_task": orphans[:20],
            "accepted_never_created": never[:20],
            "stuck_after_pod_ended": stuck[:20],
            "status_updates_missed": missed[:20],
            "ran_but_reported_failed": ran[:20],
        }


# ---------------------------------------------------------------------------- report

# What a replica logs when it exits 1 on purpose (runner.py).
EXIT_MARKERS = {
    "leadership lost": "leadership lost: exiting",  # its renew deadline passed (an API outage)
    "kopf watch loop ended": "kopf's watch loop ended",
    "engine thread died": "the engine thread ended unexpectedly",
}


RELISTED = re.compile(r"(\w+) re-listed by the watch: (\d+) deleted meanwhile")


def relist_sweeps(logs: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """Per kind: the re-lists the replicas swept, and the objects found deleted meanwhile."""
    relists: dict[str, int] = {}
    ghosts: dict[str, int] = {}
    for text in logs:
        for kind, n in RELISTED.findall(text):
            relists[kind] = relists.get(kind, 0) + 1
            ghosts[kind] = ghosts.get(kind, 0) + int(n)
    return relists, ghosts


def refusal_kind(message: str) -> str:
    """A refusal's message without the names in quotes (the pod's, the task's), so that one cause
    counts once, not once per pod."""
    message = re.sub(r'"[^"]*"', '"…"', message)
    return re.sub(r"\b(offer|agent|node|task) [a-z0-9][-a-z0-9.]*", r"\1 …", message)[:160]


def exit_reasons(logs: list[str], exits: list[list]) -> dict[str, int]:
    reasons = {name: sum(text.count(marker) for text in logs) for name, marker in EXIT_MARKERS.items()}
    reasons = {k: v for k, v in reasons.items() if v}
    ones = sum(1 for _, code in exits if code == 1)
    # "engine thread died" also logs "leadership lost: exiting": one exit, counted once.
    explained = reasons.get("leadership lost", 0) + reasons.get("kopf watch loop ended", 0)
    if ones > explained:
        reasons["unexplained"] = ones - explained
    return reasons


DEFECTS = (
    "duplicate_pods",
    "pods_without_task",
    "accepted_never_created",
    "stuck_after_pod_ended",
    "status_updates_missed",
    "ran_but_reported_failed",
)


def _dist(values: list[float | None]) -> str:
    got = sorted(v for v in values if v is not None)
    missing = sum(1 for v in values if v is None)
    if not got:
        return "n/a" + (f" ({missing} not seen)" if missing else "")
    p95 = got[max(0, math.ceil(0.95 * len(got)) - 1)]  # nearest rank: a value that was measured
    text = (
        f"min {got[0]:.2f} / p50 {statistics.median(got):.2f} / p95 {p95:.2f} / max {got[-1]:.2f} s "
        f"(n={len(got)})"
    )
    return text + (f", {missing} not seen within 60 s" if missing else "")


def markdown(cfg: Config, results: list[RunResult]) -> str:
    lines = [
        "# make chaos",
        "",
        f"{len(results)} runs x {cfg.tasks} tasks (EMULATED on kwok nodes: {cfg.nodes} x "
        f"`{cfg.node_shape}`, runSeconds {cfg.run_seconds[0]}-{cfg.run_seconds[1]} s, at most "
        f"{cfg.concurrency} in flight); per run "
        f"{cfg.leader_kills} leader SIGKILLs, {cfg.graceful_stops} graceful stop, {cfg.apiserver_restarts} "
        f"kube-apiserver restart, {cfg.etcd_restarts} etcd restart, {cfg.node_deletions} x "
        f"{cfg.nodes_per_deletion} kwok nodes deleted; {cfg.replicas} master replicas (subprocesses) with "
        f"leader election (leaseDuration {cfg.lease_duration} s, renewDeadline {cfg.renew_deadline} s, "
        f"retryPeriod {cfg.retry_period} s); seed {cfg.seed}. Everything shares one 2-core machine.",
        "",
        "| run | finished | tasks | pods | dup pods | pods w/o Task | accepted never created | stuck | "
        "status missed | lost+relaunched | answers not stored | torn down | leadership lost | duration |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.run} | {r.tasks_finished}{'' if r.completed else ' (timeout)'} | {r.tasks} | {r.pods} | "
            f"{r.duplicate_pods} | {r.pods_without_task} | {r.accepted_never_created} | "
            f"{r.stuck_after_pod_ended} | {r.status_updates_missed} | {r.tasks_lost} | "
            f"{r.answers_not_stored} | "
            f"{'yes' if r.framework_torn_down else 'no'} | {r.leadership_lost} | {r.duration_s:.0f} s |"
        )
    totals = {d: sum(getattr(r, d) for r in results) for d in DEFECTS}
    lines += [
        "",
        "Totals: " + ", ".join(f"{d.replace('_', ' ')} {v}" for d, v in totals.items()),
        "",
        "| failover | distribution |",
        "|---|---|",
        "| SIGKILL -> new Lease holder | "
        + _dist([v for r in results for v in r.failover_kill_to_lease])
        + " |",
        "| SIGKILL -> first new offer | "
        + _dist([v for r in results for v in r.failover_kill_to_offer])
        + " |",
        "| SIGTERM -> new Lease holder | "
        + _dist([v for r in results for v in r.failover_graceful_to_lease])
        + " |",
        "| SIGTERM -> first new offer | "
        + _dist([v for r in results for v in r.failover_graceful_to_offer])
        + " |",
        "| kube-apiserver restart (down) | " + _dist([v for r in results for v in r.apiserver_down_s]) + " |",
        "| etcd restart (until the API answers) | "
        + _dist([v for r in results for v in r.etcd_down_s])
        + " |",
        "",
        "Events per run:",
        "",
    ]
    for r in results:
        lines.append(f"- run {r.run}: " + "; ".join(r.events))
        if r.task_states:
            lines.append(f"  - Task states at the end: {r.task_states}; ends counted: {r.framework_ended}")
        if r.task_errors:
            lines.append(f"  - launches refused (TASK_ERROR), by reason: {json.dumps(r.task_errors)}")
        if r.tasks_lost_by_reason:
            lines.append(
                f"  - Tasks the master ended LOST/DROPPED, by reason: {json.dumps(r.tasks_lost_by_reason)}"
            )
        bad = {k: v for k, v in r.details.items() if v}
        if bad:
            lines.append(f"  - examples: {json.dumps(bad)}")
        if r.replica_exits:
            lines.append(
                f"  - replica exits (restarted): {r.replica_exits}; exits 1 by cause: {r.exit_reasons}"
            )
        if r.relists:
            lines.append(
                f"  - re-list sweeps logged (at WARNING: those that found deletions the watch missed): "
                f"{r.relists}; objects found deleted: {r.relist_ghosts}"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=Config.runs)
    p.add_argument("--tasks", type=int, default=Config.tasks)
    p.add_argument("--nodes", type=int, default=Config.nodes)
    p.add_argument("--leader-kills", type=int, default=Config.leader_kills)
    p.add_argument("--seed", type=int, default=Config.seed)
    p.add_argument("--lease-duration", type=int, default=Config.lease_duration)
    p.add_argument("--renew-deadline", type=float, default=Config.renew_deadline)
    p.add_argument("--retry-period", type=float, default=Config.retry_period)
    p.add_argument("--replica-log-level", default=Config.replica_log_level)
    p.add_argument("--cluster", default=Config.cluster, help="local control plane name (started if needed)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "chaos"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("mesoskube").setLevel(logging.WARNING)
    cfg = Config(runs=args.runs, tasks=args.tasks, nodes=args.nodes, leader_kills=args.leader_kills,
                 seed=args.seed, cluster=args.cluster, lease_duration=args.lease_duration,
                 renew_deadline=args.renew_deadline, retry_period=args.retry_period,
                 replica_log_level=args.replica_log_level)  # fmt: skip
    cluster = LocalCluster(cfg.cluster)
    started = not cluster.is_running()  # a control plane started here is stopped here
    cluster.up()
    try:
        kubeconfig = str(cluster.kubeconfig)
        install_crds(Kube.connect(kubeconfig))
        results = []
        for run in range(cfg.runs):
            kube = Kube.connect(kubeconfig)
            result = Chaos(cfg, cluster, kube, kubeconfig, run).run()
            log.info("run %d: %s", run, {d: getattr(result, d) for d in DEFECTS})
            results.append(result)
            write(cfg, results, Path(args.out))
    finally:
        if started:
            cluster.down()
    print(markdown(cfg, results))
    return 1 if any(getattr(r, d) for r in results for d in DEFECTS) else 0


def write(cfg: Config, results: list[RunResult], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(
        json.dumps({"config": asdict(cfg), "runs": [asdict(r) for r in results]}, indent=2) + "\n"
    )
    out.with_suffix(".md").write_text(markdown(cfg, results))


if __name__ == "__main__":
    sys.exit(main())
