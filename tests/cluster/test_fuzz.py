"""The contract fuzzer (tests/cluster/fuzz.py), short and seed-fixed: FUZZ_EXAMPLES per kind
(default 8 here; `make fuzz` runs it long with a random seed and prints the tally)."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, seed, settings

from tests.cluster.fuzz import Fuzzer, kinds, write_results
from tests.cluster.identity import bind_framework_role, service_account, username
from tests.cluster.mesos import RawFramework
from tests.helpers import eventually

# Always tried as well: a launch, an accept beyond the offer, the misspelt field.
EXPLICIT = {
    "answer": [
        {"type": "Accept", "tasks": [{"name": "ok", "resources": {"cpus": 1, "mem": 64}, "runSeconds": 1}]},
        {"type": "Accept", "tasks": [{"name": "huge", "resources": {"cpus": 64, "mem": 64}}]},
        {"type": "Accept", "tasks": [{"name": "typo", "resources": {"cpus": 1}, "runSecs": 5}]},
    ],
    "framework": [{"roles": ["x" * 129]}],
}
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))
SEED = os.environ.get("FUZZ_SEED", "12")
# `make fuzz` collects each kind's tally here (JSON) and renders it next to it as Markdown.
OUT = os.environ.get("FUZZ_OUT", "")


@pytest.fixture
def fuzzer(kube, kubeconfig, namespace, fake_nodes, own_master, tmp_path):
    fake_nodes(1, "cpu=4,memory=8Gi")
    m = own_master()
    bind_framework_role(kube, namespace, "fz")
    identity = service_account(kube, kubeconfig, namespace, "fz", tmp_path)
    identity.create(
        "frameworks",
        namespace,
        {"apiVersion": "mesoskube.io/v1alpha1", "kind": "Framework", "metadata": {"name": "fz"},
         "spec": {"principal": username(namespace, "fz"), "defaultFilters": {"refuseSeconds": 0}}},
    )  # fmt: skip
    fw = RawFramework(identity, namespace, "fz")
    eventually(lambda: fw.status().get("phase") == "Subscribed", timeout=15, what="fz subscribed")
    return m, Fuzzer(kube, fw, namespace)


@pytest.mark.parametrize("kind", ["framework", "mesosrole", "forged-task", "answer", "offer-metadata"])
def test_fuzz_the_contract(fuzzer, kind, caplog):
    master, fz = fuzzer
    strategy, run = kinds(fz)[kind]
    caplog.set_level(logging.WARNING)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=SEED != "random",
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(strategy)
    def case(value):
        run(value)

    if SEED != "random":
        case = seed(int(SEED))(case)
    for value in EXPLICIT.get(kind, []):
        case = example(value)(case)

    started = time.monotonic()
    case()
    tally = fz.tally
    alive = all(t.is_alive() for t in master._threads)
    tracebacks = [r for r in caplog.records if r.exc_info and r.name.startswith(("mesoskube", "kopf"))]
    record = {
        "kind": kind,
        **tally.summary(),
        "seconds": round(time.monotonic() - started, 1),
        "seed": SEED,
        "master_threads_alive": alive,
        "tracebacks": len(tracebacks),
    }
    print(json.dumps(record))
    if OUT:
        write_results(Path(OUT), record)
    assert tally.tried[kind] > 0
    if kind == "answer":
        assert tally.launched >= 1 and tally.refused_by_master >= 1  # both paths were exercised
    assert tally.launched_bad == []
    assert tally.unnamed == []
    assert tally.model_disagrees == []
    assert tally.protected_changed == []
    assert alive, "a master thread died"
    assert tracebacks == [], [r.getMessage() for r in tracebacks]
