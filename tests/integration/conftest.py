"""Shared fixtures for ingress tests: an in-process runner on real sockets, a recording sink, runner subprocesses.

Everything binds to 127.0.0.1 on ports the OS picks, so tests can run side by side. `start_runner(**env)` builds
the process exactly as `workflow-runner serve` does (`Settings.from_env` → `App`), with a recording sink in place
of stdout; `spawn_runner(env)` starts the real console script and waits until it is ready.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest

from consumer._proto.workflow_runner.v1 import runner_pb2 as pb
from consumer._proto.workflow_runner.v1 import runner_pb2_grpc as pb_grpc
from consumer.app import App
from consumer.config import Settings
from tests.fixtures.servers import free_port  # also imported from here by the ingress tests
from tests.helpers import MemorySink

CLI = str(Path(sys.executable).parent / "workflow-runner")


async def http_get(url: str) -> httpx.Response:
    """GET without blocking the event loop that serves the URL."""
    async with httpx.AsyncClient(timeout=5.0) as client:
        return await client.get(url)


@dataclass
class Runner:
    """An in-process runner: its App, sink, and addresses."""

    app: App
    sink: MemorySink
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    @property
    def target(self) -> str:
        """`127.0.0.1:<grpc port>`."""
        port = self.app.ingress("grpc").port  # type: ignore[attr-defined]
        return f"127.0.0.1:{port}"

    @property
    def ops_url(self) -> str:
        """Base URL of the metrics / health server."""
        assert self.app.ops is not None
        return f"http://127.0.0.1:{self.app.ops.port}"

    def channel(self, **options: Any) -> grpc.aio.Channel:
        """A gRPC channel to the runner, closed at teardown."""
        channel = grpc.aio.insecure_channel(self.target, options=list(options.items()))
        self.channels.append(channel)
        return channel


def stub(runner: Runner, **options: Any) -> pb_grpc.WorkflowRunnerStub:
    """A WorkflowRunner client of `runner` (channel `options` as gRPC channel arguments)."""
    return pb_grpc.WorkflowRunnerStub(runner.channel(**options))


async def stream(client: pb_grpc.WorkflowRunnerStub, request: pb.ExecuteRequest) -> tuple[list[Any], pb.Execution]:
    """`ExecuteStream` to its end: the lifecycle events it sent, in order, and the result."""
    events, result = [], None
    async for message in client.ExecuteStream(request):
        if message.HasField("event"):
            events.append(message.event)
        else:
            result = message.result
    assert result is not None
    return events, result


BASE_ENV = {
    "GRPC_HOST": "127.0.0.1",
    "GRPC_PORT": "0",
    "METRICS_HOST": "127.0.0.1",
    "METRICS_PORT": "0",
    "LOG_LEVEL": "WARNING",
}


def runner_settings(tmp_path: Path, **env: str) -> Settings:
    """`BASE_ENV` with `env` on top, dead letters under `tmp_path`."""
    return Settings.from_env({**BASE_ENV, "CALLBACK_DEAD_LETTER_PATH": str(tmp_path / "dead-letter.jsonl"), **env})


@pytest.fixture
async def start_runner(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Runner]]]:
    """`await start_runner(MAX_CONCURRENT_EXECUTIONS="2", …)`: a started runner, stopped at teardown."""
    runners: list[Runner] = []

    async def start(**env: str) -> Runner:
        sink = MemorySink()
        app = App(runner_settings(tmp_path, **env), sink=sink)
        await app.start()
        runners.append(Runner(app, sink))
        return runners[-1]

    yield start
    for runner in runners:
        for channel in runner.channels:
            await channel.close()
        await runner.app.stop(grace=1.0)


@dataclass
class Spawned:
    """A `workflow-runner serve` subprocess."""

    process: subprocess.Popen[bytes]
    grpc_port: int
    metrics_port: int
    stderr_path: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def terminate(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def logs(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Poll `url` (a `/readyz`) until it answers 200; fail when the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"runner exited with {process.returncode} before it was ready")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"runner not ready within {timeout}s")


@pytest.fixture
def spawn_runner(tmp_path: Path) -> Iterator[Callable[..., Spawned]]:
    """`spawn_runner(EXECUTION_MODE="grpc", …)`: a ready `workflow-runner serve` subprocess, killed at teardown."""
    spawned: list[Spawned] = []

    def spawn(**env: str) -> Spawned:
        grpc_port, metrics_port = free_port(), free_port()
        stderr_path = tmp_path / f"runner-{len(spawned)}.log"
        environ = {
            **os.environ,
            **BASE_ENV,
            "GRPC_PORT": str(grpc_port),
            "METRICS_PORT": str(metrics_port),
            "LOG_LEVEL": "INFO",
            "CALLBACK_DEAD_LETTER_PATH": str(tmp_path / "dead-letter.jsonl"),
            **env,
        }
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen([CLI, "serve"], env=environ, stdout=subprocess.DEVNULL, stderr=stderr)
        runner = Spawned(process, grpc_port, metrics_port, stderr_path)
        spawned.append(runner)
        wait_ready(f"http://127.0.0.1:{metrics_port}/readyz", process)
        return runner

    yield spawn
    for runner in spawned:
        if runner.process.poll() is None:
            runner.process.kill()
            runner.process.wait(timeout=10)


# The Temporal and AMQP suites keep their fixtures beside their helpers; importing them here shares them.
from tests.integration.conftest_amqp import amqp, queue_name, rabbitmq, runner_processes  # noqa: E402, F401
from tests.integration.conftest_s3 import s3_env, s3_server  # noqa: E402, F401
from tests.integration.conftest_temporal import task_queue, temporal_address  # noqa: E402, F401
