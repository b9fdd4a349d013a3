"""Tenant-fair run slots: a global cap, a per-tenant cap, and round-robin between the tenants that wait.

    acquire(tenant)      a free slot and the tenant under its cap, with nobody of that tenant waiting → at once;
                         otherwise wait at the back of the tenant's own FIFO
    release(tenant)      the slot goes to the next tenant in the ring (skipping tenants at their cap) that has a
                         waiter; the ring moves on, so each waiting tenant gets one slot per turn; a tenant that
                         starts waiting with nothing running joins the ring at its head (next turn is its)

A tenant with thousands of executions waiting holds one place in the ring, the same as a tenant with one: the
other tenant's new execution waits for about one slot to free, not for the flood. Weights are not configurable
yet: every tenant's turn is one slot.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque

from executor import DEFAULT_TENANT

from ._metrics import Metrics


class FairScheduler:
    """Run slots shared by tenants; see the module docstring.

    Args:
        capacity: Executions running at once, all tenants together.
        tenant_capacity: Executions of one tenant running at once. None: every named tenant leaves a tenth of the
            slots (at least one) to the others, so a newcomer never waits behind a flood for a slot to free; the
            default tenant (a runner that serves one) may use them all.
        metrics: Where the per-tenant running and queued gauges live.
    """

    def __init__(self, capacity: int, tenant_capacity: int | None, metrics: Metrics) -> None:
        self.capacity = capacity
        self.tenant_capacity = tenant_capacity
        self._named_capacity = tenant_capacity or max(1, capacity - max(1, capacity // 10))
        metrics.track_tenants(self.counts)
        self._running: Counter[str] = Counter()
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}
        self._ring: deque[str] = deque()

    @property
    def running(self) -> int:
        """Slots held."""
        return self._running.total()

    def queued(self, tenant: str) -> int:
        """Executions of `tenant` waiting for a slot."""
        return sum(1 for waiter in self._waiting.get(tenant, ()) if not waiter.done())

    async def acquire(self, tenant: str) -> None:
        """Take a slot for `tenant`, waiting for its turn when none is free for it."""
        if not self._waiting.get(tenant) and self._free_for(tenant):
            self._take(tenant)
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(tenant, deque()).append(waiter)
        if tenant not in self._ring:
            # A tenant with nothing running goes first: it has had no share yet, and a light tenant's one
            # execution then waits for the next free slot, not for every busy tenant's turn before it.
            if self._running[tenant]:
                self._ring.append(tenant)
            else:
                self._ring.appendleft(tenant)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(tenant)  # granted, but the waiter was cancelled in the same turn
            raise

    def release(self, tenant: str) -> None:
        """Give back a slot of `tenant` and hand free slots to the waiting tenants in turn."""
        self._running[tenant] -= 1
        if self._running[tenant] <= 0:
            del self._running[tenant]
        self._dispatch()

    def _dispatch(self) -> None:
        turns = len(self._ring)
        while self._ring and turns > 0 and self.running < self.capacity:
            tenant = self._ring[0]
            self._ring.rotate(-1)
            waiters = self._waiting.get(tenant)
            while waiters and waiters[0].done():
                waiters.popleft()  # cancelled while waiting
            if not waiters:
                self._ring.remove(tenant)
                self._waiting.pop(tenant, None)
                continue
            if self._running[tenant] >= self._cap(tenant):
                turns -= 1
                continue
            self._take(tenant)
            waiters.popleft().set_result(None)
            turns = len(self._ring)

    def _free_for(self, tenant: str) -> bool:
        return self.running < self.capacity and self._running[tenant] < self._cap(tenant)

    def _cap(self, tenant: str) -> int:
        if self.tenant_capacity is None and tenant == DEFAULT_TENANT:
            return self.capacity
        return self._named_capacity

    def _take(self, tenant: str) -> None:
        self._running[tenant] += 1

    def counts(self) -> dict[str, tuple[int, int]]:
        """Running and queued executions of every tenant that has any (read at scrape time, not kept)."""
        tenants = set(self._running) | set(self._waiting)
        return {tenant: (self._running.get(tenant, 0), self.queued(tenant)) for tenant in tenants}
