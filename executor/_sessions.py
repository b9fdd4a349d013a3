"""Connections one execution opens for its calls (MCP sessions, A2A clients, AMQP connections), reused until it ends.

Each connection is opened and closed by its own keeper task. The SDKs hold anyio task groups and cancel scopes
that must be left by the task that entered them, while the calls that use a connection run in whichever task the
engine runs them (a `fork` branch, a `for` iteration); the keeper is the one task that does both. A call that is
cancelled or times out only abandons its request: the connection stays usable for the execution's next call. A
keeper whose connection died is noticed on the next use, and a fresh connection is opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable
from contextlib import AsyncExitStack
from typing import Any

logger = logging.getLogger("executor.sessions")

Opener = Callable[[AsyncExitStack], Awaitable[Any]]
# How long a connection may take to close before its keeper is cancelled (a stdio server gets 2 s to exit, 2 more
# after SIGTERM, then it is killed).
CLOSE_GRACE_SECONDS = 10.0


class _Kept:
    """One open connection and the task keeping it."""

    def __init__(self, opener: Opener) -> None:
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[Any] = loop.create_future()
        self._stop = asyncio.Event()
        self.task = asyncio.ensure_future(self._keep(opener))

    async def _keep(self, opener: Opener) -> None:
        try:
            async with AsyncExitStack() as stack:
                self.ready.set_result(await opener(stack))
                await self._stop.wait()
        except asyncio.CancelledError:
            if not self.ready.done():
                self.ready.set_exception(ConnectionError("the connection was closed while it opened"))
            raise
        except Exception as exc:
            # A transport's background failure reaches the keeper as a group (anyio task groups); the leaf says why.
            cause = root_cause(exc)
            if not self.ready.done():
                self.ready.set_exception(cause)
            else:
                logger.debug("a kept connection ended: %s", type(cause).__name__)

    @property
    def alive(self) -> bool:
        return not self.task.done()

    async def close(self, grace: float) -> None:
        """Let the keeper close the connection; cancel it if that takes longer than `grace` seconds."""
        self._stop.set()
        if not self.ready.done():
            self.task.cancel()  # still opening (a caller gave up on a server that does not answer)
        # The SDKs bound their own shutdown (a stdio server gets a few seconds to exit before it is killed).
        done, _ = await asyncio.wait({self.task}, timeout=grace)
        if not done:
            self.task.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await self.task
        if self.ready.done() and not self.ready.cancelled():
            self.ready.exception()  # retrieved, so a failed open is not reported again at garbage collection


class Sessions:
    """The connections of one execution, by key (what identifies a connection: transport, URL, credentials)."""

    def __init__(self, grace: float = CLOSE_GRACE_SECONDS) -> None:
        self._grace = grace
        self._kept: dict[Hashable, _Kept] = {}
        self._locks: dict[Hashable, asyncio.Lock] = {}
        self._closed = False

    async def get(self, key: Hashable, opener: Opener) -> Any:
        """The open connection for `key`, opened with `opener(stack)` when there is none (or it died)."""
        if self._closed:
            raise RuntimeError("the execution's connections are already closed")
        async with self._locks.setdefault(key, asyncio.Lock()):
            kept = self._kept.get(key)
            if kept is not None and not kept.alive:
                await self.drop(key)
                kept = None
            if kept is None:
                kept = self._kept[key] = _Kept(opener)
            try:
                return await asyncio.shield(kept.ready)
            except BaseException:
                # The opener failed, or this caller was cancelled while it ran: nobody else waits for it here.
                await self.drop(key)
                raise

    async def drop(self, key: Hashable) -> None:
        """Close the connection for `key` (after a transport failure, say); the next `get` opens a new one."""
        kept = self._kept.pop(key, None)
        if kept is not None:
            await _shielded(kept.close(self._grace))

    async def aclose(self) -> None:
        """Close every connection. Safe to call twice."""
        self._closed = True
        kept, self._kept = list(self._kept.values()), {}
        if kept:
            await _shielded(asyncio.gather(*(k.close(self._grace) for k in kept)))


def root_cause(exc: BaseException) -> BaseException:
    """The first leaf of an exception group that is not a cancellation (the exception itself otherwise)."""
    while isinstance(exc, BaseExceptionGroup):
        leaves = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)]
        exc = leaves[0] if leaves else exc.exceptions[0]
    return exc


async def _shielded(work: Awaitable[Any]) -> None:
    """Finish closing even when the caller is being cancelled (an execution's cancel closes its sessions)."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise
