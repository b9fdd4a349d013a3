"""`run.workflow`: start a subflow from the catalog, hand it an input, take its output back.

The document is found by namespace, name and version (default `latest`) in the executor's catalog
(`executor._catalog`). Its input is `workflow.input` when given (free-form, `${ … }` leaves evaluated), else the
task's transformed input. It runs with the parent's secrets (it declares its own `use.secrets`), metadata,
attempt and deadline, under the execution id `<parent id>:<task pointer>:<n>`.

Events: the subflow's task lifecycle events join the parent's event stream (the parent's sequence numbers; the
`workflow` field names the subflow); its workflow-level events do not, because a consumer of the parent's stream
would take the subflow's `workflow.completed` for the parent's end — the parent's own `task.started` /
`task.completed` for the `run` task frame the subflow instead.

Outcome: completed → its output (`return: none` → null); faulted → the same error (type, status, title) raised by
the `run` task, its detail saying where in the subflow it started; a document that is missing or invalid → the
configuration error (400); nesting deeper than the configured `max_subflow_depth` → the runtime error. With
`await: false` the subflow runs on as an execution of its own (events to the executor's listener) and the task
completes at once with its input.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._command import ExecuteCommand, ExecutionResult, Status
from .._document import DocumentError
from .._errors import ConfigurationError, WorkflowError, WorkflowRuntimeError
from .._expr import compile_template
from .._listener import LifecycleEvent, ProgressListener

if TYPE_CHECKING:
    from .._expr import Evaluator, Vars
    from .._model import Compiler, Task
    from .._run import Run

_TASK_EVENT = "io.serverlessworkflow.task."
_DEPTH: ContextVar[int] = ContextVar("subflow_depth", default=0)
_NUMBERS = itertools.count(1)


@dataclass(frozen=True, slots=True, kw_only=True)
class SubflowTask:
    """A compiled `run.workflow`."""

    namespace: str
    name: str
    version: str
    input: Evaluator | None
    await_: bool
    returns: str

    @property
    def label(self) -> str:
        """`namespace/name:version`, for messages."""
        return f"{self.namespace}/{self.name}:{self.version}"

    async def run(self, rt: Run, task: Task, data: Any, variables: Vars) -> Any:
        """Run the subflow (or start it, without `await`)."""
        text = await rt.executor.io.catalog.find(self.namespace, self.name, self.version)
        command = self._command(rt, task, text, data, variables)
        depth = _DEPTH.get()
        if depth >= rt.executor.options.max_subflow_depth:
            raise WorkflowRuntimeError("Subflow nesting too deep", detail=f"{self.label} would be level {depth + 1}")
        token = _DEPTH.set(depth + 1)
        try:
            if not self.await_:
                rt.executor.io.detach(_start(rt, command, self.label), f"subflow {self.label}")
                return data
            result = await _start(rt, command, self.label, listener=_Nested(rt))
        finally:
            _DEPTH.reset(token)
        return self._outcome(result)

    def _command(self, rt: Run, task: Task, text: str, data: Any, variables: Vars) -> ExecuteCommand:
        parent = rt.cmd
        return ExecuteCommand(
            execution_id=f"{parent.execution_id}:{task.pointer}:{next(_NUMBERS)}",
            workflow_yaml=text,
            input=data if self.input is None else self.input(data, variables),
            secrets=parent.secrets,
            metadata=parent.metadata,
            source=parent.source,
            attempt=parent.attempt,
            deadline=parent.deadline,
            tenant=parent.tenant,  # a subflow's emit and listen stay on its caller's tenant's bus
        )

    def _outcome(self, result: ExecutionResult) -> Any:
        if result.status is Status.COMPLETED:
            return None if self.returns == "none" else result.output
        if result.status is Status.CANCELLED or result.error is None:
            raise WorkflowRuntimeError("Subflow cancelled", detail=f"{self.label} was cancelled")
        error = dict(result.error)
        where = error.pop("instance", None)
        prefix = f"in subflow {self.label}" + (f" at {where}" if where else "")
        error["detail"] = f"{prefix}: {error['detail']}" if error.get("detail") else prefix
        raise WorkflowError.from_dict(error)


def compile(compiler: Compiler, run_: Mapping[str, Any]) -> SubflowTask:
    """Compile `run.workflow`."""
    workflow = run_["workflow"]
    given = workflow.get("input")
    return SubflowTask(
        namespace=str(workflow["namespace"]),
        name=str(workflow["name"]),
        version=str(workflow.get("version") or "latest"),
        input=None if given is None else compile_template(given),
        await_=bool(run_.get("await", True)),
        returns=run_.get("return", "stdout"),
    )


async def _start(
    rt: Run, command: ExecuteCommand, label: str, listener: ProgressListener | None = None
) -> ExecutionResult:
    try:
        return await rt.executor.run(command, listener=listener)
    except DocumentError as exc:
        raise ConfigurationError("Invalid subflow", detail=f"{label}: {exc}") from None


class _Nested:
    """Forwards a subflow's task events into the parent's stream."""

    def __init__(self, rt: Run) -> None:
        self._rt = rt

    async def publish(self, event: LifecycleEvent) -> None:
        if event.type.startswith(_TASK_EVENT):
            await self._rt.emit(event.type, dict(event.data))
