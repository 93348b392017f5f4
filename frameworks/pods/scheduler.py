"""The scheduler of one application's pods: it places its pending pods on offers and accepts each
offer with tasks that adopt those pods (the master binds them), declining what cannot fit.

One instance per Framework (application); every method runs on its driver's callback thread.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping

from mesoskube.api.models import (
    TERMINAL_TASK_STATES,
    PodRef,
    ResourceQuantities,
    TaskInfo,
)
from mesoskube.frameworks.pods.groups import REFUSE_KEY, REFUSE_UNMET_KEY, Group, GroupError, refuse_seconds
from mesoskube.frameworks.pods.placement import (
    AgentView,
    constraint_problem,
    fit_problem,
    is_constraint,
    pod_resources,
    resource_problem,
    summary,
)
from mesoskube.frameworks.sdk import Scheduler, SchedulerDriver
from mesoskube.frameworks.sdk.types import FAILED_TASK_STATES, Offer, TaskStatus

log = logging.getLogger(__name__)

DEFAULT_REFUSE_SECONDS = 5.0  # an offer too small for any pending pod (Mesos's default filter)
DEFAULT_REFUSE_UNMET_SECONDS = 30.0  # an agent no pending pod may run on (selector, affinity, taints)
LAUNCH_TIMEOUT = 30.0  # an accept the master never answered (no Task state) is placed again
REVIVE_DELAY = 0.2  # pods of one application arrive together: one revive for the lot
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

Report = Callable[[dict, str], None]


def task_for(pod: dict) -> TaskInfo:
    r = pod_resources(pod)
    meta = pod["metadata"]
    return TaskInfo(
        name=meta["name"],
        # Only what the pod requests: the Task says what it holds, nothing else.
        resources=ResourceQuantities.model_validate({**r.to_mapping(), "gpus": math.ceil(r.gpus)}),
        pod=PodRef(name=meta["name"], uid=meta["uid"]),
    )


def _created(pod: dict) -> tuple[str, str]:
    return (pod["metadata"].get("creationTimestamp") or "", pod["metadata"]["name"])


class PodGroupScheduler(Scheduler):
    def __init__(
        self,
        group: Group,
        agents: Callable[[], Mapping[str, AgentView]],
        report: Report,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.group = group
        self.clock = clock
        self.agents = agents
        self.report = report
        self.pending: dict[str, dict] = {}  # unbound pods waiting for an offer, by name
        # Accepted, not yet seen bound or ended: name -> when (a launch never heard of is retried).
        self.launching: dict[str, float] = {}
        self.ended: set[str] = set()  # Tasks seen terminal (their names are taken until forgotten)
        self.suppressed = False
        self._revive_due = False

    # ---- pods, from the controller (through driver.call_soon)

    def pod_changed(self, driver: SchedulerDriver, pod: dict) -> None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        name = meta["name"]
        phase = (pod.get("status") or {}).get("phase") or "Pending"
        if spec.get("nodeName") or meta.get("deletionTimestamp") or phase != "Pending":
            self.pod_gone(driver, name)
            return
        new = name not in self.pending
        self.pending[name] = pod
        if not new:
            return
        if name in self.ended:
            # A Task of this name ended (a failed placement, or an earlier pod of the same name):
            # it goes, so that this pod can be launched under its name.
            driver.forget_task(name)
            self.ended.discard(name)
        if not _DNS_LABEL.match(name) or len(name) > 63:
            self.pending.pop(name)
            self.report(
                pod,
                f"pod name {name!r} is not a DNS label of at most 63 characters: mesoskube records "
                "each pod as a Task of the same name; rename the pod (or its generateName)",
            )
            return
        try:
            refuse_seconds(pod, REFUSE_KEY)
            refuse_seconds(pod, REFUSE_UNMET_KEY)
        except GroupError as e:
            self.pending.pop(name)
            self.report(pod, str(e))
            return
        self._report_if_fits_no_agent(pod)
        self._request_revive(driver)

    def pod_gone(self, driver: SchedulerDriver, name: str) -> None:
        self.pending.pop(name, None)
        self.launching.pop(name, None)

    def _report_if_fits_no_agent(self, pod: dict) -> None:
        agents = self.agents()
        reasons: Counter[str] = Counter()
        wanted = pod_resources(pod)
        for agent in agents.values():
            why = constraint_problem(pod, agent) or resource_problem(wanted, agent.allocatable)
            if why is None:
                return
            reasons[why] += 1
        self.report(pod, summary(reasons, len(agents), "agents") + " No agent can ever run this pod.")

    def _request_revive(self, driver: SchedulerDriver) -> None:
        if self._revive_due:
            return
        self._revive_due = True

        def revive() -> None:
            self._revive_due = False
            if self._placeable():
                self.suppressed = False
                driver.revive()

        driver.call_later(REVIVE_DELAY, revive)

    def _placeable(self) -> list[dict]:
        now = self.clock()
        for name in [n for n, t in self.launching.items() if now - t > LAUNCH_TIMEOUT]:
            log.warning(
                "pod %s: accepted %.0fs ago, never bound; placing it again", name, now - self.launching[name]
            )
            del self.launching[name]
        return sorted((p for n, p in self.pending.items() if n not in self.launching), key=_created)

    # ---- offers

    def resource_offers(self, driver: SchedulerDriver, offers: list[Offer]) -> None:
        todo = self._placeable()
        if not todo:
            for offer in offers:
                driver.decline(offer.id, refuse_seconds=DEFAULT_REFUSE_UNMET_SECONDS)
            # Nothing to place (pods being launched are revived for if their launch fails).
            if not self.suppressed:
                self.suppressed = True
                driver.suppress()
            return
        agents = self.agents()
        reasons: dict[str, Counter[str]] = {p["metadata"]["name"]: Counter() for p in todo}
        placed: set[str] = set()
        for offer in offers:
            agent = agents.get(offer.agent_id)
            left = offer.resources
            tasks, why_not = [], []
            for pod in todo:
                name = pod["metadata"]["name"]
                if name in placed:
                    continue
                why = fit_problem(pod, agent, left)
                if why is None:
                    placed.add(name)
                    task = task_for(pod)
                    tasks.append(task)
                    left = left - task.resources.to_resources()
                else:
                    reasons[name][why] += 1
                    why_not.append((pod, why))
            if tasks:
                driver.accept(offer.id, tasks)
                self.launching.update((t.name, self.clock()) for t in tasks)
            else:
                driver.decline(offer.id, refuse_seconds=self._refuse(why_not))
        for pod in todo:
            name = pod["metadata"]["name"]
            if name not in placed:
                self.report(pod, summary(reasons[name], len(offers), "offers"))

    def _refuse(self, why_not: list[tuple[dict, str]]) -> float:
        """How long to refuse an agent nothing fits: the shortest any pod asks for, so that no pod
        waits longer than it would alone. Longer when every pod is barred by its constraints."""
        constrained = all(is_constraint(why) for _, why in why_not)
        times = []
        for pod, _ in why_not:
            value = refuse_seconds(pod, REFUSE_UNMET_KEY) if constrained else None
            if value is None:
                value = refuse_seconds(pod, REFUSE_KEY)
            if value is None:
                value = DEFAULT_REFUSE_UNMET_SECONDS if constrained else DEFAULT_REFUSE_SECONDS
            times.append(value)
        return min(times, default=DEFAULT_REFUSE_SECONDS)

    # ---- task updates

    def status_update(self, driver: SchedulerDriver, status: TaskStatus) -> None:
        name = status.task_id
        if status.state not in TERMINAL_TASK_STATES:
            if name in self.pending:
                self.launching[name] = self.clock()  # accepted by an earlier run of this scheduler
            return
        self.launching.pop(name, None)
        pod = self.pending.get(name)
        if pod is None:
            self.ended.add(name)
            return
        # The task ended while a pod of its name is Pending: its launch failed before the binding
        # (TASK_ERROR, the offer or agent went away, a kill), or it was an earlier pod of that name.
        # The Task goes, so the pod can be launched under its name on the next offer.
        if status.state in FAILED_TASK_STATES:
            self.report(
                pod, f"placement failed ({status.state.value}: {status.message or status.reason}); retrying"
            )
        driver.forget_task(name)
        self._request_revive(driver)
