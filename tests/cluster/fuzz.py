"""A property-based fuzzer of the framework contract (hypothesis), against the real API server
with a master running: Frameworks, answers, forged Tasks, MesosRoles and a framework's patches of
its Offers' metadata, valid, boundary and malformed. For each case, either the API server refuses
it with a message naming a field or a rule, or it is stored and then the master's model accepts it
too (so the master can never choke on it), nothing launches from an invalid, over-sized or
unauthorised answer, and the master's labels, owner references and finalizers stay as it wrote
them. Afterwards the master's threads are alive and it logged no traceback.

`make fuzz` runs it long (FUZZ_EXAMPLES per kind, default 400) and writes bench/results/fuzz.md;
tests/cluster/test_fuzz.py runs a short, seed-fixed version.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import strategies as st
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from mesoskube.api.models import FrameworkSpec, MesosRoleSpec, OfferAnswer, TaskState
from mesoskube.kube import Kube
from mesoskube.master.validation import check_accept
from mesoskube.resources import Resources
from tests.cluster.mesos import RawFramework
from tests.helpers import eventually

API = "mesoskube.io/v1alpha1"
# A refusal must say what is wrong: a field path, which rule or policy, or (RBAC) which verb.
NAMED = re.compile(
    r"spec\.|metadata\.name|ValidatingAdmissionPolicy|unknown field|Unsupported value|Invalid value"
    r"|cannot (create|patch|update|delete) resource|metadata\.(labels|finalizers|ownerReferences)"
)

# ------------------------------------------------------------------ strategies

finite = st.floats(allow_nan=False, allow_infinity=False, width=32)
numbers = st.one_of(
    st.floats(min_value=-2, max_value=64, allow_nan=False),
    st.integers(min_value=-3, max_value=10**8),
    finite,
)
junk = st.one_of(st.text(max_size=8), st.booleans(), st.none(), st.lists(st.integers(), max_size=2))
dns = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z")
names = st.one_of(dns, st.text(max_size=70), st.just("x" * 64), st.just(""))

resources = st.fixed_dictionaries(
    {},
    optional={
        "cpus": st.one_of(numbers, junk),
        "mem": st.one_of(numbers, junk),
        "disk": numbers,
        "gpus": st.one_of(st.integers(-1, 3), finite),
        "ports": st.one_of(st.from_regex(r"\A3100[0-9](-3101[0-9])?\Z"), st.text(max_size=12)),
        "cpu": numbers,  # misspelt
    },
)
tasks = st.fixed_dictionaries(
    {"name": names, "resources": resources},
    optional={
        "runSeconds": st.one_of(st.floats(-1, 10**6, allow_nan=False), junk),
        "runSecs": st.integers(0, 5),  # the misspelling
        "labels": st.dictionaries(
            st.text(max_size=10), st.one_of(st.text(max_size=70), st.integers()), max_size=3
        ),
        "executor": names,
        "container": st.fixed_dictionaries(
            {},
            optional={
                "image": st.text(max_size=20),
                "command": st.lists(st.text(max_size=5), max_size=2),
                "imag": st.text(max_size=5),
            },
        ),
        "surprise": junk,
    },
)
answers = st.fixed_dictionaries(
    {
        "type": st.one_of(
            st.sampled_from(["Accept", "Decline"]), st.sampled_from(["accept", "Maybe", ""]), junk
        )
    },
    optional={
        "tasks": st.lists(tasks, max_size=4),
        "filters": st.fixed_dictionaries({}, optional={"refuseSeconds": st.one_of(st.floats(-1, 1), junk)}),
    },
)
# Mostly well-formed answers too: launches (and over-sized accepts) must be exercised, not only
# schema refusals.
good_tasks = st.fixed_dictionaries(
    {
        "name": dns,
        "resources": st.fixed_dictionaries(
            {
                "cpus": st.sampled_from([0.01, 0.5, 1, 2, 4, 5]),
                "mem": st.sampled_from([0, 32, 512, 8192, 9000]),
            }
        ),
    },
    optional={"runSeconds": st.floats(0, 2), "runSecs": st.just(1), "labels": st.just({"app": "fuzz"})},
)
answers = st.one_of(
    answers,
    st.fixed_dictionaries({"type": st.just("Accept"), "tasks": st.lists(good_tasks, min_size=1, max_size=3)}),
    st.fixed_dictionaries({"type": st.just("Decline")}, optional={"filters": st.just({"refuseSeconds": 0})}),
)
framework_specs = st.fixed_dictionaries(
    {},
    optional={
        "roles": st.lists(st.one_of(st.just("*"), dns, st.text(max_size=10)), max_size=18),
        "capabilities": st.lists(st.sampled_from(["MULTI_ROLE", "GPU_RESOURCES", "TELEPORT"]), max_size=3),
        "failoverTimeoutSeconds": st.one_of(numbers, junk),
        "defaultFilters": st.fixed_dictionaries({}, optional={"refuseSeconds": st.one_of(numbers, junk)}),
        "suppress": st.one_of(st.booleans(), junk),
        "principal": st.one_of(st.text(max_size=10), st.just("system:serviceaccount:kube-system:admin")),
        "tolerations": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "key": st.text(max_size=5),
                    "operator": st.sampled_from(["Exists", "Equal", "Is"]),
                    "value": st.text(max_size=5),
                    "effect": st.sampled_from(["NoSchedule", "NoExecute", "Sometimes"]),
                    "tolerationSeconds": st.integers(-1, 5),
                },
            ),
            max_size=2,
        ),
        "reconcile": st.fixed_dictionaries({"id": st.integers(-1, 3)}),
    },
)
role_specs = st.fixed_dictionaries(
    {},
    optional={
        "weight": st.one_of(numbers, junk),
        "quota": st.fixed_dictionaries({}, optional={"cpus": numbers, "mem": st.one_of(numbers, junk)}),
        "allowedNamespaces": st.lists(st.one_of(dns, st.text(max_size=5)), max_size=3),
        "allowedPrincipals": st.lists(st.text(max_size=10), max_size=3),
    },
)
# A framework rewriting an Offer's metadata: the master's labels (mesoskube.io/), owner references
# and finalizers must stay as the master wrote them; the framework's own labels may change.
metadata_patches = st.fixed_dictionaries(
    {},
    optional={
        "labels": st.dictionaries(
            st.sampled_from(["mesoskube.io/framework", "mesoskube.io/agent-name", "mesoskube.io/x", "team"]),
            st.one_of(st.none(), st.sampled_from(["fz", "other", "a-b", ""])),
            max_size=3,
        ),
        "finalizers": st.lists(st.sampled_from(["mesoskube.io/master", "example.com/hold"]), max_size=2),
        "ownerReferences": st.just([]),
    },
)
forged_tasks = st.fixed_dictionaries(
    {"framework": st.one_of(st.just("fz"), dns), "agent": dns, "resources": resources},
    optional={"kill": st.booleans()},
)


# ------------------------------------------------------------------ the checks


@dataclass
class Tally:
    tried: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    launched: int = 0  # tasks launched from valid answers (the launch path was exercised)
    refused_by_master: int = 0  # stored answers the master refused (TASK_ERROR, Invalid offer)
    launched_bad: list[str] = field(default_factory=list)
    unnamed: list[str] = field(default_factory=list)
    model_disagrees: list[str] = field(default_factory=list)
    protected_changed: list[str] = field(default_factory=list)  # the master's metadata changed

    def summary(self) -> dict:
        return {
            "tried": dict(self.tried),
            "rejected_by_api": dict(self.rejected),
            "tasks_launched_from_valid_answers": self.launched,
            "answers_refused_by_the_master": self.refused_by_master,
            "launches_from_bad_input": len(self.launched_bad),
            "refusals_not_naming_a_field": len(self.unnamed),
            "stored_but_model_rejects": len(self.model_disagrees),
            "protected_metadata_changed": len(self.protected_changed),
        }


def _refused(tally: Tally, kind: str, e: ApiException) -> None:
    if e.status >= 500:
        raise AssertionError(f"{kind}: the API server failed ({e.status}): {e.body}")
    tally.rejected[kind] += 1
    if not NAMED.search(e.body or ""):
        tally.unnamed.append(f"{kind}: {e.status} {e.body}")


def _json_ok(value) -> bool:
    try:
        json.dumps(value, allow_nan=False)
        return True
    except ValueError:
        return False


def _model_ok(model, spec: dict) -> bool:
    try:
        model.model_validate(spec)
        return True
    except ValidationError:
        return False


@dataclass
class Fuzzer:
    """One namespace with a master, one agent and framework `fz` created by ServiceAccount `fz`."""

    admin: Kube
    fw: RawFramework  # its kube is the framework's own identity
    namespace: str
    tally: Tally = field(default_factory=Tally)
    seq: int = 0

    def _name(self, prefix: str) -> str:
        self.seq += 1
        return f"{prefix}-{self.seq}"

    def framework(self, spec: dict) -> None:
        self.tally.tried["framework"] += 1
        name = self._name("f")
        # Usually its own principal, so that the CRD's rules and the master see the case.
        spec = {"principal": self.fw.kube.whoami(), **spec}
        body = {"apiVersion": API, "kind": "Framework", "metadata": {"name": name}, "spec": spec}
        try:
            self.fw.kube.create("frameworks", self.namespace, body)
        except ApiException as e:
            _refused(self.tally, "framework", e)
            return
        stored = self.admin.get("frameworks", self.namespace, name)
        if not _model_ok(FrameworkSpec, stored.get("spec") or {}):
            self.tally.model_disagrees.append(f"framework {stored.get('spec')}")
        with contextlib.suppress(ApiException):
            self.admin.delete("frameworks", self.namespace, name)

    def role(self, spec: dict) -> None:
        self.tally.tried["mesosrole"] += 1
        name = f"{self.namespace}-{self._name('r')}"
        body = {"apiVersion": API, "kind": "MesosRole", "metadata": {"name": name}, "spec": spec}
        try:
            self.admin.custom.create_cluster_custom_object("mesoskube.io", "v1alpha1", "mesosroles", body)
        except ApiException as e:
            _refused(self.tally, "mesosrole", e)
            return
        stored = self.admin.custom.get_cluster_custom_object("mesoskube.io", "v1alpha1", "mesosroles", name)
        if not _model_ok(MesosRoleSpec, stored.get("spec") or {}):
            self.tally.model_disagrees.append(f"mesosrole {stored.get('spec')}")
        self.admin.custom.delete_cluster_custom_object("mesoskube.io", "v1alpha1", "mesosroles", name)

    def forged_task(self, spec: dict) -> None:
        """The framework's own identity creating a Task: never allowed, never launched."""
        self.tally.tried["forged-task"] += 1
        name = self._name("forged")
        body = {"apiVersion": API, "kind": "Task", "metadata": {"name": name}, "spec": spec}
        try:
            self.fw.kube.create("tasks", self.namespace, body)
        except ApiException as e:
            _refused(self.tally, "forged-task", e)
            return
        self.tally.launched_bad.append(f"forged task {name} was stored: {spec}")

    def metadata(self, patch: dict) -> None:
        """The framework's own identity patching its Offer's metadata."""
        self.tally.tried["offer-metadata"] += 1
        offer = self.fw.wait_offers(1, timeout=30)[0]
        name, meta = offer["metadata"]["name"], offer["metadata"]
        labels = meta.get("labels") or {}
        touches = [
            k
            for k, v in (patch.get("labels") or {}).items()
            if k.startswith("mesoskube.io/") and labels.get(k) != v
        ]
        if patch.get("finalizers", meta.get("finalizers") or []) != (meta.get("finalizers") or []):
            touches.append("finalizers")
        if "ownerReferences" in patch and patch["ownerReferences"] != meta.get("ownerReferences"):
            touches.append("ownerReferences")
        try:
            self.fw.kube.patch("offers", self.namespace, name, {"metadata": patch})
        except ApiException as e:
            if e.status == 404:  # rescinded under us: not a verdict
                self.tally.tried["offer-metadata"] -= 1
                return
            _refused(self.tally, "offer-metadata", e)
            return
        if touches:
            self.tally.protected_changed.append(f"{name}: {patch} changed {touches}")

    def answer(self, answer: dict) -> None:
        self.tally.tried["answer"] += 1
        offer = self.fw.wait_offers(1, timeout=30)[0]
        name = offer["metadata"]["name"]
        existing = {t["metadata"]["name"] for t in self.admin.list("tasks", self.namespace)}
        try:
            stored = self.fw.kube.patch("offers", self.namespace, name, {"spec": {"answer": answer}})
        except ApiException as e:
            if e.status == 404:  # rescinded under us (a pod of the last case left): not a verdict
                self.tally.tried["answer"] -= 1
                return
            _refused(self.tally, "answer", e)
            return
        except ValueError:  # not JSON (the client refuses to send it)
            self.tally.rejected["answer"] += 1
            return
        valid = _model_ok(OfferAnswer, stored["spec"]["answer"])
        fits = False
        if valid:
            parsed = OfferAnswer.model_validate(stored["spec"]["answer"])
            verdict = check_accept(Resources.from_mapping(offer["spec"]["resources"]), parsed.tasks, existing)
            fits = verdict.ok
        else:
            self.tally.model_disagrees.append(
                f"answer stored but invalid to the model: {stored['spec']['answer']}"
            )

        def processed() -> bool:
            try:
                got = self.admin.get("offers", self.namespace, name)
            except ApiException as e:
                return e.status == 404
            return bool((got.get("status") or {}).get("phase") not in (None, "Outstanding"))

        eventually(processed, timeout=20, what=f"the master to process the answer to {name}")
        launched = [
            t["metadata"]["name"]
            for t in self.admin.list("tasks", self.namespace)
            if t["spec"].get("offer") == name
            and (t.get("status") or {}).get("state") != TaskState.ERROR.value
        ]
        if launched and not (valid and fits):
            self.tally.launched_bad.append(f"{launched} launched from {stored['spec']['answer']}")
        self.tally.launched += len(launched)
        self.tally.refused_by_master += stored["spec"]["answer"].get("type") == "Accept" and not (
            valid and fits
        )
        self._reset()

    def _reset(self) -> None:
        """Kill what launched and clear filters, so the next answer gets a whole agent again."""
        for t in self.admin.list("tasks", self.namespace):
            with contextlib.suppress(ApiException):
                self.admin.delete("tasks", self.namespace, t["metadata"]["name"])
        eventually(
            lambda: (
                not [
                    p
                    for p in self.admin.core.list_namespaced_pod(self.namespace).items
                    if p.metadata.deletion_timestamp is None
                ]
                or None
            ),
            timeout=30,
            what="task pods gone",
        )
        self.fw.revive()


def kinds(fuzzer: Fuzzer) -> dict[str, tuple]:
    return {
        "framework": (framework_specs, fuzzer.framework),
        "mesosrole": (role_specs, fuzzer.role),
        "forged-task": (forged_tasks, fuzzer.forged_task),
        "answer": (answers, fuzzer.answer),
        "offer-metadata": (metadata_patches, fuzzer.metadata),
    }


def write_results(path: Path, record: dict) -> None:
    """Merge one kind's tally into the JSON at `path` and render all of them as Markdown beside it."""
    results = json.loads(path.read_text()) if path.exists() else {}
    results[record["kind"]] = record
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    rows = [
        ("cases tried", lambda r: sum(r["tried"].values())),
        ("rejected by the API server", lambda r: sum(r["rejected_by_api"].values())),
        ("  of them not naming a field or rule", lambda r: r["refusals_not_naming_a_field"]),
        ("stored, but the master's model rejects them", lambda r: r["stored_but_model_rejects"]),
        (
            "accepts refused by the master (TASK_ERROR / Invalid)",
            lambda r: r["answers_refused_by_the_master"],
        ),
        ("tasks launched from valid answers", lambda r: r["tasks_launched_from_valid_answers"]),
        ("launches from bad or unauthorised input", lambda r: r["launches_from_bad_input"]),
        ("the master's metadata changed by a framework", lambda r: r.get("protected_metadata_changed", 0)),
        ("master threads alive at the end", lambda r: "yes" if r["master_threads_alive"] else "NO"),
        ("tracebacks logged by the master", lambda r: r["tracebacks"]),
        ("seconds", lambda r: r["seconds"]),
    ]
    kinds_ = sorted(results)
    seeds = sorted({str(results[k]["seed"]) for k in kinds_})
    lines = [
        "# Contract fuzzer (`make fuzz`)",
        "",
        "Generated by tests/cluster/test_fuzz.py (hypothesis against the real API server, the chart's",
        "admission policies and a running master; tests/cluster/fuzz.py); FUZZ_SEED "
        + ", ".join(seeds)
        + ".",
        "",
        "| | " + " | ".join(kinds_) + " |",
        "|---|" + "---|" * len(kinds_),
    ]
    for label, value in rows:
        lines.append(f"| {label} | " + " | ".join(str(value(results[k])) for k in kinds_) + " |")
    total = sum(results[k]["seconds"] for k in kinds_)
    lines += ["", f"Total: {total / 60:.1f} minutes.", ""]
    path.with_suffix(".md").write_text("\n".join(lines))
