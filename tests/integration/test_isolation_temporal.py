"""Isolation over a real Temporal dev server: a runaway expression of one tenant next to another tenant's runs."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

from tests.helpers import eventually
from tests.integration.temporal_fixtures import caller_worker, events_of, kinds, request, runner, runner_env

pytestmark = pytest.mark.timeout(120)

RUNAWAY = "do:\n  - spin: {set: {x: '${ [range(300000000)] | length }'}}\n"
TRIVIAL = "do:\n  - double: {set: {n: '${ .n * 2 }'}}\n"
LIMIT_SECONDS = 2
NEIGHBOURS = 100
TERMINAL = ("workflow.completed", "workflow.faulted", "workflow.cancelled")


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["time"])


async def _start(client: Client, queue: str, payload: dict[str, Any]) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow("RunServerlessWorkflow", payload, id=payload["execution_id"], task_queue=queue)


async def _attempts(handle: WorkflowHandle[Any, Any]) -> list[int]:
    """The attempt of every ExecuteWorkflow start in the history."""
    return [
        event.activity_task_started_event_attributes.attempt
        async for event in handle.fetch_history_events()
        if event.HasField("activity_task_started_event_attributes")
    ]


def _assert_limit_error(error: dict[str, Any]) -> None:
    assert error["title"] == "Expression time limit exceeded"
    assert error["instance"] == "/do/0/spin"
    assert f"EXPRESSION_TIME_LIMIT_SECONDS ({LIMIT_SECONDS}s)" in error["detail"]


async def test_runaway_expression_fails_once_while_another_tenant_completes(
    temporal_address: str, task_queue: str, tmp_path: Path
) -> None:
    """A runaway of tenant a fails RunServerlessWorkflow non-retryably after one attempt with the limit error; the
    100 executions tenant b starts meanwhile all complete, none of them held up by it; a caller's own workflow that
    allows 3 attempts gets the same non-retryable failure."""
    events = tmp_path / "events.jsonl"
    env = runner_env(
        temporal_address,
        task_queue,
        events,
        EXECUTOR_PROCESSES=2,
        EXPRESSION_TIME_LIMIT_SECONDS=LIMIT_SECONDS,
    )
    client = await Client.connect(temporal_address)
    async with runner(env), caller_worker(client) as caller:
        runaway = await _start(client, task_queue, request(_id("runaway"), RUNAWAY, metadata={"tenant": "a"}))
        await eventually(lambda: "task.started:/do/0/spin" in kinds(events_of(events, runaway.id)), within=20)
        # Work arriving in the first few tens of milliseconds of an evaluation may still be placed on its worker
        # (the pool cannot tell a runaway yet) and then waits for the limit to run again elsewhere: start after that.
        await asyncio.sleep(0.25)
        neighbours = await asyncio.gather(
            *(
                _start(client, task_queue, request(_id(f"b{n}"), TRIVIAL, input={"n": n}, metadata={"tenant": "b"}))
                for n in range(NEIGHBOURS)
            )
        )
        results = await asyncio.wait_for(asyncio.gather(*(handle.result() for handle in neighbours)), 60)
        with pytest.raises(WorkflowFailureError) as caught:
            await asyncio.wait_for(runaway.result(), 30)
        attempts = await _attempts(runaway)

        own = await client.start_workflow(
            "TestCallerWorkflow",
            args=[task_queue, request(_id("own-runaway"), RUNAWAY, metadata={"tenant": "a"}), 3],
            id=_id("own"),
            task_queue=caller,
        )
        with pytest.raises(WorkflowFailureError) as own_caught:
            await asyncio.wait_for(own.result(), 30)

    for n, (handle, result) in enumerate(zip(neighbours, results, strict=True)):
        assert result == {"execution_id": handle.id, "status": "completed", "output": {"n": 2 * n}, "error": None}
        ran = events_of(events, handle.id)
        assert [kind for kind in kinds(ran) if kind in TERMINAL] == ["workflow.completed"]
        # None of them shared the runaway's worker: that would have held it until the limit ended the worker.
        assert (_at(ran[-1]) - _at(ran[0])).total_seconds() < 1.0, kinds(ran)

    error = caught.value.cause
    assert isinstance(error, ApplicationError), error
    assert (error.type, error.non_retryable) == ("WorkflowFaulted", True)
    _assert_limit_error(error.details[0])
    assert attempts == [1]
    ran = events_of(events, runaway.id)
    assert [kind for kind in kinds(ran) if kind in TERMINAL] == ["workflow.faulted"]
    _assert_limit_error(ran[-1]["data"]["error"])
    assert {event["attempt"] for event in ran} == {1}
    evaluating = (_at(ran[-1]) - next(_at(e) for e in ran if e["type"].endswith("task.started.v1"))).total_seconds()
    assert LIMIT_SECONDS <= evaluating < LIMIT_SECONDS + 3, f"faulted after {evaluating:.2f} s of evaluation"

    activity_error = own_caught.value.cause
    assert isinstance(activity_error, ActivityError), activity_error
    assert activity_error.retry_state is RetryState.NON_RETRYABLE_FAILURE
    assert isinstance(activity_error.cause, ApplicationError)
    assert activity_error.cause.type == "WorkflowFaulted"
    _assert_limit_error(activity_error.cause.details[0])
    assert await _attempts(own) == [1]
