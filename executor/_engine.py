"""The executor: runs one compiled workflow per command, walking the task tree with the spec's data flow.

Per task, in the spec's order: `if` on the raw input → input schema → `input.from` → the kind's handler →
`output.as` → output schema → `export.as` (replaces `$context`) → context schema. Flow directives (`then`) move
within one task list; `end` unwinds the whole workflow as `EndWorkflow`. Lifecycle events leave through the
listener in sequence order. Decisions where the spec is silent are in README ("Runtime semantics").
"""

from __future__ import annotations

import asyncio
import platform
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

from ._bus import EventBus
from ._clock import now, now_iso
from ._command import Checkpoint, ExecuteCommand, ExecutionResult, Status
from ._document import DocumentError, Issue, Limits, load_document
from ._errors import AuthorizationError, RuntimeError_, WorkflowError
from ._expr import Vars, json_safe, truthy
from ._flow import Deadline, Directed, EndWorkflow
from ._io import IOResources
from ._listener import (
    TASK_CANCELLED,
    TASK_COMPLETED,
    TASK_FAULTED,
    TASK_STARTED,
    WORKFLOW_CANCELLED,
    WORKFLOW_COMPLETED,
    WORKFLOW_FAULTED,
    WORKFLOW_STARTED,
    LifecycleEvent,
    NullListener,
    ProgressListener,
)
from ._model import Task, TaskList, Workflow, compile_workflow
from ._options import EngineOptions
from .tasks import REGISTRY

RUNTIME_NAME = "workflow-runner"
# Compiled documents are cached by their text: a few hundred small ones cover the documents a control plane sends
# again and again; a big one is compiled each time rather than pinning megabytes (bounds the cache near 64 MiB).
_CACHED_DOCUMENTS = 256
_CACHED_DOCUMENT_CHARS = 256 * 1024
RUNTIME_VERSION = "0.1.0"

# The spec's arguments, bound per task; everything else in a task's variables is a scope variable.
_RUNTIME_ARGS = frozenset({"context", "input", "output", "secrets", "authorization", "task", "workflow", "runtime"})

# Tasks run between two turns given to the event loop (see `Run._breathe`).
_YIELD_EVERY = 32

Sleep = Callable[[float], Awaitable[None]]
CheckpointHook = Callable[[Checkpoint], Awaitable[None]]


def _descriptor(iso: str, epoch: float) -> dict[str, Any]:
    """The spec's dateTime descriptor."""
    return {"iso8601": iso, "epoch": {"seconds": int(epoch), "milliseconds": int(epoch * 1000)}}


class Run:
    """The state of one execution: `$context`, secrets, event sequence, and the walk over the task tree."""

    def __init__(self, executor: Executor, cmd: ExecuteCommand, workflow: Workflow, listener: ProgressListener):
        self.executor = executor
        self.cmd = cmd
        self.workflow = workflow
        self.listener = listener
        self.sleep = executor.sleep
        self.bus = executor.bus
        self.context: Any = {}
        self.sequence = 0
        self._steps = 0
        self.cancel_requested = False
        self.secrets = {name: cmd.secrets[name] for name in workflow.secrets if name in cmd.secrets}
        self._secret_values = _secret_texts(self.secrets.values())
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
        """Hand one lifecycle event to the listener (secrets scrubbed); `at` is its time when already read."""
        if self._secret_values:
            data = _scrub(data, self._secret_values)
        async with self._emitting:
            event = LifecycleEvent(
                execution_id=self.cmd.execution_id,
                attempt=self.cmd.attempt,
                sequence=self.sequence + 1,
                type=type_,
                time=at or now_iso(),
                data=data,
            )
            # Counted once handed over: an event whose hand-over was cancelled leaves no gap in the sequence.
            await self.listener.publish(event)
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
            "task": task_var,
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
            result = await task_handler(task).run(self, task, data, variables)
        except WorkflowError:
            raise
        except (asyncio.CancelledError, EndWorkflow):
            raise
        except Exception as exc:
            raise RuntimeError_("Task failed unexpectedly", detail=f"{type(exc).__name__}: {exc}") from exc
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
        return _scrub(error, self._secret_values) if self._secret_values else error


def _secret_texts(values: Iterable[Any]) -> tuple[str, ...]:
    """Every string and number inside the secrets (object secrets included) as text, longest first.

    Longest first, so that a secret containing another one is masked whole rather than leaving its tail.
    """
    texts: set[str] = set()
    pending = list(values)
    while pending:
        value = pending.pop()
        if isinstance(value, Mapping):
            pending.extend(value.values())
        elif isinstance(value, list | tuple):
            pending.extend(value)
        elif isinstance(value, str | int | float) and not isinstance(value, bool) and str(value):
            texts.update(_encoded_forms(str(value)))
    return tuple(sorted(texts, key=len, reverse=True))


def _encoded_forms(secret: str) -> set[str]:
    """The secret as written, and as it appears inside a URL (percent-encoded) or a JSON string (escaped)."""
    return {
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret, safe=""),
        orjson.dumps(secret).decode()[1:-1],
    }


def _scrub(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, "***")
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "***" if str(value) in secrets else value
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    return value


def task_handler(task: Task) -> Any:
    """The handler module registered for the task's kind."""
    return REGISTRY[task.kind]


class Executor:
    """Runs execute commands: one instance per process, shared by every ingress."""

    def __init__(
        self,
        *,
        listener: ProgressListener | None = None,
        limits: Limits | None = None,
        sleep: Sleep = asyncio.sleep,
        bus: EventBus | None = None,
        runtime_metadata: Mapping[str, str] | None = None,
        options: EngineOptions | None = None,
    ) -> None:
        self.listener: ProgressListener = listener or NullListener()
        self.options = options or EngineOptions()
        self.limits = limits or Limits()
        self.sleep = sleep
        self.bus = bus or EventBus()
        self.io = IOResources(self.options)
        self.runtime_descriptor = {
            "name": RUNTIME_NAME,
            "version": RUNTIME_VERSION,
            "metadata": {"python": platform.python_version(), **(runtime_metadata or {})},
        }
        self._in_flight: dict[str, tuple[asyncio.Task[Any], Run]] = {}
        self._load = lru_cache(maxsize=_CACHED_DOCUMENTS)(self._load_uncached)

    def load(self, workflow_yaml: str) -> Workflow:
        """Parse, validate and compile a document (cached by its text); raises DocumentError."""
        if len(workflow_yaml) > _CACHED_DOCUMENT_CHARS:
            return self._load_uncached(workflow_yaml)
        return self._load(workflow_yaml)

    def _load_uncached(self, workflow_yaml: str) -> Workflow:
        document = load_document(workflow_yaml, self.limits)
        try:
            return compile_workflow(document.definition, REGISTRY, self.options)
        except DocumentError as exc:
            raise DocumentError(tuple(document.locate(i) for i in exc.issues)) from None

    def validate(self, workflow_yaml: str) -> list[Issue]:
        """Every problem that stops the document from running here; [] when it can run."""
        try:
            self.load(workflow_yaml)
        except DocumentError as exc:
            return list(exc.issues)
        return []

    async def aclose(self) -> None:
        """Release shared I/O (HTTP pool, gRPC channels) and stop detached processes and subflows."""
        await self.io.aclose()

    def cancel(self, execution_id: str) -> bool:
        """Cancel a running execution; it ends `cancelled`. False when nothing runs under that id."""
        entry = self._in_flight.get(execution_id)
        if entry is None:
            return False
        entry[1].cancel_requested = True
        entry[0].cancel()
        return True

    @property
    def in_flight(self) -> frozenset[str]:
        """Execution ids currently running."""
        return frozenset(self._in_flight)

    async def run(
        self,
        cmd: ExecuteCommand,
        *,
        listener: ProgressListener | None = None,
        on_checkpoint: CheckpointHook | None = None,
    ) -> ExecutionResult:
        """Run one command to its end. Raises DocumentError for a document that cannot run (nothing is emitted).

        Cancelled through `cancel()`, the result says `cancelled`; if the caller's own task is cancelled, the
        events still say so and the CancelledError propagates.
        """
        workflow = self.load(cmd.workflow_yaml)
        run = Run(self, cmd, workflow, listener or self.listener)
        current = asyncio.current_task()
        assert current is not None, "Executor.run must run inside an asyncio task"
        self._in_flight[cmd.execution_id] = (current, run)
        try:
            return await _execute(run, on_checkpoint)
        finally:
            self._in_flight.pop(cmd.execution_id, None)


async def _execute(run: Run, on_checkpoint: CheckpointHook | None) -> ExecutionResult:
    # Reporting the start and the end is inside the try: a cancel that lands while the listener applies
    # back-pressure still ends the run with `workflow.cancelled`, never without a terminal event.
    wf, cmd = run.workflow, run.cmd
    try:
        await run.emit(
            WORKFLOW_STARTED,
            {
                "name": run.name,
                "definition": {"namespace": wf.namespace, "name": wf.name, "version": wf.version},
                "startedAt": run.workflow_var["startedAt"]["iso8601"],
            },
        )
        output = _encodable(await _run_workflow(run, on_checkpoint))
        await run.emit(WORKFLOW_COMPLETED, {"name": run.name, "completedAt": now_iso(), "output": output})
    except WorkflowError as exc:
        error = run.scrub_error(exc.to_dict())
        await run.emit(WORKFLOW_FAULTED, {"name": run.name, "faultedAt": now_iso(), "error": error})
        return ExecutionResult(execution_id=cmd.execution_id, status=Status.FAULTED, error=error)
    except asyncio.CancelledError:
        await run.emit(WORKFLOW_CANCELLED, {"name": run.name, "cancelledAt": now_iso()})
        current = asyncio.current_task()
        if not run.cancel_requested or current is None or current.uncancel() > 0:
            raise
        return ExecutionResult(execution_id=cmd.execution_id, status=Status.CANCELLED, error=dict(_CANCELLED))
    return ExecutionResult(execution_id=cmd.execution_id, status=Status.COMPLETED, output=output)


_CANCELLED = {
    "type": "https://serverlessworkflow.io/spec/1.0.0/errors/runtime",
    "status": 499,
    "title": "Cancelled",
    "detail": "the execution was cancelled",
}


def _encodable(output: Any) -> Any:
    """The output as every ingress can encode it (one serialization per execution, a walk only when needed)."""
    try:
        orjson.dumps(output)
    except orjson.JSONEncodeError:
        return json_safe(output)
    return output


async def _run_workflow(run: Run, on_checkpoint: CheckpointHook | None) -> Any:
    wf, cmd = run.workflow, run.cmd
    missing = [name for name in wf.secrets if name not in cmd.secrets]
    if missing:
        raise AuthorizationError(
            "Missing secret", detail=f"secrets not provided: {', '.join(missing)}", instance="/use/secrets"
        )
    base = {"secrets": run.secrets, "workflow": run.workflow_var, "runtime": run.runtime_var}
    seconds = _remaining(wf, cmd)
    deadline = nullcontext() if seconds is None else Deadline(seconds, "workflow")
    async with deadline:
        if wf.input_schema is not None:
            _at(lambda: wf.input_schema.check(cmd.input), "/input/schema")  # type: ignore[union-attr]
        data = cmd.input if wf.input_from is None else _at(lambda: wf.input_from(cmd.input, base), "/input/from")  # type: ignore[misc]
        start = 0
        if cmd.resume_from is not None:
            start, data, run.context = (
                cmd.resume_from.next_task,
                cmd.resume_from.output,
                cmd.resume_from.context,
            )
        try:
            data = await run.run_list(wf.do, data, {}, start=start, on_step=_checkpointer(run, on_checkpoint))
        except EndWorkflow as end:
            data = end.output
    variables = {**base, "context": run.context}
    output = data if wf.output_as is None else _at(lambda: wf.output_as(data, variables), "/output/as")  # type: ignore[misc]
    if wf.output_schema is not None:
        _at(lambda: wf.output_schema.check(output), "/output/schema")  # type: ignore[union-attr]
    return output


def _remaining(wf: Workflow, cmd: ExecuteCommand) -> float | None:
    limits = []
    if wf.timeout is not None:
        limits.append(wf.timeout.seconds())
    if cmd.deadline is not None:
        limits.append(max(0.0, (cmd.deadline - datetime.now(UTC)).total_seconds()))
    return min(limits) if limits else None


def _at(step: Callable[[], Any], pointer: str) -> Any:
    try:
        return step()
    except WorkflowError as exc:
        raise exc.at(pointer) from None


def _checkpointer(run: Run, hook: CheckpointHook | None) -> Callable[[int, Any], Awaitable[None]] | None:
    if hook is None:
        return None

    async def step(next_task: int, output: Any) -> None:
        await hook(Checkpoint(next_task=next_task, output=output, context=run.context))

    return step
