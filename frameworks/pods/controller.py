"""The pods framework: pods naming mesoskube's scheduler, grouped into applications, each
application a Framework with its own SchedulerDriver and PodGroupScheduler.

Watches (list + watch, resumed): pods with `spec.schedulerName` = the scheduler's name (not the
master's own task pods), Nodes (taints and capacity the offers do not carry) and Namespaces (the
default role). A Framework is created with its application's first live pod and torn down once
none of its pods is live for `teardown_after` seconds (Completed pods of a finished Job keep no
framework). Stopping the process leaves the Frameworks for the next one (scheduler failover).
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from kubernetes.client.exceptions import ApiException

from mesoskube.frameworks.pods.groups import Group, GroupError, group_of, role_of
from mesoskube.frameworks.pods.placement import AgentView
from mesoskube.frameworks.pods.scheduler import PodGroupScheduler
from mesoskube.frameworks.sdk import DriverStatus, SchedulerDriver
from mesoskube.frameworks.sdk.watch import ListWatch
from mesoskube.kube import Kube
from mesoskube.master import LABEL_TASK
from mesoskube.master.events import EventRecorder
from mesoskube.master.selector import parse_selector
from mesoskube.master.writer import KubeWriter

log = logging.getLogger(__name__)

COMPONENT = "mesoskube-pods"
MANAGED_BY = {"app.kubernetes.io/managed-by": COMPONENT}
DEFAULT_FAILOVER_TIMEOUT = 3600.0  # a restart of this process must not kill the pods it placed
DEFAULT_TEARDOWN_AFTER = 10.0
REPORT_REPEAT = 60.0  # the same FailedScheduling message at most once a minute per pod
REPORT_GAP = 10.0  # and any new one at most every 10 s


def _json_list(fn: Callable) -> Callable:
    """A core list call returning the API server's JSON (camelCase, as watch events are) rather
    than the generated models' snake_case dicts; watch calls pass through."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if kwargs.get("watch"):
            return fn(*args, **kwargs)
        return json.loads(fn(*args, _preload_content=False, **kwargs).data)

    return call


def is_live(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


@dataclass
class App:
    group: Group
    driver: SchedulerDriver
    scheduler: PodGroupScheduler
    pods: dict[str, dict] = field(default_factory=dict)
    idle_since: float | None = None


class PodsFramework:
    def __init__(
        self,
        kube: Kube,
        scheduler_name: str = "mesoskube",
        namespace: str = "",
        agent_selector: str = "",
        failover_timeout: float = DEFAULT_FAILOVER_TIMEOUT,
        teardown_after: float = DEFAULT_TEARDOWN_AFTER,
    ) -> None:
        self.kube = kube
        self.scheduler_name = scheduler_name
        self.namespace = namespace
        self.agent_matches = parse_selector(agent_selector)
        self.failover_timeout = failover_timeout
        self.teardown_after = teardown_after
        self.apps: dict[Group, App] = {}
        self._lock = threading.RLock()
        self._agents: Mapping[str, AgentView] = {}  # replaced whole on change: readers take a reference
        self._nodes: dict[str, AgentView] = {}
        self._namespaces: dict[str, dict] = {}
        self._reported: dict[tuple[str, str], tuple[str, float]] = {}
        self._stopped = threading.Event()
        self._synced = {"nodes": threading.Event(), "namespaces": threading.Event()}
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="pods-events")
        self._events = EventRecorder(KubeWriter(kube), self._pool, component=COMPONENT)
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 30) -> PodsFramework:
        core = self.kube.core
        ns_selector = {"field_selector": f"metadata.name={self.namespace}"} if self.namespace else {}
        watches = [
            ListWatch("pods-nodes", _json_list(core.list_node), (), self._on_node, self._stopped),
            ListWatch(
                "pods-namespaces",
                _json_list(core.list_namespace),
                (),
                self._on_namespace,
                self._stopped,
                **ns_selector,
            ),
        ]
        for w in watches:
            w.start()
        for what, ev in self._synced.items():
            if not ev.wait(timeout):
                raise TimeoutError(f"pods framework: no list of {what} within {timeout}s")
        pod_selectors = {
            "field_selector": f"spec.schedulerName={self.scheduler_name}",
            "label_selector": f"!{LABEL_TASK}",  # the master's own pods name this scheduler too
        }
        if self.namespace:
            pods = ListWatch(
                "pods-pods",
                _json_list(core.list_namespaced_pod),
                (self.namespace,),
                self._on_pod,
                self._stopped,
                **pod_selectors,
            )
        else:
            pods = ListWatch(
                "pods-pods",
                _json_list(core.list_pod_for_all_namespaces),
                (),
                self._on_pod,
                self._stopped,
                **pod_selectors,
            )
        pods.start()
        reaper = threading.Thread(target=self._reap_loop, name="pods-reaper", daemon=True)
        reaper.start()
        self._threads = [*watches, pods, reaper]
        return self

    def stop(self, teardown: bool = False) -> None:
        """Stop watching; the Frameworks stay (failover) unless `teardown`."""
        self._stopped.set()
        for t in self._threads:
            if isinstance(t, ListWatch):
                t.stop()
        with self._lock:
            apps, self.apps = list(self.apps.values()), {}
        for app in apps:
            app.driver.stop(failover=not teardown)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ agents and namespaces

    def agents(self) -> Mapping[str, AgentView]:
        return self._agents

    def _on_node(self, kind: str, obj) -> None:
        with self._lock:
            if kind == "SYNC":
                self._nodes = {n["metadata"]["name"]: AgentView.from_node(n) for n in obj}
            elif kind == "DELETED":
                self._nodes.pop(obj["metadata"]["name"], None)
            else:
                self._nodes[obj["metadata"]["name"]] = AgentView.from_node(obj)
            self._agents = {n: a for n, a in self._nodes.items() if self.agent_matches(a.labels)}
        self._synced["nodes"].set()

    def _on_namespace(self, kind: str, obj) -> None:
        with self._lock:
            if kind == "SYNC":
                self._namespaces = {n["metadata"]["name"]: n for n in obj}
            elif kind == "DELETED":
                self._namespaces.pop(obj["metadata"]["name"], None)
            else:
                self._namespaces[obj["metadata"]["name"]] = obj
        self._synced["namespaces"].set()

    # ------------------------------------------------------------------ pods

    def _on_pod(self, kind: str, obj) -> None:
        if kind == "SYNC":
            names = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in obj}
            with self._lock:
                gone = [
                    (app, name)
                    for app in self.apps.values()
                    for name in app.pods
                    if (app.group.namespace, name) not in names
                ]
            for app, name in gone:
                self._pod_deleted(app, name)
            for pod in obj:
                self._pod_changed(pod)
        elif kind == "DELETED":
            with self._lock:
                app = self.apps.get(group_of(obj))
            if app is not None:
                self._pod_deleted(app, obj["metadata"]["name"])
            self._reported.pop((obj["metadata"]["namespace"], obj["metadata"]["name"]), None)
        else:
            self._pod_changed(obj)

    def _pod_changed(self, pod: dict) -> None:
        group = group_of(pod)
        with self._lock:
            app = self.apps.get(group)
            if app is None:
                if not is_live(pod) or self._stopped.is_set():
                    return  # a finished pod does not bring its application's framework back
                try:
                    role = role_of(pod, self._namespaces.get(group.namespace))
                except GroupError as e:
                    self.report(pod, str(e))
                    return
                app = self._start_app(group, role, pod)
                if app is None:
                    return
            app.pods[pod["metadata"]["name"]] = pod
            app.idle_since = None
        app.driver.call_soon(lambda: app.scheduler.pod_changed(app.driver, pod))

    def _pod_deleted(self, app: App, name: str) -> None:
        with self._lock:
            app.pods.pop(name, None)
        app.driver.call_soon(lambda: app.scheduler.pod_gone(app.driver, name))

    def _start_app(self, group: Group, role: str, pod: dict) -> App | None:
        scheduler = PodGroupScheduler(group, self.agents, self.report)
        driver = SchedulerDriver(
            scheduler,
            group.framework,
            group.namespace,
            roles=[role],
            kube=self.kube,
            failover_timeout=self.failover_timeout,
            labels=MANAGED_BY,
        )
        try:
            driver.start()
        except (ApiException, TimeoutError, ValueError) as e:
            msg = e.reason if isinstance(e, ApiException) else str(e)
            self.report(pod, f"cannot subscribe framework {group.framework}: {msg}")
            return None
        log.info("framework %s/%s subscribing with role %s", group.namespace, group.framework, role)
        app = App(group, driver, scheduler)
        self.apps[group] = app
        return app

    def report(self, pod: dict, message: str) -> None:
        """A FailedScheduling Event on the pod (as kube-scheduler writes), rate-limited per pod."""
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        now = time.monotonic()
        last = self._reported.get(key)
        if last is not None and (
            (last[0] == message and now - last[1] < REPORT_REPEAT) or now - last[1] < REPORT_GAP
        ):
            return
        self._reported[key] = (message, now)
        log.info("pod %s/%s: %s", *key, message)
        self._events.warning({**pod, "apiVersion": "v1", "kind": "Pod"}, "FailedScheduling", message)
        # And on its Framework, so `kubectl describe framework` says why the application waits.
        with self._lock:
            app = self.apps.get(group_of(pod))
        fw = app.driver.framework_object() if app is not None else {}
        if fw.get("metadata"):
            self._events.warning(fw, "PodUnschedulable", f"pod {key[1]}: {message}")

    # ------------------------------------------------------------------ teardown

    def _reap_loop(self) -> None:
        while not self._stopped.wait(1.0):
            try:
                self._reap(time.monotonic())
            except Exception:
                log.exception("pods framework: reaping failed")

    def _reap(self, now: float) -> None:
        with self._lock:
            apps = list(self.apps.values())
        for app in apps:
            if app.driver.status is not DriverStatus.RUNNING:
                # Torn down from outside (the Framework deleted, or its failover timeout passed):
                # its live pods start a new one.
                with self._lock:
                    self.apps.pop(app.group, None)
                    pods = list(app.pods.values())
                for pod in pods:
                    self._pod_changed(pod)
                continue
            with self._lock:
                live = any(is_live(p) for p in app.pods.values())
                if live:
                    app.idle_since = None
                    continue
                if app.idle_since is None:
                    app.idle_since = now
                    continue
                if now - app.idle_since < self.teardown_after:
                    continue
                self.apps.pop(app.group, None)
            log.info("framework %s/%s: no live pods; TEARDOWN", app.group.namespace, app.group.framework)
            app.driver.stop()
