"""The reporter: hands events to a bounded outbox at once and delivers them from background senders.

What it promises:
- `submit` never waits for the network, only for room in the outbox (back-pressure); it never drops an event.
- Events of one execution reach the sink in submission order (the engine submits in `sequence` order);
  batches mix executions; a batch is retried whole until delivered (see `callbacks._retry`).
- A batch refused for good is resent one event at a time, so only the refused events go to the dead-letter file.
- `flush(execution_id)` returns once the execution's terminal event is confirmed by the sink (that of the latest
  attempt submitted: a late confirmation of an earlier attempt does not count).
- `stop(grace)` keeps delivering for up to `grace` seconds, then writes whatever is left to the dead-letter file
  and returns the count per execution.
- Nothing is ever logged from an event but its execution id and sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from callbacks._deadletter import DEFAULT_DEAD_LETTER_PATH, DeadLetterFile
from callbacks._errors import (
    DeadLetteredError,
    FlushTimeoutError,
    ReporterClosedError,
    SinkError,
)
from callbacks._event import CloudEvent
from callbacks._outbox import Outbox
from callbacks._retry import RetryPolicy, deliver_with_retry, is_transient
from callbacks._sink import Sink

logger = logging.getLogger("callbacks.delivery")

DEFAULT_CAPACITY = 10_000
DEFAULT_MAX_BATCH = 256
DEFAULT_CONCURRENCY = 4
DEFAULT_GRACE = 10.0
_REMEMBERED_OUTCOMES = 10_000  # settled terminal events kept so a late `flush` still returns at once
_FORGOTTEN_AT_ONCE = 64  # outcomes past that many before the oldest go: one scan per 64 executions, not one each


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class _Outcome(enum.Enum):
    DELIVERED = "delivered"
    DEAD_LETTERED = "dead-lettered"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryStats:
    """Counters of one reporter since it was created.

    Attributes:
        delivered: Events confirmed by the sink.
        retried: Retries of a batch after a transient failure.
        dead_lettered: Events refused for good (or given up on) and written to the dead-letter file.
        abandoned: Events still undelivered when `stop` ran out of grace (also written to the dead-letter file).
        pending: Events in the outbox now, queued or in flight.
    """

    delivered: int
    retried: int
    dead_lettered: int
    abandoned: int
    pending: int


def describe(events: Sequence[CloudEvent], limit: int = 3) -> str:
    """Log-safe summary of a batch: execution ids with sequence ranges, never payloads."""
    ranges: dict[str, tuple[int, int]] = {}
    for event in events:
        low, high = ranges.get(event.executionid, (event.sequence, event.sequence))
        ranges[event.executionid] = (min(low, event.sequence), max(high, event.sequence))
    parts = [f"{ex}#{lo}" if lo == hi else f"{ex}#{lo}-{hi}" for ex, (lo, hi) in list(ranges.items())[:limit]]
    if len(ranges) > limit:
        parts.append(f"(+{len(ranges) - limit} executions)")
    return ", ".join(parts)


def _reason(exc: Exception) -> str:
    detail = f"{type(exc).__name__}: {exc.code}" if isinstance(exc, SinkError) else type(exc).__name__
    return f"gave up retrying ({detail})" if is_transient(exc) else f"refused ({detail})"


class Reporter:
    """Delivers progress events to one sink: bounded, ordered per execution, batched, retried until delivered.

    One per process. Use `async with Reporter(sink) as reporter:` or call `start()` and `stop()`.

    Args:
        sink: Where events go.
        capacity: Most events held at once; `submit` waits while the outbox holds this many.
        max_batch: Most events per `Sink.send`.
        concurrency: Batches in flight at once (each execution has at most one).
        retry: Retry policy (defaults: unlimited retries, 0.2 s doubling to 30 s, with jitter).
        dead_letter_path: JSON-lines file for events refused for good or left at shutdown.
    """

    def __init__(
        self,
        sink: Sink,
        *,
        capacity: int = DEFAULT_CAPACITY,
        max_batch: int = DEFAULT_MAX_BATCH,
        concurrency: int = DEFAULT_CONCURRENCY,
        retry: RetryPolicy | None = None,
        dead_letter_path: str | Path = DEFAULT_DEAD_LETTER_PATH,
    ) -> None:
        if max_batch < 1 or concurrency < 1:
            raise ValueError("max_batch and concurrency must be at least 1")
        self.sink = sink
        self._outbox = Outbox(capacity)
        self._max_batch = max_batch
        self._concurrency = concurrency
        self._retry = retry or RetryPolicy()
        self._dead_letter = DeadLetterFile(dead_letter_path)
        self._state = _State.NEW
        self._workers: list[asyncio.Task[None]] = []
        self._stopping: asyncio.Task[dict[str, int]] | None = None
        self._outcomes: OrderedDict[str, asyncio.Future[_Outcome]] = OrderedDict()
        # Execution id -> the attempt whose terminal event `flush` waits for: the latest one submitted.
        self._attempts: dict[str, int] = {}
        self._delivered = self._retried = self._dead_lettered = self._abandoned = 0

    @property
    def dead_letter_path(self) -> Path:
        """Where undeliverable events are written."""
        return self._dead_letter.path

    @property
    def stats(self) -> DeliveryStats:
        """A snapshot of the counters."""
        return DeliveryStats(
            delivered=self._delivered,
            retried=self._retried,
            dead_lettered=self._dead_lettered,
            abandoned=self._abandoned,
            pending=self._outbox.size,
        )

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Starts the background senders; does nothing if already running.

        Raises:
            ReporterClosedError: The reporter was stopped; it cannot start again.
        """
        if self._state is _State.RUNNING:
            return
        if self._state is not _State.NEW:
            raise ReporterClosedError("a stopped progress reporter cannot start again")
        self._workers = [
            asyncio.create_task(self._work(), name=f"progress-sender-{n}") for n in range(self._concurrency)
        ]
        self._state = _State.RUNNING

    async def submit(self, event: CloudEvent) -> None:
        """Hands `event` over for delivery; waits only while the outbox is full.

        Events of one execution must be submitted in `sequence` order; they are delivered in that order.
        Events submitted before `start` wait in the outbox.

        Raises:
            ReporterClosedError: The reporter is stopping or stopped: the event was not accepted.
        """
        self._accept(event)
        await self._outbox.put(event)

    def submit_nowait(self, event: CloudEvent) -> bool:
        """`submit` when that would not wait: True once `event` is accepted; False, with nothing done, while the
        outbox is full (then `submit` is the way in).

        Raises:
            ReporterClosedError: As `submit`.
        """
        if self._outbox.full and self._state not in (_State.STOPPING, _State.STOPPED):
            return False
        self._accept(event)
        return self._outbox.put_nowait(event)

    def _accept(self, event: CloudEvent) -> None:
        if self._state in (_State.STOPPING, _State.STOPPED):
            raise ReporterClosedError("progress reporter stopped; event not accepted")
        known = self._outcomes.get(event.executionid)
        if known is not None and known.done():
            # A new attempt of an execution that already ended: `flush` must wait for its new terminal event.
            del self._outcomes[event.executionid]
        self._attempts[event.executionid] = event.attempt

    async def flush(self, execution_id: str, timeout: float | None = None) -> None:  # noqa: ASYNC109 see below
        """Returns once the terminal event of `execution_id` is confirmed by the sink.

        Everything the execution submitted before its terminal event is delivered by then too. `timeout` is a
        parameter (rather than the caller's `asyncio.timeout`) so that giving up raises `FlushTimeoutError`
        with the count of events still pending. An execution whose terminal event is never submitted keeps
        `flush` waiting until `timeout`. Outcomes of the last 10,000 finished executions are remembered.

        Args:
            execution_id: The execution to wait for.
            timeout: Seconds to wait at most (None: no limit).

        Raises:
            FlushTimeoutError: Not confirmed within `timeout`.
            DeadLetteredError: The sink refused the terminal event for good; it is in the dead-letter file.
            ReporterClosedError: The reporter stopped before the terminal event was confirmed.
        """
        outcome = self._outcomes.get(execution_id)
        if outcome is None:
            if self._state is _State.STOPPED:
                raise ReporterClosedError(f"progress reporter stopped; execution {execution_id} not confirmed")
            outcome = self._outcomes[execution_id] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                result = await asyncio.shield(outcome)
        except TimeoutError:
            raise FlushTimeoutError(execution_id, timeout or 0.0, self._outbox.pending(execution_id)) from None
        _raise_for(result, execution_id)

    async def stop(self, grace: float = DEFAULT_GRACE) -> dict[str, int]:
        """Delivers what it can within `grace` seconds, then stops; safe to call more than once.

        Events still undelivered after the grace period are written to the dead-letter file and logged as a
        count per execution.

        Returns:
            Undelivered events per execution id (empty when everything was delivered).
        """
        if self._stopping is None:
            self._stopping = asyncio.create_task(self._shutdown(grace), name="progress-reporter-stop")
        return dict(await asyncio.shield(self._stopping))

    async def _shutdown(self, grace: float) -> dict[str, int]:
        # New submissions are refused from here on, but producers already waiting for room still get in
        # while the senders drain: they were accepted before the stop.
        self._state = _State.STOPPING
        if self._workers:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._outbox.wait_empty()
            await self._cancel_workers()
        left = await self._outbox.close()
        if left:
            await self._abandon(left, grace)
        self._state = _State.STOPPED
        self._attempts.clear()
        for outcome in self._outcomes.values():
            if not outcome.done():
                outcome.set_result(_Outcome.CLOSED)
        await self._close_sink()
        return {execution: len(events) for execution, events in left.items()}

    async def _cancel_workers(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

    async def _abandon(self, left: dict[str, list[CloudEvent]], grace: float) -> None:
        events = [event for execution in left.values() for event in execution]
        self._abandoned += len(events)
        await self._dead_letter.append(events, f"undelivered when the reporter stopped (grace {grace:g}s)")
        counts = ", ".join(f"{execution} ({len(held)})" for execution, held in left.items())
        logger.warning(
            "progress reporter stopped with %d undelivered events, written to %s: %s",
            len(events),
            self._dead_letter.path,
            counts,
        )

    async def _close_sink(self) -> None:
        try:
            await self.sink.close()
        except Exception as exc:
            logger.warning("progress sink did not close cleanly (%s)", type(exc).__name__)

    async def _work(self) -> None:
        while True:
            batch = await self._outbox.take(self._max_batch)
            await self._deliver(batch)

    async def _deliver(self, batch: list[CloudEvent]) -> None:
        try:
            await deliver_with_retry(
                self._retry,
                lambda: self.sink.send(batch),
                describe=lambda: describe(batch),
                on_retry=self._count_retry,
            )
        except Exception as exc:
            await self._undeliverable(batch, exc)
        else:
            self._delivered += len(batch)
            await self._settle(batch, _Outcome.DELIVERED)

    def _count_retry(self) -> None:
        self._retried += 1

    async def _undeliverable(self, batch: list[CloudEvent], exc: Exception) -> None:
        if len(batch) > 1 and not is_transient(exc):
            # The sink refused the batch; it may be one event's fault. Alone, each event gets its own verdict.
            for event in batch:
                await self._deliver([event])
            return
        reason = _reason(exc)
        logger.error("progress events dead-lettered, %s: %s", reason, describe(batch))
        await self._dead_letter.append(batch, reason)
        self._dead_lettered += len(batch)
        await self._settle(batch, _Outcome.DEAD_LETTERED)

    async def _settle(self, events: list[CloudEvent], outcome: _Outcome) -> None:
        await self._outbox.settle(events)
        for event in events:
            # An earlier attempt's terminal event (delivered late, after a redelivery started the next attempt)
            # says nothing about the attempt a `flush` now waits for.
            if event.terminal and event.attempt == self._attempts.get(event.executionid, event.attempt):
                self._attempts.pop(event.executionid, None)
                self._resolve(event.executionid, outcome)

    def _resolve(self, execution_id: str, outcome: _Outcome) -> None:
        future = self._outcomes.get(execution_id)
        if future is None or future.done():
            future = self._outcomes[execution_id] = asyncio.get_running_loop().create_future()
        future.set_result(outcome)
        self._outcomes.move_to_end(execution_id)
        self._forget_oldest()

    def _forget_oldest(self) -> None:
        excess = len(self._outcomes) - _REMEMBERED_OUTCOMES
        if excess < _FORGOTTEN_AT_ONCE:
            return
        # Oldest first; a future someone still awaits (an unresolved flush) is kept whatever its age.
        oldest = itertools.islice(self._outcomes.items(), excess + 64)
        for execution_id in [key for key, future in oldest if future.done()][:excess]:
            del self._outcomes[execution_id]


def _raise_for(outcome: _Outcome, execution_id: str) -> None:
    if outcome is _Outcome.DEAD_LETTERED:
        raise DeadLetteredError(execution_id)
    if outcome is _Outcome.CLOSED:
        raise ReporterClosedError(f"progress reporter stopped before execution {execution_id} was confirmed")
