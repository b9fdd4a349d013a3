"""The AMQP ingress's broker topology, declared idempotently at start-up.

    <queue>          durable quorum queue: x-delivery-limit, x-dead-letter-exchange = <queue>.dlx,
                     x-consumer-timeout (RabbitMQ 3.12+, when AMQP_CONSUMER_TIMEOUT_SECONDS is set)
    <queue>.dlx      durable fanout exchange: every dead letter lands in <queue>.dead, whatever its routing key
    <queue>.dead     durable quorum queue: poison messages (with x-rejection-reason) and deliveries over the limit

A queue or exchange of that name that already exists with other properties (a classic queue, another delivery
limit) makes the broker refuse the declaration; start-up then fails with the broker's words instead of silently
running on a queue that cannot bound redeliveries.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import aio_pika
import aio_pika.abc
from aio_pika.exceptions import ChannelPreconditionFailed

from ._errors import ConsumerError
from .config import AmqpSettings

logger = logging.getLogger("consumer.amqp")

CONSUMER_TIMEOUT_SINCE = (3, 12)
"""First RabbitMQ release honouring the `x-consumer-timeout` queue argument (older ones accept and ignore it)."""


class TopologyError(ConsumerError, RuntimeError):
    """The broker refused the topology (an existing queue or exchange with other properties)."""


def broker_version(server_properties: dict[str, Any]) -> tuple[int, ...]:
    """The broker's version from its connection properties, `()` when it does not say."""
    raw = server_properties.get("version", b"")
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(part) for part in match.groups() if part is not None) if match else ()


def queue_arguments(settings: AmqpSettings, version: tuple[int, ...]) -> dict[str, Any]:
    """The work queue's arguments for a broker of `version`."""
    arguments: dict[str, Any] = {
        "x-queue-type": "quorum",
        "x-delivery-limit": settings.delivery_limit,
        "x-dead-letter-exchange": settings.dead_letter_exchange,
    }
    if settings.consumer_timeout is None:
        return arguments
    if version >= CONSUMER_TIMEOUT_SINCE:
        arguments["x-consumer-timeout"] = int(settings.consumer_timeout * 1000)
    else:
        shown = ".".join(map(str, version)) or "unknown"
        logger.warning(
            "AMQP_CONSUMER_TIMEOUT_SECONDS ignored: RabbitMQ %s has no per-queue consumer timeout (3.12+); the "
            "broker-wide consumer_timeout applies (30 minutes unless rabbitmq.conf says otherwise)",
            shown,
        )
    return arguments


async def declare(
    channel: aio_pika.abc.AbstractChannel, settings: AmqpSettings, version: tuple[int, ...]
) -> aio_pika.abc.AbstractQueue:
    """Declare the dead-letter exchange and queue, then the work queue, and return the work queue.

    Raises:
        TopologyError: A queue or exchange exists with other properties.
    """
    try:
        exchange = await channel.declare_exchange(
            settings.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True
        )
        dead = await channel.declare_queue(
            settings.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dead.bind(exchange)
        queue = await channel.declare_queue(settings.queue, durable=True, arguments=queue_arguments(settings, version))
    except ChannelPreconditionFailed as exc:
        said = exc.args[0] if exc.args else exc
        raise TopologyError(
            f"AMQP_QUEUE: the broker refused the queue topology of {settings.queue!r} ({said}). "
            f"This runner needs {settings.queue!r} as a durable quorum queue with x-delivery-limit="
            f"{settings.delivery_limit} and x-dead-letter-exchange={settings.dead_letter_exchange!r}, and "
            f"{settings.dead_letter_exchange!r} as a fanout exchange: move the messages and delete the old queue, "
            "or choose another AMQP_QUEUE"
        ) from None
    return queue
