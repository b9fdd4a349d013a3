"""`run`: processes and subflows. Not implemented yet; `container` will stay unsupported (no container engine)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._model import Unsupported

if TYPE_CHECKING:
    from .._engine import Run
    from .._expr import Vars
    from .._model import Compiler, Task


def compile(compiler: Compiler, definition: Mapping[str, Any], pointer: str) -> Any:
    """Refuse every form of `run` for now, naming the form."""
    kind = next(iter(k for k in ("container", "script", "shell", "workflow") if k in definition["run"]), "?")
    if kind == "container":
        raise Unsupported("`run.container` needs a container engine, which this runtime does not use")
    raise Unsupported(f"`run.{kind}` is not implemented by this runtime yet")


async def run(rt: Run, task: Task, data: Any, variables: Vars) -> Any:
    """Never reached: compile refuses."""
    raise AssertionError("run tasks are refused at compile time")
