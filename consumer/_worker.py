"""An executor worker process: runs many executions on its own event loop for the supervisor that started it.

Started by `_pool.WorkerPool` as `python -m consumer._worker SOCKET_FD SLOT_FD`. It reads its configuration and
then commands from the socket (`_worker_wire`), runs each on one `Executor`, and sends back events, checkpoints
and results. Around every evaluation it writes its scoreboard slot (`_scoreboard`), and its loop beats there
every `BEAT` seconds, so the supervisor's watchdog can tell a runaway expression from a quiet worker.

It is expendable by design: the kernel sends it SIGKILL when the supervisor dies, it asks the OOM killer to pick
it first, and its address space is capped as a backstop to the supervisor's RSS watch. `emit` goes through the
supervisor (which owns the tenant-scoped bus and its bridges); bus events come back as `bus` frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import pickle
import resource
import signal
import socket
import sys
from typing import Any

from executor import (
    EVALUATING_AT,
    Checkpoint,
    DocumentError,
    EventBus,
    ExecuteCommand,
    ExecutionResult,
    Executor,
    LifecycleEvent,
    Status,
    Where,
    install_probe,
    spec_error,
)

from ._events import bound_output, truncated
from ._gc import tune_gc
from ._logging import EXECUTION_ID, command_secrets, configure_logging, secrets_masked
from ._scoreboard import BEAT, SlotWriter, map_slot
from ._worker_wire import (
    CREDITS,
    LARGE,
    Frame,
    FrameWriter,
    WorkerConfig,
    checkpoint_to_wire,
    command_from_wire,
    encode,
    event_to_wire,
    read_frame,
    result_to_wire,
)

logger = logging.getLogger("consumer.worker")

_PR_SET_PDEATHSIG = 1
_OOM_SCORE_ADJ = 500  # the supervisor keeps 0: under memory pressure the host kills a worker first
_FLUSH_ABOVE = 1 << 20  # bytes buffered for the supervisor before a writer waits for the socket
_CANCEL_CREDITS = 8  # room for the events a cancel produces (task.cancelled per level, workflow.cancelled)


class _RelayBus(EventBus):
    """The worker's bus: `emit` goes to the supervisor; what the supervisor relays is delivered here.

    An emit names the execution (its token), not a tenant: the supervisor publishes it for that execution's
    tenant, so no claim of the worker's decides whose bus an event reaches.
    """

    def __init__(self, send: Any) -> None:
        super().__init__()
        self._send = send

    async def publish(self, event: dict[str, Any], tenant: str = "default") -> None:
        await self._send({"op": "emit", "token": EVALUATING_AT.get().token, "event": event})


class _Listener:
    """Hands one execution's events to the supervisor, at most `CREDITS` unacknowledged; the worker's handle on
    the run (its execution id and task)."""

    def __init__(self, worker: Worker, token: int, execution_id: str) -> None:
        self._worker = worker
        self._token = token
        self.execution_id = execution_id
        self.credits = asyncio.Semaphore(CREDITS)
        self.task: asyncio.Task[None] | None = None

    def grant(self, credits: int) -> None:
        """Allow `credits` more events to leave."""
        for _ in range(credits):
            self.credits.release()

    async def publish(self, event: LifecycleEvent) -> None:
        await self.credits.acquire()
        # Bounded here, not in the supervisor: a large output crosses the socket as the event's blob, encoded once.
        worker, output = self._worker, event.data.get("output")
        output_json = worker.known_blob(output)
        if output_json is not None and len(output_json) <= worker.max_output:
            data, output_json = event.data, None  # known from a checkpoint, small enough for the event
        elif output_json is not None:
            data = truncated(event.data, output_json, worker.max_output)
        else:
            data, output_json = bound_output(event.data, worker.max_output)
            worker.remember_blob(output, output_json)
        frame = {"op": "event", "token": self._token, "event": event_to_wire(event, data)}
        await worker.send_soon(frame, output_json)


class Worker:
    """The worker's loop: frames in, executions run, frames out."""

    def __init__(self, config: WorkerConfig, frames: FrameWriter, slot: SlotWriter) -> None:
        self._frames = frames
        self._slot = slot
        self.max_output = config.max_event_output_bytes
        self._blob: tuple[Any, bytes | None] = (None, None)  # the last large value sent and its JSON
        self.executor = Executor(limits=config.limits, options=config.options, bus=_RelayBus(self.send_soon))
        self._runs: dict[int, _Listener] = {}

    def send(self, frame: Frame, blob: bytes | None = None) -> None:
        """Queue a frame (and its blob) for the supervisor."""
        self._frames.send(frame, blob)

    def known_blob(self, value: Any) -> bytes | None:
        """The JSON of `value` if it is the large value sent last (the same object), else None."""
        return self._blob[1] if value is not None and value is self._blob[0] else None

    def remember_blob(self, value: Any, encoded: bytes | None) -> None:
        """Keep `value`'s JSON, sent as a blob: one value in several frames (a task's output that is the workflow's,
        the checkpoint's and the result's) is encoded once and crosses the socket once (`FrameWriter` keeps one
        copy of the same bytes per batch)."""
        if encoded is not None:
            self._blob = (value, encoded)

    def large(self, part: Frame) -> bytes | None:
        """The blob `part`'s output travels as when its JSON is above `LARGE` (the output then leaves `part`)."""
        output = part.get("output")
        if output is None:
            return None
        blob = self.known_blob(output)
        if blob is None and len(encoded := encode(output)) > LARGE:
            blob = encoded
            self.remember_blob(output, blob)
        if blob is not None:
            del part["output"]
        return blob

    async def send_soon(self, frame: Frame, blob: bytes | None = None) -> None:
        """Queue a frame, waiting for the socket when much is already buffered."""
        self.send(frame, blob)
        await self._frames.drain_if_full(_FLUSH_ABOVE)

    async def serve(self, reader: asyncio.StreamReader) -> None:
        """Handle frames until the supervisor says stop or goes away."""
        beat = asyncio.create_task(self._beat())
        self.send({"op": "ready", "pid": os.getpid()})
        try:
            while (frame := await read_frame(reader)) is not None and not self._handle(frame):
                pass
        finally:
            beat.cancel()
            for run in list(self._runs.values()):
                if run.task is not None:
                    run.task.cancel()
            await self.executor.aclose()

    def _handle(self, frame: Frame) -> bool:
        """Apply one frame; True when it says stop."""
        op = frame["op"]
        if op == "batch":
            stops = [self._handle(each) for each in frame["frames"]]  # every frame applied, then stop or not
            return any(stops)
        if op == "stop":
            return True
        if op == "run":
            self._start(frame["token"], command_from_wire(frame["command"]))
        elif op == "bus":
            self.executor.bus.deliver(frame["event"], frame["tenant"])
        elif (run := self._runs.get(frame["token"])) is None:
            pass  # credit or cancel for a run that has ended
        elif op == "credit":
            run.grant(frame["n"])
        elif op == "cancel":
            run.grant(_CANCEL_CREDITS)  # its `cancelled` events must leave even if its credits ran out
            self.executor.cancel(run.execution_id)
        return False

    def _start(self, token: int, command: ExecuteCommand) -> None:
        listener = _Listener(self, token, command.execution_id)
        listener.task = asyncio.create_task(self._run(token, command, listener), name=command.execution_id)
        self._runs[token] = listener

    async def _run(self, token: int, command: ExecuteCommand, listener: _Listener) -> None:
        EVALUATING_AT.set(Where(token, "/"))
        EXECUTION_ID.set(command.execution_id)

        async def checkpoint(point: Checkpoint) -> None:
            wire = checkpoint_to_wire(point)
            await self.send_soon({"op": "checkpoint", "token": token, "checkpoint": wire}, self.large(wire))

        try:
            with secrets_masked(command_secrets(command.secrets)):
                result = await self._execute(command, listener, checkpoint)
            wire = result_to_wire(result)
            self.send({"op": "result", "token": token, "result": wire}, self.large(wire))
        finally:
            self._runs.pop(token, None)
            self._blob = (None, None)  # not kept past the run (another run's loses only the saving)

    async def _execute(self, command: ExecuteCommand, listener: _Listener, checkpoint: Any) -> ExecutionResult:
        try:
            return await self.executor.run(command, listener=listener, on_checkpoint=checkpoint)
        except DocumentError as exc:  # the supervisor validated it: only a different build could disagree
            error = spec_error("runtime", "Invalid document", status=400, detail=str(exc)[:2000])
        except Exception as exc:
            logger.exception("execution crashed in the worker")
            error = spec_error("runtime", "Runtime failure", status=500, detail=type(exc).__name__)
        return ExecutionResult(execution_id=command.execution_id, status=Status.FAULTED, error=error)

    async def _beat(self) -> None:
        while True:
            self._slot.beat()
            await asyncio.sleep(BEAT)


def _expendable(supervisor: int, address_space_mb: int | None) -> None:
    """Die with the supervisor, be the OOM killer's first choice, and cap the address space (a backstop)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != supervisor:  # it died before the line above took effect (the supervisor may be PID 1)
        os._exit(1)
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as adj:
        adj.write(str(_OOM_SCORE_ADJ))
    if address_space_mb is not None:
        limit = address_space_mb * 1024 * 1024
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


async def _main(socket_fd: int, slot_fd: int, supervisor: int) -> None:
    sock = socket.socket(fileno=socket_fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=1 << 20)
    head = await reader.readexactly(4)
    config: WorkerConfig = pickle.loads(await reader.readexactly(int.from_bytes(head, "big")))
    configure_logging(level=config.log_level, fmt=config.log_format)
    _expendable(supervisor, config.address_space_mb)
    frames = FrameWriter(writer)
    # Frames queued before an evaluation leave before it: a runaway must not swallow its own `task.started`.
    slot = SlotWriter(map_slot(slot_fd), before=frames.flush)
    install_probe(slot)
    worker = Worker(config, frames, slot)
    tune_gc()
    await worker.serve(reader)


def main() -> None:
    """Entry point: `python -m consumer._worker SOCKET_FD SLOT_FD SUPERVISOR_PID`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the supervisor decides
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    asyncio.run(_main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))


if __name__ == "__main__":
    main()
