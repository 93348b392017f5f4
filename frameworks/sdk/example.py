"""The smallest useful framework: launch N sleep tasks from offers, then stop (teardown).

    python -m mesoskube.frameworks.sdk.example --tasks 5 --seconds 3 --namespace default

On fake (kwok) nodes nothing runs: `runSeconds` makes the fake node complete the pod after that
long (emulation); on real nodes the container's `sleep` does the same.
"""

from __future__ import annotations

import argparse
import logging
import sys

from mesoskube.frameworks.sdk import (
    ContainerInfo,
    Offer,
    ResourceQuantities,
    Scheduler,
    SchedulerDriver,
    TaskInfo,
    TaskStatus,
)
from mesoskube.kube import Kube

log = logging.getLogger("sleepers")


class Sleepers(Scheduler):
    def __init__(self, tasks: int, seconds: float, cpus: float = 0.5, mem: float = 64) -> None:
        self.total = tasks
        self.seconds = seconds
        self.need = ResourceQuantities(cpus=cpus, mem=mem)
        self.launched = 0
        self.finished = 0
        self.failed = 0

    def registered(self, driver: SchedulerDriver, framework_id: str) -> None:
        log.info("registered as %s", framework_id)

    def resource_offers(self, driver: SchedulerDriver, offers: list[Offer]) -> None:
        for offer in offers:
            free, tasks = offer.resources, []
            need = self.need.to_resources()
            while self.launched < self.total and free.contains(need):
                self.launched += 1
                tasks.append(
                    TaskInfo(
                        name=f"sleep-{self.launched}",
                        resources=self.need,
                        container=ContainerInfo(command=["sleep", str(self.seconds)]),
                        runSeconds=self.seconds,
                    )
                )
                free = free - need
            if tasks:
                driver.accept(offer.id, tasks, filters={"refuseSeconds": 1})
            else:
                # Nothing left to launch: do not hear about this agent for a while.
                driver.decline(offer.id, refuse_seconds=60)
        if self.launched >= self.total:
            driver.suppress()

    def status_update(self, driver: SchedulerDriver, status: TaskStatus) -> None:
        log.info("%s", status)
        if status.is_terminal:
            self.finished += 1
            self.failed += status.is_failure
            if self.finished >= self.total:
                driver.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=5)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--namespace", default="default")
    p.add_argument("--name", default="sleepers")
    p.add_argument("--kubeconfig")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    scheduler = Sleepers(args.tasks, args.seconds)
    driver = SchedulerDriver(scheduler, args.name, args.namespace, kube=Kube.connect(args.kubeconfig))
    driver.run()
    print(f"{scheduler.finished} tasks ended, {scheduler.failed} failed")
    return 1 if scheduler.failed else 0


if __name__ == "__main__":
    sys.exit(main())
