"""Equality-based label selectors ('a=b,c!=d,e,!f'), enough to choose agent nodes."""

from __future__ import annotations

from collections.abc import Callable, Mapping

Matcher = Callable[[Mapping[str, str]], bool]


def parse_selector(text: str) -> Matcher:
    terms: list[Matcher] = []
    for raw in filter(None, (t.strip() for t in text.split(","))):
        if "!=" in raw:
            k, v = (s.strip() for s in raw.split("!=", 1))
            terms.append(_not_equal(k, v))
        elif "=" in raw:
            k, v = (s.strip() for s in raw.replace("==", "=").split("=", 1))
            terms.append(_equal(k, v))
        elif raw.startswith("!"):
            terms.append(_absent(raw[1:].strip()))
        else:
            terms.append(_present(raw))
    return lambda labels: all(t(labels) for t in terms)


def _equal(k: str, v: str) -> Matcher:
    return lambda labels: labels.get(k) == v


def _not_equal(k: str, v: str) -> Matcher:
    return lambda labels: labels.get(k) != v


def _present(k: str) -> Matcher:
    return lambda labels: k in labels


def _absent(k: str) -> Matcher:
    return lambda labels: k not in labels
