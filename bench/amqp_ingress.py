"""AMQP ingress throughput: executions per second through the queue against raw aio-pika consume-and-ack, same run.

Both measurements read the same number of messages from a fresh durable quorum queue on the same broker with the
same prefetch, the messages published before the clock starts:

- raw: an aio-pika consumer that acks each delivery as it arrives (the transport's ceiling);
- ingress: `AmqpIngress` decoding each message, running a one-task document on the executor, confirming its
  terminal event with the progress reporter (a JSON-lines file sink), then acking.

The clock stops when the queue is empty and nothing is left unacked. `--tasks N` runs documents of N tasks instead
(each a small jq expression: work the executor worker processes share, where a one-task document leaves nearly all
the work to the supervisor's ingress). Run: `.venv/bin/python bench/amqp_ingress.py [--messages N] [--tasks N]`
(about 20 s; RabbitMQ on 127.0.0.1:5672).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/amqp_ingress.py`, this file's directory is first on sys.path, and `bench/callbacks.py` would
# shadow the `callbacks` package.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import asyncio
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from tempfile import TemporaryDirectory

import aio_pika
import aio_pika.abc

from callbacks import CloudEvent, JsonLinesSink, Reporter
from consumer._amqp_decode import encode
from consumer._gc import tune_gc
from consumer._metrics import Metrics
from consumer._pool import WorkerPool
from consumer._service import ExecutionService
from consumer.amqp import AmqpIngress
from consumer.app import build_executor
from consumer.config import Settings
from executor import Executor

URL = "amqp://guest:guest@127.0.0.1:5672/"
MESSAGES = 3000
PREFETCH = 50
DOCUMENT = (
    "document: {dsl: '1.0.3', namespace: bench, name: one-task, version: '1.0.0'}\n"
    "do:\n"
    "  - greet: {set: {message: '${ \"Hello, \" + .name }'}}\n"
)


def tasks_document(tasks: int) -> str:
    """A document of `tasks` tasks, each a small jq expression over the input."""
    steps = "".join(f"  - step{n}: {{set: {{name: '${{ .name + \"{n % 10}\" }}'}}}}\n" for n in range(tasks))
    return f"document: {{dsl: '1.0.3', namespace: bench, name: tasks, version: '1.0.0'}}\ndo:\n{steps}"


async def _publish_all(channel: aio_pika.abc.AbstractChannel, queue: str, prefix: str) -> None:
    for start in range(0, MESSAGES, 500):
        await asyncio.gather(
            *(
                channel.default_exchange.publish(
                    aio_pika.Message(
                        encode(execution_id=f"{prefix}-{n}", workflow_yaml=DOCUMENT, input={"name": str(n)}),
                        content_type="application/json",
                    ),
                    queue,
                )
                for n in range(start, min(start + 500, MESSAGES))
            )
        )


async def _drained(channel: aio_pika.abc.AbstractChannel, queue: str, done: Callable[[], bool]) -> None:
    # The broker is asked only once the local count says done, so polling does not load it during the run.
    while True:
        await asyncio.sleep(0.002)
        if not done():
            continue
        declared = await channel.declare_queue(queue, passive=True)
        if declared.declaration_result.message_count == 0:
            return


async def _timed(start: Callable[[], Awaitable[None]], wait: Callable[[], Awaitable[None]]) -> float:
    began = time.perf_counter()
    await start()
    await wait()
    return MESSAGES / (time.perf_counter() - began)


class _CountingSink(JsonLinesSink):
    """The JSON-lines sink, counting terminal events (each is confirmed just before its delivery is acked)."""

    terminal = 0

    async def send(self, batch: Sequence[CloudEvent]) -> None:
        await super().send(batch)
        self.terminal += sum(event.terminal for event in batch)


async def raw_rate(connection: aio_pika.abc.AbstractConnection, queue_name: str) -> float:
    """Deliveries per second a bare aio-pika consumer acks."""
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=PREFETCH)
    arguments = {"x-queue-type": "quorum", "x-delivery-limit": 5}
    queue = await channel.declare_queue(queue_name, durable=True, arguments=arguments)
    await _publish_all(await connection.channel(publisher_confirms=True), queue_name, "raw")
    acked = 0

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal acked
        await message.ack()
        acked += 1

    async def start() -> None:
        await queue.consume(on_message)

    probe = await connection.channel()
    rate = await _timed(start, lambda: _drained(probe, queue_name, lambda: acked == MESSAGES))
    await queue.delete(if_unused=False, if_empty=False)
    return rate


async def ingress_rate(connection: aio_pika.abc.AbstractConnection, queue_name: str, workdir: Path) -> float:
    """Executions per second through `AmqpIngress`, terminal events confirmed before each ack."""
    environ = {"AMQP_URL": URL, "AMQP_QUEUE": queue_name, "AMQP_PREFETCH": str(PREFETCH)}
    settings = Settings.from_env(environ | {"EXECUTION_MODE": "amqp", "AMQP_EVENTS_EXCHANGE": f"{queue_name}.ev"})
    sink = _CountingSink(workdir / "events.jsonl")
    reporter = Reporter(sink, dead_letter_path=workdir / "dead.jsonl")
    await reporter.start()
    # The executor `serve` builds: worker processes (EXECUTOR_PROCESSES, default the CPU count) under the watchdog.
    executor = build_executor(settings, Metrics())
    if isinstance(executor, WorkerPool):
        await executor.start()
    service = ExecutionService(executor, reporter, max_concurrent=PREFETCH * 2)
    tune_gc()  # as `serve` does once it started
    ingress = AmqpIngress(settings, service)
    declare_only = AmqpIngress(settings, ExecutionService(Executor(), reporter))
    await declare_only.start()  # declares the topology so the messages can be published before the clock starts
    await declare_only.stop(0)
    await _publish_all(await connection.channel(publisher_confirms=True), queue_name, "ingress")
    probe = await connection.channel()
    finished = lambda: sink.terminal == MESSAGES and ingress.in_flight == 0  # noqa: E731
    rate = await _timed(ingress.start, lambda: _drained(probe, queue_name, finished))
    await ingress.stop(5)
    await reporter.stop(5)
    await executor.aclose()
    cleanup = await connection.channel()
    for name in (queue_name, f"{queue_name}.dead"):
        await cleanup.queue_delete(name)
    await cleanup.exchange_delete(f"{queue_name}.dlx")
    await cleanup.exchange_delete(f"{queue_name}.ev")
    return rate


async def main() -> None:
    global MESSAGES, DOCUMENT  # noqa: PLW0603 - the flags set what every measurement uses
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=MESSAGES)
    parser.add_argument("--tasks", type=int, default=1, help="tasks per document (1: the one-task document)")
    args = parser.parse_args()
    MESSAGES = args.messages
    if args.tasks > 1:
        DOCUMENT = tasks_document(args.tasks)
    logging.basicConfig(level=logging.ERROR)
    suffix = uuid.uuid4().hex[:8]
    connection = await aio_pika.connect(URL)
    async with connection:
        with TemporaryDirectory() as workdir:
            raw = await raw_rate(connection, f"bench-raw-{suffix}")
            ingress = await ingress_rate(connection, f"bench-ingress-{suffix}", Path(workdir))
    print(
        f"{MESSAGES} messages, prefetch {PREFETCH}, durable quorum queue, RabbitMQ at {URL.rsplit('@', maxsplit=1)[-1]}"
    )
    print(f"executor worker processes: {os.environ.get('EXECUTOR_PROCESSES', os.cpu_count())}")
    print(f"raw aio-pika consume + ack:        {raw:9.0f} msg/s")
    print(f"AmqpIngress ({args.tasks}-task executions): {ingress:9.0f} executions/s")
    print(f"executions / raw consume + ack:    {ingress / raw:9.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
