"""Runner processes on the real RabbitMQ: kill -9 and restart, SIGTERM with work in flight, emit → listen across."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import aio_pika
import aio_pika.abc
import orjson
import pytest

from tests.helpers import eventually
from tests.integration.conftest_amqp import (
    ReplyInbox,
    RunnerProcess,
    consumers,
    depth,
    document,
    publish,
    read_events,
    running,
    settings_env,
    take,
    waiting,
)

pytestmark = pytest.mark.timeout(90)

STARTED = "io.serverlessworkflow.workflow.started.v1"
COMPLETED = "io.serverlessworkflow.workflow.completed.v1"


def _process_env(queue: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return settings_env(
        queue,
        CALLBACK_JSONL_PATH=str(tmp_path / "events.jsonl"),
        CALLBACK_DEAD_LETTER_PATH=str(tmp_path / "progress-dead.jsonl"),
        LOG_LEVEL="INFO",
        **extra,
    )


def _of(events: list[dict[str, Any]], execution_id: str, kind: str) -> list[dict[str, Any]]:
    return [event for event in events if event["executionid"] == execution_id and event["type"] == kind]


async def _spawn(env: dict[str, str], log: Path, started: list[RunnerProcess], queue: str) -> RunnerProcess:
    runner = RunnerProcess(env, log).start()
    started.append(runner)
    await eventually(lambda: _consuming(queue, runner), 30, f"a runner consuming {queue}")
    return runner


async def _consuming(queue: str, runner: RunnerProcess) -> bool:
    if runner.process is not None and runner.process.poll() is not None:
        pytest.fail(f"runner exited with {runner.process.returncode}:\n{runner.log_text()}")
    return await consumers(queue) >= 1


async def test_killed_runner_work_is_redelivered_and_completes_as_attempt_2(
    tmp_path: Path, queue_name: str, amqp: aio_pika.abc.AbstractChannel, runner_processes: list[RunnerProcess]
) -> None:
    """kill -9 mid-execution, then a new runner: the message comes back and completes, its events say attempt 2."""
    env = _process_env(queue_name, tmp_path)
    events = tmp_path / "events.jsonl"
    first = await _spawn(env, tmp_path / "first.log", runner_processes, queue_name)
    inbox = await ReplyInbox(amqp).open()
    body = {"execution_id": "crash-1", "workflow_yaml": waiting(2)}
    await publish(amqp, queue_name, body, reply_to=inbox.name, correlation_id="crash")
    await eventually(lambda: _of(read_events(events), "crash-1", STARTED), 20, "attempt 1 to start")
    first.kill()
    await _spawn(env, tmp_path / "second.log", runner_processes, queue_name)
    reply = await inbox.wait("crash", within=30)
    seen = read_events(events)
    assert reply["status"] == "completed"
    assert [event["attempt"] for event in _of(seen, "crash-1", STARTED)] == [1, 2]
    assert [event["attempt"] for event in _of(seen, "crash-1", COMPLETED)] == [2]
    assert await depth(amqp, queue_name) == (0, 1)


async def test_sigterm_finishes_short_work_and_leaves_long_work_queued(
    tmp_path: Path, queue_name: str, amqp: aio_pika.abc.AbstractChannel, runner_processes: list[RunnerProcess]
) -> None:
    """SIGTERM: executions that end within the grace are acked and replied; the rest goes back to the queue."""
    env = _process_env(queue_name, tmp_path, SHUTDOWN_GRACE_SECONDS="3")
    events = tmp_path / "events.jsonl"
    runner = await _spawn(env, tmp_path / "runner.log", runner_processes, queue_name)
    inbox = await ReplyInbox(amqp).open()
    for name, seconds in (("quick-1", 1.0), ("quick-2", 1.0), ("long", 60.0)):
        body = {"execution_id": name, "workflow_yaml": waiting(seconds)}
        await publish(amqp, queue_name, body, reply_to=inbox.name, correlation_id=name)
    await eventually(lambda: len([e for e in read_events(events) if e["type"] == STARTED]) == 3, 20, "3 starts")
    runner.signal(signal.SIGTERM)
    assert await runner.wait(20) == 0, runner.log_text()
    assert (await inbox.wait("quick-1"))["status"] == "completed"
    assert (await inbox.wait("quick-2"))["status"] == "completed"
    assert "long" not in inbox.replies
    assert await depth(amqp, queue_name) == (1, 0)
    [left] = await take(amqp, queue_name, 1)
    assert orjson.loads(left.body)["execution_id"] == "long"
    assert left.headers["x-delivery-count"] == 1


LISTEN = document(
    "do:\n"
    "  - wait_for_hello:\n"
    "      listen:\n"
    "        to:\n"
    "          one:\n"
    "            with:\n"
    "              type: com.example.amqp.hello.v1\n"
)
EMIT = document(
    "do:\n"
    "  - announce:\n"
    "      emit:\n"
    "        event:\n"
    "          with:\n"
    "            source: https://example.com/amqp-test\n"
    "            type: com.example.amqp.hello.v1\n"
    "            data: {greeting: hi}\n"
)


async def test_event_emitted_in_one_process_reaches_listen_in_another(
    tmp_path: Path, queue_name: str, amqp: aio_pika.abc.AbstractChannel, runner_processes: list[RunnerProcess]
) -> None:
    """A runner process waits in `listen`; another process `emit`s; the event crosses once, with no echo."""
    exchange = f"{queue_name}.events"
    listener_env = _process_env(queue_name, tmp_path, AMQP_EVENTS_EXCHANGE=exchange)
    await _spawn(listener_env, tmp_path / "listener.log", runner_processes, queue_name)
    observer = await amqp.declare_queue(exclusive=True)
    await observer.bind(exchange, routing_key="#")  # the runner declared the exchange
    inbox = await ReplyInbox(amqp).open()
    await publish(
        amqp, queue_name, {"execution_id": "listener", "workflow_yaml": LISTEN}, reply_to=inbox.name, correlation_id="l"
    )
    events = tmp_path / "events.jsonl"
    await eventually(lambda: _task_started(read_events(events), "listener"), 20, "the listen task to wait")
    emitter_queue = f"{queue_name}-emitter"
    try:
        async with running(settings_env(emitter_queue, AMQP_EVENTS_EXCHANGE=exchange), tmp_path) as emitter:
            await publish(amqp, emitter_queue, {"execution_id": "emitter", "workflow_yaml": EMIT})
            reply = await inbox.wait("l", within=20)
            await asyncio.sleep(0.5)  # time for an echo, if there were one, to show up
            on_emitter_bus = [
                e for e in emitter.service.executor.bus.published() if e.get("type", "").startswith("com.")
            ]
    finally:
        await _delete(amqp, emitter_queue)
    crossed = [orjson.loads(m.body) for m in await take(amqp, observer.name, 5, within=1)]
    assert reply["status"] == "completed", reply
    assert reply["output"] == [{"greeting": "hi"}]
    assert [event["type"] for event in crossed] == ["com.example.amqp.hello.v1"]
    assert len(on_emitter_bus) == 1, "the emitter's own event did not come back to it"


def _task_started(events: list[dict[str, Any]], execution_id: str) -> bool:
    return any(e["executionid"] == execution_id and e["type"].endswith("task.started.v1") for e in events)


async def _delete(channel: aio_pika.abc.AbstractChannel, queue: str) -> None:
    for name in (queue, f"{queue}.dead"):
        await channel.queue_delete(name)
    await channel.exchange_delete(f"{queue}.dlx")
