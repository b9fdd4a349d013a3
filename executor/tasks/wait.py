"""`wait`: pause for a duration (inline object, ISO 8601, or expression); the input passes through."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._durations import Duration

if TYPE_CHECKING:
    from .._expr import Vars
    from .._model import Compiler, Task
    from .._run import Run


def compile(compiler: Compiler, definition: Mapping[str, Any], pointer: str) -> Duration:
    """The duration."""
    return Duration(definition["wait"])


async def run(rt: Run, task: Task, data: Any, variables: Vars) -> Any:
    """Sleep (through the executor's injectable sleep), then pass the input on."""
    await rt.sleep(task.spec.seconds(data, variables))
    return data
