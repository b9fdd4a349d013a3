"""`call: mcp` cost against the bare `mcp` client: N sequential `tools/call` round trips, same server and run.

Prints round trips per second through the executor (a `for` loop whose body is one `call: mcp` of a tool over
streamable HTTP; the execution's one session is reused by every call, lifecycle events kept in memory), the rate of
the same calls on a bare `mcp.ClientSession` (opened and initialized before timing), and the ratio. The server is
an `mcp` SDK server in a subprocess on 127.0.0.1 (this file run with `--serve PORT`); it costs far more than either
client, so the two are measured in alternating rounds and the best round of each is kept.
Run: `.venv/bin/python bench/mcp_call.py [--calls N] [--rounds R]`.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/mcp_call.py`, this file's directory is first on sys.path; keep imports resolving to the
# installed packages, as bench/executor.py does.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse  # imports follow the sys.path fix above
import asyncio
import socket
import subprocess
import time
from typing import Any

from executor import ExecuteCommand, Executor, LifecycleEvent

DOCUMENT = """
document: {dsl: '1.0.3', namespace: bench, name: mcp-call, version: '1.0.0'}
do:
  - loop:
      for: {in: '.ids', each: id}
      do:
        - add:
            call: mcp
            with:
              method: tools/call
              parameters: {name: add, arguments: {a: '${ $id }', b: 1}}
              transport: {http: {endpoint: '%s'}}
"""


def serve(port: int) -> None:
    """The benchmark's MCP server: one `add` tool over streamable HTTP; prints `ready` once listening."""
    import uvicorn
    from mcp.server.mcpserver import MCPServer

    server: MCPServer[Any] = MCPServer("bench", version="1.0.0", log_level="WARNING")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    # Plain JSON answers (no SSE stream per request): the cheapest server, so the clients' own cost shows most.
    app = server.streamable_http_app(host="127.0.0.1", json_response=True)
    http = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))

    async def run() -> None:
        task = asyncio.create_task(http.serve())
        while not http.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
            await asyncio.sleep(0.02)
        print("ready", flush=True)
        await task

    asyncio.run(run())


class _Collect:
    def __init__(self) -> None:
        self.events: list[LifecycleEvent] = []

    async def publish(self, event: LifecycleEvent) -> None:
        self.events.append(event)


async def engine_rate(url: str, calls: int) -> float:
    """Round trips per second through the executor (the session opened by the first call is counted too)."""
    document = DOCUMENT % url
    executor = Executor(listener=_Collect())
    executor.load(document)
    command = ExecuteCommand(execution_id="bench", workflow_yaml=document, input={"ids": list(range(calls))})
    try:
        started = time.perf_counter()
        result = await executor.run(command)
        elapsed = time.perf_counter() - started
    finally:
        await executor.aclose()
    assert result.status.value == "completed", result.error
    return calls / elapsed


async def raw_rate(url: str, calls: int) -> float:
    """Round trips per second on a bare, already initialized `ClientSession`."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        started = time.perf_counter()
        for i in range(calls):
            result = await session.call_tool("add", {"a": i, "b": 1})
            assert not result.is_error
            result.model_dump(by_alias=True, mode="json", exclude_unset=True)
        return calls / (time.perf_counter() - started)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    """Measure both ways against one local server and print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return
    port = _free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != b"ready":
            raise SystemExit("the benchmark's MCP server did not start")
        url = f"http://127.0.0.1:{port}/mcp"
        asyncio.run(raw_rate(url, 100))  # warm up both paths once
        asyncio.run(engine_rate(url, 100))
        raw = engine = 0.0
        for _ in range(args.rounds):
            raw = max(raw, asyncio.run(raw_rate(url, args.calls)))
            engine = max(engine, asyncio.run(engine_rate(url, args.calls)))
    finally:
        server.terminate()
        server.wait(10)
    print(f"bare mcp session: {raw:10.0f} calls/s")
    print(f"call: mcp:        {engine:10.0f} calls/s")
    print(f"ratio:            {raw / engine:10.2f}x (engine overhead per call: {1e6 / engine - 1e6 / raw:.0f} µs)")


if __name__ == "__main__":
    main()
