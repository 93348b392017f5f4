"""An example-style mesoshttp scheduler (run by the mesoshttp venv): launch N command tasks, ack every
update, tear down when all finished. Prints one JSON line per event."""

import json
import sys
import time
import uuid

from mesoshttp.client import MesosClient

MASTER, N, SECONDS = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
T0 = time.monotonic()


def emit(event, **kw):
    print(json.dumps({"event": event, "t": round(time.monotonic() - T0, 3), **kw}), flush=True)


class Example:
    def __init__(self):
        self.client = MesosClient(
            mesos_urls=[MASTER], frameworkName="mesoshttp example", frameworkUser="nobody"
        )
        self.client.on(MesosClient.SUBSCRIBED, self.subscribed)
        self.client.on(MesosClient.OFFERS, self.offers)
        self.client.on(MesosClient.UPDATE, self.update)
        self.launched = 0
        self.finished = 0
        self.first = True

    def subscribed(self, driver):
        self.driver = driver
        emit("registered", framework_id=self.client.frameworkId)

    def offers(self, offers):
        if self.first:
            self.first = False
            emit("first_offers", count=len(offers))
        for offer in offers:
            o = offer.get_offer()
            cpus = sum(r["scalar"]["value"] for r in o["resources"] if r["name"] == "cpus")
            tasks = []
            while self.launched < N and cpus >= 0.5:
                self.launched += 1
                cpus -= 0.5
                tasks.append(
                    {
                        "name": f"mesoshttp-task-{self.launched}",
                        "task_id": {"value": uuid.uuid4().hex},
                        "agent_id": {"value": o["agent_id"]["value"]},
                        "resources": [
                            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}},
                            {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}},
                        ],
                        "command": {"value": f"sleep {SECONDS}"},
                        "container": {"type": "DOCKER", "docker": {"image": "busybox:1.36"}},
                        # Emulation only: how long the pod "runs" on a kwok fake node.
                        "labels": {"labels": [{"key": "mesoskube.io/run-duration", "value": str(SECONDS)}]},
                    }
                )
            if tasks:
                emit("launch", offer=o["id"]["value"], tasks=[t["task_id"]["value"] for t in tasks])
                offer.accept(tasks)
            else:
                offer.decline({"filters": {"refuse_seconds": 60}})

    def update(self, update):
        status = update["status"]
        emit("update", task_id=status["task_id"]["value"], state=status["state"], has_uuid="uuid" in status)
        # The library acknowledges an update with a uuid itself, before this callback.
        if status["state"] == "TASK_FINISHED":
            self.finished += 1
            if self.finished == N:
                emit("teardown")
                self.client.stop = True  # the library sends TEARDOWN on the next record


ex = Example()
ex.client.register()
emit("exit")
