"""Flow signals shared by the engine and the task handlers: `end`, a chosen directive, and deadlines."""

from __future__ import annotations

import asyncio
from typing import Any

from ._errors import WorkflowTimeoutError


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
    """`asyncio.timeout` that raises the spec's timeout error (408) instead of the builtin."""

    __slots__ = ("_cm", "_detail", "_seconds", "_what")

    def __init__(self, seconds: float, what: str, *, detail: str | None = None) -> None:
        self._seconds = seconds
        self._what = what
        self._detail = detail  # instead of "<what> exceeded <seconds>s" (a caller's deadline names itself)
        self._cm = asyncio.timeout(seconds)

    async def __aenter__(self) -> None:
        await self._cm.__aenter__()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        try:
            await self._cm.__aexit__(exc_type, exc, tb)
        except TimeoutError:
            detail = self._detail or f"{self._what} exceeded {self._seconds:g}s"
            raise WorkflowTimeoutError("Timeout", detail=detail) from None
        return False
