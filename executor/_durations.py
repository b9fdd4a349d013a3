"""Durations as the DSL writes them: an inline object, an ISO 8601 string, or an expression giving one."""

from __future__ import annotations

import re
from typing import Any

from ._errors import ConfigurationError, ExpressionError
from ._expr import Evaluator, Vars, compile_expression, is_expression, json_type

_INLINE_UNITS = {"days": 86_400.0, "hours": 3_600.0, "minutes": 60.0, "seconds": 1.0, "milliseconds": 0.001}
_ISO = re.compile(
    r"^P(?!$)(?:(\d+(?:\.\d+)?)Y)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)W)?(?:(\d+(?:\.\d+)?)D)?"
    r"(?:T(?=\d)(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)
# A calendar year and month have no fixed length; this runtime counts 365 and 30 days (docs/runtime-semantics.md).
_ISO_UNITS = (365 * 86_400.0, 30 * 86_400.0, 7 * 86_400.0, 86_400.0, 3_600.0, 60.0, 1.0)


def parse_iso8601(text: str) -> float:
    """Seconds in an ISO 8601 duration such as `PT1M30S`; raises ConfigurationError when malformed."""
    match = _ISO.match(text.strip())
    if match is None:
        raise ConfigurationError("Invalid duration", detail=f"{text!r} is not an ISO 8601 duration")
    return sum(float(part) * unit for part, unit in zip(match.groups(), _ISO_UNITS, strict=True) if part)


def inline_seconds(value: dict[str, Any]) -> float:
    """Seconds in an inline duration object `{days, hours, minutes, seconds, milliseconds}`.

    Raises ConfigurationError for an empty object, an unknown unit or a value that is not a number.
    """
    unknown = sorted(set(value) - set(_INLINE_UNITS))
    if not value or unknown:
        units = ", ".join(_INLINE_UNITS)
        raise ConfigurationError("Invalid duration", detail=f"{value!r}: expected one or more of {units}")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value.values()):
        raise ConfigurationError("Invalid duration", detail=f"{value!r}: every unit must be a number")
    return sum(float(value[unit]) * _INLINE_UNITS[unit] for unit in value)


class Duration:
    """A compiled duration: constant when written literally, evaluated when it is `${ … }`."""

    __slots__ = ("_constant", "_expr")

    def __init__(self, value: Any) -> None:
        self._expr: Evaluator | None = None
        self._constant = 0.0
        if is_expression(value):
            self._expr = compile_expression(value)
        elif isinstance(value, dict):
            self._constant = inline_seconds(value)
        else:
            self._constant = parse_iso8601(str(value))

    def seconds(self, data: Any = None, variables: Vars | None = None) -> float:
        """The duration in seconds, evaluating the expression against `data` when there is one."""
        if self._expr is None:
            return self._constant
        result = self._expr(data, variables or {})
        if isinstance(result, dict):
            return inline_seconds(result)
        if isinstance(result, str):
            return parse_iso8601(result)
        raise ExpressionError("Invalid duration", detail=f"expression gave {json_type(result)}, not a duration")


def duration_or_none(value: Any) -> Duration | None:
    """`Duration(value)`, or None when the value is absent."""
    return None if value is None else Duration(value)
