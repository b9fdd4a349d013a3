"""`for`: iterate a collection; each iteration's input is the previous iteration's output."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import ExpressionError
from .._expr import compile_expression, compile_template, json_type, truthy

if TYPE_CHECKING:
    from .._expr import Evaluator, Vars
    from .._model import Compiler, Task, TaskList
    from .._run import Run


@dataclass(frozen=True, slots=True)
class ForSpec:
    each: str
    at: str
    items: Evaluator
    while_: Evaluator | None
    body: TaskList


def compile(compiler: Compiler, definition: Mapping[str, Any], pointer: str) -> ForSpec:
    """Loop variables, the collection expression (or inline list), `while` and the body."""
    loop = definition["for"]
    items = loop["in"]
    return ForSpec(
        each=loop.get("each", "item"),
        at=loop.get("at", "index"),
        items=compile_expression(items) if isinstance(items, str) else compile_template(items),
        while_=None if definition.get("while") is None else compile_expression(definition["while"]),
        body=compiler.task_list(definition["do"], f"{pointer}/do"),
    )


async def run(rt: Run, task: Task, data: Any, variables: Vars) -> Any:
    """Run the body per item; `while` is checked before each iteration with the loop variables bound."""
    spec: ForSpec = task.spec
    collection = spec.items(data, variables)
    if collection is None:
        collection = []
    elif isinstance(collection, dict):
        collection = list(collection.values())
    elif not isinstance(collection, list):
        raise ExpressionError("Invalid for.in", detail=f"expected an array, got {json_type(collection)}")
    scope = rt.child_scope(variables)
    for index, item in enumerate(collection):
        scope[spec.each] = item
        scope[spec.at] = index
        if spec.while_ is not None and not truthy(spec.while_(data, rt.current(variables, **scope))):
            break
        data = await rt.run_list(spec.body, data, scope)
    return data
