"""`emit`: publish a CloudEvent to the event bus; the task's output is the event as emitted (secrets masked)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._clock import now_iso
from .._errors import ValidationError
from .._expr import compile_template, json_type

if TYPE_CHECKING:
    from .._expr import Evaluator, Vars
    from .._model import Compiler, Task
    from .._run import Run

# CloudEvents attributes whose value is a string; an expression giving anything else makes no valid event.
_TEXT_ATTRIBUTES = ("id", "source", "type", "subject", "time", "datacontenttype", "dataschema")


def compile(compiler: Compiler, definition: Mapping[str, Any], pointer: str) -> Evaluator:
    """The event attributes template (`emit.event.with`)."""
    return compile_template(dict(definition["emit"]["event"]["with"]))


async def run(rt: Run, task: Task, data: Any, variables: Vars) -> Any:
    """Fill `id`, `specversion`, `time` (and `source` when absent), publish, return the event."""
    attributes = task.spec(data, variables)
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "time": now_iso(),
        "source": f"/{rt.workflow.namespace}/{rt.workflow.name}/{rt.workflow.version}",
    }
    event.update({k: v for k, v in attributes.items() if v is not None})
    _check(event)
    # The bus reaches other executions (and, over AMQP, other runners): it sees the event with secrets masked.
    published = rt.mask.scrub(event)
    await rt.bus.publish(published)
    return published


def _check(event: Mapping[str, Any]) -> None:
    """Raise ValidationError when a string attribute of the event is not a non-empty string."""
    for name in _TEXT_ATTRIBUTES:
        value = event.get(name, "-")
        if not isinstance(value, str) or not value:
            raise ValidationError(
                "Invalid event", detail=f"`{name}` must be a non-empty string, got {json_type(value)}"
            )
