"""The Kubernetes permissions the master's code needs, derived from the calls it makes (AST scan),
not from the chart: the chart's ClusterRole is checked against this (tests/unit/test_rbac_from_code.py).

What counts as a call:
- `kube.create/get/list/patch/patch_status/delete/delete_collection("<plural>", ...)` (mesoskube.Kube);
- `kube.core.*`, `kube.coordination.*` and `kube.custom.*` generated client methods, read by name
  (`create_namespaced_pod` -> pods create, `list_lease_for_all_namespaces` -> leases list);
- `kopf.on.event(...)` handlers and the master's `Reflector("<plural>", ...)`s (core kinds): list +
  watch of the resource;
- `owner_ref("<Kind>", ...)` in builders: blockOwnerDeletion needs update on <kinds>/finalizers;
- `writer.create/patch/patch_status/delete/delete_collection/list("<plural>", ...)` and the
  Writer's named methods (`create_pod`, `bind_pod`, `list_framework_leases`, ...), the engine's
  one writer (master/writer.py); `delete_quietly(writer, "<plural>", ...)`, its wrapper;
- `kube.authentication/authorization.create_*` (the Mesos HTTP API's TokenReview and
  SubjectAccessReview), `kube.bind_pod` (pods/binding) and `kube.whoami` (SelfSubjectReview).
- local aliases of a client (`coord = self.kube.coordination`) and `ListWatch(name, lister, args)`
  (the SDK's list-then-watch): list + watch of the lister's resource.
Scanned: the master, the Mesos HTTP API, and the pods framework with the SDK it runs on, which run
in the master's process under its ServiceAccount.
A plural that is a variable is resolved through an enclosing `for x in ("a", "b")` loop; one that
cannot be resolved is an error, so a new call cannot silently escape the check.
"""

from __future__ import annotations

import ast
from pathlib import Path

from mesoskube import API_GROUP

REPO = Path(__file__).resolve().parents[2]
ROOT = REPO / "operator" / "mesoskube"
MASTER_MODULES = sorted(
    p
    for d in (ROOT / "master", ROOT / "mesosapi", REPO / "frameworks" / "pods", REPO / "frameworks" / "sdk")
    for p in d.glob("*.py")
)

_KUBE_VERBS = {
    "create": "create",
    "get": "get",
    "list": "list",
    "patch": "patch",
    "patch_status": "patch",
    "delete": "delete",
    "delete_collection": "deletecollection",
}
_WRITER_CALLS: dict[str, Grant] = {
    "create_pod": ("", "pods", "create"),
    "delete_pod": ("", "pods", "delete"),
    "bind_pod": ("", "pods/binding", "create"),
    "create_event": ("", "events", "create"),
    "patch_role_status": (API_GROUP, "mesosroles/status", "patch"),
    "list_framework_leases": ("coordination.k8s.io", "leases", "list"),
    "list_nodes": ("", "nodes", "list"),
    "list_pods": ("", "pods", "list"),
    "list_roles": (API_GROUP, "mesosroles", "list"),
}
_KUBE_CALLS: dict[str, Grant] = {
    "bind_pod": ("", "pods/binding", "create"),
    "whoami": ("authentication.k8s.io", "selfsubjectreviews", "create"),
}
# wrapper -> (index of its plural argument, verb)
_WRAPPERS = {"_delete_quietly": (0, "delete"), "delete_quietly": (1, "delete")}
_POD_WRAPPERS: dict[str, Grant] = {"delete_pod_quietly": ("", "pods", "delete")}
_CLIENT_VERBS = {"create": "create", "delete": "delete", "list": "list", "read": "get", "patch": "patch",
                 "replace": "update", "watch": "watch"}  # fmt: skip
_GROUPS = {
    "core": "",
    "coordination": "coordination.k8s.io",
    "authentication": "authentication.k8s.io",
    "authorization": "authorization.k8s.io",
}
_PLURAL = {"pod": "pods", "node": "nodes", "event": "events", "lease": "leases", "namespace": "namespaces",
           "token_review": "tokenreviews", "subject_access_review": "subjectaccessreviews"}  # fmt: skip

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
        self.aliases: dict[str, list[str]] = {}  # local name -> the kube chain it stands for

    def visit_Assign(self, node: ast.Assign) -> None:
        chain = _attr_chain(node.value)
        if len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) and "kube" in chain[:-1]:
            self.aliases[node.targets[0].id] = chain[chain.index("kube") :]
        self.generic_visit(node)

    def _chain(self, node: ast.AST) -> list[str]:
        chain = _attr_chain(node)
        if chain and chain[0] in self.aliases:
            return self.aliases[chain[0]] + chain[1:]
        return chain

    def visit_For(self, node: ast.For) -> None:
        bound: dict[str, list[str]] = {}
        if isinstance(node.target, ast.Name) and isinstance(node.iter, ast.Tuple | ast.List):
            values = [e.value for e in node.iter.elts if isinstance(e, ast.Constant)]
            if len(values) == len(node.iter.elts):
                bound[node.target.id] = values
        elif isinstance(node.target, ast.Tuple) and isinstance(node.iter, ast.Tuple | ast.List):
            # for plural, kind, ... in (("offers", "offer", ...), ...): each name bound position-wise
            rows = [e.elts for e in node.iter.elts if isinstance(e, ast.Tuple)]
            for i, name in enumerate(node.target.elts):
                column = [r[i] for r in rows if i < len(r)]
                if (
                    isinstance(name, ast.Name)
                    and column
                    and all(isinstance(c, ast.Constant) and isinstance(c.value, str) for c in column)
                ):
                    bound[name.id] = [c.value for c in column]  # type: ignore[union-attr]
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
        chain = self._chain(node.func)
        if chain and chain[-1] == "ListWatch" and len(node.args) >= 3:
            self._list_watch(node)
        elif len(chain) >= 2 and chain[-2] == "kube" and chain[-1] in _KUBE_CALLS:
            self.grants.add(_KUBE_CALLS[chain[-1]])
        elif len(chain) >= 2 and chain[-2] == "writer" and chain[-1] in _WRITER_CALLS:
            self.grants.add(_WRITER_CALLS[chain[-1]])
        elif chain and chain[-1] in _POD_WRAPPERS:
            self.grants.add(_POD_WRAPPERS[chain[-1]])
        elif len(chain) >= 2 and chain[-2] in ("kube", "writer") and chain[-1] in _KUBE_VERBS and node.args:
            verb = _KUBE_VERBS[chain[-1]]
            # The generic wrappers in kube.py and the engine's _delete_quietly pass a variable through.
            if not (isinstance(node.args[0], ast.Name) and node.args[0].id == "plural"):
                sub = "/status" if chain[-1] == "patch_status" else ""
                for plural in self._strings(node.args[0], node):
                    self.grants.add((API_GROUP, plural + sub, verb))
        elif chain and chain[-1] in _WRAPPERS and node.args:
            at, verb = _WRAPPERS[chain[-1]]
            if not (isinstance(node.args[at], ast.Name) and node.args[at].id == "plural"):
                for plural in self._strings(node.args[at], node):
                    self.grants.add((API_GROUP, plural, verb))
        elif len(chain) >= 3 and chain[-3] == "kube" and chain[-2] in _GROUPS:
            self.grants.add(self._client_grant(chain[-2], chain[-1], node))
        elif chain[-3:] == ["kube", "custom", "get_api_resources"]:
            pass  # API discovery (a non-resource URL every authenticated user may read)
        elif len(chain) >= 3 and chain[-3] == "kube" and chain[-2] == "custom":
            verb = _CLIENT_VERBS[chain[-1].split("_", 1)[0]]
            group = self._strings(node.args[0], node)[0]
            plural = self._strings(node.args[2], node)[0]
            sub = "/status" if chain[-1].endswith("_status") else ""
            self.grants.add((group, plural + sub, verb))
        elif chain[-3:] == ["kopf", "on", "event"]:
            args = [self._strings(a, node) for a in node.args]
            groups, plurals = (args[0], args[1]) if len(args) == 2 else ([""], args[0])
            for group in groups:
                for plural in plurals:
                    self.grants |= {(group, plural, "list"), (group, plural, "watch")}
        elif chain and chain[-1] == "Reflector" and node.args:
            for plural in self._strings(node.args[0], node):
                self.grants |= {("", plural, "list"), ("", plural, "watch")}
        elif chain and chain[-1] == "owner_ref" and node.args and isinstance(node.args[0], ast.Constant):
            self.grants.add((API_GROUP, f"{node.args[0].value.lower()}s/finalizers", "update"))
        self.generic_visit(node)

    def _list_watch(self, node: ast.Call) -> None:
        lister = node.args[1]
        if isinstance(lister, ast.Call) and lister.args:  # _json_list(core.list_node)
            lister = lister.args[0]
        chain = self._chain(lister)
        if len(chain) >= 3 and chain[-3] == "kube" and chain[-2] in _GROUPS:
            group, plural, _ = self._client_grant(chain[-2], chain[-1], node)
        elif len(chain) >= 3 and chain[-3] == "kube" and chain[-2] == "custom":
            args = node.args[2]
            if not isinstance(args, ast.Tuple) or len(args.elts) < 4:
                raise UnresolvedCall(
                    f"{self.where}:{node.lineno}: cannot tell which resource {ast.unparse(node)} watches"
                )
            for group in self._strings(args.elts[0], node):
                for plural in self._strings(args.elts[3], node):
                    self.grants |= {(group, plural, "list"), (group, plural, "watch")}
            return
        else:
            raise UnresolvedCall(
                f"{self.where}:{node.lineno}: cannot tell which resource {ast.unparse(node)} watches"
            )
        self.grants |= {(group, plural, "list"), (group, plural, "watch")}

    def _client_grant(self, api: str, method: str, node: ast.Call) -> Grant:
        verb_word, _, rest = method.partition("_")
        rest = rest.replace("namespaced_", "").replace("_for_all_namespaces", "")
        if verb_word not in _CLIENT_VERBS or rest not in _PLURAL:
            raise UnresolvedCall(f"{self.where}:{node.lineno}: unknown client method {method}")
        return (_GROUPS[api], _PLURAL[rest], _CLIENT_VERBS[verb_word])


def master_grants(modules: list[Path] = MASTER_MODULES) -> set[Grant]:
    grants: set[Grant] = set()
    for path in modules:
        scanner = _Scanner(str(path.relative_to(REPO)))
        scanner.visit(ast.parse(path.read_text(encoding="utf-8")))
        grants |= scanner.grants
    return grants
