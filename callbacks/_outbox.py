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

from callbacks._errors import ReporterClosedError
from callbacks._event import CloudEvent


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
        lock = asyncio.Lock()
        self._space = asyncio.Condition(lock)
        self._work = asyncio.Condition(lock)
        self._empty = asyncio.Condition(lock)

    @property
    def size(self) -> int:
        """Events held: queued plus in flight."""
        return self._size

    async def put(self, event: CloudEvent) -> None:
        """Queues `event`, waiting while the outbox is full.

        Raises:
            ReporterClosedError: The outbox was closed before there was room.
        """
        async with self._space:
            await self._space.wait_for(lambda: self._size < self._capacity or self._closed)
            if self._closed:
                raise ReporterClosedError("progress reporter stopped; event not accepted")
            execution = event.executionid
            self._queued.setdefault(execution, deque()).append(event)
            self._size += 1
            if execution not in self._in_flight:
                self._ready[execution] = None
            self._work.notify()

    async def take(self, limit: int) -> list[CloudEvent]:
        """Waits for queued events and hands out up to `limit` of them, oldest executions first."""
        async with self._work:
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
        async with self._space:
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
        async with self._empty:
            await self._empty.wait_for(lambda: self._size == 0)

    async def close(self) -> dict[str, list[CloudEvent]]:
        """Refuses further `put`s (waiting producers get `ReporterClosedError`); returns what is held, in order."""
        async with self._space:
            self._closed = True
            self._space.notify_all()
            held = {ex: [*events] for ex, events in self._in_flight.items()}
            for execution, events in self._queued.items():
                held.setdefault(execution, []).extend(events)
            return held

    def pending(self, execution: str) -> int:
        """Events of `execution` not yet settled."""
        return len(self._queued.get(execution, ())) + len(self._in_flight.get(execution, ()))
