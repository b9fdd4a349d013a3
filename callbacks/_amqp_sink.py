"""The AMQP sink: each event published to an exchange, routing key = event type, with publisher confirms.

Messages are structured-mode CloudEvents (`application/cloudevents+json`), persistent, `message_id` = event id so
consumers can deduplicate. A batch publishes the events of each execution one after the other (a nack or a lost
connection can then never let a later event of that execution through ahead of an earlier one) and different
executions concurrently. `mandatory` publishing makes an unroutable event (no queue bound) a failure that is
retried instead of the broker dropping it. Access refused and precondition failed (an exchange declared with
other properties) are refusals for good; every other broker or connection error is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import aio_pika
import aio_pika.abc
from aio_pika import exceptions as amqp_errors
from aiormq.exceptions import ChannelAccessRefused

from callbacks._errors import SinkRefusedError, SinkUnavailableError
from callbacks._event import CloudEvent
from callbacks._wire import STRUCTURED, json_event

_PERMANENT = (ChannelAccessRefused, amqp_errors.ChannelPreconditionFailed)
_TRANSIENT = (
    amqp_errors.AMQPError,
    amqp_errors.ChannelInvalidStateError,
    ConnectionError,
    OSError,
    TimeoutError,
)


class AmqpSink:
    """Publishes events to an AMQP exchange.

    Args:
        url: Broker URL, e.g. `amqp://guest:guest@127.0.0.1:5672/` (credentials are never logged by this sink).
        exchange: Exchange name.
        exchange_type: Type used when declaring the exchange.
        declare: Declare the exchange (durable) on connect; False only checks that it exists.
        mandatory: Treat unroutable events as failures (retried) rather than letting the broker drop them.
        timeout: Seconds to wait for connecting and for each confirm.
    """

    def __init__(
        self,
        url: str,
        exchange: str,
        *,
        exchange_type: str = "topic",
        declare: bool = True,
        mandatory: bool = True,
        timeout: float = 10.0,
    ) -> None:
        self._url = url
        self.exchange_name = exchange
        self._exchange_type = aio_pika.ExchangeType(exchange_type)
        self._declare = declare
        self._mandatory = mandatory
        self._timeout = timeout
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None

    def __repr__(self) -> str:
        return f"AmqpSink(exchange={self.exchange_name!r})"

    async def send(self, batch: Sequence[CloudEvent]) -> None:
        """Publishes the batch and waits for every confirm."""
        by_execution: dict[str, list[CloudEvent]] = {}
        for event in batch:
            by_execution.setdefault(event.executionid, []).append(event)
        try:
            exchange = await self._open()
            outcomes = await asyncio.gather(
                *(self._publish_in_order(exchange, events) for events in by_execution.values()),
                return_exceptions=True,
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
        except _PERMANENT as exc:
            await self._reset()
            raise SinkRefusedError(type(exc).__name__) from exc
        except _TRANSIENT as exc:
            await self._reset()
            raise SinkUnavailableError(type(exc).__name__) from exc

    async def _publish_in_order(self, exchange: aio_pika.abc.AbstractExchange, events: list[CloudEvent]) -> None:
        for event in events:
            message = aio_pika.Message(
                json_event(event),
                content_type=STRUCTURED,
                message_id=event.id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            await exchange.publish(message, routing_key=event.type, mandatory=self._mandatory, timeout=self._timeout)

    async def _open(self) -> aio_pika.abc.AbstractExchange:
        if self._exchange is not None:
            return self._exchange
        if self._connection is None:
            self._connection = await aio_pika.connect_robust(self._url, timeout=self._timeout)
        self._channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        if self._declare:
            self._exchange = await self._channel.declare_exchange(self.exchange_name, self._exchange_type, durable=True)
        else:
            self._exchange = await self._channel.get_exchange(self.exchange_name, ensure=True)
        return self._exchange

    async def _reset(self) -> None:
        """Drops the channel after a failure: the broker may have closed it, and the next send opens a new one."""
        channel, self._channel, self._exchange = self._channel, None, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(*_TRANSIENT):
                await channel.close()

    async def close(self) -> None:
        """Closes the channel and the connection."""
        await self._reset()
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await connection.close()
