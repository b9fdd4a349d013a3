"""The bridge from the engine's lifecycle events to CloudEvents envelopes (the only place both meet)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO

from callbacks import CloudEvent, event_id
from executor import LifecycleEvent

DEFAULT_SOURCE = "urn:workflow-runner"


def to_cloudevent(
    event: LifecycleEvent, *, metadata: Mapping[str, str] | None = None, source: str = DEFAULT_SOURCE
) -> CloudEvent:
    """Wrap a lifecycle event: stable id from (execution, attempt, sequence), subject = execution id."""
    return CloudEvent(
        id=event_id(event.execution_id, event.attempt, event.sequence),
        source=source,
        type=event.type,
        time=event.time,
        subject=event.execution_id,
        executionid=event.execution_id,
        sequence=event.sequence,
        attempt=event.attempt,
        data=event.data,
        metadata=dict(metadata or {}),
    )


class JsonLinesListener:
    """Appends every event as one CloudEvents JSON line to an open binary file (the CLI's `--events`)."""

    def __init__(self, out: IO[bytes], metadata: Mapping[str, str] | None = None) -> None:
        self._out = out
        self._metadata = dict(metadata or {})

    async def publish(self, event: LifecycleEvent) -> None:
        """Write and flush one line, so a reader following the file sees events as they happen."""
        self._out.write(to_cloudevent(event, metadata=self._metadata).to_json() + b"\n")
        self._out.flush()
