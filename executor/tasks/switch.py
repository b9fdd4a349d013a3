"""`switch`: the first case whose `when` holds (or the default case) chooses the flow directive."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._expr import compile_expression, truthy
from .._flow import Directed

if TYPE_CHECKING:
    from .._engine import Run
    from .._expr import Evaluator, Vars
    from .._model import Compiler, Task

Case = tuple["Evaluator | None", str]


def compile(compiler: Compiler, definition: Mapping[str, Any], pointer: str) -> tuple[Case, ...]:
    """Cases in order, the default (no `when`) last."""
    cases = [body for item in definition["switch"] for body in item.values()]
    guarded: list[Case] = [(compile_expression(c["when"]), c.get("then", "continue")) for c in cases if "when" in c]
    default: list[Case] = [(None, c.get("then", "continue")) for c in cases if "when" not in c]
    return tuple(guarded + default[:1])


async def run(rt: Run, task: Task, data: Any, variables: Vars) -> Any:
    """Pass the input through, with the matched case's directive (none matched: the task's own `then`)."""
    for when, then in task.spec:
        if when is None or truthy(when(data, variables)):
            return Directed(data, then)
    return data
