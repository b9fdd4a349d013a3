"""The Temporal activities: `ExecuteWorkflow` (runs one command) and `PlanServerlessWorkflow` (the ready workflow's
local activity that picks the timeouts).

`ExecuteWorkflow` decodes its input, starts the command on the shared execution service (joining the execution
when this process already runs that id, unless that run is being cancelled for an earlier attempt: then it waits
for that run to end and runs afresh from its own resume point; the rule is `_service._repeat`), heartbeats while it
runs and waits for the result:

- each completed top-level task's checkpoint becomes the heartbeat detail at once; a later attempt reads it from
  `activity.info().heartbeat_details` and resumes after that task;
- a heartbeat also goes out every few seconds without a new checkpoint, because Temporal delivers cancellation only
  in a heartbeat's response;
- on cancellation the run is cancelled for this attempt and its `cancelled` events flushed before the cancellation
  is re-raised; a cancel caused by this worker shutting down becomes the retryable `RunnerShuttingDown` instead,
  because the server only accepts "cancelled" from an activity whose cancellation it requested. The service decides
  who keeps the run, in one step with the joins: when a newer attempt has joined the run here (this one timed out
  on the server meanwhile), this attempt's cancel leaves the run to it; when this attempt's cancel comes first, the
  newer attempt waits for the run to end instead of joining it, then resumes from its heartbeat checkpoint;
- when the service is at its concurrency cap the activity waits for room (heartbeating) rather than burning an
  attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
from temporalio import activity
from temporalio.common import RawValue

from executor import Checkpoint, DocumentError, ExecuteCommand

from ._decode import DecodeError
from ._service import (
    ConflictError,
    Execution,
    ExecutionService,
    ExecutionState,
    IntakeClosedError,
    UnknownExecutionError,
)
from ._temporal_codec import (
    UNBOUNDED,
    checkpoint_details,
    checkpoint_from,
    decode_request,
    encode_result,
    failure,
    invalid_document,
    refusal,
    to_payload,
)
from ._temporal_workflow import (
    ACTIVITY_NAME,
    CHECKPOINT_UNAVAILABLE,
    DEFAULT_MAX_ATTEMPTS,
    EXECUTION_CONFLICT,
    INVALID_REQUEST,
    PLAN_ACTIVITY_NAME,
    RUNNER_SHUTTING_DOWN,
)
from .config import Settings
from .payloads import JSON, PayloadCorruptError, PayloadError, PayloadMissingError, PayloadRef, PayloadStore
from .payloads._temporal import Claim, fetch

logger = logging.getLogger("consumer.temporal")

HEARTBEAT_EVERY = 5.0
"""Longest gap between heartbeats: bounds how late a cancellation is noticed."""
CHECKPOINT_REF = "checkpoint_ref"
"""Key of a heartbeat detail that carries its checkpoint as a payload reference."""
TIMEOUT_MARGIN = 30.0
"""Seconds added to a document's own timeout: the engine's timeout must fire (a clean `faulted`) before Temporal's."""


class _Heartbeater:
    """Sends the latest checkpoint as the heartbeat detail: at once when it changes, else every `interval`.

    A checkpoint above `PAYLOAD_OFFLOAD_BYTES` is put in the payload store once and heartbeated as a reference
    (`checkpoint_ref`), so no checkpoint is ever skipped for size and a repeated heartbeat uploads nothing.
    """

    def __init__(self, resumed: Sequence[Any], *, interval: float, store: PayloadStore) -> None:
        # Start from the detail being resumed, so a heartbeat never erases it before a new one exists.
        self._details: list[Any] = list(resumed[-1:])
        self._interval = interval
        self._store = store
        self._changed = asyncio.Event()

    async def checkpoint(self, checkpoint: Checkpoint) -> None:
        """The executor's `on_checkpoint` hook (runs in the execution's task; the loop does the sending)."""
        details = checkpoint_details(checkpoint)
        encoded = orjson.dumps(details, default=str, option=orjson.OPT_NON_STR_KEYS)
        if self._store.offloads(len(encoded)):
            ref = await self._store.put(encoded, JSON)
            details = {"version": details["version"], "next_task": checkpoint.next_task, CHECKPOINT_REF: ref.to_dict()}
        self._details = [details]
        self._changed.set()

    async def run(self) -> None:
        """Heartbeat until cancelled."""
        while True:
            # Wait first: the SDK sends one heartbeat at once and throttles the next, so the first one should
            # carry the first checkpoint rather than nothing.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self._interval)
            self._changed.clear()
            activity.heartbeat(*self._details)


async def _resume_point(details: Sequence[Any], store: PayloadStore) -> Checkpoint | None:
    """The checkpoint an earlier attempt heartbeated, fetched from the store when it was heartbeated by reference.

    Raises:
        ApplicationError: Retryable `CheckpointUnavailable` when the store cannot give it back (a store outage
            passes; an expired object needs the retention raised), naming the reference.
    """
    last = details[-1] if details else None
    if isinstance(last, dict) and CHECKPOINT_REF in last:
        try:
            ref = PayloadRef.from_dict(last[CHECKPOINT_REF], where="checkpoint_ref")
            last = await store.get_json(ref)
        except PayloadError as exc:
            raise failure(CHECKPOINT_UNAVAILABLE, f"cannot resume: {exc}", retryable=True) from None
    return checkpoint_from([last] if last is not None else [])


def _interval() -> float:
    timeout = activity.info().heartbeat_timeout
    return HEARTBEAT_EVERY if not timeout else min(HEARTBEAT_EVERY, timeout.total_seconds() / 3)


class Activities:
    """The activity implementations, bound to the process's settings and execution service.

    Args:
        settings: Process settings (`settings.temporal`, the flush timeout).
        service: The execution service every ingress shares.
    """

    def __init__(self, settings: Settings, service: ExecutionService, store: PayloadStore | None = None) -> None:
        self._settings = settings.temporal
        self._tenancy = settings.isolation.tenancy
        self._flush_timeout = settings.callbacks.flush_timeout
        self._service = service
        self._store = store or PayloadStore.from_settings(settings.payloads)

    def _tenant(self, command: ExecuteCommand) -> str:
        """The tenant the control plane set (`TENANT_METADATA_KEY` metadata); see `consumer._tenants`."""
        try:
            return self._tenancy.from_metadata(command.metadata, command.execution_id)
        except DecodeError as exc:
            raise refusal(exc) from None

    @property
    def limit(self) -> int:
        """No limit on what the activity receives or returns: the data converter offloads payloads above
        `PAYLOAD_OFFLOAD_BYTES` to the payload store, so Temporal's own limit no longer bounds them."""
        return UNBOUNDED

    @activity.defn(name=ACTIVITY_NAME)
    async def execute(self, request: Any) -> RawValue:
        """Run one command and return `{execution_id, status, output, error}` (errors: module docstring).

        The result is the JSON payload Temporal's default converter would make, encoded here (`to_payload`: a
        100 MB output holds the event loop and the memory less). The input is left to the SDK's converter: taken
        raw, its payload would stay referenced by the SDK for the whole run beside the decoded value.
        """
        info = activity.info()
        resumed = await _resume_point(info.heartbeat_details, self._store)
        try:
            command = decode_request(request, max_payload_bytes=self.limit, attempt=info.attempt, resume_from=resumed)
        except DecodeError as exc:
            raise refusal(exc) from None
        command = dataclasses.replace(command, deadline=self._deadline(command, info), tenant=self._tenant(command))
        if resumed is not None:
            logger.info("attempt %d of %s resumes at task %d", info.attempt, command.execution_id, resumed.next_task)
        beats = _Heartbeater(info.heartbeat_details if resumed else (), interval=_interval(), store=self._store)
        pulse = asyncio.create_task(beats.run(), name=f"heartbeat-{command.execution_id}")
        try:
            state = await self._run(command, beats)
        finally:
            pulse.cancel()
            await asyncio.wait([pulse])  # not `await pulse`: that would swallow a cancellation of this task
        return to_payload(encode_result(state, max_payload_bytes=self.limit))

    def _deadline(self, command: ExecuteCommand, info: activity.Info) -> datetime | None:
        """A retried attempt keeps the document's timeout counted from the first attempt's scheduling."""
        if info.attempt == 1:
            return None
        try:
            own = _seconds(self._service.executor.load(command.workflow_yaml).timeout)
        except DocumentError:
            return None  # admission reports it
        return None if own is None else info.scheduled_time + timedelta(seconds=own)

    async def _run(self, command: ExecuteCommand, beats: _Heartbeater) -> ExecutionState:
        execution = await self._admit(command, beats)
        try:
            return await execution.wait()
        except asyncio.CancelledError:
            await self._cancel(command)
            raise

    async def _admit(self, command: ExecuteCommand, beats: _Heartbeater) -> Execution:
        try:
            execution, joined = await self._service.start_when_room(command, on_checkpoint=beats.checkpoint)
        except DocumentError as exc:
            raise invalid_document(exc.issues) from None
        except ConflictError as exc:
            raise failure(EXECUTION_CONFLICT, str(exc)) from None
        except IntakeClosedError as exc:
            raise failure(RUNNER_SHUTTING_DOWN, str(exc), retryable=True) from None
        if joined and execution.on_checkpoint == beats.checkpoint and execution.last_checkpoint is not None:
            # This attempt took over a running run's checkpoints (`ExecutionService.start`): from the newest one,
            # so a later attempt resumes there rather than where this one was told to.
            await beats.checkpoint(execution.last_checkpoint)
        return execution

    async def _cancel(self, command: ExecuteCommand) -> None:
        """Cancel the run for this attempt and wait (bounded) for its `cancelled` events; nothing when a newer
        attempt has joined the run. See the module docstring for shutdown."""
        cancelling = self._service.cancel(command.execution_id, attempt=command.attempt)
        with contextlib.suppress(UnknownExecutionError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(cancelling), self._flush_timeout + 5)
        details = activity.cancellation_details()
        if details is not None and details.worker_shutdown and not details.cancel_requested:
            raise failure(RUNNER_SHUTTING_DOWN, "the worker shut down during the execution", retryable=True)

    @activity.defn(name=PLAN_ACTIVITY_NAME)
    async def plan(self, request: Any) -> dict[str, Any]:
        """The `ExecuteWorkflow` options for `RunServerlessWorkflow`; fails like `ExecuteWorkflow` on bad input.

        It runs in the workflow's worker, which hands large payloads on as claims (`workflow_converter`): a large
        request is read here from the store, and dropped once planned.
        """
        if isinstance(request, Claim):
            try:
                request = await fetch(request, self._store)
            except (PayloadMissingError, PayloadCorruptError) as exc:
                raise failure(INVALID_REQUEST, f"the request cannot be read: {exc}") from None
        try:
            command = decode_request(request, max_payload_bytes=self.limit)
        except DecodeError as exc:
            raise refusal(exc) from None
        try:
            workflow = self._service.executor.load(command.workflow_yaml)
        except DocumentError as exc:
            raise invalid_document(exc.issues) from None
        own = _seconds(workflow.timeout)
        timeout = request.get("timeout_seconds")
        if not _positive(timeout):
            timeout = self._settings.default_timeout if own is None else own + self._flush_timeout + TIMEOUT_MARGIN
        attempts = request.get("max_attempts")
        return {
            "start_to_close_seconds": float(timeout),
            "heartbeat_seconds": self._settings.heartbeat_timeout,
            "max_attempts": attempts if _positive(attempts) and isinstance(attempts, int) else DEFAULT_MAX_ATTEMPTS,
            # Temporal's fairness key: the server dispatches the tenants' activities in turn, not first come.
            "tenant": self._tenant(command),
        }


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _seconds(duration: Any) -> float | None:
    """A document timeout in seconds; None when absent or only known at run time (an expression)."""
    if duration is None:
        return None
    try:
        return float(duration.seconds())
    except Exception:
        # An expression evaluated without the run's data fails in whatever way the expression does (a missing
        # variable, a jq error): its value is only known at run time, which is what None means here.
        return None
