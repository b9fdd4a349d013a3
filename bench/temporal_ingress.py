"""Temporal ingress cost against a raw no-op activity on the same dev server.

Starts an in-memory Temporal dev server, a runner process serving the Temporal ingress (events to a JSON-lines
file, the process's real reporter pipeline) and a bare worker process serving a no-op activity, both allowed
`--concurrency` activities at once. This process then runs a small caller workflow `--count` times (after a
warm-up, `--concurrency` workflows in flight) against each: one calling `ExecuteWorkflow` with a one-task document,
one calling the no-op activity with the same payload. Prints executions per second through the activity, no-op
activities per second, their ratio, and for reference the rate of the ready `RunServerlessWorkflow` (which adds
its planning local activity). Run: `.venv/bin/python bench/temporal_ingress.py [--count N] [--concurrency C]`.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/temporal_ingress.py`, this directory is first on sys.path, and its `callbacks.py` /
# `executor.py` benchmarks would shadow the packages of the same names.
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
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

from consumer._temporal_dev import launch_dev_server

DOCUMENT = "document: {dsl: '1.0.3', namespace: bench, name: one, version: '1.0.0'}\ndo:\n  - one: {set: {ok: true}}\n"
NOOP = "BenchNoop"
RUNNER = (
    "import asyncio, os\n"
    "from consumer import app\n"
    "from consumer.config import Settings\n"
    "app.INGRESS_REGISTRY.setdefault('temporal', 'consumer.temporal:TemporalIngress')\n"
    "asyncio.run(app.App(Settings.from_env(os.environ)).serve())\n"
)
_ids = itertools.count()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@activity.defn(name=NOOP)
async def noop(request: Any) -> dict[str, Any]:
    """The raw transport: the same payload in, a result-shaped object out, nothing done."""
    return {"execution_id": request["execution_id"], "status": "completed", "output": {"ok": True}, "error": None}


@workflow.defn(name="BenchCaller", sandboxed=False)
class BenchCaller:
    """A control plane's workflow: one activity call by name on another task queue."""

    @workflow.run
    async def run(self, name: str, queue: str, request: Any) -> Any:
        return await workflow.execute_activity(
            name,
            request,
            task_queue=queue,
            start_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=timedelta(seconds=30),
        )


async def _noop_worker(address: str, queue: str, concurrency: int) -> None:
    client = await Client.connect(address)
    async with Worker(client, task_queue=queue, activities=[noop], max_concurrent_activities=concurrency):
        print("ready", flush=True)
        await asyncio.Event().wait()


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"runner exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("runner did not become ready")


def _request() -> dict[str, Any]:
    return {"execution_id": f"bench-{next(_ids)}", "workflow_yaml": DOCUMENT, "input": {}}


async def _rate(count: int, concurrency: int, start: Callable[[], Awaitable[Any]]) -> float:
    """Calls per second of `start()` with `concurrency` in flight (after a warm-up of `concurrency` calls)."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            result = await start()
            assert result["status"] == "completed", result

    await asyncio.gather(*(one() for _ in range(concurrency)))
    began = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return count / (time.perf_counter() - began)


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


async def _measure(address: str, count: int, concurrency: int, tmp: str) -> tuple[float, float, float]:
    metrics = _free_port()
    runner_env = {
        "EXECUTION_MODE": "temporal",
        "TEMPORAL_SERVICE_ADDRESS": address,
        "TEMPORAL_TASK_QUEUE": "bench-runner",
        "TEMPORAL_MAX_CONCURRENCY": str(concurrency),
        "METRICS_HOST": "127.0.0.1",
        "METRICS_PORT": str(metrics),
        "LOG_LEVEL": "WARNING",
        "CALLBACK_JSONL_PATH": f"{tmp}/events.jsonl",
        "CALLBACK_DEAD_LETTER_PATH": f"{tmp}/dead.jsonl",
    }
    runner = _spawn([sys.executable, "-c", RUNNER], runner_env)
    noop_worker = _spawn([sys.executable, __file__, "--noop-worker", address, str(concurrency)], {})
    try:
        _wait_ready(f"http://127.0.0.1:{metrics}/readyz", runner)
        assert noop_worker.stdout is not None
        if noop_worker.stdout.readline().strip() != b"ready":
            raise SystemExit("no-op worker did not start")
        client = await Client.connect(address)
        async with Worker(client, task_queue="bench-caller", workflows=[BenchCaller], max_concurrent_workflow_tasks=50):

            def caller(name: str, queue: str) -> Callable[[], Awaitable[Any]]:
                return lambda: client.execute_workflow(
                    "BenchCaller", args=[name, queue, _request()], id=f"c-{next(_ids)}", task_queue="bench-caller"
                )

            def ready() -> Awaitable[Any]:
                payload = _request()
                return client.execute_workflow(
                    "RunServerlessWorkflow", payload, id=payload["execution_id"], task_queue="bench-runner"
                )

            raw = await _rate(count, concurrency, caller(NOOP, "bench-noop"))
            ingress = await _rate(count, concurrency, caller("ExecuteWorkflow", "bench-runner"))
            ready_rate = await _rate(count, concurrency, ready)
        return ingress, raw, ready_rate
    finally:
        for process in (runner, noop_worker):
            process.terminate()
            process.wait(10)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run both measurements on one dev server, print the rates and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="executions measured per variant")
    parser.add_argument("--concurrency", type=int, default=20, help="workflows in flight, activities per worker")
    parser.add_argument("--noop-worker", nargs=2, metavar=("ADDRESS", "CONCURRENCY"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.noop_worker:
        address, concurrency = args.noop_worker
        asyncio.run(_noop_worker(address, "bench-noop", int(concurrency)))
        return 0
    partitions = ("matching.numTaskqueueReadPartitions=1", "matching.numTaskqueueWritePartitions=1")
    server = launch_dev_server(
        port=_free_port(), extra_args=tuple(a for p in partitions for a in ("--dynamic-config-value", p))
    )
    try:
        asyncio.run(server.wait_ready())
        with tempfile.TemporaryDirectory() as tmp:
            ingress, raw, ready = asyncio.run(_measure(server.address, args.count, args.concurrency, tmp))
    finally:
        server.terminate()
    print(f"ExecuteWorkflow activity (one-task document): {ingress:8.1f} executions/s")
    print(f"no-op activity (same dev server, same caller): {raw:8.1f} activities/s")
    print(f"ratio ingress / raw:                          {ingress / raw:8.2f}")
    print(f"RunServerlessWorkflow (with its plan step):    {ready:8.1f} executions/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
