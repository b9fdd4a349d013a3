"""Large payloads through each ingress against raw payload-store put+get of the same bytes, and the runner's memory.

For 1, 10 and 100 MB inputs (a JSON object holding one string) run a pass-through document through gRPC (`submit`),
AMQP (`submit_via_amqp`) and Temporal (`RunServerlessWorkflow` with the exported data converter), each against a
`workflow-runner serve` process of its own, and time the same bytes through `PayloadStore.put` + `get` in this
process. MB/s counts the input and the output (2 x size per round trip). After each size the runner's peak RSS
(supervisor and worker processes, `VmHWM`) is read; sizes go up, so the 100 MB row is that payload's peak, given
as MB of RSS per MB moved. Needs RabbitMQ on 127.0.0.1:5672 (as the tests do); starts a Temporal dev server.
Run: `.venv/bin/python bench/payloads.py [--sizes 1,10,100]`.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/payloads.py`, this directory is first on sys.path, and its `callbacks.py` / `executor.py`
# benchmarks would shadow the packages of the same names.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse  # imports follow the sys.path fix above
import asyncio
import os
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from temporalio.client import Client

from consumer._proto.workflow_runner.v1 import runner_pb2 as pb
from consumer._submit import submit
from consumer._temporal_dev import launch_dev_server
from consumer.amqp import submit_via_amqp
from consumer.config import Settings
from consumer.payloads import PayloadStore, data_converter

MB = 1024 * 1024
DOCUMENT = (
    "document: {dsl: '1.0.3', namespace: bench, name: big, version: '1.0.0'}\n"
    "do:\n  - pause: {wait: {milliseconds: 1}}\n"
)
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
CLI = str(Path(sys.executable).parent / "workflow-runner")
RoundTrip = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _status(pid: int, field: str) -> int:
    """A `/proc/<pid>/status` field in kB (0 once the process is gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in lines if line.startswith(field + ":")), 0)


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _peaks_mb(pid: int) -> tuple[float, float]:
    """Peak RSS of the supervisor and of its largest worker process, in MB."""
    workers = [_status(child, "VmHWM") for child in _children(pid)]
    return _status(pid, "VmHWM") / 1024, max(workers, default=0) / 1024


def _runner(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:
        return subprocess.Popen([CLI, "serve"], env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=err)


def _input(size: int) -> dict[str, Any]:
    return {"blob": "x" * (size - len('{"blob":""}'))}


async def _raw(store: PayloadStore, value: dict[str, Any]) -> float:
    """Seconds for put + get of the input's JSON through the store (what any claim check costs at least)."""
    started = time.perf_counter()
    ref = await store.put_json(value)
    await store.get_json(ref)
    return time.perf_counter() - started


async def _grpc(port: int, store: PayloadStore) -> RoundTrip:
    async def trip(value: dict[str, Any]) -> dict[str, Any]:
        request = pb.ExecuteRequest(
            execution_id=uuid.uuid4().hex, workflow_yaml=DOCUMENT, input_json=orjson.dumps(value).decode()
        )
        outcome = await submit(f"127.0.0.1:{port}", request, store=store)
        assert outcome.result is not None, outcome.failure
        return outcome.result

    return trip


async def _amqp(queue: str, store: PayloadStore) -> RoundTrip:
    async def trip(value: dict[str, Any]) -> dict[str, Any]:
        return await submit_via_amqp(AMQP_URL, DOCUMENT, queue=queue, input=value, timeout=600, store=store)

    return trip


async def _temporal(address: str, queue: str, store: PayloadStore) -> RoundTrip:
    client = await Client.connect(address, data_converter=data_converter(store))

    async def trip(value: dict[str, Any]) -> dict[str, Any]:
        execution = uuid.uuid4().hex
        request = {"execution_id": execution, "workflow_yaml": DOCUMENT, "input": value}
        result: dict[str, Any] = await client.execute_workflow(
            "RunServerlessWorkflow", request, id=execution, task_queue=queue
        )
        return result

    return trip


async def _ingress(name: str, env: dict[str, str], trip: Callable[[], Awaitable[RoundTrip]], sizes: list[int]) -> None:
    """Start a runner for one ingress, run every size through it, print a row per size."""
    log = Path(env["PAYLOAD_STORE_URL"]).parent / f"{name}.log"
    runner = _runner(env, log)
    try:
        await asyncio.sleep(4)  # the runner connects (and the pool starts) before the first call
        go = await trip()
        store = PayloadStore.from_settings(Settings.from_env(env).payloads)
        for size in sizes:
            value = _input(size * MB)
            raw = await _raw(store, value)
            started = time.perf_counter()
            result = await go(value)
            took = time.perf_counter() - started
            assert result["status"] == "completed", result.get("error")
            assert result["output"] == value
            supervisor, worker = _peaks_mb(runner.pid)
            moved = 2 * size
            print(
                f"{name:8} {size:4d} MB  {moved / took:7.1f} MB/s   raw store {moved / raw:7.1f} MB/s"
                f"   peak RSS supervisor {supervisor:6.0f} MB ({supervisor / size:5.1f}/MB)"
                f"  worker {worker:6.0f} MB ({worker / size:5.1f}/MB)"
            )
            del value, result
    finally:
        runner.terminate()
        runner.wait(30)


async def _measure(temporal: str, sizes: list[int], tmp: Path, ingresses: set[str]) -> None:
    def env(mode: str, **extra: str) -> dict[str, str]:
        return {
            "EXECUTION_MODE": mode,
            "METRICS_PORT": "off",
            "LOG_LEVEL": "WARNING",
            "CALLBACK_JSONL_PATH": str(tmp / f"{mode}-events.jsonl"),
            "CALLBACK_DEAD_LETTER_PATH": str(tmp / f"{mode}-dead.jsonl"),
            "PAYLOAD_STORE_URL": str(tmp / "store"),
            "EXECUTOR_MEMORY_LIMIT_MB": str(max(2048, 12 * max(sizes))),  # sized for the payload (docs/payloads.md)
            **extra,
        }

    port = _free_port()
    grpc_env = env("grpc", GRPC_HOST="127.0.0.1", GRPC_PORT=str(port))
    store = PayloadStore.from_settings(Settings.from_env(grpc_env).payloads)
    if "grpc" in ingresses:
        await _ingress("grpc", grpc_env, lambda: _grpc(port, store), sizes)
    queue = f"bench-payloads-{uuid.uuid4().hex[:8]}"
    amqp_env = env("amqp", AMQP_URL=AMQP_URL, AMQP_QUEUE=queue, AMQP_EVENTS_EXCHANGE=f"{queue}.events")
    if "amqp" in ingresses:
        await _ingress("amqp", amqp_env, lambda: _amqp(queue, store), sizes)
    tq = f"bench-payloads-{uuid.uuid4().hex[:8]}"
    temporal_env = env("temporal", TEMPORAL_SERVICE_ADDRESS=temporal, TEMPORAL_TASK_QUEUE=tq)
    if "temporal" in ingresses:
        await _ingress("temporal", temporal_env, lambda: _temporal(temporal, tq, store), sizes)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, start a Temporal dev server, measure each ingress, print one row per ingress and size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,100", help="input sizes in MB, comma-separated, ascending")
    parser.add_argument("--ingresses", default="grpc,amqp,temporal", help="which to measure, comma-separated")
    args = parser.parse_args(argv)
    sizes = sorted(int(size) for size in args.sizes.split(","))
    partitions = ("matching.numTaskqueueReadPartitions=1", "matching.numTaskqueueWritePartitions=1")
    server = launch_dev_server(
        port=_free_port(), extra_args=tuple(a for p in partitions for a in ("--dynamic-config-value", p))
    )
    try:
        asyncio.run(server.wait_ready())
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(_measure(server.address, sizes, Path(tmp), set(args.ingresses.split(","))))
    finally:
        server.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
