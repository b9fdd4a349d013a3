"""One execution's state and its walk over the task tree; `Handler` is what each task kind's module provides.

Per task, in the spec's order: `if` on the raw input → input schema → `input.from` → the kind's handler →
`output.as` → output schema → `export.as` (replaces `$context`) → context schema. Flow directives (`then`) move
within one task list; `end` unwinds the whole workflow as `EndWorkflow`. Lifecycle events leave through the
listener in sequence order. Decisions where the spec is silent are in docs/runtime-semantics.md.

`Run` imports no handler module: the executor hands it the registry (`executor.tasks.REGISTRY`), so handlers name
`Run` in their signatures without an import cycle, and mypy checks each of them against `Handler`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import TYPE_CHECKING, Any, Protocol

from ._clock import now, now_iso
from ._depth import MAX_JSON_DEPTH, too_deep
from ._errors import ExpressionError, WorkflowError, WorkflowRuntimeError, WorkflowTimeoutError
from ._expr import Vars, truthy
from ._extensions import run_extended, task_argument
from ._flow import Deadline, Directed, EndWorkflow
from ._listener import (
    TASK_CANCELLED,
    TASK_COMPLETED,
    TASK_FAULTED,
    TASK_STARTED,
    LifecycleEvent,
    ProgressListener,
)
from ._mask import Mask
from ._model import TaskCompiler
from ._probe import CURRENT, Where

if TYPE_CHECKING:
    from ._bus import EventBus
    from ._command import ExecuteCommand, ExecutionResult
    from ._io import IOResources
    from ._model import Task, TaskList, Workflow
from ._options import EngineOptions

# The spec's arguments, bound per task; everything else in a task's variables is a scope variable.
_RUNTIME_ARGS = frozenset({"context", "input", "output", "secrets", "authorization", "task", "workflow", "runtime"})

# Tasks run between two turns given to the event loop (see `Run._breathe`).
_YIELD_EVERY = 32

Sleep = Callable[[float], Awaitable[None]]


class EventNotDelivered(Exception):
    """The listener failed to take a lifecycle event (not a workflow error: no `try` may catch it).

    The engine ends the run with a `workflow.faulted` naming the event and the failure instead.
    """

    def __init__(self, what: str, cause: BaseException) -> None:
        super().__init__(f"{what} not delivered: {type(cause).__name__}: {cause}")
        self.what = what


class Handler(TaskCompiler, Protocol):
    """What a task kind's module provides: `compile` its parts once (see `TaskCompiler`), `run` them many times."""

    async def run(self, rt: Run, task: Task, data: Any, variables: Vars) -> Any:
        """Run one task of this kind on its transformed input; returns its raw output (or a `Directed`)."""
        ...


class Host(Protocol):
    """The executor as a run sees it: shared I/O and options, the clock and event bus, and starting subflows."""

    @property
    def io(self) -> IOResources: ...

    @property
    def options(self) -> EngineOptions: ...

    @property
    def sleep(self) -> Sleep: ...

    @property
    def bus(self) -> EventBus: ...

    @property
    def runtime_descriptor(self) -> dict[str, Any]: ...

    async def run(self, cmd: ExecuteCommand, *, listener: ProgressListener | None = None) -> ExecutionResult:
        """Run a command to its end (a subflow)."""
        ...


def _descriptor(iso: str, epoch: float) -> dict[str, Any]:
    """The spec's dateTime descriptor."""
    return {"iso8601": iso, "epoch": {"seconds": int(epoch), "milliseconds": int(epoch * 1000)}}


class Run:
    """The state of one execution: `$context`, secrets, event sequence, and the walk over the task tree."""

    def __init__(
        self,
        executor: Host,
        cmd: ExecuteCommand,
        workflow: Workflow,
        listener: ProgressListener,
        registry: Mapping[str, Handler],
    ) -> None:
        self.executor = executor
        self.registry = registry
        self.cmd = cmd
        self.workflow = workflow
        self.listener = listener
        self.sleep = executor.sleep
        self.bus = executor.bus.scope(cmd.tenant)
        self.context: Any = {}
        self.sequence = 0
        self._steps = 0
        self.cancel_requested = False
        self.secrets = {name: cmd.secrets[name] for name in workflow.secrets if name in cmd.secrets}
        # Every secret the caller gave, declared or not, plus what the runtime derives from them while running.
        self.mask = Mask(cmd.secrets)
        self._deadline = None if cmd.deadline is None else cmd.deadline.timestamp()
        # Events leave one at a time: a listener that applies back-pressure still sees them in sequence order.
        self._emitting = asyncio.Lock()
        iso, epoch = now()
        self.name = f"{workflow.name}-{cmd.execution_id}.{workflow.namespace}"
        self.workflow_var = {
            "id": cmd.execution_id,
            "definition": workflow.definition,
            "input": cmd.input,
            "startedAt": _descriptor(iso, epoch),
        }
        self.runtime_var = executor.runtime_descriptor

    async def emit(self, type_: str, data: dict[str, Any], at: str | None = None) -> None:
        """Hand one lifecycle event to the listener (secrets scrubbed); `at` is its time when already read.

        Raises:
            EventNotDelivered: The listener raised (the run then ends faulted, naming the event).
        """
        data = self.mask.scrub(data)
        async with self._emitting:
            event = LifecycleEvent(
                execution_id=self.cmd.execution_id,
                attempt=self.cmd.attempt,
                sequence=self.sequence + 1,
                type=type_,
                time=at or now_iso(),
                data=data,
            )
            try:
                await self.listener.publish(event)
            except Exception as exc:
                where = data.get("task") or data.get("name")
                raise EventNotDelivered(f"event {type_} of {where}", exc) from exc
            # Counted once handed over: an event whose hand-over was cancelled leaves no gap in the sequence.
            self.sequence = event.sequence

    @staticmethod
    def child_scope(variables: Vars, **extra: Any) -> dict[str, Any]:
        """The user-level variables (`$item`, `$error`, …) nested tasks inherit, plus `extra`."""
        return {k: v for k, v in variables.items() if k not in _RUNTIME_ARGS} | extra

    def current(self, variables: Vars, **extra: Any) -> dict[str, Any]:
        """A task's variables with `$context` as it is now (its subtasks may have exported since it started)."""
        return {**variables, **extra, "context": self.context}

    def scope_vars(self, scope: Vars, task_var: Any) -> dict[str, Any]:
        """Arguments available to `if` and `input.from`."""
        return {
            **scope,
            "context": self.context,
            "secrets": self.secrets,
            "task": task_argument(task_var),
            "workflow": self.workflow_var,
            "runtime": self.runtime_var,
        }

    async def run_list(
        self,
        tasks: TaskList,
        data: Any,
        scope: Vars,
        *,
        start: int = 0,
        on_step: Callable[[int, Any], Awaitable[None]] | None = None,
    ) -> Any:
        """Run a task list from `start`, following flow directives; returns the scope's output."""
        index = start
        items = tasks.tasks
        while index < len(items):
            await self._breathe()
            self.check_deadline(items[index])
            data, directive = await self.run_task(items[index], data, scope)
            if directive is None or directive == "continue":
                index += 1
            elif directive == "exit":
                index = len(items)
            elif directive == "end":
                raise EndWorkflow(data)
            else:
                index = tasks.index[directive]
            if on_step is not None:
                await on_step(index, data)
        return data

    def check_deadline(self, task: Task) -> None:
        """Raise the spec's timeout error, naming the caller's deadline, when it has passed (before `task`)."""
        if self._deadline is not None and time.time() >= self._deadline:
            assert self.cmd.deadline is not None
            raise WorkflowTimeoutError(
                "Timeout", detail=deadline_passed(self.cmd.deadline.isoformat()), instance=task.pointer
            )

    async def _breathe(self) -> None:
        """Give the event loop a turn every few tasks.

        A timeout or a cancel can then land even in a loop whose tasks never suspend (a `then` jump back, a long
        `for` of `set` tasks). Not every task: a turn of the loop costs about as much as a small task.
        """
        self._steps += 1
        if self._steps % _YIELD_EVERY == 0:
            await asyncio.sleep(0)

    async def run_task(self, task: Task, raw: Any, scope: Vars) -> tuple[Any, str | None]:
        """Run one task through the data flow; returns its transformed output and the flow directive."""
        iso, epoch = now()
        task_var = {
            "name": task.name,
            "reference": task.pointer,
            "definition": task.definition,
            "input": raw,
            "output": None,
            "startedAt": _descriptor(iso, epoch),
        }
        variables = self.scope_vars(scope, task_var)
        where = CURRENT.set(Where(CURRENT.get().token, task.pointer))
        try:
            return await self._run_task(task, raw, variables, task_var, iso)
        finally:
            CURRENT.reset(where)

    async def _run_task(
        self, task: Task, raw: Any, variables: dict[str, Any], task_var: dict[str, Any], iso: str
    ) -> tuple[Any, str | None]:
        if task.if_ is not None and not truthy(self._eval(task, task.if_, raw, variables)):
            return raw, None
        await self.emit(TASK_STARTED, {"workflow": self.name, "task": task.pointer, "startedAt": iso}, iso)
        try:
            async with self._timeout(task, raw, variables):
                output, directive = await self._run_body(task, raw, variables, task_var)
        except EndWorkflow as end:
            await self._completed(task, end.output)
            raise
        except WorkflowError as exc:
            exc.at(task.pointer)
            await self.emit(TASK_FAULTED, {**self._ref(task), "faultedAt": now_iso(), "error": exc.to_dict()})
            raise
        except asyncio.CancelledError:
            await self.emit(TASK_CANCELLED, {**self._ref(task), "cancelledAt": now_iso()})
            raise
        await self._completed(task, output)
        return output, directive

    async def _run_body(
        self, task: Task, raw: Any, variables: dict[str, Any], task_var: dict[str, Any]
    ) -> tuple[Any, str | None]:
        if task.input_schema is not None:
            task.input_schema.check(raw)
        data = raw if task.input_from is None else self._eval(task, task.input_from, raw, variables)
        variables["input"] = data
        try:
            handler = self.registry[task.kind]
            if self.workflow.extensions:
                result = await run_extended(
                    self, task, data, variables, lambda: handler.run(self, task, data, variables)
                )
            else:
                result = await handler.run(self, task, data, variables)
        except WorkflowError:
            raise
        except (asyncio.CancelledError, EndWorkflow, EventNotDelivered):
            raise
        except Exception as exc:
            raise WorkflowRuntimeError("Task failed unexpectedly", detail=f"{type(exc).__name__}: {exc}") from exc
        variables["context"] = self.context  # what the task's subtasks exported
        directive = task.then
        if isinstance(result, Directed):
            result, directive = result.output, result.then or task.then
        task_var["output"] = result
        output = result if task.output_as is None else self._eval(task, task.output_as, result, variables)
        if task.output_schema is not None:
            task.output_schema.check(output)
        if task.export_as is not None:
            variables["output"] = output
            self.context = self._eval(task, task.export_as, output, variables)
            if task.export_schema is not None:
                task.export_schema.check(self.context)
        _within_depth(output, "output")
        _within_depth(self.context, "exported context")
        return output, directive

    def _timeout(self, task: Task, raw: Any, variables: Vars) -> AbstractAsyncContextManager[Any]:
        if task.timeout is None:
            return nullcontext()
        return Deadline(task.timeout.seconds(raw, variables), f"task {task.pointer}")

    def _eval(self, task: Task, evaluator: Any, data: Any, variables: Vars) -> Any:
        try:
            return evaluator(data, variables)
        except WorkflowError as exc:
            raise exc.at(task.pointer) from None

    def _ref(self, task: Task) -> dict[str, Any]:
        return {"workflow": self.name, "task": task.pointer}

    async def _completed(self, task: Task, output: Any) -> None:
        at = now_iso()
        await self.emit(TASK_COMPLETED, {**self._ref(task), "completedAt": at, "output": output}, at)

    def scrub_error(self, error: dict[str, Any]) -> dict[str, Any]:
        """The error object with secret values masked."""
        return dict(self.mask.scrub(error))


def deadline_passed(deadline: str) -> str:
    """The timeout error's detail when the caller's deadline ends a run."""
    return f"the caller's deadline {deadline} passed"


def _within_depth(value: Any, what: str) -> None:
    """Raise the expression error when a task made data nested deeper than `MAX_JSON_DEPTH` (no encoder takes it)."""
    if isinstance(value, dict | list):
        where = too_deep(value)
        if where is not None:
            shown = where if len(where) <= 48 else where[:47] + "…"
            detail = f"the task's {what} is nested more than {MAX_JSON_DEPTH} levels deep at {shown} (MAX_JSON_DEPTH)"
            raise ExpressionError("Data nested too deep", detail=detail)
