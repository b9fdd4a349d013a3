"""`fork`: run branches concurrently; all outputs in declaration order, or with `compete` the first to finish."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._flow import EndWorkflow

if TYPE_CHECKING:
    from .._expr import Vars
    from .._model import Compiler, Task, TaskList
    from .._run import Run


@dataclass(frozen=True, slots=True)
class ForkSpec:
    branches: TaskList
    compete: bool


def compile(compiler: Compiler, definition: Mapping[str, Any], pointer: str) -> ForkSpec:
    """The branch tasks and the compete flag."""
    fork = definition["fork"]
    return ForkSpec(compiler.task_list(fork["branches"], f"{pointer}/fork/branches"), bool(fork.get("compete")))


async def run(rt: Run, task: Task, data: Any, variables: Vars) -> Any:
    """Each branch gets the fork's input; a branch's `then` is ignored (branches are not a sequence)."""
    spec: ForkSpec = task.spec
    scope = rt.child_scope(variables)
    coros = [rt.run_task(branch, data, scope) for branch in spec.branches.tasks]
    if spec.compete:
        return await _first_success(coros)
    return await _all(coros)


async def _all(coros: list[Any]) -> list[Any]:
    """Every branch's output in declaration order; the first failure cancels the rest and propagates as is."""
    running = [asyncio.ensure_future(c) for c in coros]
    try:
        results = await asyncio.gather(*running)
    except BaseException:
        for branch in running:
            branch.cancel()
        await asyncio.wait(running)
        raise
    return [output for output, _ in results]


async def _first_success(coros: list[Any]) -> Any:
    """The output of the first branch to complete; the others are cancelled. All failed: the first error.

    A branch that ends the whole workflow (`then: end`) wins too: its `EndWorkflow` propagates.
    """
    pending = {asyncio.ensure_future(c) for c in coros}
    first_error: BaseException | None = None
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                error = finished.exception()
                if error is None:
                    return finished.result()[0]
                if isinstance(error, EndWorkflow):
                    raise error  # a branch said `then: end`: the workflow ends, which is not a failure
                first_error = first_error or error
        assert first_error is not None
        raise first_error
    finally:
        for loser in pending:
            loser.cancel()
        if pending:
            await asyncio.wait(pending)
