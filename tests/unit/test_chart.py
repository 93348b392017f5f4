"""The Helm chart (charts/mesoskube): lint, render, security settings, RBAC, and values.yaml's
`operator:` block against mesoskube.settings (the settings' defaults are written once, in settings.py).

Runs the pinned helm binary (versions.env); skips only when it has not been built (`make binaries`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from collections.abc import Iterable
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from mesoskube import settings
from mesoskube.api.models import (
    ContainerInfo,
    EnvVar,
    Filters,
    OfferAnswer,
    PodRef,
    ResourceQuantities,
    TaskInfo,
)
from mesoskube.master import LABEL_FRAMEWORK, LABEL_MASTER_MADE, LABEL_REFUSED, LABEL_TASK_ID
from mesoskube.master.builders import task_manifest
from tests.unit.rbac_from_code import master_grants

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "mesoskube"
RELEASE, NAMESPACE = "ms", "mesoskube-system"
FULLNAME = "ms-mesoskube"

# Everything optional switched on.
ALL_FEATURES = tuple(
    arg
    for value in (
        "serviceMonitor.enabled=true",
        "grafanaDashboard.enabled=true",
        "frameworkRbac.namespaces={spark,batch}",
    )
    for arg in ("--set", value)
)


def _helm_binary() -> Path | None:
    try:
        from mesoskube.cluster.binaries import MissingBinary, binary_path
    except ImportError:
        pass
    else:
        try:
            return binary_path("helm")
        except MissingBinary:
            return None
    cache_dir = Path(os.environ.get("MESOSKUBE_CACHE") or Path.home() / ".cache" / "mesoskube")
    found = sorted((cache_dir / "bin").glob("helm-*"))
    return found[-1] if found else None


def _kube_version() -> str:
    # A helm built with `go install` defaults to Kubernetes v1.20 for `template`, below the chart's
    # kubeVersion; render for the version the project pins.
    for line in (ROOT / "operator" / "mesoskube" / "cluster" / "versions.env").read_text().splitlines():
        if line.startswith("KUBERNETES_VERSION="):
            return line.partition("=")[2].strip()
    raise AssertionError("KUBERNETES_VERSION missing from versions.env")


@cache
def helm() -> Path:
    path = _helm_binary()
    if path is None:
        pytest.skip("helm is not built yet (run `make binaries`); looked in ~/.cache/mesoskube/bin")
    return path


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm()), *args], capture_output=True, text=True, timeout=60, check=False)


def helm_template(*args: str) -> subprocess.CompletedProcess[str]:
    return run_helm(
        "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", _kube_version(), *args
    )


@cache
def render(*args: str) -> tuple[dict[str, Any], ...]:
    """`helm template` of the chart with extra args -> the rendered objects."""
    out = helm_template(*args)
    assert out.returncode == 0, out.stderr
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def objects(docs: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: Iterable[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = objects(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def master_container(docs: Iterable[dict[str, Any]]) -> dict[str, Any]:
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def schema() -> dict[str, Any]:
    return json.loads((CHART / "values.schema.json").read_text())


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (g, r, v)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


def expand(table: dict[tuple[str, str], str]) -> set[tuple[str, str, str]]:
    return {
        (g, r, v) for (g, resources), verbs in table.items() for r in resources.split() for v in verbs.split()
    }


# --- lint and render -------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [(), ALL_FEATURES], ids=["defaults", "all-features"])
def test_helm_lint_strict(extra: tuple[str, ...]) -> None:
    out = run_helm("lint", "--strict", "--kube-version", _kube_version(), str(CHART), *extra)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("extra", [(), ALL_FEATURES], ids=["defaults", "all-features"])
def test_every_rendered_object_parses(extra: tuple[str, ...]) -> None:
    docs = render(*extra)
    for doc in docs:
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"], doc
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "mesoskube"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
    kinds = sorted(d["kind"] for d in docs)
    # Two Services: metrics, and the Mesos HTTP API.
    # The master's ClusterRole and binding; task pods' ClusterRole, bound in `default` (rbac.taskNamespaces).
    expected = ["ClusterRole", "ClusterRoleBinding", "ClusterRole", "RoleBinding"]
    expected += ["Deployment", "Service", "Service", "ServiceAccount"]
    expected += ["PodDisruptionBudget", "Role", "RoleBinding"]  # two replicas: election and PDB
    expected += ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"] * len(POLICIES)
    if extra:
        expected += ["ConfigMap", "ServiceMonitor"] + ["Role", "RoleBinding", "ServiceAccount"] * 2
    assert kinds == sorted(expected)


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["version"] == "0.1.0"
    assert chart["appVersion"] == project["version"]
    # No kubeVersion: `helm template` (GitOps tools) renders for a default version below any
    # constraint and failed; the requirement (1.32) is in the chart's README and NOTES.
    assert "kubeVersion" not in chart


def test_helm_template_works_without_kube_version() -> None:
    out = run_helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE)
    assert out.returncode == 0, out.stderr


def test_crds_in_chart_are_the_mesoskube_ones() -> None:
    files = sorted((CHART / "crds").glob("*.yaml"))
    if not files:
        pytest.skip("charts/mesoskube/crds/ is not generated yet (make crds)")
    crds = [d for f in files for d in yaml.safe_load_all(f.read_text()) if d]
    assert {c["kind"] for c in crds} == {"CustomResourceDefinition"}
    assert {c["spec"]["group"] for c in crds} == {"mesoskube.io"}
    assert {c["spec"]["names"]["plural"]: c["spec"]["scope"] for c in crds} == {
        "frameworks": "Namespaced",
        "offers": "Namespaced",
        "tasks": "Namespaced",
        "mesosroles": "Cluster",
    }


# --- the master's Deployment -------------------------------------------------------------------------


def test_deployment_is_a_hardened_master() -> None:
    docs = render()
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = master_container(docs)
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 65532
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    # A writable /tmp on the read-only root filesystem.
    tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])


def test_ports_and_probes_follow_the_settings() -> None:
    defaults = settings.Settings()
    container = master_container(render())
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {
        "metrics": defaults.metricsPort,
        "health": defaults.healthPort,
        "mesos-http": defaults.httpPort,
    }
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    services = {s["metadata"]["name"]: s for s in objects(render(), "Service")}
    service = services[f"{FULLNAME}-metrics"]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["metrics"]
    mesos = services[f"{FULLNAME}-mesos"]
    assert [(p["port"], p["targetPort"]) for p in mesos["spec"]["ports"]] == [(5050, "mesos-http")]
    assert not objects(render(), "Ingress")
    (ingress,) = objects(
        render(
            "--set", "mesosService.ingress.enabled=true", "--set", "mesosService.ingress.host=mesos.example"
        ),
        "Ingress",
    )
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "mesos.example"
    assert rule["http"]["paths"][0]["backend"]["service"] == {
        "name": f"{FULLNAME}-mesos",
        "port": {"name": "mesos-http"},
    }
    pod_labels = one(render(), "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_two_replicas_by_default_with_election_a_pdb_and_a_rolling_handover() -> None:
    docs = render()
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert env_of(docs)["MESOSKUBE_LEADER_ELECT"] == "true"  # implied by replicaCount > 1
    namespace_env = next(e for e in master_container(docs)["env"] if e["name"] == "POD_NAMESPACE")
    assert namespace_env["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert (
        pdb["spec"]["selector"]["matchLabels"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    role = one(docs, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    leases = ("coordination.k8s.io", "leases")
    assert grants(role["rules"]) == expand({leases: "create get update list watch"})
    named = [r for r in role["rules"] if "get" in r["verbs"]]
    assert named[0]["resourceNames"] == [settings.Settings().leaseName]
    (binding,) = [b for b in objects(docs, "RoleBinding") if b["roleRef"]["kind"] == "Role"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_one_replica_runs_alone_without_election_or_pdb() -> None:
    docs = render("--set", "replicaCount=1")
    assert one(docs, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    assert env_of(docs)["MESOSKUBE_LEADER_ELECT"] == "false"
    assert not objects(docs, "PodDisruptionBudget") and not objects(docs, "Role")


def test_ports_zero_turn_endpoints_off() -> None:
    docs = render(
        "--set", "operator.metricsPort=0", "--set", "operator.healthPort=0", "--set", "operator.httpPort=0"
    )
    container = master_container(docs)
    assert "ports" not in container and "livenessProbe" not in container and "readinessProbe" not in container
    assert not objects(docs, "Service")


def test_same_metrics_and_health_port_is_refused() -> None:
    out = helm_template("--set", "operator.healthPort=8080")
    assert out.returncode != 0
    assert "metricsPort" in out.stderr and "healthPort" in out.stderr


def env_of(docs: Iterable[dict[str, Any]]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in master_container(docs)["env"] if "value" in e}


def test_env_is_one_variable_per_setting_and_loads_the_defaults() -> None:
    env = env_of(render())
    assert set(env) == {settings.env_name(name) for name in settings.Settings.model_fields}
    # The defaults, except leader election, which two replicas (the chart's default) imply.
    assert settings.load(environ=env) == settings.Settings(leaderElect=True)
    assert settings.load(environ=env_of(render("--set", "replicaCount=1"))) == settings.Settings()


def test_mesos_tls_secret_is_mounted_and_its_files_are_the_masters_tls_settings() -> None:
    docs = render("--set", "mesosService.tls.secretName=mesos-tls")
    loaded = settings.load(environ=env_of(docs))
    assert loaded.httpTlsCertFile == "/etc/mesoskube/mesos-tls/tls.crt"
    assert loaded.httpTlsKeyFile == "/etc/mesoskube/mesos-tls/tls.key"
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "mesos-tls"]
    assert volume["secret"]["secretName"] == "mesos-tls"
    (mount,) = [m for m in master_container(docs)["volumeMounts"] if m["name"] == "mesos-tls"]
    assert mount == {"name": "mesos-tls", "mountPath": "/etc/mesoskube/mesos-tls", "readOnly": True}
    # The pod's IP is what the leader advertises for the standbys' 307 answers.
    env = {e["name"]: e for e in master_container(docs)["env"]}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert not any(
        v["name"] == "mesos-tls" for v in one(render(), "Deployment")["spec"]["template"]["spec"]["volumes"]
    )


def test_env_carries_overrides_the_master_can_read() -> None:
    env = env_of(
        render(
            "--set-json",
            "operator.allocationInterval=0.25",
            "--set",
            "operator.offerTimeout=30",
            "--set",
            "operator.seed=1000000",
            "--set",
            "operator.sorter=random",
            "--set-string",
            "operator.agentSelector=mesoskube.io/agent=true",
        )
    )
    loaded = settings.load(environ=env)
    assert loaded.allocationInterval == 0.25
    assert loaded.offerTimeout == 30
    assert loaded.seed == 1_000_000  # not "1e+06"
    assert loaded.sorter.value == "random"
    assert loaded.agentSelector == "mesoskube.io/agent=true"


# --- values.yaml and values.schema.json against settings.py -----------------------------------------------


def _default(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def test_values_operator_block_is_settings_fields_and_defaults() -> None:
    """The defaults are written once, in settings.py: values.yaml must repeat them exactly."""
    operator = values()["operator"]
    fields = settings.Settings.model_fields
    assert list(operator) == list(fields), "same keys, in the same order as settings.Settings"
    assert operator == {name: _default(info.default) for name, info in fields.items()}
    for name, info in fields.items():
        if info.annotation is float:
            assert isinstance(operator[name], float), f"{name}: write {operator[name]} as a float"


def _constraints(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """A property's validation keywords, with $ref resolved and Optional (anyOf null) folded into type."""
    if "$ref" in prop:
        prop = {**defs[prop["$ref"].rsplit("/", 1)[1]], **prop}
    types: list[str] = []
    out: dict[str, Any] = {}
    for branch in [prop, *prop.get("anyOf", [])]:
        branch_type = branch.get("type")
        if branch_type:
            types += branch_type if isinstance(branch_type, list) else [branch_type]
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "pattern", "enum"):
            if key in branch:
                out[key] = branch[key]
    out["type"] = sorted(set(types))
    return out


def test_schema_mirrors_settings_constraints() -> None:
    ours = schema()["properties"]["operator"]
    theirs = settings.Settings.model_json_schema()
    assert ours["additionalProperties"] is False
    assert set(ours["properties"]) == set(theirs["properties"])
    for name, prop in theirs["properties"].items():
        want = _constraints(prop, theirs.get("$defs", {}))
        got = _constraints(ours["properties"][name], {})
        # The chart may be stricter (e.g. a pattern on minAllocatable or namespace), never looser.
        for key, value in want.items():
            assert got.get(key) == value, (
                f"operator.{name}: {key} is {got.get(key)!r}, settings.py has {value!r}"
            )


def _documented(text: str) -> set[str]:
    """Dotted paths of values.yaml keys with a comment on the line(s) right above them."""
    documented: set[str] = set()
    stack: list[tuple[int, str]] = []
    previous_is_comment = False
    for line in text.splitlines():
        stripped = line.strip()
        match = re.match(r"^( *)([A-Za-z_][\w.-]*):", line)
        if match and not stripped.startswith("#"):
            indent, key = len(match.group(1)), match.group(2)
            while stack and stack[-1][0] >= indent:
                stack.pop()
            path = ".".join([k for _, k in stack] + [key])
            if previous_is_comment:
                documented.add(path)
            stack.append((indent, key))
        previous_is_comment = stripped.startswith("#")
    return documented


def _leaves(tree: dict[str, Any], prefix: str = "") -> Iterable[str]:
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in ("resources", "labels"):
            yield from _leaves(value, f"{path}.")
        else:
            yield path


def test_every_value_is_documented_and_in_the_schema() -> None:
    documented = _documented((CHART / "values.yaml").read_text())
    for path in _leaves(values()):
        assert path in documented, f"{path}: add a comment above it in values.yaml"
        node = schema()
        for part in path.split("."):
            assert part in node.get("properties", {}), f"{path}: missing from values.schema.json"
            node = node["properties"][part]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("--set", "operator.allocationInterval=-1"), "allocationInterval"),
        (("--set", "operator.allocationInterval=601"), "allocationInterval"),
        (("--set", "operator.offerTimeout=0"), "offerTimeout"),
        (("--set", "operator.defaultRefuseSeconds=-1"), "defaultRefuseSeconds"),
        (("--set", "operator.portRange=31000"), "portRange"),
        (("--set", "operator.minAllocatable=cpu:1"), "minAllocatable"),
        (("--set", "operator.sorter=fifo"), "sorter"),
        (("--set-json", "operator.seed=0.5"), "seed"),
        (("--set", "operator.metricsPort=70000"), "metricsPort"),
        (("--set", "operator.healthPort=-1"), "healthPort"),
        (("--set", "operator.offerRetention=-1"), "offerRetention"),
        (("--set", "operator.namespace=Not_A_Namespace"), "namespace"),
        (("--set", "operator.allocationIntervall=2"), "allocationIntervall"),
        (("--set", "image.pullPolicy=Sometimes"), "pullPolicy"),
        (("--set", "serviceMonitor.enabled=yes"), "enabled"),
        (("--set", "frameworkRbac.namespaces={Bad_Namespace}"), "namespaces"),
    ],
)
def test_schema_rejects_bad_values_naming_the_field(args: tuple[str, ...], field: str) -> None:
    out = helm_template(*args)
    assert out.returncode != 0, f"{args} was accepted"
    assert "schema" in out.stderr and field in out.stderr, out.stderr


# --- RBAC ---------------------------------------------------------------------------------------------------

POLICIES = (
    "framework-principal",
    "offer-task-principal",
    "role-access",
    "master-metadata",
    "master-pods",
    "unknown-fields",
    "task-namespaces",  # with the default rbac.taskNamespaces
    "task-create",
    "task-create-labels",
)

FRAMEWORK_GRANTS = expand(
    {
        ("mesoskube.io", "frameworks"): "get list watch create update patch delete",
        ("mesoskube.io", "frameworks/status"): "get",
        # blockOwnerDeletion on its Tasks' owner reference (OwnerReferencesPermissionEnforcement).
        ("mesoskube.io", "frameworks/finalizers"): "update",
        ("mesoskube.io", "offers"): "get list watch update patch",
        # create: its own Tasks, answered by name (spec.answer.taskNames; the task-create policy).
        ("mesoskube.io", "tasks"): "get list watch create update patch delete",
        ("coordination.k8s.io", "leases"): "get create update patch",
        ("", "events"): "get list watch",
        # a retried accept by name: did the master launch it already (the SDK's _answer_taken)
        ("", "pods"): "get",
    }
)


def test_clusterroles_grant_exactly_what_the_code_calls_and_no_secrets() -> None:
    """The verbs are derived from the master's calls (tests/unit/rbac_from_code.py), not copied."""
    granted = set().union(*(grants(r["rules"]) for r in objects(render(), "ClusterRole")))
    assert not {r for _, r, _ in granted} & {"secrets", "configmaps", "*"}
    assert "*" not in {v for _, _, v in granted} and "*" not in {g for g, _, _ in granted}
    assert granted == master_grants()


def _task_pod_bindings(docs: tuple[dict[str, Any], ...]) -> tuple[set[str], list[str]]:
    """(ClusterRoleBindings' roles, namespaces of RoleBindings to the task-pods ClusterRole)."""
    cluster = {b["roleRef"]["name"] for b in objects(docs, "ClusterRoleBinding")}
    # The election's Role in the release namespace is the other RoleBinding (two replicas).
    bindings = [b for b in objects(docs, "RoleBinding") if b["roleRef"]["kind"] == "ClusterRole"]
    assert {b["roleRef"]["name"] for b in bindings} <= {f"{FULLNAME}-task-pods"}
    return cluster, sorted(b["metadata"]["namespace"] for b in bindings)


def test_task_pods_are_granted_apart_and_by_default_only_in_the_default_namespace() -> None:
    pods = {("", "pods", "create"), ("", "pods", "delete"), ("", "pods/binding", "create")}
    docs = render()
    roles = {r["metadata"]["name"]: grants(r["rules"]) for r in objects(docs, "ClusterRole")}
    assert roles[f"{FULLNAME}-task-pods"] == pods
    assert not roles[f"{FULLNAME}-master"] & pods
    assert _task_pod_bindings(docs) == ({f"{FULLNAME}-master"}, ["default"])
    assert _task_pod_bindings(render("--set", "rbac.taskNamespaces={spark,batch}")) == (
        {f"{FULLNAME}-master"},
        ["batch", "spark"],
    )
    # [] is the cluster-wide grant (held out of the system namespaces by the master-pods policy).
    cluster, namespaced = _task_pod_bindings(render("--set-json", "rbac.taskNamespaces=[]"))
    assert cluster == {f"{FULLNAME}-master", f"{FULLNAME}-task-pods"} and namespaced == []


def test_frameworks_outside_the_task_namespaces_are_refused_by_a_policy_naming_the_value() -> None:
    def policy(docs):
        return [
            p
            for p in objects(docs, "ValidatingAdmissionPolicy")
            if p["metadata"]["name"].endswith("-task-namespaces")
        ]

    (p,) = policy(render("--set", "rbac.taskNamespaces={spark,batch}"))
    assert p["spec"]["matchConstraints"]["resourceRules"][0]["resources"] == ["frameworks"]
    (check,) = p["spec"]["validations"]
    assert check["expression"] == 'request.namespace in ["spark","batch"]'
    assert (
        "rbac.taskNamespaces" in check["messageExpression"] and "spark, batch" in check["messageExpression"]
    )
    bindings = [
        b
        for b in objects(render(), "ValidatingAdmissionPolicyBinding")
        if b["spec"]["policyName"].endswith("-task-namespaces")
    ]
    assert len(bindings) == 1
    assert policy(render("--set-json", "rbac.taskNamespaces=[]")) == []
    assert policy(render("--set", "admission.enabled=false")) == []


def test_unknown_fields_policy_lists_exactly_the_model_fields_at_every_level() -> None:
    """The policy is derived from the models: each object node's known keys are its model's fields."""
    policy = next(
        p
        for p in objects(render(), "ValidatingAdmissionPolicy")
        if p["metadata"]["name"].endswith("-unknown-fields")
    )
    text = "\n".join(v["expression"] for v in policy["spec"]["validations"])
    for model in (OfferAnswer, TaskInfo, ResourceQuantities, ContainerInfo, EnvVar, PodRef, Filters):
        assert json.dumps(list(model.model_fields)) in text, model.__name__
    messages = [v["messageExpression"] for v in policy["spec"]["validations"]]
    assert any("'spec.answer.tasks[].resources: unknown field(s) '" in m for m in messages)
    assert any("'spec.answer.tasks[].container.env[]: unknown field(s) '" in m for m in messages)


def test_admission_policies_trust_the_master_serviceaccount() -> None:
    for policy in objects(render(), "ValidatingAdmissionPolicy"):
        text = json.dumps(policy)
        if policy["metadata"]["name"].endswith(
            ("-principal", "-master-pods", "-task-create", "-task-create-labels")
        ):
            assert f"system:serviceaccount:{NAMESPACE}:{FULLNAME}" in text, policy["metadata"]["name"]
    assert not objects(render("--set", "admission.enabled=false"), "ValidatingAdmissionPolicy")


@pytest.mark.parametrize(
    "extra", [(), ("--set-json", "rbac.taskNamespaces=[]")], ids=["defaults", "cluster-wide"]
)
def test_clusterroles_are_bound_exactly_to_the_master_serviceaccount(extra: tuple[str, ...]) -> None:
    docs = render(*extra)
    account = one(docs, "ServiceAccount")["metadata"]
    roles = {r["metadata"]["name"] for r in objects(docs, "ClusterRole")}
    every = [*objects(docs, "ClusterRoleBinding"), *objects(docs, "RoleBinding")]
    bindings = [b for b in every if b["roleRef"]["kind"] == "ClusterRole"]
    assert {b["roleRef"]["name"] for b in bindings} == roles
    for binding in bindings:
        assert binding["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"
        assert binding["roleRef"]["kind"] == "ClusterRole"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account["name"], "namespace": NAMESPACE}
        ]
    assert account["namespace"] == NAMESPACE


# A framework's Task is labelled with its Framework's name (builders.task_manifest).
FRAMEWORK_LABEL_CHECK = (
    f"'{LABEL_FRAMEWORK}' in variables.labels"
    f" && variables.labels['{LABEL_FRAMEWORK}'] == object.spec.framework"
)


def _policy(docs: Iterable[dict[str, Any]], name: str) -> dict[str, Any]:
    (found,) = [
        p for p in objects(docs, "ValidatingAdmissionPolicy") if p["metadata"]["name"] == f"{FULLNAME}-{name}"
    ]
    return found


def _binding(docs: Iterable[dict[str, Any]], name: str) -> dict[str, Any]:
    (found,) = [
        b
        for b in objects(docs, "ValidatingAdmissionPolicyBinding")
        if b["spec"]["policyName"] == f"{FULLNAME}-{name}"
    ]
    assert found["metadata"]["name"] == f"{FULLNAME}-{name}"
    assert found["spec"]["validationActions"] == ["Deny"]
    return found


def _rules(policy: dict[str, Any]) -> set[tuple[str, str]]:
    """(resource, operation) pairs the policy matches, all of them in mesoskube.io."""
    rules = policy["spec"]["matchConstraints"]["resourceRules"]
    assert {g for r in rules for g in r["apiGroups"]} == {"mesoskube.io"}
    return {(res, op) for r in rules for res in r["resources"] for op in r["operations"]}


def _trusted(docs: Iterable[dict[str, Any]]) -> str:
    """The chart's one expression for "the master or another trusted identity"."""
    variables = _policy(docs, "framework-principal")["spec"]["variables"]
    (trusted,) = [v["expression"] for v in variables if v["name"] == "trusted"]
    assert f'"system:serviceaccount:{NAMESPACE}:{FULLNAME}"' in trusted
    return trusted


def _variables(policy: dict[str, Any]) -> dict[str, str]:
    return {v["name"]: v["expression"] for v in policy["spec"].get("variables", [])}


def _reserved_labels(policy: dict[str, Any]) -> set[str]:
    """The label keys the policy's reservedLabels variable lists (a literal list it filters)."""
    match = re.fullmatch(
        r"\[(.*)\]\.filter\(k, k in variables\.labels\)", _variables(policy)["reservedLabels"]
    )
    assert match, _variables(policy)["reservedLabels"]
    return {k.strip().strip("'") for k in match.group(1).split(",")}


def test_offers_stay_master_made_but_tasks_are_no_longer_master_only() -> None:
    docs = render()
    principal = _policy(docs, "framework-principal")
    assert _rules(principal) == {
        ("frameworks", "CREATE"),
        ("frameworks", "UPDATE"),
        ("frameworks", "DELETE"),
        ("offers", "CREATE"),
    }
    master_only = [v for v in principal["spec"]["validations"] if "master only" in v["messageExpression"]]
    assert [v["expression"] for v in master_only] == [
        "request.resource.resource != 'offers' || variables.trusted"
    ]
    assert "'offers are created by the mesoskube master only, not by '" in master_only[0]["messageExpression"]


def test_task_create_policy_holds_a_frameworks_task_to_its_framework() -> None:
    """A framework creates its own Tasks (answered by name): the Framework spec.framework names, a
    parameter, decides; each check is written `not that Framework || (...)`."""
    docs = render()
    policy = _policy(docs, "task-create")
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    assert spec["paramKind"] == {"apiVersion": "mesoskube.io/v1alpha1", "kind": "Framework"}
    assert _rules(policy) == {("tasks", "CREATE")}
    # The master and the other trusted identities are not checked: the master labels its own Tasks.
    assert spec["matchConditions"] == [{"name": "not-trusted", "expression": f"!({_trusted(docs)})"}]
    assert _binding(docs, "task-create")["spec"]["paramRef"] == {
        "selector": {},
        "parameterNotFoundAction": "Allow",
    }
    variables = _variables(policy)
    assert variables["user"] == "request.userInfo.username"
    assert _reserved_labels(policy) == {LABEL_MASTER_MADE, LABEL_REFUSED, LABEL_TASK_ID}
    checks: dict[str, list[str]] = {}
    for validation in spec["validations"]:
        expression, message = validation["expression"], validation["messageExpression"]
        assert validation["reason"] == "Forbidden"
        prefix = "params.metadata.name != object.spec.framework || ("
        assert expression.startswith(prefix) and expression.endswith(")"), expression
        # Each message names the field it is about first, then the fix.
        field = re.match(r"'([a-zA-Z.]+): ", message)
        assert field, message
        checks.setdefault(field.group(1), []).append(expression.removeprefix(prefix)[:-1])
    assert {f: len(c) for f, c in checks.items()} == {
        "spec.framework": 1,  # its principal creates it
        "spec.offer": 1,
        "metadata.ownerReferences": 1,
        "metadata.labels": 2,  # the framework's label; none of the master's
        "spec.kill": 1,
    }
    assert checks["spec.framework"] == [
        "has(params.spec.principal) && params.spec.principal == variables.user"
    ]
    assert "has(object.spec.offer)" in checks["spec.offer"][0]
    (owners,) = checks["metadata.ownerReferences"]
    for part in (
        "size(variables.owners) == 1",
        "variables.owners[0].kind == 'Framework'",
        "variables.owners[0].name == object.spec.framework",
        "variables.owners[0].uid == params.metadata.uid",
        "has(variables.owners[0].controller) && variables.owners[0].controller",
    ):
        assert part in owners, part
    assert checks["spec.kill"] == ["!has(object.spec.kill) || !object.spec.kill"]
    assert sorted(checks["metadata.labels"]) == [
        FRAMEWORK_LABEL_CHECK,
        "size(variables.reservedLabels) == 0",
    ]
    assert (
        variables["owners"] == "has(object.metadata.ownerReferences) ? object.metadata.ownerReferences : []"
    )
    assert variables["labels"] == "has(object.metadata.labels) ? object.metadata.labels : {}"


def test_task_create_labels_hold_whatever_framework_a_task_names() -> None:
    """task-create decides only when the named Framework exists (a parameter); the master's labels
    (a restarted master trusts a Task labelled made-by-master) and the framework label must hold
    for a Task naming no Framework too, so a policy without parameters repeats them."""
    docs = render()
    policy = _policy(docs, "task-create-labels")
    spec = policy["spec"]
    assert "paramKind" not in spec and "paramRef" not in _binding(docs, "task-create-labels")["spec"]
    assert spec["failurePolicy"] == "Fail"
    assert _rules(policy) == {("tasks", "CREATE")}
    assert spec["matchConditions"] == [{"name": "not-trusted", "expression": f"!({_trusted(docs)})"}]
    assert _reserved_labels(policy) == {LABEL_MASTER_MADE, LABEL_REFUSED, LABEL_TASK_ID}
    assert [(v["expression"], v["reason"]) for v in spec["validations"]] == [
        ("size(variables.reservedLabels) == 0", "Forbidden"),
        (
            FRAMEWORK_LABEL_CHECK,
            "Forbidden",
        ),
    ]
    # The same words as task-create's, whichever policy the API server reports.
    create = _policy(docs, "task-create")["spec"]["validations"]
    labels = [
        v["messageExpression"] for v in create if v["messageExpression"].startswith("'metadata.labels: ")
    ]
    assert sorted(labels) == sorted(v["messageExpression"] for v in spec["validations"])


def test_task_create_policies_walk_no_list_of_the_request() -> None:
    """With `paramRef.selector: {}` task-create runs once per Framework of the namespace: its
    checks must cost the same whatever the object holds, so no macro walks the object's lists or
    maps (a literal list is fine). The matchCondition is the chart's shared trusted expression."""
    docs = render()
    for name in ("task-create", "task-create-labels"):
        spec = _policy(docs, name)["spec"]
        expressions = [v["expression"] for v in spec["validations"]] + list(
            _variables(_policy(docs, name)).values()
        )
        for expression in expressions:
            for macro in re.finditer(r"(.)\.(all|exists|exists_one|filter|map)\(", expression):
                assert macro.group(1) == "]", f"{name}: {expression} walks a list of the request"


def test_a_task_built_like_the_masters_has_what_task_create_asks() -> None:
    """builders.task_manifest, which a framework uses for its own Tasks, meets the checks of
    task-create by construction (the CEL itself is checked on an API server)."""
    task = TaskInfo(name="t1", resources=ResourceQuantities(cpus=1))
    manifest = task_manifest(task, "fw", "uid-1", "*", "node-1", "fw-node-1-1")
    meta = manifest["metadata"]
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "mesoskube.io/v1alpha1",
            "kind": "Framework",
            "name": "fw",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert meta["labels"][LABEL_FRAMEWORK] == manifest["spec"]["framework"] == "fw"
    assert not set(meta["labels"]) & {LABEL_MASTER_MADE, LABEL_REFUSED, LABEL_TASK_ID}
    assert manifest["spec"]["offer"] == "fw-node-1-1"
    assert not manifest["spec"].get("kill")


def test_framework_rbac_creates_tasks_but_no_offers_and_writes_no_status() -> None:
    (role, *_) = _framework_objects(render(*ALL_FEATURES), "Role")
    granted = grants(role["rules"])
    assert ("mesoskube.io", "tasks", "create") in granted
    assert ("mesoskube.io", "frameworks/finalizers", "update") in granted
    assert not {(g, r, v) for g, r, v in granted if r == "offers" and v == "create"}
    assert not {r for _, r, _ in granted if r.endswith("/status") and r != "frameworks/status"}
    assert {v for _, r, v in granted if r == "frameworks/status"} == {"get"}


def _framework_objects(docs: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in objects(docs, kind) if not d["metadata"]["name"].endswith("-election")]


def test_framework_rbac_per_namespace() -> None:
    assert not _framework_objects(render(), "Role")
    docs = render(*ALL_FEATURES)
    roles, bindings = _framework_objects(docs, "Role"), _framework_objects(docs, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["batch", "spark"]
    for role in roles:
        assert grants(role["rules"]) == FRAMEWORK_GRANTS
    for binding in bindings:
        ns = binding["metadata"]["namespace"]
        if binding["roleRef"]["name"] == f"{FULLNAME}-task-pods":
            continue  # the master's, in rbac.taskNamespaces
        assert binding["roleRef"]["name"] == f"{FULLNAME}-framework"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "mesoskube-framework", "namespace": ns}
        ]


# --- monitoring --------------------------------------------------------------------------------------------

EXPORTED_METRICS = {
    "mesoskube_allocation_runs_total",
    "mesoskube_allocation_duration_seconds",
    "mesoskube_offers_total",
    "mesoskube_offer_decision_seconds",
    "mesoskube_tasks",
    "mesoskube_task_launch_seconds",
    "mesoskube_role_allocated",
    "mesoskube_role_dominant_share",
    "mesoskube_framework_allocated",
    "mesoskube_framework_dominant_share",
    "mesoskube_agents",
    "mesoskube_api_requests_total",
}


def test_dashboard_uses_the_exported_metrics() -> None:
    dashboard = json.loads((CHART / "dashboards" / "mesoskube.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {re.sub(r"_(bucket|sum|count)$", "", m) for e in exprs for m in re.findall(r"mesoskube_\w+", e)}
    assert used == EXPORTED_METRICS


def test_dashboard_configmap_and_servicemonitor() -> None:
    docs = render(*ALL_FEATURES)
    configmap = one(docs, "ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["mesoskube.json"]) == json.loads(
        (CHART / "dashboards" / "mesoskube.json").read_text()
    )
    monitor = one(docs, "ServiceMonitor")
    # It selects the master's Services; only the metrics one has the port it scrapes.
    service = next(s for s in objects(docs, "Service") if s["metadata"]["name"] == f"{FULLNAME}-metrics")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [p["name"] for p in service["spec"]["ports"]]
