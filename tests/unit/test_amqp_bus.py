"""The cross-process event bridge's own lifecycle, without a broker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from consumer._amqp_bus import EventBridge
from executor import EventBus


async def test_cancelling_stop_is_not_swallowed() -> None:
    """A shutdown that cancels `EventBridge.stop()` (a deadline) sees the cancellation, not a normal return."""
    bridge = EventBridge(connection=None, exchange="x", bus=EventBus(), instance="me")  # type: ignore[arg-type]

    async def slow_to_end() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.2)  # e.g. a publish finishing

    bridge._forwarder = asyncio.create_task(slow_to_end())
    await asyncio.sleep(0)
    stopping = asyncio.create_task(bridge.stop())
    await asyncio.sleep(0.05)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    await asyncio.sleep(0.3)


async def test_stop_is_idempotent() -> None:
    """`stop()` twice, or before `start()`, does nothing more."""
    bridge: Any = EventBridge(connection=None, exchange="x", bus=EventBus(), instance="me")  # type: ignore[arg-type]
    await bridge.stop()
    bridge._forwarder = asyncio.create_task(asyncio.Event().wait())
    await bridge.stop()
    await bridge.stop()
    assert bridge._forwarder is None
