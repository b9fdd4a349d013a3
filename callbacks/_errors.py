"""Exceptions of progress delivery.

    CallbackError
    ├── SinkError                 raised by a sink's `send`; library errors are mapped to these in each sink
    │   ├── SinkUnavailableError  may pass: retried with backoff (connection refused, timeouts, 5xx, 408, 429, ...)
    │   └── SinkRefusedError      refused for good: the refused events go to the dead-letter file
    ├── FlushTimeoutError         `Reporter.flush` gave up waiting (also a `TimeoutError`)
    ├── DeadLetteredError         `Reporter.flush`: the terminal event was refused for good and dead-lettered
    └── ReporterClosedError       the reporter stopped: no new events, no more confirmations

Messages carry status codes and counts, never payloads or credentials: they end up in logs.
"""

from __future__ import annotations


class CallbackError(Exception):
    """Root of every progress-delivery error."""


class SinkError(CallbackError):
    """A sink could not deliver a batch.

    Args:
        code: A short, log-safe status such as `UNAVAILABLE`, `HTTP 503` or `connection refused`.
    """

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class SinkUnavailableError(SinkError):
    """The sink cannot take the batch now; sending it again later may succeed.

    Args:
        code: Log-safe status.
        retry_after: Seconds the sink asked us to wait (HTTP `Retry-After`, gRPC pushback), if it said.
    """

    def __init__(self, code: str, *, retry_after: float | None = None) -> None:
        super().__init__(code)
        self.retry_after = retry_after


class SinkRefusedError(SinkError):
    """The sink refused the batch for good (bad request, forbidden, unimplemented): resending cannot help."""


class FlushTimeoutError(CallbackError, TimeoutError):
    """`flush` timed out before the execution's terminal event was confirmed."""

    def __init__(self, execution_id: str, timeout: float, pending: int) -> None:
        super().__init__(
            f"execution {execution_id}: terminal event not confirmed within {timeout:g}s ({pending} pending)"
        )
        self.execution_id = execution_id
        self.pending = pending


class DeadLetteredError(CallbackError):
    """The execution's terminal event was refused for good; it is in the dead-letter file, not at the sink."""

    def __init__(self, execution_id: str) -> None:
        super().__init__(f"execution {execution_id}: terminal event refused by the sink and dead-lettered")
        self.execution_id = execution_id


class ReporterClosedError(CallbackError):
    """The reporter is stopping or stopped."""
