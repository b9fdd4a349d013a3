"""`workflow-runner sink`: runs the reference sink as a process until SIGINT/SIGTERM.

    workflow-runner sink --grpc-port 50051 --http-port 8090 --out events.jsonl

It announces its addresses on stderr (`reference sink listening grpc=HOST:PORT http=URL`), writes each new event
as a JSON line to `--out` (stdout by default), and on exit prints how many events, duplicates and out-of-order
events it saw.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar

from callbacks._refsink import ReferenceSink

_N = TypeVar("_N", int, float)


async def serve_reference_sink(
    grpc_port: int | None,
    http_port: int | None,
    out: str | Path | IO[bytes] | None,
    *,
    host: str = "127.0.0.1",
    api_key: str | None = None,
    fail_first: int = 0,
    delay: float = 0.0,
    ready: Callable[[ReferenceSink], None] | None = None,
    stop: asyncio.Event | None = None,
) -> ReferenceSink:
    """Runs a reference sink until `stop` is set (or the task is cancelled), then stops it.

    Args:
        grpc_port: gRPC port (0: any free port), None for no gRPC server.
        http_port: HTTP port (0: any free port), None for no HTTP server.
        out: Where new events go as JSON lines: a path, a binary stream (e.g. `sys.stdout.buffer`), or None.
        host: Interface to bind.
        api_key: Require `authorization: Bearer <api_key>`.
        fail_first: Answer the first N calls as unavailable.
        delay: Seconds to wait before answering each call.
        ready: Called with the started sink (its ports are bound by then).
        stop: Set it to stop the sink; None runs until cancelled.

    Returns:
        The stopped sink, with its ledger (what it received, duplicates, order problems).
    """
    sink = ReferenceSink(
        host=host, grpc_port=grpc_port, http_port=http_port, out=out, api_key=api_key, fail_first=fail_first
    )
    sink.delay = delay
    await sink.start()
    try:
        if ready is not None:
            ready(sink)
        await (stop or asyncio.Event()).wait()
    finally:
        await sink.close()
    return sink


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workflow-runner sink", description="A control-plane stand-in that receives progress events."
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0 in a container)")
    parser.add_argument("--grpc-port", type=_port, default=50051, help="gRPC port, 0 for any, -1 for none")
    parser.add_argument("--http-port", type=_port, default=8090, help="HTTP port, 0 for any, -1 for none")
    parser.add_argument("--out", default="-", help="JSON-lines file to append events to ('-': stdout)")
    parser.add_argument("--api-key", default=None, help="require this bearer token (default: env SINK_API_KEY)")
    parser.add_argument("--fail-first", type=_count, default=0, help="answer the first N calls as unavailable")
    parser.add_argument("--delay", type=_seconds, default=0.0, help="seconds to wait before answering each call")
    return parser


def _port(text: str) -> int:
    """A port option: -1 (none), 0 (any) or 1-65535; gRPC would otherwise bind some other port silently."""
    port = _number(int, text)
    if not -1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be -1 (none), 0 (any) or a port up to 65535, got {text}")
    return port


def _count(text: str) -> int:
    count = _number(int, text)
    if count < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return count


def _seconds(text: str) -> float:
    seconds = _number(float, text)
    if not 0 <= seconds < math.inf:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more, got {text}")
    return seconds


def _number(kind: Callable[[str], _N], text: str) -> _N:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.grpc_port < 0 and args.http_port < 0:
        parser.error("nothing to listen on: give --grpc-port or --http-port a port (0 for any)")
    return args


def main(argv: list[str] | None = None) -> int:
    """`workflow-runner sink`: runs the reference sink until SIGINT/SIGTERM; exit 0, or 2 on a bad option/port."""
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_run(args))
    except (OSError, RuntimeError) as exc:
        print(f"workflow-runner sink: cannot start: {exc}", file=sys.stderr)
        return 2
    return 0


async def _run(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    sink = await serve_reference_sink(
        None if args.grpc_port < 0 else args.grpc_port,
        None if args.http_port < 0 else args.http_port,
        sys.stdout.buffer if args.out == "-" else args.out,
        host=args.host,
        api_key=args.api_key or os.environ.get("SINK_API_KEY") or None,
        fail_first=args.fail_first,
        delay=args.delay,
        ready=_announce,
        stop=stop,
    )
    print(
        f"reference sink stopped: {len(sink.events)} events, {sink.duplicates} duplicates, "
        f"{len(sink.out_of_order)} out of order",
        file=sys.stderr,
    )


def _announce(sink: ReferenceSink) -> None:
    grpc_at = f"grpc={sink.grpc_target}" if sink.grpc_port is not None else "grpc=off"
    http_at = f"http={sink.http_url}" if sink.http_port is not None else "http=off"
    print(f"reference sink listening {grpc_at} {http_at}", file=sys.stderr, flush=True)
