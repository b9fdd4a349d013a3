"""A later attempt of an execution whose run is cancelled for an earlier attempt: it waits, then runs afresh.

The rule is `consumer._service._repeat`; these tests drive `ExecutionService` with the in-process executor, the way
a Temporal retry or an AMQP redelivery reaches it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from callbacks import Reporter
from consumer import CapacityError, ExecutionService
from executor import Checkpoint, ExecuteCommand, Executor, Source, Status
from tests.helpers import MemorySink, doc, eventually

pytestmark = pytest.mark.timeout(30)

NAPS = doc("do:\n  - first: {set: {a: 1}}\n  - nap: {wait: {hours: 1}}\n  - last: {set: {done: '${ .a }'}}\n")
SHORT = doc("do:\n  - nap: {wait: {milliseconds: 300}}\n  - last: {set: {done: true}}\n")
AFTER_NAP = Checkpoint(next_task=2, output={"a": 41}, context={})
"""What attempt 2 resumes from: after `nap`, with an output the document itself never makes (proof it resumed)."""


def command(execution_id: str, document: str = NAPS, **fields: Any) -> ExecuteCommand:
    return ExecuteCommand(execution_id=execution_id, workflow_yaml=document, source=Source.TEMPORAL, **fields)


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
async def service(sink: MemorySink) -> AsyncIterator[ExecutionService]:
    async with Reporter(sink, dead_letter_path="/dev/null") as reporter:
        # A flush timeout longer than any test: a sink held shut keeps a run "being cancelled", not unconfirmed.
        svc = ExecutionService(Executor(), reporter, flush_timeout=20)
        yield svc
        await svc.drain(1.0)


def _napping(sink: MemorySink, execution_id: str) -> bool:
    return any(event.data.get("task") == "/do/1/nap" for event in sink.of(execution_id))


async def test_later_attempt_waits_for_a_run_being_cancelled_for_an_earlier_attempt_then_resumes(
    service: ExecutionService, sink: MemorySink
) -> None:
    """Attempt 2 arriving while attempt 1's run is being cancelled does not end cancelled: it waits for that run to
    end, then runs from its own checkpoint, and its events follow attempt 1's `workflow.cancelled`."""
    first, _ = service.start(command("dying"))
    await eventually(lambda: _napping(sink, "dying"), what="the nap to start")
    sink.open.clear()  # the `cancelled` event cannot be confirmed yet: the run is being cancelled, not ended
    cancelling = asyncio.create_task(service.cancel("dying", attempt=1))
    await eventually(lambda: first.cancel_requested, what="the cancel to reach the run")
    with pytest.raises(CapacityError):
        service.start(command("dying", attempt=2, resume_from=AFTER_NAP))  # no room for it yet
    second = asyncio.create_task(service.start_when_room(command("dying", attempt=2, resume_from=AFTER_NAP)))
    await asyncio.sleep(0.2)
    assert not second.done(), "attempt 2 must not join (or replace) a run that is being cancelled"
    sink.open.set()
    execution, joined = await asyncio.wait_for(second, 10)
    assert (joined, execution is first) == (False, False)
    state = await execution.wait()
    assert (state.attempt, state.result.status, state.result.output) == (2, Status.COMPLETED, {"done": 41})
    cancelled, old = await cancelling
    assert (cancelled, old.result.status) == (True, Status.CANCELLED)
    attempts = [(event.attempt, event.type.split(".")[-2], event.data.get("task")) for event in sink.of("dying")]
    assert attempts[attempts.index((1, "cancelled", None)) + 1 :] == [
        (2, "started", None),
        (2, "started", "/do/2/last"),
        (2, "completed", "/do/2/last"),
        (2, "completed", None),
    ]


async def test_later_attempt_after_the_run_ended_cancelled_for_an_earlier_attempt_runs_afresh(
    service: ExecutionService,
) -> None:
    """Once attempt 1's run ended cancelled because attempt 1 was given up, attempt 2 runs instead of reading it."""
    service.start(command("dead"))
    cancelled, old = await asyncio.wait_for(service.cancel("dead", attempt=1), 5)
    assert (cancelled, old.result.status, old.progress_confirmed) == (True, Status.CANCELLED, True)
    execution, joined = await service.start_when_room(command("dead", attempt=2, resume_from=AFTER_NAP))
    state = await execution.wait()
    assert (joined, state.result.status, state.result.output) == (False, Status.COMPLETED, {"done": 41})


async def test_cancel_for_an_attempt_leaves_the_run_to_a_later_attempt_that_joined_it(
    service: ExecutionService, sink: MemorySink
) -> None:
    """Attempt 2 joins a healthy run, then attempt 1 is given up in the same turn: the run goes on for attempt 2."""
    first, _ = service.start(command("kept", SHORT))
    await eventually(lambda: "task.started" in sink.kinds("kept"), what="the nap to start")
    cancelling = asyncio.create_task(service.cancel("kept", attempt=1))  # its first step comes after the join
    joined_run, joined = service.start(command("kept", SHORT, attempt=2))
    assert (joined, joined_run is first) == (True, True)
    cancelled, state = await asyncio.wait_for(cancelling, 5)
    assert (cancelled, state.running) == (False, True), "the cancel returns at once and leaves the run alone"
    final = await first.wait()
    assert (final.result.status, final.result.output) == (Status.COMPLETED, {"done": True})


async def test_a_cancel_on_request_is_not_undone_by_a_later_attempt(
    service: ExecutionService, sink: MemorySink
) -> None:
    """A cancel of the execution itself (gRPC `Cancel`): a redelivery joins the dying run, then reads it cancelled."""
    first, _ = service.start(command("stopped"))
    await eventually(lambda: _napping(sink, "stopped"), what="the nap to start")
    sink.open.clear()
    cancelling = asyncio.create_task(service.cancel("stopped"))
    await eventually(lambda: first.cancel_requested, what="the cancel to reach the run")
    dying, joined = service.start(command("stopped", attempt=2))
    assert (joined, dying is first) == (True, True)
    sink.open.set()
    await asyncio.wait_for(cancelling, 5)
    done, joined = service.start(command("stopped", attempt=3))
    state = await done.wait()
    assert (joined, state.result.status) == (True, Status.CANCELLED)
