"""The AMQP ingress: execute messages from a durable quorum queue, settled only once their outcome is certain.

Each delivery is decoded (`_amqp_decode`), started on the execution service as attempt `x-delivery-count + 1`
(held while the service is at its cap), and settled by one context manager (`_amqp_settle`): acked after the
terminal event is confirmed and the result replied to `reply_to`, dead-lettered with its reason when it can never
run, requeued after a delay when the trouble can pass. A redelivery of an execution this process still knows
joins it instead of running it twice.

The connection is robust: after a broker restart or a dropped connection it reconnects, re-declares the topology
and restores the consumer; deliveries of the dead channel are redelivered by the broker, and their handlers'
acks fail quietly. Prefetch (`AMQP_PREFETCH`) bounds the deliveries held, and so the executions running for this
ingress. The same connection carries the cross-process event bus (`_amqp_bus`).

Shutdown (`stop(grace)`): cancel the consumer, give in-flight deliveries up to `grace` seconds to finish and be
acked, then abandon the rest unsettled: closing the channel returns them to the queue.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import os
import socket
import uuid
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import aio_pika.abc
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError, ChannelPreconditionFailed

from executor import ExecuteCommand, Issue, Source, spec_error

from ._amqp_bus import EventBridge
from ._amqp_decode import DecodeError, decode, read_fields
from ._amqp_settle import Delivery, Rejection, Retry, Settler, require_confirmed
from ._amqp_submit import SubmitError, submit_via_amqp
from ._amqp_topology import TopologyError, broker_version, declare
from ._decode import usable_id
from ._errors import StartupError
from ._logging import EXECUTION_ID
from ._service import ExecutionService
from .config import Settings
from .payloads import ClaimError, PayloadError, PayloadStore, has_claims, offload_output, resolve_claims

__all__ = ["AmqpIngress", "DecodeError", "SubmitError", "decode", "submit_via_amqp"]

logger = logging.getLogger("consumer.amqp")

RECONNECT_INTERVAL = 2.0
CONNECT_TIMEOUT = 10.0
_BROKER_ERRORS = (AMQPError, ChannelInvalidStateError, ConnectionError, OSError, TimeoutError)


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class AmqpIngress:
    """Consumes `AMQP_QUEUE`; `start()` connects and consumes, `stop(grace)` drains and closes.

    Args:
        settings: Process settings (`settings.amqp`; `url` must be set).
        service: The execution service every delivery goes through.
    """

    name = "amqp"

    def __init__(self, settings: Settings, service: ExecutionService) -> None:
        self._settings = settings.amqp
        self._tenancy = settings.isolation.tenancy
        self._service = service
        self._store = PayloadStore.from_settings(settings.payloads)
        self.instance = f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self._state = _State.NEW
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._queue: aio_pika.abc.AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._settler: Settler | None = None
        self._bridge: EventBridge | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._closing_intake: asyncio.Task[None] | None = None

    @property
    def connection_name(self) -> str:
        """The name this process's connection shows in the broker (`rabbitmqctl list_connections`)."""
        return f"workflow-runner {self._settings.queue} {self.instance}"

    @property
    def in_flight(self) -> int:
        """Deliveries being handled (not settled yet)."""
        return len(self._handlers)

    async def start(self) -> None:
        """Connect, declare the topology, start the event bridge, and consume.

        Raises:
            StartupError: No broker URL, the broker is unreachable, or it refused the topology.
        """
        if self._state is not _State.NEW:
            raise StartupError("an AmqpIngress starts once")
        self._connection = await self._connect()
        try:
            await self._open(self._connection)
        except BaseException:
            await self._connection.close()
            raise
        self._connection.reconnect_callbacks.add(self._on_reconnect)
        self._service.add_intake_listener(self._on_intake_closed)
        self._state = _State.RUNNING
        logger.info("AMQP ingress consuming %s (prefetch %d)", self._settings.queue, self._settings.prefetch)

    async def stop(self, grace: float) -> None:
        """Stop consuming, let in-flight deliveries finish within `grace`, leave the rest queued; idempotent."""
        if self._state is not _State.RUNNING:
            self._state = _State.STOPPED
            return
        self._state = _State.STOPPING
        await self._stop_consuming()
        await self._drain(grace)
        if self._bridge is not None:
            await self._bridge.stop()
        if self._connection is not None:
            # Closing the channel returns every unsettled delivery to the queue.
            await self._connection.close()
        self._state = _State.STOPPED

    async def _connect(self) -> aio_pika.abc.AbstractRobustConnection:
        url = self._settings.url
        if url is None:
            raise StartupError("AMQP_URL: required by the amqp ingress")
        try:
            return await aio_pika.connect_robust(
                url,
                client_properties={"connection_name": self.connection_name},
                reconnect_interval=RECONNECT_INTERVAL,
                timeout=CONNECT_TIMEOUT,
            )
        except _BROKER_ERRORS as exc:
            where = urlsplit(url)  # host and port only: the URL carries the password
            broker = f"{where.hostname}:{where.port or 5672}"
            raise StartupError(f"AMQP_URL: cannot connect to the broker at {broker} ({type(exc).__name__})") from None

    async def _open(self, connection: aio_pika.abc.AbstractRobustConnection) -> None:
        consuming = await connection.channel()
        await consuming.set_qos(prefetch_count=self._settings.prefetch)
        version = broker_version(dict((await consuming.get_underlay_channel()).connection.server_properties))
        try:
            # Declared on the consuming channel, so the robust channel re-declares it before restoring the consumer.
            self._queue = await declare(consuming, self._settings, version)
        except TopologyError as exc:
            raise StartupError(str(exc)) from None
        publishing = await connection.channel(publisher_confirms=True)
        dead_letters = await publishing.get_exchange(self._settings.dead_letter_exchange, ensure=False)
        self._settler = Settler(
            publishing,
            dead_letters,
            queue=self._settings.queue,
            requeue_delay=self._settings.requeue_delay,
            on_reject=self._report_rejection,
            max_bytes=self._settings.max_message_bytes,
        )
        self._bridge = await self._start_bridge(connection)
        self._consumer_tag = await self._queue.consume(self._on_message)

    async def _start_bridge(self, connection: aio_pika.abc.AbstractRobustConnection) -> EventBridge:
        bridge = EventBridge(connection, self._settings.events_exchange, self._service.executor.bus, self.instance)
        try:
            await bridge.start()
        except ChannelPreconditionFailed as exc:
            name = self._settings.events_exchange
            raise StartupError(
                f"AMQP_EVENTS_EXCHANGE: {name!r} exists and is not a durable topic exchange ({exc})"
            ) from None
        return bridge

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        # Handled in a task of our own: aiormq cancels its delivery tasks when the channel closes, and a handler
        # must outlive a reconnect (its execution goes on; the redelivery joins it).
        task = asyncio.create_task(self._handle(message), name=f"amqp-delivery-{message.delivery_tag}")
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _handle(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        assert self._settler is not None, "started"
        async with self._settler.settle(message) as delivery:
            command = await self._decode(delivery)
            # At the cap the delivery waits, held: a requeue would burn the delivery limit on a refusal that
            # says nothing about the message (the broker's consumer timeout still bounds the wait).
            execution, duplicate = await self._service.start_when_room(command)
            if duplicate:
                logger.info("redelivery joins execution %s (attempt %d)", command.execution_id, command.attempt)
            state = await execution.wait()
            require_confirmed(state, accepting=self._service.accepting)
            assert state.result is not None, "a confirmed execution has a result"
            if state.result.limit is not None:
                # Reported as faulted already; a redelivery would only hit the same limit again.
                error = state.result.error or {}
                where = f"{state.result.limit} at {error.get('instance', '/')}: {error.get('detail', '')}"
                raise Rejection(
                    "limit-exceeded", f"execution {command.execution_id}: {where}", reply=state.result.to_dict()
                )
            if message.reply_to:  # no one to read it: the output is neither encoded nor stored for a reply
                await self._settler.reply(message, await self._reply(state.result.to_dict()))

    async def _reply(self, result: dict[str, Any]) -> dict[str, Any]:
        """The reply body: an output above `PAYLOAD_OFFLOAD_BYTES` travels as `output_ref`."""
        try:
            return await offload_output(result, self._store)
        except PayloadError as exc:
            raise Retry(f"reply not stored: {exc}") from None

    async def _report_rejection(self, delivery: Delivery, rejection: Rejection) -> None:
        """Tell the control plane (a `workflow.faulted` event) why the execution it named will not run."""
        assert delivery.execution_id is not None, "only deliveries naming an execution are reported"
        if rejection.code in ("conflict", "limit-exceeded", "progress-refused"):
            # conflict: the id belongs to another execution, whose own events must not be contradicted;
            # limit-exceeded, progress-refused: the execution ran and reported its own terminal event.
            return
        count = (delivery.message.headers or {}).get("x-delivery-count")
        attempt = count + 1 if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else 1
        kind = "validation" if rejection.code in {"invalid-document", "unsupported-document"} else "configuration"
        error = spec_error(kind, f"Message rejected ({rejection.code})", status=400, detail=rejection.reason)
        await self._service.report_rejected(
            execution_id=delivery.execution_id, source=Source.AMQP, attempt=attempt, error=error
        )

    async def _decode(self, delivery: Delivery) -> ExecuteCommand:
        message = delivery.message
        try:
            fields = read_fields(message.body, message, max_bytes=self._settings.max_message_bytes)
            if has_claims(fields):
                fields = await self._resolve(fields, message.message_id)
            command = decode(message.body, message, max_bytes=self._settings.max_message_bytes, fields=fields)
            command = dataclasses.replace(command, tenant=self._tenant(command))
        except DecodeError as exc:
            delivery.execution_id = exc.execution_id
            self._service.metrics.rejected.labels("amqp", "invalid").inc()
            raise
        delivery.execution_id = command.execution_id
        EXECUTION_ID.set(command.execution_id)
        return command

    async def _resolve(self, fields: dict[str, Any], message_id: str | None) -> dict[str, Any]:
        """The command's `workflow_yaml_ref` / `input_ref` read from the payload store (here, in the supervisor,
        so worker processes never talk to the store)."""
        try:
            return await resolve_claims(fields, self._store)
        except ClaimError as exc:
            named = fields.get("execution_id", message_id)
            raise DecodeError([Issue(path=exc.path, message=exc.message)], usable_id(named)) from None
        except PayloadError as exc:
            raise Retry(f"payload store: {exc}") from None

    def _tenant(self, command: ExecuteCommand) -> str:
        """The producer's tenant (`TENANT_METADATA_KEY` in the message metadata); see `consumer._tenants`."""
        return self._tenancy.from_metadata(command.metadata, command.execution_id)

    def _on_intake_closed(self) -> None:
        # Called synchronously by the service when shutdown begins: stop pulling work at once.
        self._closing_intake = asyncio.get_running_loop().create_task(self._stop_consuming())

    async def _stop_consuming(self) -> None:
        tag, self._consumer_tag = self._consumer_tag, None
        if tag is None or self._queue is None:
            return
        try:
            await self._queue.cancel(tag)
        except _BROKER_ERRORS as exc:
            # The robust queue has forgotten the consumer already, so a reconnect will not restore it.
            logger.info("consumer cancel not confirmed (%s)", type(exc).__name__)

    async def _drain(self, grace: float) -> None:
        if self._closing_intake is not None:
            await self._closing_intake
        if not self._handlers:
            return
        _, pending = await asyncio.wait(set(self._handlers), timeout=max(grace, 0.0))
        for task in pending:
            task.cancel()
        if pending:
            logger.warning("%d deliveries left unsettled at shutdown; the broker requeues them", len(pending))
            await asyncio.gather(*pending, return_exceptions=True)

    def _on_reconnect(self, *_: Any) -> None:
        logger.warning("AMQP connection re-established; topology and consumer restored")
