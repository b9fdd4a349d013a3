"""Runtime expressions: jq programs compiled once, cached, and evaluated with the spec's `$` arguments.

Two forms exist in a document. In expression-typed fields (`if`, `input.from`, `output.as`, `for.in`, `when`, …) a
string is a jq program with or without `${ }`. In free-form values (`set`, `with`, `data`, …) only a string that is
wholly `${ … }` is an expression; its result replaces the value, whatever its type. `compile_expression` and
`compile_template` turn those into callables once, when the document is compiled, so running a task never parses
(and a jq syntax error is reported by validation).

Arguments are passed by binding only the variables an expression mentions: the program
`.[1] as {$context, $input} | .[0] | (EXPR)` runs on `[data, {context, input}]`, so a large `$workflow.definition`
costs nothing unless it is used, and a variable the spec does not make available where the expression sits is a
jq compile error, reported as the spec's expression error.

`evaluate.mode: loose` (`expression_mode`, in force while a document compiles) widens both forms: every string
of a free-form value is tried as a jq program, and an expression that does not compile or fails when evaluated
yields its own text instead of an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from typing import Any, Protocol

import jq
import orjson

from ._errors import ExpressionError
from ._probe import CURRENT, DEADLINE, probe_installed

_WRAPPED = re.compile(r"^\s*\$\{(.*)\}\s*$", re.DOTALL)
_VARIABLE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
# jq's own variables: never bound by us.
_JQ_BUILTIN_VARS = frozenset({"__loc__", "ENV", "__prog_args"})

Vars = Mapping[str, Any]

# True while a document written for `evaluate.mode: loose` compiles (compiling is synchronous: no task sees it).
_LOOSE: ContextVar[bool] = ContextVar("loose_expressions", default=False)


@contextmanager
def expression_mode(mode: str) -> Iterator[None]:
    """Compile the expressions created inside the block in `mode` (`strict` or `loose`)."""
    token = _LOOSE.set(mode == "loose")
    try:
        yield
    finally:
        _LOOSE.reset(token)


class Evaluator(Protocol):
    """A compiled expression or template: data and arguments in, value out."""

    def __call__(self, data: Any, variables: Vars) -> Any: ...


def is_expression(value: object) -> bool:
    """True when `value` is a string of the form `${ … }`."""
    return isinstance(value, str) and _WRAPPED.match(value) is not None


def unwrap(text: str) -> str:
    """The jq program inside `${ … }`, or the text itself when it is not wrapped."""
    match = _WRAPPED.match(text)
    return (match.group(1) if match else text).strip()


class _Program:
    """One jq program, compiled lazily per set of bound variable names."""

    __slots__ = ("_names", "source", "text")

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self._names = tuple(sorted(set(_VARIABLE.findall(text)) - _JQ_BUILTIN_VARS))
        # Compiled with every variable it names bound, so a syntax error is found with the document, not later.
        _compile(text, self._names)

    def __call__(self, data: Any, variables: Vars) -> Any:
        bound = tuple(name for name in self._names if name in variables)
        # A worker's watchdog must see every evaluation: jq cannot be interrupted, only its process ended.
        probe = probe_installed()
        if probe is not None:
            probe.enter(CURRENT.get(), DEADLINE.get())
        try:
            program = _compile(self.text, bound)
            payload = [data, {name: variables[name] for name in bound}] if bound else data
            results = program.input_text(dumps(payload)).all()
        except ExpressionError:
            raise
        except (ValueError, TypeError) as exc:
            raise ExpressionError("Runtime expression failed", detail=f"{self.source!r}: {_first_line(exc)}") from None
        finally:
            if probe is not None:
                probe.leave()
        return results[0] if len(results) == 1 else (results or None)


def dumps(value: Any) -> str:
    """JSON text of a value the engine produced; jq's integers past 64 bits become floats, as jq itself sees them."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return orjson.dumps(json_safe(value)).decode()


def json_safe(value: Any) -> Any:
    """`value` with integers outside the 64-bit range turned into floats (jq numbers are doubles anyway).

    Only needed on the slow path: orjson refuses such integers, and jq hands them out for `pow(2; 64)` and the like.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else float(value)
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_safe(item) for item in value]
    return value


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# Documents come from callers, not from the runner's operator: their expressions see an empty `$ENV` / `env`
# (the runner's environment holds its credentials), and wrapping them in parentheses makes a jq `import` or
# `include` (which would read files near the runner) a syntax error.
_PRELUDE = "def env: {}; {} as $ENV | "


@lru_cache(maxsize=4096)
def _compile(text: str, bound: tuple[str, ...]) -> Any:
    names = ", ".join("$" + n for n in bound)
    # The newline ends a trailing `# comment` in the expression before the closing parenthesis.
    program = _PRELUDE + (f"({text}\n)" if not bound else f".[1] as {{{names}}} | .[0] | ({text}\n)")
    try:
        return jq.compile(program)
    except ValueError as exc:
        raise ExpressionError("Invalid runtime expression", detail=f"{text!r}: {_first_line(exc)}") from None


def compile_expression(value: Any) -> Evaluator:
    """Compile an expression-typed field: a jq program with or without `${ }`, or a non-string constant."""
    if isinstance(value, str):
        return _lenient(value) if _LOOSE.get() else _Program(unwrap(value), value)
    return compile_template(value)


def compile_template(value: Any) -> Evaluator:
    """Compile a free-form value whose `${ … }` leaves (at any depth) are expressions (every string when loose)."""
    if _LOOSE.get():
        return _loose_template(value)
    if not _has_expression(value):
        return _Constant(value)
    if isinstance(value, str):
        return _Program(unwrap(value), value)
    if isinstance(value, dict):
        return _ObjectTemplate({k: compile_template(v) for k, v in value.items()})
    return _ListTemplate([compile_template(v) for v in value])


def _loose_template(value: Any) -> Evaluator:
    if isinstance(value, str):
        return _lenient(value)
    if isinstance(value, dict):
        return _ObjectTemplate({k: _loose_template(v) for k, v in value.items()})
    if isinstance(value, list):
        return _ListTemplate([_loose_template(v) for v in value])
    return _Constant(value)


def _lenient(text: str) -> Evaluator:
    """A loose-mode expression: the text itself when it is no jq program."""
    try:
        return _Lenient(_Program(unwrap(text), text))
    except ExpressionError:
        return _Constant(text)


class _Lenient:
    """Loose mode: an expression whose evaluation fails yields its own text."""

    __slots__ = ("program",)

    def __init__(self, program: _Program) -> None:
        self.program = program

    def __call__(self, data: Any, variables: Vars) -> Any:
        try:
            return self.program(data, variables)
        except ExpressionError:
            return self.program.source


def _has_expression(value: Any) -> bool:
    if isinstance(value, str):
        return is_expression(value)
    if isinstance(value, dict):
        return any(_has_expression(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_expression(v) for v in value)
    return False


class _Constant:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __call__(self, data: Any, variables: Vars) -> Any:
        return self.value


class _ObjectTemplate:
    __slots__ = ("items",)

    def __init__(self, items: dict[str, Evaluator]) -> None:
        self.items = tuple(items.items())

    def __call__(self, data: Any, variables: Vars) -> Any:
        return {key: part(data, variables) for key, part in self.items}


class _ListTemplate:
    __slots__ = ("parts",)

    def __init__(self, parts: list[Evaluator]) -> None:
        self.parts = tuple(parts)

    def __call__(self, data: Any, variables: Vars) -> Any:
        return [part(data, variables) for part in self.parts]


def json_type(value: Any) -> str:
    """A value's JSON type for messages: `null`, `a boolean`, `a number`, `a string`, `an array`, `an object`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def truthy(value: Any) -> bool:
    """jq's notion of truth: everything but `false` and `null`."""
    return value is not None and value is not False


Compiled = Callable[[Any, Vars], Any]
