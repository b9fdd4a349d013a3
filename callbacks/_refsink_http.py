"""A minimal HTTP/1.1 server on asyncio streams, enough for CloudEvents POSTs to the reference sink.

It reads a request line, headers and a `Content-Length` body (chunked bodies are answered 411), keeps the
connection alive unless asked not to, and hands each request to one async handler. No TLS, no pipelining
guarantees beyond in-order answers: it is a development stand-in, not a web server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus

MAX_BODY = 64 * 1024 * 1024
_MAX_HEADERS = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One parsed request; header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""

    @property
    def keep_alive(self) -> bool:
        """False when the client asked to close the connection after this request."""
        return self.headers.get("connection", "").lower() != "close"


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """One answer; `content-length` is added when it is sent."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})


Handler = Callable[[Request], Awaitable[Response]]


class _BadRequestError(Exception):
    def __init__(self, status: HTTPStatus) -> None:
        super().__init__(status.phrase)
        self.status = status


class HttpServer:
    """Serves `handler` on `host:port` (0 picks a free port; `port` tells which after `start`)."""

    def __init__(self, handler: Handler, host: str, port: int) -> None:
        self._handler = handler
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Binds and starts accepting connections."""
        self._server = await asyncio.start_server(self._on_connection, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stops accepting and drops open connections, as a crashed or stopped server would."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The connection is served in a task of our own, which `stop` cancels: cancelling the task asyncio runs
        # this callback in makes Python 3.11's stream protocol log an "Exception in callback" error.
        task = asyncio.create_task(self._serve_connection(reader, writer))
        self._connections.add(task)
        try:
            await asyncio.wait([task])
        finally:
            self._connections.discard(task)
        failure = None if task.cancelled() else task.exception()
        if failure is not None:
            raise failure  # a bug in a handler: asyncio logs it

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away mid-request: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                request = await read_request(reader)
            except _BadRequestError as exc:
                await _send(writer, Response(status=exc.status), keep_alive=False)
                return
            if request is None:
                return
            await _send(writer, await self._handler(request), keep_alive=request.keep_alive)
            if not request.keep_alive:
                return


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """The next request on the connection, or None at a clean end of stream."""
    line = await reader.readline()
    if not line.strip():
        return None
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequestError(HTTPStatus.BAD_REQUEST)
    headers = await _read_headers(reader)
    return Request(method=parts[0].upper(), path=parts[1], headers=headers, body=await _read_body(reader, headers))


async def _read_headers(reader: asyncio.StreamReader) -> dict[str, str]:
    headers: dict[str, str] = {}
    for _ in range(_MAX_HEADERS):
        line = (await reader.readline()).decode("latin-1")
        if line in {"\r\n", "\n", ""}:
            return headers
        name, sep, value = line.partition(":")
        if not sep:
            raise _BadRequestError(HTTPStatus.BAD_REQUEST)
        headers[name.strip().lower()] = value.strip()
    raise _BadRequestError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise _BadRequestError(HTTPStatus.LENGTH_REQUIRED)
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise _BadRequestError(HTTPStatus.BAD_REQUEST) from None
    if length < 0 or length > MAX_BODY:
        raise _BadRequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
    return await reader.readexactly(length) if length else b""


async def _send(writer: asyncio.StreamWriter, response: Response, *, keep_alive: bool) -> None:
    phrase = HTTPStatus(response.status).phrase
    headers = {**response.headers, "content-length": str(len(response.body))}
    if not keep_alive:
        headers["connection"] = "close"
    head = f"HTTP/1.1 {response.status} {phrase}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(head.encode("latin-1") + b"\r\n" + response.body)
    await writer.drain()
