"""gRPC ingress cost against raw grpcio: one-task executions through `ExecuteStream` vs a raw 5-message stream.

Starts `workflow-runner serve` (events to a JSON-lines file, the process's real reporter pipeline; worker processes
as `EXECUTOR_PROCESSES` says) and a bare grpcio server, each in its own process, then drives both from this process
with the same client settings: `--concurrency` calls in flight, `--count` calls after a warm-up. The raw server
answers a unary echo and a server stream of five messages of an execution's sizes (four events and the result).
Prints executions per second, the raw rates, and executions per raw call of each kind.
Run: `.venv/bin/python bench/grpc_ingress.py [--count N] [--concurrency C]`.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/grpc_ingress.py`, this directory is first on sys.path, and its `callbacks.py` / `executor.py`
# benchmarks would shadow the packages of the same names.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse  # imports follow the sys.path fix above
import asyncio
import itertools
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import grpc.aio

from consumer._proto.workflow_runner.v1 import runner_pb2 as pb
from consumer._proto.workflow_runner.v1 import runner_pb2_grpc as pb_grpc

DOCUMENT = "document: {dsl: '1.0.3', namespace: bench, name: one, version: '1.0.0'}\ndo:\n  - one: {set: {ok: true}}\n"
ECHO_METHOD = "/bench.Echo/Echo"
STREAM_METHOD = "/bench.Echo/Stream"
# What an execution of DOCUMENT streams: four lifecycle events and the result, of about their sizes.
STREAMED = [b"e" * 420, b"e" * 400, b"e" * 430, b"e" * 420, b"r" * 80]
CLI = str(Path(sys.executable).parent / "workflow-runner")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _echo_server(port: int) -> None:
    async def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return request

    async def stream(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> AsyncIterator[bytes]:
        for message in STREAMED:
            yield message

    server = grpc.aio.server()
    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def _wait_tcp(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("server did not start")


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"runner exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("runner not ready")


async def _drive(call: Callable[[int], Awaitable[None]], count: int, concurrency: int) -> float:
    """Calls per second of `call(n)` for n in range(count), `concurrency` at a time."""
    numbers = iter(range(count))

    async def worker() -> None:
        for n in numbers:
            await call(n)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


async def _runner_rate(target: str, count: int, concurrency: int, warmup: int) -> float:
    prefix = itertools.count()
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.WorkflowRunnerStub(channel)

        async def execute(n: int) -> None:
            request = pb.ExecuteRequest(execution_id=f"bench-{next(prefix)}", workflow_yaml=DOCUMENT)
            last = None
            async for message in stub.ExecuteStream(request):
                last = message
            assert last is not None
            assert last.result.status == pb.EXECUTION_STATUS_COMPLETED

        await _drive(execute, warmup, concurrency)
        return await _drive(execute, count, concurrency)


async def _stream_rate(target: str, count: int, concurrency: int, warmup: int) -> float:
    """Server-streaming calls per second, each answering the execution's request with five messages."""
    request = pb.ExecuteRequest(execution_id="bench-000000", workflow_yaml=DOCUMENT).SerializeToString()
    async with grpc.aio.insecure_channel(target) as channel:
        stream = channel.unary_stream(STREAM_METHOD)

        async def call(n: int) -> None:
            received = [message async for message in stream(request)]
            assert len(received) == len(STREAMED)

        await _drive(call, warmup, concurrency)
        return await _drive(call, count, concurrency)


async def _echo_rate(target: str, count: int, concurrency: int, warmup: int) -> float:
    payload = pb.ExecuteRequest(execution_id="bench-000000", workflow_yaml=DOCUMENT).SerializeToString()
    async with grpc.aio.insecure_channel(target) as channel:
        echo = channel.unary_unary(ECHO_METHOD)

        async def call(n: int) -> None:
            assert await echo(payload) == payload

        await _drive(call, warmup, concurrency)
        return await _drive(call, count, concurrency)


def _start_runner(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port, metrics = _free_port(), _free_port()
    env = {
        **os.environ,
        "GRPC_HOST": "127.0.0.1",
        "GRPC_PORT": str(port),
        "METRICS_HOST": "127.0.0.1",
        "METRICS_PORT": str(metrics),
        "LOG_LEVEL": "WARNING",
        "MAX_CONCURRENT_EXECUTIONS": "1000",
        "CALLBACK_JSONL_PATH": str(workdir / "events.jsonl"),
        "CALLBACK_DEAD_LETTER_PATH": str(workdir / "dead.jsonl"),
    }
    process = subprocess.Popen([CLI, "serve"], env=env, stdout=subprocess.DEVNULL)
    _wait_ready(f"http://127.0.0.1:{metrics}/readyz", process)
    return process, port


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="measured calls per side")
    parser.add_argument("--concurrency", type=int, default=32, help="calls in flight")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--echo-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo_server:
        asyncio.run(_echo_server(args.echo_server))
        return
    echo_port = _free_port()
    echo = subprocess.Popen([sys.executable, __file__, "--echo-server", str(echo_port)])
    with tempfile.TemporaryDirectory() as workdir:
        runner, runner_port = _start_runner(Path(workdir))
        try:
            _wait_tcp(echo_port, echo)
            echo_target = f"127.0.0.1:{echo_port}"
            raw = asyncio.run(_echo_rate(echo_target, args.count, args.concurrency, args.warmup))
            streamed = asyncio.run(_stream_rate(echo_target, args.count, args.concurrency, args.warmup))
            ingress = asyncio.run(_runner_rate(f"127.0.0.1:{runner_port}", args.count, args.concurrency, args.warmup))
        finally:
            _stop(runner)
            _stop(echo)
    print(f"executor worker processes:     {os.environ.get('EXECUTOR_PROCESSES', os.cpu_count())}")
    print(f"raw grpcio unary echo:         {raw:10.0f} calls/s")
    print(f"raw grpcio 5-message stream:   {streamed:10.0f} calls/s")
    print(f"ExecuteStream, one-task doc:   {ingress:10.0f} executions/s")
    print(f"executions / raw stream:       {ingress / streamed:10.2f}x")
    print(f"executions / raw unary echo:   {ingress / raw:10.2f}x")


if __name__ == "__main__":
    main()
