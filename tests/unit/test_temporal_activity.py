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
STEPS = doc(
    "do:\n  - first: {set: {a: 1}}\n  - nap: {wait: {milliseconds: 500}}\n  - second: {set: {b: 2}}\n"
    "  - long: {wait: {hours: 1}}\n"
)
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


async def test_a_joining_attempt_heartbeats_the_runs_checkpoints(
    activities: tuple[Activities, ExecutionService],
) -> None:
    """Attempt 2 joins the run attempt 1 started (attempt 1 timed out on the server, its run goes on here): attempt 2
    heartbeats the run's newest checkpoint at once and every later one, so a third attempt would resume from there
    rather than from the start."""
    acts, service = activities
    request: dict[str, Any] = {"execution_id": "join-beats", "workflow_yaml": STEPS}
    first, second = _attempt(1), _attempt(2)
    beats_1: list[int] = []
    beats_2: list[int] = []
    first.on_heartbeat = lambda *details: beats_1.extend(d["next_task"] for d in details if isinstance(d, dict))
    second.on_heartbeat = lambda *details: beats_2.extend(d["next_task"] for d in details if isinstance(d, dict))
    attempt_1 = asyncio.create_task(first.run(acts.execute, request))
    await eventually(lambda: 1 in beats_1, what="attempt 1's first checkpoint")
    attempt_2 = asyncio.create_task(second.run(acts.execute, request))
    await eventually(lambda: 1 in beats_2, what="attempt 2 to catch up with the run's checkpoint")
    await eventually(lambda: 3 in beats_2, within=10, what="the checkpoint after `second` to reach attempt 2")
    assert 3 not in beats_1, "the timed-out attempt no longer gets the run's checkpoints"
    second.cancel(ActivityCancellationDetails(cancel_requested=True))
    first.cancel(ActivityCancellationDetails(timed_out=True))
    for attempt in (attempt_1, attempt_2):
        with pytest.raises(asyncio.CancelledError):
            await attempt
    state = await service.get("join-beats").wait()
    assert state.result.status is Status.CANCELLED


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
