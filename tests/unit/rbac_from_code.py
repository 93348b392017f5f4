"""The Kubernetes permissions the master's code needs, derived from the calls it makes (AST scan),
not from the chart: the chart's ClusterRole is checked against this (tests/unit/test_rbac_from_code.py).

What counts as a call:
- `kube.create/get/list/patch/patch_status/delete/delete_collection("<plural>", ...)` (mesoskube.Kube);
- `kube.core.*`, `kube.coordination.*` and `kube.custom.*` generated client methods, read by name
  (`create_namespaced_pod` -> pods create, `list_lease_for_all_namespaces` -> leases list);
- `kopf.on.event(...)` handlers: list + watch of the resource;
- `owner_ref("<Kind>", ...)` in builders: blockOwnerDeletion needs update on <kinds>/finalizers;
- `self._delete_quietly("<plural>", ...)`, the engine's one wrapper with a plural argument.
A plural that is a variable is resolved through an enclosing `for x in ("a", "b")` loop; one that
cannot be resolved is an error, so a new call cannot silently escape the check.
"""

from __future__ import annotations

import ast
from pathlib import Path

from mesoskube import API_GROUP

ROOT = Path(__file__).resolve().parents[2] / "operator" / "mesoskube"
MASTER_MODULES = sorted((ROOT / "master").glob("*.py"))

_KUBE_VERBS = {
    "create": "create",
    "get": "get",
    "list": "list",
    "patch": "patch",
    "patch_status": "patch",
    "delete": "delete",
    "delete_collection": "deletecollection",
}
_WRAPPERS = {"_delete_quietly": "delete"}
_CLIENT_VERBS = {"create": "create", "delete": "delete", "list": "list", "read": "get", "patch": "patch",
                 "replace": "update", "watch": "watch"}  # fmt: skip
_GROUPS = {"core": "", "coordination": "coordination.k8s.io"}
_PLURAL = {"pod": "pods", "node": "nodes", "event": "events", "lease": "leases", "namespace": "namespaces"}

Grant = tuple[str, str, str]  # (apiGroup, resource, verb)


class UnresolvedCall(AssertionError):
    pass


def _attr_chain(node: ast.AST) -> list[str]:
    out = []
    while isinstance(node, ast.Attribute):
        out.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        out.append(node.id)
    return list(reversed(out))


class _Scanner(ast.NodeVisitor):
    def __init__(self, where: str) -> None:
        self.where = where
        self.grants: set[Grant] = set()
        self.loops: list[dict[str, list[str]]] = []

    def visit_For(self, node: ast.For) -> None:
        bound: dict[str, list[str]] = {}
        if isinstance(node.target, ast.Name) and isinstance(node.iter, ast.Tuple | ast.List):
            values = [e.value for e in node.iter.elts if isinstance(e, ast.Constant)]
            if len(values) == len(node.iter.elts):
                bound[node.target.id] = values
        self.loops.append(bound)
        self.generic_visit(node)
        self.loops.pop()

    def _strings(self, arg: ast.AST, call: ast.Call) -> list[str]:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return [arg.value]
        if isinstance(arg, ast.Name) and arg.id == "API_GROUP":
            return [API_GROUP]
        if isinstance(arg, ast.Name):
            for bound in reversed(self.loops):
                if arg.id in bound:
                    return bound[arg.id]
        raise UnresolvedCall(
            f"{self.where}:{call.lineno}: cannot tell which resource {ast.unparse(call)} uses"
        )

    def visit_Call(self, node: ast.Call) -> None:
        chain = _attr_chain(node.func)
        if len(chain) >= 2 and chain[-2] == "kube" and chain[-1] in _KUBE_VERBS and node.args:
            verb = _KUBE_VERBS[chain[-1]]
            # The generic wrappers in kube.py and the engine's _delete_quietly pass a variable through.
            if not (isinstance(node.args[0], ast.Name) and node.args[0].id == "plural"):
                sub = "/status" if chain[-1] == "patch_status" else ""
                for plural in self._strings(node.args[0], node):
                    self.grants.add((API_GROUP, plural + sub, verb))
        elif chain and chain[-1] in _WRAPPERS and node.args:
            for plural in self._strings(node.args[0], node):
                self.grants.add((API_GROUP, plural, _WRAPPERS[chain[-1]]))
        elif len(chain) >= 3 and chain[-3] == "kube" and chain[-2] in _GROUPS:
            self.grants.add(self._client_grant(chain[-2], chain[-1], node))
        elif len(chain) >= 3 and chain[-3] == "kube" and chain[-2] == "custom":
            verb = _CLIENT_VERBS[chain[-1].split("_", 1)[0]]
            group = self._strings(node.args[0], node)[0]
            plural = self._strings(node.args[2], node)[0]
            sub = "/status" if chain[-1].endswith("_status") else ""
            self.grants.add((group, plural + sub, verb))
        elif chain[-3:] == ["kopf", "on", "event"]:
            args = [self._strings(a, node)[0] for a in node.args]
            group, plural = (args[0], args[1]) if len(args) == 2 else ("", args[0])
            self.grants |= {(group, plural, "list"), (group, plural, "watch")}
        elif chain and chain[-1] == "owner_ref" and node.args and isinstance(node.args[0], ast.Constant):
            self.grants.add((API_GROUP, f"{node.args[0].value.lower()}s/finalizers", "update"))
        self.generic_visit(node)

    def _client_grant(self, api: str, method: str, node: ast.Call) -> Grant:
        verb_word, _, rest = method.partition("_")
        rest = rest.replace("namespaced_", "").replace("_for_all_namespaces", "")
        if verb_word not in _CLIENT_VERBS or rest not in _PLURAL:
            raise UnresolvedCall(f"{self.where}:{node.lineno}: unknown client method {method}")
        return (_GROUPS[api], _PLURAL[rest], _CLIENT_VERBS[verb_word])


def master_grants(modules: list[Path] = MASTER_MODULES) -> set[Grant]:
    grants: set[Grant] = set()
    for path in modules:
        scanner = _Scanner(str(path.relative_to(ROOT.parent)))
        scanner.visit(ast.parse(path.read_text(encoding="utf-8")))
        grants |= scanner.grants
    return grants
