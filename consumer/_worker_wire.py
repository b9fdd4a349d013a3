"""The supervisor ↔ worker protocol: length-prefixed orjson frames on one socketpair per worker.

    supervisor → worker                                  worker → supervisor
    {"op": "run", "token", "command"}                    {"op": "event", "token", "event"}    (credit-bounded)
    {"op": "cancel", "token"}                            {"op": "checkpoint", "token", "checkpoint"}
    {"op": "credit", "token", "n"}                       {"op": "result", "token", "result"}
    {"op": "bus", "tenant", "event"}                     {"op": "emit", "token", "event"}
    {"op": "stop"}                                       {"op": "ready", "pid"}
    {"op": "batch", "frames": [...]}                     {"op": "batch", "frames": [...]}

The first frame the supervisor sends is the worker's configuration, pickled (it is the supervisor's own data,
never a caller's). A worker may have `CREDITS` events of one execution unacknowledged; the supervisor returns
credit once it handed them to the reporter, so a full outbox slows the producing execution, as in one process.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from executor import (
    Checkpoint,
    EngineOptions,
    ExecuteCommand,
    ExecutionResult,
    LifecycleEvent,
    Limits,
    Source,
    Status,
    json_safe,
)

CREDITS = 512
MAX_FRAME = 1 << 30  # a frame carries a whole document or result; the ingresses bound those far below this
_LENGTH = struct.Struct(">I")

Frame = dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerConfig:
    """What the supervisor tells a new worker (pickled: it is the supervisor's own configuration)."""

    options: EngineOptions = field(default_factory=EngineOptions)
    limits: Limits = field(default_factory=Limits)
    address_space_mb: int | None = None
    log_level: str = "INFO"
    log_format: str = "json"


class FrameWriter:
    """Frames queued during one turn of the loop leave as one `batch` frame in one write: a run's events, checkpoint
    and result cost one encoding, one syscall and one decoding, not six."""

    __slots__ = ("_pending", "_scheduled", "writer")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self._pending: list[Frame] = []
        self._scheduled = False

    def send(self, frame: Frame) -> None:
        """Queue `frame`; it is written at the end of this turn of the loop (or before, by `flush`)."""
        self._pending.append(frame)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_turn)

    def _flush_turn(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        """Write what is queued (nothing once the stream is closing)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        if not self.writer.is_closing():
            self.writer.write(pack(pending[0] if len(pending) == 1 else {"op": "batch", "frames": pending}))

    async def drain_if_full(self, limit: int) -> None:
        """Wait for the socket when more than `limit` bytes are buffered (back-pressure on a slow reader)."""
        if self.writer.transport.get_write_buffer_size() > limit:
            self.flush()
            await self.writer.drain()


def pack(frame: Frame) -> bytes:
    """One frame's bytes: length, then JSON (values orjson cannot take are made safe, never dropped)."""
    try:
        body = orjson.dumps(frame)
    except orjson.JSONEncodeError:
        body = orjson.dumps(json_safe(frame), default=repr)
    return _LENGTH.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> Frame | None:
    """The next frame, or None at the end of the stream (the peer is gone)."""
    try:
        head = await reader.readexactly(_LENGTH.size)
        (length,) = _LENGTH.unpack(head)
        if length > MAX_FRAME:
            raise ValueError(f"frame of {length} bytes")
        frame: Frame = orjson.loads(await reader.readexactly(length))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    return frame


def command_to_wire(command: ExecuteCommand) -> Frame:
    """The command as JSON (secrets included: the socket never leaves the machine or the runner's processes)."""
    resume = command.resume_from
    return {
        "execution_id": command.execution_id,
        "workflow_yaml": command.workflow_yaml,
        "input": command.input,
        "secrets": dict(command.secrets),
        "metadata": dict(command.metadata),
        "source": command.source.value,
        "attempt": command.attempt,
        "deadline": None if command.deadline is None else command.deadline.isoformat(),
        "resume_from": None if resume is None else checkpoint_to_wire(resume),
        "tenant": command.tenant,
    }


def command_from_wire(data: Frame) -> ExecuteCommand:
    """The inverse of `command_to_wire`."""
    deadline, resume = data["deadline"], data["resume_from"]
    return ExecuteCommand(
        execution_id=data["execution_id"],
        workflow_yaml=data["workflow_yaml"],
        input=data["input"],
        secrets=data["secrets"],
        metadata=data["metadata"],
        source=Source(data["source"]),
        attempt=data["attempt"],
        deadline=None if deadline is None else datetime.fromisoformat(deadline),
        resume_from=None if resume is None else checkpoint_from_wire(resume),
        tenant=data["tenant"],
    )


def checkpoint_to_wire(checkpoint: Checkpoint) -> Frame:
    """A checkpoint as JSON."""
    return {"next_task": checkpoint.next_task, "output": checkpoint.output, "context": checkpoint.context}


def checkpoint_from_wire(data: Frame) -> Checkpoint:
    """The inverse of `checkpoint_to_wire`."""
    return Checkpoint(next_task=data["next_task"], output=data["output"], context=data["context"])


def event_to_wire(event: LifecycleEvent) -> Frame:
    """A lifecycle event as JSON."""
    return {
        "execution_id": event.execution_id,
        "attempt": event.attempt,
        "sequence": event.sequence,
        "type": event.type,
        "time": event.time,
        "data": event.data,
    }


def result_to_wire(result: ExecutionResult) -> Frame:
    """A result as JSON."""
    return result.to_dict()


def result_from_wire(data: Frame) -> ExecutionResult:
    """The inverse of `result_to_wire`."""
    return ExecutionResult(
        execution_id=data["execution_id"], status=Status(data["status"]), output=data["output"], error=data["error"]
    )
