"""An example-style pymesos scheduler (run by the pymesos venv, not by mesoskube's): launch N command
tasks, acknowledge every update, tear down when all finished. Prints one JSON line per event."""

import json
import sys
import threading
import time
import uuid

from pymesos import MesosSchedulerDriver, Scheduler

MASTER, N, SECONDS = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
T0 = time.monotonic()


def emit(event, **kw):
    print(json.dumps({"event": event, "t": round(time.monotonic() - T0, 3), **kw}), flush=True)


def scalar(offer, name):
    return sum(r["scalar"]["value"] for r in offer["resources"] if r["name"] == name)


class Example(Scheduler):
    def __init__(self):
        self.launched = 0
        self.finished = 0
        self.first_offers = True
        self.lock = threading.Lock()

    def registered(self, driver, framework_id, master_info):
        emit("registered", framework_id=framework_id["value"])

    def resourceOffers(self, driver, offers):
        if self.first_offers:
            self.first_offers = False
            emit("first_offers", count=len(offers))
        for offer in offers:
            cpus, mem = scalar(offer, "cpus"), scalar(offer, "mem")
            tasks = []
            while self.launched < N and cpus >= 0.5 and mem >= 64:
                self.launched += 1
                cpus -= 0.5
                mem -= 64
                tasks.append(
                    {
                        "task_id": {"value": str(uuid.uuid4())},
                        "agent_id": {"value": offer["agent_id"]["value"]},
                        "name": f"pymesos-task-{self.launched}",
                        "command": {"value": f"echo hello from task {self.launched}; sleep {SECONDS}"},
                        "resources": [
                            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}},
                            {"name": "mem", "type": "SCALAR", "scalar": {"value": 64}},
                        ],
                        # Emulation only: how long the pod "runs" on a kwok fake node.
                        "labels": {"labels": [{"key": "mesoskube.io/run-duration", "value": str(SECONDS)}]},
                    }
                )
            if tasks:
                emit("launch", offer=offer["id"]["value"], tasks=[t["task_id"]["value"] for t in tasks])
                driver.launchTasks(offer["id"], tasks, filters={"refuse_seconds": 1})
            else:
                driver.declineOffer(offer["id"], filters={"refuse_seconds": 60})

    def statusUpdate(self, driver, update):
        emit("update", task_id=update["task_id"]["value"], state=update["state"], has_uuid="uuid" in update)
        driver.acknowledgeStatusUpdate(update)
        if update["state"] == "TASK_FINISHED":
            with self.lock:
                self.finished += 1
                done = self.finished == N
            if done:
                emit("teardown")
                driver.stop()


framework = {"user": "nobody", "name": "pymesos example", "hostname": "localhost", "failover_timeout": 0}
driver = MesosSchedulerDriver(Example(), framework, MASTER, use_addict=False, implicit_acknowledgements=False)
driver.run()
emit("exit")
