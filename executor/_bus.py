"""The in-process event bus: `emit` publishes CloudEvents here; `listen` (and later ingresses) subscribe."""

from __future__ import annotations

import asyncio
from typing import Any


class EventBus:
    """Fan-out of emitted events to every current subscriber; no subscriber means the event is only recorded."""

    def __init__(self, history: int = 1000) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._history: list[dict[str, Any]] = []
        self._history_size = history

    async def publish(self, event: dict[str, Any]) -> None:
        """Deliver `event` to every subscriber queue."""
        self._history.append(event)
        del self._history[: -self._history_size]
        for queue in self._subscribers:
            await queue.put(event)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """A new queue receiving every event published from now on."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        """Stop delivering to `queue`."""
        self._subscribers.discard(queue)

    @property
    def published(self) -> list[dict[str, Any]]:
        """The most recent events, oldest first."""
        return list(self._history)
