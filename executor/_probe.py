"""Where an execution is while it evaluates: the hook a worker process's watchdog scoreboard listens on.

A jq evaluation (or a JSON Schema check) is synchronous and cannot be interrupted: the only thing that can stop a
runaway one is ending its process. For that, something outside the process must know, at any instant, whether an
evaluation is running, for which execution and task, since when, and which deadline covers it. The engine keeps
that knowledge in two context variables (one value per asyncio task, so concurrent executions on one loop never
see each other's) and calls the installed `Probe` around every evaluation:

    probe.enter(where, deadline)   ... evaluation ...   probe.leave()

With no probe installed (the CLI, tests, an in-process executor) the cost is one global read per evaluation.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Where:
    """The execution (by the token its supervisor gave it) and the JSON Pointer of the task now evaluating."""

    token: int
    pointer: str


class Probe(Protocol):
    """Told before and after each evaluation; must be cheap (it runs around every expression)."""

    def enter(self, where: Where, deadline: float) -> None: ...

    def leave(self) -> None: ...


NO_DEADLINE = float("inf")

CURRENT: contextvars.ContextVar[Where] = contextvars.ContextVar("evaluating_at", default=Where(0, "/"))  # noqa: B039 - frozen
"""Set by the engine when a task starts; fork branches inherit it through their asyncio context."""

DEADLINE: contextvars.ContextVar[float] = contextvars.ContextVar("deadline", default=NO_DEADLINE)
"""`time.monotonic()` at which the innermost enclosing timeout (task, workflow or command deadline) expires."""

_probe: Probe | None = None


def install(probe: Probe | None) -> None:
    """Make `probe` hear every evaluation of this process from now on (None: nobody listens)."""
    global _probe  # noqa: PLW0603 - one probe per process, set once at worker start-up
    _probe = probe


@contextmanager
def evaluating() -> Iterator[None]:
    """Tell the probe, if any, that an evaluation runs for the duration of the block."""
    probe = _probe
    if probe is None:
        yield
        return
    probe.enter(CURRENT.get(), DEADLINE.get())
    try:
        yield
    finally:
        probe.leave()


def probe_installed() -> Probe | None:
    """The installed probe (for the hot path, which calls enter/leave itself instead of a context manager)."""
    return _probe
