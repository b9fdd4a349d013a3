"""`emit`: publish a CloudEvent to the event bus; the task's output is the event as emitted."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .._expr import compile_template

if TYPE_CHECKING:
    from .._engine import Run
    from .._expr import Evaluator, Vars
    from .._model import Compiler, Task


def compile(compiler: Compiler, definition: Mapping[str, Any], pointer: str) -> Evaluator:
    """The event attributes template (`emit.event.with`)."""
    return compile_template(dict(definition["emit"]["event"]["with"]))


async def run(rt: Run, task: Task, data: Any, variables: Vars) -> Any:
    """Fill `id`, `specversion`, `time` (and `source` when absent), publish, return the event."""
    attributes = task.spec(data, variables)
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "source": f"/{rt.workflow.namespace}/{rt.workflow.name}/{rt.workflow.version}",
    }
    event.update({k: v for k, v in attributes.items() if v is not None})
    await rt.bus.publish(event)
    return event
