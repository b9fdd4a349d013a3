"""The executor's shared I/O state: the HTTP pool, token and document caches, gRPC channels, detached work.

One instance per `Executor` (`executor.io`), created cheaply and filled lazily: a process that never calls out
never opens a pool. Connections that belong to one execution (MCP sessions, A2A clients, AMQP connections) are
kept in its `sessions(run)` and closed by `release(run)` when the execution ends. `aclose()` cancels detached
processes and subflows (`await: false`), closes what executions left open, gRPC channels and the HTTP pool; the
executor's own `aclose()` calls it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import grpc
import httpx

from ._auth import TokenCache
from ._catalog import Catalog
from ._http import new_client
from ._options import EngineOptions
from ._outbound import OutboundPolicy
from ._sessions import Sessions

logger = logging.getLogger("executor.io")


class IOResources:
    """Pools, caches and detached tasks shared by every run of one executor."""

    def __init__(self, options: EngineOptions) -> None:
        self.options = options
        self.policy = OutboundPolicy(options.outbound_allow, options.outbound_deny)
        self.tokens = TokenCache()
        self.catalog = Catalog(options.catalog_dir, options.subflow_documents)
        # Parsed OpenAPI documents by URL and compiled protos by content hash: loaded once per process.
        self.documents: dict[str, Any] = {}
        self.protos: dict[str, Any] = {}
        self.channels: dict[tuple[str, bool], grpc.aio.Channel] = {}
        self._http: httpx.AsyncClient | None = None
        self._detached: set[asyncio.Task[Any]] = set()
        self._sessions: dict[object, Sessions] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        """The pooled HTTP client, created on first use."""
        self._bind_loop()
        if self._http is None:
            self._http = new_client(self.options, self.policy)
        return self._http

    def channel(self, target: str, *, tls: bool) -> grpc.aio.Channel:
        """A cached gRPC channel to `target` (plaintext unless `tls`)."""
        self._bind_loop()
        key = (target, tls)
        if key not in self.channels:
            if tls:
                self.channels[key] = grpc.aio.secure_channel(target, grpc.ssl_channel_credentials())
            else:
                self.channels[key] = grpc.aio.insecure_channel(target)
        return self.channels[key]

    def sessions(self, execution: object) -> Sessions:
        """The connections of one execution (created on first use)."""
        if execution not in self._sessions:
            self._sessions[execution] = Sessions()
        return self._sessions[execution]

    async def release(self, execution: object) -> None:
        """Close the connections the execution opened; nothing happens when it opened none."""
        sessions = self._sessions.pop(execution, None)
        if sessions is not None:
            await sessions.aclose()

    def _bind_loop(self) -> None:
        # Pooled connections belong to the event loop that opened them. An executor driven from a new loop (one
        # `asyncio.run` per command, say) starts fresh pools rather than touching the dead loop's sockets.
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._http = None
            self.channels = {}

    def detach(self, work: Coroutine[Any, Any, Any], what: str) -> None:
        """Run `work` in the background (an `await: false` process or subflow); failures are logged."""
        task = asyncio.ensure_future(work)
        self._detached.add(task)
        task.add_done_callback(lambda t: self._finished(t, what))

    def _finished(self, task: asyncio.Task[Any], what: str) -> None:
        self._detached.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("detached %s failed: %s", what, task.exception())

    async def aclose(self) -> None:
        """Cancel detached work, then close channels and the pool. Safe to call twice."""
        detached, self._detached = list(self._detached), set()
        for task in detached:
            task.cancel()
        if detached:
            await asyncio.wait(detached)
        for execution in list(self._sessions):
            await self.release(execution)
        channels, self.channels = list(self.channels.values()), {}
        for channel in channels:
            await channel.close()
        if self._http is not None:
            client, self._http = self._http, None
            await client.aclose()
