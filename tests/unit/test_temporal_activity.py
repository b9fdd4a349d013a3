"""The `ExecuteWorkflow` activity in Temporal's activity test environment: how attempts share one execution."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from temporalio.activity import ActivityCancellationDetails
from temporalio.testing import ActivityEnvironment

from callbacks import Reporter
from consumer import ExecutionService
from consumer._temporal_activity import Activities
from consumer._temporal_codec import checkpoint_details
from consumer.config import Settings
from executor import Checkpoint, Executor, Status
from tests.helpers import MemorySink, doc, eventually

pytestmark = pytest.mark.timeout(30)

NAP = doc("do:\n  - nap: {wait: {milliseconds: 600}}\n  - done: {set: {ok: true}}\n")
LONG = doc("do:\n  - first: {set: {a: 1}}\n  - nap: {wait: {hours: 1}}\n  - last: {set: {done: '${ .a }'}}\n")


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
async def activities(sink: MemorySink) -> AsyncIterator[tuple[Activities, ExecutionService]]:
    reporter = Reporter(sink, dead_letter_path="/dev/null")
    await reporter.start()
    service = ExecutionService(Executor(), reporter, flush_timeout=2)
    yield Activities(Settings.from_env({}), service), service
    await service.drain(1)
    await reporter.stop(1)


def _attempt(number: int, *details: Any) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=number, heartbeat_details=details)
    return env


async def test_stale_attempt_cancelled_by_its_timeout_leaves_the_newer_attempt_running(
    activities: tuple[Activities, ExecutionService],
) -> None:
    """Attempt 1 timed out on the server (a stalled heartbeat) and attempt 2 joined its execution here: when the
    worker then cancels attempt 1, attempt 2 still gets the result, not a non-retryable `WorkflowCancelled`."""
    acts, service = activities
    request: dict[str, Any] = {"execution_id": "stale-1", "workflow_yaml": NAP}
    first, second = _attempt(1), _attempt(2)
    attempt_1 = asyncio.create_task(first.run(acts.execute, request))
    await eventually(lambda: service.get("stale-1") is not None)
    attempt_2 = asyncio.create_task(second.run(acts.execute, request))
    await asyncio.sleep(0.1)
    first.cancel(ActivityCancellationDetails(timed_out=True))
    with pytest.raises(asyncio.CancelledError):
        await attempt_1
    result = orjson.loads((await attempt_2).payload.data)
    assert (result["status"], result["output"]) == ("completed", {"ok": True})


async def test_newer_attempt_after_the_stale_one_was_cancelled_resumes_from_its_checkpoint(
    activities: tuple[Activities, ExecutionService], sink: MemorySink
) -> None:
    """Attempt 1 timed out on the server and was cancelled here first; attempt 2 arrives while that run is still
    being cancelled: it waits for it, then resumes from its heartbeat checkpoint and completes, not `cancelled`."""
    acts, service = activities
    request: dict[str, Any] = {"execution_id": "stale-2", "workflow_yaml": LONG}
    first = _attempt(1)
    attempt_1 = asyncio.create_task(first.run(acts.execute, request))
    await eventually(lambda: any(e.data.get("task") == "/do/1/nap" for e in sink.of("stale-2")), what="the nap")
    sink.open.clear()  # attempt 1's `cancelled` event stays unconfirmed meanwhile: its run is being cancelled
    first.cancel(ActivityCancellationDetails(timed_out=True))
    await eventually(lambda: service.get("stale-2").cancel_requested, what="attempt 1's cancel to reach the run")
    resumed = checkpoint_details(Checkpoint(next_task=2, output={"a": 41}, context={}))
    attempt_2 = asyncio.create_task(_attempt(2, resumed).run(acts.execute, request))
    await asyncio.sleep(0.2)
    sink.open.set()
    with pytest.raises(asyncio.CancelledError):
        await attempt_1
    result = orjson.loads((await asyncio.wait_for(attempt_2, 10)).payload.data)
    assert (result["status"], result["output"]) == ("completed", {"done": 41})


async def test_requested_cancel_still_cancels_the_run(activities: tuple[Activities, ExecutionService]) -> None:
    """A cancellation Temporal asked for (the workflow was cancelled) ends the run `cancelled`."""
    acts, service = activities
    env = _attempt(1)
    attempt = asyncio.create_task(env.run(acts.execute, {"execution_id": "asked", "workflow_yaml": NAP}))
    await eventually(lambda: service.get("asked") is not None)
    env.cancel(ActivityCancellationDetails(cancel_requested=True))
    with pytest.raises(asyncio.CancelledError):
        await attempt
    state = await service.get("asked").wait()
    assert state.result.status is Status.CANCELLED
