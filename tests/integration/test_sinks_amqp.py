"""The AMQP sink against the real RabbitMQ on 127.0.0.1:5672 (started here if it is not running)."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import aio_pika.abc
import orjson
import pytest

from callbacks import DEFAULT_SOURCE, AmqpSink, CloudEvent, Reporter, RetryPolicy, event_id

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
pytestmark = pytest.mark.timeout(90)


def _events(execution: str, count: int) -> list[CloudEvent]:
    kinds = ["workflow.started"] + ["task.completed"] * (count - 2) + ["workflow.completed"]
    return [
        CloudEvent(
            id=event_id(execution, 1, seq),
            source=DEFAULT_SOURCE,
            type=f"io.serverlessworkflow.{kind}.v1",
            time="2025-06-01T12:00:00Z",
            subject=execution,
            executionid=execution,
            sequence=seq,
            attempt=1,
            data={"task": f"/do/{seq}"},
        )
        for seq, kind in enumerate(kinds, start=1)
    ]


async def _connect_or_start_broker() -> aio_pika.abc.AbstractConnection:
    try:
        return await aio_pika.connect(AMQP_URL, timeout=5)
    except (ConnectionError, OSError):
        pass
    if shutil.which("rabbitmq-server") is None:
        pytest.fail("RabbitMQ is not running on 127.0.0.1:5672 and rabbitmq-server is not installed")
    starter = await asyncio.create_subprocess_exec(
        "rabbitmq-server", "-detached", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    await starter.wait()
    deadline = time.monotonic() + 60
    while True:
        try:
            return await aio_pika.connect(AMQP_URL, timeout=5)
        except (ConnectionError, OSError):
            if time.monotonic() > deadline:
                pytest.fail("RabbitMQ did not come up on 127.0.0.1:5672 within 60 s of rabbitmq-server -detached")
            await asyncio.sleep(1)


@pytest.fixture
async def broker() -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """A channel on the real broker."""
    connection = await _connect_or_start_broker()
    async with connection:
        yield await connection.channel()


@pytest.fixture
def exchange_name() -> str:
    """A unique exchange per test."""
    return f"progress-test-{uuid.uuid4().hex[:12]}"


async def _drain(queue: aio_pika.abc.AbstractQueue, count: int) -> list[aio_pika.abc.AbstractIncomingMessage]:
    messages: list[aio_pika.abc.AbstractIncomingMessage] = []
    deadline = time.monotonic() + 10
    while len(messages) < count and time.monotonic() < deadline:
        message = await queue.get(fail=False, no_ack=True)
        if message is None:
            await asyncio.sleep(0.05)
        else:
            messages.append(message)
    return messages


async def test_amqp_sink_publishes_each_event_by_type(
    broker: aio_pika.abc.AbstractChannel, exchange_name: str, tmp_path: Path
) -> None:
    """Every event reaches a bound queue once, routing key = type, message id = event id, order per execution."""
    exchange = await broker.declare_exchange(exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await broker.declare_queue(exclusive=True)
    await queue.bind(exchange, routing_key="io.serverlessworkflow.#")
    executions = {ex: _events(ex, 12) for ex in ("amqp-a", "amqp-b")}
    try:
        async with Reporter(AmqpSink(AMQP_URL, exchange_name), dead_letter_path=tmp_path / "dl") as reporter:
            for events in executions.values():
                for event in events:
                    await reporter.submit(event)
            for execution in executions:
                await reporter.flush(execution, timeout=20)
        messages = await _drain(queue, 24)
    finally:
        await exchange.delete()
    assert len(messages) == 24
    for message in messages:
        body = orjson.loads(message.body)
        assert message.routing_key == body["type"]
        assert message.message_id == body["id"]
        assert message.content_type == "application/cloudevents+json"
    for execution, events in executions.items():
        got = [orjson.loads(m.body)["id"] for m in messages if orjson.loads(m.body)["executionid"] == execution]
        assert got == [event.id for event in events]


async def test_amqp_unroutable_events_wait_for_a_queue(
    broker: aio_pika.abc.AbstractChannel, exchange_name: str, tmp_path: Path
) -> None:
    """With no queue bound the broker returns the event; it is retried, not dropped, until a queue appears."""
    exchange = await broker.declare_exchange(exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
    events = _events("amqp-unroutable", 3)
    retry = RetryPolicy(initial_delay=0.05, max_delay=0.2)
    try:
        sink = AmqpSink(AMQP_URL, exchange_name)
        async with Reporter(sink, retry=retry, dead_letter_path=tmp_path / "dl") as reporter:
            for event in events:
                await reporter.submit(event)
            await asyncio.sleep(0.5)
            assert reporter.stats.retried > 0
            assert reporter.stats.delivered == 0
            queue = await broker.declare_queue(exclusive=True)
            await queue.bind(exchange, routing_key="#")
            await reporter.flush("amqp-unroutable", timeout=20)
        messages = await _drain(queue, 3)
    finally:
        await exchange.delete()
    assert [orjson.loads(m.body)["sequence"] for m in messages] == [1, 2, 3]
    assert not (tmp_path / "dl").exists()
