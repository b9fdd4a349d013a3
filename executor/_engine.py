"""The executor: compiles documents (cached) and runs one command per execution from its start to its end event.

The workflow-level data flow is here (input schema → `input.from` → the task list → `output.as` → output schema,
under the workflow's deadline); the walk over the task tree is `executor._run.Run`, handed the task registry of
`executor.tasks`. Decisions where the spec is silent are in docs/runtime-semantics.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import platform
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

from ._bus import EventBus
from ._clock import now_iso
from ._command import Checkpoint, ExecuteCommand, ExecutionResult, Status
from ._depth import MAX_JSON_DEPTH, too_deep
from ._document import DocumentError, Issue, Limits, load_document
from ._errors import AuthorizationError, ExpressionError, WorkflowError, WorkflowRuntimeError, spec_error
from ._expr import json_safe
from ._flow import Deadline, EndWorkflow
from ._io import IOResources
from ._listener import (
    WORKFLOW_CANCELLED,
    WORKFLOW_COMPLETED,
    WORKFLOW_FAULTED,
    WORKFLOW_STARTED,
    NullListener,
    ProgressListener,
)
from ._mask import MASKS
from ._model import Workflow, compile_workflow
from ._options import EngineOptions
from ._run import EventNotDelivered, Run, Sleep, deadline_passed
from .tasks import REGISTRY

logger = logging.getLogger("executor")

RUNTIME_NAME = "workflow-runner"
# Compiled documents are cached by their text: a few hundred small ones cover the documents a control plane sends
# again and again; a big one is compiled each time rather than pinning megabytes (bounds the cache near 64 MiB).
_CACHED_DOCUMENTS = 256
_CACHED_DOCUMENT_CHARS = 256 * 1024
RUNTIME_VERSION = "0.1.0"

CheckpointHook = Callable[[Checkpoint], Awaitable[None]]


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
            workflow = compile_workflow(document.definition, REGISTRY, self.options)
        except DocumentError as exc:
            raise DocumentError(tuple(document.locate(i) for i in exc.issues)) from None
        if workflow.warnings:
            workflow = dataclasses.replace(workflow, warnings=tuple(document.locate(w) for w in workflow.warnings))
        return workflow

    def validate(self, workflow_yaml: str) -> list[Issue]:
        """Every problem that stops the document from running here; [] when it can run."""
        return self.check(workflow_yaml)[0]

    def check(self, workflow_yaml: str) -> tuple[list[Issue], list[Issue]]:
        """The document's errors (`validate`) and, when it can run, its warnings (a `schedule` left to the caller)."""
        try:
            workflow = self.load(workflow_yaml)
        except DocumentError as exc:
            return list(exc.issues), []
        return [], list(workflow.warnings)

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
        for warning in workflow.warnings:
            # Said once per execution: a schedule is not honoured here, and whoever reads the logs should know.
            logger.info("execution %s: %s: %s", cmd.execution_id, warning.path, warning.message)
        run = Run(self, cmd, workflow, listener or self.listener, REGISTRY)
        current = asyncio.current_task()
        assert current is not None, "Executor.run must run inside an asyncio task"
        self._in_flight[cmd.execution_id] = (current, run)
        try:
            # Logs are masked with the run's mask too: it grows with the tokens the runtime derives while running.
            with MASKS.active(run.mask):
                return await _execute(run, on_checkpoint)
        finally:
            self._in_flight.pop(cmd.execution_id, None)
            await self.io.release(run)  # sessions the execution's calls opened (MCP, A2A, AMQP)


async def _execute(run: Run, on_checkpoint: CheckpointHook | None) -> ExecutionResult:
    """Run the workflow and report how it ended: exactly one terminal event, whatever fails on the way.

    Reporting the start and the end is inside the try: a cancel that lands while the listener applies
    back-pressure still ends the run with `workflow.cancelled`. Anything that is not a workflow error (an engine
    bug, a listener that cannot take an event) faults the run with the runtime error naming what failed.
    """
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
        return await _fault(run, exc)
    except asyncio.CancelledError:
        await run.emit(WORKFLOW_CANCELLED, {"name": run.name, "cancelledAt": now_iso()})
        current = asyncio.current_task()
        if not run.cancel_requested or current is None or current.uncancel() > 0:
            raise
        return ExecutionResult(execution_id=cmd.execution_id, status=Status.CANCELLED, error=dict(_CANCELLED))
    except EventNotDelivered as exc:
        return await _fault(run, WorkflowRuntimeError("Lifecycle event not delivered", detail=str(exc)))
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        return await _fault(run, WorkflowRuntimeError("Runtime failure", detail=detail))
    return ExecutionResult(execution_id=cmd.execution_id, status=Status.COMPLETED, output=output)


async def _fault(run: Run, exc: WorkflowError) -> ExecutionResult:
    """Report `workflow.faulted` with `exc`; if the listener cannot take it, a bare one naming why."""
    error = run.scrub_error(exc.to_dict())
    data = {"name": run.name, "faultedAt": now_iso(), "error": error}
    try:
        await run.emit(WORKFLOW_FAULTED, data)
    except EventNotDelivered as failed:
        # Still this run's only terminal event: the one that failed was never handed over (not counted).
        error = run.scrub_error(spec_error("runtime", "Lifecycle event not delivered", detail=str(failed)))
        await run.emit(WORKFLOW_FAULTED, {"name": run.name, "faultedAt": now_iso(), "error": error})
    return ExecutionResult(execution_id=run.cmd.execution_id, status=Status.FAULTED, error=error)


_CANCELLED = spec_error("runtime", "Cancelled", status=499, detail="the execution was cancelled")


def _encodable(output: Any) -> Any:
    """The output as every ingress can encode it (one serialization per execution, a walk only when needed)."""
    try:
        orjson.dumps(output)
    except orjson.JSONEncodeError:
        where = too_deep(output)
        if where is not None:
            shown = where if len(where) <= 48 else where[:47] + "…"
            detail = f"the workflow's output is nested more than {MAX_JSON_DEPTH} levels deep at {shown}"
            raise ExpressionError("Data nested too deep", detail=detail, instance="/output") from None
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
    async with _deadline(wf, cmd):
        if wf.input_schema is not None:
            with _located("/input/schema"):
                wf.input_schema.check(cmd.input)
        data = cmd.input
        if wf.input_from is not None:
            with _located("/input/from"):
                data = wf.input_from(cmd.input, base)
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
    output = data
    if wf.output_as is not None:
        with _located("/output/as"):
            output = wf.output_as(data, variables)
    if wf.output_schema is not None:
        with _located("/output/schema"):
            wf.output_schema.check(output)
    return output


def _deadline(wf: Workflow, cmd: ExecuteCommand) -> Deadline | nullcontext[None]:
    """The nearer of the document's timeout and the caller's deadline, naming which one it is."""
    own = None if wf.timeout is None else wf.timeout.seconds()
    if cmd.deadline is not None:
        left = (cmd.deadline - datetime.now(UTC)).total_seconds()
        if own is None or left <= own:
            return Deadline(max(0.0, left), "workflow", detail=deadline_passed(cmd.deadline.isoformat()))
    return nullcontext() if own is None else Deadline(own, "workflow")


@contextmanager
def _located(pointer: str) -> Iterator[None]:
    """A workflow error raised inside names `pointer` as its instance (unless it already names one)."""
    try:
        yield
    except WorkflowError as exc:
        raise exc.at(pointer) from None


def _checkpointer(run: Run, hook: CheckpointHook | None) -> Callable[[int, Any], Awaitable[None]] | None:
    if hook is None:
        return None

    async def step(next_task: int, output: Any) -> None:
        await hook(Checkpoint(next_task=next_task, output=output, context=run.context))

    return step
