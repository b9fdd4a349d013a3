"""The nesting limit every JSON value obeys on its way in and out (`MAX_JSON_DEPTH`), checked with a location.

JSON encoders give up somewhere past 250 levels (orjson at 254, with an error that names no place); a limit well
below that, checked where data enters (each ingress's decoding) and where a task makes new data (each expression's
result), turns "cannot encode" at some later hand-off into a clear refusal that says where.
"""

from __future__ import annotations

from typing import Any

from ._validate_base import escape

MAX_JSON_DEPTH = 128
"""Arrays and objects nested in one another, at most (a scalar is depth 0, `[1]` depth 1)."""


def too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> str | None:
    """The JSON Pointer of the first array or object nested deeper than `limit`; None when `value` is within it."""
    if not _exceeds(value, limit):
        return None
    return _where(value, limit)


def _exceeds(value: Any, remaining: int) -> bool:
    """Whether `value` nests more than `remaining` levels (the fast check: no pointer is built while walking)."""
    kind = type(value)
    if kind is dict:
        items: Any = value.values()
    elif kind is list or kind is tuple:
        items = value
    else:
        return False
    if remaining == 0:
        return True
    remaining -= 1
    for item in items:
        kind = type(item)
        if (kind is dict or kind is list or kind is tuple) and _exceeds(item, remaining):
            return True
    return False


def _where(value: Any, limit: int) -> str:
    """The pointer of the first container past `limit` (only called once `_exceeds` found one)."""
    pending: list[tuple[Any, int, str]] = [(value, 0, "")]
    while pending:
        node, depth, where = pending.pop()
        if isinstance(node, dict):
            items: Any = ((escape(key), item) for key, item in node.items())
        elif isinstance(node, list | tuple):
            items = enumerate(node)
        else:
            continue
        if depth >= limit:
            return where or "/"
        pending.extend(
            (item, depth + 1, f"{where}/{key}") for key, item in items if isinstance(item, dict | list | tuple)
        )
    return "/"
