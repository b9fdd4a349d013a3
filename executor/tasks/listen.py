"""`listen`: wait for events on the executor's bus (`one`, `any` with `until`, `all`), then output them in order.

Which events a listen task sees: every event published on the bus since its workflow run started — so an `emit`
in a concurrent `fork` branch is seen whichever branch runs first — except the events that an earlier, completed
`listen` task of the same run consumed. Concurrent listen tasks each see every event. Matching rules:
`executor._events_match`.

- `one`: the first matching event. `any`: the first event matching any filter (an empty list matches every
  event); with `until`, events keep being consumed until the condition holds — an expression is evaluated after
  each consumed event with `.` bound to the output so far; a nested strategy is fed every event first, and the
  events it consumes are not part of the output. `all`: one event per filter, in arrival order.
- `read`: `data` (default) the event's data, `envelope` the whole CloudEvent, `raw` the data as text (JSON text
  for structured data; events on this bus carry no wire bytes).
- `foreach`: each consumed event, as it arrives, runs `foreach.do` with the event as input and `$<item>` /
  `$<at>` bound; `foreach.output.as` shapes the item's output, `foreach.export.as` replaces `$context`.

While at least one listen task of a run waits, the run reports `waiting` with a
`io.serverlessworkflow.workflow.status-changed.v1` event, and `running` once none waits. A listen task waits for
as long as it takes: bound it with a task `timeout`.
"""

from __future__ import annotations

import asyncio
import base64
import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from .._clock import now_iso
from .._events_match import Consumer, MatchContext, Strategy, compile_strategy
from .._expr import compile_expression, truthy

if TYPE_CHECKING:
    from .._expr import Evaluator, Vars
    from .._model import Compiler, Schema, Task, TaskList
    from .._run import Run

STATUS_CHANGED = "io.serverlessworkflow.workflow.status-changed.v1"

# Per run: keys of events consumed by completed listen tasks, and how many listen tasks wait right now.
_consumed: weakref.WeakKeyDictionary[Run, set[Any]] = weakref.WeakKeyDictionary()
_waiting: weakref.WeakKeyDictionary[Run, int] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class Iterator:
    """A compiled `foreach` (subscription iterator)."""

    item: str
    at: str
    body: TaskList | None
    output_as: Evaluator | None
    output_schema: Schema | None
    export_as: Evaluator | None
    export_schema: Schema | None


@dataclass(frozen=True, slots=True)
class ListenSpec:
    """A compiled `listen` task."""

    strategy: Strategy
    read: str
    foreach: Iterator | None


def compile(compiler: Compiler, definition: Mapping[str, Any], pointer: str) -> ListenSpec:
    """The consumption strategy, the read mode and the iterator."""
    listen = definition["listen"]
    foreach = definition.get("foreach")
    return ListenSpec(
        strategy=compile_strategy(listen["to"]),
        read=listen.get("read", "data"),
        foreach=None if foreach is None else compile_iterator(compiler, foreach, f"{pointer}/foreach"),
    )


def compile_iterator(compiler: Compiler, spec: Mapping[str, Any], pointer: str) -> Iterator:
    """A `foreach` (also a `call: asyncapi` subscription's) at `pointer`."""
    output, export = spec.get("output") or {}, spec.get("export") or {}
    return Iterator(
        item=spec.get("item", "item"),
        at=spec.get("at", "index"),
        body=compiler.task_list(spec["do"], f"{pointer}/do") if spec.get("do") else None,
        output_as=None if output.get("as") is None else compile_expression(output["as"]),
        output_schema=compiler.schema(output.get("schema"), f"{pointer}/output/schema", "listen item output"),
        export_as=None if export.get("as") is None else compile_expression(export["as"]),
        export_schema=compiler.schema(export.get("schema"), f"{pointer}/export/schema", "context"),
    )


async def run(rt: Run, task: Task, data: Any, variables: Vars) -> Any:
    """Consume events until the strategy is satisfied; the output is the (iterated) events in order."""
    spec: ListenSpec = task.spec
    # Subscribe before the first await, so nothing published from here on can be missed.
    backlog, queue = rt.bus.subscribe_since(rt.workflow_var["startedAt"]["epoch"]["milliseconds"] / 1000)
    inbox = _Inbox(backlog, queue, _consumed.setdefault(rt, set()))
    await _enter_waiting(rt)
    try:
        taken, outputs = await _consume(rt, spec, inbox, data, variables)
    finally:
        rt.bus.unsubscribe(queue)
        await _leave_waiting(rt)
    _consumed[rt].update(taken)
    return outputs


class _Inbox:
    """The remembered backlog, then live events; events consumed by earlier listen tasks are skipped."""

    def __init__(self, backlog: list[dict[str, Any]], queue: asyncio.Queue[dict[str, Any]], skip: set[Any]) -> None:
        self._backlog = deque(backlog)
        self._queue = queue
        self._skip = skip

    async def get(self) -> dict[str, Any]:
        while True:
            event = self._backlog.popleft() if self._backlog else await self._queue.get()
            if event_key(event) not in self._skip:
                return event


def event_key(event: Mapping[str, Any]) -> Any:
    """CloudEvents identity: `source` + `id` (object identity for an event without an id)."""
    return (event.get("source"), event["id"]) if "id" in event else id(event)


async def _consume(rt: Run, spec: ListenSpec, inbox: _Inbox, data: Any, variables: Vars) -> tuple[list[Any], list[Any]]:
    main = Consumer(spec.strategy, MatchContext(data, variables, {}))
    until = spec.strategy.until
    stopper = Consumer(until, MatchContext(data, variables, {})) if isinstance(until, Strategy) else None
    condition = None if isinstance(until, Strategy) else until
    taken: list[Any] = []
    outputs: list[Any] = []
    while not main.done:
        event = await inbox.get()
        if stopper is not None and stopper.offer(event):
            taken.append(event_key(event))
            if stopper.done:
                break
            continue
        if not main.offer(event):
            continue
        taken.append(event_key(event))
        outputs.append(await iterate(rt, spec.foreach, read(event, spec.read), len(outputs), variables))
        if condition is not None and truthy(condition(outputs, rt.current(variables))):
            break
    return taken, outputs


def read(event: Mapping[str, Any], mode: str) -> Any:
    """The event as `listen.read` asks: `data`, `envelope` or `raw`."""
    if mode == "envelope":
        return dict(event)
    value = event.get("data")
    if mode != "raw" or value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return orjson.dumps(value).decode()


async def iterate(rt: Run, it: Iterator | None, value: Any, index: int, variables: Vars) -> Any:
    """One consumed item (an event, or a `call: asyncapi` message) through `foreach`: its output, `$context` set."""
    if it is None:
        return value
    scope = rt.child_scope(variables, **{it.item: value, it.at: index})
    output = value if it.body is None else await rt.run_list(it.body, value, scope)
    bound = rt.current(variables, **scope)
    if it.output_as is not None:
        output = it.output_as(output, bound)
    if it.output_schema is not None:
        it.output_schema.check(output)
    if it.export_as is not None:
        rt.context = it.export_as(output, {**bound, "output": output})
        if it.export_schema is not None:
            it.export_schema.check(rt.context)
    return output


async def _enter_waiting(rt: Run) -> None:
    _waiting[rt] = _waiting.get(rt, 0) + 1
    if _waiting[rt] == 1:
        await _status(rt, "waiting")


async def _leave_waiting(rt: Run) -> None:
    _waiting[rt] -= 1
    if _waiting[rt] == 0:
        await _status(rt, "running")


async def _status(rt: Run, status: str) -> None:
    await rt.emit(STATUS_CHANGED, {"name": rt.name, "updatedAt": now_iso(), "status": status})
