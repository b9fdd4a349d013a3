"""`run`: shell commands, scripts and subflows; `container` is refused at validation (no container engine here).

Shell and script execution are off unless the runner's configuration enables them (`EngineOptions.allow_shell`,
`allow_script`); a document using a disabled form is refused at validation as not supported by this runtime.
Details of each form: `_run_process` (shell, script) and `_run_workflow` (subflows).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._model import Unsupported
from . import _run_process, _run_workflow

if TYPE_CHECKING:
    from .._expr import Vars
    from .._model import Compiler, Task
    from .._run import Run
    from .call import CallSpec


def compile(compiler: Compiler, definition: Mapping[str, Any], pointer: str) -> CallSpec:
    """The spec of the process or subflow to run."""
    run_ = definition["run"]
    if "container" in run_:
        raise Unsupported("`run.container` needs a container engine, which this runtime does not use")
    if "workflow" in run_:
        return _run_workflow.compile(compiler, run_)
    return _run_process.compile(compiler, run_)


async def run(rt: Run, task: Task, data: Any, variables: Vars) -> Any:
    """Run the compiled process or subflow."""
    spec: CallSpec = task.spec
    return await spec.run(rt, task, data, variables)
