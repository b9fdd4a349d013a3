"""The bounded outbox: an ordered queue per execution, batches taken across executions, one batch in flight each.

Invariants the reporter's guarantees rest on:
- an event counts against `capacity` from `put` until it is settled (delivered or dead-lettered), so memory is
  bounded by `capacity` events however slow the sink is, and a full outbox makes `put` wait instead of dropping;
- an execution with events in flight is not handed out again until they are settled, so a batch that is retried
  can never be overtaken by a later event of the same execution: order per execution is submission order;
- executions are handed out round-robin, so one busy execution cannot starve the others.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from callbacks._errors import ReporterClosedError
from callbacks._event import CloudEvent


class _Signal:
    """Tasks waiting for a condition on the outbox's state. No lock: every change of that state happens between
    two awaits of the one event loop, so a woken task only has to check its condition again."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        while not condition():
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self.notify()  # it was woken and leaves: the wake-up goes to the next one
                raise
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def notify(self, n: int = 1) -> None:
        """Wake up to `n` waiters, oldest first."""
        while n > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                n -= 1

    def notify_all(self) -> None:
        self.notify(len(self._waiters))


class Outbox:
    """Per-execution FIFO queues sharing one capacity; see the module docstring."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("outbox capacity must be at least 1")
        self._capacity = capacity
        self._size = 0
        self._queued: dict[str, deque[CloudEvent]] = {}
        self._in_flight: dict[str, deque[CloudEvent]] = {}
        self._ready: dict[str, None] = {}  # insertion-ordered set: queued events and nothing in flight
        self._closed = False
        self._space = _Signal()
        self._work = _Signal()
        self._empty = _Signal()

    @property
    def size(self) -> int:
        """Events held: queued plus in flight."""
        return self._size

    @property
    def full(self) -> bool:
        """True while `put` would wait."""
        return self._size >= self._capacity

    async def put(self, event: CloudEvent) -> None:
        """Queues `event`, waiting while the outbox is full.

        Raises:
            ReporterClosedError: The outbox was closed before there was room.
        """
        await self._space.wait_for(lambda: self._size < self._capacity or self._closed)
        if not self.put_nowait(event):
            raise ReporterClosedError("progress reporter stopped; event not accepted")

    def put_nowait(self, event: CloudEvent) -> bool:
        """Queues `event` if there is room now: True; False (nothing queued) when full or closed."""
        if self._size >= self._capacity or self._closed:
            return False
        execution = event.executionid
        self._queued.setdefault(execution, deque()).append(event)
        self._size += 1
        if execution not in self._in_flight:
            self._ready[execution] = None
        self._work.notify()
        return True

    async def take(self, limit: int) -> list[CloudEvent]:
        """Waits for queued events and hands out up to `limit` of them, oldest executions first."""
        await self._work.wait_for(lambda: bool(self._ready))
        batch: list[CloudEvent] = []
        while self._ready and len(batch) < limit:
            batch.extend(self._take_from(next(iter(self._ready)), limit - len(batch)))
        if self._ready:
            self._work.notify()
        return batch

    def _take_from(self, execution: str, limit: int) -> list[CloudEvent]:
        del self._ready[execution]
        queue = self._queued[execution]
        taken = [queue.popleft() for _ in range(min(limit, len(queue)))]
        if not queue:
            del self._queued[execution]
        self._in_flight[execution] = deque(taken)
        return taken

    async def settle(self, events: list[CloudEvent]) -> None:
        """Releases events that were delivered or dead-lettered (in order, possibly part of a batch)."""
        for event in events:
            self._settle_one(event)
        self._size -= len(events)
        self._space.notify(len(events))
        if self._ready:
            self._work.notify()
        if self._size == 0:
            self._empty.notify_all()

    def _settle_one(self, event: CloudEvent) -> None:
        execution = event.executionid
        in_flight = self._in_flight[execution]
        if in_flight.popleft() is not event:
            raise RuntimeError("outbox: events settled out of order")
        if not in_flight:
            del self._in_flight[execution]
            if execution in self._queued:
                self._ready[execution] = None

    async def wait_empty(self) -> None:
        """Returns once every event put so far is settled."""
        await self._empty.wait_for(lambda: self._size == 0)

    async def close(self) -> dict[str, list[CloudEvent]]:
        """Refuses further `put`s (waiting producers get `ReporterClosedError`); returns what is held, in order."""
        self._closed = True
        self._space.notify_all()
        held = {ex: [*events] for ex, events in self._in_flight.items()}
        for execution, events in self._queued.items():
            held.setdefault(execution, []).extend(events)
        return held

    def pending(self, execution: str) -> int:
        """Events of `execution` not yet settled."""
        return len(self._queued.get(execution, ())) + len(self._in_flight.get(execution, ()))
