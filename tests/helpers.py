"""Small helpers shared by the tests: build a document, run it in-process, record its events."""

from __future__ import annotations

import textwrap
from typing import Any

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
