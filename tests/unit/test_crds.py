"""The CRDs rendered from the models: committed copies are current, schemas are structural."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from pydantic import ConfigDict, Field

from mesoskube import API_GROUP, API_VERSION, TASK_IMAGE
from mesoskube.api import crdgen
from mesoskube.api.models import (
    RESOURCES,
    CustomResource,
    FrameworkSpec,
    MesosRoleSpec,
    Model,
    OfferSpec,
    TaskSpec,
)

REPO = Path(__file__).resolve().parents[2]
CRDS_DIR = REPO / "crds"
CHART_CRDS_DIR = REPO / "charts" / "mesoskube" / "crds"

# Keywords a structural schema may use (apiextensions.k8s.io/v1 JSONSchemaProps that crdgen emits).
ALLOWED_KEYS = {
    "description", "type", "format", "nullable", "enum", "default", "minimum", "exclusiveMinimum",
    "maximum", "exclusiveMaximum", "multipleOf", "minLength", "maxLength", "pattern", "minItems",
    "maxItems", "uniqueItems", "minProperties", "maxProperties", "items", "properties", "required",
    "additionalProperties", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys", "x-kubernetes-map-type", "x-kubernetes-validations",
}  # fmt: skip


# Printer column type -> schema types it may show.
COLUMN_TYPES = {
    "string": {"string", "array"},
    "integer": {"integer"},
    "number": {"number", "integer"},
    "boolean": {"boolean"},
    "date": {"string"},
}


def by_kind() -> dict[str, dict[str, Any]]:
    return {crd["spec"]["names"]["kind"]: crd for crd in crdgen.crd_objects()}


def root_schema(kind: str) -> dict[str, Any]:
    (version,) = by_kind()[kind]["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def at(schema: dict[str, Any], dotted: str) -> dict[str, Any]:
    """The schema node at a dotted path; `[]` steps into list items."""
    node = schema
    for part in dotted.split("."):
        if part == "[]":
            node = node["items"]
        else:
            assert part in node.get("properties", {}), f"no property {part!r} on the way to {dotted}"
            node = node["properties"][part]
    return node


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[*]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}.*")


def all_nodes() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for kind in by_kind():
        for path, node in walk(root_schema(kind)):
            yield kind, path, node


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Structural defaulting as the API server does it: fill missing fields, then recurse."""
    value = copy.deepcopy(value)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name, sub in props.items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
        for name, item in list(value.items()):
            if name in props:
                value[name] = apply_defaults(props[name], item)
            elif isinstance(schema.get("additionalProperties"), dict):
                value[name] = apply_defaults(schema["additionalProperties"], item)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        value = [apply_defaults(schema["items"], item) for item in value]
    return value


def pruned(value: Any) -> Any:
    """A model dump as the API server would store it: no nulls, no empty lists or maps."""
    if isinstance(value, dict):
        out = {k: pruned(v) for k, v in value.items() if v is not None}
        return {k: v for k, v in out.items() if v not in ({}, [])} if out else out
    if isinstance(value, list):
        return [pruned(v) for v in value]
    return value


# ------------------------------------------------------------------ committed copies


def test_committed_crds_match_the_models() -> None:
    diffs = crdgen.check(CRDS_DIR)
    assert not diffs, "crds/ is stale; run `make crds`:\n" + "".join(diffs)
    assert sorted(p.name for p in CRDS_DIR.glob("*.yaml")) == sorted(crdgen.render_all())


def test_chart_crds_match_the_models() -> None:
    if not CHART_CRDS_DIR.is_dir():
        pytest.skip(f"{CHART_CRDS_DIR.relative_to(REPO)} does not exist yet (no Helm chart)")
    diffs = crdgen.check(CHART_CRDS_DIR)
    assert not diffs, "charts/mesoskube/crds is stale; run `make crds`:\n" + "".join(diffs)


def test_render_is_deterministic_and_one_file_per_resource() -> None:
    first, second = crdgen.render_all(), crdgen.render_all()
    assert first == second
    assert sorted(first) == sorted(f"{API_GROUP}_{r.plural}.yaml" for r in RESOURCES)
    for name, text in first.items():
        assert text.startswith(crdgen.HEADER), name
        crd = yaml.safe_load(text)
        assert crd == by_kind()[crd["spec"]["names"]["kind"]]


def test_crd_metadata() -> None:
    for resource, crd in zip(RESOURCES, crdgen.crd_objects(), strict=True):
        assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
        assert crd["kind"] == "CustomResourceDefinition"
        assert crd["metadata"]["name"] == f"{resource.plural}.{API_GROUP}"
        spec = crd["spec"]
        assert spec["group"] == API_GROUP
        assert spec["scope"] == resource.scope
        names = spec["names"]
        assert (names["kind"], names["plural"], names["singular"]) == (
            resource.kind,
            resource.plural,
            resource.singular,
        )
        assert names["shortNames"] == resource.short_names
        assert names["categories"] == ["mesos", "mesoskube"]
        (version,) = spec["versions"]
        assert version["name"] == API_VERSION
        assert version["served"] is True and version["storage"] is True
        assert version["subresources"] == {"status": {}}
        root = version["schema"]["openAPIV3Schema"]
        assert root["type"] == "object"
        assert set(root["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
        assert root["properties"]["metadata"] == {"type": "object"}
        assert root.get("required", []) == (["spec"] if resource.spec_required else [])


# ------------------------------------------------------------------ structural schema


def test_schemas_are_structural() -> None:
    for kind, path, node in all_nodes():
        where = f"{kind}{path}"
        assert set(node) <= ALLOWED_KEYS, f"{where}: {sorted(set(node) - ALLOWED_KEYS)}"
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields") is True, where
        assert not ("properties" in node and "additionalProperties" in node), where
        assert not isinstance(node.get("additionalProperties"), bool), where
        if node.get("type") == "array":
            assert isinstance(node.get("items"), dict), f"{where}: array without items"
        if "enum" in node:
            assert node["type"] == "string" and None not in node["enum"], where
            # The API server checks null against enum even with nullable: true.
            assert not node.get("nullable"), where
        assert node.get("default", "unset") is not None, f"{where}: default null"
        if node.get("nullable"):
            assert "default" not in node, where
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True and "minimum" in node, where
        for name in node.get("required", []):
            assert name in node["properties"], f"{where}: required {name!r} is not a property"


def test_no_json_schema_leftovers_anywhere() -> None:
    def keys(value: Any) -> Iterator[str]:
        if isinstance(value, dict):
            for k, v in value.items():
                yield k
                yield from keys(v)
        elif isinstance(value, list):
            for v in value:
                yield from keys(v)

    found = set(keys(crdgen.crd_objects())) & {"$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "title"}
    assert not found


def test_unknown_fields_are_kept_for_the_policy_to_reject_never_pruned() -> None:
    """Every object node of a spec keeps unknown fields, so the unknown-fields admission policy (and
    the master) can reject a misspelt field by name instead of the API server dropping it."""
    for resource in RESOURCES:
        root = root_schema(resource.kind)
        assert root["properties"]["status"].get("x-kubernetes-preserve-unknown-fields") is True
        assert resource.status.model_config.get("extra") == "allow"
        for path, node in walk(root["properties"]["spec"]):
            if "properties" in node:
                assert node.get("x-kubernetes-preserve-unknown-fields") is True, (resource.kind, path)


def test_committed_unknown_fields_policy_matches_the_models() -> None:
    path = REPO / "charts" / "mesoskube" / "templates" / "unknown-fields.yaml"
    assert path.read_text(encoding="utf-8") == crdgen.policy_text(), "stale; run `make crds`"


def test_field_constraints_are_carried_over() -> None:
    weight = at(root_schema("MesosRole"), "spec.weight")
    assert weight["type"] == "number"
    assert (weight["minimum"], weight["exclusiveMinimum"], weight["maximum"]) == (0, True, 1000000)

    fw = root_schema("Framework")
    roles = at(fw, "spec.roles")
    assert (roles["minItems"], roles["maxItems"]) == (1, 16)
    assert roles["items"]["pattern"].startswith("^") and roles["items"]["maxLength"] == 128
    caps = at(fw, "spec.capabilities")
    assert caps["items"] == {
        "type": "string",
        "enum": ["GPU_RESOURCES", "PARTITION_AWARE", "MULTI_ROLE", "TASK_KILLING_STATE"],
    }
    assert at(fw, "status.phase")["enum"] == ["Subscribed", "Disconnected", "TornDown"]
    assert at(fw, "status.conditions.[].status")["enum"] == ["True", "False", "Unknown"]
    assert at(fw, "spec.reconcile")["required"] == ["id"]
    assert at(fw, "status.offers")["type"] == "integer"

    offer = root_schema("Offer")
    assert at(offer, "spec.attributes") == {
        "description": "Agent attributes (node labels).",
        "type": "object",
        "maxProperties": 256,
        "additionalProperties": {"type": "string"},
    }
    ports = at(offer, "spec.resources.ports")
    assert ports["type"] == "string" and ports["maxLength"] == 1024 and "pattern" in ports
    task = at(offer, "spec.answer.tasks.[]")
    assert task["required"] == ["name", "resources"]
    assert at(offer, "spec.answer.tasks")["maxItems"] == 256
    env = at(offer, "spec.answer.tasks.[].container.env.[].name")
    assert (env["minLength"], env["maxLength"]) == (1, 253)
    assert at(offer, "spec.answer.tasks.[].runSeconds")["maximum"] == 604800
    assert at(offer, "spec.resources")["description"].startswith("Mesos resources.")


def test_optional_fields_prune_null_instead_of_storing_it() -> None:
    # `x: T | None = None` renders as T without nullable and without a default: the API server
    # drops a null, so absent and null are one value for CEL rules like self.resources == oldSelf.resources.
    for dotted in ("spec.resources.ports", "spec.answer", "spec.answer.filters", "spec.expiresAt"):
        node = at(root_schema("Offer"), dotted)
        assert "nullable" not in node and "default" not in node, dotted
    assert "nullable" not in at(root_schema("Task"), "status.state")


# ------------------------------------------------------------------ defaults


def test_defaults_are_written_into_the_schema() -> None:
    fw = root_schema("Framework")
    # No schema default for refusals: the master's defaultRefuseSeconds applies when none is given
    # (a schema default of 5 s filled every object in, so the setting never took effect).
    assert "default" not in at(fw, "spec.defaultFilters.refuseSeconds")
    assert "default" not in at(fw, "spec.defaultFilters")
    assert at(fw, "spec.roles")["default"] == ["*"]
    assert at(fw, "spec.failoverTimeoutSeconds")["default"] == 0
    assert at(fw, "spec.suppress")["default"] is False
    assert "default" not in at(fw, "spec.capabilities")  # empty list: absent means the same
    assert at(fw, "spec")["default"] == {}  # spec is optional, so its defaults need a spec

    role = root_schema("MesosRole")
    assert at(role, "spec.weight")["default"] == 1
    assert at(role, "spec")["default"] == {}

    task = root_schema("Task")
    assert at(task, "spec.container")["default"] == {}
    assert at(task, "spec.container.image")["default"] == TASK_IMAGE
    assert at(task, "spec.kill")["default"] is False
    assert at(task, "spec.role")["default"] == "*"
    assert "default" not in at(task, "spec")  # required
    assert at(task, "spec.resources.cpus")["default"] == 0


@pytest.mark.parametrize(
    ("model", "kind", "given"),
    [
        (FrameworkSpec, "Framework", {}),
        (MesosRoleSpec, "MesosRole", {}),
        (OfferSpec, "Offer", {"framework": "f", "agent": "n", "resources": {"cpus": 1}}),
        (
            OfferSpec,
            "Offer",
            {
                "framework": "f",
                "agent": "n",
                "resources": {"mem": 1},
                "answer": {
                    "type": "Accept",
                    "tasks": [{"name": "t", "resources": {"cpus": 1}}],
                    "filters": {"refuseSeconds": 1},
                },
            },
        ),
        (TaskSpec, "Task", {"framework": "f", "agent": "n", "resources": {"cpus": 1}}),
    ],
)
def test_api_server_defaults_equal_model_defaults(model: type[Model], kind: str, given: dict) -> None:
    """What the API server stores after defaulting is what the model would fill in."""
    defaulted = apply_defaults(root_schema(kind)["properties"]["spec"], given)
    expected = pruned(model.model_validate(given).model_dump(mode="json"))
    assert defaulted == expected
    assert model.model_validate(defaulted) == model.model_validate(given)


def test_optional_spec_gets_its_defaults_from_a_bare_object() -> None:
    root = root_schema("Framework")
    obj = apply_defaults(root, {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "Framework"})
    assert "defaultFilters" not in obj["spec"]  # the master's defaultRefuseSeconds applies
    assert obj["spec"]["roles"] == ["*"]
    assert "status" not in obj


# ------------------------------------------------------------------ printer columns and CEL


def test_printer_columns_point_at_schema_fields() -> None:
    for resource in RESOURCES:
        root = root_schema(resource.kind)
        (version,) = by_kind()[resource.kind]["spec"]["versions"]
        columns = version["additionalPrinterColumns"]
        assert [c["name"] for c in columns] == [c.name for c in resource.columns]
        for col in columns:
            path = col["jsonPath"]
            assert path.startswith("."), path
            if path.startswith(".metadata."):
                assert path in {".metadata.creationTimestamp", ".metadata.name", ".metadata.namespace"}, path
                continue
            node = at(root, path[1:])
            assert node["type"] in COLUMN_TYPES[col["type"]], f"{resource.kind} {col['name']}: {node['type']}"


def test_selectable_fields_point_at_scalar_schema_fields() -> None:
    """The API server accepts only string, integer or boolean fields outside metadata."""
    for resource in RESOURCES:
        root = root_schema(resource.kind)
        (version,) = by_kind()[resource.kind]["spec"]["versions"]
        paths = [f["jsonPath"] for f in version.get("selectableFields", [])]
        assert paths == resource.selectable
        for path in paths:
            assert path.startswith((".spec.", ".status.")), path
            assert at(root, path[1:])["type"] in {"string", "integer", "boolean"}, (resource.kind, path)
    assert ".spec.answer.type" in next(r for r in RESOURCES if r.kind == "Offer").selectable


def test_every_cel_rule_has_a_message_and_sits_where_the_model_put_it() -> None:
    rules: dict[str, list[str]] = {}
    for kind, path, node in all_nodes():
        for rule in node.get("x-kubernetes-validations", []):
            assert rule.get("rule"), f"{kind}{path}"
            assert rule.get("message"), f"{kind}{path}: rule {rule['rule']!r} has no message"
            rules.setdefault(f"{kind}{path}", []).append(rule["rule"])
    assert set(rules) == {
        "Framework",
        "Framework.spec",
        "Offer.spec",
        "Offer.spec.answer",
        "Offer.spec.answer.tasks[*]",
        "Task.spec",
        "Framework.spec.tolerations[*]",
        "Task.spec.tolerations[*]",
    }
    assert rules["Framework"] == ["size(self.metadata.name) <= 63"]
    assert "MULTI_ROLE" in rules["Framework.spec"][0]
    assert rules["Offer.spec.answer.tasks[*]"] == [
        "self.resources.cpus > 0.0 || self.resources.mem > 0.0",
        "!has(self.pod) || self.pod.name == self.name",
    ]


def test_every_master_written_spec_field_is_frozen() -> None:
    """On an Offer only spec.answer is the framework's (written once); on a Task only spec.kill."""
    for kind, model, writable in (("Offer", OfferSpec, {"answer"}), ("Task", TaskSpec, {"kill"})):
        rules = root_schema(kind)["properties"]["spec"]["x-kubernetes-validations"]
        frozen = {r["fieldPath"][1:] for r in rules if r.get("reason") == "FieldValueForbidden"}
        assert frozen == set(model.model_fields) - writable, kind
        for r in rules:
            if r.get("reason") == "FieldValueForbidden":
                assert "oldSelf" in r["rule"] and r["fieldPath"][1:] in r["message"]
    fw_rules = root_schema("Framework")["properties"]["spec"]["x-kubernetes-validations"]
    assert any(r.get("fieldPath") == ".principal" for r in fw_rules)


def test_strings_and_lists_in_cel_rules_are_bounded() -> None:
    """CEL cost estimation needs bounds on what the rules compare or iterate."""
    fw = root_schema("Framework")
    assert at(fw, "spec.roles")["maxItems"] and at(fw, "spec.roles")["items"]["maxLength"]
    assert at(fw, "spec.capabilities")["maxItems"]
    for kind in ("Offer", "Task"):
        for field in ("framework", "agent"):
            assert at(root_schema(kind), f"spec.{field}")["maxLength"], (kind, field)
        assert at(root_schema(kind), "spec.resources.ports")["maxLength"]
    assert at(root_schema("Offer"), "spec.answer.tasks")["maxItems"]


# ------------------------------------------------------------------ generator behaviour


class _Inner(Model):
    a: int = 1


class _AnySpec(Model):
    blob: Any = None


class _UnionSpec(Model):
    x: int | str = 0


class _Node(Model):
    child: _Node | None = None


class _NullableEnumSpec(Model):
    kind: Literal["a", "b"] | None


def test_generator_refuses_what_is_not_structural() -> None:
    with pytest.raises(crdgen.CRDGenError, match="no type"):
        crdgen.model_schema(_AnySpec)
    with pytest.raises(crdgen.CRDGenError, match="anyOf"):
        crdgen.model_schema(_UnionSpec)
    with pytest.raises(crdgen.CRDGenError, match="recursive"):
        crdgen.model_schema(_Node)
    with pytest.raises(crdgen.CRDGenError, match="enum that must keep null"):
        crdgen.model_schema(_NullableEnumSpec)


def test_generator_rejects_a_cel_rule_without_message() -> None:
    class NoMessage(Model):
        model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [{"rule": "true"}]})
        a: int = 0

    with pytest.raises(crdgen.CRDGenError, match="message"):
        crdgen.model_schema(NoMessage)


def test_required_nullable_field_keeps_null() -> None:
    class Spec(Model):
        x: int | None
        inner: _Inner = Field(default_factory=lambda: _Inner(a=2))

    schema = crdgen.model_schema(Spec)
    assert schema["properties"]["x"] == {"type": "integer", "nullable": True}
    assert schema["required"] == ["x"]
    # A non-default model default renders only what differs from the nested defaults.
    assert schema["properties"]["inner"]["default"] == {"a": 2}


# ------------------------------------------------------------------ CLI


def test_cli_out_then_check_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "crds"
    assert crdgen.main(["--out", str(out)]) == 0
    assert {p.name: p.read_text() for p in out.iterdir()} == crdgen.render_all()
    assert crdgen.main(["--check", str(out), str(CRDS_DIR)]) == 0


def test_cli_check_reports_drift_with_a_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    crdgen.write(good)
    crdgen.write(bad)
    target = bad / f"{API_GROUP}_mesosroles.yaml"
    target.write_text(target.read_text().replace("default: 1", "default: 2"))
    capsys.readouterr()
    assert crdgen.main(["--check", str(good), str(bad)]) == 1
    captured = capsys.readouterr()
    assert str(target) in captured.out
    assert "-                default: 2" in captured.out and "+                default: 1" in captured.out
    assert str(bad) in captured.err and str(good) not in captured.out


def test_cli_check_reports_missing_and_stale_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crdgen.write(tmp_path)
    (tmp_path / f"{API_GROUP}_tasks.yaml").unlink()
    stale = tmp_path / f"{API_GROUP}_gone.yaml"
    stale.write_text(crdgen.HEADER + "kind: CustomResourceDefinition\n")
    assert crdgen.main(["--check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"{API_GROUP}_tasks.yaml" in out and str(stale) in out
    # --out repairs both.
    assert crdgen.main(["--out", str(tmp_path)]) == 0
    assert not stale.exists()
    assert crdgen.check(tmp_path) == []


def test_cli_check_missing_directory_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope"
    assert crdgen.main(["--check", str(CRDS_DIR), str(missing)]) == 2
    assert f"directory {missing} does not exist" in capsys.readouterr().err


def test_resources_cover_every_kind() -> None:
    assert {r.kind for r in RESOURCES} == set(by_kind())
    assert all(isinstance(r, CustomResource) for r in RESOURCES)
