"""Per-execution connections (`executor._sessions`): opened once, kept by their own task, closed at the end."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest

from executor._sessions import Sessions


class Opener:
    """Counts opens and closes; `fail` makes opening raise, `slow` makes it hang."""

    def __init__(self, *, fail: Exception | None = None, slow: bool = False) -> None:
        self.opened = 0
        self.closed = 0
        self.fail = fail
        self.slow = slow

    async def __call__(self, stack: AsyncExitStack) -> Any:
        self.opened += 1
        stack.callback(self._close)
        if self.slow:
            await asyncio.sleep(3600)
        if self.fail is not None:
            raise self.fail
        return f"connection-{self.opened}"

    def _close(self) -> None:
        self.closed += 1


async def test_one_open_per_key_and_every_connection_closed_at_the_end() -> None:
    """The same key gives the same connection; another key its own; `aclose` closes both."""
    sessions, a, b = Sessions(), Opener(), Opener()
    assert await sessions.get("a", a) == "connection-1"
    assert await sessions.get("a", a) == "connection-1"
    assert await sessions.get("b", b) == "connection-1"
    assert (a.opened, b.opened) == (1, 1)
    await sessions.aclose()
    assert (a.closed, b.closed) == (1, 1)
    with pytest.raises(RuntimeError):
        await sessions.get("a", a)


async def test_concurrent_callers_share_one_open() -> None:
    """Callers racing for a key wait for the one connection being opened."""
    sessions, opener = Sessions(), Opener()
    values = await asyncio.gather(*(sessions.get("k", opener) for _ in range(5)))
    assert set(values) == {"connection-1"}
    assert opener.opened == 1
    await sessions.aclose()


async def test_failed_open_raises_the_opener_error_and_the_next_call_retries() -> None:
    """An opener's own exception reaches the caller; nothing is kept, so the next call opens again."""
    sessions, opener = Sessions(), Opener(fail=ValueError("refused"))
    with pytest.raises(ValueError, match="refused"):
        await sessions.get("k", opener)
    assert opener.closed == 1
    opener.fail = None
    assert await sessions.get("k", opener) == "connection-2"
    await sessions.aclose()


async def test_background_failure_during_open_is_reported_not_a_cancel() -> None:
    """A transport task failing while the connection opens reaches the caller as that failure, never CancelledError."""

    async def opener(stack: AsyncExitStack) -> Any:
        group = await stack.enter_async_context(anyio.create_task_group())

        async def transport() -> None:
            raise ConnectionRefusedError("nobody home")

        group.start_soon(transport)
        await asyncio.sleep(3600)  # the handshake waiting for an answer that never comes

    sessions = Sessions()
    with pytest.raises(ConnectionRefusedError, match="nobody home"):
        await asyncio.wait_for(sessions.get("k", opener), 5)
    await sessions.aclose()


async def test_dead_connection_is_replaced_on_next_use() -> None:
    """A connection whose keeper ended (its transport failed) is opened anew by the next call."""
    opened = 0

    async def opener(stack: AsyncExitStack) -> Any:
        nonlocal opened
        opened += 1
        group = await stack.enter_async_context(anyio.create_task_group())

        async def transport() -> None:
            await asyncio.sleep(0.05)
            raise ConnectionResetError("gone")

        if opened == 1:
            group.start_soon(transport)
        return opened

    sessions = Sessions()
    assert await sessions.get("k", opener) == 1
    await asyncio.sleep(0.2)
    assert await sessions.get("k", opener) == 2
    await sessions.aclose()


async def test_caller_cancelled_while_opening_stops_the_open() -> None:
    """A caller giving up (a task timeout) cancels the open in progress; its cleanup runs."""
    sessions, opener = Sessions(), Opener(slow=True)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(sessions.get("k", opener), 0.1)
    assert opener.closed == 1
    await sessions.aclose()


async def test_connection_opened_in_one_task_is_closed_from_another() -> None:
    """Task groups entered while opening (in a fork branch's task, say) are left by their keeper, not the closer."""
    left = asyncio.Event()

    async def opener(stack: AsyncExitStack) -> Any:
        group = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(left.set)
        stack.callback(group.cancel_scope.cancel)  # how the SDKs leave: cancel their background tasks
        group.start_soon(anyio.sleep_forever)
        return "with a task group"

    sessions = Sessions()
    assert await asyncio.create_task(sessions.get("k", opener)) == "with a task group"
    await sessions.aclose()
    assert left.is_set()


async def test_a_connection_that_will_not_close_is_cancelled_after_the_grace() -> None:
    """A close that hangs (a task group whose task ignores the end) is cut after the grace period."""

    async def opener(stack: AsyncExitStack) -> Any:
        group = await stack.enter_async_context(anyio.create_task_group())
        group.start_soon(anyio.sleep_forever)
        return "stubborn"

    sessions = Sessions(grace=0.2)
    assert await sessions.get("k", opener) == "stubborn"
    await asyncio.wait_for(sessions.aclose(), 5)
