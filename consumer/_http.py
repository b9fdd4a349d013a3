"""The operations HTTP server next to the ingresses: Prometheus `/metrics`, `/livez` and `/readyz`.

A few GET routes do not justify a web framework: this is a minimal HTTP/1.1 responder on asyncio streams that
answers one request per connection. `/livez` is 200 while the event loop answers; `/readyz` is 200 only while
every ingress is started and the process takes new executions, 503 before that and while draining.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from http import HTTPStatus

from ._errors import StartupError

logger = logging.getLogger("consumer.http")
_READ_LIMIT = 8192
_READ_TIMEOUT = 5.0


class OpsServer:
    """Serves metrics and health probes.

    Args:
        host: Interface to bind.
        port: Port to bind (0: any free port; see `port` after `start`).
        metrics: Returns the exposition text and its content type.
        ready: True while the process should receive traffic.
    """

    def __init__(
        self, host: str, port: int, *, metrics: Callable[[], tuple[bytes, str]], ready: Callable[[], bool]
    ) -> None:
        self._host, self._port = host, port
        self._metrics = metrics
        self._ready = ready
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port."""
        if self._server is None:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Bind and start answering.

        Raises:
            StartupError: The address cannot be bound (in use, or not an address of this host).
        """
        try:
            self._server = await asyncio.start_server(self._on_connection, self._host, self._port, limit=_READ_LIMIT)
        except socket.gaierror as exc:
            raise StartupError(f"METRICS_HOST: cannot listen on {self._host} ({exc.strerror})") from None
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise StartupError(f"METRICS_PORT: cannot listen on {self._host}:{self._port} ({reason})") from None
        logger.info("metrics and health on http://%s:%d (/metrics, /livez, /readyz)", self._host, self.port)

    async def stop(self) -> None:
        """Stop answering; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_READ_TIMEOUT):
                request_line = await reader.readline()
                while (await reader.readline()).strip():
                    pass  # headers carry nothing these routes need
            status, body, content_type = self._route(request_line)
            await _respond(writer, status, body, content_type)
        except (TimeoutError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass  # a probe that hangs up or sends garbage gets nothing more
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _route(self, request_line: bytes) -> tuple[HTTPStatus, bytes, str]:
        parts = request_line.decode("latin-1").split()
        if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
            return HTTPStatus.METHOD_NOT_ALLOWED, b"GET only\n", "text/plain"
        path = parts[1].split("?", 1)[0]
        if path == "/metrics":
            body, content_type = self._metrics()
            return HTTPStatus.OK, body, content_type
        if path in ("/livez", "/healthz"):
            return HTTPStatus.OK, b"ok\n", "text/plain"
        if path == "/readyz":
            if self._ready():
                return HTTPStatus.OK, b"ready\n", "text/plain"
            return HTTPStatus.SERVICE_UNAVAILABLE, b"not ready\n", "text/plain"
        return HTTPStatus.NOT_FOUND, b"not found\n", "text/plain"


async def _respond(writer: asyncio.StreamWriter, status: HTTPStatus, body: bytes, content_type: str) -> None:
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    writer.write(head.encode("latin-1") + body)
    await writer.drain()
