"""`listen`: waiting for events. Not implemented yet; refused at validation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._model import Unsupported

if TYPE_CHECKING:
    from .._engine import Run
    from .._expr import Vars
    from .._model import Compiler, Task


def compile(compiler: Compiler, definition: Mapping[str, Any], pointer: str) -> Any:
    """Refuse: `listen` arrives with the I/O-tasks work."""
    raise Unsupported("`listen` is not implemented by this runtime yet")


async def run(rt: Run, task: Task, data: Any, variables: Vars) -> Any:
    """Never reached: compile refuses."""
    raise AssertionError("listen tasks are refused at compile time")
