"""`call: http` cost against raw httpx: N sequential GETs of a local JSON endpoint, both ways, in the same run.

Prints calls per second through the executor (a `for` loop whose body is one `call: http` with a URI template,
the JSON answer decoded, lifecycle events kept in memory), the rate of the same GETs with a bare
`httpx.AsyncClient` decoding the same JSON, and the ratio. The server is a local thread on 127.0.0.1.
Run: `.venv/bin/python bench/http_call.py [--calls N]`.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/http_call.py`, this file's directory is first on sys.path, where `bench/executor.py` would
# hide the package; the repository root takes its place, so `executor`, `bench._engine` and `tests.fixtures` all import.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # imports follow the sys.path fix above
import asyncio
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson

from bench._engine import engine_rate

BODY = orjson.dumps({"id": 1, "name": "doggie", "status": "available", "tags": [{"id": 1, "name": "a"}]})
DOCUMENT = """
document: {dsl: '1.0.3', namespace: bench, name: http-call, version: '1.0.0'}
do:
  - loop:
      for: {in: '.ids', each: id}
      do:
        - get:
            call: http
            with:
              method: get
              endpoint: '%s/pet/{id}'
            input: {from: '${ {id: $id} }'}
"""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; without TCP_NODELAY each response waits for a delayed ACK.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: Any) -> None:
        return None


async def raw_rate(base: str, calls: int) -> float:
    """Calls per second with a bare pooled httpx client."""
    async with httpx.AsyncClient() as client:
        started = time.perf_counter()
        for i in range(calls):
            response = await client.get(f"{base}/pet/{i}")
            response.raise_for_status()
            orjson.loads(response.content)
        return calls / (time.perf_counter() - started)


def main() -> None:
    """Measure both ways against one local server and print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        asyncio.run(raw_rate(base, 100))  # warm up both paths once
        raw = asyncio.run(raw_rate(base, args.calls))
        engine = asyncio.run(engine_rate(DOCUMENT % base, args.calls))
    finally:
        server.shutdown()
        server.server_close()
    print(f"raw httpx:    {raw:10.0f} calls/s")
    print(f"call: http:   {engine:10.0f} calls/s")
    print(f"ratio:        {raw / engine:10.2f}x (engine overhead per call: {1e6 / engine - 1e6 / raw:.0f} µs)")


if __name__ == "__main__":
    main()
