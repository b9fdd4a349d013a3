"""Settlement of AMQP deliveries: one context manager turns how the handling ended into ack, dead-letter or requeue.

    how the block ends                                 what happens to the delivery
    ─────────────────────────────────────────────────  ──────────────────────────────────────────────────────────
    returns                                            ack (the handler confirmed the terminal event and replied)
    DecodeError, DocumentError, ConflictError,         republished to `<queue>.dlx` with `x-rejection-code` and
      Rejection                                          `x-rejection-reason` headers, then ack; an `invalid`
                                                         reply when the message asked for one
    Retry, CapacityError, any unexpected exception     wait AMQP_REQUEUE_DELAY_SECONDS, then reject(requeue=True):
                                                         the queue's delivery limit ends endless retries
    Release, IntakeClosedError, CancelledError         nothing: the broker requeues it when the channel closes
                                                         (a requeue now would bring it straight back to this
                                                         consumer, burning the delivery limit while it stops)

The ingress itself waits for room under the service's cap (`ExecutionService.start_when_room`) rather than raising
`CapacityError`: load elsewhere in the process must not use up a message's delivery limit.

Requeueing uses `basic.reject`, not `basic.nack`: since RabbitMQ 4.3 only a reject counts toward the quorum queue's
delivery limit (a nack is "consumer busy"), and every earlier version counts both.

A dead letter keeps the body without its secrets: each value under `secrets` becomes `***` (names kept, so an
operator sees which were sent) and the body is re-encoded as plain JSON; a body that cannot be read as JSON loses
its content (header `x-body-removed`), because nothing says where a secret may be in it. Stripping rather than
encrypting: a dead letter is for diagnosing why a message was refused, which never needs a secret's value, and
no key has to be managed. The producer still holds the original if it wants to resend.

Poison messages are republished rather than `reject(requeue=False)`-ed because broker dead-lettering copies the
original headers and adds only `x-death`: the reason would be lost. If the republish fails, the delivery is rejected
without requeue so the broker dead-letters it anyway: a poison message is never requeued forever.

Settling on a channel that died (connection lost, consumer timeout) cannot succeed and must not crash the handler:
the broker has already requeued the delivery and will redeliver it; the redelivery joins the same execution.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
import aio_pika.abc
import orjson
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError

from executor import DocumentError, Issue, describe_issues

from ._amqp_decode import DEFAULT_MAX_BYTES, DecodeError, without_secrets
from ._errors import ConsumerError
from ._service import CapacityError, ConflictError, ExecutionState, IntakeClosedError

logger = logging.getLogger("consumer.amqp")

REASON_HEADER = "x-rejection-reason"
CODE_HEADER = "x-rejection-code"
QUEUE_HEADER = "x-rejected-from"
STRIPPED_HEADER = "x-secrets-stripped"
REMOVED_HEADER = "x-body-removed"
MAX_REASON = 2000  # characters: the broker caps a frame's headers, and a log-friendly reason is short anyway
MAX_ISSUES = 20
_CHANNEL_GONE = (ChannelInvalidStateError, AMQPError, ConnectionError)
_PUBLISH_TIMEOUT = 10.0

Sleep = Callable[[float], Awaitable[None]]


class Rejection(ConsumerError):
    """The delivery can never succeed: dead-letter it.

    Args:
        code: Short machine-readable kind (`malformed`, `invalid-document`, `conflict`, ...).
        reason: One line for operators (the `x-rejection-reason` header).
        issues: Located problems, replied to a waiting producer.
        reply: What to reply instead of the `invalid` answer (the result of a run that did happen).
    """

    def __init__(
        self, code: str, reason: str, *, issues: Sequence[Issue] = (), reply: dict[str, Any] | None = None
    ) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.issues = tuple(issues)
        self.reply = reply


class Retry(ConsumerError):
    """Trouble that can pass: requeue the delivery after the configured delay."""


class Release(ConsumerError):
    """The runner is stopping: leave the delivery unsettled for the broker to requeue when the channel closes."""


class Delivery:
    """The delivery being settled; the handler records the execution id once it knows it."""

    def __init__(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.message = message
        self.execution_id: str | None = None


def verdict(exc: Exception) -> Rejection | Retry | Release:
    """What a failure of the handling means for the delivery."""
    if isinstance(exc, Rejection | Retry | Release):
        return exc
    if isinstance(exc, DecodeError):
        return Rejection("malformed", describe_issues(exc.issues, MAX_ISSUES), issues=exc.issues)
    if isinstance(exc, DocumentError):
        code = "unsupported-document" if exc.unsupported else "invalid-document"
        return Rejection(code, "workflow_yaml: " + describe_issues(exc.issues, MAX_ISSUES), issues=exc.issues)
    if isinstance(exc, ConflictError):
        return Rejection("conflict", str(exc), issues=(Issue(path="/execution_id", message=str(exc)),))
    if isinstance(exc, IntakeClosedError):
        return Release(str(exc))
    if isinstance(exc, CapacityError):
        return Retry(str(exc))
    logger.error("handling failed unexpectedly", exc_info=exc)
    return Retry(f"unexpected {type(exc).__name__}")


def require_confirmed(state: ExecutionState, *, accepting: bool) -> None:
    """Return only when the execution ended and its terminal event is confirmed; otherwise raise why not.

    Raises:
        Release: Interrupted by shutdown, or not confirmed while shutting down.
        Retry: The confirmation did not come (yet).
        Rejection: The sink refused the terminal event for good (`progress-refused`).
    """
    if state.interrupted:
        raise Release("interrupted by the runner's shutdown")
    if state.progress_confirmed:
        return
    error = state.report_error or "terminal event not confirmed"
    if state.progress_refused and state.result is not None:
        raise Rejection("progress-refused", error, reply=state.result.to_dict())
    if not accepting:
        raise Release(error)
    raise Retry(error)


def invalid_reply(execution_id: str | None, rejection: Rejection) -> dict[str, Any]:
    """The reply to a message that could not run: the CLI's `status: invalid` shape."""
    errors = [issue.to_dict() for issue in rejection.issues] or [{"path": "", "message": rejection.reason}]
    return {"execution_id": execution_id, "status": "invalid", "output": None, "error": None, "errors": errors}


class Settler:
    """Settles deliveries and publishes replies and dead letters (on a channel with publisher confirms).

    Args:
        channel: The publishing channel (confirms on).
        dead_letter_exchange: `<queue>.dlx`.
        queue: The consumed queue's name (recorded on dead letters).
        requeue_delay: Seconds to hold a delivery before requeueing it after transient trouble.
        sleep: Injectable for tests.
        on_reject: Called before a delivery naming an execution id is dead-lettered (reports it upstream).
        max_bytes: `AMQP_MAX_MESSAGE_BYTES`, for reading a body to strip its secrets.
    """

    def __init__(
        self,
        channel: aio_pika.abc.AbstractChannel,
        dead_letter_exchange: aio_pika.abc.AbstractExchange,
        *,
        queue: str,
        requeue_delay: float,
        sleep: Sleep = asyncio.sleep,
        on_reject: Callable[[Delivery, Rejection], Awaitable[None]] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self._on_reject = on_reject
        self._max_bytes = max_bytes
        self._channel = channel
        self._dead_letter_exchange = dead_letter_exchange
        self._queue = queue
        self._requeue_delay = requeue_delay
        self._sleep = sleep

    @asynccontextmanager
    async def settle(self, message: aio_pika.abc.AbstractIncomingMessage) -> AsyncIterator[Delivery]:
        """Settle `message` by how the block ends (see the module docstring)."""
        delivery = Delivery(message)
        try:
            yield delivery
        except Exception as exc:
            # CancelledError is not caught: a cancelled handler leaves the delivery to the broker.
            outcome = verdict(exc)
            if isinstance(outcome, Rejection):
                await self._reject(delivery, outcome)
            elif isinstance(outcome, Retry):
                await self._requeue(delivery, outcome)
            else:
                logger.info("execution %s: left for the broker to requeue: %s", delivery.execution_id, outcome)
        else:
            await _quietly(message.ack(), "ack")

    async def reply(self, message: aio_pika.abc.AbstractIncomingMessage, payload: dict[str, Any]) -> None:
        """Publish `payload` as JSON to the message's `reply_to` queue (nothing when it has none).

        Raises:
            Retry: The reply could not be published (the delivery is requeued and replied to again).
        """
        if not message.reply_to:
            return
        reply = aio_pika.Message(
            orjson.dumps(payload, default=str),
            content_type="application/json",
            correlation_id=message.correlation_id,
            message_id=message.correlation_id,
        )
        try:
            await publish(self._channel, self._channel.default_exchange, reply, message.reply_to)
        except (*_CHANNEL_GONE, TimeoutError) as exc:
            raise Retry(f"reply not published ({type(exc).__name__})") from exc

    async def _reject(self, delivery: Delivery, rejection: Rejection) -> None:
        message = delivery.message
        logger.warning(
            "execution %s: message %s rejected to %s (%s): %s",
            delivery.execution_id or "(none)",
            message.message_id or message.delivery_tag,
            self._dead_letter_exchange.name,
            rejection.code,
            rejection.reason[:MAX_REASON],
        )
        if self._on_reject is not None and delivery.execution_id:
            try:
                await self._on_reject(delivery, rejection)
            except Exception:
                # The dead letter below still carries the reason: a report that failed loses nothing.
                logger.exception("execution %s: rejection not reported", delivery.execution_id)
        try:
            await self.reply(message, rejection.reply or invalid_reply(delivery.execution_id, rejection))
            await publish(self._channel, self._dead_letter_exchange, self._dead_letter(message, rejection), self._queue)
        except (Retry, *_CHANNEL_GONE, TimeoutError) as exc:
            # The broker dead-letters a rejected delivery itself (without our reason): still never requeued forever.
            logger.warning("dead letter not republished (%s); rejecting to the broker's dead-lettering", exc)
            await _quietly(message.reject(requeue=False), "reject")
            return
        await _quietly(message.ack(), "ack")

    def _dead_letter(self, message: aio_pika.abc.AbstractIncomingMessage, rejection: Rejection) -> aio_pika.Message:
        headers = dict(message.headers or {})
        headers.update(
            {CODE_HEADER: rejection.code, REASON_HEADER: rejection.reason[:MAX_REASON], QUEUE_HEADER: self._queue}
        )
        body = without_secrets(message.body, message, max_bytes=self._max_bytes)
        if body is None:
            headers[REMOVED_HEADER] = "not readable as a JSON object, so it may hold secrets anywhere"
        else:
            headers[STRIPPED_HEADER] = True
        return aio_pika.Message(
            body or b"",
            headers=headers,
            content_type="application/json" if body is not None else message.content_type,
            content_encoding=None,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            reply_to=message.reply_to,
            timestamp=message.timestamp,
            type=message.type,
            app_id=message.app_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )

    async def _requeue(self, delivery: Delivery, retry: Retry) -> None:
        logger.warning(
            "execution %s: requeued in %gs: %s", delivery.execution_id or "(none)", self._requeue_delay, retry
        )
        await self._sleep(self._requeue_delay)
        await _quietly(delivery.message.reject(requeue=True), "requeue")


async def publish(
    channel: aio_pika.abc.AbstractChannel,
    exchange: aio_pika.abc.AbstractExchange,
    message: aio_pika.Message,
    routing_key: str,
) -> None:
    """Publish with confirms; if a reconnect is under way, once more after the robust channel is restored.

    A publish that fails on a lost channel may still have reached the broker: the retry can duplicate it, which
    replies, dead letters and bus events tolerate (consumers deduplicate by message id).
    """
    try:
        await exchange.publish(message, routing_key, timeout=_PUBLISH_TIMEOUT)
    except (ChannelInvalidStateError, ConnectionError):
        if not isinstance(channel, aio_pika.abc.AbstractRobustChannel):
            raise
        async with asyncio.timeout(_PUBLISH_TIMEOUT):
            await channel.ready()
        await exchange.publish(message, routing_key, timeout=_PUBLISH_TIMEOUT)


async def _quietly(settlement: Awaitable[None], what: str) -> None:
    """Run an ack/nack/reject; a dead channel means the broker redelivers, which is not an error here."""
    try:
        await settlement
    except _CHANNEL_GONE as exc:
        logger.info("%s not sent (%s): the broker redelivers the message", what, type(exc).__name__)
