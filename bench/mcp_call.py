"""`call: mcp` cost against the bare `mcp` client: N sequential `tools/call` round trips, same server and run.

Prints round trips per second through the executor (a `for` loop whose body is one `call: mcp` of a tool over
streamable HTTP; the execution's one session is reused by every call, lifecycle events kept in memory), the rate of
the same calls on a bare `mcp.ClientSession` (opened and initialized before timing), and the ratio. The server is
the tests' `mcp` SDK server (`tests.fixtures.mcp_server`, plain JSON answers) in a subprocess on 127.0.0.1; it costs
far more than either client, so the two are measured in alternating rounds and the best round of each is kept.
Run: `.venv/bin/python bench/mcp_call.py [--calls N] [--rounds R]`.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/mcp_call.py`, this file's directory is first on sys.path, where `bench/executor.py` would
# hide the package; the repository root takes its place, so `executor`, `bench._engine` and `tests.fixtures` all import.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # imports follow the sys.path fix above
import asyncio
import time

from bench._engine import engine_rate
from tests.fixtures.servers import serving

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


def main() -> None:
    """Measure both ways against one local server and print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with serving("tests.fixtures.mcp_server", "json") as port:
        url = f"http://127.0.0.1:{port}/mcp"
        asyncio.run(raw_rate(url, 100))  # warm up both paths once
        asyncio.run(engine_rate(DOCUMENT % url, 100))
        raw = engine = 0.0
        for _ in range(args.rounds):
            raw = max(raw, asyncio.run(raw_rate(url, args.calls)))
            engine = max(engine, asyncio.run(engine_rate(DOCUMENT % url, args.calls)))
    print(f"bare mcp session: {raw:10.0f} calls/s")
    print(f"call: mcp:        {engine:10.0f} calls/s")
    print(f"ratio:            {raw / engine:10.2f}x (engine overhead per call: {1e6 / engine - 1e6 / raw:.0f} µs)")


if __name__ == "__main__":
    main()
