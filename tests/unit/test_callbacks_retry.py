"""The retry policy: what is retried, how long it waits, when it stops."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import pytest

from callbacks import RetryPolicy, SinkRefusedError, SinkUnavailableError, is_transient
from callbacks._http_sink import retry_after
from callbacks._retry import deliver_with_retry


class _Recorder:
    """Injectable sleep: records the delays, returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class _Flaky:
    """A send that fails with `errors` in turn, then succeeds."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)


async def _deliver(policy: RetryPolicy, send: _Flaky) -> None:
    await deliver_with_retry(policy, send, describe=lambda: "ex#1-2", on_retry=lambda: None)


def test_backoff_doubles_up_to_the_cap() -> None:
    """Without jitter the delays double from the initial delay and stay at the cap."""
    policy = RetryPolicy(initial_delay=0.5, max_delay=4.0, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert policy.delay(10_000) == 4.0


def test_jitter_stays_within_half_and_the_cap() -> None:
    """With the default jitter each delay is between half and all of its backoff step."""
    policy = RetryPolicy(initial_delay=1.0, max_delay=8.0)
    for n in range(1, 10):
        step = min(8.0, 2.0 ** (n - 1))
        assert step / 2 <= policy.delay(n) <= step


def test_transient_predicate_names_concrete_types() -> None:
    """Unavailable sinks, broken connections and timeouts pass; refusals, bugs and cancellation do not."""
    assert is_transient(SinkUnavailableError("UNAVAILABLE"))
    assert is_transient(ConnectionRefusedError())
    assert is_transient(TimeoutError())
    assert not is_transient(SinkRefusedError("HTTP 400"))
    assert not is_transient(ValueError())
    assert not is_transient(asyncio.CancelledError())


async def test_retries_transient_failures_without_limit_by_default() -> None:
    """Fifty failures in a row are retried; every delay respects the cap."""
    sleep = _Recorder()
    send = _Flaky(*[SinkUnavailableError("UNAVAILABLE") for _ in range(50)])
    await _deliver(RetryPolicy(max_delay=2.0, sleep=sleep), send)
    assert send.calls == 51
    assert len(sleep.delays) == 50
    assert max(sleep.delays) <= 2.0


async def test_retry_after_replaces_backoff_and_is_capped() -> None:
    """A Retry-After from the sink sets the delay, shortened to max_delay."""
    sleep = _Recorder()
    send = _Flaky(SinkUnavailableError("HTTP 429", retry_after=3.0), SinkUnavailableError("HTTP 503", retry_after=90))
    await _deliver(RetryPolicy(max_delay=10.0, sleep=sleep), send)
    assert sleep.delays == [3.0, 10.0]


async def test_cancellation_is_never_retried() -> None:
    """CancelledError propagates at once."""
    sleep = _Recorder()
    with pytest.raises(asyncio.CancelledError):
        await _deliver(RetryPolicy(sleep=sleep), _Flaky(asyncio.CancelledError()))
    assert sleep.delays == []


async def test_refusals_and_unknown_errors_are_not_retried() -> None:
    """A permanent refusal or an unexpected error is raised on the first try."""
    for error in (SinkRefusedError("INVALID_ARGUMENT"), KeyError("x")):
        send = _Flaky(error)
        with pytest.raises(type(error)):
            await _deliver(RetryPolicy(sleep=_Recorder()), send)
        assert send.calls == 1


async def test_max_attempts_gives_up_with_the_last_error() -> None:
    """A configured attempt limit ends in the last transient error, not tenacity's RetryError."""
    send = _Flaky(*[SinkUnavailableError("UNAVAILABLE") for _ in range(5)])
    with pytest.raises(SinkUnavailableError):
        await _deliver(RetryPolicy(max_attempts=3, sleep=_Recorder()), send)
    assert send.calls == 3


async def test_retry_log_names_batch_and_error_class_only(caplog: pytest.LogCaptureFixture) -> None:
    """The retry log line carries the error class, its code, the try and the batch description."""
    caplog.set_level(logging.WARNING)
    await _deliver(RetryPolicy(sleep=_Recorder()), _Flaky(SinkUnavailableError("HTTP 503")))
    assert "SinkUnavailableError HTTP 503" in caplog.text
    assert "try 1" in caplog.text
    assert "ex#1-2" in caplog.text


def test_retry_after_header_forms() -> None:
    """Retry-After is read as delta-seconds or an HTTP date; garbage is ignored."""
    now = dt.datetime(2025, 6, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert retry_after("120") == 120.0
    assert retry_after("Sun, 01 Jun 2025 12:00:30 GMT", now=now) == 30.0
    assert retry_after("Sun, 01 Jun 2025 11:00:00 GMT", now=now) == 0.0
    assert retry_after("soon") is None
    assert retry_after(None) is None
