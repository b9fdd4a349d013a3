"""The reporter against in-memory sinks: ordering, batching, flush, dead letters, lifecycle."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from callbacks import (
    DEFAULT_SOURCE,
    CloudEvent,
    DeadLetteredError,
    FlushTimeoutError,
    Reporter,
    ReporterClosedError,
    RetryPolicy,
    event_id,
)
from callbacks._outbox import Outbox
from tests.helpers import MemorySink, eventually

_NO_WAIT = RetryPolicy(initial_delay=0.001, max_delay=0.005)


def _events(execution: str, count: int, attempt: int = 1) -> list[CloudEvent]:
    kinds = ["task.completed"] * (count - 1) + ["workflow.completed"]
    return [
        CloudEvent(
            id=event_id(execution, attempt, seq),
            source=DEFAULT_SOURCE,
            type=f"io.serverlessworkflow.{kind}.v1",
            time="2025-06-01T12:00:00Z",
            subject=execution,
            executionid=execution,
            sequence=seq,
            attempt=attempt,
            data={"task": f"/do/{seq}"},
        )
        for seq, kind in enumerate(kinds, start=1)
    ]


def _letters(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


async def test_order_per_execution_with_concurrent_senders(tmp_path: Path) -> None:
    """Twenty executions through four senders of a jittery sink each arrive in sequence order, in mixed batches."""
    sink = MemorySink(jitter=0.003)
    executions = {f"ex-{n}": _events(f"ex-{n}", 20) for n in range(20)}
    async with Reporter(sink, concurrency=4, max_batch=7, dead_letter_path=tmp_path / "dl") as reporter:
        for round_ in range(20):
            for events in executions.values():
                await reporter.submit(events[round_])
        for execution in executions:
            await reporter.flush(execution, timeout=10)
        assert reporter.stats.delivered == 400
    for execution in executions:
        assert sink.received(execution) == list(range(1, 21))
    assert any(len({e.executionid for e in batch}) > 1 for batch in sink.batches)
    assert max(len(batch) for batch in sink.batches) <= 7
    assert sink.closed


async def test_flush_waits_for_the_terminal_event(tmp_path: Path) -> None:
    """flush does not return while the sink holds the terminal event back."""
    sink = MemorySink()
    sink.open.clear()
    async with Reporter(sink, dead_letter_path=tmp_path / "dl") as reporter:
        for event in _events("ex", 3):
            await reporter.submit(event)
        flushing = asyncio.create_task(reporter.flush("ex"))
        await asyncio.sleep(0.05)
        assert not flushing.done()
        sink.open.set()
        await asyncio.wait_for(flushing, timeout=5)
        await reporter.flush("ex", timeout=0.01)  # already confirmed: returns at once


async def test_flush_timeout_says_what_is_pending(tmp_path: Path) -> None:
    """A flush that times out raises FlushTimeoutError (a TimeoutError) with the pending count."""
    sink = MemorySink()
    sink.open.clear()
    async with Reporter(sink, dead_letter_path=tmp_path / "dl") as reporter:
        for event in _events("ex", 4):
            await reporter.submit(event)
        with pytest.raises(FlushTimeoutError) as caught:
            await reporter.flush("ex", timeout=0.05)
        assert isinstance(caught.value, TimeoutError)
        assert caught.value.pending == 4
        sink.open.set()
        await reporter.flush("ex", timeout=5)


async def test_new_attempt_waits_for_its_own_terminal_event(tmp_path: Path) -> None:
    """After attempt 1 was confirmed, a flush during attempt 2 waits for attempt 2's terminal event."""
    sink = MemorySink()
    async with Reporter(sink, dead_letter_path=tmp_path / "dl") as reporter:
        for event in _events("ex", 2):
            await reporter.submit(event)
        await reporter.flush("ex", timeout=5)
        sink.open.clear()
        for event in _events("ex", 2, attempt=2):
            await reporter.submit(event)
        with pytest.raises(FlushTimeoutError):
            await reporter.flush("ex", timeout=0.05)
        sink.open.set()
        await reporter.flush("ex", timeout=5)
    assert [e.attempt for batch in sink.batches for e in batch] == [1, 1, 2, 2]


async def test_unconfirmed_attempt_does_not_confirm_the_next_one(tmp_path: Path) -> None:
    """Attempt 1 ended unconfirmed (sink down) and attempt 2 ran (a redelivery): when attempt 1's terminal event
    finally gets through, a flush for attempt 2 keeps waiting for attempt 2's own terminal event."""
    sink = MemorySink()
    sink.open.clear()
    async with Reporter(sink, max_batch=2, retry=_NO_WAIT, dead_letter_path=tmp_path / "dl") as reporter:
        for event in _events("ex", 2):
            await reporter.submit(event)
        with pytest.raises(FlushTimeoutError):
            await reporter.flush("ex", timeout=0.05)
        attempt_2 = _events("ex", 2, attempt=2)
        for event in attempt_2:
            await reporter.submit(event)
        sink.refuse_transiently = {event.id for event in attempt_2}
        sink.open.set()
        await eventually(lambda: sink.received("ex") == [1, 2], what="attempt 1 through, attempt 2 held back")
        with pytest.raises(FlushTimeoutError):
            await reporter.flush("ex", timeout=0.1)
        sink.refuse_transiently = set()
        await reporter.flush("ex", timeout=5)
    assert [e.attempt for batch in sink.batches for e in batch] == [1, 1, 2, 2]


async def test_refused_batch_is_split_to_find_the_refused_event(tmp_path: Path) -> None:
    """Only the refused event is dead-lettered; its batch mates are delivered, order kept."""
    sink = MemorySink()
    events = _events("ex", 5)
    sink.refuse.add(events[2].id)
    reporter = Reporter(sink, max_batch=10, dead_letter_path=tmp_path / "dl.jsonl")
    for event in events:
        await reporter.submit(event)
    async with reporter:
        await reporter.flush("ex", timeout=5)
    assert sink.received("ex") == [1, 2, 4, 5]
    letters = _letters(tmp_path / "dl.jsonl")
    assert [letter["reason"] for letter in letters] == ["refused (SinkRefusedError: INVALID_ARGUMENT)"]
    assert reporter.stats.dead_lettered == 1


async def test_unexpected_sink_error_is_dead_lettered_not_lost(tmp_path: Path) -> None:
    """A sink bug on one event dead-letters that event (named by class) and the terminal flush raises."""
    sink = MemorySink()
    events = _events("ex", 2)
    sink.crash.add(events[1].id)
    async with Reporter(sink, dead_letter_path=tmp_path / "dl.jsonl") as reporter:
        for event in events:
            await reporter.submit(event)
        with pytest.raises(DeadLetteredError):
            await reporter.flush("ex", timeout=5)
    assert _letters(tmp_path / "dl.jsonl")[0]["reason"] == "refused (RuntimeError)"


async def test_attempt_limit_dead_letters_what_it_gave_up_on(tmp_path: Path) -> None:
    """With max_attempts set, a sink that stays unavailable leads to a 'gave up' dead letter."""
    sink = MemorySink()
    sink.unavailable = 10
    policy = RetryPolicy(initial_delay=0.001, max_delay=0.001, max_attempts=3)
    async with Reporter(sink, retry=policy, dead_letter_path=tmp_path / "dl.jsonl") as reporter:
        await reporter.submit(_events("ex", 1)[0])
        with pytest.raises(DeadLetteredError):
            await reporter.flush("ex", timeout=5)
        assert reporter.stats.retried == 2
    assert str(_letters(tmp_path / "dl.jsonl")[0]["reason"]).startswith("gave up retrying")


async def test_transient_failures_are_retried_and_counted(tmp_path: Path) -> None:
    """Unavailable answers are retried until the batch goes through."""
    sink = MemorySink()
    sink.unavailable = 3
    async with Reporter(sink, retry=_NO_WAIT, dead_letter_path=tmp_path / "dl") as reporter:
        for event in _events("ex", 3):
            await reporter.submit(event)
        await reporter.flush("ex", timeout=5)
        assert reporter.stats.retried == 3
        assert reporter.stats.delivered == 3


async def test_producer_blocked_on_a_full_outbox_is_released_by_stop(tmp_path: Path) -> None:
    """A producer waiting for room when the grace period ends gets ReporterClosedError, not a silent drop."""
    sink = MemorySink()
    sink.open.clear()
    reporter = Reporter(sink, capacity=2, dead_letter_path=tmp_path / "dl.jsonl")
    await reporter.start()
    events = _events("ex", 3)
    await reporter.submit(events[0])
    await reporter.submit(events[1])
    blocked = asyncio.create_task(reporter.submit(events[2]))
    await asyncio.sleep(0.02)
    assert not blocked.done()
    assert await reporter.stop(grace=0.05) == {"ex": 2}
    with pytest.raises(ReporterClosedError):
        await blocked
    assert len(_letters(tmp_path / "dl.jsonl")) == 2


async def test_lifecycle_is_idempotent(tmp_path: Path) -> None:
    """start and stop may be called twice; a stopped reporter cannot start again or take events."""
    sink = MemorySink()
    reporter = Reporter(sink, dead_letter_path=tmp_path / "dl")
    await reporter.start()
    await reporter.start()
    assert await reporter.stop() == {}
    assert await reporter.stop() == {}
    with pytest.raises(ReporterClosedError):
        await reporter.start()
    with pytest.raises(ReporterClosedError):
        await reporter.submit(_events("ex", 1)[0])
    with pytest.raises(ReporterClosedError):
        await reporter.flush("ex")


async def test_stop_before_start_reports_queued_events(tmp_path: Path) -> None:
    """Events submitted to a reporter that never started are reported and dead-lettered at stop."""
    reporter = Reporter(MemorySink(), dead_letter_path=tmp_path / "dl.jsonl")
    for event in _events("ex", 2):
        await reporter.submit(event)
    assert await reporter.stop(grace=0) == {"ex": 2}
    assert reporter.stats.abandoned == 2


def test_invalid_sizes_are_rejected() -> None:
    """Capacity, batch size and concurrency must be positive."""
    with pytest.raises(ValueError, match="at least 1"):
        Reporter(MemorySink(), capacity=0)
    with pytest.raises(ValueError, match="at least 1"):
        Reporter(MemorySink(), max_batch=0)
    with pytest.raises(ValueError, match="at least 1"):
        Reporter(MemorySink(), concurrency=0)


async def test_submit_nowait_takes_what_fits_and_leaves_the_rest_to_submit(tmp_path: Path) -> None:
    """With room, submit_nowait accepts at once; on a full outbox it refuses without queuing, and a waiting submit
    gets the room a delivery frees, in order."""
    sink = MemorySink()
    sink.open.clear()
    reporter = Reporter(sink, capacity=2, dead_letter_path=tmp_path / "dl.jsonl")
    await reporter.start()
    events = _events("ex", 4)
    assert reporter.submit_nowait(events[0])
    assert reporter.submit_nowait(events[1])
    assert not reporter.submit_nowait(events[2])  # full: nothing queued
    assert reporter.stats.pending == 2
    waiting = asyncio.create_task(reporter.submit(events[2]))
    await asyncio.sleep(0.02)
    assert not waiting.done()
    sink.open.set()
    await asyncio.wait_for(waiting, 5)
    await reporter.submit(events[3])
    await reporter.flush("ex", timeout=5)
    assert sink.received("ex") == [1, 2, 3, 4]
    await reporter.stop()
    with pytest.raises(ReporterClosedError):
        reporter.submit_nowait(_events("late", 1)[0])


async def test_a_woken_producer_that_is_cancelled_passes_the_room_on() -> None:
    """Two producers wait on a full outbox; the one a settled event wakes is cancelled before it runs: the room
    goes to the other instead of being lost."""
    outbox = Outbox(capacity=1)
    a, b, c = _events("a", 1) + _events("b", 1) + _events("c", 1)
    await outbox.put(a)
    first = asyncio.create_task(outbox.put(b))
    second = asyncio.create_task(outbox.put(c))
    await asyncio.sleep(0.01)
    assert not first.done()
    assert not second.done()
    assert await outbox.take(1) == [a]
    await outbox.settle([a])  # wakes `first`; no await in between: it has not run yet
    first.cancel()
    await asyncio.wait_for(second, 5)
    assert await outbox.take(5) == [c]
    assert first.cancelled()
