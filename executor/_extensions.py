"""Extensions (`use.extensions`): task lists run before and after the tasks an extension applies to.

Where the spec is silent (docs/dsl-extensions.md says the same for authors):

- An extension applies to a task whose kind it `extend`s (`composite` is `do` and `fork`, `all` every kind) and
  whose `when` holds. `when` is evaluated on the task's transformed input, after the task started and its
  `input.from` ran; a task skipped by its `if` is not extended.
- `$task`, in `when` and in every task of the extension's lists, describes the extended task: its descriptor
  (`name`, `reference`, `definition`, `input`, `output`, `startedAt`) with its definition's properties beside them
  (`$task.call`, `$task.with`, as the spec's examples write), the descriptor winning on a clash.
- Applying extensions run in declaration order: each `before` list gets the transformed input; then the task
  runs; then each `after` list gets the task's raw output (before `output.as`). The lists are transparent — their
  outputs are dropped — unless one of their tasks directs `then: exit`: the list's output at that point becomes
  the task's raw output. An `exit` in a `before` list also skips the task itself and the `before` lists of later
  extensions; the `after` lists of the extensions reached still run.
- Tasks run by an extension are never extended themselves (no extension recursion); `then: end` in them ends the
  workflow, and their errors fault the extended task (catchable by an enclosing `try`) with `instance` pointing
  into `/use/extensions/…`. They publish their own lifecycle events, between the extended task's `started` and
  its `completed` / `faulted`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from ._errors import WorkflowError
from ._expr import truthy
from ._flow import Directed, EndWorkflow

if TYPE_CHECKING:
    from ._expr import Vars
    from ._model import Extension, Task, TaskList
    from ._run import Run

# The extended task's `$task` while an extension's task list runs (None outside them): it is what the list's tasks
# see as `$task`, and it marks them as extension tasks, which are not extended again.
_EXTENDED: ContextVar[Mapping[str, Any] | None] = ContextVar("extended_task", default=None)
# Tasks of one extension list run between two turns given to the event loop (as the engine's task lists do).
_YIELD_EVERY = 32


def task_argument(own: dict[str, Any]) -> Any:
    """The `$task` a task sees: its own descriptor, or inside an extension's lists the extended task's."""
    extended = _EXTENDED.get()
    return own if extended is None else extended


async def run_extended(
    rt: Run, task: Task, data: Any, variables: dict[str, Any], body: Callable[[], Awaitable[Any]]
) -> Any:
    """Run `body` (the task's handler) wrapped in the lists of every extension that applies to the task.

    `variables` are the task's own; `$context` in them is refreshed after the `before` lists (which may export).
    """
    if not rt.workflow.extensions or _EXTENDED.get() is not None:
        return await body()
    described = {**task.definition, **variables["task"]}
    applying = [ext for ext in rt.workflow.extensions if _applies(ext, task, data, variables, described)]
    if not applying:
        return await body()
    scope = rt.child_scope(variables)
    reached, result, skipped = await _before(rt, applying, data, scope, described)
    if not skipped:
        variables["context"] = rt.context
        result = await body()
    output = await _after(rt, reached, result.output if isinstance(result, Directed) else result, scope, described)
    return Directed(output, result.then) if isinstance(result, Directed) else output


def _applies(ext: Extension, task: Task, data: Any, variables: Vars, described: Mapping[str, Any]) -> bool:
    if not ext.extends(task.kind):
        return False
    if ext.when is None:
        return True
    try:
        return truthy(ext.when(data, {**variables, "task": described}))
    except WorkflowError as exc:
        raise exc.at(f"{ext.pointer}/when") from None


async def _before(
    rt: Run, applying: list[Extension], data: Any, scope: Vars, described: Mapping[str, Any]
) -> tuple[list[Extension], Any, bool]:
    """Run the `before` lists in order: the extensions reached, and the output of one that said `exit` (if any)."""
    for count, ext in enumerate(applying, 1):
        if ext.before is not None:
            output, exited = await _walk(rt, ext.before, data, scope, described)
            if exited:
                return applying[:count], output, True
    return applying, None, False


async def _after(rt: Run, reached: list[Extension], output: Any, scope: Vars, described: Mapping[str, Any]) -> Any:
    for ext in reached:
        if ext.after is not None:
            replaced, exited = await _walk(rt, ext.after, output, scope, {**described, "output": output})
            if exited:
                output = replaced
    return output


async def _walk(rt: Run, tasks: TaskList, data: Any, scope: Vars, described: Mapping[str, Any]) -> tuple[Any, bool]:
    """Run an extension's list, following flow directives; returns its output and whether a task said `exit`."""
    token = _EXTENDED.set(described)
    try:
        index = steps = 0
        while index < len(tasks.tasks):
            steps += 1
            if steps % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # a `then` loop of tasks that never suspend still lets a timeout land
            data, directive = await rt.run_task(tasks.tasks[index], data, scope)
            if directive is None or directive == "continue":
                index += 1
            elif directive == "exit":
                return data, True
            elif directive == "end":
                raise EndWorkflow(data)
            else:
                index = tasks.index[directive]
        return data, False
    finally:
        _EXTENDED.reset(token)
