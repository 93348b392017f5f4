"""Why the master does not fill its cache through kopf's index gate (README, "Two listings at start").

kopf holds every event handler back until each indexed kind's first listing has passed its index
handlers. It does so with one toggle per listed object in a ToggleSet; each object's worker drops
its toggle after indexing and then waits for the whole set, and every make or drop wakes every
waiting worker. The cost of a start therefore grows with the square of the objects listed.

This replays that pattern with kopf's own ToggleSet (no API server): a worker per object, its toggle
made as the watcher makes it, dropped after "indexing", then the wait. Measured 2026-12-07 on the
2-core machine: 0.2 s CPU for 250 objects, 0.8 s for 500, 3.4 s for 1,000, 15 s for 2,000. A real
master over 1,000 / 2,000 bare Nodes with index handlers on its six kinds took 3.4 / 13.4 s of CPU
to be ready; with its own LIST, 0.1 / 0.2 s.

Run: .venv/bin/python hack/kopf_index_gate.py 250 500 1000
"""

from __future__ import annotations

import asyncio
import sys
import time

from kopf._cogs.aiokits import aiotoggles  # kopf's internal toggles: what its index gate is built on


async def start(objects: int) -> float:
    gate = aiotoggles.ToggleSet(all)
    listing = await gate.make_toggle(name="the kind's listing")  # dropped at kopf's LISTED mark

    async def worker(indexed: aiotoggles.Toggle) -> None:
        await asyncio.sleep(0)  # the index handler
        await gate.drop_toggle(indexed)
        await gate.wait_for(True)  # then the event handlers, once every object is indexed

    began = time.process_time()
    workers = []
    for i in range(objects):
        toggle = await gate.make_toggle(name=f"object {i}")
        workers.append(asyncio.create_task(worker(toggle)))
        for _ in range(3):  # the watcher yields while it reads the stream and spawns the worker
            await asyncio.sleep(0)
    await gate.drop_toggle(listing)
    await asyncio.gather(*workers)
    return time.process_time() - began


if __name__ == "__main__":
    for n in map(int, sys.argv[1:] or ["250", "500", "1000"]):
        print(f"{n:6d} objects: {asyncio.run(start(n)):.2f} s CPU")
