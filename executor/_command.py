"""The command the executor runs and the result it returns: the only types the ingresses hand over."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

DEFAULT_TENANT = "default"
"""The tenant of every execution when the runner serves one tenant (nothing configured says otherwise)."""


class Source(enum.StrEnum):
    """Which ingress turned a message into the command."""

    GRPC = "grpc"
    TEMPORAL = "temporal"
    AMQP = "amqp"
    CLI = "cli"


class Status(enum.StrEnum):
    """How an execution ended."""

    COMPLETED = "completed"
    FAULTED = "faulted"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """Where a retried attempt resumes: after the last completed top-level task."""

    next_task: int
    output: Any
    context: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecuteCommand:
    """One execution request, normalized from any ingress. Immutable; change with `dataclasses.replace`."""

    execution_id: str
    workflow_yaml: str
    input: Any = field(default_factory=dict)
    secrets: Mapping[str, Any] = field(default_factory=dict, repr=False)
    metadata: Mapping[str, str] = field(default_factory=dict)
    source: Source = Source.CLI
    attempt: int = 1
    deadline: datetime | None = None
    resume_from: Checkpoint | None = None
    tenant: str = DEFAULT_TENANT
    """Whose execution this is: set by the ingress from what the caller proved (an API key) or the control plane
    set (a metadata key), never from the document. Scopes the event bus and the fair scheduler."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionResult:
    """How an execution ended: `error` is the spec's error object when it did not complete."""

    execution_id: str
    status: Status
    output: Any = None
    error: Mapping[str, Any] | None = None
    limit: str | None = None
    """Set when the runner ended the execution because it exceeded one of the runner's limits (expression time,
    memory, a timeout it could only enforce by ending a worker): such a run must not be retried or requeued.
    Not part of the reply (`to_dict`): `error` says the same to the caller."""

    def to_dict(self) -> dict[str, Any]:
        """The result as ingresses reply it."""
        return {
            "execution_id": self.execution_id,
            "status": self.status.value,
            "output": self.output,
            "error": None if self.error is None else dict(self.error),
        }
