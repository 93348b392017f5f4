"""Agent selection by the API server's label-selector syntax, validated when the master starts."""

from __future__ import annotations

import re

import pydantic
import pytest

from mesoskube.master.selector import SelectorError, parse_selector
from mesoskube.settings import Settings
from tests.unit.enginerig import Rig

CASES = [
    ("", {"zone": "a"}, True),
    ("zone in (a,b)", {"zone": "a"}, True),
    ("zone in (a, b)", {"zone": "b"}, True),
    ("zone in (a,b)", {"zone": "c"}, False),
    ("zone in (a,b)", {}, False),
    ("zone notin (a,b)", {"zone": "c"}, True),
    ("zone notin (a,b)", {}, True),
    ("zone notin (a,b)", {"zone": "a"}, False),
    ("gpu", {"gpu": ""}, True),
    ("!gpu", {"gpu": "x"}, False),
    ("!gpu", {}, True),
    ("type=kwok,zone!=b", {"type": "kwok", "zone": "a"}, True),
    ("type==kwok", {"type": "kwok"}, True),
    ("zone!=b", {}, True),
    ("type=kwok, zone in (a), !gpu", {"type": "kwok", "zone": "a"}, True),
    ("type=kwok, zone in (a), !gpu", {"type": "kwok", "zone": "a", "gpu": "1"}, False),
    ("mesoskube.io/test=abc-1", {"mesoskube.io/test": "abc-1"}, True),
    ("cores>4", {"cores": "8"}, True),
    ("cores<4", {"cores": "8"}, False),
    ("empty=", {"empty": ""}, True),
]


@pytest.mark.parametrize(("text", "labels", "matches"), CASES)
def test_the_full_grammar(text: str, labels: dict, matches: bool) -> None:
    assert parse_selector(text)(labels) is matches


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("zone in a", "expected '('"),
        ("zone in ()", "at least one value"),
        ("zone in (a", "expected ',' or ')'"),
        ("=a", "expected a label key"),
        ("zone==", None),  # an empty value is allowed
        ("zone=a=b", "expected ','"),
        ("-bad=a", "not a valid label key"),
        ("zone=a b", "expected ','"),
        ("zone=" + "x" * 64, "not a valid label value"),
        ("a,", "must follow ','"),
        ("!", "expected a label key"),
        ("cores>x", "needs an integer"),
    ],
)
def test_bad_selectors_are_refused_with_the_position_and_the_reason(text: str, says: str | None) -> None:
    if says is None:
        parse_selector(text)
        return
    with pytest.raises(SelectorError, match=re.escape(says)):
        parse_selector(text)


def test_the_setting_is_validated_at_start_naming_the_field_and_the_syntax() -> None:
    """Defect: 'zone in (a,b)' was split into two terms that never matched: nothing was offered
    and nothing said why."""
    with pytest.raises(pydantic.ValidationError, match=r"agentSelector: .*expected ',' or '\)'.*e\.g\."):
        Settings(agentSelector="zone in (a,b")


def test_the_engine_offers_only_agents_the_set_based_selector_picks() -> None:
    rig = Rig(agentSelector="zone in (a,b),!gpu")
    rig.node("na", labels={"zone": "a"})
    rig.node("nb", labels={"zone": "b"})
    rig.node("nc", labels={"zone": "c"})
    rig.node("ng", labels={"zone": "a", "gpu": "1"})
    rig.framework()
    rig.step()
    assert {o["spec"]["agent"] for o in rig.offers().values()} == {"na", "nb"}
