"""`raise`: fault with an error given inline or by name from `use.errors`; its fields may be expressions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._errors import WorkflowError
from .._expr import compile_template

if TYPE_CHECKING:
    from .._expr import Evaluator, Vars
    from .._model import Compiler, Task
    from .._run import Run


def compile(compiler: Compiler, definition: Mapping[str, Any], pointer: str) -> Evaluator:
    """The error template, resolved from `use.errors` when named."""
    error = definition["raise"]["error"]
    if isinstance(error, str):
        named = (compiler.use.get("errors") or {}).get(error)
        if named is None:
            raise KeyError(f"no error named {error!r} in use.errors")
        error = named
    return compile_template(dict(error))


async def run(rt: Run, task: Task, data: Any, variables: Vars) -> Any:
    """Raise the evaluated error; `instance` is the task's pointer."""
    fields = task.spec(data, variables)
    raise WorkflowError.from_dict({**fields, "instance": task.pointer})
