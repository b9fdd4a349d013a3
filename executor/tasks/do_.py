"""`do`: run a nested task list in order; its output is the last task's output."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._expr import Vars
    from .._model import Compiler, Task, TaskList
    from .._run import Run


def compile(compiler: Compiler, definition: Mapping[str, Any], pointer: str) -> TaskList:
    """The nested task list."""
    return compiler.task_list(definition["do"], f"{pointer}/do")


async def run(rt: Run, task: Task, data: Any, variables: Vars) -> Any:
    """Run the nested list with the task's transformed input."""
    return await rt.run_list(task.spec, data, rt.child_scope(variables))
