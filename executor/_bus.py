"""The in-process event bus: `emit` publishes CloudEvents here; `listen` (and later ingresses) subscribe.

The bus remembers the most recent events with the time they were published, so a subscriber can also receive
what was published since a given moment (`subscribe_since`) without a gap or a duplicate between the backlog and
the live queue: both are taken in one step, with no await in between.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any


class EventBus:
    """Fan-out of emitted events to every current subscriber; no subscriber means the event is only recorded."""

    def __init__(self, history: int = 1000) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._history: list[tuple[float, dict[str, Any]]] = []
        self._history_size = history

    async def publish(self, event: dict[str, Any]) -> None:
        """Deliver `event` to every subscriber queue."""
        self._history.append((time.time(), event))
        del self._history[: -self._history_size]
        for queue in self._subscribers:
            queue.put_nowait(event)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """A new queue receiving every event published from now on."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subscribers.add(queue)
        return queue

    def subscribe_since(self, since: float) -> tuple[list[dict[str, Any]], asyncio.Queue[dict[str, Any]]]:
        """Events remembered from `since` (epoch seconds) on, oldest first, and a queue for every later one."""
        backlog = [event for published, event in self._history if published >= since]
        return backlog, self.subscribe()

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        """Stop delivering to `queue`."""
        self._subscribers.discard(queue)

    @property
    def published(self) -> list[dict[str, Any]]:
        """The most recent events, oldest first."""
        return [event for _, event in self._history]
