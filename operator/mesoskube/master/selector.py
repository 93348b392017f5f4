"""Equality-based label selectors ('a=b,c!=d,e,!f'), enough to choose agent nodes."""

from __future__ import annotations

from collections.abc import Callable, Mapping

Matcher = Callable[[Mapping[str, str]], bool]


def parse_selector(text: str) -> Matcher:
    terms: list[Matcher] = []
    for raw in filter(None, (t.strip() for t in text.split(","))):
        if "!=" in raw:
            k, v = (s.strip() for s in raw.split("!=", 1))
            terms.append(lambda labels, k=k, v=v: labels.get(k) != v)
        elif "=" in raw:
            k, v = (s.strip() for s in raw.replace("==", "=").split("=", 1))
            terms.append(lambda labels, k=k, v=v: labels.get(k) == v)
        elif raw.startswith("!"):
            terms.append(lambda labels, k=raw[1:].strip(): k not in labels)
        else:
            terms.append(lambda labels, k=raw: k in labels)
    return lambda labels: all(t(labels) for t in terms)
