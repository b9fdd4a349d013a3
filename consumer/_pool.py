"""The supervisor's worker pool: every execution runs in an executor worker process, under a watchdog.

The supervisor (this process) never evaluates a document: it parses and validates (bounded by the loader's
limits), places each execution on the least-loaded healthy worker, relays events, checkpoints and results, and
owns the tenant-scoped event bus. A watchdog thread reads each worker's scoreboard slot (`_scoreboard`) every
`PERIOD` and its RSS, and ends a worker with SIGKILL when one of the rules below fires. What then happens to the
executions the worker held is decided once, here:

    how the worker ended                               the execution(s) it held
    ─────────────────────────────────────────────────  ────────────────────────────────────────────────────────
    an evaluation ran past EXPRESSION_TIME_LIMIT       the evaluating one (the culprit): faulted, non-retryable,
                                                         the error names the task pointer, the limit, what ran over
    an evaluation ran past its timeout or deadline     the culprit: faulted with the spec's timeout error
    RSS past EXECUTOR_MEMORY_LIMIT_MB                  the evaluating one if any is evaluating, else unknown
    loop stalled with no evaluation running            unknown
    no answer to a cancel within CANCEL_GRACE          the cancelled one: cancelled (its events written here)
    died on its own (signal, exit) while evaluating    the evaluating one: faulted, the signal named
    died on its own while idle                         unknown
    ─────────────────────────────────────────────────  ────────────────────────────────────────────────────────
    every other execution of that worker (innocent)    runs again on another worker from its last checkpoint
    unknown culprit                                    each is a suspect: runs again, one suspect per worker
                                                         where possible; a second strike faults it

A restarted execution keeps its attempt number, and its event numbering continues where the killed worker's
stopped (the repeated `workflow.started` is not reported again), so the control plane sees one execution with one
terminal event. A terminal event that arrived before the worker died stands: nothing runs again.

New work goes around trouble: a worker whose slot shows one evaluation running longer than `STUCK_AFTER`, or whose
RSS is above the soft limit, gets no new executions; when no worker can take one, a spare is started (at most as
many spares as workers). Spares retire once idle and the pool is back to its size.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import itertools
import logging
import mmap
import os
import pickle
import signal
import socket
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from executor import (
    WORKFLOW_CANCELLED,
    WORKFLOW_FAULTED,
    Checkpoint,
    EngineOptions,
    EventBus,
    ExecuteCommand,
    ExecutionResult,
    Executor,
    Issue,
    LifecycleEvent,
    Limits,
    ProgressListener,
    Status,
    spec_error,
)
from executor._model import Workflow

from ._errors import StartupError
from ._events import DEFAULT_MAX_OUTPUT_BYTES
from ._metrics import Metrics
from ._scoreboard import BEAT, Reading, busy_for, create_slot, read_slot
from ._service import _now, cancelled_result
from ._worker_wire import (
    CREDITS,
    Frame,
    FrameWriter,
    WorkerConfig,
    checkpoint_from_wire,
    command_to_wire,
    read_frame,
    result_from_wire,
)

logger = logging.getLogger("consumer.pool")

PERIOD = 0.02
"""Seconds between two watchdog rounds."""
STUCK_AFTER = 0.03
"""An evaluation running longer than this makes its worker take no new executions until it ends."""
CANCEL_GRACE = 1.0
"""Seconds a worker has to end a cancelled execution before it is killed."""
TIMEOUT_GRACE = 0.05
"""Seconds past a timeout before an evaluation still running is ended with its worker."""
SOFT_MEMORY = 0.75
"""Fraction of the memory limit above which a worker gets no new executions."""
_STOP_WAIT = 5.0
_WORKER_ENVIRONMENT = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
_START_WAIT = 30.0
_REMEMBERED_TOKENS = 10_000
_TASK_FAULTED = "io.serverlessworkflow.task.faulted.v1"
_TERMINAL = frozenset({WORKFLOW_CANCELLED, WORKFLOW_FAULTED, "io.serverlessworkflow.workflow.completed.v1"})
_STARTED = "io.serverlessworkflow.workflow.started.v1"

CREDIT_RETURN = CREDITS // 4
"""Events of one execution handed over before their credit goes back to its worker (fewer frames; a run with
fewer events never sends one, and the worker keeps at least `CREDITS - CREDIT_RETURN` to spend)."""

CheckpointHook = Callable[[Checkpoint], Awaitable[None]]
_Item = tuple[str, int, Any]  # (op, token, frame or verdict): one frame of an execution, as `_arrive` takes it


class Reason(enum.StrEnum):
    """Why a worker ended (the `reason` label of the restarts metric)."""

    CPU = "expression_time_limit"
    TIMEOUT = "timeout"
    MEMORY = "memory_limit"
    STALL = "loop_stalled"
    CANCEL = "cancel_unanswered"
    CRASH = "crashed"


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why a worker was (or must be taken as) ended, and whom it blames: `token` 0 means nobody knows."""

    reason: Reason
    token: int = 0
    pointer: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolSettings:
    """What the pool needs of the configuration."""

    processes: int = max(1, os.cpu_count() or 1)
    expression_time_limit: float = 5.0
    memory_limit_mb: int = 1024
    options: EngineOptions = field(default_factory=EngineOptions)
    limits: Limits = field(default_factory=Limits)
    max_event_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    log_level: str = "INFO"
    log_format: str = "json"


class _Worker:
    """The supervisor's handle on one worker process. Flags written by the watchdog are plain attributes."""

    def __init__(self, process: asyncio.subprocess.Process, writer: asyncio.StreamWriter, slot: Any) -> None:
        self.process = process
        self.pid = process.pid
        self.writer = writer
        self.frames = FrameWriter(writer)
        self.slot = slot
        self.jobs: dict[int, _Job] = {}
        # token -> tenant, kept past a run's end: a detached subflow (`await: false`) may still emit for it
        self.tenants: OrderedDict[int, str] = OrderedDict()
        self.ready = False
        self.dead = False
        self.stuck = False
        self.full = False
        self.rss_mb = 0.0
        self.verdict: Verdict | None = None
        self.cancel_due: dict[int, float] = {}
        self.started = time.monotonic()

    @property
    def available(self) -> bool:
        return self.ready and not (self.dead or self.stuck or self.full or self.verdict)

    def send(self, frame: Frame) -> None:
        if not self.dead:
            self.frames.send(frame)

    def suspects(self) -> int:
        return sum(1 for job in self.jobs.values() if job.strikes)


class _Job:
    """One execution in the pool, across the workers it may run on."""

    def __init__(self, command: ExecuteCommand, listener: ProgressListener, hook: CheckpointHook | None) -> None:
        self.command = command
        self.listener = listener
        self.hook = hook
        self.result: asyncio.Future[ExecutionResult] = asyncio.get_running_loop().create_future()
        self.backlog: deque[_Item] = deque()  # frames waiting for the pump, in arrival order
        self.checkpoint = command.resume_from
        self.sequence = 0
        self.incarnation = 0
        self.strikes = 0
        self.token = 0
        self.worker: _Worker | None = None
        self.cancel_requested = False
        self.name = ""
        self.started = False  # its `workflow.started` was reported (a restart does not report it again)
        self.task = ""  # pointer of the last task started, for the culprit's task.faulted
        self.terminal: LifecycleEvent | None = None  # a terminal event reported before its worker died
        self.pump: asyncio.Task[None] | None = None  # runs only while a frame needs an await (see `_arrive`)
        self.handed = 0  # events handed to the listener since credit was last returned
        self.decoded: tuple[Any, Any] = (None, None)  # the last blob decoded and its value (see `_inline`)


def placement(slot: mmap.mmap, jobs: int, now: float) -> tuple[float, int]:
    """Where a worker (its scoreboard slot, the jobs it holds) stands for new work, least first: idle ones first,
    by jobs held; then those evaluating right now, the longer the evaluation has run the later. Such a worker may
    hold a runaway the watchdog has not flagged yet: in its first tens of milliseconds a CPU or memory hog looks
    like any evaluation, except that it has run longer than the others."""
    running = busy_for(slot, now)
    return (-1.0 if running is None else running, jobs)


class WorkerPool:
    """Runs commands in worker processes; the same calls as `executor.Executor` for the execution service.

    Args:
        settings: Size, limits and the engine options the workers run with.
        metrics: Where to count workers, restarts and limit faults.
    """

    def __init__(self, settings: PoolSettings, *, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.bus = EventBus()
        self._loader = Executor(limits=settings.limits, options=settings.options)  # parses; never runs
        self._config = pickle.dumps(
            WorkerConfig(
                options=settings.options,
                limits=settings.limits,
                # A backstop only (the RSS watch acts first): room for the limit, one doubling past it, the runtime.
                address_space_mb=settings.memory_limit_mb * 3 + 1024,
                max_event_output_bytes=settings.max_event_output_bytes,
                log_level=settings.log_level,
                log_format=settings.log_format,
            )
        )
        self._workers: list[_Worker] = []
        self._jobs: dict[str, _Job] = {}
        self._tokens = itertools.count(1)
        self._changed = asyncio.Event()
        self._closing = False
        self._watch_stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- the Executor surface the service uses -------------------------------------------------------------

    def load(self, workflow_yaml: str) -> Workflow:
        """Parse, validate and compile (cached); raises DocumentError. Nothing is evaluated."""
        return self._loader.load(workflow_yaml)

    def validate(self, workflow_yaml: str) -> list[Issue]:
        """Every problem that stops the document from running here; [] when it can run."""
        return self._loader.validate(workflow_yaml)

    def check(self, workflow_yaml: str) -> tuple[list[Issue], list[Issue]]:
        """Errors and, when it can run, warnings (a `schedule` the caller must honour)."""
        return self._loader.check(workflow_yaml)

    @property
    def in_flight(self) -> frozenset[str]:
        """Execution ids running in a worker (or waiting for one)."""
        return frozenset(self._jobs)

    async def run(
        self, cmd: ExecuteCommand, *, listener: ProgressListener, on_checkpoint: CheckpointHook | None = None
    ) -> ExecutionResult:
        """Run `cmd` in a worker until it ends (restarted elsewhere if an innocent victim of a killed worker)."""
        self.load(cmd.workflow_yaml)  # DocumentError before anything is emitted, as in-process
        job = _Job(cmd, listener, on_checkpoint)
        self._jobs[cmd.execution_id] = job
        self._place_soon(job)
        try:
            return await asyncio.shield(job.result)
        except asyncio.CancelledError:
            self.cancel(cmd.execution_id)  # the caller's loop is closing: do not leave the run behind
            raise
        finally:
            self._jobs.pop(cmd.execution_id, None)
            if job.pump is not None and not job.result.done():
                job.pump.cancel()

    def cancel(self, execution_id: str) -> bool:
        """Ask the execution's worker to cancel it; a worker that does not within CANCEL_GRACE is killed."""
        job = self._jobs.get(execution_id)
        if job is None or job.result.done():
            return False
        worker = job.worker
        if worker is not None and job.token not in worker.jobs:
            return False  # its result arrived and is on its way: nothing left to cancel
        job.cancel_requested = True
        if worker is None:
            self._arrive(job, ("cancelled", job.token, None))  # still waiting for a worker
        else:
            worker.send({"op": "cancel", "token": job.token})
            # The first cancel starts the clock: asking again must not push the kill back.
            worker.cancel_due.setdefault(job.token, time.monotonic() + CANCEL_GRACE)
        return True

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the workers and the watchdog; returns once every worker said it is ready."""
        self._loop = asyncio.get_running_loop()
        await asyncio.gather(*(self._start_worker() for _ in range(self.settings.processes)))
        self._spawn(self._relay())
        self._spawn(self._maintain())
        self._watchdog = threading.Thread(target=self._watch, name="watchdog", daemon=True)
        self._watchdog.start()
        try:
            async with asyncio.timeout(_START_WAIT):
                while len([worker for worker in self._workers if worker.ready]) < self.settings.processes:
                    await self._wait_changed()
        except TimeoutError:
            await self.aclose()
            raise StartupError(
                f"executor worker processes did not start within {_START_WAIT:g}s (their errors are in the log above)"
            ) from None

    async def aclose(self) -> None:
        """Stop every worker (a `stop` frame, then SIGKILL after a wait), the watchdog and the relay; idempotent.

        Called after the service drained: no execution is waiting for a worker any more.
        """
        self._closing = True
        self._watch_stop.set()
        for task in list(self._tasks):
            task.cancel()  # first: maintenance must not replace the workers stopping below
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=_STOP_WAIT)
        workers = list(self._workers)
        for worker in workers:
            worker.send({"op": "stop"})
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_STOP_WAIT):
                await asyncio.gather(*(worker.process.wait() for worker in workers))
        for worker in workers:
            if worker.process.returncode is None:  # never signal a reaped pid: it may belong to someone else now
                worker.process.kill()
                await worker.process.wait()
            worker.writer.close()
        self._workers.clear()
        if self._watchdog is not None:
            self._watchdog.join(timeout=1)
        await self._loader.aclose()

    @property
    def workers(self) -> list[int]:
        """PIDs of the live workers."""
        return [worker.pid for worker in self._workers if not worker.dead]

    # -- placement ------------------------------------------------------------------------------------------

    async def _place(self, job: _Job) -> None:
        """Put the job on the best worker, waiting (and starting a spare) while none can take it."""
        while (worker := self._choose(suspect=job.strikes > 0)) is None:
            if self._abandoned(job):
                return  # cancelled (or its caller gone) while it waited
            if self._closing:
                self._arrive(job, ("cancelled", job.token, None))
                return
            self._spare()
            await self._wait_changed()
        if not self._abandoned(job):
            self._assign(job, worker)

    def _place_soon(self, job: _Job) -> None:
        """Assign the job now when a worker can take it (the common case), else wait for one in the background."""
        worker = self._choose(suspect=job.strikes > 0)
        if worker is None:
            self._spawn(self._place(job))
        else:
            self._assign(job, worker)

    def _assign(self, job: _Job, worker: _Worker) -> None:
        job.token = next(self._tokens)
        job.worker = worker
        job.incarnation += 1
        worker.jobs[job.token] = job
        worker.tenants[job.token] = job.command.tenant
        if len(worker.tenants) > _REMEMBERED_TOKENS:
            worker.tenants.popitem(last=False)
        command = job.command
        if job.checkpoint is not command.resume_from:
            command = dataclasses.replace(command, resume_from=job.checkpoint)
        worker.send({"op": "run", "token": job.token, "command": command_to_wire(command)})

    def _abandoned(self, job: _Job) -> bool:
        return job.result.done() or job.cancel_requested or self._jobs.get(job.command.execution_id) is not job

    def _choose(self, *, suspect: bool) -> _Worker | None:
        candidates = [worker for worker in self._workers if worker.available]
        if suspect and (clean := [worker for worker in candidates if not worker.suspects()]):
            candidates = clean
        now = time.monotonic()
        return min(candidates, key=lambda worker: placement(worker.slot, len(worker.jobs), now), default=None)

    def _spare(self) -> None:
        """Start one more worker when every live one is in trouble (bounded: one spare per worker)."""
        live = [worker for worker in self._workers if not (worker.dead or worker.verdict)]
        starting = [worker for worker in live if not worker.ready]
        if starting or len(live) >= 2 * self.settings.processes:
            return
        logger.warning("every worker is busy with a long evaluation or full: starting a spare")
        self._spawn(self._start_worker())

    async def _maintain(self) -> None:
        """Keep the pool at its size: replace the dead, retire idle spares (a failed round is retried)."""
        while True:
            await asyncio.sleep(0.5)
            try:
                await self._maintain_once()
            except Exception:
                logger.exception("could not keep the worker pool at its size; retrying")
                await asyncio.sleep(5)

    async def _maintain_once(self) -> None:
        live = [worker for worker in self._workers if not (worker.dead or worker.verdict)]
        healthy = [worker for worker in live if worker.available]
        if len(live) < self.settings.processes:
            await self._start_worker()
        elif len(live) > self.settings.processes and len(healthy) > self.settings.processes:
            idle = next((worker for worker in healthy if not worker.jobs), None)
            if idle is not None:
                idle.ready = False  # no new work while it stops
                idle.send({"op": "stop"})

    async def _wait_changed(self) -> None:
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):  # also re-check now and then: a flag may flip without a wake-up
                await self._changed.wait()

    # -- workers ---------------------------------------------------------------------------------------------

    async def _start_worker(self) -> None:
        if self._closing:
            return
        parent, child = socket.socketpair()
        fd, slot = create_slot()
        # The runner's own credentials (API keys, broker URLs) stay in the supervisor: a worker gets its
        # configuration through the socket and only the variables an interpreter and an HTTP client need.
        env = {name: os.environ[name] for name in _WORKER_ENVIRONMENT if name in os.environ}
        env["MALLOC_ARENA_MAX"] = "2"  # fewer malloc arenas: a smaller address space under RLIMIT_AS
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "consumer._worker",
                str(child.fileno()),
                str(fd),
                str(os.getpid()),
                pass_fds=(child.fileno(), fd),
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            child.close()
            os.close(fd)
        reader, writer = await asyncio.open_unix_connection(sock=parent, limit=1 << 20)
        writer.write(len(self._config).to_bytes(4, "big") + self._config)
        worker = _Worker(process, writer, slot)
        self._workers.append(worker)
        self._spawn(self._read(worker, reader))
        self.metrics.workers.set(len(self.workers))

    async def _read(self, worker: _Worker, reader: asyncio.StreamReader) -> None:
        try:
            while (frame := await read_frame(reader)) is not None:
                self._dispatch(worker, frame)
        except Exception as exc:
            # A frame the supervisor cannot read or apply: the worker is no longer trustworthy.
            logger.exception("worker %d sent a frame that could not be handled", worker.pid)
            worker.verdict = worker.verdict or Verdict(Reason.CRASH, detail=f"bad frame: {type(exc).__name__}")
            _kill(worker.pid)
        await self._ended(worker)

    def _dispatch(self, worker: _Worker, frame: Frame) -> None:
        op = frame["op"]
        if op == "batch":
            for each in frame["frames"]:
                self._dispatch(worker, each)
        elif op == "emit":
            self._emit(worker, frame)
        elif op == "ready":
            worker.ready = True
            self._changed.set()
        elif (job := worker.jobs.get(frame["token"])) is not None:
            if op == "result":
                del worker.jobs[frame["token"]]
                worker.cancel_due.pop(frame["token"], None)
                self._changed.set()
            self._arrive(job, (op, frame["token"], frame))

    def _emit(self, worker: _Worker, frame: Frame) -> None:
        """An execution's `emit`: published for the tenant of the execution that made it."""
        tenant = worker.tenants.get(frame["token"])
        if tenant is None:
            logger.warning("worker %d emitted for no execution it ran; event dropped", worker.pid)
            return
        self._spawn(self.bus.publish(frame["event"], tenant))

    async def _ended(self, worker: _Worker) -> None:
        code = await worker.process.wait()
        worker.dead = True
        worker.writer.close()
        await worker.frames.aclose()
        self._workers.remove(worker)
        self.metrics.workers.set(len(self.workers))
        self._changed.set()
        if not worker.jobs and (self._closing or (worker.verdict is None and code == 0)):
            return  # a stopped (retired) worker
        verdict = worker.verdict or _infer(read_slot(worker.slot), code)
        self.metrics.worker_restarts.labels(verdict.reason.value).inc()
        logger.warning(
            "worker %d ended (%s, exit %s) holding %d executions", worker.pid, verdict.reason, code, len(worker.jobs)
        )
        for token, job in worker.jobs.items():
            self._arrive(job, ("died", token, verdict))
        worker.jobs.clear()

    # -- one execution's stream of frames -------------------------------------------------------------------

    def _arrive(self, job: _Job, item: _Item) -> None:
        """Apply one of the execution's frames in order: at once when that needs no await (an event the listener
        takes without waiting, a result, a checkpoint nobody hooks) — the common case, which costs no task — else
        through the job's pump task, which also takes every later frame until it has caught up."""
        if job.pump is None:
            try:
                if self._apply_now(job, item):
                    return
            except Exception:  # the pump meets it again and ends the execution as its bugs end it
                logger.debug("execution %s: a frame goes to the pump", job.command.execution_id, exc_info=True)
        job.backlog.append(item)
        if job.pump is None:
            job.pump = self._spawn(self._pump(job))

    def _apply_now(self, job: _Job, item: _Item) -> bool:
        """Apply `item` if that needs no await; False (and nothing changed) when it must go to the pump."""
        op, token, body = item
        if token != job.token and op != "cancelled":
            return True  # from an earlier incarnation
        if op == "result":
            self._finish(job, result_from_wire(_inline(job, body, "result")))
        elif op == "checkpoint" and job.hook is None:
            job.checkpoint = checkpoint_from_wire(_inline(job, body, "checkpoint"))
        elif op != "event" or not self._forward_now(job, body):
            return False
        return True

    async def _pump(self, job: _Job) -> None:
        """Apply the frames that wait in the backlog, in order, and decide the execution's fate when its worker
        dies; ends once the backlog is empty (later frames are applied at once again)."""
        try:
            while job.backlog and not job.result.done():
                await self._apply(job, job.backlog.popleft())
        except Exception as exc:
            # A bug here must not leave the caller waiting forever: the run ends faulted, its worker told to stop it.
            logger.exception("execution %s: relaying its frames failed", job.command.execution_id)
            if job.worker is not None:
                job.worker.send({"op": "cancel", "token": job.token})
            error = spec_error("runtime", "Runtime failure", status=500, detail=type(exc).__name__)
            result = ExecutionResult(execution_id=job.command.execution_id, status=Status.FAULTED, error=error)
            with contextlib.suppress(Exception):  # the terminal event if the listener still takes one
                result = await self._faulted(job, error)
            self._finish(job, result)
        finally:
            job.pump = None

    async def _apply(self, job: _Job, item: _Item) -> None:
        op, token, body = item
        if op == "cancelled":
            self._finish(job, await self._cancelled(job))
        elif token != job.token:
            pass  # from an earlier incarnation
        elif op == "event":
            await self._forward(job, body)
        elif op == "checkpoint":
            job.checkpoint = checkpoint_from_wire(_inline(job, body, "checkpoint"))
            if job.hook is not None:
                await job.hook(job.checkpoint)
        elif op == "result":
            self._finish(job, result_from_wire(_inline(job, body, "result")))
        elif op == "died":
            job.handed = 0  # the credits belonged to the dead worker's run
            await self._died(job, body)

    def _forward_now(self, job: _Job, frame: Frame) -> bool:
        """`_forward` when the listener takes the event without waiting; False (nothing changed) otherwise."""
        data = frame["event"]
        if data["type"] == _STARTED and job.started:
            return True  # restarted on another worker: the control plane already knows it started
        publish_nowait = getattr(job.listener, "publish_nowait", None)
        event = self._event(job, data["type"], data["data"], data["time"], frame.get("blob"))
        if publish_nowait is None or not publish_nowait(event):
            return False
        self._handed(job, event)
        return True

    async def _forward(self, job: _Job, frame: Frame) -> None:
        data = frame["event"]
        if data["type"] == _STARTED and job.started:
            return
        await self._publish(job, data["type"], data["data"], data["time"], frame.get("blob"))

    async def _publish(
        self, job: _Job, kind: str, data: dict[str, Any], at: str, output_json: bytes | None = None
    ) -> None:
        event = self._event(job, kind, data, at, output_json)
        await job.listener.publish(event)
        self._handed(job, event)

    def _event(
        self, job: _Job, kind: str, data: dict[str, Any], at: str, output_json: bytes | None = None
    ) -> LifecycleEvent:
        """The execution's next event: numbered by the pool, so a restart continues where the killed worker was."""
        command = job.command
        return LifecycleEvent(
            execution_id=command.execution_id,
            attempt=command.attempt,
            sequence=job.sequence + 1,
            type=kind,
            time=at,
            data=data,
            output_json=output_json,
        )

    def _handed(self, job: _Job, event: LifecycleEvent) -> None:
        """Book an event the listener took; credit goes back to the worker in chunks (none for a short run)."""
        job.sequence = event.sequence
        kind, data = event.type, event.data
        if kind == _STARTED:
            job.started = True
            job.name = data.get("name", "")
        elif kind in _TERMINAL:
            job.terminal = event
        elif "task" in data and kind.endswith("task.started.v1"):
            job.task = data["task"]
        job.handed += 1
        if job.handed >= CREDIT_RETURN and job.worker is not None:
            job.worker.send({"op": "credit", "token": job.token, "n": job.handed})
            job.handed = 0

    def _finish(self, job: _Job, result: ExecutionResult) -> None:
        if not job.result.done():
            job.result.set_result(result)

    async def _died(self, job: _Job, verdict: Verdict) -> None:
        if job.terminal is not None:
            self._finish(job, _from_terminal(job.command.execution_id, job.terminal))
        elif self._closing or job.cancel_requested:
            self._finish(job, await self._cancelled(job))
        elif verdict.token == job.token:
            self._finish(job, await self._faulted(job, _error(verdict, self.settings)))
        elif verdict.token == 0 and job.strikes >= 1:
            error = _error(dataclasses.replace(verdict, pointer=job.task), self.settings, twice=True)
            self._finish(job, await self._faulted(job, error))
        else:
            job.strikes += verdict.token == 0
            job.worker = None
            logger.info("execution %s runs again on another worker", job.command.execution_id)
            self._place_soon(job)

    async def _faulted(self, job: _Job, error: dict[str, Any]) -> ExecutionResult:
        self.metrics.limit_faults.labels(error.get("title", "")).inc()
        at = _now()
        task = error.get("instance") or job.task
        if task and task != "/":
            ref = {"workflow": self._name(job), "task": task}
            await self._publish(job, _TASK_FAULTED, {**ref, "faultedAt": at, "error": error}, at)
        await self._publish(job, WORKFLOW_FAULTED, {"name": self._name(job), "faultedAt": at, "error": error}, at)
        return ExecutionResult(
            execution_id=job.command.execution_id, status=Status.FAULTED, error=error, limit=error["title"]
        )

    async def _cancelled(self, job: _Job) -> ExecutionResult:
        at = _now()
        await self._publish(job, WORKFLOW_CANCELLED, {"name": self._name(job), "cancelledAt": at}, at)
        return cancelled_result(job.command.execution_id, "the execution was cancelled")

    def _name(self, job: _Job) -> str:
        if not job.name:
            workflow = self.load(job.command.workflow_yaml)
            job.name = f"{workflow.name}-{job.command.execution_id}.{workflow.namespace}"
        return job.name

    def _ref(self, job: _Job) -> dict[str, Any]:
        return {"workflow": self._name(job), "task": job.task}

    # -- the bus ---------------------------------------------------------------------------------------------

    async def _relay(self) -> None:
        """Every event published on the supervisor's bus (by a worker's emit, PublishEvent or another runner)
        goes to every worker, whose local bus delivers it to that tenant's `listen` tasks only."""
        queue = self.bus.subscribe_all()
        try:
            while True:
                tenant, event = await queue.get()
                for worker in self._workers:
                    worker.send({"op": "bus", "tenant": tenant, "event": event})
        finally:
            self.bus.unsubscribe_all(queue)

    # -- the watchdog (a thread: it must act while the supervisor's loop is busy too) --------------------------

    def _watch(self) -> None:
        while not self._watch_stop.wait(PERIOD):
            now = time.monotonic()
            for worker in list(self._workers):
                if worker.dead or worker.verdict is not None:
                    continue
                try:
                    self._inspect(worker, now)
                except Exception:
                    # One bad reading must not end limit enforcement for the life of the process.
                    logger.exception("watchdog could not inspect worker %d", worker.pid)

    def _inspect(self, worker: _Worker, now: float) -> None:
        reading = read_slot(worker.slot)
        worker.rss_mb = _rss_mb(worker.pid)
        stuck = reading.busy and now - reading.started > STUCK_AFTER
        full = worker.rss_mb > self.settings.memory_limit_mb * SOFT_MEMORY
        if (stuck, full) != (worker.stuck, worker.full):
            worker.stuck, worker.full = stuck, full
            self._wake()
        verdict = self._judge(worker, reading, now)
        if verdict is not None:
            worker.verdict = verdict
            _kill(worker.pid)
            self._wake()

    def _judge(self, worker: _Worker, reading: Reading, now: float) -> Verdict | None:
        limits = self.settings
        if worker.rss_mb > limits.memory_limit_mb:
            detail = f"{worker.rss_mb:.0f} MB"
            return Verdict(Reason.MEMORY, reading.token, reading.pointer, detail)
        if reading.busy and now - reading.started > limits.expression_time_limit:
            return Verdict(Reason.CPU, reading.token, reading.pointer, f"{now - reading.started:.1f}s")
        if reading.busy and now > reading.deadline + TIMEOUT_GRACE:
            return Verdict(Reason.TIMEOUT, reading.token, reading.pointer)
        if worker.ready and not reading.busy and now - reading.heartbeat > max(limits.expression_time_limit, 10 * BEAT):
            return Verdict(Reason.STALL, detail=f"{now - reading.heartbeat:.1f}s")
        if not worker.ready and now - worker.started > _START_WAIT:
            return Verdict(Reason.STALL, detail="never became ready")
        for token, due in list(worker.cancel_due.items()):
            if now > due:
                return Verdict(Reason.CANCEL, token, reading.pointer if reading.token == token else "")
        return None

    def _wake(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._changed.set)

    def _spawn(self, coroutine: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _error(verdict: Verdict, settings: PoolSettings, *, twice: bool = False) -> dict[str, Any]:
    """The spec error a culprit (or a twice-struck suspect) ends with."""
    where = verdict.pointer or "/"
    if verdict.reason is Reason.TIMEOUT:
        detail = f"the timeout covering {where} expired while an expression was still evaluating there"
        return spec_error("timeout", "Timeout", status=408, detail=detail, instance=where)
    if twice:
        detail = (
            f"its worker process was ended twice while it ran ({verdict.reason.value}"
            f"{', ' + verdict.detail if verdict.detail else ''}); the last task started was {where}"
        )
        return spec_error("runtime", "Worker lost twice", status=500, detail=detail, instance=where)
    title, detail = {
        Reason.CPU: (
            "Expression time limit exceeded",
            f"an evaluation at {where} ran longer than EXPRESSION_TIME_LIMIT_SECONDS "
            f"({settings.expression_time_limit:g}s)",
        ),
        Reason.MEMORY: (
            "Memory limit exceeded",
            f"the worker passed EXECUTOR_MEMORY_LIMIT_MB ({settings.memory_limit_mb} MB, reached "
            f"{verdict.detail}) while {where} was evaluating",
        ),
        Reason.CRASH: ("Worker crashed", f"the worker process ended ({verdict.detail}) while {where} was evaluating"),
    }.get(verdict.reason, ("Worker lost", f"{verdict.reason.value} at {where}"))
    return spec_error("runtime", title, status=500, detail=detail, instance=where)


def _infer(reading: Reading, code: int) -> Verdict:
    """A worker that died without the watchdog's word: the evaluating execution is blamed, else nobody."""
    how = f"signal {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals() else f"exit {code}"
    return Verdict(Reason.CRASH, reading.token if reading.busy else 0, reading.pointer, how)


def _inline(job: _Job, frame: Frame, part: str) -> Frame:
    """`frame[part]` with its output in place: a large one crossed as the frame's blob, decoded here once for all
    the frames of the run that carry the same blob (a checkpoint's and the result's)."""
    data: Frame = frame[part]
    if "output" in data:
        return data
    blob = frame["blob"]
    if job.decoded[0] is not blob:
        job.decoded = (blob, orjson.loads(blob))
    return {**data, "output": job.decoded[1]}


def _from_terminal(execution_id: str, event: LifecycleEvent) -> ExecutionResult:
    status = {WORKFLOW_FAULTED: Status.FAULTED, WORKFLOW_CANCELLED: Status.CANCELLED}.get(event.type, Status.COMPLETED)
    return ExecutionResult(
        execution_id=execution_id, status=status, output=event.data.get("output"), error=event.data.get("error")
    )


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE / 1048576
    except (OSError, IndexError, ValueError):
        return 0.0


def _kill(pid: int) -> None:
    with contextlib.suppress(OSError):  # gone already (or, never expected, not ours any more)
        os.kill(pid, signal.SIGKILL)


_PAGE = os.sysconf("SC_PAGE_SIZE")
