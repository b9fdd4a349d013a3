"""`workflow-runner submit --amqp`: publish one execute message and wait for the runner's reply.

The reply comes through an exclusive, auto-deleted queue of this client, named in `reply_to`; the runner publishes
the result there once the execution's terminal event is confirmed (or an `invalid` answer when the message cannot
run). The message is published `mandatory` with publisher confirms, so a queue that does not exist is an error
here rather than a message the broker drops.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from typing import Any

import aio_pika
import aio_pika.abc
import orjson
from aio_pika.exceptions import DeliveryError

from ._amqp_decode import body_fields
from ._errors import ConsumerError
from .config import DEFAULT_AMQP_QUEUE
from .payloads import PayloadStore, fetch_output, offload_command


class SubmitError(ConsumerError, RuntimeError):
    """The message could not be handed to the runner's queue."""


async def submit_via_amqp(
    url: str,
    workflow_yaml: str,
    *,
    queue: str = DEFAULT_AMQP_QUEUE,
    execution_id: str | None = None,
    input: Any = None,
    secrets: Mapping[str, Any] | None = None,
    metadata: Mapping[str, str] | None = None,
    timeout: float | None = None,  # noqa: ASYNC109 - a deadline on the whole round trip is the caller's contract
    store: PayloadStore | None = None,
) -> dict[str, Any]:
    """Publish a document to a runner's queue and wait for the result.

    Args:
        url: Broker URL (`AMQP_URL`).
        workflow_yaml: The document.
        queue: The runner's queue (`AMQP_QUEUE`).
        execution_id: The idempotency key (default: a new UUID).
        input: Workflow input (default `{}`).
        secrets: Exposed as `$secrets`.
        metadata: String map carried by every event.
        timeout: Seconds to wait for the reply (None: no limit).
        store: The runner's payload store: a document or input above `PAYLOAD_OFFLOAD_BYTES` is uploaded and
            sent as a reference, and an `output_ref` in the reply is downloaded into `output`.

    Returns:
        `{"execution_id", "status", "output", "error"}`, or `status: "invalid"` with `"errors"` when the runner
        refused the message.

    Raises:
        SubmitError: The queue does not exist or the broker refused the message.
        TimeoutError: No reply within `timeout`.
    """
    execution_id = execution_id or str(uuid.uuid4())
    fields = body_fields(
        execution_id=execution_id, workflow_yaml=workflow_yaml, input=input, secrets=secrets, metadata=metadata
    )
    if store is not None:
        fields = await offload_command(fields, store)
    body = orjson.dumps(fields)
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        replies = await channel.declare_queue(exclusive=True, auto_delete=True)
        correlation_id = uuid.uuid4().hex
        await _publish(
            channel, queue, body, execution_id=execution_id, correlation_id=correlation_id, reply_to=replies.name
        )
        async with asyncio.timeout(timeout):
            reply = await _await_reply(replies, correlation_id)
    return reply if store is None else await fetch_output(reply, store)


async def _publish(
    channel: aio_pika.abc.AbstractChannel,
    queue: str,
    body: bytes,
    *,
    execution_id: str,
    correlation_id: str,
    reply_to: str,
) -> None:
    message = aio_pika.Message(
        body,
        content_type="application/json",
        message_id=execution_id,
        correlation_id=correlation_id,
        reply_to=reply_to,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
    try:
        await channel.default_exchange.publish(message, queue, mandatory=True)
    except DeliveryError as exc:
        raise SubmitError(f"queue {queue!r} did not take the message (does it exist?)") from exc


async def _await_reply(replies: aio_pika.abc.AbstractQueue, correlation_id: str) -> dict[str, Any]:
    async with replies.iterator(no_ack=True) as messages:
        async for message in messages:
            if message.correlation_id == correlation_id:
                reply: dict[str, Any] = orjson.loads(message.body)
                return reply
    raise SubmitError("the reply queue closed before the reply came")
