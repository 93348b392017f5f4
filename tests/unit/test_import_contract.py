"""Import contract: only the client layer (kube.py) and the master's writer (master/writer.py)
import the Kubernetes client API; the master's parts decide on cache views and hand writes to the
Writer. Run by `make lint` and with the unit tests."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "operator" / "mesoskube"
ALLOWED = {"kube.py", "master/writer.py"}
# Command-line tools outside the master, not under the contract (they run once and exit):
# installing CRDs, the demo, and the local control plane's fake and real nodes.
TOOLS = {"api/install.py", "demo.py", "cluster/nodes.py", "cluster/kubelets.py"}
# The Mesos HTTP API (mesosapi/) is a front end of its own, not a part of the master: like the
# framework SDK it calls the API for its clients (TokenReview, SubjectAccessReview, their CRs) and
# reads ApiException statuses. Listed by file so that a new module there is still caught.
FRONT_ENDS = {"mesosapi/auth.py", "mesosapi/server.py", "mesosapi/session.py"}
# Leader election (HA) is an adapter of its own: it reuses the client's `kubernetes.leaderelection`
# (LeaseLock, client-go's acquire-or-renew rule) and writes only the masters' election Lease, on its
# own thread, never an object the engine decides on.
ADAPTERS = {"master/election.py"}
# Not the client API: quantity parsing.
HARMLESS = {"kubernetes.utils"}


def kubernetes_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [
            n for n in names if (n == "kubernetes" or n.startswith("kubernetes.")) and n not in HARMLESS
        ]
    return found


def test_only_kube_and_the_writer_import_the_kubernetes_client() -> None:
    offenders = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in ALLOWED or rel in TOOLS or rel in FRONT_ENDS or rel in ADAPTERS:
            continue
        if imports := kubernetes_imports(path):
            offenders[rel] = imports
    assert offenders == {}, f"talk to the API through kube.py or master/writer.py: {offenders}"


def test_the_contract_sees_an_import_when_there_is_one() -> None:
    assert kubernetes_imports(ROOT / "master" / "writer.py") == ["kubernetes.client.exceptions"]
