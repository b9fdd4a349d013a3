"""URIs in documents: RFC 6570 simple string expansion (`{petId}`) or a whole `${ … }` runtime expression.

A template variable names a top-level property of the task's transformed input, verbatim (`{pet.id}` is the key
`"pet.id"`); a missing one expands to the empty string; a value that is not a string, number, boolean or null is
the spec's expression error (400). Values are percent-encoded as simple expansion requires. Runtime expression
arguments are not available to templates; a `${ … }` URI is evaluated as an expression instead and must give a
string.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from ._errors import ExpressionError
from ._expr import Evaluator, Vars, compile_expression, is_expression

_VARIABLE = re.compile(r"\{([^{}]*)\}")


class UriTemplate:
    """A compiled URI template; calling it expands the variables from the top level of `data`."""

    __slots__ = ("_parts",)

    def __init__(self, text: str) -> None:
        # Alternating literal text and variable names: [literal, name, literal, name, …, literal].
        self._parts = tuple(_VARIABLE.split(text))

    def __call__(self, data: Any, variables: Vars) -> str:
        if len(self._parts) == 1:
            return self._parts[0]
        out = []
        for i, part in enumerate(self._parts):
            out.append(part if i % 2 == 0 else _expand(part, data))
        return "".join(out)


def _expand(name: str, data: Any) -> str:
    value = data.get(name) if isinstance(data, dict) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return quote(str(value), safe="")
    raise ExpressionError(
        "Invalid URI template variable", detail=f"{{{name}}} is a {type(value).__name__}, not a scalar"
    )


class _UriExpression:
    __slots__ = ("_expr", "_source")

    def __init__(self, source: str) -> None:
        self._source = source
        self._expr = compile_expression(source)

    def __call__(self, data: Any, variables: Vars) -> str:
        value = self._expr(data, variables)
        if not isinstance(value, str):
            raise ExpressionError("Invalid URI", detail=f"{self._source!r} gave {type(value).__name__}, not a string")
        return value


def compile_uri(value: str) -> Evaluator:
    """Compile an endpoint URI: a `${ … }` expression or an RFC 6570 simple template."""
    if is_expression(value):
        return _UriExpression(value)
    return UriTemplate(value)
