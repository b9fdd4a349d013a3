"""Event filters, correlation and consumption strategies (`one`, `any` + `until`, `all`), compiled once.

Matching rules, per property of a filter's `with`:

- `data` given as `${ … }`: the expression runs on the event's data and must be truthy; `data` given as a value:
  the event's data must contain it (objects match as a subset, recursively; other values by equality).
- any other attribute (`type`, `source`, `subject`, extension attributes…): a `${ … }` expression is evaluated
  against the task's input and compared for equality; a string matches when equal or when it fully matches as a
  regular expression; other values by equality. An attribute the event lacks never matches.

Correlation (`correlate: {key: {from, expect}}`): `from` runs on the whole event (envelope); with `expect` (a
constant or an expression on the task input) the values must be equal; without it, the first matching event fixes
the expected value for the rest of the listen task. A consumer keeps this state for one `listen` task.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ._expr import Evaluator, Vars, compile_expression, compile_template, is_expression, truthy


@dataclass(frozen=True, slots=True)
class _Correlation:
    key: str
    source: Evaluator
    expect: Evaluator | None


@dataclass(frozen=True, slots=True)
class Filter:
    """One compiled event filter."""

    attributes: tuple[tuple[str, Any, Evaluator | None], ...]
    correlations: tuple[_Correlation, ...]

    def matches(self, event: Mapping[str, Any], ctx: MatchContext) -> bool:
        """True when every attribute and correlation holds; fixes first-seen correlation values on a match."""
        if not all(_attribute_ok(event, name, value, expr, ctx) for name, value, expr in self.attributes):
            return False
        found: dict[str, Any] = {}
        for corr in self.correlations:
            value = corr.source(dict(event), ctx.variables)
            if corr.expect is not None:
                expected = corr.expect(ctx.data, ctx.variables)
            else:
                expected = ctx.correlation.get(corr.key, value)
            if value != expected:
                return False
            found[corr.key] = value
        ctx.correlation.update(found)
        return True


@dataclass(slots=True)
class MatchContext:
    """What filters are evaluated with: the task input, its variables, and correlation values fixed so far."""

    data: Any
    variables: Vars
    correlation: dict[str, Any]


def compile_filter(spec: Mapping[str, Any]) -> Filter:
    """Compile `{with, correlate}`."""
    attributes = []
    for name, value in (spec.get("with") or {}).items():
        expr = compile_expression(value) if is_expression(value) else None
        attributes.append((name, value, expr))
    correlations = tuple(
        _Correlation(key, compile_expression(c["from"]), None if "expect" not in c else _expect(c["expect"]))
        for key, c in (spec.get("correlate") or {}).items()
    )
    return Filter(tuple(attributes), correlations)


def _expect(value: Any) -> Evaluator:
    return compile_expression(value) if is_expression(value) else compile_template(value)


def _attribute_ok(event: Mapping[str, Any], name: str, value: Any, expr: Evaluator | None, ctx: MatchContext) -> bool:
    if name not in event:
        return False
    actual = event[name]
    if name == "data":
        return truthy(expr(actual, ctx.variables)) if expr is not None else _contains(actual, value)
    if expr is not None:
        return bool(actual == expr(ctx.data, ctx.variables))
    if isinstance(value, str) and isinstance(actual, str):
        return actual == value or _regex_match(value, actual)
    return bool(actual == value)


def _contains(actual: Any, expected: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and _contains(actual[k], v) for k, v in expected.items())
    return bool(actual == expected)


@lru_cache(maxsize=1024)
def _pattern(text: str) -> re.Pattern[str] | None:
    try:
        return re.compile(text)
    except re.error:
        return None


def _regex_match(pattern: str, actual: str) -> bool:
    compiled = _pattern(pattern)
    return compiled is not None and compiled.fullmatch(actual) is not None


@dataclass(frozen=True, slots=True)
class Strategy:
    """A compiled consumption strategy; `until` is an expression, a nested strategy, or None."""

    kind: str
    filters: tuple[Filter, ...]
    until: Evaluator | Strategy | None = None


def compile_strategy(spec: Mapping[str, Any]) -> Strategy:
    """Compile `{one}`, `{all: []}` or `{any: [], until?}`."""
    if "one" in spec:
        return Strategy("one", (compile_filter(spec["one"]),))
    kind = "all" if "all" in spec else "any"
    filters = tuple(compile_filter(f) for f in spec.get(kind) or ())
    until = spec.get("until") if kind == "any" else None
    if isinstance(until, str):
        return Strategy(kind, filters, compile_expression(until))
    return Strategy(kind, filters, None if until is None else compile_strategy(until))


class Consumer:
    """The state of one strategy while events arrive: which events are kept, and when it is satisfied."""

    def __init__(self, strategy: Strategy, ctx: MatchContext) -> None:
        self.strategy = strategy
        self.ctx = ctx
        self._pending = list(strategy.filters)
        # `all: []` asks for nothing, so it is satisfied before any event.
        self.done = strategy.kind == "all" and not self._pending

    def offer(self, event: Mapping[str, Any]) -> bool:
        """Offer one event; True when this strategy consumes it (and possibly becomes `done`)."""
        kind = self.strategy.kind
        if kind == "all":
            return self._offer_all(event)
        if kind == "any" and not self.strategy.filters:
            matched = True
        else:
            matched = any(f.matches(event, self.ctx) for f in self.strategy.filters)
        # `any` with an `until` keeps consuming; the caller stops it.
        if matched and (kind == "one" or self.strategy.until is None):
            self.done = True
        return matched

    def _offer_all(self, event: Mapping[str, Any]) -> bool:
        for i, candidate in enumerate(self._pending):
            if candidate.matches(event, self.ctx):
                del self._pending[i]
                self.done = not self._pending
                return True
        return False
