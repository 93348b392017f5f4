"""Real identities for contract tests: ServiceAccount tokens (TokenRequest API) and the chart's
admission policies and framework Role, rendered by `helm template` and applied to the API server."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from mesoskube.cluster.binaries import binary_path
from mesoskube.kube import Kube
from tests.helpers import eventually

CHART = Path(__file__).resolve().parents[2] / "charts" / "mesoskube"
# The release the chart-RBAC tests install (tests/cluster/test_chart_rbac.py): its master's
# ServiceAccounts are the trusted ones.
RELEASE, RELEASE_NS = "rbac", "mesoskube-rbac-test"
MASTER_USERS = [
    f"system:serviceaccount:{RELEASE_NS}:{r}-mesoskube" for r in ("rbac", "rbac-nobulk", "rbac-tasks")
]
# The master installed as a pod (test_installed_master.py) and the token-rotation test's master.
MASTER_USERS += [
    "system:serviceaccount:mesoskube-system:mesoskube",
    "system:serviceaccount:mesoskube-rotation:master",
]


def helm_template(*args: str, release: str = RELEASE, namespace: str = RELEASE_NS) -> list[dict]:
    out = subprocess.run(
        [str(binary_path("helm")), "template", release, str(CHART), "--namespace", namespace, *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [o for o in yaml.safe_load_all(out) if o]


def _apply(kube: Kube, obj: dict) -> None:
    """Create or replace a cluster-scoped ValidatingAdmissionPolicy or its binding."""
    api = client.AdmissionregistrationV1Api(kube.api)
    kind, name = obj["kind"], obj["metadata"]["name"]
    create, read, replace = {
        "ValidatingAdmissionPolicy": (
            api.create_validating_admission_policy,
            api.read_validating_admission_policy,
            api.replace_validating_admission_policy,
        ),
        "ValidatingAdmissionPolicyBinding": (
            api.create_validating_admission_policy_binding,
            api.read_validating_admission_policy_binding,
            api.replace_validating_admission_policy_binding,
        ),
    }[kind]
    try:
        create(obj)
    except ApiException as e:
        if e.status != 409:
            raise
        obj["metadata"]["resourceVersion"] = read(name).metadata.resource_version
        replace(name, obj)


def install_admission_policies(kube: Kube, timeout: float = 30) -> list[dict]:
    """The chart's ValidatingAdmissionPolicies and bindings, applied; returns once they are in force."""
    users = "{" + ",".join(MASTER_USERS) + "}"
    objects = [
        o
        for o in helm_template(
            "--show-only",
            "templates/admission-policies.yaml",
            "--show-only",
            "templates/unknown-fields.yaml",
            "--set",
            f"admission.trustedUsers={users}",
            # Tests put their Frameworks in namespaces of their own: no task-namespaces policy.
            "--set-json",
            "rbac.taskNamespaces=[]",
        )
        if o["kind"].startswith("ValidatingAdmissionPolicy")
    ]
    for obj in objects:
        _apply(kube, obj)
    _wait_in_force(kube, timeout)
    return objects


def _wait_in_force(kube: Kube, timeout: float) -> None:
    """Policies take effect asynchronously: probe the unknown-fields one with a dry-run create."""
    probe = {
        "apiVersion": "mesoskube.io/v1alpha1",
        "kind": "Offer",
        "metadata": {"name": "policy-probe"},
        "spec": {
            "framework": "probe",
            "agent": "probe",
            "resources": {"cpus": 1},
            "answer": {"type": "Accept", "tasks": [{"name": "t", "resources": {"cpus": 1, "probe": 1}}]},
        },
    }

    def in_force() -> bool:
        try:
            kube.custom.create_namespaced_custom_object(
                "mesoskube.io", "v1alpha1", "default", "offers", probe, dry_run="All"
            )
        except ApiException as e:
            if e.status in (400, 403, 422) and "probe" in (e.body or ""):
                return True
            raise
        return False

    eventually(in_force, timeout=timeout, interval=0.2, what="the admission policies in force")


def service_account(kube: Kube, kubeconfig: str, namespace: str, name: str, directory: Path) -> Kube:
    """A client authenticated as ServiceAccount `name` of `namespace` (a real token, TokenRequest)."""
    try:
        kube.core.create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
        )
    except ApiException as e:
        if e.status != 409:
            raise
    token = kube.core.create_namespaced_service_account_token(
        name,
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
        ),
    ).status.token
    base = yaml.safe_load(Path(kubeconfig).read_text())
    base["users"] = [{"name": name, "user": {"token": token}}]
    for ctx in base["contexts"]:
        ctx["context"]["user"] = name
    path = directory / f"kubeconfig-{namespace}-{name}"
    path.write_text(yaml.safe_dump(base))
    return Kube.connect(str(path))


def username(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def bind_framework_role(kube: Kube, namespace: str, *service_accounts: str) -> None:
    """The chart's documented framework Role in `namespace`, bound to the given ServiceAccounts."""
    objects = helm_template(
        "--show-only",
        "templates/framework-rbac.yaml",
        "--set",
        f"frameworkRbac.namespaces={{{namespace}}}",
        "--set",
        "frameworkRbac.createServiceAccount=false",
    )
    role = next(o for o in objects if o["kind"] == "Role")
    binding = next(o for o in objects if o["kind"] == "RoleBinding")
    binding["subjects"] = [
        {"kind": "ServiceAccount", "name": sa, "namespace": namespace} for sa in service_accounts
    ]
    kube.rbac.create_namespaced_role(namespace, role)
    kube.rbac.create_namespaced_role_binding(namespace, binding)


def wait_param_policies_resolve(kube: Kube, namespace: str, timeout: float = 60) -> None:
    """A restarted kube-apiserver refuses, for a while, every request its admission policies with a
    `paramKind` evaluate ("failed to configure policy: failed to find resource referenced by
    paramKind": it has not rediscovered the MesosRole CRD yet). Wait until a dry-run Framework
    naming a role is judged again, so the next test does not meet that."""
    probe = {
        "apiVersion": "mesoskube.io/v1alpha1",
        "kind": "Framework",
        "metadata": {"name": "policy-probe"},
        "spec": {"roles": ["*"]},
    }

    def judged() -> bool:
        try:
            kube.custom.create_namespaced_custom_object(
                "mesoskube.io", "v1alpha1", namespace, "frameworks", probe, dry_run="All"
            )
        except ApiException as e:
            return "failed to configure policy" not in (e.body or "")
        return True

    eventually(
        judged, timeout=timeout, interval=0.2, what="the restarted API server's policies judging again"
    )
