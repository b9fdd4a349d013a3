"""Fixtures for the delivery tests: a reference sink on free ports, events of fake executions, fast retries."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from callbacks import (
    DEFAULT_SOURCE,
    CloudEvent,
    GrpcSink,
    HttpSink,
    ReferenceSink,
    RetryPolicy,
    Sink,
    event_id,
)

STARTED = "io.serverlessworkflow.workflow.started.v1"
TASK_COMPLETED = "io.serverlessworkflow.task.completed.v1"
COMPLETED = "io.serverlessworkflow.workflow.completed.v1"
FAST_RETRY = RetryPolicy(initial_delay=0.02, max_delay=0.2)


def lifecycle(execution_id: str, count: int, *, attempt: int = 1, data: Any = None) -> list[CloudEvent]:
    """`count` events of one execution: started, task completions, completed (terminal) last."""
    types = [STARTED] + [TASK_COMPLETED] * (count - 2) + [COMPLETED]
    return [
        CloudEvent(
            id=event_id(execution_id, attempt, sequence),
            source=DEFAULT_SOURCE,
            type=kind,
            time="2025-06-01T12:00:00.123Z",
            subject=execution_id,
            executionid=execution_id,
            sequence=sequence,
            attempt=attempt,
            data={"task": f"/do/{sequence}"} if data is None else data,
            metadata={"tenant_id": "t-1"},
        )
        for sequence, kind in enumerate(types, start=1)
    ]


def assert_exactly_once_in_order(sink: ReferenceSink, expected: list[CloudEvent]) -> None:
    """Every expected event arrived once after dedupe, in order per execution, terminal last."""
    by_execution: dict[str, list[str]] = {}
    for event in expected:
        by_execution.setdefault(event.executionid, []).append(event.id)
    for execution, ids in by_execution.items():
        arrived = sink.events_of(execution)
        assert [e["id"] for e in arrived] == ids
        assert arrived[-1]["type"] == COMPLETED
    assert len(sink.events) == len(expected)
    assert sink.out_of_order == []


@pytest.fixture
def dead_letter(tmp_path: Path) -> Path:
    """Path of the reporter's dead-letter file."""
    return tmp_path / "dead-letter.jsonl"


@pytest.fixture
async def refsink(tmp_path: Path) -> AsyncIterator[ReferenceSink]:
    """A reference sink with gRPC and HTTP on free ports, writing to a file."""
    sink = ReferenceSink(out=tmp_path / "received.jsonl")
    await sink.start()
    yield sink
    await sink.close()


@pytest.fixture(params=["grpc", "http"])
def make_sink(request: pytest.FixtureRequest, refsink: ReferenceSink) -> Callable[..., Sink]:
    """Builds the parametrized transport's sink aimed at `refsink`."""

    def build(**options: Any) -> Sink:
        if request.param == "grpc":
            return GrpcSink(refsink.grpc_target, max_reconnect_backoff=0.2, **options)
        api_key = options.pop("api_key", None)
        headers = {"authorization": f"Bearer {api_key}"} if api_key else None
        return HttpSink(refsink.http_url, headers=headers, **options)

    return build
