"""spark.mesos.constraints: `attr:v1,v2;attr2:` -- Spark's MesosSchedulerUtils, on agent attributes.

Matching (matchesAttributeRequirements), per constrained attribute, all must hold:
- the agent has the attribute; with no values given that is enough (`zone:` or `zone`);
- text: the attribute equals one of the values;
- scalar: one of the values is <= the attribute;
- range: one of the values lies inside one of the attribute's ranges;
- set: the values are a subset of the attribute's items.

Here attributes are node labels, i.e. strings. Their type is read the way a Mesos agent reads
`--attributes`: a number is a scalar, `[a-b,c-d]` ranges, `{x,y}` a set, anything else text. (Label
values cannot hold brackets or braces, so on Kubernetes only text and scalars occur.) Spark itself
needs the colon in `attr2:`; the bare `attr2` form is accepted here as well.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass


class ConstraintSyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class Constraints:
    """attribute -> accepted values (empty = the attribute only has to exist)."""

    required: tuple[tuple[str, frozenset[str]], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.required)

    def __str__(self) -> str:
        return ";".join(f"{k}:{','.join(sorted(v))}" for k, v in self.required)

    def as_dict(self) -> dict[str, frozenset[str]]:
        return dict(self.required)

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return not self.unmet(attributes)

    def unmet(self, attributes: Mapping[str, str]) -> list[str]:
        """The constraints these attributes fail, in words (empty = all met)."""
        out = []
        for name, values in self.required:
            if name not in attributes:
                out.append(f"{name}: attribute missing")
            elif values and not value_matches(attributes[name], values):
                out.append(f"{name}: {attributes[name]!r} does not match {','.join(sorted(values))}")
        return out


def parse_constraints(text: str | None) -> Constraints:
    """'zone:a,b;rack:r1;ssd' -> Constraints. Raises ConstraintSyntaxError on bad input."""
    if not text or not text.strip():
        return Constraints()
    seen: dict[str, frozenset[str]] = {}
    for chunk in (c.strip() for c in text.split(";")):
        if not chunk:
            continue
        name, sep, values = chunk.partition(":")
        name = name.strip()
        if not name:
            raise ConstraintSyntaxError(f"constraint {chunk!r} has no attribute name (expected attr:v1,v2)")
        if ":" in values:
            raise ConstraintSyntaxError(f"constraint {chunk!r} has more than one ':' (expected attr:v1,v2)")
        if name in seen:
            raise ConstraintSyntaxError(f"attribute {name!r} is constrained twice")
        items = frozenset(v.strip() for v in values.split(",") if v.strip()) if sep else frozenset()
        seen[name] = items
    return Constraints(tuple(seen.items()))


_NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
_RANGES = re.compile(r"^\[\s*[0-9]+\s*-\s*[0-9]+\s*(,\s*[0-9]+\s*-\s*[0-9]+\s*)*\]$")
_SET = re.compile(r"^\{.*\}$")


def attribute_kind(value: str) -> str:
    """'scalar', 'ranges', 'set' or 'text', as a Mesos agent types an attribute value."""
    v = value.strip()
    if _NUMBER.match(v):
        return "scalar"
    if _RANGES.match(v):
        return "ranges"
    if _SET.match(v):
        return "set"
    return "text"


def value_matches(offered: str, required: frozenset[str]) -> bool:
    kind = attribute_kind(offered)
    if kind == "scalar":
        have = float(offered)
        return any(_number(r) is not None and _number(r) <= have for r in required)
    if kind == "ranges":
        spans = [
            (int(lo), int(hi))
            for lo, hi in (p.split("-") for p in offered.strip()[1:-1].replace(" ", "").split(","))
        ]
        return any(
            _integer(r) is not None and any(lo <= _integer(r) <= hi for lo, hi in spans) for r in required
        )
    if kind == "set":
        items = {i.strip() for i in offered.strip()[1:-1].split(",") if i.strip()}
        return required <= items
    return offered in required


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _integer(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None
