"""Progress delivery under failure, through real gRPC and HTTP sockets to the reference sink."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from callbacks import (
    CloudEvent,
    DeadLetteredError,
    ReferenceSink,
    Reporter,
    ReporterClosedError,
    Sink,
)
from tests.helpers import eventually
from tests.reliability.conftest import FAST_RETRY, assert_exactly_once_in_order, lifecycle

pytestmark = pytest.mark.timeout(60)


async def _submit_all(reporter: Reporter, executions: dict[str, list[CloudEvent]]) -> None:
    """One producer per execution, all at once, as concurrent executions would."""

    async def produce(events: list[CloudEvent]) -> None:
        for event in events:
            await reporter.submit(event)

    await asyncio.gather(*(produce(events) for events in executions.values()))


def _text(path: Path) -> str:
    return path.read_text()


def _dead_letters(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


async def test_sink_refusing_first_calls(
    refsink: ReferenceSink, make_sink: Callable[..., Sink], dead_letter: Path
) -> None:
    """A sink that turns down its first calls still ends up with every event once, in order, terminal last."""
    refsink.fail_first = 4
    executions = {f"refuse-{n}": lifecycle(f"refuse-{n}", 30) for n in range(3)}
    async with Reporter(make_sink(), retry=FAST_RETRY, max_batch=16, dead_letter_path=dead_letter) as reporter:
        await _submit_all(reporter, executions)
        for execution in executions:
            await reporter.flush(execution, timeout=20)
        assert reporter.stats.retried >= 4
    assert_exactly_once_in_order(refsink, [e for events in executions.values() for e in events])
    assert refsink.calls > 4
    assert _dead_letters(dead_letter) == []


async def test_sink_down_mid_run(refsink: ReferenceSink, make_sink: Callable[..., Sink], dead_letter: Path) -> None:
    """A sink down for seconds mid-run loses nothing; flush returns only once the terminal event is stored."""
    executions = {f"down-{n}": lifecycle(f"down-{n}", 40) for n in range(2)}
    confirmed_at_flush: dict[str, set[str]] = {}
    async with Reporter(make_sink(), retry=FAST_RETRY, max_batch=8, dead_letter_path=dead_letter) as reporter:

        async def flush(execution: str) -> None:
            await reporter.flush(execution, timeout=30)
            confirmed_at_flush[execution] = {event["id"] for event in refsink.events_of(execution)}

        await _submit_all(reporter, {ex: events[:20] for ex, events in executions.items()})
        await eventually(lambda: len(refsink.events) == 40, what="40 events at the reference sink")
        await refsink.stop()
        await _submit_all(reporter, {ex: events[20:] for ex, events in executions.items()})
        flushes = [asyncio.create_task(flush(execution)) for execution in executions]
        await asyncio.sleep(3.0)
        assert not any(task.done() for task in flushes), "flush returned while the sink was down"
        assert reporter.stats.retried > 0
        await refsink.start()
        await asyncio.wait_for(asyncio.gather(*flushes), timeout=30)
    for execution, events in executions.items():
        assert events[-1].id in confirmed_at_flush[execution]
    assert_exactly_once_in_order(refsink, [e for events in executions.values() for e in events])
    assert _dead_letters(dead_letter) == []


async def test_slow_sink_backpressure(
    refsink: ReferenceSink, make_sink: Callable[..., Sink], dead_letter: Path
) -> None:
    """With a slow sink, submit returns at once until the outbox is full, then waits; nothing is lost."""
    refsink.delay = 0.5
    capacity = 10
    events = lifecycle("slow", 60)
    reporter = Reporter(make_sink(), retry=FAST_RETRY, capacity=capacity, max_batch=5, concurrency=1)
    async with reporter:
        for event in events[:capacity]:
            await asyncio.wait_for(reporter.submit(event), timeout=0.1)
        blocked = asyncio.create_task(reporter.submit(events[capacity]))
        await asyncio.sleep(0.2)
        assert not blocked.done(), "submit did not wait for room in a full outbox"
        await asyncio.wait_for(blocked, timeout=5)
        refsink.delay = 0.01
        for event in events[capacity + 1 :]:
            await reporter.submit(event)
            assert reporter.stats.pending <= capacity
        await reporter.flush("slow", timeout=20)
    assert_exactly_once_in_order(refsink, events)
    assert _dead_letters(dead_letter) == []


async def test_permanent_refusal_goes_to_dead_letter(
    refsink: ReferenceSink, make_sink: Callable[..., Sink], dead_letter: Path
) -> None:
    """An event the sink refuses for good lands in the dead-letter file with its reason; the rest is delivered."""
    good = lifecycle("dl-good", 6)
    mixed = lifecycle("dl-mixed", 6)
    mixed[2] = dataclasses.replace(mixed[2], source="")  # not a valid CloudEvent: refused for good
    bad_end = lifecycle("dl-bad-end", 3)
    bad_end[-1] = dataclasses.replace(bad_end[-1], source="")
    reporter = Reporter(make_sink(), retry=FAST_RETRY, max_batch=64, dead_letter_path=dead_letter)
    # Submitted before start, so the first batch mixes good and refused events.
    await _submit_all(reporter, {"a": good, "b": mixed, "c": bad_end})
    async with reporter:
        await reporter.flush("dl-good", timeout=20)
        await reporter.flush("dl-mixed", timeout=20)
        with pytest.raises(DeadLetteredError):
            await reporter.flush("dl-bad-end", timeout=20)
        assert reporter.stats.dead_lettered == 2
    letters = _dead_letters(dead_letter)
    assert [letter["event"]["id"] for letter in letters] == [mixed[2].id, bad_end[-1].id]
    assert all("refused" in str(letter["reason"]) for letter in letters)
    assert [e["id"] for e in refsink.events_of("dl-good")] == [e.id for e in good]
    assert [e["id"] for e in refsink.events_of("dl-mixed")] == [e.id for i, e in enumerate(mixed) if i != 2]
    assert refsink.out_of_order == []


async def test_secrets_never_in_events_or_logs(
    refsink: ReferenceSink,
    make_sink: Callable[..., Sink],
    dead_letter: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The API key and event payloads appear in no log line, and the key in no event, across every log path."""
    caplog.set_level(logging.DEBUG)
    api_key = "sk-live-0123456789abcdef"
    payload_secret = "payload-4242-never-log-me"
    refsink.api_key, refsink.fail_first = api_key, 2  # retries, then accepted with the right key only
    events = lifecycle("secret", 5, data={"token": payload_secret})
    events[1] = dataclasses.replace(events[1], source="")  # refused: exercises the dead-letter log line
    async with Reporter(make_sink(api_key=api_key), retry=FAST_RETRY, dead_letter_path=dead_letter) as reporter:
        for event in events:
            await reporter.submit(event)
        await reporter.flush("secret", timeout=20)
        await refsink.stop()
        await reporter.submit(lifecycle("secret-left", 2)[0])  # left at shutdown: exercises that log line
        left = await reporter.stop(grace=0.3)
    assert left == {"secret-left": 1}
    assert reporter.stats.retried >= 2
    assert len(refsink.events) == 4
    assert "dead-lettered" in caplog.text
    assert "undelivered" in caplog.text
    assert api_key not in caplog.text
    assert payload_secret not in caplog.text
    assert api_key not in _text(tmp_path / "received.jsonl")
    assert api_key not in _text(dead_letter)


async def test_shutdown_flushes_within_grace(
    refsink: ReferenceSink, make_sink: Callable[..., Sink], dead_letter: Path
) -> None:
    """Stopping with events still queued delivers them within the grace period and reports nothing left."""
    refsink.delay = 0.1
    executions = {f"grace-{n}": lifecycle(f"grace-{n}", 10) for n in range(3)}
    reporter = Reporter(make_sink(), retry=FAST_RETRY, max_batch=4, concurrency=2, dead_letter_path=dead_letter)
    await reporter.start()
    await _submit_all(reporter, executions)
    started = time.monotonic()
    assert await reporter.stop(grace=15) == {}
    assert time.monotonic() - started < 15
    assert await reporter.stop(grace=15) == {}  # idempotent
    assert_exactly_once_in_order(refsink, [e for events in executions.values() for e in events])
    with pytest.raises(ReporterClosedError):
        await reporter.submit(executions["grace-0"][0])
    assert _dead_letters(dead_letter) == []


async def test_shutdown_reports_what_is_left(
    refsink: ReferenceSink, make_sink: Callable[..., Sink], dead_letter: Path
) -> None:
    """With the sink down, stop gives up after the grace period and reports (and dead-letters) what is left."""
    sink = make_sink()
    await refsink.stop()
    reporter = Reporter(sink, retry=FAST_RETRY, dead_letter_path=dead_letter)
    await reporter.start()
    await _submit_all(reporter, {"a": lifecycle("left-a", 4), "b": lifecycle("left-b", 2)})
    waiting = asyncio.create_task(reporter.flush("left-a"))
    started = time.monotonic()
    left = await reporter.stop(grace=0.5)
    assert time.monotonic() - started < 5
    assert left == {"left-a": 4, "left-b": 2}
    assert reporter.stats.abandoned == 6
    with pytest.raises(ReporterClosedError):
        await waiting
    letters = _dead_letters(dead_letter)
    assert len(letters) == 6
    assert all("undelivered" in str(letter["reason"]) for letter in letters)
