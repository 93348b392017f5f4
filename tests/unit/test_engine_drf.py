"""Weighted DRF through the whole engine (accepts, pods finishing, candidate and sweep cycles),
on the emulated API with a fake clock: roles weighted 1 and 2 converge to dominant shares 1:2.
The cluster test of the same (tests/cluster/test_master.py) also depends on how fast the
frameworks' threads and the API server run on the machine; this one does not."""

from __future__ import annotations

from tests.unit.enginerig import Rig

CPUS = 12 * 4


def held_cpus(rig: Rig, fw: str) -> float:
    live = (None, "TASK_STAGING", "TASK_STARTING", "TASK_RUNNING")
    tasks = sum(
        t["spec"]["resources"].get("cpus", 0)
        for t in rig.cache.tasks.values()
        if t["spec"]["framework"] == fw and (t.get("status") or {}).get("state") in live
    )
    return tasks + sum(o["spec"]["resources"].get("cpus", 0) for o in rig.offers(fw).values())


def test_weighted_roles_converge_to_dominant_shares_one_to_two() -> None:
    rig = Rig(allocationInterval=0.5)
    for i in range(12):
        rig.node(f"n{i}", cpus=4, mem="16Gi")
    for name, weight in (("light", 1), ("heavy", 2)):
        rig.api.create("mesosroles", "", {"metadata": {"name": name}, "spec": {"weight": weight}})
        rig.cache.upsert("roles", rig.api.get("mesosroles", name))
        rig.framework(name, roles=[name])
    launched = {"light": 0, "heavy": 0}
    finish_at: dict[str, float] = {}
    samples = []
    for step in range(300):
        # Greedy frameworks: every offer filled with 1-cpu tasks that run 3 s.
        for fw in launched:
            for key, offer in rig.offers(fw).items():
                res = offer["spec"]["resources"]
                n = int(min(res.get("cpus", 0), res.get("mem", 0) // 1024))
                tasks = []
                for _ in range(n):
                    launched[fw] += 1
                    tasks.append({"name": f"{fw}-{launched[fw]}", "resources": {"cpus": 1, "mem": 1024}})
                kind = "Accept" if tasks else "Decline"
                rig.answer(key, {"type": kind, "tasks": tasks, "filters": {"refuseSeconds": 0.5}})
        rig.watch()
        rig.step(advance=0.1)
        for ns, name in list(rig.api.objects["pods"]):
            key = f"{ns}/{name}"
            if key not in finish_at:
                finish_at[key] = rig.clock() + 3
                rig.run_pod(key)
            elif rig.clock() >= finish_at[key] and rig.api.get("pods", key)["status"]["phase"] == "Running":
                rig.run_pod(key, "Succeeded")
        rig.watch()
        if step >= 100 and step % 5 == 0:  # after 10 s: past the first tasks' churn
            samples.append({fw: held_cpus(rig, fw) / CPUS for fw in launched})
    light = sum(s["light"] for s in samples) / len(samples)
    heavy = sum(s["heavy"] for s in samples) / len(samples)
    assert 1.9 <= heavy / light <= 2.1, f"heavy:light = {heavy / light:.2f} ({heavy:.3f}:{light:.3f})"
    assert heavy + light > 0.95, "the cluster stays allocated"
