"""The supervisor ↔ worker protocol: length-prefixed orjson frames on one socketpair per worker.

    supervisor → worker                                  worker → supervisor
    {"op": "run", "token", "command"}                    {"op": "event", "token", "event"}    (credit-bounded)
    {"op": "cancel", "token"}                            {"op": "checkpoint", "token", "checkpoint"}
    {"op": "credit", "token", "n"}                       {"op": "result", "token", "result"}
    {"op": "bus", "tenant", "event"}                     {"op": "emit", "token", "event"}
    {"op": "stop"}                                       {"op": "ready", "pid"}
    {"op": "batch", "frames": [...]}                     {"op": "batch", "frames": [...], "blobs": n}

Each frame is a 4-byte big-endian length, then its JSON. Frames queued during one turn of the loop leave as one
`batch`. An event whose output is larger than the events' limit carries only its preview (`outputTruncated`)
and `"blob": i`: the output's JSON, encoded once by the worker, follows the frame as raw frame number i of its
`blobs` (a length, then the bytes), so the supervisor can store it without decoding it.

Memory for large payloads: a frame above `LARGE` is written in `CHUNK`-sized slices, each once the socket took
the one before, and read into one buffer the size of the frame, so neither side holds more than the frame and
its decoded value at once (no copies in stream buffers).

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

from ._events import DEFAULT_MAX_OUTPUT_BYTES

CREDITS = 512
MAX_FRAME = 1 << 30  # a frame carries a whole document or result; the ingresses bound those far below this
LARGE = 1 << 20
"""Frames above this many bytes are written in slices and read into a buffer of their own."""
CHUNK = 1 << 18
_LENGTH = struct.Struct(">I")

Frame = dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerConfig:
    """What the supervisor tells a new worker (pickled: it is the supervisor's own configuration)."""

    options: EngineOptions = field(default_factory=EngineOptions)
    limits: Limits = field(default_factory=Limits)
    address_space_mb: int | None = None
    max_event_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    log_level: str = "INFO"
    log_format: str = "json"


class FrameWriter:
    """Frames queued during one turn of the loop leave as one `batch` frame in one write: a run's events, checkpoint
    and result cost one encoding, one syscall and one decoding, not six. A batch above `LARGE` is written by a
    task in slices; frames queued meanwhile wait for it, so the stream stays in order."""

    __slots__ = ("_blobs", "_large", "_pending", "_scheduled", "writer")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self._pending: list[Frame] = []
        self._blobs: list[bytes] = []
        self._scheduled = False
        self._large: asyncio.Task[None] | None = None

    def send(self, frame: Frame, blob: bytes | None = None) -> None:
        """Queue `frame` (with `blob`, raw bytes that follow it); it is written at the end of this turn of the loop
        (or before, by `flush`)."""
        if blob is not None:
            # The same bytes twice in one batch (one output in two events) cross once.
            known = next((n for n, queued in enumerate(self._blobs) if queued is blob), None)
            frame["blob"] = len(self._blobs) if known is None else known
            if known is None:
                self._blobs.append(blob)
        self._pending.append(frame)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_turn)

    def _flush_turn(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        """Write what is queued (nothing once the stream is closing, later while a large write is going on)."""
        if not self._pending or self._large is not None:
            return
        pending, self._pending = self._pending, []
        blobs, self._blobs = self._blobs, []
        if self.writer.is_closing():
            return
        frame: Frame = pending[0] if len(pending) == 1 and not blobs else {"op": "batch", "frames": pending}
        if blobs:
            frame["blobs"] = len(blobs)
        parts = [encode(frame), *blobs]
        if sum(len(part) for part in parts) <= LARGE:
            self.writer.write(b"".join(_LENGTH.pack(len(part)) + part for part in parts))
        else:
            self._large = asyncio.get_running_loop().create_task(self._write_large(parts))

    async def _write_large(self, parts: list[bytes]) -> None:
        try:
            for part in parts:
                self.writer.write(_LENGTH.pack(len(part)))
                view = memoryview(part)
                for start in range(0, len(view), CHUNK):
                    self.writer.write(view[start : start + CHUNK])
                    await self.writer.drain()
        except ConnectionError:
            pass  # the peer is gone: its reader notices, nothing is left to write to
        finally:
            self._large = None
        self.flush()

    async def drain_if_full(self, limit: int) -> None:
        """Wait for the socket when more than `limit` bytes are buffered or a large write is going on (back-pressure
        on a slow reader)."""
        if self._large is not None:
            await asyncio.wait([self._large])
        if self.writer.transport.get_write_buffer_size() > limit:
            self.flush()
            await self.writer.drain()

    async def aclose(self) -> None:
        """Stop a large write still going on (the stream is being closed)."""
        if self._large is not None:
            self._large.cancel()
            await asyncio.wait([self._large])


def encode(frame: Frame) -> bytes:
    """One frame's JSON (values orjson cannot take are made safe, never dropped)."""
    try:
        return orjson.dumps(frame)
    except orjson.JSONEncodeError:
        return orjson.dumps(json_safe(frame), default=repr)


async def read_frame(reader: asyncio.StreamReader) -> Frame | None:
    """The next frame with its blobs in place of their numbers, or None at the end of the stream (the peer is
    gone)."""
    try:
        frame: Frame = orjson.loads(await _read_part(reader))
        if "blobs" in frame:
            blobs = [await _read_part(reader) for _ in range(frame.pop("blobs"))]  # large ones stay bytearrays
            for each in frame["frames"] if frame["op"] == "batch" else [frame]:
                if "blob" in each:
                    each["blob"] = blobs[each["blob"]]
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    return frame


async def _read_part(reader: asyncio.StreamReader) -> bytes | bytearray:
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    if length > MAX_FRAME:
        raise ValueError(f"frame of {length} bytes")
    if length <= LARGE:
        return await reader.readexactly(length)
    # In slices into one buffer: `readexactly` would first grow the stream's own buffer to the whole frame.
    buffer = bytearray(length)
    view = memoryview(buffer)
    done = 0
    while done < length:
        chunk = await reader.read(min(CHUNK, length - done))
        if not chunk:
            raise asyncio.IncompleteReadError(bytes(view[:done]), length)
        view[done : done + len(chunk)] = chunk
        done += len(chunk)
    return buffer


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


def event_to_wire(event: LifecycleEvent, data: dict[str, Any]) -> Frame:
    """A lifecycle event as JSON, with `data` (the event's, bounded) in place of its own."""
    return {
        "execution_id": event.execution_id,
        "attempt": event.attempt,
        "sequence": event.sequence,
        "type": event.type,
        "time": event.time,
        "data": data,
    }


def result_to_wire(result: ExecutionResult) -> Frame:
    """A result as JSON."""
    return result.to_dict()


def result_from_wire(data: Frame) -> ExecutionResult:
    """The inverse of `result_to_wire`."""
    return ExecutionResult(
        execution_id=data["execution_id"], status=Status(data["status"]), output=data["output"], error=data["error"]
    )
