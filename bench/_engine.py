"""What the `call:` benchmarks share: one run of a document through the executor, timed, events kept in memory."""

from __future__ import annotations

import time

from executor import ExecuteCommand, Executor, LifecycleEvent


class _Collect:
    def __init__(self) -> None:
        self.events: list[LifecycleEvent] = []

    async def publish(self, event: LifecycleEvent) -> None:
        self.events.append(event)


async def engine_rate(document: str, calls: int) -> float:
    """Calls per second of `document` run once with input `{ids: [0, …, calls - 1]}` (the run's own setup counted).

    Args:
        document: A whole document whose loop over `.ids` makes one call per id.
        calls: How many ids.
    """
    executor = Executor(listener=_Collect())
    executor.load(document)
    command = ExecuteCommand(execution_id="bench", workflow_yaml=document, input={"ids": list(range(calls))})
    try:
        started = time.perf_counter()
        result = await executor.run(command)
        elapsed = time.perf_counter() - started
    finally:
        await executor.aclose()
    assert result.status.value == "completed", result.error
    return calls / elapsed
