"""Label selectors in the API server's own string syntax, to choose agent nodes.

The grammar of k8s.io/apimachinery/pkg/labels (what `kubectl get -l` and `?labelSelector=` take):

    selector    = requirement ("," requirement)*
    requirement = KEY                          exists
                | "!" KEY                      does not exist
                | KEY ("=" | "==" | "!=") VALUE
                | KEY ("in" | "notin") "(" [VALUE ("," VALUE)*] ")"
                | KEY (">" | "<") INTEGER      (apimachinery accepts these too)

Keys are qualified names (optional DNS-subdomain prefix and "/", then a name of at most 63
characters), values at most 63 characters of [A-Za-z0-9._-] starting and ending alphanumeric (or
empty). Mismatched syntax raises SelectorError naming the position and what was expected, so a bad
`--agent-selector` stops the master at start instead of silently matching nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

Matcher = Callable[[Mapping[str, str]], bool]

_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")
_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_TOKEN = re.compile(r"\s*(==|!=|=|!|\(|\)|,|>|<|[^\s=!(),<>]+)")


class SelectorError(ValueError):
    pass


def _tokens(text: str) -> list[tuple[str, int]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None:  # pragma: no cover - the pattern matches any non-space character
            raise SelectorError(f"unexpected character at {pos}")
        out.append((m.group(1), m.start(1)))
        pos = m.end()
    return out


def _check_key(key: str, text: str, at: int) -> str:
    prefix, slash, name = key.rpartition("/")
    ok = _NAME.match(name) and (not slash or (len(prefix) <= 253 and _PREFIX.match(prefix)))
    if not ok:
        raise SelectorError(
            f"{key!r} at position {at} of {text!r} is not a valid label key "
            "(optional DNS prefix and '/', then at most 63 of [A-Za-z0-9._-], alphanumeric at both ends)"
        )
    return key


def _check_value(value: str, text: str, at: int) -> str:
    if len(value) > 63 or not _VALUE.match(value):
        raise SelectorError(
            f"{value!r} at position {at} of {text!r} is not a valid label value "
            "(at most 63 of [A-Za-z0-9._-], alphanumeric at both ends)"
        )
    return value


_KEYWORDS = ("in", "notin")


def parse_selector(text: str) -> Matcher:
    """A matcher over a node's labels; raises SelectorError on anything the API server would refuse."""
    toks = _tokens(text)
    i = 0
    terms: list[Matcher] = []

    def peek() -> tuple[str, int]:
        return toks[i] if i < len(toks) else ("", len(text))

    def expect_value() -> str:
        nonlocal i
        tok, at = peek()
        if tok in ("", ",", ")"):
            return _check_value("", text, at)  # an empty value is allowed
        if tok in ("(", "=", "==", "!=", "!", ">", "<"):
            raise SelectorError(f"expected a value at position {at} of {text!r}, found {tok!r}")
        i += 1
        return _check_value(tok, text, at)

    while i < len(toks):
        tok, at = peek()
        if tok == "!":
            i += 1
            key_tok, key_at = peek()
            if key_tok in ("", ",", "(", ")", "=", "==", "!=", "!"):
                raise SelectorError(f"expected a label key after '!' at position {key_at} of {text!r}")
            i += 1
            terms.append(_absent(_check_key(key_tok, text, key_at)))
        else:
            if tok in (",", "(", ")", "=", "==", "!=", ">", "<"):
                raise SelectorError(f"expected a label key at position {at} of {text!r}, found {tok!r}")
            key = _check_key(tok, text, at)
            i += 1
            op, op_at = peek()
            if op in ("", ","):
                terms.append(_present(key))
            elif op in ("=", "=="):
                i += 1
                terms.append(_equal(key, expect_value()))
            elif op == "!=":
                i += 1
                terms.append(_not_equal(key, expect_value()))
            elif op in (">", "<"):
                i += 1
                num, num_at = peek()
                if not re.fullmatch(r"-?[0-9]+", num):
                    raise SelectorError(f"{op!r} needs an integer at position {num_at} of {text!r}")
                i += 1
                terms.append(_compare(key, int(num), op))
            elif op in _KEYWORDS:
                i += 1
                paren, paren_at = peek()
                if paren != "(":
                    raise SelectorError(f"expected '(' after {op!r} at position {paren_at} of {text!r}")
                i += 1
                if peek()[0] == ")":
                    raise SelectorError(f"{op!r} needs at least one value at position {paren_at} of {text!r}")
                values: set[str] = set()
                while True:
                    values.add(expect_value())
                    sep, sep_at = peek()
                    i += 1
                    if sep == ")":
                        break
                    if sep != ",":
                        raise SelectorError(f"expected ',' or ')' at position {sep_at} of {text!r}")
                terms.append(_in(key, frozenset(values)) if op == "in" else _not_in(key, frozenset(values)))
            else:
                raise SelectorError(
                    f"expected an operator (=, ==, !=, in, notin, >, <) or ',' after {key!r} "
                    f"at position {op_at} of {text!r}, found {op!r}"
                )
        tok, at = peek()
        if tok == ",":
            i += 1
            if i >= len(toks):
                raise SelectorError(f"a requirement must follow ',' at position {at} of {text!r}")
        elif tok:
            raise SelectorError(f"expected ',' at position {at} of {text!r}, found {tok!r}")
    return lambda labels: all(t(labels) for t in terms)


def _equal(k: str, v: str) -> Matcher:
    return lambda labels: labels.get(k) == v


def _not_equal(k: str, v: str) -> Matcher:
    # As in apimachinery: a node without the label matches "k!=v".
    return lambda labels: labels.get(k) != v


def _present(k: str) -> Matcher:
    return lambda labels: k in labels


def _absent(k: str) -> Matcher:
    return lambda labels: k not in labels


def _in(k: str, values: frozenset[str]) -> Matcher:
    return lambda labels: k in labels and labels[k] in values


def _not_in(k: str, values: frozenset[str]) -> Matcher:
    return lambda labels: labels.get(k) not in values if k in labels else True


def _compare(k: str, n: int, op: str) -> Matcher:
    def match(labels: Mapping[str, str]) -> bool:
        try:
            v = int(labels[k])
        except (KeyError, ValueError):
            return False
        return v > n if op == ">" else v < n

    return match
