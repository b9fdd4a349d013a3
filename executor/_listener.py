"""What the engine tells the outside world while it runs: lifecycle events through a small listener protocol.

The engine knows the spec's lifecycle semantics (type, data, per-execution sequence); turning an event into a
CloudEvents envelope and delivering it is the job of whoever listens (see `consumer` and `callbacks`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

_PREFIX = "io.serverlessworkflow."

WORKFLOW_STARTED = _PREFIX + "workflow.started.v1"
WORKFLOW_COMPLETED = _PREFIX + "workflow.completed.v1"
WORKFLOW_FAULTED = _PREFIX + "workflow.faulted.v1"
WORKFLOW_CANCELLED = _PREFIX + "workflow.cancelled.v1"
TASK_STARTED = _PREFIX + "task.started.v1"
TASK_COMPLETED = _PREFIX + "task.completed.v1"
TASK_FAULTED = _PREFIX + "task.faulted.v1"
TASK_RETRIED = _PREFIX + "task.retried.v1"
TASK_CANCELLED = _PREFIX + "task.cancelled.v1"

TERMINAL_TYPES = frozenset({WORKFLOW_COMPLETED, WORKFLOW_FAULTED, WORKFLOW_CANCELLED})


@dataclass(frozen=True, slots=True, kw_only=True)
class LifecycleEvent:
    """One lifecycle event of one execution, before it gets an envelope.

    `output_json` is the output's JSON when `data` carries only its preview (`outputTruncated`, made where the
    event was produced: an executor worker process), so the full output can still be stored without encoding it
    again; None otherwise.
    """

    execution_id: str
    attempt: int
    sequence: int
    type: str
    time: str
    data: dict[str, Any]
    output_json: bytes | None = None

    @property
    def terminal(self) -> bool:
        """True for the event that ends the execution."""
        return self.type in TERMINAL_TYPES


class ProgressListener(Protocol):
    """Receives every lifecycle event in sequence order; may apply back-pressure by awaiting.

    A listener may also offer `publish_nowait(event) -> bool`, taking the event without awaiting when it can
    (False, with nothing done, when `publish` must be awaited): the worker pool relays most events that way, with
    no task per execution (`consumer._pool`).
    """

    async def publish(self, event: LifecycleEvent) -> None: ...


class NullListener:
    """Discards events: for callers that only want the result."""

    async def publish(self, event: LifecycleEvent) -> None:
        return None
