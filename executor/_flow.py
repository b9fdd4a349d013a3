"""Flow signals shared by the engine and the task handlers: `end`, a chosen directive, and deadlines."""

from __future__ import annotations

import asyncio
import contextvars
import time
from typing import Any

from ._errors import WorkflowTimeoutError
from ._probe import DEADLINE


class EndWorkflow(Exception):
    """Raised by `then: end`: the workflow completes now with `output`."""

    def __init__(self, output: Any) -> None:
        super().__init__("end")
        self.output = output


class Directed:
    """A handler result that also chooses the flow directive (a `switch` case's `then`)."""

    __slots__ = ("output", "then")

    def __init__(self, output: Any, then: str | None) -> None:
        self.output = output
        self.then = then


class Deadline:
    """`asyncio.timeout` that raises the spec's timeout error (408) instead of the builtin.

    It also publishes its expiry (`_probe.DEADLINE`, the innermost one wins) so that a worker's watchdog can end an
    evaluation that is still running when it passes, and it checks the clock on the way out: a block whose last
    step was a long synchronous evaluation never gave the loop a chance to fire the timer, yet it did time out.
    """

    __slots__ = ("_cm", "_detail", "_seconds", "_token", "_what")

    def __init__(self, seconds: float, what: str, *, detail: str | None = None) -> None:
        self._seconds = seconds
        self._what = what
        self._detail = detail  # instead of "<what> exceeded <seconds>s" (a caller's deadline names itself)
        self._cm = asyncio.timeout(seconds)
        self._token: contextvars.Token[float] | None = None

    async def __aenter__(self) -> None:
        await self._cm.__aenter__()
        expiry = time.monotonic() + self._seconds
        self._token = DEADLINE.set(min(expiry, DEADLINE.get()))

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if self._token is not None:
            DEADLINE.reset(self._token)
        expired = self._cm.expired() or (exc_type is None and self._overdue())
        try:
            await self._cm.__aexit__(exc_type, exc, tb)
        except TimeoutError:
            raise self.error() from None
        if expired and exc_type is None:
            raise self.error()
        return False

    def _overdue(self) -> bool:
        when = self._cm.when()
        return when is not None and asyncio.get_running_loop().time() >= when

    def error(self) -> WorkflowTimeoutError:
        """The spec's timeout error for this deadline."""
        return WorkflowTimeoutError("Timeout", detail=self._detail or f"{self._what} exceeded {self._seconds:g}s")
