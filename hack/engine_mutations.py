"""Each engine defect test of issue 11 (and of accepts by name, issue 14) must catch its defect:
re-introduce each one (a one-line mutation of the fixed code), run its test, expect it to fail,
restore the file. Run from the repo root: .venv/bin/python hack/engine_mutations.py"""

import pathlib
import subprocess

muts = [
    (
        "non-ApiError drops key",
        "operator/mesoskube/master/engine.py",
        "                queue.done(key, e)\n",
        "                queue.done(key)\n",
        "test_an_exception_that_is_not_an_api_error",
    ),
    (
        "no name reservation",
        "operator/mesoskube/master/answers.py",
        '                    self.cache.assume("tasks", copy.deepcopy(m))\n',
        "                    pass\n",
        "test_two_accepts_naming_one_task",
    ),
    (
        "no rollback",
        "operator/mesoskube/master/answers.py",
        "            self._roll_back(ns, manifests, created)\n",
        "            pass\n",
        "test_an_accept_is_all_or_none",
    ),
    (
        "pod-less ports not held",
        "operator/mesoskube/master/holdings.py",
        "                ports[(store, key)] = claim.resources.ports\n",
        '                ports[(store, key)] = claim.resources.ports if store != "tasks" else ()\n',
        "test_host_ports_of_a_launched",
    ),
    (
        "port clash unchecked",
        "operator/mesoskube/master/validation.py",
        "    clash = _port_clash(wanted)\n",
        "    clash = ''\n",
        "test_two_tasks_of_one_accept",
    ),
    (
        "CRD-style default 5s",
        "operator/mesoskube/master/answers.py",
        "        return self.settings.defaultRefuseSeconds\n",
        "        return 5.0\n",
        "test_the_masters_default_refuse",
    ),
    (
        "lost accept dropped",
        "operator/mesoskube/master/answers.py",
        "                self.lost_accepts.append(body)\n",
        "                pass\n",
        "test_an_offer_deleted_between",
    ),
    (
        "pod 5xx is TASK_ERROR",
        "operator/mesoskube/master/tasksync.py",
        "            if e.retriable:\n                raise",
        "            if False:\n                raise",
        "test_a_transient_pod_create_error",
    ),
    (
        "no agent health",
        "operator/mesoskube/master/engine.py",
        "        self.check_agents(now)\n",
        "",
        "test_tasks_on_a_node_notready",
    ),
    (
        "memo kept",
        "operator/mesoskube/master/tasksync.py",
        "        self.launched.discard(key)\n        self.killing.discard(key)\n        with",
        "        self.killing.discard(key)\n        with",
        "test_memos_forget",
    ),
    (
        "rng per seed only",
        "operator/mesoskube/allocator/core.py",
        'return random.Random(f"mesoskube:{seed}:{cycle}")',
        "return random.Random(seed)",
        "test_allocation_cycle.py::test_the_random_sorter or test_the_agent_shuffle",
    ),
    # Accepts by name (issue 14, part A)
    (
        "takeover trusts framework Tasks",
        "operator/mesoskube/master/engine.py",
        "*filter(made_by_master, self.cache.tasks.values())]",
        "*self.cache.tasks.values()]",
        "test_a_restarted_master_does_not_launch_a_framework_task",
    ),
    (
        "named tasks unchecked",
        "operator/mesoskube/master/answers.py",
        '        verdict = check_named(offer, fw["metadata"]["uid"], tolerations, live)\n',
        '        verdict = check_named(offer, fw["metadata"]["uid"], tolerations, {})\n',
        "test_a_task_made_for_another_offer",
    ),
    (
        "orphan task waits forever",
        "operator/mesoskube/master/contract.py",
        "    if offer is None:\n        return (",
        "    if offer is None:\n        return None\n        return (",
        "test_a_task_whose_offer_was_deleted_unanswered",
    ),
    (
        "heartbeat triggers",
        "operator/mesoskube/master/handlers.py",
        "        elif self.cache.upsert_node(body):\n",
        "        elif self.cache.upsert_node(body) or True:\n",
        "test_a_node_heartbeat",
    ),
]
for what, path, old, new, test in muts:
    p = pathlib.Path(path)
    src = p.read_text()
    assert old in src, (what, old)
    p.write_text(src.replace(old, new, 1))
    try:
        sel = test.split("::")[-1]
        files = [
            "tests/unit/test_engine.py",
            "tests/unit/test_allocation_cycle.py",
            "tests/unit/test_named_accept.py",
        ]
        r = subprocess.run(
            [
                ".venv/bin/python",
                "-m",
                "pytest",
                "-q",
                "-x",
                *files,
                "-k",
                sel.replace("test_allocation_cycle.py::", ""),
            ],
            capture_output=True,
            text=True,
        )
        last = r.stdout.strip().splitlines()[-1]
        print(f"{what:28s} -> {'FAILS (good)' if r.returncode else 'PASSES (bad)'}: {last}")
    finally:
        p.write_text(src)
