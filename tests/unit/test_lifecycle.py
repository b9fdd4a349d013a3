"""Lifecycle: events in order with sequence numbers, timeouts, cancellation, checkpoints."""

from __future__ import annotations

import asyncio

from executor import Checkpoint, ExecuteCommand, Executor
from tests.helpers import Recorder, doc, eventually, run

TIMEOUT = "https://serverlessworkflow.io/spec/1.0.0/errors/timeout"


async def test_events_in_order_with_monotonic_sequence() -> None:
    """Workflow and task events arrive in order, numbered 1..n, terminal last, with the spec's data."""
    result, rec = await run("do:\n  - a: {set: {v: 1}}\n  - b: {set: {v: 2}}\n")
    assert rec.kinds() == [
        "workflow.started",
        "task.started:/do/0/a",
        "task.completed:/do/0/a",
        "task.started:/do/1/b",
        "task.completed:/do/1/b",
        "workflow.completed",
    ]
    assert [e.sequence for e in rec.events] == list(range(1, 7))
    assert rec.events[0].data["definition"] == {"namespace": "test", "name": "wf", "version": "1.0.0"}
    assert rec.events[2].data["output"] == {"v": 1}
    assert rec.events[-1].data["output"] == result.output
    assert rec.events[-1].terminal


async def test_task_timeout_raises_timeout_error() -> None:
    """A task over its timeout faults with the spec's timeout error (408) at that task."""
    result, _ = await asyncio.wait_for(
        run("do:\n  - w: {wait: {seconds: 30}, timeout: {after: {milliseconds: 50}}}\n"), 10
    )
    assert result.error is not None
    assert (result.error["type"], result.error["status"], result.error["instance"]) == (
        TIMEOUT,
        408,
        "/do/0/w",
    )


async def test_named_timeout_from_use_timeouts() -> None:
    """`timeout: <name>` uses the `use.timeouts` entry."""
    body = "use:\n  timeouts:\n    quick: {after: PT0.05S}\ndo:\n  - w: {wait: PT30S, timeout: quick}\n"
    result, _ = await asyncio.wait_for(run(body), 10)
    assert result.error is not None
    assert result.error["type"] == TIMEOUT


async def test_workflow_timeout() -> None:
    """A workflow over its timeout faults with the timeout error."""
    result, rec = await asyncio.wait_for(run("timeout: {after: {milliseconds: 50}}\ndo:\n  - w: {wait: PT30S}\n"), 10)
    assert result.error is not None
    assert result.error["type"] == TIMEOUT
    assert rec.kinds()[-1] == "workflow.faulted"


async def test_timeout_is_catchable() -> None:
    """A task timeout can be caught by an enclosing try."""
    body = "do:\n  - t:\n      try:\n        - w: {wait: PT30S, timeout: {after: PT0.05S}}\n      catch:\n        errors: {with: {status: 408}}\n        do:\n          - h: {set: {r: timed-out}}\n"
    result, _ = await asyncio.wait_for(run(body), 10)
    assert result.output == {"r": "timed-out"}


async def test_cancel_ends_run_cancelled() -> None:
    """`Executor.cancel` stops a running wait; the result and the events say `cancelled`."""
    recorder = Recorder()
    executor = Executor(listener=recorder)
    command = ExecuteCommand(execution_id="c-1", workflow_yaml=doc("do:\n  - w: {wait: PT60S}\n"))
    running = asyncio.create_task(executor.run(command))
    await eventually(lambda: "task.started:/do/0/w" in recorder.kinds(), what="the run to reach its wait")
    assert "c-1" in executor.in_flight
    assert executor.cancel("c-1")
    result = await asyncio.wait_for(running, 10)
    assert result.status.value == "cancelled"
    assert recorder.kinds()[-2:] == ["task.cancelled:/do/0/w", "workflow.cancelled"]
    assert not executor.cancel("c-1")


async def test_caller_cancellation_propagates_after_events() -> None:
    """Cancelling the caller's task still records the cancelled events, and the CancelledError propagates."""
    recorder = Recorder()
    executor = Executor(listener=recorder)
    command = ExecuteCommand(execution_id="c-2", workflow_yaml=doc("do:\n  - w: {wait: PT60S}\n"))
    running = asyncio.create_task(executor.run(command))
    await eventually(lambda: "task.started:/do/0/w" in recorder.kinds(), what="the run to reach its wait")
    running.cancel()
    try:
        await running
        raise AssertionError("expected CancelledError")
    except asyncio.CancelledError:
        pass
    assert recorder.kinds()[-1] == "workflow.cancelled"


async def test_checkpoint_and_resume_skip_completed_tasks() -> None:
    """Checkpoints follow each top-level task; resuming from one runs only what is left."""
    body = "do:\n  - a: {set: {n: 1}, export: {as: '{a: true}'}}\n  - b: {set: '${ {n: (.n + 1), ctx: $context} }'}\n"
    checkpoints: list[Checkpoint] = []

    async def keep(cp: Checkpoint) -> None:
        checkpoints.append(cp)

    executor = Executor()
    first = await executor.run(ExecuteCommand(execution_id="r", workflow_yaml=doc(body)), on_checkpoint=keep)
    assert [c.next_task for c in checkpoints] == [1, 2]
    recorder = Recorder()
    resumed = await Executor(listener=recorder).run(
        ExecuteCommand(execution_id="r", workflow_yaml=doc(body), attempt=2, resume_from=checkpoints[0])
    )
    assert resumed.output == first.output == {"n": 2, "ctx": {"a": True}}
    assert "task.started:/do/0/a" not in recorder.kinds()
    assert all(e.attempt == 2 for e in recorder.events)
