"""The in-process event bus: `emit` publishes CloudEvents here; `listen` (and later ingresses) subscribe.

The bus is partitioned by tenant: an event published for one tenant reaches only that tenant's subscribers, so
one tenant's `emit` can never satisfy (or be read by) another tenant's `listen`. A run sees the bus through
`scope(tenant)`, a view that cannot name any other tenant. Bridges (the AMQP bus, a supervisor relaying between
worker processes) subscribe to every tenant with `subscribe_all` and publish with the tenant they received.

The bus remembers the most recent events with the time they were published, so a subscriber can also receive
what was published since a given moment (`subscribe_since`) without a gap or a duplicate between the backlog and
the live queue: both are taken in one step, with no await in between.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from ._command import DEFAULT_TENANT

Tagged = tuple[str, dict[str, Any]]
"""An event with the tenant it was published for."""


class EventBus:
    """Fan-out of emitted events to the current subscribers of their tenant; no subscriber: only recorded."""

    def __init__(self, history: int = 1000) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}
        self._watchers: set[asyncio.Queue[Tagged]] = set()
        self._history: dict[str, deque[tuple[float, dict[str, Any]]]] = {}
        self._history_size = history

    async def publish(self, event: dict[str, Any], tenant: str = DEFAULT_TENANT) -> None:
        """Deliver `event` to every subscriber of `tenant` and to every bridge."""
        self.deliver(event, tenant)
        for queue in self._watchers:
            queue.put_nowait((tenant, event))

    def deliver(self, event: dict[str, Any], tenant: str) -> None:
        """Deliver `event` to the subscribers of `tenant` only (what a bridge does with an event it brings in)."""
        history = self._history.get(tenant)
        if history is None:
            history = self._history[tenant] = deque(maxlen=self._history_size)
        history.append((time.time(), event))
        for queue in self._subscribers.get(tenant, ()):
            queue.put_nowait(event)

    def subscribe(self, tenant: str = DEFAULT_TENANT) -> asyncio.Queue[dict[str, Any]]:
        """A new queue receiving every event published for `tenant` from now on."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subscribers.setdefault(tenant, set()).add(queue)
        return queue

    def subscribe_since(
        self, since: float, tenant: str = DEFAULT_TENANT
    ) -> tuple[list[dict[str, Any]], asyncio.Queue[dict[str, Any]]]:
        """Events of `tenant` remembered from `since` (epoch seconds) on, oldest first, and a queue for later ones."""
        backlog = [event for published, event in self._history.get(tenant, ()) if published >= since]
        return backlog, self.subscribe(tenant)

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        """Stop delivering to `queue` (a tenant's subscriber)."""
        for subscribers in self._subscribers.values():
            subscribers.discard(queue)

    def subscribe_all(self) -> asyncio.Queue[Tagged]:
        """A queue receiving every event published from now on, of every tenant, with its tenant (bridges)."""
        queue: asyncio.Queue[Tagged] = asyncio.Queue()
        self._watchers.add(queue)
        return queue

    def unsubscribe_all(self, queue: asyncio.Queue[Tagged]) -> None:
        """Stop delivering to a bridge's queue."""
        self._watchers.discard(queue)

    def scope(self, tenant: str) -> TenantBus:
        """The bus as one tenant's run sees it."""
        return TenantBus(self, tenant)

    def published(self, tenant: str = DEFAULT_TENANT) -> list[dict[str, Any]]:
        """The most recent events of `tenant`, oldest first."""
        return [event for _, event in self._history.get(tenant, ())]


class TenantBus:
    """One tenant's view of the bus: the same calls, no way to reach another tenant."""

    __slots__ = ("_bus", "tenant")

    def __init__(self, bus: EventBus, tenant: str) -> None:
        self._bus = bus
        self.tenant = tenant

    async def publish(self, event: dict[str, Any]) -> None:
        """Publish `event` to this tenant."""
        await self._bus.publish(event, self.tenant)

    def subscribe_since(self, since: float) -> tuple[list[dict[str, Any]], asyncio.Queue[dict[str, Any]]]:
        """This tenant's events since `since`, and a queue for later ones."""
        return self._bus.subscribe_since(since, self.tenant)

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        """Stop delivering to `queue`."""
        self._bus.unsubscribe(queue)
