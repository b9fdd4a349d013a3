"""`set`: the output is the evaluated value (object template or expression) — it replaces the input."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._expr import compile_template

if TYPE_CHECKING:
    from .._expr import Evaluator, Vars
    from .._model import Compiler, Task
    from .._run import Run


def compile(compiler: Compiler, definition: Mapping[str, Any], pointer: str) -> Evaluator:
    """The value template; a plain string is an expression only when it is `${ … }`."""
    return compile_template(definition["set"])


async def run(rt: Run, task: Task, data: Any, variables: Vars) -> Any:
    """Evaluate the template against the transformed input."""
    return task.spec(data, variables)
