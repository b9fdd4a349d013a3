"""Progress delivery throughput: Reporter + GrpcSink (batched) against raw grpcio unary calls, same run, same server.

Both measurements send the same lifecycle events to the same minimal `ProgressSink` server, which runs in its own
process (as a control plane would) and only counts what it receives:

- raw: one `Report` unary call per event, from as many concurrent callers as the reporter has senders;
- reporter: events submitted by 100 concurrent "executions", delivered by the reporter's senders in batches,
  timed until every execution's terminal event is confirmed.

Run: `.venv/bin/python bench/callbacks.py` (about 15 s).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/callbacks.py`, this file's directory is first on sys.path and the file, named like the
# package it measures, would shadow `callbacks`.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import asyncio
import multiprocessing
import time
from multiprocessing.connection import Connection
from tempfile import TemporaryDirectory

import grpc
import grpc.aio

from callbacks import DEFAULT_SOURCE, CloudEvent, GrpcSink, Reporter, event_id
from callbacks._proto.workflow_runner.v1 import progress_pb2 as pb
from callbacks._wire import to_proto

CONCURRENCY = 4
EXECUTIONS = 100
RAW_EVENTS = 8_000
REPORTER_EVENTS = 100_000
METHOD = "/workflow_runner.v1.ProgressSink/Report"


def _serve(conn: Connection) -> None:
    """Child process: a ProgressSink server that counts events; port sent back, stops on any message."""

    async def main() -> None:
        received = 0

        async def report(request: pb.ReportRequest, _context: object) -> pb.ReportResponse:
            nonlocal received
            received += len(request.events)
            return pb.ReportResponse(accepted=len(request.events))

        handler = grpc.unary_unary_rpc_method_handler(
            report,
            request_deserializer=pb.ReportRequest.FromString,
            response_serializer=pb.ReportResponse.SerializeToString,
        )
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("workflow_runner.v1.ProgressSink", {"Report": handler}),)
        )
        conn.send(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        conn.send(received)
        await server.stop(None)

    asyncio.run(main())


def _events(count: int, tag: str) -> dict[str, list[CloudEvent]]:
    per_execution = count // EXECUTIONS
    out = {}
    for n in range(EXECUTIONS):
        execution = f"bench-{tag}-{n}"
        kinds = ["task.started"] * (per_execution - 1) + ["workflow.completed"]
        out[execution] = [
            CloudEvent(
                id=event_id(execution, 1, seq),
                source=DEFAULT_SOURCE,
                type=f"io.serverlessworkflow.{kind}.v1",
                time="2025-06-01T12:00:00.123Z",
                subject=execution,
                executionid=execution,
                sequence=seq,
                attempt=1,
                data={"task": f"/do/{seq}/call", "input": {"order": seq, "items": ["a", "b", "c"]}},
                metadata={"tenant_id": "acme", "workflow": "orders"},
            )
            for seq, kind in enumerate(kinds, start=1)
        ]
    return out


async def _raw(target: str, events: list[CloudEvent]) -> float:
    """Events per second, one unary call per event, CONCURRENCY callers."""
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(
            METHOD,
            request_serializer=pb.ReportRequest.SerializeToString,
            response_deserializer=pb.ReportResponse.FromString,
        )
        await call(pb.ReportRequest(events=[to_proto(events[0])]))  # connect before timing

        async def caller(share: list[CloudEvent]) -> None:
            for event in share:
                await call(pb.ReportRequest(events=[to_proto(event)]))

        started = time.perf_counter()
        await asyncio.gather(*(caller(events[n::CONCURRENCY]) for n in range(CONCURRENCY)))
        return len(events) / (time.perf_counter() - started)


async def _reporter(target: str, executions: dict[str, list[CloudEvent]], dead_letter: Path) -> float:
    """Events per second through Reporter + GrpcSink, until every terminal event is confirmed."""
    reporter = Reporter(GrpcSink(target), concurrency=CONCURRENCY, dead_letter_path=dead_letter)

    async def execution(events: list[CloudEvent]) -> None:
        for event in events:
            await reporter.submit(event)
        await reporter.flush(events[-1].executionid, timeout=60)

    async with reporter:
        await reporter.submit(_events(EXECUTIONS, "warm")["bench-warm-0"][0])  # connect before timing
        started = time.perf_counter()
        await asyncio.gather(*(execution(events) for events in executions.values()))
        elapsed = time.perf_counter() - started
        assert reporter.stats.dead_lettered == 0
    return sum(len(events) for events in executions.values()) / elapsed


async def _measure(target: str, dead_letter: Path) -> tuple[float, float]:
    raw_events = [event for events in _events(RAW_EVENTS, "raw").values() for event in events]
    raw = await _raw(target, raw_events)
    batched = await _reporter(target, _events(REPORTER_EVENTS, "rep"), dead_letter)
    return raw, batched


def main() -> None:
    """Starts the server process, runs both measurements, prints them and their ratio."""
    parent, child = multiprocessing.get_context("spawn").Pipe()
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=(child,), daemon=True)
    server.start()
    target = f"127.0.0.1:{parent.recv()}"
    try:
        with TemporaryDirectory() as scratch:
            raw, batched = asyncio.run(_measure(target, Path(scratch) / "dead-letter.jsonl"))
    finally:
        parent.send("stop")
        received = parent.recv()
        server.join(10)
    print(f"raw grpcio unary, one call per event ({CONCURRENCY} callers): {raw:10,.0f} events/s")
    print(f"Reporter + GrpcSink, batched ({CONCURRENCY} senders):        {batched:10,.0f} events/s")
    print(f"ratio batched / raw: {batched / raw:.1f}x   (server received {received:,} events)")


if __name__ == "__main__":
    main()
