"""Fixtures and helpers of the AMQP ingress tests, against the real RabbitMQ on 127.0.0.1:5672.

The broker is started (`rabbitmq-server -detached`) when nothing listens there, and the tests fail, never skip,
when it does not come up. Every test gets its own queue names, deleted afterwards. Run as a script, this module is
a runner process (`python -m tests.integration.conftest_amqp`): `workflow-runner serve`, for the tests that kill
or signal it. `tests/integration/conftest.py` re-exports the fixtures.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aio_pika.abc
import orjson
import pytest

from tests.helpers import eventually

__all__ = ["amqp", "queue_name", "rabbitmq", "runner_processes"]

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
HEADER = "document: {dsl: '1.0.3', namespace: amqp-test, name: wf, version: '1.0.0'}\n"
ROOT = Path(__file__).resolve().parents[2]


def document(body: str) -> str:
    """A complete document from the lines after the header."""
    return HEADER + body


def waiting(seconds: float, *, then: str = "done: {set: {ok: true}}") -> str:
    """A document that waits `seconds`, then sets `{ok: true}`."""
    return document(f"do:\n  - pause: {{wait: {{milliseconds: {int(seconds * 1000)}}}}}\n  - {then}\n")


def _listening(host: str = "127.0.0.1", port: int = 5672) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, port)) == 0


def ensure_broker() -> None:
    """Start RabbitMQ if nothing listens on 5672; fail with a clear message if it does not come up in 60 s."""
    if _listening():
        return
    if shutil.which("rabbitmq-server") is None:
        pytest.fail("RabbitMQ is not running on 127.0.0.1:5672 and rabbitmq-server is not installed")
    subprocess.run(["rabbitmq-server", "-detached"], check=False, capture_output=True)
    deadline = time.monotonic() + 60
    while not _listening():
        if time.monotonic() > deadline:
            pytest.fail("RabbitMQ did not come up on 127.0.0.1:5672 within 60 s of rabbitmq-server -detached")
        time.sleep(1)


@pytest.fixture(scope="session")
def rabbitmq() -> str:
    """The broker URL, once the broker accepts connections."""
    ensure_broker()
    return AMQP_URL


@pytest.fixture
async def amqp(rabbitmq: str) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """A channel of the test's own (with publisher confirms)."""
    connection = await aio_pika.connect(rabbitmq)
    async with connection:
        yield await connection.channel(publisher_confirms=True)


@pytest.fixture
async def queue_name(amqp: aio_pika.abc.AbstractChannel) -> AsyncIterator[str]:
    """A unique work queue name; the queue, its dead-letter queue and exchange, and the bus exchange are deleted."""
    name = f"amqp-test-{uuid.uuid4().hex[:10]}"
    yield name
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        for queue in (name, f"{name}.dead"):
            channel = await connection.channel()
            await channel.queue_delete(queue)
        for exchange in (f"{name}.dlx", f"{name}.events"):
            channel = await connection.channel()
            await channel.exchange_delete(exchange)


def settings_env(queue: str, **overrides: str) -> dict[str, str]:
    """Environment for a runner on `queue` (events exchange `<queue>.events`, no metrics port)."""
    env = {
        "EXECUTION_MODE": "amqp",
        "AMQP_URL": AMQP_URL,
        "AMQP_QUEUE": queue,
        "AMQP_EVENTS_EXCHANGE": f"{queue}.events",
        "AMQP_REQUEUE_DELAY_SECONDS": "0.2",
        "METRICS_PORT": "off",
    }
    env.update(overrides)
    return env


@dataclass
class RecordingSink:
    """A progress sink that keeps every event; `failing` makes it unavailable."""

    events: list[dict[str, Any]] = field(default_factory=list)
    failing: bool = False

    async def send(self, batch: Sequence[Any]) -> None:
        from callbacks import SinkUnavailableError

        if self.failing:
            raise SinkUnavailableError("test sink down")
        self.events.extend(event.to_dict() for event in batch)

    async def close(self) -> None:
        return None

    def of(self, execution_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        """Events of one execution, optionally only `workflow.<kind>`."""
        found = [event for event in self.events if event["executionid"] == execution_id]
        if kind is not None:
            found = [event for event in found if event["type"] == f"io.serverlessworkflow.workflow.{kind}.v1"]
        return found


class MaxGauge:
    """Stands in for the service's in-flight gauge, remembering the highest value it was set to."""

    def __init__(self) -> None:
        self.value = 0
        self.peak = 0

    def set(self, value: float) -> None:
        self.value = int(value)
        self.peak = max(self.peak, self.value)


@dataclass
class Runner:
    """An in-process runner: executor, reporter, execution service and AMQP ingress."""

    ingress: Any
    service: Any
    reporter: Any
    sink: RecordingSink


@contextlib.asynccontextmanager
async def running(env: dict[str, str], tmp_path: Path, **service_options: Any) -> AsyncIterator[Runner]:
    """Start an in-process runner with the AMQP ingress; stop it (grace 5 s) afterwards."""
    from callbacks import Reporter, RetryPolicy
    from consumer import ExecutionService
    from consumer.amqp import AmqpIngress
    from consumer.config import Settings
    from executor import Executor

    settings = Settings.from_env(env)
    sink = RecordingSink()
    retry = RetryPolicy(initial_delay=0.05, max_delay=0.2)
    reporter = Reporter(sink, retry=retry, dead_letter_path=tmp_path / f"dead-{uuid.uuid4().hex[:6]}.jsonl")
    await reporter.start()
    service = ExecutionService(Executor(), reporter, flush_timeout=settings.callbacks.flush_timeout, **service_options)
    ingress = AmqpIngress(settings, service)
    await ingress.start()
    try:
        yield Runner(ingress=ingress, service=service, reporter=reporter, sink=sink)
    finally:
        service.close_intake()
        await service.drain(2)
        await ingress.stop(2)
        await reporter.stop(1)


async def publish(
    channel: aio_pika.abc.AbstractChannel,
    queue: str,
    body: bytes | dict[str, Any] | list[Any],
    **properties: Any,
) -> None:
    """Publish one message to `queue` through the default exchange (JSON-encoded unless `body` is bytes)."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    properties.setdefault("content_type", "application/json")
    await channel.default_exchange.publish(aio_pika.Message(raw, **properties), queue)


async def take(
    channel: aio_pika.abc.AbstractChannel, queue: str, count: int, within: float = 15
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Get (and ack) `count` messages from `queue`, waiting up to `within` seconds for them."""
    target = await channel.get_queue(queue, ensure=True)
    got: list[aio_pika.abc.AbstractIncomingMessage] = []
    deadline = time.monotonic() + within
    while len(got) < count and time.monotonic() < deadline:
        message = await target.get(fail=False, no_ack=True)
        if message is None:
            await asyncio.sleep(0.05)
        else:
            got.append(message)
    return got


async def depth(channel: aio_pika.abc.AbstractChannel, queue: str) -> tuple[int, int]:
    """(messages ready, consumers) of `queue`, from a passive declaration."""
    declared = await channel.declare_queue(queue, passive=True)
    result = declared.declaration_result
    return result.message_count or 0, result.consumer_count or 0


class ReplyInbox:
    """An exclusive reply queue and the replies it received, by correlation id."""

    def __init__(self, channel: aio_pika.abc.AbstractChannel) -> None:
        self._channel = channel
        self.name = ""
        self.replies: dict[str, list[dict[str, Any]]] = {}

    async def open(self) -> ReplyInbox:
        queue = await self._channel.declare_queue(exclusive=True, auto_delete=True)
        self.name = queue.name
        await queue.consume(self._on_reply, no_ack=True)
        return self

    async def _on_reply(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.replies.setdefault(message.correlation_id or "", []).append(orjson.loads(message.body))

    async def wait(self, correlation_id: str, within: float = 15) -> dict[str, Any]:
        """The first reply to `correlation_id`."""
        await eventually(lambda: correlation_id in self.replies, within, f"the reply to {correlation_id}")
        return self.replies[correlation_id][0]


async def connection_pids(name: str) -> list[str]:
    """Broker-side ids of the connections whose client-provided name contains `name` (rabbitmqctl is slow: ~1 s)."""
    listing = await _rabbitmqctl("list_connections", "-q", "--no-table-headers", "pid", "client_properties")
    pids = [line.split("\t", 1)[0] for line in listing.splitlines() if name in line]
    assert pids, f"no broker connection named {name!r}"
    return pids


async def close_connections(pids: list[str]) -> None:
    """Close connections from the broker side, as an operator or a failing node would."""
    for pid in pids:
        await _rabbitmqctl("close_connection", pid, "closed by the AMQP ingress tests")


async def _rabbitmqctl(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, f"rabbitmqctl {args[0]} failed: {err.decode()}"
    return out.decode()


class RunnerProcess:
    """A `workflow-runner serve` process (this module run as a script) with the amqp ingress."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self._env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        self._log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RunnerProcess:
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.conftest_amqp"],
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        return self

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def wait(self, within: float) -> int:
        """The exit code, waiting up to `within` seconds."""
        assert self.process is not None
        deadline = time.monotonic() + within
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                pytest.fail(f"runner did not exit within {within} s; log:\n{self.log_text()}")
            await asyncio.sleep(0.05)
        return self.process.returncode

    def log_text(self) -> str:
        return self._log.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def runner_processes() -> Iterator[list[RunnerProcess]]:
    """Runner processes started by a test; killed afterwards if still alive."""
    started: list[RunnerProcess] = []
    yield started
    for runner in started:
        runner.kill()


def read_events(path: Path) -> list[dict[str, Any]]:
    """The JSON-lines events a runner process wrote so far."""
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _serve() -> int:
    """Script entry: `workflow-runner serve` (SIGPIPE restored, so a closed stdout ends it like a shell would)."""
    from consumer import cli

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    return cli.main(["serve"])


async def consumers(queue: str) -> int:
    """Consumers of `queue` (0 while it does not exist yet)."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return 0
        return declared.declaration_result.consumer_count or 0


if __name__ == "__main__":
    sys.exit(_serve())
