"""The callbacks a framework implements (the shape of libmesos' `Scheduler`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mesoskube.frameworks.sdk.driver import SchedulerDriver
    from mesoskube.frameworks.sdk.types import Offer, TaskStatus


class Scheduler:
    """Override what you need. All callbacks run on the driver's one event thread, in event order,
    so a scheduler needs no locks of its own for state only its callbacks touch. A callback may
    call the driver (accept, decline, kill_task, ...) and should return quickly."""

    def registered(self, driver: SchedulerDriver, framework_id: str) -> None:
        """The master subscribed the framework (first Subscribed status this driver saw)."""

    def reregistered(self, driver: SchedulerDriver) -> None:
        """Subscribed again after a disconnection (the heartbeat Lease had lapsed)."""

    def disconnected(self, driver: SchedulerDriver) -> None:
        """The master marked the framework Disconnected (heartbeats missed)."""

    def resource_offers(self, driver: SchedulerDriver, offers: list[Offer]) -> None:
        """New offers, one per agent, batched as they arrive in one allocation round.
        Answer each exactly once: driver.accept(...) or driver.decline(...)."""

    def offer_rescinded(self, driver: SchedulerDriver, offer_id: str) -> None:
        """An offer delivered earlier and not answered is no longer valid."""

    def status_update(self, driver: SchedulerDriver, status: TaskStatus) -> None:
        """A task changed state (or a reconciliation answer arrived)."""

    def error(self, driver: SchedulerDriver, message: str) -> None:
        """An unrecoverable error; the driver aborts after this callback."""
