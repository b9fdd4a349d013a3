"""`call`: custom functions from `use.functions`. The built-in protocols arrive with the I/O-tasks work.

A function is a task definition; calling it runs that task with the call's `with` as input (or the call's own
input when `with` is absent).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._expr import compile_template
from .._model import Unsupported

if TYPE_CHECKING:
    from .._engine import Run
    from .._expr import Evaluator, Vars
    from .._model import Compiler, Task

BUILT_INS = frozenset({"http", "openapi", "grpc", "asyncapi", "a2a", "mcp"})


def compile(compiler: Compiler, definition: Mapping[str, Any], pointer: str) -> tuple[str, Evaluator | None]:
    """The function name and its arguments template."""
    name = definition["call"]
    if name in BUILT_INS:
        raise Unsupported(f"`call: {name}` is not implemented by this runtime yet")
    if name not in (compiler.use.get("functions") or {}):
        raise Unsupported(
            f"function {name!r} is neither built in nor declared in use.functions (catalogs are not supported)"
        )
    arguments = definition.get("with")
    return name, None if arguments is None else compile_template(arguments)


async def run(rt: Run, task: Task, data: Any, variables: Vars) -> Any:
    """Run the function's task with the evaluated arguments as its input."""
    name, arguments = task.spec
    function = rt.workflow.functions[name]
    argument_data = data if arguments is None else arguments(data, variables)
    output, _ = await rt.run_task(function, argument_data, rt.child_scope(variables))
    return output
