"""The execution service: the one way every ingress runs a command.

It owns what the ingresses share: deduplication by `execution_id` (the same request again joins the existing
execution, unless it is a later attempt that `_repeat` runs afresh; a different request under a taken id is a
conflict), the cap on concurrent executions, the fan-out of each lifecycle event to the reporter and to the
execution's stream subscribers, the flush of the terminal event before an execution counts as done, status
lookup, cancellation, and the drain at shutdown. Every run ends with a terminal event, even one cancelled where the
engine cannot report it; a finished execution is remembered (for dedupe and lookup) without its document, input and
secrets.

Each execution runs in a task of its own, not in the ingress call that started it: a gRPC `Execute` returns at
once, a stream client that hangs up does not stop the run, and an ingress that wants the run tied to its own
cancellation (a Temporal activity) passes `linked=True` to `run`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import hashlib
import itertools
import logging
import time
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from callbacks import CallbackError, CloudEvent, DeadLetteredError, FlushTimeoutError
from executor import (
    DEFAULT_TENANT,
    WORKFLOW_CANCELLED,
    WORKFLOW_FAULTED,
    Checkpoint,
    EventBus,
    ExecuteCommand,
    ExecutionResult,
    Executor,
    Issue,
    LifecycleEvent,
    ProgressListener,
    Source,
    Status,
    spec_error,
)

from ._errors import ConsumerError
from ._events import DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_SOURCE, bound_output, to_cloudevent
from ._logging import EXECUTION_ID, command_secrets, secrets_masked
from ._metrics import Metrics
from ._scheduler import FairScheduler
from .payloads import JSON, PayloadError, PayloadStore

logger = logging.getLogger("consumer.service")

DEFAULT_MAX_CONCURRENT = 100
DEFAULT_MAX_QUEUED = 1000
DEFAULT_FLUSH_TIMEOUT = 30.0
DEFAULT_RETAIN = 10_000
HISTORY = 1000
"""Events of a running execution kept for stream subscribers that join late (they see at most the last ones)."""
_CANCEL_SETTLE = 2.0  # seconds cancelled leftovers get to emit and report their events at shutdown

CheckpointHook = Callable[[Checkpoint], Awaitable[None]]


class ServiceError(ConsumerError):
    """Root of the reasons the service refuses a request; each ingress maps them to its own terms."""


class IntakeClosedError(ServiceError):
    """The process is shutting down and takes no new executions."""


class CapacityError(ServiceError):
    """The maximum of concurrent executions is running."""


class RunEndingError(CapacityError):
    """A later attempt came while the run of an earlier attempt of that execution is being cancelled: it has no
    room until that run has ended (`start_when_room` waits for it, as it waits for a slot)."""


class ConflictError(ServiceError):
    """The execution id is taken by a different request (another document or input)."""


class UnknownExecutionError(ServiceError, LookupError):
    """No execution with that id is known to this process."""


class Runner(Protocol):
    """What the service needs of whatever runs executions: `executor.Executor` in-process, or `WorkerPool`."""

    bus: EventBus

    def load(self, workflow_yaml: str) -> Any: ...

    def validate(self, workflow_yaml: str) -> list[Issue]: ...

    def check(self, workflow_yaml: str) -> tuple[list[Issue], list[Issue]]: ...

    def cancel(self, execution_id: str) -> bool: ...

    async def run(
        self, cmd: ExecuteCommand, *, listener: ProgressListener, on_checkpoint: CheckpointHook | None = None
    ) -> ExecutionResult: ...

    async def aclose(self) -> None: ...


class EventReporter(Protocol):
    """What the service needs of `callbacks.Reporter`."""

    async def submit(self, event: CloudEvent) -> None: ...

    def submit_nowait(self, event: CloudEvent) -> bool: ...

    async def flush(self, execution_id: str, timeout: float | None = None) -> None: ...  # noqa: ASYNC109


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionState:
    """A snapshot of one execution.

    Attributes:
        result: None while running; set once the run ended and its terminal event was flushed (or the flush
            gave up, see `report_error`).
        progress_confirmed: The sink confirmed the terminal event (also when that happens after the flush timed
            out: the service keeps waiting for it and updates the state).
        report_error: Why the terminal event is not confirmed (flush timed out, dead-lettered, reporter closed).
        progress_refused: The sink refused the terminal event for good (it is dead-lettered): unlike a timeout or
            a stopped reporter, running or resending again cannot get it confirmed.
        interrupted: The run was cancelled because the process shut down, not by a request: an ingress that can
            hand the work back (AMQP requeue, Temporal retry) should do so instead of reporting it done.
    """

    execution_id: str
    source: str
    attempt: int
    started_at: float
    ended_at: float | None = None
    result: ExecutionResult | None = None
    progress_confirmed: bool = False
    report_error: str | None = None
    progress_refused: bool = False
    interrupted: bool = False

    @property
    def running(self) -> bool:
        """True until the result is known and reported."""
        return self.result is None


class _Fanout:
    """The listener of one run: envelope, stream subscribers, task timings, then the reporter."""

    def __init__(self, service: ExecutionService, execution: Execution) -> None:
        self._execution = execution
        self._reporter = service._reporter
        self._source = service._source
        self._max_output = service.max_event_output_bytes
        self._payloads = service.payloads
        self._metrics = service.metrics
        self._task_started: dict[str, float] = {}
        self.sequence = 0  # of the last event handed over
        self._prepared: tuple[CloudEvent, bytes | None] | None = None  # what `publish_nowait` could not hand over
        self.ended = False  # a terminal event was handed over

    async def publish(self, event: LifecycleEvent) -> None:
        envelope, output_json = self._envelope(event)
        if self._payloads is not None and output_json is not None:
            envelope = await self._with_output_ref(envelope, output_json)
        try:
            await self._reporter.submit(envelope)
        except CallbackError as exc:
            # Only after the reporter stopped: the run goes on, its stream subscribers still see the event.
            logger.error("progress event %d not reported: %s", event.sequence, exc)
        self._handed(event, envelope)

    def publish_nowait(self, event: LifecycleEvent) -> bool:
        """`publish` when nothing has to wait (the outbox has room, no output goes to the payload store): True
        once done; False, with nothing done, when `publish` must be awaited instead."""
        envelope, output_json = self._envelope(event)
        if self._payloads is not None and output_json is not None:
            self._prepared = envelope, output_json  # `publish` follows with the same event: not encoded twice
            return False
        try:
            if not self._reporter.submit_nowait(envelope):
                self._prepared = envelope, output_json
                return False
        except CallbackError as exc:
            logger.error("progress event %d not reported: %s", event.sequence, exc)
        self._handed(event, envelope)
        return True

    def _envelope(self, event: LifecycleEvent) -> tuple[CloudEvent, bytes | None]:
        """The event's envelope, and the output's JSON when the envelope carries only its preview."""
        prepared, self._prepared = self._prepared, None
        if prepared is not None and prepared[0].sequence == event.sequence:
            return prepared
        data, output_json = bound_output(event.data, self._max_output)
        metadata = self._execution.command.metadata
        envelope = to_cloudevent(event, metadata=metadata, source=self._source, data=data)
        return envelope, output_json or event.output_json

    def _handed(self, event: LifecycleEvent, envelope: CloudEvent) -> None:
        # Recorded once handed over: a cancelled hand-over leaves no trace, as the engine counts its sequence.
        self._execution.record(envelope)
        self.sequence, self.ended = event.sequence, self.ended or envelope.terminal
        self._time_task(event)

    async def _with_output_ref(self, envelope: CloudEvent, output_json: bytes) -> CloudEvent:
        """The envelope whose `outputTruncated` also carries `ref`, the full output in the payload store (a
        control plane fetches it there); without it when the store fails (logged: the event must still go)."""
        assert self._payloads is not None
        try:
            ref = await self._payloads.put(output_json, JSON)
        except PayloadError as exc:
            logger.warning("event %d: output not stored, preview only: %s", envelope.sequence, exc)
            return envelope
        truncated = {**envelope.data["outputTruncated"], "ref": ref.to_dict()}
        return dataclasses.replace(envelope, data={**envelope.data, "outputTruncated": truncated})

    async def fault(self, error: Mapping[str, Any]) -> None:
        """The engine crashed before reporting how the run ended: a bare `workflow.faulted` in its place.

        Straight to the reporter and the subscribers, past the envelope of `publish`, which may be what failed.
        """
        if self.ended:
            return
        now = _now()
        event = LifecycleEvent(
            execution_id=self._execution.execution_id,
            attempt=self._execution.command.attempt,
            sequence=self.sequence + 1,
            type=WORKFLOW_FAULTED,
            time=now,
            data={"name": self._execution.execution_id, "faultedAt": now, "error": dict(error)},
        )
        envelope = to_cloudevent(event, metadata=self._execution.command.metadata, source=self._source)
        try:
            await self._reporter.submit(envelope)
        except CallbackError as exc:
            logger.error("terminal event not reported: %s", exc)
        self._execution.record(envelope)
        self.sequence, self.ended = event.sequence, True

    def _time_task(self, event: LifecycleEvent) -> None:
        task = event.data.get("task")
        if not isinstance(task, str):
            return
        kind = event.type.rsplit(".", 2)[-2]
        if kind == "started":
            self._task_started[task] = time.monotonic()
        elif task in self._task_started and kind in ("completed", "faulted", "cancelled"):
            self._metrics.task_timer(kind).observe(time.monotonic() - self._task_started.pop(task))


class Execution:
    """One execution known to the service: its command, live events, and final state."""

    def __init__(self, command: ExecuteCommand, fingerprint: bytes) -> None:
        self.command = command
        self.fingerprint = fingerprint
        self.task: asyncio.Task[None] | None = None
        self.ended = False  # the executor returned; only the flush may still be going
        self.interrupted = False
        self.cancel_requested = False  # the service asked the executor to cancel the run
        self.cancelled_for: int | None = None  # the attempt whose cancel that was (see `_repeat`); None: a request
        self.latest_attempt = command.attempt  # the latest attempt that started or joined this run
        self.on_checkpoint: CheckpointHook | None = None  # the latest attempt's hook (see `ExecutionService.start`)
        self.last_checkpoint: Checkpoint | None = None
        self.queued = False  # waiting for a run slot (the fair scheduler's turn); set by the run task itself
        self._started_at = time.time()
        self._ended_at: float | None = None
        self._result: ExecutionResult | None = None
        self._report_error: str | None = None
        self._confirmed = False
        self._refused = False
        self._history: deque[CloudEvent] = deque(maxlen=HISTORY)
        self._subscribers: set[asyncio.Queue[CloudEvent | None]] = set()
        self._done = asyncio.Event()

    @property
    def execution_id(self) -> str:
        """The caller's id."""
        return self.command.execution_id

    @property
    def done(self) -> bool:
        """True once the result is known and its terminal event reported (or given up on)."""
        return self._done.is_set()

    def state(self) -> ExecutionState:
        """A snapshot."""
        return ExecutionState(
            execution_id=self.execution_id,
            source=self.command.source.value,
            attempt=self.command.attempt,
            started_at=self._started_at,
            ended_at=self._ended_at,
            result=self._result if self.done else None,
            progress_confirmed=self._confirmed,
            report_error=self._report_error,
            progress_refused=self._refused,
            interrupted=self.interrupted,
        )

    async def wait(self) -> ExecutionState:
        """The final state, once the execution is done."""
        await self._done.wait()
        return self.state()

    async def events(self) -> AsyncIterator[CloudEvent]:
        """The run's lifecycle events so far (the last `HISTORY`), then the rest as they happen, until it ends.

        A subscriber that joins after the execution is done gets nothing: its final state is `wait()`.
        """
        if self.done:
            return
        # Copying the history and subscribing happen without an await in between: no event is missed or doubled.
        queue: asyncio.Queue[CloudEvent | None] = asyncio.Queue()
        backlog = list(self._history)
        self._subscribers.add(queue)
        try:
            for event in backlog:
                yield event
            while (live := await queue.get()) is not None:
                yield live
        finally:
            self._subscribers.discard(queue)

    def record(self, event: CloudEvent) -> None:
        """Keep `event` for late subscribers and hand it to the current ones."""
        self._history.append(event)
        for queue in self._subscribers:
            queue.put_nowait(event)

    def finish(
        self, result: ExecutionResult, *, confirmed: bool, report_error: str | None, refused: bool = False
    ) -> None:
        """Set the final state, release waiters and subscribers, and drop what only the run needed.

        A finished execution is remembered for dedupe and lookup (`retain` of them): it keeps its fingerprint,
        not its document, input and secrets, which can be megabytes each and must not outlive the run.
        """
        self._result, self._confirmed, self._report_error = result, confirmed, report_error
        self._refused = refused
        self._ended_at = time.time()
        self._history.clear()
        self.command = dataclasses.replace(self.command, workflow_yaml="", input=None, secrets={}, resume_from=None)
        for queue in self._subscribers:
            queue.put_nowait(None)
        self._done.set()

    def mark_cancelled(self, *, interrupt: bool, attempt: int | None) -> None:
        """Record that the service asked the run to stop: for shutdown (`interrupt`), for one attempt given up
        (`attempt`), or on request (neither); the first cancel says for whom."""
        if not self.cancel_requested:
            self.cancelled_for = attempt
        self.interrupted = self.interrupted or interrupt
        self.cancel_requested = True

    def confirm_late(self) -> None:
        """The sink confirmed the terminal event after the flush had given up waiting."""
        self._confirmed, self._report_error = True, None


class _Repeat(enum.Enum):
    """What a repeat of a known execution does (see `_repeat`)."""

    JOIN = "join"  # share the execution: its run while it goes on, its final state once done
    WAIT = "wait"  # wait for the execution's run to end, then decide again
    RUN = "run"  # run afresh, as an execution of its own under the same id


def _repeat(existing: Execution, command: ExecuteCommand) -> _Repeat:
    """What `command` does, a repeat of `existing` (same id, document, input and tenant) as attempt n.

        the existing execution E, and n                                   the repeat
        ────────────────────────────────────────────────────────────────  ──────────────────────────────────
        n not later than E's attempt                                      JOIN (a duplicate; reads a done E)
        E cancelled for an attempt before n, not done (running, flushing) WAIT for E, then decide again
        E done, cancelled for an attempt before n, ended cancelled        RUN
        E done, interrupted (shutdown) or its end not confirmed           RUN
        anything else: E running healthy, cancelled on request, or done   JOIN

    A cancel "for an attempt" is one an ingress makes because it gave up that attempt, not the execution: a
    Temporal activity the server cancelled (its heartbeat timed out and a retry is scheduled), a `run(linked=True)`
    caller cancelled. A later attempt does not inherit it: it waits until the dying run has let go of the id, then
    runs from its own `resume_from`. A cancel on request (gRPC `Cancel`) stops the execution: a later attempt (an
    AMQP redelivery) joins or reads it cancelled. So an AMQP redelivery or a Temporal retry gets a second chance
    after the sink was unreachable, the runner was shutting down, or the previous attempt was given up.
    """
    if command.attempt <= existing.command.attempt:
        return _Repeat.JOIN
    given_up = existing.cancelled_for is not None and existing.cancelled_for < command.attempt
    if not existing.done:
        return _Repeat.WAIT if given_up else _Repeat.JOIN
    state = existing.state()
    assert state.result is not None, "a done execution has a result"
    ended_given_up = given_up and state.result.status is Status.CANCELLED
    return _Repeat.RUN if ended_given_up or state.interrupted or not state.progress_confirmed else _Repeat.JOIN


def _checkpointer(execution: Execution) -> CheckpointHook:
    """The run's checkpoint hook: remembers the checkpoint and hands it to the execution's current hook."""

    async def checkpoint(checkpoint: Checkpoint) -> None:
        execution.last_checkpoint = checkpoint
        if execution.on_checkpoint is not None:
            await execution.on_checkpoint(checkpoint)

    return checkpoint


def fingerprint(command: ExecuteCommand) -> bytes:
    """What makes two requests under one execution id the same request: the document and the input."""
    digest = hashlib.blake2b(command.workflow_yaml.encode(), digest_size=16)
    digest.update(b"\x00" + orjson.dumps(command.input, option=orjson.OPT_SORT_KEYS, default=str))
    return digest.digest()


class ExecutionService:
    """Runs commands for every ingress; see the module docstring.

    Args:
        executor: What runs the executions: an in-process `Executor` or the supervisor's `WorkerPool`.
        reporter: The process's progress reporter (started and stopped by the caller).
        max_concurrent: Executions running at once (all tenants); more wait for a slot, in tenant-fair order.
        max_queued: Executions of one tenant accepted beyond `max_concurrent` to wait for a slot; more of that
            tenant are refused with `CapacityError` (each tenant has its own share).
        tenant_max_concurrent: Executions of one tenant running at once (None: see `FairScheduler`).
        flush_timeout: Seconds to wait for the sink to confirm an execution's terminal event.
        event_source: CloudEvents `source` of lifecycle events.
        max_event_output_bytes: Outputs larger than this (as JSON) are truncated in events, not in results.
        metrics: Where to count (a private registry by default).
        retain: Finished executions remembered for dedupe and lookup (oldest forgotten first).
        payloads: The payload store: an event whose output is truncated carries a reference to the full output
            (`outputTruncated.ref`); None leaves the preview only.
    """

    def __init__(
        self,
        executor: Runner | Executor,
        reporter: EventReporter,
        *,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        max_queued: int = DEFAULT_MAX_QUEUED,
        tenant_max_concurrent: int | None = None,
        flush_timeout: float = DEFAULT_FLUSH_TIMEOUT,
        event_source: str = DEFAULT_SOURCE,
        max_event_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        metrics: Metrics | None = None,
        retain: int = DEFAULT_RETAIN,
        payloads: PayloadStore | None = None,
    ) -> None:
        self.executor: Runner = executor
        self.metrics = metrics or Metrics()
        self._reporter = reporter
        self._max_concurrent = max_concurrent
        self._max_accepted = max_concurrent + max_queued
        self._accepted: Counter[str] = Counter()  # per tenant: running or waiting for a slot
        self.scheduler = FairScheduler(max_concurrent, tenant_max_concurrent, self.metrics)
        self._flush_timeout = flush_timeout
        self._source = event_source
        self.max_event_output_bytes = max_event_output_bytes
        self.payloads = payloads
        self._retain = retain
        self._executions: OrderedDict[str, Execution] = OrderedDict()
        self._running: dict[str, Execution] = {}
        self._accepting = True
        self._intake_listeners: list[Callable[[], None]] = []
        self._failure_listeners: list[Callable[[str], None]] = []
        self._helpers: set[asyncio.Task[Any]] = set()
        self._room = asyncio.Event()  # set whenever an execution leaves `_running` (or intake closes)

    @property
    def accepting(self) -> bool:
        """False once `close_intake` ran."""
        return self._accepting

    @property
    def running(self) -> int:
        """Executions not done yet."""
        return len(self._running)

    def validate(self, workflow_yaml: str) -> list[Issue]:
        """Every problem that stops the document from running here; [] when it can run."""
        return self.executor.validate(workflow_yaml)

    def check(self, workflow_yaml: str) -> tuple[list[Issue], list[Issue]]:
        """The document's errors and, when it can run, its warnings (a `schedule` left to the caller)."""
        return self.executor.check(workflow_yaml)

    def get(self, execution_id: str, *, tenant: str | None = None) -> Execution | None:
        """The execution with that id, running or remembered; with `tenant`, only if it is that tenant's."""
        execution = self._executions.get(execution_id)
        if execution is None or (tenant is not None and execution.command.tenant != tenant):
            return None
        return execution

    def start(self, command: ExecuteCommand, *, on_checkpoint: CheckpointHook | None = None) -> tuple[Execution, bool]:
        """Start `command` in the background, or find the execution it repeats.

        Returns:
            The execution, and True when it already existed (nothing new was started).

        Raises:
            ConflictError: The id is taken by a different document or input.
            executor.DocumentError: The document cannot run.
            IntakeClosedError: Shutting down.
            CapacityError: Too many executions are running; `RunEndingError`: the id's run is being cancelled for
                an earlier attempt (see `_repeat`).
        """
        key = fingerprint(command)
        existing = self._executions.get(command.execution_id)
        if existing is not None:
            if existing.fingerprint != key or existing.command.tenant != command.tenant:
                self._reject(command.source.value, "conflict")
                raise ConflictError(f"execution {command.execution_id} exists with a different document or input")
            repeat = _repeat(existing, command)
            if repeat is _Repeat.WAIT:
                raise RunEndingError(f"execution {command.execution_id}: an earlier attempt's run is being cancelled")
            if repeat is _Repeat.JOIN:
                if command.attempt > existing.latest_attempt and on_checkpoint and existing.on_checkpoint:
                    # The run's checkpoints go to the attempt the ingress still waits on (a Temporal retry that
                    # joined: the earlier attempt's heartbeats no longer count). It catches up from
                    # `last_checkpoint` itself.
                    existing.on_checkpoint = on_checkpoint
                existing.latest_attempt = max(existing.latest_attempt, command.attempt)
                return existing, True
        self._admit(command)
        execution = Execution(command, key)
        execution.on_checkpoint = on_checkpoint
        self._remember(execution)
        hook = None if on_checkpoint is None else _checkpointer(execution)
        execution.task = asyncio.create_task(self._execute(execution, hook), name=command.execution_id)
        return execution, False

    async def start_when_room(
        self, command: ExecuteCommand, *, on_checkpoint: CheckpointHook | None = None
    ) -> tuple[Execution, bool]:
        """`start`, but wait for room under the cap instead of raising `CapacityError`.

        For ingresses that pull work and hold it meanwhile (an AMQP delivery, a Temporal activity): handing it
        back would burn a delivery or retry attempt on a refusal that says nothing about the work itself. A later
        attempt whose execution's run is being cancelled for an earlier attempt waits the same way, for that run
        to end (`RunEndingError`).

        Raises:
            Everything `start` raises but `CapacityError`.
        """
        while True:
            try:
                return self.start(command, on_checkpoint=on_checkpoint)
            except CapacityError:
                self._room.clear()
                await self._room.wait()

    async def run(
        self, command: ExecuteCommand, *, on_checkpoint: CheckpointHook | None = None, linked: bool = False
    ) -> ExecutionState:
        """Start `command` (or join the execution it repeats) and return its final state.

        Args:
            command: What to run.
            on_checkpoint: Called after each completed top-level task (Temporal heartbeats).
            linked: Cancel the execution when the caller is cancelled (the caller owns the run).

        Raises:
            Everything `start` raises.
        """
        execution, _ = self.start(command, on_checkpoint=on_checkpoint)
        try:
            return await execution.wait()
        except asyncio.CancelledError:
            if linked:
                # Not awaited here: this task is being cancelled. For this attempt: a later one that joined keeps it.
                self._spawn(self._cancel_run(execution, attempt=command.attempt))
            raise

    async def cancel(
        self, execution_id: str, *, tenant: str | None = None, attempt: int | None = None
    ) -> tuple[bool, ExecutionState]:
        """Cancel a running execution (with `tenant`: only that tenant's) and wait until it is done.

        Args:
            execution_id: The execution.
            tenant: Only that tenant's execution.
            attempt: Cancel for this attempt only, because its ingress gave it up (a Temporal activity cancelled):
                a later attempt then runs afresh instead of inheriting the cancel, and when a later attempt has
                joined the run already, nothing is cancelled and the call returns at once (see `_repeat`). None:
                cancel the execution itself.

        Returns:
            Whether this call cancelled it (False: it had already ended, or a later attempt holds it), and its state
            (final, unless a later attempt holds it).

        Raises:
            UnknownExecutionError: No execution with that id.
        """
        execution = self.get(execution_id, tenant=tenant)
        if execution is None:
            raise UnknownExecutionError(f"no execution {execution_id}")
        cancelled = await self._cancel_run(execution, attempt=attempt)
        if _superseded(execution, attempt):
            return False, execution.state()
        return cancelled, await execution.wait()

    async def report_rejected(
        self,
        *,
        execution_id: str,
        source: Source,
        attempt: int,
        error: Mapping[str, Any],
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Report a message that names an execution but could not become a run: one `workflow.faulted` event.

        The control plane learns why the execution it asked for never started (the ingress also dead-letters or
        refuses the message). Sequence 1 of the attempt: nothing else is ever emitted for it.
        """
        now = _now()
        event = LifecycleEvent(
            execution_id=execution_id,
            attempt=attempt,
            sequence=1,
            type=WORKFLOW_FAULTED,
            time=now,
            data={"name": execution_id, "faultedAt": now, "error": dict(error)},
        )
        await self._reporter.submit(to_cloudevent(event, metadata=metadata, source=self._source))

    async def publish_event(self, event: dict[str, Any], tenant: str = DEFAULT_TENANT) -> None:
        """Hand a structured CloudEvent to `tenant`'s event bus (that tenant's `listen` tasks receive it)."""
        await self.executor.bus.publish(event, tenant)

    def add_failure_listener(self, listener: Callable[[str], None]) -> None:
        """Call `listener(reason)` when an ingress reports that it can no longer take work (the app stops)."""
        self._failure_listeners.append(listener)

    def report_failure(self, reason: str) -> None:
        """An ingress broke after start-up; the process should stop and be restarted."""
        for listener in self._failure_listeners:
            listener(reason)

    def add_intake_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener` once when intake closes (an ingress stops pulling work, health flips)."""
        self._intake_listeners.append(listener)

    def close_intake(self) -> None:
        """Refuse new executions from now on; idempotent."""
        if not self._accepting:
            return
        self._accepting = False
        self._room.set()  # waiters for room learn that intake closed
        for listener in self._intake_listeners:
            try:
                listener()
            except Exception:
                logger.exception("intake listener failed")

    async def drain(self, timeout: float) -> list[str]:  # noqa: ASYNC109 - the deadline is the contract
        """Close intake, wait up to `timeout` for running executions, then cancel the rest.

        Cancelled leftovers emit their `cancelled` events (and are marked `interrupted`); their flush is bounded
        by the reporter's own stop, which the caller runs next.

        Returns:
            The ids of the executions that had to be cancelled.
        """
        self.close_intake()
        tasks = {e.task: e for e in self._running.values() if e.task is not None}
        if not tasks:
            return []
        _, pending = await asyncio.wait(tasks, timeout=max(timeout, 0.0))
        # A run that already ended and only waits for its confirmation is not cancelled: it completed.
        leftovers = [tasks[task] for task in pending if await self._cancel_run(tasks[task], interrupt=True)]
        if leftovers:
            logger.warning("cancelled %d executions at shutdown: %s", len(leftovers), _ids(leftovers))
        if pending:
            await asyncio.wait(pending, timeout=_CANCEL_SETTLE)
        return [execution.execution_id for execution in leftovers]

    async def wait_closed(self, timeout: float) -> None:  # noqa: ASYNC109 - the deadline is the contract
        """Wait for the last execution tasks (after the reporter stopped, their flushes return at once)."""
        tasks = [e.task for e in self._running.values() if e.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    def _admit(self, command: ExecuteCommand) -> None:
        source = command.source.value
        if not self._accepting:
            self._reject(source, "closed")
            raise IntakeClosedError("the runner is shutting down")
        try:
            self.executor.load(command.workflow_yaml)
        except Exception:
            self._reject(source, "invalid")
            raise
        # Per tenant: one tenant's flood fills its own share, never another tenant's (docs/isolation.md).
        if self._accepted[command.tenant] >= self._max_accepted:
            self._reject(source, "capacity")
            raise CapacityError(f"{self._max_accepted} executions of this tenant are running or waiting, the maximum")

    def _release(self, tenant: str) -> None:
        self._accepted[tenant] -= 1
        if self._accepted[tenant] <= 0:
            del self._accepted[tenant]  # tenants come and go: keep no entry for one with nothing running

    def _reject(self, source: str, reason: str) -> None:
        self.metrics.rejected.labels(source, reason).inc()

    def _remember(self, execution: Execution) -> None:
        self._executions[execution.execution_id] = execution
        self._running[execution.execution_id] = execution
        self._accepted[execution.command.tenant] += 1
        self.metrics.in_flight.set(len(self._running))
        excess = len(self._executions) - len(self._running) - self._retain
        if excess > 0:
            # Oldest first, stopping at the first `excess` finished ones: not a scan of all `retain` per start.
            finished = (key for key, known in self._executions.items() if known.done)
            for key in list(itertools.islice(finished, excess)):
                del self._executions[key]

    async def _cancel_run(self, execution: Execution, *, interrupt: bool = False, attempt: int | None = None) -> bool:
        """Ask the executor to cancel the run; True when it was still going.

        Args:
            execution: The execution to cancel.
            interrupt: Mark it `interrupted` (shutdown) if, and only if, this call cancels it.
            attempt: Cancel for this attempt only (see `cancel`): not when a later attempt has joined the run.
        """
        # A task created a moment ago registers with the executor on its first step: give it that step.
        for _ in range(100):
            # Checked in the same step as the cancel: a join and a cancel for an earlier attempt never cross.
            if execution.ended or _superseded(execution, attempt):
                return False
            if execution.queued and execution.task is not None:
                if execution.cancel_requested:
                    return False  # cancelled already: its `cancelled` event is on its way
                # Still waiting for its turn: nothing runs yet, so the wait itself is what is cancelled.
                execution.mark_cancelled(interrupt=interrupt, attempt=attempt)
                execution.task.cancel()
                return True
            if self.executor.cancel(execution.execution_id):
                # Set before the run task resumes, so its final state already says so.
                execution.mark_cancelled(interrupt=interrupt, attempt=attempt)
                return True
            await asyncio.sleep(0)
        return False

    async def _execute(self, execution: Execution, on_checkpoint: CheckpointHook | None) -> None:
        command = execution.command
        EXECUTION_ID.set(command.execution_id)
        began = time.monotonic()
        with secrets_masked(command_secrets(command.secrets)):
            logger.info("execution started (source %s, attempt %d)", command.source.value, command.attempt)
            try:
                result = await self._run(execution, _Fanout(self, execution), on_checkpoint)
                execution.ended = True
                unconfirmed = await self._confirm(command.execution_id)
            except asyncio.CancelledError:
                # Cancelled from outside the executor (the loop is closing): waiters must still be released.
                execution.finish(cancelled_result(command.execution_id), confirmed=False, report_error="task cancelled")
                raise
            finally:
                self._running.pop(command.execution_id, None)
                self._release(command.tenant)
                self.metrics.in_flight.set(len(self._running))
                self._room.set()
            self._conclude(execution, result, unconfirmed, time.monotonic() - began)

    def _conclude(
        self, execution: Execution, result: ExecutionResult, unconfirmed: CallbackError | None, seconds: float
    ) -> None:
        """Record how the execution ended, and keep waiting for a confirmation that timed out."""
        report_error = None if unconfirmed is None else str(unconfirmed)
        refused = isinstance(unconfirmed, DeadLetteredError)
        execution.finish(result, confirmed=unconfirmed is None, report_error=report_error, refused=refused)
        if isinstance(unconfirmed, FlushTimeoutError):
            self._spawn(self._confirm_late(execution))
        source = execution.command.source.value
        self.metrics.executions.labels(source, result.status.value).inc()
        self.metrics.execution_seconds.labels(source).observe(seconds)
        logger.info("execution %s%s", result.status.value, "" if report_error is None else f" ({report_error})")

    async def _run(
        self, execution: Execution, listener: _Fanout, on_checkpoint: CheckpointHook | None
    ) -> ExecutionResult:
        tenant = execution.command.tenant
        execution.queued = True
        try:
            await self.scheduler.acquire(tenant)
        except asyncio.CancelledError:
            if not execution.cancel_requested:
                raise
            return await self._cancelled_before_start(execution, listener)
        execution.queued = False
        try:
            return await self._run_slot(execution, listener, on_checkpoint)
        finally:
            self.scheduler.release(tenant)

    async def _cancelled_before_start(self, execution: Execution, listener: _Fanout) -> ExecutionResult:
        """A cancel that reached an execution still waiting for its turn: its one event says cancelled."""
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        now = _now()
        event = LifecycleEvent(
            execution_id=execution.execution_id,
            attempt=execution.command.attempt,
            sequence=1,
            type=WORKFLOW_CANCELLED,
            time=now,
            data={"name": execution.execution_id, "cancelledAt": now},
        )
        await listener.publish(event)
        return cancelled_result(execution.execution_id, "the execution was cancelled before it started")

    async def _run_slot(
        self, execution: Execution, listener: _Fanout, on_checkpoint: CheckpointHook | None
    ) -> ExecutionResult:
        try:
            return await self.executor.run(execution.command, listener=listener, on_checkpoint=on_checkpoint)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not execution.cancel_requested or task is None or task.uncancel() > 0:
                raise  # not (only) our cancel: the loop is closing
            # Our cancel arrived twice (the engine re-raises then); it has emitted `workflow.cancelled` already.
            return cancelled_result(execution.execution_id, "the execution was cancelled")
        except Exception as exc:
            # The engine handles workflow errors itself; anything here is a bug or a failing listener.
            logger.exception("execution crashed")
            error = spec_error("runtime", "Runtime failure", detail=f"the engine failed: {type(exc).__name__}")
            await listener.fault(error)
            return ExecutionResult(execution_id=execution.execution_id, status=Status.FAULTED, error=error)

    async def _confirm(self, execution_id: str) -> CallbackError | None:
        """Wait for the sink to confirm the terminal event; why it did not, or None when it did."""
        try:
            await self._reporter.flush(execution_id, self._flush_timeout)
        except CallbackError as exc:
            logger.error("terminal event not confirmed: %s", exc)
            return exc
        return None

    async def _confirm_late(self, execution: Execution) -> None:
        """Keep waiting after a flush timed out: the event is still queued, and `GetExecution` (and a redelivery,
        which joins instead of running again) must see the confirmation when it comes."""
        try:
            await self._reporter.flush(execution.execution_id)
        except CallbackError:
            return  # dead-lettered, or the reporter stopped: the state already says not confirmed
        execution.confirm_late()
        logger.info("execution %s: terminal event confirmed late", execution.execution_id)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run a helper in the background, keeping a reference so it is not collected before it ends."""
        helper = asyncio.create_task(coroutine)
        self._helpers.add(helper)
        helper.add_done_callback(self._helpers.discard)


def _superseded(execution: Execution, attempt: int | None) -> bool:
    """A later attempt than `attempt` (a cancel for that attempt) has joined the run: the run is that one's now."""
    return attempt is not None and attempt < execution.latest_attempt


def cancelled_result(execution_id: str, detail: str = "the runner stopped") -> ExecutionResult:
    """The result of a run cancelled before it could end on its own (the spec's error with status 499)."""
    error = spec_error("runtime", "Cancelled", status=499, detail=detail)
    return ExecutionResult(execution_id=execution_id, status=Status.CANCELLED, error=error)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _ids(executions: list[Execution], limit: int = 10) -> str:
    shown = ", ".join(execution.execution_id for execution in executions[:limit])
    return shown + (f" (+{len(executions) - limit})" if len(executions) > limit else "")
