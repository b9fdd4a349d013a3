"""Helpers of the Temporal ingress tests: runners in-process and as processes, a caller workflow of our own, a call
counter, event readers (the fixtures are in `conftest_temporal.py`).

A runner is either in-process (an `App` with the Temporal ingress) or a subprocess a test can SIGKILL
(`python -m tests.integration.temporal_fixtures`, which runs `App.serve()` from the environment).

Run as `python -m tests.integration.temporal_fixtures`, this module is that runner process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import Worker

from consumer.app import App
from consumer.config import Settings

HEADER = "document: {dsl: '1.0.3', namespace: test, name: wf, version: '1.0.0'}\n"


def runner_env(address: str, queue: str, events: Path, **overrides: str | int | float | None) -> dict[str, str]:
    """The environment of a runner serving `queue`, writing events as JSON lines to `events` (None: unset)."""
    env: dict[str, str] = {
        "EXECUTION_MODE": "temporal",
        "METRICS_PORT": "off",
        "TEMPORAL_SERVICE_ADDRESS": address,
        "TEMPORAL_TASK_QUEUE": queue,
        "TEMPORAL_HEARTBEAT_TIMEOUT_SECONDS": "2",
        "CALLBACK_JSONL_PATH": str(events),
        "CALLBACK_DEAD_LETTER_PATH": str(events.with_suffix(".dead.jsonl")),
        "SHUTDOWN_GRACE_SECONDS": "5",
        "PAYLOAD_STORE_URL": str(events.parent / "payload-store"),
    }
    env.update({key: str(value) for key, value in overrides.items() if value is not None})
    return {key: value for key, value in env.items() if overrides.get(key, "") is not None}


@contextlib.asynccontextmanager
async def runner(env: Mapping[str, str]) -> AsyncIterator[App]:
    """An in-process runner from an environment, stopped on exit."""
    async with runner_app(Settings.from_env(env)) as app:
        yield app


@contextlib.asynccontextmanager
async def runner_app(settings: Settings) -> AsyncIterator[App]:
    """An in-process runner from settings, stopped on exit."""
    app = App(settings)
    await app.start()
    try:
        yield app
    finally:
        await app.stop(2.0)


def spawn_worker(env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A runner process serving the Temporal ingress (this module as `__main__`), its stderr in `log`."""
    with log.open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", __spec__.name],
            env={**os.environ, **env},
            cwd=Path(__file__).parents[2],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


class CallCounter:
    """A local HTTP endpoint that counts requests per path and answers `{"path", "count"}` (JSON)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._server: asyncio.Server | None = None

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> CallCounter:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        path = head.split(" ", 2)[1]
        self.counts[path] = self.counts.get(path, 0) + 1
        body = orjson.dumps({"path": path, "count": self.counts[path]})
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
            + f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()


def events_of(path: Path, execution_id: str) -> list[dict[str, Any]]:
    """The lifecycle events of one execution in the JSON-lines file, in file order."""
    if not path.exists():
        return []
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return [event for event in lines if event.get("executionid") == execution_id]


def kinds(events: list[dict[str, Any]]) -> list[str]:
    """`workflow.started`, `task.completed:/do/0/a`, ... for compact assertions."""
    out = []
    for event in events:
        kind = ".".join(event["type"].split(".")[2:4])
        data = event.get("data") or {}
        out.append(f"{kind}:{data['task']}" if "task" in data else kind)
    return out


def request(execution_id: str, body: str, **extra: Any) -> dict[str, Any]:
    """The command object of `ExecuteWorkflow` / `RunServerlessWorkflow` for a document body."""
    return {"execution_id": execution_id, "workflow_yaml": HEADER + body, "input": {}, **extra}


@workflow.defn(name="TestCallerWorkflow", sandboxed=False)
class CallerWorkflow:
    """A control plane's own workflow: calls `ExecuteWorkflow` by name on the runner's task queue (a `heartbeat`
    timeout of 2 s unless given; retries `retry_after` seconds apart)."""

    @workflow.run
    async def run(
        self, queue: str, payload: dict[str, Any], attempts: int, retry_after: float = 0.2, heartbeat: float = 2.0
    ) -> Any:
        return await workflow.execute_activity(
            "ExecuteWorkflow",
            payload,
            task_queue=queue,
            start_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=timedelta(seconds=heartbeat),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=retry_after), maximum_attempts=attempts),
        )


@contextlib.asynccontextmanager
async def caller_worker(client: Client) -> AsyncIterator[str]:
    """A worker of `CallerWorkflow` on a queue of its own; yields that queue."""
    queue = f"caller-{uuid.uuid4().hex[:12]}"
    async with Worker(client, task_queue=queue, workflows=[CallerWorkflow]):
        yield queue


async def _serve() -> None:
    await App(Settings.from_env(os.environ)).serve()


if __name__ == "__main__":
    asyncio.run(_serve())
