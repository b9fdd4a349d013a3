"""`switch`: the first case whose `when` holds (or the default case) chooses the flow directive."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._expr import compile_expression, truthy
from .._flow import Directed
from .._validate_base import escape

if TYPE_CHECKING:
    from .._expr import Evaluator, Vars
    from .._model import Compiler, Task
    from .._run import Run


@dataclass(frozen=True, slots=True)
class Case:
    """One compiled case: its condition (None for the default), its directive, and where `then` is written."""

    when: Evaluator | None
    then: str
    pointer: str


def compile(compiler: Compiler, definition: Mapping[str, Any], pointer: str) -> tuple[Case, ...]:
    """Cases in order, the default (no `when`) last; a second default case is an issue."""
    guarded: list[Case] = []
    default: list[Case] = []
    for i, item in enumerate(definition["switch"]):
        for name, body in item.items():
            at = f"{pointer}/switch/{i}/{escape(name)}"
            when = None if "when" not in body else compile_expression(body["when"])
            case = Case(when, body.get("then", "continue"), f"{at}/then")
            if when is not None:
                guarded.append(case)
            elif default:
                compiler.issue(at, "a switch has at most one default case (a case without `when`)")
            else:
                default.append(case)
    return tuple(guarded + default)


def jumps(cases: tuple[Case, ...]) -> Iterator[tuple[str, str]]:
    """Where each case's `then` is written and the directive it names (checked against the task list)."""
    for case in cases:
        yield case.pointer, case.then


async def run(rt: Run, task: Task, data: Any, variables: Vars) -> Any:
    """Pass the input through, with the matched case's directive (none matched: the task's own `then`)."""
    for case in task.spec:
        if case.when is None or truthy(case.when(data, variables)):
            return Directed(data, case.then)
    return data
