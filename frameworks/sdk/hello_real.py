"""A framework that runs one real command on a real (kubelet) agent and keeps what it printed.

It accepts only offers whose agent has the attribute `mesoskube.io/real=true`, declines the rest
for a minute, launches its command in the default task image (busybox), and stops once the task
ends. `make demo` runs it next to the emulated Spark applications to show a real task end to end.
"""

from __future__ import annotations

from mesoskube.frameworks.sdk import (
    ContainerInfo,
    Offer,
    ResourceQuantities,
    Scheduler,
    SchedulerDriver,
    TaskInfo,
    TaskStatus,
)

REAL_ATTRIBUTE = "mesoskube.io/real"
SCRIPT = (
    'echo "hello from task $(hostname), pid $$ as uid $(id -u), in a real container";'
    ' echo "kernel $(uname -r); memory limit $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes'
    ' 2>/dev/null || cat /sys/fs/cgroup/memory.max) bytes"'
)


class HelloReal(Scheduler):
    def __init__(self, task_name: str = "hello-real", script: str = SCRIPT) -> None:
        self.task_name = task_name
        self.script = script
        self.launched_on: str | None = None
        self.final: TaskStatus | None = None

    def resource_offers(self, driver: SchedulerDriver, offers: list[Offer]) -> None:
        for offer in offers:
            if self.launched_on is None and offer.attributes.get(REAL_ATTRIBUTE) == "true":
                self.launched_on = offer.agent_id
                task = TaskInfo(
                    name=self.task_name,
                    resources=ResourceQuantities(cpus=0.1, mem=32),
                    container=ContainerInfo(command=["sh", "-c", self.script]),
                )
                driver.accept(offer.id, [task])
            else:
                driver.decline(offer.id, refuse_seconds=60)

    def status_update(self, driver: SchedulerDriver, status: TaskStatus) -> None:
        if status.is_terminal:
            self.final = status
            # Failover, not TEARDOWN: the Framework, its Task and pod stay for `kubectl logs`.
            driver.stop(failover=True)
