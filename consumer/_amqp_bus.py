"""The cross-process event bus: a bridge between this process's `executor.EventBus` and an AMQP topic exchange.

    emit / PublishEvent ─► local EventBus ─► bridge ─► topic exchange AMQP_EVENTS_EXCHANGE
                                                          (routing key `<tenant>.<type>`, header x-tenant)
                                                            │
    listen ◄─ local EventBus ◄─ bridge ◄─ <exchange>.<instance> (exclusive, auto-delete, bound to "#") ◄─┘

Tenants stay apart across runners too: the tenant travels in the `x-tenant` header (and leads the routing key, so
a consumer of the exchange can bind to one tenant), and an arriving event is delivered to that tenant's `listen`
tasks only; a message without the header belongs to the default tenant. Every event published on the local bus
is forwarded once, with an `x-origin` header naming this process. Events
arriving from the exchange are injected into the local bus unless they come from this process; their ids are
remembered so that the forwarder, which sees them on the local bus like any other event, does not send them back
out (two runners would otherwise bounce an event between them forever). Events without a string `id` or `type`
are not CloudEvents and are dropped with a log line.

Delivery is at most once and only to processes running when the event is published, which is what `listen`
needs: it waits for events from the moment it starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

import aio_pika
import aio_pika.abc
import orjson
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError

from executor import DEFAULT_TENANT, EventBus

from ._amqp_settle import publish
from ._tenants import TENANT_PATTERN

logger = logging.getLogger("consumer.amqp.bus")

ORIGIN_HEADER = "x-origin"
TENANT_HEADER = "x-tenant"
CONTENT_TYPE = "application/cloudevents+json"
REMEMBERED = 10_000
_MAX_ROUTING_KEY = 255
_PUBLISH_ERRORS = (ChannelInvalidStateError, AMQPError, ConnectionError, TimeoutError)


class EventBridge:
    """Forwards local bus events to the exchange and injects remote ones into the local bus.

    Args:
        connection: A robust connection (the bridge opens its own channel on it).
        exchange: The topic exchange's name.
        bus: This process's event bus (`Executor.bus`).
        instance: This process's unique name (queue name suffix and `x-origin`).
    """

    def __init__(
        self, connection: aio_pika.abc.AbstractRobustConnection, exchange: str, bus: EventBus, instance: str
    ) -> None:
        self._connection = connection
        self._exchange_name = exchange
        self._bus = bus
        self._instance = instance
        self._injected: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._local: asyncio.Queue[tuple[str, dict[str, Any]]] | None = None
        self._forwarder: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Declare the exchange and this process's queue, then forward and inject until `stop`."""
        self._channel = channel = await self._connection.channel(publisher_confirms=True)
        self._exchange = await channel.declare_exchange(self._exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(f"{self._exchange_name}.{self._instance}", exclusive=True, auto_delete=True)
        await queue.bind(self._exchange, routing_key="#")
        await queue.consume(self._inject, no_ack=True)
        self._local = self._bus.subscribe_all()
        self._forwarder = asyncio.create_task(self._forward(self._local), name="amqp-event-bridge")

    async def stop(self) -> None:
        """Stop forwarding (the channel closes with the connection); idempotent."""
        if self._local is not None:
            self._bus.unsubscribe_all(self._local)
            self._local = None
        if self._forwarder is not None:
            forwarder, self._forwarder = self._forwarder, None
            forwarder.cancel()
            # `wait`, not `await forwarder`: the latter raises the forwarder's CancelledError, and suppressing
            # that would swallow a cancellation of `stop()` itself as well.
            await asyncio.wait([forwarder])

    async def _forward(self, local: asyncio.Queue[tuple[str, dict[str, Any]]]) -> None:
        while True:
            tenant, event = await local.get()
            if self._was_injected(tenant, event.get("id")):
                continue  # came from another process: it is already on the exchange
            try:
                await self._publish(tenant, event)
            except Exception:
                # One bad event must not end forwarding for the life of the process.
                logger.exception("event %r not forwarded", event.get("id"))

    async def _publish(self, tenant: str, event: dict[str, Any]) -> None:
        kind = event.get("type")
        routing_key = f"{tenant}.{kind}"
        if not isinstance(kind, str) or not kind or len(routing_key.encode()) > _MAX_ROUTING_KEY:
            logger.warning("event %r not forwarded: its type is not a usable routing key", event.get("id"))
            return
        message = aio_pika.Message(
            orjson.dumps(event, default=str),
            content_type=CONTENT_TYPE,
            message_id=str(event.get("id")),
            headers={ORIGIN_HEADER: self._instance, TENANT_HEADER: tenant},
        )
        assert self._exchange is not None, "started"
        assert self._channel is not None, "started"
        try:
            await publish(self._channel, self._exchange, message, routing_key)
        except _PUBLISH_ERRORS as exc:
            logger.warning("event %r not forwarded to other runners (%s)", event.get("id"), type(exc).__name__)

    async def _inject(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        headers = message.headers or {}
        if headers.get(ORIGIN_HEADER) == self._instance:
            return
        tenant = headers.get(TENANT_HEADER, DEFAULT_TENANT)
        if not isinstance(tenant, str) or not TENANT_PATTERN.match(tenant):
            logger.warning("message %r on %s names no valid tenant; dropped", message.message_id, self._exchange_name)
            return
        event = _cloudevent(message.body)
        if event is None:
            logger.warning("message %r on %s is not a CloudEvent; dropped", message.message_id, self._exchange_name)
            return
        self._remember(tenant, event["id"])
        await self._bus.publish(event, tenant)

    def _was_injected(self, tenant: str, event_id: Any) -> bool:
        # Keyed by tenant too: a document chooses its events' ids, so ids alone could collide across tenants.
        key = (tenant, event_id)
        if not isinstance(event_id, str) or key not in self._injected:
            return False
        del self._injected[key]
        return True

    def _remember(self, tenant: str, event_id: str) -> None:
        self._injected[(tenant, event_id)] = None
        while len(self._injected) > REMEMBERED:
            self._injected.popitem(last=False)


def _cloudevent(body: bytes) -> dict[str, Any] | None:
    """The structured-mode event in `body`, or None when it is not one."""
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str):
        return None
    return event
