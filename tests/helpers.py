"""Small helpers shared by the tests: build a document, run it in-process, record its events, wait for a condition.

`MemorySink` and `eventually` are the only ones of their kind: a test that needs another sink behaviour adds a
switch here rather than a second sink.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import textwrap
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from callbacks import CloudEvent, SinkRefusedError, SinkUnavailableError
from executor import ExecuteCommand, ExecutionResult, Executor, LifecycleEvent

HEADER = "document: {dsl: '1.0.3', namespace: test, name: wf, version: '1.0.0'}\n"


def doc(body: str) -> str:
    """A complete document: the standard header plus `body` (dedented YAML)."""
    return HEADER + textwrap.dedent(body)


class Recorder:
    """A listener that keeps every lifecycle event."""

    def __init__(self) -> None:
        self.events: list[LifecycleEvent] = []

    async def publish(self, event: LifecycleEvent) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        """`workflow.started`, `task.completed:/do/0/x`, … in order."""
        out = []
        for e in self.events:
            kind = ".".join(e.type.split(".")[2:4])
            out.append(f"{kind}:{e.data['task']}" if "task" in e.data else kind)
        return out


class FakeSleep:
    """An injectable sleep that records what was asked and returns at once."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


async def run(
    body: str, data: Any = None, *, secrets: dict[str, Any] | None = None, sleep: Any = None
) -> tuple[ExecutionResult, Recorder]:
    """Run a document body in-process; returns the result and the recorded events."""
    recorder = Recorder()
    kwargs: dict[str, Any] = {"listener": recorder}
    if sleep is not None:
        kwargs["sleep"] = sleep
    command = ExecuteCommand(
        execution_id="test-1",
        workflow_yaml=doc(body),
        input={} if data is None else data,
        secrets=secrets or {},
    )
    return await Executor(**kwargs).run(command), recorder


async def eventually(check: Callable[[], object], within: float = 10.0, what: str = "") -> None:
    """Wait until `check()` is true (awaited when it returns an awaitable); fail naming `what` after `within` s."""
    deadline = time.monotonic() + within
    while True:
        outcome = check()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what or 'the condition'}")
        await asyncio.sleep(0.02)


class MemorySink:
    """A progress sink that keeps what it receives; it can be held shut, slowed down, or made to fail.

    Attributes:
        events: Every event received, in arrival order (`batches`: as the reporter grouped them).
        open: While cleared, every `send` waits for it (set at first).
        delay: Seconds each `send` takes; `jitter` adds a random part up to that many seconds.
        fail: Raised by every `send` while set.
        unavailable: The next that many sends fail as unavailable.
        refuse: Event ids whose batch is refused for good; `refuse_transiently`: refused as unavailable; `crash`:
            the sink raises a bug (`RuntimeError`).
    """

    def __init__(self, *, jitter: float = 0.0) -> None:
        self.events: list[CloudEvent] = []
        self.batches: list[list[CloudEvent]] = []
        self.open = asyncio.Event()
        self.open.set()
        self.delay = 0.0
        self.jitter = jitter
        self.fail: Exception | None = None
        self.unavailable = 0
        self.refuse: set[str] = set()
        self.refuse_transiently: set[str] = set()
        self.crash: set[str] = set()
        self.closed = False

    async def send(self, batch: Sequence[CloudEvent]) -> None:
        await self.open.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.jitter:
            await asyncio.sleep(random.uniform(0, self.jitter))
        self._check(batch)
        self.batches.append(list(batch))
        self.events.extend(batch)

    def _check(self, batch: Sequence[CloudEvent]) -> None:
        if self.fail is not None:
            raise self.fail
        if self.unavailable:
            self.unavailable -= 1
            raise SinkUnavailableError("UNAVAILABLE")
        ids = {event.id for event in batch}
        if ids & self.refuse:
            raise SinkRefusedError("INVALID_ARGUMENT")
        if ids & self.refuse_transiently:
            raise SinkUnavailableError("UNAVAILABLE")
        if ids & self.crash:
            raise RuntimeError("a bug in the sink")

    async def close(self) -> None:
        self.closed = True

    def of(self, execution_id: str) -> list[CloudEvent]:
        """Events of one execution, in arrival order."""
        return [event for event in self.events if event.executionid == execution_id]

    def kinds(self, execution_id: str) -> list[str]:
        """`workflow.started`, `task.completed`, … of one execution."""
        return [".".join(event.type.split(".")[2:4]) for event in self.of(execution_id)]

    def received(self, execution_id: str) -> list[int]:
        """The sequence numbers of one execution's events, in arrival order."""
        return [event.sequence for event in self.of(execution_id)]

    def terminal(self) -> list[CloudEvent]:
        """Every terminal event received."""
        return [event for event in self.events if event.terminal]
