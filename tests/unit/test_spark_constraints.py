"""spark.mesos.constraints syntax and matching (Spark's MesosSchedulerUtils semantics)."""

from __future__ import annotations

import pytest

from mesoskube.frameworks.spark.constraints import (
    ConstraintSyntaxError,
    attribute_kind,
    parse_constraints,
)


def test_parse_values_and_presence_forms():
    c = parse_constraints("zone:a,b; rack:r1 ;ssd;gpu:")
    assert c.as_dict() == {
        "zone": frozenset({"a", "b"}),
        "rack": frozenset({"r1"}),
        "ssd": frozenset(),
        "gpu": frozenset(),
    }
    assert not parse_constraints("") and not parse_constraints(None) and not parse_constraints("  ")


@pytest.mark.parametrize("bad", ["zone:a:b", ":a", "zone:a;zone:b"])
def test_bad_syntax_is_an_error(bad):
    with pytest.raises(ConstraintSyntaxError):
        parse_constraints(bad)


def test_text_equals_one_of_the_values():
    c = parse_constraints("zone:a,b")
    assert c.matches({"zone": "a"}) and c.matches({"zone": "b", "other": "x"})
    assert not c.matches({"zone": "c"})
    assert not c.matches({})
    assert c.unmet({"zone": "c"}) == ["zone: 'c' does not match a,b"]
    assert c.unmet({}) == ["zone: attribute missing"]


def test_empty_value_only_needs_the_attribute():
    c = parse_constraints("ssd:")
    assert c.matches({"ssd": "anything"}) and c.matches({"ssd": ""})
    assert not c.matches({"hdd": "true"})


def test_every_constraint_must_hold():
    c = parse_constraints("zone:a;rack:r1")
    assert c.matches({"zone": "a", "rack": "r1"})
    assert not c.matches({"zone": "a", "rack": "r2"})


def test_scalar_attributes_match_values_at_most_them():
    c = parse_constraints("cpu-gen:3")
    assert c.matches({"cpu-gen": "3"}) and c.matches({"cpu-gen": "4.5"})
    assert not c.matches({"cpu-gen": "2"})
    assert parse_constraints("cpu-gen:5,2").matches({"cpu-gen": "3"})  # any value <= the attribute
    assert not parse_constraints("cpu-gen:fast").matches({"cpu-gen": "3"})


def test_range_and_set_attributes():
    assert attribute_kind("[31000-32000]") == "ranges" and attribute_kind("{a,b}") == "set"
    assert attribute_kind("1.5") == "scalar" and attribute_kind("us-east-1a") == "text"
    r = parse_constraints("ports:31500")
    assert r.matches({"ports": "[31000-32000]"}) and not r.matches({"ports": "[1-10,20-30]"})
    s = parse_constraints("tags:a,b")
    assert s.matches({"tags": "{a,b,c}"}) and not s.matches({"tags": "{a,c}"})


def test_string_form_round_trips():
    assert str(parse_constraints("zone:b,a;ssd")) == "zone:a,b;ssd:"
