"""The one place the delivery retry policy is built (tenacity): which errors pass, how long to wait, when to stop.

"Retry until delivered": by default transient failures are retried without an attempt limit, the delay growing
exponentially with jitter up to `max_delay`; the reporter's shutdown grace period is what bounds the effort.
A `Retry-After` the sink sends replaces the computed delay, shortened to `max_delay` so a misbehaving server
cannot park delivery for hours. Only the exception types named in `is_transient` are retried; everything else,
`asyncio.CancelledError` above all, propagates at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_after_delay
from tenacity.stop import stop_base, stop_never
from tenacity.wait import wait_base

from callbacks._errors import SinkUnavailableError

logger = logging.getLogger("callbacks.delivery")

Sleep = Callable[[float], Awaitable[None]]
_TRANSIENT: tuple[type[Exception], ...] = (SinkUnavailableError, ConnectionError, TimeoutError)


def is_transient(exc: BaseException) -> bool:
    """True for failures that may pass: the sink said so, or the connection broke or timed out."""
    return isinstance(exc, _TRANSIENT)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How a failed delivery is retried.

    Attributes:
        initial_delay: Delay before the first retry, in seconds; doubles on each further retry.
        max_delay: Cap on any one delay (computed or asked for through Retry-After).
        jitter: Fraction of the delay drawn at random (0.5: somewhere between half and all of it), so many
            runners that lost the same sink do not come back in lockstep.
        max_attempts: Give up after this many tries (None: never); a batch given up on is dead-lettered.
        max_elapsed: Give up after this many seconds (None: never).
        sleep: Awaited between tries; tests inject a recorder so they do not wait.
    """

    initial_delay: float = 0.2
    max_delay: float = 30.0
    jitter: float = 0.5
    max_attempts: int | None = None
    max_elapsed: float | None = None
    sleep: Sleep = field(default=asyncio.sleep, repr=False, compare=False)

    def delay(self, retry_number: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry `retry_number` (1-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        # Cap the exponent too: 2**retry_number overflows a float after ~1000 retries of an endless outage.
        base = min(self.max_delay, self.initial_delay * 2.0 ** min(retry_number - 1, 64))
        return base * (1.0 - self.jitter * random.random())

    def stop(self) -> stop_base:
        """The tenacity stop condition."""
        condition: stop_base = stop_never
        if self.max_attempts is not None:
            condition = condition | stop_after_attempt(self.max_attempts)
        if self.max_elapsed is not None:
            condition = condition | stop_after_delay(self.max_elapsed)
        return condition


class _PolicyWait(wait_base):
    """Backoff from the policy, or the sink's Retry-After when it sent one."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        hint = exc.retry_after if isinstance(exc, SinkUnavailableError) else None
        return self._policy.delay(retry_state.attempt_number, hint)


def _before_sleep(describe: Callable[[], str], on_retry: Callable[[], None]) -> Callable[[RetryCallState], None]:
    def log(state: RetryCallState) -> None:
        on_retry()
        exc = state.outcome.exception() if state.outcome is not None else None
        # Class and log-safe code only: exception messages of libraries may quote payloads or headers.
        code = exc.code if isinstance(exc, SinkUnavailableError) else ""
        logger.warning(
            "progress delivery failed (%s %s), try %d; retrying in %.2fs: %s",
            type(exc).__name__,
            code,
            state.attempt_number,
            state.upcoming_sleep,
            describe(),
        )

    return log


async def deliver_with_retry(
    policy: RetryPolicy,
    send: Callable[[], Awaitable[None]],
    *,
    describe: Callable[[], str],
    on_retry: Callable[[], None],
) -> None:
    """Awaits `send()` until it succeeds, retrying transient failures under `policy`.

    Args:
        policy: Backoff, cap and stop condition.
        send: One delivery attempt.
        describe: Log-safe description of what is being sent (execution ids and sequences, never payloads).
        on_retry: Called once per retry, for counters.

    Raises:
        Exception: The last transient error once `policy` gives up, or the first non-transient one.
    """
    try:
        await send()  # most deliveries succeed at once: they need none of tenacity's bookkeeping
        return
    except Exception as exc:
        if not is_transient(exc):
            raise
        first: Exception | None = exc
    retrying = AsyncRetrying(
        sleep=policy.sleep,
        stop=policy.stop(),
        wait=_PolicyWait(policy),
        retry=retry_if_exception(is_transient),
        before_sleep=_before_sleep(describe, on_retry),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            if first is not None:  # tenacity counts the try made above as its first
                failed, first = first, None
                raise failed
            await send()
