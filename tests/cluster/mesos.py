"""A bare test framework speaking the master's CRD protocol directly (no SDK), to test the master."""

from __future__ import annotations

import time
from dataclasses import dataclass

from kubernetes.client.exceptions import ApiException

from mesoskube.api.models import DEFAULT_ROLE, TaskInfo
from mesoskube.kube import Kube
from mesoskube.master import LABEL_FRAMEWORK
from mesoskube.master.builders import task_manifest
from tests.helpers import eventually


@dataclass
class RawFramework:
    kube: Kube
    namespace: str
    name: str

    @classmethod
    def subscribe(cls, kube: Kube, namespace: str, name: str, roles=("*",), **spec) -> RawFramework:
        kube.create(
            "frameworks",
            namespace,
            {
                "apiVersion": "mesoskube.io/v1alpha1",
                "kind": "Framework",
                "metadata": {"name": name},
                "spec": {"roles": list(roles), **spec},
            },
        )
        fw = cls(kube, namespace, name)
        eventually(lambda: fw.status().get("phase") == "Subscribed", timeout=15, what=f"{name} subscribed")
        return fw

    def status(self) -> dict:
        return self.kube.get("frameworks", self.namespace, self.name).get("status") or {}

    def offers(self, phase: str | None = "Outstanding") -> list[dict]:
        items = self.kube.list("offers", self.namespace, label_selector=f"{LABEL_FRAMEWORK}={self.name}")
        items = [o for o in items if not o["spec"].get("answer")]
        if phase:
            items = [o for o in items if ((o.get("status") or {}).get("phase") or "Outstanding") == phase]
        return items

    def wait_offers(self, count: int = 1, timeout: float = 15, agent: str | None = None) -> list[dict]:
        def probe():
            got = [o for o in self.offers() if agent is None or o["spec"]["agent"] == agent]
            return got if len(got) >= count else None

        return eventually(probe, timeout=timeout, what=f"{count} offer(s) to {self.name}")

    def answer(self, offer: dict, answer: dict) -> None:
        self.kube.patch("offers", self.namespace, offer["metadata"]["name"], {"spec": {"answer": answer}})

    def accept(self, offer: dict, tasks: list[dict], refuse_seconds: float | None = None) -> None:
        ans: dict = {"type": "Accept", "tasks": tasks}
        if refuse_seconds is not None:
            ans["filters"] = {"refuseSeconds": refuse_seconds}
        self.answer(offer, ans)

    def task_for(self, offer: dict, t: dict) -> dict:
        """The Task a framework creates for an accept by name: the master's own manifest (its
        builder), naming the offer, owned by this Framework."""
        fw = self.kube.get("frameworks", self.namespace, self.name)
        o = offer["spec"]
        m = task_manifest(
            TaskInfo.model_validate(t),
            self.name,
            fw["metadata"]["uid"],
            o.get("role") or DEFAULT_ROLE,
            o["agent"],
            offer["metadata"]["name"],
            (fw.get("spec") or {}).get("tolerations"),
        )
        m["metadata"]["namespace"] = self.namespace
        return m

    def accept_by_name(self, offer: dict, tasks: list[dict]) -> None:
        """Create the Tasks, then answer with their names (OfferAnswer.taskNames)."""
        for t in tasks:
            self.kube.create("tasks", self.namespace, self.task_for(offer, t))
        self.answer(offer, {"type": "Accept", "taskNames": [t["name"] for t in tasks]})

    def decline(self, offer: dict, refuse_seconds: float | None = None) -> None:
        ans: dict = {"type": "Decline"}
        if refuse_seconds is not None:
            ans["filters"] = {"refuseSeconds": refuse_seconds}
        self.answer(offer, ans)

    def tasks(self) -> list[dict]:
        return self.kube.list("tasks", self.namespace, label_selector=f"{LABEL_FRAMEWORK}={self.name}")

    def task(self, name: str) -> dict:
        return self.kube.get("tasks", self.namespace, name)

    def task_state(self, name: str) -> str | None:
        try:
            return (self.task(name).get("status") or {}).get("state")
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def wait_task_state(self, name: str, state: str, timeout: float = 20) -> dict:
        eventually(lambda: self.task_state(name) == state, timeout=timeout, what=f"task {name} {state}")
        return self.task(name)

    def wait_event(self, reason: str, involved: str | None = None, timeout: float = 10) -> str:
        """The message of an Event with `reason` on the Framework (or on object `involved`)."""
        name = involved or self.name

        def probe() -> str | None:
            events = self.kube.core.list_namespaced_event(
                self.namespace, field_selector=f"involvedObject.name={name}"
            ).items
            return next((e.message for e in events if e.reason == reason), None)

        return eventually(probe, timeout=timeout, what=f"Event {reason} on {name}")

    def patch_spec(self, spec: dict) -> None:
        self.kube.patch("frameworks", self.namespace, self.name, {"spec": spec})

    def revive(self) -> None:
        current = (self.kube.get("frameworks", self.namespace, self.name).get("spec") or {}).get("revive", 0)
        self.patch_spec({"revive": current + 1, "suppress": False})


def task(name: str, cpus: float, mem: float, run_seconds: float | None = None, **extra) -> dict:
    t = {"name": name, "resources": {"cpus": cpus, "mem": mem}, **extra}
    if run_seconds is not None:
        t["runSeconds"] = run_seconds
    return t


def wait(seconds: float) -> None:
    time.sleep(seconds)


def wait_sweeps(master, n: int = 3, timeout: float = 20) -> None:
    """Wait until the master has looked at every agent `n` more times (full allocation cycles):
    whatever it would offer by then, it has offered. Event-driven for an in-process master; a
    Helm-installed one (master is None) is waited for by its default 1 s interval."""
    if master is None:
        time.sleep(n * 1.0 + 0.5)
        return
    start = master.engine.sweeps
    eventually(
        lambda: master.engine.sweeps >= start + n and master.engine.allocation.offers_in_flight == 0,
        timeout=timeout,
        what=f"{n} allocation sweeps and their Offer writes",
    )
