"""The `ExecuteWorkflow` activity in Temporal's activity test environment: how attempts share one execution."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.activity import ActivityCancellationDetails
from temporalio.testing import ActivityEnvironment

from callbacks import Reporter
from consumer import ExecutionService
from consumer._temporal_activity import Activities
from consumer.config import Settings
from executor import Executor, Status
from tests.helpers import MemorySink, doc, eventually

pytestmark = pytest.mark.timeout(30)

NAP = doc("do:\n  - nap: {wait: {milliseconds: 600}}\n  - done: {set: {ok: true}}\n")


@pytest.fixture
async def activities() -> AsyncIterator[tuple[Activities, ExecutionService]]:
    reporter = Reporter(MemorySink(), dead_letter_path="/dev/null")
    await reporter.start()
    service = ExecutionService(Executor(), reporter, flush_timeout=2)
    yield Activities(Settings.from_env({}), service), service
    await service.drain(1)
    await reporter.stop(1)


def _attempt(number: int) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=number)
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
    result = await attempt_2
    assert (result["status"], result["output"]) == ("completed", {"ok": True})


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
