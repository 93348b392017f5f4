"""A Mesos-style scheduler SDK for mesoskube: `Scheduler` callbacks and a `SchedulerDriver`.

class Sleepers(Scheduler):
    def resource_offers(self, driver, offers):
        for offer in offers:
            driver.accept(offer.id, [TaskInfo(name="t1", resources={"cpus": 1, "mem": 128})])

SchedulerDriver(Sleepers(), "sleepers", "default", roles=["*"], kube=Kube.connect()).run()
"""

from mesoskube.api.models import ContainerInfo, Filters, ResourceQuantities, TaskInfo, TaskState
from mesoskube.frameworks.sdk.driver import LABEL_FRAMEWORK, SchedulerDriver, micro_time
from mesoskube.frameworks.sdk.retry import WritePolicy
from mesoskube.frameworks.sdk.scheduler import Scheduler
from mesoskube.frameworks.sdk.types import (
    FAILED_TASK_STATES,
    DriverStatus,
    Offer,
    StatusSource,
    TaskStatus,
)

__all__ = [
    "FAILED_TASK_STATES",
    "LABEL_FRAMEWORK",
    "ContainerInfo",
    "DriverStatus",
    "Filters",
    "Offer",
    "ResourceQuantities",
    "Scheduler",
    "SchedulerDriver",
    "StatusSource",
    "TaskInfo",
    "TaskState",
    "TaskStatus",
    "WritePolicy",
    "micro_time",
]
